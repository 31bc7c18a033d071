"""jobcast mounted under a prefix in an aiohttp app that has routes of its own."""

from __future__ import annotations

import asyncio
import re

import aiohttp
from aiohttp import web
from playwright.async_api import expect

from jobcast.server.app import setup
from tests.helpers import demo, get_json, read_sse, submit, unkept_session, wait_for


def host_app(settings) -> web.Application:
    async def home(request: web.Request) -> web.Response:
        return web.Response(text="the host's own home page")

    host = web.Application()
    host.router.add_get("/", home)
    setup(host, settings, prefix="/jobs")
    return host


async def test_jobcast_mounted_under_a_prefix_serves_its_api_streams_and_pages(
    aiohttp_client, settings, worker
) -> None:
    client = await aiohttp_client(host_app(settings))
    assert await (await client.get("/")).text() == "the host's own home page"
    async with client.post("/jobs/api/jobs", json=demo(3, 5)) as response:
        assert response.status == 202, await response.text()
        job = await response.json()
        assert response.headers["Location"] == f"/jobs/api/jobs/{job['id']}"
    assert job["links"]["events"] == f"/jobs/api/jobs/{job['id']}/events"
    assert job["links"]["page"] == f"/jobs/jobs/{job['id']}"
    events = await read_sse(client, job["links"]["events"], headers={"Last-Event-ID": "0"})
    assert events[-1].event == "succeeded"
    ws = await client.ws_connect("/jobs/api/ws")
    await ws.send_json({"type": "subscribe", "job_id": job["id"]})
    assert (await ws.receive_json())["type"] == "subscribed"
    assert (await asyncio.wait_for(ws.receive_json(), 10))["state"] == "succeeded"
    await ws.close()
    listed = await get_json(client, "/jobs/api/jobs")
    assert listed["jobs"][0]["links"]["self"] == f"/jobs/api/jobs/{job['id']}"
    dashboard = await (await client.get("/jobs/")).text()
    assert 'data-base="/jobs"' in dashboard and re.search(
        r'href="/jobs/static/[0-9a-f]{12}/style.css"', dashboard
    )
    assert f'href="/jobs/jobs/{job["id"]}"' in dashboard
    page = await (await client.get(job["links"]["page"])).text()
    assert (
        re.search(r'src="/jobs/static/[0-9a-f]{12}/job-page.js"', page)
        and f'action="/jobs/jobs/{job["id"]}/cancel"' in page
    )
    assert (await client.get("/jobs/static/jobcast.js")).status == 200
    # The form post answers with a redirect under the prefix too.
    async with client.post(
        "/jobs/submit", data={"kind": "demo", "demo.steps": "1"}, allow_redirects=False
    ) as r:
        assert r.status == 303 and r.headers["Location"].startswith("/jobs/jobs/")


async def test_the_embedded_dashboard_works_in_a_browser(aiohttp_server, settings, worker, page) -> None:
    server = await aiohttp_server(host_app(settings))
    base = f"http://127.0.0.1:{server.port}/jobs"
    async with aiohttp.ClientSession() as session:
        job = await submit(session, base + "/api/jobs", demo(2, 5))
    await page.goto(base + "/")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    row = page.locator(f'.job[data-job-id="{job["id"]}"]')
    await expect(row.locator(".badge")).to_have_text("succeeded", timeout=30_000)
    await page.fill("#demo-steps", "3")
    await page.fill("#demo-step_ms", "20")
    await page.click("#submit-form button[type=submit]")
    await expect(page.locator(".job").first.locator(".badge")).to_have_text("succeeded", timeout=30_000)
    await page.locator(".job").first.locator(".job-link").click()
    await expect(page.locator("#state")).to_have_text("succeeded")
    assert page.url.startswith(base + "/jobs/")


async def test_caught_up_streams_leave_the_host_servers_aiohttp_too(aiohttp_client, settings, redis) -> None:
    """Under a team's own aiohttp server, as under `jobcast web`, an SSE stream that has caught
    up and a WebSocket are held without aiohttp's request machinery, and still get every event."""
    from jobcast.protocol import EventType
    from jobcast.store.jobs import JobStore

    client = await aiohttp_client(host_app(settings))
    store = JobStore(redis, settings)
    async with unkept_session(client) as session:
        job = await submit(session, "/jobs/api/jobs", body=demo(3, 5))  # no worker: it waits
        sse = await session.get(f"/jobs/api/jobs/{job['id']}/events")
        assert sse.headers["Connection"] == "close"
        await sse.content.readuntil(b"event: snapshot\n")
        ws = await session.ws_connect("/jobs/api/ws")
        await ws.send_json({"type": "subscribe", "job_id": job["id"]})
        assert [(await ws.receive_json())["type"] for _ in range(2)] == ["subscribed", "snapshot"]
        await wait_for(lambda: not client.server.runner.server.connections, what="aiohttp to let go")
        await store.publish(job["id"], EventType.STARTED, attempt=0)
        await store.publish(job["id"], EventType.SUCCEEDED, attempt=1, result={"steps": 3})
        rest = await sse.content.read()  # to the end of the response
        assert b"event: started\n" in rest and b"event: succeeded\n" in rest
        assert [(await ws.receive_json())["type"] for _ in range(2)] == ["started", "succeeded"]
        await ws.close()
        sse.release()
