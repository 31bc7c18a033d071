"""Fires schedules' ticks (jobcast/schedule.py) from every worker.

Every worker runs one. It stores the schedules its kinds declare in code, then, until cancelled:
reads every schedule and its state, applies the tick rule (`plan`) to each enabled one whose
kind it serves, fires what is due (jobcast/store/schedules.py: claim, submit, account), and
sleeps until the next tick of any schedule, or a second at most, so that schedules made, changed
or paused over the API are seen soon. Several workers evaluate the same schedules; the claim,
the tick's idempotency key and the accounting script make one job per tick.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any

from redis.exceptions import RedisError

from jobcast.errors import SubmitRefused
from jobcast.kind import Kind
from jobcast.protocol import from_epoch_ms, utcnow
from jobcast.schedule import ScheduleError, next_tick, plan
from jobcast.settings import Settings
from jobcast.store.schedules import ScheduleBook, ScheduleState, StoredSchedule

log = logging.getLogger(__name__)

# Schedules changed over the API are picked up within this.
REREAD_S = 1.0


class Scheduler:
    def __init__(self, book: ScheduleBook, kinds: dict[str, Kind[Any]], settings: Settings) -> None:
        self.book = book
        self.kinds = kinds
        self.grace = timedelta(seconds=settings.schedule_grace_s)
        self.claim_ms = int(settings.schedule_claim_s * 1000)

    async def run(self) -> None:
        """Until cancelled; a Redis outage postpones ticks (the missed-tick policy applies once it
        is back), never ends the loop."""
        declared = False
        while True:
            wait = REREAD_S
            try:
                if not declared:
                    await self.book.declare(self.kinds)
                    declared = True
                wait = await self.run_once(utcnow())
            except RedisError as e:
                log.warning("schedules not evaluated: %s", e)
            await asyncio.sleep(wait)

    async def run_once(self, now: datetime) -> float:
        """Fire what is due at `now`; returns how long to sleep before the next look."""
        schedules = [s for s in await self.book.all() if s.enabled and s.kind in self.kinds]
        if not schedules:
            return REREAD_S
        states = await self.book.states([s.id for s in schedules])
        soonest = now + timedelta(seconds=REREAD_S)
        for schedule in schedules:
            state = states[schedule.id]
            last = state.last_tick_ms
            if last is None:  # stored but never counted from (a partial write): start now
                await self.book.account(schedule.id, None, now)
                continue
            try:
                await self._tick(schedule, state, now)
                upcoming = next_tick(schedule.cron, schedule.timezone, max(from_epoch_ms(last), now))
            except ScheduleError as e:  # a timezone this machine's tz database lacks
                log.warning("schedule %s skipped: %s", schedule.id, e)
                continue
            if upcoming is not None and upcoming < soonest:
                soonest = upcoming
        return max(0.0, (soonest - utcnow()).total_seconds())

    async def _tick(self, schedule: StoredSchedule, state: ScheduleState, now: datetime) -> None:
        assert state.last_tick_ms is not None
        last = from_epoch_ms(state.last_tick_ms)
        due = plan(schedule.cron, schedule.timezone, last, now, schedule.missed, self.grace)
        if due.through is None:
            return
        if due.fire is None:
            if await self.book.account(schedule.id, state.last_tick_ms, due.through, missed=due.missed):
                log.info("schedule %s: %d ticks missed, skipped", schedule.id, due.missed)
            return
        tick_ms = int(due.fire.timestamp() * 1000)
        if not await self.book.claim(schedule.id, tick_ms, self.claim_ms):
            return  # another process is firing it
        kind = self.kinds[schedule.kind]
        try:
            job_id = await self.book.fire(schedule, kind, due.fire)
        except SubmitRefused as refused:
            # Refused by a limit (too many waiting, a rate or CPU budget): the tick is missed.
            message = f"{type(refused).__name__}: {refused}"
            log.warning("schedule %s: tick %s refused: %s", schedule.id, due.fire.isoformat(), message)
            await self.book.account(
                schedule.id, state.last_tick_ms, due.through, missed=due.missed + 1, error=message
            )
            return
        accounted = await self.book.account(
            schedule.id, state.last_tick_ms, due.through, job=job_id, missed=due.missed, late=due.late
        )
        if accounted:
            log.info(
                "schedule %s fired job %s for tick %s%s",
                schedule.id,
                job_id,
                due.fire.isoformat(),
                f" ({due.missed} missed before it)" if due.missed else "",
            )
