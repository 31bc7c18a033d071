"""Pausing and resuming a kind from the dashboard without JS: its buttons are forms posting here,
which come back to the dashboard (the page's script calls `POST /api/kinds/{kind}/pause` and
`/resume` instead; server/api/kind_pausing.py). Admins only in owner mode."""

from __future__ import annotations

from aiohttp import web

from jobcast.server.api.kind_pausing import KIND, known_kind
from jobcast.server.http.openapi import Answer, Operation, operation
from jobcast.server.keys import SETTINGS, SHARDS
from jobcast.server.security.auth import principal, require_admin
from jobcast.store.pausing import pause_everywhere, resume_everywhere

routes = web.RouteTableDef()


def back(request: web.Request) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(f"{request.app[SETTINGS].url_prefix}/")


@routes.post(f"/kinds/{KIND}/pause")
@operation(
    Operation(
        "Pause a kind, from the dashboard's form",
        {303: Answer("Back to the dashboard", headers=("Location",))},
        problems=(403, 404, 503),
        tags=("pages",),
    )
)
async def pause_kind_form(request: web.Request) -> web.Response:
    require_admin(request)
    await pause_everywhere(request.app[SHARDS].stores, known_kind(request), principal(request).owner)
    raise back(request)


@routes.post(f"/kinds/{KIND}/resume")
@operation(
    Operation(
        "Resume a kind, from the dashboard's form",
        {303: Answer("Back to the dashboard", headers=("Location",))},
        problems=(403, 404, 503),
        tags=("pages",),
    )
)
async def resume_kind_form(request: web.Request) -> web.Response:
    require_admin(request)
    await resume_everywhere(request.app[SHARDS].stores, known_kind(request))
    raise back(request)
