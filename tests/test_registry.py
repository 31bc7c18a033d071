"""Job kinds are discovered (entry points and JOBCAST_KINDS), and a web server refuses a kind
that no running worker serves."""

from __future__ import annotations

import re

import aiohttp
import pytest

from jobcast.registry import KindsError, discover_kinds
from tests.helpers import demo, get_json, post_json, submit, wait_for, watch_to_end

BUILTIN = {"demo", "report", "convert", "aggregate", "summarize"}


def test_the_builtin_kinds_come_from_their_entry_point() -> None:
    assert set(discover_kinds()) == BUILTIN


def test_jobcast_kinds_adds_modules_and_leaves_kinds_out() -> None:
    assert set(discover_kinds("tests.kinds_extra")) == BUILTIN | {"echo"}
    assert set(discover_kinds("tests.kinds_extra,-builtin")) == {"echo"}
    assert set(discover_kinds("-aggregate, -convert")) == {"demo", "report", "summarize"}


def test_bad_kind_configuration_is_a_clear_error() -> None:
    with pytest.raises(KindsError, match=re.escape("'no.such.module', which does not import")):
        discover_kinds("no.such.module")
    with pytest.raises(KindsError, match="no job kinds"):
        discover_kinds("-builtin")
    with pytest.raises(KindsError, match="two kinds are named 'demo'"):
        discover_kinds("tests.kinds_clash")


async def test_a_kind_from_jobcast_kinds_runs_end_to_end(spawn) -> None:
    web = spawn("web", JOBCAST_KINDS="tests.kinds_extra")
    spawn("worker", JOBCAST_KINDS="tests.kinds_extra,-builtin")
    await web.wait_http()
    async with aiohttp.ClientSession() as session:
        job = await submit(session, web.url + "/api/jobs", {"kind": "echo", "params": {"text": "hi"}})
        events = await watch_to_end(session, job["id"], base=web.url)
    assert events[-1]["type"] == "succeeded" and events[-1]["result"] == {"echo": "hi"}


async def test_a_kind_no_running_worker_serves_is_refused(spawn) -> None:
    web = spawn("web")
    await web.wait_http()
    async with aiohttp.ClientSession() as session:
        # No worker at all: the job is accepted and waits for one (the dashboard says so).
        waiting = await submit(session, web.url + "/api/jobs", {"kind": "aggregate", "params": {}})
        assert waiting["state"] == "queued"
        spawn("worker", JOBCAST_KINDS="-aggregate")

        async def serving() -> list:
            return (await get_json(session, web.url + "/api/stats"))["serving"]

        (worker,) = await wait_for(serving, what="the worker to say what it serves")
        assert worker["kinds"] == ["convert", "demo", "report", "summarize"]
        problem = await post_json(
            session, web.url + "/api/jobs", {"kind": "aggregate", "params": {}}, status=422
        )
        assert problem["detail"] == (
            "no running worker serves kind 'aggregate'; the 1 running serve: convert, demo, report, summarize"
        )
        assert problem["errors"][0]["field"] == "kind"
        # In a batch, each item of that kind is refused alone (the check is made once per kind).
        agg = {"kind": "aggregate", "params": {}}
        answer = await post_json(session, web.url + "/api/jobs/batch", {"jobs": [agg, demo(1, 1), agg]})
        assert [r["status"] for r in answer["results"]] == [422, 202, 422]
        assert answer["results"][2]["problem"]["type"].endswith("/kind-not-served")
        served = await submit(session, web.url + "/api/jobs", demo(1, 1))
        assert (await watch_to_end(session, served["id"], base=web.url))[-1]["type"] == "succeeded"
        page = await (await session.get(web.url + "/")).text()
    assert "serves convert, demo, report, summarize" in page
