"""A saq worker for the job-throughput benchmark, as saq's docs show one: `python -m
bench.peers.saq_worker REDIS_URL`, running a no-op function 10 at a time."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from saq import Queue, Worker


async def noop(ctx: dict[str, Any]) -> None:
    return None


async def main(url: str) -> None:
    queue = Queue.from_url(url)
    worker = Worker(queue, functions=[noop], concurrency=10)
    await worker.start()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
