"""An SSE stream that has caught up, held on its socket without aiohttp.

Once a stream's replay is written and nothing is queued, its handler hands the socket over
(`detach` in server/http/server.py) and returns. aiohttp then frees what it keeps per connection
(the request handler and its parser, the parsed request, the response and its writer, the
connection's task and every frame of the handler's call chain, about 12 KB), and an idle watcher
costs its socket, its outbox, its place in the hub and this object.

Events reach a detached stream exactly as before: the hub puts them in the outbox, whose fast path
writes each event's shared chunk straight to the socket. What the fast path declines (a terminal
event, or a socket that is behind) is queued, and written here as soon as the socket takes it:
there is no task to wake, the transport's own flow control (`pause_writing`/`resume_writing`)
says when. A socket that stays paused for `write_timeout_s` is cut off, as a slow attached
stream's write times out; the client resumes from its last id.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

from jobcast.server.fanout.hub import Outbox, OutboxClosed
from jobcast.server.fanout.wire import sse_chunk

# The end of a chunked response: after the terminal event, or when the server shuts down.
LAST_CHUNK = b"0\r\n\r\n"


class DetachedConnection(asyncio.Protocol):
    """What every connection held without aiohttp has: its outbox, the transport's flow control,
    and one timer that cuts off a connection that cannot finish (its socket paused past
    `write_timeout_s`, or, once it is ending, its last bytes or its peer's answer not coming).
    Subclasses write what is queued in `_flush` (SSE here, WebSockets in server/transports/websocket/)."""

    __slots__ = ("_ending", "_paused", "_timer", "_transport", "outbox", "write_timeout_s")

    def __init__(self, outbox: Outbox, write_timeout_s: float) -> None:
        self.outbox = outbox
        self.write_timeout_s = write_timeout_s
        self._transport: asyncio.Transport | None = None
        self._paused = False
        self._timer: asyncio.TimerHandle | None = None
        # The connection is ending (its last bytes are written): nothing more is, and its timer,
        # once armed, stays until the connection is gone.
        self._ending = False

    def _flush(self) -> None:
        raise NotImplementedError

    def _attach(self, transport: asyncio.BaseTransport, websocket: bool) -> None:
        # A stream socket's transport: asyncio types connection_made's argument as the base class.
        self._transport = cast(asyncio.Transport, transport)
        # The transport's pauses reach this protocol: its watchers may join their lockstep.
        self.outbox.transport = self._transport
        self.outbox.websocket = websocket

    def pause_writing(self) -> None:
        self._paused = True
        # The event that filled the buffer was the last to skip the outbox's queue.
        self.outbox.leave_lockstep()
        self._arm_timer()

    def resume_writing(self) -> None:
        self._paused = False
        if self._timer is not None and not self._ending:
            self._timer.cancel()
            self._timer = None
        self._flush()

    def _arm_timer(self) -> None:
        if self._timer is None and self._transport is not None:
            self._timer = asyncio.get_running_loop().call_later(self.write_timeout_s, self._give_up)

    def _give_up(self) -> None:
        self._timer = None
        self._abort()

    def _abort(self) -> None:
        """Cut the connection off now (connection_lost follows from the loop)."""
        self.outbox.transport = None
        self.outbox.leave_lockstep()
        if self._transport is not None:
            self._transport.abort()

    def eof_received(self) -> bool:
        return False  # the client closed its side: close ours

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self.outbox.transport = None
        self.outbox.on_close = None
        self.outbox.close("client gone")
        self.outbox.on_queue = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class DetachedStream(DetachedConnection):
    __slots__ = ("_end",)

    def __init__(self, outbox: Outbox, write_timeout_s: float, end: Callable[[], None]) -> None:
        super().__init__(outbox, write_timeout_s)
        # Leaves the hub and gives back the stream's counts, once, however the stream ends.
        self._end: Callable[[], None] | None = end

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """The socket `detach` handed over (not paused; maybe with aiohttp's last bytes still
        in its buffer, which the fast path's limit counts)."""
        self._attach(transport, websocket=False)
        self.outbox.on_queue = self._flush
        self.outbox.on_close = self._closed
        self._flush()

    def _flush(self) -> None:
        """Write what is queued, unless the socket is paused (resume_writing calls again). Runs
        inside the hub's delivery (`Outbox.put`): it writes, and leaves the hub only from
        `connection_lost`, which the loop calls later."""
        transport = self._transport
        if transport is None or self._paused or self._ending:
            return
        try:
            events = self.outbox.take_nowait()
        except OutboxClosed:
            return
        for event in events:
            transport.write(event.sse_chunk or sse_chunk(event))
            if event.terminal:
                # Nothing after the job's last event: later puts are dropped.
                self.outbox.on_close = None
                self.outbox.close("ended")
                self._end_response(transport)
                return

    def _closed(self, reason: str) -> None:
        transport = self._transport
        if reason == "shutdown" and transport is not None and not transport.is_closing():
            # Ended cleanly: the client reconnects (to another server) and resumes.
            self._end_response(transport)
        # On overflow the outbox's on_overflow has already cut the socket off, and a client that
        # is gone needs nothing written: either way connection_lost follows.

    def _end_response(self, transport: asyncio.Transport) -> None:
        self._ending = True
        transport.write(LAST_CHUNK)
        if transport.get_write_buffer_size():
            self._arm_timer()  # close() waits for the buffer to drain: not forever
        transport.close()

    def data_received(self, data: bytes) -> None:
        """An SSE client sends nothing after its request; whatever comes is dropped."""

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if (end := self._end) is not None:
            self._end = None
            end()
