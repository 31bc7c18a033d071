"""The Lua scripts, each against the suite's Redis: the atomicity and fencing rules it promises.

Python owns the Redis layout (jobcast/store/scripts.py), so these call the scripts as the store and the
worker do, with named keys and arguments, and read Redis to see what each left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import SecretStr

from jobcast.errors import IdempotentReplay, NotRetryable, TooManyWaiting
from jobcast.jobs.arq_runtime import Claim, JobcastWorker
from jobcast.protocol import EventType, Keys, Priority
from jobcast.redis.pubsub import connect_pubsub
from jobcast.store.jobs import JobStore, Submission
from jobcast.store.records import RECORD_FIELDS, record_from
from jobcast.store.scripts import Status, layout, lua_table
from jobcast.store.shards import Shards

LUA = Path(__file__).resolve().parent.parent / "jobcast" / "store" / "lua"


@pytest.fixture
def store(redis, settings) -> JobStore:
    return JobStore(redis, settings)


async def everything(store: JobStore) -> dict[str, object]:
    """Every key under the test's prefix and arq's keys, with its content."""
    out: dict[str, object] = {}
    for pattern in (f"{store.keys.prefix}:*", "arq:*"):
        async for key in store.redis.scan_iter(pattern):
            kind = (await store.redis.type(key)).decode()
            dump = {
                "hash": store.redis.hgetall,
                "zset": lambda k: store.redis.zrange(k, 0, -1, withscores=True),
                "list": lambda k: store.redis.lrange(k, 0, -1),
                "string": store.redis.get,
            }[kind]
            out[key.decode()] = await dump(key)
    return out


@contextlib.asynccontextmanager
async def listening(store: JobStore, settings: Any, channel: str) -> AsyncIterator[asyncio.Queue[bytes]]:
    """The messages on `channel`, heard as the workers hear them (sharded on a cluster)."""
    heard: asyncio.Queue[bytes] = asyncio.Queue()
    subscribed = asyncio.Event()
    conn = await connect_pubsub(
        settings.redis_url,
        lambda _, data: heard.put_nowait(data),
        lambda _: subscribed.set(),
        key_prefix=store.keys.prefix,
    )
    try:
        conn.subscribe([channel.encode()])
        await asyncio.wait_for(subscribed.wait(), 5)
        yield heard
    finally:
        conn.close()


async def new_job(store: JobStore, priority: Priority = Priority.DEFAULT, delay_s: float = 0.0) -> str:
    job_id = uuid.uuid4().hex
    await store.create(job_id, Submission("demo", {}, priority=priority, delay_s=delay_s))
    return job_id


async def claim(store: JobStore, owner: str, want: int = 10, lease_ms: int = 10_000) -> dict:
    return await store.scripts.call("dispatch", owner=owner, want=want, lease_ms=lease_ms)


async def renew(store: JobStore, job_id: str, owner: str, lease_ms: int = 10_000) -> dict:
    keys = {"job": store.keys.job(job_id)}
    return await store.scripts.call(
        "renew", keys, id=job_id, priority="default", owner=owner, lease_ms=lease_ms
    )


async def finish(store: JobStore, job_id: str, owner: str, *, done: bool, ready_ms: int = 0) -> dict:
    keys = store.keys
    return await store.scripts.call(
        "finish",
        {"job": keys.job(job_id)},
        id=job_id,
        priority="default",
        owner=owner,
        finish=done,
        ready_ms=ready_ms,
    )


def test_no_script_holds_a_redis_key_name() -> None:
    # Key names are built in protocol.Keys and passed in; a literal like 'arq:job:' or ':queue:'
    # in a script would be a second source of truth.
    literals = [
        (path.name, m.group(1))
        for path in LUA.glob("*.lua")
        for m in re.finditer(r"'((?:[^'\\]|\\.)*)'", path.read_text())
    ]
    assert literals  # the check reads something
    keyish = [
        (name, lit) for name, lit in literals if re.match(r"^:?[\w-]+:", lit) or re.fullmatch(r":[\w-]+", lit)
    ]
    assert keyish == []


async def test_create_writes_the_whole_job_or_nothing(store, settings) -> None:
    job_id = await new_job(store)
    data = await everything(store)
    assert data[store.keys.job(job_id)][b"state"] == b"queued"
    assert [m for m, _ in data[store.keys.queue("default")]] == [job_id.encode()]
    assert len(data[store.keys.history(job_id)]) == 1
    # Nothing of arq's: the claim brings the worker what it runs the job from.
    assert not any(key.startswith("arq:") for key in data)
    assert job_id.encode() in [m for m, _ in data[store.keys.index_all]]

    # Each refusal leaves Redis exactly as it was.
    limited = JobStore(store.redis, settings.model_copy(update={"max_waiting_jobs": 1}))
    with pytest.raises(TooManyWaiting):
        await limited.create(uuid.uuid4().hex, Submission("demo", {}))
    with pytest.raises(NotRetryable):
        await store.create(uuid.uuid4().hex, Submission("demo", {}), retry_of=job_id)  # not failed
    assert await everything(store) == data


async def test_an_idempotency_key_names_its_job_until_the_job_is_gone(store) -> None:
    first = uuid.uuid4().hex
    await store.create(first, Submission("demo", {"a": 1}), idempotency_key="k")
    with pytest.raises(IdempotentReplay) as replay:
        await store.create(uuid.uuid4().hex, Submission("demo", {"a": 2}), idempotency_key="k")
    assert replay.value.job_id == first and not replay.value.same_request
    await store.redis.delete(store.keys.job(first))  # expired
    again = uuid.uuid4().hex
    await store.create(again, Submission("demo", {"a": 2}), idempotency_key="k")


async def test_publish_fences_attempts_and_ended_jobs(store) -> None:
    job_id = await new_job(store)
    assert await store.publish(job_id, EventType.STARTED, attempt=1) == 2
    assert await store.publish(job_id, EventType.STARTED, attempt=1) == 0  # the same attempt twice
    assert await store.publish(job_id, EventType.STARTED, attempt=2) == 3
    assert await store.publish(job_id, EventType.PROGRESS, attempt=1) == 0  # a stale attempt
    assert await store.publish(job_id, EventType.SUCCEEDED, attempt=2) == 4
    assert await store.publish(job_id, EventType.FAILED, attempt=2) == 0  # ended
    unknown = uuid.uuid4().hex
    answer = await store.scripts.call(
        "publish", store.event_keys(unknown), **store.event(unknown, EventType.PROGRESS, attempt=1)
    )
    assert answer.status is Status.NOT_FOUND and not await store.redis.exists(store.keys.job(unknown))


async def test_a_claim_takes_due_jobs_by_priority_and_never_twice(store) -> None:
    low = await new_job(store, Priority.LOW)
    default = await new_job(store)
    high = await new_job(store, Priority.HIGH)
    delayed = await new_job(store, delay_s=60)
    first = await claim(store, "a", want=2)
    assert [j[0] for j in first["jobs"]] == [high, default]
    # Every slot asked for is taken: the worker polls again as its jobs end.
    assert first["next_ms"] == -1
    second = await claim(store, "b", want=2)
    assert [j[0] for j in second["jobs"]] == [low]
    # A slot is left: poll again when the first lease lapses, sooner than the delayed job is due.
    assert second["next_ms"] == await store.redis.zscore(store.keys.running("high"), high)
    assert (await claim(store, "c"))["jobs"] in ([], {})
    assert await store.redis.zscore(store.keys.queue("default"), delayed) is not None
    assert await store.redis.hget(store.keys.leases, high) == b"a"


async def test_a_batch_leaves_the_clocks_counts_and_feed_as_one_create_at_a_time_would(
    redis, settings
) -> None:
    """create.lua writes the clocks, the kinds' waiting counts and the feed's trim once a call
    (see `defer_writes` in events.lua): the next call must see them as if written per job."""
    store = JobStore(redis, settings.model_copy(update={"history_max_events": 5, "create_chunk_jobs": 4}))

    def calls(n: int, priority: Priority = Priority.DEFAULT) -> list:
        return [
            store.create_call(uuid.uuid4().hex, Submission("demo", {}, priority=priority)) for _ in range(n)
        ]

    # Two batches in the same millisecond or so, in chunks of 4: their order in the queue and in
    # the listing is the order they were submitted in, across chunks and across calls.
    first, second = calls(6), calls(3) + calls(2, Priority.LOW)
    for batch in (first, second):
        assert all(isinstance(o, dict) for o in await store.create_many(batch))
    ids = [c.job_id for c in first + second]
    queued = await store.redis.zrange(store.keys.queue("default"), 0, -1)
    assert [q.decode() for q in queued] == ids[:9]
    listed = await store.redis.zrange(store.keys.index_all, 0, -1)
    assert [j.decode() for j in listed] == ids
    assert await store.redis.hgetall(store.keys.kind_waiting) == {b"demo|default": b"9", b"demo|low": b"2"}
    # The feed keeps its last 5 state changes, trimmed once a call.
    feed = await store.redis.lrange(store.keys.feed().history, 0, -1)
    assert [f.split(b"\n")[2].decode() for f in feed] == ids[-5:]
    # A claim (which writes each at once) goes on from where the batch left the clocks.
    claimed = await claim(store, "w", want=1)
    assert [j[0] for j in claimed["jobs"]] == [ids[0]]
    assert await store.redis.hget(store.keys.kind_waiting, "demo|default") == b"9"


async def test_a_claim_starts_the_jobs_that_can_simply_start_and_leaves_the_rest_to_the_worker(
    store,
) -> None:
    plain = await new_job(store)
    asked_to_cancel = await new_job(store)
    await store.redis.hset(store.keys.job(asked_to_cancel), "cancel_requested", "1")
    other_kind = uuid.uuid4().hex
    await store.create(other_kind, Submission("another", {}))
    no_attempts_left = await new_job(store)
    await store.redis.hset(store.keys.job(no_attempts_left), "attempt", 3)
    start = {"worker": '"w-1"', "ts": "2026-11-26T20:00:00.000Z", "kinds": {"demo": 3}}
    answer = await store.scripts.call(
        "dispatch", owner="w-1#1", want=10, lease_ms=10_000, fields=RECORD_FIELDS, start=start
    )
    started = {job[0]: job[4] for job in answer["jobs"]}
    assert set(started) == {plain, asked_to_cancel, other_kind, no_attempts_left}
    # Only the plain job started, with the event the worker would have published.
    assert started[plain] == 2 and not started[asked_to_cancel] and not started[other_kind]
    assert not started[no_attempts_left]
    snapshot = await store.snapshot(plain)
    assert snapshot["state"] == "running" and snapshot["attempt"] == 1
    assert snapshot["started_at"] == snapshot["first_started_at"] == "2026-11-26T20:00:00.000Z"
    history = await store.redis.lrange(store.keys.history(plain), 0, -1)
    event = orjson.loads(history[-1].split(b"\n", 2)[2])
    assert event == {
        "job_id": plain,
        "seq": 2,
        "type": "started",
        "state": "running",
        "ts": "2026-11-26T20:00:00.000Z",
        "attempt": 1,
        "progress": None,
        "result": None,
        "error": None,
        "worker": "w-1",
    }
    # The others are leased but still waiting: their worker decides how each goes on.
    for job_id in (asked_to_cancel, other_kind, no_attempts_left):
        assert (await store.snapshot(job_id))["state"] == "queued"
        assert await store.redis.hget(store.keys.leases, job_id) == b"w-1#1"
    # A second claim of a started attempt (its lease lapsed) is not started again by the claim.
    await store.redis.zadd(store.keys.running("default"), {plain: 0})
    again = await store.scripts.call(
        "dispatch", owner="w-2#1", want=10, lease_ms=10_000, fields=RECORD_FIELDS, start=start
    )
    assert [(job[0], job[4]) for job in again["jobs"]] == [(plain, 0)]


async def test_the_layout_written_into_each_script_is_what_its_json_decodes_to(store, settings) -> None:
    """Scripts read `L` from a Lua literal built by `lua_table`, not from JSON: Redis must build
    the same table cjson.decode would have, whatever the strings hold."""
    awkward = {
        "plain": "jobcast:job:",
        'a "quoted" \\ key': "line\nbreak\ttab\r\x00\x7f",
        "unicode": "é ✓ 😀",
        "numbers": [0, -5, 2**31, 0.25],
        "flags": {"yes": True, "no": False},
        "nested": {"list": [["x"], {"a": "b"}], "empty": {}},
    }
    full = layout(Keys(settings.key_prefix), settings)
    for value in (awkward, full):
        built = store.redis.register_script(f"return cjson.encode({lua_table(value)})")
        assert orjson.loads(await built()) == value
    with pytest.raises(TypeError):
        lua_table({"unset": None})  # nil in Lua, where cjson.decode gives a truthy cjson.null


def test_every_process_sends_redis_the_same_scripts(settings) -> None:
    """Redis keeps every script it is sent until it restarts: were a script's source to differ
    from one process to the next (its layout in a set's order, say, which string hashing changes
    per process), every restarted web or worker process would add its scripts to Redis's memory."""
    program = (
        "import json, sys\n"
        "from redis.asyncio import Redis\n"
        "from jobcast.protocol import Keys\n"
        "from jobcast.settings import Settings\n"
        "from jobcast.store.scripts import Scripts\n"
        "settings = Settings(redis_url='redis://unused', key_prefix=sys.argv[1])\n"
        "scripts = Scripts(Redis(), Keys(settings.key_prefix), settings)\n"
        "print(json.dumps({name: script.sha for name, script in scripts._scripts.items()}))\n"
    )
    shas = [
        orjson.loads(
            subprocess.run(
                [sys.executable, "-c", program, settings.key_prefix],
                env={**os.environ, "PYTHONHASHSEED": seed},
                capture_output=True,
                check=True,
            ).stdout
        )
        for seed in ("1", "2", "3")
    ]
    assert shas[0] == shas[1] == shas[2]


