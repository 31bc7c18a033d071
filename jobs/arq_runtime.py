"""arq, in one place: jobcast runs its jobs on arq's Worker, with jobcast's own queue.

arq is the runtime: its Worker's main loop, the signal handling and the graceful shutdown that
waits for running jobs (then cancels them), the health key. What jobcast replaces is where jobs
wait, how a worker takes one and how it runs an attempt, because arq's queue is one time-ordered
sorted set polled on a fixed tick, with no priorities and a lease as long as the job's timeout,
and arq's `run_job` reads a payload and counts runs in keys of its own, a round trip per job for
what jobcast's claim already brings (the record) and counts (the attempts):

- a waiting job lives in its priority's queue only (`protocol.Keys.queue`);
- `_poll_iteration` claims due jobs for every free slot, one script a shard (jobcast/store/lua/dispatch.lua),
  which also puts back jobs whose short lease lapsed and starts the jobs that can simply start,
  then runs each in a task of its own (`_run`): the attempt (jobs/worker.py), a `Retry` put back
  for its defer, a task cancelled by the shutdown put back to run again at once;
- it sleeps until a submission wakes it (jobs/signals.py), the next job falls due, a lease lapses
  or a slot frees up; `poll_delay_s` is only the fallback tick;
- `_finish` ends the lease and takes the job out of the queue, or puts it back for a retry,
  only while this worker holds the lease (jobcast/store/lua/finish.lua); the terminal event has
  most often done it already (`Claim.released`).

Everything of arq that jobcast touches is named here, and `tests/test_arq_contract.py` fails
loudly when an arq release changes any of it: the methods overridden, with their signatures; the
attributes read. arq is pinned to one minor version in pyproject.toml for that reason.

arq (in maintenance) lets any Redis error in its poll loop end the worker; that is closed here too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar, copy_context
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from arq.connections import ArqRedis
from arq.worker import Retry, Worker, func
from redis.exceptions import RedisError

from jobcast.backoff import Backoff, jittered_s
from jobcast.limits import claim_limits
from jobcast.protocol import epoch_ms, isoformat, utcnow
from jobcast.queries.stats import live_workers
from jobcast.store.records import RECORD_FIELDS, JobRecord, record_from

if TYPE_CHECKING:
    from jobcast.settings import Settings
    from jobcast.store.jobs import HandOff
    from jobcast.store.shards import Shards

__all__ = ["ArqRedis", "JobcastWorker", "Retry"]

log = logging.getLogger(__name__)

# The arq Worker internals jobcast relies on, beyond its documented constructor (checked by
# tests/test_arq_contract.py against the installed arq).
OVERRIDDEN = ("main", "_poll_iteration", "heart_beat", "close")
ATTRIBUTES = (
    *("tasks", "job_counter", "max_jobs", "allow_pick_jobs", "pool", "ctx", "on_shutdown"),
    *("jobs_complete", "jobs_failed", "jobs_retried"),
)

# The one function jobcast registers with arq (arq wants one; it never calls it itself).
RUN_JOB = "run_job"


@dataclass(slots=True, eq=False)
class Claim:
    """One claim of a job by this worker: where it came from, the lease's holder name, and the
    job's record as the claim read it.

    The holder names the claim, not just the worker (`<worker>#<poll>`): a worker that lost a
    job's lease (a stall, a Redis failover) can claim the job again while its earlier run is still
    ending, and the two runs must not renew or finish each other's lease. `released` turns true
    when the job's terminal event ended the lease too (JobStore.publish): `_finish` then
    has nothing left to do."""

    priority: str
    score: int
    holder: str
    record: JobRecord | None = None
    released: bool = False
    # The seq of the `started` event the claim published (jobcast/store/lua/dispatch.lua), 0 if it left
    # starting the job to the worker.
    started: int = 0
    # Who claims for the slot the job's end frees, in the script that ends it (a job a limit may
    # hold others back for; see JobStore.publish), and whether it claimed any.
    hand_off: HandOff | None = None
    handed_off: bool = False
    # The job's kind and owner, as the claim read them (what the hand-off's limits are about).
    kind: str | None = None
    owner: str | None = None

    def take_record(self) -> JobRecord | None:
        """The record read at the claim, once (a later read must go to Redis)."""
        record, self.record = self.record, None
        return record


# The claim the current run belongs to: set in the run's task context, inherited by the tasks
# arq and the job start (the lease renewal reads it too, see jobs/lease.py).
current_claim: ContextVar[Claim | None] = ContextVar("jobcast_claim", default=None)


class SlotHandOff:
    """Claims for the slot a job's end frees, in the script that ends it, when a limit may hold
    others back for that job: its kind's concurrency limit, or its owner's. A job held back by a
    limit then starts in the call that makes room for it, not in a claim of its own.

    Only while the worker's last claim saw a limit holding jobs back (`held`): a limit that does
    not bind would otherwise cost every job's end a claim's setup for nothing. A job held after
    that look still starts at once, as the slot stays free and the worker claims for it
    (dispatch.lua takes held jobs first). Either way the job's end takes it out of the running sets
    its limits count (`leaving`).

    A worker takes held jobs of a kind only up to its share of the kind's limit: the limit over
    the live workers that serve the kind, rounded up (`shares`). A worker that handed every slot
    back to itself would keep all of a binding limit's jobs while the others idle; past its share
    it declines, and the script that ends its job wakes the other workers to claim the slot."""

    def __init__(self, worker: JobcastWorker, limits: dict[str, Any] | None) -> None:
        self._worker = worker
        limits = limits or {}
        self._max_running = {
            kind: int(limit["max_running"])
            for kind, limit in limits.get("kinds", {}).items()
            if limit.get("max_running")
        }
        self._owner_limited = bool(limits.get("owner"))
        self.held = True
        # The jobs of each limited kind this worker runs, and the live workers serving each (this
        # one included), as the last heartbeat read them.
        self.running: dict[str, int] = dict.fromkeys(self._max_running, 0)
        self.serving: dict[str, int] = dict.fromkeys(self._max_running, 1)

    def counts(self, kind: str | None, step: int) -> None:
        """A job of `kind` starts (1) or ends (-1) on this worker."""
        if kind in self.running:
            self.running[kind] += step

    def shares(self, ending: str | None = None) -> dict[str, int]:
        """How many more held jobs of each limited kind this worker may take (the `ending` kind's
        job is leaving its count)."""
        shares = {}
        for kind, limit in self._max_running.items():
            mine = self.running[kind] - (kind == ending)
            shares[kind] = max(0, -(-limit // max(1, self.serving[kind])) - mine)
        return shares

    def frees_room(self, record: JobRecord) -> bool:
        """Whether the job's end may let a held job start."""
        return record.kind in self._max_running or (self._owner_limited and record.owner is not None)

    def claim_args(self) -> dict[str, Any] | None:
        worker, ending = self._worker, current_claim.get()
        if not self.held or not worker.allow_pick_jobs or ending is None:
            return None
        args = worker.claim_args(1, ending=ending.kind)
        # JSON null would reach Lua as a true value: an owner is there or not at all.
        args["ended"] = {"kind": ending.kind, **({"owner": ending.owner} if ending.owner else {})}
        return args

    def leaving(self) -> dict[str, str]:
        ending = current_claim.get()
        if ending is None:
            return {}
        leave = {"kind": ending.kind} if ending.kind is not None and ending.kind in self._max_running else {}
        if self._owner_limited and ending.owner:
            leave["owner"] = ending.owner
        return leave

    def claimed(self, holder: str, jobs: list[Any], held: bool) -> None:
        self.held = held
        if not jobs:
            return
        if claim := current_claim.get():
            claim.handed_off = True
        self._worker.claimed(holder, jobs)


