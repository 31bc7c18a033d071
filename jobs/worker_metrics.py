"""A worker's own metrics, served on `JOBCAST_WORKER_METRICS_PORT` (off by default: each worker
on a host needs a port of its own) in the Prometheus text format.

What jobs do here: attempts started, jobs finished by final state, retries, timeouts, attempt
durations and the wait from due to first start, per kind. The web processes' /metrics has the
deployment's queue figures (waiting, delayed, running, live workers) and the streams.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    ProcessCollector,
    generate_latest,
)

log = logging.getLogger(__name__)

# The workers page's counts per worker: ends per minute over the last hour.
RECENT_MINUTES = 60
FINAL_STATES = ("succeeded", "failed", "cancelled")

# Seconds: jobs take from milliseconds to an hour.
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)
WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300)


class WorkerMetrics:
    def __init__(self, kinds: Iterable[str] = (), recent_jobs: int = 20) -> None:
        self.registry = registry = CollectorRegistry()
        ProcessCollector(registry=registry)
        GCCollector(registry=registry)
        self.attempts = Counter("jobcast_job_attempts", "Attempts started.", ["kind"], registry=registry)
        self.finished = Counter(
            "jobcast_jobs_finished", "Jobs ended here, by final state.", ["kind", "state"], registry=registry
        )
        self.retries = Counter(
            "jobcast_job_retries", "Attempts that failed and will run again.", ["kind"], registry=registry
        )
        self.timeouts = Counter(
            "jobcast_job_timeouts", "Attempts cut at the kind's timeout.", ["kind"], registry=registry
        )
        self.duration = Histogram(
            "jobcast_job_duration_seconds",
            "How long attempts ran.",
            ["kind"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.queue_wait = Histogram(
            "jobcast_job_queue_wait_seconds",
            "From when a job was due to its first attempt's start.",
            ["kind"],
            buckets=WAIT_BUCKETS,
            registry=registry,
        )
        self.running = Gauge(
            "jobcast_worker_running_jobs", "Attempts running on this worker.", registry=registry
        )
        self.recent = RecentEnds()
        # The ids of the jobs that ended here last, newest first: the worker's own page.
        self.recent_jobs: deque[str] = deque(maxlen=recent_jobs)
        # Every series this worker can report exists from the start, at 0: a rate over a series
        # that appears with its first event misses that event, and alerts on absent series misfire.
        for kind in kinds:
            for family in (self.attempts, self.retries, self.timeouts, self.duration, self.queue_wait):
                family.labels(kind)
            for state in ("succeeded", "failed", "cancelled"):
                self.finished.labels(kind, state)

    def ended_as(self, kind: str, state: str, job_id: str) -> None:
        """A job ended here in `state` (succeeded, failed or cancelled)."""
        self.finished.labels(kind, state).inc()
        self.recent.add(state)
        self.recent_jobs.appendleft(job_id)

    def last_hour(self) -> dict[str, int]:
        """Jobs ended here over the last hour, by final state (the workers page shows them)."""
        return self.recent.counts()

    def started(self, kind: str, waited_s: float | None) -> float:
        """An attempt started; its start time, for `ended`."""
        self.attempts.labels(kind).inc()
        self.running.inc()
        if waited_s is not None:
            self.queue_wait.labels(kind).observe(max(waited_s, 0.0))
        return time.monotonic()

    def ended(self, kind: str, started: float) -> None:
        self.running.dec()
        self.duration.labels(kind).observe(time.monotonic() - started)


async def serve(metrics: WorkerMetrics, host: str, port: int) -> web.AppRunner:
    """Start serving `GET /metrics`; the caller cleans the runner up at shutdown."""

    async def handle(request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app = web.Application()
    app.router.add_get("/metrics", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("worker metrics on http://%s:%d/metrics", host, port)
    return runner


class RecentEnds:
    """Ends by final state per minute, the last `RECENT_MINUTES` kept: a sliding hour in constant
    memory, however many jobs a worker runs."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.minutes: dict[int, dict[str, int]] = {}

    def _minute(self) -> int:
        return int(self.clock() // 60)

    def add(self, state: str) -> None:
        now = self._minute()
        counts = self.minutes.setdefault(now, dict.fromkeys(FINAL_STATES, 0))
        counts[state] = counts.get(state, 0) + 1
        for minute in [m for m in self.minutes if m <= now - RECENT_MINUTES]:
            del self.minutes[minute]

    def counts(self) -> dict[str, int]:
        since = self._minute() - RECENT_MINUTES
        total = dict.fromkeys(FINAL_STATES, 0)
        for minute, counts in self.minutes.items():
            if minute > since:
                for state, n in counts.items():
                    total[state] = total.get(state, 0) + n
        return total