async def test_the_started_event_a_claim_publishes_is_the_one_a_worker_would(store) -> None:
    """dispatch.lua builds a `started` event of its own (jobcast.protocol's template is Python's):
    the two must not drift apart, in the event, the record or the feed."""
    by_claim = await new_job(store)
    start = {"worker": '"w-1"', "ts": "2026-11-26T20:00:00.000Z", "kinds": {"demo": 3}}
    answer = await store.scripts.call(
        "dispatch", owner="w-1#1", want=1, lease_ms=10_000, fields=RECORD_FIELDS, start=start
    )
    assert [job[4] for job in answer["jobs"]] == [2]
    by_worker = await new_job(store)
    assert await store.publish(by_worker, EventType.STARTED, attempt=1, extra={"worker": "w-1"}) == 2
    ts = (await store.snapshot(by_worker))["started_at"]

    async def seen(job_id: str, ts: str) -> tuple[bytes, dict[str, Any], bytes]:
        """The job's started record, its snapshot and its feed records, with its id and the
        start's time left out."""
        (record,) = await store.redis.lrange(store.keys.history(job_id), -1, -1)
        snapshot = await store.snapshot(job_id)
        for name in ("id", "created_at", "started_at", "first_started_at", "updated_at", "links"):
            snapshot.pop(name, None)
        feed = await store.redis.lrange(store.keys.feed(None).history, 0, -1)
        # Its `started` in the dashboard's feed, whose seq counts every job's events.
        (in_feed,) = [r for r in feed if job_id.encode() in r and b"\nstarted\n" in r]
        in_feed = re.sub(rb'"feed_seq":\d+', b"", in_feed.split(b"\n", 1)[1])
        record, in_feed = (
            r.replace(job_id.encode(), b"ID").replace(ts.encode(), b"TS") for r in (record, in_feed)
        )
        return record, snapshot, in_feed

    assert await seen(by_claim, start["ts"]) == await seen(by_worker, ts)


