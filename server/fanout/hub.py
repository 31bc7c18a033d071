"""Who is watching what in this process, and the fan-out of each event to them.

The hub is synchronous and knows nothing of Redis or of the wire: the relay hands it events, and
it puts each one (one shared object) into every local watcher's bounded outbox; the transports
encode it (server/fanout/wire.py). A watcher's seq only moves forward, so replayed and live copies of an
event never reach it twice (`deliver`, the one place that rule is written); an event that would
skip a seq is held back and the relay is asked to repair the topic from history.

Watchers that are in step (same seq, nothing queued, sockets that keep up) skip all that: their
topic's lockstep (server/fanout/lockstep.py) writes the next event to each of their sockets in one loop,
and hands a watcher back to this path whenever the rule has something to decide for it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from jobcast.server.fanout.events import Event
from jobcast.server.fanout.lockstep import Lockstep

if TYPE_CHECKING:
    from asyncio import Transport

    from jobcast.server.fanout.topics import Topic


class OpenStreams:
    """How many SSE streams and WebSockets are open in this process, counted as they open and
    close (a count of live objects would include closed ones the GC has not collected yet)."""

    __slots__ = ("sse", "ws")

    def __init__(self) -> None:
        self.sse = 0
        self.ws = 0


class OutboxClosed(Exception):
    """The watcher's connection must end; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Outbox:
    """One connection's bounded queue of events waiting to be written.

    When the client falls behind, superseded `progress` events are dropped (the latest progress
    of each job and every state change stay); if even that is not enough the outbox closes, and
    the client reconnects and resumes from its last seq.

    The fast path skips the queue: while it is empty, `direct` (set by the transport) writes the
    event's shared bytes straight to the socket and says so, and no task wakes for the delivery.
    It declines when the socket's buffer is filling up or the event needs the connection's task
    (a terminal event); from then on events queue, in order, until the task has written them.

    A connection held without aiohttp sets `transport`, and its watchers may then join their
    topic's lockstep (server/fanout/lockstep.py), which writes to the socket without calling `put` at
    all. They leave it whenever something has to queue here or the outbox closes, so that the
    queue's order holds.
    """

    # An idle watcher costs what its connection holds: slots, a list (not a deque, whose first
    # block is over 500 bytes) and a bare future only while its task waits (not an asyncio.Event).
    __slots__ = (
        "__weakref__",
        "_drained",
        "_items",
        "_waiter",
        "closed",
        "direct",
        "dropped",
        "limit",
        "lockstep",
        "max_bytes",
        "on_close",
        "on_overflow",
        "on_queue",
        "size",
        "transport",
        "websocket",
    )

    # Process-wide, for /metrics: superseded progress dropped for slow watchers, and watchers cut
    # off as too far behind.
    conflated_total = 0
    cut_off_total = 0

    def __init__(self, limit: int, max_bytes: int = 1 << 62) -> None:
        self.limit = limit
        # Bytes queued (the events' JSON): a few big events (snapshots) fill it as surely as many
        # small ones.
        self.max_bytes = max_bytes
        self.size = 0
        self._items: list[Event] = []
        self._waiter: asyncio.Future[None] | None = None
        # Set while a catch-up waits for the queue to empty before it reads the next page.
        self._drained: asyncio.Future[None] | None = None
        self.closed: str | None = None
        self.dropped = 0
        # Called when the client fell too far behind, to cut its connection even mid-write.
        self.on_overflow: Callable[[], None] | None = None
        self.direct: Callable[[Event], bool] | None = None
        # Called when an event is queued (the fast path declined), for a transport that starts
        # its writer task only when there is something to write.
        self.on_queue: Callable[[], None] | None = None
        # Called once when the outbox closes, with the reason, for a connection with no task
        # waiting on it (server/transports/detached.py).
        self.on_close: Callable[[str], None] | None = None
        # Set by a connection held without aiohttp while it may be written to directly (its
        # protocol hears the transport pause), with the kind of frames it takes.
        self.transport: Transport | None = None
        self.websocket = False
        # This connection's watchers that are in their topic's lockstep.
        self.lockstep: list[Subscription] = []

    def __len__(self) -> int:
        return len(self._items)

    def put(self, event: Event) -> None:
        if self.closed:
            return
        if not self._items and self.direct is not None and self.direct(event):
            return
        if self.lockstep:
            self.leave_lockstep()
        self._items.append(event)
        self.size += len(event.data)
        if len(self._items) > self.limit or self.size > self.max_bytes:
            self._compact()
            if len(self._items) > self.limit or self.size > self.max_bytes:
                Outbox.cut_off_total += 1
                self.close("overflow")
                if self.on_overflow is not None:
                    self.on_overflow()
        self._wake()
        if self.on_queue is not None:
            self.on_queue()  # also on overflow: the writer tells the client why it is cut off

    def leave_lockstep(self) -> None:
        """From now on this connection's events go through `put`: something waits in the queue,
        the socket paused, or the outbox closed."""
        for sub in tuple(self.lockstep):
            sub.lockstep.leave(sub)  # type: ignore[union-attr]  # listed here only while in one

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _wake_drained(self) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    async def drained(self) -> None:
        """Wait until everything queued has been handed to the socket (whose own buffer is
        bounded by the fast path's limit and the writer's drain). Raises OutboxClosed."""
        while self._items and not self.closed:
            self._drained = asyncio.get_running_loop().create_future()
            try:
                await self._drained
            finally:
                self._drained = None
        if self.closed:
            raise OutboxClosed(self.closed)

    def _compact(self) -> None:
        newest_progress: set[str] = set()
        kept: list[Event] = []
        for event in reversed(self._items):
            if event.type == b"progress":
                if event.job_id in newest_progress:
                    self.dropped += 1
                    Outbox.conflated_total += 1
                    continue
                newest_progress.add(event.job_id)
            kept.append(event)
        kept.reverse()
        self._items = kept
        self.size = sum(len(event.data) for event in kept)

    def close(self, reason: str) -> None:
        if not self.closed:
            self.closed = reason
            if self.lockstep:
                self.leave_lockstep()
            self._items.clear()
            self.size = 0
            self._wake()
            self._wake_drained()
            if (on_close := self.on_close) is not None:
                self.on_close = None
                on_close(reason)

    def take_nowait(self) -> list[Event]:
        """Everything queued now (maybe nothing); raises OutboxClosed once closed."""
        return self._take_all()

    def _take_all(self) -> list[Event]:
        if self.closed:
            raise OutboxClosed(self.closed)
        items, self._items = self._items, []
        self.size = 0
        self._wake_drained()
        return items

    async def take(self, wait_s: float | None = None) -> list[Event]:
        """Everything queued, waiting for something (up to `wait_s`: [] when that timed out)."""
        if not self._items and not self.closed:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(wait_s):
                    await self._waiter
            except TimeoutError:
                return []
            finally:
                self._waiter = None
        return self._take_all()


