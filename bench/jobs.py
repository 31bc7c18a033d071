"""Job throughput and latency, side by side: jobcast, arq (its default poll, and a tuned one) and
saq, each as its documented API shows, on the same Redis with the same workers: 2 worker processes
running 10 jobs at once each.

- **Drain**: N no-op jobs enqueued at once, from the first enqueue to the last completion.
- **Drain with progress**: the same, each job reporting progress 5 times through the system's own
  mechanism (jobcast: `ctx.progress.update`, coalesced to `JOBCAST_PROGRESS_RATE_HZ`, so the
  report gives how many progress events each job really published; saq: `job.update`). arq has
  no progress mechanism and is left out.
- **Steady rate**: no-op jobs enqueued one at a time at a fixed rate (200/s), and each job's delay
  from its enqueue to its start, as the system itself records both (jobcast: the job's
  `created_at` and `started_at`; arq: the result's `enqueue_time` and `start_time`; saq: the job's
  `queued` and `started`; all in milliseconds).

Each system enqueues through its own client in this process (jobcast: `JobStore.create_many`, the
batch path `POST /api/jobs/batch` uses; arq: `enqueue_job`; saq: `Queue.enqueue`), so what is
compared is the queues, not HTTP. CPU is the workers' and Redis's, per job. Redis is emptied
between systems, and systems alternate round by round.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from bench import processes
from bench.machine import cpu_seconds
from bench.peers import arq_worker, saq_worker
from jobcast.protocol import Keys
from jobcast.redis.client import create_redis
from jobcast.redis.embedded import RedisProcess
from jobcast.settings import Settings
from jobcast.store.jobs import JobStore, Submission

SYSTEMS = ("jobcast", "arq", "arq-tuned", "saq")
WORKERS = 2
POLL = {"arq": "0.5", "arq-tuned": "0.01"}
BATCH = 500


# jobcast drained with limits and fair turns (bench `jobs_limits`): owner mode, the jobs spread
# over OWNERS owners. "owners": no fair turns, no limits; "fair": fair turns; "limits-idle": fair
# turns, a kind limit and an owner limit that never bind; "limit-binding" and "limit-half": fair
# turns and the kind limited to LIMIT (2 x LIMIT) running at once of the 20 slots.
OWNERS = 100
LIMIT = 5
SECRET = "bench-secret-for-the-fair-turns-run-0123456789"
VARIANTS: dict[str, dict[str, str]] = {
    # What owner mode costs by itself (owner indexes and feeds), and fair turns on top of it.
    "owners": {"JOBCAST_SECRET": SECRET, "JOBCAST_FAIR_OWNERS": "false"},
    "fair": {"JOBCAST_SECRET": SECRET},
    "limits-idle": {
        "JOBCAST_SECRET": SECRET,
        "JOBCAST_KIND_MAX_RUNNING": '{"noop": 1000}',
        "JOBCAST_MAX_RUNNING_PER_OWNER": "1000",
    },
    "limit-binding": {"JOBCAST_SECRET": SECRET, "JOBCAST_KIND_MAX_RUNNING": f'{{"noop": {LIMIT}}}'},
    # Half the slots: the same binding limit, with room for a few jobs a claim.
    "limit-half": {"JOBCAST_SECRET": SECRET, "JOBCAST_KIND_MAX_RUNNING": f'{{"noop": {2 * LIMIT}}}'},
}


def _workers(system: str, redis: RedisProcess) -> list[Any]:
    """The system's worker processes, one per core (Redis shares the second)."""
    py = sys.executable
    env: dict[str, str] = {}
    if system.startswith("jobcast"):
        command = [py, "-m", "jobcast", "worker"]
        variant = VARIANTS.get(system.removeprefix("jobcast "), {})
        env = processes.jobcast_env(
            redis, JOBCAST_KINDS="bench.peers.noop_kind", JOBCAST_WORKER_MAX_JOBS="10", **variant
        )
    elif system.startswith("arq"):
        command = [py, "-m", "bench.peers.arq_worker", redis.url, POLL[system]]
    else:
        command = [py, "-m", "bench.peers.saq_worker", redis.url]
    return [processes.start(command, i % 2, env) for i in range(WORKERS)]


