"""Submission guarantees: idempotency keys, the waiting-jobs limit, and 503 without Redis."""

from __future__ import annotations

import asyncio

from jobcast.errors import IdempotentReplay
from jobcast.protocol import new_job_id, new_job_ids
from jobcast.server.app import create_app
from jobcast.store.jobs import JobStore, Submission
from tests.helpers import demo, get_json, post_json, queued_ids


async def test_the_same_idempotency_key_twice_gives_one_job(client, redis, settings) -> None:
    headers = {"Idempotency-Key": "order-42"}
    first = await post_json(client, "/api/jobs", demo(3, 1), status=202, headers=headers)
    async with client.post("/api/jobs", json=demo(3, 1), headers=headers) as response:
        assert response.status == 200
        assert response.headers["Idempotent-Replayed"] == "true"
        assert response.headers["Location"] == f"/api/jobs/{first['id']}"
        again = await response.json()
    assert again["id"] == first["id"]
    listed = await get_json(client, "/api/jobs")
    assert [j["id"] for j in listed["jobs"]] == [first["id"]]
    # The key is kept for at least 24 hours by default.
    keys = [k async for k in redis.scan_iter(f"{settings.key_prefix}:idempotency:*")]
    assert len(keys) == 1 and await redis.ttl(keys[0]) > 24 * 3600 - 60
    other = await post_json(
        client, "/api/jobs", demo(3, 1), status=202, headers={"Idempotency-Key": "order-43"}
    )
    assert other["id"] != first["id"]


async def test_an_idempotency_key_reused_with_another_body_is_422(client) -> None:
    headers = {"Idempotency-Key": "k1"}
    await post_json(client, "/api/jobs", demo(3, 1), status=202, headers=headers)
    problem = await post_json(client, "/api/jobs", demo(4, 1), status=422, headers=headers)
    assert problem["type"].endswith("/idempotency-key-reused")
    await post_json(client, "/api/jobs", demo(3, 1), status=400, headers={"Idempotency-Key": "x" * 300})


async def test_over_the_waiting_limit_submission_is_429_and_creates_nothing(
    aiohttp_client, settings, redis
) -> None:
    client = await aiohttp_client(create_app(settings.model_copy(update={"max_waiting_jobs": 2})))
    for _ in range(2):
        await post_json(client, "/api/jobs", demo(1, 1), status=202)
    async with client.post("/api/jobs", json=demo(1, 1)) as response:
        assert response.status == 429
        assert response.headers["Content-Type"] == "application/problem+json"
        assert int(response.headers["Retry-After"]) >= 1
        problem = await response.json()
    assert problem["status"] == 429 and "waiting" in problem["detail"]
    records = [k async for k in redis.scan_iter(f"{settings.key_prefix}:job:*")]
    assert len(records) == 2
    assert len(await queued_ids(redis, settings.key_prefix)) == 2
    stats = await get_json(client, "/api/stats")
    assert stats["waiting"]["default"] == 2


async def test_without_redis_submission_is_503_with_retry_after(client, redis_server) -> None:
    redis_server.stop()
    try:
        async with client.post("/api/jobs", json=demo(1, 1)) as response:
            assert response.status == 503
            assert response.headers["Content-Type"] == "application/problem+json"
            assert "Retry-After" in response.headers
    finally:
        redis_server.start()
    await post_json(client, "/api/jobs", demo(1, 1), status=202)


async def test_concurrent_single_submissions_share_their_script_calls(redis, settings) -> None:
    # 50 submissions at once, each its own call of `create`, as 50 requests to one web process make
    # them: Redis runs the create script for a few calls, not 50, and each submitter gets its job.
    store = JobStore(redis, settings)
    before = (await redis.info("commandstats")).get("cmdstat_evalsha", {}).get("calls", 0)
    ids = new_job_ids(50)
    made = await asyncio.gather(*(store.create(job_id, Submission("demo", {"steps": 1})) for job_id in ids))
    after = (await redis.info("commandstats")).get("cmdstat_evalsha", {}).get("calls", 0)
    assert [job["id"] for job in made] == ids and {job["state"] for job in made} == {"queued"}
    assert 1 <= after - before <= 5, after - before
    assert await queued_ids(redis, settings.key_prefix) == set(ids)
    # One refused among them is refused alone: its key's earlier job comes back to it.
    first = await store.create(new_job_id(), Submission("demo", {}), idempotency_key="k")
    outcomes = await asyncio.gather(
        store.create(new_job_id(), Submission("demo", {}), idempotency_key="k"),
        store.create(new_job_id(), Submission("demo", {})),
        return_exceptions=True,
    )
    assert isinstance(outcomes[0], IdempotentReplay) and outcomes[0].job_id == first["id"]
    assert not isinstance(outcomes[1], BaseException) and outcomes[1]["state"] == "queued"
