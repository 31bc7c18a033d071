"""Redis bytes per job, from `INFO memory` (what the server holds for N such jobs, indexes and
all, divided by N; the dashboard feed's history aside, as it is capped in all) and `MEMORY USAGE`
(one job's record and history): while its history is whole, and once the janitor has compacted
it.

The events are published through the same script the workers use, as fast as Redis takes them:
a job that ran 20 minutes at 10 Hz leaves the same records whatever the clock said.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from jobcast.files.local import FileStore
from jobcast.files.storage import DirectoryStorage
from jobcast.jobs.upkeep.janitor import Janitor, forget_finished
from jobcast.protocol import EventType, Priority
from jobcast.redis.client import create_redis
from jobcast.redis.embedded import RedisProcess
from jobcast.settings import Settings
from jobcast.store.jobs import JobStore, Submission
from jobcast.store.scripts import SCRIPT_NAMES

# (what, progress events, jobs measured together)
CASES = (
    ("demo, 20 steps", 20, 200),
    ("2,000 steps over 10 s (100 published)", 100, 100),
    ("20 min at 10 Hz (12,000 published)", 12_000, 20),
)
# Enough jobs that the allocator's noise (a few KB either way, more with libc's malloc than with
# jemalloc) stays small beside what they hold.
QUICK_CASES = (("demo, 20 steps", 20, 200), ("200 progress events", 200, 20))
MESSAGE = "step"


async def _used_memory(store: JobStore) -> int:
    """What Redis holds, less the dashboard feed's history: that one is capped in all
    (`history_max_events` entries), so it is no cost per job. Less the clients' buffers: a
    connection's query buffer, grown by pipelined batches, is no cost per job either (closing the
    pool's connections first is not enough: Redis may answer the next connection before it has
    read the old ones' close, and the buffers were a few hundred bytes per job in a 20-job case)."""
    await store.redis.connection_pool.disconnect()
    # And less the slow log: compacting a 12,000-event history takes Redis over 10 ms, and each
    # such call is kept with its arguments (about 1 KB), 128 at most however many jobs there are.
    await store.redis.slowlog_reset()
    stats = await store.redis.memory_stats()
    feed = await store.redis.memory_usage(store.keys.feed().history, samples=0) or 0
    return int(stats["total.allocated"]) - int(stats["clients.normal"]) - feed


async def _job(store: JobStore, progress_events: int) -> str:
    job_id = uuid.uuid4().hex
    await store.create(job_id, Submission("demo", {"steps": progress_events, "step_ms": 100}))
    await store.publish(job_id, EventType.STARTED, attempt=1)
    for start in range(0, progress_events, 500):
        calls = [
            (
                store.event_keys(job_id),
                store.event(
                    job_id,
                    EventType.PROGRESS,
                    attempt=1,
                    progress={"current": i, "total": progress_events, "message": MESSAGE},
                ),
            )
            for i in range(start + 1, min(start + 500, progress_events) + 1)
        ]
        await store.scripts.call_many("publish", calls)
    await store.publish(job_id, EventType.SUCCEEDED, attempt=1, result={"rows": progress_events})
    # What a worker's claim and finish do to the queue (no worker runs here).
    await store.redis.zrem(store.keys.queue(Priority.DEFAULT.value), job_id)
    return job_id


async def _job_bytes(store: JobStore, job_id: str) -> dict[str, int]:
    redis = store.redis
    record = await redis.memory_usage(store.keys.job(job_id), samples=0) or 0
    history = await redis.memory_usage(store.keys.history(job_id), samples=0) or 0
    raw = sum(len(r) for r in await redis.lrange(store.keys.history(job_id), 0, -1))
    return {"record": record, "history": history, "history_raw": raw}


async def _case(
    url: str, what: str, progress_events: int, jobs: int, files: FileStore, listpack_value: int
) -> dict[str, Any]:
    settings = Settings(redis_url=url, key_prefix=f"fp{uuid.uuid4().hex[:6]}", history_grace_s=0)
    redis = create_redis(url)
    try:
        # The "ziplist" names: Redis 7 takes them as aliases of its listpack settings, 6.2 as its own.
        await redis.config_set("hash-max-ziplist-value", listpack_value)
        await redis.config_set("zset-max-ziplist-value", listpack_value)
        # Each case on an empty server (the harness's own): the keyspace's hash tables, which
        # double as keys are added, then grow by the case's jobs alone.
        await redis.flushdb()
        store = JobStore(redis, settings)
        # Loaded before measuring: Redis's script cache is no cost per job.
        for name in SCRIPT_NAMES:
            await store.scripts.load(name)
        before = await _used_memory(store)
        ids = [await _job(store, progress_events) for _ in range(jobs)]
        whole = await _used_memory(store)
        one_whole = await _job_bytes(store, ids[0])
        await Janitor(store, DirectoryStorage(files)).compact_due()
        compacted = await _used_memory(store)
        one_compacted = await _job_bytes(store, ids[0])
        # What the compacted jobs hold, measured by taking it away: every trace forget leaves
        # nothing of. Measured against `before` instead, a case of 20 long jobs carried a
        # kilobyte a job of whatever the 48 MB of whole histories left behind in Redis (it moved
        # by ±1 KB from run to run while the jobs' own keys did not change).
        await forget_finished(store, DirectoryStorage(files), ids)
        forgotten = await _used_memory(store)
    finally:
        await redis.aclose()
    return {
        "job": what,
        "listpack_value": listpack_value,
        "progress_events": progress_events,
        "jobs": jobs,
        "bytes_per_job_whole": round((whole - before) / jobs),
        "bytes_per_job_compacted": round((compacted - forgotten) / jobs),
        "history_bytes_per_record_byte": round(one_whole["history"] / max(one_whole["history_raw"], 1), 2),
        "one_job_whole": one_whole,
        "one_job_compacted": one_compacted,
    }


# Redis's default (64 bytes), and the setting docs/scaling.md recommends.
LISTPACK_VALUES = (64, 1024)


def redis_footprint(redis: RedisProcess, files: FileStore, quick: bool) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        client = create_redis(redis.url)
        server = await client.info("server")
        allocator = (await client.info("memory")).get("mem_allocator")
        await client.aclose()
        # A first, discarded case takes the server's one-off allocations (its keyspace's first
        # tables, the scripts' cache) out of the figures.
        await _case(redis.url, "warm-up", 20, 50, files, LISTPACK_VALUES[0])
        rows = [
            await _case(redis.url, *case, files, value)
            for value in LISTPACK_VALUES
            for case in (QUICK_CASES if quick else CASES)
        ]
        await _restore(redis.url)
        # Valkey answers redis_version with the Redis version it is compatible with.
        name = (
            f"Valkey {server['valkey_version']}"
            if "valkey_version" in server
            else f"Redis {server['redis_version']}"
        )
        return {"redis": f"{name} ({allocator})", "rows": rows}

    return asyncio.run(run())


async def _restore(url: str) -> None:
    client = create_redis(url)
    await client.config_set("hash-max-ziplist-value", 64)
    await client.config_set("zset-max-ziplist-value", 64)
    await client.aclose()
