"""`POST /api/jobs/batch`: many submissions in one request, each accepted or refused on its own."""

from __future__ import annotations

from typing import Any

from jobcast.client.api import Client
from tests.helpers import demo, get_json, post_json, watch_to_end


async def batch(client: Any, jobs: Any, status: int = 200) -> Any:
    async with client.post("/api/jobs/batch", json={"jobs": jobs}) as response:
        body = await response.json()
        assert response.status == status, body
    return body


async def test_a_batch_of_valid_jobs_is_all_created_in_order(client, worker) -> None:
    answer = await batch(client, [demo(2, 1) | {"priority": p} for p in ("high", "default", "low")])
    assert answer["created"] == 3
    assert [r["index"] for r in answer["results"]] == [0, 1, 2]
    assert [r["job"]["priority"] for r in answer["results"]] == ["high", "default", "low"]
    for result in answer["results"]:
        assert result["status"] == 202
        events = await watch_to_end(client, result["job"]["id"])
        assert events[-1]["type"] == "succeeded"


async def test_invalid_items_are_refused_alone(client) -> None:
    answer = await batch(
        client,
        [
            demo(2, 1),
            {"kind": "nope", "params": {}},
            {"kind": "demo", "params": {"steps": -1}},
            "not an object",
            {"kind": "convert", "params": {"upload": "x.csv"}},
            demo(3, 1),
        ],
    )
    statuses = [r["status"] for r in answer["results"]]
    assert statuses == [202, 422, 422, 422, 422, 202] and answer["created"] == 2
    assert answer["results"][2]["problem"]["errors"][0]["field"] == "params.steps"
    listed = await get_json(client, "/api/jobs")
    assert len(listed["jobs"]) == 2


async def test_each_item_has_its_own_idempotency_key(client) -> None:
    first = await batch(
        client, [demo(2, 1) | {"idempotency_key": "a"}, demo(3, 1) | {"idempotency_key": "b"}]
    )
    again = await batch(
        client,
        [
            demo(2, 1) | {"idempotency_key": "a"},  # the same request: the same job, 200
            demo(9, 1) | {"idempotency_key": "b"},  # the key with another body: 422
            demo(2, 1) | {"idempotency_key": "c"},
        ],
    )
    assert [r["status"] for r in again["results"]] == [200, 422, 202]
    assert again["results"][0]["job"]["id"] == first["results"][0]["job"]["id"]
    assert again["results"][1]["problem"]["type"].endswith("idempotency-key-reused")
    assert again["created"] == 1


async def test_over_the_size_limit_the_whole_batch_is_413(aiohttp_client, settings) -> None:
    from jobcast.server.app import create_app

    client = await aiohttp_client(create_app(settings.model_copy(update={"max_batch_jobs": 3})))
    await batch(client, [demo(1, 1)] * 4, status=413)
    assert (await get_json(client, "/api/jobs"))["jobs"] == []
    await batch(client, {"not": "a list"}, status=422)


async def test_over_the_waiting_limit_the_rest_get_429(aiohttp_client, settings) -> None:
    from jobcast.server.app import create_app

    client = await aiohttp_client(create_app(settings.model_copy(update={"max_waiting_jobs": 3})))
    answer = await batch(client, [demo(1, 1)] * 5)
    assert [r["status"] for r in answer["results"]] == [202, 202, 202, 429, 429]
    assert answer["results"][3]["problem"]["type"].endswith("too-many-waiting")


async def test_the_python_client_submits_a_batch(client) -> None:
    async with Client(str(client.make_url(""))) as jobs:
        results = await jobs.submit_many([{"kind": "demo", "params": {"steps": 2}}, {"kind": "nope"}])
    assert [r["status"] for r in results] == [202, 422]


async def test_each_answer_is_the_snapshot_the_job_then_has(client) -> None:
    """A submission's answer is built from what it wrote, not read back: it must be exactly what
    `GET /api/jobs/{id}` answers for the queued job (no worker runs here, so none has moved)."""
    answer = await batch(
        client,
        [
            demo(2, 1),
            demo(3, 1) | {"priority": "high", "idempotency_key": "k"},
            demo(4, 1) | {"delay_s": 60, "priority": "low"},
        ],
    )
    created = [r["job"] for r in answer["results"]]
    assert created[2]["run_at"] is not None
    single = await post_json(client, "/api/jobs", demo(5, 1), status=202)
    for job in [*created, single]:
        assert await get_json(client, f"/api/jobs/{job['id']}") == job
    await post_json(client, f"/api/jobs/{single['id']}/cancel", status=200)
    retried = await post_json(client, f"/api/jobs/{single['id']}/retry", status=202)
    assert retried["retry_of"] == single["id"]
    assert await get_json(client, f"/api/jobs/{retried['id']}") == retried


async def test_a_batch_written_in_chunks_keeps_its_order_and_its_limits(aiohttp_client, settings) -> None:
    """Chunks go to Redis while the next are checked, one at a time: the jobs are created in the
    batch's order, and the waiting limit counts the earlier chunks' jobs."""
    from jobcast.server.app import create_app

    app = create_app(settings.model_copy(update={"create_chunk_jobs": 2, "max_waiting_jobs": 5}))
    client = await aiohttp_client(app)
    items = [demo(n, 1) | {"priority": ("high", "low")[n % 2]} for n in range(1, 8)]
    answer = await batch(client, items)
    assert [r["status"] for r in answer["results"]] == [202] * 5 + [429] * 2
    created = [r["job"] for r in answer["results"][:5]]
    assert [job["params"]["steps"] for job in created] == [1, 2, 3, 4, 5]
    listed = (await get_json(client, "/api/jobs"))["jobs"]  # newest first
    assert [job["id"] for job in reversed(listed)] == [job["id"] for job in created]
    for job in created:
        assert await get_json(client, f"/api/jobs/{job['id']}") == job
