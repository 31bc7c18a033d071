"""Where uploads and result files are kept between processes: a directory every process mounts
(`JOBCAST_STORAGE=directory`, the default), or S3-compatible object storage (`s3`).

Processes always work on local files, in one directory per job under `files_dir` (jobcast/files/local.py):
the web writes an upload there, the job reads it and writes its result there. With the directory
backend those files are the store itself: on several hosts, `files_dir` is a shared volume (NFS,
EFS, a ReadWriteMany volume). With S3, `files_dir` is each host's scratch space: the web puts an
upload into the bucket, the worker fetches it before the job runs and puts the result after, and
each side deletes its copy. Results are served from the bucket, streamed through the web process
or, with `JOBCAST_S3_PRESIGN_S`, as a redirect to a presigned URL.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from jobcast.files.local import FileStore, safe_name, tree_size
from jobcast.settings import Settings

log = logging.getLogger(__name__)

CHUNK = 8 * 1024 * 1024  # S3's multipart parts (5 MiB at least), and download reads


@dataclass(frozen=True, slots=True)
class LocalFile:
    path: Path


@dataclass(frozen=True, slots=True)
class Redirect:
    url: str


@dataclass(frozen=True, slots=True)
class RemoteFile:
    size: int
    chunks: AsyncIterator[bytes]


ResultSource = LocalFile | Redirect | RemoteFile


class Storage(Protocol):
    files: FileStore

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def keep_uploads(self, job_id: str) -> int:
        """Store the job's local uploads; their size in bytes (for the owner's quota)."""
        ...

    async def copy_uploads(self, from_job: str, to_job: str) -> None:
        """A retry's uploads: the original's, never copied byte by byte where avoidable."""
        ...

    async def fetch_uploads(self, job_id: str) -> None:
        """Make the job's uploads local before it runs."""
        ...

    async def keep_result(self, job_id: str, name: str) -> None:
        """Store the job's local result file `name`."""
        ...

    async def release(self, job_id: str) -> None:
        """The attempt is over: drop local copies that are not the store."""
        ...

    async def open_result(self, job_id: str, name: str) -> ResultSource | None:
        """Where to serve the result from; None when it is gone."""
        ...

    async def delete(self, job_ids: list[str]) -> None: ...

    async def sweep(self, retention_s: float) -> list[str]:
        """Delete the files of jobs older than the retention; their ids."""
        ...


class DirectoryStorage:
    """The local (or shared) directory is the store."""

    def __init__(self, files: FileStore) -> None:
        self.files = files

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def keep_uploads(self, job_id: str) -> int:
        return await asyncio.to_thread(tree_size, self.files.job(job_id).uploads)

    async def copy_uploads(self, from_job: str, to_job: str) -> None:
        source = self.files.job(from_job).uploads
        if source.is_dir():
            # Hard links, not copies: a retry costs no disk (the files are never written to).
            target = self.files.job(to_job).uploads
            await asyncio.to_thread(shutil.copytree, source, target, copy_function=os.link)

    async def fetch_uploads(self, job_id: str) -> None:
        return None

    async def keep_result(self, job_id: str, name: str) -> None:
        return None

    async def release(self, job_id: str) -> None:
        return None

    async def open_result(self, job_id: str, name: str) -> ResultSource | None:
        path = self.files.job(job_id).results / safe_name(name)
        return LocalFile(path) if path.is_file() else None

    async def delete(self, job_ids: list[str]) -> None:
        await asyncio.to_thread(self.files.remove, job_ids)

    async def sweep(self, retention_s: float) -> list[str]:
        return await asyncio.to_thread(self.files.sweep, retention_s)


