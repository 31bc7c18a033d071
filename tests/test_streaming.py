"""Submit a job over HTTP, watch it run on a real worker over SSE and WebSocket."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from jobcast.server.app import create_app
from jobcast.server.keys import REDIS
from tests.helpers import assert_contiguous, attempts, read_sse, submit, unkept_session, wait_for


def check_demo_run(events: list[dict[str, Any]], steps: int) -> None:
    """A demo job's events from `queued` on: started, progress to the total, succeeded."""
    types = [e["type"] for e in events]
    assert types[0] == "queued" and types[1] == "started" and types[-1] == "succeeded", types
    assert set(types[2:-1]) == {"progress"}, types
    assert events[-2]["progress"]["current"] == steps == events[-2]["progress"]["total"]
    assert events[-2]["progress"]["percent"] == 100
    assert events[-1]["result"] == {"steps": steps}
    assert all(e["ts"].endswith("Z") and "." in e["ts"] for e in events)


async def test_submit_answers_202_with_location_and_snapshot(client, worker) -> None:
    async with client.post("/api/jobs", json={"kind": "demo", "params": {"steps": 3}}) as response:
        assert response.status == 202, await response.text()
        body = await response.json()
        assert response.headers["Location"] == f"/api/jobs/{body['id']}"
    assert body["state"] == "queued" and body["kind"] == "demo" and body["last_event_id"] == 1
    assert body["params"]["steps"] == 3
    assert set(body) >= {"progress", "attempt", "created_at", "started_at", "finished_at", "result", "error"}
    assert body["links"]["events"] == f"/api/jobs/{body['id']}/events"
    async with client.get(body["links"]["self"]) as response:
        assert response.status == 200
        assert (await response.json())["id"] == body["id"]


async def test_sse_streams_a_job_to_succeeded(client, worker) -> None:
    job = await submit(client)
    async with client.get(f"/api/jobs/{job['id']}/events") as response:
        assert response.headers["Cache-Control"] == "no-cache"
        assert response.headers["X-Accel-Buffering"] == "no"
        first = (await response.content.readline()).decode()
        assert first.startswith("retry: ")
    events = await read_sse(client, f"/api/jobs/{job['id']}/events", headers={"Last-Event-ID": "0"})
    assert [e.id for e in events] == [e.data["seq"] for e in events]
    assert [e.event for e in events] == [e.data["type"] for e in events]
    assert_contiguous(events, 1)
    check_demo_run([e.data for e in events], steps=10)


async def test_sse_without_last_event_id_starts_with_a_snapshot(client, worker) -> None:
    job = await submit(client, body={"kind": "demo", "params": {"steps": 5, "step_ms": 50}})
    events = await read_sse(client, f"/api/jobs/{job['id']}/events")
    assert events[0].event == "snapshot" and events[0].data["id"] == job["id"]
    assert events[0].id == events[0].data["last_event_id"]
    assert_contiguous(events[1:], events[0].id + 1)
    assert events[-1].event == "succeeded"


async def test_websocket_streams_a_job_to_succeeded(client, worker) -> None:
    job = await submit(client)
    messages: list[dict[str, Any]] = []
    async with client.ws_connect("/api/ws") as ws:
        await ws.send_json({"type": "subscribe", "job_id": job["id"], "last_event_id": 0})
        async with asyncio.timeout(30):
            while not messages or messages[-1].get("type") != "succeeded":
                messages.append(await ws.receive_json())
    assert messages[0] == {"type": "subscribed", "job_id": job["id"]}
    assert_contiguous(messages[1:], 1)
    check_demo_run(messages[1:], steps=10)


async def test_one_websocket_watches_many_jobs(client, worker) -> None:
    jobs = [await submit(client) for _ in range(3)]
    per_job: dict[str, list[dict[str, Any]]] = {job["id"]: [] for job in jobs}
    async with client.ws_connect("/api/ws") as ws:
        for job in jobs:
            await ws.send_json({"type": "subscribe", "job_id": job["id"], "last_event_id": 0})
        async with asyncio.timeout(30):
            while not all(events and events[-1]["type"] == "succeeded" for events in per_job.values()):
                message = await ws.receive_json()
                if message["type"] != "subscribed":
                    per_job[message["job_id"]].append(message)
    for events in per_job.values():
        assert_contiguous(events, 1)
        check_demo_run(events, steps=10)


