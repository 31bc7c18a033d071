"""Pausing a kind: workers stop starting its jobs, running ones finish, and its waiting jobs keep
their place until it resumes (`POST /api/kinds/{kind}/pause` and `/resume`, server/api/kind_pausing.py).

A paused kind is a field of one hash, read by every claim (jobcast/store/lua/dispatch.lua): a due job of
a paused kind is moved from its queue to the kind's parked set, scored as it was, instead of being
started. Nothing else changes for it: it stays `queued` (or `retrying`), it can be cancelled, and
submissions of the kind are still accepted. Resuming puts the parked jobs back in their queues in
batches (jobcast/store/lua/resume.lua) and wakes the workers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jobcast.protocol import epoch_ms, from_epoch_ms, isoformat, utcnow
from jobcast.redis.client import awaited
from jobcast.store.jobs import JobStore

RESUME_BATCH = 1000  # parked jobs put back per script call, so Redis is never held for long


async def pause(store: JobStore, kind: str, by: str | None = None) -> None:
    """Pause `kind`; `by`: who did (an admin's name), for the held jobs' reason. Pausing again
    keeps when and by whom it was first paused (HSETNX)."""
    # When, then who after a space (jobcast/store/lua/claim.lua reads both).
    value = f"{epoch_ms(utcnow())} {by}" if by else str(epoch_ms(utcnow()))
    await awaited(store.redis.hsetnx(store.keys.paused, kind, value))


async def resume(store: JobStore, kind: str) -> int:
    """Resume `kind`; returns how many parked jobs went back to their queues."""
    moved = 0
    while True:
        answer = await store.scripts.call("resume", kind=kind, max=RESUME_BATCH)
        moved += int(answer["moved"])
        if not answer["left"]:
            return moved


async def paused_kinds(store: JobStore, since: dict[bytes, bytes] | None = None) -> dict[str, dict[str, Any]]:
    """Each paused kind: since when (ISO 8601), by whom (None: not said), and how many of its jobs
    are parked. `since`: the paused hash, when the caller read it already (one round trip less)."""
    if since is None:
        since = await awaited(store.redis.hgetall(store.keys.paused))
    if not since:
        return {}
    kinds = sorted(k.decode() for k in since)
    async with store.redis.pipeline(transaction=False) as pipe:
        for kind in kinds:
            pipe.zcard(store.keys.parked(kind))
        parked = await pipe.execute()
    out = {}
    for kind, n in zip(kinds, parked, strict=True):
        ms, _, by = since[kind.encode()].decode().partition(" ")
        out[kind] = {"since": isoformat(from_epoch_ms(int(ms))), "by": by or None, "parked": n}
    return out


async def pause_everywhere(stores: Sequence[JobStore], kind: str, by: str | None = None) -> None:
    """Pause `kind` on every shard: each shard's claims read their own shard's paused kinds."""
    for store in stores:
        await pause(store, kind, by)


async def resume_everywhere(stores: Sequence[JobStore], kind: str) -> int:
    """Resume `kind` on every shard; how many parked jobs went back to their queues in all."""
    return sum([await resume(store, kind) for store in stores])
