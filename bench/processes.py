"""Starting what a run measures: Redis, the servers under test, the load generator, the publisher.

Servers go on core 0, everything that makes load (load generator, publisher, Redis, workers) on
core 1, so the server's CPU time is its own and the load cannot steal its core.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from bench.machine import pin
from bench.peers import nchan
from jobcast.redis.embedded import RedisProcess, free_port

SERVER_CORE, LOAD_CORE = 0, 1
PR_SET_PDEATHSIG = 1
ROOT = Path(__file__).resolve().parent.parent


def _in_child() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # A bench that is killed (a timeout, Ctrl-C twice) must not leave its servers running, loading
    # the machine for whatever is measured next: they get SIGTERM when it dies (Linux).
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def start(args: list[str], core: int, env: dict[str, str] | None = None, **kwargs: Any) -> subprocess.Popen:
    proc = subprocess.Popen(args, env={**os.environ, **(env or {})}, cwd=ROOT, preexec_fn=_in_child, **kwargs)
    pin(proc.pid, core)
    return proc


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def wait_http_ready(port: int, path: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    """Wait until `path` answers anything but 503: a server can listen before its backend is
    connected (nchan answers 503 until its Redis connection is up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2).close()
            return
        except urllib.error.HTTPError as e:
            if e.code != 503:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"port {port} still answers 503 on {path}")


@contextmanager
def redis_server() -> Iterator[RedisProcess]:
    with tempfile.TemporaryDirectory(prefix="jobcast-bench-") as tmp:
        redis = RedisProcess(Path(tmp) / "redis", persist=False)
        redis.start()
        assert redis.process is not None
        pin(redis.process.pid, LOAD_CORE)
        try:
            yield redis
        finally:
            redis.stop()


def jobcast_env(redis: RedisProcess, **extra: str) -> dict[str, str]:
    return {"REDIS_URL": redis.url, "JOBCAST_KEY_PREFIX": "jobcast", "JOBCAST_LOG_LEVEL": "WARNING", **extra}


# Each server under test: how to start it on a port.
def server_command(system: str, port: int, redis: RedisProcess) -> list[str]:
    py = sys.executable
    if system == "nchan":
        return nchan.command(redis.data_dir.parent / f"nchan-{port}", port, redis.url)
    if system == "jobcast":
        return [py, "-m", "jobcast", "web", "--host", "127.0.0.1", "--port", str(port)]
    if system == "ceiling":
        return [py, "-m", "bench.peers.ceiling", "--port", str(port), "--redis-url", redis.url]
    if system == "socketio":
        return [py, "-m", "bench.peers.socketio_server", "--port", str(port), "--redis-url", redis.url]
    raise ValueError(system)


@contextmanager
def server(system: str, redis: RedisProcess, **env: str) -> Iterator[tuple[subprocess.Popen, int]]:
    port = free_port()
    proc = start(server_command(system, port, redis), SERVER_CORE, jobcast_env(redis, **env))
    try:
        wait_port(port, proc)
        if system == "nchan":
            wait_http_ready(port, nchan.READY_PATH, proc)
        yield proc, port
    finally:
        stop(proc)


def worker(redis: RedisProcess, **env: str) -> subprocess.Popen:
    return start([sys.executable, "-m", "jobcast", "worker"], LOAD_CORE, jobcast_env(redis, **env))


def c_loadgen(tmp: Path) -> Path | None:
    """bench/loadgen.c built once per run, or None without a C compiler (the Python one is used)."""
    binary = tmp / "loadgen"
    if binary.exists():
        return binary
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    built = subprocess.run([compiler, "-O2", "-o", str(binary), str(ROOT / "bench" / "loadgen.c")])
    return binary if built.returncode == 0 else None


class LoadGen:
    """The load generator process, driven line by line: the C one for SSE and WebSocket
    watchers where a compiler exists, the Python one otherwise (and for Socket.IO and polling)."""

    def __init__(self, config: dict[str, Any], tmp: Path) -> None:
        binary = c_loadgen(tmp)
        if binary is not None and all(w["kind"] in ("sse", "ws") for w in config["watchers"]):
            self.kind = "c"
            path = tmp / "loadgen.txt"
            lines = [f"{config['host']} {config['port']}"]
            lines += [" ".join([w["kind"], w["path"], *w.get("hello", [])]) for w in config["watchers"]]
            path.write_text("\n".join(lines) + "\n")
            command = [str(binary), str(path)]
        else:
            self.kind = "python"
            path = tmp / "loadgen.json"
            path.write_bytes(orjson.dumps(config))
            command = [sys.executable, "-m", "bench.loadgen", str(path)]
        self.proc = start(command, LOAD_CORE, stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the load generator exited ({self.proc.wait()})")
        return orjson.loads(line)

    def send(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self) -> None:
        stop(self.proc)


def publisher(config: dict[str, Any], tmp: Path) -> subprocess.Popen:
    path = tmp / f"publisher-{config['format']}.json"
    path.write_bytes(orjson.dumps(config))
    return start([sys.executable, "-m", "bench.publisher", str(path)], LOAD_CORE, stdout=subprocess.PIPE)


def publisher_result(proc: subprocess.Popen) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=120)
    if proc.returncode:
        raise RuntimeError(f"the publisher failed ({proc.returncode})")
    return orjson.loads(out.splitlines()[-1])
