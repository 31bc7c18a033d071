"""WebSockets are held without aiohttp once their handshake is answered (server/transports/websocket/): the
handshake, the framing rules of RFC 6455, pings, the close handshake, flow control, and that an
idle connection costs aiohttp nothing while it still gets every event."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
from typing import Any

import pytest
from aiohttp import web

from jobcast.protocol import EventType
from jobcast.server.app import create_app
from jobcast.server.keys import RELAY, STREAMS, WEBSOCKETS
from jobcast.server.transports.websocket.handshake import accept_key
from jobcast.store.jobs import JobStore
from tests.helpers import (
    small_send_buffer,
    stalled_socket,
    submit,
    submit_waiting_job,
    unkept_session,
    wait_for,
)

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def frame(opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True, rsv: int = 0) -> bytes:
    """A client's frame, built by hand so that it can break the rules."""
    n = len(payload)
    head = bytes(((0x80 if fin else 0) | rsv << 4 | opcode,))
    mask_bit = 0x80 if masked else 0
    if n < 126:
        head += bytes((mask_bit | n,))
    elif n < 65536:
        head += bytes((mask_bit | 126,)) + struct.pack(">H", n)
    else:
        head += bytes((mask_bit | 127,)) + struct.pack(">Q", n)
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def handshake(extra: str = "") -> bytes:
    """An opening handshake for /api/ws, with `extra` header lines."""
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET /api/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    ).encode()


class RawWebSocket:
    """A WebSocket client speaking the frames by hand."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int, *, extra: str = "") -> RawWebSocket:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        request = handshake(extra)
        writer.write(request)
        key = request.split(b"Sec-WebSocket-Key: ")[1].split(b"\r\n")[0].decode()
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 "), head
        assert f"Sec-WebSocket-Accept: {accept_key(key)}\r\n".encode() in head
        assert b"Sec-WebSocket-Extensions" not in head  # frames go out uncompressed
        return cls(reader, writer)

    def send(self, opcode: int, payload: bytes = b"", **kwargs: Any) -> None:
        self.writer.write(frame(opcode, payload, **kwargs))

    def send_json(self, message: dict[str, Any]) -> None:
        self.send(TEXT, json.dumps(message).encode())

    async def receive(self) -> tuple[int, bytes]:
        first, second = await self.reader.readexactly(2)
        assert first & 0x80 and not second & 0x80  # whole, and unmasked as a server's are
        n = second & 0x7F
        if n == 126:
            (n,) = struct.unpack(">H", await self.reader.readexactly(2))
        elif n == 127:
            (n,) = struct.unpack(">Q", await self.reader.readexactly(8))
        return first & 0x0F, await self.reader.readexactly(n)

    async def receive_json(self) -> dict[str, Any]:
        opcode, payload = await self.receive()
        assert opcode == TEXT
        return json.loads(payload)

    async def closed(self) -> int | None:
        """Read to the server's close frame; its code, once the server has ended the connection."""
        async with asyncio.timeout(10):
            while True:
                opcode, payload = await self.receive()
                if opcode == CLOSE:
                    assert await self.reader.read() == b""  # then the server closes the socket
                    return struct.unpack(">H", payload[:2])[0] if payload else None

    async def cut_off(self) -> None:
        """Wait for the server to end the connection without a close frame."""
        async with asyncio.timeout(10):
            while True:
                try:
                    opcode, _ = await self.receive()
                except (asyncio.IncompleteReadError, ConnectionResetError):
                    return
                assert opcode != CLOSE

    def close(self) -> None:
        self.writer.close()


def unsubscribe(job_id: str) -> dict[str, Any]:
    return {"type": "unsubscribe", "job_id": job_id}


