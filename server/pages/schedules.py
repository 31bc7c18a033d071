"""The Schedules page (`/schedules`): every schedule the operator manages, its next runs, its
last run with its outcome, and its counts; with pause, resume and run now, each a form that comes
back here (server/api/schedules.py does the same over the API)."""

from __future__ import annotations

from aiohttp import web

from jobcast.schedule import SCHEDULE_ID
from jobcast.server.api.schedules import book, load, manager, run_now, view, visible
from jobcast.server.http.openapi import HTML, PAGE, Answer, Operation, operation
from jobcast.server.keys import SETTINGS
from jobcast.server.pages.views import render_page

routes = web.RouteTableDef()

ID = f"{{schedule_id:{SCHEDULE_ID}}}"
BACK = Answer("Back to the Schedules page", headers=("Location",))


@routes.get("/schedules")
@operation(
    Operation(
        "The Schedules page",
        {200: Answer("The page", {HTML: PAGE})},
        problems=(403, 503),
        tags=("pages",),
    )
)
async def schedules_page(request: web.Request) -> web.Response:
    who = manager(request)
    schedules = [s for s in await book(request).all() if visible(who, s)]
    return render_page("schedules.html", request, {"schedules": await view(request, schedules)})


def back(request: web.Request, schedule_id: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(f"{request.app[SETTINGS].url_prefix}/schedules#{schedule_id}")


async def set_enabled(request: web.Request, enabled: bool) -> web.HTTPSeeOther:
    schedule = await load(request)
    if schedule.enabled != enabled:
        await book(request).save(schedule.model_copy(update={"enabled": enabled}), schedule)
    return back(request, schedule.id)


@routes.post(f"/schedules/{ID}/pause")
@operation(
    Operation("Pause a schedule, from its page", {303: BACK}, problems=(403, 404, 503), tags=("pages",))
)
async def pause_form(request: web.Request) -> web.Response:
    raise await set_enabled(request, False)


@routes.post(f"/schedules/{ID}/resume")
@operation(
    Operation("Resume a schedule, from its page", {303: BACK}, problems=(403, 404, 503), tags=("pages",))
)
async def resume_form(request: web.Request) -> web.Response:
    raise await set_enabled(request, True)


@routes.post(f"/schedules/{ID}/run")
@operation(
    Operation(
        "Run a schedule's job now, from its page (to the new job's page)",
        {303: Answer("The new job's page", headers=("Location",))},
        problems=(403, 404, 409, 429, 503),
        tags=("pages",),
    )
)
async def run_form(request: web.Request) -> web.Response:
    job_id = await run_now(request)
    raise web.HTTPSeeOther(f"{request.app[SETTINGS].url_prefix}/jobs/{job_id}")
