"""What a job kind is: a params schema, an async `run`, and its retry and timeout policy."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import AsyncIterable, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from pydantic import BaseModel

from jobcast.errors import JobcastError, OutputLimitExceeded
from jobcast.files.local import JobFiles
from jobcast.limits import Rate
from jobcast.schedule import Schedule
from jobcast.tree import Child, ChildOutcome

if TYPE_CHECKING:
    from concurrent.futures import Executor

    from jobcast.settings import Settings

P = TypeVar("P", bound=BaseModel)


class ProgressReporter(Protocol):
    """`ctx.progress`: how job code reports progress (the worker's coalescing publisher)."""

    async def update(self, current: float, total: float | None = None, message: str | None = None) -> None:
        """Record progress; at most JOBCAST_PROGRESS_RATE_HZ events a second reach watchers."""

    def report(self, current: float, total: float | None = None, message: str | None = None) -> None:
        """`update` for code on the event loop that cannot await."""


# `ctx.log` outside a worker (a worker gives each attempt a logger of its own).
JOB_LOG = logging.getLogger("jobcast.job")


class OutputWriter(Protocol):
    """`ctx.output(name)`: one of the job's output streams. Nothing written is dropped, reordered
    or coalesced away; writes are batched into events (`JOBCAST_OUTPUT_FLUSH_MS`). Past
    `JOBCAST_MAX_OUTPUT_BYTES` a write raises `jobcast.errors.OutputLimitExceeded`."""

    async def write(self, text: str) -> None:
        """Write text (waits only while much is pending)."""

    def write_nowait(self, text: str) -> None:
        """Write text from the event loop's thread, without awaiting."""

    def write_threadsafe(self, text: str) -> None:
        """Write text from any thread."""

    async def pipe(self, source: AsyncIterable[str]) -> str:
        """Write each piece of an async iterable (an LLM client's tokens); returns the whole text."""

    async def flush(self) -> None:
        """Wait until everything written is sent."""


class Children(Protocol):
    """What `ctx.spawn` and `ctx.children` stand on (the worker's jobs/children.py)."""

    async def spawn_many(self, children: Sequence[Child]) -> list[str]: ...

    async def outcomes(self) -> list[ChildOutcome]: ...


class PermanentError(JobcastError):
    """Raise from job code for an error that another attempt cannot fix: the job fails at once."""


@dataclass(frozen=True, slots=True)
class JobContext:
    """What job code gets besides its params."""

    job_id: str
    attempt: int
    progress: ProgressReporter
    files: JobFiles
    # For CPU-bound work: a process pool the worker owns (see the aggregate kind).
    cpu: Executor
    # The attempt's output streams, by name (`output`); None outside a worker.
    outputs: Callable[[str], OutputWriter] | None = None
    # The job's log: records go to the worker's log and to the job's `log` output stream.
    log: logging.Logger = JOB_LOG
    # Making children and reading how they ended; None outside a worker.
    tree: Children | None = None

    async def spawn(
        self,
        kind: str,
        params: Mapping[str, Any] | BaseModel,
        *,
        priority: str | None = None,
        fail_fast: bool = False,
    ) -> str:
        """Start a child job (docs/kinds.md#children); returns its id. Once `run` returns, the job
        waits for its children without a worker slot, and the kind's `then` gets how each ended.
        `fail_fast`: this child's failure (after its own retries) fails the job at once and
        cancels its other children."""
        (made,) = await self.spawn_many([Child(kind, params, priority=priority, fail_fast=fail_fast)])
        return made

    async def spawn_many(self, children: Sequence[Child]) -> list[str]:
        """Start many children in one round trip; their ids, in order. Made once however often
        this part of the job runs again (a retry makes the same children, not more)."""
        if self.tree is None:
            raise RuntimeError("children are made only while a worker runs the job")
        return await self.tree.spawn_many(children)

    async def children(self) -> list[ChildOutcome]:
        """How each child ended (or stands), in the order they were made."""
        if self.tree is None:
            raise RuntimeError("children are read only while a worker runs the job")
        return await self.tree.outcomes()

    def output(self, name: str = "output") -> OutputWriter:
        """A named output stream of this attempt (docs/output.md): text watchers get as it is
        written, kept whole for the job's retention."""
        if self.outputs is None:
            raise RuntimeError("job output is written only while a worker runs the job")
        return self.outputs(name)


@dataclass(frozen=True, slots=True)
class Kind(Generic[P]):
    name: str
    title: str
    params: type[P]
    run: Callable[[JobContext, P], Awaitable[Any]]
    max_attempts: int = 3
    timeout_s: float = 600.0
    # Errors that are never worth another attempt, besides PermanentError.
    no_retry: tuple[type[BaseException], ...] = ()
    # Kinds whose input is an uploaded file: submitted as multipart/form-data with a `file` part.
    takes_upload: bool = False
    description: str = ""
    # The CPU-seconds one attempt is estimated to take with these params, counted against the
    # owner's hourly budget (JOBCAST_CPU_BUDGET_S_PER_HOUR). Kinds that can burn much CPU on one
    # small request should say; None costs nothing.
    cost: Callable[[P], float] | None = None
    # Recurring jobs of this kind, declared with the code (operators pause and resume them on the
    # Schedules page; others are made over /api/schedules).
    schedules: Sequence[Schedule] = ()
    # Unique while active: params whose values make a job's unique key, so that a submission
    # while a job with the same values waits or runs gets that job (a submission's own
    # `unique_key` takes precedence). Empty: only submissions that give a key are unique.
    unique_by: Sequence[str] = ()
    # Jobs of this kind running at once across the deployment (None: no limit); the others wait,
    # without a worker slot, and say why (JOBCAST_KIND_MAX_RUNNING overrides it).
    max_running: int | None = None
    # Jobs of this kind started per interval, for a downstream API's limit: `Rate(5, 1.0)` is at
    # most 5 in any second (JOBCAST_KIND_RATE_LIMITS overrides it).
    rate_limit: Rate | None = None
    # The continuation of a job whose `run` made children (`ctx.spawn`): called once they have all
    # ended, on any worker, with how each ended; what it returns is the job's result. Without it,
    # the job succeeds when every child did and fails otherwise.
    then: Callable[[JobContext, P, list[ChildOutcome]], Awaitable[Any]] | None = None

    def __post_init__(self) -> None:
        # Kept as a tuple: a Kind is frozen, and hashable.
        object.__setattr__(self, "schedules", tuple(self.schedules))
        object.__setattr__(self, "unique_by", tuple(self.unique_by))
        unknown = set(self.unique_by) - set(self.params.model_fields)
        if unknown:
            raise ValueError(f"unique_by names params {self.name} does not take: {sorted(unknown)}")
        for schedule in self.schedules:
            self.params.model_validate(schedule.params)
        if self.max_running is not None and self.max_running < 1:
            raise ValueError(f"max_running of {self.name} must be 1 or more (None: no limit)")

    def estimated_cost(self, params: P) -> float:
        """The CPU-seconds one attempt with these params is estimated to take (0: not said)."""
        return float(self.cost(params)) if self.cost is not None else 0.0

    def unique_key(self, params: dict[str, Any]) -> str | None:
        """The unique key these (validated, JSON) params make, by `unique_by`; None: not unique."""
        if not self.unique_by:
            return None
        return json.dumps([params.get(name) for name in self.unique_by], sort_keys=True)

    def should_retry(self, error: BaseException, attempt: int) -> bool:
        # Output past its limit would be again: an attempt writes what the one before it did.
        if isinstance(error, (PermanentError, OutputLimitExceeded, *self.no_retry)):
            return False
        return attempt < self.max_attempts

    def schema(self) -> dict[str, Any]:
        return self.params.model_json_schema()

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "max_attempts": self.max_attempts,
            "timeout_s": self.timeout_s,
            "takes_upload": self.takes_upload,
            "params_schema": self.schema(),
        }


def configure(kinds: Mapping[str, Kind], settings: Settings) -> dict[str, Kind]:
    """The kinds with the operator's per-kind overrides (JOBCAST_KIND_TIMEOUTS_S,
    JOBCAST_KIND_MAX_ATTEMPTS, JOBCAST_KIND_MAX_RUNNING and JOBCAST_KIND_RATE_LIMITS) applied."""
    out = {}
    for name, kind in kinds.items():
        changes: dict[str, Any] = {}
        if name in settings.kind_timeouts_s:
            changes["timeout_s"] = settings.kind_timeouts_s[name]
        if name in settings.kind_max_attempts:
            changes["max_attempts"] = settings.kind_max_attempts[name]
        if name in settings.kind_max_running:
            changes["max_running"] = settings.kind_max_running[name] or None
        if name in settings.kind_rate_limits:
            rate = settings.kind_rate_limits[name]
            changes["rate_limit"] = None if rate == "off" else Rate.parse(rate)
        out[name] = dataclasses.replace(kind, **changes) if changes else kind
    return out
