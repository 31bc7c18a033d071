"""Live job output against real `jobcast web` and `jobcast worker` processes: what a job writes
to its output streams reaches watchers whole, in order and once, however they watch (SSE with a
resume, a late join, `?follow=1`), and is kept for reading afterwards."""

from __future__ import annotations

import asyncio
import html
import json
import signal
import subprocess
import sys
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from jobcast.client import Client, SyncClient
from jobcast.files.local import FileStore
from jobcast.files.storage import DirectoryStorage
from jobcast.jobs.upkeep.janitor import Janitor
from jobcast.store.jobs import JobStore
from tests.helpers import (
    assert_contiguous,
    get_json,
    read_sse,
    sse_events,
    stalled_socket,
    submit,
    wait_for,
    watch_to_end,
)

# About 400 tokens at 400 a second: a second of streaming, in chunks of ~20 tokens (50 ms).
SUMMARY = {"kind": "summarize", "params": {"paragraphs": 60, "max_words": 300, "tokens_per_s": 400}}


def summary(**params: Any) -> dict[str, Any]:
    return {"kind": "summarize", "params": {**SUMMARY["params"], **params}}


async def final_text(session: aiohttp.ClientSession, url: str, job_id: str, stream: str = "output") -> str:
    async with session.get(f"{url}/api/jobs/{job_id}/output/{stream}") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        return await response.text()


def text_of(events: list[dict[str, Any]], stream: str = "output") -> str:
    """A stream's text as a watcher holds it: the snapshot's, then each chunk's."""
    text = ""
    for event in events:
        if event["type"] == "snapshot":
            held = (event.get("output") or {}).get(stream, "")
            assert isinstance(held, str), held  # short enough to be inline
            text = held
        elif event["type"] == "output" and event["stream"] == stream:
            text += event["data"]
    return text


@pytest.fixture
async def web(spawn) -> Any:
    web = spawn("web")
    spawn("worker")
    await web.wait_http()
    return web


async def test_a_watcher_that_resumes_ends_with_the_whole_output_once(web) -> None:
    async with aiohttp.ClientSession() as session:
        job = await submit(session, web.url + "/api/jobs", SUMMARY)
        url = f"{web.url}/api/jobs/{job['id']}/events"
        # Read until the first few chunks, hang up, and resume from the last seq seen.
        seen: list[dict[str, Any]] = []
        async with session.get(url, headers={"Last-Event-ID": "0"}) as response:
            async for event in sse_events(response):
                seen.append(event.data)
                if sum(e["type"] == "output" and e["stream"] == "output" for e in seen) == 3:
                    break
        rest = await read_sse(session, url, headers={"Last-Event-ID": str(seen[-1]["seq"])})
        events = seen + [e.data for e in rest]
        assert_contiguous(events, 1)
        outputs = [e for e in events if e["type"] == "output" and e["stream"] == "output"]
        assert len(outputs) >= 5, "the summary arrives in many chunks"
        assert all(e["attempt"] == 1 for e in outputs)
        assert events[-1]["type"] == "succeeded"
        text = text_of(events)
        assert text == await final_text(session, web.url, job["id"])
        assert len(text.split()) >= 100


async def test_a_late_watcher_gets_the_text_so_far_then_the_chunks(web) -> None:
    async with aiohttp.ClientSession() as session:
        job = await submit(session, web.url + "/api/jobs", SUMMARY)
        url = f"{web.url}/api/jobs/{job['id']}"

        async def written() -> bool:
            return len(await final_text(session, web.url, job["id"])) > 200

        await wait_for(written, what="some output")
        events = [e.data for e in await read_sse(session, url + "/events")]
        assert events[0]["type"] == "snapshot" and events[0]["state"] == "running"
        assert len(events[0]["output"]["output"]) > 200
        assert any(e["type"] == "output" for e in events[1:]), "it joined before the end"
        assert_contiguous(events[1:], events[0]["last_event_id"] + 1)
        assert text_of(events) == await final_text(session, web.url, job["id"])
        # The job's snapshot carries its output too.
        assert (await get_json(session, url))["output"]["output"] == text_of(events)


