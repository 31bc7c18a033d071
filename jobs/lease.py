"""A short, renewed lease on a running job, so a crashed worker's job is picked up again quickly.

arq marks a running job with an "in progress" key; jobcast's worker creates it with a lifetime of
`lease_s` (arq's default is the job's whole timeout plus ten seconds, which would strand a
crashed worker's job for that long). While the job runs, the worker renews the key every third
of the lease, so after a crash another worker picks the job up within `lease_s`. Each renewal
also reads the job's cancel flag (see jobs/signals.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.exceptions import RedisError

from jobcast.store import JobStore
from jobcast.tasks import cancel_and_wait
from jobs.signals import Attempt

log = logging.getLogger(__name__)


async def _renew(store: JobStore, attempt: Attempt, lease_ms: int) -> None:
    while True:
        try:
            if await store.run_script("renew", attempt.job_id, lease_ms):
                attempt.request_cancel()
        except RedisError as e:
            log.warning("could not renew the lease of %s: %s", attempt.job_id, e)
        await asyncio.sleep(lease_ms / 3000)


@asynccontextmanager
async def hold_lease(store: JobStore, attempt: Attempt, lease_s: float) -> AsyncIterator[None]:
    task = asyncio.create_task(_renew(store, attempt, int(lease_s * 1000)), name=f"lease:{attempt.job_id}")
    try:
        yield
    finally:
        await cancel_and_wait(task)
