"""What a worker reads of a job to run it: the record, read by the claim (jobcast/store/lua/dispatch.lua)
or from the job's hash (JobStore.load)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jobcast.protocol import Priority, State, loads


@dataclass(slots=True)
class JobRecord:
    kind: str
    params: dict[str, Any]
    state: State
    attempt: int
    cancel_requested: bool
    request_id: str | None = None
    priority: str = Priority.DEFAULT.value
    owner: str | None = None
    # When the job was due: its run_at if delayed, else when it was created (ISO 8601).
    due_at: str | None = None
    # An anonymous owner's client address (`@<address>`): the job's files count against it too.
    client: str | None = None
    # The submission's trace context (W3C `traceparent`; jobcast/tracing.py), when it was traced.
    traceparent: str | None = None
    # A parent's continuation counts its attempts from here (its first part's attempts before it).
    attempts_before: int = 0
    # What runs once a parent's children have ended: `then` (the kind's continuation, after its
    # code made them) or `run` (a parent submitted with its children runs after them).
    after_children: str | None = None
    parent: str | None = None


# The fields a worker reads to run a job, in this order (store.load, and the claim in dispatch.lua).
RECORD_FIELDS = [
    *("kind", "params", "state", "attempt", "cancel_requested", "request_id", "priority", "owner"),
    *("run_at", "created_at", "client", "traceparent", "attempts_before", "after_children", "parent"),
]


def record_from(raw: list[Any]) -> JobRecord | None:
    """A JobRecord from RECORD_FIELDS' values (bytes or str, None or False when missing)."""
    values: list[Any] = [(v.decode() if isinstance(v, bytes) else v) or None for v in raw]
    if values[0] is None:
        return None
    return JobRecord(
        kind=values[0],
        params=loads(values[1]),
        state=State(values[2]),
        attempt=int(values[3]),
        cancel_requested=bool(values[4]),
        request_id=values[5],
        priority=values[6] or Priority.DEFAULT.value,
        owner=values[7],
        due_at=values[8] or values[9],
        client=values[10],
        traceparent=values[11],
        attempts_before=int(values[12] or 0),
        after_children=values[13],
        parent=values[14],
    )
