"""The contract shared by producer (jobs/) and consumer (server/): states, event types, Redis key
and channel names, and the wire format of an event.

An event travels as one *record*: ``b"<seq>\\n<type>\\n<event JSON>"``. The same record is the
member stored in the job's history and the payload published on the job's channel, so the relay
routes it without parsing JSON and every watcher gets the very same JSON bytes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson


class State(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    # A parent whose children have not all ended: it holds no worker slot and is in no queue; the
    # end of its last child puts it back in its queue (jobcast/store/lua/tree.lua).
    WAITING_CHILDREN = "waiting_children"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_STATES = frozenset({State.SUCCEEDED, State.FAILED, State.CANCELLED})
# Waiting to start: queued, or between attempts (as `is_waiting` in jobcast/store/lua/common.lua).
WAITING_STATES = frozenset({State.QUEUED, State.RETRYING})


class Priority(StrEnum):
    HIGH = "high"
    DEFAULT = "default"
    LOW = "low"


class EventType(StrEnum):
    QUEUED = "queued"
    STARTED = "started"
    PROGRESS = "progress"
    RETRYING = "retrying"
    WAITING_CHILDREN = "waiting_children"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # A chunk of a job's output (a named text stream): in the job's stream, never in the feed.
    OUTPUT = "output"
    SNAPSHOT = "snapshot"


TERMINAL_TYPES = frozenset({EventType.SUCCEEDED, EventType.FAILED, EventType.CANCELLED})
TERMINAL_TYPE_BYTES = frozenset(t.value.encode() for t in TERMINAL_TYPES)

# The state a job is in right after an event of each type.
STATE_AFTER: dict[EventType, State] = {
    EventType.QUEUED: State.QUEUED,
    EventType.STARTED: State.RUNNING,
    EventType.PROGRESS: State.RUNNING,
    EventType.OUTPUT: State.RUNNING,
    EventType.RETRYING: State.RETRYING,
    EventType.WAITING_CHILDREN: State.WAITING_CHILDREN,
    EventType.SUCCEEDED: State.SUCCEEDED,
    EventType.FAILED: State.FAILED,
    EventType.CANCELLED: State.CANCELLED,
}


@dataclass(frozen=True, slots=True)
class Keys:
    """Redis key and channel names under one prefix."""

    prefix: str

    def job(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def history(self, job_id: str) -> str:
        """A job's events, oldest first (a list; earlier versions kept a sorted set under
        `history:`)."""
        return f"{self.prefix}:log:{job_id}"

    def old_history(self, job_id: str) -> str:
        """Where earlier versions kept a job's history, a sorted set (jobs/upkeep/migrate.py moves
        it)."""
        return f"{self.prefix}:history:{job_id}"

    def old_feed_history(self, owner: str | None = None) -> str:
        """Where earlier versions kept a feed's history, a sorted set (jobs/upkeep/migrate.py moves
        it)."""
        return f"{self.feed(owner).channel}:history"

    def channel(self, job_id: str) -> str:
        return f"{self.prefix}:events:{job_id}"

    def output(self, job_id: str, attempt: int, stream: str) -> str:
        """One attempt's text of one of the job's output streams (a string, appended to)."""
        return f"{self.prefix}:output:{job_id}:{attempt}:{stream}"

    @property
    def channel_prefix(self) -> bytes:
        return f"{self.prefix}:events:".encode()

    # Indexes for listing, newest first: all jobs and per kind by creation time, per state by the
    # time the job entered it.
    @property
    def index_all(self) -> str:
        return f"{self.prefix}:index:all"

    def index_state(self, state: str) -> str:
        return f"{self.prefix}:index:state:{state}"

    @property
    def index_top(self) -> str:
        """Jobs that are no other job's child (single jobs, trees' roots, batches), by creation
        time: what the dashboard lists unless asked for every part."""
        return f"{self.prefix}:index:top"

    @property
    def index_top_ready(self) -> str:
        """Set once `index_top` holds every retained job from before it existed (jobs/upkeep/migrate.py)."""
        return f"{self.prefix}:index:top:ready"

    @property
    def index_ids(self) -> str:
        """Every retained job id, scored 0, so ids are found by a prefix (`ZRANGEBYLEX`)."""
        return f"{self.prefix}:index:ids"

    def index_kind(self, kind: str) -> str:
        return f"{self.prefix}:index:kind:{kind}"

    def index_owner(self, owner: str) -> str:
        return f"{self.prefix}:index:owner:{owner}"

    def finished(self, span: str, bucket: int | str) -> str:
        """A hash of the jobs finished in one time bucket (`minute` or `hour` since the epoch):
        `<kind>|<final state>` to how many."""
        return f"{self.prefix}:finished:{span}:{bucket}"

    @property
    def kind_waiting(self) -> str:
        """A hash: `<kind>|<priority>` to how many of its jobs wait (queued, or between attempts)."""
        return f"{self.prefix}:kind-waiting"

    @property
    def owner_waiting(self) -> str:
        """A hash: each owner's count of waiting jobs (queued or between attempts)."""
        return f"{self.prefix}:owner-waiting"

    def owner_rate(self, owner: str, minute: int) -> str:
        """How many jobs an owner submitted in one minute (a fixed window; it expires)."""
        return f"{self.prefix}:rate:{owner}:{minute}"

    def owner_cost(self, owner: str, hour: int) -> str:
        """The estimated CPU time an owner submitted in one hour, in milliseconds (a fixed window;
        it expires). Named apart from the earlier `cost:` keys, which held seconds as floats."""
        return f"{self.prefix}:cost-ms:{owner}:{hour}"

    def revoked_session(self, session: str) -> str:
        """An admin session signed out before it expired (it expires when the session would)."""
        return f"{self.prefix}:revoked-session:{session}"

    @property
    def reaper_lock(self) -> str:
        """Held by the process whose reaper pass runs now (jobcast/store/reaper.py)."""
        return f"{self.prefix}:reaper-lock"

    def children(self, job_id: str) -> str:
        """A parent's children's ids, in the order they were made (a list)."""
        return f"{self.prefix}:children:{job_id}"

    @property
    def rollup_due(self) -> str:
        """Parents whose rolled-up progress changed since they last published it, scored by when
        the progress rate lets them publish again (ms)."""
        return f"{self.prefix}:rollup-due"

    @property
    def compact_due(self) -> str:
        """Finished jobs whose history is to be compacted, scored by when (ms)."""
        return f"{self.prefix}:compact-due"

    @property
    def disk_usage(self) -> str:
        """A hash: each owner's bytes of stored uploads and results (jobcast/store/quota.py)."""
        return f"{self.prefix}:disk:usage"

    @property
    def disk_charges(self) -> str:
        """A hash: each job's charge against its owner's quota (JSON: owner, bytes)."""
        return f"{self.prefix}:disk:charges"

    def index_submitted_by(self, service: str) -> str:
        """The jobs a service key submitted for its users."""
        return f"{self.prefix}:index:submitted-by:{service}"

    @property
    def index_clock(self) -> str:
        """The last index score given out (see `clock_score` in jobcast/store/lua/common.lua)."""
        return f"{self.prefix}:index:clock"

    def unique(self, digest: str) -> str:
        """The last job of a unique key (by its SHA-256, with its owner and kind), while it may be
        active."""
        return f"{self.prefix}:unique:{digest}"

    def idempotency(self, digest: str) -> str:
        """The job an Idempotency-Key (by its SHA-256) created, with the request's fingerprint."""
        return f"{self.prefix}:idempotency:{digest}"

    # The queue. A waiting job (queued, delayed, or between attempts) has one home: its priority's
    # queue, scored by when it may run (ms, with a fraction that keeps submission order). A
    # worker's claim moves it to `running`, scored by when its lease lapses; the lease's holder is
    # in `leases`. A lapsed lease puts the job back in its queue.
    def queue(self, priority: str) -> str:
        return f"{self.prefix}:queue:{priority}"

    def running(self, priority: str) -> str:
        return f"{self.prefix}:running:{priority}"

    # Fair dispatch between owners (owner mode, JOBCAST_FAIR_OWNERS): a waiting job is also in its
    # owner's queue for its priority (scored alike), and the owner in the priority's ring, scored by
    # its turn: a claim takes from the owners whose turn is lowest, one job each, and moves each
    # on by the jobs it took (jobcast/store/lua/dispatch.lua).
    def owner_queue(self, priority: str, owner: str) -> str:
        return f"{self.prefix}:queue:{priority}:owner:{owner}"

    def owner_ring(self, priority: str) -> str:
        return f"{self.prefix}:queue:{priority}:owners"

    @property
    def leases(self) -> str:
        """A hash: each running job's id to the name of the worker holding its lease."""
        return f"{self.prefix}:leases"

    # Schedules: `schedules` maps each schedule's id to its definition (JSON); `schedule:<id>`
    # is its state (the last tick it accounted for, its last job, its counts); a tick is claimed by
    # one process with `schedule-claim:<id>:<tick ms>` (jobcast/store/schedules.py).
    @property
    def schedules(self) -> str:
        return f"{self.prefix}:schedules"

    def schedule(self, schedule_id: str) -> str:
        return f"{self.prefix}:schedule:{schedule_id}"

    def schedule_claim(self, schedule_id: str, tick_ms: int) -> str:
        return f"{self.prefix}:schedule-claim:{schedule_id}:{tick_ms}"

    # Pausing a kind: `paused` maps each paused kind to when it was paused (ms). A claim that
    # finds a due job of a paused kind parks it in the kind's `parked` set (scored as it was in
    # its queue) instead of running it; resuming puts the parked jobs back (jobcast/store/pausing.py).
    @property
    def paused(self) -> str:
        return f"{self.prefix}:paused"

    def parked(self, kind: str) -> str:
        return f"{self.prefix}:parked:{kind}"

    # Limits (jobcast/store/limits.py). A running job of a kind with `max_running` is in the kind's
    # `running-kind` set, and in its owner's `running-owner` set when owners have a limit: a member
    # whose lease is gone is pruned when a claim counts. `started-kind` holds the starts of a
    # rate-limited kind within its interval (scored by when, ms). A due job a limit holds back
    # waits in `held-kind` (per owner, the owners' turns in its ring, so that they come back in
    # fair turns) or `held-owner`, scored as it was in its queue; `held` lists which kinds and
    # owners have jobs held (`kind=<kind>`, `owner=<owner>`), so that a claim takes them once the
    # limit allows.
    def kind_running(self, kind: str) -> str:
        return f"{self.prefix}:running-kind:{kind}"

    def owner_running(self, owner: str) -> str:
        return f"{self.prefix}:running-owner:{owner}"

    def kind_started(self, kind: str) -> str:
        return f"{self.prefix}:started-kind:{kind}"

    def kind_held(self, kind: str, owner: str) -> str:
        return f"{self.prefix}:held-kind:{kind}:owner:{owner}"

    def kind_held_ring(self, kind: str) -> str:
        """The owners with jobs of `kind` held, scored by their turn (as `owner_ring`)."""
        return f"{self.prefix}:held-kind:{kind}:owners"

    def owner_held(self, owner: str) -> str:
        return f"{self.prefix}:held-owner:{owner}"

    @property
    def held(self) -> str:
        return f"{self.prefix}:held"

    @property
    def claimed(self) -> str:
        """Jobs claimed so far, a counter: the dispatch rate a queue position's ETA is read from."""
        return f"{self.prefix}:claimed"

    @property
    def queue_clock(self) -> str:
        """The last queue score given to a job due at once (see `clock_score`)."""
        return f"{self.prefix}:queue:clock"

    @property
    def queue_order(self) -> str:
        """A counter that orders delayed jobs due in the same millisecond."""
        return f"{self.prefix}:queue:order"

    # arq's queue name, only read by arq's health line (jobcast keeps no arq job payload: see
    # jobs/arq_runtime.py).
    @property
    def arq_queue(self) -> str:
        return f"{self.prefix}:arq"

    @property
    def workers(self) -> str:
        """Live workers, scored by their last heartbeat (ms)."""
        return f"{self.prefix}:workers"

    @property
    def worker_info(self) -> str:
        """A hash: each worker's name to what the workers page shows of it (JSON: host, pid,
        started_at, concurrency, kinds, seen_ms). Kept after the worker is gone, until it has been
        silent for `lost_workers_shown_s`."""
        return f"{self.prefix}:worker-info"

    @property
    def worker_health(self) -> str:
        """arq's health line for the workers (`jobcast worker --check` reads the live ones instead)."""
        return f"{self.prefix}:worker-health"

    @property
    def worker_kinds(self) -> str:
        """A hash: each live worker's name to the kinds it serves (comma separated)."""
        return f"{self.prefix}:worker-kinds"

    @property
    def cancel_channel(self) -> str:
        return f"{self.prefix}:cancel"

    @property
    def wake_channel(self) -> str:
        """Published on when a job becomes due, so idle workers poll at once."""
        return f"{self.prefix}:wake"

    def feed(self, owner: str | None = None) -> FeedKeys:
        """The dashboard feed: every job's events (None), or one owner's jobs' events."""
        base = f"{self.prefix}:feed" if owner is None else f"{self.prefix}:owner-feed:{owner}"
        return FeedKeys(base, f"{base}:log", f"{base}:position")


