"""Which shard's store serves a request: a job's own (its id names it), an owner's, or all of them
(jobcast/store/shards.py has the layout)."""

from __future__ import annotations

from aiohttp import web

from jobcast.errors import JobNotFound
from jobcast.server.keys import SHARDS
from jobcast.store.jobs import JobStore


def job_store(app: web.Application, job_id: str) -> JobStore:
    """The store that holds `job_id`; JobNotFound (404) when its id names a shard this deployment
    lacks."""
    store = app[SHARDS].of(job_id)
    if store is None:
        raise JobNotFound(job_id)
    return store


def stores_of(app: web.Application, owner: str | None = None) -> list[JobStore]:
    """The stores a query reads: one owner's jobs are all on the owner's shard; else every shard."""
    shards = app[SHARDS]
    return [shards.named(owner)] if owner is not None else shards.stores
