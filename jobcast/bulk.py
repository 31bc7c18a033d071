"""Bulk actions' contract, shared by the web server that submits them and the workers that run them
(jobs/bulk_actions.py): the kind's name and its params. Bulk actions retry failed jobs,
cancel jobs and delete finished jobs, on chosen ids or on every job a filter matches.

A bulk action is itself a job, of the built-in `bulk` kind that every worker serves: it is
queued, survives restarts, reports its progress like any job and ends with a result that says
what it did. It never acts on more than its `limit` jobs (JOBCAST_MAX_BULK_JOBS). Each job is
acted on with the same atomic script as a single action, so a job that moved on meanwhile (a
failed job retried by someone else, a job that finished before its cancel) is skipped, not
harmed.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from jobcast.protocol import TERMINAL_STATES, Priority, State
from jobcast.tree import BATCH_KIND

NAME = "bulk"
# The kinds every worker serves, which are jobcast's own: bulk actions, and batches' roots.
OWN_KINDS = frozenset({NAME, BATCH_KIND})
# Jobs acted on per round trip; also how often progress is reported.
CHUNK = 100
JOB_ID = r"^[0-9a-f]{32}$"

Action = Literal["retry", "cancel", "delete"]

# The states each action applies to: a filter's state narrows them, never widens them.
ACTS_ON: dict[str, tuple[State, ...]] = {
    "retry": (State.FAILED, State.CANCELLED),
    "cancel": (State.QUEUED, State.RETRYING, State.RUNNING),
    "delete": tuple(State(s) for s in sorted(TERMINAL_STATES)),
}


class BulkFilter(BaseModel):
    """Every job these match (all given ones), as `GET /api/jobs` filters them."""

    model_config = ConfigDict(extra="forbid")

    state: State | None = None
    kind: str | None = Field(default=None, max_length=200)
    priority: Priority | None = None
    owner: str | None = Field(default=None, min_length=1, max_length=200)
    since: AwareDatetime | None = Field(
        default=None, description="Only jobs that reached their state (or were submitted) from then"
    )
    until: AwareDatetime | None = Field(default=None, description="Only jobs up to then (as `since`)")
    text: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Only jobs with this text in their id, kind, owner, params or error",
    )
    delayed: bool = Field(default=False, description="Only jobs waiting for a time still ahead")
    group: str | None = Field(
        default=None, min_length=1, max_length=1000, description="Only failed jobs of this error group"
    )
    top_level: bool = Field(
        default=False, description="Only jobs that are no other job's child (as the dashboard lists them)"
    )


class BulkParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Action
    ids: list[str] | None = Field(
        default=None, min_length=1, description="These jobs (the selected rows); or give `filter`"
    )
    filter: BulkFilter | None = Field(default=None, description="Every job this matches; or give `ids`")
    limit: int = Field(ge=1, description="Act on at most this many jobs")


def matches_none(params: BulkParams) -> bool:
    """A filter whose state the action never applies to (retrying running jobs, say)."""
    state = params.filter.state if params.filter else None
    return state is not None and state not in ACTS_ON[params.action]


def without_bulk(names: list[str]) -> list[str]:
    """Kind names as people read them: every worker serves bulk actions and batches (jobcast's own
    kinds), so saying so is noise."""
    return [name for name in names if name not in OWN_KINDS]
