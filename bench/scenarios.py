"""What is measured, one function per figure family. Each returns a plain dict for the report."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench import processes
from bench.machine import CpuMeter, rss_bytes
from jobcast.jobs.progress import Progress
from jobcast.protocol import loads
from jobcast.redis.client import create_redis
from jobcast.redis.embedded import RedisProcess
from jobcast.settings import Settings
from jobcast.store.jobs import JobStore, Submission


@dataclass
class Workload:
    watchers: int = 1000
    jobs: int = 100
    rate: float = 4000.0  # events/s in all; each goes to watchers/jobs watchers
    warmup_s: float = 2.0
    seconds: float = 10.0
    idle_watchers: int = 10000
    ingest_seconds: float = 5.0
    ingest_rate: float = 200_000.0
    submit_rate: float = 100.0
    submit_seconds: float = 10.0
    throughput_jobs: int = 500
    progress_seconds: float = 3.0
    poll_interval_s: float = 0.5
    limits_seconds: float = 10.0
    drain_jobs: int = 5000
    # The jobs part's steady rate: jobs enqueued one at a time, each one's enqueue→start delay.
    steady_rate: float = 200.0
    steady_seconds: float = 10.0
    soak_seconds: float = 1800.0
    soak_sample_s: float = 30.0
    # The dashboard's frame times: a page of this many rows, this many of them progressing.
    frame_rows: int = 1000
    frame_live: int = 100
    frame_seconds: float = 10.0
    # HTTP intake: single submissions and batches, for this long each.
    intake_seconds: float = 5.0
    # A text search of the jobs table, with this many jobs retained.
    search_retained: tuple[int, ...] = (2_000, 100_000)
    # A parent's children (and the plain batch beside it) in the trees part.
    tree_children: int = 10_000
    # The create script's own time: this many batches of 1,000, on an emptied Redis and accumulating.
    create_batches: int = 50
    # Fan-out saturation (bench/saturation.py): event rates stepped through, this long each.
    saturation_rates: tuple[float, ...] = (4000.0, 8000.0, 12000.0, 16000.0, 20000.0, 24000.0)
    saturation_seconds: float = 5.0
    # Job output (bench/output.py): one job's token rate and watchers; many jobs at a rate each.
    output_rate: float = 2000.0
    output_watchers: int = 100
    output_seconds: float = 5.0
    output_jobs: int = 1000
    output_jobs_rate: float = 20.0
    output_memory_mb: int = 8
    # The job page of a job with this much output, in Chromium.
    output_page_mb: int = 5
    # Places in line (bench/queue_places.py): this many jobs waiting, one watcher on each of this
    # many, this long with the places on and this long off.
    places_jobs: int = 10_000
    places_watchers: int = 1000
    places_seconds: float = 20.0


QUICK = Workload(
    watchers=20,
    jobs=4,
    rate=200,
    warmup_s=0.5,
    seconds=1.0,
    idle_watchers=40,
    ingest_seconds=0.5,
    submit_rate=20,
    submit_seconds=1.0,
    throughput_jobs=20,
    ingest_rate=20_000,
    progress_seconds=0.3,
    limits_seconds=2.0,
    drain_jobs=100,
    steady_rate=50.0,
    steady_seconds=1.0,
    soak_seconds=4.0,
    soak_sample_s=1.0,
    frame_rows=200,
    frame_live=5,
    frame_seconds=1.0,
    intake_seconds=0.5,
    search_retained=(200, 2_000),
    tree_children=300,
    create_batches=2,
    saturation_rates=(100.0, 200.0),
    saturation_seconds=0.5,
    output_rate=200.0,
    output_watchers=5,
    output_seconds=0.5,
    places_jobs=100,
    places_watchers=10,
    places_seconds=2.5,
    output_jobs=10,
    output_jobs_rate=5.0,
    output_memory_mb=1,
    output_page_mb=1,
)


def settings_for(redis: RedisProcess) -> Settings:
    return Settings(redis_url=redis.url, key_prefix="jobcast")


async def create_jobs(redis: RedisProcess, n: int) -> list[str]:
    client = create_redis(redis.url, retries=0)
    store = JobStore(client, settings_for(redis))
    await client.flushall()
    ids = [uuid.uuid4().hex for _ in range(n)]
    for job_id in ids:
        await store.create(job_id, Submission("demo", {"steps": 1}))
    await client.aclose()
    return ids


def watcher_specs(
    system: str, jobs: list[str], n: int, interval_s: float, mix: str = "half"
) -> list[dict[str, Any]]:
    """`mix`: "half" (alternating SSE and WebSocket), "sse" or "ws"."""
    specs = []
    for i in range(n):
        job = jobs[i % len(jobs)]
        half = mix if mix != "half" else "sse" if i % 2 == 0 else "ws"
        if system == "jobcast":
            if half == "sse":
                specs.append({"kind": "sse", "path": f"/api/jobs/{job}/events"})
            else:
                hello = orjson.dumps({"type": "subscribe", "job_id": job}).decode()
                specs.append({"kind": "ws", "path": "/api/ws", "hello": [hello]})
        elif system == "ceiling":
            specs.append({"kind": half, "path": f"/{half}/{job}"})
        elif system == "nchan":
            specs.append({"kind": half, "path": f"/sub/{job}"})
        elif system == "socketio":
            # Socket.IO has no SSE transport: all its watchers are WebSockets.
            specs.append({"kind": "sio", "path": "/socket.io/?EIO=4&transport=websocket", "job": job})
        elif system == "polling":
            specs.append({"kind": "poll", "path": f"/api/jobs/{job}", "interval_s": interval_s})
    return specs


@dataclass(frozen=True)
class Backend:
    """Where a fan-out's jobs live: the Redis URL the server is given (with `env`), the Redis
    processes metered, by name, and for each shard its primary, prefix and jobs, where the
    publisher sends their events."""

    url: str
    pids: dict[str, int]
    targets: list[dict[str, Any]]
    env: dict[str, str] = field(default_factory=dict)

    @property
    def jobs(self) -> list[str]:
        return [job_id for target in self.targets for job_id in target["jobs"]]


def one_server(redis: RedisProcess, n: int) -> Backend:
    """`n` jobs on the bench's Redis server."""
    assert redis.process is not None
    jobs = asyncio.run(create_jobs(redis, n))
    target = {"host": "127.0.0.1", "port": redis.port, "prefix": "jobcast", "jobs": jobs}
    return Backend(redis.url, {"redis": redis.process.pid}, [target])


