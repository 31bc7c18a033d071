"""Scheduled work: `GET /api/scheduled` and the `/scheduled` page (operators only in owner mode),
the jobs waiting for a time still ahead, soonest first; `POST /api/jobs/{id}/run-now` (and the
page's form) runs one of them now (jobcast/queries/scheduled.py)."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, Field

from jobcast.errors import JobNotFound
from jobcast.queries.scheduled import run_now, scheduled
from jobcast.server.api.jobs import load_snapshot
from jobcast.server.http.bodies import JOB_ID, json_response
from jobcast.server.http.openapi import HTML, PAGE, Answer, Operation, json, operation
from jobcast.server.http.problems import Problem, parsed_query
from jobcast.server.http.schemas import JobPage, JobSnapshot
from jobcast.server.keys import SETTINGS, STORE
from jobcast.server.pages.views import render_page
from jobcast.server.security.auth import check_visible, principal, require_admin
from jobcast.snapshot import JobSnapshot as Snapshot
from jobcast.store.scripts import Status

routes = web.RouteTableDef()


class ScheduledQuery(BaseModel):
    limit: int = Field(default=100, ge=1, le=1000, description="How many jobs, soonest first")


async def soonest(request: web.Request) -> list[Snapshot]:
    require_admin(request)
    return await scheduled(request.app[STORE], parsed_query(request, ScheduledQuery).limit)


@routes.get("/api/scheduled")
@operation(
    Operation(
        "Jobs waiting for a time still ahead (delayed, or backing off between attempts), soonest first",
        {200: json("The jobs", JobPage)},
        query=ScheduledQuery,
        problems=(403, 422, 503),
        tags=("operations",),
    )
)
async def list_scheduled(request: web.Request) -> web.Response:
    return json_response({"jobs": await soonest(request), "next_cursor": None})


async def start_now(request: web.Request) -> str:
    job_id = request.match_info["job_id"]
    store = request.app[STORE]
    await check_visible(store, principal(request), job_id)
    status = await run_now(store, job_id)
    if status is Status.NOT_FOUND:
        raise JobNotFound(job_id)
    if status is Status.REFUSED:
        raise Problem(409, "the job is not waiting for a time ahead", slug="not-scheduled")
    return job_id


@routes.post(f"/api/jobs/{JOB_ID}/run-now")
@operation(
    Operation(
        "Run a delayed job (or one backing off between attempts) now",
        {200: json("The job, due now", JobSnapshot)},
        problems=(404, 409, 503),
    )
)
async def run_now_api(request: web.Request) -> web.Response:
    return json_response(await load_snapshot(request, await start_now(request)))


@routes.post(f"/jobs/{JOB_ID}/run-now")
@operation(
    Operation(
        "Run now, from the scheduled page",
        {303: Answer("Back to the scheduled page", headers=("Location",))},
        problems=(404, 409, 503),
        tags=("pages",),
    )
)
async def run_now_form(request: web.Request) -> web.Response:
    await start_now(request)
    raise web.HTTPSeeOther(f"{request.app[SETTINGS].url_prefix}/scheduled")


@routes.get("/scheduled")
@operation(
    Operation(
        "The scheduled work page",
        {200: Answer("The page", {HTML: PAGE})},
        problems=(403, 503),
        tags=("pages",),
    )
)
async def scheduled_page(request: web.Request) -> web.Response:
    return render_page("scheduled.html", request, {"jobs": await soonest(request)})
