"""`jobcast submit`, `jobs`, `cancel`, `retry`, `stats` (and `watch`) as an operator runs them in a
shell, against real `jobcast web` and `jobcast worker` processes: the server from `JOBCAST_URL`,
the API key from `JOBCAST_API_KEY`, and an error's problem detail on stderr with exit status 1."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import signal
import subprocess
import sys

from jobcast.server.security.auth import new_api_key

SECRET = "cli-test-secret-that-is-long-enough-0123456789"


async def jobcast(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`jobcast ARGS…` in a shell whose environment names the server and no more."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("JOBCAST_") and k != "REDIS_URL"}
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "jobcast", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_an_operator_submits_lists_cancels_retries_and_counts_jobs(spawn) -> None:
    web = spawn("web")
    spawn("worker")
    await web.wait_http()
    url = {"JOBCAST_URL": web.url}

    submitted = await jobcast("submit", "demo", "-p", "steps=2", "-p", "step_ms=10", **url)
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{32}", job_id), submitted.stdout
    watched = await jobcast("watch", job_id, **url)
    assert watched.returncode == 0 and "succeeded" in watched.stdout, watched

    listed = await jobcast("jobs", "--kind", "demo", "--state", "succeeded", **url)
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[:3] for line in listed.stdout.splitlines()] == [[job_id, "succeeded", "demo"]]
    as_json = await jobcast("jobs", "--json", "--limit", "1", **url)
    assert json.loads(as_json.stdout)["id"] == job_id

    # A long job, cancelled; then retried as a new job.
    long = (
        await jobcast("submit", "demo", "--params", '{"steps": 100, "step_ms": 100}', **url)
    ).stdout.strip()
    cancelled = await jobcast("cancel", long, **url)
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.strip() in (f"{long} cancelled", f"{long} cancel requested")
    watched = await jobcast("watch", long, **url)  # until it has stopped
    assert watched.returncode == 1 and "cancelled" in watched.stdout
    retried = await jobcast("retry", long, **url)
    assert retried.returncode == 0, retried.stderr
    new_id = re.fullmatch(rf"{long} retried as ([0-9a-f]{{32}})", retried.stdout.strip())
    assert new_id, retried.stdout
    assert new_id[1] in (await jobcast("jobs", "--kind", "demo", **url)).stdout

    stats = await jobcast("stats", **url)
    assert stats.returncode == 0, stats.stderr
    counters = json.loads(stats.stdout)
    assert counters["workers"] == 1 and counters["finished_last_hour"]

    # Refusals: the problem's detail, exit status 1, and the other jobs still acted on.
    unknown = await jobcast("submit", "no-such-kind", **url)
    assert unknown.returncode == 1 and unknown.stdout == ""
    assert unknown.stderr.startswith("jobcast submit: ") and "no-such-kind" in unknown.stderr
    mixed = await jobcast("cancel", "0" * 32, new_id[1], **url)
    assert mixed.returncode == 1
    assert mixed.stderr.startswith("0" * 32 + ": ") and "(404)" in mixed.stderr
    assert mixed.stdout.startswith(new_id[1])
    gone = await jobcast("jobs", JOBCAST_URL="http://127.0.0.1:9")
    assert gone.returncode == 1 and "no answer from the server" in gone.stderr

    # A reader that stops early (`jobcast stats | head -1`) is no server error: here one that is
    # gone before anything is written.
    reader, writer = os.pipe()
    os.close(reader)
    try:
        closed = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "jobcast", "stats"],
            env={**os.environ, **url},
            stdout=writer,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(writer)
    assert closed.returncode == 128 + signal.SIGPIPE and closed.stderr == "", closed.stderr


async def test_the_cli_sends_the_api_key_from_the_environment(spawn) -> None:
    key, digest = new_api_key()
    assert digest == hashlib.sha256(key.encode()).hexdigest()
    web = spawn("web", JOBCAST_SECRET=SECRET, JOBCAST_API_KEYS=f"ops:admin:{digest}")
    spawn("worker", JOBCAST_SECRET=SECRET, JOBCAST_API_KEYS=f"ops:admin:{digest}")
    await web.wait_http()

    refused = await jobcast("stats", JOBCAST_URL=web.url)
    assert refused.returncode == 1 and refused.stderr.startswith("jobcast stats: ")
    assert re.search(r"\((401|403)\)$", refused.stderr.strip()), refused.stderr

    admitted = await jobcast("stats", JOBCAST_URL=web.url, JOBCAST_API_KEY=key)
    assert admitted.returncode == 0, admitted.stderr
    submitted = await jobcast("submit", "demo", "-p", "steps=1", JOBCAST_URL=web.url, JOBCAST_API_KEY=key)
    job_id = submitted.stdout.strip()
    watched = await jobcast("watch", job_id, JOBCAST_URL=web.url, JOBCAST_API_KEY=key)
    assert watched.returncode == 0, watched.stderr
    for run in (refused, admitted, submitted, watched):
        assert key not in run.stdout + run.stderr
