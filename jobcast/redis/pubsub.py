"""A lean Redis pub/sub connection: an asyncio protocol feeding hiredis's reply parser.

redis-py's asyncio PubSub reads one message per awaited call and cannot keep up with a busy
Redis; this protocol parses everything a read brings in one go and hands messages to a callback
synchronously, so the relay's cost per message is a dict lookup and a few appends, and a worker
hears a submission's wakeup in the read that brings it. The web's relay (server/fanout/relay.py) and
the workers' signal listener (jobs/signals.py) each hold one.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Iterable
from typing import Protocol, cast

import hiredis
from redis.asyncio.connection import SSLConnection, parse_url
from redis.exceptions import RedisError

from jobcast.redis.client import sentinel_target
from jobcast.redis.cluster import cluster_target, connect_to_slot, prefix_slot

log = logging.getLogger(__name__)

# Redis closes a client whose command is too long; a few thousand channels per SUBSCRIBE is safe.
_CHUNK = 1000


class PubSubProtocol(asyncio.Protocol):
    def __init__(
        self,
        on_message: Callable[[bytes, bytes], None],
        on_subscribed: Callable[[bytes], None],
        *,
        sharded: bool = False,
    ) -> None:
        self._on_message = on_message
        self._on_subscribed = on_subscribed
        # Sharded pub/sub (a cluster's SSUBSCRIBE): Redis itself unsubscribes the connection from
        # a channel whose slot moves to another node; the channels this connection asked to leave
        # are told apart from those.
        self.sharded = sharded
        self._leaving: set[bytes] = set()
        self._reader = hiredis.Reader()
        self._transport: asyncio.Transport | None = None
        self._pong: asyncio.Future[None] | None = None
        self.error: str | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, though they implement it.
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        if self._pong is not None and not self._pong.done():
            self._pong.set_exception(ConnectionError("pub/sub connection lost"))

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while (reply := self._reader.gets()) is not False:
            if type(reply) is list:
                kind = reply[0]
                if kind == b"message" or kind == b"smessage":
                    self._on_message(reply[1], reply[2])
                elif kind == b"subscribe" or kind == b"ssubscribe":
                    self._on_subscribed(reply[1])
                elif kind == b"pong":
                    self._got_pong()
                elif kind == b"sunsubscribe" and not self._left(reply[1]):
                    # The slot moved (a failover or a migration): the channel is served elsewhere
                    # now. Closed, so that its owner connects anew and resumes from history.
                    log.warning("pub/sub channel %r moved to another node; reconnecting", reply[1])
                    self.close()
            elif isinstance(reply, hiredis.ReplyError):
                # AUTH refused, or a command Redis rejects: this connection is of no use.
                self.error = str(reply)
                log.error("redis pub/sub error: %s", reply)
                self.close()
            elif reply == b"PONG":
                self._got_pong()

    def _got_pong(self) -> None:
        if self._pong is not None and not self._pong.done():
            self._pong.set_result(None)

    def send(self, *args: str | bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(hiredis.pack_command(args))  # type: ignore[arg-type]  # hiredis's stub wants a 1-tuple

    def subscribe(self, channels: Iterable[bytes]) -> None:
        self._in_chunks("SSUBSCRIBE" if self.sharded else "SUBSCRIBE", list(channels))

    def unsubscribe(self, channels: Iterable[bytes]) -> None:
        channels = list(channels)
        if self.sharded:
            self._leaving.update(channels)
        self._in_chunks("SUNSUBSCRIBE" if self.sharded else "UNSUBSCRIBE", channels)

    def _left(self, channel: bytes) -> bool:
        """Whether this connection asked to leave `channel` (and now has)."""
        if channel in self._leaving:
            self._leaving.discard(channel)
            return True
        return False

    def _in_chunks(self, command: str, channels: list[bytes]) -> None:
        # A sharded command names channels of one slot at a time (here, always: the deployment's).
        for start in range(0, len(channels), _CHUNK):
            self.send(command, *channels[start : start + _CHUNK])

    async def ping(self, within_s: float) -> None:
        """Round trip to Redis; raises TimeoutError when the peer has silently gone."""
        self._pong = asyncio.get_running_loop().create_future()
        self.send("PING")
        async with asyncio.timeout(within_s):
            await self._pong

    def close(self) -> None:
        if self._transport is not None:
            self._transport.abort()


async def connect_pubsub(
    url: str,
    on_message: Callable[[bytes, bytes], None],
    on_subscribed: Callable[[bytes], None],
    *,
    connect_timeout_s: float = 5.0,
    name: str = "jobcast-relay",
    key_prefix: str | None = None,
) -> PubSubProtocol:
    """Open a pub/sub connection to the Redis at `url` (redis://, rediss://, unix://, the
    current primary of a redis+sentinel:// service, or of a redis+cluster:// cluster the primary
    serving the slot of `key_prefix`, whose channels it carries), named `name` in Redis's CLIENT
    LIST."""
    loop = asyncio.get_running_loop()
    cluster = cluster_target(url)

    def factory() -> PubSubProtocol:
        return PubSubProtocol(on_message, on_subscribed, sharded=cluster is not None)

    if cluster is not None:
        if key_prefix is None:
            raise ValueError("a redis+cluster:// pub/sub connection needs the key prefix of its channels")
        try:
            _, proto = await connect_to_slot(cluster, prefix_slot(key_prefix), factory, connect_timeout_s)
        except RedisError as e:  # no node answers, or none names a primary yet: the caller retries
            raise ConnectionError(str(e)) from e
        return await _greeted(proto, cluster.username, cluster.password, name, connect_timeout_s)

    if (target := sentinel_target(url)) is not None:
        async with asyncio.timeout(connect_timeout_s):
            try:
                host, port = await target.primary()
            except RedisError as e:  # no primary yet (a failover under way): the relay retries
                raise ConnectionError(f"no primary for {target.service}: {e}") from e
            _, proto = await loop.create_connection(factory, host, port)
        return await _greeted(proto, target.username, target.password, name, connect_timeout_s)

    options = parse_url(url)
    async with asyncio.timeout(connect_timeout_s):
        if "path" in options:
            _, proto = await loop.create_unix_connection(factory, options["path"])
        else:
            tls = ssl.create_default_context() if options.get("connection_class") is SSLConnection else None
            _, proto = await loop.create_connection(
                factory, options.get("host", "localhost"), options.get("port", 6379), ssl=tls
            )
    return await _greeted(proto, options.get("username"), options.get("password"), name, connect_timeout_s)


async def _greeted(
    proto: PubSubProtocol, username: str | None, password: str | None, name: str, within_s: float
) -> PubSubProtocol:
    """`proto` authenticated (when there is a password) and named, once Redis has answered."""
    if password:
        proto.send("AUTH", *([username] if username else []), password)
    proto.send("CLIENT", "SETNAME", name)
    return await _answered(proto, within_s)


async def _answered(proto: PubSubProtocol, within_s: float) -> PubSubProtocol:
    """`proto` once Redis has answered a PING after the commands sent before it: a Redis that
    accepts the connection but refuses its commands (a wrong password, protected mode) must not
    count as connected. Raises ConnectionError with Redis's own words, or TimeoutError."""
    try:
        await proto.ping(within_s)
    except ConnectionError:
        raise ConnectionError(proto.error or "pub/sub connection closed before it answered") from None
    except BaseException:  # timed out, or cancelled (the process stopping): nobody else will close it
        proto.close()
        raise
    if proto.error is not None:  # an error came before the PONG (the connection is closing)
        raise ConnectionError(proto.error)
    return proto


