"""`GET /api/jobs`: jobs newest first, filtered by state and kind, paginated with a cursor.

The cursor is the (score, id) of the last job returned, so pages stay stable while new jobs
arrive. With both filters, the state index is walked and kind checked per job; a page may then
come back short with a cursor to continue, rather than scanning without bound.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable
from datetime import datetime
from typing import Literal

from jobcast.errors import JobcastError
from jobcast.protocol import Keys, epoch_ms, loads, now_iso, utcnow
from jobcast.queries.failures import signature
from jobcast.snapshot import JobSnapshot
from jobcast.store.jobs import JobStore, Page, build_snapshot, is_record

# How many index entries one request examines at most, as a multiple of the page size.
SCAN_FACTOR = 10
# The recent windows the pages and the API name ("in the last hour"), in seconds.
Window = Literal["15m", "1h", "1d", "7d"]
WINDOWS_S: dict[str, int] = {"15m": 900, "1h": 3600, "1d": 86400, "7d": 7 * 86400}


def time_range(
    since: datetime | None, until: datetime | None, within: str | None
) -> tuple[float | None, float | None]:
    """A listing's range in epoch ms from its query: `within` a recent window (`WINDOWS_S`), or
    from `since` to `until`."""
    if within is not None:
        return epoch_ms(utcnow()) - WINDOWS_S[within] * 1000, None
    return (
        epoch_ms(since) if since is not None else None,
        epoch_ms(until) if until is not None else None,
    )


class BadCursor(JobcastError, ValueError):
    pass


def encode_cursor(score: float, job_id: str) -> str:
    # repr: the shortest text that reads back as the same float (scores carry a fraction).
    return base64.urlsafe_b64encode(f"{score!r}:{job_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        score, job_id = raw.split(":", 1)
        value = float(score)
        if not math.isfinite(value):
            raise ValueError(score)
        return value, job_id
    except (ValueError, UnicodeDecodeError):
        raise BadCursor("malformed cursor") from None


def _index(
    keys: Keys,
    state: str | None,
    kind: str | None,
    priority: str | None,
    owner: str | None,
    submitted_by: str | None,
    ranged: bool = False,
) -> tuple[str, list[tuple[bytes, bytes | None]]]:
    """The index to walk (the narrowest one there is), and the record fields each job found
    there must still match. `ranged` (a time range with a state): the state's index, whose scores
    say when each job reached it, whoever the jobs belong to."""
    filters = [(b"state", state), (b"kind", kind), (b"priority", priority)]
    if ranged and state:
        mine = [(b"owner", owner), (b"submitted_by", submitted_by)]
        return keys.index_state(state), [(f, v.encode()) for f, v in filters[1:] + mine if v]
    if owner is not None or submitted_by is not None:
        index = keys.index_owner(owner) if owner is not None else keys.index_submitted_by(submitted_by or "")
    elif state:
        index, filters = keys.index_state(state), filters[1:]
    elif kind:
        index, filters = keys.index_kind(kind), filters[2:]
    else:
        index = keys.index_all
    return index, [(f, v.encode()) for f, v in filters if v]


async def _top_level(
    store: JobStore, index: str, wanted: list[tuple[bytes, bytes | None]], top_level: bool
) -> tuple[str, list[tuple[bytes, bytes | None]]]:
    """With `top_level`, only jobs that are no job's child: their own index, where it would walk
    every job and the index is whole (jobs/upkeep/migrate.py); else each record must have no
    parent."""
    keys = store.keys
    if not top_level:
        return index, wanted
    if index == keys.index_all and await store.redis.exists(keys.index_top_ready):
        return keys.index_top, wanted
    return index, [*wanted, (b"parent", None)]


async def list_jobs(
    store: JobStore,
    *,
    state: str | None,
    kind: str | None,
    limit: int,
    cursor: str | None,
    owner: str | None = None,
    submitted_by: str | None = None,
    priority: str | None = None,
    since_ms: float | None = None,
    until_ms: float | None = None,
    text: str | None = None,
    delayed: bool = False,
    group: str | None = None,
    top_level: bool = False,
) -> Page:
    """Jobs newest first: every job, one owner's, or those a service submitted; by any of
    state, kind and priority; within a time range (`since_ms` to `until_ms`, epoch ms): when they
    reached `state`, or without one, when they were submitted; with `text` in their id, kind,
    owner, params or error; `delayed`: waiting for a time still ahead (a delayed job, or one
    backing off between attempts); `group`: failed with an error of that group (see
    jobcast/queries/failures.py); `top_level`: no other job's child (jobcast/tree.py).

    Bounded: the filters above pick the index walked, and the last three are matched against each
    record the walk reads, at most `JOBCAST_SEARCH_SCANNED` of them a call (else ten per row asked
    for). A page that reaches that bound ends early, with a cursor that searches on from there."""
    keys = store.keys
    matches = record_filter(text, delayed, group)
    ranged = since_ms is not None or until_ms is not None
    index, wanted = _index(keys, state, kind, priority, owner, submitted_by, ranged)
    index, wanted = await _top_level(store, index, wanted, top_level)
    max_score: float | str = "+inf" if until_ms is None else until_ms
    min_score: float | str = "-inf" if since_ms is None else since_ms
    after_id: str | None = None
    if cursor:
        max_score, after_id = decode_cursor(cursor)
    jobs: list[JobSnapshot] = []
    positions: list[tuple[float, str]] = []
    budget = store.settings.search_scanned if matches else limit * SCAN_FACTOR
    last: tuple[float, str] | None = None
    start = 0  # entries at max_score already passed over (ties)
    while len(jobs) < limit and budget > 0:
        # A search reads records it mostly does not keep: fewer, larger round trips.
        batch = min(budget, SEARCH_BATCH if matches else max(limit * 2, 50))
        fetched = await store.redis.zrevrangebyscore(
            index, max_score, min_score, start=start, num=batch, withscores=True
        )
        budget -= len(fetched)
        entries = fetched
        if after_id is not None:
            # Entries with the cursor's score sort by id, descending: skip up to and including it.
            entries = [(m, s) for m, s in fetched if s != max_score or m.decode() < after_id]
        if not entries:
            if len(fetched) < batch:
                return Page(jobs, None, positions)
            start += len(fetched)  # a run of ties longer than a batch
            continue
        records = await _read(store, [member for member, _ in entries], matches is not None)
        kept: list[bytes] = []
        scores: dict[bytes, float] = {}
        for (member, score), raw in zip(entries, records, strict=True):
            last = (score, member.decode())
            if not is_record(raw):
                continue  # expired; the index forgets it at the next submission
            mismatch = any(raw.get(field) != value for field, value in wanted)
            if mismatch or (matches and not matches(member, raw)):
                continue
            kept.append(member)
            scores[member] = score
            if len(jobs) + len(kept) == limit:
                break
        if matches:  # only the fields a search reads came: the whole records of those it keeps
            whole = await _read(store, kept, False)
            kept_records = dict(zip(kept, whole, strict=True))
        else:
            kept_records = {member: raw for (member, _), raw in zip(entries, records, strict=True)}
        built = [member for member in kept if is_record(kept_records[member])]
        jobs += [build_snapshot(member.decode(), kept_records[member], store.links) for member in built]
        positions += [(scores[member], member.decode()) for member in built]
        assert last is not None
        max_score, after_id, start = last[0], last[1], 0
        if len(fetched) < batch and len(jobs) < limit:
            return Page(jobs, None, positions)
    return Page(jobs, encode_cursor(*last) if last else None, positions)


SEARCHED = (b"kind", b"owner", b"params", b"error")
# What a search reads of each record to match it: the fields the filters compare and the checks
# read, ten of a record's twenty-odd (redis-py parsing whole records was most of a search's time).
MATCHED = (b"state", b"priority", b"submitted_by", b"run_at", b"next_attempt_at", b"parent", *SEARCHED)
SEARCH_BATCH = 500


async def _read(store: JobStore, members: list[bytes], matched_only: bool) -> list[Record]:
    """The records of `members` (job ids): whole, or only the fields a search matches on."""
    if not members:
        return []
    async with store.redis.pipeline(transaction=False) as pipe:
        for member in members:
            key = store.keys.job(member.decode())
            if matched_only:
                pipe.hmget(key, list(MATCHED))
            else:
                pipe.hgetall(key)
        replies = await pipe.execute()
    if not matched_only:
        return replies
    return [{f: v for f, v in zip(MATCHED, values, strict=True) if v is not None} for values in replies]


Record = dict[bytes, bytes]


def record_filter(
    text: str | None, delayed: bool, group: str | None
) -> Callable[[bytes, Record], bool] | None:
    """What a record must hold beyond the indexed filters, as one check (None: nothing)."""
    checks: list[Callable[[bytes, Record], bool]] = []
    if text:
        needle = text.casefold()
        checks.append(lambda job_id, raw: contains(job_id, raw, needle))
    if delayed:
        now = now_iso().encode()
        checks.append(lambda _, raw: waits_for_time(raw, now))
    if group:
        checks.append(lambda _, raw: in_group(raw, group))
    if not checks:
        return None
    return lambda job_id, raw: all(check(job_id, raw) for check in checks)


def waits_for_time(raw: Record, now: bytes) -> bool:
    """Queued to run at a time still ahead, or backing off until one (ISO 8601 UTC, comparable)."""
    field = {b"queued": b"run_at", b"retrying": b"next_attempt_at"}.get(raw.get(b"state", b""))
    at = raw.get(field) if field else None
    return at is not None and at > now


def in_group(raw: Record, group: str) -> bool:
    if raw.get(b"state") != b"failed" or not raw.get(b"error"):
        return False
    error = loads(raw[b"error"]) or {}
    return signature(error.get("type", ""), error.get("message", "")) == group


def contains(job_id: bytes, raw: dict[bytes, bytes], needle: str) -> bool:
    """`needle` (case-folded) in the job's id, kind, owner, params or error (as stored: JSON)."""
    return any(
        needle in value.decode(errors="replace").casefold()
        for value in (job_id, *(raw.get(name, b"") for name in SEARCHED))
    )


async def ids_starting_with(store: JobStore, prefix: str, limit: int = 10) -> list[str]:
    """Retained job ids that start with `prefix` (hex), at most `limit`: the short ids people
    copy from the dashboard."""
    members = await store.redis.zrangebylex(
        store.keys.index_ids, f"[{prefix}", f"({prefix}g", start=0, num=limit
    )
    return [m.decode() for m in members]
