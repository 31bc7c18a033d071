"""Server-Sent Events: `GET /api/jobs/{id}/events`, a thin transport over a hub subscription."""

from __future__ import annotations

import asyncio

from aiohttp import web

from server.api import JOB_ID, routes
from server.hub import Outbox, OutboxClosed, Subscription
from server.keys import OUTBOXES, RELAY, SETTINGS
from server.problems import Problem
from server.relay import AlreadyEnded, JobNotFound, RelayUnavailable

SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    # nginx and similar proxies buffer responses unless told not to; SSE must flow as written.
    "X-Accel-Buffering": "no",
}
# A comment line: browsers ignore it, and it keeps proxies and load balancers from timing out an
# idle stream (and tells us when the client has gone).
HEARTBEAT = b": ping\n\n"


def parse_last_event_id(request: web.Request) -> int | None:
    raw = request.headers.get("Last-Event-ID", request.query.get("last_event_id"))
    if raw is None or raw == "":
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise Problem(400, "Last-Event-ID must be a non-negative integer seq", slug="bad-last-event-id")
    return int(raw)


@routes.get(f"/api/jobs/{JOB_ID}/events")
async def job_events(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    job_id = request.match_info["job_id"]
    since = parse_last_event_id(request)
    outbox = Outbox(settings.watcher_buffer)
    try:
        async with request.app[RELAY].watch(job_id, outbox, since) as sub:
            response = web.StreamResponse(headers=SSE_HEADERS)
            # A watcher that fell hopelessly behind is cut off at once, even mid-write; it
            # reconnects with its Last-Event-ID.
            transport = request.transport
            outbox.on_overflow = transport.abort if transport is not None else None
            await response.prepare(request)
            request.app[OUTBOXES].add(outbox)
            await response.write(b"retry: %d\n\n" % settings.sse_retry_ms)
            await _pump(response, outbox, sub, settings.heartbeat_s, settings.write_timeout_s)
            return response
    except JobNotFound:
        raise Problem(404, f"no job {job_id}", slug="not-found") from None
    except AlreadyEnded:
        # 204 tells EventSource to stop reconnecting.
        return web.Response(status=204)
    except RelayUnavailable as e:
        raise Problem(503, str(e), slug="unavailable", headers={"Retry-After": "2"}) from None


async def _pump(
    response: web.StreamResponse,
    outbox: Outbox,
    sub: Subscription,
    heartbeat_s: float,
    write_timeout_s: float,
) -> None:
    while True:
        try:
            batch = await outbox.take(heartbeat_s)
        except OutboxClosed:
            return  # shutdown or overflow: the client reconnects and resumes
        payload = b"".join(event.sse for event in batch) if batch else HEARTBEAT
        try:
            async with asyncio.timeout(write_timeout_s):
                await response.write(payload)
        except (TimeoutError, ConnectionError):
            return
        if batch and batch[-1].terminal:
            await response.write_eof()
            return
