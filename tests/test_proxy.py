"""jobcast behind a real nginx (Debian's), with the configuration docs/deployment/nginx.conf
ships: two `jobcast web` processes restarted one after the other (SIGTERM, then started again)
while 200 watchers stream through the proxy, over SSE and WebSocket. Every watcher ends with its
job's terminal event, with no gap and no duplicate."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
from pathlib import Path
from typing import Any

import aiohttp

from jobcast.redis.embedded import free_port
from tests.helpers import answers_ok, demo, follow_sse, progressed, submit, wait_for

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
NGINX_INSTALLED = Path(NGINX).exists()
CONFIG = Path(__file__).parent.parent / "docs" / "deployment" / "nginx.conf"
TERMINAL = {"succeeded", "failed", "cancelled"}
JOBS, SSE_PER_JOB, WS_PER_JOB = 10, 18, 2


def render(port: int, upstreams: list[int], tmp: Path) -> Path:
    """The shipped site config with this test's ports, inside a main config of its own."""
    site = CONFIG.read_text()
    site = site.replace("listen 80;", f"listen 127.0.0.1:{port};")
    site = site.replace("127.0.0.1:8001", f"127.0.0.1:{upstreams[0]}").replace(
        "127.0.0.1:8002", f"127.0.0.1:{upstreams[1]}"
    )
    (tmp / "jobcast.conf").write_text(site)
    main = tmp / "nginx.conf"
    temp = "\n".join(
        f"    {name}_temp_path {tmp}/{name};" for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    main.write_text(
        f"""worker_processes 1;
error_log {tmp}/error.log warn;
pid {tmp}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
{temp}
    include {tmp}/jobcast.conf;
}}
"""
    )
    return main


Seen = tuple[list[dict[str, Any]], int]  # the events, and how many connections it took


async def sse_watcher(session: aiohttp.ClientSession, url: str, job_id: str) -> Seen:
    seen, connections = await follow_sse(session, url, job_id, retry_s=0.2)
    return [data for _, data in seen], connections


async def ws_watcher(session: aiohttp.ClientSession, url: str, job_id: str) -> Seen:
    seen: list[dict[str, Any]] = []
    connections = 0
    while True:
        try:
            async with session.ws_connect(url.replace("http", "ws") + "/api/ws") as ws:
                connections += 1
                await ws.send_json(
                    {"type": "subscribe", "job_id": job_id, "last_event_id": seen[-1]["seq"] if seen else 0}
                )
                async for message in ws:
                    if message.type is not aiohttp.WSMsgType.TEXT:
                        break
                    data = json.loads(message.data)
                    if data.get("job_id") == job_id and "seq" in data and data["type"] != "snapshot":
                        seen.append(data)
                        if data["type"] in TERMINAL:
                            return seen, connections
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)


async def test_rolling_restarts_behind_nginx_lose_and_repeat_nothing(spawn, tmp_path: Path) -> None:
    assert NGINX_INSTALLED, "the proxy test runs Debian's nginx: scripts/test installs it (nginx-light)"
    ports = [free_port(), free_port()]
    webs = [spawn("web", port) for port in ports]
    spawn("worker", JOBCAST_WORKER_MAX_JOBS=str(JOBS))
    for web in webs:
        await web.wait_http()
    proxy_port = free_port()
    config = render(proxy_port, ports, tmp_path)
    nginx = await asyncio.create_subprocess_exec(
        NGINX, "-c", str(config), "-p", str(tmp_path), "-g", "daemon off;"
    )
    url = f"http://127.0.0.1:{proxy_port}"
    try:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            await wait_for(lambda: answers_ok(session, url + "/readyz"), what="nginx to proxy")
            jobs = [await submit(session, f"{url}/api/jobs", demo(60, 150)) for _ in range(JOBS)]
            watchers = [
                asyncio.create_task(watch(session, url, job["id"]))
                for job in jobs
                for watch in [sse_watcher] * SSE_PER_JOB + [ws_watcher] * WS_PER_JOB
            ]
            # A rolling restart: each web process in turn stops (its streams end, their clients
            # reconnect through nginx to the other) and starts again on its port.
            for i, port in enumerate(ports):
                # Mid-run: once the first job is a quarter, then half of the way.
                await wait_for(
                    lambda i=i: progressed(session, url, jobs[0]["id"], 15 * (i + 1)), what="progress"
                )
                webs[i].signal(signal.SIGTERM)
                assert await webs[i].wait_exit() == 0
                webs[i] = spawn("web", port)
                await webs[i].wait_http()
            results = await asyncio.wait_for(asyncio.gather(*watchers), 120)
    finally:
        nginx.send_signal(signal.SIGQUIT)
        await asyncio.wait_for(nginx.wait(), 10)
    assert len(results) == JOBS * (SSE_PER_JOB + WS_PER_JOB)
    # The restarts cut streams of both kinds mid-job: their watchers resumed through the proxy.
    for kind, group in (
        ("sse", results[:SSE_PER_JOB]),
        ("websocket", results[SSE_PER_JOB : SSE_PER_JOB + WS_PER_JOB]),
    ):
        assert any(connections > 1 for _, connections in group), kind
    assert sum(connections > 1 for _, connections in results) >= len(results) // 2
    for seen, _ in results:
        seqs = [event["seq"] for event in seen]
        assert seqs == list(range(1, len(seqs) + 1)), seqs  # no gap, no duplicate
        assert seen[-1]["type"] == "succeeded" and seen[-1]["progress"]["current"] == 60
    error_log = (tmp_path / "error.log").read_text()
    assert not re.search(r"\[(alert|emerg|crit)\]", error_log), error_log
