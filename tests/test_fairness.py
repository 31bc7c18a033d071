"""Fair dispatch between owners: one owner's backlog of 5,000 jobs does not make another owner's
ten wait for it, against real `jobcast web` and `jobcast worker` processes."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import aiohttp
import pytest

from jobcast.protocol import Keys
from tests.helpers import post_json, wait_for
from tests.test_security import SECRET, SERVICE_KEY, bearer, key_entry

OTHER_KEY = "jc_fairness-second-service-key-012345"
BACKLOG, FEW = 5000, 10
# The jobs of the backlog's owner that may start between the other owner's submission and its
# last job's start: the turns alternate, so about one for each of the ten, plus what the worker's
# ten slots had already claimed.
BOUND = 2 * FEW + 10


async def submit(session: aiohttp.ClientSession, url: str, n: int) -> list[str]:
    ids = []
    body = {"kind": "demo", "params": {"steps": 1, "step_ms": 0}}
    for start in range(0, n, 1000):
        answer = await post_json(session, f"{url}/api/jobs/batch", {"jobs": [body] * min(1000, n - start)})
        assert {item["status"] for item in answer["results"]} == {202}
        ids += [item["job"]["id"] for item in answer["results"]]
    return ids


def at(ts: bytes) -> float:
    return datetime.fromisoformat(ts.decode()).timestamp()


# Two owners: services a and b.
OWNERS = {
    "JOBCAST_SECRET": SECRET,
    "JOBCAST_API_KEYS": ",".join(
        [key_entry("a", "service", SERVICE_KEY), key_entry("b", "service", OTHER_KEY)]
    ),
}


async def start_times(redis: Any, keys: Keys, ids: list[str]) -> list[float]:
    """When each of the jobs that started did (the record's `started_at`)."""
    async with redis.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hget(keys.job(job_id), "started_at")
        return [at(ts) for ts in await pipe.execute() if ts]


@pytest.mark.parametrize("fair", [True, False], ids=["fair", "oldest-first"])
async def test_another_owners_few_jobs_start_within_a_few_of_a_backlogs(spawn, redis, settings, fair) -> None:
    env = {
        **OWNERS,
        "JOBCAST_MAX_WAITING_PER_OWNER": "0",
        "JOBCAST_MAX_SUBMISSIONS_PER_MINUTE": "0",
        "JOBCAST_FAIR_OWNERS": str(fair).lower(),
    }
    web = spawn("web", **env)
    await web.wait_http()
    keys = Keys(settings.key_prefix)

    def started(ids: list[str]) -> Any:
        return start_times(redis, keys, ids)

    async with (
        aiohttp.ClientSession(headers=bearer(SERVICE_KEY)) as a,
        aiohttp.ClientSession(headers=bearer(OTHER_KEY)) as b,
    ):
        backlog = await submit(a, web.url, BACKLOG)
        spawn("worker", **env)
        # The backlog is being worked off when the other owner comes.
        await wait_for(lambda: started(backlog[:100]), what="the backlog to start")
        submitted = time.time()
        few = await submit(b, web.url, FEW)

        async def all_started() -> list[float] | None:
            times = await started(few)
            return times if len(times) == FEW else None

        last = max(await wait_for(all_started, timeout=120, what="the other owner's jobs to start"))
    backlog_started = await started(backlog)
    meanwhile = sum(1 for t in backlog_started if submitted <= t <= last)
    print(f"fair={fair}: {meanwhile} of the backlog's jobs started before the other owner's {FEW}")
    if fair:
        assert meanwhile <= BOUND
    else:
        # Oldest first: the other owner waits for (nearly) the whole backlog.
        assert meanwhile > BACKLOG / 2


async def test_held_jobs_come_back_in_the_owners_turns(spawn, redis, settings) -> None:
    # A kind limited to two at once: a backlog of one owner's jobs waits held, and the other
    # owner's two, held after them, still start within a few of the backlog's.
    env = {
        **OWNERS,
        "JOBCAST_KINDS": "tests.kinds_limits",
    }
    web = spawn("web", **env)
    spawn("worker", **env)
    await web.wait_http()
    keys = Keys(settings.key_prefix)
    body = {"kind": "limited", "params": {"hold_ms": 50}}

    def started(ids: list[str]) -> Any:
        return start_times(redis, keys, ids)

    async with (
        aiohttp.ClientSession(headers=bearer(SERVICE_KEY)) as a,
        aiohttp.ClientSession(headers=bearer(OTHER_KEY)) as b,
    ):
        backlog = (await post_json(a, f"{web.url}/api/jobs/batch", {"jobs": [body] * 60}))["results"]
        backlog_ids = [item["job"]["id"] for item in backlog]
        await wait_for(lambda: started(backlog_ids[:4]), what="the backlog to start")
        submitted = time.time()
        few = [
            item["job"]["id"]
            for item in (await post_json(b, f"{web.url}/api/jobs/batch", {"jobs": [body] * 2}))["results"]
        ]

        async def all_started() -> list[float] | None:
            times = await started(few)
            return times if len(times) == 2 else None

        last = max(await wait_for(all_started, timeout=60, what="the other owner's jobs to start"))
    meanwhile = sum(1 for t in await started(backlog_ids) if submitted <= t <= last)
    # Two slots, turns that alternate: about one of the backlog's for each of the other's, and the
    # two running when they came.
    assert meanwhile <= 6, meanwhile
