"""`/api/schedules`: recurring jobs made, read, changed, paused, run now and deleted over the API.

Admins see and manage every schedule. In owner mode a service key manages its own: their jobs
are the service's. Schedules a kind declares in code are listed too, and may be paused, resumed and
run now; their other fields change with the code only. The ticks themselves are fired by the
workers (jobs/upkeep/scheduler.py).
"""

from __future__ import annotations

import secrets
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from jobcast.errors import SubmitRefused
from jobcast.protocol import Priority, from_epoch_ms, isoformat, utcnow
from jobcast.schedule import SCHEDULE_ID, Missed, ScheduleError, check_cron, check_id, next_tick, timezone
from jobcast.server.api.jobs import load_snapshot
from jobcast.server.api.submit import parse_request, refuse_unknown_params
from jobcast.server.http.bodies import json_response, read_json
from jobcast.server.http.openapi import Answer, Operation, json, operation
from jobcast.server.http.problems import Problem, validation_problem
from jobcast.server.http.schemas import JobSnapshot
from jobcast.server.keys import KINDS, SETTINGS, SHARDS
from jobcast.server.security.auth import Principal, Role, principal
from jobcast.store.schedules import ScheduleBook, ScheduleState, StoredSchedule

routes = web.RouteTableDef()

ID = f"{{schedule_id:{SCHEDULE_ID}}}"
NEXT_RUNS = 3


class ScheduleFields(BaseModel):
    """What a schedule's maker chooses (all but `kind` and `cron` have defaults)."""

    model_config = ConfigDict(extra="forbid")

    cron: str = Field(
        description="5 fields (minute hour day month weekday), or 6 with seconds first; "
        "`L`, `LW`, `5L` and `MON#2` are understood.",
        max_length=200,
    )
    params: dict[str, Any] = Field(default_factory=dict, description="The kind's params for each job.")
    timezone: str = Field(default="UTC", description="The IANA timezone the expression is read in.")
    priority: Priority = Priority.DEFAULT
    missed: Missed = Field(
        default=Missed.RUN_ONCE,
        description="Ticks that passed while nothing could fire them: `run_once` starts one job for "
        "them all when jobcast is back; `skip` starts none.",
    )
    enabled: bool = Field(default=True, description="false: paused, no tick fires.")


class NewSchedule(ScheduleFields):
    id: str | None = Field(
        default=None, pattern=f"^{SCHEDULE_ID}$", description="Chosen by the caller, or made up when absent."
    )
    kind: str = Field(description="One of the kinds listed at /api/kinds.")


class ScheduleChange(BaseModel):
    """The fields to change; absent ones stay."""

    model_config = ConfigDict(extra="forbid")

    cron: str | None = Field(default=None, max_length=200)
    params: dict[str, Any] | None = None
    timezone: str | None = None
    priority: Priority | None = None
    missed: Missed | None = None
    enabled: bool | None = None


class LastRun(BaseModel):
    job: str
    at: str = Field(description="Its tick, or when it was run now.")
    state: str | None = Field(description="The job's state now (null: it has expired).")
    link: str


class ScheduleView(BaseModel):
    id: str
    kind: str
    cron: str
    params: dict[str, Any]
    timezone: str
    priority: Priority
    missed: Missed
    enabled: bool
    owner: str | None
    source: str = Field(description="`code`: declared on its kind; `api`: made over this API.")
    created_at: str
    next_runs: list[str] = Field(description="The next ticks, in UTC (none while paused).")
    last_run: LastRun | None
    fired: int = Field(description="Ticks that started a job.")
    missed_ticks: int = Field(description="Ticks that started none (skipped, or refused by a limit).")
    late: int = Field(description="Ticks that started their job later than the grace after their time.")
    last_error: str | None
    links: dict[str, str]


class ScheduleList(BaseModel):
    schedules: list[ScheduleView]


def book(request: web.Request) -> ScheduleBook:
    return ScheduleBook(request.app[SHARDS])


def manager(request: web.Request) -> Principal:
    """Admins, and in owner mode service keys (for their own schedules)."""
    who = principal(request)
    if who.sees_all or who.role is Role.SERVICE:
        return who
    raise Problem(403, "only admins and service keys manage schedules", slug="forbidden")