async def test_follow_prints_the_text_as_it_is_written(web) -> None:
    async with aiohttp.ClientSession() as session:
        job = await submit(session, web.url + "/api/jobs", summary(tokens_per_s=100))
        url = f"{web.url}/api/jobs/{job['id']}"
        async with session.get(url + "/output/output?follow=1") as response:
            assert response.status == 200 and response.headers["X-Jobcast-Attempt"] == "1"
            first = await response.content.readany()
            assert first, "a chunk"
            # Read before the job ended: the text comes as it is written.
            assert (await get_json(session, url))["state"] in ("queued", "running")
            text = first + await response.content.read()
        assert text.decode() == await final_text(session, web.url, job["id"])
        # An offset gives only what a client lacks; `end` stops where it says.
        async with session.get(url + "/output/output?offset=10&end=30") as response:
            assert (await response.read()) == text[10:30]
        async with session.get(url + "/output/output?follow=1&offset=25") as response:
            assert (await response.read()) == text[25:]


async def test_the_job_log_is_a_stream_and_the_feed_carries_no_output(web) -> None:
    async with aiohttp.ClientSession() as session, session.get(web.url + "/api/events") as feed:
        job = await submit(session, web.url + "/api/jobs", summary(paragraphs=5, max_words=40))
        types = []
        async with asyncio.timeout(30):
            async for event in sse_events(feed):
                types.append(event.event)
                if event.event == "succeeded":
                    break
        assert set(types) <= {"snapshot", "queued", "started", "progress", "succeeded"}, types
        log = await final_text(session, web.url, job["id"], "log")
        lines = log.splitlines()
        assert lines[0].split(" ", 2)[1] == "INFO" and "read" in lines[0] and "sentences" in lines[0]
        assert lines[-1].endswith("INFO done")


async def test_output_past_its_limit_fails_the_write_and_says_so(spawn) -> None:
    web = spawn("web")
    spawn("worker", JOBCAST_MAX_OUTPUT_BYTES="600")
    await web.wait_http()
    async with aiohttp.ClientSession() as session:
        job = await submit(session, web.url + "/api/jobs", summary(tokens_per_s=5000))
        events = await watch_to_end(session, job["id"], web.url)
        markers = [e for e in events if e["type"] == "output" and e.get("limit_reached")]
        assert len(markers) == 1 and markers[0]["data"] == ""
        assert events[-1]["type"] == "failed"
        assert events[-1]["error"]["type"] == "OutputLimitExceeded"
        text = await final_text(session, web.url, job["id"])
        assert 0 < len(text.encode()) <= 600
        assert text == "".join(e["data"] for e in events if e["type"] == "output" and e["stream"] == "output")
        # The job's page says so.
        async with session.get(web.url + job["links"]["page"]) as response:
            page = await response.text()
        assert "OutputLimitExceeded" in page and "JOBCAST_MAX_OUTPUT_BYTES" in page


async def test_each_attempt_has_its_own_output(spawn) -> None:
    web = spawn("web")
    worker = spawn("worker", JOBCAST_LEASE_S="2")
    await web.wait_http()
    async with aiohttp.ClientSession() as session:
        job = await submit(session, web.url + "/api/jobs", summary(tokens_per_s=50))
        url = f"{web.url}/api/jobs/{job['id']}"

        async def writing() -> bool:
            async with session.get(url + "/output/output") as response:
                return len(await response.read()) > 50

        await wait_for(writing, what="the first attempt's output")
        worker.signal(signal.SIGKILL)
        await worker.wait_exit()
        spawn("worker", JOBCAST_LEASE_S="2")
        events = await watch_to_end(session, job["id"], web.url)
        assert events[-1]["type"] == "succeeded" and events[-1]["attempt"] == 2
        async with session.get(url + "/output/output?attempt=1") as response:
            first = await response.text()
        second = await final_text(session, web.url, job["id"])
        assert first and second and first != second and second.startswith(first[:20])
        # Followed by name, an earlier attempt's output comes whole, and the answer ends.
        async with session.get(url + "/output/output?attempt=1&follow=1") as response:
            assert response.headers["X-Jobcast-Attempt"] == "1" and await response.text() == first
        chunks = [e for e in events if e["type"] == "output" and e["stream"] == "output"]
        assert "".join(e["data"] for e in chunks if e["attempt"] == 2) == second
        assert (await get_json(session, url))["output"]["output"] == second
        # The job page shows both: the last attempt's open, the first's folded.
        async with session.get(f"{web.url}{job['links']['page']}") as response:
            page = await response.text()
        assert "Attempt 1&#39;s output" in page or "Attempt 1's output" in page
        assert html.escape(second[:40], quote=False) in page and html.escape(first[:40], quote=False) in page


