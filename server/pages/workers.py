"""The workers: `GET /api/workers` and the `/workers` page (operators only in owner mode), each
worker with its host, pid, start, concurrency, kinds and heartbeat, and the jobs it runs now; one
worker's own page (`/workers/{name}`, `GET /api/workers/{name}`) adds the jobs that ended on it
last (jobcast/queries/workers.py)."""

from __future__ import annotations

from aiohttp import web

from jobcast.queries.workers import recent_jobs, workers
from jobcast.server.http.bodies import json_response
from jobcast.server.http.openapi import HTML, PAGE, Answer, Operation, json, operation
from jobcast.server.http.problems import Problem
from jobcast.server.http.schemas import WorkerDetail, WorkerList
from jobcast.server.keys import SETTINGS, SHARDS
from jobcast.server.pages.views import render_page
from jobcast.server.security.auth import require_admin

routes = web.RouteTableDef()


async def current(request: web.Request) -> list[dict]:
    require_admin(request)
    settings = request.app[SETTINGS]
    return await workers(request.app[SHARDS], settings.worker_ttl_s, settings.lost_workers_shown_s)


@routes.get("/api/workers")
@operation(
    Operation(
        "The workers, live ones first (and those gone within JOBCAST_LOST_WORKERS_SHOWN_S), with the jobs "
        "each runs now",
        {200: json("The workers", WorkerList)},
        problems=(403, 503),
        tags=("operations",),
    )
)
async def list_workers(request: web.Request) -> web.Response:
    return json_response({"workers": await current(request)})


@routes.get("/workers")
@operation(
    Operation(
        "The workers page", {200: Answer("The page", {HTML: PAGE})}, problems=(403, 503), tags=("pages",)
    )
)
async def workers_page(request: web.Request) -> web.Response:
    return render_page("workers.html", request, {"workers": await current(request)})


async def one(request: web.Request) -> dict:
    name = request.match_info["name"]
    found = next((w for w in await current(request) if w["name"] == name), None)
    if found is None:
        raise Problem(404, f"no worker {name!r} has been seen lately", slug="not-found")
    return {**found, "recent": await recent_jobs(request.app[SHARDS], found.get("recent_jobs", []))}


@routes.get("/api/workers/{name}")
@operation(
    Operation(
        "One worker, with the jobs it runs now and those that ended on it last",
        {200: json("The worker", WorkerDetail)},
        problems=(403, 404, 503),
        tags=("operations",),
    )
)
async def get_worker(request: web.Request) -> web.Response:
    return json_response(await one(request))


@routes.get("/workers/{name}")
@operation(
    Operation(
        "A worker's own page",
        {200: Answer("The page", {HTML: PAGE})},
        problems=(403, 404, 503),
        tags=("pages",),
    )
)
async def worker_page(request: web.Request) -> web.Response:
    return render_page("worker.html", request, {"w": await one(request)})
