"""JSON in and out of handlers, and the job id in a route's path: what every room's handlers share."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from jobcast.protocol import dumps, loads
from jobcast.server.http.problems import Problem

JOB_ID = r"{job_id:[0-9a-f]{32}}"


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=dumps(body), status=status, content_type="application/json", headers=headers)


async def read_json(request: web.Request) -> Any:
    """The request's JSON body, or the right 4xx problem."""
    if request.content_type != "application/json":
        raise Problem(415, "send the body as application/json", slug="unsupported-media-type")
    body = await request.read()  # bounded by the app's client_max_size (413 past it)
    try:
        return loads(body)
    except ValueError as e:
        raise Problem(400, f"malformed JSON: {e}", slug="malformed-json") from None


async def read_url_encoded(request: web.Request) -> MultiDictProxy[str | bytes | bytearray | web.FileField]:
    """A page's posted form (application/x-www-form-urlencoded); 415 for another body, 400 for a
    malformed one."""
    if request.content_type != "application/x-www-form-urlencoded":
        message = "send the form as application/x-www-form-urlencoded"
        raise Problem(415, message, slug="unsupported-media-type")
    try:
        return await request.post()
    except ValueError as e:
        raise Problem(400, f"malformed form: {e}", slug="malformed-form") from None
