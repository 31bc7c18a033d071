"""jobcast on one Redis and on a Redis Cluster, side by side (bench `cluster`).

The drain of bench/jobs.py (N no-op jobs enqueued at once through `JobStore.create_many`, drained
by 2 workers of 10 slots), round by round on a single server, on a single server with a replica,
and on a cluster of three primaries with a replica each (tests/redis_cluster.py), where the
deployment is on the slot of `{jobcast}`; then on the same cluster with the deployment spread
over three shards (`JOBCAST_REDIS_SHARDS=3`, jobcast/redis/shards.py), one a primary, the jobs
created on the shards in turn.
Every node runs on the load core, as the single server does. Per job: the Redis CPU of the primary
serving the slot, of its replica (replication), and of the other nodes; and the commands the
other primaries ran during the drain, which is what crossed to other shards (the goal is none).
With three shards: each shard's primary's CPU, a job of the drain and a job of its own.

`intakes`: batches of 1,000 submitted through one `jobcast web` (8 connections, as bench/intake.py
does, no worker), on the single server, on the cluster's one slot and on three shards: jobs/s,
the web's CPU and each serving primary's CPU per job, and the jobs each shard took.

`fanouts`: bench/scenarios.py's fan-out (SSE and WebSocket watchers of a few jobs, progress
events published open loop) through one `jobcast web` on the single server and on three shards,
the jobs on the shards in turn: deliveries/s, the web's CPU a delivery, and each Redis's CPU an
event.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from bench import intake, jobs, processes, scenarios
from bench.machine import cpu_seconds
from jobcast.redis.client import create_redis
from jobcast.redis.embedded import RedisProcess, free_port
from jobcast.redis.shards import shard_prefixes
from jobcast.settings import Settings
from jobcast.store.jobs import JobStore, Submission
from jobcast.store.shards import Shards
from tests.helpers import wait_for
from tests.redis_cluster import ClusterNode, LocalCluster

PREFIX = "jobcast"  # on the cluster: {jobcast}
SHARDS = 3


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
                results.append(_sharded(cluster, n))
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
    return _drain(system, redis.url, groups, [], n, serving=[redis.url])


def _cluster(cluster: LocalCluster, n: int) -> dict[str, Any]:
    home, replica, others, other_primaries = asyncio.run(_roles(cluster))
    asyncio.run(_flush([f"redis://{node.address}" for node in (home, *other_primaries)]))
    groups = {"primary": [_pid(home)], "replica": [_pid(replica)], "others": [_pid(node) for node in others]}
    return _drain("cluster", cluster.url, groups, other_primaries, n, serving=[f"redis://{home.address}"])


def _sharded(cluster: LocalCluster, n: int) -> dict[str, Any]:
    prefixes = shard_prefixes("{" + PREFIX + "}", SHARDS)
    primaries = [asyncio.run(cluster.primary_of(prefix)) for prefix in prefixes]
    asyncio.run(_flush([f"redis://{node.address}" for node in primaries]))
    groups = {f"shard {k}": [_pid(node)] for k, node in enumerate(primaries)}
    replicas = [asyncio.run(_replica_of(cluster, node)) for node in primaries]
    groups |= {f"shard {k} replica": [_pid(node)] for k, node in enumerate(replicas)}
    serving = [f"redis://{node.address}" for node in primaries]
    row = _drain(f"{SHARDS} shards", cluster.url, groups, [], n, serving=serving, shards=SHARDS)
    jobs_on = row.pop("shard_jobs")
    per_shard = [
        {
            "jobs": jobs_on[k],
            "primary_cpu_us_per_job": row.pop(f"shard {k}_cpu_us_per_job"),
            "replica_cpu_us_per_job": row.pop(f"shard {k} replica_cpu_us_per_job"),
        }
        for k in range(SHARDS)
    ]
    for shard in per_shard:
        # Each shard's primary, for each job it holds.
        shard["primary_cpu_us_per_own_job"] = round(
            shard["primary_cpu_us_per_job"] * n / max(1, shard["jobs"])
        )
    row["primary_cpu_us_per_job"] = sum(s["primary_cpu_us_per_job"] for s in per_shard)
    row["replica_cpu_us_per_job"] = sum(s["replica_cpu_us_per_job"] for s in per_shard)
    row["shards"] = per_shard
    return row


async def _replica_of(cluster: LocalCluster, primary: ClusterNode) -> ClusterNode:
    for node in cluster.nodes:
        info = await node.info("replication")
        if info["role"] == "slave" and int(str(info["master_port"])) == primary.port:
            return node
    raise LookupError(f"no replica of {primary.address}")


def _pid(node: ClusterNode) -> int:
    assert node.process is not None
    return node.process.pid


async def _roles(
    cluster: LocalCluster,
) -> tuple[ClusterNode, ClusterNode, list[ClusterNode], list[ClusterNode]]:
    """The primary serving the deployment's slot, its replica, the other nodes, and of them the
    primaries."""
    home = await cluster.primary_of("{" + PREFIX + "}")
    replica = await _replica_of(cluster, home)
    primaries = [
        node
        for node in cluster.nodes
        if node is not home and (await node.info("replication"))["role"] == "master"
    ]
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


async def _script_calls(urls: list[str]) -> tuple[int, int]:
    """The scripts (EVALSHA) the servers at `urls` ran so far, and the µs they spent in them."""
    calls = usec = 0
    for url in urls:
        client = aioredis.Redis.from_url(url)
        try:
            stats = (await client.info("commandstats")).get("cmdstat_evalsha", {})
        finally:
            await client.aclose()
        calls, usec = calls + int(stats.get("calls", 0)), usec + int(stats.get("usec", 0))
    return calls, usec


async def _commands(nodes: list[ClusterNode]) -> int:
    """The commands `nodes` ran so far, their own upkeep left out."""
    total = 0
    for node in nodes:
        stats = await node.info("commandstats")
        total += sum(int(str(v["calls"])) for k, v in stats.items() if not k.startswith(UPKEEP))
    return total


def _drain(
    system: str,
    url: str,
    groups: dict[str, list[int]],
    other_primaries: list[ClusterNode],
    n: int,
    serving: list[str],
    shards: int = 1,
) -> dict[str, Any]:
    """`serving`: the primaries that serve the deployment, whose script calls are counted."""
    env = {
        "JOBCAST_REDIS_SHARDS": str(shards),
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
        scripts_before = asyncio.run(_script_calls(serving))
        if shards == 1:
            elapsed = asyncio.run(jobs._enqueue_and_wait("jobcast", url, n, "noop"))
        else:
            elapsed, shard_jobs = asyncio.run(_enqueue_on_shards(url, n, shards))
        crossed = asyncio.run(_commands(other_primaries)) - commands_before
        script_calls, script_usec = (
            after - before
            for after, before in zip(asyncio.run(_script_calls(serving)), scripts_before, strict=True)
        )
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
        # The scripts the deployment's primaries ran a job (claims, events, ends; empty polls too).
        "script_calls_per_job": round(script_calls / n, 2),
        # Their time inside the scripts (Redis's own count): the rest of the primaries' CPU is
        # reading, writing and replicating.
        "script_us_per_job": round(script_usec / n),
        **({"shard_jobs": shard_jobs} if shards > 1 else {}),
    }


async def _enqueue_on_shards(url: str, n: int, count: int) -> tuple[float, list[int]]:
    """n no-op jobs created on `count` shards in turn, as a web process would (each shard's calls
    in batches); seconds until the last succeeded, and how many each shard held."""
    settings = Settings(redis_url=url, key_prefix=PREFIX, max_waiting_jobs=0, redis_shards=count)
    shards = Shards.connect(settings, count, lambda prefix: create_redis(url, key_prefix=prefix))
    try:
        began = time.perf_counter()
        calls: dict[JobStore, list[Any]] = {}
        for _ in range(n):
            store = shards.for_new(None)
            (job_id,) = store.new_ids(1)
            calls.setdefault(store, []).append(store.create_call(job_id, Submission("noop", {})))
        await asyncio.gather(
            *(
                store.create_many(batch[at : at + jobs.BATCH])
                for store, batch in calls.items()
                for at in range(0, len(batch), jobs.BATCH)
            )
        )

        async def succeeded() -> int:
            return sum([await s.redis.zcard(s.keys.index_state("succeeded")) for s in shards.stores])

        await jobs.until(succeeded, n)
        return time.perf_counter() - began, [len(calls.get(store, ())) for store in shards.stores]
    finally:
        await shards.aclose()


INTAKE_PREFIX = "bench-intake"  # on the cluster: {bench-intake}


def intakes(seconds: float, rounds: int) -> list[dict[str, Any]]:
    """Batch intake through one `jobcast web` on one server, on one slot of a cluster, and on three
    shards of it, alternating round by round."""
    results = []
    with processes.redis_server() as single, formed_cluster() as cluster:
        assert single.process is not None
        for _ in range(rounds):
            alone = {"primary": single.process.pid}
            results.append(_intake("single server", single.url, alone, [single.process.pid], 1, seconds))
            tagged = "{" + INTAKE_PREFIX + "}"
            home = asyncio.run(cluster.primary_of(tagged))
            nodes = [_pid(node) for node in cluster.nodes]
            results.append(_intake("cluster", cluster.url, {"primary": _pid(home)}, nodes, 1, seconds))
            primaries = [asyncio.run(cluster.primary_of(p)) for p in shard_prefixes(tagged, SHARDS)]
            serving = {f"shard {k}": _pid(node) for k, node in enumerate(primaries)}
            results.append(_intake(f"{SHARDS} shards", cluster.url, serving, nodes, SHARDS, seconds))
    return results


@contextmanager
def formed_cluster() -> Iterator[LocalCluster]:
    """A cluster of three primaries and three replicas, every node on the load core."""
    with tempfile.TemporaryDirectory(prefix="jobcast-cluster-") as where:
        cluster = LocalCluster(Path(where) / "cluster")
        try:
            asyncio.run(cluster.form())
            for node in cluster.nodes:
                processes.pin(_pid(node), processes.LOAD_CORE)
            yield cluster
        finally:
            cluster.stop()


def _intake(
    system: str, url: str, serving: dict[str, int], nodes: list[int], shards: int, seconds: float
) -> dict[str, Any]:
    """`serving`: each serving primary's pid, by the name it is reported under; `nodes`: every Redis
    process on the load core (replicas and idle primaries too)."""
    settings = Settings(redis_url=url, key_prefix=INTAKE_PREFIX, redis_shards=shards)
    prefix = settings.redis_key_prefix
    env = {
        "REDIS_URL": url,
        "JOBCAST_KEY_PREFIX": INTAKE_PREFIX,
        "JOBCAST_REDIS_SHARDS": str(shards),
        "JOBCAST_MAX_WAITING_JOBS": "0",
        "JOBCAST_LOG_LEVEL": "WARNING",
    }
    port = free_port()
    command = [sys.executable, "-m", "jobcast", "web", "--host", "127.0.0.1", "--port", str(port)]
    web = processes.start(command, processes.SERVER_CORE, env)
    base = f"http://127.0.0.1:{port}"
    try:
        processes.wait_port(port, web)
        asyncio.run(intake.load(base, url, 0.5, 8, 1000, prefix))  # warm-up: connections, scripts
        before = {name: cpu_seconds(pid) for name, pid in serving.items()}
        web_before = cpu_seconds(web.pid)
        load_before = sum(cpu_seconds(pid) for pid in nodes) + time.process_time()
        began = time.monotonic()
        created, refused = asyncio.run(intake.load(base, url, seconds, 8, 1000, prefix))
        elapsed = time.monotonic() - began
        used = {name: cpu_seconds(pid) - before[name] for name, pid in serving.items()}
        web_used = cpu_seconds(web.pid) - web_before
        load_used = sum(cpu_seconds(pid) for pid in nodes) + time.process_time() - load_before
        held = asyncio.run(_jobs_held(settings, shards))
    finally:
        processes.stop(web)
    asyncio.run(_flush_prefixes(settings, shards))
    row: dict[str, Any] = {
        "system": system,
        "jobs": created,
        "refused_requests": refused,
        "jobs_per_s": round(created / elapsed),
        "web_cpu_us_per_job": round(web_used * 1e6 / max(created, 1), 1),
        "primary_cpu_us_per_job": round(sum(used.values()) * 1e6 / max(created, 1), 1),
        # What limits the rate: the web's core, or the load core (every Redis node and the load
        # generator, this process).
        "web_core_share": round(web_used / elapsed, 2),
        "load_core_share": round(load_used / elapsed, 2),
    }
    if shards > 1:
        # Each shard's primary, for each job it took; and how evenly the jobs spread.
        row["shards"] = [
            {
                "jobs_share": round(held[k] / max(sum(held), 1), 3),
                "primary_cpu_us_per_own_job": round(used[f"shard {k}"] * 1e6 / max(held[k], 1), 1),
            }
            for k in range(shards)
        ]
    return row


async def _jobs_held(settings: Settings, count: int) -> list[int]:
    """How many jobs each shard holds (its index of every job)."""
    url = settings.redis_url
    shards = Shards.connect(settings, count, lambda prefix: create_redis(url, key_prefix=prefix))
    try:
        return [int(await store.redis.zcard(store.keys.index_all)) for store in shards.stores]
    finally:
        await shards.aclose()


async def _flush_prefixes(settings: Settings, count: int) -> None:
    """Every key of the deployment's shards gone, for the next round (UNLINK, a batch at a time)."""
    url = settings.redis_url
    shards = Shards.connect(settings, count, lambda prefix: create_redis(url, key_prefix=prefix))
    try:
        for store in shards.stores:
            batch = []
            async for key in store.redis.scan_iter(match=f"{store.keys.prefix}*", count=5000):
                batch.append(key)
                if len(batch) == 5000:
                    await store.redis.unlink(*batch)
                    batch = []
            if batch:
                await store.redis.unlink(*batch)
    finally:
        await shards.aclose()


