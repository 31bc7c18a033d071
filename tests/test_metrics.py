"""`/metrics` of real `jobcast web` and `jobcast worker` processes moves with what they do."""

from __future__ import annotations

import asyncio
import re
import socket
import struct
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from jobcast.redis.embedded import free_port
from tests.helpers import answers_ok, demo, read_sse, submit, wait_for, watch_to_end

DASHBOARD = Path(__file__).parent.parent / "docs" / "grafana" / "jobcast-dashboard.json"


async def scrape(
    session: aiohttp.ClientSession, url: str
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample, by name and labels."""
    async with session.get(url + "/metrics") as response:
        assert response.status == 200
        text = await response.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_web_and_worker_metrics_follow_the_jobs(spawn) -> None:
    port = free_port()
    web = spawn("web")
    spawn("worker", JOBCAST_WORKER_METRICS_PORT=str(port))
    worker_url = f"http://127.0.0.1:{port}"
    await web.wait_http()
    bodies = [
        *[demo(3, 10)] * 3,
        {"kind": "demo", "params": {"steps": 2, "step_ms": 10, "fail_at_step": 1, "fail_attempts": 1}},
        {"kind": "demo", "params": {"steps": 2, "step_ms": 10, "fail_at_step": 1}},  # fails 3 times
    ]
    async with aiohttp.ClientSession(web.url) as session:
        await wait_for(lambda: answers_ok(session, worker_url + "/metrics"), what="the worker's /metrics")
        # A dashboard watching live, so events are relayed to a watcher as they happen.
        feed = asyncio.create_task(read_sse(session, "/api/events", stop_after=len(bodies) * 4))
        jobs = [await submit(session, body=body) for body in bodies]
        ends = [(await watch_to_end(session, job["id"]))[-1]["type"] for job in jobs]
        assert ends == ["succeeded"] * 4 + ["failed"]
        await feed
        delayed = await submit(session, body={**demo(2, 1), "delay_s": 3600})

        worker = await scrape(session, worker_url)
        assert value(worker, "jobcast_job_attempts_total", kind="demo") == 3 + 2 + 3
        assert value(worker, "jobcast_jobs_finished_total", kind="demo", state="succeeded") == 4
        assert value(worker, "jobcast_jobs_finished_total", kind="demo", state="failed") == 1
        assert value(worker, "jobcast_job_retries_total", kind="demo") == 1 + 2
        assert value(worker, "jobcast_job_duration_seconds_count", kind="demo") == 8
        assert value(worker, "jobcast_job_queue_wait_seconds_count", kind="demo") == 5
        assert value(worker, "jobcast_worker_running_jobs") == 0

        site = await scrape(session, web.url)
        assert value(site, "jobcast_jobs_submitted_total", kind="demo") == 6
        assert value(site, "jobcast_workers_live") == 1
        assert value(site, "jobcast_jobs_delayed", priority="default") == 1
        assert value(site, "jobcast_jobs_waiting", priority="default") == 0
        assert value(site, "jobcast_jobs_running") == 0
        assert value(site, "jobcast_relay_messages_total") > 0
        assert value(site, "jobcast_delivery_delay_seconds_count") > 0
        async with session.post(f"/api/jobs/{delayed['id']}/cancel") as response:
            assert response.status == 200
    # The shipped Grafana dashboard asks only for names these processes serve.
    served = {name for name, _ in {**worker, **site}}
    for name in set(re.findall(r"jobcast_[a-z_]+", DASHBOARD.read_text())):
        assert name in served, f"docs/grafana: {name} is not a metric jobcast serves"


async def test_the_open_streams_gauge_is_exact(spawn) -> None:
    web = spawn("web")
    spawn("worker")
    await web.wait_http()
    async with aiohttp.ClientSession(web.url) as session:
        job = await submit(session, body=demo(400, 50))

        async def streams() -> tuple[float, float]:
            samples = await scrape(session, web.url)
            return (
                value(samples, "jobcast_open_streams", transport="sse"),
                value(samples, "jobcast_open_streams", transport="websocket"),
            )

        assert await streams() == (0, 0)
        sse = [await session.get(f"/api/jobs/{job['id']}/events") for _ in range(3)]
        ws = [await session.ws_connect("/api/ws") for _ in range(2)]
        for socket in ws:
            await socket.send_json({"type": "subscribe", "job_id": job["id"]})
            assert (await socket.receive_json())["type"] == "subscribed"
        assert await streams() == (3, 2)
        # Hang-ups at any point, one of each kind abruptly: the gauge follows at once.
        sse[0].close()
        await ws[0].close()
        await wait_for(lambda: is_at(streams, (2, 1)), what="the gauge to drop")
        for response in sse[1:]:
            response.close()
        for socket in ws[1:]:
            await socket.close()
        await wait_for(lambda: is_at(streams, (0, 0)), what="the gauge to reach zero")
        # Hang-ups before the answer starts: the request sent, then the connection reset.
        for path in (f"/api/jobs/{job['id']}/events", "/api/events") * 10:
            await hang_up_after_sending(web.port, path)
        await wait_for(lambda: is_at(streams, (0, 0)), what="the gauge to stay at zero")

        # Once a worker runs the job (its start is not what this test waits on otherwise).
        async def running() -> bool:
            async with session.get(f"/api/jobs/{job['id']}") as response:
                return (await response.json())["state"] == "running"

        await wait_for(running, what="the job to run")
        async with session.post(f"/api/jobs/{job['id']}/cancel") as response:
            assert response.status == 202  # running: cancel requested
    assert "Traceback" not in web.log()
    assert "unhandled error" not in web.log()


async def test_an_idle_stream_whose_client_left_stops_counting_at_once(spawn) -> None:
    # No event and no heartbeat (an hour away) to write: only the hang-up itself can tell.
    web = spawn("web", JOBCAST_HEARTBEAT_S="3600")
    await web.wait_http()
    async with aiohttp.ClientSession(web.url) as session:
        delayed = await submit(session, body=demo(1, 1) | {"delay_s": 600})

        async def sse_streams() -> float:
            return value(await scrape(session, web.url), "jobcast_open_streams", transport="sse")

        opened = [await session.get(f"/api/jobs/{delayed['id']}/events") for _ in range(3)]
        opened.append(await session.get("/api/events"))
        for response in opened:
            assert response.status == 200
            await response.content.readuntil(b"\n\n")  # the stream has started
        assert await sse_streams() == 4
        for response in opened:
            response.close()
        await wait_for(lambda: is_at(sse_streams, 0), timeout=10, what="the gauge to drop to zero")


async def hang_up_after_sending(port: int, path: str) -> None:
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    await writer.drain()
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST, not FIN
    writer.close()


async def test_closed_connections_garbage_is_collected_by_count(spawn) -> None:
    # Each closed connection leaves reference cycles only a full collection frees; jobcast web runs
    # one every JOBCAST_GC_AFTER_CONNECTIONS closed connections (here 20), whatever the heap's size.
    web = spawn("web", JOBCAST_GC_AFTER_CONNECTIONS="20")
    await web.wait_http()

    async def full_collections() -> float:
        async with aiohttp.ClientSession(web.url) as session:
            return value(await scrape(session, web.url), "python_gc_collections_total", generation="2")

    before = await full_collections()
    for _ in range(100):  # a new connection each time
        async with aiohttp.ClientSession(web.url) as session, session.get("/healthz") as response:
            assert response.status == 200
    await wait_for(lambda: at_least(full_collections, before + 100 // 20), what="full collections")
    async with aiohttp.ClientSession(web.url) as session:
        assert value(await scrape(session, web.url), "process_resident_memory_bytes") > 0


async def at_least(read, expected: float) -> bool:
    return await read() >= expected


async def is_at(streams, expected: tuple[float, float]) -> bool:
    return await streams() == expected


def test_a_workers_recent_ends_slide_over_the_last_hour() -> None:
    from jobcast.jobs.worker_metrics import RecentEnds

    now = [10_000.0]
    recent = RecentEnds(clock=lambda: now[0])
    recent.add("succeeded")
    recent.add("failed")
    now[0] += 30 * 60
    recent.add("succeeded")
    assert recent.counts() == {"succeeded": 2, "failed": 1, "cancelled": 0}
    now[0] += 31 * 60  # the first minute's ends are over an hour old now
    assert recent.counts() == {"succeeded": 1, "failed": 0, "cancelled": 0}
    recent.add("cancelled")
    assert len(recent.minutes) == 2  # older minutes are dropped, not kept
