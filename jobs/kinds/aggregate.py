"""`aggregate`: statistics per group over millions of generated rows, in a process pool.

CPU-bound work must not run on the worker's event loop (it would stall every other job's
progress and the lease renewals). The rows are split into chunks that run in the worker's
process pool, in parallel; progress counts the rows of finished chunks, and the partial
statistics are merged as they arrive.

With `shards`, the rows are split across child jobs instead (any worker runs each, each in its own
process pool) and merged in the continuation: the same statistics as one job computes, with the
load spread over every worker and one bar rolled up from the shards'.
"""

from __future__ import annotations

import asyncio
import math
import random
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from jobcast.kind import JobContext, Kind, PermanentError
from jobcast.tree import Child, ChildOutcome

# Partial statistics of one group: count, sum, sum of squares, min, max.
Partial = list[float]


# Measured on the 2-core bench machine (about 0.7 s of a core per million rows), rounded up.
CPU_S_PER_ROW = 1e-6


class AggregateParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # About 0.7 s of a core per million rows: the cap keeps one request's cost to half a minute of
    # a core (it was 100M: over a minute of both cores), and `cost` counts it against the owner's
    # hourly CPU budget (JOBCAST_CPU_BUDGET_S_PER_HOUR).
    rows: int = Field(default=1_000_000, ge=1, le=50_000_000, description="How many rows to generate.")
    groups: int = Field(default=8, ge=1, le=1000, description="How many groups the rows fall into.")
    chunk_rows: int = Field(default=100_000, ge=1000, le=10_000_000, description="Rows per pool task.")
    seed: int = Field(default=1, description="The same seed gives the same rows.")
    shards: int = Field(
        default=0,
        ge=0,
        le=64,
        description="Split the rows across this many child jobs, merged once they have all ended "
        "(0: one job).",
    )
    # A shard's: the index of its first chunk among the whole job's (the rows are the same as one
    # job makes), and its answer as partial sums to merge rather than statistics.
    first_chunk: int = Field(
        default=0, ge=0, description="A shard's first chunk (set by the job that splits)."
    )
    partial: bool = Field(default=False, description="Answer with partial sums (a shard's).")


def aggregate_chunk(seed: int, index: int, count: int, groups: int) -> dict[int, Partial]:
    """Runs in a pool process: generate `count` rows and summarize them per group."""
    rng = random.Random(seed * 1_000_003 + index)
    stats: dict[int, Partial] = {}
    for _ in range(count):
        group = rng.randrange(groups)
        value = rng.gauss(100.0 + group * 10.0, 15.0)
        s = stats.get(group)
        if s is None:
            stats[group] = [1, value, value * value, value, value]
        else:
            s[0] += 1
            s[1] += value
            s[2] += value * value
            if value < s[3]:
                s[3] = value
            if value > s[4]:
                s[4] = value
    return stats


def merge(total: dict[int, Partial], part: dict[int, Partial]) -> None:
    for group, s in part.items():
        t = total.get(group)
        if t is None:
            total[group] = list(s)
        else:
            t[0] += s[0]
            t[1] += s[1]
            t[2] += s[2]
            t[3] = min(t[3], s[3])
            t[4] = max(t[4], s[4])


def summarize(total: dict[int, Partial]) -> dict[str, dict[str, float]]:
    out = {}
    for group in sorted(total):
        n, s, sq, lo, hi = total[group]
        mean = s / n
        out[str(group)] = {
            "count": int(n),
            "mean": round(mean, 4),
            "stddev": round(math.sqrt(max(sq / n - mean * mean, 0.0)), 4),
            "min": round(lo, 4),
            "max": round(hi, 4),
        }
    return out


async def split(ctx: JobContext, params: AggregateParams) -> None:
    """Spawn the shards, each whole chunks of the rows, in order."""
    chunks = math.ceil(params.rows / params.chunk_rows)
    per = math.ceil(chunks / params.shards)
    shards = []
    for first in range(0, chunks, per):
        rows = min(per * params.chunk_rows, params.rows - first * params.chunk_rows)
        shard = params.model_copy(update={"rows": rows, "shards": 0, "first_chunk": first, "partial": True})
        shards.append(Child(KIND_NAME, shard.model_dump(), fail_fast=True))
    await ctx.spawn_many(shards)
    ctx.log.info("split %d rows into %d shards", params.rows, len(shards))


async def merge_shards(
    ctx: JobContext, params: AggregateParams, shards: list[ChildOutcome]
) -> dict[str, Any]:
    """The continuation: every shard's partial sums, merged (a failed shard failed the job)."""
    total: dict[int, Partial] = {}
    rows = 0
    for shard in shards:
        if not shard.succeeded:
            raise PermanentError(f"shard {shard.id} {shard.state}")
        merge(total, {int(group): part for group, part in shard.result["partials"].items()})
        rows += shard.result["rows"]
    ctx.log.info("merged %d shards: %d rows into %d groups", len(shards), rows, len(total))
    return {"rows": rows, "groups": summarize(total), "shards": len(shards)}


async def run(ctx: JobContext, params: AggregateParams) -> dict[str, Any] | None:
    if params.shards > 1:
        await split(ctx, params)
        return None
    loop = asyncio.get_running_loop()
    sizes = [
        min(params.chunk_rows, params.rows - start) for start in range(0, params.rows, params.chunk_rows)
    ]
    futures = [
        loop.run_in_executor(ctx.cpu, aggregate_chunk, params.seed, params.first_chunk + i, n, params.groups)
        for i, n in enumerate(sizes)
    ]
    ctx.log.info("split %d rows into %d chunks on the process pool", params.rows, len(sizes))
    total: dict[int, Partial] = {}
    done_rows = 0
    try:
        for merged, finished in enumerate(asyncio.as_completed(futures), 1):
            part = await finished
            merge(total, part)
            done_rows += sum(int(s[0]) for s in part.values())
            ctx.log.debug("merged chunk %d of %d (%d groups so far)", merged, len(sizes), len(total))
            await ctx.progress.update(done_rows, params.rows, f"{done_rows:,} of {params.rows:,} rows")
    finally:
        # Cancelled or failed: chunks not started yet never start.
        for future in futures:
            future.cancel()
    ctx.log.info("aggregated %d rows into %d groups", done_rows, len(total))
    if params.partial:
        return {"rows": done_rows, "partials": {str(group): part for group, part in total.items()}}
    return {"rows": done_rows, "groups": summarize(total)}


KIND_NAME = "aggregate"
KIND = Kind(
    name=KIND_NAME,
    title="Aggregate: statistics over millions of rows",
    description="CPU-bound statistics per group, computed in a process pool.",
    params=AggregateParams,
    run=run,
    then=merge_shards,
    max_attempts=2,
    timeout_s=3600,
    cost=lambda params: params.rows * CPU_S_PER_ROW,
)
