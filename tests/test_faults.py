"""Faults heal by themselves: Redis restarts, a killed pub/sub connection, a client that stops
reading. Watchers see every seq, and slow ones never hold the others back."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

from jobcast.redis.embedded import free_port
from jobcast.server.keys import RELAY
from tests.helpers import (
    assert_contiguous,
    read_sse,
    small_send_buffer,
    sse_events,
    stalled_socket,
    submit,
    submit_waiting_job,
    wait_for,
)

LONG_DEMO = {"kind": "demo", "params": {"steps": 40, "step_ms": 50}}


class Watchers:
    """An SSE and a WebSocket watcher of one job, collecting events until its terminal one."""

    def __init__(self, client: Any, job_id: str) -> None:
        self.client = client
        self.job_id = job_id
        self.sse: list[dict[str, Any]] = []
        self.ws: list[dict[str, Any]] = []
        self.tasks = [asyncio.create_task(self._sse()), asyncio.create_task(self._ws())]

    async def _sse(self) -> None:
        url = f"/api/jobs/{self.job_id}/events"
        async with self.client.get(url, headers={"Last-Event-ID": "0"}) as response:
            async for event in sse_events(response):
                self.sse.append(event.data)

    async def _ws(self) -> None:
        async with self.client.ws_connect("/api/ws") as ws:
            await ws.send_json({"type": "subscribe", "job_id": self.job_id, "last_event_id": 0})
            while not self.ws or self.ws[-1]["type"] not in ("succeeded", "failed", "cancelled"):
                message = await ws.receive_json()
                if message["type"] != "subscribed":
                    self.ws.append(message)

    def seen(self, n: int) -> bool:
        return len(self.sse) >= n and len(self.ws) >= n

    async def finish(self, timeout: float = 60) -> None:
        async with asyncio.timeout(timeout):
            await asyncio.gather(*self.tasks)
        for events in (self.sse, self.ws):
            assert_contiguous(events, 1)
            assert events[-1]["type"] == "succeeded", events[-1]


async def test_redis_restart_while_streaming_loses_no_event(client, worker, redis_server) -> None:
    jobs = [await submit(client, body=LONG_DEMO) for _ in range(2)]
    watchers = [Watchers(client, job["id"]) for job in jobs]
    await wait_for(lambda: all(w.seen(5) for w in watchers), what="events before the restart")
    await asyncio.to_thread(redis_server.restart)
    for w in watchers:
        await w.finish()
    assert client.app[RELAY].reconnects >= 1


async def test_killed_pubsub_connection_is_repaired_from_history(client, worker, redis) -> None:
    job = await submit(client, body=LONG_DEMO)
    watchers = Watchers(client, job["id"])
    await wait_for(lambda: watchers.seen(4), what="events before the kill")
    # Events published before the relay resubscribes must come back from history.
    clients = (await redis.execute_command("CLIENT", "LIST", "TYPE", "pubsub")).decode().splitlines()
    relay_ids = [line.split()[0].split("=")[1] for line in clients if " name=jobcast-relay " in line]
    assert len(relay_ids) == 1, clients
    assert await redis.execute_command("CLIENT", "KILL", "ID", relay_ids[0]) == 1
    await watchers.finish()
    assert client.app[RELAY].reconnects == 1


async def test_a_watcher_that_stops_reading_does_not_hold_back_others(
    aiohttp_client, settings, spawn
) -> None:
    from jobcast.server.app import create_app

    small = settings.model_copy(update={"watcher_buffer": 64})
    app = create_app(small)
    app.middlewares.append(small_send_buffer)
    client = await aiohttp_client(app)
    spawn("worker", JOBCAST_PROGRESS_RATE_HZ="5000")
    job = await submit(client, body={"kind": "demo", "params": {"steps": 3000, "step_ms": 1}})
    path = f"/api/jobs/{job['id']}/events"

    # A client with a tiny receive window that never reads what it asked for.
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nLast-Event-ID: 0\r\nX-Stall: 1\r\n\r\n"
    stalled = stalled_socket(client.port, request.encode())
    try:
        hub = client.app[RELAY].hub
        key = client.app[RELAY].broker.job(job["id"]).key
        await wait_for(lambda: key in hub.topics, what="the stalled watcher to join")
        (slow,) = (*hub.topics[key].live, *hub.topics[key].joining)
        peak = 0

        async def watch_outbox() -> None:
            nonlocal peak
            while True:
                peak = max(peak, len(slow.outbox))
                await asyncio.sleep(0.005)

        sampler = asyncio.create_task(watch_outbox())
        fast = await read_sse(client, path, headers={"Last-Event-ID": "0"}, timeout=60)
        sampler.cancel()
        assert_contiguous(fast, 1)
        assert fast[-1].event == "succeeded"
        # The stalled watcher's queue stayed bounded by dropping superseded progress.
        assert peak <= small.watcher_buffer
        assert slow.outbox.dropped > 0 or slow.outbox.closed == "overflow"

        # Once it reads again, it still learns every state change and how the job ended.
        stalled.setblocking(False)
        loop = asyncio.get_running_loop()
        received = b""
        async with asyncio.timeout(30):
            while b"event: succeeded" not in received and slow.outbox.closed is None:
                received += await loop.sock_recv(stalled, 65536)
        if slow.outbox.closed is None:
            assert b"event: queued" in received and b"event: started" in received
    finally:
        stalled.close()


async def test_readyz_follows_redis_and_healthz_only_liveness(client, redis_server) -> None:
    async def status(path: str) -> int:
        async with client.get(path) as response:
            return response.status

    await wait_for(lambda: _is(status("/readyz"), 200), what="ready")
    await asyncio.to_thread(redis_server.stop)
    try:
        await wait_for(lambda: _is(status("/readyz"), 503), what="not ready while Redis is down")
        assert await status("/healthz") == 200  # alive: do not restart it for Redis's sake
    finally:
        await asyncio.to_thread(redis_server.start)
    await wait_for(lambda: _is(status("/readyz"), 200), what="ready again once Redis is back")


async def _is(status: Any, expected: int) -> bool:
    return await status == expected


async def test_worker_check_passes_with_a_live_worker_and_fails_without_redis(spawn, env) -> None:
    def check(**extra: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "jobcast", "worker", "--check"]
        return subprocess.run(command, env={**env, **extra}, capture_output=True, text=True, timeout=30)

    assert (await asyncio.to_thread(check)).returncode == 1  # no worker yet
    spawn("worker")
    await wait_for(lambda: asyncio.to_thread(lambda: check().returncode == 0), what="a worker heartbeat")
    gone = await asyncio.to_thread(check, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    assert gone.returncode == 1 and "Redis does not answer" in gone.stderr


async def test_a_caught_up_stream_whose_client_stops_reading_is_cut_off_after_the_write_timeout(
    aiohttp_client, settings, redis
) -> None:
    from jobcast.protocol import EventType
    from jobcast.server.app import create_app
    from jobcast.store.jobs import JobStore

    app = create_app(settings.model_copy(update={"write_timeout_s": 0.5}))
    app.middlewares.append(small_send_buffer)
    client = await aiohttp_client(app)
    # No keep-alive: aiohttp is then left holding the stalled stream's connection, or nothing.
    job = await submit_waiting_job(client)
    path = f"/api/jobs/{job['id']}/events"
    stalled = stalled_socket(
        client.port, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Stall: 1\r\n\r\n".encode()
    )
    try:
        hub = client.app[RELAY].hub
        key = client.app[RELAY].broker.job(job["id"]).key
        await wait_for(lambda: key in hub.topics and hub.topics[key].live, what="the watcher to go live")
        # Caught up (its snapshot was small) and handed over; now it never reads again.
        await wait_for(
            lambda: not client.server.runner.server.connections, what="the stream to leave aiohttp"
        )
        store = JobStore(redis, settings)
        await store.publish(job["id"], EventType.STARTED, attempt=0)
        message = "x" * 2000
        for i in range(200):  # far more than the socket's buffers hold: its writes pause
            await store.publish(
                job["id"],
                EventType.PROGRESS,
                attempt=1,
                progress={"current": i, "total": 200, "message": message},
            )
        # Paused longer than the write timeout: cut off, and its subscription gone with it.
        await wait_for(lambda: key not in hub.topics, timeout=10, what="the stalled stream to be cut off")
    finally:
        stalled.close()


async def test_a_watcher_who_saw_events_a_failover_lost_still_learns_how_the_job_ended(
    client, settings, redis
) -> None:
    # A failover to a replica that had not received a job's last events: Redis goes back to an
    # earlier seq, and the job goes on from there, reusing seqs the watcher saw. Made here by
    # restoring the job's record and history as they were a few events earlier, then cutting the
    # relay's pub/sub connection as the dead primary did.
    from jobcast.protocol import EventType
    from jobcast.store.jobs import JobStore

    store = JobStore(redis, settings)
    job = await submit(client, "/api/jobs", {"kind": "demo", "params": {"steps": 20}})
    keys = [store.keys.job(job["id"]), store.keys.history(job["id"])]
    await store.publish(job["id"], EventType.STARTED, attempt=0)
    replica = [await redis.dump(key) for key in keys]  # the replica got this far (seq 2)
    for i in range(5):
        await store.publish(job["id"], EventType.PROGRESS, attempt=1, progress={"current": i, "total": 20})
    async with client.get(f"/api/jobs/{job['id']}/events", headers={"Last-Event-ID": "0"}) as r:
        events = sse_events(r)
        seen = [await anext(events) for _ in range(7)]
        assert seen[-1].id == 7
        for key, dumped in zip(keys, replica, strict=True):
            await redis.restore(key, 0, dumped, replace=True)
        connections = client.app[RELAY].connections
        await redis.client_kill_filter(_type="pubsub")
        await wait_for(lambda: client.app[RELAY].connections > connections, what="the relay to reconnect")
        # The job goes on on the new primary and ends at seq 4, below what the watcher saw.
        await store.publish(job["id"], EventType.PROGRESS, attempt=1, progress={"current": 19, "total": 20})
        await store.publish(job["id"], EventType.SUCCEEDED, attempt=1, result={"steps": 20})
        async with asyncio.timeout(10):
            rest = [event async for event in events]
    # A snapshot as Redis has the job now, then what came after it: the end.
    assert (rest[0].event, rest[0].data["last_event_id"]) == ("snapshot", 2)
    assert [e.event for e in rest[1:]] == ["progress", "succeeded"]
