"""A Python client for a jobcast server: submit, follow, cancel, retry, list, download.

    async with Client("http://localhost:8000") as jobs:
        job = await jobs.submit("report", {"user_id": "u1"})
        async for event in jobs.watch(job["id"]):
            print(event.type, event.percent)
        async for text in jobs.output(job["id"]):  # what the job writes, as it writes it
            print(text, end="")

`watch` reconnects with backoff and `Last-Event-ID` whenever the stream drops (a web restart, a
proxy timeout), never yields a seq twice, and ends after the job's terminal event. `SyncClient`
is the same for scripts that do not run an event loop. Errors are `ApiError`s (`JobcastError`s) carrying the
server's problem document.
"""

from __future__ import annotations

import asyncio
import codecs
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiohttp

from jobcast.backoff import Backoff
from jobcast.errors import JobcastError
from jobcast.output_text import OutputText
from jobcast.protocol import TERMINAL_STATES, dumps, loads


class ApiError(JobcastError):
    """The server answered with an error: `status`, and its problem+json body as `problem`."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        super().__init__(f"{status}: {problem.get('detail') or problem.get('title') or 'error'}")
        self.status = status
        self.problem = problem


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One event of a job: `type` (`queued`, `progress`, …, or `snapshot`), its `seq` and the
    whole event as the server sent it (`data`)."""

    type: str
    seq: int
    data: dict[str, Any] = field(repr=False)

    @property
    def state(self) -> str:
        return str(self.data.get("state"))

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def percent(self) -> float | None:
        return (self.data.get("progress") or {}).get("percent")

    @property
    def message(self) -> str | None:
        return (self.data.get("progress") or {}).get("message")

    @property
    def waiting(self) -> str | None:
        """Why the job, due, does not start yet (a `queue` event or a snapshot)."""
        return self.data.get("waiting")

    @property
    def waiting_since(self) -> str | None:
        """Since when `waiting` holds it (ISO 8601)."""
        return self.data.get("waiting_since")

    @property
    def ahead(self) -> int | None:
        """A `queue` event's jobs that start before this one (None: not in line)."""
        return self.data.get("ahead")

    @property
    def eta_s(self) -> float | None:
        """A `queue` event's estimate of the seconds until the job starts."""
        return self.data.get("eta_s")

    @property
    def children(self) -> dict[str, int] | None:
        """A parent's (or a batch's) children by state, on its rolled-up `progress` events and its
        snapshot: `total`, `waiting`, `running`, `succeeded`, `failed`, `cancelled`."""
        return self.data.get("children")


@dataclass(frozen=True, slots=True)
class SseMessage:
    """One Server-Sent Events message, as the wire has it."""

    id: str | None
    event: str
    data: str


async def sse_messages(content: aiohttp.StreamReader) -> AsyncIterator[SseMessage]:
    """Parse an SSE stream (comments and `retry:` lines are skipped)."""
    fields: dict[str, str] = {}
    data: list[str] = []
    async for raw in content:
        line = raw.decode().rstrip("\r\n")
        if line == "":
            if data:
                yield SseMessage(fields.get("id"), fields.get("event", "message"), "\n".join(data))
            fields, data = {}, []
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                data.append(value)
            else:
                fields[name] = value


_FILENAME = re.compile(r'filename="?([^";]+)"?')


