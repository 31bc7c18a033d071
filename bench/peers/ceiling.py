"""The ceiling: the least work a Python process can do for the same deliveries.

uvloop, one raw hiredis pub/sub connection, and a raw asyncio protocol per watcher: each
jobcast record from Redis becomes one SSE frame and one WebSocket frame, encoded once and written
to every watcher's socket as they are. No HTTP framework, no per-connection task, no buffering
policy, no resume, no heartbeats: everything jobcast does beyond this is what it costs.

`GET /sse/{job}` streams SSE; `GET /ws/{job}` upgrades to WebSocket.
Run as `python -m bench.peers.ceiling --port P --redis-url URL --prefix jobcast`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib

import uvloop

from jobcast.redis.pubsub import connect_pubsub

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"


class Fanout:
    def __init__(self, prefix: bytes) -> None:
        self.prefix = prefix
        self.sse: dict[bytes, set[asyncio.Transport]] = {}
        self.ws: dict[bytes, set[asyncio.Transport]] = {}
        self.pubsub = None

    def on_message(self, channel: bytes, payload: bytes) -> None:
        seq, type_, data = payload.split(b"\n", 2)
        if sse := self.sse.get(channel):
            frame = b"id: %s\nevent: %s\ndata: %s\n\n" % (seq, type_, data)
            for transport in sse:
                transport.write(frame)
        if ws := self.ws.get(channel):
            n = len(data)
            head = bytes((0x81, n)) if n < 126 else bytes((0x81, 126)) + n.to_bytes(2, "big")
            frame = head + data
            for transport in ws:
                transport.write(frame)

    def join(self, table: dict[bytes, set[asyncio.Transport]], job: bytes, t: asyncio.Transport) -> bytes:
        channel = self.prefix + job
        if channel not in self.sse and channel not in self.ws:
            self.pubsub.subscribe([channel])
        table.setdefault(channel, set()).add(t)
        return channel


class Watcher(asyncio.Protocol):
    def __init__(self, fanout: Fanout) -> None:
        self.fanout = fanout
        self.head = b""
        self.left: tuple[dict[bytes, set[asyncio.Transport]], bytes] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.left is not None:
            return  # WebSocket frames from the client (none expected) are ignored
        self.head += data
        if b"\r\n\r\n" not in self.head:
            return
        line, _, rest = self.head.partition(b"\r\n")
        path = line.split(b" ")[1]
        if path.startswith(b"/sse/"):
            self.transport.write(SSE_HEAD)
            table = self.fanout.sse
        elif path.startswith(b"/ws/"):
            key = next(
                h.split(b":", 1)[1].strip()
                for h in rest.split(b"\r\n")
                if h.lower().startswith(b"sec-websocket-key:")
            )
            accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
            self.transport.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: %s\r\n\r\n" % accept
            )
            table = self.fanout.ws
        else:
            self.transport.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            return
        job = path.rsplit(b"/", 1)[1]
        self.left = (table, self.fanout.join(table, job, self.transport))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.left is not None:
            table, channel = self.left
            table[channel].discard(self.transport)


async def main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    fanout = Fanout(f"{args.prefix}:events:".encode())
    fanout.pubsub = await connect_pubsub(args.redis_url, fanout.on_message, lambda _: None)
    server = await loop.create_server(lambda: Watcher(fanout), args.host, args.port, backlog=4096)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--prefix", default="jobcast")
    uvloop.run(main(parser.parse_args()))