async def run_one_attempt(
    store: JobStore, settings: Any, run: Any, *, run_timeout_s: float
) -> tuple[JobcastWorker, str, int]:
    """A new job, claimed and run by a worker's own run loop (`JobcastWorker._run`) with `run`
    as its attempt: the worker, the job, and when the attempt started (ms)."""
    worker = JobcastWorker(
        shards=Shards([store]),
        settings=settings,
        name="w-1",
        run=run,
        run_timeout_s=run_timeout_s,
        redis_pool=store.redis,
        handle_signals=False,
    )
    job_id = await new_job(store)
    ((claimed, priority, score, *_),) = (await claim(store, "w-1#1"))["jobs"]
    before_ms = int(time.time() * 1000)
    await worker._run(claimed, Claim(priority, int(score), "w-1#1"))
    return worker, job_id, before_ms


async def test_a_job_the_worker_could_not_run_goes_back_to_its_queue(store, settings) -> None:
    # Not the job's own error (the attempt publishes those): the worker's, e.g. Redis gone longer
    # than its publishes retry. The job must not be dropped with no terminal event.
    async def cannot_run(ctx: dict, job_id: str) -> None:
        raise RuntimeError("the worker's own failure")

    worker, job_id, before_ms = await run_one_attempt(store, settings, cannot_run, run_timeout_s=5)
    due = await store.redis.zscore(store.keys.queue("default"), job_id)
    assert due is not None and due >= before_ms + int(settings.retry_max_s * 1000)
    assert await store.redis.hget(store.keys.leases, job_id) is None
    assert await store.redis.zscore(store.keys.running("default"), job_id) is None
    assert worker.jobs_failed == 1