async def test_a_handshake_that_is_not_one_gets_a_400_problem(client) -> None:
    good = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
    }
    for wrong, says in (
        ({"Upgrade": None, "Connection": None}, "Upgrade: websocket"),
        ({"Connection": "keep-alive"}, "Connection: Upgrade"),
        ({"Sec-WebSocket-Version": "8"}, "version 13"),
        ({"Sec-WebSocket-Key": "c2hvcnQ="}, "16 bytes"),
    ):
        headers = {k: v for k, v in {**good, **wrong}.items() if v is not None}
        response = await client.get("/api/ws", headers=headers)
        assert response.status == 400 and response.content_type == "application/problem+json"
        assert says in (await response.json())["detail"]
        if "Sec-WebSocket-Version" in wrong:
            assert response.headers["Sec-WebSocket-Version"] == "13"


async def test_no_compression_is_agreed_even_when_the_client_offers_it(client) -> None:
    async with client.ws_connect("/api/ws", compress=15) as ws:
        assert ws.compress == 0
        await ws.send_json(unsubscribe("a" * 32))
        assert (await ws.receive_json())["code"] == "not_subscribed"


async def test_pings_are_answered_and_messages_are_read_however_they_are_cut(client) -> None:
    ws = await RawWebSocket.open(client.port)
    try:
        ws.send(PING, b"are you there")
        assert await ws.receive() == (PONG, b"are you there")
        # One message in three fragments, with a ping between two of them.
        text = json.dumps(unsubscribe("b" * 32)).encode()
        ws.send(TEXT, text[:10], fin=False)
        ws.send(PING, b"1")
        ws.send(CONTINUATION, text[10:20], fin=False)
        ws.send(CONTINUATION, text[20:])
        assert await ws.receive() == (PONG, b"1")
        assert await ws.receive_json() == {
            "type": "error",
            "code": "not_subscribed",
            "message": "not subscribed to this job",
            "job_id": "b" * 32,
        }
        # A frame arriving a byte at a time, and two frames in one piece.
        for byte in frame(TEXT, json.dumps(unsubscribe("c" * 32)).encode()):
            ws.writer.write(bytes((byte,)))
            await ws.writer.drain()
        ws.writer.write(frame(TEXT, b"[]") + frame(BINARY, b"\x00"))
        assert (await ws.receive_json())["job_id"] == "c" * 32
        assert (await ws.receive_json())["message"] == "a message must be a JSON object"
        assert (await ws.receive_json())["message"] == "send JSON text messages"
    finally:
        ws.close()


@pytest.mark.parametrize(
    "frames, code",
    [
        pytest.param([frame(TEXT, b"{}", masked=False)], 1002, id="unmasked"),
        pytest.param([frame(TEXT, b"{}", rsv=4)], 1002, id="reserved bit"),
        pytest.param([frame(CONTINUATION, b"{}")], 1002, id="continuation of nothing"),
        pytest.param([frame(TEXT, b"{", fin=False), frame(TEXT, b"}")], 1002, id="new message mid-message"),
        pytest.param([frame(PING, b"", fin=False)], 1002, id="fragmented ping"),
        pytest.param([frame(PING, b"x" * 126)], 1002, id="ping over 125 bytes"),
        pytest.param([frame(0x3, b"")], 1002, id="unknown opcode"),
        pytest.param([frame(CLOSE, struct.pack(">H", 1005))], 1002, id="close code never sent"),
        pytest.param([frame(TEXT, b"\xff\xfe")], 1007, id="text not UTF-8"),
        # Only the header of a frame too big: the server refuses it without waiting for the rest.
        pytest.param([frame(TEXT, b"x" * 70000)[:14]], 1009, id="message over the limit"),
        pytest.param(
            [frame(TEXT, b"x" * 40000, fin=False), frame(CONTINUATION, b"x" * 40000)[:14]],
            1009,
            id="fragments over the limit",
        ),
    ],
)
async def test_a_client_that_breaks_the_protocol_is_closed_with_the_code_that_says_why(
    client, frames: list[bytes], code: int
) -> None:
    ws = await RawWebSocket.open(client.port)
    try:
        ws.writer.write(b"".join(frames))
        assert await ws.closed() == code
    finally:
        ws.close()
    await wait_for(lambda: client.app[STREAMS].ws == 0, what="the connection to be counted closed")


