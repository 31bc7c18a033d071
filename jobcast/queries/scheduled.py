"""Work that waits for its time: jobs delayed by `delay_s` and jobs backing off between attempts,
soonest first (`GET /api/scheduled`, the `/scheduled` page), and running one of them now."""

from __future__ import annotations

import heapq

from jobcast.protocol import Priority, epoch_ms, now_iso, utcnow
from jobcast.snapshot import JobSnapshot
from jobcast.store.jobs import JobStore
from jobcast.store.scripts import Status


async def scheduled(store: JobStore, limit: int) -> list[JobSnapshot]:
    """Up to `limit` snapshots of the jobs whose time is still ahead, soonest first, all
    priorities merged."""
    now = epoch_ms(utcnow())
    async with store.redis.pipeline(transaction=False) as pipe:
        for p in Priority:
            pipe.zrangebyscore(
                store.keys.queue(p), f"({now + 1}", "+inf", start=0, num=limit, withscores=True
            )
        per_priority = await pipe.execute()
    soonest = heapq.nsmallest(limit, (item for rows in per_priority for item in rows), key=lambda row: row[1])
    return await store.snapshots([job_id.decode() for job_id, _ in soonest])


async def run_now(store: JobStore, job_id: str) -> Status:
    """Run a waiting job now: ok, not_found, or refused (it is not waiting for a time ahead)."""
    answer = await store.scripts.call(
        "run_now", {"job": store.keys.job(job_id)}, id=job_id, now_iso=now_iso()
    )
    return answer.status
