"""A short, renewed lease on a running job, so a crashed worker's job is picked up again quickly.

arq marks a running job with an "in progress" key; jobcast's worker creates it with a lifetime of
`lease_s` (arq's default is the job's whole timeout plus ten seconds, which would strand a
crashed worker's job for that long). While the job runs, the worker renews the key every third
of the lease, so after a crash another worker picks the job up within `lease_s`. Each renewal
also reads the job's cancel flag (see jobs/signals.py).

The key's value names the worker holding the lease. A worker that stalled past it (a long pause,
a network partition) learns at its next renewal that another worker took the job over, and stops
its attempt without publishing anything (its events would be refused as a stale attempt anyway);
arq's bookkeeping when it is done (jobcast/lua/finish.lua) is left to the holder.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.exceptions import RedisError

from jobcast.jobs.signals import Attempt
from jobcast.store import JobStore
from jobcast.tasks import cancel_and_wait

log = logging.getLogger(__name__)


async def _renew(store: JobStore, attempt: Attempt, lease_ms: int, owner: str) -> None:
    while True:
        try:
            held, detail = await store.run_script("renew", attempt.job_id, lease_ms, owner)
        except RedisError as e:
            log.warning("could not renew the lease of %s: %s", attempt.job_id, e)
        else:
            if not held:
                holder = detail.decode() if isinstance(detail, bytes) else detail
                log.warning("job %s was taken over by %s: stopping this attempt", attempt.job_id, holder)
                attempt.lose_lease()
                return
            if detail:
                attempt.request_cancel()
        await asyncio.sleep(lease_ms / 3000)


@asynccontextmanager
async def hold_lease(store: JobStore, attempt: Attempt, lease_s: float, owner: str) -> AsyncIterator[None]:
    """Renew `owner`'s lease on the attempt's job while the block runs."""
    task = asyncio.create_task(
        _renew(store, attempt, int(lease_s * 1000), owner), name=f"lease:{attempt.job_id}"
    )
    try:
        yield
    finally:
        await cancel_and_wait(task)
