"""Resuming from any id, against real `jobcast web` and `jobcast worker` processes: exactly the
events after it whatever their number, or a snapshot and then the live events. Never a silent
stream, never an early end."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from jobcast.redis.embedded import RedisProcess
from tests.helpers import (
    JobcastProcess,
    SseEvent,
    assert_contiguous,
    demo,
    get_json,
    read_sse,
    sse_events,
    submit,
    wait_for,
)

# Far more events than a watcher's outbox (256) or a replay page (100) holds. Each step waits
# 2 ms, so that every step's progress is published even on a busy machine (a worker coalesces
# progress it cannot publish as fast as it comes).
LONG_STEPS = 2400
LONG_STEP_MS = 2
STATE_CHANGES = 1020  # 340 jobs: queued, started, succeeded


@pytest.fixture
async def web(spawn) -> JobcastProcess:
    web = spawn("web")
    await web.wait_http()
    return web


@pytest.fixture
def fast_worker(spawn) -> JobcastProcess:
    """A worker that publishes every progress update (no 10/s coalescing), so a job has thousands
    of events in a few seconds."""
    return spawn("worker", JOBCAST_PROGRESS_RATE_HZ="1000000")


async def ws_job_events(session: aiohttp.ClientSession, url: str, job_id: str, since: int) -> list[dict]:
    """Every event of a job after `since` over the WebSocket, to its terminal one."""
    events: list[dict] = []
    async with asyncio.timeout(60), session.ws_connect(url + "/api/ws") as ws:
        await ws.send_json({"type": "subscribe", "job_id": job_id, "last_event_id": since})
        assert (await ws.receive_json()) == {"type": "subscribed", "job_id": job_id}
        while not events or events[-1]["type"] not in ("succeeded", "failed", "cancelled"):
            events.append(await ws.receive_json())
    return events


async def job_state(session: aiohttp.ClientSession, url: str, job_id: str) -> dict[str, Any]:
    return await get_json(session, f"{url}/api/jobs/{job_id}")


async def test_an_sse_resume_from_seq_1_gets_every_event_of_a_long_job(web, fast_worker) -> None:
    async with aiohttp.ClientSession() as session:
        job = await submit(session, web.url + "/api/jobs", demo(LONG_STEPS, LONG_STEP_MS))
        url = f"{web.url}/api/jobs/{job['id']}/events"

        async def far_behind() -> bool:
            return (await job_state(session, web.url, job["id"]))["last_event_id"] > 600

        # One reader joins while the job runs, hundreds of events behind: it catches up from
        # history, then goes live without a gap.
        await wait_for(far_behind, what="the job to be hundreds of events in")
        during = await read_sse(session, url, headers={"Last-Event-ID": "1"}, timeout=60)
        # Another joins after the end and reads the whole history.
        after = await read_sse(session, url, headers={"Last-Event-ID": "1"}, timeout=60)
        over_ws = await ws_job_events(session, web.url, job["id"], 1)
        final = await job_state(session, web.url, job["id"])
    assert final["state"] == "succeeded" and final["last_event_id"] > 2000
    for events in (during, after):
        assert_contiguous(events, 2)
        assert events[-1].event == "succeeded" and events[-1].data["seq"] == final["last_event_id"]
    assert_contiguous(over_ws, 2)
    assert over_ws[-1]["seq"] == final["last_event_id"]


async def run_many_jobs(session: aiohttp.ClientSession, web: JobcastProcess, n: int) -> list[str]:
    jobs = [await submit(session, web.url + "/api/jobs", demo(1, 0)) for _ in range(n)]
    return [job["id"] for job in jobs]


async def feed_head(session: aiohttp.ClientSession, url: str) -> SseEvent:
    async with session.get(url + "/api/events") as response:
        snapshot = await anext(sse_events(response))
    assert snapshot.event == "snapshot"
    return snapshot


async def feed_until(response: aiohttp.ClientResponse, done: Any, timeout: float = 60) -> list[SseEvent]:
    seen: list[SseEvent] = []
    async with asyncio.timeout(timeout):
        async for event in sse_events(response):
            seen.append(event)
            if done(seen):
                break
    return seen


def state_changes(events: list[SseEvent] | list[dict]) -> list[dict]:
    data = [e.data if isinstance(e, SseEvent) else e for e in events]
    return [d for d in data if "feed_seq" in d and d.get("type") != "snapshot"]


async def test_a_feed_resume_more_than_1000_state_changes_behind_gets_every_one(
    web, worker, redis, settings
) -> None:
    async with aiohttp.ClientSession() as session:
        head = await feed_head(session, web.url)
        start = head.data["feed_seq"]
        jobs = await run_many_jobs(session, web, STATE_CHANGES // 3)

        async def all_done() -> bool:
            seq = await redis.hget(f"{settings.key_prefix}:feed:position", "seq")
            return int(seq or 0) >= start + STATE_CHANGES

        await wait_for(all_done, timeout=60, what="every job to end")
        expected = list(range(start + 1, start + STATE_CHANGES + 1))

        async with session.get(web.url + "/api/events", headers={"Last-Event-ID": head.id}) as response:
            over_sse = await feed_until(response, lambda seen: len(state_changes(seen)) >= STATE_CHANGES)
        async with asyncio.timeout(60), session.ws_connect(web.url + "/api/ws") as ws:
            await ws.send_json(
                {"type": "subscribe_feed", "last_event_id": start, "epoch": head.data["epoch"]}
            )
            assert await ws.receive_json() == {"type": "subscribed", "feed": True}
            over_ws: list[dict] = []
            while len(state_changes(over_ws)) < STATE_CHANGES:
                over_ws.append(await ws.receive_json())
    for events in (over_sse, over_ws):
        changes = state_changes(events)
        assert [d["feed_seq"] for d in changes] == expected
        assert all(
            d["type"] != "snapshot" for d in (e.data if isinstance(e, SseEvent) else e for e in events)
        )
        assert {d["job_id"] for d in changes} == set(jobs)
        assert sum(d["type"] == "succeeded" for d in changes) == len(jobs)


async def test_an_id_beyond_the_head_gets_a_snapshot_then_the_live_events(web, worker) -> None:
    async with aiohttp.ClientSession() as session:
        job = await submit(session, web.url + "/api/jobs", demo(30, 40))
        url = f"{web.url}/api/jobs/{job['id']}/events"
        feed = await session.get(web.url + "/api/events", headers={"Last-Event-ID": "zz:999999"})
        try:
            over_sse, over_ws = await asyncio.gather(
                read_sse(session, url, headers={"Last-Event-ID": "999999"}),
                ws_job_events(session, web.url, job["id"], 999999),
            )
            feed_seen = await feed_until(
                feed, lambda seen: any(e.event == "succeeded" and e.data["job_id"] == job["id"] for e in seen)
            )
        finally:
            feed.close()
    over_ws_events = [SseEvent(e["seq"], e["type"], e) for e in over_ws]
    for events in (over_sse, over_ws_events):
        snapshot, *rest = events
        assert snapshot.event == "snapshot" and snapshot.data["seq"] < 999999, snapshot
        assert_contiguous(rest, snapshot.data["seq"] + 1)
        assert events[-1].event == "succeeded"
    # The feed: a snapshot (the id's epoch is not this feed's), then the live state changes.
    assert feed_seen[0].event == "snapshot" and feed_seen[0].data["epoch"] != "zz"
    changes = state_changes(feed_seen)
    assert [d["feed_seq"] for d in changes] == list(
        range(feed_seen[0].data["feed_seq"] + 1, feed_seen[0].data["feed_seq"] + 1 + len(changes))
    )


async def test_a_feed_id_from_the_current_epoch_but_beyond_its_head_gets_a_snapshot(web, worker) -> None:
    async with aiohttp.ClientSession() as session:
        head = await feed_head(session, web.url)
        beyond = f"{head.data['epoch']}:{head.data['feed_seq'] + 1000}"
        async with session.get(web.url + "/api/events", headers={"Last-Event-ID": beyond}) as response:
            events = sse_events(response)
            first = await anext(events)
            assert first.event == "snapshot" and first.data["feed_seq"] == head.data["feed_seq"]
            job = await submit(session, web.url + "/api/jobs", demo(2, 1))
            seen = await feed_until(response, lambda seen: any(e.event == "succeeded" for e in seen))
    assert [d["type"] for d in state_changes(seen)] == ["queued", "started", "succeeded"]
    assert {d["job_id"] for d in state_changes(seen)} == {job["id"]}


async def test_after_redis_restarts_empty_a_feed_client_gets_a_snapshot_of_the_new_epoch(
    spawn, tmp_path: Path
) -> None:
    volatile = RedisProcess(tmp_path / "volatile-redis", persist=False)
    volatile.start()
    try:
        web = spawn("web", REDIS_URL=volatile.url)
        spawn("worker", REDIS_URL=volatile.url)
        await web.wait_http()
        async with aiohttp.ClientSession() as session:
            for _ in range(3):
                await submit(session, web.url + "/api/jobs", demo(1, 0))

            async def settled() -> bool:
                return (await feed_head(session, web.url)).data["feed_seq"] >= 9

            await wait_for(settled, what="three jobs to end")
            old = await feed_head(session, web.url)
            # A watcher connected across the restart, and one that comes back with its old id.
            across = await session.get(web.url + "/api/events", headers={"Last-Event-ID": old.id})
            try:
                await asyncio.to_thread(volatile.restart)
                job = await submit_when_up(session, web.url)
                async with session.get(web.url + "/api/events", headers={"Last-Event-ID": old.id}) as back:
                    came_back = await feed_until(back, ends(job["id"]))
                stayed = await feed_until(across, ends(job["id"]))
            finally:
                across.close()
    finally:
        volatile.stop()
    for seen in (came_back, stayed):
        snapshots = [e for e in seen if e.event == "snapshot"]
        assert snapshots and snapshots[-1].data["epoch"] != old.data["epoch"], [e.event for e in seen]
        new_epoch = snapshots[-1].data["epoch"]
        after = seen[seen.index(snapshots[-1]) + 1 :]
        assert all(e.data["epoch"] == new_epoch for e in after if e.id is not None)
        # What Redis holds now is the new job only: the old jobs are gone with the old epoch.
        assert {j["id"] for j in snapshots[-1].data["jobs"]} <= {job["id"]}
        assert ends(job["id"])(seen)


def ends(job_id: str) -> Any:
    """The job's end is known: its `succeeded` event, or a snapshot that shows it ended (the job
    may have ended before the stream began)."""

    def known(seen: list[SseEvent]) -> bool:
        for e in seen:
            if e.event == "succeeded" and e.data.get("job_id") == job_id:
                return True
            if e.event == "snapshot" and any(
                j["id"] == job_id and j["state"] == "succeeded" for j in e.data["jobs"]
            ):
                return True
        return False

    return known


async def submit_when_up(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    """Submit once the web process has reconnected to Redis (its readiness says so)."""

    async def ready() -> bool:
        async with session.get(url + "/readyz") as response:
            return response.status == 200

    await wait_for(ready, timeout=30, what="the web process to reach Redis again")
    async with session.post(url + "/api/jobs", json=demo(2, 1)) as response:
        assert response.status == 202, await response.text()
        return await response.json()


async def test_a_slow_reader_of_a_long_replay_still_gets_every_event(web, fast_worker) -> None:
    """A client that reads a long replay slowly is paced by its socket: the server waits for it
    instead of queueing (its outbox never overflows and nothing is conflated)."""
    async with aiohttp.ClientSession() as session:
        job = await submit(session, web.url + "/api/jobs", demo(LONG_STEPS, LONG_STEP_MS))

        async def ended() -> bool:
            return (await job_state(session, web.url, job["id"]))["state"] == "succeeded"

        await wait_for(ended, timeout=60, what="the long job to end")
        events: list[SseEvent] = []
        url = f"{web.url}/api/jobs/{job['id']}/events"
        async with asyncio.timeout(60), session.get(url, headers={"Last-Event-ID": "0"}) as response:
            async for event in sse_events(response):
                events.append(event)
                if len(events) % 200 == 0:
                    await asyncio.sleep(0.05)  # a slow reader: the server must wait for it
    assert len(events) > 2000, "the job must outrun the outbox many times over for this to mean anything"
    assert_contiguous(events, 1)
    assert events[-1].event == "succeeded"


async def test_watchers_of_a_job_redis_lost_are_told_and_their_streams_end(spawn, tmp_path: Path) -> None:
    volatile = RedisProcess(tmp_path / "volatile-redis", persist=False)
    volatile.start()
    try:
        web = spawn("web", REDIS_URL=volatile.url)
        await web.wait_http()
        async with aiohttp.ClientSession() as session:
            job = await submit(session, web.url + "/api/jobs", demo(3, 1))  # no worker: it waits
            url = f"{web.url}/api/jobs/{job['id']}/events"
            async with (
                asyncio.timeout(60),
                session.get(url) as sse,
                session.ws_connect(web.url + "/api/ws") as ws,
            ):
                events = sse_events(sse)
                assert (await anext(events)).event == "snapshot"
                await ws.send_json({"type": "subscribe", "job_id": job["id"]})
                assert (await ws.receive_json())["type"] == "subscribed"
                assert (await ws.receive_json())["type"] == "snapshot"
                await asyncio.to_thread(volatile.restart)  # it comes back empty
                rest = [event async for event in events]  # the stream must end by itself
                told = await ws.receive_json()
    finally:
        volatile.stop()
    assert [e.event for e in rest] == ["error"] and rest[0].data["code"] == "not_found"
    assert told == rest[0].data and told["job_id"] == job["id"]
