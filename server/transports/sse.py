"""Server-Sent Events: `GET /api/jobs/{id}/events`, a thin transport over a hub subscription."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from contextlib import suppress
from functools import partial

from aiohttp import HttpVersion11, web
from aiohttp.web_protocol import RequestHandler
from pydantic import BaseModel, Field

from jobcast.errors import AlreadyEnded
from jobcast.server.fanout.catchup import CatchUp, CatchUpFailed
from jobcast.server.fanout.hub import OpenStreams, Outbox, OutboxClosed, Subscription
from jobcast.server.fanout.relay import Relay
from jobcast.server.fanout.topics import BadPosition, Topic
from jobcast.server.fanout.wire import comment, direct_writer, sse_fast_path, sse_text
from jobcast.server.http.bodies import JOB_ID
from jobcast.server.http.openapi import SSE, TEXT, Answer, Operation, operation
from jobcast.server.http.problems import Problem, parsed_query
from jobcast.server.http.server import Handler
from jobcast.server.http.server import detach as detach_socket
from jobcast.server.keys import OUTBOXES, RELAY, SETTINGS, SHARDS, STREAMS
from jobcast.server.security.auth import STREAM_COUNTS, Principal, StreamCounts, check_visible, principal
from jobcast.server.security.tokens import TOKENS, TokenRefused, opens_job, refused
from jobcast.server.stores import job_store
from jobcast.server.transports.detached import DetachedStream

routes = web.RouteTableDef()

SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    # nginx and similar proxies buffer responses unless told not to; SSE must flow as written.
    "X-Accel-Buffering": "no",
}
# A comment line (with no blank line after it: see `sse_text`): clients ignore it, and it keeps
# proxies and load balancers from timing out an idle stream (and tells us when the client has gone).
HEARTBEAT = comment(b"ping")


def resume_position(request: web.Request, topic: Topic) -> tuple[int | None, str | None]:
    """Where the client resumes: its `Last-Event-ID` (or `?last_event_id=`) in the topic's terms."""
    raw = request.headers.get("Last-Event-ID", request.query.get("last_event_id"))
    if not raw:
        return None, None
    try:
        return topic.position(raw)
    except BadPosition as e:
        raise Problem(400, str(e), slug="bad-last-event-id") from None


class ResumeQuery(BaseModel):
    """For clients that cannot set headers (the browser's EventSource on a first connect)."""

    last_event_id: str | None = Field(default=None, description="As the Last-Event-ID header")
    token: str | None = Field(
        default=None, description="Owner mode: a stream token, for a watcher without the owner's cookie"
    )


class FeedQuery(ResumeQuery):
    shard: int = Field(
        default=0,
        ge=0,
        le=255,
        description="Of a sharded deployment (JOBCAST_REDIS_SHARDS): which shard's feed of every job. "
        "Its snapshot says how many shards there are; an owner's feed is one stream whatever the shard.",
    )


def stream_answer(what: str) -> Answer:
    description = (
        f"{what} as Server-Sent Events: `id:` (the resume position), `event:` (the type) and `data:` "
        "(a JobEvent), with `: ping` comments while idle. A job's stream also has live-only `queue` "
        "events (a QueueEvent, with no `id:`) while the job waits in line."
    )
    return Answer(description, {SSE: {**TEXT, "x-jobcast-event": {"$ref": "#/components/schemas/JobEvent"}}})


RESUME = {"Last-Event-ID": "Resume after this event (see docs/api.md, Resuming)"}


@routes.get(f"/api/jobs/{JOB_ID}/events")
@operation(
    Operation(
        "Follow a job live: a snapshot or the events after Last-Event-ID, then live events to the end",
        {
            200: stream_answer("The job's events"),
            204: Answer("The Last-Event-ID is the job's terminal event: nothing more will come"),
        },
        query=ResumeQuery,
        headers=RESUME,
        problems=(400, 401, 404, 429, 503),
        tags=("streams",),
    )
)
async def job_events(request: web.Request) -> web.StreamResponse:
    job_id = request.match_info["job_id"]
    tokens = request.app[TOKENS]
    token = request.query.get("token")
    if token is not None and tokens.enabled:
        await opens_job(request, token, job_id)
    else:
        await check_visible(job_store(request.app, job_id), principal(request), job_id)
    return await stream(request, request.app[RELAY].broker.job(job_id))


@routes.get("/api/events")
@operation(
    Operation(
        "The dashboard feed: every job's state changes (resumable by feed id) and live progress",
        {200: stream_answer("Every job's events")},
        query=FeedQuery,
        headers=RESUME,
        problems=(400, 401, 422, 429, 503),
        tags=("streams",),
    )
)
async def feed_events(request: web.Request) -> web.StreamResponse:
    """The dashboard feed: every job's state changes (id: the feed seq) and live progress (no id),
    one stream per page however many jobs it shows."""
    who = principal(request)
    owner = None if who.sees_all else who.owner
    tokens = request.app[TOKENS]
    token = request.query.get("token")
    if token is not None and tokens.enabled:
        try:
            owner = tokens.feed_owner(token)
        except TokenRefused as e:
            raise refused(e) from None
    shard = parsed_query(request, FeedQuery).shard
    if owner is None and shard >= len(request.app[SHARDS].stores):
        count = len(request.app[SHARDS].stores)
        raise Problem(
            400, f"shard must be from 0 to {count - 1}: this deployment has {count}", slug="bad-shard"
        )
    return await stream(request, request.app[RELAY].broker.feed(owner, shard))


