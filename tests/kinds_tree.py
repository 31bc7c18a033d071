"""Kinds for the tree tests (JOBCAST_KINDS=tests.kinds_tree): `fanout` makes `leaf` children and
gathers them in its continuation; `gather`, submitted with children, reads them when it runs."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from pydantic import BaseModel, ConfigDict

from jobcast import Child, ChildOutcome, JobContext, Kind, PermanentError


class LeafParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: int = 0
    # Steps reported as progress (`total`), each `step_ms` long.
    steps: int = 0
    step_ms: int = 0
    # Fails at once, before any step.
    fail: bool = False


async def leaf(ctx: JobContext, params: LeafParams) -> dict[str, int]:
    if params.fail:
        raise PermanentError(f"leaf {params.value} fails")
    for step in range(params.steps):
        await asyncio.sleep(params.step_ms / 1000)
        await ctx.progress.update(step + 1, params.steps)
    return {"value": params.value}


class FanoutParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    children: int = 5
    steps: int = 0
    # Uneven children: child i takes `steps * (i + 1)` steps.
    uneven: bool = False
    step_ms: int = 0
    # The children that fail, and whether the first failure fails the parent.
    failing: list[int] = []
    fail_fast: bool = False
    # A pause before the children are made.
    before_ms: int = 0


async def fanout(ctx: JobContext, params: FanoutParams) -> None:
    await asyncio.sleep(params.before_ms / 1000)
    await ctx.spawn_many(
        [
            Child(
                "leaf",
                {
                    "value": i,
                    "steps": params.steps * (i + 1) if params.uneven else params.steps,
                    "step_ms": params.step_ms,
                    "fail": i in params.failing,
                },
                fail_fast=params.fail_fast,
            )
            for i in range(params.children)
        ]
    )


def _note_run(path: str, attempt: int) -> None:
    with open(path, "a") as runs:
        runs.write(f"{attempt}\n")


async def gathered(ctx: JobContext, params: Any, children: list[ChildOutcome]) -> dict[str, Any]:
    # Each continuation that runs leaves a line, for the tests that count them.
    if runs := os.environ.get("TREE_RUNS_DIR"):
        await asyncio.to_thread(_note_run, os.path.join(runs, ctx.job_id), ctx.attempt)
    return {
        "states": [child.state for child in children],
        "values": [
            child.result.get("value") if isinstance(child.result, dict) else None for child in children
        ],
        "errors": [child.error["message"] if child.error else None for child in children],
    }


class GatherParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


async def gather(ctx: JobContext, params: GatherParams) -> dict[str, Any]:
    children = await ctx.children()
    counts: dict[str, int] = {}
    for child in children:
        counts[child.state] = counts.get(child.state, 0) + 1
    return {**await gathered(ctx, params, children), "counts": counts}


LEAF = Kind(name="leaf", title="Leaf", params=LeafParams, run=leaf)
FANOUT = Kind(name="fanout", title="Fan out", params=FanoutParams, run=fanout, then=gathered, max_attempts=2)
GATHER = Kind(name="gather", title="Gather", params=GatherParams, run=gather)
