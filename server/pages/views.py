"""Server-rendered pages: the dashboard and the job page. They work before any JS runs (forms
post to the routes here); static/dashboard.js and static/job-page.js then make them live through
the same JS client as any other frontend (static/jobcast.js)."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web
from pydantic import BaseModel, Field, ValidationError
from yarl import URL

from jobcast.errors import JobNotFound
from jobcast.protocol import (
    Priority,
    State,
    epoch_ms,
    from_epoch_ms,
    isoformat,
    loads,
    new_job_id,
    split_record,
)
from jobcast.queries.across_shards import finished_across, ids_across, list_across, stats_across
from jobcast.queries.finished import per_bucket
from jobcast.queries.listing import WINDOWS_S, BadCursor, time_range
from jobcast.redis.client import awaited
from jobcast.server.api.batches import retry_failed_children
from jobcast.server.api.control import cancel_job
from jobcast.server.api.jobs import load_snapshot, visible
from jobcast.server.api.submit import (
    SubmitRequest,
    discard_files_unless_created,
    read_form,
    require_upload,
    retry,
    submit,
    validate,
)
from jobcast.server.http.bodies import JOB_ID
from jobcast.server.http.openapi import (
    BINARY,
    FORM,
    HTML,
    MULTIPART,
    PAGE,
    TEXT,
    Answer,
    Operation,
    json,
    operation,
)
from jobcast.server.http.problems import CONTENT_TYPE as PROBLEM
from jobcast.server.http.problems import Problem, parsed_query, validation_problem
from jobcast.server.http.schemas import JobSnapshot, ProblemDocument
from jobcast.server.keys import KINDS, SETTINGS, SHARDS
from jobcast.server.pages.forms import form_fields, params_from_form
from jobcast.server.pages.job_details import attempts, params_rows
from jobcast.server.pages.job_output import page_context, page_outputs
from jobcast.server.pages.plain_state import plain_state
from jobcast.server.pages.times import relative
from jobcast.server.security.auth import csrf_token, may_submit, owner_for, principal
from jobcast.server.security.tokens import opens_job
from jobcast.server.stores import job_store
from jobcast.store.jobs import build_snapshot, is_record

ROOT = Path(__file__).resolve().parent.parent.parent
routes = web.RouteTableDef()
FAILED_JOBS = 10
DELAYED = "delayed"


def wants_json(request: web.Request) -> bool:
    return "application/json" in request.headers.get("Accept", "")


async def dashboard_context(request: web.Request, **extra: Any) -> dict[str, Any]:
    app = request.app
    settings = app[SETTINGS]
    who = principal(request)
    query = parsed_query(request, DashboardQuery)
    # An unknown filter value shows every job, as a link that outlived a kind should.
    state = query.state if query.state in {s.value for s in State} else None
    # "delayed" is a state to the people filtering: waiting for a time still ahead.
    delayed = query.state == DELAYED
    kind = query.kind if query.kind in app[KINDS] else None
    priority = query.priority if query.priority in {p.value for p in Priority} else None
    page_sizes = sorted({50, 200, settings.dashboard_max_rows})
    limit = query.limit if query.limit in page_sizes else page_sizes[0]
    owner, submitted_by = who.lists
    if who.sees_all and query.owner:
        owner = query.owner
    since_ms, until_ms = dashboard_range(query)
    parts = query.parts == "1"
    stores = app[SHARDS].stores  # an owner's jobs too (see server/api/queries.py)
    try:
        recent = await list_across(
            stores,
            state=state,
            kind=kind,
            priority=priority,
            owner=owner,
            submitted_by=submitted_by,
            limit=limit,
            cursor=query.cursor,
            since_ms=since_ms,
            until_ms=until_ms,
            text=query.text.strip() or None if query.text else None,
            delayed=delayed,
            group=query.group or None,
            top_level=not parts,
        )
    except BadCursor:
        raise Problem(400, "malformed cursor; follow the page's own links", slug="bad-cursor") from None
    failed = await list_across(
        stores,
        state=State.FAILED,
        kind=None,
        owner=owner,
        submitted_by=submitted_by,
        limit=FAILED_JOBS,
        cursor=None,
    )
    # The counters cover every job: an operator's (admin's) view only.
    counters = await stats_across(stores, worker_ttl_s=settings.worker_ttl_s) if who.sees_all else None
    # The graph's last hour, drawn by the page before any JS runs (its script then keeps it live).
    graph = per_bucket(await finished_across(stores, "hour")) if who.sees_all else []
    kinds = list(app[KINDS].values())
    filters = {
        "state": DELAYED if delayed else state,
        "kind": kind,
        "priority": priority,
        "owner": owner if who.sees_all else None,
        "limit": limit,
        "cursor": query.cursor,
        "within": query.within if query.within in WINDOWS_S else None,
        "since": query.since if since_ms is not None and query.within not in WINDOWS_S else None,
        "until": query.until if until_ms is not None else None,
        "text": query.text.strip() or None if query.text else None,
        "group": query.group or None,
        "parts": "1" if parts else None,
    }
    # What a bulk action by filter acts on: the same jobs, the range fixed as the page shows it.
    bulk_filter = {
        k: filters[k] for k in ("state", "kind", "priority", "owner", "text", "group") if filters[k]
    }
    if delayed:
        del bulk_filter["state"]
        bulk_filter["delayed"] = True
    if not parts:  # the jobs the table shows: no job's parts
        bulk_filter["top_level"] = True
    if since_ms is not None:
        bulk_filter["since"] = isoformat(from_epoch_ms(int(since_ms)))
    if until_ms is not None:
        bulk_filter["until"] = isoformat(from_epoch_ms(int(until_ms)))

    def page_url(**change: str | None) -> str:
        wanted = {k: v for k, v in {**filters, **change}.items() if v and not (k == "limit" and v == 50)}
        return str(URL(f"{settings.url_prefix}/").with_query(wanted))

    return {
        "kinds": kinds,
        "search_scanned": settings.search_scanned,
        # Each kind's time limit, for the ETA of a row the page adds (server/pages' rows carry the job's).
        "timeouts": {k.name: k.timeout_s for k in kinds},
        "fields": {k.name: form_fields(k) for k in kinds},
        "priorities": [p.value for p in Priority],
        "states": [State.QUEUED.value, DELAYED, *(s.value for s in State if s is not State.QUEUED)],
        "filters": filters,
        "page_sizes": page_sizes,
        "page_url": page_url,
        "next_cursor": recent.next_cursor,
        "owner_filter": who.sees_all and who.owner is not None,
        "bulk": who.sees_all,
        "graph": graph,
        "graph_most": max([1, *(row["total"] for row in graph)]),
        "bulk_filter": bulk_filter,
        "windows": list(WINDOWS_S),
        "may_submit": may_submit(request),
        "bulk_max": settings.max_bulk_jobs,
        "jobs": recent.jobs,
        "failed": failed.jobs,
        "stats": counters,
        "values": {},
        "errors": {},
        "selected_kind": kinds[0].name if kinds else "",
        **extra,
    }


class DashboardQuery(BaseModel):
    """The dashboard's filters (an unknown value shows every job) and page."""

    state: str | None = Field(default=None, description="Only jobs in this state")
    kind: str | None = Field(default=None, description="Only jobs of this kind")
    priority: str | None = Field(default=None, description="Only jobs of this priority")
    owner: str | None = Field(default=None, max_length=200, description="Only this owner's jobs (admins)")
    limit: int = Field(default=50, description="Rows per page: 50, 200 or JOBCAST_DASHBOARD_MAX_ROWS")
    cursor: str | None = Field(default=None, max_length=400, description="From a page's `Older jobs` link")
    within: str | None = Field(default=None, description="Only jobs of this recent window: 15m, 1h, 1d or 7d")
    since: str | None = Field(
        default=None,
        max_length=40,
        description="Only jobs from this time (ISO 8601): that reached the state then, or else were "
        "submitted then (the graph's bars link here)",
    )
    until: str | None = Field(
        default=None, max_length=40, description="Only jobs up to this time (as `since`)"
    )
    text: str | None = Field(
        default=None,
        max_length=200,
        description="Only jobs with this text in their id, kind, owner, params or error",
    )
    group: str | None = Field(
        default=None,
        max_length=1000,
        description="Only failed jobs of this error group (the Failures page's)",
    )
    parts: str | None = Field(
        default=None,
        max_length=10,
        description="`1`: also the jobs that are another job's children (by default each parent's page "
        "lists its own)",
    )


