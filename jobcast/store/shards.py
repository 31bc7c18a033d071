"""A sharded deployment's job stores, one a shard: which holds a job, and which takes a new one
(jobcast/redis/shards.py has the layout)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TypeVar

from redis.asyncio import Redis

from jobcast.redis.shards import shard_of, shard_of_owner, shards_of
from jobcast.settings import Settings
from jobcast.snapshot import JobSnapshot
from jobcast.store.jobs import JobStore, Links, no_links

T = TypeVar("T")


async def on_each(stores: Sequence[JobStore], call: Callable[[JobStore], Awaitable[T]]) -> list[T]:
    """`call` on every store at once, answers in the stores' order. One failing cancels the others
    and raises its own error (a RedisError stays one, for the 503 it answers with)."""
    if len(stores) == 1:
        return [await call(stores[0])]

    async def run(store: JobStore) -> T:
        return await call(store)

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(run(store)) for store in stores]
    except ExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return [task.result() for task in tasks]


class Shards:
    """The stores of every shard, shard 0 first. With one shard, its store is the deployment's
    store as it always was: unsharded ids, the deployment's prefix."""

    def __init__(self, stores: Sequence[JobStore]) -> None:
        if not stores:
            raise ValueError("a deployment has one shard at least")
        self.stores = list(stores)
        self._turns = itertools.cycle(self.stores)

    @classmethod
    def connect(
        cls, settings: Settings, count: int, redis_for: Callable[[str], Redis], links: Links = no_links
    ) -> Shards:
        """`count` shards of the deployment, each store with its own client from `redis_for(prefix)`
        (on a cluster, a client serves one slot: jobcast/redis/cluster.py)."""
        if count == 1:
            return cls([JobStore(redis_for(settings.redis_key_prefix), settings, links)])
        return cls(
            [
                JobStore(redis_for(shard.prefix), settings, links, shard)
                for shard in shards_of(settings.redis_key_prefix, count)
            ]
        )

    @property
    def home(self) -> JobStore:
        """Shard 0: where a deployment that had one shard kept everything."""
        return self.stores[0]

    def of(self, job_id: str) -> JobStore | None:
        """The store that holds `job_id`, or None when its id names a shard this deployment lacks."""
        shard = shard_of(job_id, len(self.stores))
        return None if shard is None else self.stores[shard]

    def holding(self, job_id: str) -> JobStore:
        """The store of a job known to be here (claimed from a shard, listed by one)."""
        store = self.of(job_id)
        if store is None:
            raise LookupError(f"job {job_id} names a shard this deployment lacks")
        return store

    def group(self, job_ids: Iterable[str]) -> dict[JobStore, list[str]]:
        """The ids each store holds (ids of shards this deployment lacks left out)."""
        groups: dict[JobStore, list[str]] = {}
        for job_id in job_ids:
            if (store := self.of(job_id)) is not None:
                groups.setdefault(store, []).append(job_id)
        return groups

    def for_new(self, owner: str | None, spread_by: str | None = None) -> JobStore:
        """Where a new job goes: its owner's shard, so that what is counted per owner stays on one
        shard; without an owner, the shard `spread_by` names (an idempotency key, or what makes a
        job unique while active: the same text always picks the same shard, so its repeats meet
        there); else the shards in turn."""
        if len(self.stores) == 1:
            return self.stores[0]
        named = owner if owner is not None else spread_by
        if named is not None:
            return self.named(named)
        return next(self._turns)

    def named(self, name: str) -> JobStore:
        """The shard a name picks, the same in every process: an owner's (where all its jobs are),
        or a key's."""
        return self.stores[shard_of_owner(name, len(self.stores))]

    async def snapshots(self, job_ids: list[str]) -> list[JobSnapshot]:
        """The snapshots of these jobs, wherever each is, in the order asked (jobs that no longer
        exist left out)."""
        groups = self.group(job_ids)
        each = await on_each(list(groups), lambda store: store.snapshots(groups[store]))
        found = {job["id"]: job for jobs in each for job in jobs}
        return [found[job_id] for job_id in job_ids if job_id in found]

    async def job_fields(self, job_ids: list[str], fields: list[str]) -> dict[str, list[bytes | None]]:
        """These fields of each job's record, in the order of `job_ids` (all None: no such job)."""
        groups = self.group(job_ids)

        async def read(store: JobStore) -> dict[str, list[bytes | None]]:
            async with store.redis.pipeline(transaction=False) as pipe:
                for job_id in groups[store]:
                    pipe.hmget(store.keys.job(job_id), fields)
                return dict(zip(groups[store], await pipe.execute(), strict=True))

        found = {job_id: row for rows in await on_each(list(groups), read) for job_id, row in rows.items()}
        return {job_id: found.get(job_id, [None] * len(fields)) for job_id in job_ids}

    async def aclose(self, *, home_client: bool = True) -> None:
        """Close every store and the client each was connected with (`home_client` False: all but
        shard 0's, which a worker shares with arq, and arq closes)."""
        for store in self.stores:
            await store.aclose()
            if home_client or store is not self.home:
                await store.redis.aclose()
