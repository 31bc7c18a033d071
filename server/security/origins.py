"""Requests from other web pages: what a browser may do on a user's behalf from another origin.

A page elsewhere can make the user's browser send requests here, cookies included. So:
- state-changing requests (every method but GET, HEAD and OPTIONS) must come from this origin or
  an allowed one, as Go's `CrossOriginProtection` decides: an allowed `Origin` passes; otherwise
  `Sec-Fetch-Site` (sent by every current browser) must say same-origin or none; failing that,
  `Origin` must match the host. A request with neither header comes from no browser (curl, a
  backend) and passes: in owner mode it still needs an API key to act on anything of someone else.
- a WebSocket handshake is a GET, but opens a channel that reads jobs and cancels them: its
  `Origin` must be this one or an allowed one (`JOBCAST_CORS_ORIGINS`).
Either refusal is a 403 problem, before anything happens.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from aiohttp import web

from jobcast.server.http.forwarded import client_of
from jobcast.server.http.problems import Problem
from jobcast.server.keys import SETTINGS

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def allowed_origins(request: web.Request) -> frozenset[str]:
    return request.app[SETTINGS].cors_origin_set


def same_origin(request: web.Request, origin: str) -> bool:
    """Whether `origin` (scheme://host[:port]) names this server as the browser reached it."""
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    return parts.scheme == client_of(request).scheme and parts.netloc.lower() == request.host.lower()


def from_elsewhere(request: web.Request) -> bool:
    """The browser says this request was made by a page of another, not allowed, origin."""
    origin = request.headers.get("Origin")
    if origin is not None and origin in allowed_origins(request):
        return False
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site not in ("same-origin", "none")
    return origin is not None and not same_origin(request, origin)


def check_websocket_origin(request: web.Request) -> None:
    origin = request.headers.get("Origin")
    if origin is not None and origin not in allowed_origins(request) and not same_origin(request, origin):
        raise Problem(403, "WebSocket connections from this origin are not allowed", slug="cross-origin")


def check_cross_site(request: web.Request) -> None:
    if request.method not in SAFE_METHODS and from_elsewhere(request):
        raise Problem(403, "cross-site requests may not change anything here", slug="cross-origin")


# What a page of an allowed origin may read or do without a cookie (it holds a stream token):
# snapshots, streams, token renewal, and the JS client itself.
CORS_ORIGIN = web.RequestKey("cors_origin", str)
CORS_PATHS = re.compile(r"/api/jobs/[0-9a-f]{32}(/events|/token)?|/api/events(/token)?|/static/jobcast\.js")


def cors_preflight(request: web.Request) -> web.Response | None:
    """CORS for `JOBCAST_CORS_ORIGINS` on the paths a page elsewhere needs (docs/security.md);
    every other origin gets no CORS headers, so its pages cannot read the answers. Notes the
    request's CORS origin for `send_cors_headers`; the answer to a preflight, or None."""
    origin = request.headers.get("Origin")
    prefix = request.app[SETTINGS].url_prefix
    path = request.path[len(prefix) :] if prefix and request.path.startswith(prefix) else request.path
    if not CORS_PATHS.fullmatch(path):
        return None
    # Every answer on these paths varies by Origin, with CORS headers or without: a browser that
    # cached jobcast.js for jobcast's own page must not reuse that copy (no CORS header) for a
    # page elsewhere, nor the other way round.
    allowed = origin is not None and origin in allowed_origins(request)
    request[CORS_ORIGIN] = origin if allowed and origin is not None else ""
    if not allowed or request.method != "OPTIONS":
        return None
    preflight = {
        "Access-Control-Allow-Methods": "GET, POST",
        "Access-Control-Allow-Headers": "Last-Event-ID, Content-Type",
        "Access-Control-Max-Age": "600",
    }
    return web.Response(status=204, headers=preflight)


async def send_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: streams are prepared inside their handlers, so the headers go on here."""
    origin = request.get(CORS_ORIGIN)
    if origin is not None:
        response.headers.add("Vary", "Origin")
        if origin:
            response.headers["Access-Control-Allow-Origin"] = origin


HOST = re.compile(
    r"(?P<name>[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?"
)
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})


def host_allowed(request: web.Request) -> bool:
    """Whether the `Host` names this server: one of `JOBCAST_ALLOWED_HOSTS` (`*.example.com` for
    subdomains); without the setting, any well-formed host in owner mode and loopback names only
    in single-user mode (a page that rebinds its own name to 127.0.0.1 must not reach jobcast)."""
    raw = request.headers.get("Host", "")
    match = HOST.fullmatch(raw)
    if match is None:
        return False
    name = match["name"].lower()
    settings = request.app[SETTINGS]
    allowed = settings.allowed_host_set
    if not allowed:
        return settings.secret is not None or name in LOOPBACK_NAMES or name.endswith(".localhost")
    return any(name == a or (a.startswith("*.") and name.endswith(a[1:])) for a in allowed)


def check_host(request: web.Request) -> None:
    if not host_allowed(request):
        raise Problem(400, "this server does not answer to that Host", slug="bad-host")
