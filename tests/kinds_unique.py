"""A kind unique while active by one of its params, for the unique-jobs tests
(JOBCAST_KINDS=tests.kinds_unique)."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel, ConfigDict

from jobcast import JobContext, Kind


class SyncParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    account: str
    # Different step lengths make no new job: only `account` makes the key.
    step_ms: int = 50
    steps: int = 20


async def sync(ctx: JobContext, params: SyncParams) -> dict[str, str]:
    for step in range(params.steps):
        await ctx.progress.update(step + 1, params.steps)
        await asyncio.sleep(params.step_ms / 1000)
    return {"account": params.account}


SYNC = Kind(name="sync", title="Sync an account", params=SyncParams, run=sync, unique_by=("account",))
