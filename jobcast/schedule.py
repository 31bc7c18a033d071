"""Recurring schedules: a cron expression in a timezone, and which of its ticks fire.

A schedule is declared on a kind in code (`Kind(..., schedules=[Schedule("0 2 * * *")])`) or made
over the API (`/api/schedules`). Cron expressions are read by cronsim, which evaluates them as
Debian's cron does, including across daylight-saving transitions: a job at a time that the
spring change skips runs at once when the clock jumps (once), and one at a time that the autumn
change repeats runs the first time only (once). Five fields, or six with seconds first.

`plan` is the whole tick rule, free of Redis and of the clock so that it can be tested with any
moment: given the last tick a schedule accounted for and the time now, which tick (if any) fires
and how many were missed. The upkeep loop that applies it is jobs/upkeep/scheduler.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from jobcast.errors import ScheduleError
from jobcast.protocol import Priority

# An id names a schedule in URLs and Redis keys.
SCHEDULE_ID = r"[A-Za-z0-9_.-]{1,100}"
_SCHEDULE_ID = re.compile(SCHEDULE_ID)
# Ticks counted one by one before the rest of a long outage is counted at once: a schedule
# firing every second, found 3 days behind, is not walked tick by tick.
MAX_COUNTED = 10_000


class Missed(StrEnum):
    """What a schedule does with ticks that passed while nothing could fire them (an outage, or
    every worker stopped): `run_once` fires one job for all of them, now; `skip` fires none, and
    waits for the next tick."""

    RUN_ONCE = "run_once"
    SKIP = "skip"


def timezone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(
            "timezone", f"unknown timezone {name!r} (an IANA name, such as Europe/Berlin)"
        ) from None


def check_cron(expression: str) -> str:
    """The expression, or a ScheduleError saying what is wrong with it."""
    expression = " ".join(expression.split())
    if len(expression.split(" ")) not in (5, 6):
        raise ScheduleError("cron", "a cron expression has 5 fields, or 6 with seconds first")
    try:
        CronSim(expression, datetime(2000, 1, 1))
    except CronSimError as e:
        raise ScheduleError("cron", f"invalid cron expression: {e}") from None
    return expression


def check_id(schedule_id: str) -> str:
    if not _SCHEDULE_ID.fullmatch(schedule_id):
        raise ScheduleError("id", "1 to 100 letters, digits, '_', '.' or '-'")
    return schedule_id


@dataclass(frozen=True, slots=True)
class Schedule:
    """A kind's recurring job, declared in code. `name` is its id (by default `<kind>.<n>`, its
    place in the kind's list), which operators see and which its jobs carry."""

    cron: str
    params: dict[str, Any] = field(default_factory=dict)
    timezone: str = "UTC"
    priority: Priority = Priority.DEFAULT
    missed: Missed = Missed.RUN_ONCE
    name: str | None = None

    def __post_init__(self) -> None:
        check_cron(self.cron)
        timezone(self.timezone)
        if self.name is not None:
            check_id(self.name)


@dataclass(frozen=True, slots=True)
class TickPlan:
    """What a schedule does now: `fire` the tick to start a job for (None: none), the tick it has
    then accounted for (`through`: the last one due, fired or not), how many ticks were `missed`,
    and whether the fired one is `late` (fired more than the grace after its time)."""

    fire: datetime | None
    through: datetime | None
    missed: int
    late: bool


def next_tick(cron: str, tz: str, after: datetime) -> datetime | None:
    """The first tick strictly after `after` (an aware datetime), in UTC; None: never again."""
    zone = timezone(tz)
    local = after.astimezone(zone)
    try:
        tick = next(CronSim(cron, local))
    except StopIteration:
        return None
    return tick.astimezone(UTC)


def plan(cron: str, tz: str, last: datetime, now: datetime, missed: Missed, grace: timedelta) -> TickPlan:
    """Which tick fires now, given the last tick accounted for (`last`; a new schedule's
    creation time) and `now`, both aware.

    The ticks due are those after `last` and at or before `now`. The latest of them is the one
    that may fire; the earlier ones were missed (nothing fired them in time). Under `skip` the
    latest fires only within `grace` of its time (else it is missed too); under `run_once` it
    fires however late, standing for all the missed ones."""
    zone = timezone(tz)
    # Forwards from `last`, as cron walks the clock: walking backwards from `now` finds the wrong
    # one of an autumn night's repeated times.
    latest, due = None, 0
    for tick_local in CronSim(cron, last.astimezone(zone)):
        tick = tick_local.astimezone(UTC)
        if tick > now:
            break
        latest, due = tick, due + 1
        if due >= MAX_COUNTED:  # a long outage of a frequent schedule: the rest counted at once
            found = _latest_at_or_before(cron, now.astimezone(zone))
            latest = found.astimezone(UTC) if found is not None else latest
            break
    if latest is None or latest <= last:
        return TickPlan(None, None, 0, False)
    on_time = now - latest <= grace
    if missed is Missed.SKIP and not on_time:
        return TickPlan(None, latest, due, False)
    return TickPlan(latest, latest, due - 1, not on_time)


def _latest_at_or_before(cron: str, local_now: datetime) -> datetime | None:
    # Backwards from the next whole second: a tick at `now`'s own second is found too.
    try:
        return next(CronSim(cron, local_now.replace(microsecond=0) + timedelta(seconds=1), reverse=True))
    except StopIteration:
        return None
