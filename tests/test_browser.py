"""The pages in a real Chromium (Debian's, driven by Playwright), against real workers."""

from __future__ import annotations

import asyncio
import itertools
import math
import re
import signal
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
from aiohttp import web
from playwright.async_api import expect

from jobcast.redis.shards import shard_of
from tests.helpers import demo, get_json, post_json, submit, watch_to_end

TIMEOUT_MS = 30_000
STATIC = Path(__file__).parent.parent / "static"


def base(client) -> str:
    return f"http://127.0.0.1:{client.port}"


async def log_seqs(page) -> list[int]:
    return [
        int(s) for s in await page.locator("#log tr").evaluate_all("rows => rows.map(r => r.dataset.seq)")
    ]


async def test_a_job_submitted_from_the_dashboard_runs_to_100_percent(client, worker, page) -> None:
    await page.goto(base(client) + "/")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    await page.select_option("#kind", "demo")
    await page.fill("#demo-steps", "12")
    await page.fill("#demo-step_ms", "120")
    await page.click("#submit-form button[type=submit]")
    row = page.locator(".job").first
    await expect(row.locator(".job-kind")).to_have_text("demo")
    # The bar moves: it is seen part-way before it is seen full.
    await page.wait_for_function(
        "() => { const p = document.querySelector('.job progress'); return p.value > 0 && p.value < 100; }",
        timeout=TIMEOUT_MS,
    )
    await expect(row.locator(".badge")).to_have_text("succeeded", timeout=TIMEOUT_MS)
    assert await row.locator("progress").evaluate("p => p.value") == 100
    await expect(row.locator(".job-percent")).to_have_text("100%")

    await row.locator(".job-link").click()
    await expect(page.locator("#state")).to_have_text("succeeded")
    seqs = await log_seqs(page)
    job_id = await page.locator("#job").get_attribute("data-job-id")
    job = await get_json(client, f"/api/jobs/{job_id}")
    assert seqs == list(range(1, job["last_event_id"] + 1))
    types = await page.locator("#log tr td:nth-child(2)").all_text_contents()
    assert types[0] == "queued" and types[1] == "started" and types[-1] == "succeeded"


async def test_every_job_submitted_from_the_dashboard_shows_its_elapsed_time(client, worker, page) -> None:
    # The row is built from the 202 answer while the feed may already have carried the job's
    # `started`: the row must still learn when the job started (it was missing 3 times in 10).
    await page.goto(base(client) + "/")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    await page.select_option("#kind", "demo")
    await page.fill("#demo-steps", "20")
    await page.fill("#demo-step_ms", "100")
    for _ in range(10):
        await page.click("#submit-form button[type=submit]")
        await expect(page.locator("#submit-form button[type=submit]")).to_be_enabled()
    rows = page.locator(".job")
    await expect(rows).to_have_count(10)
    for row in await rows.all():
        # Running or done, each row counts its elapsed time from the job's start.
        await expect(row.locator(".job-elapsed")).to_have_text(re.compile(r"^\d+s$"), timeout=TIMEOUT_MS)


async def test_pausing_a_kind_from_the_dashboard_holds_its_jobs_until_it_resumes(
    client, worker, page
) -> None:
    await page.goto(base(client) + "/")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    intake = page.locator('#kind-intake [data-kind="demo"]')
    # Pausing asks first; declined, nothing changes.
    asked: list[str] = []

    async def answer(dialog, accept: bool) -> None:
        asked.append(dialog.message)
        await (dialog.accept() if accept else dialog.dismiss())

    page.once("dialog", lambda dialog: answer(dialog, False))
    await intake.get_by_role("button", name="Pause demo").click()
    await expect(intake.get_by_role("button", name="Pause demo")).to_be_enabled()
    await expect(intake.locator(".intake-state")).to_have_text("running")
    page.once("dialog", lambda dialog: answer(dialog, True))
    await intake.get_by_role("button", name="Pause demo").click()
    await expect(intake.locator(".intake-state")).to_contain_text(
        re.compile(r"^paused (now|\d+ seconds? ago): \d+ held back$")
    )
    assert len(asked) == 2 and asked[0] == asked[1], asked
    assert asked[0].startswith("Pause demo? Its jobs start no more"), asked
    await page.select_option("#kind", "demo")
    await page.fill("#demo-steps", "3")
    await page.fill("#demo-step_ms", "10")
    await page.click("#submit-form button[type=submit]")
    row = page.locator(".job").first
    await expect(row.locator(".job-kind")).to_have_text("demo")
    # Held back: the dashboard counts it once a worker would have taken it, and it stays queued.
    await expect(intake.locator(".intake-state")).to_contain_text("1 held back", timeout=TIMEOUT_MS)
    await expect(intake.locator(".kind-waiting")).to_have_text("1 waiting (default 1)")
    await expect(row.locator(".badge")).to_have_text("queued")
    await intake.get_by_role("button", name="Resume demo").click()
    await expect(intake.locator(".intake-state")).to_have_text("running")
    await expect(row.locator(".badge")).to_have_text("succeeded", timeout=TIMEOUT_MS)


async def test_the_dashboard_search_opens_a_job_from_the_start_of_its_id(client, page) -> None:
    job = await submit(client, "/api/jobs", demo(2, 10))
    await page.goto(base(client) + "/")
    await page.get_by_role("search").get_by_label("Job id").fill(job["id"][:8])
    await page.get_by_role("search").get_by_role("button", name="Open").click()
    await expect(page.locator("#job")).to_have_attribute("data-job-id", job["id"])
    assert page.url.endswith(f"/jobs/{job['id']}")
    # A prefix in the URL (a short id pasted from a log) opens the same page.
    await page.goto(base(client) + f"/jobs/{job['id'][:6]}")
    await expect(page.locator("#job")).to_have_attribute("data-job-id", job["id"])
    assert page.url.endswith(f"/jobs/{job['id']}")


async def test_the_jobs_table_is_dense_pages_through_every_job_and_sorts(client, page) -> None:
    jobs = [
        await submit(
            client, "/api/jobs", demo(1, 1) | {"delay_s": 600, "priority": "high" if i % 4 else "low"}
        )
        for i in range(60)
    ]
    newest_first = [job["id"] for job in reversed(jobs)]
    await page.goto(base(client) + "/")
    rows = page.locator("#jobs .job")
    await expect(rows).to_have_count(50)
    heights = await rows.evaluate_all("rows => rows.map(r => r.getBoundingClientRect().height)")
    assert max(heights) <= 44, heights  # one line a job, its bar inline
    first_page = await rows.evaluate_all("rows => rows.map(r => r.dataset.jobId)")
    assert first_page == newest_first[:50]

    await page.get_by_role("link", name="Older jobs").click()
    await expect(rows).to_have_count(10)
    assert await rows.evaluate_all("rows => rows.map(r => r.dataset.jobId)") == newest_first[50:]
    await expect(page.get_by_role("link", name="Older jobs")).to_have_count(0)
    await page.get_by_role("link", name="Newest jobs").click()
    await expect(rows).to_have_count(50)

    # Priority sorts high first (its natural order: ascending), then, clicked again, low first.
    header = page.get_by_role("columnheader", name="Priority")
    await header.get_by_role("button").click()
    await expect(header).to_have_attribute("aria-sort", "ascending")
    await header.get_by_role("button").click()
    await expect(header).to_have_attribute("aria-sort", "descending")
    priorities = await rows.evaluate_all("rows => rows.map(r => r.dataset.priority)")
    assert priorities == sorted(priorities, key=["high", "default", "low"].index, reverse=True)
    assert priorities[0] == "low" and priorities[-1] == "high"
    await expect(page.get_by_role("columnheader", name="Created")).to_have_attribute("aria-sort", "none")


