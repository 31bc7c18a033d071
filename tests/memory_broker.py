"""An in-process Broker (see server/fanout/broker.py) for tests of the relay and the hub.

It keeps each job's history in memory and delivers published events to the connections that
subscribed, the way Redis pub/sub does, and it can fail on purpose: drop every connection
(`drop_connections`), refuse new ones and history reads (`down`), or lose the messages published
while it is `deaf`, so a test can make exactly the outage it means to test, in milliseconds.
Only jobs are modelled: the feed's rules are the same, with an epoch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field

from jobcast.errors import AlreadyEnded, JobNotFound
from jobcast.protocol import TERMINAL_STATES, TERMINAL_TYPE_BYTES
from jobcast.server.fanout.broker import OnMessage, OnSubscribed
from jobcast.server.fanout.events import Event
from jobcast.server.fanout.topics import (
    SEEN_THE_END,
    OneJob,
    Opening,
    Page,
    TopicUnavailable,
)
from jobcast.store.jobs import HistoryPage


@dataclass
class MemoryJob:
    records: list[bytes] = field(default_factory=list)  # the history, oldest first
    head: int = 0
    state: str = "queued"


class MemoryConnection:
    def __init__(self, broker: MemoryBroker, on_message: OnMessage, on_subscribed: OnSubscribed) -> None:
        self._broker = broker
        self._loop = asyncio.get_running_loop()
        self.on_message = on_message
        self._on_subscribed = on_subscribed
        self.channels: set[bytes] = set()
        self.closed: asyncio.Future[None] = self._loop.create_future()

    def subscribe(self, channels: Iterable[bytes]) -> None:
        for channel in channels:
            self.channels.add(channel)
            # Confirmed later, as a broker across a network would.
            self._loop.call_soon(self._on_subscribed, channel)

    def unsubscribe(self, channels: Iterable[bytes]) -> None:
        self.channels.difference_update(channels)

    async def ping(self, within_s: float) -> None:
        if self.closed.done():
            raise ConnectionError("closed")

    def close(self) -> None:
        self._broker.connections.discard(self)
        if not self.closed.done():
            self.closed.set_result(None)


class MemoryTopic(OneJob):
    __slots__ = ("broker",)

    def __init__(self, broker: MemoryBroker, job_id: str) -> None:
        self.broker = broker
        self.job_id = job_id
        self.key = b"events:" + job_id.encode()

    def _job(self) -> MemoryJob | None:
        if self.broker.down:
            raise TopicUnavailable("the memory broker is down")
        return self.broker.jobs.get(self.job_id)

    def _history(self, job: MemoryJob, after: int, limit: int) -> HistoryPage:
        oldest = int(job.records[0].split(b"\n", 1)[0]) if job.records else None
        records = [r for r in job.records if int(r.split(b"\n", 1)[0]) > after][:limit]
        return HistoryPage(job.head, records, oldest)

    async def open(self, since: int | None, epoch: str | None, limit: int) -> Opening:
        job = self._job()
        if job is None:
            raise JobNotFound(self.job_id)
        if since is not None and job.state in TERMINAL_STATES and since == job.head:
            raise AlreadyEnded(SEEN_THE_END)
        page = self._history(job, since or 0, limit)
        if since is None or page.misses(since):
            return Opening(self._snapshot(job), [])
        return Opening(None, [self.event(r) for r in page.records])

    async def page(self, after: int, epoch: str | None, limit: int) -> Page:
        job = self._job()
        if job is None:
            return Page(missed=True)
        page = self._history(job, after, limit)
        if page.misses(after):
            return Page(missed=True)
        return Page([self.event(r) for r in page.records])

    async def snapshot(self) -> Event | None:
        job = self._job()
        return None if job is None else self._snapshot(job)

    def _snapshot(self, job: MemoryJob) -> Event:
        return Event.snapshot({"id": self.job_id, "last_event_id": job.head, "state": job.state})


class MemoryBroker:
    def __init__(self, history_max: int = 10_000) -> None:
        self.history_max = history_max
        self.jobs: dict[str, MemoryJob] = {}
        self.connections: set[MemoryConnection] = set()
        self.down = False
        self.deaf = False
        self.attempted = asyncio.Event()  # set at each connect

    async def connect(self, on_message: OnMessage, on_subscribed: OnSubscribed) -> MemoryConnection:
        self.attempted.set()
        if self.down:
            raise OSError("the memory broker is down")
        connection = MemoryConnection(self, on_message, on_subscribed)
        self.connections.add(connection)
        return connection

    def job(self, job_id: str) -> MemoryTopic:
        return MemoryTopic(self, job_id)

    def feed(self, owner: str | None = None) -> MemoryTopic:
        raise NotImplementedError("the memory broker models jobs only")

    def publish(self, job_id: str, type_: bytes = b"progress") -> int:
        """Append an event to the job's history and send it to subscribers; its seq."""
        job = self.jobs.setdefault(job_id, MemoryJob())
        job.head += 1
        record = b'%d\n%s\n{"seq":%d}' % (job.head, type_, job.head)
        job.records = [*job.records, record][-self.history_max :]
        if type_ in TERMINAL_TYPE_BYTES:
            job.state = type_.decode()
        if not self.deaf:
            channel = MemoryTopic(self, job_id).key
            for connection in list(self.connections):
                if channel in connection.channels:
                    connection.on_message(channel, record)
        return job.head

    def drop_connections(self) -> None:
        for connection in list(self.connections):
            connection.close()
