"""Kinds with execution limits, for the limits tests (JOBCAST_KINDS=tests.kinds_limits):
`limited` runs at most two at once across the deployment, `metered` starts at most five a second."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel, ConfigDict

from jobcast import JobContext, Kind
from jobcast.limits import Rate


class HoldParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hold_ms: int = 0


async def hold(ctx: JobContext, params: HoldParams) -> None:
    await ctx.progress.update(0, 1)
    await asyncio.sleep(params.hold_ms / 1000)


LIMITED = Kind(name="limited", title="Limited to two", params=HoldParams, run=hold, max_running=2)
METERED = Kind(name="metered", title="Five a second", params=HoldParams, run=hold, rate_limit=Rate(5, 1.0))
