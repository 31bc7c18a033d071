"""The pages in a real Chromium (Debian's, driven by Playwright), against real workers."""

from __future__ import annotations

import signal

import aiohttp
from playwright.async_api import expect

from tests.helpers import demo, get_json, submit

TIMEOUT_MS = 30_000


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
    await page.click("#cancel")
    await expect(page.locator("#state")).to_have_text("cancelled", timeout=TIMEOUT_MS)
    await expect(page.locator(".job-title .badge")).to_have_text("cancelled")
    await expect(page.locator("#log tr:last-child td:nth-child(2)")).to_have_text("cancelled")
    await expect(page.locator("#retry")).to_be_enabled()
    await expect(page.locator("#connection")).to_have_attribute("data-state", "ended")


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
