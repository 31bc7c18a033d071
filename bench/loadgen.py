"""The load generator: many watchers in one process, cheaper than what they measure.

Each watcher is a raw asyncio protocol on uvloop. Nothing is JSON-parsed: a delivery is found by
the marker that every benchmark event carries, `"message":"<publish time in µs>"`, which also
gives its latency (publisher and watchers share the machine's clock). WebSocket frames are parsed
only as far as their length, to answer pings; SSE and polling responses are scanned as bytes.

Run as `python -m bench.loadgen <config.json>`; it prints one JSON line when every watcher is
connected, then reads commands from stdin: `measure` starts counting, `stop` prints the figures
and exits.
"""

from __future__ import annotations

import asyncio
import base64
import os
import resource
import sys
import time
from array import array
from typing import Any

import orjson
import uvloop

MARK = b'"message":"'
MARK_LEN = len(MARK)


class Stats:
    def __init__(self) -> None:
        self.measuring = False
        self.deliveries = 0
        self.latencies_us = array("q")
        self.requests = 0
        self.connected = 0
        self.failed = 0
        self.closed = 0
        self.bytes = 0

    def scan(self, data: bytes, start: int = 0, end: int | None = None) -> int:
        """Count the markers in data[start:end] and note their latencies. Returns where the next
        scan of a continued stream must start: at a marker cut short by the end, or just far enough
        back to catch a marker that straddles the end."""
        end = len(data) if end is None else end
        now_us = time.time_ns() // 1000
        resume = max(start, end - MARK_LEN + 1)
        found = 0
        i = data.find(MARK, start, end)
        while i >= 0:
            j = data.find(b'"', i + MARK_LEN, end)
            if j < 0:
                resume = i
                break
            digits = data[i + MARK_LEN : j]
            if digits.isdigit() and self.measuring:
                self.latencies_us.append(now_us - int(digits))
                found += 1
            resume = max(resume, j + 1)
            i = data.find(MARK, j, end)
        self.deliveries += found
        return resume


STATS = Stats()


class Watcher(asyncio.Protocol):
    def __init__(self, host: str, path: str, ready: asyncio.Future[None]) -> None:
        self.host = host
        self.path = path
        self.ready = ready
        self.transport: asyncio.Transport | None = None
        self.head = b""
        self.open = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request())  # type: ignore[attr-defined]

    def request(self) -> bytes:
        raise NotImplementedError

    def connection_lost(self, exc: Exception | None) -> None:
        STATS.closed += 1
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed before ready: {exc}"))

    def data_received(self, data: bytes) -> None:
        STATS.bytes += len(data)
        if not self.open:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            status = self.head.split(b" ", 2)[1]
            data, self.head = self.head[end + 4 :], b""
            if not self.accept(status):
                if not self.ready.done():
                    self.ready.set_exception(ConnectionError(f"{self.path}: HTTP {status.decode()}"))
                return
            self.open = True
            if not self.ready.done() and not self.answer_first():
                self.ready.set_result(None)
        if data:
            if not self.ready.done():
                self.ready.set_result(None)
            self.body(data)

    def answer_first(self) -> bool:
        """Whether the watcher is ready only once the server's first message arrives."""
        return False

    def accept(self, status: bytes) -> bool:
        return status == b"200"

    def body(self, data: bytes) -> None:
        raise NotImplementedError


class SSEWatcher(Watcher):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.tail = b""

    def request(self) -> bytes:
        return b"GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n\r\n" % (
            self.path.encode(),
            self.host.encode(),
        )

    def body(self, data: bytes) -> None:
        # A marker may straddle two reads: scan the kept tail with the new bytes.
        buf = self.tail + data if self.tail else data
        self.tail = buf[STATS.scan(buf) :]


class WSWatcher(Watcher):
    """RFC 6455 client. Frames are not parsed: the marker cannot occur in a frame header, so the
    stream is scanned as bytes like SSE; pings (aiohttp's are empty) are answered."""

    PING = b"\x89\x00"

    def __init__(self, host: str, path: str, ready: asyncio.Future[None], hello: list[bytes]) -> None:
        super().__init__(host, path, ready)
        self.hello = hello
        self.tail = b""

    def request(self) -> bytes:
        key = base64.b64encode(os.urandom(16))
        return (
            b"GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
            % (self.path.encode(), self.host.encode(), key)
        )

    def accept(self, status: bytes) -> bool:
        if status != b"101":
            return False
        for message in self.hello:
            self.send(message)
        return True

    def answer_first(self) -> bool:
        # A subscription is in place once the server answers it (jobcast: `subscribed`).
        return bool(self.hello)

    def send(self, payload: bytes, opcode: int = 1) -> None:
        # A zero masking key is a valid mask (RFC 6455 5.3) and spares the XOR.
        n = len(payload)
        if n < 126:
            header = bytes((0x80 | opcode, 0x80 | n))
        else:
            header = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
        assert self.transport is not None
        self.transport.write(header + b"\0\0\0\0" + payload)

    def body(self, data: bytes) -> None:
        # Keep a marker's worth of the last read, in case a marker straddles two reads.
        buf = self.tail + data if self.tail else data
        self.tail = buf[STATS.scan(buf) :]
        if self.PING in data:
            self.send(b"", opcode=10)


