"""Failure triage: `GET /api/failures` and the `/failures` page (operators only in owner mode),
the failed jobs of a window grouped by what went wrong, with their kinds, when they were first and
last seen, a sparkline per hour, and what a retry of the group would touch
(jobcast/queries/failures.py). Retrying a group is one bulk job (`POST /api/bulk` with its ids)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from jobcast.queries.failures import failure_groups
from jobcast.queries.listing import WINDOWS_S, Window
from jobcast.server.http.bodies import json_response
from jobcast.server.http.openapi import HTML, PAGE, Answer, Operation, json, operation
from jobcast.server.http.problems import parsed_query
from jobcast.server.http.schemas import FailureGroups
from jobcast.server.keys import SETTINGS, SHARDS
from jobcast.server.pages.views import render_page
from jobcast.server.security.auth import require_admin

routes = web.RouteTableDef()


class FailuresQuery(BaseModel):
    since: Window = Field(default="1d", description="The window: failures that ended this recently")
    group: str | None = Field(
        default=None, max_length=2000, description="One group's signature: the page lists its jobs"
    )


async def grouped(request: web.Request, query: FailuresQuery) -> dict[str, Any]:
    require_admin(request)
    limit = request.app[SETTINGS].failures_scanned
    return await failure_groups(request.app[SHARDS].stores, WINDOWS_S[query.since], limit)


@routes.get("/api/failures")
@operation(
    Operation(
        "Failed jobs of a window grouped by error type and message, the largest group first",
        {200: json("The groups", FailureGroups)},
        query=FailuresQuery,
        problems=(403, 422, 503),
        tags=("operations",),
    )
)
async def list_failures(request: web.Request) -> web.Response:
    return json_response(await grouped(request, parsed_query(request, FailuresQuery)))


@routes.get("/failures")
@operation(
    Operation(
        "The Failures page: failed jobs grouped by what went wrong, each group one click from its "
        "jobs and from a retry of them all",
        {200: Answer("The page", {HTML: PAGE})},
        query=FailuresQuery,
        problems=(403, 422, 503),
        tags=("pages",),
    )
)
async def failures_page(request: web.Request) -> web.Response:
    query = parsed_query(request, FailuresQuery)
    found = await grouped(request, query)
    chosen = next((g for g in found["groups"] if g["signature"] == query.group), None)
    context = {
        "found": found,
        "since": query.since,
        "windows": list(WINDOWS_S),
        "chosen": chosen,
        "bulk_max": request.app[SETTINGS].max_bulk_jobs,
    }
    return render_page("failures.html", request, context)
