"""jobcast on a real Redis Cluster: three primaries and a replica each, started here
(tests/redis_cluster.py), with `jobcast web` and `jobcast worker` given a `redis+cluster://` URL.
Every key and channel of the deployment maps to the slot of its prefix's hash tag; a primary that
dies is replaced by its replica, and the processes follow by themselves."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.crc import key_slot
from redis.exceptions import ResponseError

from jobcast.protocol import new_job_id
from jobcast.redis.client import create_redis
from jobcast.redis.shards import shard_of, shard_of_owner, shards_of
from jobcast.settings import Settings
from jobcast.store.jobs import JobStore, Submission
from tests.helpers import (
    assert_watched_to_the_end,
    demo,
    follow_sse,
    get_json,
    lifecycle,
    post_json,
    progressed,
    read_sse,
    submit,
    wait_for,
    watch_to_end,
)
from tests.redis_cluster import LocalCluster
from tests.test_security import OTHER_SERVICE_KEY, SERVICE_KEY, bearer, two_services


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[LocalCluster]:
    formed = LocalCluster(tmp_path / "cluster")
    try:
        await formed.form()
        yield formed
    finally:
        formed.stop()


def cluster_prefix(cluster: LocalCluster, env: dict[str, str]) -> str:
    """The prefix the processes given `env` use on `cluster` (a hash tag)."""
    return Settings(redis_url=cluster.url, key_prefix=env["JOBCAST_KEY_PREFIX"]).redis_key_prefix


async def ended(session: aiohttp.ClientSession, url: str, job_id: str) -> dict[str, Any] | None:
    job = await get_json(session, f"{url}/api/jobs/{job_id}")
    return job if job["state"] in ("succeeded", "failed", "cancelled") else None


async def ws_to_end(session: aiohttp.ClientSession, url: str, job_id: str) -> list[dict[str, Any]]:
    """A WebSocket client's events of one job from its first, until the terminal one."""
    events: list[dict[str, Any]] = []
    async with session.ws_connect(f"{url}/api/ws") as ws:
        await ws.send_json({"type": "subscribe", "job_id": job_id, "last_event_id": 0})
        async with asyncio.timeout(30):
            async for message in ws:
                data = json.loads(message.data)
                if data.get("job_id") != job_id or "seq" not in data:
                    continue
                events.append(data)
                if data["type"] in ("succeeded", "failed", "cancelled"):
                    return events
    raise AssertionError(f"the socket closed before the job ended: {events[-3:]}")


