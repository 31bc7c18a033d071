"""`GET /metrics`: this web process's relay and stream figures, and the deployment's queue, in the
Prometheus text format.

The process's figures are plain counters the relay, the outboxes and the app keep anyway, read at
scrape time by a collector, so the hot path pays nothing for them (a prometheus-client Counter
takes a lock per increment, which at hundreds of thousands of messages a second shows up in a
profile). The queue's figures (waiting, delayed, running, live workers) are read from Redis at
each scrape; every web process reports the same ones. Workers serve their jobs' figures
themselves (jobs/worker_metrics.py).
"""

from __future__ import annotations

from collections.abc import Iterator

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    GCCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from jobcast.queries.across_shards import stats_across
from jobcast.server.fanout.hub import Outbox
from jobcast.server.http.openapi import TEXT, Answer, Operation, operation
from jobcast.server.keys import KINDS, RELAY, SETTINGS, SHARDS, STORE, STREAMS, SUBMITTED_BY_KIND
from jobcast.server.security.auth import require_admin
from jobcast.store.schedules import ScheduleBook, ScheduleState

routes = web.RouteTableDef()

REGISTRY = web.AppKey("metrics_registry", CollectorRegistry)
QUEUE = web.AppKey("metrics_queue", dict)


class RelayCollector(Collector):
    def __init__(self, app: web.Application) -> None:
        self._app = app

    def collect(self) -> Iterator[Metric]:
        yield from self._relay()
        yield from self._queue()

    def _relay(self) -> Iterator[Metric]:
        relay = self._app[RELAY]
        yield CounterMetricFamily(
            "jobcast_relay_messages", "Pub/sub messages this process took from Redis.", relay.messages
        )
        yield CounterMetricFamily(
            "jobcast_relay_reconnects", "Times the pub/sub connection was re-established.", relay.reconnects
        )
        yield GaugeMetricFamily(
            "jobcast_relay_connected", "1 while the pub/sub connection is up.", int(relay.connected.is_set())
        )
        yield GaugeMetricFamily(
            "jobcast_watched_topics", "Jobs (and the feed) watched here.", len(relay.hub.topics)
        )
        streams = self._app[STREAMS]
        open_streams = GaugeMetricFamily(
            "jobcast_open_streams", "Open SSE streams and WebSockets.", labels=["transport"]
        )
        open_streams.add_metric(["sse"], streams.sse)
        open_streams.add_metric(["websocket"], streams.ws)
        yield open_streams
        yield CounterMetricFamily(
            "jobcast_progress_conflated",
            "Superseded progress events dropped for watchers that fell behind.",
            Outbox.conflated_total,
        )
        yield CounterMetricFamily(
            "jobcast_watchers_cut_off",
            "Watchers disconnected as too far behind (they resume).",
            Outbox.cut_off_total,
        )
        yield CounterMetricFamily(
            "jobcast_relay_gap_repairs", "Topics whose watchers were repaired from history.", relay.repairs
        )
        delays = relay.delays
        yield HistogramMetricFamily(
            "jobcast_delivery_delay_seconds",
            "From a worker's publish to the write to watchers that keep up (a sample of events).",
            buckets=delays.cumulative(),
            sum_value=delays.sum,
        )
        submitted = CounterMetricFamily("jobcast_jobs_submitted", "Jobs submitted here.", labels=["kind"])
        counts = self._app[SUBMITTED_BY_KIND]
        kinds = self._app[KINDS]
        for kind in sorted(set(kinds) | set(counts)):  # every kind's series, from 0
            submitted.add_metric([kind], counts[kind])
        yield submitted

    def _queue(self) -> Iterator[Metric]:
        figures = self._app.get(QUEUE)
        if not figures:
            return
        waiting = GaugeMetricFamily("jobcast_jobs_waiting", "Jobs due now, by priority.", labels=["priority"])
        delayed = GaugeMetricFamily(
            "jobcast_jobs_delayed",
            "Jobs waiting for a later time (delayed, or backing off).",
            labels=["priority"],
        )
        for priority, count in figures["waiting"].items():
            waiting.add_metric([priority], count)
            delayed.add_metric([priority], figures["delayed"][priority])
        yield waiting
        yield delayed
        yield GaugeMetricFamily(
            "jobcast_oldest_waiting_seconds",
            "How long the oldest job due now has waited (0: none).",
            figures["oldest_waiting_s"] or 0,
        )
        yield GaugeMetricFamily("jobcast_jobs_running", "Jobs running.", figures["running"])
        yield GaugeMetricFamily(
            "jobcast_workers_live", "Workers alive (heartbeat within 3 intervals).", figures["workers"]
        )
        yield from self._schedules(figures.get("schedules", {}))

    def _schedules(self, states: dict[str, ScheduleState]) -> Iterator[Metric]:
        fired = CounterMetricFamily(
            "jobcast_schedule_ticks_fired", "Schedule ticks that started a job.", labels=["schedule"]
        )
        missed = CounterMetricFamily(
            "jobcast_schedule_ticks_missed",
            "Schedule ticks that started no job (skipped after an outage, or refused by a limit).",
            labels=["schedule"],
        )
        late = CounterMetricFamily(
            "jobcast_schedule_ticks_late",
            "Schedule ticks that started their job later than JOBCAST_SCHEDULE_GRACE_S after their time.",
            labels=["schedule"],
        )
        for schedule_id, state in sorted(states.items()):
            fired.add_metric([schedule_id], state.fired)
            missed.add_metric([schedule_id], state.missed)
            late.add_metric([schedule_id], state.late)
        yield from (fired, missed, late)


def setup_metrics(app: web.Application) -> None:
    registry = CollectorRegistry()
    registry.register(RelayCollector(app))
    # The process's memory, CPU and file descriptors, and the garbage collector's runs.
    ProcessCollector(registry=registry)
    GCCollector(registry=registry)
    app[REGISTRY] = registry
    app[QUEUE] = {}  # filled at each scrape, before the collector reads it


@routes.get("/metrics")
@operation(
    Operation(
        "Prometheus metrics",
        {200: Answer("The metrics, in Prometheus' text format", {"text/plain": TEXT})},
        tags=("operations",),
    )
)
async def metrics(request: web.Request) -> web.Response:
    require_admin(request)
    app = request.app
    figures = await stats_across(app[SHARDS].stores, worker_ttl_s=app[SETTINGS].worker_ttl_s)
    book = ScheduleBook(app[STORE])
    ids = [s.id for s in await book.all()]
    app[QUEUE].update(figures, schedules=await book.states(ids) if ids else {})
    body = generate_latest(app[REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