async def test_a_close_is_answered_with_its_code_and_the_connection_ends(client) -> None:
    ws = await RawWebSocket.open(client.port)
    try:
        await wait_for(lambda: client.app[STREAMS].ws == 1, what="the connection to be counted")
        ws.send(CLOSE, struct.pack(">H", 1000) + b"bye")
        assert await ws.closed() == 1000
    finally:
        ws.close()
    await wait_for(lambda: client.app[STREAMS].ws == 0, what="the connection to be counted closed")


async def test_a_peer_silent_for_a_ping_interval_is_cut_off_and_one_that_answers_stays(
    aiohttp_client, settings
) -> None:
    client = await aiohttp_client(create_app(settings.model_copy(update={"ws_ping_interval_s": 0.5})))
    silent, answering = await RawWebSocket.open(client.port), await RawWebSocket.open(client.port)
    answers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def answer_pings() -> None:
        while True:
            opcode, payload = await answering.receive()
            if opcode == PING:
                answering.send(PONG, payload)
            else:
                answers.put_nowait(json.loads(payload))

    responder = asyncio.create_task(answer_pings())
    try:
        assert await silent.receive() == (PING, b"")
        await silent.cut_off()
        answering.send_json(unsubscribe("d" * 32))
        assert (await asyncio.wait_for(answers.get(), 10))["code"] == "not_subscribed"
        assert client.app[STREAMS].ws == 1
    finally:
        responder.cancel()
        await asyncio.gather(responder, return_exceptions=True)
        silent.close()
        answering.close()


async def test_a_flood_of_messages_is_handled_in_order_with_none_lost(aiohttp_client, settings) -> None:
    # Two messages may wait; the rest wait in the socket, unread, until they are handled.
    client = await aiohttp_client(create_app(settings.model_copy(update={"ws_inbox_messages": 2})))
    ws = await RawWebSocket.open(client.port)
    try:
        ids = [f"{i:032x}" for i in range(300)]
        ws.writer.write(b"".join(frame(TEXT, json.dumps(unsubscribe(i)).encode()) for i in ids))
        answered = [(await ws.receive_json())["job_id"] for _ in ids]
        assert answered == ids
    finally:
        ws.close()


async def test_an_idle_websocket_leaves_aiohttp_and_still_gets_every_event(client, redis, settings) -> None:
    store = JobStore(redis, settings)
    server = client.server.runner.server
    async with unkept_session(client) as session:
        job = await submit(session, body={"kind": "demo", "params": {"steps": 5}})  # no worker
        sockets = [await session.ws_connect("/api/ws") for _ in range(3)]
        for ws in sockets:
            await ws.send_json({"type": "subscribe", "job_id": job["id"]})
            assert (await ws.receive_json())["type"] == "subscribed"
            assert (await ws.receive_json())["type"] == "snapshot"
        await wait_for(lambda: not server.connections, what="aiohttp to let go of the sockets")
        await store.publish(job["id"], EventType.STARTED, attempt=0)
        await store.publish(job["id"], EventType.PROGRESS, attempt=1, progress={"current": 1, "total": 5})
        await store.publish(job["id"], EventType.SUCCEEDED, attempt=1, result={"steps": 5})
        for ws in sockets:
            events = [await ws.receive_json() for _ in range(3)]
            assert [(e["type"], e["seq"]) for e in events] == [
                ("started", 2),
                ("progress", 3),
                ("succeeded", 4),
            ]
        # After the terminal event the connection has left the job's topic.
        key = client.app[RELAY].broker.job(job["id"]).key
        await wait_for(lambda: key not in client.app[RELAY].hub.topics, what="the topic to be left")
        for ws in sockets:
            await ws.send_json(unsubscribe(job["id"]))
            assert (await ws.receive_json())["code"] == "not_subscribed"
            await ws.close()
            assert ws.close_code == 1000
    await wait_for(lambda: client.app[STREAMS].ws == 0, what="the connections to be counted closed")