async def test_jobs_run_stream_and_resume_on_a_redis_cluster(cluster: LocalCluster, spawn, env) -> None:
    # Two of the six nodes are enough to find the rest.
    url = "redis+cluster://" + ",".join(node.address for node in cluster.nodes[:2])
    web = spawn("web", REDIS_URL=url)
    worker = spawn("worker", REDIS_URL=url, JOBCAST_WORKER_MAX_JOBS="2")
    await web.wait_http()
    async with aiohttp.ClientSession() as session:
        # Submitted, run and watched over SSE from its first event, then resumed after its second.
        job = await submit(session, f"{web.url}/api/jobs", demo(5, 20))
        events = await watch_to_end(session, job["id"], web.url)
        assert lifecycle(events) == [("queued", 0), ("started", 1), ("succeeded", 1)]
        resumed = await read_sse(
            session, f"{web.url}/api/jobs/{job['id']}/events", headers={"Last-Event-ID": "2"}
        )
        assert [e.data["seq"] for e in resumed] == [e["seq"] for e in events[2:]]
        # The same over a WebSocket.
        job = await submit(session, f"{web.url}/api/jobs", demo(5, 20))
        over_ws = await ws_to_end(session, web.url, job["id"])
        assert [e["seq"] for e in over_ws] == list(range(1, len(over_ws) + 1))
        assert over_ws[-1]["type"] == "succeeded"
        # Cancelled while it runs.
        long = await submit(session, f"{web.url}/api/jobs", demo(200, 50))
        await wait_for(lambda: progressed(session, web.url, long["id"], 2), what="the long job to run")
        await post_json(session, f"{web.url}/api/jobs/{long['id']}/cancel", status=202)
        assert (await wait_for(lambda: ended(session, web.url, long["id"])))["state"] == "cancelled"
        # A failure retried: the retry is a new job that runs.
        failed = await submit(
            session, f"{web.url}/api/jobs", {"kind": "demo", "params": {"steps": 2, "fail_at_step": 1}}
        )
        assert (await wait_for(lambda: ended(session, web.url, failed["id"]), timeout=30))[
            "state"
        ] == "failed"
        retry = await post_json(session, f"{web.url}/api/jobs/{failed['id']}/retry", status=202)
        assert retry["id"] != failed["id"]
        await wait_for(lambda: ended(session, web.url, retry["id"]), timeout=30)
        # Delayed: it starts no sooner than asked.
        delayed = await submit(session, f"{web.url}/api/jobs", {**demo(1, 0), "delay_s": 1})
        done = await wait_for(lambda: ended(session, web.url, delayed["id"]))
        assert done["state"] == "succeeded"
        assert done["started_at"] >= done["run_at"], done
        # Delayed an hour, then run now.
        later = await submit(session, f"{web.url}/api/jobs", {**demo(1, 0), "delay_s": 3600})
        await post_json(session, f"{web.url}/api/jobs/{later['id']}/run-now", status=200)
        assert (await wait_for(lambda: ended(session, web.url, later["id"])))["state"] == "succeeded"
        # Priorities: with the worker stopped, a high job submitted last starts first.
        worker.stop()
        low = await submit(session, f"{web.url}/api/jobs", {**demo(1, 0), "priority": "low"})
        high = await submit(session, f"{web.url}/api/jobs", {**demo(1, 0), "priority": "high"})
        spawn("worker", REDIS_URL=url, JOBCAST_WORKER_MAX_JOBS="1")
        first = await wait_for(lambda: ended(session, web.url, low["id"]))
        second = await get_json(session, f"{web.url}/api/jobs/{high['id']}")
        assert second["started_at"] < first["started_at"]
        # The dashboard's feed: a snapshot, and from an id before its head, what came after it.
        (snapshot,) = await read_sse(session, f"{web.url}/api/events", stop_after=1)
        epoch, head = snapshot.data["epoch"], snapshot.data["feed_seq"]
        since = {"Last-Event-ID": f"{epoch}:{head - 4}"}
        feed = await read_sse(session, f"{web.url}/api/events", headers=since, stop_after=4)
        assert [e.data["feed_seq"] for e in feed] == list(range(head - 3, head + 1))
    # Every key of the deployment is on the primary serving its prefix's slot, and only there.
    prefix = cluster_prefix(cluster, env)
    home = await cluster.primary_of(prefix)
    async with home.client() as client:
        keys = [key.decode() async for key in client.scan_iter(count=1000)]
    assert keys and all(key.startswith(prefix) for key in keys), keys[:5]
    assert {key_slot(key.encode()) for key in keys} == {key_slot(prefix.encode())}
    # Events went out as sharded messages, which stay on the slot's nodes, not over the cluster
    # bus to every node; the worker's signal listener hears them there.
    async with home.client() as client:
        commands = await client.info("commandstats")
        listening = await client.execute_command("PUBSUB SHARDNUMSUB", f"{prefix}:wake")
    assert commands["cmdstat_spublish"]["calls"] > 0 and "cmdstat_publish" not in commands
    assert dict(listening) == {f"{prefix}:wake".encode(): 1}
    for node in cluster.nodes:
        if node is not home and (await node.info("replication"))["role"] == "master":
            async with node.client() as client:
                assert await client.dbsize() == 0


