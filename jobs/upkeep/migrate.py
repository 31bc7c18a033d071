"""Moves what an older jobcast left in Redis into today's layout, so an upgrade loses no job.

- Earlier layouts of 0.1.0 kept a waiting job in arq's queue (`JOBCAST_QUEUE_NAME`), in a
  dispatch set and in a waiting set per priority.
- Earlier versions kept a job's history as a sorted set (`{P}:history:{id}`), and a feed's too
  (`{P}:feed:history`, `{P}:owner-feed:{owner}:history`); they are now lists (`{P}:log:{id}`,
  `...:log`), which cost about 1.05 times their records' bytes instead of 1.6.

- Before trees of jobs, no index listed the jobs that are no other job's child
  (`{P}:index:top`): it is filled from the index of every job once.

Each worker runs this at startup; it is idempotent and cheap when there is nothing to move.
"""

from __future__ import annotations

import logging

from redis.asyncio import Redis

from jobcast.protocol import Keys, Priority
from jobcast.store.jobs import JobStore

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


async def migrate_histories(store: JobStore) -> int:
    """Move every history kept as a sorted set (a job's, the dashboard feed's, an owner's feed)
    to its list; how many records moved."""
    keys = store.keys
    job_prefix, owner_prefix = keys.old_history(""), keys.feed("").channel
    owner_suffix = keys.old_feed_history("").removeprefix(owner_prefix)

    def new_name(old: str) -> str:
        if old.startswith(job_prefix):
            return keys.history(old.removeprefix(job_prefix))
        if old.startswith(owner_prefix):
            return keys.feed(old.removeprefix(owner_prefix).removesuffix(owner_suffix)).history
        return keys.feed().history

    moved = 0
    for pattern in (keys.old_history("*"), keys.old_feed_history(), keys.old_feed_history("*")):
        async for raw in store.redis.scan_iter(match=pattern, count=1000, _type="zset"):
            old = raw.decode()
            answer = await store.scripts.call("migrate_history", {"old": old, "history": new_name(old)})
            moved += answer["moved"]
    if moved:
        log.info("moved %d history records from sorted sets to lists", moved)
    return moved


async def migrate_top_index(store: JobStore, chunk: int = 1000) -> int:
    """Fill the index of jobs that are no other job's child from the index of every job, once;
    how many it added. Until it is done, listings that want it match each record instead."""
    keys, redis = store.keys, store.redis
    if await redis.exists(keys.index_top_ready):
        return 0
    added, start = 0, 0
    while True:
        entries = await redis.zrange(keys.index_all, start, start + chunk - 1, withscores=True)
        if not entries:
            break
        async with redis.pipeline(transaction=False) as pipe:
            for member, _ in entries:
                pipe.hget(keys.job(member.decode()), "parent")
            parents = await pipe.execute()
        top = {member: score for (member, score), parent in zip(entries, parents, strict=True) if not parent}
        if top:
            added += await redis.zadd(keys.index_top, top)
        start += chunk
    await redis.set(keys.index_top_ready, "1")
    if added:
        log.info("listed %d jobs in the index of jobs that are no job's child", added)
    return added
