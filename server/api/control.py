"""`POST /api/jobs/{id}/cancel` (the WebSocket `cancel` message shares `cancel_job`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aiohttp import web
from redis.exceptions import RedisError

from jobcast.errors import AlreadyEnded, JobNotFound, Unavailable
from jobcast.server.http.bodies import JOB_ID, json_response
from jobcast.server.http.openapi import Operation, json, operation
from jobcast.server.http.problems import STORE_UNAVAILABLE
from jobcast.server.http.schemas import JobSnapshot
from jobcast.server.security.auth import Principal, check_visible, principal
from jobcast.server.stores import job_store
from jobcast.snapshot import JobSnapshot as Snapshot
from jobcast.store.jobs import JobStore

routes = web.RouteTableDef()
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Cancelled:
    # "cancelled": the job has ended (it was not running); "requested": its worker is stopping it
    # and watchers will see `cancelled` once the job's code has stopped.
    status: str
    snapshot: Snapshot


async def cancel_job(store: JobStore, job_id: str, who: Principal) -> Cancelled:
    """Cancel a job (if `who` may see it); raises JobNotFound, AlreadyEnded or Unavailable."""
    try:
        await check_visible(store, who, job_id)
        outcome = await store.cancel(job_id)
        snapshot = await store.snapshot(job_id)
    except RedisError as e:
        log.warning("cancel of %s: job store unavailable: %s", job_id, e)
        raise Unavailable(STORE_UNAVAILABLE) from None
    if not outcome.found or snapshot is None:
        raise JobNotFound(job_id)
    if outcome.ended_as is not None:
        raise AlreadyEnded(f"the job has already ended: {outcome.ended_as}")
    return Cancelled("cancelled" if outcome.cancelled else "requested", snapshot)


@routes.post(f"/api/jobs/{JOB_ID}/cancel")
@operation(
    Operation(
        "Cancel a job",
        {
            200: json("Cancelled: it had not started", JobSnapshot),
            202: json("Requested: its worker is stopping it (`cancel_requested`)", JobSnapshot),
        },
        problems=(404, 409, 503),
        id="cancel_job",
    )
)
async def cancel(request: web.Request) -> web.Response:
    job_id = request.match_info["job_id"]
    done = await cancel_job(job_store(request.app, job_id), job_id, principal(request))
    return json_response(done.snapshot, status=200 if done.status == "cancelled" else 202)
