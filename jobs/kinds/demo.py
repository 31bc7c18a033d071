"""`demo`: counts through steps at a fixed pace. Tests, benchmarks and newcomers use it."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel, ConfigDict, Field

from jobcast.kind import JobContext, Kind


class DemoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: int = Field(default=20, ge=1, le=1_000_000, description="How many steps to count through.")
    step_ms: int = Field(
        default=100, ge=0, le=60_000, title="Step (ms)", description="Milliseconds each step takes."
    )
    fail_at_step: int | None = Field(default=None, ge=1, description="Raise an error at this step.")
    fail_attempts: int | None = Field(
        default=None, ge=1, description="How many attempts fail at fail_at_step (default: all)."
    )


class DemoFailure(Exception):
    """The failure the demo was asked to produce."""


async def run(ctx: JobContext, params: DemoParams) -> dict[str, int]:
    fails_now = params.fail_attempts is None or ctx.attempt <= params.fail_attempts
    step = 0
    try:
        for step in range(1, params.steps + 1):
            if params.step_ms:
                await asyncio.sleep(params.step_ms / 1000)
            if step == params.fail_at_step and fails_now:
                raise DemoFailure(f"failed at step {step} as asked")
            await ctx.progress.update(step, params.steps, f"step {step} of {params.steps}")
    except asyncio.CancelledError:
        # Job code sees a cancel (or a worker shutdown) here and can clean up; the demo says where
        # it stopped, and watchers see that before the `cancelled` event.
        await ctx.progress.update(step - 1, params.steps, f"stopped before step {step}")
        raise
    return {"steps": params.steps}


KIND = Kind(
    name="demo",
    title="Demo: count through steps",
    description="Counts through steps at a fixed pace; can be told to fail, to try retries.",
    params=DemoParams,
    run=run,
    max_attempts=3,
)
