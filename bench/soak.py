"""A soak: mixed load on one `jobcast web` and one `jobcast worker` for a long while (30 minutes by
default), sampling what grows.

The load, bounded in rate and in open connections: about 30 submissions/s (one in ten fails once
and is retried, one in ten is cancelled while it runs), SSE streams opened and cut after a random
while, WebSockets that subscribe to a few jobs and close, and dashboard feed readers that
reconnect. Every `sample_every_s` it records the web's and the worker's RSS and open file
descriptors, Redis's clients and memory, and the web's open-streams gauge next to the streams the
load generator really holds open. The report gives the web's RSS slope over the last two thirds
of the run (least squares; the target is under 0.05 MiB/min), the largest gap between the
gauge and the truth while streams open and close, and the gauge once the load has stopped (it
must read 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench import processes
from bench.machine import rss_bytes
from jobcast.redis.client import create_redis
from jobcast.redis.embedded import RedisProcess

MIB = 1024 * 1024
SUBMIT_PER_S = 30
MAX_STREAMS = 150  # SSE streams held open at once by the load
MAX_SOCKETS = 30  # WebSockets held open at once
# Streams opened a second, all kinds together. Without a cap the rate follows the jobs: a stream to
# a job that has ended answers at once and the loop opens the next, so a faster worker meant five
# times the churn (and a saturated web) in one run and not in another.
OPENS_PER_S = 90


def fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def threads(pid: int) -> int:
    # A step in RSS that then stays flat can be a new thread's malloc arena (glibc gives each
    # thread its own, up to 8 per core): counted, to tell that from a leak.
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return 0


def slope_mib_per_min(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, bytes), in MiB per minute."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    slope = sum((t - mean_t) * (v - mean_v) for t, v in points) / var
    return round(slope * 60 / MIB, 4)


class Load:
    def __init__(self, url: str, deadline: float) -> None:
        self.url = url
        self.deadline = deadline
        self.jobs: list[str] = []
        self.streams = 0  # open right now, SSE and WebSocket
        self.to_cancel: asyncio.Queue[tuple[float, str]] = asyncio.Queue(maxsize=10_000)
        self.next_open = time.monotonic()
        self.counts = {
            "submitted": 0,
            "streams_opened": 0,
            "sockets_opened": 0,
            "feeds_opened": 0,
            "errors": 0,
        }

    async def submitter(self, session: aiohttp.ClientSession) -> None:
        n = 0
        while time.monotonic() < self.deadline:
            n += 1
            params: dict[str, Any] = {"steps": random.randint(5, 40), "step_ms": 100}
            if n % 10 == 0:
                params |= {"fail_at_step": 2, "fail_attempts": 1}
            try:
                async with session.post("/api/jobs", json={"kind": "demo", "params": params}) as response:
                    job = await response.json()
                self.counts["submitted"] += 1
                self.jobs = [*self.jobs[-200:], job["id"]]
                if n % 10 == 5:
                    self.to_cancel.put_nowait((time.monotonic() + 1.0, job["id"]))
            except (aiohttp.ClientError, KeyError):
                self.counts["errors"] += 1
            await asyncio.sleep(1 / SUBMIT_PER_S)

    async def canceller(self, session: aiohttp.ClientSession) -> None:
        """Cancels the jobs the submitter marked, a second after their submission (running)."""
        while True:
            due, job_id = await self.to_cancel.get()
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            try:
                async with session.post(f"/api/jobs/{job_id}/cancel") as response:
                    await response.read()
            except aiohttp.ClientError:
                self.counts["errors"] += 1

    async def paced(self) -> None:
        """Wait for this stream's turn: OPENS_PER_S at most, on a fixed schedule."""
        now = time.monotonic()
        self.next_open = max(self.next_open + 1 / OPENS_PER_S, now)
        await asyncio.sleep(self.next_open - now)

    async def sse(self, session: aiohttp.ClientSession, feed: bool) -> None:
        while time.monotonic() < self.deadline:
            if not self.jobs or self.streams >= MAX_STREAMS + MAX_SOCKETS:
                await asyncio.sleep(0.1)
                continue
            await self.paced()
            path = "/api/events" if feed else f"/api/jobs/{random.choice(self.jobs)}/events"
            try:
                async with asyncio.timeout(random.uniform(0.2, 5.0)), session.get(path) as response:
                    self.streams += 1
                    self.counts["feeds_opened" if feed else "streams_opened"] += 1
                    try:
                        async for _ in response.content:
                            pass
                    finally:
                        self.streams -= 1
            except TimeoutError:
                pass  # cut by the client, as browsers do when a tab closes
            except aiohttp.ClientError:
                self.counts["errors"] += 1

    async def websocket(self, session: aiohttp.ClientSession) -> None:
        while time.monotonic() < self.deadline:
            if not self.jobs:
                await asyncio.sleep(0.1)
                continue
            await self.paced()
            opened = False
            try:
                async with session.ws_connect("/api/ws") as ws:
                    opened = True
                    self.streams += 1
                    self.counts["sockets_opened"] += 1
                    for job_id in random.sample(self.jobs, min(3, len(self.jobs))):
                        await ws.send_json({"type": "subscribe", "job_id": job_id})
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(random.uniform(0.5, 5.0)):
                            async for _ in ws:
                                pass
            except aiohttp.ClientError:
                self.counts["errors"] += 1
            finally:
                # Counted open until the closing handshake is over, as the server counts it.
                self.streams -= opened


