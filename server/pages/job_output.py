"""What the job page shows of a job's output: each attempt's streams (the last attempt's open,
earlier ones folded), and the `log` stream as lines with their time and level.

Read at one moment: the lengths come from the same record as the seq the page resumes after, so
the live chunks the page then gets follow exactly the text it rendered. A stream longer than
`PAGE_OUTPUT_BYTES` is shown by its end, with a download link for the whole.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from jobcast.store.jobs import JobStore
from jobcast.store.output import output_lengths

# The most of one stream the page renders (its end); the page's script keeps to the same bound.
PAGE_OUTPUT_BYTES = 1024 * 1024
LOG_STREAM = "log"
_LOG_LINE = re.compile(r"(\S+) ([A-Z]+) (.*)")


@dataclass(slots=True)
class StreamView:
    name: str
    text: str
    length: int
    # The first byte shown (0: all of it).
    shown_from: int
    href: str


@dataclass(slots=True)
class LogLine:
    ts: str
    level: str
    levelno: int
    message: str


@dataclass(slots=True)
class AttemptOutput:
    attempt: int
    streams: list[StreamView] = field(default_factory=list)
    log: list[LogLine] = field(default_factory=list)


def log_lines(text: str) -> list[LogLine]:
    """The `log` stream's records: `<time> <LEVEL> <message>`, continuation lines indented."""
    lines: list[LogLine] = []
    for raw in text.splitlines():
        if raw.startswith("  ") and lines:
            lines[-1].message += "\n" + raw[2:]
            continue
        match = _LOG_LINE.fullmatch(raw)
        if match is None:  # cut by the page's bound: not a record's start
            continue
        number = logging.getLevelName(match[2])  # the level's number, for the page's filter
        lines.append(LogLine(match[1], match[2], number if isinstance(number, int) else 0, match[3]))
    return lines


async def page_outputs(
    store: JobStore, job_id: str, raw: dict[bytes, bytes], api: str, token: str | None
) -> list[AttemptOutput]:
    """Each attempt's output, oldest attempt first, as the record `raw` knows it."""
    by_attempt: dict[int, AttemptOutput] = {}
    streams = output_lengths(raw)
    starts = [max(0, s.length - PAGE_OUTPUT_BYTES) for s in streams]
    async with store.redis.pipeline(transaction=False) as pipe:  # every stream in one round trip
        for s, start in zip(streams, starts, strict=True):
            pipe.getrange(store.keys.output(job_id, s.attempt, s.stream), start, s.length - 1)
        texts = await pipe.execute() if streams else []
    for s, shown_from, data in zip(streams, starts, texts, strict=True):
        # A cut may fall inside a character: drop its bytes.
        text = bytes(data)[: s.length - shown_from].decode(errors="ignore")
        href = f"{api}/output/{s.stream}?attempt={s.attempt}"
        if token:
            href += f"&token={quote(token)}"
        view = by_attempt.setdefault(s.attempt, AttemptOutput(s.attempt))
        if s.stream == LOG_STREAM:
            view.log = log_lines(text)
        view.streams.append(StreamView(s.stream, text, s.length, shown_from, href))
    return [by_attempt[a] for a in sorted(by_attempt)]


def page_context(outputs: list[AttemptOutput], attempt: int) -> dict[str, Any]:
    """The template's view: the current attempt's streams and log, and the earlier attempts'."""
    current = next((o for o in outputs if o.attempt == attempt), AttemptOutput(attempt))
    return {
        "output": current,
        "output_streams": [s for s in current.streams if s.name != LOG_STREAM],
        "earlier_outputs": [o for o in outputs if o.attempt != attempt],
        "page_output_bytes": PAGE_OUTPUT_BYTES,
    }
