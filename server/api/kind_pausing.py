"""`POST /api/kinds/{kind}/pause` and `/resume`: an operator stops a kind's jobs from starting
(running ones finish) and lets them run again (jobcast/store/pausing.py). Admins only in owner mode."""

from __future__ import annotations

from aiohttp import web

from jobcast.queries.across_shards import paused_across
from jobcast.server.http.bodies import json_response
from jobcast.server.http.openapi import Operation, json, operation
from jobcast.server.http.problems import Problem
from jobcast.server.http.schemas import KindPause
from jobcast.server.keys import KINDS, SHARDS
from jobcast.server.security.auth import principal, require_admin
from jobcast.store.pausing import pause_everywhere, resume_everywhere

routes = web.RouteTableDef()

KIND = "{kind:[A-Za-z0-9_.-]{1,100}}"


def known_kind(request: web.Request) -> str:
    kind = request.match_info["kind"]
    if kind not in request.app[KINDS]:
        raise Problem(404, f"no kind named {kind!r}; see /api/kinds", slug="not-found")
    return kind


async def answer(request: web.Request, kind: str, resumed: int | None = None) -> web.Response:
    state = (await paused_across(request.app[SHARDS].stores)).get(kind)
    body = {"kind": kind, "paused": state is not None, "since": state and state["since"]}
    body["by"] = state and state["by"]
    body["parked"] = state["parked"] if state else 0
    if resumed is not None:
        body["resumed"] = resumed
    return json_response(body)


@routes.post(f"/api/kinds/{KIND}/pause")
@operation(
    Operation(
        "Pause a kind: workers start none of its jobs (running ones finish) until it resumes",
        {200: json("The kind, paused", KindPause)},
        problems=(403, 404, 503),
        tags=("operations",),
    )
)
async def pause_kind(request: web.Request) -> web.Response:
    require_admin(request)
    kind = known_kind(request)
    await pause_everywhere(request.app[SHARDS].stores, kind, principal(request).owner)
    return await answer(request, kind)


@routes.post(f"/api/kinds/{KIND}/resume")
@operation(
    Operation(
        "Resume a paused kind: its waiting jobs go back to their queues, in their places",
        {200: json("The kind, running again", KindPause)},
        problems=(403, 404, 503),
        tags=("operations",),
    )
)
async def resume_kind(request: web.Request) -> web.Response:
    require_admin(request)
    kind = known_kind(request)
    moved = await resume_everywhere(request.app[SHARDS].stores, kind)
    return await answer(request, kind, resumed=moved)
