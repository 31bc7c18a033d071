"""jobcast as users get it: the built wheel, installed into a clean virtualenv away from the
checkout, run as `jobcast web` and `jobcast worker`."""

from __future__ import annotations

import asyncio
import email.parser
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
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
    # Built from a copy of what git would commit (tracked and new files, not ignored ones), so
    # nothing lying around in the checkout sneaks in, and the build leaves no trace in it.
    source = tmp_path_factory.mktemp("source")
    listed = run("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=CHECKOUT)
    for name in filter(None, listed.split("\0")):
        if (CHECKOUT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(CHECKOUT / name, source / name)
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
    run(pip, "install", "--quiet", "--disable-pip-version-check", wheel, cwd=home)
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
    assert set(headers.get_all("Provides-Extra") or []) == {"cli", "s3", "otel"}
    assert headers["License-Expression"] == "MIT"
    # PyPI renders the README: twine checks it as PyPI would, warnings included.
    twine = Path(sys.executable).parent / "twine"
    out = run(twine, "check", "--strict", wheel)
    assert "PASSED" in out, out


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
            assert page.status == 200 and "<form" in await page.text()
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
