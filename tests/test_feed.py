"""The dashboard feed: every job's events on one stream (SSE `/api/events`, or a WebSocket
`subscribe_feed`), resumable by feed seq."""

from __future__ import annotations

import asyncio
import uuid

from tests.helpers import SseEvent, demo, sse_events, submit, wait_for, watch_to_end


def lifecycle_seqs(events: list[SseEvent]) -> list[int]:
    return [e.data["feed_seq"] for e in events if e.id is not None and e.event != "snapshot"]


def feed_id(event: SseEvent | dict) -> str:
    """The id a feed event carries: `<epoch>:<feed seq>`."""
    data = event.data if isinstance(event, SseEvent) else event
    return f"{data['epoch']}:{data['feed_seq']}"


async def test_the_feed_carries_every_jobs_state_changes_and_progress(client, worker) -> None:
    earlier = await submit(client, body=demo(1, 1))
    await watch_to_end(client, earlier["id"])
    seen: list[SseEvent] = []
    async with client.get("/api/events") as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = sse_events(response)
        snapshot = await anext(events)
        assert snapshot.event == "snapshot" and snapshot.id == feed_id(snapshot)
        assert [j["id"] for j in snapshot.data["jobs"]] == [earlier["id"]]
        jobs = [await submit(client, body=demo(5, 20)) for _ in range(3)]
        async with asyncio.timeout(30):
            async for event in events:
                seen.append(event)
                if sum(e.event == "succeeded" for e in seen) == 3:
                    break
    by_job = {j["id"]: [e for e in seen if e.data["job_id"] == j["id"]] for j in jobs}
    for job_events in by_job.values():
        types = [e.event for e in job_events]
        assert types[0] == "queued" and types[1] == "started" and types[-1] == "succeeded"
        assert "progress" in types
        seqs = [e.data["seq"] for e in job_events]
        assert seqs == sorted(set(seqs))  # each job's own seqs in order, none twice
    # State changes are numbered by the feed, with no gap; progress is live only (no id).
    feed_seqs = lifecycle_seqs(seen)
    head = snapshot.data["feed_seq"]
    assert feed_seqs == list(range(head + 1, head + 1 + len(feed_seqs)))
    assert all(e.id is None for e in seen if e.event == "progress")
    assert all(feed_id(e) == e.id for e in seen if e.id is not None)


async def test_a_feed_watcher_resumes_after_its_last_feed_seq(client, worker) -> None:
    async with client.get("/api/events") as response:
        events = sse_events(response)
        snapshot = await anext(events)
    head = snapshot.data["feed_seq"]
    jobs = [await submit(client, body=demo(2, 1)) for _ in range(3)]
    for job in jobs:
        await watch_to_end(client, job["id"])
    resumed: list[SseEvent] = []
    async with client.get("/api/events", headers={"Last-Event-ID": snapshot.id}) as response:
        events = sse_events(response)
        async with asyncio.timeout(10):
            async for event in events:
                resumed.append(event)
                if sum(e.event == "succeeded" for e in resumed) == 3:
                    break
    assert resumed[0].event != "snapshot"
    assert lifecycle_seqs(resumed) == list(range(head + 1, head + 1 + 9))  # queued, started, succeeded x3
    assert {e.data["job_id"] for e in resumed} == {j["id"] for j in jobs}


async def test_the_feed_over_websocket(client, worker) -> None:
    ws = await client.ws_connect("/api/ws")
    await ws.send_json({"type": "subscribe_feed"})
    assert await ws.receive_json() == {"type": "subscribed", "feed": True}
    snapshot = await ws.receive_json()
    assert snapshot["type"] == "snapshot" and "jobs" in snapshot
    job = await submit(client, body=demo(3, 20))
    messages = []
    async with asyncio.timeout(20):
        while not messages or messages[-1]["type"] != "succeeded":
            messages.append(await ws.receive_json())
    assert [m["feed_seq"] for m in messages if "feed_seq" in m] == [
        snapshot["feed_seq"] + i for i in (1, 2, 3)
    ]
    assert {m["job_id"] for m in messages} == {job["id"]}
    await ws.send_json({"type": "unsubscribe_feed"})
    assert await ws.receive_json() == {"type": "unsubscribed", "feed": True}
    await ws.close()


