"""The event source: publishes progress events at a fixed rate, open loop.

Open loop means the schedule comes from the clock, not from the server: if anything falls
behind, events go out late but stamped with the time they were *due*, so the lateness shows up
as latency instead of hiding as a lower rate (coordinated omission).

Each event's `message` is its due time in µs since the epoch; the load generator reads it back.

Formats: `jobcast` goes through jobcast's own publish script (seq, history and all), as a worker
would; `socketio` through python-socketio's AsyncRedisManager (its documented way to emit from
another process); `raw` PUBLISHes one ready-made jobcast record as fast as Redis takes it, to
measure how many messages a relay can ingest.

Run as `python -m bench.publisher <config.json>`; prints one JSON line when done.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from typing import Any

import hiredis
import orjson
import uvloop

from jobcast.protocol import EventType, progress_dict
from jobcast.redis.client import create_redis
from jobcast.settings import Settings
from jobcast.store.jobs import JobStore

TICK_S = 0.002


def due_events(rate: float, started: float, sent: int) -> tuple[int, float]:
    """How many events are due now, and the due time (epoch s) of the first of them."""
    now = time.perf_counter()
    due = int((now - started) * rate) - sent
    return due, time.time() - (now - started - sent / rate)


class RoundRobin:
    """Events spread over the jobs in turn, each numbered and stamped with its due time (µs)."""

    def __init__(self, jobs: list[str]) -> None:
        self.jobs = jobs
        self.sent = 0

    def batch(self, n: int, first_due: float, interval: float) -> Iterator[tuple[str, int, int]]:
        for k in range(n):
            self.sent += 1
            job_id = self.jobs[self.sent % len(self.jobs)]
            yield job_id, self.sent, int((first_due + k * interval) * 1_000_000)


async def open_loop(rate: float, seconds: float, send: Any) -> dict[str, Any]:
    """Call `send(n, first_due_epoch_s, interval_s)` for every batch that falls due."""
    started = time.perf_counter()
    sent = 0
    late_ticks = 0
    while (elapsed := time.perf_counter() - started) < seconds:
        due, first_due = due_events(rate, started, sent)
        if due > 0:
            await send(due, first_due, 1 / rate)
            sent += due
        spent = time.perf_counter() - started - elapsed
        if spent > TICK_S:
            late_ticks += 1
        await asyncio.sleep(max(0.0, TICK_S - spent))
    elapsed = time.perf_counter() - started
    return {"sent": sent, "seconds": elapsed, "rate": sent / elapsed, "late_ticks": late_ticks}


async def jobcast_source(config: dict[str, Any]) -> dict[str, Any]:
    """Events through jobcast's publish script, written as raw pipelined EVALSHA commands, so the
    publisher's own cost stays small next to what it measures. `targets` (a sharded deployment):
    each shard's primary, prefix and jobs, each job's events sent to its shard's primary."""
    targets = config.get("targets") or [
        {
            "host": config["redis_host"],
            "port": config["redis_port"],
            "prefix": config["prefix"],
            "jobs": config["jobs"],
        }
    ]
    routes: dict[str, tuple[JobStore, RawRedis]] = {}
    connections: list[RawRedis] = []
    for target in targets:
        settings = Settings(redis_url=config["redis_url"], key_prefix=target["prefix"])
        redis = create_redis(settings.redis_url, retries=0, key_prefix=settings.redis_key_prefix)
        store = JobStore(redis, settings)
        await store.scripts.load("publish")
        await redis.aclose()
        connection = await RawRedis.open(target["host"], target["port"])
        connections.append(connection)
        routes |= {job_id: (store, connection) for job_id in target["jobs"]}
    events = RoundRobin([job_id for target in targets for job_id in target["jobs"]])

    async def send(n: int, first_due: float, interval: float) -> None:
        commands: dict[RawRedis, list[bytes]] = {}
        for job_id, seq, due_us in events.batch(n, first_due, interval):
            store, connection = routes[job_id]
            progress = progress_dict(seq, None, str(due_us))
            event = store.event(job_id, EventType.PROGRESS, attempt=0, fence=-1, progress=progress)
            command = store.scripts.command("publish", store.event_keys(job_id), **event)
            commands.setdefault(connection, []).append(hiredis.pack_command(command))
        for connection, packed in commands.items():
            connection.write(b"".join(packed), len(packed))

    try:
        result = await open_loop(config["rate"], config["seconds"], send)
        for connection in connections:
            await connection.drained()
        return {**result, "errors": sum(connection.errors for connection in connections)}
    finally:
        for connection in connections:
            connection.close()


