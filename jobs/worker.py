"""The worker process: building it (`create_worker`: the kinds, the store, arq's Worker as the
runtime), and running one attempt of a claimed job (`run_job`) and turning its life into events.

arq keeps no job of its own here: jobs/arq_runtime.py claims jobs from jobcast's queues and calls
`run_job` with each claim's record; this module decides how the attempt goes on (a worker that
died, a cancel request, no attempts left), runs the kind's code with its timeout, and publishes
`started`, progress, `retrying` with its backoff, and the terminal event.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import multiprocessing
import os
import signal
import socket
import traceback
import uuid
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timedelta
from typing import Any, cast

from redis.exceptions import RedisError

from jobcast import bulk, tracing
from jobcast.backoff import jittered_s
from jobcast.errors import QuotaExceeded
from jobcast.files.storage import Storage, create_storage
from jobcast.jobs import bulk_actions
from jobcast.jobs.arq_runtime import ArqRedis, JobcastWorker, Retry, current_claim
from jobcast.jobs.children import BATCH, Spawner, all_succeeded, publish_rollups
from jobcast.jobs.lease import hold_lease
from jobcast.jobs.output import JobOutput, job_logger
from jobcast.jobs.progress import Progress
from jobcast.jobs.signals import Attempt, RunningAttempts, listen_for_signals
from jobcast.jobs.upkeep.janitor import Janitor
from jobcast.jobs.upkeep.migrate import migrate, migrate_histories, migrate_top_index
from jobcast.jobs.upkeep.scheduler import Scheduler
from jobcast.jobs.worker_metrics import WorkerMetrics
from jobcast.jobs.worker_metrics import serve as serve_metrics
from jobcast.kind import JobContext, Kind, PermanentError, configure
from jobcast.logs import context_fields, log_context
from jobcast.protocol import TERMINAL_STATES, EventType, State, dumps, isoformat, utcnow
from jobcast.redis.client import create_redis
from jobcast.registry import KindsError, discover_kinds
from jobcast.settings import Settings
from jobcast.store.jobs import JobRecord, JobStore, json_deserializer, json_serializer
from jobcast.store.reaper import Reaper, worker_lost
from jobcast.store.schedules import ScheduleBook
from jobcast.store.shards import Shards
from jobcast.tasks import cancel_and_wait
from jobcast.tree import BATCH_KIND

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # linux/prctl.h

SWEEP_INTERVAL_S = 3600.0
CANCELLED = {"type": "Cancelled", "message": "cancelled on request"}


def error_info(error: BaseException, max_chars: int = 1000) -> dict[str, str]:
    """What a client learns of an error: its type and message (cut to `max_chars`), never a
    traceback."""
    message = str(error) or type(error).__name__
    if len(message) > max_chars:
        message = message[: max_chars - 1] + "…"
    return {"type": type(error).__name__[:200], "message": message}


def check_result(result: Any, encoded: bytes, ctx: JobContext, limit: int) -> None:
    """Raises PermanentError (removing the file) when the result is over `limit` bytes."""
    file = result.get("file") if isinstance(result, dict) else None
    size = file.get("size", 0) if isinstance(file, dict) else 0
    if len(encoded) > limit or size > limit:
        if isinstance(file, dict) and isinstance(file.get("name"), str):
            ctx.files.result_path(file["name"]).unlink(missing_ok=True)
        raise PermanentError(f"the result ({max(size, len(encoded))} bytes) is over the {limit}-byte limit")


def backoff_s(settings: Settings, attempt: int) -> float:
    """Exponential backoff with jitter, so retried jobs do not stampede together."""
    return jittered_s(settings.retry_base_s, settings.retry_max_s, attempt - 1)


def _after(delay_s: float) -> dict[str, str]:
    """`next_attempt_at` for a `retrying` event."""
    return {"next_attempt_at": isoformat(utcnow() + timedelta(seconds=delay_s))}


async def _sweep_files(storage: Storage, shards: Shards, retention_s: float) -> None:
    while True:
        try:
            removed = await storage.sweep(retention_s)
        except Exception as e:  # the store is out of reach: next hour, then
            log.warning("could not sweep expired job files: %s", e)
            removed = []
        if removed:
            log.info("swept %d expired job directories", len(removed))
            try:
                for store, ids in shards.group(removed).items():
                    await store.quota.refund(ids)
            except RedisError as e:  # their owners' counts stay high: logged, not fatal
                log.warning("could not refund the disk charges of %d swept jobs: %s", len(removed), e)
        await asyncio.sleep(SWEEP_INTERVAL_S)


async def keep_result(
    result: Any, ctx: JobContext, store: JobStore, storage: Storage, record: JobRecord
) -> None:
    """Charge a result file to the owner's disk quota (and its anonymous client address's) and
    store it; PermanentError (removing the file) when it would go over the quota."""
    file = result.get("file") if isinstance(result, dict) else None
    if not isinstance(file, dict) or not isinstance(file.get("size"), int):
        return
    try:
        await store.quota.charge(ctx.job_id, record.owner, file["size"], record.client)
    except QuotaExceeded as e:
        ctx.files.result_path(file["name"]).unlink(missing_ok=True)
        raise PermanentError(f"the result file is {e}") from None
    await storage.keep_result(ctx.job_id, file["name"])


def die_with_parent() -> None:
    """In each process-pool child: end when the worker ends, however it ends (a SIGKILL leaves no
    chance to shut the pool down). Linux only; elsewhere the pool's own cleanup must do."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the worker died before prctl took effect
        os._exit(1)


