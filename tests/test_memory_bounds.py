"""A `jobcast web` process's memory stays bounded when clients stop reading, against a real
process: what a slow client costs is its outbox (`JOBCAST_WATCHER_BUFFER_BYTES`) and the socket's
write buffer, never the traffic it misses."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from jobcast.protocol import EventType
from jobcast.store.jobs import JobStore, Submission
from tests.helpers import sse_events, wait_for

SLOW_READERS = 20
EVENTS = 20_000
MESSAGE = "m" * 1000
MIB = 1024 * 1024
# The stated bound (docs/security.md): per slow reader its outbox (1 MiB by default) and the
# transport's write buffer (64 KiB before the fast path declines), plus a fixed allowance for the
# allocator and the relay's pages. Without flow control each reader would cost the ~22 MiB of
# traffic it missed (440 MiB here).
RSS_BOUND = SLOW_READERS * (MIB + 64 * 1024) + 24 * MIB


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def open_streams(session: aiohttp.ClientSession) -> float:
    async with session.get("/metrics") as r:
        text = await r.text()
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("jobcast_open_streams")
    )


def never_reading_feed_client(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    return sock


async def test_twenty_feed_readers_that_never_read_leave_rss_bounded(spawn, redis, settings) -> None:
    web = spawn("web")
    await web.wait_http()
    store = JobStore(redis, settings)
    job_id = uuid.uuid4().hex
    await store.create(job_id, Submission("demo", {}))
    await store.publish(job_id, EventType.STARTED, attempt=1)

    async with aiohttp.ClientSession(web.url) as session:
        # One reader that keeps up: it must see the job's end however the others behave.
        healthy = asyncio.create_task(read_feed_until_end(session, job_id))
        slow = [never_reading_feed_client(web.port) for _ in range(SLOW_READERS)]
        try:
            await wait_for(streams_at_least(session, SLOW_READERS + 1), what="the feed readers to stream")
            before = rss_bytes(web.process.pid)
            for start in range(0, EVENTS, 500):
                progress = [
                    {"current": i, "total": EVENTS, "message": MESSAGE} for i in range(start + 1, start + 501)
                ]
                calls = [
                    (store.event_keys(job_id), store.event(job_id, EventType.PROGRESS, attempt=1, progress=p))
                    for p in progress
                ]
                await store.scripts.call_many("publish", calls)
            await store.publish(job_id, EventType.SUCCEEDED, attempt=1, result={"ok": True})
            seen = await asyncio.wait_for(healthy, 60)
            grown = rss_bytes(web.process.pid) - before
        finally:
            healthy.cancel()
            await asyncio.gather(healthy, return_exceptions=True)
            for sock in slow:
                sock.close()
    assert seen > 0
    assert grown < RSS_BOUND, f"RSS grew {grown / MIB:.0f} MiB (bound {RSS_BOUND / MIB:.0f} MiB)"


async def read_feed_until_end(session: aiohttp.ClientSession, job_id: str) -> int:
    """Events of the job the feed delivered, up to its `succeeded`."""
    seen = 0
    async with session.get("/api/events") as response:
        assert response.status == 200
        async for event in sse_events(response):
            if event.data.get("job_id") == job_id:
                seen += 1
                if event.event == "succeeded":
                    return seen
    raise AssertionError("the feed ended before the job did")


def streams_at_least(session: aiohttp.ClientSession, n: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await open_streams(session) >= n

    return check
