"""The pages without JS: forms built from the kinds' schemas, server-side validation messages next
to the fields, the job page's event log from history, and the no-JS cancel and retry buttons."""

from __future__ import annotations

import gzip
import re
import shutil

import aiohttp
from playwright.async_api import expect

from jobcast.server.pages.views import static_version
from tests.helpers import CHECKOUT, demo, get_json, submit, table_ids, watch_to_end


async def test_the_dashboard_form_is_built_from_the_kinds_schemas(client) -> None:
    async with client.get("/") as response:
        assert response.status == 200
        html = await response.text()
    for kind in ("demo", "report", "convert", "aggregate"):
        assert f'data-kind="{kind}"' in html
    assert re.search(r'<input id="demo-steps" name="demo.steps" type="number"\s+value="20"[^>]*min="1"', html)
    assert re.search(r'<select id="report-report_type" name="report.report_type"', html)
    assert 'type="file" id="file-convert" name="file"' in html
    assert 'name="convert.upload"' not in html  # the server fills it in


async def test_a_form_submission_without_js_lands_on_the_job_page(client, worker) -> None:
    form = {"kind": "demo", "demo.steps": "3", "demo.step_ms": "1", "priority": "high"}
    async with client.post("/submit", data=form, allow_redirects=False) as response:
        assert response.status == 303
        page = response.headers["Location"]
    job_id = page.rsplit("/", 1)[1]
    job = await get_json(client, f"/api/jobs/{job_id}")
    assert job["params"]["steps"] == 3 and job["priority"] == "high"
    await watch_to_end(client, job_id)
    async with client.get(page) as response:
        html = await response.text()
    assert '<progress id="bar" max="100" value="100.0"' in html
    seqs = [int(s) for s in re.findall(r'<tr data-seq="(\d+)" data-type=', html)]
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= 5  # the whole log, in order
    assert (
        'data-state="succeeded"' in html
        and f"curl -N http://127.0.0.1:{client.port}/api/jobs/{job_id}/events" in html
    )


async def test_invalid_form_input_is_shown_next_to_its_field(client) -> None:
    form = {"kind": "demo", "demo.steps": "0", "demo.step_ms": "abc"}
    async with client.post("/submit", data=form) as response:
        assert response.status == 422
        html = await response.text()
    steps_error = re.search(r'data-error-for="params.steps" id="error-demo-steps">([^<]+)<', html)
    assert steps_error and "greater than or equal to 1" in steps_error.group(1)
    assert re.search(r'data-error-for="params.step_ms" id="error-demo-step_ms">[^<]*integer', html)
    assert 'value="0"' in html  # what the user typed stays
    async with client.post("/submit", data=form, headers={"Accept": "application/json"}) as response:
        assert response.status == 422
        problem = await response.json()
    assert {e["field"] for e in problem["errors"]} == {"params.steps", "params.step_ms"}
    listed = await get_json(client, "/api/jobs")
    assert listed["jobs"] == []


async def test_no_js_cancel_and_retry_buttons(client, worker) -> None:
    job = await submit(client, body=demo(300, 20))
    async with client.post(f"/jobs/{job['id']}/cancel", allow_redirects=False) as response:
        assert response.status == 303 and response.headers["Location"] == f"/jobs/{job['id']}"
    assert (await watch_to_end(client, job["id"]))[-1]["type"] == "cancelled"
    async with client.post(f"/jobs/{job['id']}/retry", allow_redirects=False) as response:
        assert response.status == 303
        new_page = response.headers["Location"]
    assert new_page != f"/jobs/{job['id']}"
    assert (await get_json(client, "/api" + new_page))["retry_of"] == job["id"]


async def test_the_dashboard_filters_and_lists_failed_jobs(client, worker) -> None:
    bad = await submit(client, body={"kind": "demo", "params": {"steps": 1, "step_ms": 1, "fail_at_step": 1}})
    good = await submit(client, body=demo(1, 1))
    await watch_to_end(client, bad["id"])
    await watch_to_end(client, good["id"])
    async with client.get("/?state=succeeded") as response:
        html = await response.text()
    jobs_list = html.split('id="jobs"')[1].split("</tbody>")[0]
    assert good["id"] in jobs_list and bad["id"] not in jobs_list
    failed_list = html.split('id="failed"')[1].split("</ul>")[0]
    assert bad["id"] in failed_list and f'action="/jobs/{bad["id"]}/retry"' in failed_list