async def _enqueue_and_wait(system: str, url: str, n: int, function: str, live: bool = False) -> float:
    """Enqueue n jobs of `function` (`noop`, `progress5`), wait for the last to complete; seconds
    from the first enqueue. `live`: each job its own submission, all at once while the workers
    drain (as saq's own enqueue always is here), rather than batches of 1,000."""
    if system.startswith("jobcast"):
        owners = system != "jobcast"
        variant = VARIANTS.get(system.removeprefix("jobcast "), {})
        settings = Settings(
            redis_url=url,
            key_prefix="jobcast",
            max_waiting_jobs=0,
            secret=SECRET if owners else None,
            fair_owners=variant.get("JOBCAST_FAIR_OWNERS", "true") == "true",
        )
        redis = create_redis(url, key_prefix=settings.redis_key_prefix)
        store = JobStore(redis, settings)
        began = time.perf_counter()
        stop = asyncio.Event()
        running = asyncio.create_task(_most_running(redis, store.keys.leases, stop)) if owners else None
        for start in range(0, n, BATCH):
            count = min(n, start + BATCH) - start
            calls = [
                store.create_call(
                    uuid.uuid4().hex,
                    Submission(function, {}),
                    owner=f"owner-{i % OWNERS}" if owners else None,
                )
                for i in range(start, start + count)
            ]
            if live:
                await asyncio.gather(*(store.create_many([call]) for call in calls))
            else:
                await store.create_many(calls)
        done_key = store.keys.index_state("succeeded")
        await until(lambda: redis.zcard(done_key), n)
        elapsed = time.perf_counter() - began
        stop.set()
        if running is not None:
            MOST_RUNNING[system] = await running
        await redis.aclose()
        return elapsed
    if system.startswith("arq"):
        return await arq_worker.enqueue_and_wait(url, n, until)
    return await saq_worker.enqueue_and_wait(url, n, until, function)


async def _progress_events_per_job(url: str) -> float:
    """jobcast: the progress events its jobs published, on average (after coalescing): a job's
    last seq less its queued, started and succeeded."""
    redis = create_redis(url)
    keys = JobStore(redis, Settings(redis_url=url, key_prefix="jobcast")).keys
    ids = await redis.zrange(keys.index_state("succeeded"), 0, 199)
    async with redis.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hget(keys.job(job_id.decode()), "seq")
        seqs = await pipe.execute()
    await redis.aclose()
    return round(sum(int(seq) - 3 for seq in seqs) / max(1, len(seqs)), 2)


# The most jobs seen running at once (leases held) in a drain, per jobcast variant.
MOST_RUNNING: dict[str, int] = {}


async def _most_running(redis: Any, leases: str, stop: asyncio.Event) -> int:
    """Sample the leases held every millisecond until `stop`; the most seen (every bench job is
    `noop`, so each lease is a running job of the limited kind). At a fixed pace, so that every
    variant pays the sampler alike: sampling as fast as Redis answered took up to a fifth of the
    core Redis shares, the more the slower the variant (tests/test_limits.py checks the limits
    hold, from samples and from every job's start and end)."""
    most = 0
    while not stop.is_set():
        most = max(most, await redis.hlen(leases))
        await asyncio.sleep(0.001)
    return most


def drain(
    system: str, redis: RedisProcess, n: int, function: str = "noop", live: bool = False
) -> dict[str, Any]:
    client_loop = asyncio.new_event_loop()
    try:
        client_loop.run_until_complete(_flush(redis.url))
    finally:
        client_loop.close()
    workers = _workers(system, redis)
    try:
        wait_ready(system, redis.url, workers)
        assert redis.process is not None
        pids = [w.pid for w in workers] + [redis.process.pid]
        before = [cpu_seconds(pid) for pid in pids]
        client_before = time.process_time()
        elapsed = asyncio.run(_enqueue_and_wait(system, redis.url, n, function, live))
        client_used = time.process_time() - client_before
        used = [cpu_seconds(pid) - b for pid, b in zip(pids, before, strict=True)]
        progress_events = (
            asyncio.run(_progress_events_per_job(redis.url))
            if system == "jobcast" and function == "progress5"
            else None
        )
    finally:
        for worker in workers:
            processes.stop(worker)
    return {
        "system": system,
        "function": function,
        "progress_events_per_job": progress_events,
        "most_running": MOST_RUNNING.pop(system, None),
        "jobs": n,
        "seconds": round(elapsed, 3),
        "jobs_per_s": round(n / elapsed, 1),
        "cpu_us_per_job": round(sum(used) * 1e6 / n),
        "worker_cpu_us_per_job": round(sum(used[:-1]) * 1e6 / n),
        "redis_cpu_us_per_job": round(used[-1] * 1e6 / n),
        # The enqueuing client's (this process, on the load core with Redis), apart from the rest.
        "client_cpu_us_per_job": round(client_used * 1e6 / n),
    }


# Where the peers' workers say they are ready (saq's `startup`, arq's `on_startup`); jobcast's
# register in their deployment's worker set at start.
READY_KEY = "bench:ready"


