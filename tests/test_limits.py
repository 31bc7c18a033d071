"""Execution limits, against real `jobcast web` and `jobcast worker` processes: a kind's
`max_running` across workers, its rate limit, an owner's running limit, and what a held job's
watchers are told."""

from __future__ import annotations

import asyncio
import re
import signal
from datetime import datetime
from typing import Any

import aiohttp
import pytest

from jobcast.limits import Rate
from jobcast.protocol import Keys
from tests.helpers import PLACES, get_json, post_json, read_sse, wait_for
from tests.test_security import SECRET, SERVICE_KEY, bearer, key_entry

KINDS = {"JOBCAST_KINDS": "tests.kinds_limits", "JOBCAST_LEASE_S": "2", **PLACES}
OTHER_KEY = "jc_limits-second-service-key-0123456789"


def at(ts: str) -> float:
    return datetime.fromisoformat(ts).timestamp()


async def two_workers(session: aiohttp.ClientSession, url: str) -> bool:
    return len((await get_json(session, f"{url}/api/workers"))["workers"]) == 2


def most_at_once(jobs: list[dict[str, Any]]) -> int:
    """The most jobs running at one moment, from their start and end times (an end at the moment
    another starts frees its slot first)."""
    moments = sorted(
        [(at(j["started_at"]), 1) for j in jobs] + [(at(j["finished_at"]), -1) for j in jobs],
        key=lambda m: (m[0], m[1]),
    )
    running = most = 0
    for _, step in moments:
        running += step
        most = max(most, running)
    return most


async def submit_many(session: aiohttp.ClientSession, url: str, body: dict[str, Any], n: int) -> list[str]:
    answer = await post_json(session, f"{url}/api/jobs/batch", {"jobs": [body] * n})
    assert all(item["status"] == 202 for item in answer["results"]), answer
    return [item["job"]["id"] for item in answer["results"]]


async def all_ended(session: aiohttp.ClientSession, url: str, ids: list[str]) -> list[dict[str, Any]]:
    async def ended() -> list[dict[str, Any]] | None:
        jobs = [await get_json(session, f"{url}/api/jobs/{job_id}") for job_id in ids]
        return jobs if all(j["state"] == "succeeded" for j in jobs) else None

    return await wait_for(ended, timeout=90, what="every job to succeed")


async def test_a_kind_limited_to_two_runs_two_at_most_and_the_others_say_why(spawn, redis, settings) -> None:
    web = spawn("web", **KINDS)
    # Workers learn of each other from their heartbeats: a fast beat, so that each knows its share
    # of the limit from the start.
    beat = {"JOBCAST_WORKER_HEARTBEAT_S": "0.2"}
    spawn("worker", **KINDS, **beat)
    spawn("worker", **KINDS, **beat)
    await web.wait_http()
    async with aiohttp.ClientSession() as session:
        await wait_for(lambda: two_workers(session, web.url), what="both workers")
        ids = await submit_many(session, web.url, {"kind": "limited", "params": {"hold_ms": 300}}, 20)
        # A watcher of the last job, from after its `queued` event: it waits behind eighteen others.
        after_queued = {"Last-Event-ID": "1"}
        watched = asyncio.create_task(
            read_sse(session, f"{web.url}/api/jobs/{ids[-1]}/events", headers=after_queued, timeout=60)
        )
        sampled, snapshot_reasons, holders = [], set(), []
        leases = Keys(settings.redis_key_prefix).leases
        while True:
            page = await get_json(session, f"{web.url}/api/jobs?kind=limited&state=running&limit=50")
            sampled.append(len(page["jobs"]))
            # Which worker runs each (a lease's holder is its worker's name and the claim's number).
            holders.append(sorted(h.decode().rsplit("#", 1)[0] for h in await redis.hvals(leases)))
            waiting = await get_json(session, f"{web.url}/api/jobs/{ids[-1]}")
            if waiting["state"] != "queued":
                break
            snapshot_reasons.add(waiting["waiting"])
        events = await watched
        jobs = await all_ended(session, web.url, ids)
    assert max(sampled) <= 2
    assert most_at_once(jobs) == 2
    # Each worker takes its share of the limit (one of the two slots), not the first to claim
    # both while the other idles: once both run, the two running are mostly on the two workers
    # (the first claim takes both; the first end hands one over).
    pairs = [names for names in holders if len(names) == 2]
    assert pairs and sum(names[0] != names[1] for names in pairs) >= 0.6 * len(pairs), pairs
    reason = "limited is at its limit (2 of 2 running)"
    assert reason in snapshot_reasons
    # Its watcher was told why it waited (live, no id), and nothing of it once it started; its
    # own events are whole.
    started = [e.event for e in events].index("started")
    told = [e for e in events[:started] if e.event == "queue"]
    assert told and told[0].data["waiting"] == reason and told[0].data["ahead"] is None, told
    assert all(e.id is None for e in told)
    assert all(
        not e.data["waiting"] and e.data["ahead"] is None for e in events[started:] if e.event == "queue"
    )
    assert [(e.event, e.id) for e in events if e.event != "queue"] == [
        ("started", 2),
        ("progress", 3),
        ("succeeded", 4),
    ]


