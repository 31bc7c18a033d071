"""Configuration: environment first, explicit values (flags, tests) over it."""

from __future__ import annotations

import pytest

from jobcast.settings import Settings


def test_explicit_redis_url_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://from-env:1/0")
    assert Settings().redis_url == "redis://from-env:1/0"
    assert Settings(redis_url="redis://explicit:2/0").redis_url == "redis://explicit:2/0"


def test_jobcast_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("JOBCAST_REDIS_URL", "redis://prefixed:3/0")
    monkeypatch.setenv("JOBCAST_WATCHER_BUFFER", "64")
    settings = Settings()
    assert settings.redis_url == "redis://prefixed:3/0" and settings.watcher_buffer == 64


async def test_the_suite_talks_to_its_own_redis(redis, redis_server) -> None:
    info = await redis.info("server")
    assert info["tcp_port"] == redis_server.port
    assert info["process_id"] == redis_server.process.pid


def test_the_configuration_reference_lists_every_setting_as_it_is() -> None:
    from pathlib import Path

    from jobcast.settings import Settings, configuration_reference

    reference = (Path(__file__).resolve().parent.parent / "docs" / "configuration.md").read_text()
    assert reference == configuration_reference(), (
        "regenerate: python -m jobcast.settings > docs/configuration.md"
    )
    for name in Settings.model_fields:
        assert f"JOBCAST_{name.upper()}" in reference or name == "redis_url"
