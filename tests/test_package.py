"""jobcast as users get it: the built wheel, installed into a clean virtualenv away from the
checkout, run as `jobcast web` and `jobcast worker`."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.helpers import demo, submit, watch_to_end

CHECKOUT = Path(__file__).resolve().parent.parent


def run(*args: str | Path, cwd: Path | None = None) -> str:
    done = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", out, CHECKOUT)
    (built,) = out.glob("jobcast-*.whl")
    return built


@pytest.fixture(scope="session")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv holding the wheel and what it depends on, and nothing from the checkout."""
    home = tmp_path_factory.mktemp("venv")
    run(sys.executable, "-m", "venv", home / "env")
    pip = home / "env" / "bin" / "pip"
    run(pip, "install", "--quiet", "--disable-pip-version-check", wheel, cwd=home)
    return home


def python(venv: Path) -> str:
    return str(venv / "env" / "bin" / "python")


async def test_the_wheel_runs_from_a_clean_venv(venv: Path, spawn) -> None:
    files = run(venv / "env" / "bin" / "pip", "show", "-f", "jobcast", cwd=venv)
    installed = [line.strip() for line in files.split("Files:")[1].splitlines() if line.strip()]
    top_level = {path.split("/")[0] for path in installed if not path.startswith("..")}
    assert top_level <= {"jobcast", "jobcast-0.1.0.dist-info"}, top_level
    assert "jobcast/static/jobcast.js" in installed and "jobcast/templates/index.html" in installed
    where = run(python(venv), "-c", "import jobcast.server.app as m; print(m.__file__)", cwd=venv)
    assert where.startswith(str(venv)), where

    web = spawn("web", python=python(venv), cwd=venv)
    spawn("worker", python=python(venv), cwd=venv)
    await web.wait_http()
    async with aiohttp.ClientSession() as session:
        async with session.get(web.url + "/") as page:
            assert page.status == 200 and "<form" in await page.text()
        async with session.get(web.url + "/static/jobcast.js") as script:
            assert script.status == 200 and "export function watchJob" in await script.text()
        job = await submit(session, web.url + "/api/jobs", demo(3, 10))
        events = await asyncio.wait_for(watch_to_end(session, job["id"], base=web.url), 60)
    assert events[-1]["type"] == "succeeded"
