"""Jobs finished over time, by kind and final state: per minute over the last hour and per hour
over the last day. The publish script counts each job's end into a time bucket (a hash per minute,
kept two hours, and per hour, kept two days: jobcast/store/lua/events.lua); this reads them for
`GET /api/finished` and the dashboard's graph."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from jobcast.protocol import epoch_ms, isoformat, utcnow
from jobcast.store.jobs import JobStore

SPANS = {"hour": ("minute", 60, 60), "day": ("hour", 3600, 24)}  # bucket, its seconds, how many


async def finished(store: JobStore, span: str) -> dict[str, Any]:
    """The last hour (or day) in buckets, oldest first: each bucket's start and its counts,
    `{kind: {state: n}}`."""
    bucket, seconds, count = SPANS[span]
    now = epoch_ms(utcnow()) // (seconds * 1000)
    numbers = list(range(now - count + 1, now + 1))
    async with store.redis.pipeline(transaction=False) as pipe:
        for n in numbers:
            pipe.hgetall(store.keys.finished(bucket, n))
        raw = await pipe.execute()
    buckets = []
    for n, fields in zip(numbers, raw, strict=True):
        counts: dict[str, dict[str, int]] = {}
        for field, value in fields.items():
            kind, _, state = field.decode().rpartition("|")
            counts.setdefault(kind, {})[state] = int(value)
        start = isoformat(datetime.fromtimestamp(n * seconds, UTC))
        buckets.append({"start": start, "counts": counts})
    return {"span": span, "bucket_s": seconds, "buckets": buckets}


def per_bucket(history: dict[str, Any]) -> list[dict[str, Any]]:
    """Each bucket's jobs by final state, every kind together (the dashboard's graph and its table,
    as the page draws them without JS)."""
    rows = []
    for bucket in history["buckets"]:
        sums = {"succeeded": 0, "failed": 0, "cancelled": 0}
        for states in bucket["counts"].values():
            for state, n in states.items():
                sums[state] = sums.get(state, 0) + n
        rows.append({"start": bucket["start"], **sums, "total": sum(sums.values())})
    return rows
