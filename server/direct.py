"""The outbox's fast path: an event's shared bytes written straight to a watcher's socket.

Waking one task per watcher per event costs more than the write itself; while a watcher keeps up,
the hub writes the event's pre-encoded bytes (the same bytes for every watcher) to its socket
directly. A watcher whose socket buffer fills up falls back to its queue and its task, which
drops superseded progress and cuts off a client that stops reading.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from jobcast.server.hub import Event

# Past this many bytes waiting in the socket's buffer, events queue in the outbox instead.
DIRECT_WRITE_LIMIT = 64 * 1024


def direct_writer(transport: asyncio.BaseTransport, websocket: bool) -> Callable[[Event], bool]:
    """The outbox's fast path for one socket: write the event's SSE chunk (or WebSocket frame)
    now and return True, or decline."""
    write = transport.write  # type: ignore[attr-defined]
    buffered = transport.get_write_buffer_size  # type: ignore[attr-defined]
    closing = transport.is_closing

    # Once per watcher per event: the encoded bytes are read from the event's cache slot, and the
    # property that fills it is called only by the first watcher. Two closures rather than one
    # with attrgetters: that costs 10% more per delivery (measured, 300 vs 330 ns).
    if websocket:

        def direct(event: Event) -> bool:
            if event.terminal or closing() or buffered() > DIRECT_WRITE_LIMIT:
                return False
            write(event._ws_frame or event.ws_frame)
            return True

    else:

        def direct(event: Event) -> bool:
            if event.terminal or closing() or buffered() > DIRECT_WRITE_LIMIT:
                return False
            write(event._sse_chunk or event.sse_chunk)
            return True

    return direct
