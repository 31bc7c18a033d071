"""A Redis Sentinel failover under load, for real: a primary, a replica and three sentinels on
loopback, started here. The primary is killed while jobs run and watchers stream; the sentinels
promote the replica, and `jobcast web` and `jobcast worker` (given a `redis+sentinel://` URL)
follow it by themselves. Every job ends, and every watcher reaches its job's end with no seq gap
and no duplicate, or with a snapshot where the new primary had lost the last events the old one
took (replication is asynchronous: what the old primary had not sent its replica yet is gone)."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from jobcast.redis.embedded import free_port, redis_server_binary
from tests.helpers import assert_watched_to_the_end, demo, follow_sse, progressed, submit, wait_for

SERVICE = "jobcast-primary"


class Node:
    """One redis-server (data node or sentinel) on loopback."""

    def __init__(self, tmp: Path, name: str, args: list[str], config: str = "") -> None:
        self.port = free_port()
        self.dir = tmp / name
        self.dir.mkdir()
        conf = self.dir / "redis.conf"
        conf.write_text(f'port {self.port}\nbind 127.0.0.1\ndir {self.dir}\nsave ""\n{config}')
        with (self.dir / "log").open("wb") as log:
            self.process = subprocess.Popen([redis_server_binary(), str(conf), *args], stdout=log, stderr=log)

    def client(self) -> aioredis.Redis:
        return aioredis.Redis(port=self.port, socket_timeout=2)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def sentinel_setup(tmp_path: Path) -> Iterator[tuple[Node, Node, list[Node]]]:
    primary = Node(tmp_path, "primary", [])
    replica = Node(tmp_path, "replica", [], f"replicaof 127.0.0.1 {primary.port}\n")
    monitor = (
        f"sentinel monitor {SERVICE} 127.0.0.1 {primary.port} 2\n"
        f"sentinel down-after-milliseconds {SERVICE} 1000\n"
        f"sentinel failover-timeout {SERVICE} 4000\n"
        f"sentinel parallel-syncs {SERVICE} 1\n"
    )
    sentinels = [Node(tmp_path, f"sentinel{i}", ["--sentinel"], monitor) for i in range(3)]
    yield primary, replica, sentinels
    for node in (primary, replica, *sentinels):
        node.stop()


async def ready(primary: Node, replica: Node, sentinels: list[Node]) -> bool:
    """The replica is in sync and every sentinel knows the replica and the two other sentinels."""
    try:
        async with replica.client() as client:
            if (await client.info("replication")).get("master_link_status") != "up":
                return False
        for sentinel in sentinels:
            async with sentinel.client() as client:
                state = await client.execute_command("SENTINEL", "MASTER", SERVICE)
            fields = dict(zip(state[::2], state[1::2], strict=True))
            if int(fields[b"num-slaves"]) < 1 or int(fields[b"num-other-sentinels"]) < 2:
                return False
        return True
    except (aioredis.ConnectionError, OSError):
        return False


async def watch(
    session: aiohttp.ClientSession, url: str, job_id: str, seen: list[tuple[str, dict[str, Any]]]
) -> list[tuple[str, dict[str, Any]]]:
    """An EventSource's view: reconnect with Last-Event-ID until the terminal event. What it has
    seen so far stays in `seen`, for the failure message of a watcher that never got there."""
    await follow_sse(session, url, job_id, retry_s=0.3, seen=seen)
    return seen


async def stuck(
    session: aiohttp.ClientSession, url: str, jobs: list[dict[str, Any]], procs: list[Any]
) -> str:
    """What a reader of a failed run needs: each job's state now and the processes' last lines."""
    lines = []
    for job in jobs:
        async with session.get(f"{url}/api/jobs/{job['id']}") as r:
            body = await r.json() if r.status == 200 else {"status": r.status}
        lines.append(
            f"{job['id']}: {body.get('state')} seq {body.get('last_event_id')} attempt {body.get('attempt')}"
        )
    for proc in procs:
        lines.append(f"--- {proc.command}:\n" + "\n".join(proc.log().splitlines()[-40:]))
    return "\n".join(lines)


async def test_web_and_workers_follow_a_sentinel_failover(sentinel_setup, spawn) -> None:
    primary, replica, sentinels = sentinel_setup
    await wait_for(
        lambda: ready(primary, replica, sentinels), timeout=30, what="the sentinels to see everything"
    )
    url = "redis+sentinel://" + ",".join(f"127.0.0.1:{s.port}" for s in sentinels) + f"/{SERVICE}"
    web = spawn("web", REDIS_URL=url)
    worker = spawn("worker", REDIS_URL=url, JOBCAST_LEASE_S="3")
    await web.wait_http()
    async with aiohttp.ClientSession() as session:
        jobs = [await submit(session, f"{web.url}/api/jobs", demo(60, 100)) for _ in range(4)]
        # A tree too: its parent waits for children that run through the failover.
        tree = await submit(session, f"{web.url}/api/jobs", {**demo(1, 0), "children": [demo(60, 100)] * 4})
        partial: list[list[tuple[str, dict[str, Any]]]] = [[] for _ in range(len(jobs) * 3)]
        watchers = [
            asyncio.create_task(watch(session, web.url, job["id"], partial[i * 3 + j]))
            for i, job in enumerate(jobs)
            for j in range(3)
        ]
        await wait_for(lambda: progressed(session, web.url, jobs[0]["id"], 10), what="the jobs to run")
        primary.stop()  # SIGKILL: the sentinels see it down after 1 s, then promote the replica

        async def promoted() -> bool:
            try:
                async with replica.client() as client:
                    return (await client.info("replication"))["role"] == "master"
            except aioredis.ConnectionError:
                return False

        await wait_for(promoted, timeout=30, what="the replica to be promoted")
        _, pending = await asyncio.wait(watchers, timeout=90)
        if pending:
            for task in pending:
                task.cancel()
            await asyncio.wait(pending)
            detail = await stuck(session, web.url, jobs, [web, worker])
            for task, seen in zip(watchers, partial, strict=True):
                if task in pending:
                    detail += f"\nwatcher stuck after {[(k, d.get('seq', d.get('last_event_id'))) for k, d in seen[-5:]]}"
            pytest.fail(f"{len(pending)} watchers never saw their job end\n{detail}")
        results = [task.result() for task in watchers]
        await web.wait_http()  # ready again, on the new primary

        async def tree_ended() -> dict[str, Any] | None:
            async with session.get(f"{web.url}/api/jobs/{tree['id']}") as answer:
                parent = await answer.json() if answer.status == 200 else None
            return parent if parent and parent["state"] in ("succeeded", "failed", "cancelled") else None

        parent = await wait_for(tree_ended, timeout=60, what="the tree's parent to end")
    # Its continuation ran once its four children had all ended, on the new primary.
    assert parent["state"] == "succeeded" and parent["children"]["succeeded"] == 4, parent
    for seen in results:
        assert_watched_to_the_end(seen)
