"""The aiohttp application factory."""

from __future__ import annotations

import asyncio
import collections
import re
import weakref
from collections.abc import AsyncIterator
from functools import partial

from aiohttp import web
from redis.asyncio import Redis

from jobcast.files.storage import create_storage
from jobcast.kind import configure
from jobcast.queries.worker_directory import WorkerDirectory
from jobcast.redis.client import create_redis
from jobcast.registry import discover_kinds
from jobcast.server.api import batches, compat, control, queries, results, schedules, submit
from jobcast.server.api import bulk_requests as bulk
from jobcast.server.api import jobs as api
from jobcast.server.api import kind_pausing as pausing
from jobcast.server.api.links import job_links
from jobcast.server.fanout.broker import RedisBroker
from jobcast.server.fanout.hub import OpenStreams
from jobcast.server.fanout.queue_places import QueuePlaces
from jobcast.server.fanout.relay import Relay
from jobcast.server.http.forwarded import PROXIES, TrustedProxies
from jobcast.server.http.request_ids import send_request_id
from jobcast.server.keys import (
    FILES,
    KINDS,
    OUTBOXES,
    REDIS,
    RELAY,
    SETTINGS,
    SHARDS,
    STORAGE,
    STORE,
    STREAMS,
    SUBMITTED_BY_KIND,
    WEBSOCKETS,
    WORKERS,
)
from jobcast.server.middleware import jobcast_middleware
from jobcast.server.observability import metrics
from jobcast.server.observability.metrics import setup_metrics
from jobcast.server.pages import failures as failures_page
from jobcast.server.pages import kind_intake, login
from jobcast.server.pages import scheduled as scheduled_page
from jobcast.server.pages import schedules as schedules_page
from jobcast.server.pages import views as pages
from jobcast.server.pages import workers as workers_page
from jobcast.server.pages.views import setup_pages
from jobcast.server.security import tokens
from jobcast.server.security.auth import AUTH, STREAM_COUNTS, Auth, StreamCounts, send_cookie
from jobcast.server.security.headers import security_headers
from jobcast.server.security.origins import send_cors_headers
from jobcast.server.security.tokens import TOKENS, StreamTokens
from jobcast.server.transports import output, sse, ws
from jobcast.server.transports.websocket.socket import WebSockets
from jobcast.settings import URL_PREFIX, Settings
from jobcast.store.reaper import Reaper
from jobcast.store.shards import Shards
from jobcast.tasks import cancel_and_wait


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]

    def redis_for(prefix: str) -> Redis:
        return create_redis(
            settings.redis_url,
            retries=settings.redis_retries,
            max_connections=settings.redis_max_connections,
            key_prefix=prefix,
        )

    links = partial(job_links, settings.url_prefix, app[TOKENS])
    shards = Shards.connect(settings, settings.redis_shards, redis_for, links)
    app[SHARDS] = shards
    app[STORE] = shards.home
    app[REDIS] = shards.home.redis
    app[WORKERS] = WorkerDirectory(app[STORE], worker_ttl_s=settings.worker_ttl_s)
    yield
    await shards.aclose()


