"""What the relay needs of a message broker: one pub/sub connection, and the topics it carries.

The relay and the hub are written against this small interface, as encode/broadcaster's are
against its backends: `RedisBroker` is the one jobcast runs on; `MemoryBroker`
(tests/memory_broker.py) runs in-process, so the relay's and the hub's rules are tested in
milliseconds, with connection drops and lost messages made on purpose.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Protocol

from jobcast.redis.pubsub import connect_pubsub
from jobcast.server.fanout.topics import FeedTopic, JobTopic, Topic
from jobcast.store.jobs import JobStore

OnMessage = Callable[[bytes, bytes], None]
OnSubscribed = Callable[[bytes], None]


class Connection(Protocol):
    """A pub/sub connection: messages and subscribe confirmations arrive by callback."""

    closed: asyncio.Future[None]

    def subscribe(self, channels: Iterable[bytes]) -> None: ...

    def unsubscribe(self, channels: Iterable[bytes]) -> None: ...

    async def ping(self, within_s: float) -> None: ...

    def close(self) -> None: ...


class Broker(Protocol):
    async def connect(self, on_message: OnMessage, on_subscribed: OnSubscribed) -> Connection:
        """Raises OSError or TimeoutError when the broker is unreachable."""
        ...

    def job(self, job_id: str) -> Topic: ...

    def feed(self, owner: str | None = None) -> Topic:
        """Every job's feed (None), or one owner's."""
        ...


class RedisBroker:
    def __init__(self, redis_url: str, store: JobStore) -> None:
        self._url = redis_url
        self._store = store
        self._feed = FeedTopic(store)

    async def connect(self, on_message: OnMessage, on_subscribed: OnSubscribed) -> Connection:
        return await connect_pubsub(self._url, on_message, on_subscribed, key_prefix=self._store.keys.prefix)

    def job(self, job_id: str) -> Topic:
        return JobTopic(self._store, job_id)

    def feed(self, owner: str | None = None) -> Topic:
        return self._feed if owner is None else FeedTopic(self._store, owner)
