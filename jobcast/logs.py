"""Log lines that say which request and which job they belong to.

The web server takes each request's `X-Request-ID` (or makes one), the job record keeps the one
that submitted it, and the worker puts the job id, attempt and request id on every line it logs
while it runs the job: one grep ties a request to its job's lines in every process.
"""

from __future__ import annotations

import logging
import os
from contextvars import ContextVar

# "job=… attempt=… request=…" for the lines of the task at hand ("" outside any).
log_context: ContextVar[str] = ContextVar("jobcast_log_context", default="")


def context_text(**fields: object) -> str:
    return " ".join(f"{name}={value}" for name, value in fields.items() if value not in (None, ""))


class ContextFilter(logging.Filter):
    """Appends the task's context to each record's message."""

    def filter(self, record: logging.LogRecord) -> bool:
        # The access log names the request itself (from the response's X-Request-ID).
        context = "" if record.name == "jobcast.access" else log_context.get()
        record.context = f" [{context}]" if context else ""
        return True


def configure_logging() -> None:
    handler = logging.StreamHandler()
    handler.addFilter(ContextFilter())
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s%(context)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(os.environ.get("JOBCAST_LOG_LEVEL", "INFO"))
