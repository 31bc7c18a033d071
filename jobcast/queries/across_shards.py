"""The read side of a sharded deployment: the listings, counts and searches of every shard read
side by side and merged into the one answer a deployment with one shard gives
(jobcast/store/shards.py has the layout). With one shard, each is the shard's own query."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jobcast.queries.finished import finished
from jobcast.queries.listing import decode_cursor, encode_cursor, ids_starting_with, list_jobs
from jobcast.queries.scheduled import scheduled
from jobcast.queries.stats import stats
from jobcast.snapshot import JobSnapshot
from jobcast.store.jobs import JobStore, Page
from jobcast.store.pausing import paused_kinds
from jobcast.store.shards import on_each


async def list_across(stores: Sequence[JobStore], *, limit: int, cursor: str | None, **filters: Any) -> Page:
    """`list_jobs` over every shard, newest first as one index would give them. The cursor is the
    same (score, id) on every shard: each shard continues after it. A shard whose page stopped
    short (its scan bound) stops the merged page there too, so no job is skipped."""
    if len(stores) == 1:
        return await list_jobs(stores[0], limit=limit, cursor=cursor, **filters)
    pages = await on_each(stores, lambda store: list_jobs(store, limit=limit, cursor=cursor, **filters))
    # The highest position where a shard with more to read stopped: nothing below it is known yet.
    frontier = max((decode_cursor(page.next_cursor) for page in pages if page.next_cursor), default=None)
    merged = sorted(
        ((position, job) for page in pages for position, job in zip(page.positions, page.jobs, strict=True)),
        key=lambda item: item[0],
        reverse=True,
    )
    if frontier is not None:
        merged = [item for item in merged if item[0] >= frontier]
    taken = merged[:limit]
    if len(taken) == limit:
        next_cursor: str | None = encode_cursor(*taken[-1][0])
    else:
        next_cursor = encode_cursor(*frontier) if frontier is not None else None
    return Page([job for _, job in taken], next_cursor, [position for position, _ in taken])


def summed(values: Sequence[Any]) -> Any:
    """Counts added up key by key (nested dicts of numbers); anything else is the first's."""
    if all(isinstance(v, dict) for v in values):
        keys = list(dict.fromkeys(k for v in values for k in v))
        return {k: summed([v[k] for v in values if k in v]) for k in keys}
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return sum(values)
    return values[0]


async def stats_across(stores: Sequence[JobStore], worker_ttl_s: float) -> dict[str, Any]:
    """`GET /api/stats` for the deployment: each shard's counts added up. Workers register on shard
    0 (every worker claims from every shard), so the workers are shard 0's."""
    each = await on_each(stores, lambda store: stats(store, worker_ttl_s))
    total = summed(each)
    oldest = [s["oldest_waiting_s"] for s in each if s["oldest_waiting_s"] is not None]
    total["oldest_waiting_s"] = max(oldest) if oldest else None
    total["workers"], total["serving"] = each[0]["workers"], each[0]["serving"]
    total["waiting_by_kind"] = dict(sorted(total["waiting_by_kind"].items()))
    return total


async def finished_across(stores: Sequence[JobStore], span: str) -> dict[str, Any]:
    """The finished-jobs graph's buckets, every shard's counts added up per bucket."""
    each = await on_each(stores, lambda store: finished(store, span))
    # Read side by side, the shards' reads may straddle a bucket's start: match buckets by start.
    by_start: dict[str, list[dict[str, Any]]] = {}
    for history in each:
        for bucket in history["buckets"]:
            by_start.setdefault(bucket["start"], []).append(bucket["counts"])
    newest = each[-1]["buckets"]
    return {
        **each[0],
        "buckets": [{"start": b["start"], "counts": summed(by_start[b["start"]])} for b in newest],
    }


def _waits_until(job: JobSnapshot) -> str:
    return (job.get("next_attempt_at") if job["state"] == "retrying" else job.get("run_at")) or ""


async def scheduled_across(
    stores: Sequence[JobStore], limit: int, kind: str | None = None
) -> list[JobSnapshot]:
    """The jobs whose time is still ahead, soonest first, from every shard."""
    each = await on_each(stores, lambda store: scheduled(store, limit, kind))
    if len(each) == 1:
        return each[0]
    return sorted((job for jobs in each for job in jobs), key=_waits_until)[:limit]


async def ids_across(stores: Sequence[JobStore], prefix: str, limit: int = 10) -> list[str]:
    """Retained ids starting with `prefix`, from every shard (a version-4 id on shard 0 may start
    with any byte, so a prefix alone does not name the shard)."""
    each = await on_each(stores, lambda store: ids_starting_with(store, prefix, limit))
    return sorted(job_id for ids in each for job_id in ids)[:limit]


async def paused_across(stores: Sequence[JobStore]) -> dict[str, dict[str, Any]]:
    """Each paused kind (paused on every shard at once), with its parked jobs of every shard."""
    each = await on_each(stores, paused_kinds)
    total: dict[str, dict[str, Any]] = summed(each)
    for kind, state in total.items():
        # When a pause reached the shards one after another, it began at the first.
        state["since"] = min(s[kind]["since"] for s in each if kind in s)
    return total
