"""Submitting jobs: `POST /api/jobs` (JSON, or multipart/form-data for kinds that take a file)
and `POST /api/jobs/{id}/retry`. Idempotency keys, the waiting-jobs limit and uploads live here."""

from __future__ import annotations

import asyncio
import logging
import math
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast, overload

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from jobcast import tracing
from jobcast.bulk import without_bulk
from jobcast.errors import (
    ActiveDuplicate,
    AlreadyRetried,
    IdempotentReplay,
    NotRetryable,
    RateLimited,
    SubmitRefused,
    TooManyWaiting,
)
from jobcast.files.local import safe_name
from jobcast.kind import Kind
from jobcast.protocol import Priority, dumps, loads, utcnow
from jobcast.redis.client import awaited
from jobcast.server.api.jobs import load_snapshot
from jobcast.server.api.trees import TreeNode, check_shape, plan_tree, unchain
from jobcast.server.http.bodies import JOB_ID, json_response, read_json
from jobcast.server.http.openapi import (
    BINARY,
    JSON,
    MULTIPART,
    REF,
    Operation,
    Schema,
    json,
    operation,
    params_schema,
)
from jobcast.server.http.problems import REPORTED_ERRORS, Problem, field_errors, validation_problem
from jobcast.server.http.request_ids import current_request_id
from jobcast.server.http.schemas import BatchAnswer, JobSnapshot
from jobcast.server.keys import FILES, KINDS, SETTINGS, SHARDS, STORAGE, SUBMITTED_BY_KIND, WORKERS
from jobcast.server.security.auth import NO_OWNER, OWNER, Ownership, owner_for, require_submitter
from jobcast.server.stores import job_store
from jobcast.snapshot import JobSnapshot as Snapshot
from jobcast.store.jobs import CreateCall, JobStore, Submission
from jobcast.tasks import cancel_and_wait

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
M = TypeVar("M", bound=BaseModel)

UPLOAD_CHUNK = 256 * 1024
MAX_FIELD_BYTES = 64 * 1024


class SubmitRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str = Field(description="One of the kinds listed at /api/kinds.")
    params: dict[str, Any] = Field(default_factory=dict)
    priority: Priority = Field(
        default=Priority.DEFAULT, description="Waiting jobs of higher priority start first."
    )
    delay_s: float = Field(default=0, ge=0, description="Keep the job queued this long before it may start.")
    unique_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="Unique while active: while a job of this kind with this key (and owner) waits or "
        "runs, a submission with it gets that job (200, `Unique-Active: true`) instead of a new one. "
        "Kinds may derive it from params (`unique_by`).",
    )
    owner: str | None = Field(
        default=None,
        pattern=OWNER,
        description="Owner mode: the end user a service API key submits for, in the service's own "
        "namespace (`user-42` becomes `<service>/user-42`); an admin key names any owner. A browser's "
        "jobs are its own.",
    )
    children: list[TreeNode] = Field(
        default_factory=list,
        description="Jobs that run first: this one waits for them (`waiting_children`) and runs once "
        "they have all ended, reading their outcomes; its progress is rolled up from theirs. The whole "
        "tree is made at once, or refused.",
    )
    then: TreeNode | None = Field(
        default=None,
        description="A job that runs once this one has ended (a chain; it can have a `then` of its own). "
        "The answer is the chain's last job, whose bar covers every link.",
    )


@dataclass(slots=True)
class Submitted:
    snapshot: Snapshot
    # True when an Idempotency-Key named an existing job: nothing new was created.
    replayed: bool = False
    # True when a job of the same unique key was waiting or running: it answers instead.
    active: bool = False

    def response(self) -> web.Response:
        headers = {"Location": self.snapshot["links"]["self"]}
        if self.replayed:
            headers["Idempotent-Replayed"] = "true"
        if self.active:
            headers["Unique-Active"] = "true"
        existing = self.replayed or self.active
        return json_response(self.snapshot, status=200 if existing else 202, headers=headers)


