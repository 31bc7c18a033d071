"""Schedules in Redis: their definitions, their state, and firing a tick exactly once.

Every schedule's definition is one field of the `schedules` hash (JSON); its state (the last tick
it accounted for, the job its last tick made, its counts) is the `schedule:<id>` hash. Firing a
tick takes three steps, each safe to repeat, so that however many processes evaluate the same
schedule, and whichever of them dies between steps, each tick makes one job:

1. claim the tick (`SET schedule-claim:<id>:<tick> NX PX claim_ms`): the others leave it alone
   while the claimer works, and fire it themselves only once the claim lapses;
2. submit its job with the idempotency key `schedule:<id>:<tick ms>`: a second submission of the
   same tick (by a process whose claim lapsed, or after a crash) finds the same job;
3. account for the tick (jobcast/store/lua/schedule_tick.lua): only if the state still names the
   last tick this process read, so ticks are counted once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from jobcast.errors import IdempotentReplay
from jobcast.kind import Kind
from jobcast.protocol import Priority, epoch_ms, isoformat, utcnow
from jobcast.redis.client import awaited
from jobcast.schedule import Missed
from jobcast.store.jobs import JobStore, Submission
from jobcast.store.scripts import Status
from jobcast.store.shards import Shards


class StoredSchedule(BaseModel):
    """A schedule's definition as Redis keeps it."""

    id: str
    kind: str
    cron: str
    params: dict[str, Any] = Field(default_factory=dict)
    timezone: str = "UTC"
    priority: Priority = Priority.DEFAULT
    missed: Missed = Missed.RUN_ONCE
    enabled: bool = True
    # Owner mode: the service that owns it (its jobs are the service's); None: an admin's.
    owner: str | None = None
    # `code`: declared on its kind (Kind(schedules=...)); changed only by changing the code, but
    # for pausing. `api`: made over /api/schedules.
    source: Literal["code", "api"] = "api"
    created_at: str = Field(default_factory=lambda: isoformat(utcnow()))


class ScheduleState(BaseModel):
    """What a schedule has done."""

    last_tick_ms: int | None = None
    last_job: str | None = None
    last_fired_ms: int | None = None
    last_error: str | None = None
    fired: int = 0
    missed: int = 0
    late: int = 0

    @classmethod
    def parse(cls, raw: dict[bytes, bytes]) -> ScheduleState:
        text = {k.decode(): v.decode() for k, v in raw.items() if v}
        return cls.model_validate(text)


def tick_key(schedule_id: str, tick_ms: int) -> str:
    """The idempotency key of the job a tick makes."""
    return f"schedule:{schedule_id}:{tick_ms}"