async def test_the_python_client_follows_output_across_a_web_restart(spawn) -> None:
    web = spawn("web")
    spawn("worker")
    await web.wait_http()
    pieces: list[str] = []
    async with Client(web.url) as client:
        job = await client.submit("summarize", summary(tokens_per_s=150)["params"])
        async for text in client.output(job["id"]):
            pieces.append(text)
            if len(pieces) == 3:
                web.signal(signal.SIGTERM)
                assert await web.wait_exit() == 0
                spawn("web", port=web.port)  # the same address, a new process
        assert (await client.get(job["id"]))["state"] == "succeeded"
        async with aiohttp.ClientSession() as session:
            assert "".join(pieces) == await final_text(session, web.url, job["id"])
    assert len(pieces) > 3


async def test_jobcast_watch_prints_an_output_stream(web) -> None:
    async with Client(web.url) as client:
        job = await client.submit("summarize", summary(tokens_per_s=200)["params"])
        command = [
            sys.executable,
            "-m",
            "jobcast",
            "watch",
            job["id"],
            "--url",
            web.url,
            "--output",
            "output",
        ]
        done = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        async with aiohttp.ClientSession() as session:
            assert done.stdout == await final_text(session, web.url, job["id"])


def test_the_synchronous_client_reads_output(spawn) -> None:
    web = spawn("web")
    spawn("worker")
    asyncio.run(web.wait_http())
    with SyncClient(web.url) as jobs:
        job = jobs.submit("summarize", {"paragraphs": 5, "max_words": 30, "tokens_per_s": 0})
        text = "".join(jobs.output(job["id"]))
        log = "".join(jobs.output(job["id"], "log"))
    assert len(text.split()) >= 20 and "done" in log


async def test_output_is_its_owners_and_a_stream_token_opens_its_own_job_only(spawn) -> None:
    web = spawn("web", JOBCAST_SECRET="a-test-secret-that-signs-the-cookies")
    spawn("worker")
    await web.wait_http()
    jar = aiohttp.CookieJar(unsafe=True)  # keep the cookie of an IP address host, as a browser does
    async with (
        aiohttp.ClientSession(cookie_jar=jar) as owner,
        aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as other,
        aiohttp.ClientSession() as holder,
    ):
        mine = await submit(owner, web.url + "/api/jobs", summary(paragraphs=5, max_words=30, tokens_per_s=0))
        theirs = await submit(
            other, web.url + "/api/jobs", summary(paragraphs=5, max_words=30, tokens_per_s=0)
        )
        await watch_to_end(owner, mine["id"], web.url)
        output = f"{web.url}/api/jobs/{mine['id']}/output/output"
        for url in (output, output + "?follow=1", output.replace("/output/output", "/events")):
            async with other.get(url) as response:
                assert response.status == 404, url
        assert len(await final_text(owner, web.url, mine["id"])) > 50
        # The stream token opens the output from anywhere, of its own job only.
        token = mine["stream_token"]
        async with holder.get(f"{output}?token={token}") as response:
            assert response.status == 200 and await response.text() == await final_text(
                owner, web.url, mine["id"]
            )
        async with holder.get(f"{output}?token={token}&follow=1") as response:
            assert response.status == 200 and await response.text() == await final_text(
                owner, web.url, mine["id"]
            )
        elsewhere = f"{web.url}/api/jobs/{theirs['id']}/output/output?token={token}"
        async with holder.get(elsewhere) as response:
            assert response.status == 401


def sse_from_raw_http(raw: bytes) -> list[dict[str, Any]]:
    """The complete SSE events in an HTTP/1.1 chunked response cut off anywhere."""
    _, _, body = raw.partition(b"\r\n\r\n")
    data = b""
    while body:
        size_line, sep, rest = body.partition(b"\r\n")
        if not sep:
            break
        size = int(size_line, 16)
        if size == 0 or len(rest) < size:
            data += rest[:size]
            break
        data += rest[:size]
        body = rest[size + 2 :]
    events = []
    for block in data.split(b"\n\n")[:-1]:  # the last block may be cut: only whole events
        lines = dict(line.split(b": ", 1) for line in block.split(b"\n") if line.startswith(b"data: "))
        if b"data" in lines:
            events.append(json.loads(lines[b"data"]))
    return events