def refuse_unknown_params(kind: Kind[Any], params: dict[str, Any]) -> None:
    """A 422 for params the kind does not take, found without validating anything: a body of
    60,000 unknown keys would otherwise cost pydantic an error object each."""
    fields = kind.params.model_fields
    if kind.params.model_config.get("extra") != "forbid" or len(params) <= len(fields):
        return
    known = set(fields)
    for field in fields.values():
        if field.validation_alias is not None and not isinstance(field.validation_alias, str):
            return  # alias choices or paths: pydantic alone knows what it takes
        known.update(a for a in (field.alias, field.validation_alias) if isinstance(a, str))
    unknown = [name for name in params if name not in known]
    errors = [
        {"field": f"params.{name}", "message": "Extra inputs are not permitted", "code": "extra_forbidden"}
        for name in unknown[:REPORTED_ERRORS]
    ]
    raise field_errors(errors, len(unknown))


def validate(app: web.Application, request: SubmitRequest) -> Submission:
    """The submission with its params validated by the kind's schema, or a 422 naming the field."""
    kinds = app[KINDS]
    kind = kinds.get(request.kind)
    if kind is None:
        known = ", ".join(sorted(kinds))
        raise Problem(
            422,
            f"unknown kind {request.kind!r}; known kinds: {known}",
            slug="validation",
            errors=[{"field": "kind", "message": f"unknown kind; known kinds: {known}", "code": "unknown"}],
        )
    max_delay = app[SETTINGS].max_delay_s
    if request.delay_s > max_delay:
        message = f"at most {max_delay} seconds"
        raise Problem(
            422, f"invalid delay_s: {message}", slug="validation",
            errors=[{"field": "delay_s", "message": message, "code": "less_than_equal"}],
        )  # fmt: skip
    refuse_unknown_params(kind, request.params)
    try:
        model = kind.params.model_validate(request.params)
    except ValidationError as e:
        raise validation_problem(e, prefix="params") from None
    params = model.model_dump(mode="json")
    try:
        dumps(params)
    except TypeError:  # a number no JSON reader on the way (orjson, Lua, browsers) keeps exactly
        message = "numbers must fit in 64 bits"
        errors = [{"field": "params", "message": message, "code": "out_of_range"}]
        raise Problem(422, f"invalid params: {message}", slug="validation", errors=errors) from None
    return Submission(
        kind=kind.name,
        params=params,
        priority=request.priority,
        delay_s=request.delay_s,
        max_attempts=kind.max_attempts,
        timeout_s=kind.timeout_s,
        cost_s=cost_of(app, kind, model),
        unique_key=request.unique_key or kind.unique_key(params),
    )


def cost_of(app: web.Application, kind: Kind, params: Any) -> float:
    """The kind's CPU estimate for these params; 422 if it alone is over an owner's hourly budget
    (it could never run)."""
    cost = kind.estimated_cost(params)
    settings = app[SETTINGS]
    budget = settings.cpu_budget_s_per_hour
    if settings.secret is not None and 0 < budget < cost:
        message = f"estimated at {cost:.0f} CPU-seconds, over the {budget:.0f} an owner may use per hour"
        raise Problem(
            422, f"invalid params: {message}", slug="validation",
            errors=[{"field": "params", "message": message, "code": "over_budget"}],
        )  # fmt: skip
    return cost


def idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not 1 <= len(key) <= 255 or not key.isascii() or not key.isprintable():
        raise Problem(
            400, "Idempotency-Key must be 1 to 255 printable ASCII characters", slug="bad-idempotency-key"
        )
    return key