def deliveries(
    system: str, redis: RedisProcess, w: Workload, tmp: Path, backend: Backend | None = None
) -> dict[str, Any]:
    """Fan-out: `w.watchers` watchers over `w.jobs` jobs, `w.rate` events/s, open loop; on the
    bench's Redis server, or on `backend`."""
    backend = backend or one_server(redis, w.jobs)
    jobs = backend.jobs
    server_system = "jobcast" if system == "polling" else system
    with processes.server(server_system, redis, **{"REDIS_URL": backend.url, **backend.env}) as (proc, port):
        specs = watcher_specs(system, jobs, w.watchers, w.poll_interval_s)
        load = processes.LoadGen({"host": "127.0.0.1", "port": port, "watchers": specs}, tmp)
        try:
            connected = load.read()
            first = backend.targets[0]
            source = {
                "format": system if system in ("socketio", "nchan") else "jobcast",
                "port": port,
                "redis_url": backend.url,
                "redis_host": first["host"],
                "redis_port": first["port"],
                "prefix": first["prefix"],
                "targets": backend.targets,
                "jobs": jobs,
                "rate": w.rate,
                "seconds": w.warmup_s + w.seconds + 0.5,
            }
            pub = processes.publisher(source, tmp)
            time.sleep(w.warmup_s)
            meter = CpuMeter([proc.pid])
            load_meters = {
                "loadgen": CpuMeter([load.proc.pid]),
                "publisher": CpuMeter([pub.pid]),
                "redis": CpuMeter(list(backend.pids.values())),
            }
            redis_meters = {name: CpuMeter([pid]) for name, pid in backend.pids.items()}
            load.send("measure")
            meter.start()
            for m in [*load_meters.values(), *redis_meters.values()]:
                m.start()
            time.sleep(w.seconds)
            cpu_s = meter.stop()
            load_cpu = {name: m.stop() / w.seconds for name, m in load_meters.items()}
            redis_cpu = {name: m.stop() for name, m in redis_meters.items()}
            result = load.send("stop")
            rss = rss_bytes(proc.pid)
            published = processes.publisher_result(pub)
        finally:
            load.close()
    n = max(result["deliveries"], 1)
    events = max(published["rate"] * w.seconds, 1)  # published while measuring
    return {
        "system": system,
        "watchers": w.watchers,
        "connected": connected["connected"],
        "jobs": len(jobs),
        "published_per_s": round(published["rate"], 1),
        "deliveries_per_s": round(result["deliveries"] / result["seconds"], 1),
        "server_cpu_share": round(cpu_s / result["seconds"], 3),
        "server_cpu_us_per_delivery": round(cpu_s / n * 1e6, 2),
        # Each metered Redis process's CPU for each event published while measuring.
        "redis_cpu_us_per_event": {name: round(used * 1e6 / events, 1) for name, used in redis_cpu.items()},
        # Load generator + publisher + Redis, on the other core: near 100% means the load side,
        # not the server, sets the latency.
        "load_side_cpu_share": round(sum(load_cpu.values()), 3),
        "load_side_cpu_shares": {name: round(share, 3) for name, share in load_cpu.items()},
        "load_generator": load.kind,
        "requests_per_delivery": round(result["requests"] / n, 2) if system == "polling" else None,
        "latency_ms": result["latencies_us"],
        "server_rss_mb": round(rss / 2**20, 1),
        "closed_while_measuring": result["closed_while_measuring"],
    }


