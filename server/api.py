"""The REST side of the API: submit a job, read its snapshot, list kinds."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from redis.exceptions import RedisError

from jobcast.protocol import dumps, loads
from jobs.kinds import KINDS
from server.keys import REDIS, RELAY, STORE
from server.problems import Problem, validation_problem

routes = web.RouteTableDef()

JOB_ID = r"{job_id:[0-9a-f]{32}}"


class SubmitRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str = Field(description="One of the kinds listed at /api/kinds.")
    params: dict[str, Any] = Field(default_factory=dict)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=dumps(body), status=status, content_type="application/json", headers=headers)


async def read_json(request: web.Request) -> Any:
    """The request's JSON body, or the right 4xx problem."""
    if request.content_type != "application/json":
        raise Problem(415, "send the body as application/json", slug="unsupported-media-type")
    body = await request.read()  # bounded by the app's client_max_size (413 past it)
    try:
        return loads(body)
    except ValueError as e:
        raise Problem(400, f"malformed JSON: {e}", slug="malformed-json") from None


def validate_params(kind_name: str, params: dict[str, Any]) -> dict[str, Any]:
    kind = KINDS.get(kind_name)
    if kind is None:
        known = ", ".join(sorted(KINDS))
        raise Problem(
            422,
            f"unknown kind {kind_name!r}; known kinds: {known}",
            slug="validation",
            errors=[{"field": "kind", "message": f"unknown kind; known kinds: {known}", "code": "unknown"}],
        )
    try:
        return kind.params.model_validate(params).model_dump(mode="json")
    except ValidationError as e:
        raise validation_problem(e, prefix="params") from None


def redis_unavailable(e: RedisError) -> Problem:
    return Problem(503, f"job store unavailable: {e}", slug="unavailable", headers={"Retry-After": "2"})


async def create_job(app: web.Application, kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """Validate and submit a job; its snapshot. Raises the right problem (422, 503)."""
    params = validate_params(kind, params)
    try:
        return await app[STORE].create(uuid.uuid4().hex, kind, params)
    except RedisError as e:
        raise redis_unavailable(e) from None


@routes.post("/api/jobs")
async def submit_job(request: web.Request) -> web.Response:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise Problem(422, "the body must be a JSON object", slug="validation")
    try:
        submission = SubmitRequest.model_validate(body)
    except ValidationError as e:
        raise validation_problem(e) from None
    snapshot = await create_job(request.app, submission.kind, submission.params)
    return json_response(snapshot, status=202, headers={"Location": snapshot["links"]["self"]})


async def load_snapshot(request: web.Request) -> dict[str, Any]:
    """The snapshot of the job named in the URL, or the right problem (404, 503)."""
    job_id = request.match_info["job_id"]
    try:
        snapshot = await request.app[STORE].snapshot(job_id)
    except RedisError as e:
        raise redis_unavailable(e) from None
    if snapshot is None:
        raise Problem(404, f"no job {job_id}", slug="not-found")
    return snapshot


@routes.get(f"/api/jobs/{JOB_ID}")
async def get_job(request: web.Request) -> web.Response:
    return json_response(await load_snapshot(request))


@routes.post(f"/api/jobs/{JOB_ID}/cancel")
async def cancel_job(request: web.Request) -> web.Response:
    raise Problem(501, "cancelling jobs is not available yet", slug="not-implemented")


@routes.get("/api/kinds")
async def list_kinds(request: web.Request) -> web.Response:
    kinds = [
        {"name": k.name, "title": k.title, "max_attempts": k.max_attempts, "params_schema": k.schema()}
        for k in KINDS.values()
    ]
    return json_response({"kinds": kinds})


@routes.get("/healthz")
async def health(request: web.Request) -> web.Response:
    try:
        await request.app[REDIS].ping()
        redis_ok = True
    except RedisError:
        redis_ok = False
    relay_ok = request.app[RELAY].connected.is_set()
    status = 200 if redis_ok and relay_ok else 503
    return json_response({"redis": redis_ok, "pubsub": relay_ok}, status=status)
