"""Running bulk actions in a worker: the built-in `bulk` kind every worker serves (its params live in
jobcast/bulk.py, which the web server shares)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jobcast.bulk import ACTS_ON, NAME, BulkFilter, BulkParams, matches_none
from jobcast.errors import QuotaExceeded, SubmitRefused
from jobcast.files.storage import Storage
from jobcast.jobs.upkeep.janitor import forget_finished
from jobcast.kind import JobContext, Kind, PermanentError
from jobcast.queries.bulk_selection import selected
from jobcast.store.jobs import JobStore, Submission
from jobcast.store.shards import Shards


class BulkActions:
    """What a bulk job does, with the worker's stores (every shard's), file storage and kinds."""

    def __init__(self, shards: Shards, storage: Storage, kinds: Mapping[str, Kind[Any]]) -> None:
        self.shards = shards
        self.storage = storage
        self.kinds = kinds

    async def run(self, ctx: JobContext, params: BulkParams) -> dict[str, Any]:
        if matches_none(params) and params.filter is not None:
            raise PermanentError(f"{params.action} never applies to {params.filter.state} jobs")
        act = {"retry": self.retry, "cancel": self.cancel, "delete": self.delete}[params.action]
        total = await self.how_many(params)
        seen = done = 0
        async for store, chosen in selected(self.shards, params):
            # A cancel of every running job finds this one too: it never acts on itself.
            ids = [job_id for job_id in chosen if job_id != ctx.job_id]
            done += await act(store, ids) if ids else 0
            seen += len(ids)
            message = f"{params.action}: {done} of {seen} jobs"
            await ctx.progress.update(seen, max(total, seen) if total is not None else None, message)
        return {"action": params.action, "matched": seen, "done": done, "skipped": seen - done}

    async def how_many(self, params: BulkParams) -> int | None:
        """How many jobs the action will go through, when that is cheap to know (ids, or a
        filter by state alone: the state indexes' sizes); else None (progress without a total)."""
        if params.ids is not None:
            return min(len(params.ids), params.limit)
        wanted = params.filter or BulkFilter()
        if wanted.kind or wanted.priority or wanted.owner or wanted.text or wanted.delayed or wanted.group:
            return None
        states = [wanted.state] if wanted.state else ACTS_ON[params.action]
        sizes = []
        for store in self.shards.stores:
            async with store.redis.pipeline(transaction=False) as pipe:
                for state in states:
                    pipe.zcard(store.keys.index_state(state.value))
                sizes += await pipe.execute()
        return min(sum(sizes), params.limit)

    async def cancel(self, store: JobStore, ids: list[str]) -> int:
        done = 0
        for job_id in ids:
            outcome = await store.cancel(job_id)
            done += outcome.cancelled or outcome.requested
        return done

    async def delete(self, store: JobStore, ids: list[str]) -> int:
        gone, _ = await forget_finished(store, self.storage, ids)
        return len(gone)

    async def retry(self, store: JobStore, ids: list[str]) -> int:
        """Each failed or cancelled job submitted again as a new job, linked both ways (as
        `POST /api/jobs/{id}/retry`), on its shard; the create script refuses one that was retried
        already."""
        olds = await store.snapshots(ids)
        calls, copied = [], []
        for old in olds:
            kind = self.kinds.get(old.get("kind") or "")
            if kind is None or old.get("state") not in ACTS_ON["retry"]:
                continue
            cost = kind.estimated_cost(kind.params.model_validate(old["params"]))
            submission = Submission.again(old, max_attempts=kind.max_attempts, cost_s=cost)
            new_id = store.new_ids(1)[0]
            if kind.takes_upload:
                copied.append(new_id)
                await self.storage.copy_uploads(old["id"], new_id)
                try:
                    await store.quota.charge(new_id, old["owner"], await self.storage.keep_uploads(new_id))
                except QuotaExceeded:
                    continue  # the owner's disk quota is full: this one is skipped, its copy deleted
            calls.append(
                store.create_call(
                    new_id,
                    submission,
                    retry_of=old["id"],
                    owner=old["owner"],
                    submitted_by=old["submitted_by"],
                )
            )
        outcomes = await store.create_many(calls) if calls else []
        refused = [c.job_id for c, o in zip(calls, outcomes, strict=True) if isinstance(o, SubmitRefused)]
        created = {c.job_id for c in calls} - set(refused)
        if discard := [job_id for job_id in copied if job_id not in created]:
            await self.storage.delete(discard)
            await store.quota.refund(discard)
        return len(calls) - len(refused)


def bulk_kind(actions: BulkActions) -> Kind[BulkParams]:
    return Kind(
        name=NAME,
        title="Bulk action",
        params=BulkParams,
        run=actions.run,
        # Each step is safe to repeat: a retried attempt skips what the first one did.
        max_attempts=3,
        timeout_s=3600.0,
        description="Retry, cancel or delete many jobs (the dashboard's bulk actions)",
    )
