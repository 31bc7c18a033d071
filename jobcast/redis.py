"""Redis clients that ride out a restart instead of failing the first command."""

from __future__ import annotations

from typing import cast

from redis.asyncio import BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import EqualJitterBackoff
from redis.exceptions import BusyLoadingError, ConnectionError, TimeoutError

from jobcast.arq_runtime import ArqRedis


def create_redis(
    url: str, *, retries: int = 3, max_connections: int = 64, pool_timeout_s: float = 5.0
) -> ArqRedis:
    """One client (and its pool) for commands; arq and the job store share it.

    Commands are retried with jittered exponential backoff (so a fleet does not reconnect in
    lockstep); arq does not retry commands at all by default. The web server retries briefly and
    answers 503; the worker retries longer, and its poll loop survives what remains.

    The pool holds at most `max_connections`: past that a command waits up to `pool_timeout_s`
    for one to come free (then fails like any Redis error), so a burst cannot open connections
    without bound, and Redis's own client limit is left to other processes."""
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=pool_timeout_s,
        retry=Retry(EqualJitterBackoff(cap=2.0, base=0.05), retries),
        retry_on_error=[ConnectionError, TimeoutError, BusyLoadingError, ConnectionResetError],
        socket_connect_timeout=5,
        socket_keepalive=True,
        health_check_interval=15,
    )
    # The client owns the pool: closing the client closes its connections.
    return cast(ArqRedis, ArqRedis.from_pool(pool))  # from_pool builds `cls`
