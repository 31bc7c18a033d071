"""Execution limits: how many jobs of a kind may run at once across the deployment
(`Kind(max_running=...)`), how many may start per interval (`Kind(rate_limit=Rate(5, 1.0))`), and
how many of one owner's jobs may run at once (JOBCAST_MAX_RUNNING_PER_OWNER).

They are counted in Redis by the claim itself (jobcast/store/lua/dispatch.lua): a due job a limit
holds back is moved aside, waits without a worker slot, tells its watchers why (a `waiting`
event), and goes back to its queue, keeping its place, once a claim finds the limit allows it.
The workers hand every claim the table `claim_limits` builds, so the limits are those of the
workers' code and settings."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobcast.kind import Kind
    from jobcast.settings import Settings


@dataclass(frozen=True, slots=True)
class Rate:
    """At most `count` jobs started within any `per_s` seconds."""

    count: int
    per_s: float = 1.0

    def __post_init__(self) -> None:
        if self.count < 1 or not math.isfinite(self.per_s) or self.per_s <= 0:
            raise ValueError(f"a rate limit needs a count of 1 or more and a positive interval: {self}")

    @classmethod
    def parse(cls, text: str) -> Rate:
        """`"5/s"`, `"5/1s"`, `"100/60s"`, `"100/min"`: a count per an interval."""
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*(s|min|h)\s*", text)
        if not match:
            raise ValueError(f"a rate limit is a count per an interval, e.g. 5/s or 100/60s: {text!r}")
        count, amount, unit = match.groups()
        return cls(int(count), float(amount or 1) * {"s": 1, "min": 60, "h": 3600}[unit])

    def __str__(self) -> str:
        return f"{self.count}/{self.per_s:g}s"


def claim_limits(kinds: Mapping[str, Kind[Any]], settings: Settings) -> dict[str, Any] | None:
    """The limits a worker's claims enforce (`limits` in dispatch.lua), or None when there are
    none: a deployment without limits pays nothing for them."""
    table: dict[str, dict[str, int]] = {}
    for name, kind in kinds.items():
        entry = {}
        if kind.max_running is not None:
            entry["max_running"] = kind.max_running
        if kind.rate_limit is not None:
            entry["rate"] = kind.rate_limit.count
            entry["per_ms"] = max(1, round(kind.rate_limit.per_s * 1000))
        if entry:
            table[name] = entry
    owner = settings.max_running_per_owner
    if not table and not owner:
        return None
    return {"kinds": table, "owner": owner}