async def test_a_bulk_retry_from_the_dashboard_resubmits_the_failed_jobs_and_shows_its_progress(
    client, worker, page
) -> None:
    failing = {"kind": "demo", "params": {"steps": 2, "step_ms": 1, "fail_at_step": 1}}
    failed = [await submit(client, "/api/jobs", failing) for _ in range(3)]
    for job in failed:
        await watch_to_end(client, job["id"])
    await page.goto(base(client) + "/?state=failed")
    await expect(page.locator("#jobs .job")).to_have_count(3)
    questions: list[str] = []

    async def answer(dialog) -> None:
        questions.append(dialog.message)
        await dialog.accept()

    page.on("dialog", answer)
    await page.get_by_role("button", name="Retry failed").click()
    status = page.locator("#bulk-status")
    await expect(status).to_contain_text("retry done on 3 of 3 jobs", timeout=TIMEOUT_MS)
    assert questions and questions[0].endswith(
        "among every job the filter matches (state failed)? It will go through 3 jobs."
    )
    for job in failed:
        assert (await get_json(client, f"/api/jobs/{job['id']}"))["retried_by"]

    # Selected rows only: one of them, already retried, is skipped.
    await page.get_by_label(f"Select demo job {failed[0]['id'][:8]}").check()
    await expect(page.locator("#bulk-scope")).to_have_text("1 selected: actions apply to these jobs.")
    await page.get_by_role("button", name="Retry failed").click()
    await expect(status).to_contain_text("retry done on 0 of 1 jobs (1 did not apply)", timeout=TIMEOUT_MS)
    assert questions[1].endswith("among the 1 selected? It will go through 1 job.")


async def test_the_job_page_shows_params_and_each_attempt_live_and_after_a_reload(
    client, worker, page
) -> None:
    body = {"kind": "demo", "params": {"steps": 10, "step_ms": 300, "fail_at_step": 2, "fail_attempts": 1}}
    job = await submit(client, "/api/jobs", body)
    await page.goto(base(client) + f"/jobs/{job['id']}")
    await expect(page.locator('[data-param="fail_at_step"]')).to_have_text("2")
    await expect(page.locator('[data-param="steps"]')).to_have_text("10")
    attempts = page.locator("#attempts tr")
    # The second attempt is seen running (it takes 3 s), then ending: that end arrives live.
    await expect(attempts.nth(1).locator(".outcome")).to_have_text("running", timeout=TIMEOUT_MS)
    await expect(page.locator("#state")).to_have_text("succeeded", timeout=TIMEOUT_MS)
    for shown in ("live", "reloaded"):
        await expect(attempts).to_have_count(2)
        first, second = attempts.nth(0), attempts.nth(1)
        await expect(first.locator(".outcome")).to_have_text("retrying")
        await expect(first.locator(".attempt-error")).to_contain_text(
            "DemoFailure: failed at step 2 as asked"
        )
        await expect(second.locator(".outcome")).to_have_text("succeeded")
        await expect(second.locator(".worker")).to_contain_text(":")  # host:pid:id, the worker's name
        await expect(second.locator(".attempt-error")).to_have_text("")
        if shown == "live":
            await page.reload()
    # The operator (single-user mode: everyone is) also gets the failed attempt's traceback.
    await first.locator(".traceback summary").click()
    await expect(first.locator(".traceback pre")).to_contain_text("DemoFailure: failed at step 2")


async def test_an_eta_past_the_time_limit_says_the_job_times_out(spawn, page) -> None:
    limit = {"JOBCAST_KIND_TIMEOUTS_S": '{"demo": 8}'}
    web = spawn("web", **limit)
    spawn("worker", **limit)
    await web.wait_http()
    async with aiohttp.ClientSession() as session:
        # 40 steps of 400 ms: 16 s at its pace, past its 8 s limit.
        slow = await submit(session, web.url + "/api/jobs", demo(40, 400))
        assert slow["timeout_s"] == 8
        await page.goto(f"{web.url}/jobs/{slow['id']}")
        await expect(page.locator("#eta")).to_have_text(
            re.compile(r"^times out in \ds \(at this pace it needs \d+s\)$"), timeout=TIMEOUT_MS
        )
        await page.goto(web.url + "/")
        row = page.locator(f'.job[data-job-id="{slow["id"]}"]')
        await expect(row.locator(".job-eta")).to_have_text(
            re.compile(r"^times out in \ds$"), timeout=TIMEOUT_MS
        )
        # A job whose pace fits its limit shows its plain estimate, on a row the page added itself.
        await page.select_option("#kind", "demo")
        await page.fill("#demo-steps", "10")
        await page.fill("#demo-step_ms", "300")
        await page.click("#submit-form button[type=submit]")
        fits = page.locator(".job").first
        await expect(fits).not_to_have_attribute("data-job-id", slow["id"])
        await expect(fits).to_have_attribute("data-timeout-s", "8")
        await expect(fits.locator(".job-eta")).to_have_text(re.compile(r"^ETA \ds$"), timeout=TIMEOUT_MS)


async def test_a_job_backing_off_says_when_it_runs_again_and_elapsed_spans_its_attempts(
    client, spawn, page
) -> None:
    spawn("worker", JOBCAST_RETRY_BASE_S="4", JOBCAST_RETRY_MAX_S="4")
    body = {"kind": "demo", "params": {"steps": 10, "step_ms": 100, "fail_at_step": 2, "fail_attempts": 1}}
    job = await submit(client, "/api/jobs", body)
    await page.goto(base(client) + f"/jobs/{job['id']}")
    next_attempt = page.locator("#next-attempt")
    await expect(next_attempt).to_have_text(
        re.compile(r"^Next attempt at \d\d:\d\d:\d\d UTC, in \ds\.$"), timeout=TIMEOUT_MS
    )
    await expect(page.locator("#state")).to_have_text("succeeded", timeout=TIMEOUT_MS)
    await expect(next_attempt).to_be_hidden()
    events = await watch_to_end(client, job["id"])
    starts = [e["ts"] for e in events if e["type"] == "started"]
    snapshot = await get_json(client, f"/api/jobs/{job['id']}")
    assert [snapshot["first_started_at"], snapshot["started_at"]] == starts
    # Elapsed counts from the first attempt's start, the wait between attempts included.
    seconds = iso_seconds(snapshot["finished_at"]) - iso_seconds(starts[0])
    assert seconds > 3
    await expect(page.locator("#elapsed")).to_have_text(f"{int(seconds + 0.5)}s")
    await page.reload()  # and as the server renders it
    await expect(page.locator("#elapsed")).to_have_text(f"{int(seconds + 0.5)}s")


