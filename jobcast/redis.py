"""Redis clients that ride out a restart instead of failing the first command."""

from __future__ import annotations

from arq.connections import ArqRedis
from redis.asyncio.retry import Retry
from redis.backoff import EqualJitterBackoff
from redis.exceptions import BusyLoadingError, ConnectionError, TimeoutError


def create_redis(url: str, *, retries: int = 3) -> ArqRedis:
    """One client (and its pool) for commands; arq and the job store share it.

    Commands are retried with jittered exponential backoff (so a fleet does not reconnect in
    lockstep); arq does not retry commands at all by default. The web server retries briefly and
    answers 503; the worker retries longer, and its poll loop survives what remains."""
    return ArqRedis.from_url(
        url,
        retry=Retry(EqualJitterBackoff(cap=2.0, base=0.05), retries),
        retry_on_error=[ConnectionError, TimeoutError, BusyLoadingError, ConnectionResetError],
        socket_connect_timeout=5,
        socket_keepalive=True,
        health_check_interval=15,
    )
