"""Owning background tasks: cancel and await them without swallowing our own cancellation."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger(__name__)


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel `task` and wait for it to finish. A CancelledError aimed at the *current* task
    propagates; the task's own is expected and absorbed.

    `asyncio.wait` never raises the task's outcome, so the two cannot be confused; counting the
    current task's `cancelling()` can, when the caller is itself shutting down after a cancel (as
    aiohttp's cleanup runs)."""
    task.cancel()
    await asyncio.wait({task})
    if not task.cancelled() and (error := task.exception()) is not None:
        log.error("task %s failed while being cancelled", task.get_name(), exc_info=error)