@pytest.mark.parametrize("shards", ["1", "3"])
async def test_owners_trees_and_output_streams_on_a_redis_cluster(
    cluster: LocalCluster, spawn, shards: str
) -> None:
    owners = two_services(REDIS_URL=cluster.url, JOBCAST_REDIS_SHARDS=shards)
    web = spawn("web", **owners)
    spawn("worker", **owners)
    await web.wait_http()
    async with (
        aiohttp.ClientSession(headers=bearer(SERVICE_KEY)) as shop,
        aiohttp.ClientSession(headers=bearer(OTHER_SERVICE_KEY)) as billing,
    ):
        # A tree: the parent runs once its two children have.
        tree = {**demo(2, 10), "children": [demo(3, 10), demo(3, 10)]}
        root = await post_json(shop, f"{web.url}/api/jobs", tree, 202)
        # Output streamed token by token, read whole once the job ends.
        summary = {"kind": "summarize", "params": {"paragraphs": 2, "max_words": 20, "tokens_per_s": 200}}
        writer = await post_json(shop, f"{web.url}/api/jobs", summary, 202)
        events = await watch_to_end(shop, writer["id"], web.url)
        chunks = "".join(e["data"] for e in events if e["type"] == "output" and e["stream"] == "output")
        async with shop.get(f"{web.url}/api/jobs/{writer['id']}/output/output") as response:
            assert response.status == 200 and await response.text() == chunks != ""
        parent = await wait_for(lambda: ended(shop, web.url, root["id"]), timeout=30)
        assert parent["state"] == "succeeded" and parent["children"]["succeeded"] == 2
        # Only the owner sees its jobs, in the listing and in its feed.
        for job_id in (root["id"], writer["id"]):
            async with billing.get(f"{web.url}/api/jobs/{job_id}") as response:
                assert response.status == 404
        assert (await get_json(billing, f"{web.url}/api/jobs"))["jobs"] == []
        listed = await get_json(shop, f"{web.url}/api/jobs?top_level=true")
        assert {job["id"] for job in listed["jobs"]} == {root["id"], writer["id"]}
        (snapshot,) = await read_sse(shop, f"{web.url}/api/events", stop_after=1)
        assert {job["id"] for job in snapshot.data["jobs"]} >= {root["id"], writer["id"]}
        (nothing,) = await read_sse(billing, f"{web.url}/api/events", stop_after=1)
        assert nothing.data["jobs"] == []


async def listed_ids(session: aiohttp.ClientSession, url: str, limit: int) -> list[str]:
    """Every job `GET /api/jobs` lists, following its cursor a page of `limit` at a time."""
    ids: list[str] = []
    query = f"{url}/api/jobs?limit={limit}"
    while True:
        page = await get_json(session, query)
        ids += [job["id"] for job in page["jobs"]]
        if not page["next_cursor"]:
            return ids
        query = f"{url}/api/jobs?limit={limit}&cursor={page['next_cursor']}"


def same_shard_keys(count: int, shards: int) -> list[str]:
    """`count` idempotency keys that all pick one shard (jobs without an owner go by their key)."""
    keys = (f"key-{n}" for n in range(10_000))
    return [key for key in keys if shard_of_owner(key, shards) == 0][:count]


