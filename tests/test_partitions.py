"""Network partitions, for real: Redis, `jobcast web` and two workers each run in a network
namespace of their own, joined by veth pairs to a bridge (private test addresses, inside this
machine). A test cuts a link, waits, and brings it back; everything must recover by itself with
nothing lost, and a job the cut-off worker was running must end exactly once."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from jobcast.protocol import Keys
from jobcast.redis.embedded import redis_server_binary
from tests.helpers import demo, follow_sse, progressed, wait_for

ADMIN_KEY = "jc_partition-test-admin-key-0123456789"
TERMINAL = {"succeeded", "failed", "cancelled"}


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def netns_available() -> bool:
    if os.geteuid() != 0:
        return False
    name = f"jcprobe{os.getpid()}"
    try:
        ip("netns", "add", name)
    except (OSError, subprocess.CalledProcessError):
        return False
    ip("netns", "del", name)
    return True


@dataclass
class Host:
    """A network namespace with one address on the test bridge."""

    name: str
    address: str
    link: str  # the bridge-side end of its veth pair: down cuts the host off

    @property
    def run(self) -> tuple[str, ...]:
        return ("ip", "netns", "exec", self.name)

    def cut(self) -> None:
        ip("link", "set", self.link, "down")

    def heal(self) -> None:
        ip("link", "set", self.link, "up")


@pytest.fixture
def network() -> Iterator[dict[str, Host]]:
    assert netns_available(), "the partition test needs root and `ip netns` (CI runs as root)"
    tag = f"{os.getpid() % 10000}"
    subnet = 10 + os.getpid() % 200
    bridge = f"jcbr{tag}"
    ip("link", "add", bridge, "type", "bridge")
    ip("addr", "add", f"10.250.{subnet}.254/24", "dev", bridge)
    ip("link", "set", bridge, "up")
    hosts: dict[str, Host] = {}
    try:
        for number, role in enumerate(("redis", "web", "worker1", "worker2"), 1):
            name, outside, inside = f"jc{tag}{role}", f"jc{tag}h{number}", f"jc{tag}n{number}"
            address = f"10.250.{subnet}.{number}"
            ip("netns", "add", name)
            ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            ip("link", "set", inside, "netns", name)
            ip("link", "set", outside, "master", bridge)
            ip("link", "set", outside, "up")
            ip("netns", "exec", name, "ip", "addr", "add", f"{address}/24", "dev", inside)
            ip("netns", "exec", name, "ip", "link", "set", inside, "up")
            ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
            hosts[role] = Host(name, address, outside)
        yield hosts
    finally:
        for host in hosts.values():
            subprocess.run(["ip", "netns", "del", host.name], check=False)
            subprocess.run(["ip", "link", "del", host.link], check=False, capture_output=True)
        subprocess.run(["ip", "link", "del", bridge], check=False)


@pytest.fixture
def namespaced_redis(network: dict[str, Host], tmp_path: Path) -> Iterator[None]:
    """Redis in its own namespace, on its bridge address."""
    host = network["redis"]
    directory = tmp_path / "redis"
    directory.mkdir()
    with (directory / "log").open("wb") as log:
        redis = subprocess.Popen(
            [*host.run, redis_server_binary(), "--bind", host.address, "--port", "6379",
             "--protected-mode", "no", "--save", "", "--dir", str(directory)],
            stdout=log, stderr=log,
        )  # fmt: skip
    yield
    redis.kill()
    redis.wait()


async def watch(session: aiohttp.ClientSession, url: str, job_id: str) -> list[dict[str, Any]]:
    """An EventSource's view, with a read timeout that notices a silent connection."""
    seen, _ = await follow_sse(session, url, job_id, retry_s=0.5, read_timeout_s=5)
    return [data for _, data in seen]


async def steps_in_redis(address: str, prefix: str, job_id: str) -> int:
    async with aioredis.Redis(host=address, port=6379, socket_timeout=2) as redis:
        raw = await redis.hget(Keys(prefix).job(job_id), "progress")
    return int(json.loads(raw)["current"] or 0) if raw else 0


async def steps_done_since(address: str, prefix: str, job_id: str, steps: int) -> bool:
    return await steps_in_redis(address, prefix, job_id) >= steps


async def reached(session: aiohttp.ClientSession, url: str, job_id: str, what: str) -> bool:
    async with session.get(f"{url}/api/jobs/{job_id}") as response:
        return response.status == 200 and (await response.json())["state"] == what


async def test_partitions_of_a_worker_and_of_the_web_heal_by_themselves(
    network, namespaced_redis, spawn, settings
) -> None:
    redis_host = network["redis"]
    env = {
        "REDIS_URL": f"redis://{redis_host.address}:6379/0",
        "JOBCAST_SECRET": "partition-test-secret-that-is-long-enough",
        "JOBCAST_API_KEYS": f"ops:admin:{hashlib.sha256(ADMIN_KEY.encode()).hexdigest()}",
        "JOBCAST_LEASE_S": "2",
    }
    web_host = network["web"]
    web = spawn("web", 8000, prefix=web_host.run, host=web_host.address, JOBCAST_HOST=web_host.address, **env)
    first = spawn("worker", prefix=network["worker1"].run, **env)
    await web.wait_http()
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    async with aiohttp.ClientSession(web.url, headers=headers) as session:
        # A job starts on the first worker; then a second worker comes up.
        async with session.post("/api/jobs", json=demo(80, 100)) as response:
            assert response.status == 202, await response.text()
            job = await response.json()
        watcher = asyncio.create_task(watch(session, web.url, job["id"]))
        await wait_for(lambda: reached(session, web.url, job["id"], "running"), what="the job to start")
        spawn("worker", prefix=network["worker2"].run, **env)

        # The first worker is cut off until its lease lapses and the second takes the job over.
        network["worker1"].cut()
        await wait_for(
            lambda: progressed(session, web.url, job["id"], 1, attempt=2), timeout=30, what="the takeover"
        )
        network["worker1"].heal()
        await wait_for(
            lambda: "was taken over" in first.log(), timeout=30, what="the first worker to give up"
        )

        # The web is cut off (from Redis and from its clients) for a while, mid-stream.
        async with session.post("/api/jobs", json=demo(60, 100)) as response:
            other = await response.json()
        other_watcher = asyncio.create_task(watch(session, web.url, other["id"]))
        await wait_for(lambda: progressed(session, web.url, other["id"], 5), what="the other job to run")
        web_host.cut()
        # The job goes on meanwhile (seen in Redis, which the test still reaches): its watcher must
        # get what it missed once the web is back.
        start = await steps_in_redis(redis_host.address, settings.key_prefix, other["id"])
        await wait_for(
            lambda: steps_done_since(redis_host.address, settings.key_prefix, other["id"], start + 15),
            what="the job to go on while the web is cut off",
        )
        web_host.heal()
        runs = await asyncio.wait_for(asyncio.gather(watcher, other_watcher), 120)
    for seen in runs:
        seqs = [event["seq"] for event in seen]
        assert seqs == list(range(1, len(seqs) + 1))  # no gap, no duplicate
        assert [event["type"] for event in seen if event["type"] in TERMINAL] == ["succeeded"]  # exactly once
    # The job the cut-off worker ran was announced lost and ran again, to its end.
    assert any(event["type"] == "retrying" for event in runs[0])
    assert runs[0][-1]["progress"]["current"] == 80 and runs[1][-1]["progress"]["current"] == 60