async def test_a_killed_workers_slots_are_given_back_when_its_leases_lapse(spawn) -> None:
    web = spawn("web", **KINDS)
    first = spawn("worker", **KINDS)
    await web.wait_http()
    async with aiohttp.ClientSession() as session:
        url = web.url

        async def running() -> list[dict[str, Any]]:
            return (await get_json(session, f"{url}/api/jobs?kind=limited&state=running&limit=50"))["jobs"]

        ids = await submit_many(session, url, {"kind": "limited", "params": {"hold_ms": 1500}}, 4)
        await wait_for(lambda: running_count(running, 2), what="two jobs running")
        first.signal(signal.SIGKILL)
        await first.wait_exit()
        spawn("worker", **KINDS)
        jobs = await all_ended(session, url, ids)
        # The two the killed worker held ran again, and the limit held throughout their reruns.
        assert sorted(j["attempt"] for j in jobs) == [1, 1, 2, 2]
        assert most_at_once(jobs) <= 2
        # No slot leaked: two new jobs run at once again.
        again = await submit_many(session, url, {"kind": "limited", "params": {"hold_ms": 1500}}, 2)
        await wait_for(lambda: running_count(running, 2), what="both new jobs running at once")
        await all_ended(session, url, again)


async def running_count(read: Any, n: int) -> bool:
    return len(await read()) == n


async def test_a_rate_limit_of_five_a_second_spaces_fifty_starts(spawn) -> None:
    web = spawn("web", **KINDS)
    spawn("worker", **KINDS)
    spawn("worker", **KINDS)
    await web.wait_http()
    async with aiohttp.ClientSession() as session:
        ids = await submit_many(session, web.url, {"kind": "metered", "params": {}}, 50)
        events = await read_sse(
            session, f"{web.url}/api/jobs/{ids[-1]}/events", headers={"Last-Event-ID": "1"}, timeout=60
        )
        jobs = await all_ended(session, web.url, ids)
    starts = sorted(at(j["started_at"]) for j in jobs)
    # Any five consecutive starts leave a second before the sixth: no second holds more than five.
    # A start's time is its worker's clock when it asked to claim, and the two workers' claims reach
    # Redis a moment later in either order: the limit counts by those same instants, so two starts
    # can read a millisecond closer than the order Redis ran them in (0.999 s was seen once).
    gaps = [round(later - earlier, 3) for earlier, later in zip(starts, starts[5:], strict=False)]
    assert min(gaps) >= 0.995, gaps
    reasons = {e.data["waiting"] for e in events if e.event == "queue" and e.data["waiting"]}
    assert reasons == {"metered is at its rate limit (5 started per 1 s)"}


async def test_an_owner_at_its_running_limit_waits_while_another_owner_runs(spawn) -> None:
    keys = [key_entry("shop", "service", SERVICE_KEY), key_entry("billing", "service", OTHER_KEY)]
    owners = {
        "JOBCAST_SECRET": SECRET,
        "JOBCAST_API_KEYS": ",".join(keys),
        "JOBCAST_MAX_RUNNING_PER_OWNER": "2",
        **PLACES,
    }
    web = spawn("web", **owners)
    spawn("worker", **owners)
    await web.wait_http()
    # Long enough that the last of the six waits through a few passes of the places (one a second).
    body = {"kind": "demo", "params": {"steps": 4, "step_ms": 300}}
    async with (
        aiohttp.ClientSession(headers=bearer(SERVICE_KEY)) as shop,
        aiohttp.ClientSession(headers=bearer(OTHER_KEY)) as billing,
    ):
        mine = await submit_many(shop, web.url, body, 6)
        theirs = await submit_many(billing, web.url, body, 1)
        events = await read_sse(
            shop, f"{web.url}/api/jobs/{mine[-1]}/events", headers={"Last-Event-ID": "1"}, timeout=60
        )
        other = await all_ended(billing, web.url, theirs)
        jobs = await all_ended(shop, web.url, mine)
    assert most_at_once(jobs) == 2
    # The other owner's job did not wait for the first owner's six.
    assert at(other[0]["started_at"]) < max(at(j["started_at"]) for j in jobs)
    reasons = {e.data["waiting"] for e in events if e.event == "queue" and e.data["waiting"]}
    assert reasons == {"its owner is at its limit (2 of 2 running)"}


def test_a_rate_limit_reads_as_a_count_per_interval() -> None:
    assert Rate.parse("5/s") == Rate(5, 1.0)
    assert Rate.parse("100/60s") == Rate.parse("100/min") == Rate(100, 60.0)
    for bad in ("5", "0/s", "5/0s", "five/s", "5/d"):
        with pytest.raises(ValueError):
            Rate.parse(bad)