async def test_a_failed_row_shows_its_error_not_its_last_progress_message(client, worker) -> None:
    bad = await submit(client, body={"kind": "demo", "params": {"steps": 3, "step_ms": 1, "fail_at_step": 2}})
    events = await watch_to_end(client, bad["id"])
    assert events[-1]["type"] == "failed"
    assert "step 1 of 3" in [e["progress"]["message"] for e in events if e["type"] == "progress"]
    async with client.get("/?state=failed") as response:
        html = await response.text()
    row = html.split(f'data-job-id="{bad["id"]}"')[1].split("</tr>")[0]
    (message,) = re.findall(r'<span class="job-message">(.*?)</span>', row)
    assert message == "DemoFailure: failed at step 2 as asked"


async def test_a_browser_gets_an_error_page_and_an_api_client_the_problem(client) -> None:
    browser = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
    async with client.get("/find?id=ffffffff", headers=browser) as response:
        assert response.status == 404 and response.content_type == "text/html"
        page = await response.text()
    assert "<title>Not Found · jobcast</title>" in page and '<html lang="en"' in page
    assert '<main id="main"' in page and "no job id starts with ffffffff" in page
    # The search again, filled in.
    assert re.search(r'<input id="find-id" name="id" value="ffffffff"', page)
    async with client.get("/jobs/abcd", headers=browser) as response:
        assert response.status == 404 and 'value="abcd"' in await response.text()
    # The same misses for a script, and any API path even for a browser: the problem document.
    for path, headers in (
        ("/find?id=ffffffff", {}),
        ("/find?id=ffffffff", {"Accept": "application/json"}),
        ("/api/jobs/" + "f" * 32, browser),
    ):
        async with client.get(path, headers=headers) as response:
            assert response.status == 404 and response.content_type == "application/problem+json", path


async def test_static_files_are_sent_compressed_to_clients_that_accept_it(client) -> None:
    script = (CHECKOUT / "static" / "jobcast.js").read_bytes()
    async with aiohttp.ClientSession(auto_decompress=False) as raw:
        url = str(client.make_url("/static/jobcast.js"))
        async with raw.get(url, headers={"Accept-Encoding": "gzip"}) as response:
            assert response.headers["Content-Encoding"] == "gzip"
            assert "Accept-Encoding" in response.headers.getall("Vary", [])
            sent = await response.read()
        async with raw.get(url, headers={"Accept-Encoding": "identity"}) as response:
            assert "Content-Encoding" not in response.headers and await response.read() == script
    assert gzip.decompress(sent) == script and len(sent) < len(script) / 3, (len(sent), len(script))


async def test_pages_and_json_are_sent_compressed_within_a_stated_size(client) -> None:
    # 50 rows of realistic jobs: delayed, so that they stay as submitted.
    for n in range(60):
        await submit(client, "/api/jobs", {**demo(5, 10), "delay_s": 600, "params": {"steps": n + 1}})
    sizes = {}
    async with aiohttp.ClientSession(auto_decompress=False) as raw:
        for path in ("/", "/api/jobs?limit=50", "/metrics"):
            url = str(client.make_url(path))
            async with raw.get(url, headers={"Accept-Encoding": "gzip"}) as response:
                assert response.headers["Content-Encoding"] == "gzip", path
                assert "Accept-Encoding" in response.headers.getall("Vary", [])
                sent = await response.read()
            async with raw.get(url, headers={"Accept-Encoding": "identity"}) as response:
                assert "Content-Encoding" not in response.headers
                plain = await response.read()
            sizes[path] = (len(sent), len(gzip.decompress(sent)), len(plain))
            if path == "/":
                assert len(table_ids(gzip.decompress(sent).decode())) == 50
        # Too short to gain anything: as it is.
        async with raw.get(str(client.make_url("/healthz")), headers={"Accept-Encoding": "gzip"}) as response:
            assert "Content-Encoding" not in response.headers
    sent, unpacked, plain = sizes["/"]
    # The bound docs/performance.md states: a 50-row dashboard in under 16 KB on the wire.
    assert abs(unpacked - plain) < 1000 and sent < 16_000 and sent < plain / 4, sizes
    sent, unpacked, plain = sizes["/api/jobs?limit=50"]
    assert sent < plain / 4, sizes