async def submit(
    app: web.Application,
    submission: Submission,
    *,
    job_id: str | None = None,
    key: str | None = None,
    retry_of: str | None = None,
    owner: Ownership = NO_OWNER,
    tree: list[CreateCall] | None = None,
) -> Submitted:
    """Create the job (for `owner`: who owns it, the service that submitted it for them and the
    anonymous client address it counts against, in owner mode), or answer with the right problem
    (409, 422, 429, 503). A `job_id` given names its shard (`intake_store` chose it); a retry is
    made on the retried job's shard, whose record its script updates."""
    store, job_id = _placed(app, submission, job_id, retry_of, owner, key)
    try:
        if (workers := await app[WORKERS].unserved(submission.kind)) is not None:
            raise unserved_kind(submission.kind, workers)
        kind = app[KINDS].get(submission.kind)  # None: jobcast's own bulk kind
        if kind is not None and kind.takes_upload:
            # Stored, and charged to the owner: undone by the caller's discard_files if the job is
            # not created after all.
            size = await app[STORAGE].keep_uploads(job_id)
            await store.quota.charge(job_id, owner.owner, size, owner.client)
        with tracing.submit_span(submission.kind, **{"jobcast.job_id": job_id}):
            if tree is not None:
                created = await _create_tree(store, tree)
            else:
                created = await store.create(
                    job_id,
                    submission,
                    idempotency_key=key,
                    retry_of=retry_of,
                    request_id=current_request_id.get(),
                    owner=owner.owner,
                    submitted_by=owner.submitted_by,
                    client=owner.client,
                )
        app[SUBMITTED_BY_KIND][submission.kind] += 1
        return Submitted(created)
    except IdempotentReplay as replay:
        if not replay.same_request:
            raise Problem(
                422,
                "this Idempotency-Key was used with a different request",
                slug="idempotency-key-reused",
            ) from None
        return Submitted(await store_snapshot(app, replay.job_id), replayed=True)
    except TooManyWaiting as busy:
        retry_after = app[SETTINGS].backpressure_retry_after_s
        which = "of your jobs are" if busy.owner else "delayed jobs are" if busy.delayed else "jobs are"
        raise Problem(
            429,
            f"too many {which} waiting ({busy.waiting}); try again later",
            slug="too-many-waiting",
            headers={"Retry-After": str(retry_after)},
        ) from None
    except RateLimited as limited:
        raise Problem(
            429,
            str(limited),
            slug="rate-limited",
            headers={"Retry-After": str(math.ceil(limited.retry_after_s))},
        ) from None
    except ActiveDuplicate as active:
        return Submitted(await store_snapshot(app, active.job_id), active=True)
    except AlreadyRetried as done:
        return Submitted(await store_snapshot(app, done.job_id), replayed=True)
    except NotRetryable as e:
        if e.state is None:
            raise Problem(404, f"no job {retry_of}", slug="not-found") from None
        raise Problem(
            409, f"only failed or cancelled jobs can be retried; this one is {e.state}", slug="conflict"
        ) from None


async def _create_tree(store: JobStore, calls: list[CreateCall]) -> Snapshot:
    """The tree's root, made with every job below it; raises the root's refusal (then none is made)."""
    created = (await store.create_tree(calls))[0]
    if isinstance(created, SubmitRefused):
        raise created
    return created


def unserved_kind(kind: str, workers: dict[str, list[str]]) -> Problem:
    served = without_bulk(sorted({name for kinds in workers.values() for name in kinds}))
    message = f"no running worker serves kind {kind!r}; the {len(workers)} running serve: {', '.join(served)}"
    return Problem(
        422,
        message,
        slug="kind-not-served",
        errors=[{"field": "kind", "message": "no running worker serves this kind", "code": "not_served"}],
    )


def _placed(
    app: web.Application,
    submission: Submission,
    job_id: str | None,
    retry_of: str | None,
    owner: Ownership,
    key: str | None,
) -> tuple[JobStore, str]:
    """The store a new job is made on, and its id."""
    if job_id is not None:
        return job_store(app, job_id), job_id
    store = job_store(app, retry_of) if retry_of else intake_store(app, submission, owner.owner, key)
    return store, store.new_ids(1)[0]


def intake_store(
    app: web.Application,
    submission: Submission | None,
    owner: str | None,
    key: str | None,
    otherwise: JobStore | None = None,
) -> JobStore:
    """The shard a new job goes to (jobcast/store/shards.py): its owner's; without one, the shard
    its unique key names, or its idempotency key, so that a repeat meets the first on one shard;
    with none of these, `otherwise` (None: the next shard in turn)."""
    unique = submission.unique_key if submission is not None else None
    spread_by = f"unique\n{submission.kind}\n{unique}" if submission is not None and unique else key
    if owner is None and spread_by is None and otherwise is not None:
        return otherwise
    return app[SHARDS].for_new(owner, spread_by)


async def store_snapshot(app: web.Application, job_id: str) -> Snapshot:
    snapshot = await job_store(app, job_id).snapshot(job_id)
    if snapshot is None:
        raise Problem(404, f"no job {job_id}", slug="not-found")
    return snapshot


@overload
def parse_request(body: Any) -> SubmitRequest: ...


@overload
def parse_request(body: Any, model: type[M]) -> M: ...


def parse_request(body: Any, model: type[BaseModel] = SubmitRequest) -> BaseModel:
    """`body` as `model`, or the 422 problem naming what is wrong."""
    if not isinstance(body, dict):
        raise Problem(422, "the body must be a JSON object", slug="validation")
    try:
        return model.model_validate(body)
    except ValidationError as e:
        raise validation_problem(e) from None


