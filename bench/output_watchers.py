"""Watchers of job output, many in one process, cheaper than what they measure.

Each is a raw asyncio protocol on uvloop reading one SSE stream. Nothing is JSON-parsed: the
tokens the output writer writes (`<due time in µs, 16 digits>;`) are found in the bytes, which
also gives each token's delay from its write to its arrival. Only the first `sample` watchers
look for tokens; the others count bytes, so the load side stays light.

Run as `python -m bench.output_watchers <config.json>`: it connects every watcher, prints
`{"connected": n}`, waits `warmup_s`, measures for `seconds`, prints the figures and exits.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from array import array
from pathlib import Path
from typing import Any

import orjson
import uvloop

TOKEN = re.compile(rb"(\d{16});")


class Stats:
    def __init__(self) -> None:
        self.measuring = False
        self.tokens = 0
        self.bytes = 0
        self.latencies_us = array("q")
        self.closed = 0


class Watcher(asyncio.Protocol):
    def __init__(
        self, path: str, host: str, stats: Stats, sampled: bool, ready: asyncio.Future[None]
    ) -> None:
        self.path, self.host, self.stats, self.sampled, self.ready = path, host, stats, sampled, ready
        self.tail = b""
        self.headers_done = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(  # type: ignore[attr-defined]
            f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\nAccept: text/event-stream\r\n\r\n".encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.stats.closed += 1

    def data_received(self, data: bytes) -> None:
        if not self.headers_done:
            _, sep, rest = data.partition(b"\r\n\r\n")
            if not sep:
                return
            self.headers_done = True
            if not self.ready.done():
                self.ready.set_result(None)
            data = rest
        stats = self.stats
        if not stats.measuring:
            return
        stats.bytes += len(data)
        if not self.sampled:
            return
        now_us = time.time_ns() // 1000
        text = self.tail + data
        for match in TOKEN.finditer(text):
            stats.tokens += 1
            stats.latencies_us.append(now_us - int(match[1]))
        self.tail = text[-17:]
        # A token cut by the read is found whole next time; one found now is not again.
        if TOKEN.search(self.tail):
            self.tail = self.tail[self.tail.rfind(b";") + 1 :]


def percentiles(values: array) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000  # noqa: E731
    return {"p50": round(pick(0.5), 2), "p99": round(pick(0.99), 2), "max": round(ordered[-1] / 1000, 2)}


async def main(config: dict[str, Any]) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    stats = Stats()
    host, port = config["host"], config["port"]
    waits = []
    for i, path in enumerate(config["paths"]):
        ready = loop.create_future()
        await loop.create_connection(
            lambda p=path, r=ready, s=i < config["sample"]: Watcher(p, f"{host}:{port}", stats, s, r),
            host,
            port,
        )
        waits.append(ready)
    await asyncio.wait_for(asyncio.gather(*waits), 30)
    print(orjson.dumps({"connected": len(waits)}).decode(), flush=True)
    await asyncio.sleep(config["warmup_s"])
    stats.measuring = True
    started = time.perf_counter()
    await asyncio.sleep(config["seconds"])
    stats.measuring = False
    seconds = time.perf_counter() - started
    sampled = max(1, min(config["sample"], len(waits)))
    return {
        "seconds": seconds,
        "bytes_per_s": round(stats.bytes / seconds),
        "tokens_per_s_per_watcher": round(stats.tokens / seconds / sampled, 1),
        "latency_ms": percentiles(stats.latencies_us),
        "closed": stats.closed,
    }


if __name__ == "__main__":
    cfg = orjson.loads(Path(sys.argv[1]).read_bytes())
    uvloop.install()
    print(orjson.dumps(asyncio.run(main(cfg))).decode(), flush=True)
