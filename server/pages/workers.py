"""The workers: `GET /api/workers` and the `/workers` page (operators only in owner mode), each
worker with its host, pid, start, concurrency, kinds and heartbeat, and the jobs it runs now
(jobcast/queries/workers.py)."""

from __future__ import annotations

from aiohttp import web

from jobcast.queries.workers import workers
from jobcast.server.http.bodies import json_response
from jobcast.server.http.openapi import HTML, PAGE, Answer, Operation, json, operation
from jobcast.server.http.schemas import WorkerList
from jobcast.server.keys import SETTINGS, STORE
from jobcast.server.pages.views import render_page
from jobcast.server.security.auth import require_admin

routes = web.RouteTableDef()


async def current(request: web.Request) -> list[dict]:
    require_admin(request)
    settings = request.app[SETTINGS]
    return await workers(request.app[STORE], settings.worker_ttl_s, settings.lost_workers_shown_s)


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
