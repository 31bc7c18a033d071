"""Work that waits for its time: jobs delayed by `delay_s` and jobs backing off between attempts,
soonest first (`GET /api/scheduled`, the `/scheduled` page), and running one of them now."""

from __future__ import annotations

import heapq

from jobcast.protocol import Priority, epoch_ms, now_iso, utcnow
from jobcast.snapshot import JobSnapshot
from jobcast.store.jobs import JobStore
from jobcast.store.scripts import Status

# How many waiting entries a filtered page reads at most, as a multiple of its size: a kind with
# few delayed jobs among many others gives a short page rather than an unbounded scan.
SCAN_FACTOR = 10


async def scheduled(store: JobStore, limit: int, kind: str | None = None) -> list[JobSnapshot]:
    """Up to `limit` snapshots of the jobs whose time is still ahead, soonest first, all
    priorities merged; of one kind only with `kind` (among the soonest `SCAN_FACTOR * limit`)."""
    now = epoch_ms(utcnow())
    wanted = limit if kind is None else limit * SCAN_FACTOR
    async with store.redis.pipeline(transaction=False) as pipe:
        for p in Priority:
            pipe.zrangebyscore(
                store.keys.queue(p), f"({now + 1}", "+inf", start=0, num=wanted, withscores=True
            )
        per_priority = await pipe.execute()
    soonest = heapq.nsmallest(
        wanted, (item for rows in per_priority for item in rows), key=lambda row: row[1]
    )
    jobs = await store.snapshots([job_id.decode() for job_id, _ in soonest])
    return [job for job in jobs if kind is None or job["kind"] == kind][:limit]


async def run_now(store: JobStore, job_id: str) -> Status:
    """Run a waiting job now: ok, not_found, or refused (it is not waiting for a time ahead)."""
    answer = await store.scripts.call(
        "run_now", {"job": store.keys.job(job_id)}, id=job_id, now_iso=now_iso()
    )
    return answer.status
