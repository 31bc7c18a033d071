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

from jobcast.output_text import OutputText
from jobcast.protocol import OUTPUT_STREAM, loads
from jobcast.server.fanout.catchup import CatchUp, CatchUpFailed
from jobcast.server.fanout.hub import Outbox, OutboxClosed, Subscription
from jobcast.server.http.bodies import JOB_ID
from jobcast.server.http.openapi import TEXT, Answer, Operation, operation
from jobcast.server.http.problems import Problem
from jobcast.server.keys import RELAY, SETTINGS
from jobcast.server.security.auth import STREAM_COUNTS, check_visible, principal
from jobcast.server.security.tokens import TOKENS, opens_job
from jobcast.server.stores import job_store

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
    store = job_store(request.app, job_id)
    if query.token is not None and request.app[TOKENS].enabled:
        await opens_job(request, query.token, job_id)
    else:
        await check_visible(store, principal(request), job_id)
    if query.follow:
        return await follow(request, job_id, stream, query)
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
    """Writes the job's events as the stream's text (jobcast/output_text.py), from `offset` on."""

    def __init__(
        self, request: web.Request, job_id: str, stream: str, attempt: int | None, offset: int
    ) -> None:
        self.request = request
        self.job_id = job_id
        self.text = OutputText(stream, attempt, offset)
        self.response: web.StreamResponse | None = None

    async def start(self, attempt: int) -> None:
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

    async def copy_until(self, length: int | None) -> None:
        """The stream's bytes from the offset to `length` (None: all there are), read from Redis
        a part at a time."""
        text, store = self.text, job_store(self.request.app, self.job_id)
        assert text.attempt is not None
        while length is None or text.offset < length:
            end = text.offset + READ_BYTES if length is None else min(length, text.offset + READ_BYTES)
            data = await store.output.read(self.job_id, text.attempt, text.stream, text.offset, end)
            if not data:
                return  # all of it (or expired under us): nothing more to give
            await self.write(data)
            text.offset += len(data)

    async def handle(self, kind: bytes, data: bytes) -> bool:
        """One event (a snapshot first); True when the attempt followed is over."""
        if kind == b"progress":
            return False  # never the end of an attempt, and no output: not even parsed
        body = loads(data)
        new = self.text.feed(kind.decode(), body)
        assert self.text.attempt is not None  # the first event is a snapshot, which sets it
        if self.response is None:
            await self.start(self.text.attempt)
            if self.text.over and self.text.attempt < int(body.get("attempt") or 0):
                await self.copy_until(None)  # an earlier attempt, asked for by name: whole
        if isinstance(new, dict):
            await self.copy_until(int(new["length"]))
        else:
            await self.write(new)
        return self.text.over

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
                if await self.handle(event.type, event.data):
                    return


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
