"""Job records, per-job event history and publishing, all in Redis.

Publishing is one Lua script, so seq assignment, history append, snapshot update and PUBLISH
happen together and history order always equals live order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from arq.constants import job_key_prefix
from arq.jobs import serialize_job
from redis.asyncio import Redis

from jobcast.protocol import (
    STATE_AFTER,
    TERMINAL_STATES,
    EventType,
    Keys,
    State,
    dumps,
    event_template,
    isoformat,
    loads,
    now_iso,
    utcnow,
)

RUN_JOB = "run_job"

# KEYS: job hash, history zset.
# ARGV: head, tail, type, state, channel, history max, ttl (0: keep), attempt fence (-1: none),
#       then snapshot field/value pairs.
# Returns the new seq, 0 when the event was refused (job already ended, or a stale attempt), -1
# when the job does not exist.
_PUBLISH = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return -1 end
if state == 'succeeded' or state == 'failed' or state == 'cancelled' then return 0 end
local fence = tonumber(ARGV[8])
if fence >= 0 and fence < tonumber(redis.call('HGET', KEYS[1], 'attempt') or '0') then return 0 end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local record = seq .. '\\n' .. ARGV[3] .. '\\n' .. ARGV[1] .. seq .. ARGV[2]
redis.call('ZADD', KEYS[2], seq, record)
redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -(tonumber(ARGV[6]) + 1))
redis.call('HSET', KEYS[1], 'state', ARGV[4], unpack(ARGV, 9))
redis.call('PUBLISH', ARGV[5], record)
local ttl = tonumber(ARGV[7])
if ttl > 0 then
  redis.call('EXPIRE', KEYS[1], ttl)
  redis.call('EXPIRE', KEYS[2], ttl)
end
return seq
"""

_JSON_FIELDS = ("params", "progress", "result", "error")
_EMPTY_PROGRESS = {"current": 0, "total": None, "percent": None, "message": None}


def json_serializer(value: Any) -> bytes:
    """arq's job payload codec: JSON, never pickle (a queue must not execute what it reads)."""
    return dumps(value)


def json_deserializer(raw: bytes) -> Any:
    return loads(raw)


def job_links(job_id: str) -> dict[str, str]:
    return {
        "self": f"/api/jobs/{job_id}",
        "events": f"/api/jobs/{job_id}/events",
        "cancel": f"/api/jobs/{job_id}/cancel",
        "page": f"/jobs/{job_id}",
    }


def build_snapshot(job_id: str, raw: dict[bytes, bytes]) -> dict[str, Any]:
    """The public job snapshot from the job's Redis hash."""
    fields = {k.decode(): v for k, v in raw.items()}

    def text(name: str) -> str | None:
        value = fields.get(name)
        return value.decode() if value else None

    def json_field(name: str) -> Any:
        value = fields.get(name)
        return loads(value) if value else None

    return {
        "id": job_id,
        "kind": text("kind"),
        "params": json_field("params"),
        "state": text("state"),
        "progress": json_field("progress") or dict(_EMPTY_PROGRESS),
        "attempt": int(fields.get("attempt", b"0")),
        "created_at": text("created_at"),
        "started_at": text("started_at"),
        "finished_at": text("finished_at"),
        "result": json_field("result"),
        "error": json_field("error"),
        "last_event_id": int(fields.get("seq", b"0")),
        "links": job_links(job_id),
    }


@dataclass(slots=True)
class Replay:
    """What a watcher joining at `since` must be sent before live events."""

    snapshot: dict[str, Any]
    records: list[bytes] = field(default_factory=list)
    # True when history no longer reaches back to since+1: send the snapshot instead of records.
    needs_snapshot: bool = False

    @property
    def head_seq(self) -> int:
        return int(self.snapshot["last_event_id"])

    @property
    def terminal(self) -> bool:
        return self.snapshot["state"] in TERMINAL_STATES


@dataclass(slots=True)
class JobRecord:
    kind: str
    params: dict[str, Any]
    state: State
    attempt: int