async def read_form(request: web.Request, job_id: str) -> tuple[dict[str, str], str | None]:
    """A posted form's text fields, and the name of its `file` part, stored as the job's upload.
    Multipart bodies are streamed (an upload never sits in memory)."""
    try:
        return await _read_form(request, job_id)
    except (ValueError, RuntimeError, HttpProcessingError) as e:
        # A body that is not the form it says it is: no boundary, broken part headers, bad base64,
        # an unknown Content-Transfer-Encoding (aiohttp raises RuntimeError for that one).
        raise Problem(400, f"malformed form body: {e}", slug="bad-multipart") from None


async def _read_form(request: web.Request, job_id: str) -> tuple[dict[str, str], str | None]:
    if request.content_type != "multipart/form-data":
        form = await request.post()
        return {k: v for k, v in form.items() if isinstance(v, str)}, None
    fields: dict[str, str] = {}
    upload: str | None = None
    settings = request.app[SETTINGS]
    limit = settings.max_upload_bytes
    parts = text_bytes = 0
    async for part in await request.multipart():
        if not isinstance(part, BodyPartReader) or part.name is None:
            raise Problem(400, "nested multipart bodies are not accepted", slug="bad-multipart")
        parts += 1
        if parts > settings.max_form_fields:
            raise Problem(413, f"more than {settings.max_form_fields} form fields", slug="payload-too-large")
        if part.name == "file" and part.filename:
            if upload is not None:
                raise Problem(422, "send one file", slug="validation")
            require_free_space(request.app[FILES].root, settings.min_free_disk_bytes)
            upload = safe_name(part.filename, "upload")
            await save_upload(part, request.app[FILES].job(job_id).upload_path(upload), limit)
        else:
            raw = await read_field(part, min(MAX_FIELD_BYTES, settings.max_form_bytes - text_bytes))
            text_bytes += len(raw)
            fields[part.name] = raw.decode("utf-8", "replace")
    return fields, upload


def require_free_space(root: Path, floor: int) -> None:
    """507 while the files volume is nearly full: one client's uploads must not fill the disk
    every job (and the results) share."""
    existing = next((p for p in (root, *root.parents) if p.exists()), Path("/"))
    if shutil.disk_usage(existing).free < floor:
        raise Problem(507, "the server is low on disk space; try again later", slug="insufficient-storage")


async def read_field(part: BodyPartReader, limit: int) -> bytes:
    """A text field, read a chunk at a time up to `limit` bytes (413 past it): a huge field is
    refused before it is all in memory."""
    refuse_encoded(part)
    data = bytearray()
    while chunk := await part.read_chunk(UPLOAD_CHUNK):
        data += chunk
        if len(data) > limit:
            raise Problem(
                413, f"form field {part.name} is too large, or the form is", slug="payload-too-large"
            )
    return bytes(part.decode(bytes(data)))


async def read_multipart(request: web.Request, job_id: str) -> SubmitRequest:
    """A multipart submission: `kind`, `params` (JSON text), `priority`, `delay_s` and `file`."""
    fields, upload = await read_form(request, job_id)
    taken = ("kind", "priority", "delay_s", "owner", "unique_key")
    body: dict[str, Any] = {k: v for k, v in fields.items() if k in taken}
    try:
        body["params"] = loads(fields["params"]) if fields.get("params") else {}
    except ValueError as e:
        raise Problem(400, f"params is not JSON: {e}", slug="malformed-json") from None
    if isinstance(body["params"], dict):
        body["params"].pop("upload", None)  # the server's to set
        if upload is not None:
            body["params"]["upload"] = upload
    return parse_request(body)


def refuse_server_params(app: web.Application, body: SubmitRequest) -> None:
    """`upload` names the file the server stored: only a multipart `file` part sets it."""
    kind = app[KINDS].get(body.kind)
    if kind is not None and kind.takes_upload and "upload" in body.params:
        message = "set by the server: send the file as a multipart `file` part"
        errors = [{"field": "params.upload", "message": message, "code": "server_only"}]
        raise Problem(422, f"invalid params.upload: {message}", slug="validation", errors=errors)


