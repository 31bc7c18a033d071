"""`GET /metrics`: this web process's relay and stream figures in the Prometheus text format.

The figures are plain counters the relay and the app keep anyway, read at scrape time by a
collector, so the hot path pays nothing for them (a prometheus-client Counter takes a lock per
increment, which at hundreds of thousands of messages a second shows up in a profile).
"""

from __future__ import annotations

from collections.abc import Iterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from jobcast.server.auth import require_admin
from jobcast.server.keys import RELAY, STREAMS
from jobcast.server.openapi import TEXT, Answer, Operation, operation

routes = web.RouteTableDef()

REGISTRY = web.AppKey("metrics_registry", CollectorRegistry)


class RelayCollector(Collector):
    def __init__(self, app: web.Application) -> None:
        self._app = app

    def collect(self) -> Iterator[Metric]:
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


def setup_metrics(app: web.Application) -> None:
    registry = CollectorRegistry()
    registry.register(RelayCollector(app))
    app[REGISTRY] = registry


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
    body = generate_latest(request.app[REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
