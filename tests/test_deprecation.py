"""Code written against 0.1.0 keeps working: the public imports are where they were, and a
package that replaced a module of the same name answers for its old names, with a warning."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_the_public_imports_are_where_they_were() -> None:
    code = (
        "from jobcast import Kind, JobContext, PermanentError\n"
        "from jobcast.server.app import setup, create_app\n"
        "from jobcast.client import Client, SyncClient, JobcastError\n"
        "from jobcast.settings import Settings\n"
        "from jobcast.cli import main\n"
        "assert callable(main) and callable(setup)\n"
    )
    subprocess.run([sys.executable, "-W", "error", "-c", code], check=True)


@pytest.mark.parametrize(
    ("old", "name", "home"),
    [
        ("jobcast.store", "JobStore", "jobcast.store.jobs"),
        ("jobcast.store", "SubmitRefused", "jobcast.errors"),
        ("jobcast.redis", "create_redis", "jobcast.redis.client"),
        ("jobcast.files", "JobFiles", "jobcast.files.local"),
    ],
)
def test_a_moved_name_still_resolves_with_a_warning(old: str, name: str, home: str) -> None:
    code = (
        "import importlib, warnings\n"
        "warnings.simplefilter('error')\n"
        f"package = importlib.import_module({old!r})\n"
        "try:\n"
        f"    getattr(package, {name!r})\n"
        "except DeprecationWarning as e:\n"
        "    print(e)\n"
        "warnings.simplefilter('ignore')\n"
        f"assert getattr(package, {name!r}) is getattr(importlib.import_module({home!r}), {name!r})\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert f"{old}.{name} moved to {home}.{name}" in out


def test_an_unknown_name_is_still_an_attribute_error() -> None:
    import jobcast.store

    with pytest.raises(AttributeError):
        jobcast.store.NoSuchThing  # noqa: B018
