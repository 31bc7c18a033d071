"""The transports' framing: an event's SSE and WebSocket bytes, and the fast path that writes
them straight to a watcher's socket.

Waking one task per watcher per event costs more than the write itself. So while a watcher keeps
up, the hub's outbox hands the event to `direct_writer`, which writes the event's pre-encoded
bytes (the same bytes for every watcher, built by the first) to the socket directly. A watcher
whose socket buffer fills up falls back to its queue and its task, which drops superseded progress
and cuts off a client that stops reading.

Writing behind aiohttp's back is only correct while the response's own framing is what the bytes
assume: HTTP/1.1 chunked encoding with no compression for SSE, which `sse_fast_path` checks on the
prepared response; when it does not hold (HTTP/1.0, a middleware that compresses), events go
through aiohttp's writer instead, slower but correct. WebSockets are jobcast's own
(server/transports/websocket/): their frames are always unmasked and uncompressed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

from aiohttp import HttpVersion11, web

from jobcast.server.fanout.events import Event
from jobcast.server.http.websocket_frames import TEXT, encode

COMMENT = b"comment"


def comment(text: bytes) -> Event:
    """An SSE comment (a heartbeat): browsers ignore it, proxies see the stream is alive."""
    return Event("", 0, COMMENT, text, terminal=False)


def sse_text(event: Event) -> bytes:
    """The event as one SSE message: `id:` (its resume position), `event:` and `data:`; built
    once per event."""
    message = event.sse_message
    if message is not None:
        return message
    if event.type == COMMENT:
        # A comment line and no blank line: a blank line ends an event, and some clients (httpx-sse
        # once an id was seen, fetch-event-source) hand an empty event to the app for each one.
        message = b": %s\n" % event.data
    else:
        if event.epoch is not None:
            head = b"id: %s:%d\n" % (event.epoch.encode(), event.seq)
        else:
            # No id for live-only feed progress (seq 0): the browser keeps its last feed id.
            head = b"id: %d\n" % event.seq if event.seq else b""
        message = head + b"event: %s\ndata: %s\n\n" % (event.type, event.data)
    event.sse_message = message
    return message


def sse_chunk(event: Event) -> bytes:
    """The SSE message as one HTTP/1.1 chunk, built once and written as is to every watcher."""
    chunk = event.sse_chunk
    if chunk is None:
        text = sse_text(event)
        chunk = event.sse_chunk = b"%x\r\n%s\r\n" % (len(text), text)
    return chunk


def ws_frame(event: Event) -> bytes:
    """The event as one unmasked WebSocket text frame (RFC 6455), built once."""
    frame = event.ws_frame
    if frame is None:
        frame = event.ws_frame = encode(TEXT, event.data)
    return frame


def sse_fast_path(request: web.Request, response: web.StreamResponse) -> bool:
    """Whether chunks may be written to this prepared SSE response's socket directly: HTTP/1.1,
    chunked, not compressed (the bytes `sse_chunk` builds are exactly what aiohttp would write)."""
    return (
        request.transport is not None
        and request.version >= HttpVersion11
        and response.chunked
        and not response.compression
    )


def direct_writer(transport: asyncio.BaseTransport, websocket: bool, limit: int) -> Callable[[Event], bool]:
    """The outbox's fast path for one socket (for SSE, check `sse_fast_path` first):
    write the event's SSE chunk (or WebSocket frame) now and return True, or decline once `limit`
    bytes wait in the socket's buffer (`JOBCAST_SOCKET_BUFFER_BYTES`)."""
    # The transport pauses its protocol at the same mark: a watcher in its topic's lockstep
    # (server/fanout/lockstep.py) leaves it where this fast path would decline.
    socket = cast(asyncio.WriteTransport, transport)  # a stream socket's, whatever the loop
    socket.set_write_buffer_limits(high=limit)
    write = socket.write
    buffered = socket.get_write_buffer_size
    closing = socket.is_closing

    # Once per watcher per event: the encoded bytes are read from the event's cache slot, and the
    # function that fills it is called only by the first watcher. Two closures rather than one
    # with attrgetters: that costs 10% more per delivery (measured, 300 vs 330 ns).
    if websocket:

        def direct(event: Event) -> bool:
            if event.terminal or closing() or buffered() > limit:
                return False
            write(event.ws_frame or ws_frame(event))
            return True

    else:

        def direct(event: Event) -> bool:
            if event.terminal or closing() or buffered() > limit:
                return False
            write(event.sse_chunk or sse_chunk(event))
            return True

    return direct
