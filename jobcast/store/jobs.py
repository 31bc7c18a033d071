"""Job records, per-job event history, indexes and publishing, all in Redis.

Every write that must be atomic is one Lua script (see jobcast/store/lua/, called through
jobcast/store/scripts.py): publishing assigns the seq, appends history, updates the snapshot and indexes
and PUBLISHes together, so history order always equals live order; submission, cancel, a worker's
claim, lease renewal and finish are scripts for the same reason.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Protocol, cast

import orjson
from redis.asyncio import Redis

from jobcast import tracing
from jobcast.errors import (
    ActiveDuplicate,
    AlreadyRetried,
    IdempotentReplay,
    NotRetryable,
    ParentEnded,
    RateLimited,
    SubmitRefused,
    TooManyChildren,
    TooManyWaiting,
)
from jobcast.protocol import (
    STATE_AFTER,
    TERMINAL_STATES,
    TERMINAL_TYPES,
    WAITING_STATES,
    EventType,
    Keys,
    Priority,
    State,
    dumps,
    epoch_ms,
    event_head,
    event_template,
    from_epoch_ms,
    isoformat,
    loads,
    new_job_ids,
    now_iso,
    split_record,
    utcnow,
)
from jobcast.redis.client import awaited
from jobcast.redis.shards import Shard, sharded_job_ids
from jobcast.settings import Settings
from jobcast.snapshot import ChildCounts, JobSnapshot, ProgressSnapshot, SnapshotLinks
from jobcast.store.coalescing import Coalescer
from jobcast.store.output import Outputs
from jobcast.store.quota import DiskQuota
from jobcast.store.records import RECORD_FIELDS, JobRecord, record_from
from jobcast.store.scripts import Answer, Scripts, Status, as_text, text
from jobcast.tree import ChildOutcome, TreePlace

_JSON_FIELDS = ("params", "progress", "result", "error")
_EMPTY_PROGRESS: ProgressSnapshot = {"current": 0, "total": None, "percent": None, "message": None}


def json_serializer(value: Any) -> bytes:
    """arq's serializer: JSON, never pickle (a queue must not execute what it reads). jobcast
    keeps no arq payloads or results; anything arq would write still goes through this."""
    return orjson.dumps(value, default=repr)


def json_deserializer(raw: bytes) -> Any:
    return loads(raw)


# What the web adds to a job's snapshot: its URLs (`links`) and, in owner mode, a `stream_token`.
# The web server gives the store its own (server/api/links.py); the data layer knows no URL shapes.
Links = Callable[[str], SnapshotLinks]


def no_links(job_id: str) -> SnapshotLinks:
    return {"links": {}, "stream_token": None}


# The record's fields a snapshot shows (a job's hash also holds tracebacks, kept out of it).
_SNAPSHOT_FIELDS = frozenset(
    {
        *_JSON_FIELDS,
        *("kind", "state", "priority", "attempt", "max_attempts", "created_at", "run_at", "started_at"),
        *("first_started_at", "next_attempt_at", "finished_at", "cancel_requested", "retry_of"),
        *("retried_by", "owner", "submitted_by", "schedule", "scheduled_for", "waiting", "waiting_since"),
        "seq",
        "timeout_s",
        *("parent", "kids", "kids_running", "kids_succeeded", "kids_failed", "kids_cancelled"),
    }
)


def is_record(raw: dict[bytes, bytes] | None) -> bool:
    """Whether a job's hash is its record: one that holds its kind and state. (A field written to
    the key of a job that has gone, such as a claim's waiting reason, leaves a hash that is not.)"""
    return raw is not None and bool(raw.get(b"kind")) and bool(raw.get(b"state"))


def build_snapshot(job_id: str, raw: dict[bytes, bytes], links: Links = no_links) -> JobSnapshot:
    """The public job snapshot from the job's record (`is_record`)."""
    text = {}
    for key, value in raw.items():
        name = key.decode()
        if value and name in _SNAPSHOT_FIELDS:
            text[name] = value.decode()
    parsed = {name: loads(text[name]) for name in _JSON_FIELDS if name in text}
    return snapshot_of(job_id, text, parsed, links)