async def startup(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx["settings"]
    shards: Shards = ctx["shards"]
    for shard in shards.stores:
        await migrate(shard.redis, shard.keys, settings.queue_name)
        await migrate_histories(shard)
        await migrate_top_index(shard)
    storage: Storage = ctx["storage"]
    await storage.start()
    ctx["files"] = storage.files
    ctx["metrics"] = WorkerMetrics(ctx["kinds"], settings.worker_recent_jobs)
    if settings.worker_metrics_port:
        ctx["metrics_runner"] = await serve_metrics(
            ctx["metrics"], settings.worker_metrics_host, settings.worker_metrics_port
        )
    ctx["running"] = running = RunningAttempts()
    # Spawned, not forked: a fork of a process with an event loop and threads is not safe.
    ctx["cpu"] = ProcessPoolExecutor(
        max_workers=settings.cpu_processes or os.cpu_count() or 1,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=die_with_parent,
    )
    ctx["services"] = [
        asyncio.create_task(_sweep_files(storage, shards, settings.retention_s)),
        asyncio.create_task(Scheduler(ScheduleBook(shards), ctx["kinds"], settings).run()),
    ]
    # Each shard has its own signals (a pub/sub connection to its primary), upkeep and rollups.
    for shard in shards.stores:
        ctx["services"] += [
            asyncio.create_task(listen_for_signals(settings.redis_url, shard.keys, running, ctx["wakeup"])),
            asyncio.create_task(Janitor(shard, storage).run(settings.janitor_interval_s)),
            asyncio.create_task(Reaper(shard).run(settings.reaper_interval_s)),
            asyncio.create_task(publish_rollups(shard, settings)),
        ]


async def shutdown(ctx: dict[str, Any]) -> None:
    for task in ctx.pop("services", []):
        await cancel_and_wait(task)
    if (cpu := ctx.pop("cpu", None)) is not None:
        cpu.shutdown(wait=True, cancel_futures=True)
    if (runner := ctx.pop("metrics_runner", None)) is not None:
        await runner.cleanup()
    if (storage := ctx.pop("storage", None)) is not None:
        await storage.close()


async def run_job(ctx: dict[str, Any], job_id: str) -> None:
    """One attempt of a job (JobcastWorker runs it for each claim)."""
    store = ctx["shards"].holding(job_id)
    settings: Settings = ctx["settings"]
    claim = current_claim.get()
    # The claim read the record, and most often started the job too; otherwise the `started`
    # event published here (a compare-and-set on the attempt, refused once the job ended) is what
    # decides, so a cancel since then is not missed.
    record = (claim.take_record() if claim is not None else None) or await store.load(job_id)
    if record is None or record.state in TERMINAL_STATES:
        return  # cancelled (or expired) while waiting
    attempt = record.attempt + 1
    # Every line logged while this attempt runs (its tasks inherit the context) names it.
    log_context.set(context_fields(job=job_id, attempt=attempt, request=record.request_id))
    output = JobOutput(
        store.output,
        job_id,
        attempt,
        flush_ms=settings.output_flush_ms,
        flush_bytes=settings.output_flush_bytes,
    )
    progress_ = Progress(
        store,
        job_id,
        attempt,
        rate_hz=settings.progress_rate_hz,
        owner=record.owner,
        max_message_chars=settings.max_message_chars,
        before_state=output.settle,
    )
    progress_.children_done = record.after_children is not None
    metrics: WorkerMetrics = ctx["metrics"]
    async with output, progress_ as progress:
        if claim is not None and claim.started:
            kind = ctx["kinds"][record.kind]  # the claim checked it, and published `started`
        else:
            kind = await _admit(ctx["kinds"], record, attempt, progress)
            if kind is None:
                metrics.ended_as(record.kind, "cancelled" if record.cancel_requested else "failed", job_id)
                return
            # The event names the worker, for the job page's attempts.
            if not await progress.state(EventType.STARTED, extra={"worker": ctx["lease_owner"]}):
                return  # ended, or another worker started this attempt first
        log.info("%s attempt %d started", record.kind, attempt)
        started = metrics.started(record.kind, waited_s(record) if attempt == 1 else None)
        running: RunningAttempts = ctx["running"]
        entry = running.add(job_id)
        jobctx = JobContext(
            job_id,
            attempt,
            progress,
            ctx["files"].job(job_id),
            ctx["cpu"],
            outputs=output.stream,
            log=job_logger(record.kind, job_id, output),
            tree=Spawner(store, job_id, record, ctx["kinds"]),
        )
        span = tracing.attempt_span(job_id, record.kind, attempt, record.traceparent, record.due_at)
        try:
            with span as traced:
                try:
                    holder = claim.holder if claim is not None else ctx["lease_owner"]
                    async with hold_lease(store, entry, record.priority, settings.lease_s, holder):
                        await _run_attempt(
                            kind, record, jobctx, entry, store, ctx["storage"], settings, metrics, output
                        )
                finally:
                    traced.counts(progress_events=progress.published, output_bytes=output.sent_bytes)
        except (Retry, asyncio.CancelledError):
            raise
        except Exception:
            # A bug of ours, not of the job: still, watchers must learn that the job ended.
            log.exception("job %s: internal error", job_id)
            error = {"type": "InternalError", "message": "the worker failed to run the job"}
            await progress.state(EventType.FAILED, error=error)
            metrics.ended_as(record.kind, "failed", job_id)
        finally:
            running.remove(job_id)
            metrics.ended(record.kind, started)
            await ctx["storage"].release(job_id)


async def _admit(kinds: dict[str, Kind], record: JobRecord, attempt: int, progress: Progress) -> Kind | None:
    """The job's kind if this attempt may start; otherwise publish why the job ends here."""
    previous = record.attempt
    if record.cancel_requested:
        # Asked to cancel while running on a worker that then died.
        await progress.state(EventType.CANCELLED, error=CANCELLED, fence=previous)
        return None
    if record.state is State.RUNNING:
        # An attempt started and never concluded: its worker died or lost its lease.
        # Unless the reaper (jobcast/store/reaper.py) has said so already.
        error = worker_lost(previous)
        await progress.state(
            EventType.RETRYING, error=error, extra=_after(0), fence=previous, from_state=State.RUNNING
        )
    kind = kinds.get(record.kind)
    if kind is None:
        error = {"type": "UnknownKind", "message": f"no worker knows kind {record.kind!r}"}
        await progress.state(EventType.FAILED, error=error, fence=previous)
        return None
    if attempt - record.attempts_before > kind.max_attempts:
        error = {"type": "AttemptsExhausted", "message": f"gave up after {kind.max_attempts} attempts"}
        await progress.state(EventType.FAILED, error=error, fence=previous)
        return None
    return kind


def waited_s(record: JobRecord) -> float | None:
    """Seconds from when the job was due to now (its first attempt's start)."""
    if record.due_at is None:
        return None
    return (utcnow() - datetime.fromisoformat(record.due_at)).total_seconds()


async def _run_attempt(
    kind: Kind,
    record: JobRecord,
    ctx: JobContext,
    entry: Attempt,
    store: JobStore,
    storage: Storage,
    settings: Settings,
    metrics: WorkerMetrics,
    output: JobOutput,
) -> None:
    # The worker's own reporter, behind the public protocol job code sees.
    progress = cast(Progress, ctx.progress)

    # The kind's code runs in a task of its own, so a cancel request can stop it without
    # cancelling this task (which belongs to arq and means "worker shutting down").
    async def attempt() -> Any:
        if kind.takes_upload:
            # Its input, local before it runs (a no-op for a shared directory); a failure to
            # fetch it is the attempt's, retried like any other.
            await storage.fetch_uploads(ctx.job_id)
        result = await _job_code(kind, record, ctx)
        # Everything it wrote is sent before it ends; output refused past a limit the job did not
        # hear of (its last writes were still being sent) fails it now, not silently.
        await output.drain()
        return result

    entry.task = task = asyncio.create_task(attempt())
    if entry.cancel_requested:
        task.cancel()  # asked before the attempt registered (see jobs/signals.py)
    try:
        async with asyncio.timeout(kind.timeout_s) as deadline:
            result = await task
        # A result that is not JSON, or too large, fails the job here, not in a client.
        check_result(result, dumps(result), ctx, settings.max_result_bytes)
        await keep_result(result, ctx, store, storage, record)
    except asyncio.CancelledError:
        current = asyncio.current_task()
        shutting_down = current is not None and current.cancelling() > 0
        if entry.lease_lost and not shutting_down:
            return  # another worker runs the job now: nothing of this attempt may reach watchers
        if shutting_down or not entry.cancel_requested:
            # The worker is shutting down: arq puts the job back in the queue. Tell watchers why
            # the job pauses; the next attempt picks up from there.
            error = {"type": "WorkerShutdown", "message": "the worker stopped; the job will run again"}
            await asyncio.shield(progress.state(EventType.RETRYING, error=error, extra=_after(0)))
            raise
        await progress.state(EventType.CANCELLED, error=CANCELLED)
        metrics.ended_as(kind.name, "cancelled", ctx.job_id)
    except Exception as e:
        await keep_traceback(store, ctx, e, settings.max_traceback_chars)
        if isinstance(e, TimeoutError) and deadline.expired():
            e = TimeoutError(f"attempt took longer than {kind.timeout_s:g} s")
            metrics.timeouts.labels(kind.name).inc()
        if not kind.should_retry(e, ctx.attempt - record.attempts_before):
            await progress.state(EventType.FAILED, error=error_info(e, settings.max_message_chars))
            metrics.ended_as(kind.name, "failed", ctx.job_id)
            log.info("attempt %d failed for good: %s", ctx.attempt, type(e).__name__)
            return
        delay = backoff_s(settings, ctx.attempt)
        await progress.state(
            EventType.RETRYING, error=error_info(e, settings.max_message_chars), extra=_after(delay)
        )
        latest = await store.load(ctx.job_id)
        if latest is not None and latest.cancel_requested:
            # Cancelled while this attempt was failing: do not start another.
            await progress.state(EventType.CANCELLED, error=CANCELLED)
            metrics.ended_as(kind.name, "cancelled", ctx.job_id)
            return
        metrics.retries.labels(kind.name).inc()
        log.info("attempt %d failed (%s); retrying in %.1f s", ctx.attempt, type(e).__name__, delay)
        raise Retry(defer=delay) from e
    else:
        await _conclude(kind, ctx, progress, metrics, result)


async def _job_code(kind: Kind, record: JobRecord, ctx: JobContext) -> Any:
    """Run the kind's code this attempt is for: its `run`, or once the children its `run` made
    have ended, its continuation."""
    params = kind.params.model_validate(record.params)
    if record.after_children == "then":
        return await (kind.then or all_succeeded)(ctx, params, await ctx.children())
    return await kind.run(ctx, params)


async def _conclude(
    kind: Kind, ctx: JobContext, progress: Progress, metrics: WorkerMetrics, result: Any
) -> None:
    """An attempt whose code returned: the job succeeds, or waits for the children it made."""
    if cast(Spawner, ctx.tree).made:
        # Its children run on: it waits for them without this slot, and its continuation runs
        # once they have ended (jobcast/store/lua/tree.lua).
        await progress.state(EventType.WAITING_CHILDREN, extra={"after_children": "then"})
        log.info("attempt %d made children; waiting for them", ctx.attempt)
        return
    await progress.state(EventType.SUCCEEDED, result=result)
    metrics.ended_as(kind.name, "succeeded", ctx.job_id)
    log.info("attempt %d succeeded", ctx.attempt)


async def keep_traceback(store: JobStore, ctx: JobContext, error: BaseException, max_chars: int) -> None:
    """The attempt's traceback for operators (the job page shows it to admins only), its last
    `max_chars` characters: the frames nearest the error matter most."""
    if max_chars <= 0:
        return
    text = "".join(traceback.format_exception(error))
    if len(text) > max_chars:
        text = "…" + text[-(max_chars - 1) :]
    try:
        await store.keep_traceback(ctx.job_id, ctx.attempt, text)
    except RedisError as e:  # the job's outcome matters more: it is published next regardless
        log.warning("could not keep the traceback of attempt %d: %s", ctx.attempt, e)


def create_worker(settings: Settings) -> JobcastWorker:
    """The arq worker for these settings (run it with `worker.run()`)."""
    kinds = discover_kinds(settings.kinds)
    for own in (bulk.NAME, BATCH_KIND):
        if own in kinds:
            raise KindsError(f"the kind name {own!r} is jobcast's own: rename yours")
    shards = Shards.connect(
        settings,
        settings.redis_shards,
        lambda prefix: create_redis(
            settings.redis_url,
            client_class=ArqRedis,
            retries=settings.worker_redis_retries,
            max_connections=settings.redis_max_connections,
            key_prefix=prefix,
        ),
    )
    # Shard 0's: arq's pool, the schedules, and everything of a deployment of one shard.
    store = shards.home
    redis = store.redis
    storage = create_storage(settings)  # started with the worker (startup)
    # Every worker serves bulk actions, whichever kinds it runs: they act on any job's records.
    kinds[bulk.NAME] = bulk_actions.bulk_kind(bulk_actions.BulkActions(shards, storage, kinds))
    kinds[BATCH_KIND] = BATCH
    kinds = configure(kinds, settings)
    longest = max(kind.timeout_s for kind in kinds.values())
    name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    return JobcastWorker(
        shards=shards,
        settings=settings,
        name=name,
        run=run_job,
        run_timeout_s=longest + 60,
        redis_pool=redis,
        # The name the worker's leases carry (see jobs/lease.py).
        ctx={
            "settings": settings,
            "kinds": kinds,
            "store": store,
            "shards": shards,
            "storage": storage,
            "lease_owner": name,
        },
        on_startup=startup,
        on_shutdown=shutdown,
        handle_signals=True,
        job_completion_wait=int(settings.shutdown_grace_s),
        max_jobs=settings.worker_max_jobs,
        keep_result=0,
        job_serializer=json_serializer,
        job_deserializer=json_deserializer,
        health_check_interval=10,
        health_check_key=store.keys.worker_health,
        log_results=False,
    )
