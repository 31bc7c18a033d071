"""How long events take from a worker's publish to this process's watchers: a fixed-bucket
histogram the relay fills for a sample of the messages it takes (parsing each message's `ts`
would cost the fan-out's hot path about a microsecond a message), exported by server/observability/metrics.py.

The delivery to every live watcher happens in the same step as the sample (the fan-out writes to
each socket that keeps up at once), so this is the publish-to-write delay of watchers that keep
up; slower ones wait in their outboxes on top of it.
"""

from __future__ import annotations

import bisect
from datetime import datetime

# Seconds.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SAMPLE_EVERY = 16
TS = b'"ts":"'


class Delays:
    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)  # the last one: over the largest bucket
        self.sum = 0.0

    def sample(self, payload: bytes, now: datetime) -> None:
        """Observe how long ago the message was published (the relay calls it for one message in
        SAMPLE_EVERY)."""
        at = payload.find(TS)
        if at < 0:
            return
        try:
            published = datetime.fromisoformat(payload[at + len(TS) : at + len(TS) + 24].decode())
        except ValueError:
            return
        delay = max((now - published).total_seconds(), 0.0)
        self.counts[bisect.bisect_left(BUCKETS, delay)] += 1
        self.sum += delay

    def cumulative(self) -> list[tuple[str, int]]:
        """(upper bound, observations at most it), Prometheus style, ending with +Inf."""
        out, total = [], 0
        for bound, count in zip((*map(str, BUCKETS), "+Inf"), self.counts, strict=True):
            total += count
            out.append((bound, total))
        return out