def wait_ready(system: str, url: str, workers: list[Any], prefix: str = "jobcast") -> None:
    """Until every worker has connected and registered, so that a drain measures the queue and
    not the workers' start (the first run of a part also waits out its imports)."""
    keyed = Settings(redis_url=url, key_prefix=prefix).redis_key_prefix
    key = Keys(keyed).workers

    async def ready() -> int:
        for worker in workers:
            if worker.poll() is not None:
                raise RuntimeError(f"{worker.args} exited with {worker.returncode}")
        if system.startswith("jobcast"):
            return int(await redis.zcard(key))
        return int(await redis.scard(READY_KEY))

    async def wait() -> None:
        try:
            await until(ready, len(workers), within_s=60)
        finally:
            await redis.aclose()

    redis = create_redis(url, key_prefix=keyed)
    asyncio.run(wait())


async def until(count: Callable[[], Awaitable[int]], target: int, within_s: float = 300) -> None:
    """Poll `count` until it reaches `target` (bounded: a system that stalls fails the run)."""
    deadline = time.monotonic() + within_s
    while (await count()) < target:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{target} jobs did not finish within {within_s:g} s")
        await asyncio.sleep(0.01)


async def _flush(url: str) -> None:
    redis = create_redis(url)
    await redis.flushall()
    await redis.aclose()


def throughput(redis: RedisProcess, n: int, rounds: int) -> list[dict[str, Any]]:
    return [drain(system, redis, n) for _ in range(rounds) for system in SYSTEMS]


def throughput_with_limits(redis: RedisProcess, n: int, rounds: int) -> list[dict[str, Any]]:
    """The drain with limits and fair turns, beside plain jobcast and saq, round by round."""
    systems = ("jobcast", *(f"jobcast {v}" for v in VARIANTS), "saq")
    return [drain(system, redis, n) for _ in range(rounds) for system in systems]


def throughput_live(redis: RedisProcess, n: int, rounds: int) -> list[dict[str, Any]]:
    """The drain as a live system runs it: every job its own submission, all sent while the
    workers drain, jobcast beside saq round by round."""
    return [drain(system, redis, n, live=True) for _ in range(rounds) for system in ("jobcast", "saq")]


def throughput_with_progress(redis: RedisProcess, n: int, rounds: int) -> list[dict[str, Any]]:
    return [drain(system, redis, n, "progress5") for _ in range(rounds) for system in ("jobcast", "saq")]


def latency(redis: RedisProcess, rate: float, seconds: float, rounds: int) -> list[dict[str, Any]]:
    """Enqueue→start delays at a steady rate, systems alternating round by round."""
    return [steady(system, redis, rate, seconds) for _ in range(rounds) for system in SYSTEMS]


def steady(system: str, redis: RedisProcess, rate: float, seconds: float) -> dict[str, Any]:
    asyncio.run(_flush(redis.url))
    workers = _workers(system, redis)
    try:
        wait_ready(system, redis.url, workers)
        delays_ms = asyncio.run(_steady(system, redis.url, rate, int(rate * seconds)))
    finally:
        for worker in workers:
            processes.stop(worker)
    delays_ms.sort()
    return {
        "system": system,
        "rate": rate,
        "jobs": len(delays_ms),
        "p50_ms": percentile(delays_ms, 0.50),
        "p99_ms": percentile(delays_ms, 0.99),
        "max_ms": delays_ms[-1],
        # Every system stamps whole milliseconds, so the percentiles are whole too; the mean of
        # differences of truncated stamps has no such step (truncation errors cancel on average).
        "mean_ms": round(sum(delays_ms) / len(delays_ms), 3),
    }


def percentile(ordered: list[float], q: float) -> float:
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


async def _paced(rate: float, n: int, enqueue: Callable[[], Awaitable[Any]]) -> list[Any]:
    """Call `enqueue` n times, one every 1/rate s on a fixed schedule (a late call does not push
    the later ones back)."""
    began = time.perf_counter()
    out = []
    for i in range(n):
        await asyncio.sleep(max(0.0, began + i / rate - time.perf_counter()))
        out.append(await enqueue())
    return out


async def _steady(system: str, url: str, rate: float, n: int) -> list[float]:
    """Each job's enqueue→start delay in ms."""
    if system == "jobcast":
        redis = create_redis(url)
        store = JobStore(redis, Settings(redis_url=url, key_prefix="jobcast", max_waiting_jobs=0))

        async def enqueue() -> str:
            job_id = uuid.uuid4().hex
            await store.create(job_id, Submission("noop", {}))
            return job_id

        ids = await _paced(rate, n, enqueue)
        await until(lambda: redis.zcard(store.keys.index_state("succeeded")), n)
        async with redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hmget(store.keys.job(job_id), "created_at", "started_at")
            times = await pipe.execute()
        await redis.aclose()
        return [_ms_between(created.decode(), started.decode()) for created, started in times]
    if system.startswith("arq"):
        return await arq_worker.steady(url, n, rate, _paced, until)
    return await saq_worker.steady(url, n, rate, _paced, until)


def _ms_between(earlier: str, later: str) -> float:
    parse = datetime.fromisoformat
    return (parse(later) - parse(earlier)).total_seconds() * 1000
