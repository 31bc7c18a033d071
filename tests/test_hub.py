"""Unit tests of the hub's fan-out rules (no Redis involved)."""

from __future__ import annotations

import asyncio

import pytest

from jobcast.tasks import cancel_and_wait
from server.hub import Event, Hub, Outbox, OutboxClosed, Subscription


def event(seq: int, type_: bytes = b"progress", job: str = "j") -> Event:
    return Event(job, seq, type_, b'{"seq":%d}' % seq)


def ready_sub(hub: Hub, limit: int = 8, since: int = 0, job: str = "j") -> Subscription:
    sub = Subscription(job, Outbox(limit), since)
    hub.add(sub)
    hub.mark_ready(sub)
    return sub


async def test_every_watcher_gets_the_same_bytes() -> None:
    hub = Hub(lambda job: None)
    a, b = ready_sub(hub), ready_sub(hub)
    hub.deliver("j", 1, b"queued", b'{"x":1}')
    (ea,), (eb,) = await a.outbox.take(1), await b.outbox.take(1)
    assert ea is eb and ea.sse == b'id: 1\nevent: queued\ndata: {"x":1}\n\n'


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
    hub = Hub(repairs.append)
    sub = ready_sub(hub, since=3)
    hub.deliver("j", 3, b"progress", b"{}")  # already seen
    hub.deliver("j", 4, b"progress", b"{}")
    assert sub.last_seq == 4 and len(sub.outbox) == 1 and repairs == []
    hub.deliver("j", 6, b"progress", b"{}")  # 5 is missing
    assert repairs == ["j"] and sub.last_seq == 4
    hub.deliver("j", 7, b"progress", b"{}")  # held back while repairing
    assert hub.repair_from("j") == 4
    assert not hub.apply_repair("j", [event(5), event(6)], None)  # 7 was seen: not whole yet
    assert hub.apply_repair("j", [event(7)], None)
    assert sub.last_seq == 7


def test_live_events_wait_for_the_replay_of_a_joining_watcher() -> None:
    hub = Hub(lambda job: None)
    sub = Subscription("j", Outbox(8), 0)
    hub.add(sub)
    hub.deliver("j", 3, b"progress", b"{}")  # arrives while the replay is being read
    for seq in (1, 2):
        sub.push(event(seq))
    hub.mark_ready(sub)
    assert sub.last_seq == 3 and len(sub.outbox) == 3


def test_nothing_reaches_a_watcher_after_the_terminal_event() -> None:
    hub = Hub(lambda job: None)
    sub = ready_sub(hub)
    hub.deliver("j", 1, b"succeeded", b"{}")
    hub.deliver("j", 2, b"progress", b"{}")
    assert sub.done and len(sub.outbox) == 1


async def test_cancel_and_wait_never_swallows_the_callers_cancellation() -> None:
    inner_started = asyncio.Event()

    async def forever() -> None:
        inner_started.set()
        await asyncio.sleep(3600)

    async def owner() -> None:
        task = asyncio.create_task(forever())
        await inner_started.wait()
        try:
            await asyncio.sleep(3600)
        finally:
            await cancel_and_wait(task)

    outer = asyncio.create_task(owner())
    await inner_started.wait()
    outer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await outer
    assert outer.cancelled()