def snapshot_of(
    job_id: str, text: dict[str, Any], parsed: dict[str, Any], links: Links = no_links
) -> JobSnapshot:
    """The public job snapshot from a record's fields (`text`: absent or empty when unset) and its
    JSON fields already parsed (`parsed`)."""
    get = text.get
    made = links(job_id)
    return {
        "id": job_id,
        "kind": text["kind"],
        "params": parsed.get("params"),
        "state": text["state"],
        "priority": get("priority") or Priority.DEFAULT.value,
        "progress": parsed.get("progress") or _EMPTY_PROGRESS.copy(),
        "attempt": int(get("attempt") or 0),
        "max_attempts": int(get("max_attempts") or 0) or None,
        "timeout_s": float(get("timeout_s") or 0) or None,
        "created_at": get("created_at") or None,
        "run_at": get("run_at") or None,
        "started_at": get("started_at") or None,
        "first_started_at": get("first_started_at") or None,
        "next_attempt_at": get("next_attempt_at") or None,
        "finished_at": get("finished_at") or None,
        "cancel_requested": bool(get("cancel_requested")),
        "result": parsed.get("result"),
        "error": parsed.get("error"),
        "retry_of": get("retry_of") or None,
        "retried_by": get("retried_by") or None,
        "owner": get("owner") or None,
        "submitted_by": get("submitted_by") or None,
        "schedule": get("schedule") or None,
        "scheduled_for": get("scheduled_for") or None,
        # Only while it waits: a job that ended while held back keeps the field, not the reason.
        "waiting": (waiting := (get("waiting") or None) if get("state") in WAITING_STATES else None),
        "waiting_since": waiting_since(get("waiting_since")) if waiting else None,
        "parent": get("parent") or None,
        "children": child_counts(text),
        "last_event_id": int(get("seq") or 0),
        "links": made["links"],
        "stream_token": made["stream_token"],
    }


def child_counts(text: dict[str, Any]) -> ChildCounts | None:
    """A parent's children by state (as tree.lua's `child_counts`); None for a job without any."""
    total = int(text.get("kids") or 0)
    if not total:
        return None
    running, succeeded, failed, cancelled = (
        int(text.get(f"kids_{name}") or 0) for name in ("running", "succeeded", "failed", "cancelled")
    )
    waiting = max(0, total - running - succeeded - failed - cancelled)
    return {
        "total": total,
        "waiting": waiting,
        "running": running,
        "succeeded": succeeded,
        "failed": failed,
        "cancelled": cancelled,
    }


def waiting_since(ms: str | None) -> str | None:
    """When a hold began (ISO 8601), from the epoch ms the claim wrote."""
    return isoformat(from_epoch_ms(int(ms))) if ms and ms.isdigit() else None


@dataclass(slots=True)
class Replay:
    """What a watcher joining at `since` must be sent before live events."""

    snapshot: JobSnapshot
    records: list[bytes] = field(default_factory=list)
    # True when history no longer reaches back to since+1: send the snapshot instead of records.
    needs_snapshot: bool = False

    @property
    def head_seq(self) -> int:
        return int(self.snapshot["last_event_id"])

    @property
    def terminal(self) -> bool:
        return self.snapshot["state"] in TERMINAL_STATES


# Between the records a compacted job keeps (jobcast/store/lua/compact.lua).
COMPACTED_SEPARATOR = b"\x1e"


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """Part of a history (a job's or the feed's): records after some seq, read with the head."""

    head: int
    records: list[bytes]
    oldest: int | None
    # The job ended long enough ago that its history holds only its state changes and last progress.
    compacted: bool = False

    @classmethod
    def read(cls, answer: list[Any], after: int, limit: int | None) -> HistoryPage:
        """The page jobcast/store/lua/history.lua answered: `[head, compacted, oldest, record...]`."""
        head, compacted, oldest, *records = answer
        if compacted is not None:
            return cls.compacted_from(int(head or 0), compacted, after, limit)
        return cls(int(head or 0), records, oldest)

    @classmethod
    def compacted_from(cls, head: int, kept: bytes, after: int, limit: int | None) -> HistoryPage:
        """A compacted job's page, from the records its `compacted` field keeps (see
        jobcast/store/lua/compact.lua)."""
        records = kept.split(COMPACTED_SEPARATOR) if kept else []
        oldest = split_record(records[0])[0] if records else None
        later = [r for r in records if split_record(r)[0] > after]
        return cls(head, later if limit is None else later[:limit], oldest, compacted=True)

    def misses(self, after: int) -> bool:
        """History cannot continue a reader at `after`: it was trimmed, compacted or expired past
        it, or `after` is beyond the head (an id from data Redis has lost, or from elsewhere)."""
        if after > self.head:
            return True
        if self.compacted and after < self.head:
            return True
        return self.head > after and (self.oldest is None or self.oldest > after + 1)


