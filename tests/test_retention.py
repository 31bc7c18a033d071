"""Redis stays bounded once jobs end: finished histories are compacted after their grace time
(late resumes get a snapshot), and the oldest finished jobs go first past the caps on kept jobs."""

from __future__ import annotations

import uuid

from jobcast.files.local import FileStore
from jobcast.files.storage import DirectoryStorage
from jobcast.jobs.upkeep.janitor import Janitor
from jobcast.protocol import EventType, State, loads, split_record
from jobcast.server.app import create_app
from jobcast.store.jobs import JobStore, Submission
from tests.helpers import demo, read_sse, submit, wait_for


async def finished_job(store: JobStore, progress_events: int, end: EventType = EventType.SUCCEEDED) -> str:
    job_id = uuid.uuid4().hex
    await store.create(job_id, Submission("demo", {"steps": 1}))
    await store.publish(job_id, EventType.STARTED, attempt=1)
    for i in range(1, progress_events + 1):
        await store.publish(
            job_id, EventType.PROGRESS, attempt=1, progress={"current": i, "total": progress_events}
        )
    error = {"type": "E", "message": "m"} if end is EventType.FAILED else None
    await store.publish(job_id, end, attempt=1, error=error)
    return job_id


async def kept_types(store: JobStore, job_id: str) -> list[str]:
    records, _ = await store.history_after(job_id, 0)
    return [loads(split_record(r)[2])["type"] for r in records]


async def test_a_finished_history_is_compacted_after_its_grace_and_late_resumes_get_a_snapshot(
    aiohttp_client, redis, settings
) -> None:
    graced = settings.model_copy(update={"history_grace_s": 3600})
    store = JobStore(redis, graced)
    client = await aiohttp_client(create_app(graced))
    job_id = await finished_job(store, 50)
    janitor = Janitor(store, DirectoryStorage(FileStore(settings.files_dir)))
    # Within the grace time a late resume still gets every event it missed.
    assert await janitor.compact_due() == 0
    events = await read_sse(client, f"/api/jobs/{job_id}/events", headers={"Last-Event-ID": "5"})
    assert [e.id for e in events] == list(range(6, 54))

    # Past it (a grace of 0 here), the history keeps its state changes and last progress only.
    now = JobStore(redis, settings.model_copy(update={"history_grace_s": 0}))
    other = await finished_job(now, 50)
    assert await Janitor(now, DirectoryStorage(FileStore(settings.files_dir))).compact_due() == 1
    assert await kept_types(now, other) == ["queued", "started", "progress", "succeeded"]
    records, _ = await now.history_after(other, 0)
    assert loads(split_record(records[2])[2])["progress"]["current"] == 50
    # A resume from before the end gets a snapshot of how the job ended, and the stream ends.
    events = await read_sse(client, f"/api/jobs/{other}/events", headers={"Last-Event-ID": "5"})
    assert [e.event for e in events] == ["snapshot"]
    assert events[0].data["state"] == "succeeded" and events[0].data["last_event_id"] == 53
    # One that saw the end already is told there is nothing more (204 stops EventSource).
    async with client.get(f"/api/jobs/{other}/events", headers={"Last-Event-ID": "53"}) as response:
        assert response.status == 204
    # The first job is still in its grace time: untouched.
    assert len(await kept_types(store, job_id)) == 53


async def test_past_the_cap_the_oldest_finished_jobs_go_first_with_their_files(redis, settings) -> None:
    capped = settings.model_copy(update={"max_finished_jobs": 3, "max_failed_jobs": 1})
    store = JobStore(redis, capped)
    files = FileStore(settings.files_dir)
    succeeded = [await finished_job(store, 2) for _ in range(5)]
    failed = [await finished_job(store, 0, EventType.FAILED) for _ in range(2)]
    running = uuid.uuid4().hex
    await store.create(running, Submission("demo", {}))
    for job_id in [*succeeded, *failed]:
        upload = files.job(job_id).upload_path("in.csv")
        upload.parent.mkdir(parents=True)
        upload.write_bytes(b"a,b\n")
        await store.quota.charge(job_id, None, 4)

    deleted = await Janitor(store, DirectoryStorage(files)).trim(State.SUCCEEDED)
    assert deleted == succeeded[:2]
    assert await Janitor(store, DirectoryStorage(files)).trim(State.FAILED) == failed[:1]
    for job_id in [*succeeded[:2], failed[0]]:
        assert await store.snapshot(job_id) is None
        assert not files.job(job_id).root.exists()
        assert not await redis.exists(store.keys.history(job_id))
    for job_id in [*succeeded[2:], failed[1], running]:
        assert await store.snapshot(job_id) is not None
    ids = {raw.decode() for raw in await redis.zrange(store.keys.index_all, 0, -1)}
    assert ids == {*succeeded[2:], failed[1], running}
    # Their disk charges were given back.
    assert await store.quota.charge(running, None, 0) == 4 * 4  # 7 charged, 3 given back
    # Within the caps, a pass deletes nothing.
    assert await Janitor(store, DirectoryStorage(files)).run_once() == (0, 0)


