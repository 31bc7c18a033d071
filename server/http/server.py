"""The HTTP server of `jobcast web`: aiohttp's, with three behaviours of its own.

- **A header-read timeout.** A request's headers must arrive within `header_timeout_s` of its
  first byte (or of the connection opening), much less than the keep-alive timeout. aiohttp only
  has the keep-alive timeout, so a client trickling a header byte at a time (slowloris) holds a
  connection for 75 s; a few thousand such clients hold every file descriptor.
- **Requests aiohttp cannot parse** (a URL or header line over 8,190 bytes, a bad method or
  version, broken chunking) get a 400 `application/problem+json` that does not echo the input,
  logged as one line without a traceback. aiohttp answers them in text/plain, quoting the input,
  and logs a traceback for each.
- **A full garbage collection every `gc_after_connections` closed connections.** A closed
  connection is a handful of reference cycles (aiohttp's handler, request, writer and payload
  queue point at each other; asyncio's transports at themselves), freed only by a full collection.
  CPython runs those only once the objects that survived into the oldest generation have grown by
  a quarter, which happens ever more rarely as a busy server's heap grows: in a 30-minute soak the
  RSS crept up for 20 minutes before it levelled off. Counting closed connections bounds that
  garbage by churn, and an idle server never pays for a collection.

This is the one module that reaches into aiohttp's request handler; the names it relies on are in
`INTERNALS`, checked against the installed aiohttp by tests/test_http_server.py. An app embedded
in a team's own aiohttp server (docs/embedding.md) gets neither: that server, or the reverse proxy
in front of it, must bound header reads itself.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from jobcast.protocol import dumps
from jobcast.server.http.problems import Problem

log = logging.getLogger(__name__)

# aiohttp internals this module relies on (tests/test_http_server.py checks they exist).
INTERNALS = {
    RequestHandler: (
        *("_waiter", "_messages", "_loop", "transport", "_manager", "_keepalive_handle"),
        *("_message_tail", "_buffer_paused", "writing_paused"),
        *("connection_made", "data_received", "connection_lost", "handle_error", "force_close"),
    ),
    web.Server: ("request_handler", "request_factory", "_kwargs", "_loop", "connection_lost"),
    web.AppRunner: ("_make_server",),
}

TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"Content-Type: application/problem+json\r\n"
    b"Connection: close\r\n"
    b"Server: jobcast\r\n"
    b"Content-Length: %d\r\n\r\n%s"
)


# How long a connection refused for slow headers is read (and what comes dropped) before it is
# closed, so that its answer is not lost to a reset.
LINGER_S = 2.0


class Handler(RequestHandler):
    """aiohttp's request handler (one per connection), with the header-read timeout and the
    problem+json answer to unparseable requests."""

    header_timeout_s: float = 10.0
    _header_timer: asyncio.TimerHandle | None = None
    # The request timed out: its answer is written, and the connection lingers until it closes.
    _refused = False
    # Set by a stream for as long as it runs (server/transports/sse.py): a client that hangs up ends its
    # stream at once, rather than at the next heartbeat write, which is when aiohttp would notice.
    on_connection_lost: Callable[[], None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # what a refused client still sends is read and dropped (see _headers_too_slow)
        waiting_for_request = self._waiter is not None and not self._waiter.done()
        super().data_received(data)
        if self._messages:  # a request's headers are in (or the parser gave up on them)
            self._disarm_header_timer()
        elif waiting_for_request and self._header_timer is None:
            # The first bytes of the next request on a kept-alive connection.
            self._arm_header_timer()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm_header_timer()
        if (callback := self.on_connection_lost) is not None:
            self.on_connection_lost = None
            callback()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        if self.header_timeout_s > 0:
            self._header_timer = self._loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self._messages or self.transport is None:
            return
        detail = f"the request's headers did not arrive within {self.header_timeout_s:g} s"
        body = dumps(Problem(408, detail, slug="request-timeout").document())
        self.transport.write(TIMEOUT_RESPONSE % (len(body), body))
        log.info("closed a connection whose request headers were too slow")
        # A lingering close: closing a socket that has unread bytes, or that receives more, makes
        # the kernel send a reset, which can destroy the answer before the client reads it (a
        # trickling client sends a byte every moment). Half-close, keep reading and dropping what
        # comes, then close.
        self._refused = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._loop.call_later(LINGER_S, self.force_close)

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status != 400:
            return super().handle_error(request, status, exc, message)
        # The parser's message quotes the input (up to 8 KB of it): say what was wrong, not what
        # was sent.
        reason = type(exc).__name__ if exc is not None else "BadRequest"
        log.info("refused a request that could not be parsed: %s", reason)
        response = Problem(400, f"the request could not be parsed ({reason})", slug="bad-request").response()
        response.headers["Server"] = "jobcast"  # no versions, as on every other answer
        response.force_close()
        return response


def detach(handler: RequestHandler, protocol_factory: Callable[[], asyncio.Protocol]) -> bool:
    """Hand a connection's socket to a new protocol, for a stream that needs nothing more of
    aiohttp (server/transports/detached.py, server/transports/websocket/); the protocol gets
    `connection_made` as any does, then whatever the client sent after its request (a WebSocket's
    first frames).

    aiohttp then sees a connection that is gone: the handler's response writes nothing more (its
    last write fails quietly, and the access log line is written), the connection's task ends
    without closing the socket, and the handler, its parser, the request and the response are
    freed. Works on aiohttp's own handler too (an app embedded in a team's server). False (and
    nothing made or changed) while the socket is closing, or paused (the new protocol would never
    hear `resume_writing`'s counterpart)."""
    transport, manager = handler.transport, handler._manager
    if transport is None or manager is None or transport.is_closing() or handler.writing_paused:
        return False
    if isinstance(handler, Handler):
        handler._disarm_header_timer()
        handler.on_connection_lost = None
    tail, handler._message_tail = handler._message_tail, b""
    protocol = protocol_factory()
    transport.set_protocol(protocol)
    handler.transport = None
    handler.force_close()
    if handler._keepalive_handle is not None:
        handler._keepalive_handle.cancel()
        handler._keepalive_handle = None
    handler._manager = None  # aiohttp's connection_lost, should anything call it, is a no-op
    manager.connection_lost(handler, None)
    protocol.connection_made(transport)
    if handler._buffer_paused:
        # aiohttp stopped reading while the bytes after the request piled up: the new protocol
        # reads at its own pace.
        handler._buffer_paused = False
        transport.resume_reading()
    if tail:
        protocol.data_received(tail)
    return True


class Server(web.Server):
    """aiohttp's server, making `Handler`s, and collecting the garbage that closed connections
    leave (see the module's docstring)."""

    def __init__(self, base: web.Server, header_timeout_s: float, gc_after_connections: int) -> None:
        super().__init__(
            base.request_handler, request_factory=base.request_factory, loop=base._loop, **base._kwargs
        )
        self.header_timeout_s = header_timeout_s
        self.gc_after_connections = gc_after_connections
        self.closed_since_gc = 0

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        super().connection_lost(handler, exc)
        self.closed_since_gc += 1
        if self.gc_after_connections and self.closed_since_gc >= self.gc_after_connections:
            self.closed_since_gc = 0
            # Soon rather than now: the connection's own frames are still on the stack.
            self._loop.call_soon(gc.collect)

    def __call__(self) -> RequestHandler:
        handler = Handler(self, loop=self._loop, **self._kwargs)
        handler.header_timeout_s = self.header_timeout_s
        return handler


class Runner(web.AppRunner):
    def __init__(
        self, app: web.Application, *, header_timeout_s: float, gc_after_connections: int, **kwargs: Any
    ) -> None:
        super().__init__(app, **kwargs)
        self.header_timeout_s = header_timeout_s
        self.gc_after_connections = gc_after_connections

    async def _make_server(self) -> web.Server:
        return Server(await super()._make_server(), self.header_timeout_s, self.gc_after_connections)


async def _serve(runner: Runner, host: str, port: int, on_listening: Callable[[], None]) -> None:
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        on_listening()
        await asyncio.Event().wait()  # until a signal ends the loop (GracefulExit)
    finally:
        await runner.cleanup()


def run(
    app: web.Application,
    *,
    host: str,
    port: int,
    header_timeout_s: float,
    gc_after_connections: int,
    on_listening: Callable[[], None],
    **runner_args: Any,
) -> None:
    """Serve `app` until SIGINT or SIGTERM, then shut down gracefully (as `web.run_app` does)."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    runner = Runner(
        app,
        header_timeout_s=header_timeout_s,
        gc_after_connections=gc_after_connections,
        handle_signals=True,
        **runner_args,
    )
    main = loop.create_task(_serve(runner, host, port, on_listening))
    try:
        loop.run_until_complete(main)
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        main.cancel()
        loop.run_until_complete(asyncio.gather(main, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
