"""Moves what an older jobcast left in Redis into today's layout, so an upgrade loses no job.

Before 0.2 a waiting job sat in arq's queue (`JOBCAST_QUEUE_NAME`, default `jobcast:queue`), in a
dispatch set and in a waiting set per priority. Each worker runs this at startup; it is idempotent
and cheap when there is nothing to move.
"""

from __future__ import annotations

import logging

from redis.asyncio import Redis

from jobcast.protocol import Keys, Priority

log = logging.getLogger(__name__)


async def migrate(redis: Redis, keys: Keys, old_queue: str = "jobcast:queue") -> int:
    """Move jobs waiting in the old per-priority dispatch sets to their queues; how many moved."""
    moved = 0
    for p in Priority:
        old = f"{keys.prefix}:dispatch:{p.value}"
        if not await redis.exists(old):
            continue
        async with redis.pipeline(transaction=True) as pipe:
            # A job already in the new queue keeps its place (the lower score wins either way).
            pipe.zunionstore(keys.queue(p.value), [keys.queue(p.value), old], aggregate="MIN")
            pipe.zcard(old)
            pipe.delete(old, f"{keys.prefix}:waiting:{p.value}")
            _, n, _ = await pipe.execute()
        moved += n
    if moved:
        await redis.delete(old_queue, f"{keys.prefix}:dispatch:clock", f"{keys.prefix}:dispatch:order")
        log.info("moved %d waiting jobs from the old queue layout", moved)
    return moved