def dashboard_range(query: DashboardQuery) -> tuple[float | None, float | None]:
    """The dashboard's time range in epoch ms; a value that is no time shows every job, as an
    unknown filter value does."""

    def at(text: str | None) -> float | None:
        try:
            moment = datetime.fromisoformat(text) if text else None
        except ValueError:
            return None
        return epoch_ms(moment) if moment is not None and moment.tzinfo is not None else None

    if query.within in WINDOWS_S:
        return time_range(None, None, query.within)
    return at(query.since), at(query.until)


FORM_BODY = {
    "type": "object",
    "properties": {
        "kind": TEXT,
        "priority": TEXT,
        "delay_s": TEXT,
        "file": BINARY,
    },
    "additionalProperties": {"type": "string", "description": "`<kind>.<param>` for each param"},
}
PAGE_PROBLEMS = (400, 404, 413, 415, 503, 507)


@routes.get("/")
@operation(
    Operation(
        "The dashboard",
        {200: Answer("The page", {HTML: PAGE})},
        query=DashboardQuery,
        problems=(400, 422, 503),
        tags=("pages",),
    )
)
async def index(request: web.Request) -> web.Response:
    return render_page("index.html", request, await dashboard_context(request))


@routes.post("/submit")
@operation(
    Operation(
        "The dashboard's form (with `Accept: application/json`: answers as POST /api/jobs)",
        {
            303: Answer("Submitted: to the job's page", headers=("Location",)),
            202: json("Submitted (JSON)", JobSnapshot, headers=("Location",)),
            422: Answer("Invalid: the form again, with messages", {HTML: PAGE, PROBLEM: ProblemDocument}),
        },
        body={MULTIPART: FORM_BODY, FORM: FORM_BODY},
        problems=(*PAGE_PROBLEMS, 429),
        tags=("pages",),
    )
)
async def submit_form(request: web.Request) -> web.Response:
    """The dashboard's form, posted by a browser (HTML answers) or by its JS (`Accept: JSON`)."""
    app = request.app
    job_id = new_job_id()
    fields: dict[str, str] = {}
    try:
        async with discard_files_unless_created(app, job_id):
            fields, upload = await read_form(request, job_id)
            kind = app[KINDS].get(fields.get("kind", ""))
            params = params_from_form(kind, fields) if kind is not None else {}
            params.pop("upload", None)  # the server's to set, from the file
            if upload is not None:
                params["upload"] = upload
            body: dict[str, Any] = {"kind": fields.get("kind", ""), "params": params}
            for name in ("priority", "delay_s"):
                if fields.get(name):
                    body[name] = fields[name]
            try:
                request_ = SubmitRequest.model_validate(body)
            except ValidationError as e:
                raise validation_problem(e) from None
            submission = validate(app, request_)
            require_upload(app, submission)
            job = (await submit(app, submission, job_id=job_id, owner=owner_for(request, None))).snapshot
    except Problem as problem:
        if wants_json(request) or problem.status != 422:
            raise
        errors = {e["field"]: e["message"] for e in problem.errors or []}
        context = await dashboard_context(
            request, values=fields, errors=errors, selected_kind=fields.get("kind"), problem=problem.detail
        )
        return render_page("index.html", request, context, status=422)
    if wants_json(request):
        return web.json_response(job, status=202, headers={"Location": job["links"]["self"]})
    raise web.HTTPSeeOther(job["links"]["page"])


