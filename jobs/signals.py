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
from collections.abc import Callable
from dataclasses import dataclass, field

from jobcast.backoff import Backoff
from jobcast.protocol import Keys
from jobcast.redis.pubsub import PubSubProtocol, connect_pubsub, keep_alive

log = logging.getLogger(__name__)

# A silent network is noticed within this; a subscription not confirmed within the other is retried.
PING_INTERVAL_S = 5.0
SUBSCRIBE_TIMEOUT_S = 10.0


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
# starts a job in Redis (jobcast/store/lua/dispatch.lua) a moment before its attempt registers here; a
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
    redis_url: str, keys: Keys, running: RunningAttempts, wakeup: asyncio.Event
) -> None:
    """Runs for the worker's life (its owner cancels it); rides out Redis outages. On jobcast's
    lean pub/sub protocol, not redis-py's PubSub: a wakeup is acted on in the read that brings it
    (redis-py's reader adds an awaited call, with its own timeout, per message)."""
    cancel_channel, wake_channel = keys.cancel_channel.encode(), keys.wake_channel.encode()
    backoff = Backoff(0.1, 5.0)

    def on_message(channel: bytes, data: bytes) -> None:
        if channel == wake_channel:
            wakeup.set()
        elif running.cancel(job_id := data.decode()):
            log.info("cancelling job %s on request", job_id)

    while True:
        try:
            conn = await _subscribed(redis_url, keys.prefix, on_message, (cancel_channel, wake_channel))
        except (OSError, TimeoutError) as e:
            delay = backoff.next_s()
            log.warning("signal listener cannot reach Redis (%s); retrying in %.1fs", e, delay)
            await asyncio.sleep(delay)
            continue
        try:
            backoff.reset()
            # Whatever was submitted while we were away.
            wakeup.set()
            await keep_alive(conn, PING_INTERVAL_S)
        finally:
            conn.close()
        log.warning("signal listener lost Redis; reconnecting")


async def _subscribed(
    redis_url: str, key_prefix: str, on_message: Callable[[bytes, bytes], None], channels: tuple[bytes, ...]
) -> PubSubProtocol:
    """A pub/sub connection whose subscriptions Redis has confirmed (so no wakeup sent after this
    returns is missed); ConnectionError or TimeoutError otherwise."""
    confirmed: set[bytes] = set()
    loop = asyncio.get_running_loop()
    all_confirmed: asyncio.Future[None] = loop.create_future()

    def on_subscribed(channel: bytes) -> None:
        confirmed.add(channel)
        if confirmed.issuperset(channels) and not all_confirmed.done():
            all_confirmed.set_result(None)

    conn = await connect_pubsub(
        redis_url, on_message, on_subscribed, name="jobcast-worker-signals", key_prefix=key_prefix
    )
    try:
        conn.subscribe(channels)
        async with asyncio.timeout(SUBSCRIBE_TIMEOUT_S):
            await asyncio.wait({all_confirmed, conn.closed}, return_when=asyncio.FIRST_COMPLETED)
        if not all_confirmed.done():
            raise ConnectionError(conn.error or "closed before its subscriptions were confirmed")
    except BaseException:
        conn.close()
        raise
    return conn
