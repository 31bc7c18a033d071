"""The HTTP API from a terminal, for operators and scripts: `jobcast submit`, `jobs`, `cancel`,
`retry` and `stats`, each through the Python client (jobcast.client).

They find the server in `--url`, else `JOBCAST_URL`, else this host's `JOBCAST_HOST` and
`JOBCAST_PORT`, and send `JOBCAST_API_KEY` as a Bearer key when it is set. An answer that is an
error exits 1 with the problem document's detail on stderr; what they print on stdout is meant to
be read by people and by scripts alike (`ID=$(jobcast submit demo)`), or is JSON with `--json`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TextIO

import aiohttp

from jobcast.client.api import ApiError, Client
from jobcast.settings import Settings


def client_for(args: argparse.Namespace) -> Client:
    """The client a command uses: its server, and the API key from the environment."""
    settings = Settings()
    headers = {}
    if settings.api_key is not None:
        headers["Authorization"] = f"Bearer {settings.api_key.get_secret_value()}"
    return Client(server_url(args.url, settings), headers=headers)


def server_url(url: str | None, settings: Settings) -> str:
    """`--url`, else `JOBCAST_URL`, else this host's server."""
    return url or settings.url or f"http://{settings.host}:{settings.port}"


def param(text: str) -> tuple[str, Any]:
    """`--param k=v`: the value as JSON when it reads as JSON (`steps=5`, `ok=true`), else text."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, not {text!r}")
    try:
        return name, json.loads(value)
    except ValueError:
        return name, value


async def submit(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    params = dict(json.loads(args.params)) if args.params else {}
    params.update(dict(args.param or ()))
    job = await client.submit(
        args.kind,
        params,
        priority=args.priority,
        delay_s=args.delay,
        idempotency_key=args.idempotency_key,
    )
    print(json.dumps(job) if args.json else job["id"], file=out)
    return 0


def _row(job: dict[str, Any]) -> str:
    progress = job.get("progress") or {}
    percent = progress.get("percent")
    shown = "" if percent is None else f"{percent:.0f}%"
    error = job.get("error") or {}
    note = error.get("message") or job.get("waiting") or progress.get("message") or ""
    return (
        f"{job['id']}  {job['state']:<10} {job['kind']:<12} {shown:>4}  {job['created_at']}  {note}".rstrip()
    )


async def jobs(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    shown = 0
    async for job in client.list(
        state=args.state, kind=args.kind, owner=args.owner, page_size=min(args.limit, 100)
    ):
        print(json.dumps(job) if args.json else _row(job), file=out)
        shown += 1
        if shown >= args.limit:
            break
    return 0


async def cancel(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    return await _each(args.job_ids, client.cancel, out, lambda job_id, job: f"{job_id} {_cancelled(job)}")


def _cancelled(job: dict[str, Any]) -> str:
    return "cancel requested" if job.get("cancel_requested") and job["state"] != "cancelled" else job["state"]


async def retry(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    return await _each(
        args.job_ids, client.retry, out, lambda job_id, job: f"{job_id} retried as {job['id']}"
    )


async def _each(
    job_ids: list[str],
    act: Callable[[str], Awaitable[dict[str, Any]]],
    out: TextIO,
    line: Callable[[str, dict[str, Any]], str],
) -> int:
    """Act on every job, saying how each went; 1 if any was refused (the others still go on)."""
    status = 0
    for job_id in job_ids:
        try:
            print(line(job_id, await act(job_id)), file=out)
        except ApiError as e:
            print(f"{job_id}: {_detail(e)}", file=sys.stderr)
            status = 1
    return status


async def stats(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    print(json.dumps(await client.stats(), indent=2), file=out)
    return 0


def _detail(error: ApiError) -> str:
    problem = error.problem
    return f"{problem.get('detail') or problem.get('title') or 'error'} ({error.status})"


COMMANDS: dict[str, tuple[Callable[[Client, argparse.Namespace, TextIO], Awaitable[int]], str]] = {
    "submit": (submit, "submit a job (prints its id)"),
    "jobs": (jobs, "list jobs, newest first"),
    "cancel": (cancel, "cancel jobs"),
    "retry": (retry, "retry failed or cancelled jobs (prints the new ids)"),
    "stats": (stats, "the counters: waiting, running, finished, workers (admins)"),
}


def add_commands(commands: Any) -> None:
    """Add the API's commands to `jobcast`'s subcommands."""
    for name, (_, help_) in COMMANDS.items():
        cmd = commands.add_parser(name, help=help_)
        cmd.set_defaults(func=run)
        cmd.add_argument("--url", default=None, help="the server (default: $JOBCAST_URL or this host's)")
        if name == "submit":
            cmd.add_argument("kind")
            cmd.add_argument("--param", "-p", type=param, action="append", metavar="NAME=VALUE")
            cmd.add_argument("--params", metavar="JSON", help="the params as one JSON object")
            cmd.add_argument("--priority", choices=("high", "default", "low"), default=None)
            cmd.add_argument("--delay", type=float, default=None, metavar="SECONDS")
            cmd.add_argument("--idempotency-key", default=None)
        if name == "jobs":
            cmd.add_argument("--state", default=None)
            cmd.add_argument("--kind", default=None)
            cmd.add_argument("--owner", default=None, help="admins: one owner's jobs")
            cmd.add_argument("--limit", type=int, default=50, help="at most this many (50)")
        if name in ("cancel", "retry"):
            cmd.add_argument("job_ids", nargs="+", metavar="JOB_ID")
        if name in ("submit", "jobs"):
            cmd.add_argument("--json", action="store_true", help="print JSON (a line per job)")


# The status of a program that SIGPIPE ended, as shells report it.
PIPE_CLOSED = 128 + signal.SIGPIPE


def run(args: argparse.Namespace) -> None:
    status = asyncio.run(_run(args))
    if status == PIPE_CLOSED:
        # What is still buffered for the closed pipe would fail again when Python flushes it at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(status)


async def _run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    command, _ = COMMANDS[args.command]
    try:
        async with client_for(args) as client:
            return await command(client, args, out)
    except ApiError as e:
        print(f"jobcast {args.command}: {_detail(e)}", file=sys.stderr)
    except BrokenPipeError:
        # Whoever read the output stopped (`jobcast jobs | head`): nothing is wrong with the
        # server, and nothing is left to say.
        return PIPE_CLOSED
    except (aiohttp.ClientError, OSError, TimeoutError) as e:
        print(f"jobcast {args.command}: no answer from the server: {e or type(e).__name__}", file=sys.stderr)
    except ValueError as e:  # --params that is not JSON
        print(f"jobcast {args.command}: {e}", file=sys.stderr)
    return 1
