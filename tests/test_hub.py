"""Unit tests of the hub's fan-out rules (no Redis involved)."""

from __future__ import annotations

import asyncio
import contextlib
import re

import pytest

from jobcast.server.fanout.events import Event
from jobcast.server.fanout.hub import Hub, Outbox, OutboxClosed, Subscription, Watchers
from jobcast.server.fanout.topics import KeyedTopic
from jobcast.server.fanout.wire import direct_writer, sse_chunk, sse_text, ws_frame
from jobcast.tasks import cancel_and_wait


class Named(KeyedTopic):
    """A topic for the hub's own rules: just a channel name."""

    __slots__ = ("job_id",)

    def __init__(self, name: str) -> None:
        self.key = name.encode()
        self.job_id = name


def w(hub: Hub, name: str) -> Watchers:
    return hub.topics[name.encode()]


def live(hub: Hub, name: str, seq: int, type_: bytes, data: bytes) -> None:
    """A live event of topic `name` from the broker."""
    if name.encode() in hub.topics:
        hub.deliver(w(hub, name), Event(name, seq, type_, data))


def event(seq: int, type_: bytes = b"progress", job: str = "j") -> Event:
    return Event(job, seq, type_, b'{"seq":%d}' % seq)


def ready_sub(hub: Hub, limit: int = 8, since: int = 0, job: str = "j") -> Subscription:
    sub = Subscription(Named(job), Outbox(limit), since)
    hub.add(sub)
    hub.mark_ready(sub)
    return sub


async def test_every_watcher_gets_the_same_bytes() -> None:
    hub = Hub(lambda job: None)
    a, b = ready_sub(hub), ready_sub(hub)
    live(hub, "j", 1, b"queued", b'{"x":1}')
    (ea,), (eb,) = await a.outbox.take(1), await b.outbox.take(1)
    assert ea is eb and sse_text(ea) == b'id: 1\nevent: queued\ndata: {"x":1}\n\n'


async def test_a_full_outbox_drops_superseded_progress_but_keeps_state_changes() -> None:
    outbox = Outbox(limit=4)
    outbox.put(event(1, b"started"))
    for seq in range(2, 9):
        outbox.put(event(seq))
    outbox.put(event(9, b"succeeded"))
    kept = await outbox.take(1)
    assert [(e.seq, e.type) for e in kept] == [(1, b"started"), (8, b"progress"), (9, b"succeeded")]
    assert outbox.dropped == 6


async def test_an_outbox_of_state_changes_only_closes_when_full() -> None:
    outbox = Outbox(limit=2)
    cut = []
    outbox.on_overflow = lambda: cut.append(True)
    for seq in range(1, 4):
        outbox.put(Event(f"job{seq}", seq, b"started", b"{}"))
    assert cut == [True]
    with pytest.raises(OutboxClosed, match="overflow"):
        await outbox.take(1)


def test_duplicates_are_dropped_and_a_gap_asks_for_repair() -> None:
    repairs: list[str] = []
    hub = Hub(lambda watchers: repairs.append(watchers.topic.job_id))
    sub = ready_sub(hub, since=3)
    live(hub, "j", 3, b"progress", b"{}")  # already seen
    live(hub, "j", 4, b"progress", b"{}")
    assert sub.last_seq == 4 and len(sub.outbox) == 1 and repairs == []
    live(hub, "j", 6, b"progress", b"{}")  # 5 is missing
    assert repairs == ["j"] and sub.last_seq == 4
    live(hub, "j", 7, b"progress", b"{}")  # held back while repairing
    assert hub.repair_from(w(hub, "j")) == (4, None)
    assert not hub.apply_repair(w(hub, "j"), [event(5), event(6)], None)  # 7 was seen: not whole yet
    assert hub.apply_repair(w(hub, "j"), [event(7)], None)
    assert sub.last_seq == 7


def test_live_events_wait_for_the_replay_of_a_joining_watcher() -> None:
    hub = Hub(lambda job: None)
    sub = Subscription(Named("j"), Outbox(8), 0)
    hub.add(sub)
    live(hub, "j", 3, b"progress", b"{}")  # arrives while the replay is being read
    for seq in (1, 2):
        sub.push(event(seq))
    hub.mark_ready(sub)
    assert sub.last_seq == 3 and len(sub.outbox) == 3


def test_nothing_reaches_a_watcher_after_the_terminal_event() -> None:
    hub = Hub(lambda job: None)
    sub = ready_sub(hub)
    live(hub, "j", 1, b"succeeded", b"{}")
    live(hub, "j", 2, b"progress", b"{}")
    assert sub.done and len(sub.outbox) == 1