@dataclass(frozen=True, slots=True)
class FeedKeys:
    """A feed's channel, its history (a list of its state changes, oldest first, consecutive feed
    seqs, capped, for resuming; earlier versions kept a sorted set at `{base}:history`) and its
    position (a hash: the last `seq` and the `epoch`, which changes when the feed is lost)."""

    channel: str
    history: str
    position: str


# A random 128-bit number made a version-4 UUID: its version and variant bits set.
_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)


def new_job_ids(count: int) -> list[str]:
    """New jobs' ids: random (version 4) UUIDs as 32 hex digits, as `uuid.uuid4().hex` makes
    them, from one read of the system's random source for all of them (a batch makes a
    thousand)."""
    raw = os.urandom(16 * count)
    numbers = (int.from_bytes(raw[at : at + 16]) for at in range(0, 16 * count, 16))
    return [f"{n & _UUID4_CLEAR | _UUID4_SET:032x}" for n in numbers]


def new_job_id() -> str:
    return new_job_ids(1)[0]


def utcnow() -> datetime:
    return datetime.now(UTC)


def isoformat(dt: datetime) -> str:
    """ISO 8601 UTC with millisecond precision and a `Z`, as the API promises."""
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_iso() -> str:
    return isoformat(utcnow())


def epoch_ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def from_epoch_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