class ScheduleBook:
    """The deployment's schedules, on the job store's Redis."""

    def __init__(self, where: JobStore | Shards) -> None:
        """`where`: the deployment's shards (shard 0 keeps the schedules, their jobs go to any), or
        one store for all of it."""
        self.shards = where if isinstance(where, Shards) else Shards([where])
        self.store = self.shards.home
        self.redis = self.store.redis
        self.keys = self.store.keys

    async def all(self) -> list[StoredSchedule]:
        raw = await awaited(self.redis.hgetall(self.keys.schedules))
        schedules = [StoredSchedule.model_validate_json(v) for v in raw.values()]
        return sorted(schedules, key=lambda s: s.id)

    async def get(self, schedule_id: str) -> StoredSchedule | None:
        raw = await awaited(self.redis.hget(self.keys.schedules, schedule_id))
        return None if raw is None else StoredSchedule.model_validate_json(raw)

    async def count(self) -> int:
        return int(await awaited(self.redis.hlen(self.keys.schedules)))

    async def add(self, schedule: StoredSchedule, now: datetime | None = None) -> bool:
        """Store a new schedule, its ticks counted from `now`; False: the id is taken."""
        created = await awaited(
            self.redis.hsetnx(self.keys.schedules, schedule.id, schedule.model_dump_json())
        )
        if created:
            await self._start_counting(schedule.id, now, replace=True)
        return bool(created)

    async def save(self, schedule: StoredSchedule, was: StoredSchedule | None) -> None:
        """Store a changed definition (`was`: the one it replaces). Resumed, or ticking to a new
        expression or timezone, it counts ticks from now: the paused time is not made up for, and
        a new rule starts afresh."""
        await awaited(self.redis.hset(self.keys.schedules, schedule.id, schedule.model_dump_json()))
        restart = was is not None and (
            (schedule.enabled and not was.enabled)
            or (schedule.cron, schedule.timezone) != (was.cron, was.timezone)
        )
        await self._start_counting(schedule.id, None, replace=restart)

    async def _start_counting(self, schedule_id: str, now: datetime | None, *, replace: bool) -> None:
        start = str(epoch_ms(now or utcnow()))
        if replace:
            await awaited(self.redis.hset(self.keys.schedule(schedule_id), "last_tick_ms", start))
        else:
            await awaited(self.redis.hsetnx(self.keys.schedule(schedule_id), "last_tick_ms", start))

    async def delete(self, schedule_id: str) -> bool:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self.keys.schedules, schedule_id)
            pipe.delete(self.keys.schedule(schedule_id))
            removed, _ = await pipe.execute()
        return bool(removed)

    async def states(self, ids: list[str]) -> dict[str, ScheduleState]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for schedule_id in ids:
                pipe.hgetall(self.keys.schedule(schedule_id))
            raw = await pipe.execute()
        return {schedule_id: ScheduleState.parse(r) for schedule_id, r in zip(ids, raw, strict=True)}

    async def declare(self, kinds: dict[str, Kind[Any]]) -> list[StoredSchedule]:
        """Store the schedules these kinds declare in code, keeping whether an operator paused
        them, and drop the code schedules of these kinds that the code no longer declares."""
        stored = {s.id: s for s in await self.all()}
        declared = []
        for kind in kinds.values():
            for n, schedule in enumerate(kind.schedules, start=1):
                schedule_id = schedule.name or f"{kind.name}.{n}"
                definition = StoredSchedule(
                    id=schedule_id,
                    kind=kind.name,
                    cron=schedule.cron,
                    params=kind.params.model_validate(schedule.params).model_dump(mode="json"),
                    timezone=schedule.timezone,
                    priority=schedule.priority,
                    missed=schedule.missed,
                    source="code",
                )
                old = stored.get(schedule_id)
                if old is not None:
                    definition = definition.model_copy(
                        update={"enabled": old.enabled, "created_at": old.created_at}
                    )
                if old != definition:
                    await self.save(definition, old)
                declared.append(definition)
        ids = {s.id for s in declared}
        for old in stored.values():
            if old.source == "code" and old.kind in kinds and old.id not in ids:
                await self.delete(old.id)
        return declared

    async def claim(self, schedule_id: str, tick_ms: int, claim_ms: int) -> bool:
        """Whether this process fires this tick (no other claim on it is live)."""
        key = self.keys.schedule_claim(schedule_id, tick_ms)
        return bool(await self.redis.set(key, "1", nx=True, px=claim_ms))

    async def fire(self, schedule: StoredSchedule, kind: Kind[Any], tick: datetime | None) -> str:
        """Submit the job a tick makes (`tick` None: run now, outside the schedule's ticks); its
        id. A tick fired before gives the job it made then."""
        model = kind.params.model_validate(schedule.params)
        submission = Submission(
            kind=kind.name,
            params=model.model_dump(mode="json"),
            priority=schedule.priority,
            max_attempts=kind.max_attempts,
            timeout_s=kind.timeout_s,
            cost_s=kind.estimated_cost(model),
        )
        key = None if tick is None else tick_key(schedule.id, epoch_ms(tick))
        # A tick's repeats name one shard (its key), so a tick fired twice still makes one job.
        target = self.shards.for_new(schedule.owner, key)
        job_id = target.new_ids(1)[0]
        try:
            await target.create(
                job_id,
                submission,
                idempotency_key=key,
                owner=schedule.owner,
                submitted_by=schedule.owner,
                schedule=schedule.id,
                scheduled_for=None if tick is None else isoformat(tick),
            )
        except IdempotentReplay as replay:
            return replay.job_id
        if tick is None:  # a tick's job is recorded with its tick (`account`)
            run = {"last_job": job_id, "last_fired_ms": str(epoch_ms(utcnow()))}
            await awaited(self.redis.hset(self.keys.schedule(schedule.id), mapping=run))
        return job_id

    async def account(
        self,
        schedule_id: str,
        expected_ms: int | None,
        through: datetime,
        *,
        job: str | None = None,
        missed: int = 0,
        late: bool = False,
        error: str | None = None,
    ) -> bool:
        """Record that the schedule accounted for its ticks through `through`: False when another
        process did first (the state no longer says `expected_ms`)."""
        args: dict[str, Any] = {
            "expected_ms": "" if expected_ms is None else str(expected_ms),
            "through_ms": str(epoch_ms(through)),
            "missed": missed,
            "late": late,
        }
        if job is not None:
            args["job"] = job
        if error is not None:
            args["error"] = error[:500]
        answer = await self.store.scripts.call(
            "schedule_tick", {"state": self.keys.schedule(schedule_id)}, **args
        )
        return answer.status is Status.OK
