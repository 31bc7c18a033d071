"""jobcast kinds that do nothing (and one that only reports progress), for the job-throughput
benchmark (bench/jobs.py): what is measured is the queue's own cost per job, as arq's and saq's
no-op functions measure theirs."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from jobcast.kind import JobContext, Kind


class NoopParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


async def run(ctx: JobContext, params: NoopParams) -> None:
    return None


async def progress5(ctx: JobContext, params: NoopParams) -> None:
    for step in range(1, 6):
        await ctx.progress.update(step, 5)


KINDS = [
    Kind(name="noop", title="Nothing", params=NoopParams, run=run, max_attempts=1, timeout_s=60),
    Kind(
        name="progress5",
        title="Progress five times",
        params=NoopParams,
        run=progress5,
        max_attempts=1,
        timeout_s=60,
    ),
]
