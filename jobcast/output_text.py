"""One attempt's text of one output stream, rebuilt from a job's events: what the web's
`?follow=1` writes and what the Python client's `output()` yields (the JS client's `OutputText`
is the same rule in JS).

The snapshot gives the text up to its seq (or, when long, its length: read `offset` to `length`
from `GET .../output/{stream}`), then each `output` event of the stream adds its chunk. `offset`
counts the bytes already given, so a snapshot after a dropped connection gives only what follows.
The attempt followed is the one running, or the next to start; `over` turns true when it ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jobcast.protocol import TERMINAL_STATES


@dataclass(slots=True)
class OutputText:
    stream: str
    attempt: int | None = None
    offset: int = 0
    over: bool = False

    def feed(self, kind: str, data: dict[str, Any]) -> bytes | dict[str, Any]:
        """The new text (UTF-8) an event of type `kind` brings, or a stream too long for a
        snapshot (`length`, `href`); sets `over` when the attempt followed has ended."""
        attempt = int(data.get("attempt") or 0)
        state = data.get("state")
        if kind == "snapshot":
            if self.attempt is None:
                begun = state == "running" or state in TERMINAL_STATES
                self.attempt = attempt if begun and attempt else attempt + 1
            if attempt != self.attempt:  # the attempt followed is over, or yet to start
                self.over = attempt > self.attempt or state in TERMINAL_STATES
                return b""
            self.over = state in TERMINAL_STATES or state == "retrying"
            held = (data.get("output") or {}).get(self.stream)
            if isinstance(held, dict):
                return held
            text = (held or "").encode()
            new = text[self.offset :]
            self.offset = max(self.offset, len(text))
            return new
        if kind == "error":  # the job is gone
            self.over = True
            return b""
        if self.attempt is None:
            return b""
        if kind == "output":
            if data.get("stream") == self.stream and attempt == self.attempt:
                new = str(data.get("data") or "").encode()
                self.offset += len(new)
                return new
            return b""
        if kind == "started":
            self.over = attempt > self.attempt
        else:
            self.over = kind == "retrying" or state in TERMINAL_STATES
        return b""
