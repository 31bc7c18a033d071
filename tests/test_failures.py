"""Failure triage: failed jobs grouped by what went wrong (`GET /api/failures`, the `/failures`
page), and a group retried as one bulk job in a few clicks, against real processes."""

from __future__ import annotations

import asyncio
import re

import aiohttp
from playwright.async_api import expect

from jobcast.queries.failures import signature
from tests.helpers import get_json, submit, watch_to_end

SLOW_REPORTS = {"JOBCAST_KIND_TIMEOUTS_S": '{"report": 0.3}'}


def test_a_failures_signature_leaves_out_what_varies() -> None:
    assert signature("DemoFailure", "failed at step 2 as asked") == "DemoFailure: failed at step … as asked"
    assert signature("KeyError", "'user-41'") == signature("KeyError", "'user-7'") == "KeyError: …"
    assert signature("E", "job 5f0c9a1b2c3d4e5f gone after 1.5 s") == "E: job … gone after … s"


async def failed_jobs(session: aiohttp.ClientSession, url: str) -> tuple[list[str], list[str]]:
    """Three demo jobs that fail at different steps, and two reports over their time limit."""
    demos = [
        await submit(
            session,
            url + "/api/jobs",
            {"kind": "demo", "params": {"steps": 5, "step_ms": 1, "fail_at_step": n}},
        )
        for n in (2, 3, 4)
    ]
    body = {"kind": "report", "params": {"user_id": "ada", "days": 30, "pace_ms": 100}}
    reports = [await submit(session, url + "/api/jobs", body) for _ in range(2)]
    for job in demos + reports:
        events = await watch_to_end(session, job["id"], base=url)
        assert events[-1]["type"] == "failed", events[-1]
    return [j["id"] for j in demos], [j["id"] for j in reports]


async def test_failures_are_grouped_by_error_with_kinds_and_times(spawn) -> None:
    web = spawn("web", **SLOW_REPORTS)
    spawn("worker", **SLOW_REPORTS)
    await web.wait_http()
    async with aiohttp.ClientSession() as session:
        demos, reports = await failed_jobs(session, web.url)
        found = await get_json(session, web.url + "/api/failures?since=1h")
        ended = {i: (await get_json(session, f"{web.url}/api/jobs/{i}"))["finished_at"] for i in demos}
    assert found["scanned"] == 5 and found["complete"] and found["bucket_s"] == 3600
    first, second = found["groups"]
    assert first["signature"] == "DemoFailure: failed at step … as asked"
    assert first["count"] == 3 and first["kinds"] == {"demo": 3} and first["per_bucket"] == [3]
    # Newest first, and the group's message is its newest failure's.
    assert sorted(first["ids"]) == sorted(demos) and first["open_ids"] == first["ids"]
    assert [ended[i] for i in first["ids"]] == sorted(ended.values(), reverse=True)
    newest = first["ids"][0]
    assert first["message"] == f"failed at step {demos.index(newest) + 2} as asked"
    assert (first["first_seen"], first["last_seen"]) == (min(ended.values()), max(ended.values()))
    assert second["signature"] == "TimeoutError: attempt took longer than … s"
    assert second["kinds"] == {"report": 2} and sorted(second["ids"]) == sorted(reports)


async def test_an_operator_retries_a_group_from_the_dashboard_in_three_clicks(spawn, page) -> None:
    web = spawn("web", **SLOW_REPORTS)
    spawn("worker", **SLOW_REPORTS)
    await web.wait_http()
    async with aiohttp.ClientSession() as session:
        demos, reports = await failed_jobs(session, web.url)
        await page.goto(web.url + "/")
        asked: list[str] = []
        page.once("dialog", lambda dialog: asked.append(dialog.message) or dialog.accept())
        # 1: to the Failures page, 2: Retry on the reports' group, 3: yes.
        await page.get_by_role("link", name="Failures").click()
        group = page.locator("#failure-groups tr", has_text="TimeoutError")
        await expect(group.locator(".count")).to_have_text("2")
        await expect(group.locator(".kinds")).to_have_text("report 2")
        await group.get_by_role("button", name=re.compile(r"^Retry 2")).click()
        await expect(group.locator(".group-status")).to_have_text(
            re.compile(r"^bulk [0-9a-f]{8}: retry done on 2 of 2 jobs\.$"), timeout=30_000
        )
        assert asked == ["Retry 2 failed jobs (TimeoutError: attempt took longer than 0.3 s)?"]
        # Each failed report now links to its retry; the group says what is left to retry.
        retried = [(await get_json(session, f"{web.url}/api/jobs/{i}"))["retried_by"] for i in reports]
        assert all(retried)
        await asyncio.gather(*(watch_to_end(session, i, base=web.url) for i in retried))
        await page.reload()
        await group.get_by_role("link", name=re.compile(r"^List")).click()
        listed = page.locator(".group-jobs li")
        await expect(listed).to_have_count(4)  # the two retries failed over their limit too
        for job_id, retry in zip(reports, retried, strict=True):
            item = listed.filter(has_text=job_id[:8])
            await expect(item).to_have_text(f"{job_id[:8]} (retried: {retry[:8]})")
            await expect(item.get_by_role("link", name=retry[:8])).to_have_attribute("href", f"/jobs/{retry}")
        # The demo group was left alone.
        left = await get_json(session, web.url + "/api/failures")
        demo_group = next(g for g in left["groups"] if g["type"] == "DemoFailure")
        assert sorted(demo_group["open_ids"]) == sorted(demos)


async def test_the_failures_page_answers_a_bad_window_with_422(spawn) -> None:
    web = spawn("web")
    await web.wait_http()
    async with aiohttp.ClientSession() as session:
        async with session.get(web.url + "/api/failures?since=2y") as answer:
            assert answer.status == 422 and answer.content_type == "application/problem+json"
        found = await get_json(session, web.url + "/api/failures")
        assert found == {"window_s": 86400, "bucket_s": 3600, "scanned": 0, "complete": True, "groups": []}
