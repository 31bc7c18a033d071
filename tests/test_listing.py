"""Knowing what exists: listing with filters and cursors, stats, kinds, retention."""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import quote

from jobcast.server.app import create_app
from tests.helpers import clock_passes, demo, get_json, post_json, read_sse, submit, table_ids, watch_to_end


async def test_jobs_are_listed_newest_first_filtered_and_paginated(client) -> None:
    demos = [await submit(client, body=demo(1, 1)) for _ in range(5)]
    reports = [await submit(client, body={"kind": "report", "params": {"user_id": "u1"}}) for _ in range(2)]
    for job in demos[:2]:
        await post_json(client, f"/api/jobs/{job['id']}/cancel")
    everything = [j["id"] for j in reversed(demos + reports)]

    seen, url = [], "/api/jobs?limit=3"
    while url:
        page = await get_json(client, url)
        assert len(page["jobs"]) <= 3
        seen += [j["id"] for j in page["jobs"]]
        url = page.get("links", {}).get("next")
    assert seen == everything  # newest first, no duplicate, nothing missing

    cancelled = await get_json(client, "/api/jobs?state=cancelled")
    assert {j["id"] for j in cancelled["jobs"]} == {demos[0]["id"], demos[1]["id"]}
    by_kind = await get_json(client, "/api/jobs?kind=report")
    assert [j["id"] for j in by_kind["jobs"]] == [reports[1]["id"], reports[0]["id"]]
    both = await get_json(client, "/api/jobs?kind=demo&state=queued&limit=10")
    assert [j["id"] for j in both["jobs"]] == [j["id"] for j in reversed(demos[2:])]
    assert both["next_cursor"] is None


async def test_listing_rejects_bad_queries(client) -> None:
    for query, status in (("state=bogus", 422), ("kind=nope", 422), ("limit=0", 422), ("cursor=!!", 400)):
        problem = await get_json(client, f"/api/jobs?{query}", status=status)
        assert problem["status"] == status


async def test_the_failed_list_is_the_dead_letter_list(client, worker) -> None:
    failing = await submit(
        client, body={"kind": "demo", "params": {"steps": 1, "step_ms": 1, "fail_at_step": 1}}
    )
    ok = await submit(client, body=demo(1, 1))
    await watch_to_end(client, failing["id"])
    await watch_to_end(client, ok["id"])
    failed = await get_json(client, "/api/jobs?state=failed")
    assert [j["id"] for j in failed["jobs"]] == [failing["id"]]
    assert failed["jobs"][0]["error"]["type"] == "DemoFailure"


async def test_stats_count_waiting_running_finished_and_workers(client, spawn) -> None:
    quick = [await submit(client, body={**demo(1, 1), "priority": "high"}) for _ in range(2)]
    quick.append(await submit(client, body={**demo(1, 1), "priority": "low"}))
    await submit(client, body={**demo(1, 1), "delay_s": 3600})
    stats = await get_json(client, "/api/stats")
    assert stats["waiting"] == {"high": 2, "default": 0, "low": 1}
    assert stats["delayed"] == {"high": 0, "default": 1, "low": 0}
    assert stats["oldest_waiting_s"] >= 0 and stats["workers"] == 0 and stats["running"] == 0

    spawn("worker")
    for job in quick:
        await watch_to_end(client, job["id"])
    long = await submit(client, body=demo(200, 20))
    await read_sse(client, f"/api/jobs/{long['id']}/events", headers={"Last-Event-ID": "0"}, stop_after=3)
    stats = await get_json(client, "/api/stats")
    assert stats["running"] == 1 and stats["workers"] == 1
    await post_json(client, f"/api/jobs/{long['id']}/cancel", status=202)
    await watch_to_end(client, long["id"])
    stats = await get_json(client, "/api/stats")
    assert stats["finished_last_hour"]["succeeded"] == 3 and stats["finished_last_hour"]["cancelled"] == 1
    assert stats["waiting"] == {"high": 0, "default": 0, "low": 0} and stats["delayed"]["default"] == 1


