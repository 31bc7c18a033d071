"""How many submissions one `jobcast web` takes over HTTP: single `POST /api/jobs` from many
concurrent connections, and `POST /api/jobs/batch` of `batch` jobs each (the targets jobcast holds
itself to: 4,000 singles/s, 20,000 batched jobs/s, on a 2-core machine).

No worker runs: the jobs only queue (the waiting-jobs limit is lifted, and they go under a key
prefix of their own, which no other part's worker serves), so what is measured is intake alone.
A stand-in heartbeat says a worker serving the kind is alive, as in any deployment: otherwise
every submission would ask Redis afresh whether one has started (a refusal is never cached).
The load generator is Python aiohttp in this process, on the other core; its own CPU share is
reported, since for singles it can be the limit before the server is.

`create_script` times the create script itself, as Redis logs its calls, for batches written
straight through `JobStore.create_many`: no HTTP, no client, what Redis spends per job.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import aiohttp
import orjson

from bench import processes
from bench.machine import cpu_seconds
from jobcast.protocol import Keys, new_job_ids, utcnow
from jobcast.redis.client import create_redis
from jobcast.redis.embedded import RedisProcess
from jobcast.settings import Settings
from jobcast.store.jobs import JobStore, Submission
from jobcast.tasks import cancel_and_wait

BODY = {"kind": "demo", "params": {"steps": 1, "step_ms": 0}}
PREFIX = "bench-intake"
Stats = dict[str, tuple[int, int]]


async def _stand_in_worker(redis_url: str, prefix: str = PREFIX) -> None:
    """A worker's heartbeat (the keys `jobcast worker` writes, under shard 0's `prefix`), saying it
    serves demo; no worker."""
    client = create_redis(redis_url, retries=0, key_prefix=prefix)
    keys = Keys(prefix)
    try:
        while True:
            await client.zadd(keys.workers, {"stand-in": int(time.time() * 1000)})
            await client.hset(keys.worker_kinds, "stand-in", "demo")
            await asyncio.sleep(1)
    finally:
        await client.aclose()


async def load(
    url: str, redis_url: str, seconds: float, connections: int, batch: int, prefix: str = PREFIX
) -> tuple[int, int]:
    """(jobs created, requests refused) over `seconds`, from `connections` concurrent clients."""
    heartbeat = asyncio.create_task(_stand_in_worker(redis_url, prefix))
    try:
        return await _clients(url, seconds, connections, batch)
    finally:
        await cancel_and_wait(heartbeat)


async def _clients(url: str, seconds: float, connections: int, batch: int) -> tuple[int, int]:
    deadline = time.monotonic() + seconds
    created = refused = 0
    # Encoded once, and of each answer only its count read: the load generator shares Redis's
    # core, and encoding a thousand jobs and parsing a thousand snapshots a request would take a
    # tenth of it.
    batch_body = orjson.dumps({"jobs": [BODY] * batch})
    headers = {"Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(url, connector=connector) as session:

        async def client() -> None:
            nonlocal created, refused
            while time.monotonic() < deadline:
                if batch:
                    async with session.post("/api/jobs/batch", data=batch_body, headers=headers) as r:
                        answer = await r.read()
                    if r.status == 200:
                        created += _created(answer)
                    else:
                        refused += 1
                else:
                    async with session.post("/api/jobs", json=BODY) as r:
                        await r.read()
                    if r.status == 202:
                        created += 1
                    else:
                        refused += 1

        await asyncio.gather(*(client() for _ in range(connections)))
    return created, refused


# A batch's answer ends with its count: `..., "created": N}` (server/api/submit.py).
CREATED = re.compile(rb'"created":(\d+)}$')


def _created(answer: bytes) -> int:
    found = CREATED.search(answer, len(answer) - 32)
    if found is None:
        raise ValueError(f"not a batch answer: ...{answer[-64:]!r}")
    return int(found[1])


async def _commandstats(redis_url: str) -> Stats:
    client = create_redis(redis_url, retries=0)
    try:
        stats = await client.info("commandstats")
    finally:
        await client.aclose()
    return {name.removeprefix("cmdstat_"): (v["calls"], v["usec"]) for name, v in stats.items()}


def _redis_time(
    before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]], jobs: int
) -> dict[str, Any]:
    """Redis's own account of where its time went (INFO commandstats): µs per job by command, the
    largest first. A script's commands are counted both under EVALSHA and under their own names."""
    spent = {
        name: (calls - before.get(name, (0, 0))[0], usec - before.get(name, (0, 0))[1])
        for name, (calls, usec) in after.items()
    }
    top = sorted(spent.items(), key=lambda item: -item[1][1])[:8]
    return {
        name: {"calls_per_job": round(c / max(jobs, 1), 2), "us_per_job": round(u / max(jobs, 1), 1)}
        for name, (c, u) in top
    }


