"""An arq worker for the job-throughput benchmark, as arq's docs show one: `python -m
bench.peers.arq_worker REDIS_URL POLL_DELAY_S`, running a no-op function 10 at a time."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from arq import create_pool, run_worker
from arq.connections import RedisSettings

READY_KEY = "bench:ready"  # bench/jobs.py reads it


async def noop(ctx: dict[str, Any]) -> None:
    return None


async def enqueue_and_wait(url: str, n: int, until: Callable[..., Awaitable[None]]) -> float:
    """Enqueue n no-op jobs as arq's docs show, wait until each has a result; seconds taken."""
    pool = await create_pool(RedisSettings.from_dsn(url))
    began = time.perf_counter()
    jobs = await asyncio.gather(*(pool.enqueue_job("noop") for _ in range(n)))
    keys = [f"arq:result:{job.job_id}" for job in jobs if job is not None]
    await until(lambda: pool.exists(*keys), len(keys))
    elapsed = time.perf_counter() - began
    await pool.aclose()
    return elapsed


async def steady(
    url: str,
    n: int,
    rate: float,
    paced: Callable[..., Awaitable[list[Any]]],
    until: Callable[..., Awaitable[None]],
) -> list[float]:
    """Enqueue n no-op jobs at `rate`; each one's enqueue→start delay in ms, from arq's own
    timestamps (the result's `enqueue_time` and `start_time`)."""
    pool = await create_pool(RedisSettings.from_dsn(url))
    jobs = [job for job in await paced(rate, n, lambda: pool.enqueue_job("noop")) if job is not None]
    await until(lambda: pool.exists(*(f"arq:result:{job.job_id}" for job in jobs)), len(jobs))
    results = [await job.result_info() for job in jobs]
    await pool.aclose()
    return [(r.start_time - r.enqueue_time).total_seconds() * 1000 for r in results if r is not None]


async def ready(ctx: dict[str, Any]) -> None:
    """Tell the bench this worker is connected (bench/jobs.py `wait_ready`)."""
    await ctx["redis"].sadd(READY_KEY, os.getpid())


def main() -> None:
    url, poll_delay = sys.argv[1], float(sys.argv[2])

    class WorkerSettings:
        functions = [noop]
        redis_settings = RedisSettings.from_dsn(url)
        max_jobs = 10
        poll_delay = 0.5
        handle_signals = True
        on_startup = ready

    WorkerSettings.poll_delay = poll_delay
    run_worker(WorkerSettings)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