class JobStore:
    """Reads and writes jobcast's Redis data; shared by the web server and the workers."""

    def __init__(
        self,
        redis: Redis,
        *,
        key_prefix: str,
        queue_name: str,
        history_max_events: int,
        retention_s: int,
    ) -> None:
        self.redis = redis
        self.keys = Keys(key_prefix)
        self.queue_name = queue_name
        self.history_max_events = history_max_events
        self.retention_s = retention_s
        self._publish = redis.register_script(_PUBLISH)

    def _publish_args(
        self,
        job_id: str,
        type_: EventType,
        *,
        attempt: int,
        fence: bool,
        progress: dict[str, Any] | None,
        result: Any,
        error: dict[str, str] | None,
        fields: dict[str, Any],
    ) -> tuple[list[str], list[Any]]:
        ts = now_iso()
        head, tail = event_template(
            job_id, type_, attempt=attempt, progress=progress, result=result, error=error, ts=ts
        )
        snapshot_fields: dict[str, Any] = dict(fields)
        if progress is not None:
            snapshot_fields["progress"] = dumps(progress)
        if type_ in (EventType.SUCCEEDED, EventType.FAILED, EventType.CANCELLED):
            snapshot_fields["finished_at"] = ts
            snapshot_fields["result"] = dumps(result)
            snapshot_fields["error"] = dumps(error)
        elif type_ is EventType.STARTED:
            snapshot_fields.update(started_at=ts, attempt=attempt, error=b"")
        elif type_ is EventType.RETRYING:
            snapshot_fields["error"] = dumps(error)
        ttl = 0 if type_ is EventType.PROGRESS else self.retention_s
        args: list[Any] = [
            head,
            tail,
            type_.value,
            STATE_AFTER[type_].value,
            self.keys.channel(job_id),
            self.history_max_events,
            ttl,
            attempt if fence else -1,
        ]
        for name, value in snapshot_fields.items():
            args += [name, value]
        return [self.keys.job(job_id), self.keys.history(job_id)], args

    async def publish(
        self,
        job_id: str,
        type_: EventType,
        *,
        attempt: int,
        fence: bool = True,
        progress: dict[str, Any] | None = None,
        result: Any = None,
        error: dict[str, str] | None = None,
    ) -> int:
        """Publish one event; returns its seq, or 0 if refused (job ended or attempt stale)."""
        keys, args = self._publish_args(
            job_id,
            type_,
            attempt=attempt,
            fence=fence,
            progress=progress,
            result=result,
            error=error,
            fields={},
        )
        seq = int(await self._publish(keys=keys, args=args))
        return max(seq, 0)

    async def create(
        self, job_id: str, kind: str, params: dict[str, Any], *, function: str = RUN_JOB
    ) -> dict[str, Any]:
        """Create the job record, its `queued` event and the arq queue entry in one transaction,
        so a job is either fully submitted or not at all. Returns the new job's snapshot."""
        created = utcnow()
        enqueue_ms = int(created.timestamp() * 1000)
        keys, args = self._publish_args(
            job_id,
            EventType.QUEUED,
            attempt=0,
            fence=False,
            progress=None,
            result=None,
            error=None,
            fields={},
        )
        payload = serialize_job(function, (job_id,), {}, None, enqueue_ms, serializer=json_serializer)
        record: dict[str, str | bytes | int] = {
            "kind": kind,
            "params": dumps(params),
            "state": State.QUEUED.value,
            "attempt": 0,
            "seq": 0,
            "created_at": isoformat(created),
        }
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.keys.job(job_id), mapping=record)
            await self._publish(keys=keys, args=args, client=pipe)
            pipe.psetex(job_key_prefix + job_id, self.retention_s * 1000, payload)
            pipe.zadd(self.queue_name, {job_id: enqueue_ms})
            _, seq, _, _ = await pipe.execute()
        record["seq"] = seq
        raw = {k.encode(): v if isinstance(v, bytes) else str(v).encode() for k, v in record.items()}
        return build_snapshot(job_id, raw)

    async def load(self, job_id: str) -> JobRecord | None:
        raw = await self.redis.hmget(self.keys.job(job_id), ["kind", "params", "state", "attempt"])
        if raw[0] is None:
            return None
        return JobRecord(
            kind=raw[0].decode(), params=loads(raw[1]), state=State(raw[2].decode()), attempt=int(raw[3])
        )

    async def snapshot(self, job_id: str) -> dict[str, Any] | None:
        raw = await self.redis.hgetall(self.keys.job(job_id))
        return build_snapshot(job_id, raw) if raw else None

    async def replay(self, job_id: str, since: int | None) -> Replay | None:
        """Snapshot plus the history after `since` (None: the watcher wants a snapshot first)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(self.keys.job(job_id))
            pipe.zrange(self.keys.history(job_id), 0, 0, withscores=True)
            pipe.zrangebyscore(self.keys.history(job_id), f"({since or 0}", "+inf")
            raw, oldest, records = await pipe.execute()
        if not raw:
            return None
        replay = Replay(snapshot=build_snapshot(job_id, raw))
        if since is None or since > replay.head_seq:
            # No position, or one this job never reached (a stale id, or data lost with Redis):
            # only a snapshot is truthful.
            replay.needs_snapshot = True
        elif since < replay.head_seq:
            oldest_seq = int(oldest[0][1]) if oldest else replay.head_seq + 1
            replay.needs_snapshot = oldest_seq > since + 1
            replay.records = [] if replay.needs_snapshot else records
        return replay

    async def history_after(self, job_id: str, seq: int) -> tuple[list[bytes], int | None]:
        """Records after `seq`, and the oldest seq history still holds (None: no history)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrange(self.keys.history(job_id), 0, 0, withscores=True)
            pipe.zrangebyscore(self.keys.history(job_id), f"({seq}", "+inf")
            oldest, records = await pipe.execute()
        return records, (int(oldest[0][1]) if oldest else None)
