"""A topic's history as the relay reads it: a job's events, or the dashboard feed.

Both answer the same three questions, so joining, catching up and repairing are written once:
where does a watcher at a given position start (`open`), what comes after a seq (`page`), and
what stands for everything when history cannot continue a watcher (`snapshot`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from jobcast.feed import feed_page, feed_snapshot
from jobcast.protocol import split_feed_record, split_record
from jobcast.server.hub import Event
from jobcast.store import JobStore


class JobNotFound(Exception):
    pass


class AlreadyEnded(Exception):
    """The watcher has seen the job's terminal event: nothing more will come."""


@dataclass(slots=True)
class Page:
    """Events after some seq, or `missed`: history cannot continue from there (send a snapshot)."""

    events: list[Event] = field(default_factory=list)
    missed: bool = False


@dataclass(slots=True)
class Opening:
    """What a joining watcher gets first: a snapshot (when it has no usable position) or the
    first page of the events after its position."""

    snapshot: Event | None
    events: list[Event]


class History(Protocol):
    async def open(self, since: int | None, epoch: str | None, limit: int) -> Opening: ...

    async def page(self, after: int, epoch: str | None, limit: int) -> Page: ...

    async def snapshot(self) -> Event | None: ...


class JobHistory:
    """One job's events (its seqs never restart, so it has no epoch)."""

    __slots__ = ("job_id", "store")

    def __init__(self, store: JobStore, job_id: str) -> None:
        self.store = store
        self.job_id = job_id

    def _events(self, records: list[bytes]) -> list[Event]:
        return [Event(self.job_id, *split_record(record)) for record in records]

    async def open(self, since: int | None, epoch: str | None, limit: int) -> Opening:
        replay = await self.store.replay(self.job_id, since, limit)
        if replay is None:
            raise JobNotFound(self.job_id)
        if since is not None and replay.terminal and since == replay.head_seq:
            raise AlreadyEnded(self.job_id)
        if replay.needs_snapshot:
            return Opening(Event.snapshot(replay.snapshot), [])
        return Opening(None, self._events(replay.records))

    async def page(self, after: int, epoch: str | None, limit: int) -> Page:
        page = await self.store.history_page(self.job_id, after, limit)
        if page.misses(after):
            return Page(missed=True)
        return Page(self._events(page.records))

    async def snapshot(self) -> Event | None:
        current = await self.store.snapshot(self.job_id)
        return None if current is None else Event.snapshot(current)


class FeedHistory:
    """Every job's state changes, numbered by feed seq within an epoch."""

    __slots__ = ("store",)

    def __init__(self, store: JobStore) -> None:
        self.store = store

    async def open(self, since: int | None, epoch: str | None, limit: int) -> Opening:
        if since is not None:
            page = await self.page(since, epoch, limit)
            if not page.missed:
                return Opening(None, page.events)
        return Opening(await self.snapshot(), [])

    async def page(self, after: int, epoch: str | None, limit: int) -> Page:
        feed = await feed_page(self.store, after, limit)
        if feed.misses(after, epoch):
            return Page(missed=True)
        return Page([Event.feed(*split_feed_record(record)) for record in feed.page.records])

    async def snapshot(self) -> Event:
        return Event.feed_snapshot(await feed_snapshot(self.store))
