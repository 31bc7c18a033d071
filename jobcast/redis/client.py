"""Redis clients that ride out a restart, or a Sentinel failover, instead of failing the first
command.

`REDIS_URL` names one server (`redis://`, `rediss://`, `unix://`), or a primary found through
Redis Sentinel: `redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db]`. The
sentinels are asked for the service's primary whenever a connection is made, so the command
clients, the web's pub/sub relay and the workers all follow a failover; a connection still open
to a primary that was demoted (it answers READONLY) is dropped and made again. A Redis Cluster,
`redis+cluster://host:port[,host:port...]`, is followed the same way: each connection goes to the
primary serving the deployment's slot (jobcast/redis/cluster.py).
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar, cast, overload
from urllib.parse import unquote, urlsplit

import hiredis
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import EqualJitterBackoff
from redis.exceptions import BusyLoadingError, ConnectionError, ReadOnlyError, TimeoutError

from jobcast.redis.cluster import (
    ClusterTarget,
    SlotConnection,
    SlotRoute,
    SlotSSLConnection,
    cluster_target,
    prefix_slot,
)

SENTINEL_SCHEME = "redis+sentinel"

# The client class: redis-py's, or the worker's arq subclass (jobcast/jobs/arq_runtime.py), so that
# the web process never imports arq.
R = TypeVar("R", bound=Redis)
T = TypeVar("T")


def awaited(value: Awaitable[T] | T) -> Awaitable[T]:
    """An asyncio client's command, typed as what it is. redis-py types every command as
    `Awaitable[T] | T`, because one class of commands serves its blocking and asyncio clients."""
    return cast(Awaitable[T], value)


@dataclass(frozen=True, slots=True)
class SentinelTarget:
    """A primary found through Sentinel: the sentinels' addresses and the service's name."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None

    def manager(self) -> Sentinel:
        # The data nodes' credentials; the sentinels themselves are asked without any.
        return Sentinel(list(self.sentinels), socket_timeout=2.0, socket_connect_timeout=2.0)

    async def primary(self) -> tuple[str, int]:
        """The service's primary now (raises MasterNotFoundError while there is none)."""
        host, port = await self.manager().discover_master(self.service)
        return str(host), int(port)


def sentinel_target(url: str) -> SentinelTarget | None:
    """The Sentinel target a `redis+sentinel://` URL names; None for any other URL."""
    parts = urlsplit(url)
    if parts.scheme != SENTINEL_SCHEME:
        return None
    hosts = parts.netloc.rsplit("@", 1)[-1]
    sentinels = []
    for address in hosts.split(","):
        host, sep, port = address.rpartition(":")
        sentinels.append((host.strip("[]"), int(port)) if sep else (address, 26379))
    path = [unquote(p) for p in parts.path.split("/") if p]
    if not path:
        raise ValueError("a redis+sentinel:// URL names its service: redis+sentinel://host:26379/service")
    return SentinelTarget(
        tuple(sentinels),
        service=path[0],
        db=int(path[1]) if len(path) > 1 else 0,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


class SentinelBlockingPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel's pool (connections go to the current primary), bounded like the plain one: past
    `max_connections` a command waits for a free connection instead of failing."""


class HiredisPacking(AbstractConnection):
    """Commands packed by hiredis (C) rather than redis-py's asyncio connection, which packs in
    Python even where hiredis is installed: a batch of submissions sends thousands of arguments,
    and packing them was a tenth of the web's CPU. The bytes are the same."""

    def pack_command(self, *args: Any) -> list[bytes]:
        # As redis-py does: a command name given with its subcommand (`CONFIG GET`) is two arguments.
        if isinstance(args[0], str | bytes) and len(words := args[0].split()) > 1:
            args = (*words, *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError:  # a value Redis takes no text for: redis-py's own error says which
            return super().pack_command(*args)


_PACKING: dict[type[AbstractConnection], type[AbstractConnection]] = {}


def _packing_with_hiredis(connection_class: type[AbstractConnection]) -> type[AbstractConnection]:
    if connection_class not in _PACKING:  # one subclass per class, as redis-py's pools compare them
        _PACKING[connection_class] = type(connection_class.__name__, (HiredisPacking, connection_class), {})
    return _PACKING[connection_class]


def _pack_with_hiredis(pool: ConnectionPool) -> None:
    pool.connection_class = _packing_with_hiredis(pool.connection_class)


@overload
def create_redis(
    url: str,
    *,
    retries: int = ...,
    max_connections: int = ...,
    pool_timeout_s: float = ...,
    key_prefix: str | None = ...,
) -> Redis: ...


@overload
def create_redis(
    url: str,
    *,
    client_class: type[R],
    retries: int = ...,
    max_connections: int = ...,
    pool_timeout_s: float = ...,
    key_prefix: str | None = ...,
) -> R: ...


def create_redis(
    url: str,
    *,
    client_class: type[Redis] = Redis,
    retries: int = 3,
    max_connections: int = 64,
    pool_timeout_s: float = 5.0,
    key_prefix: str | None = None,
) -> Redis:
    """One client (and its pool) for commands, of `client_class`; in a worker, arq and the job store
    share it.

    Commands are retried with jittered exponential backoff (so a fleet does not reconnect in
    lockstep); arq does not retry commands at all by default. The web server retries briefly and
    answers 503; the worker retries longer, and its poll loop survives what remains.

    The pool holds at most `max_connections`: past that a command waits up to `pool_timeout_s`
    for one to come free (then fails like any Redis error), so a burst cannot open connections
    without bound, and Redis's own client limit is left to other processes.

    A `redis+cluster://` URL needs `key_prefix` (`Settings.redis_key_prefix`): its hash tag's slot
    is where every connection goes (jobcast/redis/cluster.py)."""
    options: dict[str, Any] = {
        "max_connections": max_connections,
        "timeout": pool_timeout_s,
        "retry": Retry(EqualJitterBackoff(cap=2.0, base=0.05), retries),
        "retry_on_error": [
            ConnectionError,
            TimeoutError,
            BusyLoadingError,
            ConnectionResetError,
            ReadOnlyError,
        ],
        "socket_connect_timeout": 5,
        "socket_keepalive": True,
        "health_check_interval": 15,
    }
    if (cluster := cluster_target(url)) is not None:
        if key_prefix is None:
            raise ValueError("a redis+cluster:// client needs the key prefix whose slot it serves")
        return _slot_client(cluster, client_class, prefix_slot(key_prefix), options)
    target = sentinel_target(url)
    if target is None:
        pool = BlockingConnectionPool.from_url(url, **options)
        _pack_with_hiredis(pool)
        # The client owns the pool: closing the client closes its connections.
        return client_class.from_pool(pool)  # from_pool builds `cls`
    client = target.manager().master_for(
        target.service,
        redis_class=client_class,
        connection_pool_class=SentinelBlockingPool,
        db=target.db,
        username=target.username,
        password=target.password,
        **options,
    )
    _pack_with_hiredis(client.connection_pool)
    return cast(Redis, client)


def _slot_client(
    cluster: ClusterTarget, client_class: type[Redis], slot: int, options: dict[str, Any]
) -> Redis:
    """A client whose connections go to the primary serving `slot`, found anew by each."""
    pool = BlockingConnectionPool(
        connection_class=_packing_with_hiredis(SlotSSLConnection if cluster.tls else SlotConnection),
        route=SlotRoute(cluster, slot),
        username=cluster.username,
        password=cluster.password,
        **options,
    )
    return client_class.from_pool(pool)
