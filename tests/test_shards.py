"""A deployment spread over shards (jobcast/redis/shards.py): each shard's tag on its own part of
the slot ring, ids that name their shard, and on a real Redis Cluster (three primaries with a
replica each) jobs spread so that no primary holds much more than its share of keys or messages."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
import pytest
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from jobcast.protocol import EventType, new_job_ids, split_record
from jobcast.queries.stats import live_workers
from jobcast.redis.client import create_redis
from jobcast.redis.keyslots import hash_tag
from jobcast.redis.shards import shard_of, shard_of_owner, shard_prefixes, sharded_job_ids
from jobcast.server.fanout.broker import RedisBroker
from jobcast.server.fanout.hub import Outbox, Subscription
from jobcast.server.fanout.relay import Relay
from jobcast.settings import Settings
from jobcast.store.jobs import Submission
from jobcast.store.shards import Shards
from tests.helpers import demo, get_json, lifecycle, post_json, wait_for, watch_to_end
from tests.redis_cluster import ClusterNode, LocalCluster
from tests.test_security import ADMIN_KEY, SECRET, SERVICE_KEY, bearer, key_entry


@pytest.mark.parametrize("count", [2, 3, 5, 16])
# edge6 hashes to slot 5401, at the end of the first third of the ring.
@pytest.mark.parametrize("tag", ["jobcast", "team-a", "edge6", "x"])
def test_each_shard_takes_its_own_part_of_the_slot_ring(count: int, tag: str) -> None:
    prefixes = shard_prefixes(f"team:{{{tag}}}", count)
    # Shard 0 is where an unsharded deployment kept its keys; the others keep the rest of the prefix.
    assert prefixes[0] == f"team:{{{tag}}}" and len(set(prefixes)) == count
    assert all(p.startswith(f"team:{{{tag}~") for p in prefixes[1:])
    spacing = REDIS_CLUSTER_HASH_SLOTS / count
    slots = [key_slot(hash_tag(p).encode()) for p in prefixes]
    # One shard in each of the ring's equal parts (so on each primary of a cluster split evenly
    # into `count`), the others away from their part's edges.
    assert sorted(int(slot // spacing) for slot in slots) == list(range(count)), slots
    for slot in slots[1:]:
        assert abs(slot % spacing - spacing / 2) <= spacing / 8, (slot, spacing)
    # The same in every process: the layout is a function of the prefix and the count.
    assert shard_prefixes(f"team:{{{tag}}}", count) == prefixes


def test_shard_0_is_the_deployments_prefix_tagged_or_not() -> None:
    assert shard_prefixes("jobcast", 1) == ["jobcast"]
    # On one server a prefix need not be a tag: shard 0 keeps it, the others are tags made from it.
    plain = shard_prefixes("jobcast", 3)
    assert plain[0] == "jobcast" and all(
        hash_tag(p).startswith(f"jobcast~{k}") for k, p in enumerate(plain) if k
    )
    tagged = shard_prefixes("app:{jc}", 3)
    assert tagged[0] == "app:{jc}" and all(p.startswith("app:{jc~") for p in tagged[1:])
    with pytest.raises(ValueError, match="1 to 256"):
        shard_prefixes("{jobcast}", 257)


def test_an_id_names_its_shard_and_stays_a_uuid_of_32_hex_digits() -> None:
    for shard in (0, 1, 2, 255):
        ids = sharded_job_ids(500, shard)
        assert len(set(ids)) == 500
        for job_id in ids:
            assert len(job_id) == 32 and uuid.UUID(job_id).hex == job_id
            assert uuid.UUID(job_id).version == 8 and uuid.UUID(job_id).variant == uuid.RFC_4122
            assert shard_of(job_id, 256) == shard
    # Ids from a deployment of one shard (version 4) are shard 0's, whatever their first byte.
    assert {shard_of(job_id, 3) for job_id in new_job_ids(500)} == {0}
    # An id of a shard the deployment lacks names no job of it.
    assert shard_of(sharded_job_ids(1, 5)[0], 3) is None
    # With one shard, every id is its.
    assert shard_of(sharded_job_ids(1, 5)[0], 1) == 0


async def test_ten_thousand_jobs_on_three_shards_spread_keys_and_messages_over_the_primaries(
    redis_cluster: LocalCluster, spawn
) -> None:
    """Submitted through `jobcast web` on three shards: jobs with a key go where it names, the others
    in turn; no primary holds more than 45% of the deployment's keys or of its messages."""
    prefix = "{" + f"s{uuid.uuid4().hex[:8]}" + "}"
    settings = Settings(redis_url=redis_cluster.url, key_prefix=prefix)
    shards = Shards.connect(settings, 3, lambda prefix: create_redis(redis_cluster.url, key_prefix=prefix))
    primaries = {(await redis_cluster.primary_of(store.keys.prefix)).port for store in shards.stores}
    assert len(primaries) == 3, "the three shards' tags are served by three primaries"
    nodes = [node for node in redis_cluster.nodes if node.port in primaries]
    deployment = {"REDIS_URL": redis_cluster.url, "JOBCAST_KEY_PREFIX": prefix, "JOBCAST_REDIS_SHARDS": "3"}
    web = spawn("web", **deployment)
    spawn("worker", **deployment)
    await web.wait_http()
    await wait_for(lambda: live_workers(shards.home, 5.0), what="the worker")
    published_before = {node.port: await published(node) for node in nodes}
    try:
        async with aiohttp.ClientSession() as session:
            for batch in range(10):
                # An hour ahead: they wait, so what is measured is what submitting them left.
                items = [
                    {"kind": "demo", "params": {}, "delay_s": 3600}
                    | ({"idempotency_key": f"key-{batch}-{i}"} if i % 2 else {})
                    for i in range(1000)
                ]
                answer = await post_json(session, f"{web.url}/api/jobs/batch", {"jobs": items})
                assert answer["created"] == 1000, answer["results"][:3]
        keys = {node.port: await keys_under(node, settings.key_prefix.strip("{}")) for node in nodes}
        messages = {node.port: await published(node) - published_before[node.port] for node in nodes}
        # Every job's `queued` event went out on its job's channel, on its shard's primary alone.
        assert sum(messages.values()) >= 10_000, messages
        for port in primaries:
            assert keys[port] <= 0.45 * sum(keys.values()), keys
            assert messages[port] <= 0.45 * sum(messages.values()), messages
        # Each job's keys are on its own shard's primary: its record is where its id says.
        for store in shards.stores:
            home = await redis_cluster.primary_of(store.keys.prefix)
            async with home.client() as client:
                sample = await client.zrange(store.keys.index_all, 0, 99)
                assert sample and all(shards.of(job_id.decode()) is store for job_id in sample)
                assert all([await client.exists(store.keys.job(j.decode())) for j in sample])
    finally:
        await shards.aclose()


