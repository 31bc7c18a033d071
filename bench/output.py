"""Job output (docs/output.md): tokens written as job code writes them, delivered to watchers.

- `one_job`: one job writing `rate` small tokens a second to `watchers` SSE watchers, three ways:
  jobcast's writer through `jobcast web`; the naive ceiling (one PUBLISH and one RPUSH per token,
  relayed by bench/peers/ceiling.py, the least a Python relay can do); and the same writes as
  progress messages (the lossy path, coalesced to 10 a second). For each: Redis calls a second,
  delay from write to watcher (p50, p99), the server's CPU per delivered MB.
- `many_jobs`: `jobs` jobs each writing `rate` tokens a second, one watcher each, through one
  `jobcast web` (their writers emulated cheaply: bench/output_writer.py's `workers`).
- `redis_memory`: Redis memory per MB of output kept, before and after the finished job's
  history is compacted.

The writer and the watchers run on the load core, the server on its own (bench/processes.py).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from bench import processes, scenarios
from bench.machine import CpuMeter
from bench.scenarios import settings_for
from jobcast.jobs.output import JobOutput
from jobcast.protocol import EventType
from jobcast.redis.client import create_redis
from jobcast.redis.embedded import RedisProcess
from jobcast.settings import Settings
from jobcast.store.jobs import JobStore


async def running_jobs(redis: RedisProcess, n: int) -> list[str]:
    """`n` jobs in their first attempt, as a worker would have started them (on an emptied Redis)."""
    ids = await scenarios.create_jobs(redis, n)
    client = create_redis(redis.url, retries=0)
    store = JobStore(client, settings_for(redis))
    for job_id in ids:
        await store.publish(job_id, EventType.STARTED, attempt=1, fence=0)
    await client.aclose()
    return ids


def _json_process(
    module: str, config: dict[str, Any], tmp: Path, name: str, core: int = processes.LOAD_CORE
) -> subprocess.Popen:
    path = tmp / f"{name}.json"
    path.write_bytes(orjson.dumps(config))
    return processes.start([sys.executable, "-m", module, str(path)], core, stdout=subprocess.PIPE, text=True)


def _last_line(proc: subprocess.Popen, timeout: float = 120) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=timeout)
    if proc.returncode:
        raise RuntimeError(f"{proc.args} failed ({proc.returncode})")
    return orjson.loads(out.strip().splitlines()[-1])


def stream(
    system: str,
    redis: RedisProcess,
    jobs: list[str],
    rate: float,
    watchers: int,
    seconds: float,
    tmp: Path,
    jobs_per_worker: int = 1,
    writer_core: int = processes.LOAD_CORE,
) -> dict[str, Any]:
    """`watchers` watchers spread over `jobs`, each job written at `rate` tokens a second."""
    server = "ceiling" if system == "naive" else "jobcast"
    warmup_s = 0.5
    with processes.server(server, redis) as (proc, port):
        paths = [
            f"/sse/{jobs[i % len(jobs)]}"
            if server == "ceiling"
            else f"/api/jobs/{jobs[i % len(jobs)]}/events"
            for i in range(watchers)
        ]
        # Latency from a sample of watchers, so that scanning tokens never loads the load core.
        sample = min(watchers, 20)
        load = _json_process(
            "bench.output_watchers",
            {
                "host": "127.0.0.1",
                "port": port,
                "paths": paths,
                "sample": sample,
                "warmup_s": warmup_s,
                "seconds": seconds,
            },
            tmp,
            f"watchers-{system}",
        )
        assert load.stdout is not None
        orjson.loads(load.stdout.readline())  # every watcher connected
        mode = system
        writer = _json_process(
            "bench.output_writer",
            {
                "redis_url": redis.url,
                "jobs": jobs,
                "rate": rate,
                "seconds": warmup_s + seconds + 0.3,
                "mode": mode,
                "jobs_per_worker": jobs_per_worker,
            },
            tmp,
            f"writer-{system}",
            writer_core,
        )
        time.sleep(warmup_s)
        meter = CpuMeter([proc.pid])
        assert redis.process is not None
        load_meters = {
            "writer": CpuMeter([writer.pid]),
            "watchers": CpuMeter([load.pid]),
            "redis": CpuMeter([redis.process.pid]),
        }
        meter.start()
        for m in load_meters.values():
            m.start()
        time.sleep(seconds)
        cpu_s = meter.stop()
        # The load side shares one core: near 100% there, not the server, sets the figures.
        load_cpu = {name: round(m.stop() / seconds, 3) for name, m in load_meters.items()}
        watched = _last_line(load)
        written = _last_line(writer)
    delivered_mb = watched["bytes_per_s"] * watched["seconds"] / 1e6
    return {
        "system": system,
        "jobs": len(jobs),
        "watchers": watchers,
        "tokens_per_s_written": round(written["rate"], 1),
        "tokens_per_s_per_watcher": watched["tokens_per_s_per_watcher"],
        "redis_calls_per_s_per_job": round(written["redis_commands_per_s"] / len(jobs), 1),
        "latency_ms": watched["latency_ms"],
        "server_cpu_share": round(cpu_s / seconds, 3),
        "server_cpu_ms_per_mb": round(cpu_s * 1000 / max(delivered_mb, 1e-9), 1),
        "delivered_mb_per_s": round(watched["bytes_per_s"] / 1e6, 2),
        "writer_cpu_us_per_write": written["writer_cpu_us_per_write"],
        "closed": watched["closed"],
        "load_side_cpu_shares": load_cpu,
    }


def one_job(
    redis: RedisProcess, rate: float, watchers: int, seconds: float, tmp: Path
) -> list[dict[str, Any]]:
    rows = []
    for system in ("naive", "jobcast", "progress"):
        jobs = asyncio.run(running_jobs(redis, 1))
        rows.append(stream(system, redis, jobs, rate, watchers, seconds, tmp))
    return rows


def many_jobs(
    redis: RedisProcess,
    jobs: int,
    rate: float,
    seconds: float,
    tmp: Path,
    writer_core: int = processes.LOAD_CORE,
) -> dict[str, Any]:
    ids = asyncio.run(running_jobs(redis, jobs))
    # Their writers as raw pipelined script calls, batched as each job's own and each worker's
    # (JOBCAST_WORKER_MAX_JOBS jobs a worker, its default): 1,000 jobs' workers would have cores of
    # their own; one Python process of JobOutputs would fill the load core.
    per_worker = Settings.model_fields["worker_max_jobs"].default
    row = stream("workers", redis, ids, rate, jobs, seconds, tmp, per_worker, writer_core)
    return {
        **row,
        "jobs_per_worker": per_worker,
        "writer_core": "server" if writer_core == processes.SERVER_CORE else "load",
    }


async def _memory(redis: RedisProcess, megabytes: int) -> dict[str, Any]:
    client = create_redis(redis.url, retries=0)
    settings = settings_for(redis).model_copy(update={"max_output_bytes": (megabytes + 1) * 2**20})
    store = JobStore(client, settings)
    (job_id,) = await running_jobs(redis, 1)
    before = int((await client.info("memory"))["used_memory"])
    output = JobOutput(store.output, job_id, 1, flush_ms=50, flush_bytes=settings.output_flush_bytes)
    line = "x" * 99 + "\n"
    async with output:
        out = output.stream("output")
        for _ in range(megabytes * 2**20 // len(line)):
            out.write_nowait(line)
        await out.flush()
    written = int((await client.info("memory"))["used_memory"])
    await store.publish(job_id, EventType.SUCCEEDED, attempt=1)
    await store.scripts.call(
        "compact", {"job": store.keys.job(job_id), "history": store.keys.history(job_id)}, id=job_id
    )
    compacted = int((await client.info("memory"))["used_memory"])
    await client.aclose()
    return {
        "output_mb": megabytes,
        "redis_mb_per_output_mb": round((written - before) / 2**20 / megabytes, 2),
        "after_compaction_mb_per_output_mb": round((compacted - before) / 2**20 / megabytes, 2),
    }


def redis_memory(redis: RedisProcess, megabytes: int) -> dict[str, Any]:
    return asyncio.run(_memory(redis, megabytes))


async def _large_page(url: str, redis: RedisProcess, megabytes: int, seconds: float) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    from bench.chromium import CHROMIUM, CHROMIUM_ARGS
    from bench.frames import RECORDER, percentile

    client = create_redis(redis.url, retries=0)
    settings = settings_for(redis).model_copy(update={"max_output_bytes": (megabytes + 2) * 2**20})
    store = JobStore(client, settings)
    (job_id,) = await running_jobs(redis, 1)
    line = "x" * 99 + "\n"
    output = JobOutput(store.output, job_id, 1, flush_ms=50, flush_bytes=settings.output_flush_bytes)
    async with output:
        out = output.stream("output")
        for _ in range(megabytes * 2**20 // len(line)):
            out.write_nowait(line)
        await out.flush()
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            await page.add_init_script(RECORDER)
            started = time.monotonic()
            await page.goto(f"{url}/jobs/{job_id}")
            await page.wait_for_selector("#connection[data-state=live]")
            loaded_ms = (time.monotonic() - started) * 1000
            await page.evaluate("() => { window.__frames.recording = true; }")
            # The job goes on writing while the page shows it: 20 lines a write, 20 writes a second.
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                await out.write(line * 20)
                await asyncio.sleep(0.05)
            await out.flush()
            frames = await page.evaluate(
                "() => { window.__frames.recording = false; return window.__frames; }"
            )
            shown = await page.evaluate("() => document.getElementById('output-output').textContent.length")
            await browser.close()
    await client.aclose()
    deltas = frames["deltas"]
    return {
        "output_mb": megabytes,
        "page_ready_ms": round(loaded_ms),
        "characters_shown": shown,
        "fps": round(len(deltas) / seconds, 1),
        "frame_p50_ms": round(percentile(deltas, 0.5), 2),
        "frame_p99_ms": round(percentile(deltas, 0.99), 2),
        "long_animation_frames": len(frames["long"]),
    }


def large_page(redis: RedisProcess, megabytes: int, seconds: float) -> dict[str, Any]:
    """The job page of a job with `megabytes` of output in Chromium: how long until it is live,
    and its frame times while the job writes on (it keeps the stream's last 1 MiB)."""
    with processes.server("jobcast", redis) as (_, port):
        return asyncio.run(_large_page(f"http://127.0.0.1:{port}", redis, megabytes, seconds))
