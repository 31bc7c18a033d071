"""One OpenTelemetry trace from a job's submission to its attempt, across real `jobcast web` and
`jobcast worker` processes exporting over OTLP/HTTP to a receiver this test runs on loopback."""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.helpers import demo, submit, wait_for


async def otlp_receiver() -> tuple[web.AppRunner, str, list[dict[str, Any]]]:
    """An OTLP/HTTP traces endpoint: every span it receives, with its service's name."""
    spans: list[dict[str, Any]] = []

    async def traces(request: web.Request) -> web.Response:
        export = ExportTraceServiceRequest.FromString(await request.read())
        for resource_spans in export.resource_spans:
            service = next(
                a.value.string_value for a in resource_spans.resource.attributes if a.key == "service.name"
            )
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    attributes = {a.key: a.value for a in span.attributes}
                    spans.append(
                        {
                            "service": service,
                            "name": span.name,
                            "trace": span.trace_id.hex(),
                            "id": span.span_id.hex(),
                            "parent": span.parent_span_id.hex(),
                            "kind": span.kind,
                            "start": span.start_time_unix_nano,
                            "end": span.end_time_unix_nano,
                            "attributes": attributes,
                        }
                    )
        return web.Response(content_type="application/x-protobuf", body=b"")

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/v1/traces", spans


async def test_one_trace_spans_the_submission_the_wait_and_the_attempt(spawn) -> None:
    runner, endpoint, spans = await otlp_receiver()
    try:
        otel = {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }
        web_ = spawn("web", **otel)
        spawn("worker", **otel)
        await web_.wait_http()
        async with aiohttp.ClientSession(web_.url) as session:
            job = await submit(session, body=demo(steps=3, step_ms=50))

        def named(name: str) -> dict[str, Any] | None:
            found = [s for s in spans if s["name"] == name]
            return found[0] if found else None

        run = await wait_for(lambda: named("run demo"), what="the attempt's span")
        sent = named("submit demo")
        wait = named("wait demo")
        assert sent is not None and wait is not None, [s["name"] for s in spans]
        # Web and worker, one trace: the attempt and the wait are children of the submission.
        assert (sent["service"], run["service"]) == ("jobcast-web", "jobcast-worker")
        assert sent["trace"] == run["trace"] == wait["trace"]
        assert run["parent"] == wait["parent"] == sent["id"]
        assert sent["attributes"]["jobcast.job_id"].string_value == job["id"]
        attributes = run["attributes"]
        assert attributes["jobcast.job_id"].string_value == job["id"]
        assert attributes["jobcast.kind"].string_value == "demo"
        assert attributes["jobcast.attempt"].int_value == 1
        assert attributes["messaging.operation.type"].string_value == "process"
        assert attributes["jobcast.progress_events"].int_value >= 1
        # The wait runs from the job's submission (its record's time: whole milliseconds) to its
        # start; the attempt after it.
        assert sent["start"] - 1_000_000 <= wait["start"] <= wait["end"] <= run["end"]
        assert wait["start"] <= sent["end"]
    finally:
        await runner.cleanup()
