"""jobcast on one Redis and on a Redis Cluster, side by side (bench `cluster`).

The drain of bench/jobs.py (N no-op jobs enqueued at once through `JobStore.create_many`, drained
by 2 workers of 10 slots), round by round on a single server, on a single server with a replica,
and on a cluster of three primaries with a replica each (tests/redis_cluster.py), where the
deployment is on the slot of `{jobcast}`.
Every node runs on the load core, as the single server does. Per job: the Redis CPU of the primary
serving the slot, of its replica (replication), and of the other nodes; and the commands the
other primaries ran during the drain, which is what crossed to other shards (the goal is none).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from bench import jobs, processes
from bench.machine import cpu_seconds
from jobcast.redis.embedded import RedisProcess
from tests.helpers import wait_for
from tests.redis_cluster import ClusterNode, LocalCluster

PREFIX = "jobcast"  # on the cluster: {jobcast}


def drains(n: int, rounds: int) -> list[dict[str, Any]]:
    """A single server, one with a replica (what a cluster's primary also feeds), and a cluster,
    alternating round by round."""
    results = []
    with processes.redis_server() as single, tempfile.TemporaryDirectory(prefix="jobcast-cluster-") as tmp:
        primary = RedisProcess(Path(tmp) / "primary", persist=False)
        replica = RedisProcess(Path(tmp) / "replica", persist=False)
        cluster = LocalCluster(Path(tmp) / "cluster")
        try:
            for server in (primary, replica):
                server.start()
                assert server.process is not None
                processes.pin(server.process.pid, processes.LOAD_CORE)
            asyncio.run(_replicate(replica, primary))
            asyncio.run(cluster.form())
            for node in cluster.nodes:
                processes.pin(_pid(node), processes.LOAD_CORE)
            for _ in range(rounds):
                results.append(_single("single server", single, None, n))
                results.append(_single("with a replica", primary, replica, n))
                results.append(_cluster(cluster, n))
        finally:
            cluster.stop()
            replica.stop()
            primary.stop()
    return results


async def _replicate(replica: RedisProcess, primary: RedisProcess) -> None:
    client = aioredis.Redis.from_url(replica.url)
    try:
        await client.execute_command("REPLICAOF", "127.0.0.1", primary.port)
        await wait_for(lambda: _link_up(client), timeout=30, what="the replica to sync")
    finally:
        await client.aclose()


async def _link_up(client: aioredis.Redis) -> bool:
    return (await client.info("replication")).get("master_link_status") == "up"


def _single(system: str, redis: RedisProcess, replica: RedisProcess | None, n: int) -> dict[str, Any]:
    assert redis.process is not None
    asyncio.run(_flush([redis.url]))
    groups = {"primary": [redis.process.pid]}
    if replica is not None and replica.process is not None:
        groups["replica"] = [replica.process.pid]
    return _drain(system, redis.url, groups, [], n)


def _cluster(cluster: LocalCluster, n: int) -> dict[str, Any]:
    home, replica, others, other_primaries = asyncio.run(_roles(cluster))
    asyncio.run(_flush([f"redis://{node.address}" for node in (home, *other_primaries)]))
    groups = {"primary": [_pid(home)], "replica": [_pid(replica)], "others": [_pid(node) for node in others]}
    return _drain("cluster", cluster.url, groups, other_primaries, n)


def _pid(node: ClusterNode) -> int:
    assert node.process is not None
    return node.process.pid


async def _roles(
    cluster: LocalCluster,
) -> tuple[ClusterNode, ClusterNode, list[ClusterNode], list[ClusterNode]]:
    """The primary serving the deployment's slot, its replica, the other nodes, and of them the
    primaries."""
    home = await cluster.primary_of("{" + PREFIX + "}")
    replica, primaries = None, []
    for node in cluster.nodes:
        info = await node.info("replication")
        if info["role"] == "slave" and int(str(info["master_port"])) == home.port:
            replica = node
        elif info["role"] == "master" and node is not home:
            primaries.append(node)
    assert replica is not None
    return home, replica, [node for node in cluster.nodes if node not in (home, replica)], primaries


async def _flush(urls: list[str]) -> None:
    for url in urls:
        client = aioredis.Redis.from_url(url)
        try:
            await client.flushall()
        finally:
            await client.aclose()


# What nodes run for themselves and for this measurement, not for jobcast.
UPKEEP = ("cmdstat_replconf", "cmdstat_ping", "cmdstat_info", "cmdstat_cluster|", "cmdstat_client|")


async def _commands(nodes: list[ClusterNode]) -> int:
    """The commands `nodes` ran so far, their own upkeep left out."""
    total = 0
    for node in nodes:
        stats = await node.info("commandstats")
        total += sum(int(str(v["calls"])) for k, v in stats.items() if not k.startswith(UPKEEP))
    return total


def _drain(
    system: str, url: str, groups: dict[str, list[int]], other_primaries: list[ClusterNode], n: int
) -> dict[str, Any]:
    env = {
        "REDIS_URL": url,
        "JOBCAST_KEY_PREFIX": PREFIX,
        "JOBCAST_LOG_LEVEL": "WARNING",
        "JOBCAST_KINDS": "bench.peers.noop_kind",
        "JOBCAST_WORKER_MAX_JOBS": "10",
    }
    workers = [processes.start([sys.executable, "-m", "jobcast", "worker"], i % 2, env) for i in range(2)]
    try:
        jobs.wait_ready("jobcast", url, workers, PREFIX)
        before = {group: sum(cpu_seconds(pid) for pid in pids) for group, pids in groups.items()}
        workers_before = sum(cpu_seconds(w.pid) for w in workers)
        commands_before = asyncio.run(_commands(other_primaries))
        elapsed = asyncio.run(jobs._enqueue_and_wait("jobcast", url, n, "noop"))
        crossed = asyncio.run(_commands(other_primaries)) - commands_before
        used = {
            group: sum(cpu_seconds(pid) for pid in pids) - before[group] for group, pids in groups.items()
        }
        workers_used = sum(cpu_seconds(w.pid) for w in workers) - workers_before
    finally:
        for worker in workers:
            processes.stop(worker)
    return {
        "system": system,
        "jobs": n,
        "seconds": round(elapsed, 3),
        "jobs_per_s": round(n / elapsed, 1),
        "worker_cpu_us_per_job": round(workers_used * 1e6 / n),
        **{f"{group}_cpu_us_per_job": round(seconds * 1e6 / n) for group, seconds in used.items()},
        # Commands the primaries that do not serve the slot ran (not their own upkeep): what
        # crossed to other shards.
        "other_primaries_commands": crossed,
    }