async def test_cancel_and_wait_never_swallows_the_callers_cancellation() -> None:
    inner_started = asyncio.Event()

    async def forever() -> None:
        inner_started.set()
        await asyncio.Event().wait()  # blocked until cancelled

    async def owner() -> None:
        task = asyncio.create_task(forever())
        await inner_started.wait()
        try:
            await asyncio.Event().wait()  # blocked until cancelled
        finally:
            await cancel_and_wait(task)

    outer = asyncio.create_task(owner())
    await inner_started.wait()
    outer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await outer
    assert outer.cancelled()


async def test_cleanup_after_a_handled_cancel_stops_its_tasks_without_raising() -> None:
    # aiohttp's run_app catches the cancel that starts shutdown, then runs cleanups: the current
    # task still counts as cancelling, but stopping its services must not raise.
    running = asyncio.Event()

    async def app_main() -> bool:
        services = [asyncio.create_task(asyncio.Event().wait()) for _ in range(2)]
        running.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()  # blocked until cancelled
        for task in services:
            await cancel_and_wait(task)
        return all(task.cancelled() for task in services)

    main = asyncio.create_task(app_main())
    await running.wait()
    main.cancel()
    assert await main is True


async def test_an_owner_cancelled_while_its_task_winds_down_is_cancelled() -> None:
    started, stopping, release = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def slow_to_stop() -> None:
        try:
            started.set()
            await asyncio.Event().wait()  # blocked until cancelled
        finally:
            stopping.set()
            await release.wait()

    async def owner() -> None:
        task = asyncio.create_task(slow_to_stop())
        await started.wait()
        await cancel_and_wait(task)

    outer = asyncio.create_task(owner())
    await stopping.wait()
    outer.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await outer


def test_the_fast_path_writes_shared_bytes_while_the_queue_is_empty_and_keeps_order() -> None:
    hub = Hub(lambda job: None)
    wire: dict[str, list[bytes]] = {"a": [], "b": []}
    open_ = {"a": True, "b": True}
    subs = {}
    for name in wire:
        sub = ready_sub(hub, limit=16)

        def direct(event: Event, name: str = name) -> bool:
            if not open_[name] or event.terminal:
                return False
            wire[name].append(sse_chunk(event))
            return True

        sub.outbox.direct = direct
        subs[name] = sub
    live(hub, "j", 1, b"progress", b"{}")
    assert wire["a"][0] is wire["b"][0]  # one encoding, written to both sockets
    assert wire["a"][0] == b"20\r\nid: 1\nevent: progress\ndata: {}\n\n\r\n"  # one HTTP chunk
    open_["a"] = False  # a's socket buffer is full: its events queue instead
    live(hub, "j", 2, b"progress", b"{}")
    open_["a"] = True  # writable again, but 2 is still queued: 3 must not overtake it
    live(hub, "j", 3, b"progress", b"{}")
    assert [e.seq for e in subs["a"].outbox.take_nowait()] == [2, 3]
    live(hub, "j", 4, b"succeeded", b"{}")  # a terminal event always goes through the queue
    live(hub, "j", 5, b"progress", b"{}")
    assert len(wire["b"]) == 3 and [e.seq for e in subs["b"].outbox.take_nowait()] == [4]
    assert [e.seq for e in subs["a"].outbox.take_nowait()] == [4]


def test_a_websocket_frame_is_encoded_once_with_the_right_length_header() -> None:
    for size in (5, 300, 70000):
        e = Event("j", 1, b"progress", b"x" * size)
        frame = ws_frame(e)
        assert frame is ws_frame(e) and frame.endswith(b"x" * size) and frame[0] == 0x81
        assert len(frame) - size == (2 if size < 126 else 4 if size < 65536 else 10)


def test_a_lazy_writer_is_started_when_events_queue_and_on_overflow() -> None:
    outbox = Outbox(limit=2)
    started: list[int] = []
    outbox.on_queue = lambda: started.append(len(outbox))
    outbox.direct = lambda event: not event.terminal
    outbox.put(event(1))  # written directly: no writer needed
    assert started == []
    outbox.put(event(2, b"succeeded"))
    assert started == [1]
    for seq in range(3, 5):
        outbox.put(Event(f"job{seq}", seq, b"started", b"{}"))
    # The writer is also started on overflow, to tell the client why it is cut off.
    assert outbox.closed == "overflow" and started == [1, 2, 0]
    with pytest.raises(OutboxClosed, match="overflow"):
        outbox.take_nowait()


def feed_event(seq: int, epoch: str, job: str = "j") -> Event:
    return Event.feed(seq, b"queued", job, epoch.encode(), b'{"feed_seq":%d}' % seq)


def test_feed_ids_carry_their_epoch() -> None:
    assert sse_text(feed_event(7, "abc")).startswith(b"id: abc:7\n")
    # Live-only progress on the feed has no id, so it never moves the browser's Last-Event-ID.
    assert sse_text(Event.feed(0, b"progress", "j", b"", b"{}")).startswith(b"event: progress\n")