loads = orjson.loads


def event_head(job_id: str) -> bytes:
    """The start of the job's events' JSON, up to their seq."""
    return b'{"job_id":' + dumps(job_id) + b',"seq":'


def event_template(
    job_id: str,
    type_: EventType,
    *,
    attempt: int,
    progress: dict[str, Any] | None = None,
    result: Any = None,
    error: dict[str, str] | None = None,
    ts: str | None = None,
    extra: dict[str, Any] | None = None,
) -> tuple[bytes, bytes]:
    """The event JSON split around its `seq`, which only Redis assigns (inside the publish script).

    `extra` adds type-specific fields: `run_at` on `queued`, `next_attempt_at` on `retrying`."""
    head = event_head(job_id)
    body = {
        "type": type_.value,
        "state": STATE_AFTER[type_].value,
        "ts": ts or now_iso(),
        "attempt": attempt,
        "progress": progress,
        "result": result,
        "error": error,
    }
    if extra:
        body.update(extra)
    return head, b"," + dumps(body)[1:]


def output_template(
    job_id: str, attempt: int, stream: str, data: str, *, ts: str | None = None, limit_reached: bool = False
) -> tuple[bytes, bytes]:
    """An output event's JSON split around its `seq`, as `event_template` splits the others. It
    carries no progress, result or error: output events are many, and each is sent to every
    watcher."""
    body: dict[str, Any] = {
        "type": EventType.OUTPUT.value,
        "state": State.RUNNING.value,
        "ts": ts or now_iso(),
        "attempt": attempt,
        "stream": stream,
        "data": data,
    }
    if limit_reached:
        body["limit_reached"] = True
    return event_head(job_id), b"," + dumps(body)[1:]


