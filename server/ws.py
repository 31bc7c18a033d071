"""WebSocket: `GET /api/ws`, one connection watching many jobs, a thin transport over the hub."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from jobcast.errors import AlreadyEnded, JobcastError, JobNotFound, Unavailable
from jobcast.protocol import loads, valid_epoch
from jobcast.server.auth import STREAM_COUNTS, Principal, check_visible, principal
from jobcast.server.catchup import CatchUpFailed
from jobcast.server.control import cancel_job
from jobcast.server.events import Event
from jobcast.server.hub import Outbox, OutboxClosed, Subscription
from jobcast.server.keys import RELAY, SETTINGS, SOCKETS, STORE, STREAMS
from jobcast.server.openapi import Answer, Operation, operation
from jobcast.server.origins import check_websocket_origin
from jobcast.server.relay import Relay
from jobcast.server.tokens import TOKENS, StreamTokens, TokenRefused
from jobcast.server.topics import Topic
from jobcast.server.wire import direct_writer, ws_fast_path
from jobcast.store import JobStore
from jobcast.tasks import cancel_and_wait

routes = web.RouteTableDef()

MAX_MESSAGE_BYTES = 64 * 1024
# The `code` of the error message that answers each domain error.
ERROR_CODES = ((JobNotFound, "not_found"), (AlreadyEnded, "ended"), (Unavailable, "unavailable"))
JOB_ID = re.compile(r"[0-9a-f]{32}")


def error(code: str, message: str, job_id: str | None = None) -> Event:
    body: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if job_id is not None:
        body["job_id"] = job_id
    return Event.control(body)


class Connection:
    """One WebSocket client's subscriptions and outbox.

    Events reach the socket by the outbox's fast path while the client keeps up; only when they
    queue does the connection start a sender task, which writes the queue out and ends. An idle
    client costs no task of its own beyond aiohttp's handler.
    """

    __slots__ = (
        "abort",
        "max_subscriptions",
        "outbox",
        "relay",
        "sender",
        "store",
        "subs",
        "tokens",
        "who",
        "write_timeout_s",
        "ws",
    )

    def __init__(
        self,
        ws: web.WebSocketResponse,
        relay: Relay,
        store: JobStore,
        buffer: tuple[int, int],
        abort: Callable[[], None],
        write_timeout_s: float,
        who: Principal,
        tokens: StreamTokens,
        max_subscriptions: int,
    ) -> None:
        self.ws = ws
        self.who = who
        self.tokens = tokens
        self.max_subscriptions = max_subscriptions
        self.store = store
        self.abort = abort
        self.relay = relay
        self.write_timeout_s = write_timeout_s
        self.outbox = Outbox(*buffer)
        self.outbox.on_queue = self._start_sender
        self.subs: dict[Topic, Subscription] = {}
        self.sender: asyncio.Task[None] | None = None

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
        broker = self.relay.broker
        if kind in ("subscribe_feed", "unsubscribe_feed"):
            feed = self._feed(message.get("token"))
            if feed is None:
                return
            if kind == "subscribe_feed":
                await self.subscribe(feed, message.get("last_event_id"), message.get("epoch"))
            else:
                self.unsubscribe(feed)
        elif kind not in ("subscribe", "unsubscribe", "cancel"):
            self.outbox.put(error("unknown_type", f"unknown message type {kind!r}"))
        elif not isinstance(job_id, str) or not JOB_ID.fullmatch(job_id):
            self.outbox.put(error("bad_message", "job_id must be a job id (32 hex digits)"))
        elif kind == "subscribe":
            if await self._may_watch(job_id, message.get("token")):
                await self.subscribe(broker.job(job_id), message.get("last_event_id"))
        elif kind == "unsubscribe":
            self.unsubscribe(broker.job(job_id))
        else:
            await self.cancel(job_id)

    def _feed(self, token: Any) -> Topic | None:
        """The feed this connection watches: the asker's, or the one a stream token opens."""
        owner = None if self.who.sees_all else self.who.owner
        if token is not None and self.tokens.enabled:
            try:
                owner = self.tokens.feed_owner(token if isinstance(token, str) else "")
            except TokenRefused as e:
                self._error("bad_token", str(e), self.relay.broker.feed())
                return None
        return self.relay.broker.feed(owner)

    async def _may_watch(self, job_id: str, token: Any) -> bool:
        """The asker may see the job, or holds a stream token for it; else an error says why."""
        topic = self.relay.broker.job(job_id)
        if token is not None and self.tokens.enabled:
            try:
                self.tokens.check_job(token if isinstance(token, str) else "", job_id)
            except TokenRefused as e:
                self._error("bad_token", str(e), topic)
                return False
            return True
        try:
            await check_visible(self.store, self.who, job_id)
        except JobNotFound as e:
            self._failed(e, topic)
            return False
        return True

    def _failed(self, error: JobcastError, topic: Topic) -> None:
        """A domain error as an error message (the one place that maps them for WebSockets)."""
        code = next((code for kind, code in ERROR_CODES if isinstance(error, kind)), "error")
        self._error(code, str(error), topic)

    def _error(self, code: str, message: str, topic: Topic) -> None:
        self.outbox.put(Event.control({"type": "error", "code": code, "message": message, **topic.names}))

    async def subscribe(self, topic: Topic, since: Any, epoch: Any = None) -> None:
        if since is not None and (type(since) is not int or since < 0):
            self._error("bad_last_event_id", "last_event_id must be a non-negative integer", topic)
            return
        if epoch is not None and not valid_epoch(epoch):
            self._error("bad_last_event_id", "epoch must be the feed's epoch (a short token)", topic)
            return
        if (old := self.subs.pop(topic, None)) is not None:
            self.relay.leave(old)
        elif len(self.subs) >= self.max_subscriptions:
            self._error("too_many_subscriptions", f"at most {self.max_subscriptions} at once", topic)
            return
        sub = Subscription(topic, self.outbox, since, epoch)
        try:
            catch_up = await self.relay.join(
                sub, since, announce=Event.control({"type": "subscribed", **topic.names})
            )
        except JobcastError as e:
            self._failed(e, topic)
            return
        self.subs[topic] = sub
        try:
            # The replay, a page at a time, each once the last has left for the socket. This
            # connection's other messages wait meanwhile, so they keep their order.
            while catch_up is not None and not await catch_up.step():
                await self.outbox.drained()
        except OutboxClosed:
            return  # the connection is being cut (too slow, or shutdown)
        except CatchUpFailed as e:
            self.subs.pop(topic, None)
            self.relay.leave(sub)
            self._failed(e, topic)
            return
        if sub.done:
            self.finished(topic)

    async def cancel(self, job_id: str) -> None:
        try:
            done = await cancel_job(self.store, job_id, self.who)
        except JobcastError as e:
            self._failed(e, self.relay.broker.job(job_id))
            return
        # The `cancelled` event itself reaches whoever watches the job.
        self.outbox.put(Event.control({"type": "cancel_accepted", "job_id": job_id, "status": done.status}))

    def unsubscribe(self, topic: Topic) -> None:
        sub = self.subs.pop(topic, None)
        if sub is None:
            self._error("not_subscribed", "not subscribed to this job", topic)
            return
        self.relay.leave(sub)
        self.outbox.put(Event.control({"type": "unsubscribed", **topic.names}))

    def finished(self, topic: Topic) -> None:
        """The topic's last event went out: nothing more will come for it."""
        sub = self.subs.get(topic)
        if sub is not None and sub.done:
            del self.subs[topic]
            self.relay.leave(sub)

    def close(self) -> None:
        for sub in self.subs.values():
            self.relay.leave(sub)
        self.subs.clear()

    def _start_sender(self) -> None:
        if self.sender is None:
            self.sender = asyncio.get_running_loop().create_task(self._send_queued(), name="ws-sender")

    async def stop_sender(self) -> None:
        if self.sender is not None:
            await cancel_and_wait(self.sender)

    async def _send_queued(self) -> None:
        """Write what is queued until nothing is; then the task ends (the next queued event
        starts another)."""
        try:
            while batch := self.outbox.take_nowait():
                # The fast path must not overtake what this task holds but has not written yet.
                self.outbox.hold = True
                for event in batch:
                    try:
                        async with asyncio.timeout(self.write_timeout_s):
                            await self.ws.send_frame(event.data, WSMsgType.TEXT)
                    except (TimeoutError, ConnectionError):
                        self.abort()  # a client that cannot take a frame in this long is gone
                        return
                    if event.terminal:
                        self.finished(self.relay.broker.job(event.job_id))
                self.outbox.release()
        except OutboxClosed as closed:
            if closed.reason == "overflow":
                await self.ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"too slow; resume")
        finally:
            self.sender = None
            self.outbox.release()