async def test_a_deployment_of_three_shards_serves_every_job_as_one(
    cluster: LocalCluster, spawn, env
) -> None:
    """Three shards on three primaries behind one `jobcast web`: jobs go to every shard, and
    whatever lists, counts, finds or streams them sees them all, as one shard would."""
    sharded = {"REDIS_URL": cluster.url, "JOBCAST_REDIS_SHARDS": "3"}
    web = spawn("web", **sharded)
    worker = spawn("worker", **sharded, JOBCAST_WORKER_MAX_JOBS="2")
    await web.wait_http()
    url = web.url
    async with aiohttp.ClientSession() as session:
        jobs = [await submit(session, f"{url}/api/jobs", demo(3, 10)) for _ in range(6)]
        assert {shard_of(job["id"], 3) for job in jobs} == {0, 1, 2}
        for job in jobs:
            events = await watch_to_end(session, job["id"], url)
            assert lifecycle(events) == [("queued", 0), ("started", 1), ("succeeded", 1)]
        resumed = await read_sse(
            session, f"{url}/api/jobs/{jobs[2]['id']}/events", headers={"Last-Event-ID": "2"}
        )
        assert resumed[0].data["seq"] == 3 and resumed[-1].data["type"] == "succeeded"
        over_ws = await ws_to_end(session, url, jobs[1]["id"])
        assert [e["seq"] for e in over_ws] == list(range(1, len(over_ws) + 1))
        # A batch spreads too, and a repeat of an idempotency key or a unique key meets its first.
        batch = await post_json(session, f"{url}/api/jobs/batch", {"jobs": [demo(1, 0)] * 6})
        batch_ids = [r["job"]["id"] for r in batch["results"]]
        assert {shard_of(job_id, 3) for job_id in batch_ids} == {0, 1, 2}
        headers = {"Idempotency-Key": "once"}
        first = await post_json(session, f"{url}/api/jobs", demo(1, 0), 202, headers=headers)
        again = await post_json(session, f"{url}/api/jobs", demo(1, 0), 200, headers=headers)
        unique = {**demo(1, 0), "delay_s": 60, "unique_key": "nightly"}
        one = await post_json(session, f"{url}/api/jobs", unique, 202)
        same = await post_json(session, f"{url}/api/jobs", unique, 200)
        assert again["id"] == first["id"] and same["id"] == one["id"]
        for job_id in [*batch_ids, first["id"]]:
            await wait_for(lambda job_id=job_id: ended(session, url, job_id))
        # Cancel, retry (on the failed job's shard) and run-now reach the job's shard.
        long = await submit(session, f"{url}/api/jobs", demo(200, 50))
        await wait_for(lambda: progressed(session, url, long["id"], 2), what="the long job to run")
        await post_json(session, f"{url}/api/jobs/{long['id']}/cancel", status=202)
        assert (await wait_for(lambda: ended(session, url, long["id"])))["state"] == "cancelled"
        failing = {"kind": "demo", "params": {"steps": 2, "fail_at_step": 1}}
        failed = [await submit(session, f"{url}/api/jobs", failing) for _ in range(3)]
        for job in failed:
            assert (await wait_for(lambda job=job: ended(session, url, job["id"]), timeout=30))[
                "state"
            ] == "failed"
        retry = await post_json(session, f"{url}/api/jobs/{failed[1]['id']}/retry", status=202)
        assert shard_of(retry["id"], 3) == shard_of(failed[1]["id"], 3)
        assert (await wait_for(lambda: ended(session, url, retry["id"]), timeout=30))["state"] == "failed"
        await post_json(session, f"{url}/api/jobs/{one['id']}/run-now", status=200)
        assert (await wait_for(lambda: ended(session, url, one["id"])))["state"] == "succeeded"
        # Priorities hold on a shard: with the worker stopped, a high job submitted last starts first.
        worker.stop()
        low_key, high_key = same_shard_keys(2, 3)
        low, high = [
            await post_json(
                session, f"{url}/api/jobs", {**demo(1, 0), "priority": p}, 202, headers={"Idempotency-Key": k}
            )
            for p, k in (("low", low_key), ("high", high_key))
        ]
        # Paused on every shard: a paused kind's jobs of each shard wait, and resuming frees them all.
        await post_json(session, f"{url}/api/kinds/demo/pause", status=200)
        spawn("worker", **sharded, JOBCAST_WORKER_MAX_JOBS="1")
        held = [await submit(session, f"{url}/api/jobs", demo(1, 0)) for _ in range(3)]
        assert {shard_of(job["id"], 3) for job in held} == {0, 1, 2}
        await wait_for(lambda: _parked(session, url, 5), what="every shard's demo jobs to be parked")
        resumed_kind = await post_json(session, f"{url}/api/kinds/demo/resume", status=200)
        assert resumed_kind["resumed"] == 5
        for job in [low, high, *held]:
            await wait_for(lambda job=job: ended(session, url, job["id"]), timeout=30)
        first_low = await get_json(session, f"{url}/api/jobs/{low['id']}")
        first_high = await get_json(session, f"{url}/api/jobs/{high['id']}")
        assert first_high["started_at"] < first_low["started_at"]
        everyone = [
            *jobs,
            *({"id": i} for i in batch_ids),
            first,
            one,
            long,
            *failed,
            retry,
            low,
            high,
            *held,
        ]
        # The listing merges the shards newest first, a page at a time, each job once.
        listed = await listed_ids(session, url, limit=4)
        assert len(listed) == len(set(listed)) == len(everyone)
        assert set(listed) == {job["id"] for job in everyone}
        created = [(await get_json(session, f"{url}/api/jobs/{i}"))["created_at"] for i in listed]
        assert created == sorted(created, reverse=True)
        # Counts add every shard's up; failures group every shard's; a short id finds its shard.
        stats = await get_json(session, f"{url}/api/stats")
        assert stats["finished_last_hour"] == {"succeeded": len(everyone) - 5, "failed": 4, "cancelled": 1}
        groups = await get_json(session, f"{url}/api/failures")
        assert sum(group["count"] for group in groups["groups"]) == 4
        other = next(job for job in jobs if shard_of(job["id"], 3) == 2)
        async with session.get(f"{url}/find?id={other['id'][:10]}", allow_redirects=False) as found:
            assert found.status == 302 and found.headers["Location"].endswith(other["id"])
        count = await post_json(
            session, f"{url}/api/bulk/count", {"action": "delete", "filter": {"state": "failed"}}
        )
        assert count["matches"] == 4
        # The feed: one a shard, each with its own epoch; a watcher of every shard's has every job.
        feeds = [
            (await read_sse(session, f"{url}/api/events?shard={n}", stop_after=1))[0].data for n in range(3)
        ]
        assert [(feed["shard"], feed["shards"]) for feed in feeds] == [(0, 3), (1, 3), (2, 3)]
        assert {job["id"] for feed in feeds for job in feed["jobs"]} == {job["id"] for job in everyone}
        for n, feed in enumerate(feeds):
            since = {"Last-Event-ID": f"{feed['epoch']}:{feed['feed_seq'] - 3}"}
            events = await read_sse(session, f"{url}/api/events?shard={n}", headers=since, stop_after=3)
            assert [e.data["feed_seq"] for e in events] == [
                feed["feed_seq"] - 2,
                feed["feed_seq"] - 1,
                feed["feed_seq"],
            ]
            assert all(shard_of(e.data["job_id"], 3) == n for e in events)
        async with session.get(f"{url}/api/events?shard=3") as beyond:
            assert beyond.status == 400 and beyond.content_type == "application/problem+json"
        # A bulk action walks every shard: the failed jobs of all three deleted by one bulk job.
        action = {"action": "delete", "filter": {"state": "failed"}}
        bulk = await post_json(session, f"{url}/api/bulk", action, 202)
        assert (await wait_for(lambda: ended(session, url, bulk["id"]), timeout=30))["result"]["done"] == 4
        for job in [*failed, retry]:
            async with session.get(f"{url}/api/jobs/{job['id']}") as gone:
                assert gone.status == 404
        # A job id naming a shard the deployment lacks is no job.
        async with session.get(f"{url}/api/jobs/05{jobs[0]['id'][2:12]}8{jobs[0]['id'][13:]}") as missing:
            assert missing.status == 404
    # Each shard's keys are on its own primary, and only there; every event was a sharded message.
    prefixes = [shard.prefix for shard in shards_of(cluster_prefix(cluster, env), 3)]
    homes = [await cluster.primary_of(prefix) for prefix in prefixes]
    assert len({id(home) for home in homes}) == 3
    for prefix, home in zip(prefixes, homes, strict=True):
        async with home.client() as client:
            keys = [key.decode() async for key in client.scan_iter(count=1000)]
            commands = await client.info("commandstats")
        assert keys and all(key.startswith(prefix) for key in keys), keys[:5]
        assert commands["cmdstat_spublish"]["calls"] > 0 and "cmdstat_publish" not in commands


