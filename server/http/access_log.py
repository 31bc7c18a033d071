"""The access log: one line per request, with the request id its job's worker lines carry too.

Stream tokens travel in query strings (EventSource cannot send headers), so the line shows the
path with every secret-bearing query value redacted. Headers are never logged: API keys and
cookies never reach the log.
"""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from jobcast.server.http.forwarded import CLIENT

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
        path = redacted(request)
        request_id = response.headers.get("X-Request-ID", "-")
        # The client as the trusted proxies name it (worked out by the middleware), else the peer.
        known = request.get(CLIENT) if isinstance(request, web.Request) else None
        remote = known.address if known is not None else request.remote
        # The same facts as fields, for JSON logs (jobcast/logs.py).
        http = {
            "remote": remote,
            "method": request.method,
            "path": path,
            "status": response.status,
            "bytes": response.body_length,
            "duration_s": round(time, 6),
            "request": request_id,
        }
        self.logger.info(
            '%s "%s %s HTTP/%s" %s %s %.6fs request=%s',
            remote,
            request.method,
            path,
            version,
            response.status,
            response.body_length,
            time,
            request_id,
            extra={"http": http},
        )


def access_logger() -> logging.Logger:
    return logging.getLogger("jobcast.access")