def idle(system: str, redis: RedisProcess, w: Workload, tmp: Path, mix: str = "half") -> dict[str, Any]:
    """Idle capacity: RSS per open watcher, heartbeats on (jobcast's defaults)."""
    jobs = asyncio.run(create_jobs(redis, max(1, w.idle_watchers // 100)))
    with processes.server(system, redis) as (proc, port):
        specs = watcher_specs(system, jobs, w.idle_watchers, w.poll_interval_s, mix)
        time.sleep(0.5)  # let the server finish starting before its baseline is read
        before = rss_bytes(proc.pid)
        load = processes.LoadGen({"host": "127.0.0.1", "port": port, "watchers": specs}, tmp)
        try:
            connected = load.read()
            time.sleep(1.0)
            after = rss_bytes(proc.pid)
        finally:
            load.close()
    n = max(connected["connected"], 1)
    return {
        "system": system,
        "mix": mix,
        "watchers": w.idle_watchers,
        "connected": connected["connected"],
        "failed": connected["failed"],
        "connect_s": connected["connect_s"],
        "rss_before_mb": round(before / 2**20, 1),
        "rss_after_mb": round(after / 2**20, 1),
        "rss_kb_per_watcher": round((after - before) / n / 1024, 2),
    }


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{name}(?:_total)? ([0-9.e+]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def raw_publishing(redis: RedisProcess, w: Workload, channel: str, record: str) -> dict[str, Any]:
    """The publisher's config for ingestion: one record PUBLISHed at the ingestion rate."""
    return {
        "format": "raw",
        "redis_host": "127.0.0.1",
        "redis_port": redis.port,
        "channel": channel,
        "record": record,
        "seconds": w.ingest_seconds,
        "rate": w.ingest_rate,
    }


def ingestion(redis: RedisProcess, w: Workload, tmp: Path) -> dict[str, Any]:
    """How many pub/sub messages one web process takes from Redis: one watcher on one job, and a
    publisher PUBLISHing that job's (already seen) event as fast as Redis takes it."""
    jobs = asyncio.run(create_jobs(redis, 1))
    record = f'1\nprogress\n{{"job_id":"{jobs[0]}","seq":1,"type":"progress"}}'
    with processes.server("jobcast", redis) as (proc, port):
        spec = watcher_specs("jobcast", jobs, 1, 0)[:1]
        load = processes.LoadGen({"host": "127.0.0.1", "port": port, "watchers": spec}, tmp)
        try:
            load.read()
            url = f"http://127.0.0.1:{port}/metrics"
            before = asyncio.run(fetch_text(url))
            meter = CpuMeter([proc.pid])
            meter.start()
            source = raw_publishing(redis, w, f"jobcast:events:{jobs[0]}", record)
            published = processes.publisher_result(processes.publisher(source, tmp))
            sent_done = time.perf_counter()
            # Caught up when the relay has taken every message that was sent.
            target = metric(before, "jobcast_relay_messages") + published["sent"]
            deadline = time.monotonic() + 30
            while True:
                after = asyncio.run(fetch_text(url))
                if metric(after, "jobcast_relay_messages") >= target or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            caught_up = time.perf_counter()
            cpu_s = meter.stop()
        finally:
            load.close()
    taken = metric(after, "jobcast_relay_messages") - metric(before, "jobcast_relay_messages")
    return {
        "published": published["sent"],
        "publish_rate": round(published["rate"]),
        "taken": int(taken),
        # Over the publisher's own sending window plus the catch-up after it (not its start-up).
        "taken_per_s": round(taken / (published["seconds"] + caught_up - sent_done)),
        # How long after the last PUBLISH the relay had taken everything (bounded by /metrics polls).
        "behind_at_end_ms": round((caught_up - sent_done) * 1000, 1),
        "server_cpu_us_per_message": round(cpu_s / max(taken, 1) * 1e6, 2),
        "reconnects": int(
            metric(after, "jobcast_relay_reconnects") - metric(before, "jobcast_relay_reconnects")
        ),
    }


def ingestion_redispy(redis: RedisProcess, w: Workload, tmp: Path) -> dict[str, Any]:
    """The same ingestion through redis-py's asyncio PubSub, one `get_message()` per message (the
    reader the relay replaced), in a process on the server's core."""
    channel = "jobcast:events:redispy"
    command = [sys.executable, "-m", "bench.peers.redispy_reader", "--redis-url", redis.url]
    command += ["--channel", channel, "--seconds", str(w.ingest_seconds)]
    reader = processes.start(command, processes.SERVER_CORE, stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout is not None
        if reader.stdout.readline().strip() != "ready":
            raise RuntimeError("the redis-py reader did not subscribe")
        record = '1\nprogress\n{"job_id":"redispy","seq":1,"type":"progress"}'
        source = raw_publishing(redis, w, channel, record)
        published = processes.publisher_result(processes.publisher(source, tmp))
        out, _ = reader.communicate(timeout=w.ingest_seconds + 120)
    finally:
        processes.stop(reader)
    result = orjson.loads(out.splitlines()[-1])
    return {
        "published": published["sent"],
        "publish_rate": round(published["rate"]),
        "taken": result["taken"],
        "taken_per_s": round(result["taken"] / max(result["seconds"], 1e-9)),
        "disconnected": result["disconnected"],
    }


async def fetch_text(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return await response.text()


def submissions(redis: RedisProcess, w: Workload, tmp: Path) -> dict[str, Any]:
    """Submit→`started` at a fixed submission rate, and jobs per second end to end."""
    asyncio.run(create_jobs(redis, 0))
    with processes.server("jobcast", redis) as (_, port):
        workers = [processes.worker(redis, JOBCAST_WORKER_MAX_JOBS="50") for _ in range(2)]
        try:
            asyncio.run(workers_ready(redis, len(workers)))
            return asyncio.run(_submissions(f"http://127.0.0.1:{port}", w))
        finally:
            for proc in workers:
                processes.stop(proc)


async def workers_ready(redis: RedisProcess, n: int) -> None:
    """Until n workers have finished their first poll (each then heartbeats)."""
    client = create_redis(redis.url, retries=0)
    try:
        for _ in range(1200):  # a minute at most
            if await client.zcard("jobcast:workers") >= n:
                break
            await asyncio.sleep(0.05)
    finally:
        await client.aclose()


async def _submissions(base: str, w: Workload) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        started_at: dict[str, float] = {}
        succeeded: dict[str, float] = {}
        feed_open = asyncio.Event()

        async def follow() -> None:
            async with session.get(f"{base}/api/events", timeout=aiohttp.ClientTimeout(total=None)) as r:
                feed_open.set()
                async for line in r.content:
                    if (line.startswith(b"data: ") and b'"type":"started"' in line) or b'"succeeded"' in line:
                        event = loads(line[6:])
                        if event.get("type") == "started":
                            started_at.setdefault(event["job_id"], time.perf_counter())
                        elif event.get("type") == "succeeded":
                            succeeded.setdefault(event["job_id"], time.perf_counter())

        feed = asyncio.create_task(follow())
        try:
            await feed_open.wait()
            sent_at: dict[str, float] = {}
            body = {"kind": "demo", "params": {"steps": 1, "step_ms": 0}}

            async def submit_one() -> str:
                t = time.perf_counter()
                async with session.post(f"{base}/api/jobs", json=body) as r:
                    job_id = (await r.json())["id"]
                sent_at[job_id] = t
                return job_id

            # Open loop: one submission every 1/rate s, whether or not the last one returned.
            n = int(w.submit_rate * w.submit_seconds)
            begin = time.perf_counter()
            pending = []
            for i in range(n):
                await asyncio.sleep(max(0.0, begin + i / w.submit_rate - time.perf_counter()))
                pending.append(asyncio.create_task(submit_one()))
            ids = await asyncio.gather(*pending)
            await wait_until(lambda: all(i in started_at for i in ids), 30)
            latencies = sorted((started_at[i] - sent_at[i]) * 1000 for i in ids)

            # Throughput: a burst of jobs with progress, from first submission to last success.
            body = {"kind": "demo", "params": {"steps": 5, "step_ms": 1}}
            begin = time.perf_counter()
            burst = await asyncio.gather(*(submit_one() for _ in range(w.throughput_jobs)))
            await wait_until(lambda: all(i in succeeded for i in burst), 120)
            elapsed = max(succeeded[i] for i in burst) - begin
        finally:
            feed.cancel()
            await asyncio.gather(feed, return_exceptions=True)

    def at(q: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))], 2)

    return {
        "submit_rate": w.submit_rate,
        "submitted": n,
        "submit_to_started_ms": {"p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": round(latencies[-1], 2)},
        "throughput_jobs": w.throughput_jobs,
        "jobs_per_s": round(w.throughput_jobs / elapsed, 1),
    }


async def wait_until(predicate: Any, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the jobs did not get there in time")
        await asyncio.sleep(0.01)


def progress_api(redis: RedisProcess, w: Workload) -> dict[str, Any]:
    return asyncio.run(_progress_api(redis, w))


async def _progress_api(redis: RedisProcess, w: Workload) -> dict[str, Any]:
    """`await progress.update()` in a tight loop: cost per call, and events actually published."""
    settings = settings_for(redis)
    client = create_redis(redis.url, retries=0)
    store = JobStore(client, settings)
    job_id = uuid.uuid4().hex
    await store.create(job_id, Submission("demo", {}))
    before = (await store.snapshot(job_id))["last_event_id"]
    progress = Progress(store, job_id, 0, rate_hz=settings.progress_rate_hz)
    calls = 0
    async with progress:
        begin = time.perf_counter()
        while (elapsed := time.perf_counter() - begin) < w.progress_seconds:
            for _ in range(1000):
                await progress.update(calls, None)
                calls += 1
            await asyncio.sleep(0)  # a real job yields now and then; this lets the flusher run
    after = (await store.snapshot(job_id))["last_event_id"]
    await client.aclose()
    published = after - before
    return {
        "calls": calls,
        "us_per_call": round(elapsed / calls * 1e6, 3),
        "seconds": round(elapsed, 3),
        "published": published,
        "published_per_s": round(published / elapsed, 1),
        "rate_limit_hz": settings.progress_rate_hz,
    }
