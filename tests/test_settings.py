"""Configuration: environment first, explicit values (flags, tests) over it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from pydantic import AliasChoices

from jobcast.settings import ProcessSettings, Settings
from tests.helpers import product_findings


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
    from jobcast.settings import configuration_reference

    reference = (Path(__file__).resolve().parent.parent / "docs" / "configuration.md").read_text()
    assert reference == configuration_reference(), (
        "regenerate: python -m jobcast.settings > docs/configuration.md"
    )
    for name, field in Settings.model_fields.items():
        # A setting read under names of its own (REDIS_URL, OpenTelemetry's OTEL_*) is listed by one.
        alias = field.validation_alias
        names = (
            [str(c) for c in alias.choices]
            if isinstance(alias, AliasChoices)
            else [f"JOBCAST_{name.upper()}"]
        )
        assert any(f"`{n}`" in reference for n in names), (name, names)


def environment_reads(source: str) -> list[str]:
    """Each place a module reads a named environment variable: `os.environ.get(...)`,
    `os.getenv(...)`, `os.environ[...]`, `... in os.environ`, `os.environ.setdefault(...)`.
    Copying the whole environment for a child process (`dict(os.environ)`) names none."""
    found = []
    for node in ast.walk(ast.parse(source)):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            if name.endswith(("environ.get", "environ.setdefault", "environ.pop", "getenv")):
                found.append(f"{line}: {name}")
        elif (isinstance(node, ast.Subscript) and ast.unparse(node.value).endswith("environ")) or (
            isinstance(node, ast.Compare)
            and any(ast.unparse(c).endswith("environ") for c in node.comparators)
        ):
            found.append(f"{line}: {ast.unparse(node)}")
    return found


def test_the_product_reads_the_environment_only_through_settings() -> None:
    reads = product_findings(environment_reads, skip=("jobcast/settings.py",))
    assert reads == {}, "add a field to jobcast/settings.py and read it from Settings instead"


@pytest.mark.parametrize(
    "line",
    [
        'os.environ.get("JOBCAST_X", "1")',
        'os.getenv("JOBCAST_X")',
        'os.environ["JOBCAST_X"]',
        '"JOBCAST_X" in os.environ',
        'environ.get("X")',
    ],
)
def test_an_environment_read_is_caught(line: str) -> None:
    assert environment_reads(f"import os\nfrom os import environ\nx = {line}\n") != []


def test_copying_the_environment_for_a_child_is_no_read() -> None:
    assert environment_reads("import os\nenv = dict(os.environ)\nenv['REDIS_URL'] = 'x'\n") == []


def test_the_process_settings_read_the_variables_they_replace(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in (("LOG_FORMAT", "json"), ("UVLOOP", "0"), ("REDIS_SERVER", "/x"), ("URL", "http://h")):
        monkeypatch.setenv(f"JOBCAST_{name}", value)
    monkeypatch.setenv("JOBCAST_QUEUE_NAME", "old:queue")
    settings = Settings()
    assert (settings.log_format, settings.uvloop, settings.redis_server, settings.url) == (
        "json",
        False,
        "/x",
        "http://h",
    )
    assert settings.queue_name == "old:queue"
    assert ProcessSettings().log_format == "json"
