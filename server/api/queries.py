"""Knowing what exists: `GET /api/jobs` (list, filter, paginate) and `GET /api/stats`."""

from __future__ import annotations

from typing import Literal

from aiohttp import web
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from jobcast.protocol import Priority, State
from jobcast.queries.across_shards import finished_across, list_across, stats_across
from jobcast.queries.listing import BadCursor, Window, time_range
from jobcast.server.http.bodies import json_response
from jobcast.server.http.openapi import Operation, json, operation
from jobcast.server.http.problems import Problem, parsed_query
from jobcast.server.http.schemas import FinishedHistory, JobPage, Stats
from jobcast.server.keys import KINDS, SETTINGS, SHARDS
from jobcast.server.security.auth import principal, require_admin

routes = web.RouteTableDef()


class ListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: State | None = None
    kind: str | None = None
    priority: Priority | None = None
    owner: str | None = Field(
        default=None, min_length=1, max_length=200, description="Only this owner's jobs (admins; owner mode)"
    )
    limit: int = Field(default=50, ge=1, le=200)
    cursor: str | None = None
    order: Literal["newest"] = "newest"
    since: AwareDatetime | None = Field(
        default=None,
        description="Only jobs from this time on: that reached `state` then (with `state`), or else "
        "were submitted then",
    )
    until: AwareDatetime | None = Field(default=None, description="Only jobs up to this time (as `since`)")
    within: Window | None = Field(default=None, description="Only jobs of this recent window (as `since`)")
    delayed: bool = Field(
        default=False,
        description="Only jobs waiting for a time still ahead: delayed, or backing off between attempts",
    )
    group: str | None = Field(
        default=None,
        min_length=1,
        max_length=1000,
        description="Only failed jobs of this error group (a `signature` of `GET /api/failures`)",
    )
    top_level: bool = Field(
        default=False,
        description="Only jobs that are no other job's child: single jobs, trees' roots and batches "
        "(a parent's children are at `/api/jobs/{id}/children`)",
    )
    text: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Only jobs with this text (case-insensitive) in their id, kind, owner, params or "
        "error. A page reads at most `JOBCAST_SEARCH_SCANNED` jobs: it may hold fewer than `limit` "
        "and still have a `next_cursor` to search on.",
    )


@routes.get("/api/jobs")
@operation(
    Operation(
        "List jobs, newest first, filtered by state, kind, priority, owner, time or text",
        {200: json("A page of jobs; follow `next_cursor` for the next", JobPage)},
        query=ListQuery,
        problems=(400, 403, 422, 503),
        id="list_jobs",
    )
)
async def jobs(request: web.Request) -> web.Response:
    query = parsed_query(request, ListQuery)
    if query.kind is not None and query.kind not in request.app[KINDS]:
        raise Problem(
            422,
            f"unknown kind {query.kind!r}",
            slug="validation",
            errors=[{"field": "query.kind", "message": "unknown kind", "code": "unknown"}],
        )
    since_ms, until_ms = time_range(query.since, query.until, query.within)
    who = principal(request)
    owner, submitted_by = who.lists
    if query.owner is not None:
        if not who.sees_all:
            raise Problem(403, "only admins may list another owner's jobs", slug="forbidden")
        owner = query.owner
    try:
        page = await list_across(
            # Every shard, an owner's listing too: jobs made before the shard count changed stay
            # where they were made, which need not be the owner's shard now.
            request.app[SHARDS].stores,
            state=query.state,
            kind=query.kind,
            priority=query.priority,
            owner=owner,
            submitted_by=submitted_by,
            limit=query.limit,
            cursor=query.cursor,
            since_ms=since_ms,
            until_ms=until_ms,
            text=query.text,
            delayed=query.delayed,
            group=query.group,
            top_level=query.top_level,
        )
    except BadCursor:
        message = "malformed cursor; use next_cursor from a previous page"
        raise Problem(400, message, slug="bad-cursor") from None
    body: dict[str, object] = {"jobs": page.jobs, "next_cursor": page.next_cursor}
    if page.next_cursor:
        body["links"] = {"next": str(request.rel_url.update_query(cursor=page.next_cursor))}
    return json_response(body)


class FinishedQuery(BaseModel):
    span: Literal["hour", "day"] = Field(
        default="hour", description="Per minute over an hour, or per hour over a day"
    )


@routes.get("/api/finished")
@operation(
    Operation(
        "Jobs finished over the last hour (per minute) or day (per hour), by kind and final state",
        {200: json("The buckets", FinishedHistory)},
        query=FinishedQuery,
        problems=(403, 422, 503),
    )
)
async def get_finished(request: web.Request) -> web.Response:
    require_admin(request)
    query = parsed_query(request, FinishedQuery)
    return json_response(await finished_across(request.app[SHARDS].stores, query.span))


@routes.get("/api/stats")
@operation(
    Operation(
        "Counters: waiting, running, finished, workers", {200: json("The counters", Stats)}, problems=(503,)
    )
)
async def get_stats(request: web.Request) -> web.Response:
    require_admin(request)
    settings = request.app[SETTINGS]
    body = await stats_across(request.app[SHARDS].stores, worker_ttl_s=settings.worker_ttl_s)
    return json_response(body)
