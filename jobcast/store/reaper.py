"""Tells watchers at once when the worker running a job is gone.

A job whose worker died keeps its `running` state until a worker claims it again once its lease
lapses, and with no worker alive that never happens: its page would say "running · live" for as
long as no worker starts. So every web process and worker runs a reaper: once a job's lease has
lapsed, the reaper publishes `retrying` (WorkerLost: waiting for a worker) and puts the job back
in its queue, which also takes the lease from a worker that was only stalled. A Redis lock lets
one reaper pass run per interval across the deployment; the `from_state` guard on the event
makes a reaper and a worker that find the same job announce it once.
"""

from __future__ import annotations

import asyncio
import logging
import secrets

from redis.exceptions import RedisError

from jobcast.protocol import EventType, Priority, State, epoch_ms, utcnow
from jobcast.store.jobs import JobStore

log = logging.getLogger(__name__)

# The lost jobs' ids one log line names at most.
LOGGED_IDS = 10

BATCH = 100


def worker_lost(attempt: int) -> dict[str, str]:
    """The error of the `retrying` event that says an attempt's worker is gone."""
    return {
        "type": "WorkerLost",
        "message": f"the worker running attempt {attempt} stopped; waiting for a worker to run it again",
    }


class Reaper:
    def __init__(self, store: JobStore) -> None:
        self.store = store
        self.name = "reaper-" + secrets.token_hex(6)

    async def run_once(self, interval_s: float) -> list[str]:
        """One pass, unless another process's pass holds the lock: the jobs announced lost."""
        redis, keys = self.store.redis, self.store.keys
        if not await redis.set(keys.reaper_lock, self.name, nx=True, px=max(1, int(interval_s * 1000))):
            return []
        now = epoch_ms(utcnow())
        lapsed = []
        for priority in Priority:
            found = await redis.zrangebyscore(
                keys.running(priority.value), "-inf", f"({now}", start=0, num=BATCH
            )
            lapsed += [raw.decode() for raw in found]
        announced = []
        for job_id in lapsed:
            record = await self.store.load(job_id)
            if record is None or record.state is not State.RUNNING:
                continue
            seq = await self.store.publish(
                job_id,
                EventType.RETRYING,
                owner=record.owner,
                attempt=record.attempt,
                error=worker_lost(record.attempt),
                from_state=State.RUNNING,
            )
            if seq:
                announced.append(job_id)
        if lapsed:
            # Back in their queues, as a worker's claim would put them: a stalled worker that
            # comes back finds its lease gone and stops its attempt.
            await self.store.scripts.call("dispatch", owner=self.name, want=0, lease_ms=0)
        return announced

    async def run(self, interval_s: float) -> None:
        """Every `interval_s`, until cancelled; a Redis outage skips a pass, never ends the loop."""
        while True:
            try:
                if lost := await self.run_once(interval_s):
                    # One line of bounded length however many were lost (a worker can hold hundreds).
                    shown = ", ".join(lost[:LOGGED_IDS]) + (", …" if len(lost) > LOGGED_IDS else "")
                    log.warning("%d jobs lost their worker; waiting for a worker: %s", len(lost), shown)
            except RedisError as e:
                log.warning("reaper pass skipped: %s", e)
            await asyncio.sleep(interval_s)
