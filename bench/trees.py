"""Trees of jobs: a parent with N no-op children (made in one script call, drained by 2 workers x
10 slots, then the parent's own run), beside the same N jobs submitted as a plain batch.

- **Drain**: from the first create call to the parent's end (the tree), or to the last job's end
  (the batch); the create call's own time apart.
- **Redis memory per job**: INFO's used_memory_dataset before and after making them, with no
  worker (used_memory would count the Lua heap one 10,001-job script call grows, which Redis keeps
  for later calls, and the script cache).
- **The parent's event rate**: its progress events (rolled up from its children's, at most
  `JOBCAST_PROGRESS_RATE_HZ` a second) over the drain, however many children end a second.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from bench import processes
from bench.jobs import WORKERS, until, wait_ready
from bench.machine import cpu_seconds
from jobcast.protocol import new_job_ids
from jobcast.redis.client import create_redis
from jobcast.redis.embedded import RedisProcess
from jobcast.settings import Settings
from jobcast.store.jobs import CreateCall, JobStore, Submission
from jobcast.tree import TreePlace

BATCH = 500


def _store(url: str, n: int) -> JobStore:
    settings = Settings(
        redis_url=url, key_prefix="jobcast", max_waiting_jobs=0, tree_max_jobs=n + 1, tree_max_children=n
    )
    return JobStore(create_redis(url), settings)


def _calls(store: JobStore, n: int, tree: bool) -> list[CreateCall]:
    ids = new_job_ids(n + 1)
    if not tree:
        return [store.create_call(job_id, Submission("noop", {})) for job_id in ids[1:]]
    root = TreePlace(awaits_children=True, tree_size=n + 1)
    return [
        store.create_call(ids[0], Submission("noop", {}), tree=root),
        *(
            store.create_call(job_id, Submission("noop", {}), tree=TreePlace(parent=ids[0], in_tree=True))
            for job_id in ids[1:]
        ),
    ]


async def _make(store: JobStore, calls: list[CreateCall], tree: bool) -> float:
    began = time.perf_counter()
    if tree:
        await store.create_tree(calls)
    else:
        for start in range(0, len(calls), BATCH):
            await store.create_many(calls[start : start + BATCH])
    return time.perf_counter() - began


async def _memory(url: str, n: int, tree: bool) -> float:
    """Redis bytes per job made, with no worker to run them."""
    store = _store(url, n)
    await store.redis.flushall()
    calls = _calls(store, n, tree)
    before = (await store.redis.info("memory"))["used_memory_dataset"]
    await _make(store, calls, tree)
    after = (await store.redis.info("memory"))["used_memory_dataset"]
    await store.redis.flushall()
    await store.redis.aclose()
    return round((after - before) / n)


async def _drain(url: str, n: int, tree: bool) -> dict[str, Any]:
    store = _store(url, n)
    calls = _calls(store, n, tree)
    began = time.perf_counter()
    create_s = await _make(store, calls, tree)
    done = store.keys.index_state("succeeded")
    await until(lambda: store.redis.zcard(done), n + 1 if tree else n)
    elapsed = time.perf_counter() - began
    answer: dict[str, Any] = {"create_s": round(create_s, 3), "seconds": round(elapsed, 3)}
    if tree:
        root = calls[0].job_id
        seq = int(await store.redis.hget(store.keys.job(root), "seq") or 0)
        # Its waiting_children, queued, started and succeeded events; the rest is its bar.
        progress = seq - 4
        answer |= {"parent_progress_events": progress, "parent_events_per_s": round(progress / elapsed, 1)}
    await store.redis.aclose()
    return answer


def drain(redis: RedisProcess, n: int, tree: bool) -> dict[str, Any]:
    asyncio.run(_memory(redis.url, 1, tree))  # flushes what the last run left
    env = processes.jobcast_env(redis, JOBCAST_KINDS="bench.peers.noop_kind", JOBCAST_WORKER_MAX_JOBS="10")
    command = [sys.executable, "-m", "jobcast", "worker"]
    workers = [processes.start(command, i % 2, env) for i in range(WORKERS)]
    try:
        wait_ready("jobcast", redis.url, workers)
        assert redis.process is not None
        pids = [w.pid for w in workers] + [redis.process.pid]
        before = [cpu_seconds(pid) for pid in pids]
        result = asyncio.run(_drain(redis.url, n, tree))
        used = [cpu_seconds(pid) - b for pid, b in zip(pids, before, strict=True)]
    finally:
        for worker in workers:
            processes.stop(worker)
    return {
        "shape": "tree" if tree else "batch",
        "jobs": n,
        **result,
        "jobs_per_s": round(n / result["seconds"], 1),
        "worker_cpu_us_per_job": round(sum(used[:-1]) * 1e6 / n),
        "redis_cpu_us_per_job": round(used[-1] * 1e6 / n),
        "redis_bytes_per_job": asyncio.run(_memory(redis.url, n, tree)),
    }


def trees(redis: RedisProcess, n: int, rounds: int) -> list[dict[str, Any]]:
    """The tree and the plain batch, alternating round by round."""
    return [drain(redis, n, tree) for _ in range(rounds) for tree in (True, False)]
