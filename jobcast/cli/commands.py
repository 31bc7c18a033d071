"""`jobcast web`, `jobcast worker` and `jobcast dev`; and from a shell, the API's commands
(`jobcast submit`, `jobs`, `cancel`, `retry`, `stats`, `watch`)."""

from __future__ import annotations

import argparse
import asyncio
import errno
import gc
import ipaddress
import logging
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from pydantic import ValidationError

from jobcast import tracing
from jobcast.cli.supervise import Child, supervise
from jobcast.logs import configure_logging
from jobcast.registry import KindsError
from jobcast.settings import ProcessSettings, Settings

# Import names of the `server` extra's packages: a command that needs one, run where only the
# client is installed, says which extra to add instead of a traceback.
SERVER_PACKAGES = frozenset(
    {"aiohttp_jinja2", "arq", "hiredis", "itsdangerous", "prometheus_client", "redis", "uvloop"}
)


def settings_errors(error: ValidationError) -> list[str]:
    """What is wrong with the settings, a line each, by environment variable."""
    lines = []
    for problem in error.errors(include_url=False, include_input=False):
        field = str(problem["loc"][0]) if problem["loc"] else ""
        variable = "REDIS_URL" if field == "redis_url" else f"JOBCAST_{field.upper()}"
        lines.append(f"{variable}: {problem['msg'].removeprefix('Value error, ')}")
    return lines


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    return Settings(**overrides)


def _use_uvloop(settings: ProcessSettings) -> None:
    """uvloop roughly halves the event loop's share of each delivery; JOBCAST_UVLOOP=0 opts out."""
    if not settings.uvloop:
        return
    try:
        import uvloop
    except ImportError:  # not available on this platform: asyncio's loop works, only slower
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def _quiet_gc(app: object) -> None:
    """Keep the cyclic GC from pausing delivery for tens of milliseconds.

    A full collection walks every tracked object, and most of them (modules, schemas, templates,
    the app) live as long as the process: frozen, they are never walked again. A larger first
    generation makes young collections rarer; events themselves are freed by reference counting.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)


def check_web(settings: Settings, timeout_s: float = 2.0) -> int:
    """`jobcast web --check`: 0 when the web process on this host answers ready (it reaches Redis
    and holds its pub/sub connection). A container's health check, so it needs nothing but the
    standard library."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(settings.host, settings.host)
    url = f"http://{f'[{host}]' if ':' in host else host}:{settings.port}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as answer:
            print(f"ok: {url} answered {answer.status}")
            return 0
    except urllib.error.HTTPError as e:  # 503: up, but without Redis or pub/sub
        print(
            f"jobcast web --check: {url} answered {e.code}: {e.read().decode(errors='replace')}",
            file=sys.stderr,
        )
    except (OSError, TimeoutError) as e:
        print(f"jobcast web --check: {url} does not answer: {e}", file=sys.stderr)
    return 1


def run_web(args: argparse.Namespace) -> None:
    if args.check:
        sys.exit(check_web(_settings(args)))
    from jobcast.server.app import create_app
    from jobcast.server.http import server as http
    from jobcast.server.http.access_log import AccessLogger, access_logger

    settings = _settings(args)
    check_exposure(settings)
    _use_uvloop(settings)
    tracing.configure(settings, "jobcast-web")
    app = create_app(settings)
    app.on_startup.append(_quiet_gc)
    http.run(
        app,
        host=settings.host,
        port=settings.port,
        header_timeout_s=settings.header_timeout_s,
        gc_after_connections=settings.gc_after_connections,
        # A client that hangs up must free its subscription at once, not at the next heartbeat.
        handler_cancellation=True,
        shutdown_timeout=settings.shutdown_timeout_s,
        # One line per request, with the request id that the job's worker lines carry too.
        access_log=access_logger(),
        access_log_class=AccessLogger,
        on_listening=lambda: logging.getLogger("jobcast").info(
            "jobcast web listening on http://%s:%s", settings.host, settings.port
        ),
    )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(settings: Settings) -> None:
    """Single-user mode (no secret) only where nobody else can connect."""
    log = logging.getLogger("jobcast")
    if settings.secret is not None:
        log.info("owner mode: each job is seen by its owner and admins only")
        return
    if not is_loopback(settings.host):
        raise SystemExit(
            f"jobcast web: refusing to listen on {settings.host} without JOBCAST_SECRET: single-user mode "
            "shows every job to everyone, so it is for loopback only (see docs/security.md)"
        )
    log.info(
        "single-user mode (no JOBCAST_SECRET): every job is visible to whoever reaches %s", settings.host
    )


def run_new_key(args: argparse.Namespace) -> None:
    from jobcast.server.security.auth import new_api_key

    key, digest = new_api_key()
    print(f"key (give it to the client; it is not stored anywhere): {key}")
    print(f"add to JOBCAST_API_KEYS: {args.name}:{args.role}:{digest}")


def run_worker(args: argparse.Namespace) -> None:
    from jobcast.jobs.worker import create_worker

    if args.check:
        sys.exit(asyncio.run(check_workers(Settings())))
    settings = Settings()
    _use_uvloop(settings)
    tracing.configure(settings, "jobcast-worker")
    create_worker(settings).run()


