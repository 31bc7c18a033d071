"""The shapes of jobcast's answers, as pydantic models: the OpenAPI document is generated from
them (and from the request models beside each handler), and the schemathesis run in the test
suite holds every real answer to them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from jobcast.protocol import Priority, State


class Closed(BaseModel):
    # Answers name every field they may carry: a field the server adds without documenting it
    # fails the schema-conformance check.
    model_config = ConfigDict(extra="forbid")


class Progress(Closed):
    current: float = Field(description="Work done so far, in the kind's own unit.")
    total: float | None = Field(description="Work in all, when known.")
    percent: float | None = Field(description="0 to 100, when the total is known.")
    message: str | None


class ErrorInfo(Closed):
    type: str = Field(description="The error's class name (`Cancelled`, `TimeoutError`, ...).")
    message: str


class JobLinks(Closed):
    self: str
    events: str
    cancel: str
    retry: str
    result: str
    token: str
    page: str


class StreamToken(Closed):
    stream_token: str
    expires_at: float = Field(description="When it expires (Unix time, seconds).")


class OutputRef(Closed):
    """An output stream longer than a snapshot carries (`JOBCAST_OUTPUT_INLINE_BYTES`)."""

    length: int = Field(description="Its bytes at the snapshot's moment: the live chunks follow them.")
    href: str = Field(description="Reads exactly those bytes (`GET .../output/{stream}`).")


class ChildCounts(Closed):
    """A parent's children by state: `waiting` are neither running nor ended."""

    total: int
    waiting: int
    running: int
    succeeded: int
    failed: int
    cancelled: int


class JobSnapshot(Closed):
    """A job as it is now."""

    id: str = Field(pattern="^[0-9a-f]{32}$")
    kind: str
    params: dict[str, Any] | None
    state: State
    priority: Priority
    progress: Progress
    attempt: int = Field(description="The attempt running or last run; 0 before the first.")
    max_attempts: int | None
    timeout_s: float | None = Field(
        default=None,
        description="How long one attempt may run before it fails with a timeout: an ETA past it means "
        "the attempt would not finish.",
    )
    created_at: str | None
    run_at: str | None
    started_at: str | None = Field(description="When the attempt running or last run started.")
    first_started_at: str | None = Field(
        default=None, description="When the first attempt started: elapsed time counts from here."
    )
    next_attempt_at: str | None
    finished_at: str | None
    cancel_requested: bool
    result: Any = Field(
        description="What the job returned (a succeeded job); `file` describes a result file."
    )
    error: ErrorInfo | None
    retry_of: str | None
    retried_by: str | None
    owner: str | None = Field(description="Who the job belongs to (owner mode; null when single-user).")
    submitted_by: str | None = Field(description="The service (API key) that submitted it for its owner.")
    schedule: str | None = Field(
        default=None, description="The schedule whose tick made the job (`/api/schedules/{id}`), if one did."
    )
    scheduled_for: str | None = Field(
        default=None, description="The schedule's tick the job was made for (null: run now, between ticks)."
    )
    waiting: str | None = Field(
        default=None,
        description="Why the job, due, does not start yet: a limit holds it back "
        "(`report is at its limit (3 of 3 running)`) or its kind is paused (`aggregate paused by ops`); "
        "a `queue` event says when this changes.",
    )
    waiting_since: str | None = Field(
        default=None,
        description="Since when `waiting` holds it (ISO 8601): when its kind was paused; null for a limit's "
        "hold.",
    )
    stream_token: str | None = Field(
        description="Owner mode: opens this job's stream (SSE `?token=`, WebSocket `token`) without a "
        "cookie, until it expires; `POST links.token` gives a fresh one."
    )
    parent: str | None = Field(
        default=None, description="The job whose child this is (`/api/jobs/{parent}`), if it is one."
    )
    children: ChildCounts | None = Field(
        default=None,
        description="A parent's children by state (`/api/jobs/{id}/children` lists them); null for a job "
        "without children. Its progress is then rolled up from theirs.",
    )
    last_event_id: int = Field(description="The seq of the job's last event.")
    links: JobLinks
    output: dict[str, str | OutputRef] | None = Field(
        default=None,
        description="One job's snapshot (not a listing's): each output stream of its attempt now, "
        "as its text up to the snapshot's moment, or as its length and where to read it.",
    )


class ChildPage(Closed):
    """A page of a parent's children, in the order they were made."""

    children: list[JobSnapshot]
    total: int = Field(description="The parent's children in all.")
    offset: int
    next: str | None = Field(default=None, description="The next page, while there is one.")


class RetriedChildren(Closed):
    retried: list[str] = Field(description="The new jobs' ids, one per failed or cancelled child.")
    count: int


class BatchLinks(Closed):
    self: str
    events: str = Field(
        description="The batch's stream: its counts and rolled-up bar as they change, and its end."
    )
    job: str = Field(description="The batch's root job (the completion job, when it has one).")
    items: str = Field(description="The items' snapshots, a page at a time.")
    cancel: str = Field(description="Cancels the batch: every item not yet ended, and the completion.")