async def test_sse_resume_gets_exactly_the_missed_events(client, worker) -> None:
    job = await submit(client, body={"kind": "demo", "params": {"steps": 20, "step_ms": 20}})
    url = f"/api/jobs/{job['id']}/events"
    head = await read_sse(client, url, headers={"Last-Event-ID": "0"}, stop_after=4)
    rest = await read_sse(client, url, headers={"Last-Event-ID": str(head[-1].id)})
    assert_contiguous(head + rest, 1)
    assert rest[-1].event == "succeeded"
    # The query parameter is the same position for clients that cannot set headers.
    tail = await read_sse(client, f"{url}?last_event_id={rest[-2].id}")
    assert [e.id for e in tail] == [rest[-1].id]


async def test_watchers_after_the_end_get_the_final_snapshot_then_204(client, worker) -> None:
    job = await submit(client, body={"kind": "demo", "params": {"steps": 2, "step_ms": 1}})
    url = f"/api/jobs/{job['id']}/events"
    live = await read_sse(client, url, headers={"Last-Event-ID": "0"})
    late = await read_sse(client, url)
    assert len(late) == 1 and late[0].event == "snapshot"
    assert late[0].data["state"] == "succeeded" and late[0].id == live[-1].id
    assert late[0].data["result"] == {"steps": 2}
    async with client.get(url, headers={"Last-Event-ID": str(live[-1].id)}) as response:
        assert response.status == 204
    async with client.ws_connect("/api/ws") as ws:
        await ws.send_json({"type": "subscribe", "job_id": job["id"]})
        assert (await ws.receive_json())["type"] == "subscribed"
        snapshot = await ws.receive_json()
        assert snapshot["type"] == "snapshot" and snapshot["job_id"] == job["id"]
        assert snapshot["state"] == "succeeded"


async def test_a_failing_job_is_retried_then_fails_with_its_error(client, worker) -> None:
    body = {"kind": "demo", "params": {"steps": 3, "step_ms": 1, "fail_at_step": 2}}
    job = await submit(client, body=body)
    events = await read_sse(client, f"/api/jobs/{job['id']}/events", headers={"Last-Event-ID": "0"})
    assert_contiguous(events, 1)
    lifecycle = [(e.event, e.data["attempt"]) for e in events if e.event != "progress"]
    assert lifecycle == attempts(3, "failed")
    assert events[-1].data["error"] == {"type": "DemoFailure", "message": "failed at step 2 as asked"}
    async with client.get(f"/api/jobs/{job['id']}") as response:
        snapshot = await response.json()
    assert snapshot["state"] == "failed" and snapshot["error"]["type"] == "DemoFailure"
    assert "Traceback" not in str(snapshot)


async def test_one_pubsub_connection_subscribed_while_anyone_watches(client, redis, settings) -> None:
    job = await submit(client, body={"kind": "demo", "params": {"steps": 5}})  # no worker: stays queued
    channel = f"{settings.key_prefix}:events:{job['id']}"
    url = f"/api/jobs/{job['id']}/events"

    async def numsub() -> int:
        return dict(await redis.pubsub_numsub(channel))[channel.encode()]

    first, second = await client.get(url), await client.get(url)
    for response in (first, second):
        assert (await response.content.readline()).startswith(b"retry:")
    ws = await client.ws_connect("/api/ws")
    await ws.send_json({"type": "subscribe", "job_id": job["id"]})
    assert (await ws.receive_json())["type"] == "subscribed"
    assert await numsub() == 1  # three watchers, one subscription
    pubsub_clients = await redis.client_list(_type="pubsub")
    assert len(pubsub_clients) == 1 and pubsub_clients[0]["name"] == "jobcast-relay"
    first.close()
    second.close()
    await ws.close()
    # The server notices the hang-ups asynchronously.
    await wait_for(lambda: _unsubscribed(numsub), timeout=10, what="the channel to be unsubscribed")


async def _unsubscribed(numsub: Any) -> bool:
    return await numsub() == 0


async def test_a_job_is_kept_as_json_and_no_arq_payload_is_stored(client, redis, settings) -> None:
    # arq's default serializer is pickle; jobcast stores no arq payload at all (a worker runs a
    # job from the record its claim reads), and the record's params are JSON.
    from jobcast.protocol import loads

    job = await submit(client)
    assert [key async for key in redis.scan_iter(f"arq:job:{job['id']}*")] == []
    assert [key async for key in redis.scan_iter(f"arq:retry:{job['id']}*")] == []
    record = await redis.hgetall(f"{settings.key_prefix}:job:{job['id']}")
    assert record[b"kind"] == job["kind"].encode() and loads(record[b"params"]) == job["params"]