async def test_kinds_are_listed_with_json_schemas(client) -> None:
    kinds = {k["name"]: k for k in (await get_json(client, "/api/kinds"))["kinds"]}
    assert set(kinds) >= {"demo", "report", "convert", "aggregate"}
    assert kinds["report"]["params_schema"]["required"] == ["user_id"]
    assert kinds["convert"]["takes_upload"] is True


async def test_job_data_expires_after_the_retention(client, worker, redis, settings) -> None:
    job = await submit(client, body=demo(2, 1))
    await watch_to_end(client, job["id"])
    for key in (f"{settings.key_prefix}:job:{job['id']}", f"{settings.key_prefix}:log:{job['id']}"):
        assert 0 < await redis.ttl(key) <= settings.retention_s


async def test_jobs_are_listed_within_a_time_range(client) -> None:
    early = [await submit(client, body=demo(1, 1)) for _ in range(2)]
    early_cancelled = await submit(client, body=demo(1, 1))
    await post_json(client, f"/api/jobs/{early_cancelled['id']}/cancel")
    ended = datetime.fromisoformat(
        (await get_json(client, f"/api/jobs/{early_cancelled['id']}"))["finished_at"]
    )
    # A range is on the indexes' scores, which are the script calls' clocks: a few ms after the
    # `ts` a change shows. The cut leaves room for that, and the late changes come well after it:
    # what the test waits for is the clock itself.
    cut_at = ended + timedelta(milliseconds=50)
    cut = cut_at.isoformat()
    await clock_passes(cut_at + timedelta(milliseconds=20))
    # Submitted after the cut; the first of them cancelled after it too.
    late = [await submit(client, body=demo(1, 1)) for _ in range(2)]
    await post_json(client, f"/api/jobs/{late[0]['id']}/cancel")
    await post_json(client, f"/api/jobs/{early[0]['id']}/cancel")

    def ids(page: dict) -> set[str]:
        return {j["id"] for j in page["jobs"]}

    # Without a state: when they were submitted.
    assert ids(await get_json(client, f"/api/jobs?since={cut.replace('+', '%2B')}")) == {
        j["id"] for j in late
    }
    assert ids(await get_json(client, f"/api/jobs?until={cut.replace('+', '%2B')}")) == {
        j["id"] for j in [*early, early_cancelled]
    }
    # With one: when they reached it. early[0] was submitted before the cut, cancelled after.
    since_cut = await get_json(client, f"/api/jobs?state=cancelled&since={cut.replace('+', '%2B')}")
    assert ids(since_cut) == {late[0]["id"], early[0]["id"]}
    recent = await get_json(client, "/api/jobs?within=15m&state=cancelled")
    assert ids(recent) == {early_cancelled["id"], late[0]["id"], early[0]["id"]}
    async with client.get("/api/jobs?within=2h") as answer:
        assert answer.status == 422


async def test_jobs_are_found_by_text_in_their_kind_params_error_or_id(client, worker) -> None:
    failed = await submit(
        client, body={"kind": "demo", "params": {"steps": 4, "step_ms": 1, "fail_at_step": 3}}
    )
    await watch_to_end(client, failed["id"])
    # Delayed, so that they stay as submitted.
    later = {"delay_s": 600}
    ada = [
        await submit(client, body={"kind": "report", "params": {"user_id": "Ada-Lovelace"}, **later})
        for _ in range(2)
    ]
    grace = await submit(client, body={"kind": "report", "params": {"user_id": "grace"}, **later})
    plain = await submit(client, body={**demo(2, 1), **later})

    async def found(text: str, extra: str = "") -> list[str]:
        return [j["id"] for j in (await get_json(client, f"/api/jobs?text={text}{extra}"))["jobs"]]

    # Params, whatever the case; newest first.
    assert await found("ada-LOVELACE") == [ada[1]["id"], ada[0]["id"]]
    # The error's message (the failed demo's), and its type.
    assert await found("step 3 as asked") == [failed["id"]] == await found("demofailure")
    # The kind, with the other filters.
    assert await found("report", "&limit=2") == [grace["id"], ada[1]["id"]]
    assert await found("report", "&state=failed") == []
    # Any part of the id.
    assert await found(plain["id"][5:14]) == [plain["id"]]
    # The dashboard's search box: the same jobs, and its bulk actions act on them alone.
    html = await (await client.get("/?text=lovelace")).text()
    assert table_ids(html) == [ada[1]["id"], ada[0]["id"]]
    assert '"text": "lovelace"' in html.split('id="bulk"')[1].split(">")[0].replace("&#34;", '"')


