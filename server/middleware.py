"""Every request's way in: one middleware, its steps in this order.

1. A request id (server/http/request_ids.py), for the answer, the log lines and the jobs submitted,
   and the client's address and scheme through the trusted proxies (server/http/forwarded.py).
2. The `Host` must name this server (server/security/origins.py), against DNS rebinding.
3. CORS for the allowed origins on the paths a page elsewhere needs, and the answer to their
   preflights (server/security/origins.py).
4. No state-changing request from another site's page (server/security/origins.py).
5. Who is asking (server/security/auth.py): the one user, an API key, a session cookie, or a new
   anonymous identity.
6. A request with a body is answered within the body's deadline (`JOBCAST_BODY_TIMEOUT_S`, or
   `JOBCAST_UPLOAD_TIMEOUT_S` for a multipart upload), or gets 408: its body arrives in that time.
7. Any error, from these steps or the handler, answered as a problem document
   (server/http/problems.py), or as a page to a browser that navigates once it is known who asks
   (server/pages/error_pages.py).
8. The answer compressed if it is long text with no secret in it (server/http/compression.py).

One middleware rather than one per step: a stream's handler runs for as long as the stream is
open, and every middleware around it is a suspended coroutine frame held for all that time (about
250 bytes each, per idle watcher).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

from jobcast.server.http.compression import compress
from jobcast.server.http.forwarded import client_of
from jobcast.server.http.problems import Problem, error_response
from jobcast.server.http.request_ids import assign_request_id
from jobcast.server.keys import SETTINGS
from jobcast.server.pages.error_pages import maybe_page
from jobcast.server.security.auth import SAFE_METHODS, authenticate
from jobcast.server.security.origins import check_cross_site, check_host, cors_preflight

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def jobcast_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    assign_request_id(request)
    client_of(request)  # who the trusted proxies say is asking, before anything reads it
    same_site = False
    try:
        check_host(request)
        if (preflight := cors_preflight(request)) is not None:
            return preflight
        check_cross_site(request)
        same_site = True
        if (refused := await authenticate(request)) is not None:
            return refused
        if not request.body_exists or request.method in SAFE_METHODS:
            return compress(request, await handler(request))
        return compress(request, await within_body_deadline(request, handler))
    except Exception as error:  # CancelledError (a BaseException) passes
        response = error_response(request, error)
        # A page only for this site's own requests: one for another host, or from another site's
        # page, gets the bare problem.
        return compress(request, maybe_page(request, response) if same_site else response)


async def within_body_deadline(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The handler's answer, if the body it reads arrives in time; a 408 that closes the
    connection otherwise (the rest of the body would be read as the next request)."""
    settings = request.app[SETTINGS]
    upload = request.content_type == "multipart/form-data"
    deadline = asyncio.timeout(settings.upload_timeout_s if upload else settings.body_timeout_s)
    try:
        async with deadline:
            return await handler(request)
    except TimeoutError:
        if not deadline.expired():
            raise
        raise Problem(
            408,
            "the request's body did not arrive in time",
            slug="request-timeout",
            headers={"Connection": "close"},
        ) from None
