"""The arq worker: runs one jobcast job per arq job and turns its life into events."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

from arq.worker import Retry, Worker, func

from jobcast.protocol import TERMINAL_STATES, EventType, State, dumps
from jobcast.redis import create_redis
from jobcast.settings import Settings
from jobcast.store import RUN_JOB, JobStore, json_deserializer, json_serializer
from jobs.kind import JobContext, Kind
from jobs.kinds import KINDS
from jobs.lease import hold_lease
from jobs.progress import Progress

log = logging.getLogger(__name__)

# jobcast counts attempts itself (per kind) so that it can publish `failed` when they run out;
# arq's own limit must never cut in first, or the job would end with no terminal event.
ARQ_MAX_TRIES = 1_000_000


def error_info(error: BaseException) -> dict[str, str]:
    """What a client learns of an error: its type and message, never a traceback."""
    return {"type": type(error).__name__, "message": str(error) or type(error).__name__}


def backoff_s(settings: Settings, attempt: int) -> float:
    """Exponential backoff with full jitter, so retried jobs do not stampede together."""
    ceiling = min(settings.retry_max_s, settings.retry_base_s * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


async def startup(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx["settings"]
    ctx["store"] = JobStore(
        ctx["redis"],
        key_prefix=settings.key_prefix,
        queue_name=settings.queue_name,
        history_max_events=settings.history_max_events,
        retention_s=settings.retention_s,
    )


async def run_job(ctx: dict[str, Any], job_id: str) -> None:
    """arq's entry point for every jobcast job."""
    store: JobStore = ctx["store"]
    settings: Settings = ctx["settings"]
    attempt: int = ctx["job_try"]
    record = await store.load(job_id)
    if record is None or record.state in TERMINAL_STATES:
        return
    async with Progress(store, job_id, attempt, rate_hz=settings.progress_rate_hz) as progress:
        if record.state is State.RUNNING:
            # An attempt started and never concluded: its worker died or lost its lease.
            await progress.state(
                EventType.RETRYING,
                error={"type": "WorkerLost", "message": f"attempt {record.attempt} was interrupted"},
            )
        kind = KINDS.get(record.kind)
        if kind is None:
            error = {"type": "UnknownKind", "message": f"no worker knows kind {record.kind!r}"}
            await progress.state(EventType.FAILED, error=error)
            return
        if attempt > kind.max_attempts:
            message = f"gave up after {kind.max_attempts} attempts"
            await progress.state(EventType.FAILED, error={"type": "AttemptsExhausted", "message": message})
            return
        if not await progress.state(EventType.STARTED):
            return  # ended meanwhile, or a newer attempt owns the job
        async with hold_lease(ctx["redis"], job_id, settings.lease_s):
            try:
                await _run_attempt(kind, record.params, JobContext(job_id, attempt, progress), settings)
            except Retry:
                raise
            except Exception:
                # A bug of ours, not of the job: still, watchers must learn that the job ended.
                log.exception("job %s: internal error", job_id)
                error = {"type": "InternalError", "message": "the worker failed to run the job"}
                await progress.state(EventType.FAILED, error=error)


async def _run_attempt(kind: Kind, params: dict[str, Any], ctx: JobContext, settings: Settings) -> None:
    progress = ctx.progress
    try:
        async with asyncio.timeout(kind.timeout_s) as deadline:
            result = await kind.run(ctx, kind.params.model_validate(params))
        dumps(result)  # a result that is not JSON fails the job here, not in a client
    except asyncio.CancelledError:
        # The worker is shutting down: arq puts the job back in the queue. Tell watchers why the
        # job pauses; the next attempt picks up from there.
        error = {"type": "WorkerShutdown", "message": "the worker stopped; the job will run again"}
        await asyncio.shield(progress.state(EventType.RETRYING, error=error))
        raise
    except Exception as e:
        if isinstance(e, TimeoutError) and deadline.expired():
            e = TimeoutError(f"attempt took longer than {kind.timeout_s:g} s")
        if not kind.should_retry(e, ctx.attempt):
            await progress.state(EventType.FAILED, error=error_info(e))
            return
        delay = backoff_s(settings, ctx.attempt)
        await progress.state(EventType.RETRYING, error=error_info(e))
        raise Retry(defer=delay) from e
    else:
        await progress.state(EventType.SUCCEEDED, result=result)


def create_worker(settings: Settings) -> Worker:
    """The arq worker for these settings (run it with `worker.run()`)."""
    longest = max(kind.timeout_s for kind in KINDS.values())
    return Worker(
        functions=[func(run_job, name=RUN_JOB, max_tries=ARQ_MAX_TRIES, timeout=longest + 60)],
        queue_name=settings.queue_name,
        redis_pool=create_redis(settings.redis_url),
        ctx={"settings": settings},
        on_startup=startup,
        handle_signals=True,
        job_completion_wait=int(settings.shutdown_grace_s),
        max_jobs=settings.worker_max_jobs,
        poll_delay=settings.poll_delay_s,
        keep_result=0,
        job_serializer=json_serializer,
        job_deserializer=json_deserializer,
        health_check_interval=10,
        health_check_key=f"{settings.key_prefix}:worker-health",
        log_results=False,
    )
