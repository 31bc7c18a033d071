"""Errors as `application/problem+json` (RFC 9457), and what answers every error with one
(`error_response`, called by server/middleware.py): no traceback, and no non-problem error body,
ever reaches a client."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError
from redis.exceptions import RedisError

from jobcast.errors import AlreadyEnded, JobcastError, JobNotFound, QuotaExceeded, Unavailable
from jobcast.protocol import dumps

log = logging.getLogger(__name__)

STORE_UNAVAILABLE = "the job store is unavailable; try again shortly"
PROBLEM_TYPE_BASE = "https://jobcast.dev/problems/"
CONTENT_TYPE = "application/problem+json"
# The field errors one 422 lists: enough to fix a form, few enough that a body built to fail in
# 60,000 places costs its sender, not the server (the rest are counted, in `error_count`).
REPORTED_ERRORS = 50


class Problem(JobcastError):
    """Raise from a handler to answer with a problem document."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        slug: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        error_count: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.slug = slug or HTTPStatus(status).phrase.lower().replace(" ", "-")
        self.errors = errors
        self.error_count = error_count
        self.headers = headers or {}

    def document(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": PROBLEM_TYPE_BASE + self.slug,
            "title": HTTPStatus(self.status).phrase,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors is not None:
            body["errors"] = self.errors
        if self.error_count is not None:
            body["error_count"] = self.error_count
        return body

    def response(self) -> web.Response:
        response = web.Response(
            status=self.status, body=dumps(self.document()), content_type=CONTENT_TYPE, headers=self.headers
        )
        if self.headers.get("Connection") == "close":
            response.force_close()  # the header alone leaves aiohttp reading what follows
        return response


def validation_problem(error: ValidationError, *, prefix: str = "") -> Problem:
    """422 naming the bad fields, as dotted paths (`params.steps`): the first
    `REPORTED_ERRORS`, and how many there were in all when there were more."""
    errors = [
        {
            "field": ".".join(str(part) for part in (prefix, *e["loc"]) if part != ""),
            "message": e["msg"],
            "code": e["type"],
        }
        for e in error.errors(include_url=False, include_context=False, include_input=False)[:REPORTED_ERRORS]
    ]
    return field_errors(errors, error.error_count())


def field_errors(errors: list[dict[str, Any]], count: int) -> Problem:
    """The 422 for `errors` (at most REPORTED_ERRORS of them) out of `count`."""
    fields = ", ".join(e["field"] or "(body)" for e in errors)
    more = f" and {count - len(errors)} more" if count > len(errors) else ""
    return Problem(
        422,
        f"invalid {fields}{more}",
        slug="validation",
        errors=errors,
        error_count=count if more else None,
    )


Query = TypeVar("Query", bound=BaseModel)


def parsed_query(request: web.Request, model: type[Query]) -> Query:
    """The request's query string as `model`, or a 422 naming each bad parameter."""
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as e:
        raise validation_problem(e, prefix="query") from None


def problem_for(error: JobcastError) -> Problem:
    """The problem document that answers a domain error (the one place that maps them)."""
    if isinstance(error, JobNotFound):
        return Problem(404, str(error), slug="not-found")
    if isinstance(error, AlreadyEnded):
        return Problem(409, str(error), slug="already-ended")
    if isinstance(error, QuotaExceeded):
        return Problem(413, str(error), slug="disk-quota")
    if isinstance(error, Unavailable):
        return Problem(503, str(error), slug="unavailable", headers={"Retry-After": "2"})
    return Problem(400, str(error))


def error_response(request: web.Request, error: Exception) -> web.StreamResponse:
    """The problem document answering `error`, raised while handling `request` (re-raised if it
    is no error: a redirect). Every error is answered here, so no traceback and no non-problem
    error body ever reaches a client."""
    if isinstance(error, Problem):
        return error.response()
    if isinstance(error, JobcastError):
        return problem_for(error).response()
    if isinstance(error, RedisError):
        # The detail (addresses, errors) is for the log, not for clients.
        log.warning("job store unavailable in %s %s: %s", request.method, request.path, error)
        return problem_for(Unavailable(STORE_UNAVAILABLE)).response()
    if isinstance(error, web.HTTPException):
        if error.status < 400:
            raise error
        text = error.text
        detail = text if text and not text.startswith(str(error.status)) else error.reason
        headers = {k: v for k, v in error.headers.items() if k in ("Allow", "Retry-After")}
        return Problem(error.status, detail, headers=headers).response()
    if isinstance(error, ConnectionError):
        transport = request.transport
        if transport is None or transport.is_closing():
            # The client hung up before or while the answer started: no one to answer and
            # nothing wrong here. 499 is what the access log shows (nginx's "client closed
            # request").
            return web.Response(status=499)
    log.error("unhandled error in %s %s", request.method, request.path, exc_info=error)
    return Problem(500, "internal error; it has been logged").response()
