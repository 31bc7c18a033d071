"""WebSocket: `GET /api/ws`, one connection watching many jobs, a thin transport over the hub."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial
from typing import Any

from aiohttp import web

from jobcast.errors import AlreadyEnded, JobcastError, JobNotFound, Unavailable
from jobcast.protocol import MAX_SEQ, loads, valid_epoch
from jobcast.server.api.control import cancel_job
from jobcast.server.fanout.catchup import CatchUpFailed
from jobcast.server.fanout.events import Event
from jobcast.server.fanout.hub import OpenStreams, Outbox, OutboxClosed, Subscription
from jobcast.server.fanout.relay import Relay
from jobcast.server.fanout.topics import Topic
from jobcast.server.http.openapi import Answer, Operation, operation
from jobcast.server.http.server import detach
from jobcast.server.keys import RELAY, SETTINGS, SHARDS, STREAMS, WEBSOCKETS
from jobcast.server.security.auth import STREAM_COUNTS, Principal, StreamCounts, check_visible, principal
from jobcast.server.security.origins import check_websocket_origin
from jobcast.server.security.tokens import TOKENS, StreamTokens, TokenRefused, revoked
from jobcast.server.stores import store_of
from jobcast.server.transports.websocket import handshake
from jobcast.server.transports.websocket.socket import WebSocket
from jobcast.store.shards import Shards

routes = web.RouteTableDef()

# The `code` of the error message that answers each domain error.
ERROR_CODES = ((JobNotFound, "not_found"), (AlreadyEnded, "ended"), (Unavailable, "unavailable"))
JOB_ID = re.compile(r"[0-9a-f]{32}")


def error(code: str, message: str, job_id: str | None = None) -> Event:
    body: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if job_id is not None:
        body["job_id"] = job_id
    return Event.control(body)


class Connection:
    """One WebSocket client's subscriptions and outbox: jobcast's messages, on a socket held by
    server/transports/websocket/ (which hands it the client's messages one at a time, in order)."""

    __slots__ = ("end", "max_subscriptions", "outbox", "relay", "shards", "subs", "tokens", "who")

    def __init__(
        self,
        relay: Relay,
        shards: Shards,
        outbox: Outbox,
        who: Principal,
        tokens: StreamTokens,
        max_subscriptions: int,
        end: Callable[[], None],
    ) -> None:
        self.who = who
        self.tokens = tokens
        self.max_subscriptions = max_subscriptions
        self.shards = shards
        self.relay = relay
        self.outbox = outbox
        self.subs: dict[Topic, Subscription] = {}
        # Gives back the connection's counts, once it is gone.
        self.end = end

    # -- server/transports/websocket/'s Application ---------------------------------------

    async def handle(self, opcode: int, message: str | bytes) -> None:
        if isinstance(message, str):
            await self.message(message)
        else:
            self.outbox.put(error("bad_message", "send JSON text messages"))

    def sent(self, event: Event) -> None:
        self.finished(self.relay.broker.job(event.job_id))

    def ended(self) -> None:
        for sub in self.subs.values():
            self.relay.leave(sub)
        self.subs.clear()
        self.end()

    async def message(self, raw: str) -> None:
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
            feed = self._feed(message.get("token"), message.get("shard", 0))
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

    def _feed(self, token: Any, shard: Any) -> Topic | None:
        """The feed this connection watches: the asker's, or the one a stream token opens; of every
        job, one shard's (`shard`, of a sharded deployment)."""
        shards = len(self.shards.stores)
        if type(shard) is not int or not 0 <= shard < shards:
            message = f"shard must be an integer from 0 to {shards - 1}"
            self.outbox.put(error("bad_message", message))
            return None
        owner = None if self.who.sees_all else self.who.owner
        if token is not None and self.tokens.enabled:
            try:
                owner = self.tokens.feed_owner(token if isinstance(token, str) else "")
            except TokenRefused as e:
                self._error("bad_token", str(e), self.relay.broker.feed())
                return None
        return self.relay.broker.feed(owner, shard)

    async def _may_watch(self, job_id: str, token: Any) -> bool:
        """The asker may see the job, or holds a stream token for it; else an error says why."""
        topic = self.relay.broker.job(job_id)
        if token is not None and self.tokens.enabled:
            try:
                grant = self.tokens.check_job(token if isinstance(token, str) else "", job_id)
                if await revoked(store_of(self.shards, job_id), job_id, grant):
                    raise TokenRefused("revoked")
            except TokenRefused as e:
                self._error("bad_token", str(e), topic)
                return False
            return True
        try:
            await check_visible(store_of(self.shards, job_id), self.who, job_id)
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
        if since is not None and (type(since) is not int or not 0 <= since <= MAX_SEQ):
            self._error("bad_last_event_id", f"last_event_id must be an integer from 0 to {MAX_SEQ}", topic)
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
            done = await cancel_job(store_of(self.shards, job_id), job_id, self.who)
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


@routes.get("/api/ws")
@operation(
    Operation(
        "One WebSocket for many jobs and the feed: subscribe, unsubscribe, cancel (see docs/api.md)",
        {101: Answer("Switching to the WebSocket protocol; messages are JobEvents and control messages")},
        problems=(400, 403, 429),
        tags=("streams",),
    )
)
async def websocket(request: web.Request) -> web.StreamResponse:
    check_websocket_origin(request)
    counts, who = request.app[STREAM_COUNTS], principal(request)
    if not counts.acquire(who):
        raise counts.refuse()
    try:
        response = await handshake.answer(request)
    except BaseException:
        counts.release(who)
        raise
    settings, streams = request.app[SETTINGS], request.app[STREAMS]
    outbox = Outbox(settings.watcher_buffer, settings.watcher_buffer_bytes)
    conn = Connection(
        request.app[RELAY],
        request.app[SHARDS],
        outbox,
        who,
        request.app[TOKENS],
        settings.max_ws_subscriptions,
        partial(_end, streams, counts, who),
    )
    socket = partial(
        WebSocket,
        conn,
        outbox,
        request.app[WEBSOCKETS],
        max_message_bytes=settings.max_ws_message_bytes,
        inbox_limit=settings.ws_inbox_messages,
        write_timeout_s=settings.write_timeout_s,
        buffer_bytes=settings.socket_buffer_bytes,
    )
    # From here the connection is held without aiohttp (server/transports/websocket/), which frees what it
    # kept for it; this handler returns at once.
    if detach(request.protocol, socket):
        streams.ws += 1  # until `_end`, however the connection ends
    else:
        counts.release(who)  # the client is already gone
    return response


def _end(streams: OpenStreams, counts: StreamCounts, who: Principal) -> None:
    streams.ws -= 1
    counts.release(who)