def visible(who: Principal, schedule: StoredSchedule) -> bool:
    return who.sees_all or schedule.owner == who.owner


async def load(request: web.Request) -> StoredSchedule:
    who = manager(request)
    schedule = await book(request).get(request.match_info["schedule_id"])
    if schedule is None or not visible(who, schedule):
        raise Problem(404, "no such schedule", slug="not-found")
    return schedule


def checked(request: web.Request, schedule: StoredSchedule) -> StoredSchedule:
    """The schedule with its expression, timezone, kind and params checked (a 422 naming the
    field otherwise), and its params as the kind reads them."""
    try:
        cron = check_cron(schedule.cron)
        timezone(schedule.timezone)
        check_id(schedule.id)
    except ScheduleError as e:
        raise Problem(
            422, f"invalid {e.field}: {e}", slug="validation",
            errors=[{"field": e.field, "message": str(e), "code": "invalid"}],
        ) from None  # fmt: skip
    kinds = request.app[KINDS]
    kind = kinds.get(schedule.kind)
    if kind is None:
        known = ", ".join(sorted(kinds))
        message = f"unknown kind; known kinds: {known}"
        raise Problem(
            422, f"unknown kind {schedule.kind!r}; known kinds: {known}", slug="validation",
            errors=[{"field": "kind", "message": message, "code": "unknown"}],
        )  # fmt: skip
    if kind.takes_upload:
        message = "a kind that takes an uploaded file cannot be scheduled"
        raise Problem(
            422, message, slug="validation", errors=[{"field": "kind", "message": message, "code": "upload"}]
        )
    refuse_unknown_params(kind, schedule.params)
    try:
        params = kind.params.model_validate(schedule.params).model_dump(mode="json")
    except ValidationError as e:
        raise validation_problem(e, prefix="params") from None
    return schedule.model_copy(update={"cron": cron, "params": params})


async def view(request: web.Request, schedules: list[StoredSchedule]) -> list[dict[str, Any]]:
    shelf = book(request)
    states = await shelf.states([s.id for s in schedules])
    last_jobs = [states[s.id].last_job for s in schedules]
    known = [job for job in last_jobs if job]
    snapshots = {snap["id"]: snap for snap in await request.app[SHARDS].snapshots(known)} if known else {}
    prefix = request.app[SETTINGS].url_prefix
    return [
        describe(schedule, states[schedule.id], snapshots.get(states[schedule.id].last_job or ""), prefix)
        for schedule in schedules
    ]


def describe(schedule: StoredSchedule, state: ScheduleState, last: Any, prefix: str) -> dict[str, Any]:
    runs: list[str] = []
    if schedule.enabled:
        after = max(utcnow(), from_epoch_ms(state.last_tick_ms)) if state.last_tick_ms else utcnow()
        while len(runs) < NEXT_RUNS:
            tick = next_tick(schedule.cron, schedule.timezone, after)
            if tick is None:
                break
            runs.append(isoformat(tick))
            after = tick
    last_run = None
    if state.last_job:
        last_run = {
            "job": state.last_job,
            "at": isoformat(from_epoch_ms(state.last_fired_ms or 0)),
            "state": last["state"] if last else None,
            "link": f"{prefix}/api/jobs/{state.last_job}",
        }
    links = {"self": f"{prefix}/api/schedules/{schedule.id}", "page": f"{prefix}/schedules#{schedule.id}"}
    return {
        **schedule.model_dump(mode="json"),
        "next_runs": runs,
        "last_run": last_run,
        "fired": state.fired,
        "missed_ticks": state.missed,
        "late": state.late,
        "last_error": state.last_error,
        "links": links,
    }


async def one(request: web.Request, schedule: StoredSchedule, status: int = 200) -> web.Response:
    (body,) = await view(request, [schedule])
    return json_response(body, status=status, headers={"Location": body["links"]["self"]})