async def test_the_pages_files_come_from_a_release_path_cached_for_a_year(client, tmp_path) -> None:
    html = await (await client.get("/")).text()
    script = re.search(r'src="(/static/([0-9a-f]{12})/dashboard\.js)"', html)
    assert script is not None and f'href="/static/{script[2]}/style.css"' in html
    async with client.get(script[1]) as response:
        assert (
            response.status == 200
            and response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        )
        # Its imports are relative: they load from the same release.
        assert 'from "./jobcast.js"' in await response.text()
    # The client other sites import keeps its address, and is asked for again each time.
    async with client.get("/static/jobcast.js") as response:
        assert response.status == 200 and response.headers["Cache-Control"] == "no-cache"
    # A page of another release (a rolling deploy) still gets its files, but not to be kept.
    async with client.get("/static/0123456789ab/dashboard.js") as response:
        assert response.status == 200 and response.headers["Cache-Control"] == "no-cache"
    # Any change to any file makes a new release path.
    copy = tmp_path / "static"
    shutil.copytree(CHECKOUT / "static", copy)
    assert static_version(copy) == script[2]
    (copy / "ui.js").write_text((copy / "ui.js").read_text() + "\n")
    assert static_version(copy) != script[2]


async def test_the_jobs_table_pages_through_every_job_and_filters_by_priority(client) -> None:
    # Delayed, so they stay as submitted: 120 jobs, every third one high priority.
    jobs = [
        await submit(client, body=demo(1, 1) | {"delay_s": 600, "priority": "high" if i % 3 == 0 else "low"})
        for i in range(120)
    ]
    newest_first = [job["id"] for job in reversed(jobs)]
    seen: list[str] = []
    url = "/"
    while url:
        async with client.get(url) as response:
            assert response.status == 200
            html = await response.text()
        seen += table_ids(html)
        older = html.split('rel="next" href="')
        url = older[1].split('"')[0].replace("&amp;", "&") if len(older) > 1 else ""
        assert len(seen) <= 120, "a page repeats jobs"
    assert seen == newest_first
    async with client.get("/?priority=high&limit=200") as response:
        html = await response.text()
    assert table_ids(html) == [job["id"] for job in reversed(jobs[::3])]
    assert 'rel="next"' not in html and "<option selected>200</option>" in html
    async with client.get("/?cursor=not-a-cursor") as response:
        assert response.status == 400 and response.content_type == "application/problem+json"
    # The API filters the same way.
    listed = await get_json(client, "/api/jobs?priority=low&limit=5")
    assert [job["id"] for job in listed["jobs"]] == [
        j["id"] for j in reversed(jobs) if j["priority"] == "low"
    ][:5]


async def test_the_short_id_on_the_dashboard_finds_the_job(client, redis, settings) -> None:
    job = await submit(client, body=demo(1, 1))
    async with client.get(f"/jobs/{job['id'][:8]}", allow_redirects=False) as response:
        assert response.status == 302 and response.headers["Location"] == f"/jobs/{job['id']}"
    async with client.get(f"/jobs/{job['id'][:8]}") as page:
        assert page.status == 200 and job["id"] in await page.text()
    other = "f" * 32 if not job["id"].startswith("ffff") else "e" * 32
    async with client.get(f"/jobs/{other[:8]}") as unknown:
        assert unknown.status == 404 and unknown.content_type == "application/problem+json"
    # Two retained ids sharing a start (placed in the id index as submission places them).
    await redis.zadd(f"{settings.key_prefix}:index:ids", {"abcd" + "0" * 28: 0, "abcd" + "1" * 28: 0})
    async with client.get("/jobs/abcd") as ambiguous:
        problem = await ambiguous.json()
    assert ambiguous.status == 409 and "give more of it" in problem["detail"]
    assert "abcd" + "0" * 28 in problem["detail"] and "abcd" + "1" * 28 in problem["detail"]


async def test_the_pages_have_an_icon_where_browsers_look_first(client) -> None:
    page = await (await client.get("/")).text()
    link = re.search(r'<link rel="icon" href="([^"]+)" type="image/svg\+xml">', page)
    assert link is not None
    for url in ("/favicon.ico", link[1]):
        response = await client.get(url)
        assert response.status == 200 and response.content_type == "image/svg+xml", url
        assert (await response.text()).startswith("<svg")


async def test_find_answers_a_problem_for_a_bad_or_unknown_id(client) -> None:
    for query, status in (("id=zz", 422), ("", 422), ("id=" + "ab12" * 2, 404), ("id=" + "ab12" * 8, 404)):
        response = await client.get("/find?" + query, allow_redirects=False)
        assert response.status == status, query
        assert response.content_type == "application/problem+json"


