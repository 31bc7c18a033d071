"""Control over a job on real workers: cancel, retries, timeouts, delays, priorities, retry-of."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from jobcast.jobs import signals
from jobcast.jobs.signals import RunningAttempts
from jobcast.protocol import Priority
from jobcast.store.jobs import JobStore, Submission
from tests.helpers import (
    attempts,
    demo,
    get_json,
    lifecycle,
    post_json,
    queued_ids,
    read_sse,
    submit,
    wait_for,
    watch_to_end,
)


async def test_cancelling_a_queued_job_ends_it_at_once_and_it_never_starts(
    client, spawn, redis, settings
) -> None:
    job = await submit(client, body=demo(3, 10))
    cancelled = await post_json(client, f"/api/jobs/{job['id']}/cancel", status=200)
    assert cancelled["state"] == "cancelled" and cancelled["error"]["type"] == "Cancelled"
    assert job["id"] not in await queued_ids(redis, settings.key_prefix)  # out of the queue
    spawn("worker")
    other = await submit(client, body=demo(2, 10))
    assert (await watch_to_end(client, other["id"]))[-1]["type"] == "succeeded"
    assert lifecycle(await watch_to_end(client, job["id"])) == [("queued", 0), ("cancelled", 0)]


async def test_cancelling_a_running_job_stops_it_and_leaves_others_running(client, worker) -> None:
    victim = await submit(client, body=demo(400, 20))
    bystander = await submit(client, body=demo(40, 20))
    url = f"/api/jobs/{victim['id']}/events"
    head = await read_sse(client, url, headers={"Last-Event-ID": "0"}, stop_after=4)
    assert head[-1].event == "progress"
    requested = await post_json(client, f"/api/jobs/{victim['id']}/cancel", status=202)
    assert requested["cancel_requested"] is True
    events = await watch_to_end(client, victim["id"])
    assert lifecycle(events) == [("queued", 0), ("started", 1), ("cancelled", 1)]
    # The job's code saw the cancel and cleaned up (the demo reports where it stopped) first.
    assert events[-2]["type"] == "progress" and events[-2]["progress"]["message"].startswith("stopped before")
    assert events[-1]["progress"]["current"] < 400
    assert lifecycle(await watch_to_end(client, bystander["id"]))[-1] == ("succeeded", 1)
    problem = await post_json(client, f"/api/jobs/{victim['id']}/cancel", status=409)
    assert problem["status"] == 409 and "cancelled" in problem["detail"]


def test_a_cancel_heard_just_before_the_attempt_registers_still_cancels_it(monkeypatch) -> None:
    # The claim starts a job in Redis a moment before its attempt registers on the worker; a
    # cancel request published in that moment must not be lost.
    running = RunningAttempts()
    assert running.cancel("early") is False  # not running here (yet)
    assert running.add("early").cancel_requested
    assert not running.add("other").cancel_requested
    # Requests for other workers' jobs are forgotten: after a while, and past a bound.
    now = [1000.0]
    monkeypatch.setattr(signals.time, "monotonic", lambda: now[0])
    running.cancel("stale")
    now[0] += signals.EARLY_CANCEL_S
    assert not running.add("stale").cancel_requested
    for i in range(signals.EARLY_CANCELS_MAX + 10):
        running.cancel(f"elsewhere-{i}")
    assert len(running.early_cancels) == signals.EARLY_CANCELS_MAX
    assert "elsewhere-0" not in running.early_cancels


async def test_a_stale_cancel_never_touches_a_later_job(client, worker) -> None:
    done = await submit(client, body=demo(2, 5))
    await watch_to_end(client, done["id"])
    await post_json(client, f"/api/jobs/{done['id']}/cancel", status=409)
    await post_json(client, f"/api/jobs/{'0' * 32}/cancel", status=404)
    later = await submit(client, body=demo(5, 20))
    assert lifecycle(await watch_to_end(client, later["id"])) == attempts(1, "succeeded")


async def test_websocket_cancel_message_cancels_and_the_subscriber_sees_it(client, worker) -> None:
    job = await submit(client, body=demo(400, 20))
    ws = await client.ws_connect("/api/ws")
    await ws.send_json({"type": "subscribe", "job_id": job["id"], "last_event_id": 0})
    seen: list[dict] = []
    async with asyncio.timeout(30):
        while not seen or seen[-1].get("type") != "progress":
            seen.append(await ws.receive_json())
        await ws.send_json({"type": "cancel", "job_id": job["id"]})
        accepted = {"type": "cancel_accepted", "job_id": job["id"], "status": "requested"}
        # The worker may stop the job before the answer to the request is written: wait for both.
        while accepted not in seen or "cancelled" not in [m.get("type") for m in seen]:
            seen.append(await ws.receive_json())
    assert [m["type"] for m in seen].count("cancelled") == 1
    await ws.send_json({"type": "cancel", "job_id": job["id"]})
    assert (await ws.receive_json())["code"] == "ended"
    await ws.close()


async def test_a_job_failing_twice_succeeds_on_its_third_attempt(client, worker) -> None:
    body = {"kind": "demo", "params": {"steps": 3, "step_ms": 1, "fail_at_step": 2, "fail_attempts": 2}}
    job = await submit(client, body=body)
    events = await watch_to_end(client, job["id"])
    assert lifecycle(events) == attempts(3, "succeeded")
    for retrying in (e for e in events if e["type"] == "retrying"):
        assert retrying["error"] == {"type": "DemoFailure", "message": "failed at step 2 as asked"}
        # When the next attempt starts: after the backoff, never before the retry was announced.
        assert retrying["next_attempt_at"] > retrying["ts"]
    snapshot = await get_json(client, f"/api/jobs/{job['id']}")
    assert snapshot["state"] == "succeeded" and snapshot["attempt"] == 3 and snapshot["error"] is None


async def test_a_job_that_runs_too_long_is_stopped_and_retried_then_failed(client, spawn) -> None:
    spawn("worker", JOBCAST_KIND_TIMEOUTS_S='{"demo": 0.3}', JOBCAST_KIND_MAX_ATTEMPTS='{"demo": 2}')
    job = await submit(client, body=demo(100, 20))
    events = await watch_to_end(client, job["id"])
    assert lifecycle(events) == attempts(2, "failed")
    assert events[-1]["error"] == {"type": "TimeoutError", "message": "attempt took longer than 0.3 s"}
    assert events[-1]["progress"]["current"] < 100


async def test_a_delayed_job_stays_queued_until_its_run_at(client, worker) -> None:
    job = await submit(client, body={**demo(1, 1), "delay_s": 1.5})
    assert job["state"] == "queued" and job["run_at"] > job["created_at"]
    events = await watch_to_end(client, job["id"])
    assert events[0]["run_at"] == job["run_at"]
    started = next(e for e in events if e["type"] == "started")
    assert started["ts"] >= job["run_at"]
    problem = await post_json(client, "/api/jobs", {**demo(1, 1), "delay_s": 10**9}, status=422)
    assert problem["errors"][0]["field"] == "delay_s"


async def test_high_priority_jobs_start_before_a_backlog_of_low_ones(client, spawn) -> None:
    low = [await submit(client, body={**demo(1, 20), "priority": "low"}) for _ in range(5)]
    default = [await submit(client, body=demo(1, 20)) for _ in range(2)]
    high = [await submit(client, body={**demo(1, 20), "priority": "high"}) for _ in range(2)]
    spawn("worker", JOBCAST_WORKER_MAX_JOBS="1")
    started = {}
    for job in low + default + high:
        events = await watch_to_end(client, job["id"])
        started[job["id"]] = next(e["ts"] for e in events if e["type"] == "started")
    order = sorted(started, key=started.__getitem__)
    assert set(order[:2]) == {j["id"] for j in high}
    assert set(order[2:4]) == {j["id"] for j in default}
    assert order[4:] == [j["id"] for j in low]  # oldest first within a priority


async def test_retrying_a_failed_job_submits_a_linked_new_one(client, worker) -> None:
    failing = {"kind": "demo", "params": {"steps": 2, "step_ms": 1, "fail_at_step": 1, "fail_attempts": 3}}
    job = await submit(client, body=failing)
    assert (await watch_to_end(client, job["id"]))[-1]["type"] == "failed"
    retry = await post_json(client, f"/api/jobs/{job['id']}/retry", status=202)
    assert retry["retry_of"] == job["id"] and retry["params"] == job["params"]
    assert (await get_json(client, f"/api/jobs/{job['id']}"))["retried_by"] == retry["id"]
    # The new job is a fresh start (attempt 1 again): with fail_attempts=3 it fails only 3 times.
    assert (await watch_to_end(client, retry["id"]))[-1]["type"] == "failed"
    again = await post_json(client, f"/api/jobs/{job['id']}/retry", status=200)
    assert again["id"] == retry["id"]  # one retry per job, however often asked
    ok = await submit(client, body=demo(1, 1))
    await watch_to_end(client, ok["id"])
    problem = await post_json(client, f"/api/jobs/{ok['id']}/retry", status=409)
    assert "succeeded" in problem["detail"]


async def test_an_idle_worker_starts_work_without_waiting_for_its_poll_tick(
    client, spawn, redis, settings
) -> None:
    # With an hour between polls, only the wakeups can start these jobs: a submission's, the
    # delayed job's due time, and the slot a finished job frees.
    spawn("worker", JOBCAST_POLL_DELAY_S="3600", JOBCAST_WORKER_MAX_JOBS="1")
    # Its heartbeat ends its first poll: from then on it sleeps.
    await wait_for(lambda: redis.zcard(f"{settings.key_prefix}:workers"), what="the worker's first poll")
    now = await submit(client, body=demo(1, 1))
    assert lifecycle(await watch_to_end(client, now["id"]))[-1] == ("succeeded", 1)
    later = await submit(client, body={**demo(1, 1), "delay_s": 1})
    assert lifecycle(await watch_to_end(client, later["id"]))[-1] == ("succeeded", 1)
    first, second = [await submit(client, body=demo(3, 50)) for _ in range(2)]
    for job in (first, second):
        assert lifecycle(await watch_to_end(client, job["id"]))[-1] == ("succeeded", 1)


async def test_a_worker_whose_signal_connection_is_killed_is_woken_again_once_it_is_back(
    client, spawn, redis, settings
) -> None:
    spawn("worker", JOBCAST_POLL_DELAY_S="3600")

    async def signal_clients() -> list[dict]:
        return [c for c in await redis.client_list(_type="pubsub") if c["name"] == "jobcast-worker-signals"]

    first = await wait_for(signal_clients, what="the worker's signal connection")
    await redis.client_kill_filter(_id=first[0]["id"])
    again = await wait_for(
        lambda: _other_than(signal_clients, first[0]["id"]), what="the signal connection to come back"
    )
    assert len(again) == 1
    # With an hour between polls, only a wakeup heard on the new connection starts this job.
    job = await submit(client, body=demo(1, 1))
    assert lifecycle(await watch_to_end(client, job["id"]))[-1] == ("succeeded", 1)


async def _other_than(clients: Any, gone: str) -> list[dict]:
    return [c for c in await clients() if c["id"] != gone]


async def test_jobs_submitted_within_one_millisecond_are_dispatched_in_submission_order(
    redis, settings
) -> None:
    store = JobStore(redis, settings)
    # A counter taken modulo 1000 for the tie-break would wrap in the middle of these.
    await redis.set(store.keys.queue_order, 990)
    ids = [uuid.uuid4().hex for _ in range(30)]
    for job_id in ids:  # well under a millisecond apart on a local Redis: ties are certain
        await store.create(job_id, Submission("demo", {}, priority=Priority.LOW))
    claim = await store.scripts.call("dispatch", owner="test", want=len(ids), lease_ms=1000)
    assert [job_id for job_id, _, _ in claim["jobs"]] == ids