def test_a_feed_event_from_a_new_epoch_asks_for_repair_even_with_a_lower_seq() -> None:
    repairs: list[str] = []
    hub = Hub(lambda watchers: repairs.append(watchers.topic.job_id))
    sub = Subscription(Named("feed"), Outbox(8), 40, "old")
    hub.add(sub)
    hub.mark_ready(sub)
    hub.deliver(w(hub, "feed"), feed_event(41, "old"))
    assert sub.last_seq == 41 and repairs == []
    # Redis lost the feed: its seqs start over in another epoch. Without the epoch these events
    # would look like duplicates and be dropped in silence.
    hub.deliver(w(hub, "feed"), feed_event(1, "new"))
    assert repairs == ["feed"] and sub.last_seq == 41
    assert hub.repair_from(w(hub, "feed")) == (41, "old")
    snapshot = Event.feed_snapshot({"type": "snapshot", "feed_seq": 1, "epoch": "new", "jobs": []})
    assert hub.apply_repair(w(hub, "feed"), [], snapshot)
    assert (sub.last_seq, sub.epoch) == (1, "new")
    hub.deliver(w(hub, "feed"), feed_event(2, "new"))
    assert [e.seq for e in sub.outbox.take_nowait()] == [41, 1, 2]


def test_a_snapshot_resets_a_watcher_whose_seq_is_beyond_the_head() -> None:
    sub = Subscription(Named("j"), Outbox(8), since=999)
    snapshot = Event.snapshot({"id": "j", "last_event_id": 12, "state": "running"})
    sub.push_snapshot(snapshot)  # an older snapshot of the same history: stale, dropped
    assert len(sub.outbox) == 0
    sub.reset(snapshot)  # an id beyond the head is no position at all: start over
    assert sub.last_seq == 12 and sub.outbox.take_nowait() == [snapshot]


def test_a_catching_up_watcher_goes_live_only_when_history_reaches_its_pending_events() -> None:
    hub = Hub(lambda job: None)
    sub = Subscription(Named("j"), Outbox(8), since=0)
    hub.add(sub)
    for seq in (5, 6):
        live(hub, "j", seq, b"progress", b"{}")  # live events while the watcher reads history
    sub.push(event(1))
    sub.push(event(2))
    assert not hub.go_live(sub)  # 3 and 4 are still in history only
    sub.push(event(3))
    sub.push(event(4))
    assert hub.go_live(sub)
    assert [e.seq for e in sub.outbox.take_nowait()] == [1, 2, 3, 4, 5, 6]


async def test_drained_waits_for_the_writer_to_take_the_queue() -> None:
    outbox = Outbox(8)
    outbox.put(event(1))
    waiter = asyncio.create_task(outbox.drained())
    await asyncio.sleep(0)
    assert not waiter.done()
    outbox.take_nowait()  # taken and written at once (server/transports/detached.py, server/transports/websocket/)
    await asyncio.wait_for(waiter, 1)
    outbox.put(event(2))
    closing = asyncio.create_task(outbox.drained())
    await asyncio.sleep(0)
    outbox.close("overflow")
    with pytest.raises(OutboxClosed):
        await closing


def test_a_repair_never_skips_a_seq_for_a_watcher_further_behind() -> None:
    hub = Hub(lambda job: None)
    ahead = ready_sub(hub, since=5)
    hub.start_repair(w(hub, "j"))
    behind = ready_sub(hub, since=2)  # went live after the repair chose to read after seq 5
    assert not hub.apply_repair(w(hub, "j"), [event(6), event(7)], None)  # not whole: repair again
    assert (ahead.last_seq, behind.last_seq) == (7, 2)
    assert hub.repair_from(w(hub, "j")) == (2, None)
    assert hub.apply_repair(w(hub, "j"), [event(seq) for seq in range(3, 8)], None)
    assert [e.seq for e in behind.outbox.take_nowait()] == [3, 4, 5, 6, 7]
    assert [e.seq for e in ahead.outbox.take_nowait()] == [6, 7]


async def test_an_outbox_is_bounded_in_bytes_too() -> None:
    # Few events, but big ones (snapshots, large results): the byte bound cuts the watcher off as
    # the event bound would for many small ones.
    outbox = Outbox(limit=100, max_bytes=1000)
    cut = []
    outbox.on_overflow = lambda: cut.append(True)
    for seq in range(1, 4):
        outbox.put(Event(f"job{seq}", seq, b"started", b"x" * 400))
    assert cut == [True] and outbox.closed == "overflow"
    # Superseded progress is dropped first, by bytes as by count.
    outbox = Outbox(limit=100, max_bytes=1000)
    for seq in range(1, 6):
        outbox.put(Event("j", seq, b"progress", b"x" * 300))
    assert not outbox.closed and outbox.dropped == 3 and outbox.size <= 1000
    assert [e.seq for e in await outbox.take(1)] == [4, 5]
    assert outbox.size == 0