async def test_an_attempt_that_outlives_the_last_resort_timeout_runs_again_at_once(store, settings) -> None:
    # Kinds bound their own attempts; this bounds a worker's slot if an attempt ignores its
    # cancellation or its kind's timeout. Its own TimeoutError is no such case (see above).
    async def hangs(ctx: dict, job_id: str) -> None:
        await asyncio.Event().wait()

    async def times_out_itself(ctx: dict, job_id: str) -> None:
        raise TimeoutError("the attempt's own")

    # A backoff long enough that "at once" cannot be mistaken for it on a slow machine.
    settings = settings.model_copy(update={"retry_max_s": 60.0})
    for run, failed, retried in ((hangs, 0, 1), (times_out_itself, 1, 0)):
        worker, job_id, before_ms = await run_one_attempt(store, settings, run, run_timeout_s=0.05)
        due = await store.redis.zscore(store.keys.queue("default"), job_id)
        again_at_once = before_ms <= due < before_ms + int(settings.retry_max_s * 1000)
        assert again_at_once is bool(retried)
        assert await store.redis.hget(store.keys.leases, job_id) is None
        assert (worker.jobs_failed, worker.jobs_retried) == (failed, retried)
        await store.redis.zrem(store.keys.queue("default"), job_id)


async def test_a_lapsed_lease_puts_the_job_back_for_the_next_claim(store) -> None:
    job_id = await new_job(store)
    held = await claim(store, "a", lease_ms=1)
    assert [j[0] for j in held["jobs"]] == [job_id]
    deadline = await store.redis.zscore(store.keys.running("default"), job_id)
    while int(time.time() * 1000) <= deadline:
        await store.redis.ping()  # lets the millisecond pass without sleeping on a guess
    taken = await claim(store, "b")
    assert [j[0] for j in taken["jobs"]] == [job_id]
    # The first holder learns it lost the job, and can neither renew nor finish it.
    lost = await renew(store, job_id, "a")
    assert lost.status is Status.NOT_HOLDER and lost["holder"] == "b"
    assert (await finish(store, job_id, "a", done=True)).status is Status.NOT_HOLDER
    assert await store.redis.zscore(store.keys.running("default"), job_id) is not None
    assert await store.redis.hget(store.keys.leases, job_id) == b"b"


