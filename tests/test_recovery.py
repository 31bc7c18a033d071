"""Crash recovery with real worker processes: SIGKILL, SIGTERM past the grace period, and a
worker that loses Redis."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from tests.helpers import (
    attempts,
    demo,
    get_json,
    lifecycle,
    read_sse,
    sse_events,
    submit,
    wait_for,
    watch_to_end,
)


async def started_on(client, job_id: str) -> None:
    """Wait until the job's first progress event: it is running."""
    head = await read_sse(client, f"/api/jobs/{job_id}/events", headers={"Last-Event-ID": "0"}, stop_after=3)
    assert [e.event for e in head] == ["queued", "started", "progress"]


async def test_a_job_whose_worker_is_killed_finishes_on_another_worker(client, spawn) -> None:
    first = spawn("worker", JOBCAST_LEASE_S="1")
    job = await submit(client, body=demo(40, 50))
    await started_on(client, job["id"])
    spawn("worker", JOBCAST_LEASE_S="1")
    first.signal(signal.SIGKILL)
    events = await watch_to_end(client, job["id"])
    assert lifecycle(events) == attempts(2, "succeeded")
    assert events[2 + [e["type"] for e in events[2:]].index("retrying")]["error"]["type"] == "WorkerLost"
    assert sum(e["type"] in ("succeeded", "failed", "cancelled") for e in events) == 1
    assert events[-2]["progress"]["current"] == 40


async def reached(client, job_id: str, type_: str, attempt: int) -> None:
    """Wait until the job's stream shows the `type_` event of `attempt`."""
    async with client.get(f"/api/jobs/{job_id}/events", headers={"Last-Event-ID": "0"}) as response:
        async for event in sse_events(response):
            if event.event == type_ and event.data["attempt"] == attempt:
                return
    raise AssertionError(f"the stream of {job_id} ended before {type_} of attempt {attempt}")


async def test_a_worker_that_stalls_past_its_lease_leaves_the_job_to_its_new_holder(client, spawn) -> None:
    # A frozen worker (SIGSTOP: a long pause, or a network partition) loses its lease to another.
    stalled = spawn("worker", JOBCAST_LEASE_S="1")
    job = await submit(client, body=demo(100, 50))
    await started_on(client, job["id"])
    stalled.signal(signal.SIGSTOP)
    try:
        holder = spawn("worker", JOBCAST_LEASE_S="1")
        await reached(client, job["id"], "started", 2)
    finally:
        stalled.signal(signal.SIGCONT)
    # Woken, it learns the job was taken over and stops its attempt without finishing the job in
    # arq's queue: so when the new holder crashes as well, the job is still there to run again.
    await wait_for(lambda: "was taken over" in stalled.log(), what="the stalled worker to give the job up")
    await wait_for(lambda: "no longer holds its lease" in stalled.log(), what="its finish to be refused")
    holder.signal(signal.SIGKILL)
    events = await watch_to_end(client, job["id"])
    assert lifecycle(events) == attempts(3, "succeeded")
    # Nothing of an attempt reached watchers once the next attempt had started.
    attempt = 0
    for event in events:
        assert event["attempt"] >= attempt, event
        attempt = max(attempt, event["attempt"]) if event["type"] == "started" else attempt
    assert events[-2]["progress"]["current"] == 100


async def test_a_job_still_running_after_the_sigterm_grace_is_requeued_not_failed(client, spawn) -> None:
    first = spawn("worker", JOBCAST_SHUTDOWN_GRACE_S="1")
    job = await submit(client, body=demo(60, 50))
    await started_on(client, job["id"])
    spawn("worker")
    first.signal(signal.SIGTERM)
    events = await watch_to_end(client, job["id"])
    assert lifecycle(events) == attempts(2, "succeeded")
    retrying = next(e for e in events if e["type"] == "retrying")
    assert retrying["error"]["type"] == "WorkerShutdown"
    assert await first.wait_exit() == 0


async def test_a_worker_that_loses_redis_reconnects_instead_of_dying(client, spawn, redis_server) -> None:
    # No command retries: every poll during the outage fails, and the worker must outlive that.
    worker = spawn("worker", JOBCAST_WORKER_REDIS_RETRIES="0")
    first = await submit(client, body=demo(2, 1))
    await watch_to_end(client, first["id"])
    redis_server.stop()
    try:
        await wait_for(lambda: worker.log().count("Redis unavailable") >= 3, what="failed polls")
        assert worker.process.poll() is None, worker.log()
    finally:
        redis_server.start()
    await wait_for(lambda: "Redis is back" in worker.log(), what="the worker to reconnect")
    job = await submit(client, body=demo(3, 10))
    assert (await watch_to_end(client, job["id"]))[-1]["type"] == "succeeded"


async def test_watchers_learn_at_once_when_the_only_worker_dies(client, spawn, settings) -> None:
    # No worker is left to claim the job again: the web's reaper says so once the lease lapses.
    only = spawn("worker", JOBCAST_LEASE_S="2")
    # A CPU-bound job first, so the worker has started its process pool.
    crunch = await submit(
        client, body={"kind": "aggregate", "params": {"rows": 200_000, "chunk_rows": 50_000}}
    )
    assert (await watch_to_end(client, crunch["id"]))[-1]["type"] == "succeeded"
    children = pool_children(only.process.pid)
    assert children
    job = await submit(client, body=demo(200, 50))
    await started_on(client, job["id"])
    only.signal(signal.SIGKILL)
    async with asyncio.timeout(2 + 5):  # the lease, plus 5 s
        await reached(client, job["id"], "retrying", 1)
    snapshot = await get_json(client, f"/api/jobs/{job['id']}")
    assert snapshot["state"] == "retrying" and snapshot["error"]["type"] == "WorkerLost"
    assert "waiting for a worker" in snapshot["error"]["message"]
    # The worker's process-pool children died with it.
    await wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in children), what="pool children")
    # A worker that starts later runs the job, and the loss is announced once.
    spawn("worker")
    events = await watch_to_end(client, job["id"])
    assert lifecycle(events) == attempts(2, "succeeded")
    assert [e["type"] for e in events].count("retrying") == 1


def pool_children(pid: int) -> list[int]:
    """The worker's child processes (its CPU process pool)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in children.read_text().split()] if children.exists() else []
