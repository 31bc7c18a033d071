"""Pages, JSON and metrics go out compressed (gzip or deflate, as the client accepts) once they
are `JOBCAST_COMPRESS_MIN_BYTES` long: a 50-row dashboard is about a sixth of its size gzipped.
Static files are compressed where they are served (server/pages/views.py); streams never are, since
compression would hold events back until a block fills.

A compressed answer that holds a secret and also reflects what the request asked for leaks the
secret through its size over many requests (BREACH). No secret stays the same from one answer to
the next: the CSRF token in the pages' forms is masked afresh on every page
(server/security/auth.py), and a stream token is signed with the second it is made in
(server/security/tokens.py)."""

from __future__ import annotations

from aiohttp import web

from jobcast.server.keys import SETTINGS

COMPRESSIBLE = ("text/", "application/json", "application/problem+json", "application/openmetrics-text")


def compress(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """`response`, set to be compressed if it should be: a whole answer (not a stream, already
    sent, nor a file, which compresses itself), of a text type, and long enough."""
    if (
        type(response) is web.Response
        and not response.prepared
        and isinstance(body := response.body, bytes | bytearray)
        and response.content_type.startswith(COMPRESSIBLE)
        and len(body) >= request.app[SETTINGS].compress_min_bytes
        and "Content-Encoding" not in response.headers
    ):
        response.enable_compression()
        response.headers.add("Vary", "Accept-Encoding")  # a shared cache keeps both forms apart
    return response
