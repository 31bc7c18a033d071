"""Reading the dashboard feed: every job's state changes in one numbered, capped history.

The publish script appends to it (see common.lua); a watcher resumes after its last feed id, or
gets a feed snapshot (the newest jobs and the feed position they stand for) when the history no
longer reaches back that far, or when the id belongs to another epoch: feed seqs count within an
epoch, which starts over whenever the feed's data is lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jobcast.listing import list_jobs
from jobcast.protocol import dumps, new_epoch
from jobcast.store import HistoryPage, JobStore


@dataclass(frozen=True, slots=True)
class FeedPage:
    epoch: str
    page: HistoryPage

    def misses(self, after: int, epoch: str | None) -> bool:
        """A reader at `after` in `epoch` cannot continue from this page: it needs a snapshot."""
        return epoch != self.epoch or self.page.misses(after)


async def feed_page(store: JobStore, after: int, limit: int | None, owner: str | None = None) -> FeedPage:
    """The feed's (every job's, or one owner's) epoch and head, and up to `limit` records after
    `after` (None: all)."""
    feed = store.keys.feed(owner)
    page = {"start": 0, "num": limit} if limit is not None else {}
    async with store.redis.pipeline(transaction=True) as pipe:
        # The epoch is created by whoever needs it first, reader or publisher, and never replaced.
        pipe.hsetnx(feed.position, "epoch", new_epoch())
        pipe.hmget(feed.position, ["seq", "epoch"])
        pipe.zrange(feed.history, 0, 0, withscores=True)
        pipe.zrangebyscore(feed.history, f"({after}", "+inf", **page)
        _, (head, epoch), oldest, records = await pipe.execute()
    oldest_seq = int(oldest[0][1]) if oldest else None
    return FeedPage(epoch.decode(), HistoryPage(int(head or 0), records, oldest_seq))


async def feed_snapshot(store: JobStore, owner: str | None = None) -> dict[str, Any]:
    """What a feed watcher needs instead of missed events: the newest jobs, as of `feed_seq`.

    The head is read first, so the jobs are at least that fresh; events after it are delivered
    too, and a client skips those its job snapshots already include (by each job's seq)."""
    position = await feed_page(store, 0, 0, owner)
    limits = store.settings
    page = await list_jobs(
        store, state=None, kind=None, owner=owner, limit=limits.feed_snapshot_jobs, cursor=None
    )
    # Bounded in bytes too (params and results can be large): the newest jobs that fit.
    jobs, size = [], 0
    for job in page.jobs:
        size += len(dumps(job))
        if size > limits.feed_snapshot_bytes and jobs:
            break
        jobs.append(job)
    return {"type": "snapshot", "feed_seq": position.page.head, "epoch": position.epoch, "jobs": jobs}
