"""The fan-out's lockstep (server/fanout/lockstep.py) on real sockets: watchers in step get each event
from one write loop, and one that stops reading leaves it without slowing the others, without
its buffer growing, and without missing or repeating an event."""

from __future__ import annotations

import asyncio
import re
import socket
from typing import Any

from jobcast.protocol import EventType
from jobcast.server.app import create_app
from jobcast.server.keys import OUTBOXES, RELAY
from jobcast.store.jobs import JobStore
from tests.helpers import (
    assert_contiguous,
    small_send_buffer,
    sse_events,
    stalled_socket,
    submit_waiting_job,
    unkept_session,
    wait_for,
)

EVENTS = 200
MESSAGE = "x" * 2000  # 200 events of 2 KB: far more than the stalled socket's buffers hold
SOCKET_BUFFER = 16 * 1024  # JOBCAST_SOCKET_BUFFER_BYTES, a quarter of its default


async def test_a_watcher_that_stops_reading_leaves_the_lockstep_and_misses_nothing(
    aiohttp_client, settings, redis
) -> None:
    # Room for every event in the outbox, and time: this watcher must be neither conflated nor
    # cut off, only held back.
    roomy = {"watcher_buffer": 1000, "watcher_buffer_bytes": 10_000_000, "write_timeout_s": 60}
    roomy["socket_buffer_bytes"] = SOCKET_BUFFER
    app = create_app(settings.model_copy(update=roomy))
    app.middlewares.append(small_send_buffer)
    client = await aiohttp_client(app)
    store = JobStore(redis, settings)
    job = await submit_waiting_job(client)
    events_url = f"/api/jobs/{job['id']}/events"
    hub, key = client.app[RELAY].hub, client.app[RELAY].broker.job(job["id"]).key
    last = 2 + EVENTS  # started, then the progress; the terminal event comes after

    async with unkept_session(client) as session:
        sse_seen: list[dict[str, Any]] = []
        ws_seen: list[dict[str, Any]] = []

        async def read_sse() -> None:
            async with session.get(events_url, headers={"Last-Event-ID": "1"}) as response:
                async for event in sse_events(response):
                    sse_seen.append(event.data)

        async def read_ws() -> None:
            async with session.ws_connect("/api/ws") as ws:
                await ws.send_json({"type": "subscribe", "job_id": job["id"], "last_event_id": 1})
                assert (await ws.receive_json())["type"] == "subscribed"
                while not ws_seen or ws_seen[-1]["type"] != "succeeded":
                    ws_seen.append(await ws.receive_json())

        readers = [asyncio.create_task(read_sse()), asyncio.create_task(read_ws())]
        request = f"GET {events_url} HTTP/1.1\r\nHost: 127.0.0.1:{client.port}\r\nLast-Event-ID: 1\r\nX-Stall: 1\r\n\r\n"
        stalled = stalled_socket(client.port, request.encode())
        try:
            await wait_for(
                lambda: key in hub.topics and len(hub.topics[key].live) + len(hub.topics[key].lockstep) == 3,
                what="three live watchers",
            )
            await store.publish(job["id"], EventType.STARTED, attempt=0)
            await wait_for(lambda: len(hub.topics[key].lockstep) == 3, what="all three in step")

            for i in range(EVENTS):
                progress = {"current": i + 1, "total": EVENTS, "message": MESSAGE}
                await store.publish(job["id"], EventType.PROGRESS, attempt=1, progress=progress)
            # The readers are not held up by the watcher that reads nothing.
            await wait_for(
                lambda: len(sse_seen) == len(ws_seen) == last - 1, what="the readers to get every event"
            )
            port = stalled.getsockname()[1]
            (held,) = [
                o
                for o in client.app[OUTBOXES]
                if o.transport and o.transport.get_extra_info("peername")[1] == port
            ]
            # Its socket's buffer stopped growing where the transport paused: the rest waits in
            # its (bounded) outbox, and the readers are still in step.
            assert held.transport.get_write_buffer_size() < SOCKET_BUFFER + 2 * len(MESSAGE) + 200
            assert len(held) > 0 and len(hub.topics[key].lockstep) == 2

            await store.publish(job["id"], EventType.SUCCEEDED, attempt=1, result={"steps": EVENTS})
            raw = await read_to_the_end(stalled)
        finally:
            stalled.close()
        async with asyncio.timeout(20):
            await asyncio.gather(*readers)

    for seen in (sse_seen, ws_seen):
        assert_contiguous(seen, 2)
        assert seen[-1]["type"] == "succeeded" and seen[-1]["seq"] == last + 1
    ids = [int(i) for i in re.findall(rb"\nid: (\d+)\n", raw)]
    assert ids == list(range(2, last + 2))
    assert raw.endswith(b"0\r\n\r\n") and b"event: succeeded\n" in raw


async def read_to_the_end(sock: socket.socket) -> bytes:
    """Everything the server sends on `sock` until it closes the connection."""
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    chunks = []
    async with asyncio.timeout(30):
        while chunk := await loop.sock_recv(sock, 65536):
            chunks.append(chunk)
    return b"".join(chunks)
