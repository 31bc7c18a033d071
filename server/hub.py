"""Who is watching what in this process, and the fan-out of each event to them.

The hub is synchronous and knows nothing of Redis: the relay hands it events, and it writes each
one (serialised once, as shared bytes) into every local watcher's bounded outbox. A watcher's seq
only moves forward, so replayed and live copies of an event never reach it twice; an event that
would skip a seq is held back and the relay is asked to repair the topic from history.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from jobcast.protocol import TERMINAL_STATES, TERMINAL_TYPE_BYTES, EventType, dumps


class Event:
    """One event, encoded once for every transport."""

    __slots__ = ("_sse_chunk", "_ws_frame", "data", "epoch", "job_id", "seq", "sse", "terminal", "type")

    def __init__(
        self,
        job_id: str,
        seq: int,
        type_: bytes,
        data: bytes,
        *,
        terminal: bool | None = None,
        epoch: str | None = None,
    ):
        self.job_id = job_id
        self.seq = seq
        self.type = type_
        self.data = data
        self.terminal = type_ in TERMINAL_TYPE_BYTES if terminal is None else terminal
        # The feed's seqs count within an epoch, so its ids carry both; a job's id is its seq.
        self.epoch = epoch
        if epoch is not None:
            head = b"id: %s:%d\n" % (epoch.encode(), seq)
        else:
            # No id for live-only feed progress (seq 0): the browser keeps its last feed id.
            head = b"id: %d\n" % seq if seq else b""
        self.sse = head + b"event: %s\ndata: %s\n\n" % (type_, data)
        self._sse_chunk: bytes | None = None
        self._ws_frame: bytes | None = None

    @property
    def sse_chunk(self) -> bytes:
        """The SSE frame as one HTTP/1.1 chunk, built once and written as is to every watcher."""
        if self._sse_chunk is None:
            self._sse_chunk = b"%x\r\n%s\r\n" % (len(self.sse), self.sse)
        return self._sse_chunk

    @property
    def ws_frame(self) -> bytes:
        """The event as one unmasked WebSocket text frame (RFC 6455), built once."""
        if self._ws_frame is None:
            n = len(self.data)
            if n < 126:
                head = bytes((0x81, n))
            elif n < 65536:
                head = b"\x81\x7e" + n.to_bytes(2, "big")
            else:
                head = b"\x81\x7f" + n.to_bytes(8, "big")
            self._ws_frame = head + self.data
        return self._ws_frame

    @classmethod
    def snapshot(cls, snapshot: dict[str, Any]) -> Event:
        """The `snapshot` event: data is the job snapshot, id its last_event_id."""
        return cls(
            snapshot["id"],
            snapshot["last_event_id"],
            EventType.SNAPSHOT.value.encode(),
            dumps(
                {
                    "type": EventType.SNAPSHOT.value,
                    "job_id": snapshot["id"],
                    "seq": snapshot["last_event_id"],
                    **snapshot,
                }
            ),
            terminal=snapshot["state"] in TERMINAL_STATES,
        )

    @classmethod
    def feed(cls, feed_seq: int, type_: bytes, job_id: str, epoch: bytes, data: bytes) -> Event:
        """An event of the dashboard feed: numbered by feed seq within an epoch (seq 0: live-only
        progress, with no epoch)."""
        return cls(job_id, feed_seq, type_, data, terminal=False, epoch=epoch.decode() if feed_seq else None)

    @classmethod
    def feed_snapshot(cls, snapshot: dict[str, Any]) -> Event:
        type_ = EventType.SNAPSHOT.value.encode()
        return cls("", snapshot["feed_seq"], type_, dumps(snapshot), terminal=False, epoch=snapshot["epoch"])

    @classmethod
    def gone(cls, job_id: str) -> Event:
        """The end of a watch whose job no longer exists (Redis lost it, or it expired): an SSE
        `error` event, or a WebSocket `error` message, after which nothing more comes."""
        message = {
            "type": "error",
            "code": "not_found",
            "job_id": job_id,
            "message": "the job no longer exists (its data was lost or has expired)",
        }
        return cls(job_id, 0, b"error", dumps(message), terminal=True)

    @classmethod
    def comment(cls, text: bytes) -> Event:
        """An SSE comment (a heartbeat): browsers ignore it, proxies see the stream is alive."""
        event = cls("", 0, b"comment", b"", terminal=False)
        event.sse = b": %s\n\n" % text
        return event

    @classmethod
    def control(cls, message: dict[str, Any]) -> Event:
        """A WebSocket control message (subscribed, error, ...): no job seq."""
        return cls(message.get("job_id") or "", 0, b"control", dumps(message), terminal=False)


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
        "hold",
        "limit",
        "on_overflow",
        "on_queue",
    )

    def __init__(self, limit: int) -> None:
        self.limit = limit
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
        # True while a writer holds taken events it has not written yet: the fast path must not
        # overtake them.
        self.hold = False

    def __len__(self) -> int:
        return len(self._items)

    def put(self, event: Event) -> None:
        if self.closed:
            return
        if not self._items and not self.hold and self.direct is not None and self.direct(event):
            return
        self._items.append(event)
        if len(self._items) > self.limit:
            self._compact()
            if len(self._items) > self.limit:
                self.close("overflow")
                if self.on_overflow is not None:
                    self.on_overflow()
        self._wake()
        if self.on_queue is not None:
            self.on_queue()  # also on overflow: the writer tells the client why it is cut off

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _wake_drained(self) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def release(self) -> None:
        """The writer has written what it took: the fast path may write again."""
        self.hold = False
        if not self._items:
            self._wake_drained()

    async def drained(self) -> None:
        """Wait until everything queued has been handed to the socket (whose own buffer is
        bounded by the fast path's limit and the writer's drain). Raises OutboxClosed."""
        while (self._items or self.hold) and not self.closed:
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
                    continue
                newest_progress.add(event.job_id)
            kept.append(event)
        kept.reverse()
        self._items = kept

    def close(self, reason: str) -> None:
        if not self.closed:
            self.closed = reason
            self._items.clear()
            self._wake()
            self._wake_drained()

    def take_nowait(self) -> list[Event]:
        """Everything queued now (maybe nothing); raises OutboxClosed once closed."""
        return self._take_all()

    def _take_all(self) -> list[Event]:
        if self.closed:
            raise OutboxClosed(self.closed)
        items, self._items = self._items, []
        if not self.hold:
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


class Subscription:
    """One watcher of one job; its seq only moves forward."""

    __slots__ = ("done", "epoch", "job_id", "last_seq", "outbox", "pending", "ready")

    def __init__(
        self, job_id: str, outbox: Outbox, since: int | None = None, epoch: str | None = None
    ) -> None:
        self.job_id = job_id
        self.outbox = outbox
        self.last_seq = since or 0
        # The feed's epoch the watcher's seq counts in (None for a job: its seqs never restart).
        self.epoch = epoch
        # Until its replay is written, live events wait here so that order is kept (then None).
        self.ready = False
        self.pending: deque[Event] | None = deque(maxlen=outbox.limit)
        self.done = False

    def push(self, event: Event) -> None:
        if self.done or event.seq <= self.last_seq:
            return
        self.last_seq = event.seq
        self.done = event.terminal
        self.outbox.put(event)

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
        """Nothing more will come (the job is gone): the watcher's last event."""
        if not self.done:
            self.done = True
            self.outbox.put(event)

    def skips(self, event: Event) -> bool:
        """Taking `event` next would skip events (a seq gap, or another epoch of the feed): the
        watcher needs history first. (The hub's hot loop inlines the seq half of this.)"""
        return not self.done and (event.seq > self.last_seq + 1 or event.epoch != self.epoch)

    def behind(self) -> bool:
        """Live events are waiting with a gap before them (some were dropped while the watcher
        caught up): more history must be read before it can go live."""
        return bool(self.pending) and self.skips(self.pending[0])  # type: ignore[index]


