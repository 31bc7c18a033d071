"""WebSocket: `GET /api/ws`, one connection watching many jobs, a thin transport over the hub."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from jobcast.protocol import loads
from jobcast.tasks import cancel_and_wait
from server.api import routes
from server.hub import Event, Outbox, OutboxClosed, Subscription
from server.keys import OUTBOXES, RELAY, SETTINGS, SOCKETS
from server.relay import AlreadyEnded, JobNotFound, Relay, RelayUnavailable

MAX_MESSAGE_BYTES = 64 * 1024


def error(code: str, message: str, job_id: str | None = None) -> Event:
    body: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if job_id is not None:
        body["job_id"] = job_id
    return Event.control(body)


class Connection:
    """One WebSocket client's subscriptions and outbox."""

    def __init__(
        self, ws: web.WebSocketResponse, relay: Relay, buffer: int, abort: Callable[[], None]
    ) -> None:
        self.ws = ws
        self.abort = abort
        self.relay = relay
        self.outbox = Outbox(buffer)
        self.subs: dict[str, Subscription] = {}

    async def handle(self, raw: str) -> None:
        try:
            message = loads(raw)
        except ValueError:
            self.outbox.put(error("bad_json", "the message is not valid JSON"))
            return
        if not isinstance(message, dict):
            self.outbox.put(error("bad_message", "a message must be a JSON object"))
            return
        kind = message.get("type")
        job_id = message.get("job_id")
        if kind not in ("subscribe", "unsubscribe", "cancel"):
            self.outbox.put(error("unknown_type", f"unknown message type {kind!r}"))
        elif not isinstance(job_id, str) or not job_id:
            self.outbox.put(error("bad_message", "job_id must be a non-empty string"))
        elif kind == "subscribe":
            await self.subscribe(job_id, message.get("last_event_id"))
        elif kind == "unsubscribe":
            self.unsubscribe(job_id)
        else:
            self.outbox.put(error("not_implemented", "cancelling jobs is not available yet", job_id))

    async def subscribe(self, job_id: str, since: Any) -> None:
        if since is not None and (type(since) is not int or since < 0):
            self.outbox.put(
                error("bad_last_event_id", "last_event_id must be a non-negative integer", job_id)
            )
            return
        if (old := self.subs.pop(job_id, None)) is not None:
            self.relay.leave(old)
        sub = Subscription(job_id, self.outbox, since)
        try:
            await self.relay.join(
                sub, since, announce=Event.control({"type": "subscribed", "job_id": job_id})
            )
        except JobNotFound:
            self.outbox.put(error("not_found", f"no job {job_id}", job_id))
        except AlreadyEnded:
            self.outbox.put(error("ended", "the job has ended and you have seen its last event", job_id))
        except RelayUnavailable as e:
            self.outbox.put(error("unavailable", str(e), job_id))
        else:
            if sub.done:
                self.relay.leave(sub)
            else:
                self.subs[job_id] = sub

    def unsubscribe(self, job_id: str) -> None:
        sub = self.subs.pop(job_id, None)
        if sub is None:
            self.outbox.put(error("not_subscribed", "not subscribed to this job", job_id))
            return
        self.relay.leave(sub)
        self.outbox.put(Event.control({"type": "unsubscribed", "job_id": job_id}))

    def finished(self, job_id: str) -> None:
        """The job's terminal event went out: nothing more will come for it."""
        sub = self.subs.get(job_id)
        if sub is not None and sub.done:
            del self.subs[job_id]
            self.relay.leave(sub)

    def close(self) -> None:
        for sub in self.subs.values():
            self.relay.leave(sub)
        self.subs.clear()

    async def send_loop(self, write_timeout_s: float) -> None:
        while True:
            try:
                batch = await self.outbox.take(3600)
            except OutboxClosed as closed:
                if closed.reason == "overflow":
                    await self.ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"too slow; resume")
                return
            for event in batch:
                try:
                    async with asyncio.timeout(write_timeout_s):
                        await self.ws.send_frame(event.data, WSMsgType.TEXT)
                except (TimeoutError, ConnectionError):
                    self.abort()  # a client that cannot take a frame in this long is gone
                    return
                if event.terminal:
                    self.finished(event.job_id)


@routes.get("/api/ws")
async def websocket(request: web.Request) -> web.WebSocketResponse:
    settings = request.app[SETTINGS]
    ws = web.WebSocketResponse(
        heartbeat=settings.ws_ping_interval_s, compress=False, max_msg_size=MAX_MESSAGE_BYTES
    )
    await ws.prepare(request)
    transport = request.transport
    assert transport is not None  # prepared: the connection is open
    conn = Connection(ws, request.app[RELAY], settings.watcher_buffer, transport.abort)
    request.app[SOCKETS].add(ws)
    request.app[OUTBOXES].add(conn.outbox)
    sender = asyncio.create_task(conn.send_loop(settings.write_timeout_s), name="ws-sender")
    try:
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                await conn.handle(msg.data)
            elif msg.type is WSMsgType.BINARY:
                conn.outbox.put(error("bad_message", "send JSON text messages"))
    finally:
        # Leave first, synchronously: aiohttp may cancel this handler when the peer goes away, and
        # a cancelled await below must not skip it.
        conn.close()
        await cancel_and_wait(sender)
    return ws
