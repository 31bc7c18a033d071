"""Log lines that say which request and which job they belong to, as text or as JSON.

The web server takes each request's `X-Request-ID` (or makes one), the job record keeps the one
that submitted it, and the worker puts the job id, attempt and request id on every line it logs
while it runs the job: one grep (or one query on the JSON fields) ties a request to its job's lines
in every process.

`JOBCAST_LOG_FORMAT=json` writes one JSON object per line, for a log pipeline: `ts`, `level`,
`logger`, `message`, the context fields (`job`, `attempt`, `request`), and for access lines an
`http` object. The default is readable text. `JOBCAST_LOG_LEVEL` sets the level (INFO).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jobcast.settings import ProcessSettings

import logging
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson

# The task at hand's fields ({} outside any): job, attempt, request.
log_context: ContextVar[dict[str, Any]] = ContextVar("jobcast_log_context", default={})  # noqa: B039


def context_fields(**fields: Any) -> dict[str, Any]:
    """The fields worth logging (None and "" left out)."""
    return {name: value for name, value in fields.items() if value not in (None, "")}


def context_text(fields: dict[str, Any]) -> str:
    return " ".join(f"{name}={value}" for name, value in fields.items())


class ContextFilter(logging.Filter):
    """Puts the task's context on each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        # The access log names the request itself (from the response's X-Request-ID).
        fields = {} if record.name == "jobcast.access" else log_context.get()
        record.fields = fields
        record.context = f" [{context_text(fields)}]" if fields else ""
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if (http := getattr(record, "http", None)) is not None:
            line["http"] = http
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def configure_logging(settings: ProcessSettings) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(ContextFilter())
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s%(context)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
