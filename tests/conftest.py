"""Fixtures: a private Redis server on a free port (so fault tests can kill and restart it), the
real app in-process, and real `jobcast worker` / `jobcast web` processes."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bench.chromium import CHROMIUM, CHROMIUM_ARGS
from jobcast.redis.client import create_redis
from jobcast.redis.embedded import RedisProcess
from jobcast.server.app import create_app
from jobcast.server.http import server as http
from jobcast.server.keys import SETTINGS
from jobcast.settings import ProcessSettings, Settings
from tests.helpers import JobcastProcess
from tests.redis_cluster import LocalCluster


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path_factory.mktemp("redis"), server=ProcessSettings().redis_server)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_up(redis_server: RedisProcess) -> RedisProcess:
    """The Redis server, started again if an earlier test left it stopped."""
    if redis_server.process is None:
        redis_server.start()
    return redis_server


# JOBCAST_TEST_REDIS=cluster: the tests' settings name a Redis Cluster the suite starts (three
# primaries with a replica each) instead of its single server, and every test's prefix is a hash
# tag. Scripts on a cluster declare themselves, so Redis refuses any call that would reach a key
# outside the test's slot: the tests that run this way check every script they call for it.
ON_CLUSTER = os.environ.get("JOBCAST_TEST_REDIS") == "cluster"


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = LocalCluster(tmp_path_factory.mktemp("cluster"))
    try:
        asyncio.run(cluster.form())
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def redis_url(request: pytest.FixtureRequest, redis_up: RedisProcess) -> str:
    """The Redis the test's settings name: the suite's server, or its cluster."""
    return request.getfixturevalue("redis_cluster").url if ON_CLUSTER else redis_up.url


@pytest.fixture
def settings(redis_url: str, tmp_path: Path) -> Settings:
    # A prefix of its own per test: tests never see each other's jobs or events.
    prefix = f"t{uuid.uuid4().hex[:8]}"
    return Settings(
        redis_url=redis_url,
        key_prefix="{" + prefix + "}" if ON_CLUSTER else prefix,
        heartbeat_s=1.0,
        shutdown_grace_s=5.0,
        retry_base_s=0.05,
        retry_max_s=0.2,
        files_dir=tmp_path / "files",
        # Places in line are live-only `queue` events, once a second, for any job that waits while
        # watched: streams that assert their exact events would get them whenever timing let a
        # pass fall in a wait. Their own tests turn them on (PLACES).
        queue_place_interval_s=0,
    )


@pytest.fixture
def env(settings: Settings) -> dict[str, str]:
    """The environment that gives jobcast processes the test's settings."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("JOBCAST_") and k != "REDIS_URL"}
    base.update(
        REDIS_URL=settings.redis_url,
        JOBCAST_KEY_PREFIX=settings.key_prefix,
        JOBCAST_HEARTBEAT_S=str(settings.heartbeat_s),
        JOBCAST_SHUTDOWN_GRACE_S=str(settings.shutdown_grace_s),
        JOBCAST_RETRY_BASE_S=str(settings.retry_base_s),
        JOBCAST_RETRY_MAX_S=str(settings.retry_max_s),
        JOBCAST_FILES_DIR=str(settings.files_dir),
        JOBCAST_QUEUE_PLACE_INTERVAL_S=str(settings.queue_place_interval_s),
        PYTHONUNBUFFERED="1",
    )
    return base


@pytest.fixture
def spawn(env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., JobcastProcess]]:
    """Start real jobcast processes; all are stopped when the test ends."""
    started: list[JobcastProcess] = []

    def start(
        command: str,
        port: int | None = None,
        *,
        python: str = sys.executable,
        cwd: Path | None = None,
        prefix: tuple[str, ...] = (),
        host: str = "127.0.0.1",
        **extra_env: str,
    ) -> JobcastProcess:
        proc = JobcastProcess(
            command,
            {**env, **extra_env},
            tmp_path,
            port=port,
            python=python,
            cwd=cwd,
            prefix=prefix,
            host=host,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()
    # No API key, signed token or cookie, and no secret, in any line a process logged.
    # (A secret of a few characters, which jobcast refuses at start, would match any log.)
    secrets = {v for proc in started for k, v in proc.env.items() if k == "JOBCAST_SECRET" and len(v) >= 8}
    for proc in started:
        log = proc.log()
        leaked = SECRET_SHAPES.findall(log) + [s for s in secrets if s in log]
        assert not leaked, f"{proc.command} logged secrets: {leaked[:3]}"


# API keys (`jc_…`, see `jobcast new-key`) and itsdangerous-signed stream tokens and session cookies
# (base64 JSON `{"…`, a timestamp and a signature).
SECRET_SHAPES = re.compile(r"jc_[A-Za-z0-9_-]{20,}|eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{20,}")


@pytest.fixture
def worker(spawn: Callable[..., JobcastProcess]) -> JobcastProcess:
    return spawn("worker")


class ServedAsInProduction(TestServer):
    """An app served as `jobcast web` serves it (server/http/server.py: its request handler, the
    header-read timeout, SSE streams that leave aiohttp once caught up), not by aiohttp's plain
    runner: what the tests see is what users get."""

    async def _make_runner(self, **kwargs: Any) -> web.BaseRunner:
        settings = self.app[SETTINGS]
        return http.Runner(
            self.app,
            header_timeout_s=settings.header_timeout_s,
            gc_after_connections=settings.gc_after_connections,
            **kwargs,
        )


@pytest.fixture
def aiohttp_client(aiohttp_client):  # type: ignore[no-untyped-def]
    """pytest-aiohttp's, with every jobcast app served as in production."""

    async def serve(app: Any, **kwargs: Any) -> TestClient:
        if isinstance(app, web.Application) and SETTINGS in app:
            app = ServedAsInProduction(app)
        return await aiohttp_client(app, **kwargs)

    return serve


@pytest.fixture
async def client(aiohttp_client, settings: Settings) -> TestClient:  # type: ignore[no-untyped-def]
    return await aiohttp_client(create_app(settings))


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[object]:
    r = create_redis(settings.redis_url, key_prefix=settings.redis_key_prefix)
    yield r
    await r.aclose()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """Debian's Chromium, driven by Playwright (scripts/test installs it when it is missing)."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


@pytest.fixture
async def page(browser: Any) -> AsyncIterator[Any]:
    """A fresh browser page; the test fails if the page logs a JS error."""
    context = await browser.new_context()
    tab = await context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    await context.close()
    assert errors == [], errors
