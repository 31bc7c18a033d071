"""Recurring schedules: exactly one job per tick however many processes run, the missed-tick
policy across an outage, daylight-saving transitions, the API, and the Schedules page."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import signal
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from pydantic import ValidationError

from jobcast.jobs.kinds import KINDS
from jobcast.jobs.upkeep.scheduler import Scheduler
from jobcast.kind import Kind
from jobcast.schedule import Missed, Schedule, ScheduleError, plan
from jobcast.store.jobs import JobStore
from jobcast.store.schedules import ScheduleBook, StoredSchedule
from tests.helpers import wait_for
from tests.test_accessibility import AXE, violations

BERLIN = ZoneInfo("Europe/Berlin")
GRACE = timedelta(seconds=60)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def jobs_of(session: Any, url: str, schedule_id: str) -> list[dict[str, Any]]:
    """Every job the schedule made, through the listing API, oldest tick first."""
    jobs: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {"kind": "demo", "limit": "200", **({"cursor": cursor} if cursor else {})}
        async with session.get(f"{url}/api/jobs", params=query) as r:
            assert r.status == 200, await r.text()
            page = await r.json()
        jobs += [job for job in page["jobs"] if job["schedule"] == schedule_id]
        cursor = page["next_cursor"]
        if not cursor:
            return sorted(jobs, key=lambda job: job["scheduled_for"] or "")


async def schedule_of(session: Any, url: str, schedule_id: str) -> dict[str, Any]:
    async with session.get(f"{url}/api/schedules/{schedule_id}") as r:
        assert r.status == 200, await r.text()
        return await r.json()


# -- the tick rule -----------------------------------------------------------------------------------


def test_a_tick_fires_on_time_and_the_missed_ones_follow_the_schedules_policy() -> None:
    last = at("2026-01-01T12:00:00+00:00")
    assert (
        plan("* * * * * *", "UTC", last, last + timedelta(seconds=0.5), Missed.RUN_ONCE, GRACE).fire is None
    )
    on_time = plan("* * * * * *", "UTC", last, last + timedelta(seconds=1.2), Missed.SKIP, GRACE)
    assert (on_time.fire, on_time.missed, on_time.late) == (at("2026-01-01T12:00:01+00:00"), 0, False)
    # Back after an hour: run_once makes one late job for all 60 ticks; skip makes none.
    now = at("2026-01-01T13:00:30+00:00")
    once = plan("* * * * *", "UTC", last, now, Missed.RUN_ONCE, GRACE)
    assert (once.fire, once.missed, once.late) == (at("2026-01-01T13:00:00+00:00"), 59, False)
    hourly = plan("0 * * * *", "UTC", last, at("2026-01-01T15:30:00+00:00"), Missed.RUN_ONCE, GRACE)
    assert (hourly.fire, hourly.missed, hourly.late) == (at("2026-01-01T15:00:00+00:00"), 2, True)
    skipped = plan("0 * * * *", "UTC", last, at("2026-01-01T15:30:00+00:00"), Missed.SKIP, GRACE)
    assert (skipped.fire, skipped.through, skipped.missed) == (None, at("2026-01-01T15:00:00+00:00"), 3)


def test_bad_expressions_and_timezones_are_refused() -> None:
    for cron in ("* * *", "61 * * * *", "* * * * * * *", "0 2 * * FUNDAY"):
        with pytest.raises(ScheduleError):
            Schedule(cron)
    with pytest.raises(ScheduleError):
        Schedule("0 2 * * *", timezone="Mars/Olympus")
    demo = {kind.name: kind for kind in KINDS}["demo"]
    with pytest.raises(ValidationError):  # params the kind would refuse, found when it is built
        dataclasses.replace(demo, schedules=[Schedule("0 2 * * *", params={"steps": 0})])


async def fire_through(scheduler: Scheduler, start: datetime, end: datetime, step: timedelta) -> None:
    now = start
    while now <= end:
        await scheduler.run_once(now)
        now += step


async def test_daylight_saving_runs_a_skipped_hours_tick_once_and_a_repeated_hours_once(
    redis, settings
) -> None:
    # A fake clock stepped every 5 minutes across Berlin's two changes of 2026, through the real
    # scheduler and store: 02:30 does not exist on 29 March (it runs once, when the clock jumps to
    # 03:00) and happens twice on 25 October (it runs the first time only).
    store = JobStore(redis, settings)
    book = ScheduleBook(store)
    kinds = {kind.name: kind for kind in KINDS}
    scheduler = Scheduler(book, kinds, settings)
    nightly = StoredSchedule(id="nightly", kind="demo", cron="30 2 * * *", timezone="Europe/Berlin",
                             params={"steps": 1})  # fmt: skip
    half_hourly = StoredSchedule(id="half-hourly", kind="demo", cron="*/30 * * * *",
                                 timezone="Europe/Berlin", params={"steps": 1})  # fmt: skip
    for day in ("2026-03-28T22:00:00+00:00", "2026-10-24T22:00:00+00:00"):
        start = at(day)
        for schedule in (nightly, half_hourly):
            await book.delete(schedule.id)
            await book.add(schedule, now=start)
        await fire_through(scheduler, start, start + timedelta(hours=6), timedelta(minutes=5))
        states = await book.states(["nightly", "half-hourly"])
        assert states["nightly"].fired == 1
        assert states["nightly"].missed == 0
        fired = await store.snapshot(states["nightly"].last_job or "")
        assert fired is not None
        local = datetime.fromisoformat(fired["scheduled_for"] or "").astimezone(BERLIN)
        # A schedule of an hour or less runs by the real clock, as Debian's cron: every real
        # half hour of the 6, none lost in the spring and none doubled in the autumn.
        assert states["half-hourly"].fired == 12
        if start.month == 3:
            assert local.isoformat() == "2026-03-29T03:00:00+02:00"  # the jump's moment
        else:
            assert local.isoformat() == "2026-10-25T02:30:00+02:00"  # the first 02:30


async def test_a_kinds_code_schedules_are_stored_and_keep_an_operators_pause(redis, settings) -> None:
    store = JobStore(redis, settings)
    book = ScheduleBook(store)
    demo = {kind.name: kind for kind in KINDS}["demo"]
    declared = Kind(**{**{f: getattr(demo, f) for f in ("name", "title", "params", "run")},
                       "schedules": [Schedule("0 2 * * *", params={"steps": 2}, timezone="Europe/Berlin")]})  # fmt: skip
    await book.declare({"demo": declared})
    (stored,) = await book.all()
    assert (stored.id, stored.source, stored.params["steps"], stored.enabled) == (
        "demo.1",
        "code",
        2,
        True,
    )
    await book.save(stored.model_copy(update={"enabled": False}), stored)
    await book.declare({"demo": declared})  # a restart with the same code
    (again,) = await book.all()
    assert again.enabled is False
    await book.declare({"demo": demo})  # the code no longer declares it
    assert await book.all() == []


# -- the API -----------------------------------------------------------------------------------------


async def test_schedules_are_made_read_changed_run_and_deleted_over_the_api(client, worker) -> None:
    bad = [
        ({"kind": "demo", "cron": "every day"}, "cron"),
        ({"kind": "demo", "cron": "0 2 * * *", "timezone": "Nowhere/Land"}, "timezone"),
        ({"kind": "nope", "cron": "0 2 * * *"}, "kind"),
        ({"kind": "demo", "cron": "0 2 * * *", "params": {"steps": -3}}, "params.steps"),
        ({"kind": "demo", "cron": "0 2 * * *", "missed": "sometimes"}, "missed"),
        ({"kind": "demo", "cron": "0 2 * * *", "id": "no spaces"}, "id"),
    ]
    for body, field in bad:
        r = await client.post("/api/schedules", json=body)
        assert r.status == 422, (body, await r.text())
        assert r.content_type == "application/problem+json"
        assert field in [e["field"] for e in (await r.json())["errors"]], body
    r = await client.post(
        "/api/schedules",
        json={"id": "nightly", "kind": "demo", "cron": "0 2 * * *", "timezone": "Europe/Berlin",
              "params": {"steps": 2, "step_ms": 10}, "missed": "skip"},
    )  # fmt: skip
    assert r.status == 201, await r.text()
    made = await r.json()
    assert r.headers["Location"] == "/api/schedules/nightly"
    assert (made["kind"], made["missed"], made["enabled"], made["last_run"]) == ("demo", "skip", True, None)
    # The next runs are 02:00 in Berlin, in UTC.
    first = datetime.fromisoformat(made["next_runs"][0]).astimezone(BERLIN)
    assert (first.hour, first.minute, len(made["next_runs"])) == (2, 0, 3)
    r = await client.post("/api/schedules", json={"id": "nightly", "kind": "demo", "cron": "0 3 * * *"})
    assert r.status == 409
    # Paused: no next runs. Resumed: they are back.
    r = await client.patch("/api/schedules/nightly", json={"enabled": False})
    assert (await r.json())["next_runs"] == []
    r = await client.patch("/api/schedules/nightly", json={"enabled": True, "cron": "15 4 * * *"})
    assert datetime.fromisoformat((await r.json())["next_runs"][0]).astimezone(BERLIN).minute == 15
    r = await client.patch("/api/schedules/nightly", json={"cron": "nope"})
    assert r.status == 422
    # Run now: a job of the schedule, outside its ticks; the schedule shows it as its last run.
    r = await client.post("/api/schedules/nightly/run")
    assert r.status == 202, await r.text()
    job = await r.json()
    assert (job["schedule"], job["scheduled_for"], job["params"]["steps"]) == ("nightly", None, 2)
    listed = (await (await client.get("/api/schedules")).json())["schedules"]
    assert [s["id"] for s in listed] == ["nightly"]
    assert (await client.delete("/api/schedules/nightly")).status == 204
    assert (await client.get("/api/schedules/nightly")).status == 404
    assert (await client.delete("/api/schedules/nightly")).status == 404
    # Its job stays, and still names the schedule.
    assert (await (await client.get(f"/api/jobs/{job['id']}")).json())["schedule"] == "nightly"


# -- real processes ------------------------------------------------------------------------------------


async def test_one_job_per_tick_with_three_webs_and_two_workers_and_an_outage(spawn) -> None:
    webs = [spawn("web") for _ in range(3)]
    workers = [spawn("worker", JOBCAST_SCHEDULE_CLAIM_S="2") for _ in range(2)]
    for web in webs:
        await web.wait_http()
    async with aiohttp.ClientSession() as session:
        body = {
            "id": "every-second",
            "kind": "demo",
            "cron": "* * * * * *",
            "params": {"steps": 1, "step_ms": 0},
        }
        async with session.post(f"{webs[0].url}/api/schedules", json=body) as r:
            assert r.status == 201, await r.text()

        async def fired(n: int) -> bool:
            return (await schedule_of(session, webs[1].url, "every-second"))["fired"] >= n

        await wait_for(lambda: fired(8), timeout=30, what="8 ticks fired")
        # Every worker killed, so that ticks pass with nothing to fire them; then one is back.
        for worker in workers:
            worker.process.send_signal(signal.SIGKILL)
            worker.process.wait()
        before = (await schedule_of(session, webs[2].url, "every-second"))["fired"]
        await asyncio.sleep(3.5)  # the outage itself: the ticks of these seconds are missed
        workers.append(spawn("worker", JOBCAST_SCHEDULE_CLAIM_S="2"))
        workers.append(spawn("worker", JOBCAST_SCHEDULE_CLAIM_S="2"))
        await wait_for(lambda: fired(before + 8), timeout=30, what="ticks firing again")
        async with session.patch(f"{webs[0].url}/api/schedules/every-second", json={"enabled": False}) as r:
            assert r.status == 200
        # Jobs submitted up to the pause are all listed once their submission returned.
        state = await schedule_of(session, webs[2].url, "every-second")
        jobs = await jobs_of(session, webs[2].url, "every-second")
        async with session.get(f"{webs[1].url}/metrics") as r:
            metrics = await r.text()
    for name, value in (("fired", state["fired"]), ("missed", state["missed_ticks"])):
        assert f'jobcast_schedule_ticks_{name}_total{{schedule="every-second"}} {float(value)}' in metrics
    ticks = [datetime.fromisoformat(job["scheduled_for"]) for job in jobs]
    # Exactly one job per tick: no tick twice, one job per fired tick.
    assert len(ticks) == len(set(ticks)) == state["fired"]
    # Between consecutive jobs, every tick is accounted for: fired, or missed (run_once: the
    # outage's ticks became one job, and the rest were counted as missed).
    gaps = [int((b - a).total_seconds()) for a, b in itertools.pairwise(ticks)]
    assert sum(gap - 1 for gap in gaps) == state["missed_ticks"]
    assert state["missed_ticks"] >= 2, gaps  # the outage's
    assert max(gaps) >= 3


async def test_the_schedules_page_shows_runs_and_pauses_resumes_and_runs_now(client, worker, browser) -> None:
    assert AXE.is_file(), "axe-core is missing: run scripts/bootstrap test"
    body = {"id": "hourly-report", "kind": "demo", "cron": "0 * * * *", "params": {"steps": 1, "step_ms": 0}}
    assert (await client.post("/api/schedules", json=body)).status == 201
    context = await browser.new_context(bypass_csp=True)
    page = await context.new_page()
    base = str(client.make_url("")).rstrip("/")
    await page.goto(base + "/schedules")
    row = page.locator("#hourly-report")
    assert "0 * * * *" in await row.inner_text()
    assert await violations(page) == []
    await row.get_by_role("button", name="Pause hourly-report").click()
    await page.locator("#hourly-report .next-runs", has_text="paused").wait_for()
    await row.get_by_role("button", name="Resume hourly-report").click()
    await page.locator("#hourly-report .next-runs time").first.wait_for()
    # Run now: to the new job's page, which links back to its schedule.
    await row.get_by_role("button", name="Run now hourly-report").click()
    await page.wait_for_url("**/jobs/*")
    await page.get_by_role("link", name="hourly-report").click()
    await page.wait_for_url("**/schedules#hourly-report")
    await page.locator("#hourly-report .last-run a").wait_for()
    assert await violations(page) == []
    await context.close()
