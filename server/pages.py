"""Server-rendered pages: they work before any JS runs, and watch jobs over SSE when it does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web

from jobs.kinds import KINDS
from server.api import JOB_ID, create_job, load_snapshot

ROOT = Path(__file__).resolve().parent.parent
routes = web.RouteTableDef()


@routes.get("/")
@aiohttp_jinja2.template("index.html")
async def index(request: web.Request) -> dict[str, Any]:
    return {"kinds": list(KINDS.values())}


@routes.post("/submit")
async def submit_form(request: web.Request) -> web.Response:
    form = await request.post()
    kind = str(form.get("kind", ""))
    # The form carries only numbers for now; the UI issue builds forms from the kinds' schemas.
    numbers = {k: int(v) for k, v in form.items() if k != "kind" and isinstance(v, str) and v.isdigit()}
    job = await create_job(request.app, kind, numbers)
    raise web.HTTPSeeOther(job["links"]["page"])


@routes.get(f"/jobs/{JOB_ID}")
@aiohttp_jinja2.template("job.html")
async def job_page(request: web.Request) -> dict[str, Any]:
    return {"job": await load_snapshot(request), "origin": request.url.origin()}


def setup_pages(app: web.Application) -> None:
    aiohttp_jinja2.setup(
        app, loader=jinja2.FileSystemLoader(ROOT / "templates"), autoescape=jinja2.select_autoescape()
    )
    app.add_routes(routes)
    app.router.add_static("/static", ROOT / "static")
