"""What job code writes besides progress: named output streams (`ctx.output(name)`) and the job's
log (`ctx.log`, whose records also go to the `log` stream).

Output is never dropped, reordered or coalesced away, unlike progress. It is batched at the
source: what is written within `JOBCAST_OUTPUT_FLUSH_MS` (or up to `JOBCAST_OUTPUT_FLUSH_BYTES`)
goes to Redis as one `output` event, so a token is not a Redis call each. One flusher task per
attempt sends every stream's pending text in the order it was written; the job's state changes
wait for it (`drain`), so watchers see all the output before the job's end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
from collections import deque
from collections.abc import AsyncIterable
from datetime import UTC, datetime
from types import TracebackType

from redis.exceptions import RedisError

from jobcast.backoff import Backoff
from jobcast.errors import OutputLimitExceeded
from jobcast.protocol import OUTPUT_STREAM, isoformat
from jobcast.store.output import Outputs
from jobcast.tasks import cancel_and_wait

log = logging.getLogger(__name__)

LOG_STREAM = "log"
_STREAM_NAME = re.compile(OUTPUT_STREAM)


def utf8_pieces(text: str, limit: int) -> list[str]:
    """`text` cut into pieces of at most `limit` bytes of UTF-8, never inside a character."""
    data = text.encode()
    if len(data) <= limit:
        return [text]
    pieces = []
    start = 0
    while start < len(data):
        end = min(start + limit, len(data))
        while end < len(data) and data[end] & 0xC0 == 0x80:  # a continuation byte: back up
            end -= 1
        pieces.append(data[start:end].decode())
        start = end
    return pieces


class OutputStream:
    """One named output stream of a running attempt (`ctx.output(name)`)."""

    def __init__(self, streams: JobOutput, name: str) -> None:
        self._streams = streams
        self.name = name

    async def write(self, text: str) -> None:
        """Write text; waits only when much is pending (Redis is slower than the writer)."""
        self._streams.add(self.name, text)
        await self._streams.wait_room()

    def write_nowait(self, text: str) -> None:
        """Write text without awaiting, from the event loop's thread (for code that cannot await)."""
        self._streams.add(self.name, text)

    def write_threadsafe(self, text: str) -> None:
        """Write text from any thread (a worker thread, a process pool's callback)."""
        self._streams.loop.call_soon_threadsafe(self._streams.add_quietly, self.name, text)

    async def pipe(self, source: AsyncIterable[str]) -> str:
        """Write every piece an async iterable gives (an LLM client's tokens); returns the whole."""
        parts = []
        async for text in source:
            parts.append(text)
            await self.write(text)
        return "".join(parts)

    async def flush(self) -> None:
        """Send what is pending now, and wait until it is in Redis."""
        await self._streams.drain()


