"""What a hostile client can do to a real `jobcast web` (and its worker), and the bound on it: a
clear 4xx, a cut connection, or a stated ceiling on memory and latency; never a 5xx, and never
another client's share."""

from __future__ import annotations

import aiohttp
import pytest

from jobcast.protocol import MAX_SEQ
from tests.helpers import demo, submit


@pytest.fixture
async def served(spawn) -> str:
    web = spawn("web")
    spawn("worker")
    await web.wait_http()
    return web.url


async def problem(session: aiohttp.ClientSession, url: str, **kwargs: object) -> tuple[int, str]:
    async with session.get(url, **kwargs) as response:  # type: ignore[arg-type]
        return response.status, response.headers.get("Content-Type", "")


@pytest.mark.parametrize("seq", ["99999999999999999", str(MAX_SEQ + 1), str(2**63)])
async def test_a_seq_past_what_lua_counts_exactly_is_a_client_error(served: str, seq: str) -> None:
    async with aiohttp.ClientSession() as session:
        job = await submit(session, served + "/api/jobs", demo(2, 1))
        events = f"{served}/api/jobs/{job['id']}/events"
        assert await problem(session, events, headers={"Last-Event-ID": seq}) == (
            400,
            "application/problem+json",
        )
        assert (await problem(session, events, params={"last_event_id": seq}))[0] == 400
        feed = served + "/api/events"
        assert (await problem(session, feed, headers={"Last-Event-ID": f"abc:{seq}"}))[0] == 400
        async with session.ws_connect(served + "/api/ws") as ws:
            await ws.send_json({"type": "subscribe", "job_id": job["id"], "last_event_id": int(seq)})
            answer = await ws.receive_json()
            assert (answer["type"], answer["code"]) == ("error", "bad_last_event_id")
            await ws.send_json({"type": "subscribe_feed", "last_event_id": int(seq)})
            assert (await ws.receive_json())["code"] == "bad_last_event_id"


async def test_the_largest_seq_a_client_may_name_is_beyond_the_head(served: str) -> None:
    async with aiohttp.ClientSession() as session:
        job = await submit(session, served + "/api/jobs", demo(2, 1))
        events = f"{served}/api/jobs/{job['id']}/events"
        async with session.get(events, headers={"Last-Event-ID": str(MAX_SEQ)}) as response:
            assert response.status == 200
            # History cannot reach past the head: the watcher gets the job as it is now.
            lines = [await response.content.readline() for _ in range(4)]
            assert b"event: snapshot\n" in lines