async def _parked(session: aiohttp.ClientSession, url: str, count: int) -> bool:
    return (await get_json(session, f"{url}/api/stats"))["paused"].get("demo", {}).get("parked") == count


async def test_redis_refuses_a_jobcast_script_that_would_reach_a_second_slot(
    cluster: LocalCluster, env
) -> None:
    settings = Settings(redis_url=cluster.url, key_prefix=env["JOBCAST_KEY_PREFIX"])
    redis = create_redis(settings.redis_url, key_prefix=settings.redis_key_prefix)
    try:
        store = JobStore(redis, settings)
        # Every script declares itself (`#!lua`): Redis then holds each call to one slot.
        assert all(script.script.startswith("#!lua\n") for script in store.scripts._scripts.values())
        home = await cluster.primary_of(settings.redis_key_prefix)
        # A key of another slot that the same node serves: an undeclared script may reach it.
        i = 0
        while await cluster.primary_of(f"{{{i}}}") is not home:
            i += 1
        elsewhere = f"other{{{i}}}"
        reach = "redis.call('GET', KEYS[1]) return redis.call('GET', ARGV[1])"
        inside = f"{settings.redis_key_prefix}:x"
        assert await redis.register_script(reach)(keys=[inside], args=[elsewhere]) is None
        with pytest.raises(ResponseError, match="same slot"):
            await redis.register_script("#!lua\n" + reach)(keys=[inside], args=[elsewhere])
        # And a jobcast script works within it.
        job_id = new_job_id()
        assert (await store.create(job_id, Submission("demo", {})))["id"] == job_id
    finally:
        await redis.aclose()


Seen = list[tuple[str, dict[str, Any]]]


