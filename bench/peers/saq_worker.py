"""A saq worker for the job-throughput benchmark, as saq's docs show one: `python -m
bench.peers.saq_worker REDIS_URL`, running a no-op function 10 at a time."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from saq import Queue, Worker

READY_KEY = "bench:ready"  # bench/jobs.py reads it


async def noop(ctx: dict[str, Any]) -> None:
    return None


async def progress5(ctx: dict[str, Any]) -> None:
    for step in range(1, 6):
        await ctx["job"].update(progress=step / 5)


async def enqueue_and_wait(
    url: str, n: int, until: Callable[..., Awaitable[None]], function: str = "noop"
) -> float:
    """Enqueue n jobs of `function` as saq's docs show, wait until none is incomplete; seconds taken."""
    queue = Queue.from_url(url)
    await queue.connect()
    began = time.perf_counter()
    await asyncio.gather(*(queue.enqueue(function) for _ in range(n)))

    async def finished() -> int:
        return n - int(await queue.count("incomplete"))

    await until(finished, n)
    elapsed = time.perf_counter() - began
    await queue.disconnect()
    return elapsed


async def steady(
    url: str,
    n: int,
    rate: float,
    paced: Callable[..., Awaitable[list[Any]]],
    until: Callable[..., Awaitable[None]],
) -> list[float]:
    """Enqueue n no-op jobs at `rate`; each one's enqueue→start delay in ms, from saq's own
    timestamps (`queued`, `started`)."""
    queue = Queue.from_url(url)
    await queue.connect()
    jobs = await paced(rate, n, lambda: queue.enqueue("noop"))

    async def finished() -> int:
        return n - int(await queue.count("incomplete"))

    await until(finished, n)
    done = [await queue.job(job.key) for job in jobs]
    await queue.disconnect()
    return [float(job.started - job.queued) for job in done if job is not None]


async def ready(ctx: dict[str, Any]) -> None:
    """Tell the bench this worker is connected (bench/jobs.py `wait_ready`)."""
    await ctx["worker"].queue.redis.sadd(READY_KEY, os.getpid())


async def main(url: str) -> None:
    queue = Queue.from_url(url)
    worker = Worker(queue, functions=[noop, progress5], concurrency=10, startup=ready)
    await worker.start()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
