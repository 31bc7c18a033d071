"""Batches (`/api/batches`): items that end together, with an optional completion job that runs
once they all have, built on trees of jobs (the batch is its tree's root: its id, counts, rolled-up
bar and stream are the root's); and a parent's children, listed a page at a time."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from jobcast.protocol import Priority
from jobcast.server.api.jobs import load_snapshot
from jobcast.server.api.submit import SUBMITTED, idempotency_key, make_tree, parse_request, retry
from jobcast.server.api.trees import TreeNode
from jobcast.server.http.bodies import JOB_ID, json_response, read_json
from jobcast.server.http.openapi import JSON, Operation, json, operation
from jobcast.server.http.problems import Problem, parsed_query
from jobcast.server.http.schemas import BatchSnapshot, ChildPage, RetriedChildren
from jobcast.server.keys import SETTINGS
from jobcast.server.security.auth import owner_for, require_submitter
from jobcast.server.stores import job_store
from jobcast.store.jobs import Submission
from jobcast.tree import BATCH_KIND

routes = web.RouteTableDef()


class ChildrenQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    offset: int = Field(default=0, ge=0, le=10**9, description="The first child's place (0: the first made)")
    limit: int = Field(default=100, ge=1, le=500)


@routes.get(f"/api/jobs/{JOB_ID}/children")
@operation(
    Operation(
        "A parent's children, in the order they were made, a page at a time",
        {200: json("The children's snapshots", ChildPage)},
        query=ChildrenQuery,
        problems=(404, 422, 503),
    )
)
async def list_children(request: web.Request) -> web.Response:
    parent = await load_snapshot(request)
    query = parsed_query(request, ChildrenQuery)
    offset, limit = query.offset, query.limit
    store = job_store(request.app, parent["id"])  # a tree is on one shard
    ids = await store.children(parent["id"], offset, limit)
    total = parent["children"]["total"] if parent["children"] else 0
    children = await store.snapshots(ids)
    page: dict[str, Any] = {"children": children, "total": total, "offset": offset}
    if offset + len(ids) < total:
        page["next"] = f"/api/jobs/{parent['id']}/children?offset={offset + len(ids)}&limit={limit}"
    return json_response(page)


class BatchEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str
    params: dict[str, Any] = Field(default_factory=dict)
    priority: Priority | None = None


class BatchSubmission(BaseModel):
    """Jobs that end together: a batch has its own id, counts and stream; its completion job, if
    given, runs once every item has ended, and reads their outcomes (`ctx.children()`)."""

    model_config = ConfigDict(extra="forbid")

    items: list[BatchEntry] = Field(min_length=1)
    completion: BatchEntry | None = Field(
        default=None, description="Runs once every item has ended, whatever their outcomes."
    )
    priority: Priority = Priority.DEFAULT
    owner: str | None = Field(default=None, description="Owner mode: as on `POST /api/jobs`.")


def batch_view(snapshot: dict[str, Any]) -> dict[str, Any]:
    """A batch as `GET /api/batches/{id}` answers it: its root job seen as the batch."""
    counts = snapshot["children"] or {
        "total": 0, "waiting": 0, "running": 0, "succeeded": 0, "failed": 0, "cancelled": 0,
    }  # fmt: skip
    job_id = snapshot["id"]
    return {
        "id": job_id,
        "state": snapshot["state"],
        "counts": counts,
        "progress": snapshot["progress"],
        "completion": None if snapshot["kind"] == BATCH_KIND else snapshot["kind"],
        "result": snapshot["result"],
        "error": snapshot["error"],
        "created_at": snapshot["created_at"],
        "finished_at": snapshot["finished_at"],
        "last_event_id": snapshot["last_event_id"],
        "stream_token": snapshot["stream_token"],
        "links": {
            "self": f"/api/batches/{job_id}",
            "events": snapshot["links"]["events"],
            "job": snapshot["links"]["self"],
            "items": f"/api/jobs/{job_id}/children",
            "cancel": snapshot["links"]["cancel"],
        },
    }


@routes.get(f"/api/batches/{JOB_ID}")
@operation(
    Operation(
        "A batch: its counts by state and its aggregate progress",
        {200: json("The batch", BatchSnapshot)},
        problems=(404, 503),
    )
)
async def get_batch(request: web.Request) -> web.Response:
    snapshot = await load_snapshot(request)
    if snapshot["children"] is None and snapshot["kind"] != BATCH_KIND:
        raise Problem(404, f"no batch {snapshot['id']}", slug="not-found")
    return json_response(batch_view(dict(snapshot)))


async def read_batch(request: web.Request) -> BatchSubmission:
    body = await read_json(request)
    settings = request.app[SETTINGS]
    items = body.get("items") if isinstance(body, dict) else None
    if isinstance(items, list) and len(items) + 1 > settings.tree_max_jobs:
        raise Problem(
            413, f"at most {settings.tree_max_jobs - 1} items in one batch", slug="payload-too-large"
        )
    return parse_request(body, BatchSubmission)


@routes.post("/api/batches")
@operation(
    Operation(
        "Submit a batch: its items, and a completion job that runs once they have all ended",
        SUBMITTED,
        body={JSON: BatchSubmission},
        headers={"Idempotency-Key": "A repeat with the same key and body answers with the first batch"},
        problems=(400, 401, 413, 415, 422, 429, 503),
    )
)
async def submit_batch_tree(request: web.Request) -> web.Response:
    require_submitter(request)
    key = idempotency_key(request)
    body = await read_batch(request)
    items = [TreeNode(kind=i.kind, params=i.params, priority=i.priority) for i in body.items]
    own = None
    if body.completion is None:
        root = TreeNode(kind=BATCH_KIND, children=items)
        # jobcast's own kind, which every worker serves: it sums the items' outcomes up.
        own = Submission(kind=BATCH_KIND, params={}, priority=body.priority, max_attempts=1)
    else:
        done = body.completion
        root = TreeNode(kind=done.kind, params=done.params, priority=done.priority, children=items)
    submitted = await make_tree(request, root, body.priority, owner_for(request, body.owner), key, own)
    answer = submitted.response()
    answer.headers["Location"] = f"/api/batches/{submitted.snapshot['id']}"
    return answer


async def retry_failed_children(request: web.Request) -> list[str]:
    """Retry every failed or cancelled child of the parent in the URL, each as `POST
    /api/jobs/{id}/retry` would (a new job linked to it by `retry_of`); the new jobs' ids. A child
    retried before answers with its retry, not another."""
    parent = await load_snapshot(request)
    store = job_store(request.app, parent["id"])  # a tree is on one shard
    retried = []
    for child in await store.snapshots(await store.children(parent["id"])):
        if child["state"] in ("failed", "cancelled"):
            retried.append((await retry(request.app, child)).snapshot["id"])
    return retried


@routes.post(f"/api/jobs/{JOB_ID}/children/retry")
@operation(
    Operation(
        "Retry a parent's failed and cancelled children (each a new job, as a retry of one job is)",
        {200: json("The new jobs' ids", RetriedChildren)},
        problems=(404, 409, 429, 503),
    )
)
async def retry_children(request: web.Request) -> web.Response:
    require_submitter(request)
    retried = await retry_failed_children(request)
    return json_response({"retried": retried, "count": len(retried)})
