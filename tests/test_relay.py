"""The relay and the hub over an in-memory broker: joining, resuming, paging, reconnecting and
repairing, with the outages made on purpose. No Redis: these run in milliseconds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from jobcast.server.fanout.hub import Outbox, Subscription
from jobcast.server.fanout.relay import Relay
from tests.memory_broker import MemoryBroker

PAGE = 10


@pytest.fixture
def broker() -> MemoryBroker:
    return MemoryBroker(history_max=50)


@pytest.fixture
async def relay(broker: MemoryBroker) -> AsyncIterator[Relay]:
    relay = Relay(broker, page_size=PAGE, subscribe_timeout_s=1)
    await relay.start()
    await asyncio.wait_for(relay.connected.wait(), 1)
    yield relay
    await relay.stop()


async def watch(relay: Relay, job_id: str, since: int | None, limit: int = 1000) -> Subscription:
    """Join as a transport does, driving the catch-up a page at a time."""
    sub = Subscription(relay.broker.job(job_id), Outbox(limit), since)
    catch_up = await relay.join(sub, since)
    while catch_up is not None and not await catch_up.step():
        pass
    return sub


async def seqs(sub: Subscription, until: int) -> list[int]:
    """What the watcher received, up to seq `until` (snapshots included, by their seq)."""
    got: list[int] = []
    async with asyncio.timeout(2):
        while not got or got[-1] < until:
            got += [event.seq for event in await sub.outbox.take()]
    return got


async def test_a_resuming_watcher_gets_history_in_pages_then_live_events(relay, broker) -> None:
    for _ in range(35):
        broker.publish("j")
    sub = await watch(relay, "j", since=3)
    broker.publish("j")
    broker.publish("j", b"succeeded")
    assert await seqs(sub, 37) == list(range(4, 38))
    assert sub.done


async def test_a_new_watcher_starts_from_a_snapshot(relay, broker) -> None:
    for _ in range(5):
        broker.publish("j")
    sub = await watch(relay, "j", since=None)
    broker.publish("j")
    assert await seqs(sub, 6) == [5, 6]
    assert sub.outbox.take_nowait() == []


async def test_events_lost_while_the_connection_was_down_are_repaired_from_history(relay, broker) -> None:
    broker.publish("j")
    sub = await watch(relay, "j", since=0)
    assert await seqs(sub, 1) == [1]
    broker.deaf = True  # what is published now never reaches the relay live
    broker.drop_connections()
    for _ in range(3):
        broker.publish("j")
    broker.deaf = False
    broker.publish("j")  # live, or read by the repair if the relay has not reconnected yet
    assert await seqs(sub, 5) == [2, 3, 4, 5]
    assert relay.reconnects == 1


async def test_a_gap_in_live_events_is_repaired_without_duplicates(relay, broker) -> None:
    broker.publish("j")
    sub = await watch(relay, "j", since=0)
    assert await seqs(sub, 1) == [1]
    broker.deaf = True
    broker.publish("j")  # lost on the way
    broker.deaf = False
    broker.publish("j")
    broker.publish("j")
    assert await seqs(sub, 4) == [2, 3, 4]


async def test_a_watcher_too_far_behind_history_gets_a_snapshot(relay, broker) -> None:
    for _ in range(80):  # history keeps the last 50
        broker.publish("j")
    sub = await watch(relay, "j", since=10)
    broker.publish("j")
    assert await seqs(sub, 81) == [80, 81]


async def test_watchers_of_a_job_whose_data_was_lost_are_told_and_ended(relay, broker) -> None:
    broker.publish("j")
    sub = await watch(relay, "j", since=0)
    assert await seqs(sub, 1) == [1]
    broker.deaf = True
    broker.drop_connections()
    del broker.jobs["j"]
    broker.deaf = False
    async with asyncio.timeout(2):
        (gone,) = await sub.outbox.take()
    assert gone.type == b"error" and sub.done


async def test_the_last_watcher_leaving_unsubscribes_and_an_unknown_job_is_refused(relay, broker) -> None:
    broker.publish("j")
    a = await watch(relay, "j", since=0)
    b = await watch(relay, "j", since=0)
    (connection,) = broker.connections
    relay.leave(a)
    assert connection.channels == {relay.broker.job("j").key}
    relay.leave(b)
    assert connection.channels == set() and relay.hub.topics == {}
    from jobcast.server.fanout.topics import JobNotFound

    with pytest.raises(JobNotFound):
        await watch(relay, "nope", since=None)
    assert relay.hub.topics == {}


async def test_the_relay_outlives_a_broker_that_is_down(broker) -> None:
    broker.down = True
    relay = Relay(broker, page_size=PAGE, subscribe_timeout_s=1)
    await relay.start()
    try:
        for _ in range(3):  # it keeps trying
            await asyncio.wait_for(broker.attempted.wait(), 3)
            broker.attempted.clear()
        assert not relay.connected.is_set()
        broker.down = False
        await asyncio.wait_for(relay.connected.wait(), 3)
    finally:
        await relay.stop()
    assert all(task.done() for task in relay._tasks) and relay._tasks == []