async def test_renewal_extends_the_lease_and_reports_a_cancel(store) -> None:
    job_id = await new_job(store)
    await claim(store, "a", lease_ms=1_000)
    before = await store.redis.zscore(store.keys.running("default"), job_id)
    held = await renew(store, job_id, "a", lease_ms=60_000)
    assert held.status is Status.HELD and held["cancel_requested"] is False
    assert await store.redis.zscore(store.keys.running("default"), job_id) > before + 50_000
    await store.publish(job_id, EventType.STARTED, attempt=1)
    assert (await store.cancel(job_id)).requested
    assert (await renew(store, job_id, "a"))["cancel_requested"] is True


async def test_finish_ends_the_lease_and_requeues_or_removes_the_job(store) -> None:
    retried = await new_job(store)
    done = await new_job(store)
    await claim(store, "a")
    due = int(time.time() * 1000) + 30_000
    assert (await finish(store, retried, "a", done=False, ready_ms=due)).status is Status.OK
    assert await store.redis.zscore(store.keys.queue("default"), retried) == due
    assert (await finish(store, done, "a", done=True)).status is Status.OK
    assert await store.redis.zscore(store.keys.running("default"), done) is None
    assert await store.redis.zscore(store.keys.queue("default"), done) is None
    for job_id in (retried, done):
        assert await store.redis.zscore(store.keys.running("default"), job_id) is None
        assert await store.redis.hget(store.keys.leases, job_id) is None


async def test_a_job_cancelled_while_its_attempt_ends_is_not_put_back(store) -> None:
    job_id = await new_job(store)
    await claim(store, "a")
    await store.publish(job_id, EventType.STARTED, attempt=1)
    await store.publish(job_id, EventType.RETRYING, attempt=1, error={"type": "E", "message": "m"})
    assert (await store.cancel(job_id)).cancelled
    await finish(store, job_id, "a", done=False, ready_ms=0)
    assert await store.redis.zscore(store.keys.queue("default"), job_id) is None


