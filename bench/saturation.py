"""Fan-out saturation: the highest event rate each server sustains, found by stepping the rate up.

The fan-out part measures every system at one rate (40,000 deliveries/s by default), which tells
how much CPU a delivery costs but not where a server gives up. Here the same workload (1,000
watchers over 100 jobs, half SSE and half WebSocket) runs at rising rates, systems alternating step
by step, for the ceiling and jobcast. A step is **sustained** when the watchers received at least
97% of the deliveries the publisher's rate asks for and the p99 latency stayed under 50 ms, each
the median of the step's rounds (systems alternating round by round, as in the fan-out part); a
system's stepping stops at its first step not sustained.

Each row also gives the load side's CPU (the C load generator, the publisher and Redis, on the
other core): where it nears a whole core, the machine, not the server, is the limit, and the
comparison holds at the highest rate both systems sustained.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from bench import scenarios
from jobcast.redis.embedded import RedisProcess

SYSTEMS = ("ceiling", "jobcast")
KEPT_UP = 0.97  # of the deliveries the rate asks for
P99_MS = 50.0


def step(system: str, redis: RedisProcess, w: scenarios.Workload, rate: float, tmp: Path) -> dict[str, Any]:
    """One system at one rate (events/s), one round: the fan-out row."""
    w = scenarios.Workload(**{**vars(w), "rate": rate, "seconds": w.saturation_seconds})
    return scenarios.deliveries(system, redis, w, tmp)


def sustained(rounds: list[dict[str, Any]], rate: float, w: scenarios.Workload) -> dict[str, Any]:
    """A system's step from its rounds at one rate: the medians, and whether it was sustained."""
    asked = rate * w.watchers / w.jobs
    p99 = statistics.median(r["latency_ms"].get("p99_ms", float("inf")) for r in rounds)
    row = {
        **rounds[0],
        "connected": min(r["connected"] for r in rounds),
        "deliveries_per_s": statistics.median(r["deliveries_per_s"] for r in rounds),
        "server_cpu_us_per_delivery": statistics.median(r["server_cpu_us_per_delivery"] for r in rounds),
        "server_cpu_share": statistics.median(r["server_cpu_share"] for r in rounds),
        "load_side_cpu_share": statistics.median(r["load_side_cpu_share"] for r in rounds),
        "latency_ms": {"p99_ms": p99},
        "rounds": rounds,
    }
    return {
        **row,
        "rate": rate,
        "deliveries_asked_per_s": asked,
        "sustained": row["deliveries_per_s"] >= KEPT_UP * asked and p99 < P99_MS,
    }


def saturation(redis: RedisProcess, w: scenarios.Workload, tmp: Path, rounds: int = 1) -> dict[str, Any]:
    """Every step of every system, the highest rate each sustained, and the CPU per delivery of
    both at the highest rate both sustained (the comparison the issue asks for). At each rate the
    systems alternate round by round, and a step's figures are the medians of its rounds: near
    the load core's limit one round's p99 swings by tens of milliseconds, for either system."""
    steps: list[dict[str, Any]] = []
    going = set(SYSTEMS)
    for rate in w.saturation_rates:
        now = [system for system in SYSTEMS if system in going]
        runs: dict[str, list[dict[str, Any]]] = {system: [] for system in now}
        for _ in range(rounds):
            for system in now:
                runs[system].append(step(system, redis, w, rate, tmp))
        for system in now:
            row = sustained(runs[system], rate, w)
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
        "rounds": rounds,
        "steps": steps,
        "highest_sustained_rate": highest,
        "compared_at_rate": common,
        "jobcast_cpu_vs_ceiling": ratio,
    }
