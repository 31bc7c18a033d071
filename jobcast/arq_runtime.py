"""arq, in one place: jobcast runs its jobs on arq's Worker, with jobcast's own queue.

arq is the runtime: its Worker runs each attempt through `Worker.run_job` (the job payload, the
function's timeout, `Retry` with its defer, a cancelled task put back to run again, the signal
handling and the graceful shutdown that waits for running jobs, the health key). What jobcast
replaces is where jobs wait and how a worker takes one, because arq's queue is one time-ordered
sorted set polled on a fixed tick, with no priorities and a lease as long as the job's timeout:

- a waiting job lives in its priority's queue only (`protocol.Keys.queue`);
- `_poll_iteration` claims due jobs for every free slot in one script (jobcast/lua/dispatch.lua),
  which also puts back jobs whose short lease lapsed, then hands each to arq's `run_job`;
- it sleeps until a submission wakes it (jobs/signals.py), the next job falls due, a lease lapses
  or a slot frees up; `poll_delay_s` is only the fallback tick;
- `finish_job` ends the lease and takes the job out of the queue, or puts it back for a retry,
  only while this worker holds the lease (jobcast/lua/finish.lua).

Everything of arq that jobcast touches is named here, and `tests/test_arq_contract.py` fails
loudly when an arq release changes any of it: the methods overridden or called, with their
signatures; the attributes read; the key prefixes; the payload format. arq is pinned to one minor
version in pyproject.toml for that reason.

arq (in maintenance) lets any Redis error in its poll loop end the worker; that is closed here too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from contextvars import ContextVar, copy_context
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from arq.connections import ArqRedis
from arq.constants import job_key_prefix, retry_key_prefix
from arq.jobs import serialize_job
from arq.worker import Retry, Worker, func
from redis.exceptions import RedisError

from jobcast.backoff import Backoff, jittered_s

if TYPE_CHECKING:
    from jobcast.records import JobRecord
    from jobcast.settings import Settings
    from jobcast.store import JobStore

__all__ = [
    "ARQ_JOB_KEY_PREFIX",
    "ARQ_RETRY_KEY_PREFIX",
    "ArqRedis",
    "JobcastWorker",
    "Retry",
    "func",
    "job_payload",
]

log = logging.getLogger(__name__)

# arq's keys: the job's payload (read by run_job), and arq's count of the job's runs.
ARQ_JOB_KEY_PREFIX = job_key_prefix
ARQ_RETRY_KEY_PREFIX = retry_key_prefix

# jobcast counts attempts itself (per kind) so that it can publish `failed` when they run out;
# arq's own limit must never cut in first, or the job would end with no terminal event.
ARQ_MAX_TRIES = 1_000_000

# The arq Worker internals jobcast relies on, beyond its documented constructor (checked by
# tests/test_arq_contract.py against the installed arq).
OVERRIDDEN = ("main", "_poll_iteration", "finish_job", "finish_failed_job", "heart_beat", "close")
CALLED = ("run_job",)
ATTRIBUTES = ("tasks", "job_counter", "max_jobs", "allow_pick_jobs", "pool", "ctx", "on_shutdown")


def job_payload(function: str, job_id: str, ready_ms: int, serializer: Any) -> bytes:
    """arq's job payload: `function(job_id)`, enqueued for `ready_ms`."""
    return serialize_job(function, (job_id,), {}, None, ready_ms, serializer=serializer)


@dataclass(slots=True, eq=False)
class Claim:
    """One claim of a job by this worker: where it came from, the lease's holder name, and the
    job's record as the claim read it.

    The holder names the claim, not just the worker (`<worker>#<poll>`): a worker that lost a
    job's lease (a stall, a Redis failover) can claim the job again while its earlier run is still
    ending, and the two runs must not renew or finish each other's lease. `released` turns true
    when the job's terminal event ended the lease too (JobStore.publish): arq's finish_job then
    has nothing left to do."""

    priority: str
    score: int
    holder: str
    record: JobRecord | None = None
    released: bool = False
    # The seq of the `started` event the claim published (jobcast/lua/dispatch.lua), 0 if it left
    # starting the job to the worker.
    started: int = 0

    def take_record(self) -> JobRecord | None:
        """The record read at the claim, once (a later read must go to Redis)."""
        record, self.record = self.record, None
        return record


# The claim the current run belongs to: set in the run's task context, inherited by the tasks
# arq and the job start (the lease renewal reads it too, see jobs/lease.py).
current_claim: ContextVar[Claim | None] = ContextVar("jobcast_claim", default=None)


