"""`X-Request-ID`: taken from the client (or a proxy) when it is sane, made up otherwise, sent
back on every answer (streams included), logged, and kept with the jobs the request submits."""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

from aiohttp import web

from jobcast.logs import context_fields, log_context

HEADER = "X-Request-ID"
# Ids from outside are logged and stored: printable, no spaces, bounded.
SANE = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
REQUEST_ID = web.RequestKey("request_id", str)
current_request_id: ContextVar[str | None] = ContextVar("jobcast_request_id", default=None)


def assign_request_id(request: web.Request) -> None:
    """The request's id, for its answer, its log lines and the jobs it submits."""
    given = request.headers.get(HEADER, "")
    request_id = given if SANE.fullmatch(given) else uuid.uuid4().hex
    request[REQUEST_ID] = request_id
    current_request_id.set(request_id)
    log_context.set(context_fields(request=request_id))


async def send_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: also reaches SSE and WebSocket answers, whose headers go out early."""
    if (request_id := request.get(REQUEST_ID)) is not None:
        response.headers[HEADER] = request_id
