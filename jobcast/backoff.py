"""One backoff for every retry loop: exponential, capped, with equal jitter.

The n-th wait is drawn from [c/2, c] with c = min(cap, base * 2**n): waits grow quickly while a
failure lasts, and a fleet of processes that lost the same server does not come back in lockstep.
"""

from __future__ import annotations

import random


def jittered_s(base_s: float, cap_s: float, failures: int) -> float:
    """The wait after `failures` failures in a row (0: after the first)."""
    ceiling = min(cap_s, base_s * 2 ** min(failures, 32))
    return random.uniform(ceiling / 2, ceiling)


class Backoff:
    """The waits of one retry loop: `next_s()` after each failure, `reset()` after a success."""

    __slots__ = ("base_s", "cap_s", "failures")

    def __init__(self, base_s: float, cap_s: float) -> None:
        self.base_s = base_s
        self.cap_s = cap_s
        self.failures = 0

    def next_s(self) -> float:
        wait = jittered_s(self.base_s, self.cap_s, self.failures)
        self.failures += 1
        return wait

    def reset(self) -> None:
        self.failures = 0