async def published(node: ClusterNode) -> int:
    """The messages a node has published with SPUBLISH (scripts' included) since it started."""
    stats = await node.info("commandstats")
    return int(stats.get("cmdstat_spublish", {"calls": 0})["calls"])  # type: ignore[index]


async def keys_under(node: ClusterNode, tag: str) -> int:
    """How many keys of the deployment tagged `tag` a node holds."""
    count = 0
    async with node.client() as client:
        async for _ in client.scan_iter(match=f"*{{{tag}*", count=5_000):
            count += 1
    return count


async def test_workers_run_every_shards_jobs_each_once_to_its_end(settings: Settings, spawn) -> None:
    """Jobs created on three shards of one Redis (as a web process would: each job on its shard,
    its id naming it) are run by two `jobcast worker` processes claiming from every shard; each job's
    history on its shard says it started and succeeded once, in order."""
    sharded = settings.model_copy(update={"redis_shards": 3})
    shards = Shards.connect(sharded, 3, lambda prefix: create_redis(settings.redis_url, key_prefix=prefix))
    workers = [spawn("worker", JOBCAST_REDIS_SHARDS="3") for _ in range(2)]
    try:
        # Both registered (on shard 0) before the jobs come, and the jobs long enough (10 slots a
        # worker for 60 jobs of 100 ms) that one worker cannot take them all.
        async def both_registered() -> bool:
            return len(await live_workers(shards.home, settings.worker_ttl_s)) == 2

        await wait_for(both_registered, timeout=30, what="both workers to register")
        ids: list[str] = []
        for _ in range(60):
            store = shards.for_new(None)
            (job_id,) = store.new_ids(1)
            await store.create(job_id, Submission("demo", {"steps": 2, "step_ms": 50}))
            ids.append(job_id)
        assert {shards.stores.index(shards.holding(job_id)) for job_id in ids} == {0, 1, 2}

        async def ended() -> bool:
            snapshots = [await shards.holding(job_id).snapshot(job_id) for job_id in ids]
            return all(s is not None and s["state"] == "succeeded" for s in snapshots)

        await wait_for(ended, timeout=60, what="every shard's jobs to succeed")
        ran_on: set[str] = set()
        for job_id in ids:
            records, _ = await shards.holding(job_id).history_after(job_id, 0)
            events = [orjson.loads(split_record(r)[2]) for r in records]
            assert [e["seq"] for e in events] == list(range(1, len(events) + 1)), events
            assert lifecycle(events) == [("queued", 0), ("started", 1), ("succeeded", 1)], events
            ran_on.add(events[1]["worker"])
        assert len(ran_on) == 2, "both workers took jobs"
    finally:
        await shards.aclose()
        for worker in workers:
            worker.stop()
    assert all("Traceback" not in worker.log() for worker in workers)


