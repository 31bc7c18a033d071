"""What a watcher watches: one job, or the dashboard feed (every job's state changes).

Both are topics with one interface, so subscribing, replaying and repairing are written once:
- `key`: the pub/sub channel, and the hub's name for the topic's watchers;
- `event(payload)`: a live message as an Event;
- `open`, `page`, `snapshot`: where a watcher at a position starts, what comes after a seq, and
  what stands for everything when history cannot continue a watcher;
- `position(raw)`: a client's resume id (SSE `Last-Event-ID`) as `(seq, epoch)`;
- `names`: how control messages name the topic; `gone`: a watcher's last event if its data is lost.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from redis.exceptions import RedisError

from jobcast.errors import AlreadyEnded, JobcastError, JobNotFound, Unavailable
from jobcast.protocol import MAX_SEQ, parse_feed_id, parse_seq, split_feed_record, split_record
from jobcast.queries.feed import feed_page, feed_snapshot
from jobcast.server.fanout.events import Event
from jobcast.store.jobs import JobStore


class TopicUnavailable(Unavailable):
    """The topic's history cannot be read now (its broker is unreachable). The cause is logged;
    clients get a message that names no address."""

    def __init__(self, cause: object = None) -> None:
        super().__init__("the job store is unavailable; try again shortly")
        if cause is not None:
            log.warning("history unavailable: %s", cause)


log = logging.getLogger(__name__)

# What a watcher resuming at the job's last event is told: nothing more will come.
SEEN_THE_END = "the job has ended and you have seen its last event"


class BadPosition(JobcastError, ValueError):
    """A resume id this topic never gave out."""


@dataclass(slots=True)
class Page:
    """Events after some seq, or `missed`: history cannot continue from there (send a snapshot)."""

    events: list[Event] = field(default_factory=list)
    missed: bool = False
    # A job's seq in Redis when the page was read (None: the feed's pages do not say).
    head: int | None = None


@dataclass(slots=True)
class Opening:
    """What a joining watcher gets first: a snapshot (when it has no usable position) or the
    first page of the events after its position."""

    snapshot: Event | None
    events: list[Event]


class Topic(Protocol):
    key: bytes

    @property
    def names(self) -> dict[str, Any]: ...

    def event(self, payload: bytes) -> Event: ...

    def position(self, raw: str) -> tuple[int, str | None]: ...

    # These three raise TopicUnavailable when history cannot be read now.
    async def open(self, since: int | None, epoch: str | None, limit: int) -> Opening: ...

    async def page(self, after: int, epoch: str | None, limit: int) -> Page: ...

    async def snapshot(self) -> Event | None: ...

    def gone(self) -> Event: ...


def job_position(raw: str) -> tuple[int, None]:
    """A job's resume id: its seq."""
    seq = parse_seq(raw)
    if seq is None:
        raise BadPosition(f"Last-Event-ID must be a seq, an integer from 0 to {MAX_SEQ}")
    return seq, None


class KeyedTopic:
    """Topics are equal when their channels are (a dict of watchers is keyed by topic)."""

    __slots__ = ("key",)
    key: bytes

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KeyedTopic) and other.key == self.key


class OneJob(KeyedTopic):
    """What every job topic shares, whatever holds its history: how it names itself, reads a live
    record and a resume id, and ends."""

    __slots__ = ("job_id",)
    job_id: str

    @property
    def names(self) -> dict[str, Any]:
        return {"job_id": self.job_id}

    def event(self, payload: bytes) -> Event:
        return Event(self.job_id, *split_record(payload))

    def position(self, raw: str) -> tuple[int, str | None]:
        return job_position(raw)

    def gone(self) -> Event:
        return Event.gone(self.job_id)


class JobTopic(OneJob):
    """One job's events, numbered by its seq, with its history in Redis."""

    __slots__ = ("store",)

    def __init__(self, store: JobStore, job_id: str) -> None:
        self.store = store
        self.job_id = job_id
        self.key = store.keys.channel(job_id).encode()

    def _events(self, records: list[bytes]) -> list[Event]:
        return [Event(self.job_id, *split_record(record)) for record in records]

    async def open(self, since: int | None, epoch: str | None, limit: int) -> Opening:
        try:
            replay = await self.store.replay(self.job_id, since, limit)
        except RedisError as e:
            raise TopicUnavailable(e) from e
        if replay is None:
            raise JobNotFound(self.job_id)
        if since is not None and replay.terminal and since == replay.head_seq:
            raise AlreadyEnded(SEEN_THE_END)
        if replay.needs_snapshot:
            return Opening(Event.snapshot(replay.snapshot), [])
        return Opening(None, self._events(replay.records))

    async def page(self, after: int, epoch: str | None, limit: int) -> Page:
        try:
            page = await self.store.history_page(self.job_id, after, limit)
        except RedisError as e:
            raise TopicUnavailable(e) from e
        if page.misses(after):
            return Page(missed=True, head=page.head)
        return Page(self._events(page.records), head=page.head)

    async def snapshot(self) -> Event | None:
        try:
            current = await self.store.snapshot(self.job_id)
        except RedisError as e:
            raise TopicUnavailable(e) from e
        return None if current is None else Event.snapshot(current)


class FeedTopic(KeyedTopic):
    """Every job's state changes (or one owner's jobs'), numbered by feed seq within an epoch, and
    live progress."""

    __slots__ = ("names", "owner", "shard", "shards", "store")

    def __init__(
        self, store: JobStore, owner: str | None = None, *, shard: int | None = None, shards: int = 1
    ) -> None:
        """`shard`: which of a sharded deployment's `shards` feeds this is (None: the one feed of
        every job, or an owner's, which is on the owner's shard)."""
        self.store = store
        self.owner = owner
        self.shard = shard
        self.shards = shards
        self.key = store.keys.feed(owner).channel.encode()
        self.names: dict[str, Any] = {"feed": True} if shard is None else {"feed": True, "shard": shard}

    def event(self, payload: bytes) -> Event:
        return Event.feed(*split_feed_record(payload))

    def position(self, raw: str) -> tuple[int, str | None]:
        """`<epoch>:<feed seq>` (a bare seq names no epoch: it gets a snapshot)."""
        position = parse_feed_id(raw)
        if position is None:
            raise BadPosition("Last-Event-ID must be a feed event id, <epoch>:<seq>")
        epoch, seq = position
        return seq, epoch

    def gone(self) -> Event:
        raise AssertionError("the feed always has a snapshot")

    async def open(self, since: int | None, epoch: str | None, limit: int) -> Opening:
        if since is not None:
            page = await self.page(since, epoch, limit)
            if not page.missed:
                return Opening(None, page.events)
        return Opening(await self.snapshot(), [])

    async def page(self, after: int, epoch: str | None, limit: int) -> Page:
        try:
            feed = await feed_page(self.store, after, limit, self.owner)
        except RedisError as e:
            raise TopicUnavailable(e) from e
        if feed.misses(after, epoch):
            return Page(missed=True)
        return Page([Event.feed(*split_feed_record(record)) for record in feed.page.records])

    async def snapshot(self) -> Event:
        try:
            snapshot = await feed_snapshot(self.store, self.owner)
        except RedisError as e:
            raise TopicUnavailable(e) from e
        if self.shard is not None:
            # A client opens the other shards' feeds when it learns there are others.
            snapshot |= {"shard": self.shard, "shards": self.shards}
        return Event.feed_snapshot(snapshot)