async def stream(request: web.Request, topic: Topic) -> web.StreamResponse:
    # One coroutine from the handshake to the end of the stream, with no helper awaited for its
    # whole life: every frame an idle watcher holds costs its few hundred bytes for as long as it
    # stays. (And no context manager: each would hold a generator object as long.) Once caught
    # up, the stream leaves aiohttp altogether (server/transports/detached.py), and this returns.
    since, epoch = resume_position(request, topic)
    counts, who = request.app[STREAM_COUNTS], principal(request)
    if not counts.acquire(who):
        raise counts.refuse()
    settings = request.app[SETTINGS]
    outbox = Outbox(settings.watcher_buffer, settings.watcher_buffer_bytes)
    relay = request.app[RELAY]
    sub = Subscription(topic, outbox, since, epoch)
    streams = request.app[STREAMS]
    leave = partial(_leave, relay, sub, streams, counts, who)
    # The connection's handler: jobcast web's own (server/http/server.py), or aiohttp's under a team's
    # server. Either way a caught-up stream leaves it.
    handler = request.protocol if isinstance(request.protocol, RequestHandler) else None
    joined = detached = False
    try:
        try:
            catch_up = await relay.join(sub, since)
        except AlreadyEnded:
            # 204 tells EventSource to stop reconnecting. (Other errors answer as problems.)
            return web.Response(status=204)
        joined = True
        streams.sse += 1
        response = web.StreamResponse(headers=SSE_HEADERS)
        # The fast path writes whole chunks (server/fanout/wire.py): say so rather than rely on a default.
        if request.version >= HttpVersion11:
            response.enable_chunked_encoding()
        # A watcher that fell hopelessly behind is cut off at once, even mid-write; it
        # reconnects with its Last-Event-ID.
        transport = request.transport
        outbox.on_overflow = transport.abort if transport is not None else None
        if handler is not None:
            # A stream that leaves aiohttp (see detach below) closes its connection when it
            # ends: say so up front, or a client would reuse the connection for its next request.
            response.force_close()
        await response.prepare(request)
        request.app[OUTBOXES].add(outbox)
        # In the first event's block rather than a block of its own, which some clients would
        # hand the app as an empty event; EventSource applies it as it reads the line.
        await response.write(b"retry: %d\n" % settings.sse_retry_ms)
        detach = None
        if transport is not None and sse_fast_path(request, response):
            outbox.direct = direct_writer(transport, websocket=False, limit=settings.socket_buffer_bytes)
            if handler is not None:
                stream = partial(DetachedStream, outbox, settings.write_timeout_s, leave)
                detach = partial(detach_socket, handler, stream)
        if isinstance(handler, Handler):
            # Gone is gone now: an idle stream would otherwise count as open until its heartbeat
            # (under aiohttp's own handler, it does until then).
            handler.on_connection_lost = partial(outbox.close, "client gone")
        detached = await _pump(response, outbox, settings.write_timeout_s, catch_up, detach)
        return response
    finally:
        if joined and not detached:
            if isinstance(handler, Handler):
                handler.on_connection_lost = None
            leave()
        elif not joined:
            counts.release(who)


def _leave(
    relay: Relay, sub: Subscription, streams: OpenStreams, counts: StreamCounts, who: Principal
) -> None:
    """A stream's end, however it ends: out of the hub, and its counts given back."""
    relay.leave(sub)
    streams.sse -= 1
    counts.release(who)


async def beat(outboxes: Iterable[Outbox], heartbeat_s: float) -> None:
    """Every `heartbeat_s`, a heartbeat to each SSE stream with nothing queued. One task for the
    process rather than a timer per stream: an idle watcher then costs no timer at all."""
    while True:
        await asyncio.sleep(heartbeat_s)
        for outbox in list(outboxes):
            if not len(outbox):
                outbox.put(HEARTBEAT)


async def _pump(
    response: web.StreamResponse,
    outbox: Outbox,
    write_timeout_s: float,
    catch_up: CatchUp | None,
    detach: Callable[[], bool] | None,
) -> bool:
    """Write the stream until it ends (False), or until it is caught up with nothing queued and
    `detach` hands it over (True)."""
    while True:
        if catch_up is not None and not len(outbox):
            # The next page of the replay, only once the last has left for the socket.
            if outbox.closed:
                return False
            try:
                if await catch_up.step():
                    catch_up = None
            except CatchUpFailed:
                return False  # the client resumes from its last id
            continue
        if detach is not None and not len(outbox) and not outbox.closed and detach():
            return True
        try:
            batch = await outbox.take()
        except OutboxClosed:
            return False  # shutdown or overflow: the client reconnects and resumes
        payload = b"".join(sse_text(event) for event in batch)
        ended = batch[-1].terminal
        # Nothing written may stay referenced while this task waits: an idle watcher would keep
        # its last events (a snapshot is kilobytes) alive for as long as it stays connected.
        del batch
        try:
            async with asyncio.timeout(write_timeout_s):
                await response.write(payload)
        except (TimeoutError, ConnectionError):
            return False
        finally:
            del payload
        if ended:
            # A client that hangs up right after the terminal event is no error.
            with suppress(ConnectionError):
                await response.write_eof()
            return False