def _history(records: list[bytes]) -> list[dict[str, Any]]:
    return [loads(split_record(record)[2]) for record in records]


# Events the job page's log shows at once.
LOG_PAGE_EVENTS = 100


# A parent's children shown on its page at once (past them, links page on).
CHILDREN_PAGE = 200


class JobPageQuery(BaseModel):
    token: str | None = Field(
        default=None,
        max_length=512,
        description="A stream token of the job: a read-only link its owner shared (it expires, and "
        "`DELETE /api/jobs/{id}/token` revokes it)",
    )
    log_before: int | None = Field(
        default=None,
        ge=1,
        le=2**53,
        description=f"Show the {LOG_PAGE_EVENTS} events before this seq in the event log (earlier "
        "pages); without it, the latest, live.",
    )
    parts_from: int = Field(
        default=0,
        ge=0,
        le=10**9,
        description=f"A parent's children from this place on ({CHILDREN_PAGE} a page, in the order they "
        "were made)",
    )


@routes.get("/jobs/{job_id:[0-9a-f]{4,32}}")
@operation(
    Operation(
        "A job's page; the start of its id (the dashboard shows 8 characters) finds it too",
        {
            200: Answer("The page", {HTML: PAGE}),
            302: Answer("To the page of the one job whose id starts so", headers=("Location",)),
        },
        query=JobPageQuery,
        problems=(404, 409, 422, 503),
        tags=("pages",),
    )
)
async def job_page(request: web.Request) -> web.Response:
    if len(request.match_info["job_id"]) < 32:
        raise web.HTTPFound(await full_job_page(request, request.match_info["job_id"]))
    query = parsed_query(request, JobPageQuery)
    before = query.log_before
    job_id = request.match_info["job_id"]
    store = job_store(request.app, job_id)
    # One read of the record: the job, the seq the page resumes after, and the lengths that say
    # how much of each output stream it shows (the live chunks then follow that text exactly).
    raw = await awaited(store.redis.hgetall(store.keys.job(job_id)))
    snapshot = build_snapshot(job_id, raw, store.links) if is_record(raw) else None
    shared = False
    try:
        job = visible(request, job_id, snapshot)
    except JobNotFound:
        # A read-only link someone shared: the job's stream token, unexpired and not revoked.
        if query.token is None or snapshot is None:
            raise
        await opens_job(request, query.token, job_id)
        job, shared = {**snapshot, "stream_token": query.token}, True
    seq = int(raw.get(b"seq") or 0)
    records, _ = await store.history_after(job["id"], 0)
    events = [e for e in _history(records) if e["seq"] <= seq]
    outputs = await page_outputs(store, job["id"], raw, job["links"]["self"], job["stream_token"])
    tried = attempts(events)
    # The event log, a page of it: a job's history can hold thousands of events, and written
    # whole it made a page of hundreds of KB. `log_before` pages back (links, no JS needed).
    logged = [e for e in events if e["type"] != "output"]
    window = [e for e in logged if before is None or e["seq"] < before][-LOG_PAGE_EVENTS:]
    if principal(request).sees_all:  # operators only: owners see the error, never the traceback
        kept = await store.tracebacks(job["id"], job["attempt"])
        for attempt in tried:
            attempt["traceback"] = kept.get(attempt["attempt"])
    children, parts_from = [], min(query.parts_from, (job["children"] or {"total": 0})["total"])
    if job["children"]:
        children = await store.snapshots(await store.children(job["id"], parts_from, CHILDREN_PAGE))
    context = {
        "job": job,
        "seq": seq,
        # A parent's children, a page of them: each with its live bar (static/job-children.js).
        "children": children,
        "parts_from": parts_from,
        "parts_page": CHILDREN_PAGE,
        # The event log shows the job's life; its output has panels of its own.
        "events": window,
        "log_earlier": window[0]["seq"] if window and logged[0]["seq"] < window[0]["seq"] else None,
        "log_latest": before is None,
        **page_context(outputs, job["attempt"]),
        "params": params_rows(request.app[KINDS].get(job["kind"] or ""), job["params"]),
        "attempts": tried,
        "origin": str(request.url.origin()),
        "terminal": job["state"] in ("succeeded", "failed", "cancelled"),
        # Operators see the job's workings open; the people waiting on it, its progress and result
        # first, the workings folded.
        "operator": principal(request).sees_all and not shared,
        # Opened through a shared link: to watch, not to act on.
        "shared": shared,
        "plain_state": plain_state(job),
    }
    return render_page("job.html", request, context)


