"""A short, renewed lease on a running job, so a crashed worker's job is picked up again quickly.

A worker's claim (jobcast/store/lua/dispatch.lua) leases the job for `lease_s` (arq's own marker lasts
the job's whole timeout plus ten seconds, which would strand a crashed worker's job for that
long). While the job runs, the worker renews the lease every third of it, so after a crash the
job is back in its queue within `lease_s` and the next claim takes it. Each renewal also reads
the job's cancel flag (see jobs/signals.py).

The lease names the worker holding it. A worker that stalled past it (a long pause, a network
partition) learns at its next renewal that the job was put back or taken over, and stops its
attempt without publishing anything (its events would be refused as a stale attempt anyway);
finishing the job (jobcast/store/lua/finish.lua) is left to the holder.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.exceptions import RedisError

from jobcast.jobs.signals import Attempt
from jobcast.store.jobs import JobStore
from jobcast.store.scripts import Status
from jobcast.tasks import cancel_and_wait

log = logging.getLogger(__name__)


async def _renew(store: JobStore, attempt: Attempt, priority: str, lease_ms: int, owner: str) -> None:
    job_id = attempt.job_id
    while True:
        try:
            answer = await store.scripts.call(
                "renew",
                {"job": store.keys.job(job_id)},
                id=job_id,
                priority=priority,
                owner=owner,
                lease_ms=lease_ms,
            )
        except RedisError as e:
            log.warning("could not renew the lease of %s: %s", job_id, e)
        else:
            if answer.status is not Status.HELD:
                if attempt.task is not None and attempt.task.done():
                    return  # the attempt is over: its terminal event ended the lease
                holder = answer["holder"] or "nobody (it went back to its queue)"
                log.warning("job %s was taken over by %s: stopping this attempt", job_id, holder)
                attempt.lose_lease()
                return
            if answer["cancel_requested"]:
                attempt.request_cancel()
        await asyncio.sleep(lease_ms / 3000)


@asynccontextmanager
async def hold_lease(
    store: JobStore, attempt: Attempt, priority: str, lease_s: float, owner: str
) -> AsyncIterator[None]:
    """Renew `owner`'s lease on the attempt's job (in `priority`'s queue) while the block runs.

    The claim has just leased the job, so the first renewal is due a third of a lease later; the
    renewing task starts only then, and most jobs, over by that time, never need one."""
    lease_ms = int(lease_s * 1000)
    task: asyncio.Task[None] | None = None

    def start() -> None:
        nonlocal task
        task = asyncio.create_task(
            _renew(store, attempt, priority, lease_ms, owner), name=f"lease:{attempt.job_id}"
        )

    timer = asyncio.get_running_loop().call_later(lease_ms / 3000, start)
    try:
        yield
    finally:
        timer.cancel()
        if task is not None:
            await cancel_and_wait(task)
