"""The machine a run measures on, and what the kernel says each process costs.

CPU time comes from /proc/<pid>/stat (utime + stime, the process's own threads), memory from
/proc/<pid>/status (VmRSS), so the figures are the kernel's, not the process's own estimate.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    # Fields 14 and 15 of the man page (utime, stime); the split drops the first two.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


@dataclass
class CpuMeter:
    """CPU seconds several processes spent between start() and stop()."""

    pids: list[int]
    _start: float = 0.0

    def _total(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.pids)

    def start(self) -> None:
        self._start = self._total()

    def stop(self) -> float:
        return self._total() - self._start


def cores() -> int:
    return len(os.sched_getaffinity(0))


def pin(pid: int, core: int) -> bool:
    """Pin a process to one core when the machine has more than one; False if not pinned."""
    if cores() < 2:
        return False
    try:
        os.sched_setaffinity(pid, {core % os.cpu_count()})
    except OSError:
        return False
    return True


def commit() -> str:
    """The checkout's commit, with `+` when files differ from it; empty outside a git checkout."""
    import subprocess

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    head = git("rev-parse", "--short", "HEAD")
    return head + ("+" if head and git("status", "--porcelain", "--untracked-files=no") else "")


def run_name(machine: dict[str, object], started: float) -> str:
    """A run's file name: its date, its machine's CPU family and its commit (`2026-11-27-epyc-2139036`)."""
    import re
    import time

    cpu = str(machine.get("cpu", "")).lower()
    family = next((f for f in ("epyc", "xeon", "ryzen", "core", "neoverse") if f in cpu), "") or (
        re.sub(r"[^a-z0-9]+", "-", cpu).strip("-")[:20] or "machine"
    )
    parts = [
        time.strftime("%Y-%m-%d", time.gmtime(started)),
        family,
        str(machine.get("commit", "")).rstrip("+"),
    ]
    return "-".join(p for p in parts if p)


def describe() -> dict[str, object]:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    memory = 0
    try:
        with open("/proc/meminfo") as f:
            memory = int(f.readline().split()[1]) * 1024
    except OSError:
        pass
    return {
        "commit": commit(),
        "cpu": model,
        "cores": os.cpu_count(),
        "usable_cores": cores(),
        "memory_gb": round(memory / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p99 and max of `values` (ms, say), rounded to 0.01; zeros when there are none."""
    if not values:
        return {"count": 0, "p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    return {"count": len(ordered), "p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": round(ordered[-1], 2)}