def iso_seconds(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


async def test_the_workers_page_shows_each_worker_its_jobs_live_and_a_lost_one_as_gone(spawn, page) -> None:
    beat = {"JOBCAST_WORKER_HEARTBEAT_S": "0.5"}
    web_ = spawn("web", **beat)
    worker_ = spawn("worker", JOBCAST_WORKER_MAX_JOBS="3", **beat)
    await web_.wait_http()
    async with aiohttp.ClientSession(web_.url) as session:
        # Both run longer than the page's refresh (3 s), the first until the page has shown the
        # second, on a loaded machine too.
        job = await submit(session, "/api/jobs", demo(120, 100))
        await page.goto(web_.url + "/workers")
        panel = page.locator(".worker").first
        await expect(panel.locator(".pid")).to_have_text(str(worker_.process.pid), timeout=TIMEOUT_MS)
        await expect(panel.locator(".concurrency")).to_have_text("3")
        await expect(panel.locator(".kinds")).to_contain_text("demo")
        await expect(panel.locator(".badge")).to_have_text("live")
        # Its job, with a bar that moves while the page is open, and since when it runs here.
        bar = panel.locator(f'[data-job-id="{job["id"]}"] progress')
        await expect(bar).to_be_visible(timeout=TIMEOUT_MS)
        started = (await get_json(session, f"/api/jobs/{job['id']}"))["started_at"]
        since = panel.locator(f'[data-job-id="{job["id"]}"] .job-started time')
        await expect(since).to_have_attribute("datetime", started)
        first = float(await bar.get_attribute("value") or 0)
        # A job that starts while the page is open comes from the page's refresh, said the same way.
        later = await submit(session, "/api/jobs", demo(60, 100))
        item = panel.locator(f'[data-job-id="{later["id"]}"]')
        await expect(item.locator(".job-started time")).to_have_attribute(
            "datetime", re.compile(r"^\d{4}-\d\d-\d\dT"), timeout=TIMEOUT_MS
        )
        await page.wait_for_function(
            f"() => document.querySelector('[data-job-id=\"{job['id']}\"] progress').value > {first}",
            timeout=TIMEOUT_MS,
        )
        # What it ended over the last hour, kept current by the page.
        for ran in (job, later):
            await watch_to_end(session, ran["id"])
        await expect(panel.locator(".last-hour")).to_have_text(
            "2 succeeded, 0 failed, 0 cancelled", timeout=TIMEOUT_MS
        )
        # Its own page: the jobs that ended on it, newest first, each a link.
        await panel.locator("h2 a").click()
        recent = page.locator(".recent-jobs tbody tr")
        await expect(recent).to_have_count(2, timeout=TIMEOUT_MS)
        ended = [await r.get_attribute("data-job-id") for r in await recent.all()]
        assert set(ended) == {job["id"], later["id"]}
        await expect(recent.first.locator(".badge")).to_have_text("succeeded")
        # A job's attempts link to the worker that ran them.
        await recent.first.get_by_role("link").click()
        await page.locator("#attempts .worker a").first.click()
        await expect(page.locator("h1")).to_contain_text(f":{worker_.process.pid}:")
        panel = page.locator(".worker")
        # Killed: the worker stays listed, marked gone.
        worker_.signal(signal.SIGKILL)
        await expect(panel.locator(".badge")).to_have_text("gone", timeout=TIMEOUT_MS)


async def test_the_scheduled_page_lists_delayed_jobs_and_runs_one_now(client, worker, page) -> None:
    later = await submit(client, "/api/jobs", {"kind": "demo", "params": {"steps": 2}, "delay_s": 600})
    soon = await submit(client, "/api/jobs", {"kind": "demo", "params": {"steps": 2}, "delay_s": 300})
    await page.goto(base(client) + "/scheduled")
    rows = page.locator("#scheduled tr")
    await expect(rows).to_have_count(2)
    # Soonest first, each with its run time.
    assert [await r.get_attribute("data-job-id") for r in await rows.all()] == [soon["id"], later["id"]]
    runs_at = rows.first.locator(".runs-at time")
    await expect(runs_at).to_have_attribute("datetime", soon["run_at"])
    # Relative to now, with the absolute time in the viewer's zone on hover.
    await expect(runs_at).to_have_text(re.compile(r"^in [45] minutes$"))
    # (As the browser's locale writes it, "Dec 7, 2026, 2:54:26 AM UTC": the page's script put it.)
    await expect(runs_at).to_have_attribute("title", re.compile(r"^[A-Z][a-z]+ \d+, \d{4}, \d+:\d\d:\d\d"))
    # The dashboard's rows say when they run, rather than a bare "queued 0%".
    await page.goto(base(client) + "/")
    when = page.locator(f'.job[data-job-id="{soon["id"]}"] .job-when')
    await expect(when.locator("time")).to_have_attribute("datetime", soon["run_at"])
    await expect(when).to_have_text(re.compile(r"^delayed, runs in [45] minutes$"))
    await page.goto(base(client) + "/scheduled")
    await page.get_by_role("button", name=f"Run now demo {soon['id'][:8]}").click()
    await expect(rows).to_have_count(1)
    assert (await watch_to_end(client, soon["id"]))[-1]["type"] == "succeeded"
    # Cancel stays on the page, and says what it did.
    await page.get_by_role("button", name=f"Cancel demo {later['id'][:8]}").click()
    await expect(page.locator(".notice")).to_have_text("1 job cancelled.")
    await expect(page).to_have_url(re.compile(r"/scheduled\?cancelled=1$"))
    assert (await get_json(client, f"/api/jobs/{later['id']}"))["state"] == "cancelled"


async def test_an_operator_cancels_every_delayed_demo_job_in_five_clicks(client, page) -> None:
    later = {"params": {"steps": 2}, "delay_s": 600}
    demos = [await submit(client, "/api/jobs", {"kind": "demo", **later}) for _ in range(6)]
    reports = [
        await submit(client, "/api/jobs", {"kind": "report", "params": {"user_id": "ada"}, "delay_s": 600})
        for _ in range(2)
    ]
    await page.goto(base(client) + "/scheduled")
    await expect(page.locator("#scheduled tr")).to_have_count(8)
    asked: list[str] = []
    page.once("dialog", lambda dialog: asked.append(dialog.message) or dialog.accept())
    # 1: the kind, 2: filter, 3: every job shown, 4: cancel them, 5: yes.
    await page.get_by_role("combobox", name="Kind").select_option("demo")
    await page.get_by_role("button", name="Filter").click()
    await expect(page.locator("#scheduled tr")).to_have_count(6)
    await page.get_by_role("checkbox", name="Select every job shown").check()
    await page.get_by_role("button", name="Cancel selected").click()
    await expect(page.locator(".notice")).to_have_text("6 jobs cancelled.")
    assert asked == ["Cancel 6 scheduled jobs?"]
    await expect(page.locator(".empty")).to_have_text("Nothing is scheduled of kind demo.")
    states = {j["id"]: (await get_json(client, f"/api/jobs/{j['id']}"))["state"] for j in demos + reports}
    assert states == {**{j["id"]: "cancelled" for j in demos}, **{j["id"]: "queued" for j in reports}}


async def test_the_scheduled_page_runs_chosen_jobs_now_and_keeps_its_list_current(
    client, worker, page
) -> None:
    later = {"kind": "demo", "params": {"steps": 2, "step_ms": 1}, "delay_s": 600}
    jobs = [await submit(client, "/api/jobs", later) for _ in range(4)]
    await page.goto(base(client) + "/scheduled")
    rows = page.locator("#scheduled tr")
    await expect(rows).to_have_count(4)
    # Started elsewhere (another operator, the API): its row goes without a reload.
    await post_json(client, f"/api/jobs/{jobs[0]['id']}/run-now")
    await expect(rows).to_have_count(3, timeout=TIMEOUT_MS)
    # Two chosen, run now: asked first, then said.
    asked: list[str] = []
    page.once("dialog", lambda dialog: asked.append(dialog.message) or dialog.accept())
    for job in jobs[1:3]:
        await page.get_by_label(f"Select demo job {job['id'][:8]}").check()
    await page.get_by_role("button", name="Run selected now").click()
    await expect(page.locator(".notice")).to_have_text("2 jobs started early.")
    assert asked == ["Run 2 scheduled jobs now?"]
    for job in jobs[:3]:
        assert (await watch_to_end(client, job["id"]))[-1]["type"] == "succeeded"
    await expect(rows).to_have_count(1)
    assert await rows.first.get_attribute("data-job-id") == jobs[3]["id"]


async def test_on_a_phone_the_jobs_come_first_and_the_form_unfolds_on_a_tap(client, worker, page) -> None:
    job = await submit(client, "/api/jobs", demo(2, 10))
    running = await submit(client, "/api/jobs", demo(300, 100))
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.goto(base(client) + "/")
    # Each job a card: its bar, message and ETA on the screen, not off to the side.
    card = page.locator(f'.job[data-job-id="{running["id"]}"]')
    await expect(card.locator(".job-eta")).to_have_text(re.compile(r"^ETA \d"), timeout=TIMEOUT_MS)
    for part in ("progress", ".job-message", ".job-eta", ".badge"):
        box = await card.locator(part).bounding_box()
        assert box is not None and box["width"] > 0 and box["x"] + box["width"] <= 390, (part, box)
    bar = await card.locator("progress").bounding_box()
    assert bar is not None and bar["width"] > 200  # the card's width, not a column's
    # The state's cell is as wide as its badge: nothing clipped away.
    cell, badge = (
        await card.locator(".state-cell").bounding_box(),
        await card.locator(".badge").bounding_box(),
    )
    assert cell is not None and badge is not None and cell["width"] >= badge["width"], (cell, badge)
    # Bulk actions on everything the filter matches come after the jobs, not first.
    table = await page.locator(".jobs-table").bounding_box()
    bulk = await page.locator("#bulk").bounding_box()
    assert table is not None and bulk is not None and bulk["y"] > table["y"] + table["height"] - 1
    jobs = await page.locator(".jobs-panel").bounding_box()
    form = await page.locator(".submit-panel").bounding_box()
    counters = await page.locator(".counters").bounding_box()
    assert jobs is not None and form is not None and counters is not None
    assert jobs["y"] < form["y"] and jobs["y"] < counters["y"]
    # On the first screen, without scrolling.
    await expect(page.locator(f'.job[data-job-id="{job["id"]}"]')).to_be_in_viewport()
    # No wider than the screen, and the form folded until asked for.
    assert await page.evaluate("() => document.documentElement.scrollWidth") <= 390
    await expect(page.locator("#kind")).to_be_hidden()
    await page.get_by_text("Submit a job").click()
    await expect(page.locator("#kind")).to_be_visible()


async def test_the_job_pages_log_follows_its_live_end_unless_scrolled_up(client, worker, page) -> None:
    job = await submit(client, "/api/jobs", demo(200, 40))
    await page.goto(base(client) + job["links"]["page"])
    box = page.locator("#log").locator("xpath=ancestor::div[contains(@class, 'table-wrap')]")
    at_end = "b => b.scrollHeight - b.scrollTop - b.clientHeight < 8"
    # Enough rows to scroll, and still at the end as more arrive.
    await page.wait_for_function("() => document.querySelectorAll('#log tr').length > 40", timeout=TIMEOUT_MS)
    assert await box.evaluate("b => b.scrollHeight > b.clientHeight")
    await page.wait_for_function("() => document.querySelectorAll('#log tr').length > 60", timeout=TIMEOUT_MS)
    assert await box.evaluate(at_end)
    # Scrolled up to read, it stays there.
    await box.evaluate("b => { b.scrollTop = 0; }")
    rows = await page.locator("#log tr").count()
    await page.wait_for_function(
        f"() => document.querySelectorAll('#log tr').length > {rows + 5}", timeout=TIMEOUT_MS
    )
    assert await box.evaluate("b => b.scrollTop") == 0
    await client.post(f"/api/jobs/{job['id']}/cancel")


async def test_the_finished_jobs_graph_fills_as_jobs_end(client, worker, page) -> None:
    await page.goto(base(client) + "/")
    await expect(page.locator("#finished-summary")).to_contain_text("0 finished")
    failing = {"kind": "demo", "params": {"steps": 1, "step_ms": 1, "fail_at_step": 1}}
    jobs = [await submit(client, "/api/jobs", body) for body in (demo(1, 1), demo(1, 1), failing)]
    stopped = await submit(client, "/api/jobs", {**demo(1, 1), "delay_s": 600})
    async with client.post(f"/api/jobs/{stopped['id']}/cancel") as answer:
        assert answer.status == 200
    for job in jobs:
        await watch_to_end(client, job["id"])
    # The graph's text alternative, then its bars: each final state apart, this minute.
    await expect(page.locator("#finished-summary")).to_contain_text(
        "4 finished, 1 failed and 1 cancelled", timeout=TIMEOUT_MS
    )
    await expect(page.locator("#finished-svg rect.failed")).to_have_count(1)
    await expect(page.locator("#finished-svg rect.cancelled")).to_have_count(1)
    assert await page.locator("#finished-svg rect.succeeded").count() >= 1  # one a minute they ended in
    await expect(page.locator("#finished-max")).to_have_text(re.compile(r"^[1-4] per min$"))
    table = [
        await r.locator("td").all_text_contents() for r in await page.locator("#finished-table tr").all()
    ]
    assert all(re.fullmatch(r"\d\d:\d\d", r[0]) for r in table)
    assert [sum(int(r[i]) for r in table) for i in (1, 2, 3)] == [2, 1, 1]
    # By kind: the demo jobs are all of them; no report ended.
    await page.get_by_role("combobox", name="of kind").select_option("demo")
    await expect(page.locator("#finished-summary")).to_contain_text("4 demo jobs finished, 1 failed")
    await page.get_by_role("combobox", name="of kind").select_option("report")
    await expect(page.locator("#finished-summary")).to_contain_text("0 report jobs finished, 0 failed")
    await expect(page.locator("#finished-svg rect")).to_have_count(0)
    day = await get_json(client, "/api/finished?span=day")
    ended = [b["counts"].get("demo", {}) for b in day["buckets"][-2:]]  # this hour, or across its start
    assert {s: sum(c.get(s, 0) for c in ended) for s in ("succeeded", "failed")} == {
        "succeeded": 2,
        "failed": 1,
    }
    # A click on the failed bar opens those jobs: the table filtered to its state and its minute.
    await page.get_by_role("combobox", name="of kind").select_option("")
    await page.locator("#finished-svg rect.failed").click()
    await expect(page).to_have_url(re.compile(r"/\?state=failed&since=.+&until=.+"))
    await expect(page.locator("#jobs .job")).to_have_count(1)
    await expect(page.locator("#jobs .job")).to_have_attribute("data-job-id", jobs[2]["id"])


async def test_invalid_form_input_shows_the_servers_message_next_to_the_field(client, page) -> None:
    await page.goto(base(client) + "/")
    await page.fill("#demo-steps", "0")
    await page.click("#submit-form button[type=submit]")
    error = page.locator("#error-demo-steps")
    await expect(error).to_contain_text("greater than or equal to 1")
    await expect(page.locator("#demo-steps")).to_have_attribute("aria-invalid", "true")
    await page.fill("#demo-steps", "2")
    await page.click("#submit-form button[type=submit]")
    await expect(error).to_be_hidden()
    await expect(page.locator("#submit-status a")).to_contain_text("Submitted demo")


async def test_cancel_from_the_job_page(client, worker, page) -> None:
    job = await submit(client, body=demo(400, 25))
    await page.goto(base(client) + job["links"]["page"])
    await page.wait_for_function("() => document.getElementById('bar').value > 0", timeout=TIMEOUT_MS)
    # It asks first, and looks destructive; declined, the job runs on.
    cancel = page.locator("#cancel")
    assert "danger" in (await cancel.get_attribute("class") or "")
    page.once("dialog", lambda dialog: dialog.dismiss())
    await cancel.click()
    await expect(cancel).to_be_enabled()
    assert (await get_json(client, f"/api/jobs/{job['id']}"))["state"] == "running"
    asked: list[str] = []
    page.once("dialog", lambda dialog: asked.append(dialog.message) or dialog.accept())
    await cancel.click()
    await expect(page.locator("#state")).to_have_text("cancelled", timeout=TIMEOUT_MS)
    assert asked == ["Cancel this job? It stops where it is; it can be retried as a new job."]
    await expect(page.locator(".job-title .badge")).to_have_text("cancelled")
    await expect(page.locator("#log tr:last-child td:nth-child(2)")).to_have_text("cancelled")
    await expect(page.locator("#retry")).to_be_enabled()
    await expect(page.locator("#connection")).to_have_attribute("data-state", "ended")
    # A cancel asked for is a neutral outcome, not an error; "cancel requested" is gone.
    await expect(page.locator("#cancelled-note")).to_be_visible()
    await expect(page.locator("#error")).to_be_hidden()
    await expect(page.locator("#action-status")).to_have_text("")
    await page.reload()  # the same, server-rendered
    await expect(page.locator("#cancelled-note")).to_be_visible()
    await expect(page.locator("#error")).to_be_hidden()


async def test_a_web_restart_shows_reconnecting_then_resumes_without_gap_or_duplicate(
    spawn, worker, page
) -> None:
    web = spawn("web")
    await web.wait_http()
    port = web.port
    async with aiohttp.ClientSession() as session:
        job = await submit(session, web.url + "/api/jobs", demo(60, 100))
        await page.goto(web.url + job["links"]["page"])
        await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
        await page.wait_for_function("() => document.getElementById('bar').value > 0", timeout=TIMEOUT_MS)
        web.signal(signal.SIGTERM)
        assert await web.wait_exit() == 0
        await expect(page.locator("#connection")).to_have_attribute("data-state", "reconnecting")
        await expect(page.locator("#connection")).to_contain_text("reconnecting")
        restarted = spawn("web", port=port)
        await restarted.wait_http()
        await expect(page.locator("#state")).to_have_text("succeeded", timeout=TIMEOUT_MS)
        final = await get_json(session, f"{restarted.url}/api/jobs/{job['id']}")
    assert await log_seqs(page) == list(range(1, final["last_event_id"] + 1))


async def test_the_job_progress_element_follows_a_job_on_a_plain_page(client, worker, page) -> None:
    job = await submit(client, body=demo(10, 50))
    await page.goto(f"{base(client)}/static/examples/job-progress.html?job={job['id']}")
    element = page.locator("job-progress#progress")
    await expect(element).to_have_attribute("state", "succeeded", timeout=TIMEOUT_MS)
    assert await element.locator("progress").evaluate("p => p.value") == 100
    # The same element over WebSocket, dropped into the page by script.
    other = await submit(client, body=demo(10, 50))
    await page.evaluate(
        """id => { const e = document.createElement('job-progress');
                   e.id = 'ws'; e.setAttribute('transport', 'ws'); e.setAttribute('job-id', id);
                   document.body.append(e); }""",
        other["id"],
    )
    await expect(page.locator("job-progress#ws")).to_have_attribute("state", "succeeded", timeout=TIMEOUT_MS)
    assert await page.locator("job-progress#ws progress").evaluate("p => p.value") == 100
    # A parent's element shows the bar rolled up from its children, running in parts.
    children = [demo(8 * i, 50) for i in (1, 2, 3)]
    parent = await submit(client, body={**demo(1, 0), "children": children})
    await page.evaluate(
        """id => { const e = document.createElement('job-progress');
                   e.id = 'parent'; e.setAttribute('job-id', id); document.body.append(e); }""",
        parent["id"],
    )
    await page.wait_for_function(
        """() => { const e = document.querySelector('job-progress#parent');
                   const p = (e.shadowRoot || e).querySelector('progress'); return p && p.value > 0 && p.value < 100; }""",
        timeout=TIMEOUT_MS,
    )
    await expect(page.locator("job-progress#parent")).to_have_attribute(
        "state", "succeeded", timeout=TIMEOUT_MS
    )
    assert await page.locator("job-progress#parent progress").evaluate("p => p.value") == 100
    # An unknown job is said to be one over either transport, instead of "reconnecting" forever.
    for transport in ("sse", "ws"):
        await page.evaluate(
            """t => { const e = document.createElement('job-progress');
                      e.id = 'unknown-' + t; e.setAttribute('transport', t); e.setAttribute('job-id', 'f'.repeat(32));
                      document.body.append(e); }""",
            transport,
        )
        state = page.locator(f"job-progress#unknown-{transport} .state")
        await expect(state).to_have_text("unknown job", timeout=TIMEOUT_MS)


async def test_a_page_watching_30_running_jobs_keeps_every_bar_live(client, spawn, page) -> None:
    spawn("worker", JOBCAST_WORKER_MAX_JOBS="30")
    jobs = [await submit(client, body=demo(40, 100)) for _ in range(30)]
    streams: list[str] = []
    page.on("request", lambda request: streams.append(request.url) if "/events" in request.url else None)
    await page.goto(base(client) + "/")
    assert await page.locator(".job").count() == 30
    # Every bar is seen moving (part-way), then every job ends at 100%.
    await page.wait_for_function(
        "() => [...document.querySelectorAll('.job progress')].every(p => p.value > 0)", timeout=TIMEOUT_MS
    )
    await page.wait_for_function(
        "() => [...document.querySelectorAll('.job')].every(r => r.dataset.state === 'succeeded')",
        timeout=TIMEOUT_MS,
    )
    values = await page.locator(".job progress").evaluate_all("bars => bars.map(b => b.value)")
    assert values == [100] * 30
    assert streams == [base(client) + "/api/events"]  # one stream for the page, not one per job
    assert {j["id"] for j in jobs} == set(
        await page.locator(".job").evaluate_all("rows => rows.map(r => r.dataset.jobId)")
    )


async def test_a_dashboard_whose_web_restarts_during_a_burst_shows_every_final_state(
    spawn, worker, page
) -> None:
    dashboard, other = spawn("web"), spawn("web")
    await asyncio.gather(dashboard.wait_http(), other.wait_http())
    feed_requests: list[float] = []
    page.on("request", lambda r: feed_requests.append(time.monotonic()) if "/api/events" in r.url else None)
    await page.goto(dashboard.url + "/")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    async with aiohttp.ClientSession() as session:
        # 120 jobs, 360 state changes, submitted through the other web process while the
        # dashboard's own goes down and comes back.
        jobs = [await submit(session, other.url + "/api/jobs", demo(2, 20)) for _ in range(30)]
        dashboard.signal(signal.SIGTERM)
        assert await dashboard.wait_exit() == 0
        down_at = time.monotonic()
        jobs += [await submit(session, other.url + "/api/jobs", demo(2, 20)) for _ in range(90)]
        restarted = spawn("web", port=dashboard.port)
        await restarted.wait_http()
        up_at = time.monotonic()
        newest = [j["id"] for j in reversed(jobs)]
        # The newest 50 rows, each showing its job's end (jobs submitted in the same millisecond
        # may swap places at the edge).
        await page.wait_for_function(
            """newest => { const rows = [...document.querySelectorAll('.job')];
                           const shown = new Set(rows.map(r => r.dataset.jobId));
                           return rows.length === 50 && newest.every(id => shown.has(id))
                             && rows.every(r => r.dataset.state === 'succeeded'); }""",
            arg=newest[:48],
            timeout=15_000,
        )
        shown_at = time.monotonic()
        states = {(await get_json(session, f"{other.url}/api/jobs/{j['id']}"))["state"] for j in jobs}
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    assert states == {"succeeded"}
    shown = await page.locator(".job").evaluate_all("rows => rows.map(r => r.dataset.jobId)")
    positions = [newest.index(job_id) if job_id in newest else None for job_id in shown]
    assert set(shown) <= set(newest[:52]) and set(newest[:48]) <= set(shown), positions
    assert shown_at - up_at < 10, "the dashboard took long to catch up after its server came back"
    # While the server was away, reconnects backed off (the first after 125-250 ms, each next
    # wait twice as long): a handful of tries, not several a second.
    tries = [t for t in feed_requests if down_at <= t <= shown_at]
    assert len(tries) <= 2 + math.log2(8 * (shown_at - down_at) + 1), (len(tries), shown_at - down_at)


async def test_a_stream_that_ends_as_soon_as_it_opens_counts_as_a_failed_try(aiohttp_server, page) -> None:
    """A server that accepts the stream and ends it at once (over SSE, or WebSocket after
    `subscribed`) must not be hammered: the client's backoff grows as if it had refused."""
    opened: dict[str, list[float]] = {"sse": [], "ws": []}

    async def feed(request: web.Request) -> web.StreamResponse:
        opened["sse"].append(time.monotonic())
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"retry: 10\n\n")
        return response

    async def socket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.receive()
        opened["ws"].append(time.monotonic())
        await ws.send_json({"type": "subscribed", "feed": True})
        await ws.close()
        return ws

    async def home(request: web.Request) -> web.Response:
        return web.Response(text=BACKOFF_PAGE, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", home)
    app.router.add_get("/api/events", feed)
    app.router.add_get("/api/ws", socket)
    app.router.add_static("/static", STATIC)
    server = await aiohttp_server(app)
    await page.goto(f"http://127.0.0.1:{server.port}/")
    # Six tries take at least 125 + 250 + 500 + 1000 + 2000 ms of backoff; without it, under 1.3 s.
    for transport in ("sse", "ws"):
        await page.wait_for_function(f"() => window.tries_{transport} >= 6", timeout=TIMEOUT_MS)
        assert len(opened[transport]) >= 6
        first, sixth = opened[transport][0], opened[transport][5]
        assert sixth - first > 3.5, f"{transport}: six tries in {sixth - first:.2f} s"


BACKOFF_PAGE = """<!doctype html><title>backoff</title><script type="module">
import { watchFeed } from "/static/jobcast.js";
for (const transport of ["sse", "ws"]) {
  window["tries_" + transport] = 0;
  watchFeed({ transport, onState: (state) => { if (state !== "live") return; window["tries_" + transport] += 1; } });
}
</script>"""


MARKUP = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>'


async def test_markup_in_a_jobs_params_and_messages_is_text_under_the_pages_csp(spawn, page) -> None:
    web = spawn("web", JOBCAST_KINDS="tests.kinds_extra")
    spawn("worker", JOBCAST_KINDS="tests.kinds_extra")
    await web.wait_http()
    violations: list[str] = []
    page.on(
        "console",
        lambda message: violations.append(message.text) if "Content Security" in message.text else None,
    )
    async with aiohttp.ClientSession() as session:
        job = await submit(session, web.url + "/api/jobs", {"kind": "echo", "params": {"text": MARKUP}})
        await watch_to_end(session, job["id"], base=web.url)
        async with session.get(web.url + "/") as response:
            csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    # The message is the job's progress message: on the dashboard row and in the job's event log.
    await page.goto(web.url + "/")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    await expect(page.locator(".job").first).to_contain_text(MARKUP, timeout=TIMEOUT_MS)
    await page.goto(f"{web.url}/jobs/{job['id']}")
    await expect(page.locator("#log")).to_contain_text(MARKUP, timeout=TIMEOUT_MS)
    assert await page.evaluate("() => window.pwned") is None
    assert await page.locator("#log img, .job img").count() == 0
    # The pages themselves run under the policy without breaking it.
    assert violations == []


async def page_elsewhere(aiohttp_server, html: str):
    """A server on another origin (another port) whose `/` is `html`."""

    async def home(request: web.Request) -> web.Response:
        return web.Response(text=html, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", home)
    return await aiohttp_server(app)


ELSEWHERE_PAGE = """<!doctype html><title>elsewhere</title><script type="module">
const q = new URLSearchParams(location.search);
const { watchJob } = await import(q.get("base") + "/static/jobcast.js");
window.seqs = []; window.current = 0; window.states = [];
watchJob(q.get("job"), {
  base: q.get("base"), token: q.get("token"), transport: q.get("transport"),
  onEvent: (e) => { window.seqs.push(e.seq); if (e.progress) window.current = e.progress.current; },
  onState: (s) => window.states.push(s),
});
</script>"""


async def test_a_page_on_another_origin_streams_a_long_job_across_token_expiry(
    aiohttp_server, spawn, page
) -> None:
    # The page lives on another origin (another port), with neither the owner's cookie nor a key:
    # only the job's stream token, which lasts 10 s here. The job runs about 20 s, and the web
    # server restarts after the first token has expired: the client reconnects with the token it
    # renewed meanwhile, and the bar still reaches the end with no gap or duplicate.
    elsewhere = await page_elsewhere(aiohttp_server, ELSEWHERE_PAGE)
    origin = f"http://127.0.0.1:{elsewhere.port}"
    owner_env = {
        "JOBCAST_SECRET": "browser-test-secret-that-is-long-enough",
        "JOBCAST_STREAM_TOKEN_TTL_S": "10",
        "JOBCAST_CORS_ORIGINS": origin,
    }
    web_ = spawn("web", **owner_env)
    spawn("worker", **owner_env)
    await web_.wait_http()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as owner:
        job = await submit(owner, web_.url + "/api/jobs", demo(20, 1000))
    query = f"job={job['id']}&token={job['stream_token']}&base={web_.url}&transport=sse"
    await page.goto(f"{origin}/?{query}")
    # Past the first token's expiry (and its renewal) before the restart.
    await page.wait_for_function("() => window.current >= 12", timeout=TIMEOUT_MS)
    web_.signal(signal.SIGTERM)
    assert await web_.wait_exit() == 0
    restarted = spawn("web", port=web_.port, **owner_env)
    await restarted.wait_http()
    await page.wait_for_function("() => window.states.includes('ended')", timeout=TIMEOUT_MS)
    seqs = await page.evaluate("() => window.seqs")
    assert seqs == list(range(seqs[0], seqs[-1] + 1)) and await page.evaluate("() => window.current") == 20
    assert "error" not in await page.evaluate("() => window.states")


ATTACKER_PAGE = """<!doctype html><title>elsewhere</title>
<iframe name="a"></iframe><iframe name="b"></iframe><iframe name="c"></iframe>
<form id="cancel" method="post" target="a"><input name="x" value="1"></form>
<form id="submit" method="post" target="b" enctype="multipart/form-data">
  <input name="kind" value="demo"><input name="params" value='{"steps": 2}'></form>
<form id="page-submit" method="post" target="c"><input name="kind" value="demo"></form>
<script>
const q = new URLSearchParams(location.search);
const base = q.get("base");
window.ws = {messages: [], closed: false};
const ws = new WebSocket(base.replace("http", "ws") + "/api/ws");
ws.onopen = () => ws.send(JSON.stringify({type: "subscribe_feed"}));
ws.onmessage = (m) => window.ws.messages.push(m.data);
ws.onclose = () => { window.ws.closed = true; };
window.loaded = 0;
for (const frame of document.querySelectorAll("iframe")) frame.onload = () => { window.loaded += 1; };
document.getElementById("cancel").action = base + "/jobs/" + q.get("job") + "/cancel";
document.getElementById("submit").action = base + "/api/jobs";
document.getElementById("page-submit").action = base + "/submit";
for (const id of ["cancel", "submit", "page-submit"]) document.getElementById(id).submit();
</script>"""

EMBED_PAGE = """<!doctype html><title>embedded</title>
<job-progress id="embedded" label="Report"></job-progress>
<script type="module">
const q = new URLSearchParams(location.search);
await import(q.get("base") + "/static/jobcast.js");
const element = document.getElementById("embedded");
element.setAttribute("base", q.get("base"));
element.setAttribute("token", q.get("token"));
element.setAttribute("job-id", q.get("job"));
</script>"""


async def test_pages_elsewhere_cannot_act_through_the_browser_and_an_allowed_one_embeds(
    aiohttp_server, spawn, page
) -> None:
    servers = [await page_elsewhere(aiohttp_server, html) for html in (ATTACKER_PAGE, EMBED_PAGE)]
    evil, friend = (f"http://127.0.0.1:{s.port}" for s in servers)
    env = {"JOBCAST_SECRET": "browser-test-secret-that-is-long-enough", "JOBCAST_CORS_ORIGINS": friend}
    web_ = spawn("web", **env)
    spawn("worker", **env)
    await web_.wait_http()

    # The user's browser has a session with jobcast, and a long job running.
    await page.goto(web_.url + "/")
    job = await page.evaluate(
        """base => fetch(base + "/api/jobs", {method: "POST", headers: {"Content-Type": "application/json"},
             body: JSON.stringify({kind: "demo", params: {steps: 30, step_ms: 500}})}).then(r => r.json())""",
        web_.url,
    )
    # A page elsewhere (another port: same site, another origin) tries everything with that session.
    await page.goto(f"{evil}/?base={web_.url}&job={job['id']}")
    await page.wait_for_function("() => window.ws.closed && window.loaded >= 3", timeout=TIMEOUT_MS)
    assert await page.evaluate("() => window.ws.messages") == []
    await page.goto(web_.url + "/")
    mine = await page.evaluate("base => fetch(base + '/api/jobs').then(r => r.json())", web_.url)
    assert [j["id"] for j in mine["jobs"]] == [job["id"]]  # nothing was submitted through the forms
    assert mine["jobs"][0]["state"] in ("queued", "running")  # nor cancelled
    assert "cross-site requests may not change anything here" not in web_.log()  # no detail logged

    # An allowed origin embeds <job-progress> with the job's stream token (the browser has
    # jobcast.js cached from jobcast's own page: that copy must not stand in for the CORS one).
    await page.goto(f"{friend}/?base={web_.url}&job={job['id']}&token={job['stream_token']}")
    element = page.locator("job-progress#embedded")
    await expect(element).to_have_attribute("state", "running", timeout=TIMEOUT_MS)


async def test_the_job_page_streams_output_and_its_log_live_across_a_web_restart(spawn, worker, page) -> None:
    web = spawn("web")
    await web.wait_http()
    port = web.port
    body = {"kind": "summarize", "params": {"paragraphs": 60, "max_words": 300, "tokens_per_s": 120}}
    async with aiohttp.ClientSession() as session:
        job = await submit(session, web.url + "/api/jobs", body)
        await page.goto(web.url + job["links"]["page"])
        answer = page.locator("#output-output")
        await page.wait_for_function(
            "() => (document.getElementById('output-output')?.textContent.length ?? 0) > 0",
            timeout=TIMEOUT_MS,
        )
        web.signal(signal.SIGTERM)
        assert await web.wait_exit() == 0
        await expect(page.locator("#connection")).to_have_attribute("data-state", "reconnecting")
        restarted = spawn("web", port=port)
        await restarted.wait_http()
        await expect(page.locator("#state")).to_have_text("succeeded", timeout=TIMEOUT_MS)
        async with session.get(f"{restarted.url}/api/jobs/{job['id']}/output/output") as response:
            whole = await response.text()
        assert await answer.text_content() == whole  # no gap, no duplicate
        # The job's log: its lines with their level, and a filter by level.
        rows = page.locator("#job-log tr")
        assert await rows.count() >= 3
        assert await page.locator("#job-log tr td.level").first.text_content() == "INFO"
        await page.select_option("#log-level", "30")
        await expect(page.locator("#job-log tr:visible")).to_have_count(0)
        # The event log shows the job's life, not its output.
        assert "output" not in await page.locator("#log tr").evaluate_all(
            "rows => rows.map(r => r.dataset.type)"
        )
        # Reloaded, the server renders the same text, whole: no "showing the end" note.
        await page.reload()
        assert await page.locator("#output-output").text_content() == whole
        await expect(page.locator(".output-cut")).to_be_hidden()


async def test_the_job_progress_element_shows_an_output_stream_across_a_web_restart(
    spawn, worker, page
) -> None:
    web = spawn("web")
    await web.wait_http()
    body = {"kind": "summarize", "params": {"paragraphs": 60, "max_words": 300, "tokens_per_s": 120}}
    async with aiohttp.ClientSession() as session:
        job = await submit(session, web.url + "/api/jobs", body)
        await page.goto(f"{web.url}/static/examples/job-progress.html")
        await page.evaluate(
            """id => { const e = document.createElement('job-progress');
                       e.id = 'answer'; e.setAttribute('output', 'output'); e.setAttribute('job-id', id);
                       document.body.append(e); }""",
            job["id"],
        )
        text = page.locator("job-progress#answer pre")
        await expect(text).not_to_be_empty(timeout=TIMEOUT_MS)
        web.signal(signal.SIGTERM)
        assert await web.wait_exit() == 0
        restarted = spawn("web", port=web.port)
        await restarted.wait_http()
        await expect(page.locator("job-progress#answer")).to_have_attribute(
            "state", "succeeded", timeout=TIMEOUT_MS
        )
        async with session.get(f"{restarted.url}/api/jobs/{job['id']}/output/output") as response:
            assert await text.text_content() == await response.text()


async def test_without_js_every_kinds_fields_show_and_another_kind_submits(client, worker, browser) -> None:
    context = await browser.new_context(java_script_enabled=False)
    page = await context.new_page()
    try:
        await page.goto(base(client) + "/")
        # The form starts on the first kind, and the others' fields are there to fill in too.
        await expect(page.locator("#report-user_id")).to_be_visible()
        await expect(page.locator("#demo-steps")).to_be_visible()
        await page.select_option("#kind", "report")
        await page.fill("#report-user_id", "ada")
        await page.fill("#report-days", "2")
        await page.fill("#report-pace_ms", "0")
        await page.click("#submit-form button[type=submit]")
        await expect(page).to_have_url(re.compile(r"/jobs/[0-9a-f]{32}$"))
        job_id = page.url.rsplit("/", 1)[1]
        job = await get_json(client, f"/api/jobs/{job_id}")
        assert (job["kind"], job["params"]["user_id"], job["params"]["days"]) == ("report", "ada", 2)
        # A kind pauses and resumes from its form, back on the dashboard.
        await page.goto(base(client) + "/")
        intake = page.locator('#kind-intake [data-kind="demo"]')
        await intake.get_by_role("button", name="Pause demo").click()
        await expect(page).to_have_url(base(client) + "/")
        await expect(intake.locator(".intake-state")).to_contain_text(
            re.compile(r"^paused (now|\d+ seconds? ago): \d+ held back$")
        )
        assert "demo" in (await get_json(client, "/api/stats"))["paused"]
        await intake.get_by_role("button", name="Resume demo").click()
        await expect(intake.locator(".intake-state")).to_have_text("running")
    finally:
        await context.close()


NOTIFICATIONS = """
window.notified = [];
window.Notification = class {
  static permission = "default";
  static async requestPermission() { return "granted"; }
  constructor(title, options) { window.notified.push([title, options.body]); }
};
"""


async def test_an_end_user_sees_plain_progress_a_download_and_is_notified(spawn, browser) -> None:
    owners = {"JOBCAST_SECRET": "end-user-page-secret-" + "x" * 16}
    web = spawn("web", **owners)
    spawn("worker", **owners)
    await web.wait_http()
    context = await browser.new_context()
    await context.add_init_script(NOTIFICATIONS)  # the browser's Notification API, observed
    page = await context.new_page()
    try:
        await page.goto(web.url + "/")
        await page.select_option("#kind", "report")
        await page.fill("#report-user_id", "ada")
        await page.fill("#report-days", "60")
        await page.fill("#report-pace_ms", "100")
        await page.click("#submit-form button[type=submit]")
        await page.locator("#jobs .job").first.wait_for()
        await page.locator("#jobs .job .job-link").first.click()
        # Progress in plain words with the time left; the job's workings folded away.
        await expect(page.locator("#plain-state")).to_have_text(
            re.compile(r"^Running: [\d.]+% done, about \d+s left$"), timeout=TIMEOUT_MS
        )
        for folded in await page.locator("details.job-workings").all():
            assert await folded.get_attribute("open") is None
        await expect(page.locator("#log")).to_be_hidden()
        await page.get_by_role("button", name="Notify me when it ends").click()
        await expect(page.locator("#notify")).to_have_text("You will be notified")
        # The web restarts mid-job: the page says so, and picks up again by itself.
        web.signal(signal.SIGTERM)
        assert await web.wait_exit() == 0
        await expect(page.locator("#connection")).to_have_attribute("data-state", "reconnecting")
        restarted = spawn("web", port=web.port, **owners)
        await restarted.wait_http()
        await expect(page.locator("#connection")).to_have_attribute("data-state", re.compile("live|ended"))
        await expect(page.locator("#plain-state")).to_have_text("Done", timeout=TIMEOUT_MS)
        download = page.get_by_role("link", name="Download report-activity-ada.csv").first
        await expect(download).to_be_visible()
        async with page.expect_download() as saved:
            await download.click()
        assert (await saved.value).suggested_filename == "report-activity-ada.csv"
        notified = await page.evaluate("window.notified")
        assert len(notified) == 1 and notified[0][0].endswith(": succeeded") and notified[0][1] == "Done"
    finally:
        await context.close()


async def test_a_shared_read_only_link_works_signed_out_until_sharing_stops(spawn, browser) -> None:
    owners = {"JOBCAST_SECRET": "shared-link-page-secret-" + "x" * 16}
    web = spawn("web", **owners)
    spawn("worker", **owners)
    await web.wait_http()
    mine, theirs = await browser.new_context(), await browser.new_context()
    try:
        page = await mine.new_page()
        await page.goto(web.url + "/")
        await page.select_option("#kind", "demo")
        await page.fill("#demo-steps", "30")
        await page.fill("#demo-step_ms", "100")
        await page.click("#submit-form button[type=submit]")
        await page.locator("#jobs .job .job-link").first.click()
        link = await page.locator("#share-link").input_value()
        assert re.fullmatch(re.escape(web.url) + r"/jobs/[0-9a-f]{32}\?token=[\w.-]+", link), link
        # Someone with no session here watches it live, and can only watch.
        viewer = await theirs.new_page()
        await viewer.goto(link)
        await expect(viewer.locator("#plain-state")).to_have_text("Done", timeout=TIMEOUT_MS)
        assert await viewer.locator("#cancel, #retry, #share-panel").count() == 0
        # The page alone, without the link: no job, for someone else.
        async with aiohttp.ClientSession() as stranger, stranger.get(link.split("?")[0]) as answer:
            assert answer.status == 404
        # Stopped: the same link no longer opens the page.
        await page.get_by_role("button", name="Stop sharing").click()
        await expect(page.locator("#share-status")).to_have_text(
            "Every link shared so far has stopped working."
        )
        answer = await viewer.goto(link)
        assert answer is not None and answer.status == 401
        await expect(viewer.locator("h1")).to_have_text("Unauthorized")
    finally:
        await mine.close()
        await theirs.close()


async def test_a_row_of_a_long_kind_name_still_shows_its_whole_short_id(client, page) -> None:
    job = await submit(client, "/api/jobs", {"kind": "aggregate", "params": {"rows": 10}, "delay_s": 600})
    await page.goto(base(client) + "/")
    row = page.locator(f'.job[data-job-id="{job["id"]}"]')
    cell, short = await row.locator(".col-job").bounding_box(), await row.locator(".job-id").bounding_box()
    assert cell is not None and short is not None
    # The id is inside its cell, not cut off by it; the kind gives way (its name on hover).
    assert short["x"] + short["width"] <= cell["x"] + cell["width"], (short, cell)
    await expect(row.locator(".job-id")).to_have_text(job["id"][:8])
    await expect(row.locator(".job-kind")).to_have_attribute("title", "aggregate")


async def test_a_parents_rolled_up_bar_only_moves_forward_and_resumes_after_a_web_restart(
    spawn, page
) -> None:
    kinds = {"JOBCAST_KINDS": "tests.kinds_tree"}
    web = spawn("web", **kinds)
    # Five slots: the later children start as the first ones end.
    spawn("worker", JOBCAST_WORKER_MAX_JOBS="5", **kinds)
    await web.wait_http()
    port = web.port
    # Eight children of uneven length (child i reports 4 x (i + 1) steps): the bar weighs each by
    # the total it reports, and the largest totals are reported last, when the bar has moved.
    # The page is served before they are made (a second in): their section comes to it then.
    params = {"children": 8, "steps": 4, "uneven": True, "step_ms": 150, "before_ms": 1000}
    async with aiohttp.ClientSession() as session:
        job = await post_json(session, web.url + "/api/jobs", {"kind": "fanout", "params": params}, 202)
        await page.goto(web.url + job["links"]["page"])
        await page.evaluate(
            """() => { window.seen = [];
                       const bar = document.getElementById('bar');
                       const look = () => { const v = bar.value;
                         if (window.seen.at(-1) !== v && window.seen.length < 5000) window.seen.push(v);
                         if (document.getElementById('state').textContent !== 'succeeded') requestAnimationFrame(look); };
                       look(); }"""
        )
        assert await page.locator("#children").is_hidden()
        await expect(page.locator("#plain-state")).to_contain_text("Running in parts", timeout=TIMEOUT_MS)
        await page.wait_for_function("() => document.getElementById('bar').value > 5", timeout=TIMEOUT_MS)
        web.signal(signal.SIGTERM)
        assert await web.wait_exit() == 0
        await expect(page.locator("#connection")).to_have_attribute("data-state", "reconnecting")
        restarted = spawn("web", port=port, **kinds)
        await restarted.wait_http()
        await expect(page.locator("#state")).to_have_text("succeeded", timeout=TIMEOUT_MS)
        final = await get_json(session, f"{restarted.url}/api/jobs/{job['id']}")
        # Each part's own bar and state came live too (the page was served while they waited).
        parts = page.locator("#children tr.job")
        await expect(parts).to_have_count(8)
        await expect(page.locator("#children tr.job[data-state=succeeded]")).to_have_count(
            8, timeout=TIMEOUT_MS
        )
        assert await parts.locator("progress").evaluate_all("bars => bars.map(b => b.value)") == [100] * 8
        await expect(page.locator("#children-counts")).to_contain_text("8 in all: 8 succeeded")
    seen = await page.evaluate("() => window.seen")
    assert seen[-1] == 100 and len(seen) > 10, seen
    assert all(a <= b for a, b in itertools.pairwise(seen)), seen
    # The bar moved while the children ran, not only at their ends: partial values are in it.
    assert any(0 < v < 100 and v not in (12.5, 25, 37.5, 50, 62.5, 75, 87.5) for v in seen), seen
    assert await log_seqs(page) == list(range(1, final["last_event_id"] + 1))
    assert final["children"]["succeeded"] == 8


async def test_a_dashboard_on_three_shards_shows_every_shards_jobs_across_a_web_restart(spawn, page) -> None:
    """Every job's feed is one a shard: the dashboard opens each, shows every shard's jobs live,
    and after its server restarts resumes each shard from where it was."""
    sharded = {"JOBCAST_REDIS_SHARDS": "3"}
    dashboard, other = spawn("web", **sharded), spawn("web", **sharded)
    spawn("worker", **sharded)
    await asyncio.gather(dashboard.wait_http(), other.wait_http())
    feeds: list[str] = []
    page.on("request", lambda r: feeds.append(r.url) if "/api/events" in r.url else None)
    await page.goto(dashboard.url + "/")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    ended_rows = """ids => { const rows = new Map([...document.querySelectorAll('.job')]
                                                .map(r => [r.dataset.jobId, r.dataset.state]));
                              return ids.every(id => rows.get(id) === 'succeeded'); }"""
    async with aiohttp.ClientSession() as session:
        first = [(await submit(session, other.url + "/api/jobs", demo(2, 20)))["id"] for _ in range(9)]
        await page.wait_for_function(ended_rows, arg=first, timeout=15_000)
        dashboard.signal(signal.SIGTERM)
        assert await dashboard.wait_exit() == 0
        opened = len(feeds)
        later = [(await submit(session, other.url + "/api/jobs", demo(2, 20)))["id"] for _ in range(9)]
        restarted = spawn("web", port=dashboard.port, **sharded)
        await restarted.wait_http()
        await page.wait_for_function(ended_rows, arg=later, timeout=15_000)
    assert {shard_of(job_id, 3) for job_id in first + later} == {0, 1, 2}
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")

    # Each shard's feed was opened, and after the restart each resumed from its own position.
    def shard(url: str) -> int:
        return int(parse_qs(urlsplit(url).query).get("shard", ["0"])[0])

    assert {shard(url) for url in feeds[:opened]} == {0, 1, 2}
    resumed = [url for url in feeds[opened:] if "last_event_id=" in url]
    assert {shard(url) for url in resumed} == {0, 1, 2}, feeds[opened:]
