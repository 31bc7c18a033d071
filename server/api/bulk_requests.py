"""`POST /api/bulk`: an operator retries, cancels or deletes many jobs at once, as a job of the
built-in `bulk` kind (jobcast/bulk.py) that a worker runs and watchers follow like any job;
`POST /api/bulk/count`: how many jobs the same request would go through, for the confirmation
asked first. Admins only in owner mode."""

from __future__ import annotations

from typing import Annotated

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, model_validator

from jobcast import bulk
from jobcast.protocol import Priority
from jobcast.queries.bulk_selection import count_selected
from jobcast.server.api.submit import parse_request, submit
from jobcast.server.http.bodies import json_response, read_json
from jobcast.server.http.openapi import JSON, Operation, json, operation
from jobcast.server.http.problems import Problem
from jobcast.server.http.schemas import BulkCount, JobSnapshot
from jobcast.server.keys import SETTINGS, SHARDS
from jobcast.server.security.auth import require_admin
from jobcast.store.jobs import Submission

routes = web.RouteTableDef()


class BulkRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: bulk.Action = Field(
        description="retry: failed and cancelled jobs, each as a new job; cancel: waiting and "
        "running jobs; delete: finished jobs, with their files"
    )
    ids: list[Annotated[str, Field(pattern=bulk.JOB_ID)]] | None = Field(
        default=None,
        min_length=1,
        description="These jobs (at most JOBCAST_MAX_BULK_JOBS); or give `filter`",
    )
    filter: bulk.BulkFilter | None = Field(
        default=None,
        description="Every job this matches, newest first, up to JOBCAST_MAX_BULK_JOBS; or give `ids`",
    )

    @model_validator(mode="after")
    def one_selection(self) -> BulkRequest:
        if (self.ids is None) == (self.filter is None):
            raise ValueError("give either ids or filter")
        return self


async def bulk_params(request: web.Request) -> bulk.BulkParams:
    """The request's action and selection, checked: 413 past JOBCAST_MAX_BULK_JOBS ids, 422 for
    a filter whose state the action never applies to."""
    require_admin(request)
    wanted = parse_request(await read_json(request), BulkRequest)
    limit = request.app[SETTINGS].max_bulk_jobs
    if wanted.ids is not None and len(wanted.ids) > limit:
        raise Problem(413, f"at most {limit} jobs in one bulk action", slug="payload-too-large")
    params = bulk.BulkParams(action=wanted.action, ids=wanted.ids, filter=wanted.filter, limit=limit)
    if bulk.matches_none(params) and params.filter is not None:
        message = f"{wanted.action} applies to none of the {params.filter.state} jobs"
        raise Problem(
            422, message, slug="validation",
            errors=[{"field": "filter.state", "message": message, "code": "never_applies"}],
        )  # fmt: skip
    return params


@routes.post("/api/bulk")
@operation(
    Operation(
        "Retry, cancel or delete many jobs, as a bulk job: follow it like any job",
        {202: json("The bulk job; its result says what it did", JobSnapshot, headers=("Location",))},
        body={JSON: BulkRequest},
        problems=(400, 403, 413, 415, 422, 429, 503),
        tags=("operations",),
    )
)
async def start_bulk(request: web.Request) -> web.Response:
    params = await bulk_params(request)
    submission = Submission(
        bulk.NAME, params.model_dump(mode="json", exclude_none=True), priority=Priority.HIGH, max_attempts=3
    )
    return (await submit(request.app, submission)).response()


@routes.post("/api/bulk/count")
@operation(
    Operation(
        "How many jobs a bulk action would go through, without acting: what to confirm first",
        {200: json("The count", BulkCount)},
        body={JSON: BulkRequest},
        problems=(400, 403, 413, 415, 422, 503),
        tags=("operations",),
    )
)
async def count_bulk(request: web.Request) -> web.Response:
    params = await bulk_params(request)
    count = await count_selected(request.app[SHARDS], params)
    return json_response({"matches": count, "limit": params.limit})