async def metric(session: aiohttp.ClientSession, url: str, name: str, **labels: str) -> float:
    async with session.get(url + "/metrics") as response:
        text = await response.text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


async def cut_off(session: aiohttp.ClientSession, url: str) -> bool:
    return await metric(session, url, "jobcast_watchers_cut_off_total") > 0


async def streams_open(session: aiohttp.ClientSession, url: str) -> bool:
    return await metric(session, url, "jobcast_open_streams", transport="sse") >= 1


async def test_a_slow_watcher_is_cut_off_and_resumes_while_others_keep_up(spawn) -> None:
    web = spawn("web", JOBCAST_WATCHER_BUFFER="8", JOBCAST_SOCKET_BUFFER_BYTES="4096")
    spawn("worker")
    await web.wait_http()
    async with aiohttp.ClientSession() as session:
        # Held until the slow watcher is live: one still catching up reads history at its own
        # pace, and is never too far behind.
        async with session.post(web.url + "/api/kinds/summarize/pause") as response:
            assert response.status == 200, await response.text()
        job = await submit(
            session, web.url + "/api/jobs", summary(paragraphs=12000, max_words=1_000_000, tokens_per_s=0)
        )
        request = f"GET /api/jobs/{job['id']}/events HTTP/1.1\r\nHost: 127.0.0.1:{web.port}\r\nLast-Event-ID: 0\r\n\r\n"
        stalled = stalled_socket(web.port, request.encode())
        try:
            await wait_for(lambda: streams_open(session, web.url), what="the slow watcher's stream")
            async with session.post(web.url + "/api/kinds/summarize/resume") as response:
                assert response.status == 200

            # A watcher that keeps up reads everything meanwhile.
            fast = await watch_to_end(session, job["id"], web.url)
            await wait_for(lambda: cut_off(session, web.url), what="the slow watcher cut off")
            stalled.settimeout(10)
            raw = b""
            while chunk := stalled.recv(65536):
                raw += chunk
        finally:
            stalled.close()
        seen = sse_from_raw_http(raw)
        assert seen and seen[-1]["type"] != "succeeded", "cut off before the end"
        rest = await read_sse(
            session, f"{web.url}/api/jobs/{job['id']}/events", headers={"Last-Event-ID": str(seen[-1]["seq"])}
        )
        events = seen + [e.data for e in rest]
        assert_contiguous(events, 1)
        final = await final_text(session, web.url, job["id"])
        assert text_of(events) == final == text_of(fast)
        assert len(final) > 2_000_000


async def test_output_counts_against_its_owners_disk_quota_until_the_job_is_gone(
    spawn, redis, settings
) -> None:
    web = spawn("web")
    spawn("worker", JOBCAST_DISK_QUOTA_BYTES="1500")
    await web.wait_http()
    async with aiohttp.ClientSession() as session:
        job = await submit(session, web.url + "/api/jobs", summary(tokens_per_s=5000))
        events = await watch_to_end(session, job["id"], web.url)
        assert events[-1]["type"] == "failed" and events[-1]["error"]["type"] == "OutputLimitExceeded"
        assert "disk quota" in events[-1]["error"]["message"]
        assert sum(1 for e in events if e.get("limit_reached")) == 1
        kept = await final_text(session, web.url, job["id"]) + await final_text(
            session, web.url, job["id"], "log"
        )
    store = JobStore(redis, settings)
    used = int(await redis.hget(store.keys.disk_usage, "") or 0)  # single-user mode: one owner
    assert used == len(kept.encode()) and used <= 1500
    # Once the job has expired, the janitor gives its bytes back.
    janitor = Janitor(store, DirectoryStorage(FileStore(settings.files_dir)))
    assert await janitor.refund_gone() == 0  # still kept
    await redis.delete(store.keys.job(job["id"]))
    assert await janitor.refund_gone() == 1
    assert not await redis.hexists(store.keys.disk_usage, "")