async def gauge_once_idle(session: aiohttp.ClientSession, timeout_s: float = 10.0) -> float:
    """The open-streams gauge once the load has stopped: it must come back to exactly 0 (a gauge
    that drifts, as one counting weak references did, stays above it)."""
    for _ in range(int(timeout_s / 0.2)):  # the server's gauge can only be polled
        if not (gauge := await open_streams_gauge(session)):
            break
        await asyncio.sleep(0.2)
    return gauge


async def open_streams_gauge(session: aiohttp.ClientSession) -> float:
    async with session.get("/metrics") as response:
        text = await response.text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("jobcast_open_streams{")
    )


async def _run(
    web_pid: int, worker_pid: int, port: int, redis: RedisProcess, seconds: float, every_s: float
) -> dict[str, Any]:
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    load = Load(url, started + seconds)
    samples: list[dict[str, Any]] = []
    client = create_redis(redis.url)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(url, connector=connector) as session:
        tasks = [
            asyncio.create_task(load.submitter(session)),
            asyncio.create_task(load.canceller(session)),
            *(asyncio.create_task(load.sse(session, feed=False)) for _ in range(MAX_STREAMS - 10)),
            *(asyncio.create_task(load.sse(session, feed=True)) for _ in range(10)),
            *(asyncio.create_task(load.websocket(session)) for _ in range(MAX_SOCKETS)),
        ]
        try:
            while time.monotonic() < load.deadline:
                await asyncio.sleep(every_s)
                info = await client.info()
                samples.append(
                    {
                        "t": round(time.monotonic() - started, 1),
                        "web_rss": rss_bytes(web_pid),
                        "worker_rss": rss_bytes(worker_pid),
                        "web_fds": fds(web_pid),
                        "web_threads": threads(web_pid),
                        "worker_fds": fds(worker_pid),
                        "redis_clients": info["connected_clients"],
                        "redis_memory": info["used_memory"],
                        "streams_gauge": await open_streams_gauge(session),
                        "streams_open": load.streams,
                    }
                )
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await client.aclose()
        gauge_after = await gauge_once_idle(session)
    tail = [s for s in samples if s["t"] >= seconds / 3]
    return {
        "seconds": seconds,
        "sample_every_s": every_s,
        "counts": load.counts,
        "web_rss_slope_mib_per_min": slope_mib_per_min([(s["t"], s["web_rss"]) for s in tail]),
        "worker_rss_slope_mib_per_min": slope_mib_per_min([(s["t"], s["worker_rss"]) for s in tail]),
        # Sampled while streams open and close: the two are read a moment apart.
        "largest_gauge_gap": max((abs(s["streams_gauge"] - s["streams_open"]) for s in samples), default=0),
        "gauge_after_load": gauge_after,
        "samples": samples,
    }


def soak(redis: RedisProcess, seconds: float, every_s: float) -> dict[str, Any]:
    with processes.server("jobcast", redis, JOBCAST_LOG_LEVEL="WARNING") as (web, port):
        worker = processes.worker(redis, JOBCAST_WORKER_MAX_JOBS="50")
        try:
            return asyncio.run(_run(web.pid, worker.pid, port, redis, seconds, every_s))
        finally:
            processes.stop(worker)
