"""What a text search of the jobs table costs as retained jobs grow: `GET /api/jobs?text=` on one
`jobcast web`, with 2,000 and with 100,000 jobs retained (written straight through
`JobStore.create_many`, delayed an hour so that they stay as written).

A search reads at most `JOBCAST_SEARCH_SCANNED` (2,000) records a page, whatever is retained: the
claim docs/api.md makes, and what this measures. Two needles: one that matches no job, so every
page reads its whole bound (the worst case, timed per page), and one that matches the oldest job
alone, so finding it walks the whole index a page at a time (pages and total time).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import aiohttp

from bench import processes
from jobcast.protocol import new_job_ids, utcnow
from jobcast.redis.client import create_redis
from jobcast.redis.embedded import RedisProcess
from jobcast.settings import Settings
from jobcast.store.jobs import JobStore, Submission

PREFIX = "bench-search"
# Pages timed for the worst case (a needle nothing matches).
PAGES = 20


def tag(n: int) -> str:
    return "needle-oldest" if n == 0 else f"row-{n}"


async def _retain(url: str, jobs: int) -> None:
    """`jobs` delayed demo jobs, the first of them with the needle in its params."""
    client = create_redis(url, retries=0)
    settings = Settings(redis_url=url, key_prefix=PREFIX, max_waiting_jobs=0, max_delayed_jobs=0)
    store = JobStore(client, settings)
    try:
        await client.flushdb()
        made = 0
        while made < jobs:
            n = min(1000, jobs - made)
            calls = [
                store.create_call(
                    job_id, Submission("demo", {"tag": tag(made + i)}, delay_s=3600), created=utcnow()
                )
                for i, job_id in enumerate(new_job_ids(n))
            ]
            await store.create_many(calls)
            made += n
    finally:
        await client.aclose()


async def _search(base: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        # The first page, asked again and again: it reads the newest 2,000 records (or all there
        # are, with fewer retained) however many are retained.
        times = []
        first = f"{base}/api/jobs?text=nothing-matches-this&limit=50"
        for _ in range(PAGES):
            started = time.perf_counter()
            async with session.get(first) as answer:
                page = await answer.json()
            times.append((time.perf_counter() - started) * 1000)
            assert page["jobs"] == [], page
        # The oldest job, found by walking every page back to it.
        pages, found, started = 0, [], time.perf_counter()
        url: str | None = f"{base}/api/jobs?text=needle-oldest&limit=50"
        while url:
            async with session.get(url) as answer:
                page = await answer.json()
            pages += 1
            found += page["jobs"]
            following = page.get("links", {}).get("next")
            url = base + following if following else None
        walked_ms = (time.perf_counter() - started) * 1000
    assert len(found) == 1, found
    return {
        "page_ms_median": round(statistics.median(times), 1),
        "page_ms_max": round(max(times), 1),
        "pages_to_the_oldest": pages,
        "walk_to_the_oldest_ms": round(walked_ms),
    }


def text_search(redis: RedisProcess, retained: tuple[int, ...]) -> list[dict[str, Any]]:
    out = []
    env = {"JOBCAST_KEY_PREFIX": PREFIX}
    with processes.server("jobcast", redis, **env) as (_, port):
        for jobs in retained:
            asyncio.run(_retain(redis.url, jobs))
            found = asyncio.run(_search(f"http://127.0.0.1:{port}"))
            out.append({"retained": jobs, "scanned_per_page": Settings().search_scanned, **found})
    asyncio.run(_flush(redis.url))
    return out


async def _flush(url: str) -> None:
    client = create_redis(url, retries=0)
    try:
        await client.flushdb()
    finally:
        await client.aclose()