async def test_cancel_ends_a_waiting_job_and_flags_a_running_one(store, settings) -> None:
    waiting = await new_job(store)
    outcome = await store.cancel(waiting)
    assert outcome.cancelled
    assert await store.redis.zscore(store.keys.queue("default"), waiting) is None
    assert (await store.cancel(waiting)).ended_as == "cancelled"

    running = await new_job(store)
    await claim(store, "a")
    await store.publish(running, EventType.STARTED, attempt=1)
    # Heard as the workers hear it (sharded on a cluster).
    async with listening(store, settings, store.keys.cancel_channel) as heard:
        assert (await store.cancel(running)).requested
        assert await asyncio.wait_for(heard.get(), 5) == running.encode()
    assert await store.redis.hget(store.keys.job(running), "state") == b"running"
    assert not (await store.cancel(uuid.uuid4().hex)).found


async def test_jobs_waiting_in_the_old_layout_move_to_their_queues(store) -> None:
    from jobcast.jobs.upkeep.migrate import migrate

    job_id = await new_job(store)
    await store.redis.zrem(store.keys.queue("default"), job_id)
    old = f"{store.keys.prefix}:dispatch:default"
    await store.redis.zadd(old, {job_id: 1000})
    assert await migrate(store.redis, store.keys, f"{store.keys.prefix}:old-queue") == 1
    assert not await store.redis.exists(old)
    assert [j[0] for j in (await claim(store, "a"))["jobs"]] == [job_id]
    assert await migrate(store.redis, store.keys) == 0


async def test_an_owners_waiting_count_follows_its_jobs_states(store) -> None:
    async def waiting() -> int:
        return int(await store.redis.hget(store.keys.owner_waiting, "ann") or 0)

    job_id = uuid.uuid4().hex
    await store.create(job_id, Submission("demo", {}), owner="ann")
    assert await waiting() == 1
    await store.publish(job_id, EventType.STARTED, owner="ann", attempt=1)
    assert await waiting() == 0
    await store.publish(
        job_id, EventType.RETRYING, owner="ann", attempt=1, error={"type": "E", "message": "m"}
    )
    assert await waiting() == 1
    await store.publish(job_id, EventType.STARTED, owner="ann", attempt=2)
    await store.publish(job_id, EventType.PROGRESS, owner="ann", attempt=2)
    assert await waiting() == 0
    other = uuid.uuid4().hex
    await store.create(other, Submission("demo", {}), owner="ann")
    assert (await store.cancel(other)).cancelled and await waiting() == 0
    assert not await store.redis.hexists(store.keys.owner_waiting, "ann")  # no leftover zero


async def test_a_claim_brings_the_record_the_worker_runs_the_job_from(store) -> None:
    job_id = await new_job(store, Priority.HIGH)
    answer = await store.scripts.call("dispatch", owner="w#1", want=1, lease_ms=10_000, fields=RECORD_FIELDS)
    ((claimed, priority, _, values, started),) = answer["jobs"]
    assert started == 0  # asked to start nothing
    assert (claimed, priority) == (job_id, "high")
    assert record_from(values) == await store.load(job_id)


class Held:
    """A claim, as JobStore.publish's `release` sees it."""

    def __init__(self, holder: str, priority: str = "default") -> None:
        self.holder, self.priority, self.released = holder, priority, False
        self.hand_off: Any = None


async def test_a_terminal_event_ends_the_holders_lease_in_the_same_script(store) -> None:
    mine, theirs = await new_job(store), await new_job(store)
    await claim(store, "w#1")
    for job_id in (mine, theirs):
        assert await store.publish(job_id, EventType.STARTED, attempt=1) > 0
    lease, stale = Held("w#1"), Held("w#0")
    # Progress never ends a lease; the holder's terminal event does, with arq's keys.
    assert await store.publish(mine, EventType.PROGRESS, attempt=1, release=lease) > 0 and not lease.released
    assert await store.publish(mine, EventType.SUCCEEDED, attempt=1, release=lease) > 0 and lease.released
    assert await store.redis.hget(store.keys.leases, mine) is None
    assert await store.redis.zscore(store.keys.running("default"), mine) is None
    # A run that lost the lease publishes (the job may still end) but leaves the holder's lease be.
    assert await store.publish(theirs, EventType.FAILED, attempt=1, release=stale) > 0 and not stale.released
    assert await store.redis.hget(store.keys.leases, theirs) == b"w#1"


