"""Reading the dashboard feed: every job's state changes in one numbered, capped history.

The publish script appends to it (see common.lua); a watcher resumes after its last feed id, or
gets a feed snapshot (the newest jobs and the feed position they stand for) when the history no
longer reaches back that far, or when the id belongs to another epoch: feed seqs count within an
epoch, which starts over whenever the feed's data is lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jobcast.protocol import dumps, new_epoch
from jobcast.queries.listing import list_jobs
from jobcast.snapshot import JobSnapshot
from jobcast.store.jobs import HistoryPage, JobStore


@dataclass(frozen=True, slots=True)
class FeedPage:
    epoch: str
    page: HistoryPage

    def misses(self, after: int, epoch: str | None) -> bool:
        """A reader at `after` in `epoch` cannot continue from this page: it needs a snapshot."""
        return epoch != self.epoch or self.page.misses(after)


def expire_owned(store: JobStore, pipe: Any, position: str, owner: str | None) -> None:
    """An owner's feed position expires with its history: a reader who never submits (an
    anonymous browser's first visit) leaves no key for good."""
    if owner is not None:
        pipe.expire(position, store.settings.retention_s)


async def feed_page(store: JobStore, after: int, limit: int | None, owner: str | None = None) -> FeedPage:
    """The feed's (every job's, or one owner's) epoch and head, and up to `limit` records after
    `after` (None: all)."""
    feed = store.keys.feed(owner)
    async with store.redis.pipeline(transaction=True) as pipe:
        # The epoch is created by whoever needs it first, reader or publisher, and never replaced.
        pipe.hsetnx(feed.position, "epoch", new_epoch())
        expire_owned(store, pipe, feed.position, owner)
        pipe.hget(feed.position, "epoch")
        await store.read_history(feed.position, feed.history, after, limit, pipe)
        *_, epoch, answer = await pipe.execute()
    return FeedPage(epoch.decode(), HistoryPage.read(answer, after, limit))


async def feed_position(store: JobStore, owner: str | None = None) -> tuple[str, int]:
    """The feed's epoch and its head seq."""
    feed = store.keys.feed(owner)
    async with store.redis.pipeline(transaction=True) as pipe:
        pipe.hsetnx(feed.position, "epoch", new_epoch())
        expire_owned(store, pipe, feed.position, owner)
        pipe.hmget(feed.position, ["epoch", "seq"])
        *_, (epoch, head) = await pipe.execute()
    return epoch.decode(), int(head or 0)


async def feed_snapshot(store: JobStore, owner: str | None = None) -> dict[str, Any]:
    """What a feed watcher needs instead of missed events: the newest jobs, as of `feed_seq`.

    The head is read first, so the jobs are at least that fresh; events after it are delivered
    too, and a client skips those its job snapshots already include (by each job's seq)."""
    epoch, head = await feed_position(store, owner)
    limits = store.settings
    page = await list_jobs(
        store, state=None, kind=None, owner=owner, limit=limits.feed_snapshot_jobs, cursor=None
    )
    # Bounded in bytes too (params and results can be large): the newest jobs that fit.
    jobs: list[JobSnapshot] = []
    size = 0
    for job in page.jobs:
        size += len(dumps(job))
        if size > limits.feed_snapshot_bytes and jobs:
            break
        jobs.append(job)
    return {"type": "snapshot", "feed_seq": head, "epoch": epoch, "jobs": jobs}
