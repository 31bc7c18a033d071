"""Which shard's store serves a request about one job: the one its id names (jobcast/store/shards.py
has the layout). What spans jobs reads every shard (jobcast/queries/across_shards.py)."""

from __future__ import annotations

from aiohttp import web

from jobcast.errors import JobNotFound
from jobcast.server.keys import SHARDS
from jobcast.store.jobs import JobStore
from jobcast.store.shards import Shards


def job_store(app: web.Application, job_id: str) -> JobStore:
    """The store that holds `job_id`; JobNotFound (404) when its id names a shard this deployment
    lacks."""
    return store_of(app[SHARDS], job_id)


def store_of(shards: Shards, job_id: str) -> JobStore:
    """As `job_store`, for what holds the shards rather than the app (a WebSocket connection)."""
    store = shards.of(job_id)
    if store is None:
        raise JobNotFound(job_id)
    return store