def fanouts(w: scenarios.Workload, rounds: int, tmp: Path) -> list[dict[str, Any]]:
    """jobcast's fan-out on one server and on three shards of a cluster, alternating round by round."""
    results = []
    with processes.redis_server() as single, formed_cluster() as cluster:
        for _ in range(rounds):
            results.append({**scenarios.deliveries("jobcast", single, w, tmp), "system": "single server"})
            backend = asyncio.run(_sharded_jobs(cluster, w.jobs))
            row = scenarios.deliveries("jobcast", single, w, tmp, backend)
            results.append({**row, "system": f"{SHARDS} shards"})
    return results


async def _sharded_jobs(cluster: LocalCluster, n: int) -> scenarios.Backend:
    """`n` jobs on three shards of `cluster`, in turn, as `jobcast web` makes them."""
    settings = Settings(redis_url=cluster.url, key_prefix=PREFIX, redis_shards=SHARDS)
    primaries = [await cluster.primary_of(p) for p in shard_prefixes(settings.redis_key_prefix, SHARDS)]
    await _flush([f"redis://{node.address}" for node in primaries])
    shards = Shards.connect(settings, SHARDS, lambda prefix: create_redis(cluster.url, key_prefix=prefix))
    try:
        made: dict[JobStore, list[str]] = {store: [] for store in shards.stores}
        for _ in range(n):
            store = shards.for_new(None)
            (job_id,) = store.new_ids(1)
            await store.create(job_id, Submission("demo", {"steps": 1}))
            made[store].append(job_id)
    finally:
        await shards.aclose()
    targets = [
        {"host": "127.0.0.1", "port": node.port, "prefix": store.keys.prefix, "jobs": made[store]}
        for store, node in zip(shards.stores, primaries, strict=True)
    ]
    replicas = [await _replica_of(cluster, node) for node in primaries]
    pids = {f"shard {k}": _pid(node) for k, node in enumerate(primaries)}
    pids |= {f"shard {k} replica": _pid(node) for k, node in enumerate(replicas)}
    env = {"JOBCAST_KEY_PREFIX": PREFIX, "JOBCAST_REDIS_SHARDS": str(SHARDS)}
    return scenarios.Backend(cluster.url, pids, targets, env)