async def test_a_stale_entry_in_an_owners_queue_is_never_claimed(redis, settings) -> None:
    # Owners take turns here; a process without fair turns (an older one in a rolling deploy, or
    # one with them off) claims from the priority's queue only, and leaves the owner's entry.
    fair = JobStore(redis, settings.model_copy(update={"secret": SecretStr("s" * 32)}))
    plain = JobStore(redis, settings)
    job_id = uuid.uuid4().hex
    await fair.create(job_id, Submission("demo", {}), owner="a")
    assert await redis.zcard(fair.keys.owner_queue("default", "a")) == 1
    first = await plain.scripts.call("dispatch", owner="old#1", want=1, lease_ms=10_000)
    assert [job[0] for job in first["jobs"]] == [job_id]
    # The stale entry is dropped, not claimed a second time while the first claim runs it.
    again = await fair.scripts.call("dispatch", owner="new#1", want=1, lease_ms=10_000)
    assert not again["jobs"]
    assert await redis.zcard(fair.keys.owner_queue("default", "a")) == 0


class Recorder:
    """A worker's hand-off, as JobStore.publish sees it: claims one slot, keeps what it got."""

    def __init__(self, holder: str, shares: dict[str, int] | None = None) -> None:
        self.holder, self.jobs, self.shares = holder, [], shares
        self.held: bool | None = None

    def claim_args(self) -> dict[str, Any]:
        limits = {"kinds": {"demo": {"max_running": 1}}, "owner": 0}
        return {
            "ended": {"kind": "demo"},
            "owner": self.holder,
            "want": 1,
            "lease_ms": 10_000,
            "limits": limits,
            "now_ms": int(time.time() * 1000),
            **({"shares": self.shares} if self.shares is not None else {}),
        }

    def leaving(self) -> dict[str, str]:
        return {"kind": "demo"}

    def claimed(self, holder: str, jobs: list[Any], held: bool) -> None:
        assert holder == self.holder
        self.jobs.extend(jobs)
        self.held = held


async def test_a_jobs_end_hands_its_slot_to_a_job_its_kinds_limit_held(store) -> None:
    first, second, third = [await new_job(store) for _ in range(3)]
    limits = {"kinds": {"demo": {"max_running": 1}}, "owner": 0}
    claimed = await store.scripts.call("dispatch", owner="w#1", want=10, lease_ms=10_000, limits=limits)
    assert [job[0] for job in claimed["jobs"]] == [first] and claimed["held"] is True
    assert (
        await store.redis.hget(store.keys.job(second), "waiting") == b"demo is at its limit (1 of 1 running)"
    )
    assert await store.publish(first, EventType.STARTED, attempt=1) > 0
    # The job's end claims the oldest held job for the slot, in the script that ends it.
    lease = Held("w#1")
    lease.hand_off = Recorder("w#2")
    assert await store.publish(first, EventType.SUCCEEDED, attempt=1, release=lease) > 0 and lease.released
    assert [job[0] for job in lease.hand_off.jobs] == [second]
    assert await store.redis.hget(store.keys.leases, second) == b"w#2"
    assert await store.redis.hget(store.keys.leases, third) is None
    assert lease.hand_off.held is True  # the third still waits
    # The limit still holds: nothing more starts while the handed job runs.
    again = await store.scripts.call("dispatch", owner="w#3", want=10, lease_ms=10_000, limits=limits)
    assert not again["jobs"]
    # A run that lost its lease frees no slot, and so hands nothing on.
    stale = Held("w#0")
    stale.hand_off = Recorder("w#4")
    assert await store.publish(second, EventType.STARTED, attempt=1) > 0
    assert await store.publish(second, EventType.FAILED, attempt=1, release=stale) > 0
    assert not stale.released and stale.hand_off.jobs == []
    assert await store.redis.hget(store.keys.leases, third) is None


async def test_a_worker_past_its_share_of_a_limit_leaves_the_slot_to_the_other_workers(
    store, settings
) -> None:
    first, second = [await new_job(store) for _ in range(2)]
    limits = {"kinds": {"demo": {"max_running": 1}}, "owner": 0}
    claimed = await store.scripts.call("dispatch", owner="a#1", want=10, lease_ms=10_000, limits=limits)
    assert [job[0] for job in claimed["jobs"]] == [first]
    assert await store.publish(first, EventType.STARTED, attempt=1) > 0
    async with listening(store, settings, store.keys.wake_channel) as woken:
        # Its share spent, the worker whose job ends claims nothing and wakes the others.
        lease = Held("a#1")
        lease.hand_off = Recorder("a#2", shares={"demo": 0})
        assert await store.publish(first, EventType.SUCCEEDED, attempt=1, release=lease) > 0
        assert lease.released and lease.hand_off.jobs == []
        assert await asyncio.wait_for(woken.get(), 5) == b""
    # Its own claim takes none of the kind either; another worker's, within its share, does.
    mine = await store.scripts.call(
        "dispatch", owner="a#3", want=10, lease_ms=10_000, limits=limits, shares={"demo": 0}
    )
    assert not mine["jobs"]
    theirs = await store.scripts.call(
        "dispatch", owner="b#1", want=10, lease_ms=10_000, limits=limits, shares={"demo": 1}
    )
    assert [job[0] for job in theirs["jobs"]] == [second]


