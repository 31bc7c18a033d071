"""A job's children, from the worker's side: making them (`ctx.spawn`, with ids that make a
retried first part make the same children), the continuation that runs once they have ended, and
the loop that publishes the parents' rolled-up bars the progress rate put off."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict
from redis.exceptions import RedisError

from jobcast.backoff import Backoff
from jobcast.errors import SubmitRefused
from jobcast.kind import JobContext, Kind, PermanentError
from jobcast.protocol import Priority, epoch_ms, utcnow
from jobcast.settings import Settings
from jobcast.store.jobs import JobStore, Submission
from jobcast.store.records import JobRecord
from jobcast.tree import BATCH_KIND, Child, ChildOutcome, TreePlace, child_id

log = logging.getLogger(__name__)

IDLE_S = 1.0


class Spawner:
    """`ctx.tree` of one attempt: makes the job's children, and reads how they ended."""

    def __init__(self, store: JobStore, job_id: str, record: JobRecord, kinds: dict[str, Kind]) -> None:
        self._store = store
        self._job_id = job_id
        self._record = record
        self._kinds = kinds
        # The next child's place among the job's children: its id comes from it (jobcast/tree.py).
        self._index = 0
        self.made = 0

    async def spawn_many(self, children: Sequence[Child]) -> list[str]:
        if self._record.after_children is not None:
            raise RuntimeError("only a job's first part makes children; its continuation reads them")
        calls = []
        for child in children:
            kind = self._kinds.get(child.kind)
            given = child.params
            params = given.model_dump(mode="json") if isinstance(given, BaseModel) else dict(given)
            if kind is not None:  # checked here when this worker knows the kind; otherwise by its worker
                params = kind.params.model_validate(params).model_dump(mode="json")
            submission = Submission(
                kind=child.kind,
                params=params,
                priority=Priority(child.priority or self._record.priority),
                max_attempts=kind.max_attempts if kind else 0,
                timeout_s=kind.timeout_s if kind else 0.0,
            )
            calls.append(
                self._store.create_call(
                    child_id(self._job_id, self._index),
                    submission,
                    request_id=self._record.request_id,
                    owner=self._record.owner,
                    client=self._record.client,
                    # The parent was admitted with the owner's limits; its children are its work.
                    tree=TreePlace(parent=self._job_id, fail_fast=child.fail_fast, in_tree=True),
                )
            )
            self._index += 1
        outcomes = await self._store.create_many(calls)
        for outcome in outcomes:
            if isinstance(outcome, SubmitRefused):
                raise outcome
        self.made += len(calls)
        return [call.job_id for call in calls]

    async def outcomes(self) -> list[ChildOutcome]:
        return await self._store.child_outcomes(self._job_id)


async def all_succeeded(ctx: JobContext, params: Any, children: list[ChildOutcome]) -> dict[str, int]:
    """The continuation of a kind that has none: the job succeeds when every child did."""
    not_ok = [child for child in children if not child.succeeded]
    if not_ok:
        raise PermanentError(f"{len(not_ok)} of {len(children)} children did not succeed")
    return {"children": len(children)}


class BatchParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


async def sum_up(ctx: JobContext, params: BatchParams) -> dict[str, int]:
    """A batch without a completion job ends with its items' counts by how they ended."""
    counts = {"items": 0, "succeeded": 0, "failed": 0, "cancelled": 0}
    for child in await ctx.children():
        counts["items"] += 1
        if child.state in counts:
            counts[child.state] += 1
    return counts


# jobcast's own kind, which every worker serves (its jobs are batches' roots).
BATCH = Kind(name=BATCH_KIND, title="Batch", params=BatchParams, run=sum_up, max_attempts=3)


async def publish_rollups(store: JobStore, settings: Settings) -> None:
    """Publish the parents' bars the progress rate put off, when each is due. Every worker runs it;
    the script takes each due bar once."""
    interval_s = 1.0 / settings.progress_rate_hz
    backoff = Backoff(interval_s, 5.0)
    while True:
        try:
            next_ms = await store.publish_due_rollups()
        except RedisError as e:
            log.warning("rolled-up progress not published yet: %s", e)
            await asyncio.sleep(backoff.next_s())
            continue
        backoff.reset()
        # Idle (nothing put off), a second: a bar put off meanwhile is late by at most that much,
        # and an idle deployment's workers cost Redis one call a second each.
        wait_s = IDLE_S if next_ms < 0 else (next_ms - epoch_ms(utcnow())) / 1000
        await asyncio.sleep(min(max(wait_s, 0.005), IDLE_S))
