"""Reading a job, listing kinds, health and readiness, and the OpenAPI document."""

from __future__ import annotations

import asyncio

from aiohttp import web
from redis.exceptions import RedisError

from jobcast.errors import JobNotFound
from jobcast.server.http.bodies import JOB_ID, json_response
from jobcast.server.http.openapi import Operation, build_document, json, operation
from jobcast.server.http.schemas import Health, JobSnapshot, KindList, Liveness
from jobcast.server.keys import KINDS, RELAY, SHARDS
from jobcast.server.security.auth import principal
from jobcast.server.stores import job_store
from jobcast.snapshot import JobSnapshot as Snapshot

routes = web.RouteTableDef()

READY_TIMEOUT_S = 1.0


async def load_snapshot(request: web.Request, job_id: str | None = None) -> Snapshot:
    """The snapshot of the job named in the URL; raises JobNotFound (also for a job the asker may
    not see)."""
    job_id = job_id or request.match_info["job_id"]
    return visible(request, job_id, await job_store(request.app, job_id).snapshot(job_id))


def visible(request: web.Request, job_id: str, snapshot: Snapshot | None) -> Snapshot:
    """The snapshot, if the asker may see the job; else JobNotFound (the job does not exist
    for them)."""
    if snapshot is None or not principal(request).may_see(snapshot["owner"], snapshot["submitted_by"]):
        raise JobNotFound(job_id)
    return snapshot


@routes.get(f"/api/jobs/{JOB_ID}")
@operation(
    Operation("A job's snapshot", {200: json("The job as it is now", JobSnapshot)}, problems=(404, 503))
)
async def get_job(request: web.Request) -> web.Response:
    return json_response(await load_snapshot(request))


@routes.get("/api/kinds")
@operation(
    Operation("The job kinds, with the JSON Schema of each kind's params", {200: json("The kinds", KindList)})
)
async def list_kinds(request: web.Request) -> web.Response:
    return json_response({"kinds": [k.describe() for k in request.app[KINDS].values()]})


@routes.get("/api/openapi.json")
@operation(
    Operation(
        "This document: OpenAPI 3.1, generated from the app's routes and models",
        {200: json("The OpenAPI document", {"type": "object"})},
    )
)
async def openapi(request: web.Request) -> web.Response:
    return json_response(build_document(request.app))


@routes.get("/healthz")
@operation(
    Operation(
        "Liveness: the process answers (restart it when this fails)",
        {200: json("Alive", Liveness)},
        tags=("operations",),
    )
)
async def health(request: web.Request) -> web.Response:
    return json_response({"alive": True})


@routes.get("/readyz")
@operation(
    Operation(
        "Readiness: this web process reaches Redis and holds its pub/sub connection",
        {200: json("Ready", Health), 503: json("Redis or pub/sub is down", Health)},
        tags=("operations",),
    )
)
async def ready(request: web.Request) -> web.Response:
    try:
        # A probe must answer quickly, even while the client would still be retrying.
        async with asyncio.timeout(READY_TIMEOUT_S):
            for store in request.app[SHARDS].stores:  # each shard's primary
                await store.redis.ping()
        redis_ok = True
    except (RedisError, TimeoutError):
        redis_ok = False
    relay_ok = request.app[RELAY].connected.is_set()
    status = 200 if redis_ok and relay_ok else 503
    return json_response({"redis": redis_ok, "pubsub": relay_ok}, status=status)