async def test_claims_and_hand_offs_say_whether_a_limit_still_holds_a_job_back(store) -> None:
    # A worker hands a slot on in the script that ends a job only while something is held.
    first, second = [await new_job(store) for _ in range(2)]
    limits = {"kinds": {"demo": {"max_running": 1}}, "owner": 0}
    claimed = await store.scripts.call("dispatch", owner="w#1", want=10, lease_ms=10_000, limits=limits)
    assert [job[0] for job in claimed["jobs"]] == [first] and claimed["held"] is True
    assert await store.publish(first, EventType.STARTED, attempt=1) > 0
    lease = Held("w#1")
    lease.hand_off = Recorder("w#2")
    assert await store.publish(first, EventType.SUCCEEDED, attempt=1, release=lease) > 0
    assert [job[0] for job in lease.hand_off.jobs] == [second]
    # The kind's held jobs are known gone once a claim with room finds none: the next end's.
    assert lease.hand_off.held is True
    assert await store.publish(second, EventType.STARTED, attempt=1) > 0
    lease = Held("w#2")
    lease.hand_off = Recorder("w#3")
    assert await store.publish(second, EventType.SUCCEEDED, attempt=1, release=lease) > 0
    assert lease.hand_off.jobs == [] and lease.hand_off.held is False
    nothing = await store.scripts.call("dispatch", owner="w#3", want=10, lease_ms=10_000, limits=limits)
    assert not nothing["jobs"] and nothing["held"] is False
    # Without limits a claim holds nothing back and says nothing of it.
    plain = await store.scripts.call("dispatch", owner="w#4", want=10, lease_ms=10_000)
    assert plain["held"] is False


async def test_a_parent_asked_to_cancel_as_its_code_returns_ends_with_its_children(store: JobStore) -> None:
    from jobcast.tree import TreePlace, child_id

    parent = uuid.uuid4().hex
    await store.create(parent, Submission("demo", {}))
    # Its first part ran and made a child; the cancel request came before it said it waits.
    await store.publish(parent, EventType.STARTED, attempt=1)
    child = child_id(parent, 0)
    await store.create_many([store.create_call(child, Submission("demo", {}), tree=TreePlace(parent=parent))])
    assert (await store.cancel(parent)).requested
    seq = await store.publish(parent, EventType.WAITING_CHILDREN, attempt=1)
    assert seq > 0
    job, kid = await store.snapshot(parent), await store.snapshot(child)
    assert job is not None and kid is not None
    assert job["state"] == "cancelled" and kid["state"] == "cancelled"
    assert kid["error"] == {"type": "Cancelled", "message": "cancelled with its parent"}


async def test_a_fail_fast_child_fails_a_parent_between_attempts_and_takes_it_out_of_line(
    store: JobStore, redis
) -> None:
    from jobcast.tree import TreePlace, child_id

    parent = uuid.uuid4().hex
    await store.create(parent, Submission("demo", {}))
    await store.publish(parent, EventType.STARTED, attempt=1)
    child = child_id(parent, 0)
    place = TreePlace(parent=parent, fail_fast=True)
    await store.create_many([store.create_call(child, Submission("demo", {}), tree=place)])
    # Its first part failed after making the child, and waits in line for its next attempt.
    await store.publish(parent, EventType.RETRYING, attempt=1, error={"type": "E", "message": "m"})
    queue = store.keys.queue(Priority.DEFAULT.value)
    await redis.zadd(queue, {parent: time.time() * 1000 + 60_000})
    await store.publish(child, EventType.STARTED, attempt=1)
    await store.publish(child, EventType.FAILED, attempt=1, error={"type": "E", "message": "m"})
    job = await store.snapshot(parent)
    assert job is not None and job["state"] == "failed" and job["error"]["type"] == "ChildFailed"
    assert await redis.zscore(queue, parent) is None
