"""The job snapshot, jobcast's central data shape: a job as it is now, as the API answers it, the
pages render it and a watcher's `snapshot` event carries it.

TypedDicts, so the type checker follows a snapshot from where it is built (jobcast/store/jobs.py:
`snapshot_of`) to where it is read, while at run time a snapshot stays the plain dict it always
was: nothing is validated or copied per event. The OpenAPI model (server/http/schemas.py:
`JobSnapshot`) documents the same fields; a test keeps the two alike.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict


class ProgressSnapshot(TypedDict):
    current: float
    total: float | None
    percent: float | None
    message: str | None


class ErrorSnapshot(TypedDict):
    type: str
    message: str


class OutputRef(TypedDict):
    """An output stream too long to carry in a snapshot: its length in bytes at the snapshot's
    moment, and where to read that much of it."""

    length: int
    href: str


class SnapshotLinks(TypedDict):
    """What the web adds to a snapshot: the job's URLs (empty where no web server made them) and,
    in owner mode, the token that opens its stream."""

    links: dict[str, str]
    stream_token: str | None


class ChildCounts(TypedDict):
    """A parent's children by state; `waiting`: neither running nor ended."""

    total: int
    waiting: int
    running: int
    succeeded: int
    failed: int
    cancelled: int


class JobSnapshot(SnapshotLinks):
    id: str
    kind: str
    params: dict[str, Any] | None
    state: str
    priority: str
    progress: ProgressSnapshot
    attempt: int
    max_attempts: int | None
    timeout_s: float | None
    created_at: str | None
    run_at: str | None
    started_at: str | None
    first_started_at: str | None
    next_attempt_at: str | None
    finished_at: str | None
    cancel_requested: bool
    result: Any
    error: ErrorSnapshot | None
    retry_of: str | None
    retried_by: str | None
    owner: str | None
    submitted_by: str | None
    # The schedule whose tick made the job (jobcast/schedule.py), if one did.
    schedule: str | None
    # The tick it was made for (null: run now, outside the schedule's ticks).
    scheduled_for: str | None
    # Why the job, due, does not start yet: its kind is paused, or a limit holds it back.
    waiting: str | None
    waiting_since: str | None
    # The job whose child this is (jobcast/tree.py), and a parent's children by state.
    parent: str | None
    children: ChildCounts | None
    last_event_id: int
    # One job's snapshot (not a listing's): the text of each output stream of its attempt now.
    output: NotRequired[dict[str, str | OutputRef]]
