"""Test helpers: SSE parsing, real jobcast processes, waiting on conditions."""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from jobcast.client.api import sse_messages
from jobcast.protocol import TERMINAL_STATES, Keys, Priority
from jobcast.redis.embedded import free_port

DEMO_SUBMIT = {"kind": "demo", "params": {"steps": 10, "step_ms": 20}}
CHECKOUT = Path(__file__).resolve().parent.parent


def checkout_copy(dest: Path) -> Path:
    """A copy of what git would commit (tracked and new files, not ignored ones): what a build
    sees on a fresh clone, with nothing lying around in the checkout sneaking in."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=CHECKOUT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for name in filter(None, listed.split("\0")):
        if (CHECKOUT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(CHECKOUT / name, dest / name)
    return dest


# The environment that turns places in line on for a `jobcast web` a test spawns (the fixtures
# leave them off: see tests/conftest.py).
PLACES = {"JOBCAST_QUEUE_PLACE_INTERVAL_S": "1"}


async def queued_ids(redis: Any, prefix: str) -> set[str]:
    """The ids waiting in the queue (every priority)."""
    keys = Keys(prefix)
    return {job_id.decode() for p in Priority for job_id in await redis.zrange(keys.queue(p), 0, -1)}


def demo(steps: int, step_ms: int) -> dict[str, Any]:
    """A submission body for the demo kind."""
    return {"kind": "demo", "params": {"steps": steps, "step_ms": step_ms}}


@dataclass
class SseEvent:
    id: int | str | None  # a job's event id is its seq; a feed event's is `<epoch>:<feed seq>`
    event: str
    data: dict[str, Any]


def _event_id(raw: str) -> int | str:
    return int(raw) if raw.isdigit() else raw


async def sse_events(response: aiohttp.ClientResponse) -> AsyncIterator[SseEvent]:
    """Parse an SSE stream into events (comments and `retry:` are skipped)."""
    async for message in sse_messages(response.content):
        event_id = None if message.id is None else _event_id(message.id)
        yield SseEvent(event_id, message.event, json.loads(message.data))


async def follow_sse(
    session: aiohttp.ClientSession,
    url: str,
    job_id: str,
    *,
    retry_s: float,
    read_timeout_s: float | None = None,
    seen: list[tuple[str, dict[str, Any]]] | None = None,
) -> tuple[list[tuple[str, dict[str, Any]]], int]:
    """An EventSource's view of a job across restarts, failovers and partitions: after a lost or
    refused connection it waits `retry_s` (EventSource's retry delay, not a synchronisation) and
    reconnects with Last-Event-ID (from a snapshot, its `last_event_id`), until the terminal
    event or a terminal snapshot. With `read_timeout_s`, a silent connection counts as lost.
    Returns the (event, data) pairs seen (appended to `seen` as they come, when given) and how
    many connections were answered."""
    seen = [] if seen is None else seen
    connections, last = 0, 0
    options: dict[str, Any] = {}
    if read_timeout_s is not None:
        options["timeout"] = aiohttp.ClientTimeout(total=None, sock_connect=3, sock_read=read_timeout_s)
    while True:
        headers = {"Last-Event-ID": str(last)}
        try:
            async with session.get(f"{url}/api/jobs/{job_id}/events", headers=headers, **options) as r:
                connections += 1
                if r.status == 200:
                    async for event in sse_events(r):
                        seen.append((event.event, event.data))
                        snapshot = event.event == "snapshot"
                        last = event.data["last_event_id" if snapshot else "seq"]
                        if (event.data["state"] if snapshot else event.event) in TERMINAL_STATES:
                            return seen, connections
        except (aiohttp.ClientError, TimeoutError):
            pass
        await asyncio.sleep(retry_s)


async def read_sse(
    session: aiohttp.ClientSession | Any,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    stop_after: int | None = None,
    timeout: float = 30,
) -> list[SseEvent]:
    """Events from `url` until the server ends the stream (or `stop_after` events)."""
    events: list[SseEvent] = []
    async with asyncio.timeout(timeout), session.get(url, headers=headers) as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"].startswith("text/event-stream")
        async for event in sse_events(response):
            events.append(event)
            if stop_after is not None and len(events) >= stop_after:
                break
    return events


async def submit(session: Any, url: str = "/api/jobs", body: Any = None, status: int = 202) -> dict[str, Any]:
    async with session.post(url, json=DEMO_SUBMIT if body is None else body) as response:
        text = await response.text()
        assert response.status == status, text
        return json.loads(text)


def assert_contiguous(events: list[SseEvent] | list[dict[str, Any]], start: int) -> None:
    """Seqs run start, start+1, ... with no gap and no duplicate."""
    seqs = [e.data["seq"] if isinstance(e, SseEvent) else e["seq"] for e in events]
    for i, seq in enumerate(seqs):
        assert seq == start + i, (
            f"expected seq {start + i} at position {i}, got {seqs[max(0, i - 3) : i + 3]}"
        )


def assert_watched_to_the_end(events: list[tuple[str, dict[str, Any]]]) -> None:
    """An EventSource's view ends with the job's success, and between snapshots has no gap and
    no duplicate."""
    kind, last = events[-1]
    assert (last["state"] if kind == "snapshot" else kind) == "succeeded"
    expected = None
    for kind, data in events:
        if kind == "snapshot":
            expected = data["last_event_id"] + 1
            continue
        assert expected is None or data["seq"] == expected, (kind, data["seq"], expected)
        expected = data["seq"] + 1


async def answers_ok(session: aiohttp.ClientSession, url: str) -> bool:
    """Whether GET `url` answers 200 now (False while nothing listens there yet)."""
    try:
        async with session.get(url) as response:
            return response.status == 200
    except aiohttp.ClientError:
        return False


async def progressed(session: Any, url: str, job_id: str, steps: int, attempt: int = 0) -> bool:
    """Whether the job has reached progress `steps` (in attempt `attempt` or a later one); False
    while its server does not answer (restarting, failing over)."""
    try:
        async with session.get(f"{url}/api/jobs/{job_id}") as response:
            if response.status != 200:
                return False
            job = await response.json()
    except aiohttp.ClientError:
        return False
    return bool(job["attempt"] >= attempt and (job["progress"]["current"] or 0) >= steps)


async def wait_for(predicate: Callable[[], Any], timeout: float = 20, what: str = "condition") -> Any:
    """Poll a cheap predicate (process state, a counter, a Redis read) until it holds."""
    deadline = time.monotonic() + timeout

    async def check() -> Any:
        value = predicate()
        return await value if inspect.isawaitable(value) else value

    while not (value := await check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
    return value


class JobcastProcess:
    """`jobcast web` or `jobcast worker` as a real process."""

    def __init__(
        self,
        command: str,
        env: dict[str, str],
        log_dir: Path,
        port: int | None = None,
        extra: tuple[str, ...] = (),
        python: str = sys.executable,
        cwd: Path | None = None,
        prefix: tuple[str, ...] = (),
        host: str = "127.0.0.1",
    ) -> None:
        self.command = command
        self.port = port
        self.env = env
        self.host = host
        # `prefix`: what runs the process (`ip netns exec <namespace>` for one in a namespace).
        args = [*prefix, python, "-m", "jobcast", command]
        if command in ("web", "dev"):
            self.port = port or free_port()
            args += ["--port", str(self.port)]
        args += extra
        self.log_path = log_dir / f"{command}-{self.port or os.getpid()}-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(args, env=env, stdout=self._log, stderr=subprocess.STDOUT, cwd=cwd)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def wait_http(self, timeout: float = 20) -> None:
        async with aiohttp.ClientSession() as session:

            async def ready() -> bool:
                assert self.process.poll() is None, f"{self.command} exited"
                return await answers_ok(session, self.url + "/readyz")

            try:
                await wait_for(ready, timeout, f"{self.command} to be ready")
            except AssertionError as e:
                raise AssertionError(f"{e}:\n{self.log()}") from None

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    async def wait_exit(self, timeout: float = 30) -> int:
        await wait_for(lambda: self.process.poll() is not None, timeout, f"{self.command} to exit")
        return self.process.returncode

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


async def clock_passes(moment: datetime) -> None:
    """Until this machine's clock, which stamps the scripts' scores, is past `moment`: what a test
    of time ranges waits for, rather than a guessed sleep."""
    await wait_for(lambda: datetime.now(UTC) > moment, timeout=5, what=f"the clock to pass {moment}")


async def watch_to_end(
    session: Any, job_id: str, base: str = "", timeout: float = 60
) -> list[dict[str, Any]]:
    """Every event of a job from its first (`queued`) to its terminal one, over SSE."""
    url = f"{base}/api/jobs/{job_id}/events"
    events = await read_sse(session, url, headers={"Last-Event-ID": "0"}, timeout=timeout)
    assert_contiguous(events, 1)
    return [e.data for e in events]


def lifecycle(events: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """(type, attempt) of every state change: the events but progress and output."""
    return [(e["type"], e["attempt"]) for e in events if e["type"] not in ("progress", "output")]


def attempts(n: int, end: str) -> list[tuple[str, int]]:
    """The lifecycle of a job that ran `n` attempts, each but the last ending in `retrying`, and
    then ended `end`: queued, started 1, retrying 1, ..., started n, end."""
    runs = [step for a in range(1, n) for step in (("started", a), ("retrying", a))]
    return [("queued", 0), *runs, ("started", n), (end, n)]


async def get_json(session: Any, url: str, status: int = 200) -> Any:
    async with session.get(url) as response:
        text = await response.text()
        assert response.status == status, text
        return json.loads(text)


async def post_json(session: Any, url: str, body: Any = None, status: int = 200, **kwargs: Any) -> Any:
    async with session.post(url, json=body, **kwargs) as response:
        text = await response.text()
        assert response.status == status, text
        return json.loads(text) if text else None


@web.middleware
async def small_send_buffer(request: web.Request, handler: Any) -> web.StreamResponse:
    """Pin the server's send buffer for a stalled client (one whose request says X-Stall): Linux
    would otherwise grow it to megabytes, and a test would measure the kernel instead of jobcast."""
    if request.headers.get("X-Stall") and request.transport is not None:
        request.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    return await handler(request)


def unkept_session(client: Any) -> aiohttp.ClientSession:
    """A session to the test's server with no keep-alive: once answered, a request's connection
    is gone, so that the server holds only the connections of streams."""
    return aiohttp.ClientSession(str(client.make_url("")), connector=aiohttp.TCPConnector(force_close=True))


async def submit_waiting_job(client: Any) -> dict[str, Any]:
    """A 5-step demo job (which waits: the test runs no worker), submitted over a connection that
    then closes."""
    async with unkept_session(client) as once:
        return await submit(once, body={"kind": "demo", "params": {"steps": 5}})


def stalled_socket(port: int, request: bytes) -> socket.socket:
    """A client with a tiny receive window that sends `request` and then never reads."""
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    stalled.connect(("127.0.0.1", port))
    stalled.sendall(request)
    return stalled


CHECKOUT = Path(__file__).resolve().parent.parent


def product_findings(check: Callable[[str], list[Any]], skip: tuple[str, ...] = ()) -> dict[str, list[Any]]:
    """What `check` finds in each of the product's Python files (jobcast/, server/, jobs/), by path;
    files it finds nothing in are left out."""
    found: dict[str, list[Any]] = {}
    for top in ("jobcast", "server", "jobs"):
        for path in sorted((CHECKOUT / top).rglob("*.py")):
            name = str(path.relative_to(CHECKOUT))
            if name not in skip and (hits := check(path.read_text())):
                found[name] = hits
    return found


def table_ids(html: str) -> list[str]:
    rows = html.split('id="jobs"')[1].split("</tbody>")[0]
    return re.findall(r'<tr class="job"[^>]* data-job-id="([0-9a-f]{32})"', rows)
