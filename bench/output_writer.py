"""The output source: jobs writing tokens at a fixed rate, open loop, as job code would.

Each token is its due time in µs since the epoch and a `;` (17 bytes), so watchers can tell each
token's delay from the text alone. Ways to write:

- `jobcast`: through jobcast's writer (`ctx.output`'s: batched at the source, `output.lua`).
- `naive`: the way a team writes output by hand, one PUBLISH of a ready-made record and one RPUSH
  to a history list per token (pipelined per tick), to the channel the ceiling relays.
- `workers`: jobcast's script, batched as each job's writer batches (its text of every
  `JOBCAST_OUTPUT_FLUSH_MS` in one event) and as each worker process sends its jobs' chunks (one
  call for what its writers have pending, `jobs_per_worker` jobs a worker), but sent as raw
  pipelined commands: many workers, as they would send from cores of their own, from one process
  that stays light.
- `progress`: each token as a progress message through jobcast's coalescing publisher, to show
  what the lossy path delivers of the same writes.

Run as `python -m bench.output_writer <config.json>`; prints one JSON line when done.
"""

from __future__ import annotations

import asyncio
import resource
import sys
import time
from pathlib import Path
from typing import Any

import hiredis
import orjson
import uvloop

from bench.publisher import RawRedis, open_loop
from jobcast.jobs.output import JobOutput
from jobcast.jobs.progress import Progress
from jobcast.protocol import Keys, output_template
from jobcast.redis.client import create_redis
from jobcast.settings import Settings
from jobcast.store.jobs import JobStore


def token(due_us: int) -> str:
    return f"{due_us:016d};"


class Writers:
    """The jobs' writers, one way (`mode`): `write(job_index, text)` per token, `tick()` after."""

    def __init__(self, mode: str, store: JobStore, jobs: list[str], jobs_per_worker: int = 1) -> None:
        self.mode, self.store, self.jobs = mode, store, jobs
        self.jobs_per_worker = jobs_per_worker
        settings = store.settings
        self.outputs = (
            [
                JobOutput(
                    store.output,
                    j,
                    1,
                    flush_ms=settings.output_flush_ms,
                    flush_bytes=settings.output_flush_bytes,
                )
                for j in jobs
            ]
            if mode == "jobcast"
            else []
        )
        self.streams = [out.stream("output") for out in self.outputs]
        self.progresses = (
            [Progress(store, j, 1, rate_hz=settings.progress_rate_hz) for j in jobs]
            if mode == "progress"
            else []
        )
        self.pending: list[list[str]] = [[] for _ in jobs]
        self.flush_s = settings.output_flush_ms / 1000
        self.flushed = 0.0
        self.raw: RawRedis | None = None
        self.keys = Keys("jobcast")
        self.seq = 0
        self.pipe: Any = None
        # The commands the writer sends Redis (a script call is one, whatever it runs inside).
        self.commands = 0
        if mode == "jobcast":
            store.output.append = self._counted(store.output.append)  # type: ignore[method-assign]
        elif mode == "progress":
            store.publish = self._counted(store.publish)  # type: ignore[method-assign]

    def _counted(self, call: Any) -> Any:
        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.commands += 1
            return await call(*args, **kwargs)

        return counted

    async def __aenter__(self) -> Writers:
        for part in (*self.outputs, *self.progresses):
            await part.__aenter__()
        if self.mode == "workers":
            await self.store.scripts.load("output")
            kwargs = self.store.redis.connection_pool.connection_kwargs
            self.raw = await RawRedis.open(kwargs["host"], kwargs["port"])
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.raw is not None:
            await self.raw.drained()
            self.raw.close()
        for out in self.outputs:
            await out.drain()
        for part in (*self.outputs, *self.progresses):
            await part.__aexit__(None, None, None)

    def write(self, job: int, text: str, n: int) -> None:
        if self.mode == "workers":
            self.pending[job].append(text)
        elif self.mode == "jobcast":
            self.streams[job].write_nowait(text)
        elif self.mode == "progress":
            self.progresses[job].report(n, None, text)
        else:
            if self.pipe is None:
                self.pipe = self.store.redis.pipeline(transaction=False)
            self.seq += 1
            head, tail = output_template(self.jobs[job], 1, "output", text, ts="")
            record = b"%d\noutput\n%s%d%s" % (self.seq, head, self.seq, tail)
            self.pipe.publish(self.keys.channel(self.jobs[job]), record)
            self.pipe.rpush(self.keys.history(self.jobs[job]), record)
            self.commands += 2

    async def tick(self) -> None:
        if self.mode == "workers":
            now = time.perf_counter()
            if now - self.flushed < self.flush_s:
                return
            self.flushed = now
            commands = []
            # Each worker's jobs: what their writers have pending goes in one call (Outputs).
            for first in range(0, len(self.jobs), self.jobs_per_worker):
                calls = []
                for job in range(first, min(first + self.jobs_per_worker, len(self.jobs))):
                    if parts := self.pending[job]:
                        calls.append(self.store.output.call(self.jobs[job], 1, "output", "".join(parts)))
                        parts.clear()
                if calls:
                    keys, args = calls[0] if len(calls) == 1 else self.store.output.batch_call(calls)
                    commands.append(hiredis.pack_command(self.store.scripts.command("output", keys, **args)))
            self.commands += len(commands)
            if commands:
                assert self.raw is not None
                self.raw.write(b"".join(commands), len(commands))
        if self.pipe is not None:
            pipe, self.pipe = self.pipe, None
            await pipe.execute()


async def main(config: dict[str, Any]) -> dict[str, Any]:
    settings = Settings(redis_url=config["redis_url"], key_prefix="jobcast")
    jobs: list[str] = config["jobs"]
    # A connection for each job's writer, as the jobs would have spread over many workers (one
    # worker's pool, JOBCAST_REDIS_MAX_CONNECTIONS, serves its JOBCAST_WORKER_MAX_JOBS jobs).
    redis = create_redis(settings.redis_url, retries=0, max_connections=len(jobs) + 16)
    store = JobStore(redis, settings)
    sent = 0
    async with Writers(config["mode"], store, jobs, config.get("jobs_per_worker", 1)) as writers:

        async def send(n: int, first_due: float, interval: float) -> None:
            nonlocal sent
            for k in range(n):
                sent += 1
                writers.write(sent % len(jobs), token(int((first_due + k * interval) * 1_000_000)), sent)
            await writers.tick()

        cpu_before = resource.getrusage(resource.RUSAGE_SELF)
        result = await open_loop(config["rate"] * len(jobs), config["seconds"], send)
        cpu_after = resource.getrusage(resource.RUSAGE_SELF)
        commands = writers.commands
    await redis.aclose()
    cpu = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    return {
        **result,
        "writes": sent,
        "writer_cpu_us_per_write": round(cpu / max(sent, 1) * 1e6, 2),
        "redis_commands_per_s": round(commands / result["seconds"], 1),
    }


if __name__ == "__main__":
    cfg = orjson.loads(Path(sys.argv[1]).read_bytes())
    uvloop.install()
    print(orjson.dumps(asyncio.run(main(cfg))).decode(), flush=True)