class FindQuery(BaseModel):
    id: str = Field(
        pattern="^[0-9a-fA-F]{4,32}$", description="A job's id, or its first 4 or more characters"
    )


@routes.get("/find")
@operation(
    Operation(
        "The dashboard's search: to the page of the job whose id is, or starts with, `id`",
        {302: Answer("To the job's page", headers=("Location",))},
        query=FindQuery,
        problems=(404, 409, 422, 503),
        tags=("pages",),
    )
)
async def find_job(request: web.Request) -> web.Response:
    wanted = parsed_query(request, FindQuery).id.lower()
    if len(wanted) == 32:
        await load_snapshot(request, wanted)  # 404 when unknown (or not the asker's)
        raise web.HTTPFound(f"{request.app[SETTINGS].url_prefix}/jobs/{wanted}")
    raise web.HTTPFound(await full_job_page(request, wanted))


async def full_job_page(request: web.Request, short: str) -> str:
    shards = request.app[SHARDS]
    matches = await ids_across(shards.stores, short)
    who = principal(request)
    if not who.sees_all:
        matches = [job["id"] for job in await shards.snapshots(matches) if job["owner"] == who.owner]
    if not matches:
        raise Problem(404, f"no job id starts with {short}", slug="not-found")
    if len(matches) > 1:
        shown = ", ".join(matches)
        raise Problem(409, f"several job ids start with {short} ({shown}); give more of it", slug="ambiguous")
    return f"{request.app[SETTINGS].url_prefix}/jobs/{matches[0]}"


