"""Clients generated from the served OpenAPI document, as integrators generate them, against real
`jobcast web` and `jobcast worker` processes: openapi-python-client's package submits, gets, lists
and (with httpx-sse over its own httpx client) watches a job, and type-checks with mypy's
default flags. The TypeScript side (openapi-typescript and openapi-fetch) is in
tests/test_js_client.py."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import aiohttp

BIN = Path(sys.executable).parent

CONSUMER = '''\
"""An integrator's script on the generated client: submit, get, list, watch."""

import json
import sys

from httpx_sse import connect_sse
from jobcast_api import Client
from jobcast_api.api.api import get_job, list_jobs, submit_job
from jobcast_api.models import JobPage, JobSnapshot, SubmitJobJsonSubmitDemo, SubmitJobJsonSubmitDemoParams

client = Client(base_url=sys.argv[1])
params = SubmitJobJsonSubmitDemoParams(steps=3, step_ms=20)
job = submit_job.sync(client=client, body=SubmitJobJsonSubmitDemo(kind="demo", params=params))
assert isinstance(job, JobSnapshot), job
types = []
with connect_sse(client.get_httpx_client(), "GET", f"/api/jobs/{job.id}/events") as source:
    for event in source.iter_sse():
        types.append(event.event)
        if json.loads(event.data)["state"] in ("succeeded", "failed", "cancelled"):
            break
again = get_job.sync(client=client, job_id=job.id)
assert isinstance(again, JobSnapshot), again
page = list_jobs.sync(client=client)
assert isinstance(page, JobPage), page
print(json.dumps({"id": job.id, "state": again.state.value, "listed": [j.id for j in page.jobs], "types": types}))
'''


def run(args: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(args)}:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done.stdout


async def test_a_generated_python_client_submits_gets_lists_and_watches(spawn, tmp_path: Path) -> None:
    web = spawn("web")
    spawn("worker")
    await web.wait_http()
    async with aiohttp.ClientSession(web.url) as session, session.get("/api/openapi.json") as answer:
        (tmp_path / "openapi.json").write_bytes(await answer.read())
    generator = str(BIN / "openapi-python-client")
    args = ["generate", "--path", "openapi.json", "--meta", "none", "--output-path", "jobcast_api"]
    await asyncio.to_thread(run, [generator, *args], tmp_path)
    (tmp_path / "consumer.py").write_text(CONSUMER)
    # The integrator's code type-checks against the generated models and calls (mypy's defaults).
    # Errors inside the generator's own boilerplate (its client.py against httpx's current stubs)
    # are the generator's, whatever document it reads: not reported.
    mypy = [sys.executable, "-m", "mypy", "--no-incremental", "--follow-imports=silent", "consumer.py"]
    await asyncio.to_thread(run, mypy, tmp_path)
    out = await asyncio.to_thread(run, [sys.executable, "consumer.py", web.url], tmp_path)
    seen = json.loads(out)
    assert seen["state"] == "succeeded" and seen["id"] in seen["listed"]
    assert seen["types"][0] == "snapshot" and seen["types"][-1] == "succeeded"
