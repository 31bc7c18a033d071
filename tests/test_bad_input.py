"""Bad input gets a clear 4xx as application/problem+json; never a 500 or a traceback."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import aiohttp
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


async def test_the_upload_name_is_the_servers_to_set(client) -> None:
    body = {"kind": "convert", "params": {"upload": "x" * 1000, "to_format": "json"}}
    r = await client.post("/api/jobs", json=body)
    problem = await expect_problem(r, 422)
    assert [e["field"] for e in problem["errors"]] == ["params.upload"]
    assert len(json.dumps(problem)) < 1000  # the value is not echoed back
    # Smuggled in a multipart body's params, it is dropped: without a file there is no upload.
    form = aiohttp.FormData(
        {"kind": "convert", "params": json.dumps({"upload": "a.csv"})}, default_to_multipart=True
    )
    problem = await expect_problem(await client.post("/api/jobs", data=form), 422)
    assert [e["field"] for e in problem["errors"]] == ["file"]


def multipart(
    parts: list[tuple[dict[str, str], bytes]], boundary: str = "b0undary"
) -> tuple[bytes, dict[str, str]]:
    body = b"".join(
        b"--%s\r\n%s\r\n\r\n%s\r\n"
        % (boundary.encode(), b"\r\n".join(f"{k}: {v}".encode() for k, v in headers.items()), data)
        for headers, data in parts
    )
    body += b"--%s--\r\n" % boundary.encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def field(name: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {"Content-Disposition": f'form-data; name="{name}"', **(extra or {})}


@pytest.mark.parametrize(
    ("parts", "status"),
    [
        # More fields than JOBCAST_MAX_FORM_FIELDS (64), each tiny.
        ([(field(f"f{i}"), b"x") for i in range(65)], 413),
        # More field bytes than JOBCAST_MAX_FORM_BYTES (256 KiB), each under the per-field cap.
        ([(field(f"f{i}"), b"x" * 60_000) for i in range(5)], 413),
        ([(field("kind", {"Content-Transfer-Encoding": "base64"}), b"!!not base64!!")], 400),
        ([(field("kind", {"Content-Transfer-Encoding": "x-unknown"}), b"demo")], 400),
        ([(field("kind", {"Content-Encoding": "gzip"}), b"\x1f\x8b rubbish")], 400),
    ],
    ids=["too-many-fields", "too-many-bytes", "bad-base64", "unknown-encoding", "compressed"],
)
async def test_hostile_multipart_bodies_are_4xx(client, parts, status: int) -> None:
    body, headers = multipart(parts)
    await expect_problem(await client.post("/api/jobs", data=body, headers=headers), status)
    # The dashboard's form post reads forms the same way.
    await expect_problem(
        await client.post("/submit", data=body, headers={**headers, "Accept": "application/json"}), status
    )


async def test_malformed_multipart_framing_is_400(client) -> None:
    for content_type, body in [
        ("multipart/form-data", b"--x\r\n\r\n"),  # no boundary
        ("multipart/form-data; boundary=", b""),  # an empty one
        (
            "multipart/form-data; boundary=abc",
            b"--xyz\r\nContent-Disposition: form-data; name=kind\r\n\r\ndemo",
        ),
        (
            "multipart/form-data; boundary=abc",
            b"--abc\r\nContent-Disposition: form-data; name=kind\r\n\r\nde",
        ),
    ]:
        response = await client.post("/api/jobs", data=body, headers={"Content-Type": content_type})
        assert response.status in (400, 422), (content_type, body, await response.text())
        assert response.headers["Content-Type"] == "application/problem+json"


async def test_a_host_this_server_does_not_answer_to_is_400(client) -> None:
    # Single-user mode answers to loopback names only: a rebound name pointing here is refused.
    for host in ("evil.example", "evil.example:8000", "bad host", "x" * 300):
        await expect_problem(await client.get("/api/kinds", headers={"Host": host}), 400)
    for host in ("localhost:8000", "127.0.0.1", "[::1]:8000"):
        async with client.get("/api/kinds", headers={"Host": host}) as response:
            assert response.status == 200, host


async def test_unavailable_answers_name_no_address(client, redis_server, settings) -> None:
    redis_server.stop()
    try:
        problem = await expect_problem(await client.get("/api/jobs"), 503)
    finally:
        redis_server.start()
    port = settings.redis_url.rsplit(":", 1)[1].split("/")[0]
    assert port not in problem["detail"] and "127.0.0.1" not in problem["detail"]