class JobcastWorker(Worker):
    def __init__(self, *, store: JobStore, settings: Settings, name: str, **kwargs: Any) -> None:
        # arq's own tick becomes a bare yield: _poll_iteration waits for work instead.
        super().__init__(poll_delay=0, queue_name=store.keys.arq_queue, **kwargs)
        self.store = store
        self.settings = settings
        self.name = name
        self.wakeup = self.ctx["wakeup"] = asyncio.Event()
        self._polls = 0
        self._last_beat = 0.0
        self._info = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "concurrency": self.max_jobs,
            "kinds": sorted(self.ctx.get("kinds", ())),
        }
        self._outage = 0
        # What the claim needs to start a job itself (see dispatch.lua): the worker's name as the
        # `started` event carries it, and the attempts each kind it serves allows.
        self._name_json = orjson.dumps(name).decode()
        self._max_attempts = {kind.name: kind.max_attempts for kind in self.ctx.get("kinds", {}).values()}

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
        """Claim and start what is due; when the next job falls due or lease lapses (ms, -1: none)."""
        free = self.max_jobs - self.job_counter
        next_due_ms = -1
        if self.allow_pick_jobs and free > 0:
            # Here, not at the top: jobcast.protocol imports this module's key prefixes.
            from jobcast.protocol import now_iso
            from jobcast.records import RECORD_FIELDS, record_from

            self._polls += 1
            holder = f"{self.name}#{self._polls}"
            answer = await self.store.scripts.call(
                "dispatch",
                owner=holder,
                want=free,
                lease_ms=int(self.settings.lease_s * 1000),
                fields=RECORD_FIELDS,
                start={"worker": self._name_json, "ts": now_iso(), "kinds": self._max_attempts},
            )
            next_due_ms = int(answer["next_ms"])
            for job_id, priority, score, values, started in answer["jobs"] or ():
                self._start(
                    job_id, Claim(priority, int(score), holder, record_from(values), started=int(started))
                )
        await self.heart_beat()
        return next_due_ms

    def _start(self, job_id: str, claim: Claim) -> None:
        self.job_counter += 1
        context = copy_context()
        context.run(current_claim.set, claim)
        earlier = self.tasks.get(job_id)
        if earlier is not None and not claim.started:
            claim.record = None  # it will run only once the earlier run is over: read it then
        run = self._after(earlier, job_id, claim.score) if earlier else self.run_job(job_id, claim.score)
        task = asyncio.create_task(run, name=f"job:{job_id}", context=context)
        task.add_done_callback(lambda done: self._job_done(job_id, done))
        self.tasks[job_id] = task

    async def _after(self, earlier: asyncio.Task[Any], job_id: str, score: int) -> None:
        """Run a job claimed again while this worker's earlier run of it still ends (it lost the
        lease): once that run is over, since arq keeps one task per job id."""
        await asyncio.wait({earlier})
        await self.run_job(job_id, score)

    def _job_done(self, job_id: str, task: asyncio.Task[Any]) -> None:
        self.job_counter -= 1
        if self.tasks.get(job_id) is task:
            del self.tasks[job_id]
        if not task.cancelled() and (error := task.exception()) is not None:
            # The job's lease lapses and another worker runs it again.
            log.error("job %s could not run: %r", job_id, error)
        # A slot is free: take the next waiting job now rather than on the next tick.
        self.wakeup.set()

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
        # jobcast keeps no arq results (keep_result=0) and has no cron jobs. A deferred retry's
        # `incr_score` counts from the score the job was claimed at.
        claim = current_claim.get() or Claim("default", 0, self.name)
        if claim.released:
            return  # the job's terminal event ended the lease already
        ready_ms = claim.score + incr_score if incr_score else int(time.time() * 1000)
        await self._finish(job_id, claim, finish, ready_ms)

    async def finish_failed_job(self, job_id: str, result_data: bytes | None) -> None:
        claim = current_claim.get() or Claim("default", 0, self.name)
        if not claim.released:
            await self._finish(job_id, claim, True, 0)

    async def _finish(self, job_id: str, claim: Claim, finish: bool, ready_ms: int) -> None:
        keys = self.store.keys
        answer = await self.store.scripts.call(
            "finish",
            {"job": keys.job(job_id), "arq_job": keys.arq_job(job_id), "arq_retry": keys.arq_retry(job_id)},
            id=job_id,
            priority=claim.priority,
            owner=claim.holder,
            finish=finish,
            ready_ms=ready_ms,
        )
        if answer["status"] != "ok":
            log.warning("job %s: not finishing it, this worker no longer holds its lease", job_id)

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
                pipe.hset(
                    keys.worker_info, self.name, orjson.dumps({**self._info, "seen_ms": int(now * 1000)})
                )
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
