"""A waiting job's place in the queue: its watchers hear how many jobs start before it and about
when it starts, over SSE and the Python client, until it starts; counted as the claim counts."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from jobcast.client import Client
from jobcast.queries.queue_position import DispatchRate, others_first, places
from jobcast.store.jobs import JobStore
from tests.helpers import PLACES, demo, read_sse, submit


async def test_a_waiting_jobs_watchers_hear_its_place_until_it_starts(spawn) -> None:
    web = spawn("web", **PLACES)
    spawn("worker", JOBCAST_WORKER_MAX_JOBS="1")
    await web.wait_http()
    async with aiohttp.ClientSession() as session, Client(web.url) as client:
        ids = [(await submit(session, f"{web.url}/api/jobs", demo(5, 200)))["id"] for _ in range(4)]

        async def through_the_client() -> list[Any]:
            return [event async for event in client.watch(ids[-1], queue_places=True)]

        over_sse, over_client = await asyncio.gather(
            read_sse(session, f"{web.url}/api/jobs/{ids[-1]}/events", timeout=60), through_the_client()
        )
    types = [e.event for e in over_sse]
    started = types.index("started")
    places_seen = [e for e in over_sse[:started] if e.event == "queue"]
    aheads = [e.data["ahead"] for e in places_seen]
    # One worker slot: three jobs ahead at first, fewer as each starts, never more.
    assert aheads and aheads[0] <= 3 and aheads == sorted(aheads, reverse=True), aheads
    assert min(aheads) <= 1, aheads
    # Live only: no id, so a reconnect resumes from the last real event.
    assert all(e.id is None for e in places_seen)
    # Once the worker has been seen to start jobs, an estimate comes with the place.
    assert any(e.data["eta_s"] is not None and e.data["eta_s"] > 0 for e in places_seen), places_seen
    assert all(e.data["ahead"] is None for e in over_sse[started:] if e.event == "queue")
    # The Python client yields the same places, with no seq, and the whole stream besides.
    client_places = [e for e in over_client if e.type == "queue"]
    assert client_places and all(e.seq == 0 and e.ahead is not None for e in client_places[:1])
    seqs = [e.seq for e in over_client if e.type != "queue"]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert over_client[-1].type == "succeeded"


async def test_places_count_the_higher_priorities_and_the_jobs_before(client, settings, redis) -> None:
    # No worker runs: every job waits in line.
    body = demo(1, 0)
    first, second = [await submit(client, body=body) for _ in range(2)]
    urgent = await submit(client, body={**body, "priority": "high"})
    later = await submit(client, body={**body, "delay_s": 60})
    third = await submit(client, body=body)
    store = JobStore(redis, settings)  # type: ignore[arg-type]
    ids = [job["id"] for job in (first, second, urgent, later, third)]
    found = await places(store, ids, DispatchRate())
    # The high-priority job goes first; a delayed job is not in line yet; nobody has claimed
    # anything, so there is no estimate.
    assert [p.ahead if p else None for p in found.values()] == [1, 2, 0, None, 3]
    assert all(p is None or p.eta_s is None for p in found.values())


def test_the_turns_put_other_owners_jobs_before_as_a_claim_would() -> None:
    # Three ahead of mine in my owner's queue; another owner with 10 due whose turn comes first in a
    # round gives 4 before mine, one whose turn comes after gives 3, one with 1 due gives 1.
    owners = [("me", 5.0, 8), ("early", 4.0, 10), ("late", 6.0, 10), ("small", 1.0, 1)]
    assert others_first(owners, "me", 3) == 4 + 3 + 1
    assert DispatchRate().per_s() is None
    rate = DispatchRate()
    rate.sample(100, at=0.0)
    rate.sample(150, at=10.0)
    assert rate.per_s() == 5.0
