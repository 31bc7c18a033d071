"""Bulk actions (`POST /api/bulk`): retry, cancel or delete many jobs, run as a job of the built-in
`bulk` kind by a real `jobcast worker`, with progress and a result that says what it did."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import aiohttp

from jobcast.files.local import FileStore
from jobcast.server.app import create_app
from tests.helpers import clock_passes, demo, get_json, post_json, submit, wait_for, watch_to_end
from tests.test_security import ADMIN_KEY, SERVICE_KEY, bearer, owner_mode, status_of  # noqa: F401

FAILING = {"kind": "demo", "params": {"steps": 2, "step_ms": 1, "fail_at_step": 1}}


async def run_bulk(session: Any, body: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Start a bulk action; its job's snapshot at the end, and its events."""
    job = await post_json(session, "/api/bulk", body, status=202)
    assert job["kind"] == "bulk" and job["priority"] == "high"
    events = await watch_to_end(session, job["id"])
    return await get_json(session, f"/api/jobs/{job['id']}"), events


async def finished(session: Any, body: dict[str, Any]) -> dict[str, Any]:
    job = await submit(session, body=body)
    await watch_to_end(session, job["id"])
    return await get_json(session, f"/api/jobs/{job['id']}")


async def test_retry_by_filter_resubmits_each_failed_job_once(client, worker) -> None:
    failed = [await finished(client, FAILING) for _ in range(3)]
    assert {job["state"] for job in failed} == {"failed"}
    succeeded = await finished(client, demo(2, 1))

    # Counted first, as the dashboard's confirmation asks: what the action would go through.
    retry_failed = {"action": "retry", "filter": {"state": "failed", "kind": "demo"}}
    assert await post_json(client, "/api/bulk/count", retry_failed) == {"matches": 3, "limit": 10_000}
    everything = await post_json(client, "/api/bulk/count", {"action": "retry", "filter": {}})
    assert everything["matches"] == 3  # retry goes through failed and cancelled jobs only
    bulk, events = await run_bulk(client, retry_failed)
    assert bulk["state"] == "succeeded", bulk["error"]
    assert bulk["result"] == {"action": "retry", "matched": 3, "done": 3, "skipped": 0}
    progress = [e for e in events if e["type"] == "progress"]
    assert progress and progress[-1]["progress"]["message"] == "retry: 3 of 3 jobs"
    for old in failed:
        now = await get_json(client, f"/api/jobs/{old['id']}")
        retry = await get_json(client, f"/api/jobs/{now['retried_by']}")
        assert (retry["retry_of"], retry["kind"], retry["params"]) == (old["id"], "demo", old["params"])
    assert (await get_json(client, f"/api/jobs/{succeeded['id']}"))["retried_by"] is None

    # Done again, it finds each job retried already: nothing is submitted twice.
    again, _ = await run_bulk(client, {"action": "retry", "ids": [job["id"] for job in failed]})
    assert again["result"] == {"action": "retry", "matched": 3, "done": 0, "skipped": 3}
    listed = await get_json(client, "/api/jobs?kind=demo&limit=200")
    assert len(listed["jobs"]) == 4 + 3


async def test_a_bulk_action_by_filter_keeps_to_its_time_range(client, worker) -> None:
    later = {**demo(1, 1), "delay_s": 600}
    early = [await submit(client, body=later) for _ in range(2)]
    made = datetime.fromisoformat(early[-1]["created_at"])
    # The range is on the indexes' scores (the script calls' clocks, a few ms after a job's
    # `created_at`): the cut leaves room for that, and the late jobs come well after it.
    cut_at = made + timedelta(milliseconds=50)
    cut = cut_at.isoformat()
    await clock_passes(cut_at + timedelta(milliseconds=20))
    late = [await submit(client, body=later) for _ in range(2)]
    bulk, _ = await run_bulk(client, {"action": "cancel", "filter": {"state": "queued", "since": cut}})
    assert bulk["result"] == {"action": "cancel", "matched": 2, "done": 2, "skipped": 0}
    states = {j["id"]: (await get_json(client, f"/api/jobs/{j['id']}"))["state"] for j in early + late}
    assert states == {**{j["id"]: "queued" for j in early}, **{j["id"]: "cancelled" for j in late}}