class BatchSnapshot(Closed):
    """A batch as it is now: its items' counts by state and its aggregate progress."""

    id: str = Field(pattern="^[0-9a-f]{32}$")
    state: State
    counts: ChildCounts
    progress: Progress
    completion: str | None = Field(description="The completion job's kind, if the batch has one.")
    result: Any = Field(description="The completion job's result (without one: the items' counts).")
    error: ErrorInfo | None
    created_at: str | None
    finished_at: str | None
    last_event_id: int
    stream_token: str | None
    links: BatchLinks


class PageLinks(Closed):
    next: str


class JobPage(Closed):
    jobs: list[JobSnapshot]
    next_cursor: str | None
    links: PageLinks | None = None


class KindInfo(Closed):
    name: str
    title: str
    description: str
    max_attempts: int
    timeout_s: float
    takes_upload: bool
    params_schema: dict[str, Any] = Field(description="The JSON Schema of the kind's params.")


class KindList(Closed):
    kinds: list[KindInfo]


class WorkerJob(Closed):
    id: str
    kind: str | None
    state: str | None
    progress: Progress | None
    started_at: str | None = Field(default=None, description="When the attempt on this worker started.")


class WorkerInfo(Closed):
    name: str
    host: str
    pid: int
    started_at: str = Field(description="When the worker started (ISO 8601).")
    concurrency: int = Field(description="Jobs it runs at once.")
    kinds: list[str] = Field(description="The kinds it serves.")
    heartbeat_age_s: float
    gone: bool = Field(description="No heartbeat for 3 intervals: stopped, or lost.")
    jobs: list[WorkerJob] = Field(description="The jobs it holds now.")
    last_hour: dict[str, int] | None = Field(
        default=None,
        description="Jobs that ended on it over the last hour, by final state (succeeded, failed, "
        "cancelled), as of its last heartbeat",
    )
    recent_jobs: list[str] = Field(
        default_factory=list, description="Ids of the jobs that ended on it last, newest first."
    )


class BulkCount(Closed):
    matches: int = Field(
        description="The jobs the action would go through (those it does not apply to among chosen "
        "ids included), at most `limit`."
    )
    limit: int = Field(description="JOBCAST_MAX_BULK_JOBS: the most one bulk action acts on.")


class WorkerList(Closed):
    workers: list[WorkerInfo]


class EndedJob(Closed):
    id: str
    kind: str
    state: str | None = Field(description="Its state now (a retry may have run it again since).")
    finished_at: str | None
    error: str | None = Field(description="`Type: message` of a job that ended in error.")


class WorkerDetail(WorkerInfo):
    recent: list[EndedJob] = Field(
        description="The jobs that ended on it last, newest first (JOBCAST_WORKER_RECENT_JOBS), "
        "those still retained"
    )


class Serving(Closed):
    worker: str
    kinds: list[str]


class PausedKind(Closed):
    since: str = Field(description="When the kind was paused (ISO 8601).")
    by: str | None = Field(
        default=None, description="Who paused it (an admin's name); null in single-user mode."
    )
    parked: int = Field(description="Its due jobs held back meanwhile.")


class KindPause(Closed):
    kind: str
    paused: bool
    since: str | None = Field(description="When it was paused; null when it is not.")
    by: str | None = Field(default=None, description="Who paused it; null when not said or not paused.")
    parked: int = Field(description="Its due jobs held back while it is paused.")
    resumed: int | None = Field(default=None, description="On resume: the jobs put back in their queues.")


class FinishedBucket(Closed):
    start: str = Field(description="When the bucket starts (ISO 8601).")
    counts: dict[str, dict[str, int]] = Field(description="Per kind, the jobs that ended, by final state.")


class FinishedHistory(Closed):
    span: Literal["hour", "day"]
    bucket_s: int = Field(description="Each bucket's length: 60 over an hour, 3600 over a day.")
    buckets: list[FinishedBucket] = Field(description="Oldest first; the last one is under way.")


class Held(Closed):
    paused: int = Field(description="Due jobs of paused kinds, parked until their kind resumes.")
    limits: int = Field(
        description="Due jobs a kind's or an owner's limit holds back (exact up to 1,000 kinds and owners "
        "holding jobs, a floor past that)."
    )


class Stats(Closed):
    waiting: dict[str, int] = Field(description="Jobs due now and ready to start, per priority.")
    delayed: dict[str, int] = Field(
        description="Jobs waiting for their time (delayed, or backing off before a retry), per priority."
    )
    held: Held = Field(description="Due jobs that may not start yet: out of the waiting counts.")
    oldest_waiting_s: float | None
    running: int
    finished_last_hour: dict[str, int]
    workers: int
    serving: list[Serving] = Field(description="Each live worker and the kinds it serves.")
    paused: dict[str, PausedKind] = Field(description="The paused kinds (POST /api/kinds/{kind}/pause).")
    waiting_by_kind: dict[str, dict[str, int]] = Field(
        description="Per kind and priority, the jobs waiting: queued (due or delayed) or between attempts."
    )


