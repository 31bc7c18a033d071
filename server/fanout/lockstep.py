"""A job's watchers that are in lockstep: each event is written to all of them in one loop.

The fan-out's cost beyond the socket writes themselves is Python run once per watcher per event:
the ordering rule (`hub.deliver`), the outbox, the fast path's checks. Most of the time none of
it decides anything. Every watcher of a job on this process has taken the same seq, has nothing
queued, and its socket takes whatever it is given. Such watchers join their topic's lockstep. The
lockstep keeps the one seq they all have and each socket's `write`, so an event that follows that
seq is written to every member with no per-watcher check at all, as the bench's ceiling does.

A member leaves (and takes its own seq back) as soon as any of that stops being true. The hub
disbands the lockstep for anything but the next seq in order (a terminal event, a gap, a repair,
the topic's end). The watcher's outbox makes it leave when something has to wait in its queue,
and when the outbox closes. The connection makes it leave when the transport pauses writing
(its buffer passed the high-water mark, so the next event must queue). Only connections held
without aiohttp join (server/transports/detached.py, server/transports/websocket/): their
protocol is ours, so a pause reaches us. An event written to a member that pauses on it is its
last from the lockstep. The watcher then goes the usual way, event by event through its outbox,
until it is in step again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from jobcast.server.fanout.wire import sse_chunk, ws_frame

if TYPE_CHECKING:
    from jobcast.server.fanout.events import Event
    from jobcast.server.fanout.hub import Subscription


class Lockstep:
    __slots__ = ("_live", "_members", "_stale", "seq", "sse", "ws")

    def __init__(self, live: set[Subscription]) -> None:
        # The topic's other live watchers, where a member goes back to when it leaves.
        self._live = live
        # Each member's socket write, and whether it takes WebSocket frames (else SSE chunks).
        self._members: dict[Subscription, tuple[Callable[[bytes], None], bool]] = {}
        # The seq every member has taken; a member's own `last_seq` is stale until it leaves.
        self.seq = 0
        self.sse: tuple[Callable[[bytes], None], ...] = ()
        self.ws: tuple[Callable[[bytes], None], ...] = ()
        # The two tuples are rebuilt at the next write, not at each join or leave: a thousand
        # watchers of one job leaving at once cost one rebuild, not a thousand.
        self._stale = False

    def __len__(self) -> int:
        return len(self._members)

    def write(self, event: Event) -> None:
        """The event that follows `seq`, not terminal: written to every member's socket."""
        if self._stale:
            self._index()
        # First: a member whose socket pauses on this write leaves with this seq taken.
        self.seq = event.seq
        if self.sse:
            chunk = event.sse_chunk or sse_chunk(event)
            for write in self.sse:
                write(chunk)
        if self.ws:
            frame = event.ws_frame or ws_frame(event)
            for write in self.ws:
                write(frame)

    def admit(self, candidates: Iterable[Subscription]) -> None:
        """Move the live watchers that are in step from the topic's live set into the lockstep:
        held without aiohttp, not done, nothing queued, nothing in the socket's buffer (so its
        transport is not paused), and at the seq the members have (the first one sets it)."""
        joined = False
        for sub in candidates:
            outbox = sub.outbox
            transport = outbox.transport
            if (
                transport is None
                or sub.done
                or sub.epoch is not None
                or len(outbox)
                or outbox.closed
                or transport.get_write_buffer_size()
            ):
                continue
            if not self._members:
                self.seq = sub.last_seq
            elif sub.last_seq != self.seq:
                continue
            self._live.discard(sub)
            self._members[sub] = (transport.write, outbox.websocket)
            sub.lockstep = self
            outbox.lockstep.append(sub)
            joined = True
        if joined:
            self._stale = True

    def leave(self, sub: Subscription) -> None:
        """The member goes back to the topic's live watchers with the seq it has taken."""
        if self._release(sub):
            sub.last_seq = self.seq
            self._live.add(sub)

    def drop(self, sub: Subscription) -> None:
        """The member stops watching: out, without going back anywhere."""
        self._release(sub)

    def disband(self) -> None:
        """Every member back to the topic's live watchers, each with the seq it has taken."""
        for sub in tuple(self._members):
            self.leave(sub)

    def _release(self, sub: Subscription) -> bool:
        """Out of the lockstep (False: it was not in it)."""
        if self._members.pop(sub, None) is None:
            return False
        sub.lockstep = None
        sub.outbox.lockstep.remove(sub)
        if self._members:  # the tuples follow at the next write
            self._stale = True
        else:  # nothing to write to: let go of the sockets now
            self.sse = self.ws = ()
            self._stale = False
        return True

    def _index(self) -> None:
        self._stale = False
        members = self._members.values()
        self.sse = tuple(write for write, websocket in members if not websocket)
        self.ws = tuple(write for write, websocket in members if websocket)