class JobcastWorker(Worker):
    """arq's Worker, taking jobs from jobcast's queue and running each attempt with `run`
    (`run(ctx, job_id)`, jobs/worker.py), bounded by `run_timeout_s` as a last resort."""

    def __init__(
        self,
        *,
        shards: Shards,
        settings: Settings,
        name: str,
        run: Callable[[dict[str, Any], str], Awaitable[None]],
        run_timeout_s: float,
        **kwargs: Any,
    ) -> None:
        # arq's own tick becomes a bare yield: _poll_iteration waits for work instead.
        super().__init__(
            functions=[func(run, name=RUN_JOB)],  # type: ignore[arg-type]  # arq never calls it (RUN_JOB)
            poll_delay=0,
            queue_name=shards.home.keys.arq_queue,
            **kwargs,
        )
        self._run_attempt = run  # not `self.run`: that is arq's Worker.run
        self.run_timeout_s = run_timeout_s
        # Shard 0's store: heartbeats and the worker directory; jobs are claimed from every shard.
        self.store = shards.home
        self.shards = shards
        self._next_shard = 0
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
        # The limits every claim enforces (None: none, and claims skip them).
        self._limits = claim_limits(self.ctx.get("kinds", {}), settings)
        self._hand_off = SlotHandOff(self, self._limits)
        self._context = copy_context()

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
            # Every shard in turn, the first one a different one each poll, so that no shard's
            # jobs wait while another's fill the free slots.
            stores = self.shards.stores
            first, held = self._next_shard, False
            self._next_shard = (first + 1) % len(stores)
            for store in stores[first:] + stores[:first]:
                if free <= 0:
                    break  # the slots are full: a slot that frees wakes the next poll
                args = self.claim_args(free)
                answer = await store.scripts.call("dispatch", **args)
                if (due := int(answer["next_ms"])) >= 0:
                    next_due_ms = due if next_due_ms < 0 else min(next_due_ms, due)
                held = held or answer.get("held", True)
                jobs = answer["jobs"] or ()
                free -= len(jobs)
                self.claimed(args["owner"], jobs)
            self._hand_off.held = held
        await self.heart_beat()
        return next_due_ms

    def claim_args(self, want: int, ending: str | None = None) -> dict[str, Any]:
        """A claim's arguments (jobcast/store/lua/claim.lua), for `want` slots, under a new holder
        (for the slot a job of kind `ending` frees, in the script that ends it)."""
        self._polls += 1
        # One instant for the claim's clock and its `started` events' time, so that the start
        # times watchers see keep the rate limits exactly.
        now = utcnow()
        return {
            "owner": f"{self.name}#{self._polls}",
            "want": want,
            "lease_ms": int(self.settings.lease_s * 1000),
            "fields": RECORD_FIELDS,
            "start": {"worker": self._name_json, "ts": isoformat(now), "kinds": self._max_attempts},
            "now_ms": epoch_ms(now),
            **({"limits": self._limits} if self._limits else {}),
            **({"shares": shares} if (shares := self._hand_off.shares(ending)) else {}),
        }

    def claimed(self, holder: str, jobs: Iterable[Any]) -> None:
        """Start the jobs a claim under `holder` took."""
        for job_id, priority, score, values, started in jobs:
            record = record_from(values)
            claim = Claim(priority, int(score), holder, record, started=int(started))
            if record is not None and self._hand_off.frees_room(record):
                claim.hand_off, claim.kind, claim.owner = self._hand_off, record.kind, record.owner
                self._hand_off.counts(record.kind, 1)
            self._start(job_id, claim)

    def _start(self, job_id: str, claim: Claim) -> None:
        self.job_counter += 1
        # From the worker's own context, not that of the job whose end handed its slot on.
        context = self._context.copy()
        context.run(current_claim.set, claim)
        earlier = self.tasks.get(job_id)
        if earlier is not None and not claim.started:
            claim.record = None  # it will run only once the earlier run is over: read it then
        run = self._after(earlier, job_id, claim) if earlier else self._run(job_id, claim)
        task = asyncio.create_task(run, name=f"job:{job_id}", context=context)
        task.add_done_callback(lambda done: self._job_done(job_id, done, claim))
        self.tasks[job_id] = task

    async def _after(self, earlier: asyncio.Task[Any], job_id: str, claim: Claim) -> None:
        """Run a job claimed again while this worker's earlier run of it still ends (it lost the
        lease): once that run is over, since arq keeps one task per job id."""
        await asyncio.wait({earlier})
        await self._run(job_id, claim)

    async def _run(self, job_id: str, claim: Claim) -> None:
        """One attempt, then the lease's end: the job leaves the queue, or goes back to it (a
        `Retry`, due after its defer; the worker shutting down, or the attempt outliving
        `run_timeout_s`: due at once, and the next claim says the attempt was lost; the worker
        failing to run it: due after the longest backoff)."""
        finish, ready_ms = True, 0
        deadline = asyncio.timeout(self.run_timeout_s)
        try:
            async with deadline:
                await self._run_attempt(self.ctx, job_id)
        except Retry as e:
            finish, ready_ms = False, int(time.time() * 1000) + (e.defer_score or 0)
            self.jobs_retried += 1
        except asyncio.CancelledError:
            self.jobs_retried += 1
            if not claim.released:
                await asyncio.shield(self._finish(job_id, claim, False, int(time.time() * 1000)))
            raise
        except Exception as e:
            if isinstance(e, TimeoutError) and deadline.expired():
                log.error("job %s: its attempt outlived %.0f s; it runs again", job_id, self.run_timeout_s)
                finish, ready_ms = False, int(time.time() * 1000)
                self.jobs_retried += 1
            else:
                # Not the job's own error (the attempt catches those and publishes them): the
                # worker could not run it, e.g. Redis gone longer than its publishes retry. Back
                # to its queue, not dropped: its watchers must still learn how it ends. After the
                # longest backoff, so that a failure that repeats does not spin.
                delay_s = self.settings.retry_max_s
                log.exception("job %s could not run; back in its queue in %.0f s", job_id, delay_s)
                finish, ready_ms = False, int((time.time() + delay_s) * 1000)
                self.jobs_failed += 1
        else:
            self.jobs_complete += 1
        if not claim.released:
            await asyncio.shield(self._finish(job_id, claim, finish, ready_ms))

    def _job_done(self, job_id: str, task: asyncio.Task[Any], claim: Claim) -> None:
        self.job_counter -= 1
        self._hand_off.counts(claim.kind, -1)
        if self.tasks.get(job_id) is task:
            del self.tasks[job_id]
        if not task.cancelled() and (error := task.exception()) is not None:
            # The job's lease lapses and another worker runs it again.
            log.error("job %s could not run: %r", job_id, error)
        # A slot is free: take the next waiting job now rather than on the next tick (unless the
        # job's end handed it on already).
        if not claim.handed_off:
            self.wakeup.set()

    async def _finish(self, job_id: str, claim: Claim, finish: bool, ready_ms: int) -> None:
        store = self.shards.holding(job_id)
        answer = await store.scripts.call(
            "finish",
            {"job": store.keys.job(job_id)},
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
            stale_ms = int((now - self.settings.worker_ttl_s) * 1000)
            keys = self.store.keys
            async with self.pool.pipeline(transaction=True) as pipe:
                pipe.zadd(keys.workers, {self.name: int(now * 1000)})
                pipe.zremrangebyscore(keys.workers, "-inf", stale_ms)  # workers that died
                # What it serves, so web servers can refuse a kind that no live worker runs.
                pipe.hset(keys.worker_kinds, self.name, ",".join(sorted(self.ctx["kinds"])))
                # With its jobs' ends over the last hour and its last jobs, for the workers pages.
                metrics = self.ctx.get("metrics")
                recent = (
                    {"last_hour": metrics.last_hour(), "recent_jobs": list(metrics.recent_jobs)}
                    if metrics is not None
                    else {}
                )
                info = orjson.dumps({**self._info, **recent, "seen_ms": int(now * 1000)}).decode()
                pipe.hset(keys.worker_info, self.name, info)
                await pipe.execute()
            self._last_beat = now
            if self._hand_off.serving:
                # How many share each limited kind's slots (SlotHandOff.shares).
                workers = await live_workers(self.store, self.settings.worker_ttl_s)
                for kind in self._hand_off.serving:
                    self._hand_off.serving[kind] = max(1, sum(kind in kinds for kinds in workers.values()))

    async def close(self) -> None:
        # The attempts the shutdown cancelled are putting their jobs back: wait for them here, as
        # arq's close would gather them and take their cancellation for its own.
        if self.tasks:
            await asyncio.wait(list(self.tasks.values()))
        # Shard 0's client is arq's pool, which arq closes.
        await self.shards.aclose(home_client=False)
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
