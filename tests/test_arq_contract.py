"""The arq contract: everything of arq that jobcast/arq_runtime.py relies on, as it relies on it.

arq is in maintenance mode and jobcast uses some of its Worker's internals. An arq release that
renames, re-signs or changes the meaning of any of them fails here, loudly, rather than in a
worker in production. When this fails after an upgrade, read the change in arq and adapt
jobcast/arq_runtime.py (the only module that imports arq) before moving the pin in pyproject.toml.
"""

from __future__ import annotations

import inspect
from importlib import metadata

import pytest
from arq.jobs import deserialize_job_raw
from arq.worker import Worker

from jobcast import arq_runtime
from jobcast.protocol import Keys
from jobcast.store import RUN_JOB, json_deserializer, json_serializer

# The signatures arq 0.28 gives the methods jobcast overrides or calls.
SIGNATURES = {
    "main": "(self) -> None",
    "_poll_iteration": "(self) -> None",
    "heart_beat": "(self) -> None",
    "close": "(self) -> None",
    "run_job": "(self, job_id: str, score: int) -> None",
    "finish_failed_job": "(self, job_id: str, result_data: Optional[bytes]) -> None",
    "finish_job": "(self, job_id: str, finish: bool, result_data: Optional[bytes], "
    "result_timeout_s: Optional[float], keep_result_forever: bool, incr_score: Optional[int], "
    "keep_in_progress: Optional[float]) -> None",
}


def test_arq_is_the_pinned_minor_version() -> None:
    assert metadata.version("arq").startswith("0.28."), "see this module's docstring"


def test_every_internal_the_runtime_names_is_checked_here() -> None:
    assert set(arq_runtime.OVERRIDDEN) | set(arq_runtime.CALLED) == set(SIGNATURES)


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_the_worker_methods_jobcast_overrides_or_calls_keep_their_signatures(name: str) -> None:
    assert str(inspect.signature(getattr(Worker, name))) == SIGNATURES[name]
    if name in arq_runtime.OVERRIDDEN:
        # The override takes what arq passes, by the same names.
        ours = inspect.signature(getattr(arq_runtime.JobcastWorker, name))
        assert list(ours.parameters) == list(inspect.signature(getattr(Worker, name)).parameters)


def test_the_worker_attributes_jobcast_reads_exist(redis) -> None:
    async def noop(ctx: dict) -> None: ...

    worker = Worker(functions=[arq_runtime.func(noop, name="noop")], redis_pool=redis, handle_signals=False)
    for name in arq_runtime.ATTRIBUTES:
        assert hasattr(worker, name), name
    assert worker.tasks == {} and worker.job_counter == 0 and worker.allow_pick_jobs is True


def test_run_job_reports_retries_and_interruptions_as_jobcast_expects() -> None:
    source = inspect.getsource(Worker.run_job)
    # A Retry(defer) comes back as finish_job(finish=False, incr_score=defer + now - score):
    # JobcastWorker.finish_job turns that into the job's next due time.
    assert "incr_score = e.defer_score + (timestamp_ms() - score)" in source
    # A cancelled task (the worker shutting down) is not finished: the job runs again.
    assert "self.retry_jobs and isinstance(e, (asyncio.CancelledError, RetryJob))" in source
    # The payload is read from arq's job key, and arq counts runs in its retry key.
    assert "pipe.get(job_key_prefix + job_id)" in source
    assert "pipe.incr(retry_key_prefix + job_id)" in source


def test_jobcast_keys_are_arqs_and_its_payload_is_arqs_format() -> None:
    keys = Keys("p")
    assert keys.arq_job("abc") == "arq:job:abc" and keys.arq_retry("abc") == "arq:retry:abc"
    payload = arq_runtime.job_payload(RUN_JOB, "abc", 1234, json_serializer)
    function, args, kwargs, job_try, enqueue_ms = deserialize_job_raw(payload, deserializer=json_deserializer)
    assert (function, list(args), kwargs, job_try, enqueue_ms) == (RUN_JOB, ["abc"], {}, None, 1234)
    # JSON, never pickle: a queue must not execute what it reads.
    assert payload.startswith(b"{")