class ShardedPubSub:
    """One pub/sub connection a shard (jobcast/redis/shards.py), used as one: each channel goes to
    the connection of the shard its prefix names. When any of them drops, all close, so that their
    owner connects anew and repairs every channel from history, as after any drop: a shard's
    failover costs the others a reconnect, never a missed event."""

    def __init__(self, connections: list[tuple[bytes, PubSubProtocol]]) -> None:
        # Longest prefix first, so that no shard's prefix is taken for another's.
        self._connections = sorted(connections, key=lambda c: len(c[0]), reverse=True)
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for _, connection in connections:
            connection.closed.add_done_callback(self._one_closed)

    def _one_closed(self, _: asyncio.Future[None]) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        self.close()

    def _by_connection(self, channels: Iterable[bytes]) -> dict[PubSubProtocol, list[bytes]]:
        routed: dict[PubSubProtocol, list[bytes]] = {}
        for channel in channels:
            connection = next((c for prefix, c in self._connections if channel.startswith(prefix)), None)
            if connection is None:
                raise ValueError(f"channel {channel!r} is under no shard's prefix")
            routed.setdefault(connection, []).append(channel)
        return routed

    def subscribe(self, channels: Iterable[bytes]) -> None:
        for connection, some in self._by_connection(channels).items():
            connection.subscribe(some)

    def unsubscribe(self, channels: Iterable[bytes]) -> None:
        for connection, some in self._by_connection(channels).items():
            connection.unsubscribe(some)

    async def ping(self, within_s: float) -> None:
        await asyncio.gather(*(connection.ping(within_s) for _, connection in self._connections))

    def close(self) -> None:
        for _, connection in self._connections:
            connection.close()


async def connect_sharded_pubsub(
    url: str,
    prefixes: list[str],
    on_message: Callable[[bytes, bytes], None],
    on_subscribed: Callable[[bytes], None],
    *,
    connect_timeout_s: float = 5.0,
    name: str = "jobcast-relay",
) -> ShardedPubSub:
    """A pub/sub connection to each shard whose key prefix is in `prefixes` (on a cluster, to the
    primary serving its slot), used as one. Raises as `connect_pubsub` does, with none left open."""
    connections: list[tuple[bytes, PubSubProtocol]] = []
    try:
        for prefix in prefixes:
            connection = await connect_pubsub(
                url,
                on_message,
                on_subscribed,
                connect_timeout_s=connect_timeout_s,
                name=name,
                key_prefix=prefix,
            )
            connections.append((f"{prefix}:".encode(), connection))
    except BaseException:
        for _, connection in connections:
            connection.close()
        raise
    return ShardedPubSub(connections)


class Pingable(Protocol):
    closed: asyncio.Future[None]

    async def ping(self, within_s: float) -> None: ...


async def keep_alive(conn: Pingable, interval_s: float) -> None:
    """Return when the connection closes, or when Redis stops answering pings (a silent network,
    a host gone without a FIN): a pub/sub connection otherwise only ever waits."""
    while not conn.closed.done():
        try:
            await asyncio.wait_for(asyncio.shield(conn.closed), interval_s)
        except TimeoutError:
            try:
                await conn.ping(interval_s)
            except (TimeoutError, ConnectionError):
                log.warning("pub/sub did not answer a ping; reconnecting")
                return
