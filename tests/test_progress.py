"""The progress API against a real Redis: cheap calls, coalesced publishing, ordered flushes."""

from __future__ import annotations

import uuid

import pytest

from jobcast.jobs.progress import Progress
from jobcast.protocol import EventType, loads, split_record
from jobcast.store.jobs import JobStore, Submission


@pytest.fixture
def store(redis, settings) -> JobStore:
    return JobStore(redis, settings.model_copy(update={"history_max_events": 1000, "retention_s": 600}))


async def history(store: JobStore, job_id: str) -> list[dict]:
    records, _ = await store.history_after(job_id, 0)
    return [loads(split_record(r)[2]) for r in records]


async def test_a_tight_loop_is_coalesced_and_the_latest_value_always_lands(store) -> None:
    job_id = uuid.uuid4().hex
    await store.create(job_id, Submission("demo", {}))
    async with Progress(store, job_id, 1, rate_hz=5) as progress:
        await progress.state(EventType.STARTED)
        for i in range(1, 50_001):
            await progress.update(i, 50_000, "counting")
        await progress.state(EventType.SUCCEEDED, result={"ok": True})
    events = await history(store, job_id)
    types = [e["type"] for e in events]
    assert types[:2] == ["queued", "started"] and types[-1] == "succeeded"
    # 50,000 updates with no pause in between: at most a couple of publishes, never 50,000.
    assert 1 <= types.count("progress") <= 2
    assert events[-2]["progress"]["current"] == 50_000  # flushed before the terminal event
    assert events[-1]["progress"]["current"] == 50_000


async def test_no_event_after_the_terminal_one_and_stale_attempts_are_refused(store, redis) -> None:
    job_id = uuid.uuid4().hex
    await store.create(job_id, Submission("demo", {}))
    assert await store.publish(job_id, EventType.STARTED, attempt=1) == 2
    # A second worker starting the same attempt is refused: attempts are compare-and-set.
    assert await store.publish(job_id, EventType.STARTED, attempt=1) == 0
    assert await store.publish(job_id, EventType.STARTED, attempt=2) == 3
    assert await store.publish(job_id, EventType.PROGRESS, attempt=1) == 0  # an older attempt
    assert await store.publish(job_id, EventType.FAILED, attempt=2, error={"type": "E", "message": "m"}) == 4
    assert await store.publish(job_id, EventType.SUCCEEDED, attempt=2) == 0
    assert [e["type"] for e in await history(store, job_id)] == ["queued", "started", "started", "failed"]
    assert 0 < await redis.ttl(store.keys.history(job_id)) <= 600


async def test_trimmed_history_gives_a_resuming_watcher_a_snapshot(aiohttp_client, settings, spawn) -> None:
    from jobcast.server.app import create_app
    from tests.helpers import read_sse, submit

    client = await aiohttp_client(create_app(settings.model_copy(update={"history_max_events": 10})))
    spawn("worker", JOBCAST_HISTORY_MAX_EVENTS="10", JOBCAST_PROGRESS_RATE_HZ="1000")
    job = await submit(client, body={"kind": "demo", "params": {"steps": 30, "step_ms": 5}})
    url = f"/api/jobs/{job['id']}/events"
    live = await read_sse(client, url, headers={"Last-Event-ID": "0"})
    assert live[-1].id > 12, "the job must outrun the 10-event history for this test to mean anything"
    events = await read_sse(client, url, headers={"Last-Event-ID": "2"})
    assert [e.event for e in events] == ["snapshot"], [(e.id, e.event) for e in events]
    assert events[0].data["state"] == "succeeded" and events[0].id == events[0].data["last_event_id"]


async def test_long_messages_are_cut_before_they_are_stored(redis, settings) -> None:
    from jobcast.jobs.worker import error_info

    store = JobStore(redis, settings)
    job_id = uuid.uuid4().hex
    await store.create(job_id, Submission("demo", {}))
    async with Progress(store, job_id, 0, rate_hz=1000, max_message_chars=50) as progress:
        await progress.update(1, 2, "m" * 5000)
        await progress.state(EventType.FAILED, error=error_info(ValueError("e" * 5000), 60))
    snapshot = await store.snapshot(job_id)
    assert len(snapshot["progress"]["message"]) == 50 and snapshot["progress"]["message"].endswith("…")
    assert len(snapshot["error"]["message"]) == 60