def watch_each(
    session: aiohttp.ClientSession, url: str, jobs: list[dict[str, Any]], per_job: int
) -> tuple[list[asyncio.Task[tuple[Seen, int]]], list[Seen]]:
    """`per_job` EventSource clients of each job, reconnecting as browsers do until its end; and
    what each has seen so far."""
    seen: list[Seen] = [[] for _ in range(len(jobs) * per_job)]
    tasks = [
        asyncio.create_task(follow_sse(session, url, job["id"], retry_s=0.3, seen=seen[i * per_job + j]))
        for i, job in enumerate(jobs)
        for j in range(per_job)
    ]
    return tasks, seen


async def all_ended(watchers: list[asyncio.Task[Any]], procs: list[Any], timeout: float) -> None:
    """Every watcher saw its job end within `timeout`; else the processes' last words."""
    _, pending = await asyncio.wait(watchers, timeout=timeout)
    for task in pending:
        task.cancel()
    assert not pending, f"{len(pending)} watchers never saw their job end:\n" + "\n".join(
        f"{proc.command}: {proc.log()[-2000:]}" for proc in procs
    )


@pytest.mark.parametrize("shards", ["1", "3"])
async def test_a_slot_migration_under_running_jobs_and_watchers_loses_nothing(
    cluster: LocalCluster, spawn, env, shards: str
) -> None:
    """Shard 0's slot moves to another primary mid-run (with three shards, onto one that already
    serves a shard)."""
    prefix = cluster_prefix(cluster, env)
    web = spawn("web", REDIS_URL=cluster.url, JOBCAST_REDIS_SHARDS=shards)
    worker = spawn("worker", REDIS_URL=cluster.url, JOBCAST_REDIS_SHARDS=shards)
    await web.wait_http()
    async with aiohttp.ClientSession() as session:
        jobs = [await submit(session, f"{web.url}/api/jobs", demo(40, 50)) for _ in range(4)]
        watchers, _ = watch_each(session, web.url, jobs, 2)
        await wait_for(lambda: progressed(session, web.url, jobs[0]["id"], 5), what="the jobs to run")
        home = await cluster.primary_of(prefix)
        primaries = [n for n in cluster.nodes if (await n.info("replication"))["role"] == "master"]
        target = next(n for n in primaries if n is not home)
        moved = await cluster.migrate(prefix, target)
        # Jobs submitted after the move run too.
        try:
            later = await submit(session, f"{web.url}/api/jobs", demo(3, 10))
        except AssertionError:
            raise AssertionError(web.log()[-4000:]) from None
        await all_ended(watchers, [web, worker], timeout=60)
        assert (await wait_for(lambda: ended(session, web.url, later["id"])))["state"] == "succeeded"
    assert moved > 0 and await cluster.primary_of(prefix) is target
    async with home.client() as client:
        assert await client.dbsize() == 0
    for task in watchers:
        events, _ = task.result()
        assert_watched_to_the_end(events)


@pytest.mark.parametrize("shards", ["1", "3"])
async def test_web_and_workers_follow_a_cluster_failover(
    cluster: LocalCluster, spawn, env, shards: str
) -> None:
    """Shard 0's primary dies with 200 watchers on (with three shards: two of the four jobs, the
    workers' registry and the schedules)."""
    web = spawn("web", REDIS_URL=cluster.url, JOBCAST_REDIS_SHARDS=shards)
    worker = spawn("worker", REDIS_URL=cluster.url, JOBCAST_LEASE_S="3", JOBCAST_REDIS_SHARDS=shards)
    await web.wait_http()
    prefix = cluster_prefix(cluster, env)
    home = await cluster.primary_of(prefix)
    # 200 watchers, each on a connection of its own (aiohttp's default pool holds 100).
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        jobs = [await submit(session, f"{web.url}/api/jobs", demo(60, 100)) for _ in range(4)]
        watchers, seen = watch_each(session, web.url, jobs, 50)
        await wait_for(lambda: progressed(session, web.url, jobs[0]["id"], 10), what="the jobs to run")
        await wait_for(lambda: all(seen), timeout=30, what="every watcher to be streaming")
        home.kill()  # its replica is promoted once the others judge it failed (1 s)
        await all_ended(watchers, [web, worker], timeout=90)
    assert (await cluster.primary_of(prefix)) is not home
    for task in watchers:
        events, _ = task.result()
        assert_watched_to_the_end(events)