async def test_one_relay_streams_every_shards_jobs_over_one_connection_a_shard(
    redis_cluster: LocalCluster,
) -> None:
    """A web process's relay on a deployment of three shards: one pub/sub connection to each
    shard's primary (sharded pub/sub), each job's events from its shard, and when one shard's
    connection is killed, every watcher still gets every event, in order, once."""
    settings = Settings(redis_url=redis_cluster.url, key_prefix="{" + f"s{uuid.uuid4().hex[:8]}" + "}")
    shards = Shards.connect(settings, 3, lambda prefix: create_redis(redis_cluster.url, key_prefix=prefix))
    relay = Relay(RedisBroker(redis_cluster.url, shards), page_size=100, subscribe_timeout_s=10)
    await relay.start()
    try:
        jobs = []
        for store in shards.stores:
            (job_id,) = store.new_ids(1)
            await store.create(job_id, Submission("demo", {}))
            jobs.append((store, job_id))
        subs = []
        for _, job_id in jobs:
            sub = Subscription(relay.broker.job(job_id), Outbox(1000), 0)
            assert await relay.join(sub, 0) is None
            subs.append(sub)
        relays_on = {}
        for store in shards.stores:
            primary = await redis_cluster.primary_of(store.keys.prefix)
            async with primary.client() as client:
                relays_on[primary.port] = [
                    c for c in await client.client_list() if c["name"] == "jobcast-relay"
                ]
        # One connection a shard, each on its shard's primary, whatever the number of channels.
        assert sorted(len(found) for found in relays_on.values()) == [1, 1, 1], relays_on

        async def progress(times: int) -> None:
            for store, job_id in jobs:
                for i in range(times):
                    await store.publish(job_id, EventType.PROGRESS, attempt=1, progress={"current": i})

        for store, job_id in jobs:
            await store.publish(job_id, EventType.STARTED, attempt=0)
        await progress(3)
        # Shard 1's connection is killed: the relay reconnects to every shard and repairs.
        home = await redis_cluster.primary_of(shards.stores[1].keys.prefix)
        async with home.client() as client:
            await client.client_kill_filter(_type="pubsub")
        await progress(3)
        for store, job_id in jobs:
            await store.publish(job_id, EventType.SUCCEEDED, attempt=1)
        for sub in subs:
            got: list[int] = []
            async with asyncio.timeout(10):
                while not got or got[-1] < 9:
                    got += [event.seq for event in await sub.outbox.take()]
            assert got == list(range(1, 10)), got
        assert relay.reconnects >= 1
    finally:
        await relay.stop()
        await shards.aclose()