class Topic:
    __slots__ = ("repairing", "seen_max", "subs")

    def __init__(self) -> None:
        self.subs: set[Subscription] = set()
        self.repairing = False
        self.seen_max = 0


class Hub:
    """This process's watchers, grouped by job."""

    def __init__(self, request_repair: Callable[[str], None]) -> None:
        self.topics: dict[str, Topic] = {}
        self._request_repair = request_repair

    def add(self, sub: Subscription) -> bool:
        """Register a watcher; True when it is the job's first here (subscribe to its channel)."""
        topic = self.topics.get(sub.job_id)
        first = topic is None
        if topic is None:
            topic = self.topics[sub.job_id] = Topic()
        topic.subs.add(sub)
        return first

    def remove(self, sub: Subscription) -> bool:
        """Unregister a watcher; True when it was the job's last here (unsubscribe)."""
        topic = self.topics.get(sub.job_id)
        if topic is None or sub not in topic.subs:
            return False
        topic.subs.discard(sub)
        if topic.subs:
            return False
        del self.topics[sub.job_id]
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
        sub.ready = True
        pending, sub.pending = sub.pending, None
        for event in pending or ():
            self._push_live(self.topics[sub.job_id], sub, event)

    def deliver(self, job_id: str, seq: int, type_: bytes, data: bytes) -> None:
        """A live event of one job from Redis."""
        if job_id in self.topics:
            self.deliver_event(job_id, Event(job_id, seq, type_, data))

    def deliver_event(self, topic_id: str, event: Event) -> None:
        topic = self.topics.get(topic_id)
        if topic is None:
            return
        if event.seq == 0:
            # Live-only (feed progress): no seq to keep in order, nothing to repair.
            for sub in topic.subs:
                if sub.ready:
                    sub.outbox.put(event)
            return
        if topic.repairing:
            topic.seen_max = max(topic.seen_max, event.seq)
            return
        if event.epoch is not None and self._epoch_changed(topic, event):
            return
        # The fan-out's hot loop, once per watcher per event: `_push_live` and
        # `Subscription.push` are inlined here because their calls cost more than their work.
        seq = event.seq
        for sub in tuple(topic.subs):
            if not sub.ready:
                assert sub.pending is not None
                sub.pending.append(event)
                continue
            if sub.done or seq <= sub.last_seq:
                continue
            if seq > sub.last_seq + 1:
                self.start_repair(sub.job_id, seq)
                return
            sub.last_seq = seq
            sub.done = event.terminal
            sub.outbox.put(event)

    def _epoch_changed(self, topic: Topic, event: Event) -> bool:
        """The feed started over (Redis lost it): its watchers need a snapshot, not events."""
        for sub in topic.subs:
            if sub.ready and not sub.done and sub.epoch != event.epoch:
                self.start_repair(sub.job_id, event.seq)
                return True
        return False

    def _push_live(self, topic: Topic, sub: Subscription, event: Event) -> bool:
        if event.seq == 0:
            sub.outbox.put(event)
            return True
        if sub.skips(event):
            self.start_repair(sub.job_id, event.seq)
            return False
        sub.push(event)
        return True

    def start_repair(self, job_id: str, seen: int = 0) -> None:
        topic = self.topics.get(job_id)
        if topic is None:
            return
        topic.seen_max = max(topic.seen_max, seen)
        if not topic.repairing:
            topic.repairing = True
            self._request_repair(job_id)

    def repair_from(self, job_id: str) -> tuple[int, str | None] | None:
        """The seq after which the topic's ready watchers need history, and the epoch they count
        in ("" when they differ). None: nobody to repair."""
        topic = self.topics.get(job_id)
        if topic is None:
            return None
        behind = [sub for sub in topic.subs if sub.ready and not sub.done]
        if not behind:
            return None
        epochs = {sub.epoch for sub in behind}
        return min(sub.last_seq for sub in behind), (epochs.pop() if len(epochs) == 1 else "")

    def end_topic(self, job_id: str, event: Event) -> None:
        """The job is gone: its live watchers get `event` as their last (those still catching up
        find out from history themselves)."""
        topic = self.topics.get(job_id)
        if topic is None:
            return
        for sub in topic.subs:
            if sub.ready:
                sub.end(event)
        topic.repairing = False
        topic.seen_max = 0

    def apply_repair(self, job_id: str, events: Iterable[Event], snapshot: Event | None) -> bool:
        """Deliver repaired history; True when the topic is whole again (else repair once more)."""
        topic = self.topics.get(job_id)
        if topic is None:
            return True
        ready = [sub for sub in topic.subs if sub.ready]
        high = 0
        if snapshot is not None:
            high = snapshot.seq
            for sub in ready:
                sub.push_snapshot(snapshot)
        # A watcher may have gone live after the repair chose where to read from, and be further
        # behind: it gets nothing that would skip a seq, and the topic is repaired once more.
        short = False
        for event in events:
            high = max(high, event.seq)
            for sub in ready:
                if sub.skips(event):
                    short = True
                    continue
                sub.push(event)
        if short or topic.seen_max > high:
            return False
        topic.repairing = False
        topic.seen_max = 0
        return True
