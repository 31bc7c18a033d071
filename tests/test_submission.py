"""Submission guarantees: idempotency keys, the waiting-jobs limit, and 503 without Redis."""

from __future__ import annotations

from jobcast.server.app import create_app
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
