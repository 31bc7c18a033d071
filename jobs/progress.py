"""The progress API job code calls, and the coalescing publisher behind it.

`update()` only records the latest value, so a tight loop may call it thousands of times a second;
a flusher task publishes at most `rate_hz` progress events per second per job, always the latest
value, and every state change flushes pending progress first so watchers see them in order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

from redis.exceptions import RedisError

from jobcast.backoff import Backoff
from jobcast.jobs.arq_runtime import current_claim
from jobcast.protocol import EventType, State, progress_dict
from jobcast.store.jobs import JobStore
from jobcast.tasks import cancel_and_wait

log = logging.getLogger(__name__)

# A state change (above all the terminal one) must reach Redis: watchers rely on learning how a
# job ended. The client already retries a few seconds; this outer loop rides out longer outages.
STATE_PUBLISH_TRIES = 30


class Progress:
    """Handed to job code as `ctx.progress`; also publishes the job's state changes."""

    def __init__(
        self,
        store: JobStore,
        job_id: str,
        attempt: int,
        *,
        rate_hz: float,
        owner: str | None = None,
        max_message_chars: int = 1000,
        before_state: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        # Run before each state change but `started` (the job's output, sent first): watchers
        # must see everything a job wrote before they learn it ended.
        self._before_state = before_state
        # Messages are cut before they are stored: one per job, echoed to every watcher.
        self.max_message_chars = max_message_chars
        self._store = store
        self._job_id = job_id
        self._owner = owner
        self._attempt = attempt
        self._interval = 1.0 / rate_hz
        self._pending: tuple[float, float | None, str | None] | None = None
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._flusher: asyncio.Task[None] | None = None
        self._open = False  # inside `async with`: the only time a flusher may start
        self.latest: dict[str, Any] | None = None
        # Progress events published (the attempt's trace counts them).
        self.published = 0
        # The attempt runs after the job's children have ended (jobcast/tree.py).
        self.children_done = False

    async def update(self, current: float, total: float | None = None, message: str | None = None) -> None:
        """Report progress; cheap enough for a tight loop (publishing happens elsewhere)."""
        self.report(current, total, message)

    def report(self, current: float, total: float | None = None, message: str | None = None) -> None:
        """`update` for code that cannot await; on the event loop's thread only. From a worker
        thread: `loop.call_soon_threadsafe(progress.report, current, total, message)`."""
        if message is not None and len(message) > self.max_message_chars:
            message = message[: self.max_message_chars - 1] + "…"
        self._pending = (current, total, message)
        self._wake.set()
        # The flusher starts with the first report: most short jobs never report, and a task
        # each would cost them more than their run.
        if self._flusher is None and self._open:
            self._flusher = asyncio.create_task(self._flush_loop(), name=f"progress:{self._job_id}")

    async def __aenter__(self) -> Progress:
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
        while True:
            await self._wake.wait()
            try:
                async with self._lock:
                    await self._flush_locked()
            except RedisError as e:
                # Keep the value; the next wake (or the state change that ends the job) retries.
                log.warning("progress for %s not published yet: %s", self._job_id, e)
            await asyncio.sleep(self._interval)

    async def _flush_locked(self) -> None:
        self._wake.clear()
        if self._pending is None:
            return
        current, total, message = self._pending
        if self.children_done:
            # A parent's bar is its children's, whole by now: its continuation's own reports
            # carry their message and leave the bar full rather than sending it back.
            current, total = 100, 100
        progress = progress_dict(current, total, message)
        await self._store.publish(
            self._job_id, EventType.PROGRESS, owner=self._owner, attempt=self._attempt, progress=progress
        )
        # Only forget the value once it is in Redis, so a failed publish is retried.
        if self._pending == (current, total, message):
            self._pending = None
        self.latest = progress
        self.published += 1

    async def state(
        self,
        type_: EventType,
        *,
        result: Any = None,
        error: dict[str, str] | None = None,
        progress: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
        fence: int | None = None,
        from_state: State | None = None,
    ) -> int:
        """Publish a state change after any pending progress; returns its seq (0: refused).

        `fence` defaults to this attempt's (see JobStore.publish); events a worker publishes
        before the attempt starts pass the job's previous attempt. `from_state`: see
        JobStore.event."""

        async def once() -> int:
            if self._before_state is not None and type_ is not EventType.STARTED:
                await self._before_state()
            async with self._lock:
                if type_ is not EventType.STARTED:
                    await self._flush_locked()
                return await self._store.publish(
                    self._job_id,
                    type_,
                    owner=self._owner,
                    # A terminal event ends this run's lease too (the worker's `_finish` then skips).
                    release=current_claim.get(),
                    attempt=self._attempt if fence is None else fence,
                    fence=fence,
                    progress=progress if progress is not None else self.latest,
                    result=result,
                    error=error,
                    extra=extra,
                    from_state=from_state,
                )

        backoff = Backoff(0.1, 5.0)
        for _ in range(STATE_PUBLISH_TRIES - 1):
            try:
                return await once()
            except RedisError as e:
                log.warning("%s event for %s not published yet (%s); retrying", type_, self._job_id, e)
                await asyncio.sleep(backoff.next_s())
        return await once()
