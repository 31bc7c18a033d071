"""Failed jobs grouped by what went wrong (`GET /api/failures`, the `/failures` page): one group
per error type and message, with numbers, ids and quoted text taken out of the message so that
"failed at step 2" and "failed at step 7" are one problem. Bounded: the newest `limit` failures
within the window are read (one sorted-set range and one pipelined read of their records), however
many jobs are retained."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jobcast.protocol import State, epoch_ms, loads, utcnow
from jobcast.redis.client import awaited
from jobcast.store.jobs import JobStore
from jobcast.store.shards import on_each

# What varies between occurrences of one problem: ids, numbers, quoted values.
VARIABLE = re.compile(r"'[^']*'|\"[^\"]*\"|\b[0-9a-f]{8,}\b|\d+(?:\.\d+)?")
HOUR_S = 3600
# A sparkline's bars: hours, or longer buckets for a long window.
BARS = 24


def signature(error_type: str, message: str) -> str:
    """The group a failure belongs to: its type and its message with what varies taken out."""
    return f"{error_type}: {VARIABLE.sub('…', message)}"


@dataclass
class Group:
    signature: str
    type: str
    message: str  # the newest occurrence's own message
    count: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    first_seen: str = ""
    last_seen: str = ""
    ids: list[str] = field(default_factory=list)  # newest first
    # Those not retried yet (a retry makes a new job and links the two): what "retry" would touch.
    open_ids: list[str] = field(default_factory=list)
    # The others, each with the job its retry made.
    retries: dict[str, str] = field(default_factory=dict)
    # Failures per bucket of the window (`bucket_s`), oldest first: the page's sparkline.
    per_bucket: list[int] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        return {
            "signature": self.signature,
            "type": self.type,
            "message": self.message,
            "count": self.count,
            "kinds": dict(self.kinds.most_common()),
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "ids": self.ids,
            "open_ids": self.open_ids,
            "retries": self.retries,
            "per_bucket": self.per_bucket,
        }


async def _newest_failures(store: JobStore, since_ms: int, limit: int) -> tuple[list[tuple[Any, ...]], bool]:
    """One shard's newest `limit` failures since `since_ms`: (id, error, kind, finished_at,
    retried_by) each, and whether that was all of them."""
    index = store.keys.index_state(State.FAILED.value)
    ids = [
        i.decode()
        for i in await awaited(store.redis.zrevrangebyscore(index, "+inf", since_ms, start=0, num=limit + 1))
    ]
    complete = len(ids) <= limit
    ids = ids[:limit]
    async with store.redis.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hmget(store.keys.job(job_id), ["error", "kind", "finished_at", "retried_by"])
        rows = await pipe.execute()
    # Expired since the index was read, or retried into another state.
    return [(job_id, *row) for job_id, row in zip(ids, rows, strict=True) if row[0] and row[2]], complete


async def failure_groups(stores: Sequence[JobStore], window_s: float, limit: int) -> dict[str, Any]:
    """The failures of the last `window_s` seconds (the newest `limit` of them, of every shard),
    grouped, the largest group first; `scanned` says how many were read and `complete` whether that
    was all."""
    now_ms = epoch_ms(utcnow())
    since_ms = now_ms - int(window_s * 1000)
    bucket_s = HOUR_S * max(1, -(-int(window_s) // (HOUR_S * BARS)))
    buckets = max(1, -(-int(window_s) // bucket_s))
    each = await on_each(stores, lambda store: _newest_failures(store, since_ms, limit))
    found = [row for rows, _ in each for row in rows]
    # The index scores a job when its end is written, and a worker's jobs can be written in another
    # order than they ended: order by the end time the page shows (fixed-width ISO 8601, UTC).
    found.sort(key=lambda item: item[3], reverse=True)
    complete = all(whole for _, whole in each) and len(found) <= limit
    found = found[:limit]
    groups: dict[str, Group] = {}
    for job_id, raw_error, raw_kind, raw_finished, retried_by in found:
        error = loads(raw_error)
        kind, finished = (raw_kind or b"").decode(), raw_finished.decode()
        key = signature(error.get("type", ""), error.get("message", ""))
        group = groups.get(key)
        if group is None:  # newest first: the first seen is the newest occurrence
            group = groups[key] = Group(key, error.get("type", ""), error.get("message", ""))
            group.last_seen = finished
            group.per_bucket = [0] * buckets
        group.count += 1
        group.kinds[kind] += 1
        group.first_seen = finished
        group.ids.append(job_id)
        if retried_by:
            group.retries[job_id] = retried_by.decode()
        else:
            group.open_ids.append(job_id)
        age = int((now_ms - epoch_ms(datetime.fromisoformat(finished))) // (bucket_s * 1000))
        group.per_bucket[buckets - 1 - min(max(age, 0), buckets - 1)] += 1
    ordered = sorted(groups.values(), key=lambda g: (-g.count, g.signature))
    return {
        "window_s": window_s,
        "bucket_s": bucket_s,
        "scanned": len(found),
        "complete": complete,
        "groups": [g.describe() for g in ordered],
    }
