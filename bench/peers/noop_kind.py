"""A jobcast kind that does nothing, for the job-throughput benchmark (bench/jobs.py): what is
measured is the queue's own cost per job, as arq's and saq's no-op functions measure theirs."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from jobcast.kind import JobContext, Kind


class NoopParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


async def run(ctx: JobContext, params: NoopParams) -> None:
    return None


KIND = Kind(name="noop", title="Nothing", params=NoopParams, run=run, max_attempts=1, timeout_s=60)
