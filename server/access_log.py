"""The access log: one line per request, with the request id its job's worker lines carry too.

Stream tokens travel in query strings (EventSource cannot send headers), so the line shows the
path with every secret-bearing query value redacted. Headers are never logged: API keys and
cookies never reach the log.
"""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

SECRET_PARAMS = frozenset({"token", "csrf"})


def redacted(request: web.BaseRequest) -> str:
    url = request.rel_url
    if not url.query_string or not SECRET_PARAMS & set(url.query):
        return str(url)
    query = [(k, "[redacted]" if k in SECRET_PARAMS else v) for k, v in url.query.items()]
    return str(url.with_query(query)).replace("%5Bredacted%5D", "[redacted]")


class AccessLogger(AbstractAccessLogger):
    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        version = f"{request.version.major}.{request.version.minor}"
        self.logger.info(
            '%s "%s %s HTTP/%s" %s %s %.6fs request=%s',
            request.remote,
            request.method,
            redacted(request),
            version,
            response.status,
            response.body_length,
            time,
            response.headers.get("X-Request-ID", "-"),
        )


def access_logger() -> logging.Logger:
    return logging.getLogger("jobcast.access")