async def relay_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    # At most half an outbox, so a page of history never overflows the outbox it is queued in.
    page = max(1, min(settings.replay_page_events, settings.watcher_buffer // 2))
    relay = Relay(RedisBroker(settings.redis_url, app[SHARDS]), page_size=page)
    app[RELAY] = relay
    await relay.start()
    yield
    await relay.stop()


async def heartbeat_ctx(app: web.Application) -> AsyncIterator[None]:
    outboxes = app[OUTBOXES]
    task = asyncio.create_task(sse.beat(outboxes, app[SETTINGS].heartbeat_s), name="sse-heartbeats")
    yield
    await cancel_and_wait(task)


async def websockets_ctx(app: web.Application) -> AsyncIterator[None]:
    sockets = app[WEBSOCKETS]
    task = asyncio.create_task(sockets.ping(app[SETTINGS].ws_ping_interval_s), name="ws-pings")
    yield
    await cancel_and_wait(task)
    await sockets.stop()


async def storage_ctx(app: web.Application) -> AsyncIterator[None]:
    await app[STORAGE].start()
    yield
    await app[STORAGE].close()


async def reaper_ctx(app: web.Application) -> AsyncIterator[None]:
    """Web processes look for jobs whose worker is gone too, on every shard: with no worker alive,
    nobody else would tell their watchers."""
    interval_s = app[SETTINGS].reaper_interval_s
    tasks = [
        asyncio.create_task(Reaper(store).run(interval_s), name=f"reaper-{number}")
        for number, store in enumerate(app[SHARDS].stores)
    ]
    yield
    for task in tasks:
        await cancel_and_wait(task)


async def queue_places_ctx(app: web.Application) -> AsyncIterator[None]:
    """Watchers of waiting jobs hear their place in the queue (server/fanout/queue_places.py)."""
    interval_s = app[SETTINGS].queue_place_interval_s
    if not interval_s:
        yield
        return
    queue_places = QueuePlaces(app[RELAY].hub, app[SHARDS])
    task = asyncio.create_task(queue_places.run(interval_s), name="queue-places")
    yield
    await cancel_and_wait(task)


async def close_streams(app: web.Application) -> None:
    """Before connections are drained: end SSE streams (clients reconnect and resume elsewhere)
    and close WebSockets with 1001 going away."""
    outboxes = app[OUTBOXES]
    for outbox in list(outboxes):
        outbox.close("shutdown")
    await app[WEBSOCKETS].close()


def setup(
    host: web.Application, settings: Settings | None = None, *, prefix: str = "/jobs"
) -> web.Application:
    """Mount jobcast (its API, streams and pages) into an aiohttp app of your own, under `prefix`.

    jobcast's Redis pool, relay and heartbeats join the host app's startup and cleanup, and every
    link it gives (snapshots, pages, `Location`) starts with `prefix`. Returns jobcast's sub-app.
    The host app's `client_max_size` applies to jobcast's requests too: raise it for uploads.
    """
    if not prefix or not re.fullmatch(URL_PREFIX, prefix):
        raise ValueError(f"prefix must be a path such as '/jobs', not {prefix!r}")
    app = create_app((settings or Settings()).model_copy(update={"url_prefix": prefix}))
    host.add_subapp(prefix, app)
    return app


def create_app(settings: Settings | None = None) -> web.Application:
    settings = settings or Settings()
    app = web.Application(
        middlewares=[jobcast_middleware],
        client_max_size=settings.max_body_bytes,
    )
    app.on_response_prepare.append(send_request_id)
    app.on_response_prepare.append(send_cookie)
    app.on_response_prepare.append(security_headers)
    app.on_response_prepare.append(send_cors_headers)
    app[AUTH] = Auth(settings)
    app[PROXIES] = TrustedProxies(settings.trusted_proxies, settings.https)
    app[TOKENS] = StreamTokens(settings)
    app[STREAM_COUNTS] = StreamCounts(
        settings.max_streams_per_owner if settings.secret is not None else 0,
        settings.anonymous_owners_per_address,
    )
    app[SETTINGS] = settings
    app[KINDS] = configure(discover_kinds(settings.kinds), settings)
    app[STORAGE] = storage = create_storage(settings)
    app[FILES] = storage.files
    app[OUTBOXES] = weakref.WeakSet()
    app[WEBSOCKETS] = WebSockets()
    app[STREAMS] = OpenStreams()
    app[SUBMITTED_BY_KIND] = collections.Counter()
    app.cleanup_ctx.append(storage_ctx)
    app.cleanup_ctx.append(redis_ctx)
    app.cleanup_ctx.append(relay_ctx)
    app.cleanup_ctx.append(heartbeat_ctx)
    app.cleanup_ctx.append(websockets_ctx)
    app.cleanup_ctx.append(reaper_ctx)
    app.cleanup_ctx.append(queue_places_ctx)
    app.on_shutdown.append(close_streams)
    # Every module's routes, named here rather than registered by importing it.
    modules = (
        api,
        submit,
        batches,
        control,
        pausing,
        schedules,
        bulk,
        queries,
        results,
        sse,
        output,
        ws,
        tokens,
        compat,
        metrics,
        pages,
        login,
        workers_page,
        failures_page,
        kind_intake,
        scheduled_page,
        schedules_page,
    )
    for module in modules:
        app.add_routes(module.routes)
    setup_pages(app)
    setup_metrics(app)
    return app
