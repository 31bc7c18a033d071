"""What a bulk action acts on (jobcast/bulk.py): the chosen ids, or every job its filter matches
by walking the listing's indexes (jobcast/queries/listing.py), a chunk at a time; and how many that
is, for the confirmation the dashboard asks before it acts (`POST /api/bulk/count`)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from jobcast.bulk import ACTS_ON, CHUNK, BulkFilter, BulkParams
from jobcast.protocol import epoch_ms
from jobcast.queries.listing import list_jobs
from jobcast.store.jobs import JobStore
from jobcast.store.shards import Shards


async def selected(shards: Shards, params: BulkParams) -> AsyncIterator[tuple[JobStore, list[str]]]:
    """The chosen jobs' ids, a chunk at a time with the store of the shard that holds them, at most
    `params.limit` in all: chosen ids of a shard this deployment lacks name no job and are left out."""
    if params.ids is not None:
        for store, ids in shards.group(params.ids[: params.limit]).items():
            for start in range(0, len(ids), CHUNK):
                yield store, ids[start : start + CHUNK]
        return
    left = params.limit
    for store in shards.stores:
        async for chunk in _matching(store, params, left):
            left -= len(chunk)
            yield store, chunk


async def _matching(store: JobStore, params: BulkParams, left: int) -> AsyncIterator[list[str]]:
    """One shard's jobs that the filter matches, a chunk at a time, at most `left`."""
    wanted = params.filter or BulkFilter()
    states = [wanted.state] if wanted.state else list(ACTS_ON[params.action])
    for state in states:
        if state not in ACTS_ON[params.action]:
            return
        cursor: str | None = None
        while left > 0:
            page = await list_jobs(
                store,
                state=state.value,
                kind=wanted.kind,
                priority=wanted.priority.value if wanted.priority else None,
                owner=wanted.owner,
                limit=min(CHUNK, left),
                cursor=cursor,
                since_ms=epoch_ms(wanted.since) if wanted.since else None,
                until_ms=epoch_ms(wanted.until) if wanted.until else None,
                text=wanted.text,
                delayed=wanted.delayed,
                group=wanted.group,
                top_level=wanted.top_level,
            )
            if page.jobs:
                left -= len(page.jobs)
                yield [job["id"] for job in page.jobs]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor


async def count_selected(shards: Shards, params: BulkParams) -> int:
    """How many jobs the action would go through (at most `params.limit`): as many ids as given,
    or the filter's matches, walked as the action would walk them."""
    if params.ids is not None:
        return min(len(params.ids), params.limit)
    return sum([len(chunk) async for _, chunk in selected(shards, params)])
