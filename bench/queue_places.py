"""What telling waiting jobs' watchers their place in line costs: 10,000 jobs waiting (no worker
runs), 1,000 SSE watchers each on its own waiting job, for a while with the places on (one pass a
second, JOBCAST_QUEUE_PLACE_INTERVAL_S=1) and a while with them off (0), one `jobcast web` each.
Figures: the web process's and Redis's CPU per second of each, and the `queue` events the
watchers got.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from bench import processes
from bench.machine import cpu_seconds
from jobcast.redis.client import create_redis
from jobcast.redis.embedded import RedisProcess
from jobcast.settings import Settings
from jobcast.store.jobs import JobStore, Submission


async def _fill(url: str, jobs: int) -> list[str]:
    redis = create_redis(url)
    await redis.flushall()
    store = JobStore(redis, Settings(redis_url=url, key_prefix="jobcast", max_waiting_jobs=0))
    ids: list[str] = []
    for start in range(0, jobs, 500):
        calls = [
            store.create_call(f"{i:032x}", Submission("demo", {"steps": 1}))
            for i in range(start, min(jobs, start + 500))
        ]
        await store.create_many(calls)
        ids += [call.job_id for call in calls]
    await redis.aclose()
    return ids


async def _watch(port: int, ids: list[str], seconds: float) -> int:
    """Hold an SSE stream on each job for `seconds`; the `queue` events they got."""
    got = 0
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:

        async def one(job_id: str) -> None:
            nonlocal got
            async with session.get(f"http://127.0.0.1:{port}/api/jobs/{job_id}/events") as response:
                async for line in response.content:
                    got += line.startswith(b"event: queue")

        tasks = [asyncio.create_task(one(job_id)) for job_id in ids]
        try:
            await asyncio.sleep(seconds)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return got


def cost(redis: RedisProcess, jobs: int, watchers: int, seconds: float) -> list[dict[str, Any]]:
    rows = []
    for interval in ("1", "0"):
        ids = asyncio.run(_fill(redis.url, jobs))
        with processes.server("jobcast", redis, JOBCAST_QUEUE_PLACE_INTERVAL_S=interval) as (proc, port):
            assert redis.process is not None
            watched = ids[-watchers:]  # the last in line: every place counts the most jobs ahead
            warm = asyncio.run(_watch(port, watched[:1], 0.5))  # the server is up and answering
            del warm
            before = cpu_seconds(proc.pid), cpu_seconds(redis.process.pid)
            began = time.perf_counter()
            events = asyncio.run(_watch(port, watched, seconds))
            elapsed = time.perf_counter() - began
            web_s, redis_s = cpu_seconds(proc.pid) - before[0], cpu_seconds(redis.process.pid) - before[1]
        rows.append(
            {
                "queue_places": interval != "0",
                "jobs_waiting": jobs,
                "watchers": watchers,
                "seconds": round(elapsed, 1),
                "queue_events": events,
                "web_cpu_ms_per_s": round(web_s * 1000 / elapsed, 1),
                "redis_cpu_ms_per_s": round(redis_s * 1000 / elapsed, 1),
            }
        )
    return rows
