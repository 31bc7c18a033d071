"""Scheduled work: `GET /api/scheduled` and the `/scheduled` page (operators only in owner mode),
the jobs waiting for a time still ahead, soonest first; `POST /api/jobs/{id}/run-now` (and the
page's forms) runs one of them now, and the page cancels or runs now the jobs chosen on it
(jobcast/queries/scheduled.py)."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field
from yarl import URL

from jobcast import bulk
from jobcast.errors import AlreadyEnded, JobNotFound
from jobcast.queries.across_shards import scheduled_across
from jobcast.queries.scheduled import run_now
from jobcast.server.api.control import cancel_job
from jobcast.server.api.jobs import load_snapshot
from jobcast.server.http.bodies import JOB_ID, json_response, read_url_encoded
from jobcast.server.http.openapi import FORM, HTML, PAGE, TEXT, Answer, Operation, json, operation
from jobcast.server.http.problems import Problem, parsed_query
from jobcast.server.http.schemas import JobPage, JobSnapshot
from jobcast.server.keys import KINDS, SETTINGS, SHARDS
from jobcast.server.pages.views import render_page
from jobcast.server.security.auth import check_visible, principal, require_admin
from jobcast.server.stores import job_store
from jobcast.snapshot import JobSnapshot as Snapshot
from jobcast.store.scripts import Status

routes = web.RouteTableDef()

# The scheduled page's form: the chosen jobs (`job`, repeated) and the kind filter to return to.
SCHEDULED_CHOICE: dict[str, Any] = {
    "type": "object",
    "properties": {"job": {"type": "array", "items": TEXT}, "kind": TEXT},
}


class ScheduledQuery(BaseModel):
    limit: int = Field(default=100, ge=1, le=1000, description="How many jobs, soonest first")
    kind: str | None = Field(
        default=None, max_length=200, description="Only jobs of this kind (among the soonest 10 x limit)"
    )


async def soonest(request: web.Request) -> list[Snapshot]:
    require_admin(request)
    query = parsed_query(request, ScheduledQuery)
    return await scheduled_across(request.app[SHARDS].stores, query.limit, query.kind or None)


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
    store = job_store(request.app, job_id)
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
    jobs = await soonest(request)
    query = parsed_query(request, ScheduledQuery)
    # How many the last action took, when it sent the browser back here.
    done = {name: request.query.get(name, "") for name in ("cancelled", "ran")}
    context = {
        "jobs": jobs,
        "kinds": sorted(request.app[KINDS].keys()),
        "kind": query.kind or "",
        **{name: int(n) if n.isdigit() and len(n) < 9 else None for name, n in done.items()},
    }
    return render_page("scheduled.html", request, context)


@routes.post("/scheduled/cancel")
@operation(
    Operation(
        "Cancel the jobs chosen on the scheduled page (`job`, one field each), and back to it",
        {303: Answer("Back to the scheduled page, with how many were cancelled", headers=("Location",))},
        body={FORM: SCHEDULED_CHOICE},
        problems=(400, 403, 413, 415, 503),
        tags=("pages",),
    )
)
async def cancel_chosen(request: web.Request) -> web.Response:
    ids, kind = await chosen(request)
    cancelled = 0
    for job_id in ids:
        try:
            await cancel_job(job_store(request.app, job_id), job_id, principal(request))
            cancelled += 1
        except (JobNotFound, AlreadyEnded):
            continue  # ended or gone since the page showed it: nothing to cancel
    raise back_to_page(request, kind, cancelled=cancelled)


@routes.post("/scheduled/run-now")
@operation(
    Operation(
        "Run the jobs chosen on the scheduled page now (`job`, one field each), and back to it",
        {303: Answer("Back to the scheduled page, with how many were started early", headers=("Location",))},
        body={FORM: SCHEDULED_CHOICE},
        problems=(400, 403, 413, 415, 503),
        tags=("pages",),
    )
)
async def run_chosen_now(request: web.Request) -> web.Response:
    ids, kind = await chosen(request)
    shards = request.app[SHARDS]
    ran = 0
    for job_id in ids:
        # Started, ended or gone since the page showed it (or never was): nothing to bring forward.
        store = shards.of(job_id)
        ran += store is not None and await run_now(store, job_id) is Status.OK
    raise back_to_page(request, kind, ran=ran)


async def chosen(request: web.Request) -> tuple[list[str], str]:
    """The ids the page's form chose (at most JOBCAST_MAX_BULK_JOBS) and its kind filter."""
    require_admin(request)
    form = await read_url_encoded(request)
    ids = [v for v in form.getall("job", []) if isinstance(v, str) and re.fullmatch(bulk.JOB_ID, v)]
    limit = request.app[SETTINGS].max_bulk_jobs
    if len(ids) > limit:
        raise Problem(413, f"at most {limit} jobs at once (JOBCAST_MAX_BULK_JOBS)", slug="too-many")
    kind = form.get("kind")
    return ids, kind if isinstance(kind, str) else ""


def back_to_page(request: web.Request, kind: str, **done: int) -> web.HTTPSeeOther:
    """Back to the page as it was filtered, saying how many jobs the action took."""
    query = {"kind": kind} if kind else {}
    query.update({name: str(n) for name, n in done.items()})
    return web.HTTPSeeOther(str(URL(f"{request.app[SETTINGS].url_prefix}/scheduled").with_query(query)))
