"""Uploads and results in S3-compatible storage, against a real S3 server on loopback (moto's
standalone server, started here): a web process and a worker that share no disk run a conversion
end to end, results stream or redirect to a presigned URL, a retry reuses the upload, and
retention deletes from the bucket."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiobotocore.session import get_session

from jobcast.files.storage import S3Storage
from jobcast.redis.embedded import free_port
from tests.helpers import wait_for, watch_to_end

BUCKET = "jobcast-test"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "test-key",
    "AWS_SECRET_ACCESS_KEY": "test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture
async def s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[dict[str, str]]:
    port = free_port()
    server = await asyncio.create_subprocess_exec(
        Path(sys.executable).parent / "moto_server", "-H", "127.0.0.1", "-p", str(port),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    endpoint = f"http://127.0.0.1:{port}"
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    try:
        async with get_session().create_client("s3", endpoint_url=endpoint) as client:

            async def up() -> bool:
                try:
                    await client.create_bucket(Bucket=BUCKET)
                    return True
                except Exception:
                    return False

            await wait_for(up, what="the S3 server")
        yield {
            "JOBCAST_STORAGE": "s3",
            "JOBCAST_S3_BUCKET": BUCKET,
            "JOBCAST_S3_ENDPOINT_URL": endpoint,
            **CREDENTIALS,
        }
    finally:
        server.terminate()
        await server.wait()


async def objects(env: dict[str, str]) -> list[str]:
    async with get_session().create_client("s3", endpoint_url=env["JOBCAST_S3_ENDPOINT_URL"]) as client:
        answer = await client.list_objects_v2(Bucket=BUCKET)
        return sorted(o["Key"] for o in answer.get("Contents", []))


def upload(content: bytes, name: str = "rows.csv") -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("kind", "convert")
    form.add_field("params", json.dumps({"to": "jsonl"}))
    form.add_field("file", content, filename=name, content_type="text/csv")
    return form


async def test_a_web_and_a_worker_sharing_no_disk_convert_through_s3(
    s3, spawn, tmp_path: Path, settings
) -> None:
    web_files, worker_files = tmp_path / "web-files", tmp_path / "worker-files"
    web = spawn("web", JOBCAST_FILES_DIR=str(web_files), **s3)
    presigning = spawn("web", JOBCAST_FILES_DIR=str(web_files), JOBCAST_S3_PRESIGN_S="60", **s3)
    spawn("worker", JOBCAST_FILES_DIR=str(worker_files), **s3)
    await web.wait_http()
    await presigning.wait_http()
    content = b"id,name\n" + b"".join(b"%d,name %d\n" % (i, i) for i in range(3000))
    async with aiohttp.ClientSession(web.url) as session:
        async with session.post("/api/jobs", data=upload(content)) as response:
            assert response.status == 202, await response.text()
            job = await response.json()
        events = await watch_to_end(session, job["id"])
        assert events[-1]["type"] == "succeeded", events[-1]
        stored = await objects(s3)
        assert (
            f"jobs/{job['id']}/upload/rows.csv" in stored and f"jobs/{job['id']}/result/rows.jsonl" in stored
        )
        # Streamed from the bucket through the web process...
        async with session.get(f"/api/jobs/{job['id']}/result") as response:
            assert (
                response.status == 200 and 'filename="rows.jsonl"' in response.headers["Content-Disposition"]
            )
            rows = [json.loads(line) for line in (await response.text()).splitlines()]
        assert len(rows) == 3000 and rows[7] == {"id": "7", "name": "name 7"}
    # ...or as a redirect to a presigned URL.
    async with aiohttp.ClientSession() as session:
        result_url = f"{presigning.url}/api/jobs/{job['id']}/result"
        async with session.get(result_url, allow_redirects=False) as response:
            assert response.status == 307 and response.headers["Location"].startswith(
                s3["JOBCAST_S3_ENDPOINT_URL"]
            )
        async with session.get(result_url) as response:
            assert response.status == 200 and len((await response.text()).splitlines()) == 3000
    # No process kept a local copy: the bucket is the store.
    assert not [p for p in web_files.rglob("*") if p.is_file()]
    assert not [p for p in worker_files.rglob("*") if p.is_file()]


async def test_a_retry_reuses_the_upload_and_retention_deletes_from_the_bucket(
    s3, spawn, tmp_path: Path, settings
) -> None:
    web = spawn("web", **s3)
    spawn("worker", **s3)
    await web.wait_http()
    async with aiohttp.ClientSession(web.url) as session:
        # A file whose format cannot be told fails for good; its retry gets the same upload.
        async with session.post("/api/jobs", data=upload(b"a,b\n1,2\n", "rows.txt")) as response:
            job = await response.json()
        assert (await watch_to_end(session, job["id"]))[-1]["type"] == "failed"
        async with session.post(f"/api/jobs/{job['id']}/retry") as response:
            assert response.status == 202, await response.text()
            again = await response.json()
        assert (await watch_to_end(session, again["id"]))[-1]["type"] == "failed"
    assert {f"jobs/{job['id']}/upload/rows.txt", f"jobs/{again['id']}/upload/rows.txt"} <= set(
        await objects(s3)
    )
    # Past the retention, the files go from the bucket.
    storage = S3Storage(*_files_and_settings(settings, s3))
    await storage.start()
    try:
        swept = await storage.sweep(retention_s=-1)
    finally:
        await storage.close()
    assert {job["id"], again["id"]} <= set(swept)
    assert await objects(s3) == []


def _files_and_settings(settings: Any, env: dict[str, str]) -> tuple[Any, Any]:
    from jobcast.files.local import FileStore

    configured = settings.model_copy(
        update={"storage": "s3", "s3_bucket": BUCKET, "s3_endpoint_url": env["JOBCAST_S3_ENDPOINT_URL"]}
    )
    return FileStore(configured.files_dir), configured