@routes.get("/api/ws")
@operation(
    Operation(
        "One WebSocket for many jobs and the feed: subscribe, unsubscribe, cancel (see docs/api.md)",
        {101: Answer("Switching to the WebSocket protocol; messages are JobEvents and control messages")},
        problems=(400, 403, 429),
        tags=("streams",),
    )
)
async def websocket(request: web.Request) -> web.WebSocketResponse:
    # One coroutine for the connection's whole life (no helper awaited throughout): every frame
    # an idle connection holds costs its few hundred bytes for as long as it stays.
    check_websocket_origin(request)
    counts, who = request.app[STREAM_COUNTS], principal(request)
    if not counts.acquire(who):
        raise counts.refuse()
    conn = None
    streams = request.app[STREAMS]
    try:
        settings = request.app[SETTINGS]
        ws = web.WebSocketResponse(
            heartbeat=settings.ws_ping_interval_s, compress=False, max_msg_size=MAX_MESSAGE_BYTES
        )
        await ws.prepare(request)
        transport = request.transport
        assert transport is not None  # prepared: the connection is open
        conn = Connection(
            ws,
            request.app[RELAY],
            request.app[STORE],
            (settings.watcher_buffer, settings.watcher_buffer_bytes),
            transport.abort,
            settings.write_timeout_s,
            who,
            request.app[TOKENS],
            settings.max_ws_subscriptions,
        )
        streams.ws += 1  # until the finally below, however the connection ends
        # Shutdown closes it with 1001 (its outbox needs no separate tracking: one weakref less
        # per idle connection).
        request.app[SOCKETS].add(ws)
        # Frames are written whole and unmasked, as aiohttp's own writer does (compress=False).
        if ws_fast_path(ws):
            conn.outbox.direct = direct_writer(transport, websocket=True)
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                await conn.handle(msg.data)
            elif msg.type is WSMsgType.BINARY:
                conn.outbox.put(error("bad_message", "send JSON text messages"))
        return ws
    finally:
        if conn is not None:
            # Leave first, synchronously: aiohttp may cancel this handler when the peer goes
            # away, and a cancelled await below must not skip it.
            conn.close()
            streams.ws -= 1
        counts.release(who)
        if conn is not None:
            await conn.stop_sender()