async def test_an_idle_sse_stream_gets_heartbeats_and_then_its_events(client, settings) -> None:
    # No worker: the job stays queued, and nothing but heartbeats flows (settings: one a second).
    job = await submit(client)
    async with client.get(f"/api/jobs/{job['id']}/events", headers={"Last-Event-ID": "1"}) as response:
        assert response.status == 200
        beats = 0
        async with asyncio.timeout(20):
            while beats < 2:
                line = await response.content.readline()
                # Nothing happened to the job (its place in line, first in it, is said once).
                assert not line.startswith(b"data:") or line.startswith(b'data: {"type":"queue"'), line
                beats += line == b": ping\n"
        # Heartbeats and events share the stream: a cancel still comes through after them.
        await client.post(f"/api/jobs/{job['id']}/cancel")
        async with asyncio.timeout(20):
            while not (line := await response.content.readline()).startswith(b"event: cancelled"):
                assert line, "the stream ended before the cancelled event"


async def test_the_open_streams_gauge_counts_exactly_what_is_open(client) -> None:
    async def gauge() -> dict[str, float]:
        text = await (await client.get("/metrics")).text()
        found = re.findall(r'^jobcast_open_streams\{transport="(\w+)"\} (\S+)$', text, re.M)
        return {transport: float(value) for transport, value in found}

    job = await submit(client)
    assert await gauge() == {"sse": 0, "websocket": 0}
    streams = [await client.get(f"/api/jobs/{job['id']}/events") for _ in range(3)]
    sockets = [await client.ws_connect("/api/ws") for _ in range(2)]
    await wait_for(lambda: _equals(gauge(), {"sse": 3, "websocket": 2}), what="3 SSE and 2 WebSockets")
    for stream in streams[:2]:
        stream.close()
    await sockets[0].close()
    await wait_for(lambda: _equals(gauge(), {"sse": 1, "websocket": 1}), what="1 of each left")
    streams[2].close()
    await sockets[1].close()
    await wait_for(lambda: _equals(gauge(), {"sse": 0, "websocket": 0}), what="none left")


async def _equals(value: object, expected: object) -> bool:
    return await value == expected  # type: ignore[misc]


async def test_the_redis_pool_is_bounded_and_a_burst_waits_for_it(aiohttp_client, settings) -> None:
    client = await aiohttp_client(create_app(settings.model_copy(update={"redis_max_connections": 2})))
    pool = client.app[REDIS].connection_pool
    assert pool.max_connections == 2
    answers = await asyncio.gather(*(client.get("/api/stats") for _ in range(40)))
    assert [r.status for r in answers] == [200] * 40
    assert len(pool._in_use_connections) + len(pool._available_connections) <= 2


async def test_a_caught_up_sse_stream_leaves_aiohttp_and_still_gets_everything(
    client, redis, settings
) -> None:
    """Once caught up, an SSE stream is held on its socket without aiohttp (server/transports/detached.py):
    aiohttp keeps no connection, request or task for it, and it still gets its heartbeats, every
    event, the terminal one, and then the end of the response."""

    from jobcast.protocol import EventType
    from jobcast.store.jobs import JobStore

    store = JobStore(redis, settings)
    server = client.server.runner.server
    # No keep-alive: once answered, a request's connection is gone, and only streams could stay.
    async with unkept_session(client) as session:
        job = await submit(session, body={"kind": "demo", "params": {"steps": 5}})  # no worker
        streams = [await session.get(f"/api/jobs/{job['id']}/events") for _ in range(3)]
        for response in streams:
            assert response.headers["Connection"] == "close"  # it ends with its connection
            assert (await response.content.readuntil(b"event: snapshot\n")).startswith(b"retry:")
        await wait_for(lambda: not server.connections, what="aiohttp to let go of the streams")
        for response in streams:
            await response.content.readuntil(b": ping\n")  # the heartbeat (every 1 s here)
        await store.publish(job["id"], EventType.STARTED, attempt=0)
        await store.publish(job["id"], EventType.PROGRESS, attempt=1, progress={"current": 1, "total": 5})
        await store.publish(job["id"], EventType.SUCCEEDED, attempt=1, result={"steps": 5})
        for response in streams:
            rest = await response.content.read()  # to the end of the response
            # Its place in line is live only, no seq: the job's events are what resumes.
            types = [t.decode() for t in re.findall(rb"event: (\w+)", rest) if t != b"queue"]
            assert types == ["started", "progress", "succeeded"] and b"id: 4\n" in rest
            response.release()
    channel = f"{settings.key_prefix}:events:{job['id']}"
    await wait_for(lambda: _gone(redis, channel), timeout=10, what="the channel to be unsubscribed")


async def _gone(redis: Any, channel: str) -> bool:
    return dict(await redis.pubsub_numsub(channel))[channel.encode()] == 0