def deliver(subs: Iterable[Subscription], event: Event) -> Subscription | None:
    """The ordering rule, written once and used by every path (live, replayed, repaired): a
    watcher takes each seq of its topic once and in order, never twice and never backwards.

    Puts `event` into each watcher's outbox that is due it. Returns the first watcher it would
    skip a seq for (a gap, or an event from another epoch of the feed): that one needs history
    first, and the watchers after it were not served. None when all were."""
    # The fan-out's hot loop, once per watcher per event: kept to plain attribute reads.
    seq = event.seq
    epoch = event.epoch
    terminal = event.terminal
    for sub in subs:
        if sub.done:
            continue
        if epoch is not sub.epoch and epoch != sub.epoch:
            return sub
        if seq <= sub.last_seq:
            continue
        if seq > sub.last_seq + 1:
            return sub
        sub.last_seq = seq
        sub.done = terminal
        sub.outbox.put(event)
    return None


class Subscription:
    """One watcher of one topic; its seq only moves forward (see `deliver`)."""

    __slots__ = ("done", "epoch", "last_seq", "lockstep", "outbox", "pending", "ready", "topic")

    def __init__(
        self, topic: Topic, outbox: Outbox, since: int | None = None, epoch: str | None = None
    ) -> None:
        self.topic = topic
        self.outbox = outbox
        self.last_seq = since or 0
        # The feed's epoch the watcher's seq counts in (None for a job: its seqs never restart).
        self.epoch = epoch
        # Until its replay is written, live events wait here so that order is kept (then None).
        self.ready = False
        self.pending: deque[Event] | None = deque(maxlen=outbox.limit)
        self.done = False
        # The topic's lockstep while the watcher is in it; `last_seq` is the lockstep's seq then.
        self.lockstep: Lockstep | None = None

    def push(self, event: Event) -> bool:
        """Queue `event` if the watcher is due it; False when it would skip a seq."""
        return deliver((self,), event) is None

    def push_snapshot(self, event: Event) -> None:
        """A snapshot stands for everything up to its seq, so it may repeat the current seq. One
        from another epoch replaces whatever the watcher had."""
        if self.done or (event.seq < self.last_seq and event.epoch == self.epoch):
            return
        self.reset(event)

    def reset(self, event: Event) -> None:
        """Start over from a snapshot, whatever seq the watcher claimed (one beyond the head, or
        from a lost epoch, is no position at all)."""
        self.last_seq = event.seq
        self.epoch = event.epoch
        self.done = event.terminal
        self.outbox.put(event)

    def end(self, event: Event) -> None:
        """Nothing more will come (the topic's data is gone): the watcher's last event."""
        if not self.done:
            self.done = True
            self.outbox.put(event)

    def behind(self) -> bool:
        """Live events are waiting with a gap before them (some were dropped while the watcher
        caught up): more history must be read before it can go live."""
        if not self.pending or self.done:
            return False
        first = self.pending[0]
        return first.epoch != self.epoch or first.seq > self.last_seq + 1