class HandOff(Protocol):
    """What a worker does with the slot a job's end frees (JobStore.publish): the claim's arguments
    (jobcast/store/lua/claim.lua; None: nothing to claim), and the jobs claimed with them, with
    whether any job is still held back by a limit (`held`)."""

    def claim_args(self) -> dict[str, Any] | None: ...

    def claimed(self, holder: str, jobs: list[Any], held: bool) -> None: ...

    def leaving(self) -> dict[str, str]:
        """The running sets the ending job leaves ({kind, owner}), as its lease ends."""
        ...


class Lease(Protocol):
    """A worker's lease on a job (its claim), which a terminal event may end (JobStore.publish),
    handing its slot on when `hand_off` says so."""

    holder: str
    priority: str
    released: bool
    hand_off: HandOff | None


@dataclass(frozen=True, slots=True)
class Submission:
    """A validated request for a job."""

    kind: str
    params: dict[str, Any]
    priority: Priority = Priority.DEFAULT
    delay_s: float = 0.0
    max_attempts: int = 0
    # The kind's time limit for one attempt (0: not said), for the ETAs a page shows.
    timeout_s: float = 0.0
    # The kind's estimate of the CPU-seconds it takes (counted against the owner's hourly budget).
    cost_s: float = 0.0
    # While a job of this key (and owner, and kind) waits or runs, a new submission gets it.
    unique_key: str | None = None

    @classmethod
    def again(
        cls, old: JobSnapshot, *, max_attempts: int, cost_s: float, timeout_s: float = 0.0
    ) -> Submission:
        """The submission that retries `old` (a job's snapshot): its kind, params and priority."""
        priority = Priority(old["priority"])
        # A job that can be retried has both: the retry script refuses one that is gone.
        return cls(
            old["kind"] or "",
            old["params"] or {},
            priority=priority,
            max_attempts=max_attempts,
            timeout_s=timeout_s,
            cost_s=cost_s,
        )

    def fingerprint(self) -> str:
        """Identifies the request body, so a reused idempotency key with another body is caught."""
        body = {"kind": self.kind, "params": self.params, "priority": self.priority, "delay_s": self.delay_s}
        return hashlib.sha256(dumps(body)).hexdigest()


@dataclass(frozen=True, slots=True)
class CancelOutcome:
    """`ended`: the job was already over (409); `requested`: its worker is stopping it."""

    found: bool
    cancelled: bool = False
    requested: bool = False
    ended_as: str | None = None


@dataclass(frozen=True, slots=True)
class Queued:
    """What a job submitted at some moment, to start after some delay, is created with: its
    times, and its `queued` event's JSON after the seq."""

    created_at: str
    run_at: str | None
    ready_ms: int
    tail: str


@lru_cache(maxsize=64)
def _queued(created: datetime, delay_s: float) -> Queued:
    # Cached: a batch's jobs share their moment, and mostly their delay.
    run_at = created + timedelta(seconds=delay_s)
    created_at = isoformat(created)
    due = isoformat(run_at) if delay_s else None
    extra = {"run_at": due} if due else None
    _, tail = event_template("", EventType.QUEUED, attempt=0, ts=created_at, extra=extra)
    return Queued(created_at, due, epoch_ms(run_at), text(tail))


