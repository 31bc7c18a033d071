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

from jobcast.redis.pubsub import connect_pubsub, connect_sharded_pubsub
from jobcast.server.fanout.topics import FeedTopic, JobTopic, Topic
from jobcast.store.shards import Shards

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

    def feed(self, owner: str | None = None, shard: int = 0) -> Topic:
        """Every job's feed (None), or one owner's; of a sharded deployment, every job's feed is
        one a shard (`shard`), and an owner's is on the owner's shard."""
        ...


class RedisBroker:
    """Redis pub/sub: one connection, or with shards one a shard used as one (each channel on its
    shard's); a job's topic is on the shard its id names, an owner's feed on the owner's shard, and
    every job's feed is one a shard."""

    def __init__(self, redis_url: str, shards: Shards) -> None:
        self._url = redis_url
        self._shards = shards
        count = len(shards.stores)
        self._feeds = [
            FeedTopic(store, shard=n if count > 1 else None, shards=count)
            for n, store in enumerate(shards.stores)
        ]

    async def connect(self, on_message: OnMessage, on_subscribed: OnSubscribed) -> Connection:
        prefixes = [store.keys.prefix for store in self._shards.stores]
        if len(prefixes) == 1:
            return await connect_pubsub(self._url, on_message, on_subscribed, key_prefix=prefixes[0])
        return await connect_sharded_pubsub(self._url, prefixes, on_message, on_subscribed)

    def job(self, job_id: str) -> Topic:
        # An id of a shard this deployment lacks names no job: its topic on shard 0 stays empty.
        return JobTopic(self._shards.of(job_id) or self._shards.home, job_id)

    def feed(self, owner: str | None = None, shard: int = 0) -> Topic:
        if owner is None:
            return self._feeds[shard]
        return FeedTopic(self._shards.named(owner), owner)
