"""Keeps Redis bounded once jobs end.

- A finished job's history is compacted to its state changes and its last progress once its
  grace time (`history_grace_s`) has passed: a job that ran 20 minutes at 10 Hz would otherwise
  keep 10,000 events for the whole retention. A resume from before its end then gets a snapshot.
- The disk charges of jobs that have expired (their output, kept in Redis, went with them) are
  given back to their owners' quotas.
- Past the caps on kept jobs (`max_finished_jobs` succeeded and cancelled jobs each,
  `max_failed_jobs` failed ones), the oldest finished jobs are deleted with their files, before
  their time-based retention ends.

Every worker runs one, every `janitor_interval_s`; each step is a script call that is safe to run
twice, so several workers never conflict.
"""

from __future__ import annotations

import asyncio
import logging

from redis.exceptions import RedisError

from jobcast.files.storage import Storage
from jobcast.protocol import State, epoch_ms, utcnow
from jobcast.store.jobs import JobStore
from jobcast.store.scripts import Status

log = logging.getLogger(__name__)

BATCH = 500


async def forget_finished(store: JobStore, storage: Storage, ids: list[str]) -> tuple[list[str], list[str]]:
    """Delete these jobs, each only if it has ended, with every trace in Redis and their files.
    Returns (the ids deleted, the ids already expired: gone but for an index entry)."""
    keys = store.keys
    async with store.redis.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hmget(keys.job(job_id), ["kind", "owner", "submitted_by"])
        records = await pipe.execute()
    calls, expired = [], []
    for job_id, (kind, owner, via) in zip(ids, records, strict=True):
        if kind is None:
            expired.append(job_id)
            continue
        job_keys = {
            "job": keys.job(job_id),
            "history": keys.history(job_id),
            "kind_index": keys.index_kind(kind.decode()),
        }
        if owner:
            job_keys["owner_index"] = keys.index_owner(owner.decode())
        if via:
            job_keys["via_index"] = keys.index_submitted_by(via.decode())
        calls.append((job_keys, {"id": job_id}))
    answers = await store.scripts.call_many("forget", calls) if calls else []
    gone = [c[1]["id"] for c, a in zip(calls, answers, strict=True) if a.status is Status.OK]
    if gone:
        await storage.delete(gone)
        await store.quota.refund(gone)
    return gone, expired


class Janitor:
    def __init__(self, store: JobStore, storage: Storage) -> None:
        self.store = store
        self.storage = storage
        settings = store.settings
        self.caps = {
            State.SUCCEEDED: settings.max_finished_jobs,
            State.CANCELLED: settings.max_finished_jobs,
            State.FAILED: settings.max_failed_jobs,
        }

    async def compact_due(self) -> int:
        """Compact every finished job whose grace time has passed; how many were."""
        keys, compacted = self.store.keys, 0
        while True:
            due = await self.store.redis.zrangebyscore(
                keys.compact_due, "-inf", epoch_ms(utcnow()), start=0, num=BATCH
            )
            ids = [raw.decode() for raw in due]
            calls = [({"job": keys.job(i), "history": keys.history(i)}, {"id": i}) for i in ids]
            answers = await self.store.scripts.call_many("compact", calls) if calls else []
            compacted += sum(a.status is Status.OK for a in answers)
            if len(ids) < BATCH:
                return compacted

    async def trim(self, state: State) -> list[str]:
        """Delete the oldest jobs in `state` past its cap, with their files; their ids."""
        cap = self.caps[state]
        if cap <= 0:
            return []
        redis = self.store.redis
        index = self.store.keys.index_state(state.value)
        forgotten: list[str] = []
        while (excess := await redis.zcard(index) - cap) > 0:
            ids = [raw.decode() for raw in await redis.zrange(index, 0, min(excess, BATCH) - 1)]
            gone, expired = await forget_finished(self.store, self.storage, ids)
            if expired:
                await redis.zrem(index, *expired)
            if not gone and not expired:
                break  # every one started again meanwhile (a retry): nothing to trim now
            forgotten += gone
        return forgotten

    async def refund_gone(self) -> int:
        """Give back the disk charges of jobs whose record has expired: their output went with
        them (a job's files are refunded by the sweep that deletes them). How many jobs'."""
        keys, redis, refunded = self.store.keys, self.store.redis, 0
        cursor = 0
        while True:
            cursor, charged = await redis.hscan(keys.disk_charges, cursor, count=BATCH)
            ids = [raw.decode() for raw in charged]
            if ids:
                async with redis.pipeline(transaction=False) as pipe:
                    for job_id in ids:
                        pipe.exists(keys.job(job_id))
                    exists = await pipe.execute()
                gone = [job_id for job_id, held in zip(ids, exists, strict=True) if not held]
                if gone:
                    await self.store.quota.refund(gone)
                    refunded += len(gone)
            if cursor == 0:
                return refunded

    async def run_once(self) -> tuple[int, int]:
        """One pass: (jobs compacted, jobs deleted past the caps)."""
        compacted = await self.compact_due()
        deleted = 0
        for state in self.caps:
            deleted += len(await self.trim(state))
        await self.refund_gone()
        return compacted, deleted

    async def run(self, interval_s: float) -> None:
        """Every `interval_s`, until cancelled; a Redis outage skips a pass, never ends the loop."""
        while True:
            try:
                compacted, deleted = await self.run_once()
            except RedisError as e:
                log.warning("janitor pass skipped: %s", e)
            else:
                if compacted or deleted:
                    log.info(
                        "compacted %d finished jobs' histories; deleted %d past the caps", compacted, deleted
                    )
            await asyncio.sleep(interval_s)
