"""The Redis client jobcast makes (jobcast/redis/client.py): commands packed by hiredis, the same bytes
redis-py would send, and its errors for values Redis takes no text for."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.asyncio.connection import Connection
from redis.exceptions import DataError

from jobcast.protocol import Keys, new_job_id, new_job_ids
from jobcast.redis.client import HiredisPacking, create_redis
from jobcast.redis.cluster import ClusterTarget, cluster_target
from jobcast.redis.pubsub import connect_pubsub
from jobcast.settings import Settings


def test_commands_are_packed_as_redis_py_packs_them() -> None:
    # No connection is made: the pool only names the class its connections will be.
    ours = create_redis("redis://127.0.0.1:1").connection_pool.connection_class()
    assert isinstance(ours, HiredisPacking)
    for args in [
        ("HSET", "key", "é", b"\x00bytes", 7, -(2**63), 0.1, 1e20, 3.0, "x" * 100_000),
        ("CONFIG GET", "maxmemory"),  # a command given with its subcommand: two arguments
    ]:
        assert b"".join(ours.pack_command(*args)) == b"".join(Connection().pack_command(*args))


async def test_the_client_talks_to_redis_and_refuses_what_redis_py_refuses(settings) -> None:
    client = create_redis(settings.redis_url, retries=0)
    try:
        await client.hset("jobcast-test:packing", mapping={"a": "é", "b": 2})
        assert await client.hgetall("jobcast-test:packing") == {b"a": "é".encode(), b"b": b"2"}
        assert (await client.config_get("maxmemory-policy"))["maxmemory-policy"]  # a two-word command
        with pytest.raises(DataError):
            await client.set("jobcast-test:bool", True)  # type: ignore[arg-type]
    finally:
        await client.delete("jobcast-test:packing")
        await client.aclose()


def test_job_ids_are_random_version_4_uuids() -> None:
    ids = [*new_job_ids(1000), new_job_id()]
    assert len(set(ids)) == len(ids)
    for job_id in ids:
        parsed = uuid.UUID(job_id)
        assert parsed.hex == job_id and parsed.version == 4 and parsed.variant == uuid.RFC_4122


async def test_a_pubsub_connection_counts_only_once_redis_answers_it(settings) -> None:
    # A Redis that takes the connection but refuses its commands is no pub/sub: the relay must
    # keep retrying (and /readyz say so), not report itself connected.
    wrong = settings.redis_url.replace("redis://", "redis://:not-the-password@")
    with pytest.raises(ConnectionError, match="AUTH"):
        await connect_pubsub(wrong, lambda channel, data: None, lambda channel: None)
    conn = await connect_pubsub(settings.redis_url, lambda channel, data: None, lambda channel: None)
    try:
        assert conn.error is None and not conn.closed.done()
    finally:
        conn.close()


async def test_a_pubsub_connection_cancelled_before_redis_answers_is_closed() -> None:
    # A process stopping while its relay waits for Redis's first answer: the half-made
    # connection is closed then, not left to the garbage collector.
    heard: asyncio.Queue[bytes] = asyncio.Queue()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(4096):
            await heard.put(data)
        await heard.put(b"")  # the client closed
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        connecting = asyncio.create_task(
            connect_pubsub(f"redis://127.0.0.1:{port}/0", lambda channel, data: None, lambda channel: None)
        )
        sent = b""
        while b"PING" not in sent:
            sent += await asyncio.wait_for(heard.get(), 5)
        connecting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await connecting
        assert await asyncio.wait_for(heard.get(), 5) == b""
    finally:
        server.close()
        await server.wait_closed()


def test_a_cluster_url_names_its_nodes_credentials_and_tls() -> None:
    target = cluster_target("rediss+cluster://ops:p%40ss@10.0.0.1:7000,[::1]:7001,redis-2")
    assert target == ClusterTarget(
        (("10.0.0.1", 7000), ("::1", 7001), ("redis-2", 6379)), username="ops", password="p@ss", tls=True
    )
    assert cluster_target("redis+cluster://:secret@h:1").password == "secret"  # type: ignore[union-attr]
    assert cluster_target("redis://h:1/0") is None
    with pytest.raises(ValueError, match="only database 0"):
        cluster_target("redis+cluster://h:1/2")


def test_on_a_cluster_the_key_prefix_is_a_hash_tag() -> None:
    """Every key and channel of a deployment on a cluster maps to one slot: its prefix's tag."""
    on_cluster = Settings(redis_url="redis+cluster://h:7000", key_prefix="jobcast")
    assert on_cluster.redis_key_prefix == "{jobcast}" and on_cluster.redis_cluster
    # A prefix with a tag of its own keeps it (two deployments on one slot, or one chosen slot).
    assert Settings(redis_url="redis+cluster://h:7000", key_prefix="app:{jc}").redis_key_prefix == "app:{jc}"
    # Anywhere else, keys are named as they always were.
    single = Settings(redis_url="redis://h:6379/0", key_prefix="jobcast")
    assert single.redis_key_prefix == "jobcast" and not single.redis_cluster
    assert Keys(on_cluster.redis_key_prefix).job("a1") == "{jobcast}:job:a1"
