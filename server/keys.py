"""Typed application keys: everything the request handlers share."""

from __future__ import annotations

import weakref

from aiohttp import web
from arq.connections import ArqRedis

from jobcast.settings import Settings
from jobcast.store import JobStore
from server.hub import Outbox
from server.relay import Relay

SETTINGS = web.AppKey("settings", Settings)
REDIS = web.AppKey("redis", ArqRedis)
STORE = web.AppKey("store", JobStore)
RELAY = web.AppKey("relay", Relay)
# Open streams, so shutdown can end them cleanly (SSE) or close them with 1001 (WebSocket).
OUTBOXES = web.AppKey("outboxes", weakref.WeakSet[Outbox])
SOCKETS = web.AppKey("sockets", weakref.WeakSet[web.WebSocketResponse])
