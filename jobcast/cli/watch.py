"""`jobcast watch JOB_ID`: follow a job from a terminal until it ends (`--output NAME`: print one
of its output streams as it is written instead).

With `rich` installed (`pip install 'jobcast[cli]'`) it draws a progress bar; otherwise it prints
one line per event. The exit status says how the job ended: 0 succeeded, 1 failed or cancelled.
"""

from __future__ import annotations

import sys
from typing import Any

from jobcast.client.api import Client, JobEvent
from jobcast.protocol import TERMINAL_STATES


def describe(event: JobEvent) -> str:
    if event.type == "progress":
        percent = "" if event.percent is None else f"{event.percent:.0f}% "
        return f"progress {percent}{event.message or ''}".rstrip()
    error = event.data.get("error")
    detail = f": {error['type']}: {error['message']}" if isinstance(error, dict) else ""
    attempt = event.data.get("attempt")
    if event.type == "snapshot":  # the job as it is now (it may already have ended)
        return f"{event.state} (as of event {event.seq}, attempt {attempt}){detail}"
    return f"{event.type} (attempt {attempt}){detail}"


async def watch_output(client: Client, job_id: str, stream: str, out: Any = sys.stdout) -> int:
    """Print one of the job's output streams as it is written, every attempt's in turn (a line
    on stderr says where a new attempt starts), until the job ends."""
    async with client:
        attempt: int | None = None
        while True:
            async for text in client.output(job_id, stream, attempt=attempt):
                print(text, end="", file=out, flush=True)
            job = await client.get(job_id)
            if job["state"] in TERMINAL_STATES:
                return 0 if job["state"] == "succeeded" else 1
            attempt = (attempt or job["attempt"]) + 1
            print(f"\n[jobcast: attempt {attempt} of job {job_id[:8]} follows]", file=sys.stderr, flush=True)


async def watch(client: Client, job_id: str, out: Any = sys.stdout) -> int:
    """Follow one job; returns the process exit status."""
    try:
        from rich.progress import Progress
    except ImportError:  # the `cli` extra is not installed: plain lines
        return await watch_lines(client, job_id, out)
    if not out.isatty():
        return await watch_lines(client, job_id, out)
    last: JobEvent | None = None
    async with client:
        with Progress(transient=False) as bar:
            task = bar.add_task(job_id[:8], total=100)
            async for event in client.watch(job_id):
                last = event
                bar.update(task, completed=event.percent or 0, description=f"{job_id[:8]} {event.state}")
            bar.console.print(describe(last) if last else "no events")
    return exit_status(last)


async def watch_lines(client: Client, job_id: str, out: Any) -> int:
    """Follow one job as one line per event (no terminal, or no `rich`)."""
    last: JobEvent | None = None
    async with client:
        async for event in client.watch(job_id):
            last = event
            print(describe(event), file=out, flush=True)
    return exit_status(last)


def exit_status(last: JobEvent | None) -> int:
    return 0 if last is not None and last.state == "succeeded" else 1