class RawRedis(asyncio.Protocol):
    """Pipelined commands on one connection; replies are only counted (and errors noted)."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.outstanding = 0
        self.errors = 0
        self.idle = asyncio.Event()
        self.transport: asyncio.Transport | None = None

    @classmethod
    async def open(cls, host: str, port: int) -> RawRedis:
        _, proto = await asyncio.get_running_loop().create_connection(cls, host, port)
        return proto

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def write(self, commands: bytes, n: int) -> None:
        assert self.transport is not None
        self.outstanding += n
        self.idle.clear()
        self.transport.write(commands)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            self.outstanding -= 1
            if isinstance(reply, hiredis.ReplyError):
                self.errors += 1
        if self.outstanding == 0:
            self.idle.set()

    async def drained(self) -> None:
        if self.outstanding:
            await asyncio.wait_for(self.idle.wait(), 30)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def benchmark_event(job_id: str, seq: int, due_us: int) -> dict[str, Any]:
    """A progress event shaped as jobcast's, for peers that take a message body."""
    return {
        "job_id": job_id,
        "seq": seq,
        "type": "progress",
        "state": "running",
        "attempt": 0,
        "progress": progress_dict(seq, None, str(due_us)),
    }


async def socketio_source(config: dict[str, Any]) -> dict[str, Any]:
    import socketio

    manager = socketio.AsyncRedisManager(config["redis_url"], write_only=True)
    events = RoundRobin(config["jobs"])

    async def send(n: int, first_due: float, interval: float) -> None:
        await asyncio.gather(
            *(
                manager.emit("progress", benchmark_event(job_id, seq, due_us), room=job_id)
                for job_id, seq, due_us in events.batch(n, first_due, interval)
            )
        )

    return await open_loop(config["rate"], config["seconds"], send)


async def raw_source(config: dict[str, Any]) -> dict[str, Any]:
    """PUBLISH one record at `rate` a second, pipelined (a batch per round trip), open loop."""
    host, port = config["redis_host"], config["redis_port"]
    reader, writer = await asyncio.open_connection(host, port)
    rate = config["rate"]
    batch = config.get("batch", 1000)
    commands = b"".join(
        hiredis.pack_command(("PUBLISH", config["channel"], config["record"])) for _ in range(batch)
    )
    parser = hiredis.Reader()
    started = time.perf_counter()
    sent = 0
    while (elapsed := time.perf_counter() - started) < config["seconds"]:
        ahead = sent / rate - elapsed
        if ahead > 0:
            await asyncio.sleep(ahead)
        writer.write(commands)
        replies = 0
        while replies < batch:
            parser.feed(await reader.read(65536))
            while parser.gets() is not False:
                replies += 1
        sent += batch
    elapsed = time.perf_counter() - started
    writer.close()
    return {"sent": sent, "seconds": elapsed, "rate": sent / elapsed, "late_ticks": 0}


async def nchan_source(config: dict[str, Any]) -> dict[str, Any]:
    """nchan's documented publish: an HTTP POST of the message to its publisher location, here
    pipelined on a few keep-alive connections (responses are only counted)."""
    loop = asyncio.get_running_loop()
    connections = [(await loop.create_connection(HttpAcks, "127.0.0.1", config["port"]))[1] for _ in range(4)]
    events = RoundRobin(config["jobs"])

    async def send(n: int, first_due: float, interval: float) -> None:
        batches: list[list[bytes]] = [[] for _ in connections]
        for job_id, seq, due_us in events.batch(n, first_due, interval):
            body = orjson.dumps(benchmark_event(job_id, seq, due_us))
            batches[seq % len(connections)].append(
                b"POST /pub/%s HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (job_id.encode(), len(body), body)
            )
        for connection, batch in zip(connections, batches, strict=True):
            if batch:
                connection.transport.write(b"".join(batch))

    result = await open_loop(config["rate"], config["seconds"], send)
    for connection in connections:
        connection.transport.close()
    return result


class HttpAcks(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        pass  # nchan's answers (202 with the channel's stats) are not needed


SOURCES = {
    "jobcast": jobcast_source,
    "socketio": socketio_source,
    "nchan": nchan_source,
    "raw": raw_source,
}


async def main(config: dict[str, Any]) -> None:
    result = await SOURCES[config["format"]](config)
    sys.stdout.write(orjson.dumps(result).decode() + "\n")


if __name__ == "__main__":
    with open(sys.argv[1], "rb") as f:
        uvloop.run(main(orjson.loads(f.read())))