@routes.post(f"/jobs/{JOB_ID}/cancel")
@operation(
    Operation(
        "Cancel from the job's page",
        {303: Answer("Back to the job's page", headers=("Location",))},
        problems=(404, 409, 503),
        tags=("pages",),
    )
)
async def cancel_form(request: web.Request) -> web.Response:
    job_id = request.match_info["job_id"]
    await cancel_job(job_store(request.app, job_id), job_id, principal(request))
    prefix = request.app[SETTINGS].url_prefix
    raise web.HTTPSeeOther(f"{prefix}/jobs/{request.match_info['job_id']}")


@routes.post(f"/jobs/{JOB_ID}/retry-parts")
@operation(
    Operation(
        "Retry a parent's failed and cancelled parts from its page",
        {303: Answer("Back to the parent's page", headers=("Location",))},
        problems=(404, 409, 429, 503),
        tags=("pages",),
    )
)
async def retry_parts_form(request: web.Request) -> web.Response:
    await retry_failed_children(request)
    prefix = request.app[SETTINGS].url_prefix
    raise web.HTTPSeeOther(f"{prefix}/jobs/{request.match_info['job_id']}#children")


@routes.post(f"/jobs/{JOB_ID}/retry")
@operation(
    Operation(
        "Retry from the job's page",
        {303: Answer("To the new job's page", headers=("Location",))},
        problems=(404, 409, 422, 429, 503),
        tags=("pages",),
    )
)
async def retry_form(request: web.Request) -> web.Response:
    submitted = await retry(request.app, await load_snapshot(request))
    raise web.HTTPSeeOther(submitted.snapshot["links"]["page"])


