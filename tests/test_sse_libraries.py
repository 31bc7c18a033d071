"""The SSE streams as the common Python client libraries read them (sseclient-py and httpx-sse),
against real `jobcast web` and `jobcast worker` processes: every event of a job once, in order,
and none empty (no library may turn the `retry:` line or a heartbeat into an event the app would
have to skip), then a resume by Last-Event-ID from the middle. The Node libraries (eventsource,
fetch-event-source) are tested in clients/js/test/sse-libraries.test.js."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import httpx
import pytest
import requests
import sseclient
from httpx_sse import connect_sse

from tests.helpers import assert_contiguous, demo, submit

# A heartbeat between every two steps, so that each library reads many of them mid-stream.
HEARTBEAT_S = "0.05"


def sseclient_py(url: str, last_event_id: str | None = None) -> Iterator[tuple[str, str, str]]:
    headers = {"Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    with requests.get(url, stream=True, headers=headers, timeout=30) as response:
        response.raise_for_status()
        for event in sseclient.SSEClient(response.iter_content(chunk_size=None)).events():
            yield event.event, event.data, event.id


def httpx_sse(url: str, last_event_id: str | None = None) -> Iterator[tuple[str, str, str]]:
    headers = {} if last_event_id is None else {"Last-Event-ID": last_event_id}
    with httpx.Client(timeout=30) as client, connect_sse(client, "GET", url, headers=headers) as source:
        source.response.raise_for_status()
        for event in source.iter_sse():
            yield event.event, event.data, event.id


def read_to_end(library: Any, url: str, last_event_id: str | None = None) -> list[tuple[str, str, str]]:
    """What the app gets from the library until the job's terminal event."""
    got = []
    for event, data, event_id in library(url, last_event_id):
        got.append((event, data, event_id))
        if event in ("succeeded", "failed", "cancelled"):
            break
    return got


@pytest.mark.parametrize("library", [sseclient_py, httpx_sse], ids=["sseclient-py", "httpx-sse"])
async def test_a_python_sse_library_gets_every_event_and_no_empty_one(spawn, library) -> None:
    web = spawn("web", JOBCAST_HEARTBEAT_S=HEARTBEAT_S)
    spawn("worker")
    await web.wait_http()
    async with aiohttp.ClientSession(web.url) as session:
        job = await submit(session, body=demo(steps=6, step_ms=150))
    url = f"{web.url}/api/jobs/{job['id']}/events"

    live = await asyncio.to_thread(read_to_end, library, url)
    # Every event the app is handed is a whole one: a type, JSON data, and its id (its seq).
    assert all(event and data for event, data, _ in live), [e for e in live if not (e[0] and e[1])]
    events = [json.loads(data) for _, data, _ in live]
    assert [int(event_id) for _, _, event_id in live] == [e["seq"] for e in events]
    # From the first event to the last, once each (heartbeats came between them: HEARTBEAT_S).
    assert_contiguous(events, events[0]["seq"])
    assert events[-1]["type"] == "succeeded"

    # Resumed from the middle: exactly the events after it.
    middle = live[len(live) // 2]
    resumed = await asyncio.to_thread(read_to_end, library, url, middle[2])
    assert all(event and data for event, data, _ in resumed)
    after = [json.loads(data) for _, data, _ in resumed]
    assert [e["seq"] for e in after] == list(range(int(middle[2]) + 1, events[-1]["seq"] + 1))
