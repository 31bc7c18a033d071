"""What the web servers tell workers over pub/sub: stop this job, and there is new work.

The web server's cancel script flags the job in its own record and publishes its id on the
`{prefix}:cancel` channel. Each worker listens there and cancels the attempt's task if it runs the
job; the lease renewal re-reads the flag, so a message missed during a reconnect still cancels
the job within a third of the lease.

Submission publishes on `{prefix}:wake`, so an idle worker polls at once instead of on its next
tick: a job starts within a Redis round trip or two, while idle workers poll only every
`poll_delay_s`. A wake lost in a reconnect costs at most that one tick.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from redis.asyncio import Redis
from redis.exceptions import RedisError

from jobcast.backoff import Backoff
from jobcast.protocol import Keys

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Attempt:
    """A job attempt running on this worker: the task running the kind's code."""

    job_id: str
    task: asyncio.Task[object] | None = None
    cancel_requested: bool = False
    # Another worker took the job over (this one stalled past its lease): stop, publish nothing.
    lease_lost: bool = False

    def request_cancel(self) -> None:
        if self.cancel_requested:
            return
        self.cancel_requested = True
        if self.task is not None:
            self.task.cancel()

    def lose_lease(self) -> None:
        if self.lease_lost:
            return
        self.lease_lost = True
        if self.task is not None:
            self.task.cancel()


# Cancel requests for jobs not (yet) running here, remembered this long and this many. A claim
# starts a job in Redis (jobcast/lua/dispatch.lua) a moment before its attempt registers here; a
# cancel request published in that moment must still reach it. Every worker hears every cancel
# request, so most are for other workers' jobs: the memory is short and bounded. (A request missed
# even so is read by the lease's first renewal.)
EARLY_CANCEL_S = 5.0
EARLY_CANCELS_MAX = 1000


@dataclass(slots=True)
class RunningAttempts:
    attempts: dict[str, Attempt] = field(default_factory=dict)
    early_cancels: dict[str, float] = field(default_factory=dict)

    def add(self, job_id: str) -> Attempt:
        attempt = self.attempts[job_id] = Attempt(job_id)
        asked = self.early_cancels.pop(job_id, None)
        if asked is not None and time.monotonic() - asked < EARLY_CANCEL_S:
            attempt.request_cancel()
        return attempt

    def remove(self, job_id: str) -> None:
        self.attempts.pop(job_id, None)

    def cancel(self, job_id: str) -> bool:
        attempt = self.attempts.get(job_id)
        if attempt is None:
            if len(self.early_cancels) >= EARLY_CANCELS_MAX:
                del self.early_cancels[next(iter(self.early_cancels))]  # the oldest
            self.early_cancels[job_id] = time.monotonic()
            return False
        attempt.request_cancel()
        return True


async def listen_for_signals(
    redis: Redis, keys: Keys, running: RunningAttempts, wakeup: asyncio.Event
) -> None:
    """Runs for the worker's life (its owner cancels it); rides out Redis outages."""
    cancel_channel, wake_channel = keys.cancel_channel.encode(), keys.wake_channel.encode()
    backoff = Backoff(0.1, 5.0)
    while True:
        try:
            async with redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                await pubsub.subscribe(cancel_channel, wake_channel)
                backoff.reset()
                # Whatever was submitted while we were away.
                wakeup.set()
                async for message in pubsub.listen():
                    if message["type"] != "message":
                        continue
                    if message["channel"] == wake_channel:
                        wakeup.set()
                    elif running.cancel(job_id := message["data"].decode()):
                        log.info("cancelling job %s on request", job_id)
        except RedisError as e:
            delay = backoff.next_s()
            log.warning("cancel listener lost Redis (%s); reconnecting in %.1fs", e, delay)
            await asyncio.sleep(delay)
