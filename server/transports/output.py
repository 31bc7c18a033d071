"""`GET /api/jobs/{id}/output/{stream}`: a job's output stream as plain text, so far or followed.

Followed (`?follow=1`), it is a watcher of the job like an SSE stream: its snapshot gives the text
up to the snapshot's seq, then each `output` event of the stream adds its chunk, so the text is
whole, in order and without repeats, however the watcher is caught up (history, or a fresh
snapshot after falling behind). It ends with the attempt: the job's end, its retry, or another
attempt's start. `curl -N .../output/output?follow=1` prints a streamed answer as it is written.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from jobcast.protocol import OUTPUT_STREAM, TERMINAL_STATES, EventType, State, loads
from jobcast.server.fanout.catchup import CatchUp, CatchUpFailed
from jobcast.server.fanout.hub import Outbox, OutboxClosed, Subscription
from jobcast.server.http.bodies import JOB_ID
from jobcast.server.http.openapi import TEXT, Answer, Operation, operation
from jobcast.server.http.problems import Problem
from jobcast.server.keys import RELAY, SETTINGS, STORE
from jobcast.server.security.auth import STREAM_COUNTS, check_visible, principal
from jobcast.server.security.tokens import TOKENS, opens_job

routes = web.RouteTableDef()

# Bytes read from Redis at once when a long stream is sent from its start.
READ_BYTES = 256 * 1024
PLAIN = "text/plain; charset=utf-8"


class OutputQuery(BaseModel):
    attempt: int | None = Field(
        default=None, ge=1, description="Which attempt's output (default: the job's attempt now, or next)"
    )
    offset: int = Field(default=0, ge=0, description="Skip this many bytes: what the client has already")
    end: int | None = Field(default=None, ge=0, description="Stop before this byte (not with `follow`)")
    follow: bool = Field(
        default=False,
        description="Keep the response open and write the text as it is written, to the attempt's end",
    )
    token: str | None = Field(default=None, description="Owner mode: the job's stream token")


def query_of(request: web.Request) -> OutputQuery:
    raw: dict[str, Any] = dict(request.query)
    if "follow" in raw:
        raw["follow"] = raw["follow"] not in ("0", "false", "")
    try:
        return OutputQuery.model_validate(raw)
    except ValueError as e:
        raise Problem(400, f"bad query: {str(e).splitlines()[0]}", slug="bad-query") from None


@routes.get(f"/api/jobs/{JOB_ID}/output/{{stream:{OUTPUT_STREAM}}}")
@operation(
    Operation(
        "A job's output stream as text: what it holds now, or (follow) everything as it is written",
        {200: Answer("The text, UTF-8; `X-Jobcast-Attempt` says whose", {PLAIN: TEXT})},
        query=OutputQuery,
        problems=(400, 401, 404, 429, 503),
        tags=("streams",),
    )
)
async def job_output(request: web.Request) -> web.StreamResponse:
    job_id, stream = request.match_info["job_id"], request.match_info["stream"]
    query = query_of(request)
    if query.token is not None and request.app[TOKENS].enabled:
        await opens_job(request, query.token, job_id)
    else:
        await check_visible(request.app[STORE], principal(request), job_id)
    if query.follow:
        return await follow(request, job_id, stream, query)
    store = request.app[STORE]
    snapshot = await store.snapshot(job_id, output=False)
    if snapshot is None:
        raise Problem(404, f"no job {job_id}", slug="not-found")
    attempt = query.attempt or snapshot["attempt"]
    data = await store.output.read(job_id, attempt, stream, query.offset, query.end) if attempt else b""
    return web.Response(
        body=data,
        headers={"Content-Type": PLAIN, "X-Jobcast-Attempt": str(attempt), "Cache-Control": "no-cache"},
    )


class Follower:
    """Turns the job's events into the stream's text, from `offset` on."""

    def __init__(
        self, request: web.Request, job_id: str, stream: str, attempt: int | None, offset: int
    ) -> None:
        self.request = request
        self.job_id = job_id
        self.stream = stream
        self.attempt = attempt
        # Bytes of the stream the client has (or asked to skip); what comes is from here.
        self.offset = offset
        self.response: web.StreamResponse | None = None

    async def start(self, attempt: int) -> None:
        self.attempt = attempt
        response = web.StreamResponse(
            headers={
                "Content-Type": PLAIN,
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
                "X-Jobcast-Attempt": str(attempt),
            }
        )
        response.enable_chunked_encoding()
        await response.prepare(self.request)
        self.response = response

    async def write(self, data: bytes) -> None:
        assert self.response is not None
        if data:
            async with asyncio.timeout(self.request.app[SETTINGS].write_timeout_s):
                await self.response.write(data)

    async def on_snapshot(self, snapshot: dict[str, Any]) -> bool:
        """The text up to the snapshot; True when the attempt is over."""
        state, attempt = snapshot.get("state"), int(snapshot.get("attempt") or 0)
        if self.attempt is None:
            # Not started yet, or between attempts: follow the next one.
            running_or_done = state == State.RUNNING or state in TERMINAL_STATES
            await self.start(attempt if running_or_done and attempt else attempt + 1)
        if attempt != self.attempt:
            return attempt > (self.attempt or 0) or state in TERMINAL_STATES
        held = (snapshot.get("output") or {}).get(self.stream)
        if isinstance(held, str):
            data = held.encode()
            await self.write(data[self.offset :])
            self.offset = max(self.offset, len(data))
        elif isinstance(held, dict):
            await self.copy_until(int(held["length"]))
        return state in TERMINAL_STATES or state == State.RETRYING

    async def copy_until(self, length: int) -> None:
        """The stream's bytes from the offset to `length`, read from Redis a part at a time."""
        store = self.request.app[STORE]
        assert self.attempt is not None
        while self.offset < length:
            end = min(length, self.offset + READ_BYTES)
            data = await store.output.read(self.job_id, self.attempt, self.stream, self.offset, end)
            if not data:
                return  # expired under us: nothing more to give
            await self.write(data)
            self.offset += len(data)

    async def on_event(self, event: dict[str, Any]) -> bool:
        """One live (or replayed) event; True when the attempt is over."""
        kind = event.get("type")
        attempt = int(event.get("attempt") or 0)
        if kind == EventType.OUTPUT:
            if event.get("stream") == self.stream and attempt == self.attempt:
                data = str(event.get("data") or "").encode()
                await self.write(data)
                self.offset += len(data)
            return False
        if kind == EventType.STARTED:
            return attempt > (self.attempt or 0)
        return kind == EventType.RETRYING or event.get("state") in TERMINAL_STATES

    async def run(self, outbox: Outbox, catch_up: CatchUp | None) -> None:
        """Write the stream until the attempt is over, or the watcher must go (it resumes by
        offset)."""
        while True:
            if catch_up is not None and not len(outbox):
                try:
                    if await catch_up.step():
                        catch_up = None
                except CatchUpFailed:
                    return
                continue
            try:
                batch = await outbox.take()
            except OutboxClosed:
                return  # fell too far behind, or the server stops
            for event in batch:
                if await self.handle(event.type, loads(event.data)):
                    return

    async def handle(self, kind: bytes, body: dict[str, Any]) -> bool:
        if kind == b"snapshot":
            return await self.on_snapshot(body)
        if kind == b"error":  # the job is gone
            return True
        return self.response is not None and await self.on_event(body)


async def follow(request: web.Request, job_id: str, stream: str, query: OutputQuery) -> web.StreamResponse:
    counts, who = request.app[STREAM_COUNTS], principal(request)
    if not counts.acquire(who):
        raise counts.refuse()
    settings = request.app[SETTINGS]
    relay = request.app[RELAY]
    outbox = Outbox(settings.watcher_buffer, settings.watcher_buffer_bytes)
    sub = Subscription(relay.broker.job(job_id), outbox, None, None)
    follower = Follower(request, job_id, stream, query.attempt, query.offset)
    joined = False
    try:
        catch_up = await relay.join(sub, None)
        joined = True
        with suppress(TimeoutError, ConnectionError):  # the client is gone, or stopped reading
            await follower.run(outbox, catch_up)
        if follower.response is None:
            raise Problem(404, f"no job {job_id}", slug="not-found")
        with suppress(ConnectionError):
            await follower.response.write_eof()
        return follower.response
    finally:
        if joined:
            relay.leave(sub)
        counts.release(who)