def require_upload(app: web.Application, submission: Submission) -> None:
    if app[KINDS][submission.kind].takes_upload and not submission.params.get("upload"):
        raise Problem(
            422,
            f"kind {submission.kind} takes a file: send multipart/form-data with a `file` part",
            slug="validation",
            errors=[{"field": "file", "message": "a file is required", "code": "missing"}],
        )


def refuse_encoded(part: BodyPartReader) -> None:
    """A compressed part would be stored (or read) as its compressed bytes, and a small one can
    inflate past every limit in whoever decodes it: only identity parts are taken."""
    if part.headers.get("Content-Encoding", "identity").strip().lower() != "identity":
        raise Problem(400, "compressed form parts are not accepted", slug="bad-multipart")


async def save_upload(part: BodyPartReader, path: Any, limit: int) -> None:
    refuse_encoded(part)
    path.parent.mkdir(parents=True, exist_ok=True)
    size = 0
    with path.open("wb") as f:
        while chunk := await part.read_chunk(UPLOAD_CHUNK):
            size += len(chunk)
            if size > limit:
                raise Problem(413, f"the file is larger than {limit} bytes", slug="payload-too-large")
            f.write(chunk)


def submission_body(app: web.Application) -> dict[str, Schema]:
    """The body of `POST /api/jobs`: JSON, one variant per kind the app knows (its params
    checked by that kind's schema), or multipart with the upload as `file`."""
    fields = SubmitRequest.model_json_schema(ref_template=REF)["properties"]
    delay = {**fields["delay_s"], "maximum": app[SETTINGS].max_delay_s}
    variants = [
        {
            # A name for generated clients' model (`SubmitJobJsonSubmitDemo`, not `...BodyType0`).
            "title": f"Submit {name}",
            "type": "object",
            "additionalProperties": False,
            "required": ["kind"],
            "properties": {
                "kind": {"const": name},
                "params": params_schema(kind.params),
                "priority": fields["priority"],
                "delay_s": delay,
                "children": fields["children"],
                "then": fields["then"],
            },
        }
        for name, kind in app[KINDS].items()
        if not kind.takes_upload  # those come as multipart, with their file
    ]
    multipart = {
        "type": "object",
        "required": ["kind", "file"],
        "properties": {
            "kind": {
                "type": "string",
                "enum": [name for name, kind in app[KINDS].items() if kind.takes_upload],
            },
            "params": {"type": "string", "description": "The params as JSON text"},
            "priority": fields["priority"],
            "delay_s": {"type": "string", "description": "Seconds, as text"},
            "unique_key": fields["unique_key"],
            "file": BINARY,
        },
    }
    return {JSON: {"oneOf": variants}, MULTIPART: multipart}


SUBMITTED = {
    202: json("Accepted: the job is queued", JobSnapshot, headers=("Location",)),
    200: json(
        "An earlier job: the one this Idempotency-Key made, or the waiting or running one of this unique_key",
        JobSnapshot,
        headers=("Location", "Idempotent-Replayed", "Unique-Active"),
    ),
}


@routes.post("/api/jobs")
@operation(
    Operation(
        "Submit a job",
        SUBMITTED,
        body=submission_body,
        headers={"Idempotency-Key": "A repeat with the same key and body answers with the first job"},
        problems=(400, 401, 413, 415, 422, 429, 503, 507),
    )
)
async def submit_job(request: web.Request) -> web.Response:
    key = idempotency_key(request)
    if request.content_type != "multipart/form-data":
        raw = await read_json(request)
        if isinstance(raw, dict) and (raw.get("children") or raw.get("then") is not None):
            settings = request.app[SETTINGS]
            check_shape(raw, settings.tree_max_jobs, settings.tree_max_depth, settings.tree_max_children)
            return (await submit_tree(request, parse_request(raw), key)).response()
        body = parse_request(raw)
        refuse_server_params(request.app, body)
        submission = validate(request.app, body)
        require_upload(request.app, submission)
        return (
            await submit(request.app, submission, key=key, owner=owner_for(request, body.owner))
        ).response()
    # The upload is stored under the job's id as it arrives, before the form says whose it is: the
    # asker's shard, moved if the form names an owner or a unique key of another shard.
    job_id = intake_store(request.app, None, owner_for(request, None).owner, key).new_ids(1)[0]
    async with discard_files_unless_created(request.app, job_id):
        body = await read_multipart(request, job_id)
        submission = validate(request.app, body)
        require_upload(request.app, submission)
        owner = owner_for(request, body.owner)
        first = job_store(request.app, job_id)
        target = intake_store(request.app, submission, owner.owner, key, otherwise=first)
        if target is not first:
            job_id = await move_upload(request.app, job_id, target)
        submitted = await submit(request.app, submission, job_id=job_id, key=key, owner=owner)
    if submitted.replayed:  # the job named by the key already has its upload
        await discard_files(request.app, job_id)
    return submitted.response()


