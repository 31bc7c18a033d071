"""`GET /api/stats`: what is waiting, running and done, and how many workers are alive."""

from __future__ import annotations

from typing import Any

from jobcast.bulk import without_bulk
from jobcast.protocol import TERMINAL_STATES, Priority, State, epoch_ms, utcnow
from jobcast.redis.client import awaited
from jobcast.store.jobs import JobStore
from jobcast.store.pausing import paused_kinds

HOUR_MS = 3600 * 1000
# Sets of held jobs counted a call (one per kind and owner, or per owner): the count is exact up to
# this many, and a floor past it, so that a flood of owners cannot make the counters slow.
HELD_SETS_COUNTED = 1000


async def stats(store: JobStore, worker_ttl_s: float) -> dict[str, Any]:
    keys = store.keys
    now = epoch_ms(utcnow())
    priorities = list(Priority)
    finished = [s.value for s in sorted(TERMINAL_STATES)]
    async with store.redis.pipeline(transaction=True) as pipe:
        for p in priorities:
            pipe.zcount(keys.queue(p), "-inf", now)  # due now
            pipe.zcount(keys.queue(p), f"({now}", "+inf")  # delayed, or backing off
            pipe.zrangebyscore(keys.queue(p), "-inf", now, start=0, num=1, withscores=True)
        pipe.zcard(keys.index_state(State.RUNNING))
        for s in finished:
            pipe.zcount(keys.index_state(s), now - HOUR_MS, "+inf")
        pipe.zremrangebyscore(keys.workers, "-inf", now - int(worker_ttl_s * 1000))
        pipe.zrange(keys.workers, 0, -1)
        pipe.hgetall(keys.worker_kinds)
        pipe.hgetall(keys.kind_waiting)
        pipe.hgetall(keys.paused)
        results = await pipe.execute()
    paused = results.pop()
    by_kind: dict[str, dict[str, int]] = {}
    for field, count in results.pop().items():
        kind, _, priority = field.decode().rpartition("|")
        by_kind.setdefault(kind, {})[priority] = int(count)
    waiting, delayed, oldest = {}, {}, []
    for i, p in enumerate(priorities):
        due, later, first = results[3 * i : 3 * i + 3]
        waiting[p.value] = due
        delayed[p.value] = later
        if first:
            oldest.append(first[0][1])
    rest = results[3 * len(priorities) : -2]
    live, kinds = results[-2:]
    serving = serving_kinds(live, kinds)
    paused_now = await paused_kinds(store, paused)
    return {
        "waiting": waiting,
        "delayed": delayed,
        "held": {
            "paused": sum(p["parked"] for p in paused_now.values()),
            "limits": await held_by_limits(store),
        },
        "oldest_waiting_s": round((now - min(oldest)) / 1000, 3) if oldest else None,
        "running": rest[0],
        "finished_last_hour": dict(zip(finished, rest[1 : 1 + len(finished)], strict=True)),
        "workers": len(live),
        "serving": [{"worker": name, "kinds": without_bulk(names)} for name, names in serving.items()],
        "paused": paused_now,
        "waiting_by_kind": dict(sorted(by_kind.items())),
    }


async def held_by_limits(store: JobStore) -> int:
    """Due jobs a kind's or an owner's limit holds back (jobcast/store/lua/claim.lua): out of the
    queues, so the waiting counts leave them out."""
    keys = store.keys
    tokens = sorted(t.decode() for t in await awaited(store.redis.smembers(keys.held)))
    kinds = [t.removeprefix("kind=") for t in tokens if t.startswith("kind=")]
    owners = [t.removeprefix("owner=") for t in tokens if t.startswith("owner=")]
    async with store.redis.pipeline(transaction=False) as pipe:
        for kind in kinds:
            pipe.zrange(keys.kind_held_ring(kind), 0, HELD_SETS_COUNTED - 1)
        rings = await pipe.execute()
    sets = [keys.kind_held(kind, o.decode()) for kind, ring in zip(kinds, rings, strict=True) for o in ring]
    sets += [keys.owner_held(owner) for owner in owners]
    async with store.redis.pipeline(transaction=False) as pipe:
        for key in sets[:HELD_SETS_COUNTED]:
            pipe.zcard(key)
        return sum(await pipe.execute())


def serving_kinds(live: list[bytes], kinds: dict[bytes, bytes]) -> dict[str, list[str]]:
    """Each live worker's kinds (a worker that died leaves an entry behind: it is not live)."""
    return {
        name.decode(): sorted(filter(None, kinds.get(name, b"").decode().split(","))) for name in sorted(live)
    }


async def live_workers(store: JobStore, worker_ttl_s: float) -> dict[str, list[str]]:
    """The workers alive now, with the kinds each serves."""
    now = epoch_ms(utcnow())
    async with store.redis.pipeline(transaction=False) as pipe:
        pipe.zrangebyscore(store.keys.workers, now - int(worker_ttl_s * 1000), "+inf")
        pipe.hgetall(store.keys.worker_kinds)
        live, kinds = await pipe.execute()
    return serving_kinds(live, kinds)