async def test_a_text_search_reads_a_bounded_number_of_jobs_a_page(aiohttp_client, settings) -> None:
    client = await aiohttp_client(create_app(settings.model_copy(update={"search_scanned": 5})))
    oldest = await submit(client, body={"kind": "report", "params": {"user_id": "needle"}, "delay_s": 600})
    for _ in range(12):
        await submit(client, body={**demo(2, 1), "delay_s": 600})
    # Each page reads five jobs at most: the first two find nothing, and say where to go on.
    pages, url = [], "/api/jobs?text=needle&limit=50"
    while url:
        page = await get_json(client, url)
        pages.append([j["id"] for j in page["jobs"]])
        url = page.get("links", {}).get("next")
    assert (
        pages[:2] == [[], []]
        and [oldest["id"]] in pages[2:]
        and [i for page in pages for i in page] == [oldest["id"]]
    )
    html = await (await client.get("/?text=needle")).text()
    assert 'id="search-bound"' in html and "reads\n    5 jobs a page" in html and 'rel="next"' in html


async def test_jobs_are_filtered_by_delay_and_by_error_group(client, worker) -> None:
    fails = [{"kind": "demo", "params": {"steps": 3, "step_ms": 1, "fail_at_step": n}} for n in (1, 2)]
    step_failures = [await submit(client, body=body) for body in fails]
    for job in step_failures:
        await watch_to_end(client, job["id"])
    done = await submit(client, body=demo(1, 1))
    await watch_to_end(client, done["id"])
    delayed = [await submit(client, body={**demo(2, 1), "delay_s": 600}) for _ in range(2)]

    def ids(page: dict) -> list[str]:
        return [j["id"] for j in page["jobs"]]

    # Waiting for a time still ahead: the delayed jobs alone, newest first.
    assert ids(await get_json(client, "/api/jobs?delayed=true")) == [delayed[1]["id"], delayed[0]["id"]]
    html = await (await client.get("/?state=delayed")).text()
    assert table_ids(html) == [delayed[1]["id"], delayed[0]["id"]]
    assert "<option selected>delayed</option>" in html
    # One error group, as the Failures page names it: both step failures, nothing else.
    group = "DemoFailure: failed at step … as asked"
    found = await get_json(client, f"/api/jobs?state=failed&group={quote(group)}")
    # (Ended together on one worker: in either order.)
    assert sorted(ids(found)) == sorted(j["id"] for j in step_failures)
    assert ids(await get_json(client, f"/api/jobs?group={quote('KeyError: …')}")) == []
    html = await (await client.get(f"/?state=failed&group={quote(group)}")).text()
    assert sorted(table_ids(html)) == sorted(ids(found))
    # A bulk action on either filter goes through those jobs alone.
    for chosen, n in (({"delayed": True}, 2), ({"state": "failed", "group": group}, 2)):
        counted = await post_json(
            client,
            "/api/bulk/count",
            {"action": "cancel" if "delayed" in chosen else "retry", "filter": chosen},
        )
        assert counted["matches"] == n, chosen
