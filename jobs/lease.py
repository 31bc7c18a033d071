"""A short, renewed lease on a running job, so a crashed worker's job is picked up again quickly.

arq marks a running job with an "in progress" key that lives for the job's whole timeout plus ten
seconds; a worker killed mid-job would leave its job stranded for that long. While the job runs,
the worker keeps that key at `lease_s` and renews it every third of that, so after a crash
another worker picks the job up within `lease_s`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from arq.constants import in_progress_key_prefix
from redis.asyncio import Redis
from redis.exceptions import RedisError

from jobcast.tasks import cancel_and_wait

log = logging.getLogger(__name__)


async def _renew(redis: Redis, key: str, lease_ms: int) -> None:
    while True:
        try:
            await redis.pexpire(key, lease_ms)
        except RedisError as e:
            log.warning("could not renew lease %s: %s", key, e)
        await asyncio.sleep(lease_ms / 3000)


@asynccontextmanager
async def hold_lease(redis: Redis, job_id: str, lease_s: float) -> AsyncIterator[None]:
    task = asyncio.create_task(_renew(redis, in_progress_key_prefix + job_id, int(lease_s * 1000)))
    try:
        yield
    finally:
        await cancel_and_wait(task)
