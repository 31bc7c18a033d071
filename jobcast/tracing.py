"""OpenTelemetry tracing, with the `otel` extra (`pip install 'jobcast[otel]'`): one trace from a
job's submission, through its wait in the queue, to each attempt on a worker.

The web process opens a producer span for a submission (`submit <kind>`) and keeps its context in
the job's record (`traceparent`, W3C Trace Context), as the OpenTelemetry messaging conventions
carry a context across a queue. A worker reads it back with the claim and opens, as children of
it, the job's wait (`wait <kind>`, from when it was due to its start) and each attempt (`run
<kind>`, a consumer span) with the job's id, kind and attempt, and its progress and output counts.

Without the extra, or with `OTEL_TRACES_EXPORTER` unset (or `none`), every function here does
nothing. `jobcast web` and `jobcast worker` configure the SDK from the standard `OTEL_*` variables:
`OTEL_TRACES_EXPORTER` (`otlp` or `console`), `OTEL_EXPORTER_OTLP_*`, `OTEL_SERVICE_NAME`
(default `jobcast-web` / `jobcast-worker`), `OTEL_BSP_*`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from jobcast.settings import ProcessSettings

log = logging.getLogger(__name__)

try:
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
except ImportError:  # the `otel` extra is not installed
    # None marks tracing as unavailable; mypy knows the module only as installed.
    trace = None  # type: ignore[assignment]

_tracer: Any = None


def configure(settings: ProcessSettings, service_name: str) -> bool:
    """Set up tracing for this process from the `OTEL_*` variables; whether it is on."""
    global _tracer
    exporter_name = settings.otel_traces_exporter.strip().lower()
    if trace is None or exporter_name in ("", "none"):
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    exporter: SpanExporter
    if exporter_name == "console":
        exporter = ConsoleSpanExporter()
    elif exporter_name == "otlp":
        protocol = settings.otel_exporter_otlp_protocol
        if protocol != "http/protobuf":
            log.warning("tracing: OTLP over %s is not supported here; use http/protobuf", protocol)
            return False
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    else:
        log.warning("tracing: OTEL_TRACES_EXPORTER=%s is not one of otlp, console, none", exporter_name)
        return False
    name = settings.otel_service_name or service_name
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    # Flushed at exit by the provider (its shutdown runs atexit).
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _tracer = trace.get_tracer("jobcast")
    log.info("tracing: spans go to %s as %s", exporter_name, name)
    return True


@contextlib.contextmanager
def submit_span(kind: str, **attributes: Any) -> Iterator[None]:
    """The producer span of a submission (one for a batch): jobs created inside carry it."""
    if _tracer is None:
        yield
        return
    with _tracer.start_as_current_span(
        f"submit {kind}",
        kind=trace.SpanKind.PRODUCER,
        attributes={"messaging.system": "jobcast", "messaging.operation.type": "send", **_clean(attributes)},
    ):
        yield


def traceparent() -> str | None:
    """The current span's context as a W3C `traceparent`, for the job's record (None: no trace)."""
    if _tracer is None:
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent")


class AttemptSpan:
    """An attempt's span (`run <kind>`), child of the job's submission, after its wait's span."""

    def __init__(self, span: Any) -> None:
        self._span = span

    def counts(self, **counts: int) -> None:
        if self._span is not None:
            self._span.set_attributes({f"jobcast.{name}": value for name, value in counts.items()})

    def failed(self, error_type: str, message: str) -> None:
        if self._span is not None:
            self._span.set_status(trace.Status(trace.StatusCode.ERROR, f"{error_type}: {message}"))
            self._span.set_attribute("error.type", error_type)


@contextlib.contextmanager
def attempt_span(
    job_id: str, kind: str, attempt: int, parent: str | None, due_at: str | None
) -> Iterator[AttemptSpan]:
    if _tracer is None:
        yield AttemptSpan(None)
        return
    context = propagate.extract({"traceparent": parent}) if parent else otel_context.get_current()
    attributes = {
        "messaging.system": "jobcast",
        "messaging.operation.type": "process",
        "messaging.message.id": job_id,
        "jobcast.job_id": job_id,
        "jobcast.kind": kind,
        "jobcast.attempt": attempt,
    }
    if attempt == 1 and due_at:
        # The queue's part of the trace: from when the job was due to now.
        start_ns = int(datetime.fromisoformat(due_at).timestamp() * 1e9)
        wait = _tracer.start_span(f"wait {kind}", context=context, start_time=start_ns, attributes=attributes)
        wait.end()
    with _tracer.start_as_current_span(
        f"run {kind}", context=context, kind=trace.SpanKind.CONSUMER, attributes=attributes
    ) as span:
        yield AttemptSpan(span)


def _clean(attributes: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in attributes.items() if value is not None}