@dataclass(frozen=True, slots=True)
class CreateCall:
    """One submission as the create script takes it, and how to read its answer."""

    job_id: str
    keys: dict[str, str]
    args: dict[str, Any]
    record: dict[str, Any]
    params: dict[str, Any]
    # Only a call with an idempotency key has one (it is what a repeat of the key is compared by).
    fingerprint: str | None

    def outcome(self, answer: Any, links: Links) -> JobSnapshot:
        """The new job's snapshot; raises the SubmitRefused the answer means."""
        status = answer.status
        if status is Status.ACTIVE_DUPLICATE:
            raise ActiveDuplicate(answer["id"])
        if status is Status.KEY_REUSED:
            raise IdempotentReplay(answer["id"], answer["fingerprint"] == self.fingerprint)
        if status is Status.TOO_MANY_WAITING:
            raise TooManyWaiting(int(answer["waiting"]), bool(answer["delayed"]), bool(answer.get("owner")))
        if status is Status.RATE_LIMITED:
            raise RateLimited(max(1, int(answer["retry_after_ms"])) / 1000, bool(answer.get("budget")))
        if status is Status.ALREADY_RETRIED:
            raise AlreadyRetried(answer["id"])
        if status in (Status.ORIGINAL_GONE, Status.NOT_RETRYABLE):
            raise NotRetryable(answer.get("state"))
        if status is Status.PARENT_ENDED:
            raise ParentEnded(self.record.get("parent", ""))
        if status is Status.TOO_MANY_CHILDREN:
            raise TooManyChildren(int(answer["limit"]))
        if status is Status.ALREADY_SPAWNED:
            # An earlier attempt of its parent made it: the same child, not another.
            return self.snapshot(0, links)
        return self.snapshot(int(answer["seq"]), links)

    def snapshot(self, seq: int, links: Links) -> JobSnapshot:
        """The new job's snapshot, as `build_snapshot` reads it back from Redis, built from what
        the call wrote (a batch answers a thousand of these: no round trip through bytes)."""
        state = State.WAITING_CHILDREN if self.args.get("awaits_children") else State.QUEUED
        text = {**self.record, "state": state.value, "seq": seq}
        snapshot = snapshot_of(self.job_id, text, {"params": self.params}, links)
        snapshot["output"] = {}  # one job's snapshot, as GET /api/jobs/{id} answers it
        return snapshot


@dataclass(slots=True)
class Page:
    jobs: list[JobSnapshot]
    next_cursor: str | None
    # Each job's (score, id) in the index walked: where it stands among other shards' jobs.
    positions: list[tuple[float, str]] = field(default_factory=list)


