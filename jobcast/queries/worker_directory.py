"""The live workers and the kinds they serve, as a web server sees them."""

from __future__ import annotations

import time

from jobcast.queries.stats import live_workers
from jobcast.store.jobs import JobStore


class WorkerDirectory:
    """Which kinds the live workers serve, read from Redis at most every `max_age_s`: a
    submission checks it, and a directory a second old is fresh enough for that."""

    def __init__(self, store: JobStore, worker_ttl_s: float, max_age_s: float = 1.0) -> None:
        self._store = store
        self._worker_ttl_s = worker_ttl_s
        self._max_age_s = max_age_s
        self._read_at: float | None = None
        self._workers: dict[str, list[str]] = {}

    async def workers(self, *, fresh: bool = False) -> dict[str, list[str]]:
        now = time.monotonic()
        if fresh or self._read_at is None or now - self._read_at > self._max_age_s:
            self._workers = await live_workers(self._store, self._worker_ttl_s)
            self._read_at = now
        return self._workers

    async def unserved(self, kind: str) -> dict[str, list[str]] | None:
        """The live workers when there are some and none serves `kind`; else None (a kind no
        worker serves while no worker runs at all is accepted: it waits for one).

        Only "served" is taken from the cache: a refusal is always checked afresh, so a worker
        that has just started is never refused for being a second late."""
        if self._serves(await self.workers(), kind):
            return None
        workers = await self.workers(fresh=True)
        return None if not workers or self._serves(workers, kind) else workers

    @staticmethod
    def _serves(workers: dict[str, list[str]], kind: str) -> bool:
        return any(kind in kinds for kinds in workers.values())
