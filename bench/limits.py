"""`/healthz` while clients hit every limit at once: the server must keep serving everyone else.

One `jobcast web` in owner mode, with small limits, while concurrent loops send oversized bodies
(413), too many submissions (429), uploads past the disk quota (413), unparseable requests (400)
and slowloris connections (408), for a bounded time and count. A prober asks `/healthz` on a
connection of its own every 20 ms and records how long each answer takes.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import aiohttp

from bench import processes
from bench.machine import percentiles
from jobcast.redis.embedded import RedisProcess

SETTINGS = {
    "JOBCAST_SECRET": "bench-secret-for-the-limits-run-0123456789",
    "JOBCAST_MAX_SUBMISSIONS_PER_MINUTE": "20",
    "JOBCAST_DISK_QUOTA_BYTES": "100000",
    "JOBCAST_HEADER_TIMEOUT_S": "1",
}
SLOWLORIS = 200  # connections held open at once, trickling header bytes
PROBE_EVERY_S = 0.02


async def _hammer(
    url: str, body: Callable[[], dict[str, Any]], deadline: float, statuses: Counter[int]
) -> None:
    jar = aiohttp.CookieJar(unsafe=True)
    # As the browser's own page would post: same-origin, with its session cookie.
    same_origin = {"Sec-Fetch-Site": "same-origin"}
    async with aiohttp.ClientSession(url, cookie_jar=jar, headers=same_origin) as session:
        while time.monotonic() < deadline:
            async with session.post("/api/jobs", **body()) as response:
                await response.read()
                statuses[response.status] += 1


async def _raw(port: int, request: bytes, deadline: float, statuses: Counter[int]) -> None:
    while time.monotonic() < deadline:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        answer = await reader.read()
        writer.close()
        statuses[int(answer.split(b" ", 2)[1]) if answer else 0] += 1


async def _slowloris(port: int, deadline: float, statuses: Counter[int]) -> None:
    while time.monotonic() < deadline:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        try:
            while not reader.at_eof() and time.monotonic() < deadline:
                writer.write(b"X")
                try:
                    answer = await asyncio.wait_for(reader.read(), 0.3)
                except TimeoutError:
                    continue
                statuses[int(answer.split(b" ", 2)[1]) if answer else 0] += 1
                break
        except ConnectionError:
            statuses[0] += 1
        finally:
            writer.close()


async def _probe(url: str, deadline: float) -> list[float]:
    latencies = []
    async with aiohttp.ClientSession(url) as session:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            async with session.get("/healthz") as response:
                await response.read()
                assert response.status == 200
            latencies.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(PROBE_EVERY_S)
    return latencies


async def _run(port: int, seconds: float) -> dict[str, Any]:
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + seconds
    statuses: dict[str, Counter[int]] = {name: Counter() for name in ("body", "rate", "quota", "bad", "slow")}
    big = {"json": {"kind": "demo", "params": {"pad": "x" * (2 * 1024 * 1024)}}}
    rows = b"a,b\n" + b"1,2\n" * 20_000

    def upload() -> dict[str, Any]:
        form = aiohttp.FormData()
        form.add_field("kind", "convert")
        form.add_field("file", rows, filename="rows.csv")
        return {"data": form}

    long_url = b"GET /api/jobs?" + b"a" * 9000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    loops = [
        _hammer(url, lambda: big, deadline, statuses["body"]),
        _hammer(url, lambda: {"json": {"kind": "demo", "params": {"steps": 1}}}, deadline, statuses["rate"]),
        _hammer(url, upload, deadline, statuses["quota"]),
        _raw(port, long_url, deadline, statuses["bad"]),
        *(_slowloris(port, deadline, statuses["slow"]) for _ in range(SLOWLORIS)),
    ]
    probe = asyncio.ensure_future(_probe(url, deadline))
    await asyncio.gather(*loops)
    latencies = await probe
    return {
        "seconds": seconds,
        "slowloris_connections": SLOWLORIS,
        "statuses": {name: {str(k): n for k, n in counts.items()} for name, counts in statuses.items()},
        "healthz_ms": percentiles(latencies),
    }


def healthz_under_limits(redis: RedisProcess, seconds: float) -> dict[str, Any]:
    with processes.server("jobcast", redis, **SETTINGS) as (_, port):
        return asyncio.run(_run(port, seconds))
