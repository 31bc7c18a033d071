"""The real kinds end to end on a real worker: report, convert (upload), aggregate (process
pool); their results download; the article's `/reports` API keeps working."""

from __future__ import annotations

import csv
import io
import json

import aiohttp

from tests.helpers import get_json, post_json, submit, watch_to_end


def progress_of(events: list[dict]) -> list[float]:
    return [e["progress"]["current"] for e in events if e["type"] == "progress"]


async def test_report_streams_progress_per_day_and_its_csv_downloads(client, worker) -> None:
    body = {"kind": "report", "params": {"user_id": "ada", "report_type": "sales", "days": 12, "pace_ms": 5}}
    job = await submit(client, body=body)
    events = await watch_to_end(client, job["id"])
    assert events[-1]["type"] == "succeeded"
    steps = progress_of(events)
    assert steps == sorted(steps) and steps[-1] == 12
    result = events[-1]["result"]
    assert result["file"]["name"] == "report-sales-ada.csv"
    async with client.get(f"/api/jobs/{job['id']}/result") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/csv")
        assert 'filename="report-sales-ada.csv"' in response.headers["Content-Disposition"]
        rows = list(csv.reader(io.StringIO(await response.text())))
    assert rows[0] == ["day", "orders", "items", "revenue"] and len(rows) == 13
    assert round(sum(float(r[3]) for r in rows[1:]), 2) == result["totals"]["revenue"]


async def test_report_as_html(client, worker) -> None:
    body = {"kind": "report", "params": {"user_id": "<b>x</b>", "days": 2, "format": "html", "pace_ms": 0}}
    job = await submit(client, body=body)
    await watch_to_end(client, job["id"])
    async with client.get(f"/api/jobs/{job['id']}/result") as response:
        assert response.headers["Content-Type"].startswith("text/html")
        page = await response.text()
    assert "&lt;b&gt;x&lt;/b&gt;" in page and "<b>x</b>" not in page


def upload_form(name: str, content: bytes, params: dict, kind: str = "convert") -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("kind", kind)
    form.add_field("params", json.dumps(params))
    form.add_field("file", content, filename=name, content_type="text/csv")
    return form


async def test_convert_turns_an_uploaded_csv_into_json_lines(client, worker, settings) -> None:
    lines = ["id,name,score"] + [f"{i},name {i},{i * 3}" for i in range(20_000)]
    content = ("\n".join(lines) + "\n").encode()
    async with client.post(
        "/api/jobs", data=upload_form("scores.csv", content, {"to": "jsonl", "pace_ms": 30})
    ) as response:
        assert response.status == 202, await response.text()
        job = await response.json()
    assert job["params"]["upload"] == "scores.csv"
    events = await watch_to_end(client, job["id"])
    assert events[-1]["type"] == "succeeded", events[-1]
    progress = [e["progress"] for e in events if e["type"] == "progress"]
    assert progress[-1]["total"] == len(content) and progress[-1]["current"] == len(content)
    # By bytes, as it goes: paced (30 ms a batch of 2,000 rows) to outlast the 10/s publish rate,
    # which a fast machine would otherwise beat.
    assert len(progress) > 1
    async with client.get(f"/api/jobs/{job['id']}/result") as response:
        assert response.headers["Content-Type"].startswith("application/jsonl")
        assert 'filename="scores.jsonl"' in response.headers["Content-Disposition"]
        rows = [json.loads(line) for line in (await response.text()).splitlines()]
    assert len(rows) == 20_000 and rows[7] == {"id": "7", "name": "name 7", "score": "21"}
    # What an operator reads of it: the job's log stream.
    async with client.get(f"/api/jobs/{job['id']}/output/log") as response:
        log = await response.text()
    assert "reading scores.csv as csv, to write scores.jsonl" in log
    assert log.splitlines()[-1].endswith("INFO converted 20000 rows from csv to jsonl")


async def test_convert_rejects_missing_and_oversized_uploads_leaving_nothing(
    aiohttp_client, settings, redis
) -> None:
    from jobcast.server.app import create_app

    client = await aiohttp_client(create_app(settings.model_copy(update={"max_upload_bytes": 4096})))
    problem = await post_json(client, "/api/jobs", {"kind": "convert", "params": {}}, status=422)
    assert problem["errors"][0]["field"] == "file"
    async with client.post("/api/jobs", data=upload_form("big.csv", b"a,b\n" * 5000, {})) as response:
        assert response.status == 413
        assert response.headers["Content-Type"] == "application/problem+json"
    assert [k async for k in redis.scan_iter(f"{settings.key_prefix}:job:*")] == []
    assert not settings.files_dir.exists() or list(settings.files_dir.iterdir()) == []