async def test_run_now_is_for_jobs_waiting_for_their_time(client, worker) -> None:
    delayed = await submit(client, "/api/jobs", {"kind": "demo", "params": {"steps": 1}, "delay_s": 600})
    listed = await get_json(client, "/api/scheduled")
    assert [j["id"] for j in listed["jobs"]] == [delayed["id"]]
    now = await client.post(f"/api/jobs/{delayed['id']}/run-now")
    assert now.status == 200 and (await now.json())["id"] == delayed["id"]
    await watch_to_end(client, delayed["id"])
    assert (await get_json(client, "/api/scheduled"))["jobs"] == []
    again = await client.post(f"/api/jobs/{delayed['id']}/run-now")  # ended: nothing to run now
    assert again.status == 409 and again.content_type == "application/problem+json"
    unknown = await client.post(f"/api/jobs/{'0' * 32}/run-now")
    assert unknown.status == 404


async def test_the_job_pages_event_log_is_paged_not_written_whole(spawn) -> None:
    fast = {"JOBCAST_PROGRESS_RATE_HZ": "1000"}
    web = spawn("web", **fast)
    spawn("worker", **fast)
    await web.wait_http()
    async with aiohttp.ClientSession(web.url) as session:
        job = await submit(session, "/api/jobs", demo(250, 2))
        events = await watch_to_end(session, job["id"])
        assert len(events) > 150, len(events)  # two pages at least, however the machine paces it
        seen: list[int] = []
        url = f"/jobs/{job['id']}"
        while url:
            async with session.get(url) as response:
                assert response.status == 200
                page = await response.text()
            rows = [int(seq) for seq in re.findall(r'<tr data-seq="(\d+)"', page.split('id="log"')[1])]
            assert 0 < len(rows) <= 100 and rows == sorted(rows)
            assert ('data-live="true"' in page) == (not seen)
            seen = rows + seen
            earlier = re.search(r'id="log-earlier" href="(\?log_before=\d+)#log-title"', page)
            url = f"/jobs/{job['id']}{earlier[1]}" if earlier else ""
        # Every event once, in pages of at most 100, the latest first.
        assert seen == [e["seq"] for e in events if e["type"] != "output"]
        async with session.get(f"/jobs/{job['id']}?log_before=0") as response:
            assert response.status == 422


def test_times_are_said_relative_to_now_as_the_pages_script_says_them() -> None:
    from datetime import UTC, datetime, timedelta

    from jobcast.server.pages.times import relative

    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    cases = {
        timedelta(seconds=40): "in 40 seconds",
        timedelta(seconds=-1): "1 second ago",
        timedelta(milliseconds=300): "now",
        timedelta(minutes=-3, seconds=-10): "3 minutes ago",
        timedelta(minutes=9, seconds=50): "in 10 minutes",
        timedelta(hours=5): "in 5 hours",
        timedelta(days=-2): "2 days ago",
    }
    for delta, words in cases.items():
        assert relative((now + delta).isoformat(), now) == words, delta


async def test_the_finished_jobs_graph_is_drawn_without_js(client, worker) -> None:
    failing = {"kind": "demo", "params": {"steps": 1, "step_ms": 1, "fail_at_step": 1}}
    for body in (demo(1, 1), failing):
        await watch_to_end(client, (await submit(client, body=body))["id"])
    async with client.get("/") as response:
        page = await response.text()
    summary = re.search(r'<p id="finished-summary" class="hint">([^<]*)</p>', page)
    assert summary is not None and summary[1].startswith("2 finished, 1 failed and 0 cancelled"), summary
    graph = page.split('id="finished-svg"')[1].split("</svg>")[0]
    assert graph.count('<rect class="failed"') == 1 and graph.count('<rect class="succeeded"') >= 1
    rows = re.findall(r"<tr><td>(\d\d:\d\d)</td><td>(\d+)</td><td>(\d+)</td><td>(\d+)</td></tr>", page)
    assert [sum(int(r[i]) for r in rows) for i in (1, 2, 3)] == [1, 1, 0]


async def test_a_row_says_when_its_job_retries_and_after_what(spawn, page) -> None:
    backoff = {"JOBCAST_RETRY_BASE_S": "90", "JOBCAST_RETRY_MAX_S": "90"}
    web = spawn("web", **backoff)
    spawn("worker", **backoff)
    await web.wait_http()
    await page.goto(web.url + "/")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    body = {"kind": "demo", "params": {"steps": 3, "step_ms": 1, "fail_at_step": 1, "fail_attempts": 1}}
    async with aiohttp.ClientSession(web.url) as session:
        job = await submit(session, "/api/jobs", body)
    when = page.locator(f'.job[data-job-id="{job["id"]}"] .job-when')
    said = re.compile(r"^retrying in (1 minute|\d\d seconds) after DemoFailure$")
    # Live, as the page hears the job back off; then as the server writes the row.
    await expect(when).to_have_text(said, timeout=20_000)
    await page.reload()
    await expect(when).to_have_text(said)
