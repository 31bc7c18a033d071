"""Typed application keys: everything the request handlers share."""

from __future__ import annotations

import collections
import weakref

from aiohttp import web
from redis.asyncio import Redis

from jobcast.files.local import FileStore
from jobcast.files.storage import Storage
from jobcast.kind import Kind
from jobcast.queries.worker_directory import WorkerDirectory
from jobcast.server.fanout.hub import OpenStreams, Outbox
from jobcast.server.fanout.relay import Relay
from jobcast.server.transports.websocket.socket import WebSockets
from jobcast.settings import Settings
from jobcast.store.jobs import JobStore
from jobcast.store.shards import Shards

SETTINGS = web.AppKey("settings", Settings)
REDIS = web.AppKey("redis", Redis)
# Shard 0's store: what lives on one shard only (workers, schedules, API keys, revocations).
STORE = web.AppKey("store", JobStore)
# Every shard's store (one, unless JOBCAST_REDIS_SHARDS says more): jobs and what spans them.
SHARDS = web.AppKey("shards", Shards)
RELAY = web.AppKey("relay", Relay)
FILES = web.AppKey("files", FileStore)
STORAGE = web.AppKey("storage", Storage)
WORKERS = web.AppKey("workers", WorkerDirectory)
# The job kinds with the operator's overrides applied.
KINDS = web.AppKey("kinds", dict[str, Kind])
# Open streams, so shutdown can end them cleanly: SSE outboxes (the client reconnects elsewhere)
# and WebSockets (closed with 1001).
OUTBOXES = web.AppKey("outboxes", weakref.WeakSet[Outbox])
WEBSOCKETS = web.AppKey("websockets", WebSockets)
STREAMS = web.AppKey("streams", OpenStreams)
# Jobs submitted through this process, by kind (for /metrics).
SUBMITTED_BY_KIND = web.AppKey("submitted", collections.Counter[str])
