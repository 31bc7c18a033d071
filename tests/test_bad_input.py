"""Bad input gets a clear 4xx as application/problem+json; never a 500 or a traceback."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import pytest

from tests.helpers import queued_ids

UNKNOWN = "0" * 32


async def expect_problem(response: Any, status: int) -> dict[str, Any]:
    text = await response.text()
    assert response.status == status, text
    assert response.headers["Content-Type"] == "application/problem+json", text
    body = await response.json(content_type=None)
    assert body["status"] == status and body["title"] and body["type"] and body["detail"], body
    assert "Traceback" not in text
    return body


async def test_malformed_json_is_400(client) -> None:
    r = await client.post("/api/jobs", data=b'{"kind": ', headers={"Content-Type": "application/json"})
    await expect_problem(r, 400)


async def test_wrong_content_type_is_415(client) -> None:
    r = await client.post("/api/jobs", data=b"kind=demo", headers={"Content-Type": "text/plain"})
    await expect_problem(r, 415)


async def test_oversized_body_is_413(client) -> None:
    body = b'{"kind": "demo", "params": {"pad": "' + b"x" * (1024 * 1024 + 10) + b'"}}'
    r = await client.post("/api/jobs", data=io.BytesIO(body), headers={"Content-Type": "application/json"})
    await expect_problem(r, 413)


async def test_unknown_kind_is_422_naming_the_field(client, redis, settings) -> None:
    r = await client.post("/api/jobs", json={"kind": "nope", "params": {}})
    body = await expect_problem(r, 422)
    assert [e["field"] for e in body["errors"]] == ["kind"]
    # Nothing was created or queued.
    assert await queued_ids(redis, settings.key_prefix) == set()


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"steps": 0}, "params.steps"),
        ({"steps": "many"}, "params.steps"),
        ({"step_ms": -1}, "params.step_ms"),
        ({"bogus": 1}, "params.bogus"),
    ],
)
async def test_bad_params_are_422_naming_the_field(client, params: dict[str, Any], field: str) -> None:
    r = await client.post("/api/jobs", json={"kind": "demo", "params": params})
    body = await expect_problem(r, 422)
    assert field in [e["field"] for e in body["errors"]], body


@pytest.mark.parametrize("body", [[1, 2], "demo", {"params": {}}, {"kind": "demo", "params": []}])
async def test_wrong_shapes_are_422(client, body: Any) -> None:
    await expect_problem(await client.post("/api/jobs", json=body), 422)


async def test_unknown_job_is_404(client) -> None:
    await expect_problem(await client.get(f"/api/jobs/{UNKNOWN}"), 404)
    await expect_problem(await client.get(f"/api/jobs/{UNKNOWN}/events"), 404)
    await expect_problem(await client.get("/api/jobs/not-an-id"), 404)


async def test_unknown_route_and_method_are_problems(client) -> None:
    await expect_problem(await client.get("/api/nothing-here"), 404)
    await expect_problem(await client.delete("/api/jobs"), 405)


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "１２", "9" * 40])
async def test_malformed_last_event_id_is_400(client, value: str) -> None:
    job = await client.post("/api/jobs", json={"kind": "demo", "params": {"steps": 1}})
    job_id = (await job.json())["id"]
    r = await client.get(f"/api/jobs/{job_id}/events", headers={"Last-Event-ID": value})
    await expect_problem(r, 400)
    r = await client.get(f"/api/jobs/{job_id}/events", params={"last_event_id": value})
    await expect_problem(r, 400)


async def test_websocket_answers_bad_messages_with_errors_and_stays_open(client) -> None:
    async with client.ws_connect("/api/ws") as ws:
        await ws.send_str("{not json")
        assert (await ws.receive_json())["code"] == "bad_json"
        await ws.send_json({"type": "dance"})
        assert (await ws.receive_json())["code"] == "unknown_type"
        await ws.send_json({"type": "subscribe"})
        assert (await ws.receive_json())["code"] == "bad_message"
        await ws.send_json({"type": "subscribe", "job_id": UNKNOWN})
        reply = await ws.receive_json()
        assert reply == {"type": "error", "code": "not_found", "message": reply["message"], "job_id": UNKNOWN}
        await ws.send_json({"type": "subscribe", "job_id": UNKNOWN, "last_event_id": "x"})
        assert (await ws.receive_json())["code"] == "bad_last_event_id"
        await ws.send_json({"type": "unsubscribe", "job_id": UNKNOWN})
        assert (await ws.receive_json())["code"] == "not_subscribed"
        await ws.send_json({"type": "cancel", "job_id": UNKNOWN})
        assert (await ws.receive_json())["type"] == "error"
        await ws.send_bytes(b"\x00")
        assert (await ws.receive_json())["code"] == "bad_message"
        assert not ws.closed


async def test_websocket_unsubscribe_stops_events(client, worker) -> None:
    job = await (await client.post("/api/jobs", json={"kind": "demo", "params": {"steps": 50}})).json()
    async with client.ws_connect("/api/ws") as ws:
        await ws.send_json({"type": "subscribe", "job_id": job["id"]})
        assert (await ws.receive_json())["type"] == "subscribed"
        await ws.send_json({"type": "unsubscribe", "job_id": job["id"]})
        async with asyncio.timeout(10):
            while (message := await ws.receive_json())["type"] != "unsubscribed":
                assert message["job_id"] == job["id"]
        # After `unsubscribed` nothing more arrives for the job: prove it with a round trip.
        await ws.send_json({"type": "unsubscribe", "job_id": job["id"]})
        assert (await ws.receive_json())["code"] == "not_subscribed"


async def test_numbers_beyond_64_bits_are_422_not_500(client) -> None:
    form = {"kind": "demo", "demo.steps": "3", "demo.fail_at_step": "9" * 30}
    async with client.post("/submit", data=form, headers={"Accept": "application/json"}) as response:
        problem = await response.json()
    assert response.status == 422 and problem["errors"][0]["code"] == "out_of_range"
    body = {"kind": "demo", "params": {"steps": 3, "fail_at_step": 2**70}}
    async with client.post(
        "/api/jobs", data=json.dumps(body), headers={"Content-Type": "application/json"}
    ) as r:
        assert r.status == 422, await r.text()