async def test_the_feed_is_repaired_after_its_pubsub_connection_is_killed(client, worker, redis) -> None:
    seen: list[SseEvent] = []

    async def watch() -> None:
        async with client.get("/api/events") as response:
            async for event in sse_events(response):
                seen.append(event)

    watcher = asyncio.create_task(watch())
    try:
        await wait_for(lambda: seen, what="the feed snapshot")
        job = await submit(client, body=demo(30, 20))
        await wait_for(lambda: any(e.event == "progress" for e in seen), what="progress")
        clients = (await redis.execute_command("CLIENT", "LIST", "TYPE", "pubsub")).decode().splitlines()
        relay = next(line.split()[0].split("=")[1] for line in clients if " name=jobcast-relay " in line)
        await redis.execute_command("CLIENT", "KILL", "ID", relay)
        await watch_to_end(client, job["id"])
        await wait_for(lambda: any(e.event == "succeeded" for e in seen), what="the end on the feed")
    finally:
        watcher.cancel()
    head = seen[0].data["feed_seq"]
    assert lifecycle_seqs(seen) == [head + 1, head + 2, head + 3]
    assert [e.event for e in seen if e.id is not None][1:] == ["queued", "started", "succeeded"]


async def test_a_feed_snapshot_is_bounded_in_bytes(redis, settings) -> None:
    from jobcast.protocol import dumps
    from jobcast.queries.feed import feed_snapshot
    from jobcast.store.jobs import JobStore, Submission

    bounded = settings.model_copy(update={"feed_snapshot_bytes": 16 * 1024})
    store = JobStore(redis, bounded)
    for _ in range(6):
        await store.create(uuid.uuid4().hex, Submission("demo", {"pad": "x" * 5000}))
    snapshot = await feed_snapshot(store)
    # The newest jobs that fit in 16 KB (each is over 5 KB), not all six.
    sizes = [len(dumps(job)) for job in snapshot["jobs"]]
    assert 1 <= len(sizes) < 6 and sum(sizes) <= 16 * 1024
    assert sum(sizes) + sizes[0] > 16 * 1024  # one more would not have fit


async def test_feeds_keep_every_submission_in_order_and_an_owners_feed_expires(redis, settings) -> None:
    """A single create writes its feed records at once, a batch's create gathers them and writes
    them at the end of the call: both leave consecutive feed seqs in each feed's history, and an
    owner's feed (not the every-job feed) gets the retention as its expiry."""
    from jobcast.queries.feed import feed_page
    from jobcast.store.jobs import JobStore, Submission

    store = JobStore(redis, settings)
    submission = Submission("demo", {"steps": 1}, max_attempts=1)
    single = store.create_call(uuid.uuid4().hex, submission, owner="alice")
    await store.create(single.job_id, submission, owner="alice")
    batch = [store.create_call(uuid.uuid4().hex, submission, owner="alice") for _ in range(3)]
    assert all(isinstance(outcome, dict) for outcome in await store.create_many(batch))
    ids = [single.job_id, *(call.job_id for call in batch)]
    for owner in (None, "alice"):
        page = (await feed_page(store, 0, None, owner)).page
        records = [record.split(b"\n") for record in page.records]
        assert [int(r[0]) for r in records] == [1, 2, 3, 4] and page.head == 4
        assert [r[2].decode() for r in records] == ids
    assert 0 < await redis.ttl(store.keys.feed("alice").history) <= settings.retention_s
    assert await redis.ttl(store.keys.feed().history) == -1