class JobOutput:
    """An attempt's output streams, and the task that sends them (owned by `async with`)."""

    def __init__(
        self, outputs: Outputs, job_id: str, attempt: int, *, flush_ms: int, flush_bytes: int
    ) -> None:
        self._outputs = outputs
        self._job_id = job_id
        self._attempt = attempt
        self._flush_s = flush_ms / 1000
        self._flush_bytes = flush_bytes
        # Pending text, in the order it was written: (stream, text, its bytes) pieces, and theirs.
        self._pending: deque[tuple[str, str, int]] = deque()
        self._pending_bytes = 0
        self._sent_bytes = 0
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._lock = asyncio.Lock()
        self._flusher: asyncio.Task[None] | None = None
        self._open = False
        self.error: OutputLimitExceeded | None = None
        self.loop = asyncio.get_running_loop()
        self._streams: dict[str, OutputStream] = {}
        # The write that went past the limit: sent last, for the script to refuse and say so.
        self._refused: tuple[str, str] | None = None

    @property
    def sent_bytes(self) -> int:
        """Bytes of output in Redis so far."""
        return self._sent_bytes

    def stream(self, name: str = "output") -> OutputStream:
        if not _STREAM_NAME.fullmatch(name):
            raise ValueError(f"an output stream's name is 1 to 64 of A-Z a-z 0-9 _ . - (not {name!r})")
        if name not in self._streams:
            self._streams[name] = OutputStream(self, name)
        return self._streams[name]

    def add(self, stream: str, text: str) -> None:
        if self.error is not None:
            raise self.error
        if not self._open:
            raise RuntimeError("the job's output is closed: write while the job runs")
        if not text:
            return
        size = len(text.encode())
        if self._sent_bytes + self._pending_bytes + size > self._outputs.max_bytes:
            # Job code learns at once. What was written before is still sent; then this text,
            # which the script refuses, telling the watchers that the output stops here.
            self._refused = (stream, text)
            self.error = OutputLimitExceeded(
                f"the job's output is over its limit: {self._outputs.max_bytes} bytes an attempt "
                "(JOBCAST_MAX_OUTPUT_BYTES)"
            )
        else:
            self._pending.append((stream, text, size))
            self._pending_bytes += size
        self._idle.clear()
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_loop(), name=f"output:{self._job_id}")
        self._wake.set()
        if self.error is not None:
            raise self.error

    def add_quietly(self, stream: str, text: str) -> None:
        """`add` for a write from another thread, which cannot be raised to: its error is raised
        by the job's next write, or fails the job when it ends."""
        try:
            self.add(stream, text)
        except (OutputLimitExceeded, RuntimeError) as e:
            log.warning("output of job %s not written: %s", self._job_id, e)

    @property
    def _busy(self) -> bool:
        return bool(self._pending) or self._refused is not None

    async def wait_room(self) -> None:
        while self._pending_bytes >= self._flush_bytes * 4 and self.error is None:
            await self.drain()

    async def drain(self) -> None:
        """Wait until everything written so far is in Redis (or refused: then raise)."""
        if self._flusher is not None and self._busy:
            self._wake.set()
            await self._idle.wait()
        if self.error is not None:
            raise self.error

    async def settle(self) -> None:
        """`drain` before the attempt's state changes: past the limit the watchers were told, and
        the job's code was (the state change itself is not to fail)."""
        with contextlib.suppress(OutputLimitExceeded):
            await self.drain()

    async def __aenter__(self) -> JobOutput:
        self._open = True
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._open = False
        if self._flusher is not None:
            await cancel_and_wait(self._flusher)
            self._flusher = None

    async def _flush_loop(self) -> None:
        backoff = Backoff(0.1, 5.0)
        while True:
            await self._wake.wait()
            # The batching window: what is written meanwhile goes out with this (unless a write
            # fills a batch first).
            if self._flush_s and self._pending_bytes < self._flush_bytes:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full(), self._flush_s)
            self._wake.clear()
            try:
                await self._send()
            except RedisError as e:
                log.warning("output of job %s not sent yet: %s", self._job_id, e)
                self._wake.set()
                await asyncio.sleep(backoff.next_s())
                continue
            backoff = Backoff(0.1, 5.0)
            if not self._busy:
                self._idle.set()

    async def _full(self) -> None:
        while self._pending_bytes < self._flush_bytes:
            self._wake.clear()
            await self._wake.wait()

    async def _send(self) -> None:
        """Send what is pending, a stream's consecutive pieces joined, in the order written; then
        the write that went past the limit, if any."""
        await self._send_pending()
        if self._refused is not None and not self._pending:
            stream, text = self._refused
            with contextlib.suppress(OutputLimitExceeded):  # as it should: the watchers are told
                await self._outputs.append(self._job_id, self._attempt, stream, text)
            self._refused = None

    async def _send_pending(self) -> None:
        while self._pending:
            stream = self._pending[0][0]
            pieces: list[str] = []
            size = 0
            for name, piece, nbytes in self._pending:  # the stream's next pieces, up to a batch
                if name != stream or size >= self._flush_bytes:
                    break
                pieces.append(piece)
                size += nbytes
            text = "".join(pieces)
            for chunk in utf8_pieces(text, self._flush_bytes):
                try:
                    seq = await self._outputs.append(self._job_id, self._attempt, stream, chunk)
                except OutputLimitExceeded as e:  # past the streams' limit
                    self.error = self.error or e
                    self._pending.clear()
                    self._pending_bytes = 0
                    return
                if seq == 0:  # the job ended, or another attempt runs: nobody reads this any more
                    self._pending.clear()
                    self._pending_bytes = 0
                    return
                size = len(chunk.encode())
                self._sent_bytes += size
                # A chunk of a joined text may be only part of a piece: drop what was sent.
                self._consume(size)

    def _consume(self, nbytes: int) -> None:
        while nbytes > 0 and self._pending:
            stream, piece, size = self._pending[0]
            if size <= nbytes:
                self._pending.popleft()
                self._pending_bytes -= size
                nbytes -= size
            else:
                rest = piece.encode()[nbytes:].decode()
                self._pending[0] = (stream, rest, size - nbytes)
                self._pending_bytes -= nbytes
                nbytes = 0


class JobLogHandler(logging.Handler):
    """Writes a job's log records to its `log` stream: a line each, `<time> <LEVEL> <message>`,
    the lines of a multi-line message (a traceback) indented by two spaces."""

    def __init__(self, output: JobOutput) -> None:
        super().__init__(logging.DEBUG)
        self.output = output
        self.stream = output.stream(LOG_STREAM)
        self.thread = threading.get_ident()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + logging.Formatter().formatException(record.exc_info)
            ts = isoformat(datetime.fromtimestamp(record.created, UTC))
            line = f"{ts} {record.levelname} " + message.replace("\n", "\n  ") + "\n"
            if threading.get_ident() == self.thread:
                self.output.add_quietly(LOG_STREAM, line)
            else:
                self.stream.write_threadsafe(line)
        except Exception:  # a log line must never fail the job
            self.handleError(record)


def job_logger(kind: str, job_id: str, output: JobOutput) -> logging.Logger:
    """`ctx.log`: a logger of its own for one attempt, whose records go to the worker's log (its
    parent, `jobcast.job.<kind>`) and to the job's `log` stream."""
    parent = logging.getLogger(f"jobcast.job.{kind}")
    # The worker's level (JOBCAST_LOG_LEVEL) for both: the same records go to each.
    logger = logging.Logger(f"jobcast.job.{kind}.{job_id}", parent.getEffectiveLevel())
    logger.parent = parent
    logger.addHandler(JobLogHandler(output))
    return logger
