"""Where waiting jobs stand in the queue: how many jobs will start before each, and from the
deployment's recent dispatch rate, about when it starts; or, for one a limit holds back or a pause
parks, why it waits.

A due job's place is counted as the claim (jobcast/store/lua/dispatch.lua) would take jobs: every
due job of a higher priority first; within its priority, oldest first or, with fair turns between
owners, the jobs of its own owner before it plus, from every other owner, as many as the turns
give them before it (one a round). A job that is not due (delayed, or backing off), held back by a
limit or parked by a pause has no place: it is not in line yet, and its `waiting` reason (the
claim writes it in the record) or its `run_at` says why.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

from jobcast.protocol import WAITING_STATES, Priority, epoch_ms, utcnow
from jobcast.store.jobs import JobStore, waiting_since

# Owners of one priority read per pass at most: past them, a position counts fewer jobs ahead.
MAX_OWNERS = 1000


@dataclass(frozen=True, slots=True)
class Place:
    """A waiting job's place: `ahead` jobs start before it (None: not in line), in about `eta_s`
    (None: no recent dispatches to tell by); `waiting`: why it is not in line (a limit, a pause)."""

    ahead: int | None
    eta_s: float | None = None
    waiting: str | None = None
    waiting_since: str | None = None


class DispatchRate:
    """Jobs claimed per second across the deployment, over the last `window_s`, from samples of the
    claim counter (one a pass)."""

    def __init__(self, window_s: float = 300.0) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, int]] = deque()

    def sample(self, claimed: int, at: float | None = None) -> None:
        at = time.monotonic() if at is None else at
        self._samples.append((at, claimed))
        while self._samples and at - self._samples[0][0] > self.window_s:
            self._samples.popleft()

    def per_s(self) -> float | None:
        if len(self._samples) < 2:
            return None
        (t0, c0), (t1, c1) = self._samples[0], self._samples[-1]
        if t1 - t0 < 1.0 or c1 < c0:  # too short to tell, or the counter was lost with Redis
            return None
        return (c1 - c0) / (t1 - t0)


async def places(store: JobStore, job_ids: list[str], rate: DispatchRate) -> dict[str, Place | None]:
    """Each waiting job's place in the queue (None for a job that does not wait: running, ended,
    gone), in three round trips whatever the number of jobs; samples the claim counter into
    `rate` on the way."""
    redis, keys = store.redis, store.keys
    now = epoch_ms(utcnow())
    fair = store.settings.fair_turns
    out, waiting = await _waiting(store, job_ids, rate)
    if not waiting:
        return out
    order = [p.value for p in Priority]  # highest first
    async with redis.pipeline(transaction=False) as pipe:
        for priority in order:
            pipe.zcount(keys.queue(priority), "-inf", now)
            if fair:
                pipe.zrange(keys.owner_ring(priority), 0, MAX_OWNERS - 1, withscores=True)
        for job_id, priority, _ in waiting:
            pipe.zscore(keys.queue(priority), job_id)
        second = await pipe.execute()
    step = 2 if fair else 1
    due = {p: int(second[i * step]) for i, p in enumerate(order)}
    rings = {p: second[i * step + 1] for i, p in enumerate(order)} if fair else {}
    scores = second[len(order) * step :]
    # In line: due, in its queue (not held, parked or delayed).
    in_line = [w for w, s in zip(waiting, scores, strict=True) if s is not None and s < now + 1]
    line_scores = [s for s in scores if s is not None and s < now + 1]
    needed = {priority for _, priority, _ in in_line} if fair else set()
    ring_counts = [(p, member.decode(), turn) for p in order if p in needed for member, turn in rings[p]]
    async with redis.pipeline(transaction=False) as pipe:
        for (_, priority, owner), score in zip(in_line, line_scores, strict=True):
            queue = keys.owner_queue(priority, owner) if fair else keys.queue(priority)
            pipe.zcount(queue, "-inf", f"({score}")
        for priority, owner, _ in ring_counts:
            pipe.zcount(keys.owner_queue(priority, owner), "-inf", now)
        third = await pipe.execute()
    owners_due: dict[str, list[tuple[str, float, int]]] = {}
    for (priority, owner, turn), n in zip(ring_counts, third[len(in_line) :], strict=True):
        owners_due.setdefault(priority, []).append((owner, turn, int(n)))
    per_s = rate.per_s()
    # Every due job of a higher priority starts first: summed once per priority, not per job.
    higher = {p: sum(due[q] for q in order[:i]) for i, p in enumerate(order)}
    for (job_id, priority, owner), mine in zip(in_line, third[: len(in_line)], strict=True):
        ahead = higher[priority] + int(mine)
        if fair:
            ahead += others_first(owners_due.get(priority, []), owner, int(mine))
        # In line: whatever held it back before holds it no more.
        out[job_id] = Place(ahead, round((ahead + 1) / per_s, 1) if per_s else None)
    return out


async def _waiting(
    store: JobStore, job_ids: list[str], rate: DispatchRate
) -> tuple[dict[str, Place | None], list[tuple[str, str, str]]]:
    """Which of the jobs wait (each with a Place saying why it is not in line, if it is held
    back), and each waiting one's (id, priority, owner); samples the claim counter."""
    keys = store.keys
    async with store.redis.pipeline(transaction=False) as pipe:
        pipe.get(keys.claimed)
        for job_id in job_ids:
            pipe.hmget(keys.job(job_id), ["state", "priority", "owner", "waiting", "waiting_since"])
        first = await pipe.execute()
    rate.sample(int(first[0] or 0))
    out: dict[str, Place | None] = dict.fromkeys(job_ids)
    waiting = []
    for job_id, (state, priority, owner, reason, since) in zip(job_ids, first[1:], strict=True):
        if state and state.decode() in WAITING_STATES and priority:
            waiting.append((job_id, priority.decode(), (owner or b"").decode()))
            held = reason.decode() if reason else None
            began = waiting_since(since.decode() if since else None) if held else None
            out[job_id] = Place(None, None, held, began)
    return out, waiting


def others_first(owners: list[tuple[str, float, int]], owner: str, mine: int) -> int:
    """How many of the other owners' due jobs the turns take before a job with `mine` of its own
    owner's ahead of it: from each, one a round, and one more from those whose turn in the round
    comes first."""
    my_turn = next((turn for o, turn, _ in owners if o == owner), 0.0)
    return sum(
        min(n, mine + (1 if (turn, other) < (my_turn, owner) else 0))
        for other, turn, n in owners
        if other != owner
    )