class SocketIOWatcher(WSWatcher):
    """Engine.IO 4 over WebSocket: open, connect the namespace, join the job's room, pong.
    Its handshake needs each frame, so this one parses frames."""

    def __init__(self, host: str, path: str, ready: asyncio.Future[None], job_id: str) -> None:
        super().__init__(host, path, ready, [])
        self.job_id = job_id
        self.buf = b""

    def body(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        i, n = 0, len(buf)
        while n - i >= 2:
            length = buf[i + 1] & 0x7F
            h = 2
            if length == 126:
                if n - i < 4:
                    break
                length = int.from_bytes(buf[i + 2 : i + 4], "big")
                h = 4
            if n - i < h + length:
                break
            if buf[i] & 0x0F == 1:
                self.text(buf, i + h, i + h + length)
            i += h + length
        self.buf = buf[i:]

    def text(self, buf: bytes, start: int, end: int) -> None:
        kind = buf[start : start + 2]
        if kind == b"42":
            STATS.scan(buf, start, end)
        elif buf[start:end] == b"2":
            self.send(b"3")
        elif kind == b"0{":
            self.send(b"40")
        elif kind == b"40":
            self.send(b'42["watch","%s"]' % self.job_id.encode())


class Poller(Watcher):
    """Polls a job's snapshot over one keep-alive connection; a delivery is a new message seen."""

    def __init__(self, host: str, path: str, ready: asyncio.Future[None], interval_s: float) -> None:
        super().__init__(host, path, ready)
        self.interval_s = interval_s
        self.buf = b""
        self.want = -1
        self.last = b""
        self.task: asyncio.Task[None] | None = None

    def request(self) -> bytes:
        STATS.requests += STATS.measuring
        return b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (self.path.encode(), self.host.encode())

    def data_received(self, data: bytes) -> None:
        STATS.bytes += len(data)
        self.buf += data
        while True:
            if self.want < 0:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = self.buf[:end].lower()
                at = head.find(b"content-length:")
                self.want = int(head[at + 15 :].split(b"\r\n", 1)[0]) if at >= 0 else 0
                self.buf = self.buf[end + 4 :]
            if len(self.buf) < self.want:
                return
            body, self.buf, self.want = self.buf[: self.want], self.buf[self.want :], -1
            self.response(body)

    def response(self, body: bytes) -> None:
        if not self.ready.done():
            self.ready.set_result(None)
        i = body.find(MARK)
        if i >= 0:
            value = body[i + MARK_LEN : body.find(b'"', i + MARK_LEN)]
            if value != self.last:
                self.last = value
                STATS.scan(body, i)
        loop = asyncio.get_running_loop()
        loop.call_later(self.interval_s, self.again)

    def again(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(self.request())


async def open_watcher(loop: asyncio.AbstractEventLoop, host: str, port: int, spec: dict[str, Any]) -> Any:
    ready: asyncio.Future[None] = loop.create_future()
    kind = spec["kind"]
    if kind == "sse":
        factory = lambda: SSEWatcher(host, spec["path"], ready)  # noqa: E731
    elif kind == "ws":
        hello = [m.encode() for m in spec.get("hello", [])]
        factory = lambda: WSWatcher(host, spec["path"], ready, hello)  # noqa: E731
    elif kind == "sio":
        factory = lambda: SocketIOWatcher(host, spec["path"], ready, spec["job"])  # noqa: E731
    elif kind == "poll":
        factory = lambda: Poller(host, spec["path"], ready, spec["interval_s"])  # noqa: E731
    else:
        raise ValueError(kind)
    transport, _ = await loop.create_connection(factory, host, port)
    await asyncio.wait_for(ready, 30)
    STATS.connected += 1
    return transport


async def main(config: dict[str, Any]) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    loop = asyncio.get_running_loop()
    host, port = config["host"], config["port"]
    limit = asyncio.Semaphore(config.get("connect_concurrency", 100))
    transports: list[asyncio.BaseTransport] = []

    async def one(spec: dict[str, Any]) -> None:
        async with limit:
            try:
                transports.append(await open_watcher(loop, host, port, spec))
            except (OSError, TimeoutError, ConnectionError) as e:
                STATS.failed += 1
                if STATS.failed <= 3:
                    print(f"loadgen: {spec['path']}: {e!r}", file=sys.stderr)

    started = time.perf_counter()
    await asyncio.gather(*(one(spec) for spec in config["watchers"]))
    emit(
        {
            "event": "connected",
            "connected": STATS.connected,
            "failed": STATS.failed,
            "connect_s": round(time.perf_counter() - started, 3),
        }
    )
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    measure_started = 0.0
    while line := (await reader.readline()).strip():
        if line == b"measure":
            STATS.measuring, STATS.deliveries, STATS.requests = True, 0, 0
            STATS.latencies_us = array("q")
            closed_before = STATS.closed
            measure_started = time.perf_counter()
            emit({"event": "measuring"})
        elif line == b"stop":
            STATS.measuring = False
            elapsed = time.perf_counter() - measure_started
            emit(
                {
                    "event": "result",
                    "seconds": elapsed,
                    "deliveries": STATS.deliveries,
                    "requests": STATS.requests,
                    "latencies_us": summary(STATS.latencies_us),
                    "connected": STATS.connected,
                    "failed": STATS.failed,
                    "closed_while_measuring": STATS.closed - closed_before,
                }
            )
            break
    for transport in transports:
        transport.abort()


def summary(values: array) -> dict[str, float]:
    if not values:
        return {"count": 0}
    ordered = sorted(values)
    n = len(ordered)

    def at(q: float) -> float:
        return ordered[min(n - 1, int(q * n))] / 1000

    return {"count": n, "p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": ordered[-1] / 1000}


def emit(message: dict[str, Any]) -> None:
    sys.stdout.write(orjson.dumps(message).decode() + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    with open(sys.argv[1], "rb") as f:
        uvloop.run(main(orjson.loads(f.read())))
