"""Typed application keys: everything the request handlers share."""

from __future__ import annotations

import collections
import weakref

from aiohttp import web
from redis.asyncio import Redis

from jobcast.files import FileStore
from jobcast.kind import Kind
from jobcast.server.hub import OpenStreams, Outbox
from jobcast.server.relay import Relay
from jobcast.server.websocket.socket import WebSockets
from jobcast.settings import Settings
from jobcast.storage import Storage
from jobcast.store import JobStore
from jobcast.workers import WorkerDirectory

SETTINGS = web.AppKey("settings", Settings)
REDIS = web.AppKey("redis", Redis)
STORE = web.AppKey("store", JobStore)
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
