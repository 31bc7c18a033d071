"""Reading the dashboard feed: every job's state changes in one numbered, capped history.

The publish script appends to it (see common.lua); a watcher resumes after its last feed seq, or
gets a feed snapshot (the newest jobs and the feed seq they stand for) when the history no longer
reaches back that far.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jobcast.listing import list_jobs
from jobcast.store import JobStore

SNAPSHOT_JOBS = 50


@dataclass(slots=True)
class FeedReplay:
    head: int
    records: list[bytes] = field(default_factory=list)
    needs_snapshot: bool = False


async def feed_after(store: JobStore, seq: int) -> tuple[int, list[bytes], int | None]:
    """The feed's head seq, its records after `seq`, and the oldest seq it still holds."""
    keys = store.keys
    async with store.redis.pipeline(transaction=True) as pipe:
        pipe.get(keys.feed_seq)
        pipe.zrange(keys.feed_history, 0, 0, withscores=True)
        pipe.zrangebyscore(keys.feed_history, f"({seq}", "+inf")
        head, oldest, records = await pipe.execute()
    return int(head or 0), records, (int(oldest[0][1]) if oldest else None)


async def feed_replay(store: JobStore, since: int | None) -> FeedReplay:
    head, records, oldest = await feed_after(store, since or 0)
    if since is None or since > head:
        # No position, or one this feed never reached (Redis lost its data): a snapshot.
        return FeedReplay(head, needs_snapshot=True)
    if since == head:
        return FeedReplay(head)
    if oldest is None or oldest > since + 1:
        return FeedReplay(head, needs_snapshot=True)
    return FeedReplay(head, records)


async def feed_snapshot(store: JobStore) -> dict[str, Any]:
    """What a feed watcher needs instead of missed events: the newest jobs, as of `feed_seq`.

    The head is read first, so the jobs are at least that fresh; events after it are delivered
    too, and a client skips those its job snapshots already include (by each job's seq)."""
    head = int(await store.redis.get(store.keys.feed_seq) or 0)
    page = await list_jobs(store, state=None, kind=None, limit=SNAPSHOT_JOBS, cursor=None)
    return {"type": "snapshot", "feed_seq": head, "jobs": page.jobs}
