"""An arq worker for the job-throughput benchmark, as arq's docs show one: `python -m
bench.peers.arq_worker REDIS_URL POLL_DELAY_S`, running a no-op function 10 at a time."""

from __future__ import annotations

import sys
from typing import Any

from arq import run_worker
from arq.connections import RedisSettings


async def noop(ctx: dict[str, Any]) -> None:
    return None


def main() -> None:
    url, poll_delay = sys.argv[1], float(sys.argv[2])

    class WorkerSettings:
        functions = [noop]
        redis_settings = RedisSettings.from_dsn(url)
        max_jobs = 10
        poll_delay = 0.5
        handle_signals = True

    WorkerSettings.poll_delay = poll_delay
    run_worker(WorkerSettings)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
