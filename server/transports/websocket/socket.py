"""One WebSocket connection after its handshake (`WebSocket`), and every one of the process
(`WebSockets`), which pings them and closes them at shutdown.

Nothing here runs while a connection is idle: its socket's protocol is called when bytes arrive
or the transport's buffer drains, the hub's outbox writes events straight to the socket while it
keeps up, and one task pings every connection of the process. A connection has a task only while
one of its client's messages is being handled (`Application.handle` may await Redis and a
replay); its messages are handled one at a time, in order, and past `inbox_limit` waiting the
socket is not read until they are (TCP then slows the client down).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Coroutine
from typing import Any, Protocol

from jobcast.server.fanout.events import Event
from jobcast.server.fanout.hub import Outbox, OutboxClosed
from jobcast.server.fanout.wire import direct_writer, ws_frame
from jobcast.server.http.websocket_frames import (
    CLOSE,
    GOING_AWAY,
    PING,
    PONG,
    TRY_AGAIN_LATER,
    FrameReader,
    ProtocolError,
    close_payload,
    encode,
    parse_close,
)
from jobcast.server.transports.detached import DetachedConnection
from jobcast.tasks import cancel_and_wait

log = logging.getLogger(__name__)

PING_FRAME = encode(PING, b"")
# A peer's close with no code is answered with a plain one (RFC 6455 §5.5.1).
CLOSE_REPLY = encode(CLOSE, b"")
# Bytes of frames the reader may hold beyond the largest message (see WebSocket.max_unread).
READ_AHEAD_BYTES = 16 * 1024


class Application(Protocol):
    """What runs on a WebSocket: jobcast's API (server/transports/ws.py), or a test's."""

    async def handle(self, opcode: int, message: str | bytes) -> None:
        """One message of the client's (TEXT: str, BINARY: bytes)."""

    def sent(self, event: Event) -> None:
        """A terminal event has been written: its topic has nothing more to send."""

    def ended(self) -> None:
        """The connection is gone, however it ended; called once."""


