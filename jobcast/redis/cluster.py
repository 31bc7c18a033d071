"""Redis Cluster (or Valkey cluster): every key and channel of a deployment on one hash slot.

`REDIS_URL=redis+cluster://[[user]:password@]host:port[,host:port...]` (`rediss+cluster://` for
TLS) names some of the cluster's nodes. The deployment's key prefix carries a hash tag
(`{jobcast}`, see `Settings.redis_key_prefix`), so every key, script and channel of the deployment
maps to one slot, served by one primary at a time: the scripts' atomicity needs nothing more, and
no command crosses slots. Each connection asks the nodes which primary serves that slot when it is
made, as connections to a Sentinel service ask the sentinels: after a failover, or once the slot
has moved, a connection that is refused or told `MOVED` is dropped and made again to the slot's
primary now (jobcast/redis/client.py retries the command on it).

One slot is one primary's share of the work: docs/scaling.md says what one primary carries.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import hiredis
from redis.asyncio.connection import Connection, SSLConnection
from redis.crc import key_slot
from redis.exceptions import ConnectionError, ResponseError

from jobcast.redis.keyslots import CLUSTER_SCHEMES


@dataclass(frozen=True, slots=True)
class ClusterTarget:
    """Some of a cluster's nodes (any that answer are enough) and how to reach them."""

    nodes: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None
    tls: bool = False

    async def primary_for(self, slot: int, timeout_s: float = 2.0) -> tuple[str, int]:
        """The address of the primary that serves `slot` now, as the first node that answers
        says. Raises ConnectionError when no node answers or none knows of a primary for it."""
        errors = []
        for host, port in self.nodes:
            try:
                async with asyncio.timeout(timeout_s):
                    ranges = await self._ask(host, port, "CLUSTER", "SLOTS")
            except (OSError, TimeoutError, ResponseError) as e:
                errors.append(f"{host}:{port}: {e or type(e).__name__}")
                continue
            for start, end, primary, *_ in ranges:
                if start <= slot <= end:
                    # An empty host means "the address you reached me at".
                    return (primary[0].decode() or host, int(primary[1]))
            errors.append(f"{host}:{port}: no primary serves slot {slot}")
        raise ConnectionError("no cluster node named a primary: " + "; ".join(errors))

    async def _ask(self, host: str, port: int, *command: str) -> Any:
        """One command's answer from one node, on a connection of its own: a plain stream, closed
        in `finally` whatever happens (a client library's connection cancelled while it connects
        can be left to the garbage collector, after its event loop has closed)."""
        tls = ssl.create_default_context() if self.tls else None
        reader, writer = await asyncio.open_connection(host, port, ssl=tls)
        try:
            commands: list[tuple[str, ...]] = []
            if self.password:
                commands.append(("AUTH", *([self.username] if self.username else []), self.password))
            commands.append(command)
            packed = b"".join(hiredis.pack_command(c) for c in commands)  # type: ignore[arg-type]  # hiredis's stub wants a 1-tuple
            writer.write(packed)
            parser = hiredis.Reader(replyError=ResponseError)
            replies: list[Any] = []
            while len(replies) < len(commands):
                data = await reader.read(65536)
                if not data:
                    raise ConnectionResetError("closed before it answered")
                parser.feed(data)
                while (reply := parser.gets()) is not False:
                    if isinstance(reply, ResponseError):
                        raise reply
                    replies.append(reply)
            return replies[-1]
        finally:
            writer.close()


def cluster_target(url: str) -> ClusterTarget | None:
    """The cluster a `redis+cluster://` (or `rediss+cluster://`) URL names; None for any other."""
    parts = urlsplit(url)
    if parts.scheme not in CLUSTER_SCHEMES:
        return None
    hosts = parts.netloc.rsplit("@", 1)[-1]
    nodes = []
    for address in hosts.split(","):
        host, sep, port = address.rpartition(":")
        nodes.append((host.strip("[]"), int(port)) if sep else (address.strip("[]"), 6379))
    if parts.path.strip("/") not in ("", "0"):
        raise ValueError("a Redis Cluster has only database 0: drop the path from the redis+cluster:// URL")
    return ClusterTarget(
        tuple(nodes),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        tls=parts.scheme == "rediss+cluster",
    )


def prefix_slot(prefix: str) -> int:
    """The slot of every key and channel under `prefix`, which carries a hash tag."""
    return key_slot(prefix.encode())


@dataclass(slots=True)
class SlotRoute:
    """Where a pool's connections go: the primary serving `slot`, and the address the last `MOVED`
    named, tried first (cluster nodes learn of a moved slot one by one; the node that says
    MOVED already knows)."""

    cluster: ClusterTarget
    slot: int
    moved_to: tuple[str, int] | None = None

    async def primary(self) -> tuple[str, int]:
        return self.moved_to or await self.cluster.primary_for(self.slot)


class SlotConnection(Connection):
    """A connection to whichever primary serves the deployment's slot when it connects."""

    def __init__(self, *, route: SlotRoute, **kwargs: Any) -> None:
        self.route = route
        super().__init__(**kwargs)

    async def _connect(self) -> None:
        self.host, self.port = await self.route.primary()
        try:
            await super()._connect()
        except OSError:
            self.route.moved_to = None  # gone since: ask the cluster
            raise

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().read_response(*args, **kwargs)
        except ResponseError as e:
            # redis-py's plain parser raises a cluster's redirections as bare ResponseErrors.
            word, _, rest = str(e).partition(" ")
            if word == "MOVED":  # the slot is served elsewhere now (a failover, a migration)
                host, _, port = rest.rpartition(" ")[2].rpartition(":")
                self.route.moved_to = (host or self.host, int(port))
            elif word not in ("ASK", "TRYAGAIN", "CLUSTERDOWN"):
                raise
            # A migration under way (ASK, TRYAGAIN), or no primary for the slot yet: dropped, so
            # that the command's retry connects anew, after a backoff that lets it settle.
            await self.disconnect()
            raise ConnectionError(f"the deployment's slot is moving: {e}") from e


class SlotSSLConnection(SlotConnection, SSLConnection):
    pass


async def connect_to_slot(
    target: ClusterTarget, slot: int, factory: Any, timeout_s: float
) -> tuple[asyncio.BaseTransport, Any]:
    """A raw connection (for the pub/sub protocol) to the primary serving `slot`."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout_s):
        host, port = await target.primary_for(slot)
        tls = ssl.create_default_context() if target.tls else None
        return await loop.create_connection(factory, host, port, ssl=tls)
