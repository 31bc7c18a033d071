"""Trees of jobs against real `jobcast web` and `jobcast worker` processes: a parent's children,
its continuation once they have ended (exactly once, without a worker slot while it waits), the
failure policies, cancel through the tree, and the rolled-up bar."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from jobcast.client import ApiError, Client
from tests.helpers import get_json, post_json, wait_for
from tests.test_security import OTHER_SERVICE_KEY, SERVICE_KEY, bearer, two_services

KINDS = {"JOBCAST_KINDS": "tests.kinds_tree", "JOBCAST_LEASE_S": "2"}


async def ended(session: aiohttp.ClientSession, url: str, job_id: str, timeout: float = 60) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        job = await get_json(session, f"{url}/api/jobs/{job_id}")
        return job if job["state"] in ("succeeded", "failed", "cancelled") else None

    return await wait_for(done, timeout=timeout, what=f"job {job_id} to end")


async def test_a_parents_continuation_gets_every_childs_outcome(spawn) -> None:
    web = spawn("web", **KINDS)
    spawn("worker", **KINDS)
    await web.wait_http()
    async with aiohttp.ClientSession() as session:
        parent = await post_json(
            session, f"{web.url}/api/jobs", {"kind": "fanout", "params": {"children": 5, "failing": [3]}}, 202
        )
        job = await ended(session, web.url, parent["id"])
        assert job["state"] == "succeeded", job
        assert job["result"] == {
            "states": ["succeeded", "succeeded", "succeeded", "failed", "succeeded"],
            "values": [0, 1, 2, None, 4],
            "errors": [None, None, None, "leaf 3 fails", None],
        }
        assert job["children"] == {
            "total": 5, "waiting": 0, "running": 0, "succeeded": 4, "failed": 1, "cancelled": 0,
        }  # fmt: skip
        assert job["progress"]["percent"] == 100


async def children_of(session: aiohttp.ClientSession, url: str, job_id: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    page: str | None = f"/api/jobs/{job_id}/children?limit=500"
    while page is not None:
        answer = await get_json(session, url + page)
        out.extend(answer["children"])
        page = answer.get("next")
    return out


async def test_a_fail_fast_child_fails_its_parent_and_cancels_the_rest(spawn) -> None:
    web = spawn("web", **KINDS)
    spawn("worker", **KINDS)
    await web.wait_http()
    async with aiohttp.ClientSession() as session:
        # Child 0 fails at once; the others run thirty seconds each.
        params = {"children": 30, "steps": 600, "step_ms": 50, "failing": [0], "fail_fast": True}
        body = {"kind": "fanout", "params": params}
        parent = await post_json(session, f"{web.url}/api/jobs", body, 202)
        job = await ended(session, web.url, parent["id"])
        assert job["state"] == "failed", job
        assert job["error"]["type"] == "ChildFailed" and "(leaf) failed" in job["error"]["message"]

        async def all_children_ended() -> list[dict[str, Any]] | None:
            kids = await children_of(session, web.url, parent["id"])
            return kids if all(k["state"] in ("failed", "cancelled") for k in kids) else None

        kids = await wait_for(all_children_ended, timeout=30, what="every child to end")
    states = [k["state"] for k in kids]
    assert states[0] == "failed" and states[1:] == ["cancelled"] * 29, states
    # Some were running when the parent failed: their workers stopped them.
    assert any(k["started_at"] for k in kids[1:]), kids
    assert all(k["parent"] == parent["id"] for k in kids)


async def test_cancelling_a_parent_cancels_its_running_and_waiting_children(spawn) -> None:
    web = spawn("web", **KINDS)
    spawn("worker", **KINDS)
    await web.wait_http()
    async with aiohttp.ClientSession() as session:
        body = {"kind": "fanout", "params": {"children": 50, "steps": 600, "step_ms": 50}}
        parent = await post_json(session, f"{web.url}/api/jobs", body, 202)

        async def some_running() -> dict[str, Any] | None:
            job = await get_json(session, f"{web.url}/api/jobs/{parent['id']}")
            counts = job["children"]
            return job if job["state"] == "waiting_children" and counts and counts["running"] >= 5 else None

        waiting = await wait_for(some_running, timeout=30, what="the parent to wait with children running")
        assert waiting["children"]["total"] == 50 and waiting["children"]["waiting"] > 0, waiting
        await post_json(session, f"{web.url}/api/jobs/{parent['id']}/cancel", None, 200)
        job = await ended(session, web.url, parent["id"])
        assert job["state"] == "cancelled"

        async def all_cancelled() -> list[dict[str, Any]] | None:
            kids = await children_of(session, web.url, parent["id"])
            return kids if all(k["state"] == "cancelled" for k in kids) else None

        kids = await wait_for(all_cancelled, timeout=30, what="all 50 children to be cancelled")
    assert len(kids) == 50
    assert sum(1 for k in kids if k["started_at"]) >= 5  # running ones were stopped by their worker
    assert any(k["started_at"] is None for k in kids)  # waiting ones left their queue


async def submit_parents(
    session: aiohttp.ClientSession, url: str, n: int, params: dict[str, Any]
) -> list[str]:
    body = {"jobs": [{"kind": "fanout", "params": params}] * n}
    answer = await post_json(session, f"{url}/api/jobs/batch", body)
    assert answer["created"] == n, answer
    return [item["job"]["id"] for item in answer["results"]]


async def all_succeeded(session: aiohttp.ClientSession, url: str, ids: list[str], timeout: float) -> None:
    async def done() -> bool:
        stats = await get_json(session, f"{url}/api/stats")
        return bool(stats["finished_last_hour"]["succeeded"] >= len(ids) * 6)

    await wait_for(done, timeout=timeout, what=f"{len(ids)} trees to end")


def continuations(runs: Path, ids: list[str]) -> dict[str, int]:
    return {
        job_id: len((runs / job_id).read_text().split()) if (runs / job_id).exists() else 0 for job_id in ids
    }


async def counted(spawn, tmp_path: Path) -> tuple[Any, Path, dict[str, str], list[Any]]:
    """A web and two workers whose continuations each leave a line in a file of the job's name
    (the tree kinds' TREE_RUNS_DIR): the web, that folder, the environment, the workers."""
    runs = tmp_path / "runs"
    runs.mkdir()
    env = {**KINDS, "TREE_RUNS_DIR": str(runs)}
    web = spawn("web", **env)
    workers = [spawn("worker", **env), spawn("worker", **env)]
    await web.wait_http()
    return web, runs, env, workers


async def test_a_thousand_parents_of_five_never_deadlock_two_workers(spawn, tmp_path: Path) -> None:
    web, runs, _, _ = await counted(spawn, tmp_path)
    async with aiohttp.ClientSession() as session:
        ids = await submit_parents(session, web.url, 1000, {"children": 5})
        # Twenty slots, a thousand parents: a parent that held its slot while it waited would
        # leave none for the children it waits for.
        await all_succeeded(session, web.url, ids, timeout=240)
        jobs = [await get_json(session, f"{web.url}/api/jobs/{job_id}") for job_id in ids]
    assert all(j["state"] == "succeeded" and j["result"]["values"] == [0, 1, 2, 3, 4] for j in jobs)
    # Each ran its first part once and its continuation once.
    assert {j["attempt"] for j in jobs} == {2}
    assert set(continuations(runs, ids).values()) == {1}


async def test_trees_survive_a_killed_worker_and_a_redis_restart(spawn, tmp_path: Path, redis_server) -> None:
    web, runs, env, (doomed, _) = await counted(spawn, tmp_path)
    async with aiohttp.ClientSession() as session:
        # A fifth of a second a child: the whole lot takes some ten seconds on twenty slots.
        ids = await submit_parents(session, web.url, 200, {"children": 5, "steps": 4, "step_ms": 50})

        async def finished(n: int) -> bool:
            stats = await get_json(session, f"{web.url}/api/stats")
            return bool(stats["finished_last_hour"]["succeeded"] >= n)

        await wait_for(lambda: finished(200), timeout=60, what="a sixth of the jobs to end")
        doomed.signal(signal.SIGKILL)
        await doomed.wait_exit()
        spawn("worker", **env)
        await wait_for(lambda: finished(500), timeout=60, what="half of the jobs to end")
        redis_server.stop()
        redis_server.start()
        await all_succeeded(session, web.url, ids, timeout=180)
        jobs = [await get_json(session, f"{web.url}/api/jobs/{job_id}") for job_id in ids]
    assert all(j["state"] == "succeeded" and j["result"]["values"] == [0, 1, 2, 3, 4] for j in jobs)
    assert all(j["children"]["succeeded"] == 5 for j in jobs)
    # Every parent's continuation ran to its end; a second run only where a kill cut one short.
    ran = continuations(runs, ids)
    assert all(n >= 1 for n in ran.values())
    assert sum(ran.values()) <= len(ids) + 10


async def test_a_batch_of_500_runs_its_completion_once_with_the_counts(spawn, tmp_path: Path) -> None:
    web, runs, _, _ = await counted(spawn, tmp_path)
    items = [{"kind": "leaf", "params": {"value": i, "fail": i % 50 == 7}} for i in range(500)]
    body = {"items": items, "completion": {"kind": "gather"}}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{web.url}/api/batches", json=body) as response:
            assert response.status == 202, await response.text()
            made = await response.json()
            assert response.headers["Location"] == f"/api/batches/{made['id']}"
        assert made["state"] == "waiting_children"
        batch = await get_json(session, f"{web.url}/api/batches/{made['id']}")
        assert batch["counts"]["total"] == 500 and batch["links"]["events"] == made["links"]["events"]
        job = await ended(session, web.url, made["id"])
        batch = await get_json(session, f"{web.url}/api/batches/{made['id']}")
    assert job["state"] == "succeeded", job
    assert job["result"]["counts"] == {"succeeded": 490, "failed": 10}
    assert job["result"]["values"][:3] == [0, 1, 2] and job["result"]["values"][7] is None
    assert batch["state"] == "succeeded" and batch["completion"] == "gather"
    assert batch["counts"] == {
        "total": 500, "waiting": 0, "running": 0, "succeeded": 490, "failed": 10, "cancelled": 0,
    }  # fmt: skip
    assert batch["progress"]["percent"] == 100
    assert (runs / made["id"]).read_text().split() == ["1"]  # the completion ran once


async def test_a_batch_without_a_completion_ends_with_its_counts(spawn) -> None:
    web = spawn("web", **KINDS)
    spawn("worker", **KINDS)
    await web.wait_http()
    items = [{"kind": "leaf", "params": {"value": i, "fail": i == 3}} for i in range(20)]
    async with aiohttp.ClientSession() as session:
        made = await post_json(session, f"{web.url}/api/batches", {"items": items}, 202)
        job = await ended(session, web.url, made["id"])
        batch = await get_json(session, f"{web.url}/api/batches/{made['id']}")
    assert job["kind"] == "batch" and job["state"] == "succeeded"
    assert batch["completion"] is None
    assert batch["result"] == {"items": 20, "succeeded": 19, "failed": 1, "cancelled": 0}


async def test_a_submitted_tree_runs_its_parent_after_its_children_and_a_chain_in_order(spawn) -> None:
    web = spawn("web", **KINDS)
    spawn("worker", **KINDS)
    await web.wait_http()
    async with aiohttp.ClientSession() as session:
        tree = {
            "kind": "gather",
            "children": [
                {"kind": "leaf", "params": {"value": 1}},
                {"kind": "gather", "children": [{"kind": "leaf", "params": {"value": 2}}]},
            ],
        }
        root = await post_json(session, f"{web.url}/api/jobs", tree, 202)
        assert root["state"] == "waiting_children"
        done = await ended(session, web.url, root["id"])
        assert done["state"] == "succeeded" and done["result"]["counts"] == {"succeeded": 2}
        inner = (await children_of(session, web.url, root["id"]))[1]
        assert inner["kind"] == "gather" and inner["result"]["values"] == [2]

        # leaf 10, then leaf 11, then gather: the answer is the chain's last job.
        chain = {
            "kind": "leaf",
            "params": {"value": 10},
            "then": {"kind": "leaf", "params": {"value": 11}, "then": {"kind": "gather"}},
        }
        last = await post_json(session, f"{web.url}/api/jobs", chain, 202)
        assert last["kind"] == "gather"
        done = await ended(session, web.url, last["id"])
        (middle,) = await children_of(session, web.url, last["id"])
        (first,) = await children_of(session, web.url, middle["id"])
        assert (first["params"]["value"], middle["params"]["value"]) == (10, 11)
        # Each link started after the one before it ended.
        assert first["finished_at"] <= middle["started_at"] and middle["finished_at"] <= done["started_at"]

        # A chain stops at a failed link: what comes after it never runs.
        broken = {"kind": "leaf", "params": {"fail": True}, "then": {"kind": "leaf", "params": {"value": 5}}}
        last = await post_json(session, f"{web.url}/api/jobs", broken, 202)
        done = await ended(session, web.url, last["id"])
        assert done["state"] == "failed" and done["error"]["type"] == "ChildFailed"
        assert done["started_at"] is None
        # Retried alone it would run without its links: its failed parts are what to retry.
        async with session.post(f"{web.url}/api/jobs/{done['id']}/retry") as response:
            problem = await response.json()
            assert response.status == 409 and "children/retry" in problem["detail"], problem


async def test_trees_past_their_limits_are_refused_whole(spawn) -> None:
    limits = {"JOBCAST_TREE_MAX_JOBS": "20", "JOBCAST_TREE_MAX_DEPTH": "2", "JOBCAST_TREE_MAX_CHILDREN": "8"}
    web = spawn("web", **KINDS, **limits)
    spawn("worker", **KINDS, **limits)
    await web.wait_http()
    leaf = {"kind": "leaf"}
    too_many = {"kind": "gather", "children": [{"kind": "gather", "children": [leaf] * 8}] * 3}
    too_deep = {
        "kind": "gather",
        "children": [{"kind": "gather", "children": [{"kind": "gather", "children": [leaf]}]}],
    }
    too_wide = {"kind": "gather", "children": [leaf] * 9}
    bad_child = {"kind": "gather", "children": [leaf, {"kind": "leaf", "params": {"value": "x"}}]}
    async with aiohttp.ClientSession() as session:
        for body, status, field in (
            (too_many, 413, None),
            (too_deep, 422, "children"),
            (too_wide, 422, "children"),
            (bad_child, 422, "params.value"),
        ):
            async with session.post(f"{web.url}/api/jobs", json=body) as response:
                problem = await response.json()
                assert response.status == status, problem
                assert response.content_type == "application/problem+json"
                if field:
                    assert problem["errors"][0]["field"] == field, problem
        async with session.post(f"{web.url}/api/batches", json={"items": [leaf] * 20}) as response:
            assert response.status == 413
        # Nothing of any refused tree was made.
        assert (await get_json(session, f"{web.url}/api/jobs"))["jobs"] == []
        # A job's code past the fan-out limit: its spawn raises, and the job fails saying why.
        parent = await post_json(
            session, f"{web.url}/api/jobs", {"kind": "fanout", "params": {"children": 9}}, 202
        )
        job = await ended(session, web.url, parent["id"])
    assert job["state"] == "failed" and "at most 8 children" in job["error"]["message"], job


async def test_a_trees_jobs_are_its_owners_and_nobody_elses(spawn) -> None:
    owners = two_services(**KINDS)
    web = spawn("web", **owners)
    spawn("worker", **owners)
    await web.wait_http()
    async with (
        aiohttp.ClientSession(headers=bearer(SERVICE_KEY)) as shop,
        aiohttp.ClientSession(headers=bearer(OTHER_SERVICE_KEY)) as billing,
    ):
        # One tree submitted, one made by a job's code.
        tree = {"kind": "gather", "owner": "user-7", "children": [{"kind": "leaf", "params": {"value": 1}}]}
        root = await post_json(shop, f"{web.url}/api/jobs", tree, 202)
        spawner = await post_json(
            shop, f"{web.url}/api/jobs", {"kind": "fanout", "params": {"children": 2}}, 202
        )
        await ended(shop, web.url, root["id"])
        await ended(shop, web.url, spawner["id"])
        kids = [
            *await children_of(shop, web.url, root["id"]),
            *await children_of(shop, web.url, spawner["id"]),
        ]
        assert [k["owner"] for k in kids] == ["shop/user-7", "shop", "shop"]
        for job_id in [root["id"], spawner["id"], *(k["id"] for k in kids)]:
            for path in (f"/api/jobs/{job_id}", f"/api/jobs/{job_id}/children", f"/api/batches/{job_id}"):
                async with billing.get(web.url + path) as response:
                    assert response.status == 404, path
        listed = await get_json(billing, f"{web.url}/api/jobs")
        assert listed["jobs"] == []


async def test_the_python_client_submits_trees_and_batches_and_watches_a_batch(spawn) -> None:
    web = spawn("web", **KINDS)
    spawn("worker", **KINDS)
    await web.wait_http()
    async with Client(web.url) as client:
        batch = await client.submit_batch(
            [{"kind": "leaf", "params": {"value": i, "steps": 3, "step_ms": 30}} for i in range(6)],
            completion={"kind": "gather"},
        )
        assert batch["counts"]["total"] == 6 and batch["links"]["self"] == f"/api/batches/{batch['id']}"
        events = [event async for event in client.watch(batch["id"])]
        counts = [e.children for e in events if e.type == "progress"]
        assert counts[-1] == {
            "total": 6,
            "waiting": 0,
            "running": 0,
            "succeeded": 6,
            "failed": 0,
            "cancelled": 0,
        }
        assert [e.percent for e in events if e.type == "progress"][-1] == 100
        assert events[-1].type == "succeeded" and events[-1].data["result"]["values"] == list(range(6))
        done = await client.batch(batch["id"])
        assert done["state"] == "succeeded" and done["result"]["counts"] == {"succeeded": 6}

        chain = await client.submit_tree("leaf", {"value": 1}, then={"kind": "gather"})
        tree = await client.submit_tree("gather", children=[{"kind": "leaf", "params": {"value": 2}}])
        for root in (chain, tree):
            async for _ in client.watch(root["id"]):
                pass
            kids = [child async for child in client.children(root["id"])]
            assert [k["state"] for k in kids] == ["succeeded"]
        with pytest.raises(ApiError) as refused:
            await client.submit_tree("gather", children=[{"kind": "nope"}])
        assert refused.value.status == 422


async def test_aggregate_in_shards_gives_what_one_job_gives(spawn) -> None:
    web = spawn("web")
    spawn("worker")
    spawn("worker")
    await web.wait_http()
    params = {"rows": 400_000, "groups": 5, "chunk_rows": 50_000, "seed": 3}
    async with aiohttp.ClientSession() as session:
        one = await post_json(session, f"{web.url}/api/jobs", {"kind": "aggregate", "params": params}, 202)
        split = {"kind": "aggregate", "params": {**params, "shards": 3}}
        sharded = await post_json(session, f"{web.url}/api/jobs", split, 202)
        one = await ended(session, web.url, one["id"])
        sharded = await ended(session, web.url, sharded["id"])
        shards = await children_of(session, web.url, sharded["id"])
    assert sharded["state"] == "succeeded", sharded
    assert sharded["result"]["groups"] == one["result"]["groups"]
    assert sharded["result"]["rows"] == 400_000 and sharded["result"]["shards"] == 3
    assert [s["params"]["rows"] for s in shards] == [150_000, 150_000, 100_000]
    assert sharded["children"]["succeeded"] == 3 and sharded["progress"]["percent"] == 100


async def test_the_dashboard_lists_parents_with_their_parts_counted_and_hides_the_parts(spawn) -> None:
    web = spawn("web", **KINDS)
    spawn("worker", **KINDS)
    await web.wait_http()
    async with aiohttp.ClientSession() as session:
        single = await post_json(session, f"{web.url}/api/jobs", {"kind": "leaf"}, 202)
        parent = await post_json(
            session, f"{web.url}/api/jobs", {"kind": "fanout", "params": {"children": 3}}, 202
        )
        await ended(session, web.url, parent["id"])
        kids = await children_of(session, web.url, parent["id"])
        every = {j["id"] for j in (await get_json(session, f"{web.url}/api/jobs"))["jobs"]}
        top = {j["id"] for j in (await get_json(session, f"{web.url}/api/jobs?top_level=true"))["jobs"]}
        found = await get_json(session, f"{web.url}/api/jobs?top_level=true&text=leaf")
        # Another index walked (a state's): each record says whether it is a child.
        ended_top = await get_json(session, f"{web.url}/api/jobs?top_level=true&state=succeeded")
        async with session.get(f"{web.url}/") as page:
            dashboard = await page.text()
        async with session.get(f"{web.url}/?parts=1") as page:
            with_parts = await page.text()
    assert every == {single["id"], parent["id"], *(k["id"] for k in kids)}
    assert top == {single["id"], parent["id"]}
    assert {j["id"] for j in found["jobs"]} == {single["id"]}
    assert {j["id"] for j in ended_top["jobs"]} == {single["id"], parent["id"]}
    assert parent["id"] in dashboard and single["id"] in dashboard
    assert not any(k["id"] in dashboard for k in kids)
    assert "3 parts" in dashboard
    assert all(k["id"] in with_parts for k in kids)


async def test_a_parents_failed_parts_are_retried_once_each(spawn) -> None:
    web = spawn("web", **KINDS)
    spawn("worker", **KINDS)
    await web.wait_http()
    items = [{"kind": "leaf", "params": {"value": i, "fail": i in (1, 3)}} for i in range(5)]
    async with aiohttp.ClientSession() as session:
        made = await post_json(session, f"{web.url}/api/batches", {"items": items}, 202)
        await ended(session, web.url, made["id"])
        async with session.get(f"{web.url}/jobs/{made['id']}") as page:
            assert "Retry the 2 failed and cancelled parts" in await page.text()
        url = f"{web.url}/api/jobs/{made['id']}/children/retry"
        first = await post_json(session, url)
        again = await post_json(session, url)
        kids = await children_of(session, web.url, made["id"])
        retries = [await get_json(session, f"{web.url}/api/jobs/{job_id}") for job_id in first["retried"]]
    assert first["count"] == 2 and again["retried"] == first["retried"]
    failed = [k["id"] for k in kids if k["state"] == "failed"]
    assert [r["retry_of"] for r in retries] == failed
    assert [r["params"]["value"] for r in retries] == [1, 3]


async def test_a_cancelled_child_reaches_the_continuation_as_its_outcome(spawn) -> None:
    web = spawn("web", **KINDS)
    spawn("worker", **KINDS)
    await web.wait_http()
    async with aiohttp.ClientSession() as session:
        # Both children run for a minute unless cancelled.
        body = {"kind": "fanout", "params": {"children": 2, "steps": 600, "step_ms": 100, "uneven": False}}
        parent = await post_json(session, f"{web.url}/api/jobs", body, 202)

        async def both_running() -> list[dict[str, Any]] | None:
            kids = await children_of(session, web.url, parent["id"])
            return kids if len(kids) == 2 and all(k["state"] == "running" for k in kids) else None

        first, second = await wait_for(both_running, timeout=30, what="both children to run")
        for child in (first, second):
            async with session.post(f"{web.url}/api/jobs/{child['id']}/cancel") as response:
                assert response.status == 202
        job = await ended(session, web.url, parent["id"])
    # The parent was not cancelled with them: its continuation ran, and read how each ended.
    assert job["state"] == "succeeded", job
    assert job["result"]["states"] == ["cancelled", "cancelled"]
    assert job["result"]["errors"] == ["cancelled on request", "cancelled on request"]


async def test_a_bulk_action_by_the_dashboards_filter_leaves_the_parts_it_hides(spawn) -> None:
    web = spawn("web", **KINDS)
    spawn("worker", **KINDS)
    await web.wait_http()
    async with aiohttp.ClientSession() as session:
        single = await post_json(
            session, f"{web.url}/api/jobs", {"kind": "leaf", "params": {"fail": True}}, 202
        )
        batch = await post_json(
            session, f"{web.url}/api/batches", {"items": [{"kind": "leaf", "params": {"fail": True}}]}, 202
        )
        await ended(session, web.url, single["id"])
        await ended(session, web.url, batch["id"])
        async with session.get(f"{web.url}/?state=failed") as page:
            assert "top_level" in await page.text()  # the bulk form's filter says so
        body = {"action": "retry", "filter": {"state": "failed", "top_level": True}}
        counted = await post_json(session, f"{web.url}/api/bulk/count", body)
        bulk = await post_json(session, f"{web.url}/api/bulk", body, 202)
        bulk = await ended(session, web.url, bulk["id"])
        (part,) = await children_of(session, web.url, batch["id"])
        single = await get_json(session, f"{web.url}/api/jobs/{single['id']}")
    assert counted["matches"] == 1 and bulk["result"]["done"] == 1, (counted, bulk)
    assert single["retried_by"] and not part["retried_by"]