async def test_uploads_go_to_every_shard_and_a_unique_keys_repeat_meets_its_first(spawn) -> None:
    """An upload is stored under its job's id before the form is read; a form whose unique key
    names another shard moves it there, and the job runs with it whole."""
    web = spawn("web", JOBCAST_REDIS_SHARDS="3")
    spawn("worker", JOBCAST_REDIS_SHARDS="3")
    await web.wait_http()
    content = b"id,name\n" + b"".join(b"%d,name %d\n" % (i, i) for i in range(500))
    # A key whose shard is not the next in turn (shard 0, after three jobs in turn): its upload moves.
    key = next(k for k in (f"rows-{n}" for n in range(100)) if shard_of_owner(f"unique\nconvert\n{k}", 3))
    async with aiohttp.ClientSession(web.url) as session:
        jobs = [await upload(session, content) for _ in range(3)]
        first = await upload(session, content, unique_key=key, delay_s="60")
        again = await upload(session, content, unique_key=key, delay_s="60", status=200)
        assert again["id"] == first["id"]
        await post_json(session, f"/api/jobs/{first['id']}/run-now")
        for job in [*jobs, first]:
            events = await watch_to_end(session, job["id"])
            assert events[-1]["type"] == "succeeded", events[-1]
            async with session.get(f"/api/jobs/{job['id']}/result") as response:
                assert response.status == 200 and len((await response.text()).splitlines()) == 500
    # Without an owner or a key, uploads take the shards in turn, each stored once where it stays.
    assert [shard_of(job["id"], 3) for job in jobs] == [0, 1, 2]
    assert shard_of(first["id"], 3) != 0


async def upload(session: aiohttp.ClientSession, content: bytes, status: int = 202, **fields: str) -> Any:
    form = aiohttp.FormData()
    form.add_field("kind", "convert")
    form.add_field("params", '{"to": "jsonl"}')
    for name, value in fields.items():
        form.add_field(name, value)
    form.add_field("file", content, filename="rows.csv", content_type="text/csv")
    async with session.post("/api/jobs", data=form) as response:
        assert response.status == status, await response.text()
        return await response.json()


async def test_an_owners_jobs_from_before_the_shards_grew_stay_listed_and_reachable(spawn) -> None:
    """Growing from one shard to three moves no job: an owner's earlier jobs stay on shard 0 while
    its new ones go to its shard, and its listing and its jobs' routes find both."""
    keys = ",".join([key_entry("ops", "admin", ADMIN_KEY), key_entry("shop", "service", SERVICE_KEY)])
    mode = {"JOBCAST_SECRET": SECRET, "JOBCAST_API_KEYS": keys}
    # A service's user is owned as `<service>/<user>`: one whose shard, of three, is not shard 0.
    user = next(name for name in (f"customer-{n}" for n in range(100)) if shard_of_owner(f"shop/{name}", 3))
    owner = f"shop/{user}"
    web, worker = spawn("web", **mode), spawn("worker", **mode)
    await web.wait_http()
    async with (
        aiohttp.ClientSession(headers=bearer(SERVICE_KEY)) as shop,
        aiohttp.ClientSession(headers=bearer(ADMIN_KEY)) as admin,
    ):
        before = await post_json(shop, f"{web.url}/api/jobs", {**demo(1, 0), "owner": user}, 202)
        await watch_to_end(shop, before["id"], web.url)
        web.stop()
        worker.stop()
        grown = spawn("web", JOBCAST_REDIS_SHARDS="3", **mode)
        spawn("worker", JOBCAST_REDIS_SHARDS="3", **mode)
        await grown.wait_http()
        after = await post_json(shop, f"{grown.url}/api/jobs", {**demo(1, 0), "owner": user}, 202)
        await watch_to_end(shop, after["id"], grown.url)
        assert (shard_of(before["id"], 3), shard_of(after["id"], 3)) == (0, shard_of_owner(owner, 3))
        listed = await get_json(admin, f"{grown.url}/api/jobs?owner={quote(owner, safe='')}")
        assert [job["id"] for job in listed["jobs"]] == [after["id"], before["id"]]
        assert (await get_json(shop, f"{grown.url}/api/jobs/{before['id']}"))["state"] == "succeeded"
