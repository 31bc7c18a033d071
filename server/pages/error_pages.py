"""Errors as a page for a browser that navigates: a problem document (server/http/problems.py)
shown raw in a tab has no title, no language and no landmark, and no way back. API clients, and
scripts asking for JSON, keep the problem document."""

from __future__ import annotations

from http import HTTPStatus

import aiohttp_jinja2
from aiohttp import web

from jobcast.protocol import loads
from jobcast.server.http.problems import CONTENT_TYPE
from jobcast.server.keys import SETTINGS

# Pages whose misses are searches: the error page offers the search again, filled in.
SEARCHES = ("/find", "/jobs/")


def wants_page(request: web.Request) -> bool:
    """A browser navigating (or posting a page's form): its Accept names HTML before JSON, and the
    path is a page's, not the API's or a static file's."""
    path = request.path.removeprefix(request.app[SETTINGS].url_prefix)
    if path.startswith(("/api/", "/static/")) or request.method not in ("GET", "HEAD", "POST"):
        return False
    accept = request.headers.get("Accept", "")
    html = accept.find("text/html")
    json = accept.find("json")
    return html >= 0 and (json < 0 or html < json)


def error_page(request: web.Request, problem: web.Response) -> web.Response:
    """The page for `problem` (a problem-document response), with its status and headers."""
    document = loads(problem.body) if isinstance(problem.body, bytes) else {}
    status = problem.status
    path = request.path.removeprefix(request.app[SETTINGS].url_prefix)
    search = None
    if path.startswith(SEARCHES) and status in (404, 409, 422):
        search = request.query.get("id") if path == "/find" else path.removeprefix("/jobs/")
    context = {
        "title": document.get("title") or HTTPStatus(status).phrase,
        "detail": document.get("detail") or "",
        "search": search,
    }
    page = aiohttp_jinja2.render_template("error.html", request, context, status=status)
    for name in ("Allow", "Retry-After"):
        if name in problem.headers:
            page.headers[name] = problem.headers[name]
    return page


def maybe_page(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """`response`, or its page when it is a problem document a browser navigated to."""
    if (
        isinstance(response, web.Response)
        and response.content_type == CONTENT_TYPE
        and response.status >= 400
        and wants_page(request)
    ):
        return error_page(request, response)
    return response