async def submit_tree(request: web.Request, body: SubmitRequest, key: str | None) -> Submitted:
    """A submission with `children` or `then`: every job checked as a single submission is, then
    the whole tree made in one script call, or refused with one problem document."""
    app = request.app
    refuse_server_params(app, body)
    if body.delay_s or body.unique_key:
        message = "a tree's jobs start as their children end: delay_s and unique_key are for single jobs"
        errors = [{"field": "delay_s" if body.delay_s else "unique_key", "message": message, "code": "tree"}]
        raise Problem(422, message, slug="validation", errors=errors)
    root = unchain(TreeNode(kind=body.kind, params=body.params, children=body.children, then=body.then))
    return await make_tree(request, root, body.priority, owner_for(request, body.owner), key)


async def make_tree(
    request: web.Request,
    root: TreeNode,
    priority: Priority,
    owner: Ownership,
    key: str | None,
    root_submission: Submission | None = None,
) -> Submitted:
    """Check every job of an unchained tree as a single submission is checked, and make them all in
    one script call (`root_submission`: the root's, when it is jobcast's own kind)."""
    app = request.app
    served: dict[str, dict[str, list[str]] | None] = {}

    def check(node: TreeNode, priority: Priority) -> Submission:
        submission = validate(app, SubmitRequest(kind=node.kind, params=node.params, priority=priority))
        if app[KINDS][node.kind].takes_upload:
            message = f"kind {node.kind!r} takes an upload: submit it on its own, as multipart/form-data"
            errors = [{"field": "kind", "message": message, "code": "takes_upload"}]
            raise Problem(422, message, slug="validation", errors=errors)
        served.setdefault(node.kind, None)
        return submission

    root_submission = root_submission or check(root, root.priority or priority)
    store = intake_store(app, root_submission, owner.owner, key)
    calls = plan_tree(store, root, root_submission, owner, key, check)
    for kind in served:
        if (workers := await app[WORKERS].unserved(kind)) is not None:
            raise unserved_kind(kind, workers)
    return await submit(app, root_submission, job_id=calls[0].job_id, key=key, owner=owner, tree=calls)


async def move_upload(app: web.Application, job_id: str, target: JobStore) -> str:
    """A new id on `target` for the job whose upload is stored under `job_id`, the upload moved."""
    new_id = target.new_ids(1)[0]
    async with discard_files_unless_created(app, new_id):
        await app[STORAGE].copy_uploads(job_id, new_id)
    await discard_files(app, job_id)
    return new_id


async def discard_files(app: web.Application, job_id: str) -> None:
    """Delete a job's files, and give back what they were charged against the disk quota."""
    shutil.rmtree(app[FILES].job(job_id).root, ignore_errors=True)
    try:
        await app[STORAGE].delete([job_id])
        await job_store(app, job_id).quota.refund([job_id])
    except Exception as e:  # already answering with the job's own error: logged
        log.warning("could not delete job %s's files or refund their charge: %s", job_id, e)


@asynccontextmanager
async def discard_files_unless_created(app: web.Application, job_id: str) -> AsyncIterator[None]:
    """Deletes a job's directory (its upload) if the job was not created: nothing half-created."""
    try:
        yield
    except BaseException:
        await discard_files(app, job_id)
        raise