class FailureGroup(Closed):
    signature: str = Field(
        description="The error's type and message with numbers, ids and quoted values taken out"
    )
    type: str
    message: str = Field(description="The newest occurrence's message")
    count: int
    kinds: dict[str, int] = Field(description="Failures per kind, the most first")
    first_seen: str
    last_seen: str
    ids: list[str] = Field(description="The group's failed jobs, newest first")
    open_ids: list[str] = Field(description="Those not retried yet: what retrying the group touches")
    retries: dict[str, str] = Field(
        default_factory=dict,
        description="The others: each retried job's id, and the id of the job its retry made",
    )
    per_bucket: list[int] = Field(description="Failures per `bucket_s` of the window, oldest first")


class FailureGroups(Closed):
    window_s: float
    bucket_s: int = Field(
        description="The span of each count in `per_bucket`: an hour, or more for a long window"
    )
    scanned: int = Field(description="Failed jobs read (JOBCAST_FAILURES_SCANNED at most, the newest)")
    complete: bool = Field(description="Whether every failure of the window was read")
    groups: list[FailureGroup]


class Liveness(Closed):
    alive: bool


class Health(Closed):
    redis: bool
    pubsub: bool


class FieldError(Closed):
    field: str
    message: str
    code: str


class ProblemDocument(Closed):
    """An error (RFC 9457), served as `application/problem+json`."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = Field(
        default=None, description="The bad fields: the first 50, when there are more (`error_count`)."
    )
    error_count: int | None = Field(default=None, description="How many errors there were, when over 50.")


class BatchResult(Closed):
    index: int = Field(description="The submission's place in `jobs`.")
    status: int = Field(description="202 created, 200 an earlier job with this idempotency_key, or a 4xx")
    job: JobSnapshot | None = Field(default=None, description="The job (202 or 200).")
    problem: ProblemDocument | None = Field(default=None, description="Why no job was made (4xx).")


class BatchAnswer(Closed):
    results: list[BatchResult] = Field(description="One per submission, in order.")
    created: int = Field(description="How many new jobs were made.")


class ReportAccepted(Closed):
    status: Literal["Processing initiated"]
    correlationId: str
    statusUrl: str


class JobEvent(BaseModel):
    """One event of a job, as SSE `data:` (with `id:` its seq and `event:` its type) or a
    WebSocket message. A `snapshot` event is a `JobSnapshot` plus `type`, `job_id` and `seq`."""

    job_id: str
    seq: int
    type: Literal[
        "queued",
        "started",
        "progress",
        "output",
        "retrying",
        "waiting_children",
        "succeeded",
        "failed",
        "cancelled",
        "snapshot",
    ]
    state: State | None
    ts: str | None = None
    attempt: int
    progress: Progress | None = Field(default=None, description="Absent on `output` events.")
    stream: str | None = Field(default=None, description="On `output`: the output stream's name.")
    data: str | None = Field(
        default=None, description="On `output`: the text written, the chunk after the stream's earlier ones."
    )
    limit_reached: bool | None = Field(
        default=None,
        description="On `output`: the attempt's output is past `JOBCAST_MAX_OUTPUT_BYTES`; nothing more "
        "of it is kept or sent.",
    )
    result: Any = None
    error: ErrorInfo | None = None
    worker: str | None = Field(default=None, description="On `started`: the worker running the attempt.")
    children: ChildCounts | None = Field(
        default=None,
        description="On a parent's `progress`: its children by state (the progress is rolled up from "
        "theirs).",
    )
    after_children: str | None = Field(
        default=None,
        description="On `waiting_children`: what runs once they have ended (`then`: the kind's "
        "continuation).",
    )
    feed_seq: int | None = Field(default=None, description="On the feed only: the event's feed seq.")
    epoch: str | None = Field(default=None, description="On the feed only: the epoch its feed seq counts in.")


class QueueEvent(BaseModel):
    """A waiting job's place in the queue, or why it is not in line: SSE `event: queue` with no
    `id:` (it is live only, and moves no resume position), or a WebSocket message, about once a
    second while it changes."""

    type: Literal["queue"]
    job_id: str
    ahead: int | None = Field(
        description="Jobs that start before this one; null: it is not in line (it started, or is held "
        "back by a limit or a paused kind, or waits for its time)."
    )
    waiting: str | None = Field(
        description="Why the job, due, is not in line: a limit holds it back (`report is at its limit "
        "(3 of 3 running)`) or its kind is paused (`aggregate paused by ops`); null: nothing holds it back."
    )
    waiting_since: str | None = Field(
        default=None, description="Since when `waiting` holds it (ISO 8601), as in the job's snapshot."
    )
    eta_s: float | None = Field(
        description="About how many seconds until it starts, from the deployment's recent dispatch rate; "
        "null: no recent dispatches to tell by."
    )
