"""Fan-out saturation: the highest event rate each server sustains, found by stepping the rate up.

The fan-out part measures every system at one rate (40,000 deliveries/s by default), which tells
how much CPU a delivery costs but not where a server gives up. Here the same workload (1,000
watchers over 100 jobs, half SSE and half WebSocket) runs at rising rates, systems alternating step
by step, for the ceiling and jobcast. A step is **sustained** when the watchers received at least
97% of the deliveries the publisher's rate asks for and the p99 latency stayed under 50 ms; a
system's stepping stops at its first step not sustained.

Each row also gives the load side's CPU (the C load generator, the publisher and Redis, on the
other core): where it nears a whole core, the machine, not the server, is the limit, and the
comparison holds at the highest rate both systems sustained.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import scenarios
from jobcast.embedded_redis import RedisProcess

SYSTEMS = ("ceiling", "jobcast")
KEPT_UP = 0.97  # of the deliveries the rate asks for
P99_MS = 50.0


def step(system: str, redis: RedisProcess, w: scenarios.Workload, rate: float, tmp: Path) -> dict[str, Any]:
    """One system at one rate (events/s): the fan-out row, and whether the rate was sustained."""
    w = scenarios.Workload(**{**vars(w), "rate": rate, "seconds": w.saturation_seconds})
    row = scenarios.deliveries(system, redis, w, tmp)
    asked = rate * w.watchers / w.jobs
    p99 = row["latency_ms"].get("p99_ms", float("inf"))
    return {
        **row,
        "rate": rate,
        "deliveries_asked_per_s": asked,
        "sustained": row["deliveries_per_s"] >= KEPT_UP * asked and p99 < P99_MS,
    }


def saturation(redis: RedisProcess, w: scenarios.Workload, tmp: Path) -> dict[str, Any]:
    """Every step of every system, the highest rate each sustained, and the CPU per delivery of
    both at the highest rate both sustained (the comparison the issue asks for)."""
    steps: list[dict[str, Any]] = []
    going = set(SYSTEMS)
    for rate in w.saturation_rates:
        for system in SYSTEMS:
            if system in going:
                row = step(system, redis, w, rate, tmp)
                steps.append(row)
                if not row["sustained"]:
                    going.discard(system)
        if not going:
            break
    highest = {
        system: max((r["rate"] for r in steps if r["system"] == system and r["sustained"]), default=0.0)
        for system in SYSTEMS
    }
    common = min(highest.values())
    at_common = {r["system"]: r for r in steps if r["rate"] == common}
    ratio = None
    if common and len(at_common) == len(SYSTEMS):
        ceiling = at_common["ceiling"]["server_cpu_us_per_delivery"]
        ratio = round(at_common["jobcast"]["server_cpu_us_per_delivery"] / ceiling, 2) if ceiling else None
    return {
        "watchers": w.watchers,
        "jobs": w.jobs,
        "steps": steps,
        "highest_sustained_rate": highest,
        "compared_at_rate": common,
        "jobcast_cpu_vs_ceiling": ratio,
    }