async def run_now(request: web.Request) -> str:
    """Start the schedule's job now, outside its ticks (the API's and the page's Run now)."""
    schedule = await load(request)
    kind = request.app[KINDS].get(schedule.kind)
    if kind is None:
        raise Problem(409, f"this deployment has no kind {schedule.kind!r}", slug="conflict")
    try:
        return await book(request).fire(schedule, kind, None)
    except SubmitRefused as refused:
        raise Problem(429, f"the job was refused: {refused}", slug="rate-limited") from None


@routes.get("/api/schedules")
@operation(
    Operation(
        "List schedules, with their next runs and their last run's outcome",
        {200: json("The schedules the caller manages", ScheduleList)},
        problems=(401, 403, 503),
        tags=("schedules",),
    )
)
async def list_schedules(request: web.Request) -> web.Response:
    who = manager(request)
    schedules = [s for s in await book(request).all() if visible(who, s)]
    return json_response({"schedules": await view(request, schedules)})


@routes.post("/api/schedules")
@operation(
    Operation(
        "Make a schedule: a job of its kind at every tick of its cron expression",
        {201: json("The new schedule", ScheduleView, headers=("Location",))},
        body={"application/json": NewSchedule},
        problems=(400, 401, 403, 409, 415, 422, 503),
        tags=("schedules",),
    )
)
async def create_schedule(request: web.Request) -> web.Response:
    who = manager(request)
    new = parse_request(await read_json(request), NewSchedule)
    shelf = book(request)
    if await shelf.count() >= request.app[SETTINGS].max_schedules:
        raise Problem(409, "this deployment keeps no more schedules (JOBCAST_MAX_SCHEDULES)", slug="conflict")
    schedule = StoredSchedule(
        id=new.id or f"s-{secrets.token_hex(6)}",
        owner=None if who.sees_all else who.owner,
        **new.model_dump(exclude={"id"}),
    )
    schedule = checked(request, schedule)
    if not await shelf.add(schedule):
        raise Problem(409, f"a schedule named {schedule.id!r} exists", slug="conflict")
    return await one(request, schedule, 201)


@routes.get(f"/api/schedules/{ID}")
@operation(
    Operation(
        "One schedule",
        {200: json("The schedule", ScheduleView)},
        problems=(401, 403, 404, 503),
        tags=("schedules",),
    )
)
async def get_schedule(request: web.Request) -> web.Response:
    return await one(request, await load(request))


@routes.patch(f"/api/schedules/{ID}")
@operation(
    Operation(
        "Change a schedule, or pause (`enabled: false`) and resume it",
        {200: json("The schedule, changed", ScheduleView)},
        body={"application/json": ScheduleChange},
        problems=(400, 401, 403, 404, 409, 415, 422, 503),
        tags=("schedules",),
    )
)
async def change_schedule(request: web.Request) -> web.Response:
    schedule = await load(request)
    change = parse_request(await read_json(request), ScheduleChange).model_dump(exclude_none=True)
    if schedule.source == "code" and set(change) - {"enabled"}:
        raise Problem(
            409, "this schedule is declared in code: only `enabled` changes here", slug="conflict"
        )  # fmt: skip
    changed = checked(request, schedule.model_copy(update=change))
    await book(request).save(changed, schedule)
    return await one(request, changed)


@routes.delete(f"/api/schedules/{ID}")
@operation(
    Operation(
        "Delete a schedule (its jobs stay)",
        {204: Answer("Deleted")},
        problems=(401, 403, 404, 409, 503),
        tags=("schedules",),
    )
)
async def delete_schedule(request: web.Request) -> web.Response:
    schedule = await load(request)
    if schedule.source == "code":
        raise Problem(
            409, "this schedule is declared in code: pause it, or remove it from the code", slug="conflict"
        )
    await book(request).delete(schedule.id)
    return web.Response(status=204)


@routes.post(f"/api/schedules/{ID}/run")
@operation(
    Operation(
        "Run a schedule's job now, outside its ticks",
        {202: json("The job", JobSnapshot, headers=("Location",))},
        problems=(401, 403, 404, 429, 503),
        tags=("schedules",),
    )
)
async def run_schedule_now(request: web.Request) -> web.Response:
    snapshot = await load_snapshot(request, await run_now(request))
    return json_response(snapshot, status=202, headers={"Location": snapshot["links"]["self"]})