async def test_writes_from_threads_and_pipes_arrive_whole_and_in_order(redis, settings) -> None:
    from jobcast.jobs.output import JobOutput
    from jobcast.protocol import EventType
    from jobcast.store.jobs import Submission

    store = JobStore(redis, settings)
    job_id = "b" * 32
    await store.create(job_id, Submission("summarize", {}))
    await store.publish(job_id, EventType.STARTED, attempt=1, fence=0)

    async def tokens() -> Any:
        for i in range(200):
            yield f"t{i} "

    async with JobOutput(store.output, job_id, 1, flush_ms=20, flush_bytes=1024) as output:
        out = output.stream("output")
        piped = await out.pipe(tokens())
        # From a thread: in the order written, after what the loop wrote before.
        await asyncio.to_thread(lambda: [out.write_threadsafe(f"[{i}]") for i in range(100)])
        out.write_nowait("end")
        await out.flush()
        # A write bigger than an event is cut into events, never inside a character.
        await out.write("é" * 3000)
        await out.flush()
    text = (await store.output.read(job_id, 1, "output")).decode()
    assert text == piped + "".join(f"[{i}]" for i in range(100)) + "end" + "é" * 3000
    records, _ = await store.history_after(job_id, 0)
    chunks = [json.loads(r.split(b"\n", 2)[2]) for r in records if b"\noutput\n" in r]
    assert all(len(c["data"].encode()) <= 1024 for c in chunks) and len(chunks) < 100
    assert "".join(c["data"] for c in chunks) == text


async def test_many_jobs_writers_in_one_process_share_their_calls(redis, settings) -> None:
    from jobcast.jobs.output import JobOutput
    from jobcast.protocol import EventType
    from jobcast.store.jobs import Submission

    store = JobStore(redis, settings)
    jobs = [f"{i:032x}" for i in range(1, 41)]
    for job_id in jobs:
        await store.create(job_id, Submission("summarize", {}))
        await store.publish(job_id, EventType.STARTED, attempt=1, fence=0)

    async def calls() -> int:
        return int((await redis.info("commandstats")).get("cmdstat_evalsha", {}).get("calls", 0))

    async def write(job_id: str) -> str:
        async with JobOutput(store.output, job_id, 1, flush_ms=5, flush_bytes=1024) as output:
            out = output.stream("output")
            written = []
            for i in range(30):
                written.append(f"{job_id[-2:]}:{i} ")
                await out.write(written[-1])
                await asyncio.sleep(0.002)  # a token's pace, as a model streams them
            await out.flush()
        return "".join(written)

    before = await calls()
    texts = await asyncio.gather(*(write(job_id) for job_id in jobs))
    used = await calls() - before
    events = 0
    for job_id, written in zip(jobs, texts, strict=True):
        # Each job's text whole and in order, its events consecutive in its own stream.
        assert (await store.output.read(job_id, 1, "output")).decode() == written
        records, _ = await store.history_after(job_id, 0)
        chunks = [json.loads(r.split(b"\n", 2)[2]) for r in records if b"\noutput\n" in r]
        assert "".join(c["data"] for c in chunks) == written
        assert [c["seq"] for c in chunks] == list(range(chunks[0]["seq"], chunks[0]["seq"] + len(chunks)))
        events += len(chunks)
    # Forty writers' events went to Redis in far fewer calls than events.
    assert used * 4 < events, (used, events)


async def test_one_call_may_carry_two_chunks_of_one_job(redis, settings) -> None:
    from jobcast.protocol import EventType
    from jobcast.store.jobs import Submission

    store = JobStore(redis, settings)
    job_id = "c" * 32
    await store.create(job_id, Submission("summarize", {}))
    await store.publish(job_id, EventType.STARTED, attempt=1, fence=0)
    calls = [store.output.call(job_id, 1, "output", text) for text in ("one ", "two ")]
    calls.append(store.output.call(job_id, 1, "log", "a line\n"))
    keys, args = store.output.batch_call(calls)
    answer = await store.scripts.call("output", keys, **args)
    seqs = [a["seq"] for a in answer["answers"]]
    assert seqs == [seqs[0], seqs[0] + 1, seqs[0] + 2]
    assert (await store.output.read(job_id, 1, "output")) == b"one two "
    assert (await store.output.read(job_id, 1, "log")) == b"a line\n"