def run_dev(args: argparse.Namespace) -> None:
    """Web + worker (+ a private Redis when REDIS_URL is not set), for a newcomer."""
    from jobcast.redis.embedded import RedisProcess

    settings = _settings(args)
    env = dict(os.environ)
    redis = None
    if "redis_url" not in settings.model_fields_set:  # neither REDIS_URL nor JOBCAST_REDIS_URL
        redis = RedisProcess(Path(args.data_dir) / "redis", server=settings.redis_server)
        redis.start()
        env["REDIS_URL"] = redis.url
        print(
            f"started a private Redis ({redis.binary}) at {redis.url} (data in {redis.data_dir})", flush=True
        )
    env.setdefault("JOBCAST_FILES_DIR", str(Path(args.data_dir) / "files"))
    me = [sys.executable, "-m", "jobcast"]
    check_exposure(settings)
    web_cmd = [*me, "web", "--host", settings.host, "--port", str(settings.port)]
    children = [Child("worker", [*me, "worker"], env), Child("web", web_cmd, env)]
    host = "localhost" if settings.host in ("127.0.0.1", "0.0.0.0") else settings.host
    print(f"\n  jobcast is starting: open http://{host}:{settings.port}/\n", flush=True)
    try:
        status = supervise(children)
    finally:
        if redis is not None:
            redis.stop()
    if status:
        sys.exit(status)


async def check_workers(settings: Settings, timeout_s: float = 2.0) -> int:
    """`jobcast worker --check`: 0 when Redis answers and a worker's heartbeat is fresh."""
    from redis.exceptions import RedisError

    from jobcast.queries.stats import live_workers
    from jobcast.redis.client import create_redis
    from jobcast.store.jobs import JobStore

    redis = create_redis(settings.redis_url, retries=0, key_prefix=settings.redis_key_prefix)
    try:
        async with asyncio.timeout(timeout_s):
            workers = await live_workers(JobStore(redis, settings), settings.worker_ttl_s)
    except (RedisError, OSError, TimeoutError) as e:
        print(f"jobcast worker --check: Redis does not answer: {e or type(e).__name__}", file=sys.stderr)
        return 1
    finally:
        await redis.aclose()
    if not workers:
        print("jobcast worker --check: no worker heartbeat in Redis", file=sys.stderr)
        return 1
    print(f"ok: {len(workers)} live worker(s): {', '.join(workers)}")
    return 0


def run_watch(args: argparse.Namespace) -> None:
    from jobcast.cli.api_commands import client_for
    from jobcast.cli.watch import watch, watch_output

    client = client_for(args)
    if args.output:
        sys.exit(asyncio.run(watch_output(client, args.job_id, args.output)))
    sys.exit(asyncio.run(watch(client, args.job_id)))


def main(argv: list[str] | None = None) -> None:
    configure_logging(ProcessSettings())
    parser = argparse.ArgumentParser(prog="jobcast", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, func, help_ in (
        ("web", run_web, "the HTTP/SSE/WebSocket server"),
        ("worker", run_worker, "an arq worker that runs jobs"),
        ("dev", run_dev, "everything in one command, with a private Redis unless REDIS_URL is set"),
        ("watch", run_watch, "follow a job until it ends (a progress bar with jobcast[cli])"),
        ("new-key", run_new_key, "make an API key, and the JOBCAST_API_KEYS entry that admits it"),
    ):
        cmd = commands.add_parser(name, help=help_)
        cmd.set_defaults(func=func)
        if name == "new-key":
            cmd.add_argument("name", help="who the key is for (a service's name; its jobs' owner)")
            cmd.add_argument("role", choices=("service", "admin"))
            continue
        if name == "watch":
            cmd.add_argument("job_id")
            cmd.add_argument("--url", default=None, help="the server (default: $JOBCAST_URL or this host's)")
            cmd.add_argument(
                "--output", metavar="NAME", default=None, help="print this output stream as it is written"
            )
            continue
        if name == "worker":
            cmd.add_argument(
                "--check", action="store_true", help="exit 0 if Redis answers and a worker is alive"
            )
        if name == "web":
            cmd.add_argument(
                "--check",
                action="store_true",
                help="exit 0 if the web process at --host/--port (or JOBCAST_HOST/JOBCAST_PORT) is ready",
            )
        if name != "worker":
            cmd.add_argument("--host", default=None)
            cmd.add_argument("--port", type=int, default=None)
        if name == "dev":
            cmd.add_argument(
                "--data-dir", default="data", help="where the private Redis and the job files live"
            )
    from jobcast.cli.api_commands import add_commands

    add_commands(commands)
    run(parser.parse_args(argv))


def run(args: argparse.Namespace) -> None:
    """One command, its expected failures said in a line naming what to fix."""
    try:
        args.func(args)
    except ModuleNotFoundError as e:
        if (e.name or "").partition(".")[0] not in SERVER_PACKAGES:
            raise
        sys.exit(
            f"jobcast {args.command}: this install has only the client (missing {e.name}); "
            "the server needs pip install 'jobcast[server]'"
        )
    except KindsError as e:
        sys.exit(f"jobcast {args.command}: {e}")
    except ValidationError as e:  # the settings: one line each, naming the variable to fix
        sys.exit("\n".join(f"jobcast {args.command}: {line}" for line in settings_errors(e)))
    except OSError as e:
        if e.errno != errno.EADDRINUSE:
            raise
        port = getattr(args, "port", None) or Settings().port
        sys.exit(f"jobcast {args.command}: port {port} is already in use; choose another with --port N")