def render_page(name: str, request: web.Request, context: dict[str, Any], status: int = 200) -> web.Response:
    """A page; every form's action carries the session's CSRF token (owner mode, server/security/auth.py)."""
    token = csrf_token(request)
    context = {**context, "csrf_query": f"?csrf={token}" if token else ""}
    return aiohttp_jinja2.render_template(name, request, context, status=status)


def setup_pages(app: web.Application) -> None:
    env = aiohttp_jinja2.setup(
        app, loader=jinja2.FileSystemLoader(ROOT / "templates"), autoescape=jinja2.select_autoescape()
    )
    env.policies["json.dumps_kwargs"] = {"sort_keys": True}
    env.globals["prefix"] = app[SETTINGS].url_prefix
    app[STATIC_VERSION] = static_version(STATIC)
    env.globals["static"] = f"{app[SETTINGS].url_prefix}/static/{app[STATIC_VERSION]}"
    env.filters["relative"] = relative


STATIC = (ROOT / "static").resolve()
COMPRESSIBLE = frozenset({".js", ".css", ".svg", ".html"})
# A release's files under /static/<version>/: cached for a year, as a new release has a new
# version. One version for the whole folder, not one per file, so that the pages' modules import
# each other by relative paths (`./ui.js`) and get the same release's files.
VERSION = re.compile(r"[0-9a-f]{12}")
IMMUTABLE = "public, max-age=31536000, immutable"
STATIC_VERSION = web.AppKey("static_version", str)


def static_version(folder: Path) -> str:
    """A digest of every file under `folder` (names and contents): the same in every web process
    of one release, whatever machine it runs on."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


@routes.get("/favicon.ico")
@operation(
    Operation(
        "The pages' icon (SVG), where browsers look for it first",
        {200: Answer("The icon", {"image/svg+xml": BINARY})},
        tags=("pages",),
    )
)
async def favicon(request: web.Request) -> web.FileResponse:
    # Browsers ask for /favicon.ico before reading the page's <link rel="icon">: without an
    # answer, every first visit logs a 404.
    return web.FileResponse(STATIC / "favicon.svg", headers={"Content-Type": "image/svg+xml"})


@routes.get("/static/{filename:[A-Za-z0-9_./-]+}")
@operation(
    Operation(
        "jobcast's static files: the JS client (`jobcast.js`), the pages' scripts and CSS",
        {200: Answer("The file", {"*/*": BINARY})},
        problems=(404,),
        tags=("pages",),
    )
)
async def static_file(request: web.Request) -> web.FileResponse:
    name = request.match_info["filename"]
    # The public client's address (/static/jobcast.js, which other sites import) is asked again
    # each time; a release's own address (/static/<version>/…), which the pages use, never is. A
    # page of another release (a rolling deploy) gets this one's files, not to be kept.
    cache = "no-cache"
    version, _, rest = name.partition("/")
    if rest and VERSION.fullmatch(version):
        name, cache = rest, IMMUTABLE if version == request.app[STATIC_VERSION] else "no-cache"
    path = (STATIC / name).resolve()
    # Only files under static/, and no hidden ones: `..` and symlinks out are refused.
    if not path.is_relative_to(STATIC) or any(
        part.startswith(".") for part in path.relative_to(STATIC).parts
    ):
        raise Problem(404, "no such file", slug="not-found")
    if not path.is_file():
        raise Problem(404, "no such file", slug="not-found")
    response = web.FileResponse(path, headers={"Cache-Control": cache})
    if path.suffix in COMPRESSIBLE:
        # Text that holds no secret: gzip (or deflate) as the client accepts, about a fifth the size.
        response.enable_compression()
        response.headers.add("Vary", "Accept-Encoding")  # a shared cache keeps both forms apart
    return response
