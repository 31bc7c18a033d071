"""`jobcast.client.api` against real `jobcast web` and `jobcast worker` processes."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from jobcast.client import Client, JobcastError, JobEvent, SyncClient
from tests.helpers import JobcastProcess


@pytest.fixture
async def web(spawn) -> JobcastProcess:
    web = spawn("web")
    await web.wait_http()
    return web


async def test_watch_follows_a_job_across_a_web_restart_with_no_gap_or_duplicate(spawn, worker) -> None:
    web = spawn("web")
    await web.wait_http()
    seen: list[JobEvent] = []
    async with Client(web.url) as client:
        job = await client.submit("demo", {"steps": 40, "step_ms": 50})
        async for event in client.watch(job["id"], last_event_id=0):
            seen.append(event)
            if len(seen) == 5:
                web.signal(signal.SIGTERM)
                assert await web.wait_exit() == 0
                spawn("web", port=web.port)  # the same address, a new process
    assert [e.seq for e in seen] == list(range(1, len(seen) + 1))
    assert seen[0].type == "queued" and seen[-1].type == "succeeded" and seen[-1].terminal
    assert [e.data["progress"]["current"] for e in seen if e.type == "progress"][-1] == 40


async def test_submit_cancel_and_a_snapshot_first_without_a_position(web, worker) -> None:
    async with Client(web.url) as client:
        job = await client.submit("demo", {"steps": 400, "step_ms": 25}, priority="high")
        assert job["state"] == "queued" and job["priority"] == "high"
        events = client.watch(job["id"])
        first = await anext(events)
        assert first.type == "snapshot" and first.seq == first.data["last_event_id"]
        async for event in events:
            if event.type == "progress":
                break
        cancelled = await client.cancel(job["id"])
        assert cancelled["cancel_requested"] or cancelled["state"] == "cancelled"
        rest = [event async for event in events]
        assert (await client.get(job["id"]))["state"] == "cancelled"
    assert rest[-1].type == "cancelled"


async def test_results_json_and_files_and_listing(web, worker, tmp_path: Path) -> None:
    source = tmp_path / "people.csv"
    source.write_text("name,age\nada,36\nalan,41\n")
    async with Client(web.url) as client:
        converted = await client.submit("convert", {"to": "jsonl"}, upload=source)
        counted = await client.submit("demo", {"steps": 2, "step_ms": 1})
        for job in (converted, counted):
            assert [e async for e in client.watch(job["id"])][-1].state == "succeeded"
        downloaded = await client.result(converted["id"], tmp_path)
        assert downloaded == tmp_path / "people.jsonl"
        assert downloaded.read_text().splitlines() == [
            '{"name": "ada", "age": "36"}',
            '{"name": "alan", "age": "41"}',
        ]
        assert await client.result(counted["id"]) == {"steps": 2}
        listed = [job["id"] async for job in client.list(page_size=1)]
        assert listed == [counted["id"], converted["id"]]
        assert [job["id"] async for job in client.list(kind="convert")] == [converted["id"]]
        assert [job["id"] async for job in client.list(priority="high")] == []


async def test_bulk_actions_from_the_client_retry_an_upload_and_delete(web, worker, tmp_path: Path) -> None:
    source = tmp_path / "people.csv"
    source.write_text("name\nada\n")
    async with Client(web.url) as client:
        # Cancelled while it waited: its retry must carry its own copy of the upload.
        waiting = await client.submit("convert", {"to": "jsonl"}, upload=source, delay_s=600)
        await client.cancel(waiting["id"])
        bulk = await client.bulk("retry", ids=[waiting["id"]])
        assert [e async for e in client.watch(bulk["id"])][-1].state == "succeeded"
        assert (await client.get(bulk["id"]))["result"] == {
            "action": "retry",
            "matched": 1,
            "done": 1,
            "skipped": 0,
        }
        retried = await client.get((await client.get(waiting["id"]))["retried_by"])
        assert [e async for e in client.watch(retried["id"])][-1].state == "succeeded"
        assert (await client.result(retried["id"], tmp_path / "out.jsonl")).read_text() == '{"name": "ada"}\n'

        bulk = await client.bulk("delete", filter={"state": "cancelled"})
        assert [e async for e in client.watch(bulk["id"])][-1].state == "succeeded"
        assert (await client.get(bulk["id"]))["result"]["done"] == 1
        with pytest.raises(JobcastError) as gone:
            await client.get(waiting["id"])
        assert gone.value.status == 404


async def test_errors_carry_the_problem_document(web) -> None:
    async with Client(web.url) as client:
        with pytest.raises(JobcastError) as unknown:
            await client.get("0" * 32)
        assert unknown.value.status == 404 and unknown.value.problem["status"] == 404
        with pytest.raises(JobcastError) as invalid:
            await client.submit("demo", {"steps": 0})
        assert invalid.value.status == 422
        assert invalid.value.problem["errors"][0]["field"] == "params.steps"
        with pytest.raises(JobcastError) as gone:
            [event async for event in client.watch("f" * 32)]
        assert gone.value.status == 404


def run_script(url: str) -> list[JobEvent]:
    with SyncClient(url) as jobs:
        job = jobs.submit("demo", {"steps": 3, "step_ms": 5})
        events = list(jobs.watch(job["id"], last_event_id=0))
        assert jobs.result(job["id"]) == {"steps": 3}
        return events


async def test_the_synchronous_client_for_scripts(web, worker) -> None:
    events = await asyncio.to_thread(run_script, web.url)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert [e.type for e in events if e.type != "progress"] == ["queued", "started", "succeeded"]
    assert events[-2].type == "progress" and events[-2].percent == 100


async def test_jobcast_watch_follows_a_job_from_a_terminal(web, worker) -> None:
    async with Client(web.url) as client:
        ok = await client.submit("demo", {"steps": 40, "step_ms": 100})
        bad = await client.submit("demo", {"steps": 3, "step_ms": 5, "fail_at_step": 2})

    def watch(job_id: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "jobcast", "watch", job_id, "--url", web.url]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    succeeded, failed = await asyncio.gather(
        asyncio.to_thread(watch, ok["id"]), asyncio.to_thread(watch, bad["id"])
    )
    assert succeeded.returncode == 0, succeeded.stderr
    assert succeeded.stdout.splitlines()[-1] == "succeeded (attempt 1)", succeeded.stdout
    assert "progress 100% step 40 of 40" in succeeded.stdout
    assert failed.returncode == 1
    # It may have ended before the command started: then its snapshot says how.
    assert re.fullmatch(
        r"failed \((as of event \d+, )?attempt 3\): DemoFailure: .*", failed.stdout.splitlines()[-1]
    )