async def test_cancel_and_delete_chosen_jobs_skip_the_ones_they_do_not_apply_to(
    client, worker, settings
) -> None:
    waiting = [await submit(client, body=demo(2, 1) | {"delay_s": 600}) for _ in range(2)]
    report = await finished(client, {"kind": "report", "params": {"user_id": "ada", "days": 1}})
    files = FileStore(settings.files_dir)
    assert report["result"]["file"] and files.job(report["id"]).root.exists()

    ids = [job["id"] for job in waiting] + [report["id"]]
    cancel, _ = await run_bulk(client, {"action": "cancel", "ids": ids})
    assert cancel["result"] == {"action": "cancel", "matched": 3, "done": 2, "skipped": 1}
    for job in waiting:
        assert (await get_json(client, f"/api/jobs/{job['id']}"))["state"] == "cancelled"

    delete, _ = await run_bulk(client, {"action": "delete", "ids": [report["id"], waiting[0]["id"]]})
    assert delete["result"] == {"action": "delete", "matched": 2, "done": 2, "skipped": 0}
    for gone in (report, waiting[0]):
        await get_json(client, f"/api/jobs/{gone['id']}", status=404)
    assert not files.job(report["id"]).root.exists()
    await get_json(client, f"/api/jobs/{waiting[1]['id']}")  # not chosen: kept


async def test_a_cancel_of_every_running_job_leaves_the_bulk_job_itself_running(client, worker) -> None:
    running = await submit(client, body=demo(600, 50))
    await wait_for(lambda: has_state(client, running["id"], "running"), what="the demo job to start")
    bulk, _ = await run_bulk(client, {"action": "cancel", "filter": {"state": "running"}})
    assert bulk["state"] == "succeeded" and bulk["result"]["done"] == 1, bulk
    assert (await watch_to_end(client, running["id"]))[-1]["type"] == "cancelled"


async def has_state(client: Any, job_id: str, state: str) -> bool:
    return (await get_json(client, f"/api/jobs/{job_id}"))["state"] == state


async def test_bad_bulk_requests_get_a_problem_and_start_nothing(aiohttp_client, settings) -> None:
    client = await aiohttp_client(create_app(settings.model_copy(update={"max_bulk_jobs": 2})))
    one = "a" * 32
    for body, status, field in [
        ({"action": "retry"}, 422, ""),
        ({"action": "retry", "ids": [one], "filter": {}}, 422, ""),
        ({"action": "retry", "ids": ["../etc"]}, 422, "ids.0"),
        ({"action": "purge", "ids": [one]}, 422, "action"),
        ({"action": "retry", "filter": {"state": "running"}}, 422, "filter.state"),
        ({"action": "cancel", "filter": {"colour": "red"}}, 422, "filter.colour"),
        ({"action": "delete", "ids": [one, "b" * 32, "c" * 32]}, 413, None),
    ]:
        for path in ("/api/bulk", "/api/bulk/count"):
            async with client.post(path, json=body) as response:
                problem = await response.json()
                assert response.status == status, (path, body, problem)
                assert response.content_type == "application/problem+json"
                if field is not None:
                    assert field in {e["field"] for e in problem.get("errors", [])}, problem
    assert (await get_json(client, "/api/jobs"))["jobs"] == []


async def test_only_admins_start_bulk_actions(owner_mode) -> None:  # noqa: F811
    body = {"action": "delete", "filter": {"state": "succeeded"}}
    async with aiohttp.ClientSession(owner_mode.url) as session:
        assert await status_of(session, "POST", "/api/bulk", json=body) == 403
        assert await status_of(session, "POST", "/api/bulk/count", json=body) == 403
        assert await status_of(session, "POST", "/api/bulk", json=body, headers=bearer(SERVICE_KEY)) == 403
        job = await post_json(session, "/api/bulk", body, status=202, headers=bearer(ADMIN_KEY))
        assert job["kind"] == "bulk"