class Client:
    """An async client of one jobcast server (`base_url`, e.g. `http://localhost:8000`)."""

    def __init__(
        self,
        base_url: str,
        *,
        session: aiohttp.ClientSession | None = None,
        headers: dict[str, str] | None = None,
        timeout_s: float = 30.0,
        stream_idle_s: float = 60.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._own_session = session is None
        self._session = session
        self._headers = {"Accept": "application/json", **(headers or {})}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        # A stream lasts as long as its job; only silence longer than the server's heartbeat
        # (15 s by default) means the connection is dead.
        self._stream_timeout = aiohttp.ClientTimeout(total=None, sock_read=stream_idle_s)

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(headers=self._headers, timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def url(self, path: str) -> str:
        return self.base_url + path

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        async with self.session.request(method, self.url(path), **kwargs) as response:
            return await _read(response)

    async def submit(
        self,
        kind: str,
        params: dict[str, Any] | None = None,
        *,
        priority: str | None = None,
        delay_s: float | None = None,
        idempotency_key: str | None = None,
        unique_key: str | None = None,
        upload: str | Path | None = None,
    ) -> dict[str, Any]:
        """Submit a job; returns its snapshot (`id`, `state`, `links`, …). `unique_key`: while a
        job of the kind with this key waits or runs, get it instead of a new one. `upload` sends a
        file for kinds that take one (multipart)."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        body: dict[str, Any] = {"kind": kind, "params": params or {}}
        if priority is not None:
            body["priority"] = priority
        if delay_s is not None:
            body["delay_s"] = delay_s
        if unique_key is not None:
            body["unique_key"] = unique_key
        if upload is None:
            return await self._json("POST", "/api/jobs", json=body, headers=headers)
        form = aiohttp.FormData()
        for name, value in body.items():
            form.add_field(name, value if isinstance(value, str) else dumps(value).decode())
        path = Path(upload)
        # Local file work runs in a thread: a slow disk must not stall the caller's event loop.
        file = await asyncio.to_thread(path.open, "rb")
        try:
            form.add_field("file", file, filename=path.name)
            return await self._json("POST", "/api/jobs", data=form, headers=headers)
        finally:
            file.close()

    async def submit_many(self, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Submit many jobs in one request (`POST /api/jobs/batch`; each item as `submit` takes it:
        `kind`, `params`, `priority`, `delay_s`, `idempotency_key`). Returns one result per job, in
        order: `{"index", "status", "job"}` (202 created, 200 an earlier job with the key) or
        `{"index", "status", "problem"}` (why that one made no job); one bad item sinks no other."""
        answer = await self._json("POST", "/api/jobs/batch", json={"jobs": jobs})
        return answer["results"]

    async def submit_tree(
        self,
        kind: str,
        params: dict[str, Any] | None = None,
        *,
        children: list[dict[str, Any]] | None = None,
        then: dict[str, Any] | None = None,
        priority: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Submit a tree: a job that runs once its `children` have ended (each `{"kind", "params",
        "children", "then", "fail_fast"}`), or a chain (`then`: the job after this one; the
        answer is the chain's last). All of it is made at once, or refused with one ApiError."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        body: dict[str, Any] = {"kind": kind, "params": params or {}}
        if children:
            body["children"] = children
        if then is not None:
            body["then"] = then
        if priority is not None:
            body["priority"] = priority
        return await self._json("POST", "/api/jobs", json=body, headers=headers)

    async def submit_batch(
        self,
        items: list[dict[str, Any]],
        *,
        completion: dict[str, Any] | None = None,
        priority: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Submit a batch: its items (`{"kind", "params"}` each) and a `completion` job that runs
        once they have all ended and reads their outcomes. Returns the batch (`batch`); `watch`
        its `id` for its counts and bar as they change, and its end."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        body: dict[str, Any] = {"items": items}
        if completion is not None:
            body["completion"] = completion
        if priority is not None:
            body["priority"] = priority
        made = await self._json("POST", "/api/batches", json=body, headers=headers)
        return await self.batch(made["id"])

    async def batch(self, batch_id: str) -> dict[str, Any]:
        """A batch as it is now: `state`, `counts` by state, `progress`, `result`."""
        return await self._json("GET", f"/api/batches/{batch_id}")

    async def children(self, job_id: str) -> AsyncIterator[dict[str, Any]]:
        """A parent's (or a batch's) children's snapshots, in the order they were made."""
        page: str | None = f"/api/jobs/{job_id}/children?limit=500"
        while page is not None:
            answer = await self._json("GET", page)
            for child in answer["children"]:
                yield child
            page = answer.get("next")

    async def get(self, job_id: str) -> dict[str, Any]:
        return await self._json("GET", f"/api/jobs/{job_id}")

    async def stats(self) -> dict[str, Any]:
        """The counters (admins): jobs waiting and delayed per priority, running, finished in the
        last hour, the live workers and what they serve, the paused kinds."""
        return await self._json("GET", "/api/stats")

    async def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a job: `state` is `cancelled`, or `cancel_requested` is true while it stops."""
        return await self._json("POST", f"/api/jobs/{job_id}/cancel")

    async def retry(self, job_id: str) -> dict[str, Any]:
        """Retry a failed or cancelled job; returns the new job's snapshot."""
        return await self._json("POST", f"/api/jobs/{job_id}/retry")

    async def bulk(
        self, action: str, *, ids: list[str] | None = None, filter: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """Retry, cancel or delete many jobs (`ids`, or every job `filter` matches; admins): returns
        the bulk job's snapshot. Watch it like any job; its result says what it did."""
        body: dict[str, Any] = {"action": action}
        body.update({"ids": ids} if ids is not None else {"filter": filter or {}})
        return await self._json("POST", "/api/bulk", json=body)

    async def list(
        self,
        *,
        state: str | None = None,
        kind: str | None = None,
        priority: str | None = None,
        owner: str | None = None,
        page_size: int = 50,
    ) -> AsyncIterator[dict[str, Any]]:
        """Every job, newest first (following the server's cursors), optionally filtered (`owner`:
        admins only)."""
        query: dict[str, str] = {"limit": str(page_size)}
        filters = {"state": state, "kind": kind, "priority": priority, "owner": owner}
        query.update({name: value for name, value in filters.items() if value})
        while True:
            page = await self._json("GET", "/api/jobs", params=query)
            for job in page["jobs"]:
                yield job
            if not page.get("next_cursor"):
                return
            query["cursor"] = page["next_cursor"]

    async def result(self, job_id: str, dest: str | Path = ".") -> Any:
        """A succeeded job's result: its JSON, or, for a file, the file streamed into `dest` (a
        directory keeps the server's file name) and its path returned."""
        async with self.session.get(self.url(f"/api/jobs/{job_id}/result")) as response:
            if response.status != 200 or response.content_type == "application/json":
                return await _read(response)
            target = Path(dest)
            if await asyncio.to_thread(target.is_dir):
                match = _FILENAME.search(response.headers.get("Content-Disposition", ""))
                target = target / Path(match.group(1) if match else f"{job_id}.result").name
            out = await asyncio.to_thread(target.open, "wb")
            try:
                async for chunk in response.content.iter_chunked(256 * 1024):
                    await asyncio.to_thread(out.write, chunk)
            finally:
                out.close()
            return target

    async def output(
        self, job_id: str, stream: str = "output", *, attempt: int | None = None
    ) -> AsyncIterator[str]:
        """The text of one of the job's output streams as it is written, whole, in order and
        once, across dropped connections (it follows `watch`). It follows one attempt: the one
        running (or the next to start, or `attempt`), and ends with it. A retried job's next
        attempt writes its output afresh: follow it with another call."""
        text = OutputText(stream, attempt)
        decoder = codecs.getincrementaldecoder("utf-8")()
        async for event in self.watch(job_id):
            new = text.feed(event.type, event.data)
            if isinstance(new, dict):  # too long for the snapshot: read what is lacking
                new = await self._output_bytes(job_id, stream, text, int(new["length"]))
            if new:
                yield decoder.decode(new)
            if text.over:
                return

    async def _output_bytes(self, job_id: str, stream: str, text: OutputText, length: int) -> bytes:
        query = {"attempt": str(text.attempt), "offset": str(text.offset), "end": str(length)}
        async with self.session.get(
            self.url(f"/api/jobs/{job_id}/output/{stream}"), params=query
        ) as response:
            if response.status != 200:
                await _read(response)
            data = await response.read()
        text.offset += len(data)
        return data

    async def watch(
        self, job_id: str, *, last_event_id: int | None = None, queue_places: bool = False
    ) -> AsyncIterator[JobEvent]:
        """The job's events as they happen, each once and in order, to its terminal event.

        With `queue_places`, also the waiting job's place in line as it changes (`queue` events,
        `event.ahead` and `event.eta_s`): live only, with seq 0.

        Without `last_event_id` the first event is a `snapshot`; with it, the events after it.
        A stream that drops is resumed from the last seq; when history no longer reaches back
        that far, the server sends a `snapshot` (it stands for everything up to its seq)."""
        last = last_event_id
        backoff = Backoff(0.25, 15.0)  # as jobcast.js: reset once a connection delivers
        url = self.url(f"/api/jobs/{job_id}/events")
        while True:
            headers = {"Accept": "text/event-stream"} | ({} if last is None else {"Last-Event-ID": str(last)})
            try:
                async with self.session.get(url, headers=headers, timeout=self._stream_timeout) as response:
                    if response.status == 204:
                        return  # the terminal event was already seen
                    if response.status != 200:
                        await _read(response)  # raises ApiError
                    async for message in sse_messages(response.content):
                        event = JobEvent(message.event, int(message.id or 0), loads(message.data))
                        if message.id is None:
                            # Live only (a waiting job's place in line): no seq, no resume position.
                            if queue_places:
                                yield event
                            continue
                        if not _is_new(event, last):
                            continue
                        last = event.seq
                        backoff.reset()
                        yield event
                        if event.terminal:
                            return
            except ApiError as e:
                if e.status < 500:
                    raise
            except (aiohttp.ClientError, TimeoutError):
                pass  # dropped: resume below
            await asyncio.sleep(backoff.next_s())


def _is_new(event: JobEvent, last: int | None) -> bool:
    """Never twice, never backwards: a snapshot may repeat the last seq, events may not."""
    return last is None or (event.seq >= last if event.type == "snapshot" else event.seq > last)


async def _read(response: aiohttp.ClientResponse) -> Any:
    text = await response.text()
    body = loads(text) if text else None
    if response.status >= 400:
        problem = body if isinstance(body, dict) else {"detail": text}
        raise ApiError(response.status, problem)
    return body


class SyncClient:
    """`Client` for scripts without an event loop: the same methods, blocking.

    with SyncClient("http://localhost:8000") as jobs:
        job = jobs.submit("demo", {"steps": 5})
        for event in jobs.watch(job["id"]):
            print(event.type, event.percent)
    """

    def __init__(self, base_url: str, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._client = Client(base_url, **options)

    def _run(self, coro: Any) -> Any:
        return self._loop.run_until_complete(coro)

    def close(self) -> None:
        self._run(self._client.close())
        self._loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def submit(self, kind: str, params: dict[str, Any] | None = None, **options: Any) -> dict[str, Any]:
        return self._run(self._client.submit(kind, params, **options))

    def submit_many(self, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self._run(self._client.submit_many(jobs))

    def submit_tree(self, kind: str, params: dict[str, Any] | None = None, **options: Any) -> dict[str, Any]:
        return self._run(self._client.submit_tree(kind, params, **options))

    def submit_batch(self, items: list[dict[str, Any]], **options: Any) -> dict[str, Any]:
        return self._run(self._client.submit_batch(items, **options))

    def batch(self, batch_id: str) -> dict[str, Any]:
        return self._run(self._client.batch(batch_id))

    def children(self, job_id: str) -> Iterator[dict[str, Any]]:
        return self._iterate(self._client.children(job_id))

    def get(self, job_id: str) -> dict[str, Any]:
        return self._run(self._client.get(job_id))

    def stats(self) -> dict[str, Any]:
        return self._run(self._client.stats())

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._run(self._client.cancel(job_id))

    def retry(self, job_id: str) -> dict[str, Any]:
        return self._run(self._client.retry(job_id))

    def result(self, job_id: str, dest: str | Path = ".") -> Any:
        return self._run(self._client.result(job_id, dest))

    def bulk(self, action: str, **selection: Any) -> dict[str, Any]:
        return self._run(self._client.bulk(action, **selection))

    def list(self, **filters: Any) -> Iterator[dict[str, Any]]:
        return self._iterate(self._client.list(**filters))

    def watch(
        self, job_id: str, *, last_event_id: int | None = None, queue_places: bool = False
    ) -> Iterator[JobEvent]:
        return self._iterate(
            self._client.watch(job_id, last_event_id=last_event_id, queue_places=queue_places)
        )

    def output(self, job_id: str, stream: str = "output", *, attempt: int | None = None) -> Iterator[str]:
        return self._iterate(self._client.output(job_id, stream, attempt=attempt))

    def _iterate(self, stream: AsyncIterator[Any]) -> Iterator[Any]:
        try:
            while True:
                try:
                    yield self._run(anext(stream))
                except StopAsyncIteration:
                    return
        finally:
            self._run(stream.aclose())  # type: ignore[attr-defined]  # every stream here is an async generator
