"""Pausing a kind (`POST /api/kinds/{kind}/pause`, `/resume`), against real `jobcast web` and
`jobcast worker` processes: its jobs wait in their places while other kinds run, a running one
finishes, and all of them run once it resumes."""

from __future__ import annotations

import aiohttp

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
        assert (
            await status_of(anyone, "POST", url + "/api/kinds/demo/resume", headers=bearer(ADMIN_KEY)) == 200
        )


async def is_state(session: aiohttp.ClientSession, job_id: str, state: str) -> bool:
    return (await states(session, [job_id]))[0] == state


async def has_parked(session: aiohttp.ClientSession, kind: str, n: int) -> bool:
    return await parked(session, kind) == n