async def retry(app: web.Application, old: Snapshot) -> Submitted:
    """Submit a new job like `old` (a failed or cancelled job), linked both ways, on its shard."""
    store = job_store(app, old["id"])
    # bytes: redis-py types replies as str, which they are only with decode_responses.
    submitted_with_children = old["children"] and (
        cast(bytes | None, await awaited(store.redis.hget(store.keys.job(old["id"]), "after_children")))
        == b"run"
    )
    if submitted_with_children:
        # Submitted with its children, it would run again without them: its parts are what to retry.
        raise Problem(
            409,
            "a job submitted with children is not retried alone; retry its failed parts "
            f"(POST /api/jobs/{old['id']}/children/retry)",
            slug="conflict",
        )
    kind = app[KINDS].get(old["kind"] or "")
    if kind is None:
        raise Problem(409, f"no worker knows kind {old['kind']!r} any more", slug="conflict")
    cost = cost_of(app, kind, kind.params.model_validate(old["params"]))
    submission = Submission.again(old, max_attempts=kind.max_attempts, cost_s=cost, timeout_s=kind.timeout_s)
    job_id = store.new_ids(1)[0]
    async with discard_files_unless_created(app, job_id):
        if kind.takes_upload:
            await app[STORAGE].copy_uploads(old["id"], job_id)
        # A retry belongs to the job's owner, whoever asks for it (the owner, or an admin).
        owner = Ownership(old["owner"], old["submitted_by"])
        submitted = await submit(app, submission, job_id=job_id, retry_of=old["id"], owner=owner)
    if submitted.replayed:
        await discard_files(app, job_id)
    return submitted


@routes.post(f"/api/jobs/{JOB_ID}/retry")
@operation(
    Operation(
        "Retry a failed or cancelled job as a new job",
        {
            202: json("The new job", JobSnapshot, headers=("Location",)),
            200: json("The job retried earlier", JobSnapshot, headers=("Location", "Idempotent-Replayed")),
        },
        problems=(404, 409, 413, 422, 429, 503),
    )
)
async def retry_job(request: web.Request) -> web.Response:
    return (await retry(request.app, await load_snapshot(request))).response()


# Batch items checked between two yields to the event loop (about 2 ms of CPU).
YIELD_EVERY = 50


class BatchItem(SubmitRequest):
    idempotency_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        pattern=r"^[ -~]+$",
        description="As the Idempotency-Key header of a single submission, for this one",
    )


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    jobs: list[BatchItem] = Field(
        description="Up to JOBCAST_MAX_BATCH_JOBS submissions, each as `POST /api/jobs` takes it (JSON)"
    )


@routes.post("/api/jobs/batch")
@operation(
    Operation(
        "Submit many jobs at once; each is accepted or refused on its own (one bad item sinks no other)",
        {200: json("Each submission's outcome, in order", BatchAnswer)},
        body={JSON: BatchRequest},
        problems=(400, 401, 413, 415, 422, 503),
    )
)
async def submit_batch(request: web.Request) -> web.Response:
    require_submitter(request)
    body = await read_json(request)
    items = body.get("jobs") if isinstance(body, dict) else None
    if not isinstance(items, list) or set(body) != {"jobs"}:
        errors = [{"field": "jobs", "message": "a list of submissions", "code": "list_type"}]
        raise Problem(422, 'the body must be {"jobs": [...]}', slug="validation", errors=errors)
    limit = request.app[SETTINGS].max_batch_jobs
    if len(items) > limit:
        raise Problem(413, f"at most {limit} jobs in one batch", slug="payload-too-large")
    results: list[dict[str, Any] | None] = [None] * len(items)
    async with BatchWriter(request.app[SETTINGS].create_chunk_jobs, len(items)) as writer:
        received = utcnow()
        # Whether a worker serves each kind, asked once per kind for the whole batch.
        served: dict[str, dict[str, list[str]] | None] = {}
        for index, raw in enumerate(items):
            if index and index % YIELD_EVERY == 0:
                # Checking a thousand items takes tens of milliseconds of CPU: let the loop serve
                # the other connections (streams, and this batch's own writes to Redis) meanwhile.
                await asyncio.sleep(0)
            try:
                owner, item, submission = await _batch_item(request, raw, served)
            except Problem as problem:
                results[index] = {"index": index, "status": problem.status, "problem": problem.document()}
                continue
            store = intake_store(request.app, submission, owner.owner, item.idempotency_key)
            call = store.create_call(
                writer.new_id(store),
                submission,
                idempotency_key=item.idempotency_key,
                request_id=current_request_id.get(),
                owner=owner.owner,
                submitted_by=owner.submitted_by,
                client=owner.client,
                created=received,
            )
            await writer.add(store, index, call)
    for index, outcome in writer.outcomes:
        results[index] = await _batch_outcome(request.app, index, outcome)
    created = sum(1 for r in results if r is not None and r["status"] == 202)
    return json_response({"results": results, "created": created})