class Watchers:
    """A topic's watchers in this process, and the relay's state of its channel."""

    __slots__ = ("confirmed", "joining", "live", "lockstep", "repairing", "seen_max", "topic")

    def __init__(self, topic: Topic) -> None:
        self.topic = topic
        # Watchers still catching up (their live events wait in `pending`), and those live: in
        # the lockstep, or not (yet) in step with it.
        self.joining: set[Subscription] = set()
        self.live: set[Subscription] = set()
        self.lockstep = Lockstep(self.live)
        self.repairing = False
        self.seen_max = 0
        # Set once Redis confirms the channel's subscription on the current connection.
        self.confirmed = asyncio.Event()

    def __bool__(self) -> bool:
        return bool(self.joining or self.live or self.lockstep)


class Hub:
    """This process's watchers, grouped by topic (keyed by the topic's channel)."""

    def __init__(self, request_repair: Callable[[Watchers], None]) -> None:
        self.topics: dict[bytes, Watchers] = {}
        self._request_repair = request_repair

    def add(self, sub: Subscription) -> Watchers | None:
        """Register a joining watcher; its topic's Watchers when it is the first here (subscribe
        to the channel), else None."""
        watchers = self.topics.get(sub.topic.key)
        first = watchers is None
        if watchers is None:
            watchers = self.topics[sub.topic.key] = Watchers(sub.topic)
        watchers.joining.add(sub)
        return watchers if first else None

    def remove(self, sub: Subscription) -> bool:
        """Unregister a watcher; True when it was the topic's last here (unsubscribe)."""
        watchers = self.topics.get(sub.topic.key)
        if watchers is None:
            return False
        if sub.lockstep is not None:
            sub.lockstep.drop(sub)
        elif sub not in watchers.live and sub not in watchers.joining:
            return False
        watchers.live.discard(sub)
        watchers.joining.discard(sub)
        if watchers:
            return False
        del self.topics[sub.topic.key]
        return True

    def go_live(self, sub: Subscription) -> bool:
        """Release the live events that arrived while the watcher caught up, unless some are
        missing before them (then False: read on in history)."""
        if sub.behind():
            return False
        self.mark_ready(sub)
        return True

    def mark_ready(self, sub: Subscription) -> None:
        """The watcher's replay is written: release the live events that arrived meanwhile."""
        watchers = self.topics[sub.topic.key]
        watchers.joining.discard(sub)
        watchers.live.add(sub)
        sub.ready = True
        pending, sub.pending = sub.pending, None
        for event in pending or ():
            if not sub.push(event):
                self.start_repair(watchers, event.seq)
                return

    def deliver(self, watchers: Watchers, event: Event) -> None:
        """A live event of the topic, from Redis."""
        lockstep = watchers.lockstep
        if event.seq == 0:
            # Live-only (feed progress): no seq to keep in order, nothing to repair, and nothing
            # for a watcher still catching up (its snapshot or history has newer progress).
            lockstep.disband()
            for sub in watchers.live:
                sub.outbox.put(event)
            return
        for sub in watchers.joining:
            sub.pending.append(event)  # type: ignore[union-attr]  # a joining watcher's is a deque
        if watchers.repairing:
            watchers.seen_max = max(watchers.seen_max, event.seq)
            return
        if lockstep:
            if event.seq == lockstep.seq + 1 and not event.terminal and event.epoch is None:
                lockstep.write(event)
            else:
                lockstep.disband()
        if live := watchers.live:
            # A copy: an outbox that overflows may make its connection leave.
            subs = tuple(live)
            if deliver(subs, event) is not None:
                self.start_repair(watchers, event.seq)
                return
            lockstep.admit(subs)

    def start_repair(self, watchers: Watchers, seen: int = 0) -> None:
        watchers.seen_max = max(watchers.seen_max, seen)
        if not watchers.repairing and self.topics.get(watchers.topic.key) is watchers:
            watchers.repairing = True
            self._request_repair(watchers)

    def repair_from(self, watchers: Watchers) -> tuple[int, str | None] | None:
        """The seq after which the topic's live watchers need history, and the epoch they count
        in ("" when they differ). None: nobody to repair."""
        watchers.lockstep.disband()
        behind = [sub for sub in watchers.live if not sub.done]
        if not behind:
            return None
        epochs = {sub.epoch for sub in behind}
        return min(sub.last_seq for sub in behind), (epochs.pop() if len(epochs) == 1 else "")

    def reset_beyond(self, watchers: Watchers, snapshot: Event) -> set[Subscription]:
        """Live watchers of a job who saw seqs beyond `snapshot`'s (read after the job's head was
        found behind them) saw events Redis has since lost: a failover to a replica that had not
        received them. The seqs they saw will be given to other events, which they would take for
        repeats (a job's end among them), so they start over from the snapshot. Returns them."""
        reset = {
            sub for sub in watchers.live if not sub.done and sub.epoch is None and sub.last_seq > snapshot.seq
        }
        for sub in reset:
            sub.reset(snapshot)
        return reset

    def beyond(self, watchers: Watchers, head: int) -> bool:
        """Whether a live watcher of the job saw a seq past `head`, the job's seq in Redis now."""
        return any(not sub.done and sub.epoch is None and sub.last_seq > head for sub in watchers.live)

    def end_topic(self, watchers: Watchers, event: Event) -> None:
        """The topic's data is gone: its live watchers get `event` as their last (those still
        catching up find out from history themselves)."""
        watchers.lockstep.disband()
        for sub in watchers.live:
            sub.end(event)
        watchers.repairing = False
        watchers.seen_max = 0

    def apply_repair(
        self,
        watchers: Watchers,
        events: Iterable[Event],
        snapshot: Event | None,
        have_it: set[Subscription] | frozenset[Subscription] = frozenset(),
    ) -> bool:
        """Deliver repaired history (`have_it`: watchers given the snapshot already); True when
        the topic is whole again (else repair once more)."""
        watchers.lockstep.disband()
        live = list(watchers.live)
        high = 0
        if snapshot is not None:
            high = snapshot.seq
            for sub in live:
                if sub not in have_it:
                    sub.push_snapshot(snapshot)
        # A watcher may have gone live after the repair chose where to read from, and be further
        # behind: it gets nothing that would skip a seq, and the topic is repaired once more.
        short = False
        for event in events:
            high = max(high, event.seq)
            for sub in live:
                if not sub.push(event):
                    short = True
        if short or watchers.seen_max > high:
            return False
        watchers.repairing = False
        watchers.seen_max = 0
        return True