async def test_workers_compact_finished_jobs(spawn, client, redis, settings) -> None:
    spawn("worker", JOBCAST_HISTORY_GRACE_S="0", JOBCAST_JANITOR_INTERVAL_S="0.2")
    job = await submit(client, body=demo(20, 1))
    store = JobStore(redis, settings)

    async def compacted() -> bool:
        return await redis.hget(store.keys.job(job["id"]), "compacted") is not None

    await wait_for(compacted, what="the worker's janitor to compact the finished job")
    types = await kept_types(store, job["id"])
    assert types[-1] == "succeeded" and types.count("progress") <= 1


async def test_a_running_jobs_history_costs_little_more_than_its_records_at_any_length(
    redis, settings
) -> None:
    """A running job's history costs at most 1.3 times its records' bytes, short or long (a sorted set of such
    records costs about 1.6 times, whatever its length)."""
    store = JobStore(redis, settings)
    job_id = uuid.uuid4().hex
    await store.create(job_id, Submission("demo", {"steps": 3000}))
    await store.publish(job_id, EventType.STARTED, attempt=1)
    published = 2
    for length in (20, 200, 3000):
        for i in range(published, length):
            progress = {"current": i, "total": 3000, "message": f"row {i} of the report"}
            await store.publish(job_id, EventType.PROGRESS, attempt=1, progress=progress)
        published = length
        history = store.keys.history(job_id)
        records = await redis.lrange(history, 0, -1)
        assert len(records) == length
        ratio = await redis.memory_usage(history, samples=0) / sum(map(len, records))
        assert ratio <= 1.3, f"{length} events: {ratio:.2f} times their bytes"


async def test_pages_of_a_trimmed_history_start_where_they_should(redis, settings) -> None:
    store = JobStore(redis, settings.model_copy(update={"history_max_events": 5}))
    job_id = await finished_job(store, 10)  # seqs 1 to 13: queued, started, 10 progress, succeeded
    page = await store.history_page(job_id, 9, 2)
    assert page.oldest == 9 and page.head == 13
    assert [split_record(r)[0] for r in page.records] == [10, 11]
    page = await store.history_page(job_id, 3, None)
    assert page.misses(3)  # trimmed past it: a snapshot instead
    assert [split_record(r)[0] for r in page.records] == [9, 10, 11, 12, 13]
    assert (await store.history_page(job_id, 13, None)).records == []


async def test_histories_an_earlier_version_kept_as_sorted_sets_move_to_lists(redis, settings) -> None:
    from jobcast.jobs.upkeep.migrate import migrate_histories

    store = JobStore(redis, settings)
    moved_job = await finished_job(store, 3)  # seqs 1 to 6
    records = await redis.lrange(store.keys.history(moved_job), 0, -1)
    # As an earlier jobcast left it: the records in a sorted set scored by seq, with an expiry.
    await redis.delete(store.keys.history(moved_job))
    old = store.keys.old_history(moved_job)
    await redis.zadd(old, {r: split_record(r)[0] for r in records})
    await redis.expire(old, 3600)
    # A job that went on during a rolling upgrade: its list began after its old records.
    both = await finished_job(store, 1)
    await redis.zadd(store.keys.old_history(both), {b"1\nqueued\n{}": 1})

    # An owner's feed as it was (the dashboard's own has a list already: its old one goes).
    owner_feed = store.keys.feed("alice").history
    feed_records = [b"1\nqueued\nj1\n1a2b\n{}", b"2\nstarted\nj1\n1a2b\n{}"]
    await redis.zadd(store.keys.old_feed_history("alice"), {r: i for i, r in enumerate(feed_records, 1)})
    await redis.zadd(store.keys.old_feed_history(), {b"1\nqueued\nj\ne\n{}": 1})

    assert await migrate_histories(store) == len(records) + len(feed_records)
    assert await redis.lrange(owner_feed, 0, -1) == feed_records
    assert not await redis.exists(store.keys.old_feed_history())
    assert await redis.lrange(store.keys.history(moved_job), 0, -1) == records
    assert 3500 < await redis.ttl(store.keys.history(moved_job)) <= 3600
    assert not await redis.exists(old, store.keys.old_history(both))
    assert len(await redis.lrange(store.keys.history(both), 0, -1)) == 4
    page = await store.history_page(moved_job, 4, None)
    assert [split_record(r)[0] for r in page.records] == [5, 6]
    assert await migrate_histories(store) == 0