class S3Storage:
    """An S3-compatible bucket is the store; `files_dir` is scratch space. Objects are named
    `<prefix><job id>/upload/<name>` and `<prefix><job id>/result/<name>`. Credentials come from
    the usual AWS sources (environment, config files, instance roles), never from jobcast's own
    settings, so they never appear in its configuration or logs."""

    def __init__(self, files: FileStore, settings: Settings) -> None:
        self.files = files
        self.bucket = settings.s3_bucket
        self.prefix = settings.s3_prefix
        self.presign_s = settings.s3_presign_s
        self._endpoint = settings.s3_endpoint_url
        self._region = settings.s3_region
        self._stack = AsyncExitStack()
        self._client: Any = None

    async def start(self) -> None:
        from aiobotocore.session import get_session  # an optional dependency: jobcast[s3]

        session = get_session()
        self._client = await self._stack.enter_async_context(
            session.create_client("s3", endpoint_url=self._endpoint, region_name=self._region)
        )

    async def close(self) -> None:
        await self._stack.aclose()

    def _key(self, job_id: str, kind: str, name: str = "") -> str:
        return f"{self.prefix}{job_id}/{kind}/{name}"

    async def _keys(self, prefix: str) -> list[dict[str, Any]]:
        objects: list[dict[str, Any]] = []
        paginator = self._client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            objects += page.get("Contents", [])
        return objects

    async def _put(self, key: str, path: Path) -> int:
        """Upload a file a part at a time (a large upload never sits in memory); its size."""
        size = (await asyncio.to_thread(path.stat)).st_size
        if size <= CHUNK:
            await self._client.put_object(
                Bucket=self.bucket, Key=key, Body=await asyncio.to_thread(path.read_bytes)
            )
            return size
        upload = await self._client.create_multipart_upload(Bucket=self.bucket, Key=key)
        parts = []
        try:
            with path.open("rb") as f:
                for number in range(1, (size + CHUNK - 1) // CHUNK + 1):
                    body = await asyncio.to_thread(f.read, CHUNK)
                    part = await self._client.upload_part(
                        Bucket=self.bucket, Key=key, UploadId=upload["UploadId"], PartNumber=number, Body=body
                    )
                    parts.append({"ETag": part["ETag"], "PartNumber": number})
            await self._client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
            )
        except BaseException:
            await self._client.abort_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload["UploadId"]
            )
            raise
        return size

    async def keep_uploads(self, job_id: str) -> int:
        local = self.files.job(job_id).uploads
        total = 0
        for path in sorted(local.iterdir()) if local.is_dir() else []:
            total += await self._put(self._key(job_id, "upload", path.name), path)
        await asyncio.to_thread(shutil.rmtree, self.files.job(job_id).root, True)
        return total or sum(o["Size"] for o in await self._keys(self._key(job_id, "upload")))

    async def copy_uploads(self, from_job: str, to_job: str) -> None:
        for obj in await self._keys(self._key(from_job, "upload")):
            name = obj["Key"].rsplit("/", 1)[1]
            await self._client.copy_object(
                Bucket=self.bucket,
                Key=self._key(to_job, "upload", name),
                CopySource={"Bucket": self.bucket, "Key": obj["Key"]},
            )

    async def fetch_uploads(self, job_id: str) -> None:
        local = self.files.job(job_id).uploads
        local.mkdir(parents=True, exist_ok=True)
        for obj in await self._keys(self._key(job_id, "upload")):
            answer = await self._client.get_object(Bucket=self.bucket, Key=obj["Key"])
            path = local / safe_name(obj["Key"].rsplit("/", 1)[1])
            body = answer["Body"]
            try:
                with path.open("wb") as f:
                    while chunk := await body.read(CHUNK):
                        await asyncio.to_thread(f.write, chunk)
            finally:
                body.close()

    async def keep_result(self, job_id: str, name: str) -> None:
        await self._put(self._key(job_id, "result", name), self.files.job(job_id).results / safe_name(name))

    async def release(self, job_id: str) -> None:
        await asyncio.to_thread(shutil.rmtree, self.files.job(job_id).root, True)

    async def open_result(self, job_id: str, name: str) -> ResultSource | None:
        key = self._key(job_id, "result", safe_name(name))
        try:
            head = await self._client.head_object(Bucket=self.bucket, Key=key)
        except self._client.exceptions.ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        if self.presign_s:
            url = await self._client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=self.presign_s
            )
            return Redirect(url)
        return RemoteFile(int(head["ContentLength"]), self._chunks(key))

    async def _chunks(self, key: str) -> AsyncIterator[bytes]:
        answer = await self._client.get_object(Bucket=self.bucket, Key=key)
        body = answer["Body"]
        try:
            while chunk := await body.read(64 * 1024):
                yield chunk
        finally:
            body.close()

    async def delete(self, job_ids: list[str]) -> None:
        for job_id in job_ids:
            objects = [{"Key": o["Key"]} for o in await self._keys(f"{self.prefix}{job_id}/")]
            if objects:
                await self._client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True}
                )
        await asyncio.to_thread(self.files.remove, job_ids)

    async def sweep(self, retention_s: float) -> list[str]:
        horizon = time.time() - retention_s
        newest: dict[str, float] = {}
        for obj in await self._keys(self.prefix):
            job_id = obj["Key"][len(self.prefix) :].split("/", 1)[0]
            newest[job_id] = max(newest.get(job_id, 0.0), obj["LastModified"].timestamp())
        expired = [job_id for job_id, at in newest.items() if at < horizon]
        await self.delete(expired)
        return expired + await asyncio.to_thread(self.files.sweep, retention_s)


def create_storage(settings: Settings) -> Storage:
    files = FileStore(settings.files_dir)
    if settings.storage == "s3":
        return S3Storage(files, settings)
    return DirectoryStorage(files)
