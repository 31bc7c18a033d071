"""jobcast's arq Worker: priority dispatch, short leases, and a poll loop that outlives Redis.

arq polls one queue ordered by time only. jobcast keeps arq's queue (so arq's start, retry and
finish bookkeeping stay as they are) and mirrors it in one dispatch set per priority; the
dispatch script hands a worker the due jobs of the highest priority first. One shared queue
polled in priority order, rather than dedicated workers per priority, means no capacity sits idle
reserved for a priority that has no work, and a `high` job never waits behind `low` ones.

arq polls its queue on a fixed tick (0.5 s by default), which puts half a tick on every job's start.
Here a submission wakes idle workers over pub/sub (jobs/signals.py), and the dispatch script says
when the next delayed job or retry becomes due, so a worker sleeps until then, a wakeup, or a free
slot; the `poll_delay_s` tick is only the fallback for leases that lapse and lost wakeups.

arq (in maintenance) lets any Redis error in its poll loop end the worker, and loses a slot of
its concurrency limit when one hits while a job is starting; both are closed here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from typing import Any

from arq.constants import in_progress_key_prefix
from arq.worker import Worker
from redis.exceptions import RedisError, ResponseError, WatchError

from jobcast.backoff import Backoff, jittered_s
from jobcast.settings import Settings
from jobcast.store import JobStore

log = logging.getLogger(__name__)

# How many dispatch-set entries one poll examines at most (running jobs are skipped over).
DISPATCH_BUDGET = 1000


class JobcastWorker(Worker):
    def __init__(self, *, settings: Settings, **kwargs: Any) -> None:
        # arq's own tick becomes a bare yield: _poll_iteration waits for work instead.
        super().__init__(poll_delay=0, **kwargs)
        self.settings = settings
        self.wakeup = self.ctx["wakeup"] = asyncio.Event()
        # arq sets the in-progress key for the job's whole timeout; jobcast's lease renews it.
        self.in_progress_timeout_s = settings.lease_s
        self.name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        # The value of the in-progress keys this worker holds (see jobs/lease.py).
        self.ctx["lease_owner"] = self.name
        self._last_beat = 0.0
        self._outage = 0

    @property
    def store(self) -> JobStore:
        return self.ctx["store"]

    async def main(self) -> None:
        # A worker started before its Redis waits for it instead of exiting.
        backoff = Backoff(0.1, 5.0)
        while True:
            try:
                await self.pool.ping()
                break
            except RedisError as e:
                log.warning("waiting for Redis (%s)", e)
                await asyncio.sleep(backoff.next_s())
        await super().main()

    async def _poll_iteration(self) -> None:
        # Cleared before the poll, so a wakeup that arrives during it is not lost.
        self.wakeup.clear()
        try:
            next_due_ms = await self._poll_once()
        except RedisError as e:
            delay = jittered_s(0.05, 5.0, self._outage)
            self._outage += 1
            log.warning("Redis unavailable (%s); polling again in %.1fs", e, delay)
            await asyncio.sleep(delay)
        else:
            if self._outage:
                log.info("Redis is back after %d failed polls", self._outage)
                self._outage = 0
            await self._idle(next_due_ms)

    async def _idle(self, next_due_ms: int) -> None:
        """Wait for a wakeup, the next due job, or the fallback tick, whichever comes first."""
        wait_s = self.settings.poll_delay_s
        if next_due_ms >= 0:
            wait_s = min(wait_s, max(0.0, next_due_ms / 1000 - time.time()))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait_s):
                await self.wakeup.wait()

    async def _poll_once(self) -> int:
        """Start what is due; when the next job not yet due becomes due (ms, -1: none known)."""
        free = self.max_jobs - self.job_counter
        next_due_ms = -1
        if self.allow_pick_jobs and free > 0:
            job_ids, next_due_ms = await self.store.run_script(
                "dispatch", self.queue_name, free + 2, DISPATCH_BUDGET
            )
            await self.start_jobs(job_ids)
        for job_id, task in list(self.tasks.items()):
            if task.done():
                del self.tasks[job_id]
                if not task.cancelled() and (error := task.exception()) is not None:
                    # The job's lease lapses and another worker runs it again.
                    log.error("job %s could not run: %r", job_id, error)
        await self.heart_beat()
        return next_due_ms

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """arq's start_jobs, with the concurrency slot given back when Redis fails mid-start."""
        for job_id_b in job_ids:
            await self.sem.acquire()
            if self.job_counter >= self.max_jobs:
                self.sem.release()
                return
            self.job_counter += 1
            job_id = job_id_b.decode()
            try:
                score = await self._claim(job_id)
            except BaseException:
                self._release_sem_dec_counter_on_complete()
                raise
            if score is None:
                self._release_sem_dec_counter_on_complete()
                continue
            task = asyncio.create_task(self.run_job(job_id, score), name=f"job:{job_id}")
            task.add_done_callback(self._job_done)
            self.tasks[job_id] = task

    def _job_done(self, _: asyncio.Task[Any]) -> None:
        self._release_sem_dec_counter_on_complete()
        # A slot is free: take the next waiting job now rather than on the next tick.
        self.wakeup.set()

    async def _claim(self, job_id: str) -> int | None:
        """Set the job's in-progress key unless another worker holds it; the job's queue score."""
        in_progress_key = in_progress_key_prefix + job_id
        async with self.pool.pipeline(transaction=True) as pipe:
            await pipe.watch(in_progress_key)
            ongoing = await pipe.exists(in_progress_key)
            score = await pipe.zscore(self.queue_name, job_id)
            if ongoing or not score or score > time.time() * 1000:
                return None
            pipe.multi()
            pipe.psetex(in_progress_key, int(self.in_progress_timeout_s * 1000), self.name)
            try:
                await pipe.execute()
            except (ResponseError, WatchError):
                return None
        return int(score)

    async def finish_job(
        self,
        job_id: str,
        finish: bool,
        result_data: bytes | None,
        result_timeout_s: float | None,
        keep_result_forever: bool,
        incr_score: int | None,
        keep_in_progress: float | None,
    ) -> None:
        # arq's bookkeeping, done only while this worker holds the job's lease (finish.lua says
        # why). jobcast keeps no arq results (keep_result=0) and has no cron jobs.
        await self._finish(job_id, finish, incr_score)

    async def finish_failed_job(self, job_id: str, result_data: bytes | None) -> None:
        await self._finish(job_id, True, None)

    async def _finish(self, job_id: str, finish: bool, incr_score: int | None) -> None:
        incr = "" if incr_score is None else incr_score
        done = await self.store.run_script("finish", self.queue_name, job_id, self.name, int(finish), incr)
        if not done:
            log.warning("job %s: not finishing in arq's queue, this worker no longer holds its lease", job_id)

    async def heart_beat(self) -> None:
        await super().heart_beat()
        now = time.time()
        if now - self._last_beat >= self.settings.worker_heartbeat_s:
            stale_ms = int((now - 3 * self.settings.worker_heartbeat_s) * 1000)
            keys = self.store.keys
            async with self.pool.pipeline(transaction=True) as pipe:
                pipe.zadd(keys.workers, {self.name: int(now * 1000)})
                pipe.zremrangebyscore(keys.workers, "-inf", stale_ms)  # workers that died
                # What it serves, so web servers can refuse a kind that no live worker runs.
                pipe.hset(keys.worker_kinds, self.name, ",".join(sorted(self.ctx["kinds"])))
                await pipe.execute()
            self._last_beat = now

    async def close(self) -> None:
        # Without Redis, the worker leaves the list once its heartbeat is stale.
        with contextlib.suppress(RedisError, KeyError):
            async with self.pool.pipeline(transaction=True) as pipe:
                pipe.zrem(self.store.keys.workers, self.name)
                pipe.hdel(self.store.keys.worker_kinds, self.name)
                await pipe.execute()
        try:
            await super().close()
        except RedisError as e:
            log.warning("closing without Redis: %s", e)
            if self.on_shutdown:
                await self.on_shutdown(self.ctx)