def _measure(
    url: str, redis: RedisProcess, web_pid: int, seconds: float, connections: int, batch: int
) -> dict[str, Any]:
    redis_pid = redis.process.pid
    asyncio.run(load(url, redis.url, 0.5, connections, batch))  # warm-up: connections, script cache
    commands = asyncio.run(_commandstats(redis.url))
    before = (cpu_seconds(web_pid), cpu_seconds(redis_pid), time.process_time())
    started = time.monotonic()
    created, refused = asyncio.run(load(url, redis.url, seconds, connections, batch))
    elapsed = time.monotonic() - started
    now = (cpu_seconds(web_pid), cpu_seconds(redis_pid), time.process_time())
    web_cpu, redis_cpu, load_cpu = (after - was for after, was in zip(now, before, strict=True))
    return {
        "mode": f"batch of {batch}" if batch else "single",
        "connections": connections,
        "seconds": round(elapsed, 2),
        "jobs": created,
        "refused_requests": refused,
        "jobs_per_s": round(created / elapsed),
        "web_cpu_share": round(web_cpu / elapsed, 2),
        "redis_cpu_share": round(redis_cpu / elapsed, 2),
        "load_cpu_share": round(load_cpu / elapsed, 2),
        "web_cpu_us_per_job": round(web_cpu / max(created, 1) * 1e6, 1),
        "redis_cpu_us_per_job": round(redis_cpu / max(created, 1) * 1e6, 1),
        "redis_commands": _redis_time(commands, asyncio.run(_commandstats(redis.url)), created),
    }


async def _script_times(url: str, batches: int, emptied: bool) -> dict[str, Any]:
    client = create_redis(url, retries=0)
    store = JobStore(client, Settings(redis_url=url, key_prefix=PREFIX, max_waiting_jobs=0))
    submission = Submission("demo", BODY["params"], max_attempts=3)
    config = await client.config_get("slowlog-*")
    per_job: list[float] = []
    try:
        await client.flushdb()
        # A call of 100 jobs takes a millisecond or more, the commands it runs mostly microseconds:
        # the log keeps the calls (and a few large commands, left out below).
        await client.config_set("slowlog-log-slower-than", 100)
        await client.config_set("slowlog-max-len", 1000)
        for _ in range(batches):
            if emptied:
                await client.flushdb()
            received = utcnow()
            calls = [store.create_call(job_id, submission, created=received) for job_id in new_job_ids(1000)]
            await client.slowlog_reset()
            await store.create_many(calls)
            per_job += [
                entry["duration"] / store.settings.create_chunk_jobs
                for entry in await client.slowlog_get(1000)
                if entry["command"].upper().startswith(b"EVALSHA")
            ]
    finally:
        await client.config_set("slowlog-log-slower-than", config["slowlog-log-slower-than"])
        await client.config_set("slowlog-max-len", config["slowlog-max-len"])
        await client.flushdb()
        await client.aclose()
    per_job.sort()
    return {
        "redis": "emptied before each batch" if emptied else "accumulating",
        "jobs": batches * 1000,
        "script_calls": len(per_job),
        "script_us_per_job": {
            "min": round(per_job[0], 1),
            "p10": round(per_job[len(per_job) // 10], 1),
            "median": round(per_job[len(per_job) // 2], 1),
        },
    }


def create_script(redis: RedisProcess, batches: int) -> list[dict[str, Any]]:
    """The create script's own time per job, as Redis times its calls (SLOWLOG), for `batches`
    batches of 1,000 written by `JobStore.create_many` (the batch endpoint's path): on a Redis
    emptied before each batch, and on one where they accumulate (larger indexes, a keyspace
    that keeps growing). Redis's own timing leaves out the client and the network, and on a noisy
    machine moves less than throughput: the median and the fastest tenth compare two builds."""
    return [asyncio.run(_script_times(redis.url, batches, emptied)) for emptied in (True, False)]


def intake(redis: RedisProcess, seconds: float, batch: int = 1000) -> list[dict[str, Any]]:
    # The bench's servers log at WARNING: no access log line per request.
    env = {"JOBCAST_MAX_WAITING_JOBS": "0", "JOBCAST_KEY_PREFIX": PREFIX}
    with processes.server("jobcast", redis, **env) as (web, port):
        url = f"http://127.0.0.1:{port}"
        return [
            _measure(url, redis, web.pid, seconds, 64, 0),
            _measure(url, redis, web.pid, seconds, 8, batch),
        ]