class WebSocket(DetachedConnection):
    """One connection, from the socket `detach` hands over to its end: the client's frames in,
    its messages to `app` one at a time, the outbox's events out, pings answered, and the close
    handshake either way."""

    __slots__ = (
        "_flush_handle",
        "_inbox",
        "_pinged",
        "_reader",
        "_reading_paused",
        "_task",
        "app",
        "buffer_bytes",
        "inbox_limit",
        "max_unread",
        "sockets",
    )

    def __init__(
        self,
        app: Application,
        outbox: Outbox,
        sockets: WebSockets,
        *,
        max_message_bytes: int,
        inbox_limit: int,
        write_timeout_s: float,
        buffer_bytes: int,
    ) -> None:
        super().__init__(outbox, write_timeout_s)
        self.app = app
        # Unsent bytes the socket may hold before events wait in the outbox.
        self.buffer_bytes = buffer_bytes
        self.sockets = sockets
        self.inbox_limit = inbox_limit
        self._reader = FrameReader(max_message_bytes)
        # Bytes read from the socket and not yet parsed, past which reading stops too: a client
        # whose messages are handled slowly must not have the socket's every read held here.
        # (The largest message fits, so one is always whole: parsing it lets reading go on.)
        self.max_unread = max_message_bytes + READ_AHEAD_BYTES
        self._inbox: deque[tuple[int, str | bytes]] | None = None  # only while messages wait
        self._task: asyncio.Task[None] | None = None
        self._flush_handle: asyncio.Handle | None = None
        self._reading_paused = False
        self._pinged = False  # a ping is out and nothing has come back since

    # -- the connection --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._attach(transport, websocket=True)
        outbox = self.outbox
        outbox.direct = direct_writer(transport, websocket=True, limit=self.buffer_bytes)
        outbox.on_queue = self._schedule_flush
        outbox.on_close = self._outbox_closed
        self.sockets.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._inbox = None
        if self._task is not None:
            self._task.cancel()  # WebSockets owns it and awaits its end
            self._task = None
        self.sockets.discard(self)
        self.app.ended()

    def close(self, code: int, reason: str = "") -> None:
        """Send a close frame and write nothing more; the connection ends when the client
        answers with its own, or after `write_timeout_s` if it does not."""
        transport = self._transport
        if transport is None or self._ending:
            return
        self._ending = True
        self.outbox.on_close = None
        self.outbox.close("closing")
        transport.write(encode(CLOSE, close_payload(code, reason)))
        self._arm_timer()

    def ping(self) -> None:
        """Called by `WebSockets` every ping interval: a peer that sent nothing back since the
        last ping (not even its pong) is gone."""
        transport = self._transport
        if transport is None or self._ending:
            return
        if self._pinged:
            self._abort()
            return
        self._pinged = True
        transport.write(PING_FRAME)

    # -- reading ---------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._transport is None:
            return
        self._pinged = False
        self._reader.feed(data)
        self._read()

    def _read(self) -> None:
        """Read messages while the inbox has room and the socket takes our writes; past either,
        stop reading the socket (TCP then slows the client down) until `_serve` has handled some
        or the socket drained. A peer that sends pings and never reads their pongs so holds at
        most the socket's buffer bound, and the write timeout cuts it off."""
        transport = self._transport
        try:
            while (
                transport is not None
                and not self._paused
                and (self._inbox is None or len(self._inbox) < self.inbox_limit)
            ):
                message = self._reader.next()
                if message is None:
                    break
                opcode, payload = message
                if opcode == CLOSE:
                    self._close_received(parse_close(payload))  # type: ignore[arg-type]  # control frames are bytes
                    return
                if self._ending:
                    continue  # closing: what the client still sends is not handled
                if opcode == PING:
                    transport.write(encode(PONG, payload))  # type: ignore[arg-type]  # control frames are bytes
                elif opcode != PONG:
                    self._receive(opcode, payload)
        except ProtocolError as e:
            self.close(e.code, e.reason)
            # The client may send nothing more worth reading: end without waiting for its close.
            if transport is not None:
                transport.close()
            return
        full = (
            self._paused
            or (self._inbox is not None and len(self._inbox) >= self.inbox_limit)
            or self._reader.unread > self.max_unread
        )
        if transport is not None and full != self._reading_paused:
            self._reading_paused = full
            if full:
                transport.pause_reading()
            else:
                transport.resume_reading()

    def _close_received(self, code: int | None) -> None:
        transport = self._transport
        assert transport is not None
        if not self._ending:
            self._ending = True
            self.outbox.on_close = None
            self.outbox.close("closing")
            transport.write(CLOSE_REPLY if code is None else encode(CLOSE, close_payload(code)))
        # Both sides have closed: end the TCP connection once our bytes are out.
        transport.close()
        self._arm_timer()  # close() waits for the buffer to drain: not forever

    def _receive(self, opcode: int, message: str | bytes) -> None:
        if self._inbox is None:
            self._inbox = deque()
        self._inbox.append((opcode, message))
        if self._task is None:
            self._task = self.sockets.adopt(self._serve())

    async def _serve(self) -> None:
        """Handle the client's messages one at a time, in order, until none waits."""
        try:
            while self._inbox:
                opcode, message = self._inbox.popleft()
                if self._reading_paused:
                    self._read()  # what the socket delivered before it was paused, then more
                try:
                    await self.app.handle(opcode, message)
                except Exception:
                    log.exception("a WebSocket message failed")
                    self.close(1011, "internal error")
                    return
        finally:
            if self._task is asyncio.current_task():
                self._task = None
                self._inbox = None

    # -- writing ---------------------------------------------------------------------------------

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._reading_paused and self._transport is not None:
            self._read()  # reading stopped while our writes could not go out

    def _schedule_flush(self) -> None:
        # Later, not now: the outbox is filled from inside the hub's delivery, and a terminal
        # event makes the application leave the hub, which must not happen mid-iteration.
        if self._flush_handle is None and self._transport is not None:
            self._flush_handle = asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        transport = self._transport
        if transport is None or self._paused or self._ending:
            return
        try:
            events = self.outbox.take_nowait()
        except OutboxClosed:
            return
        for event in events:
            transport.write(event.ws_frame or ws_frame(event))
        for event in events:
            if event.terminal:
                self.app.sent(event)

    def _outbox_closed(self, reason: str) -> None:
        if reason == "overflow":
            self.close(TRY_AGAIN_LATER, "too slow; resume")


class WebSockets:
    """Every WebSocket of this process, and the tasks handling their messages (owned here, so
    that they are awaited however their connection ended)."""

    def __init__(self) -> None:
        self._open: set[WebSocket] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._open)

    def add(self, socket: WebSocket) -> None:
        self._open.add(socket)

    def discard(self, socket: WebSocket) -> None:
        self._open.discard(socket)

    def adopt(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work, name="ws-messages")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def ping(self, interval_s: float) -> None:
        """Ping every connection every `interval_s`: one task for the process, not a timer per
        connection. A peer that answers nothing for a whole interval is cut off."""
        while True:
            await asyncio.sleep(interval_s)
            for socket in list(self._open):
                socket.ping()

    async def close(self, code: int = GOING_AWAY, reason: str = "server shutting down") -> None:
        """Close every connection (clients reconnect elsewhere and resume) and end their
        messages' tasks."""
        for socket in list(self._open):
            socket.close(code, reason)
        await self.stop()

    async def stop(self) -> None:
        while self._tasks:
            task = self._tasks.pop()
            await cancel_and_wait(task)
