"""`jobcast dev`'s children: started, watched, and restarted with backoff when they die.

Only Ctrl-C or SIGTERM stops everything. A child that fails as it starts (a port in use, a bad
setting) stops `jobcast dev` with that child's own one-line error, instead of restarting for ever.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Sequence

from jobcast.backoff import Backoff

# A child that exits sooner than this after its first start failed to start: give up.
STARTUP_S = 3.0


class Child:
    def __init__(self, name: str, command: Sequence[str], env: dict[str, str]) -> None:
        self.name = name
        self.command = list(command)
        self.env = env
        self.backoff = Backoff(0.5, 10.0)
        self.started_at = 0.0
        self.starts = 0
        self.restart_at: float | None = None
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(self.command, env=self.env)
        self.started_at = time.monotonic()
        self.starts += 1
        self.restart_at = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def wait(self) -> None:
        if self.process is not None:
            self.process.wait()

    def check(self, now: float) -> int | None:
        """Restart the child when it is due; a status when it failed to start (give up)."""
        assert self.process is not None
        if self.restart_at is not None:
            if now >= self.restart_at:
                self.start()
            return None
        code = self.process.poll()
        if code is None:
            if now - self.started_at > STARTUP_S:
                self.backoff.reset()  # it ran a while: the next failure starts the backoff over
            return None
        if self.starts == 1 and now - self.started_at < STARTUP_S and code > 0:
            say(f"{self.name} could not start ({describe_exit(code)}); stopping")
            return code
        delay = self.backoff.next_s()
        say(f"{self.name} exited ({describe_exit(code)}); restarting it in {delay:.1f}s")
        self.restart_at = now + delay
        return None


def say(line: str) -> None:
    print(f"jobcast dev: {line}", file=sys.stderr, flush=True)


def describe_exit(code: int) -> str:
    return f"signal {-code} ({signal.Signals(-code).name})" if code < 0 else f"status {code}"


def supervise(children: Sequence[Child], tick_s: float = 0.2) -> int:
    """Run until SIGTERM or Ctrl-C (0), or until a child fails to start (its status)."""

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    for child in children:
        child.start()
    try:
        while True:
            time.sleep(tick_s)
            now = time.monotonic()
            for child in children:
                if (status := child.check(now)) is not None:
                    return status
    except KeyboardInterrupt:
        return 0
    finally:
        for child in children:
            child.stop()
        for child in children:
            child.wait()
