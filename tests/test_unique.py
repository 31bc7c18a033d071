"""Unique while active: concurrent duplicate submissions, single and in batches, make one job;
once it has ended, the same key makes a new one."""

from __future__ import annotations

import asyncio
from collections import Counter

import aiohttp
import pytest

from jobcast.client import Client
from tests.helpers import demo, submit, watch_to_end

KEY = "nightly-import-42"


async def test_fifty_concurrent_duplicates_and_batches_make_one_job(client, worker) -> None:
    body = {**demo(50, 20), "unique_key": KEY}

    async def single() -> tuple[int, str, str | None]:
        r = await client.post("/api/jobs", json=body)
        job = await r.json()
        return r.status, job["id"], r.headers.get("Unique-Active")

    async def batch() -> list[tuple[int, str]]:
        r = await client.post("/api/jobs/batch", json={"jobs": [body] * 10})
        assert r.status == 200, await r.text()
        return [(item["status"], item["job"]["id"]) for item in (await r.json())["results"]]

    singles, batches = await asyncio.gather(
        asyncio.gather(*(single() for _ in range(50))), asyncio.gather(*(batch() for _ in range(5)))
    )
    outcomes = [(status, job_id) for status, job_id, _ in singles] + [o for b in batches for o in b]
    assert len({job_id for _, job_id in outcomes}) == 1, Counter(job_id for _, job_id in outcomes)
    assert Counter(status for status, _ in outcomes) == {202: 1, 200: 99}
    assert all(active == "true" for status, _, active in singles if status == 200)
    # Another key is another job.
    other = await submit(client, "/api/jobs", {**demo(1, 1), "unique_key": "another"})
    assert other["id"] != outcomes[0][1]
    # Once it has ended, the key makes a new job.
    (job_id,) = {job_id for _, job_id in outcomes}
    await watch_to_end(client, job_id)
    again = await submit(client, "/api/jobs", {**demo(1, 1), "unique_key": KEY})
    assert again["id"] != job_id


async def test_a_kind_derives_the_key_from_its_params(spawn) -> None:
    web = spawn("web", JOBCAST_KINDS="tests.kinds_unique")
    spawn("worker", JOBCAST_KINDS="tests.kinds_unique")
    await web.wait_http()
    async with aiohttp.ClientSession() as session:
        url = f"{web.url}/api/jobs"
        first = await submit(session, url, {"kind": "sync", "params": {"account": "a", "step_ms": 100}})
        # The same account, other params that are not in the key: the same job.
        async with session.post(url, json={"kind": "sync", "params": {"account": "a", "steps": 3}}) as r:
            assert (r.status, (await r.json())["id"], r.headers["Unique-Active"]) == (
                200,
                first["id"],
                "true",
            )
        other = await submit(session, url, {"kind": "sync", "params": {"account": "b"}})
        assert other["id"] != first["id"]


async def test_the_clients_and_uploads_give_a_unique_key(spawn, tmp_path) -> None:
    web = spawn("web")
    spawn("worker")
    await web.wait_http()
    async with Client(web.url) as jobcast:
        # Delayed, so that they are surely still waiting when the duplicates come.
        first = await jobcast.submit("demo", {"steps": 1}, delay_s=60, unique_key="k")
        again = await jobcast.submit("demo", {"steps": 1}, unique_key="k")
        assert again["id"] == first["id"]
        rows = tmp_path / "rows.csv"
        rows.write_text("a,b\n1,2\n")
        converted = await jobcast.submit(
            "convert", {"to": "jsonl"}, upload=rows, unique_key="file-1", delay_s=60
        )
        same = await jobcast.submit("convert", {"to": "jsonl"}, upload=rows, unique_key="file-1")
        assert same["id"] == converted["id"]


def test_a_kind_refuses_a_unique_by_param_it_does_not_take() -> None:
    from tests.kinds_unique import SYNC

    with pytest.raises(ValueError, match="nope"):
        type(SYNC)(name="x", title="x", params=SYNC.params, run=SYNC.run, unique_by=("nope",))