# An output stream's name: what `ctx.output(name)` takes, and the URL's `{stream}`.
OUTPUT_STREAM = r"[A-Za-z0-9_.-]{1,64}"


def split_record(record: bytes) -> tuple[int, bytes, bytes]:
    """``(seq, type, event JSON)`` of a history member or pub/sub payload."""
    seq, type_, data = record.split(b"\n", 2)
    return int(seq), type_, data


def split_feed_record(record: bytes) -> tuple[int, bytes, str, bytes, bytes]:
    """``(feed seq, type, job id, epoch, event JSON)`` of a feed record. Feed seq 0: live-only
    progress, which carries no epoch (it is never resumed)."""
    seq, type_, job_id, rest = record.split(b"\n", 3)
    if seq == b"0":
        return 0, type_, job_id.decode(), b"", rest
    epoch, data = rest.split(b"\n", 1)
    return int(seq), type_, job_id.decode(), epoch, data


def new_epoch() -> str:
    """A feed epoch: the hex milliseconds at which a feed history began."""
    return format(epoch_ms(utcnow()), "x")


# The largest seq a client may name: Lua numbers are doubles, exact up to 2^53, and Redis refuses
# a list index past it. No history comes near it.
MAX_SEQ = 2**53 - 1


def parse_seq(raw: str) -> int | None:
    """A client's seq (`Last-Event-ID`, a feed id's tail), or None unless it is a plain decimal
    integer from 0 to MAX_SEQ."""
    if not raw.isascii() or not raw.isdigit() or len(raw) > 16:
        return None
    seq = int(raw)
    return seq if seq <= MAX_SEQ else None


def parse_feed_id(raw: str) -> tuple[str | None, int] | None:
    """`(epoch, seq)` of a feed id; a bare seq has no epoch. None when malformed."""
    epoch, sep, tail = raw.rpartition(":")
    seq = parse_seq(tail)
    if seq is None:
        return None
    if sep and not valid_epoch(epoch):
        return None
    return (epoch if sep else None), seq


def valid_epoch(epoch: object) -> bool:
    """Whether a client's epoch could be one the server made (a short ASCII token)."""
    return isinstance(epoch, str) and epoch.isascii() and epoch.isalnum() and len(epoch) <= 16


def progress_dict(current: float, total: float | None, message: str | None) -> dict[str, Any]:
    percent = None
    if total:
        percent = round(min(max(current / total, 0.0), 1.0) * 100, 2)
    return {"current": current, "total": total, "percent": percent, "message": message}
