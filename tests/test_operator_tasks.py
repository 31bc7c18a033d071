"""What operators do on a bad day, in Chromium against real `jobcast web` and `jobcast worker`
processes holding realistic state: hundreds of finished jobs, failures of two kinds of error,
delayed, held and cancelled jobs, and one long job running. Each task is done with the pages alone,
its clicks counted against the number the dashboard promises."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
from playwright.async_api import Locator, Page, expect

from tests.helpers import demo, get_json, post_json, submit, wait_for, watch_to_end

TIMEOUT_MS = 30_000
SETTINGS = {"JOBCAST_KIND_TIMEOUTS_S": '{"report": 0.3}', "JOBCAST_WORKER_MAX_JOBS": "8"}


class Clicks:
    """Counts the clicks a task takes (a choice in a list counts as one)."""

    def __init__(self) -> None:
        self.count = 0

    async def click(self, target: Locator) -> None:
        self.count += 1
        await target.click()

    async def choose(self, target: Locator, value: str) -> None:
        self.count += 1
        await target.select_option(value)


async def batch(session: aiohttp.ClientSession, url: str, jobs: list[dict[str, Any]]) -> list[str]:
    answer = await post_json(session, url + "/api/jobs/batch", {"jobs": jobs})
    assert answer["created"] == len(jobs), answer
    return [item["job"]["id"] for item in answer["results"]]


async def realistic_state(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    """300 finished demo jobs, 12 failed demo jobs and 4 reports over their time limit, 25 delayed
    demo and 10 delayed report jobs, 10 cancelled ones, 5 `aggregate` jobs held by a pause, and
    one long demo job running."""
    done = await batch(session, url, [demo(1, 0)] * 300)
    failing = [
        {"kind": "demo", "params": {"steps": 3, "step_ms": 1, "fail_at_step": 1 + n % 3}} for n in range(12)
    ]
    failed = await batch(session, url, failing)
    slow = {"kind": "report", "params": {"user_id": "ada", "days": 30, "pace_ms": 100}}
    timed_out = await batch(session, url, [slow] * 4)
    delayed = await batch(session, url, [{**demo(2, 1), "delay_s": 600}] * 25)
    delayed_reports = await batch(session, url, [{**slow, "delay_s": 900}] * 10)
    cancelled = await batch(session, url, [{**demo(2, 1), "delay_s": 600}] * 10)
    for job_id in cancelled:
        await post_json(session, f"{url}/api/jobs/{job_id}/cancel")
    await post_json(session, url + "/api/kinds/aggregate/pause")
    held = await batch(session, url, [{"kind": "aggregate", "params": {"rows": 1000}}] * 5)
    long = (await submit(session, url + "/api/jobs", demo(600, 100)))["id"]
    for job_id in failed + timed_out:
        assert (await watch_to_end(session, job_id, base=url))[-1]["type"] == "failed"

    async def settled() -> bool:
        stats = await get_json(session, url + "/api/stats")
        return stats["held"]["paused"] == 5 and stats["running"] == 1 and not sum(stats["waiting"].values())

    await wait_for(settled, timeout=60, what="the finished jobs to finish and the held ones to be held")
    return {
        "done": done,
        "failed": failed,
        "timed_out": timed_out,
        "delayed": delayed,
        "delayed_reports": delayed_reports,
        "held": held,
        "long": long,
    }


async def find(page: Page, clicks: Clicks, job_id: str) -> None:
    """The dashboard's search: the first 8 characters of an id (typed, not clicked), then Open."""
    await page.get_by_label("Job id").fill(job_id[:8])
    await clicks.click(page.get_by_role("button", name="Open"))