async def test_the_job_page_says_why_a_job_waits_and_its_place_in_line(spawn, page) -> None:
    from playwright.async_api import expect

    web = spawn("web", **KINDS)
    spawn("worker", JOBCAST_WORKER_MAX_JOBS="4", **KINDS)
    await web.wait_http()
    async with aiohttp.ClientSession() as session:
        # Long enough that the places below are seen however long the first page took to load:
        # the next job in line waits until the second of these ends.
        held = await submit_many(session, web.url, {"kind": "limited", "params": {"hold_ms": 5000}}, 3)
        await page.goto(f"{web.url}/jobs/{held[-1]}")
        waiting = page.locator("#waiting")
        await expect(waiting).to_have_text("held: limited is at its limit (2 of 2 running)")
        # Two long demo jobs take the worker's other two slots; the next ones wait in line.
        await submit_many(session, web.url, {"kind": "demo", "params": {"steps": 1, "step_ms": 5000}}, 2)
        in_line = await submit_many(
            session, web.url, {"kind": "demo", "params": {"steps": 1, "step_ms": 0}}, 2
        )
        await page.goto(f"{web.url}/jobs/{in_line[-1]}")
        await expect(waiting).to_have_text(
            re.compile(r"^In line: ([1-3] ahead|next in line)"), timeout=10_000
        )
        await expect(page.locator("#state")).to_have_text("succeeded", timeout=30_000)
        await expect(waiting).to_be_hidden()


async def test_an_owners_running_set_expires_with_its_jobs(spawn, redis, settings) -> None:
    # Anonymous owners may never come back: what the running limit keeps of them expires.
    env = {"JOBCAST_SECRET": SECRET, "JOBCAST_MAX_RUNNING_PER_OWNER": "1"}
    web = spawn("web", **env)
    spawn("worker", **env)
    await web.wait_http()
    for _ in range(3):  # three cookie-less visits: three anonymous owners
        async with aiohttp.ClientSession() as stranger:
            answer = await post_json(
                stranger,
                f"{web.url}/api/jobs",
                {"kind": "demo", "params": {"steps": 40, "step_ms": 100}},
                status=202,
                headers={"Sec-Fetch-Site": "same-origin"},
            )
            assert answer["owner"].startswith("anon-")

    async def sets() -> list[bytes]:
        return [key async for key in redis.scan_iter(match=f"{settings.key_prefix}:running-owner:*")]

    # While they run, each owner's set is there, bound to expire.
    found = await wait_for(lambda: _three(sets()), what="each owner's running set")
    ttls = [await redis.ttl(key) for key in found]
    assert all(ttl > 0 for ttl in ttls), ttls
    # A job's end takes it out of its owner's set: an owner with nothing running keeps nothing.
    await wait_for(lambda: _none(sets()), what="the owners' running sets gone with their jobs")


async def _three(keys: Any) -> Any:
    found = await keys
    return found if len(found) == 3 else None


async def _none(keys: Any) -> bool:
    return not await keys


async def test_the_counters_split_waiting_into_ready_held_and_delayed(spawn, page) -> None:
    from playwright.async_api import expect

    web = spawn("web", **KINDS)
    spawn("worker", **KINDS)
    await web.wait_http()
    async with aiohttp.ClientSession() as session:
        await post_json(session, f"{web.url}/api/kinds/demo/pause", status=200)
        await submit_many(session, web.url, {"kind": "demo", "params": {"steps": 1}}, 2)
        await submit_many(session, web.url, {"kind": "limited", "params": {"hold_ms": 4000}}, 5)
        delayed = {"kind": "metered", "params": {}, "delay_s": 600}
        await post_json(session, f"{web.url}/api/jobs", delayed, status=202)

        async def split() -> dict[str, Any] | None:
            stats = await get_json(session, f"{web.url}/api/stats")
            return stats if stats["running"] == 2 and stats["held"] == {"paused": 2, "limits": 3} else None

        stats = await wait_for(split, what="two running, two parked and three held back")
        assert sum(stats["waiting"].values()) == 0 and sum(stats["delayed"].values()) == 1
        await page.goto(web.url + "/")
        counters = {
            "Ready (default)": "0",
            "Delayed": "1",
            "Held by a pause": "2",
            "Held by limits": "3",
            "Running": "2",
        }
        for label, value in counters.items():
            await expect(page.locator("#stats div", has_text=label).locator("dd")).to_have_text(value)
        # Live: the page's refresh sums the delayed jobs of every priority.
        await post_json(session, f"{web.url}/api/jobs", {**delayed, "priority": "low"}, status=202)
        await expect(page.locator('[data-stat="delayed"]')).to_have_text("2", timeout=10_000)