class JobStore:
    """Reads and writes jobcast's Redis data; shared by the web server and the workers."""

    def __init__(
        self, redis: Redis, settings: Settings, links: Links = no_links, shard: Shard | None = None
    ) -> None:
        """`shard`: which shard of a sharded deployment this store reads and writes (its keys'
        prefix, and the ids it gives new jobs); jobcast/store/shards.py makes them."""
        self.redis = redis
        self.settings = settings
        self.links = links
        self.shard = shard
        self.keys = Keys(settings.redis_key_prefix if shard is None else shard.prefix)
        self.scripts = Scripts(redis, self.keys, settings)
        self.output = Outputs(redis, self.scripts, self.keys, settings)
        self.quota = DiskQuota(self.scripts, settings.disk_quota_bytes, settings.anonymous_owners_per_address)
        # Submissions made while a create call is on its way go together in the next: a web
        # process's concurrent single submissions cost Redis one script call per hundred, as a batch
        # does, rather than one each.
        self._creates: Coalescer[tuple[dict[str, str], dict[str, Any]], Answer] = Coalescer(
            self._create_calls, settings.create_chunk_jobs, "create-batch"
        )
        # The create script's limits, the same for every job of a call (see create.lua).
        self._create_limits = {
            "idempotency_ttl_s": settings.idempotency_ttl_s,
            "limit": settings.max_waiting_jobs,
            "delayed_limit": settings.max_delayed_jobs,
            "rate_limit": settings.max_submissions_per_minute,
            "owner_limit": settings.max_waiting_per_owner,
            "cost_budget": settings.cpu_budget_s_per_hour,
            # An anonymous client address's: its identities share this many owners' limits.
            "client_limit": settings.max_waiting_per_owner * settings.anonymous_owners_per_address,
            "client_rate_limit": settings.max_submissions_per_minute * settings.anonymous_owners_per_address,
            "client_cost_budget": settings.cpu_budget_s_per_hour * settings.anonymous_owners_per_address,
            "max_children": settings.tree_max_children,
        }

    def event_keys(self, job_id: str, owner: str | None = None) -> dict[str, str]:
        """The keys an event of the job is written to (see `publish` in jobcast/store/lua/common.lua):
        with an owner, the owner's feed too."""
        keys = {
            "job": self.keys.job(job_id),
            "history": self.keys.history(job_id),
            "channel": self.keys.channel(job_id),
        }
        if owner is not None:
            feed = self.keys.feed(owner)
            keys.update(
                owner_feed=feed.channel, owner_feed_history=feed.history, owner_feed_position=feed.position
            )
        return keys

    @staticmethod
    def _event_fields(
        type_: EventType,
        ts: str,
        progress: dict[str, Any] | None,
        result: Any,
        error: dict[str, str] | None,
        extra: dict[str, Any] | None,
    ) -> list[str]:
        fields: dict[str, Any] = {}
        if progress is not None:
            fields["progress"] = dumps(progress)
        if type_ in TERMINAL_TYPES:
            fields.update(finished_at=ts, result=dumps(result), error=dumps(error), next_attempt_at="")
        elif type_ is EventType.STARTED:
            fields.update(started_at=ts, error=b"", next_attempt_at="", waiting="", waiting_since="")
        elif type_ is EventType.RETRYING:
            fields["error"] = dumps(error)
        for name, value in (extra or {}).items():
            fields[name] = value if isinstance(value, str | bytes | int | float) else dumps(value)
        return [as_text(item) for pair in fields.items() for item in pair]

    async def publish(
        self,
        job_id: str,
        type_: EventType,
        *,
        owner: str | None = None,
        release: Lease | None = None,
        **fields: Any,
    ) -> int:
        """Publish one event of a job (of `owner`); returns its seq, or 0 if refused (job ended or
        attempt stale). `fields` are those of `event`.

        With `release`, a terminal event also ends the worker's lease on the job and drops arq's
        keys, in the same script (what finishing the job would do in a round trip of its own),
        provided the lease is still `release.holder`'s; `release.released` then turns true. With
        `release.hand_off`, the same script claims the jobs a limit held back that the job's end
        lets start, for the slot it frees (jobcast/store/lua/hand_off.lua)."""
        keys = self.event_keys(job_id, owner)
        args = self.event(job_id, type_, **fields)
        script, claim = "publish", None
        if type_ is EventType.WAITING_CHILDREN:
            # The job's slot is free while it waits: its lease ends with this event.
            script = "wait_children"
            if release is not None:
                args["release"] = {"owner": release.holder, "priority": release.priority}
        if release is not None and type_ in TERMINAL_TYPES:
            args["release"] = {"owner": release.holder, "priority": release.priority}
            if release.hand_off is not None:
                args["release"]["leave"] = release.hand_off.leaving()
                if (claim := release.hand_off.claim_args()) is not None:
                    script, args["claim"] = "hand_off", claim
                    # The claim's clock is the instant its `started` events say (see dispatch).
                    args["now_ms"] = claim.pop("now_ms")
        answer = await self.scripts.call(script, keys, **args)
        if answer.status is not Status.PUBLISHED:
            return 0
        if release is not None and answer.get("released"):
            release.released = True
            if claim is not None and release.hand_off is not None:
                release.hand_off.claimed(claim["owner"], answer.get("jobs") or [], answer.get("held", True))
        return int(answer["seq"])

    def event(
        self,
        job_id: str,
        type_: EventType,
        *,
        attempt: int,
        fence: int | None = None,
        progress: dict[str, Any] | None = None,
        result: Any = None,
        error: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
        from_state: State | None = None,
    ) -> dict[str, Any]:
        """The publish script's named arguments for one event.

        `fence` defaults to `attempt` (for `started`: the attempt before it); -1 publishes
        unconditionally. With `from_state`, the event is refused unless the job is in it."""
        ts = now_iso()
        if fence is None:
            fence = attempt - 1 if type_ is EventType.STARTED else attempt
        head, tail = event_template(
            job_id, type_, attempt=attempt, progress=progress, result=result, error=error, ts=ts, extra=extra
        )
        event = {
            "id": job_id,
            "type": type_.value,
            "state": STATE_AFTER[type_].value,
            "head": text(head),
            "tail": text(tail),
            "fence": fence,
            "fields": self._event_fields(type_, ts, progress, result, error, extra),
        }
        if from_state is not None:  # absent, not null: Lua's cjson null is truthy
            event["from_state"] = from_state.value
        if progress is not None and progress.get("total"):
            # What a child's progress adds to its parent's rolled-up bar (tree.lua).
            event["cur"], event["tot"] = progress.get("current") or 0, progress["total"]
        return event

    def new_ids(self, count: int) -> list[str]:
        """Ids for new jobs of this store: on a shard, ids that name it."""
        return new_job_ids(count) if self.shard is None else sharded_job_ids(count, self.shard.number)

    async def create(self, job_id: str, submission: Submission, **options: Any) -> JobSnapshot:
        """Submit a job: the record, its `queued` event, its indexes and its place in the queue in
        one script, so a job is either fully submitted or not at all. Returns the
        new job's snapshot; raises a SubmitRefused when no job was created. `options` are those of
        `create_call`."""
        call = self.create_call(job_id, submission, **options)
        (answer,) = await self._creates.submit([(call.keys, call.args)])
        return call.outcome(answer, self.links)

    async def create_many(self, calls: list[CreateCall]) -> list[JobSnapshot | SubmitRefused]:
        """Many submissions in one round trip, each atomic on its own: each one's snapshot, or the
        SubmitRefused that says why it made no job."""
        items = [(call.keys, call.args) for call in calls]
        # A batch as large as a script call takes is one already: it goes at once, beside any
        # call on its way, rather than waiting its turn behind it.
        big = len(items) >= self.settings.create_chunk_jobs
        answers = await (self._create_calls(items) if big else self._creates.submit(items))
        return self._outcomes(calls, answers)

    def _outcomes(self, calls: list[CreateCall], answers: list[Answer]) -> list[JobSnapshot | SubmitRefused]:
        out: list[JobSnapshot | SubmitRefused] = []
        for call, answer in zip(calls, answers, strict=True):
            try:
                out.append(call.outcome(answer, self.links))
            except SubmitRefused as refused:
                out.append(refused)
        return out

    async def _create_calls(self, calls: list[tuple[dict[str, str], dict[str, Any]]]) -> list[Answer]:
        return await self.scripts.call_batch(
            "create", calls, self.settings.create_chunk_jobs, self._create_limits
        )

    async def create_tree(self, calls: list[CreateCall]) -> list[JobSnapshot | SubmitRefused]:
        """A tree's jobs (its root first, each parent before its children) in one script call:
        all of them are made, or, when the root is refused, none."""
        answers = await self.scripts.call_batch(
            "create", [(call.keys, call.args) for call in calls], len(calls), self._create_limits
        )
        return self._outcomes(calls, answers)

    async def children(self, job_id: str, offset: int = 0, limit: int = -1) -> list[str]:
        """A parent's children's ids in the order they were made, `limit` from `offset` (-1: all)."""
        stop = -1 if limit < 0 else offset + limit - 1
        ids = await awaited(self.redis.lrange(self.keys.children(job_id), offset, stop))
        return [i.decode() if isinstance(i, bytes) else i for i in ids]

    async def child_outcomes(self, job_id: str) -> list[ChildOutcome]:
        """How each of a parent's children ended (or stands), in the order they were made."""
        ids = await self.children(job_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            for child in ids:
                pipe.hmget(self.keys.job(child), ["kind", "state", "result", "error"])
            rows = await pipe.execute()
        out = []
        for child, (kind, state, result, error) in zip(ids, rows, strict=True):
            out.append(
                ChildOutcome(
                    id=child,
                    kind=kind.decode() if kind else "",
                    state=state.decode() if state else "expired",
                    result=loads(result) if result else None,
                    error=loads(error) if error else None,
                )
            )
        return out

    async def publish_due_rollups(self, most: int = 100) -> int:
        """Publish the parents' rolled-up bars the progress rate put off; returns when the next is
        due (epoch ms; -1: none)."""
        answer = await self.scripts.call("rollup", {}, max=most)
        return int(answer["next_ms"])

    async def aclose(self) -> None:
        """Wait for the submissions and output on their way (the process is closing)."""
        await self._creates.aclose()
        await self.output.aclose()

    def create_call(
        self,
        job_id: str,
        submission: Submission,
        *,
        idempotency_key: str | None = None,
        retry_of: str | None = None,
        request_id: str | None = None,
        owner: str | None = None,
        submitted_by: str | None = None,
        client: str | None = None,
        created: datetime | None = None,
        schedule: str | None = None,
        scheduled_for: str | None = None,
        tree: TreePlace | None = None,
    ) -> CreateCall:
        """The create script's keys and arguments for one submission, made at `created` (now by
        default; a batch's jobs share the moment they came). `client`: the anonymous client address
        the job also counts against (`@<address>`), for an anonymous owner. `schedule`: the
        schedule whose tick (`scheduled_for`, ISO 8601) made it. `tree`: its place in a tree of
        jobs (jobcast/tree.py)."""
        queued = _queued(created or utcnow(), submission.delay_s)
        kind, priority = submission.kind, submission.priority.value
        # The record's fields but params, as field/value pairs of text (a batch builds a thousand).
        fields = ["kind", kind, "priority", priority, "max_attempts", str(submission.max_attempts)]
        fields += ("created_at", queued.created_at)
        if submission.timeout_s > 0:
            fields += ("timeout_s", f"{submission.timeout_s:g}")
        optional = (
            ("run_at", queued.run_at),
            ("retry_of", retry_of),
            ("request_id", request_id),
            ("owner", owner),
            ("submitted_by", submitted_by),
            ("client", client),
            ("schedule", schedule),
            ("scheduled_for", scheduled_for),
            # Where the submission's trace goes on: the worker's spans are its children.
            ("traceparent", tracing.traceparent()),
            ("parent", tree.parent if tree else None),
            ("ff", "1" if tree and tree.fail_fast else None),
            ("after_children", "run" if tree and tree.awaits_children else None),
        )
        for name, value in optional:
            if value:
                fields += (name, value)
        keys = self._create_keys(job_id, kind, idempotency_key, retry_of, owner, submitted_by)
        if submission.unique_key is not None:
            scoped = f"{owner or ''}\n{submitted_by or ''}\n{kind}\n{submission.unique_key}"
            keys["unique"] = self.keys.unique(hashlib.sha256(scoped.encode()).hexdigest())
        if client is not None:
            keys["client_rate"] = self.keys.owner_rate(client, int(time.time() // 60))
            keys["client_cost"] = self.keys.owner_cost(client, int(time.time() // 3600))
        # Only what is this job's: the limits are the call's (`_create_limits`), and absent
        # options are left out, so a batch's thousand items stay small for Redis to decode.
        args: dict[str, Any] = {
            "id": job_id,
            "kind": kind,
            "priority": priority,
            "ready_ms": queued.ready_ms,
            "head": text(event_head(job_id)),
            "tail": queued.tail,
            "params": text(dumps(submission.params)),
            "record": fields,
        }
        fingerprint = None
        if idempotency_key is not None:
            args["fingerprint"] = fingerprint = submission.fingerprint()
        if owner:
            args["owner"] = owner
        if client:
            args["client"] = client
        if submission.cost_s:
            args["cost"] = submission.cost_s
        if tree is not None:
            args.update(tree.args())
            if tree.awaits_children:
                created_at = created or utcnow()
                _, tail = event_template("", EventType.WAITING_CHILDREN, attempt=0, ts=isoformat(created_at))
                args["tail"] = text(tail)
        record = dict(zip(fields[::2], fields[1::2], strict=True))
        return CreateCall(job_id, keys, args, record, submission.params, fingerprint)

    def _create_keys(
        self,
        job_id: str,
        kind: str,
        idempotency_key: str | None,
        retry_of: str | None,
        owner: str | None,
        submitted_by: str | None,
    ) -> dict[str, str]:
        """The create script's keys (see create.lua); optional ones only when they apply."""
        keys = {
            **self.event_keys(job_id, owner),
            "kind_index": self.keys.index_kind(kind),
        }
        if idempotency_key is not None:
            # Scoped to the owner and to who submitted for them: nobody can squat, or replay,
            # another caller's key.
            scoped = f"{owner or ''}\n{submitted_by or ''}\n{idempotency_key}"
            keys["idempotency"] = self.keys.idempotency(hashlib.sha256(scoped.encode()).hexdigest())
        if retry_of:
            keys["original"] = self.keys.job(retry_of)
        if owner is not None:
            keys["owner_index"] = self.keys.index_owner(owner)
            keys["owner_rate"] = self.keys.owner_rate(owner, int(time.time() // 60))
            keys["owner_cost"] = self.keys.owner_cost(owner, int(time.time() // 3600))
        if submitted_by is not None:
            keys["via_index"] = self.keys.index_submitted_by(submitted_by)
        return keys

    async def cancel(self, job_id: str) -> CancelOutcome:
        ts = now_iso()
        error = {"type": "Cancelled", "message": "cancelled on request"}
        head, tail = event_template(job_id, EventType.CANCELLED, attempt=0, error=error, ts=ts)
        fields = self._event_fields(EventType.CANCELLED, ts, None, None, error, None)
        # bytes: redis-py types replies as str, which they are only with decode_responses.
        owner = cast(bytes | None, await self.redis.hget(self.keys.job(job_id), "owner"))  # type: ignore[misc]  # see awaited()
        keys = {
            **self.event_keys(job_id, owner.decode() if owner else None),
        }
        event = {"id": job_id, "head": text(head), "tail": text(tail), "fields": fields}
        answer = await self.scripts.call("cancel", keys, event=event)
        status = answer.status
        if status is Status.NOT_FOUND:
            return CancelOutcome(found=False)
        if status is Status.ENDED:
            return CancelOutcome(found=True, ended_as=answer["state"])
        return CancelOutcome(
            found=True, cancelled=status is Status.CANCELLED, requested=status is Status.CANCEL_REQUESTED
        )

    async def load(self, job_id: str) -> JobRecord | None:
        return record_from(await awaited(self.redis.hmget(self.keys.job(job_id), RECORD_FIELDS)))

    async def keep_traceback(self, job_id: str, attempt: int, text: str) -> None:
        """A failed attempt's traceback, for operators only: a field of the job's hash (it expires
        with the job), never part of an event or a snapshot."""
        await awaited(self.redis.hset(self.keys.job(job_id), f"traceback:{attempt}", text))

    async def tracebacks(self, job_id: str, attempts: int) -> dict[int, str]:
        """The tracebacks kept for attempts 1 to `attempts`, by attempt."""
        if attempts < 1:
            return {}
        fields = [f"traceback:{n}" for n in range(1, attempts + 1)]
        values = await awaited(self.redis.hmget(self.keys.job(job_id), fields))
        return {n: v.decode() for n, v in enumerate(values, start=1) if v}

    async def snapshots(self, job_ids: list[str]) -> list[JobSnapshot]:
        """The snapshots of these jobs, in one round trip (jobs that no longer exist left out)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hgetall(self.keys.job(job_id))
            records = await pipe.execute()
        return [
            build_snapshot(j, raw, self.links)
            for j, raw in zip(job_ids, records, strict=True)
            if is_record(raw)
        ]

    async def snapshot(self, job_id: str, *, output: bool = True) -> JobSnapshot | None:
        """The job as it is now; with its `output` (each output stream's text so far) unless not
        asked for."""
        raw = await awaited(self.redis.hgetall(self.keys.job(job_id)))
        if not is_record(raw):
            return None
        snapshot = build_snapshot(job_id, raw, self.links)
        return await self.output.attach(snapshot, raw) if output else snapshot

    async def replay(self, job_id: str, since: int | None, limit: int) -> Replay | None:
        """Snapshot plus the first `limit` events of history after `since` (None: the watcher
        wants a snapshot first)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(self.keys.job(job_id))
            await self.read_history(self.keys.job(job_id), self.keys.history(job_id), since or 0, limit, pipe)
            raw, answer = await pipe.execute()
        if not is_record(raw):
            return None
        replay = Replay(snapshot=build_snapshot(job_id, raw, self.links))
        page = HistoryPage.read(answer, since or 0, limit)
        if since is None or page.misses(since):
            # No position, or one history cannot continue: only a snapshot is truthful, and it
            # carries the output so far.
            replay.needs_snapshot = True
            await self.output.attach(replay.snapshot, raw)
        else:
            replay.records = page.records
        return replay

    async def history_after(self, job_id: str, seq: int) -> tuple[list[bytes], int | None]:
        """Records after `seq`, and the oldest seq history still holds (None: no history)."""
        page = await self.history_page(job_id, seq, None)
        return page.records, page.oldest

    async def history_page(self, job_id: str, after: int, limit: int | None) -> HistoryPage:
        """Up to `limit` records after `after` (None: all), with the job's head seq and the oldest
        seq history still holds, read together."""
        answer = await self.read_history(self.keys.job(job_id), self.keys.history(job_id), after, limit)
        return HistoryPage.read(answer, after, limit)

    async def read_history(
        self, head: str, history: str, after: int, limit: int | None, pipe: Any = None
    ) -> Any:
        """jobcast/store/lua/history.lua's answer for a job's or a feed's history (with `pipe`: queued
        on it)."""
        keys = {"head": head, "history": history}
        return await self.scripts.read("history", keys, client=pipe, after=after, limit=limit or 0)
