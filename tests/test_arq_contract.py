"""The arq contract: everything of arq that jobs/arq_runtime.py relies on, as it relies on it.

arq is in maintenance mode and jobcast uses some of its Worker's internals. An arq release that
renames, re-signs or changes the meaning of any of them fails here, loudly, rather than in a
worker in production. When this fails after an upgrade, read the change in arq and adapt
jobs/arq_runtime.py (the only module that imports arq) before moving the pin in pyproject.toml.
"""

from __future__ import annotations

import inspect
from importlib import metadata

import pytest
from arq.worker import Worker

from jobcast.jobs import arq_runtime

# The signatures arq 0.28 gives the methods jobcast overrides.
SIGNATURES = {
    "main": "(self) -> None",
    "_poll_iteration": "(self) -> None",
    "heart_beat": "(self) -> None",
    "close": "(self) -> None",
}


def test_arq_is_the_pinned_minor_version() -> None:
    assert metadata.version("arq").startswith("0.28."), "see this module's docstring"


def test_every_internal_the_runtime_names_is_checked_here() -> None:
    assert set(arq_runtime.OVERRIDDEN) == set(SIGNATURES)


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_the_worker_methods_jobcast_overrides_keep_their_signatures(name: str) -> None:
    assert str(inspect.signature(getattr(Worker, name))) == SIGNATURES[name]
    # The override takes what arq passes, by the same names.
    ours = inspect.signature(getattr(arq_runtime.JobcastWorker, name))
    assert list(ours.parameters) == list(inspect.signature(getattr(Worker, name)).parameters)


def test_the_worker_attributes_jobcast_reads_exist(redis) -> None:
    async def noop(ctx: dict) -> None: ...

    worker = Worker(functions=[arq_runtime.func(noop, name="noop")], redis_pool=redis, handle_signals=False)
    for name in arq_runtime.ATTRIBUTES:
        assert hasattr(worker, name), name
    assert worker.tasks == {} and worker.job_counter == 0 and worker.allow_pick_jobs is True


def test_a_retry_carries_its_defer_as_jobcast_reads_it() -> None:
    # JobcastWorker._run puts a job back for `Retry.defer_score` milliseconds.
    assert arq_runtime.Retry(defer=1.5).defer_score == 1500
    assert arq_runtime.Retry().defer_score is None


def test_the_shutdown_cancels_the_running_attempts_jobcast_puts_back() -> None:
    # The attempts run in `Worker.tasks`; arq's shutdown (at once, or after the grace time)
    # cancels them, and JobcastWorker._run puts each cancelled job back in its queue.
    for method in (Worker.handle_sig, Worker._wait_for_tasks_to_complete):
        source = inspect.getsource(method)
        assert "for t in self.tasks.values():" in source and "t.cancel()" in source, method