class Socket:
    """A transport as the outbox and the lockstep see it: what was written, what is buffered."""

    def __init__(self) -> None:
        self.wire: list[bytes] = []
        self.buffered = 0

    def write(self, data: bytes) -> None:
        self.wire.append(data)

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def is_closing(self) -> bool:
        return False

    def set_write_buffer_limits(self, high: int) -> None:
        pass

    def seqs(self) -> list[int]:
        return [int(seq) for data in self.wire for seq in re.findall(rb'"seq":(\d+)', data)]


def held_sub(hub: Hub, websocket: bool) -> tuple[Subscription, Socket]:
    """A live watcher on a connection held without aiohttp, as server/transports/detached.py sets it up."""
    sub = ready_sub(hub, limit=16)
    sock = Socket()
    sub.outbox.transport = sock  # type: ignore[assignment]
    sub.outbox.websocket = websocket
    sub.outbox.direct = direct_writer(sock, websocket, 64 * 1024)  # type: ignore[arg-type]
    return sub, sock


def test_watchers_in_step_share_one_write_and_leave_it_rather_than_break_their_order() -> None:
    repairs: list[Watchers] = []
    hub = Hub(repairs.append)
    (a, a_sock), (b, b_sock), (c, c_sock) = (held_sub(hub, ws) for ws in (False, True, False))
    watchers = w(hub, "j")
    hub.deliver(watchers, event(1))
    assert len(watchers.lockstep) == 3 and not watchers.live
    hub.deliver(watchers, event(2))
    assert a_sock.wire[-1] is c_sock.wire[-1] and a_sock.wire[-1] == sse_chunk(a_sock_event := event(2))
    assert b_sock.wire[-1] == ws_frame(a_sock_event)

    # a's socket pauses (its protocol takes it out of step): its events queue from now on, and
    # even once its buffer has drained, nothing overtakes what waits in its queue.
    a_sock.buffered = 100_000
    a.outbox.leave_lockstep()
    hub.deliver(watchers, event(3))
    a_sock.buffered = 0
    hub.deliver(watchers, event(4))
    assert [e.seq for e in a.outbox.take_nowait()] == [3, 4]
    assert a in watchers.live and len(watchers.lockstep) == 2
    hub.deliver(watchers, event(5))  # written directly, and a is in step again
    assert len(watchers.lockstep) == 3
    # Another job's event waits in a's queue (a terminal one, for the connection's task): a's
    # next events must not overtake it.
    a.outbox.put(Event("k", 1, b"succeeded", b"{}"))
    hub.deliver(watchers, event(6))
    assert [(e.job_id, e.seq) for e in a.outbox.take_nowait()] == [("k", 1), ("j", 6)]

    # A gap takes everyone out of step, each with the seq it has: the repair reads from there.
    hub.deliver(watchers, event(8))
    assert repairs == [watchers] and hub.repair_from(watchers) == (6, None)
    assert hub.apply_repair(watchers, [event(7), event(8)], None)
    hub.deliver(watchers, event(9))
    assert len(watchers.lockstep) == 3
    # A terminal event goes through each watcher's queue, for its connection to end after it.
    hub.deliver(watchers, event(10, b"succeeded"))
    assert not watchers.lockstep
    for sub in (a, b, c):
        assert [e.seq for e in sub.outbox.take_nowait()] == [10] and sub.done
    assert a_sock.seqs() == [1, 2, 5, 7, 8, 9]
    assert b_sock.seqs() == c_sock.seqs() == [1, 2, 3, 4, 5, 6, 7, 8, 9]


def test_a_watcher_in_step_that_leaves_is_gone_and_the_last_one_unsubscribes() -> None:
    hub = Hub(lambda watchers: None)
    (a, a_sock), (b, _) = held_sub(hub, False), held_sub(hub, True)
    watchers = w(hub, "j")
    hub.deliver(watchers, event(1))
    assert len(watchers.lockstep) == 2
    assert not hub.remove(a)
    hub.deliver(watchers, event(2))
    assert a_sock.seqs() == [1] and a.lockstep is None
    assert hub.remove(b) and b"j" not in hub.topics
    # An outbox that closes takes its watcher out of step too.
    (c, c_sock), _ = held_sub(hub, False), held_sub(hub, False)
    hub.deliver(w(hub, "j"), event(1))
    c.outbox.close("client gone")
    hub.deliver(w(hub, "j"), event(2))
    assert c_sock.seqs() == [1] and len(w(hub, "j").lockstep) == 1
