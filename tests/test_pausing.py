"""Pausing a kind (`POST /api/kinds/{kind}/pause`, `/resume`), against real `jobcast web` and
`jobcast worker` processes: its jobs wait in their places while other kinds run, a running one
finishes, and all of them run once it resumes."""

from __future__ import annotations

import re

import aiohttp
from playwright.async_api import expect

from jobcast.store.jobs import JobStore
from jobcast.store.pausing import pause
from tests.helpers import demo, get_json, post_json, submit, wait_for, watch_to_end
from tests.test_security import ADMIN_KEY, SERVICE_KEY, bearer, owner_mode, status_of  # noqa: F401

AGGREGATE = {"kind": "aggregate", "params": {"rows": 1000}}


async def states(session: aiohttp.ClientSession, ids: list[str]) -> list[str]:
    return [(await get_json(session, f"/api/jobs/{job_id}"))["state"] for job_id in ids]


async def parked(session: aiohttp.ClientSession, kind: str) -> int:
    paused = (await get_json(session, "/api/stats"))["paused"]
    return paused[kind]["parked"] if kind in paused else -1


async def test_a_paused_kind_waits_in_place_while_others_run_then_resumes(spawn) -> None:
    web = spawn("web")
    spawn("worker", JOBCAST_WORKER_MAX_JOBS="4")
    await web.wait_http()
    async with aiohttp.ClientSession(web.url) as session:
        running = await submit(session, body=demo(30, 100))
        await wait_for(
            lambda: is_state(session, running["id"], "running"), what="the first demo job to start"
        )

        answer = await post_json(session, "/api/kinds/demo/pause")
        assert answer["kind"] == "demo" and answer["paused"] and answer["since"]
        held = [await submit(session, body=demo(2, 10)) for _ in range(3)]
        other = await submit(session, body=AGGREGATE)
        # Other kinds run; the paused kind's due jobs are held back, still queued.
        assert (await watch_to_end(session, other["id"]))[-1]["type"] == "succeeded"
        await wait_for(lambda: has_parked(session, "demo", 3), what="the demo jobs to be held back")
        assert await states(session, [j["id"] for j in held]) == ["queued"] * 3
        # Each says why it waits, and since when: the pause's time.
        snapshot = await get_json(session, f"/api/jobs/{held[0]['id']}")
        assert (snapshot["waiting"], snapshot["waiting_since"]) == ("demo paused", answer["since"])
        stats = await get_json(session, "/api/stats")
        assert stats["paused"]["demo"]["since"] == answer["since"]
        # Waiting, counted per kind and priority (the running one is not).
        assert stats["waiting_by_kind"] == {"demo": {"default": 3}}
        # A job of the kind that was running when it paused runs to its end.
        assert (await watch_to_end(session, running["id"]))[-1]["type"] == "succeeded"
        # A held-back job can still be cancelled; it stays cancelled after the resume.
        cancelled = held.pop()
        await post_json(session, f"/api/jobs/{cancelled['id']}/cancel")

        resumed = await post_json(session, "/api/kinds/demo/resume")
        assert (resumed["paused"], resumed["parked"], resumed["resumed"]) == (False, 0, 2)
        for job in held:
            assert (await watch_to_end(session, job["id"]))[-1]["type"] == "succeeded"
        assert await states(session, [cancelled["id"]]) == ["cancelled"]
        stats = await get_json(session, "/api/stats")
        assert stats["paused"] == {} and stats["waiting_by_kind"] == {}
        # An unknown kind is a 404 problem.
        async with session.post("/api/kinds/nope/pause") as response:
            assert response.status == 404 and response.content_type == "application/problem+json"


async def test_only_admins_pause_kinds_and_see_workers_in_owner_mode(owner_mode) -> None:  # noqa: F811
    url = owner_mode.url
    async with aiohttp.ClientSession() as anyone:
        for path in ("/api/workers", "/workers"):
            assert await status_of(anyone, "GET", url + path) == 403
            assert await status_of(anyone, "GET", url + path, headers=bearer(ADMIN_KEY)) == 200
        assert await status_of(anyone, "POST", url + "/api/kinds/demo/pause") == 403
        assert (
            await status_of(anyone, "POST", url + "/api/kinds/demo/pause", headers=bearer(SERVICE_KEY)) == 403
        )
        assert (
            await status_of(anyone, "POST", url + "/api/kinds/demo/pause", headers=bearer(ADMIN_KEY)) == 200
        )
        # Who paused it, for the stats and the held jobs' reason.
        async with anyone.get(url + "/api/stats", headers=bearer(ADMIN_KEY)) as answer:
            assert (await answer.json())["paused"]["demo"]["by"] == "ops"
        assert (
            await status_of(anyone, "POST", url + "/api/kinds/demo/resume", headers=bearer(ADMIN_KEY)) == 200
        )


async def is_state(session: aiohttp.ClientSession, job_id: str, state: str) -> bool:
    return (await states(session, [job_id]))[0] == state


async def has_parked(session: aiohttp.ClientSession, kind: str, n: int) -> bool:
    return await parked(session, kind) == n


async def test_an_operator_sees_what_a_pause_holds_in_one_click(spawn, page) -> None:
    web = spawn("web")
    spawn("worker")
    await web.wait_http()
    async with aiohttp.ClientSession(web.url) as session:
        answer = await post_json(session, "/api/kinds/demo/pause")
        held = [await submit(session, body=demo(2, 10)) for _ in range(3)]
        other = await submit(session, body=AGGREGATE)
        await watch_to_end(session, other["id"])
        await wait_for(lambda: has_parked(session, "demo", 3), what="the demo jobs to be held back")
    await page.goto(web.url + "/")
    intake = page.locator('#kind-intake [data-kind="demo"] .intake-state')
    await expect(intake.locator("time")).to_have_attribute("datetime", answer["since"])
    # 1: the paused kind's held jobs, each saying why and since when.
    await intake.get_by_role("link", name="3 held back").click()
    rows = page.locator("#jobs tr.job")
    await expect(rows).to_have_count(3)
    assert {await r.get_attribute("data-job-id") for r in await rows.all()} == {j["id"] for j in held}
    await expect(rows.first.locator(".job-when")).to_have_text(
        re.compile(r"^held: demo paused, (now|.+ ago)$")
    )
    # The same on the job's own page.
    await rows.first.locator(".job-link").click()
    await expect(page.locator("#waiting")).to_have_text(re.compile(r"^held: demo paused, (now|.+ ago)$"))


async def test_a_held_jobs_reason_names_who_paused_its_kind(client, worker, redis, settings) -> None:
    await pause(JobStore(redis, settings), "demo", "ops")
    job = await submit(client, body=demo(2, 10))

    async def held() -> dict | None:
        snapshot = await get_json(client, f"/api/jobs/{job['id']}")
        return snapshot if snapshot["waiting"] else None

    snapshot = await wait_for(held, what="the demo job to be held back")
    paused = (await get_json(client, "/api/stats"))["paused"]["demo"]
    assert (snapshot["waiting"], snapshot["waiting_since"]) == ("demo paused by ops", paused["since"])
    # Resumed: it runs, and says nothing of the hold any more.
    await post_json(client, "/api/kinds/demo/resume")
    assert (await watch_to_end(client, job["id"]))[-1]["type"] == "succeeded"
    ended = await get_json(client, f"/api/jobs/{job['id']}")
    assert ended["waiting"] is None and ended["waiting_since"] is None