async def test_a_websocket_whose_client_stops_reading_is_cut_off(aiohttp_client, settings, redis) -> None:
    app = create_app(settings.model_copy(update={"write_timeout_s": 0.5}))
    app.middlewares.append(small_send_buffer)
    client = await aiohttp_client(app)
    job = await submit_waiting_job(client)
    subscribe = frame(TEXT, json.dumps({"type": "subscribe", "job_id": job["id"]}).encode())
    stalled = stalled_socket(client.port, handshake("X-Stall: 1\r\n") + subscribe)
    try:
        hub, key = client.app[RELAY].hub, client.app[RELAY].broker.job(job["id"]).key
        await wait_for(lambda: key in hub.topics and hub.topics[key].live, what="the watcher to go live")
        store = JobStore(redis, settings)
        await store.publish(job["id"], EventType.STARTED, attempt=0)
        for i in range(200):  # far more than the socket's buffers hold: its writes pause
            progress = {"current": i, "total": 200, "message": "x" * 2000}
            await store.publish(job["id"], EventType.PROGRESS, attempt=1, progress=progress)
        # Too far behind, or paused past the write timeout: cut off, its subscription with it.
        await wait_for(lambda: key not in hub.topics, timeout=10, what="the stalled socket to be cut off")
        await wait_for(lambda: client.app[STREAMS].ws == 0, what="the connection to be counted closed")
    finally:
        stalled.close()


@web.middleware
async def small_buffers(request: web.Request, handler: Any) -> web.StreamResponse:
    """Pin both kernel buffers of the flooding client's connection, so that what it sends piles
    up in jobcast or nowhere."""
    if request.headers.get("X-Flood") and request.transport is not None:
        sock = request.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return await handler(request)


def send_until_blocked(sock: socket.socket, data: bytes, stall_s: float) -> int:
    """Send `data` until the peer takes nothing for `stall_s`; how many bytes it took."""
    sock.settimeout(stall_s)
    sent = 0
    try:
        while sent < len(data):
            sent += sock.send(data[sent : sent + 65536])
    except TimeoutError:
        pass
    return sent


async def test_a_client_flooding_messages_while_one_is_handled_is_read_no_faster(
    aiohttp_client, settings, redis
) -> None:
    app = create_app(settings.model_copy(update={"ws_inbox_messages": 4}))
    app.middlewares.append(small_buffers)
    client = await aiohttp_client(app)
    job = await submit_waiting_job(client)
    store = JobStore(redis, settings)
    await store.publish(job["id"], EventType.STARTED, attempt=0)
    for i in range(300):  # a history far bigger than the socket's buffers
        progress = {"current": i, "total": 300, "message": "x" * 2000}
        await store.publish(job["id"], EventType.PROGRESS, attempt=1, progress=progress)
    flooder = socket.socket()
    flooder.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    flooder.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    try:
        await asyncio.to_thread(flooder.connect, ("127.0.0.1", client.port))
        # The replay of that history waits for the client to read, which it never does; its
        # messages meanwhile wait their turn.
        subscribe = {"type": "subscribe", "job_id": job["id"], "last_event_id": 0}
        flood = frame(TEXT, json.dumps(subscribe).encode()) + b"".join(
            frame(TEXT, json.dumps(unsubscribe(f"{i:032x}")).encode()) for i in range(60_000)
        )
        await asyncio.to_thread(flooder.sendall, handshake("X-Flood: 1\r\n"))
        taken = await asyncio.to_thread(send_until_blocked, flooder, flood, 2.0)
        assert len(flood) > 4_000_000
        assert taken < 1_000_000, f"the server took {taken} bytes of messages it could not handle yet"
        (socket_,) = client.app[WEBSOCKETS]._open
        # Held unparsed: at most the largest message and a little, and the one read that passed it
        # (asyncio reads at most 256 KiB at once), and what the HTTP server had read after the
        # handshake before it handed the socket over (it stops at 64 KiB, and one read past it).
        assert len(socket_._inbox or ()) <= 4
        one_read, handed_over = 256 * 1024, 64 * 1024 + 256 * 1024
        assert socket_._reader.unread <= socket_.max_unread + one_read + handed_over
    finally:
        flooder.close()
    await wait_for(lambda: client.app[STREAMS].ws == 0, what="the connection to be counted closed")