async def test_aggregate_runs_in_the_process_pool_with_progress(client, spawn) -> None:
    # A fast machine aggregates this in about the 10/s publish interval: a higher rate lets the
    # test see progress from the pool as it goes.
    spawn("worker", JOBCAST_CPU_PROCESSES="2", JOBCAST_PROGRESS_RATE_HZ="1000")
    params = {"rows": 300_000, "groups": 4, "chunk_rows": 30_000, "seed": 7}
    job = await submit(client, body={"kind": "aggregate", "params": params})
    events = await watch_to_end(client, job["id"])
    assert events[-1]["type"] == "succeeded", events[-1]
    steps = progress_of(events)
    assert steps == sorted(steps) and steps[-1] == 300_000 and len(steps) >= 2
    result = events[-1]["result"]
    assert result["rows"] == 300_000
    groups = result["groups"]
    assert sum(g["count"] for g in groups.values()) == 300_000
    for name, g in groups.items():
        # Gaussian around 100 + 10 * group with sigma 15.
        assert abs(g["mean"] - (100 + 10 * int(name))) < 1 and 14 < g["stddev"] < 16
    assert await get_json(client, f"/api/jobs/{job['id']}/result") == result
    async with client.get(f"/api/jobs/{job['id']}/output/log") as response:
        log = (await response.text()).splitlines()
    assert log[0].endswith("INFO split 300000 rows into 10 chunks on the process pool")
    assert log[-1].endswith("INFO aggregated 300000 rows into 4 groups")


async def test_result_of_an_unfinished_job_is_409(client) -> None:
    job = await submit(client, body={"kind": "demo", "params": {}})
    problem = await get_json(client, f"/api/jobs/{job['id']}/result", status=409)
    assert "queued" in problem["detail"]


async def test_the_articles_reports_api_keeps_working(client, worker) -> None:
    async with client.post("/reports", json={"userId": "u7", "reportType": "Activity"}) as response:
        assert response.status == 202
        body = await response.json()
        location = response.headers["Location"]
    assert body["status"] == "Processing initiated" and location == f"/reports/status/{body['correlationId']}"
    events = await watch_to_end(client, body["correlationId"])
    assert events[-1]["type"] == "succeeded"
    status = await get_json(client, location)
    assert status["state"] == "succeeded" and status["params"]["user_id"] == "u7"
    assert status["params"]["report_type"] == "activity"
    pascal = await post_json(
        client, "/reports", {"UserId": "u8", "ReportType": "usage", "CorrelationId": "x"}, status=202
    )
    assert (await get_json(client, pascal["statusUrl"]))["params"]["user_id"] == "u8"
    problem = await post_json(client, "/reports", {"userId": "u9", "reportType": "weather"}, status=422)
    assert problem["errors"][0]["field"] == "reportType"


async def test_a_retried_conversion_links_its_upload_instead_of_copying_it(client, worker, settings) -> None:
    import os

    from jobcast.files.local import FileStore

    # A file whose format cannot be told fails for good; its retry reuses the upload.
    async with client.post("/api/jobs", data=upload_form("data.txt", b"a,b\n1,2\n", {})) as response:
        assert response.status == 202, await response.text()
        job = await response.json()
    assert (await watch_to_end(client, job["id"]))[-1]["type"] == "failed"
    retried = await post_json(client, f"/api/jobs/{job['id']}/retry", status=202)
    files = FileStore(settings.files_dir)
    old, new = (files.job(j["id"]).upload_path("data.txt") for j in (job, retried))
    assert os.stat(old).st_ino == os.stat(new).st_ino and os.stat(new).st_nlink == 2


def test_every_string_param_of_the_builtin_kinds_is_bounded() -> None:
    from jobcast.registry import discover_kinds

    def strings(schema: dict, path: str) -> list[str]:
        found = []
        if schema.get("type") == "string" and "enum" not in schema and "maxLength" not in schema:
            found.append(path)
        for name, sub in schema.get("properties", {}).items():
            found += strings(sub, f"{path}.{name}")
        for sub in schema.get("anyOf", []):
            found += strings(sub, path)
        return found

    unbounded = [
        p for kind in discover_kinds("").values() for p in strings(kind.params.model_json_schema(), kind.name)
    ]
    assert unbounded == []


async def test_uploads_stop_while_the_disk_is_nearly_full(aiohttp_client, settings, redis) -> None:
    from jobcast.server.app import create_app

    full = settings.model_copy(update={"min_free_disk_bytes": 1 << 60})  # more than any disk has
    client = await aiohttp_client(create_app(full))
    async with client.post("/api/jobs", data=upload_form("a.csv", b"a,b\n1,2\n", {})) as response:
        assert response.status == 507 and response.headers["Content-Type"] == "application/problem+json"
    assert [k async for k in redis.scan_iter(f"{settings.key_prefix}:job:*")] == []


async def test_a_result_over_the_size_limit_fails_the_job_and_is_removed(client, spawn, settings) -> None:
    from jobcast.files.local import FileStore

    spawn("worker", JOBCAST_MAX_RESULT_BYTES="2048")
    lines = ["id,name"] + [f"{i},name {i}" for i in range(500)]  # about 10 KB of JSON Lines out
    form = upload_form("big.csv", ("\n".join(lines) + "\n").encode(), {})
    async with client.post("/api/jobs", data=form) as response:
        job = await response.json()
    events = await watch_to_end(client, job["id"])
    assert events[-1]["type"] == "failed" and "over the 2048-byte limit" in events[-1]["error"]["message"]
    assert not FileStore(settings.files_dir).job(job["id"]).results.exists() or not any(
        FileStore(settings.files_dir).job(job["id"]).results.iterdir()
    )