class BatchWriter:
    """Writes a batch's jobs to Redis a chunk (`create_chunk_jobs`) of one shard's at a time, in
    order, while the next chunk is checked: Redis works on one part of the batch while the web
    checks the next, instead of each waiting for the other to finish the whole batch. `outcomes`:
    each item's (index, snapshot or SubmitRefused), once the block is left."""

    def __init__(self, chunk: int, size: int) -> None:
        self.outcomes: list[tuple[int, Snapshot | SubmitRefused]] = []
        self._chunk = chunk
        # Ids drawn for the whole batch (`size`) at once, per shard: one read of the random source.
        self._size = size
        self._ids: dict[JobStore, list[str]] = {}
        # Each shard's calls not written yet, with their places in the batch.
        self._pending: dict[JobStore, tuple[list[CreateCall], list[int]]] = {}
        # The chunk being written: at most one at a time, so each shard's jobs are created in the
        # batch's order (their places in the queue, and the waiting limit's count, follow it).
        self._writing: asyncio.Task[None] | None = None

    def new_id(self, store: JobStore) -> str:
        ids = self._ids.get(store)
        if not ids:
            ids = self._ids[store] = store.new_ids(self._size)
        return ids.pop()

    async def add(self, store: JobStore, index: int, call: CreateCall) -> None:
        calls, places = self._pending.setdefault(store, ([], []))
        calls.append(call)
        places.append(index)
        if len(calls) >= self._chunk:
            await self._write(store)

    async def _write(self, store: JobStore) -> None:
        await self._wait()
        calls, places = self._pending.pop(store, ([], []))
        if calls:
            self._writing = asyncio.create_task(self._create(store, calls, places))

    async def _wait(self) -> None:
        writing, self._writing = self._writing, None
        if writing is None:
            return
        try:
            await writing  # its error, if any, is the batch's
        except asyncio.CancelledError:
            await cancel_and_wait(writing)  # the request was cancelled, and with it the write
            raise

    async def _create(self, store: JobStore, calls: list[CreateCall], places: list[int]) -> None:
        self.outcomes.extend(zip(places, await store.create_many(calls), strict=True))

    async def __aenter__(self) -> BatchWriter:
        return self

    async def __aexit__(self, error_type: type[BaseException] | None, *_: object) -> None:
        if error_type is None:
            for store in list(self._pending):
                await self._write(store)
            await self._wait()
        elif self._writing is not None:  # the batch failed while a chunk was being written
            await cancel_and_wait(self._writing)


async def _batch_item(
    request: web.Request, raw: Any, served: dict[str, dict[str, list[str]] | None]
) -> tuple[Ownership, BatchItem, Submission]:
    """One batch item checked as a single submission is (raises its Problem)."""
    item = parse_request(raw, BatchItem)
    if item.children or item.then is not None:
        message = "a tree is submitted on its own (POST /api/jobs), or as a batch (POST /api/batches)"
        errors = [{"field": "children", "message": message, "code": "tree"}]
        raise Problem(422, message, slug="validation", errors=errors)
    refuse_server_params(request.app, item)
    submission = validate(request.app, item)
    require_upload(request.app, submission)
    if submission.kind not in served:
        served[submission.kind] = await request.app[WORKERS].unserved(submission.kind)
    if (workers := served[submission.kind]) is not None:
        raise unserved_kind(submission.kind, workers)
    return owner_for(request, item.owner), item, submission


async def _batch_outcome(app: web.Application, index: int, outcome: Any) -> dict[str, Any]:
    if isinstance(outcome, dict):
        app[SUBMITTED_BY_KIND][outcome["kind"]] += 1
        return {"index": index, "status": 202, "job": outcome}
    problem: Problem
    if isinstance(outcome, ActiveDuplicate):
        return {"index": index, "status": 200, "job": await store_snapshot(app, outcome.job_id)}
    if isinstance(outcome, IdempotentReplay):
        if outcome.same_request:
            return {"index": index, "status": 200, "job": await store_snapshot(app, outcome.job_id)}
        message = "this idempotency_key was used with a different request"
        problem = Problem(422, message, slug="idempotency-key-reused")
    elif isinstance(outcome, TooManyWaiting | RateLimited):
        problem = Problem(
            429,
            str(outcome),
            slug="too-many-waiting" if isinstance(outcome, TooManyWaiting) else "rate-limited",
        )
    else:
        problem = Problem(409, str(outcome), slug="conflict")
    return {"index": index, "status": problem.status, "problem": problem.document()}