async def test_the_five_operator_tasks_take_the_clicks_promised(spawn, page) -> None:
    web = spawn("web", **SETTINGS)
    worker = spawn("worker", **SETTINGS)
    await web.wait_http()
    async with aiohttp.ClientSession() as session:
        jobs = await realistic_state(session, web.url)

        # Why did X fail: one click from the dashboard, the error and its traceback on the page.
        clicks = Clicks()
        await page.goto(web.url + "/")
        failed = jobs["failed"][4]
        await find(page, clicks, failed)
        await expect(page.locator("#error-type")).to_have_text("DemoFailure")
        await expect(page.locator("#error-message")).to_have_text("failed at step 2 as asked")
        await expect(page.locator("#attempts .traceback pre").first).to_contain_text("DemoFailure")
        assert clicks.count == 1

        # Which worker runs Y, and since when: one click; a second opens the worker's own page.
        clicks = Clicks()
        await page.goto(web.url + "/")
        await find(page, clicks, jobs["long"])
        started = (await get_json(session, f"{web.url}/api/jobs/{jobs['long']}"))["started_at"]
        attempt = page.locator("#attempts tr").last
        await expect(attempt.locator(".worker")).to_contain_text(f":{worker.process.pid}:")
        await expect(attempt.locator("time").first).to_have_attribute("datetime", started)
        assert clicks.count == 1
        await clicks.click(attempt.locator(".worker a"))
        await expect(page.locator(f'.worker [data-job-id="{jobs["long"]}"]')).to_be_visible()
        assert clicks.count == 2

        # What is held by a pause: one click from the kind's line on the dashboard.
        clicks = Clicks()
        await page.goto(web.url + "/")
        line = page.locator('#kind-intake [data-kind="aggregate"] .intake-state')
        await clicks.click(line.get_by_role("link", name="5 held back"))
        rows = page.locator("#jobs tr.job")
        await expect(rows).to_have_count(5)
        assert {await r.get_attribute("data-job-id") for r in await rows.all()} == set(jobs["held"])
        for row in await rows.all():
            await expect(row.locator(".job-when")).to_have_text(re.compile(r"^held: aggregate paused, "))
        assert clicks.count == 1

        # Retry the failed reports of the last hour: three clicks, each new job linked.
        clicks = Clicks()
        await page.goto(web.url + "/")
        asked: list[str] = []
        page.once("dialog", lambda dialog: asked.append(dialog.message) or dialog.accept())
        await clicks.click(page.get_by_role("link", name="Failures"))
        group = page.locator("#failure-groups tr", has_text="TimeoutError")
        await clicks.click(group.get_by_role("button", name=re.compile(r"^Retry 4")))
        clicks.count += 1  # the confirmation's OK
        await expect(group.locator(".group-status")).to_have_text(
            re.compile(r"^bulk [0-9a-f]{8}: retry done on 4 of 4 jobs\.$"), timeout=TIMEOUT_MS
        )
        assert asked == ["Retry 4 failed jobs (TimeoutError: attempt took longer than 0.3 s)?"]
        for job_id in jobs["timed_out"]:
            assert (await get_json(session, f"{web.url}/api/jobs/{job_id}"))["retried_by"]
        assert clicks.count == 3

        # Cancel every delayed demo job: five clicks, the delayed reports left alone.
        clicks = Clicks()
        await page.goto(web.url + "/")
        asked.clear()
        page.once("dialog", lambda dialog: asked.append(dialog.message) or dialog.accept())
        await clicks.click(page.get_by_role("link", name="Scheduled"))
        await clicks.choose(page.get_by_role("combobox", name="Kind"), "demo")
        await clicks.click(page.get_by_role("button", name="Filter"))
        await expect(page.locator("#scheduled tr")).to_have_count(25)
        await clicks.click(page.get_by_role("checkbox", name="Select every job shown"))
        await clicks.click(page.get_by_role("button", name="Cancel selected"))
        clicks.count += 1  # the confirmation's OK
        await expect(page.locator(".notice")).to_have_text("25 jobs cancelled.")
        assert asked == ["Cancel 25 scheduled jobs?"]
        assert clicks.count == 6
        states = {(await get_json(session, f"{web.url}/api/jobs/{i}"))["state"] for i in jobs["delayed"]}
        left = {
            (await get_json(session, f"{web.url}/api/jobs/{i}"))["state"] for i in jobs["delayed_reports"]
        }
        assert (states, left) == ({"cancelled"}, {"queued"})
