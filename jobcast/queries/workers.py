"""`GET /api/workers` and the workers page: each worker (live, or gone a little while), what it is,
and the jobs it runs now; `GET /api/workers/{name}` and a worker's own page add the jobs that ended
on it last (as its heartbeat reports them: `JOBCAST_WORKER_RECENT_JOBS`)."""

from __future__ import annotations

from typing import Any

from jobcast.bulk import without_bulk
from jobcast.protocol import epoch_ms, loads, utcnow
from jobcast.redis.client import awaited
from jobcast.store.shards import Shards, on_each


async def workers(shards: Shards, worker_ttl_s: float, lost_shown_s: float) -> list[dict[str, Any]]:
    """Every worker seen within `lost_shown_s`, live ones first: its info, its heartbeat's age,
    whether it is gone (no heartbeat within `worker_ttl_s`), and the jobs it holds now (on every
    shard: each job's lease is on its own)."""
    store = shards.home
    keys = store.keys
    now = epoch_ms(utcnow())
    info = await awaited(store.redis.hgetall(keys.worker_info))
    leases: dict[bytes, bytes] = {}
    for each in await on_each(shards.stores, lambda shard: awaited(shard.redis.hgetall(shard.keys.leases))):
        leases |= each
    running: dict[str, list[str]] = {}
    for job_id, holder in leases.items():
        # A lease names the claim (`<worker>#<poll>`, jobs/arq_runtime.py).
        running.setdefault(holder.decode().split("#", 1)[0], []).append(job_id.decode())
    out, forgotten = [], []
    for name, raw in info.items():
        worker = loads(raw)
        worker["kinds"] = without_bulk(worker.get("kinds", []))
        age_ms = now - int(worker.pop("seen_ms", 0))
        if age_ms > lost_shown_s * 1000:
            forgotten.append(name)
            continue
        out.append(
            {
                "name": name.decode(),
                **worker,
                "heartbeat_age_s": round(age_ms / 1000, 1),
                "gone": age_ms > worker_ttl_s * 1000,
                "jobs": sorted(running.get(name.decode(), [])),
            }
        )
    if forgotten:
        await awaited(store.redis.hdel(keys.worker_info, *forgotten))
    ids = [job_id for worker in out for job_id in worker["jobs"]]
    fields = await shards.job_fields(ids, ["kind", "state", "progress", "started_at"])
    for worker in out:
        worker["jobs"] = [job(job_id, *fields[job_id]) for job_id in worker["jobs"]]
    return sorted(out, key=lambda w: (w["gone"], w["heartbeat_age_s"], w["name"]))


def job(
    job_id: str, kind: bytes | None, state: bytes | None, progress: bytes | None, started: bytes | None
) -> dict[str, Any]:
    return {
        "id": job_id,
        "kind": kind.decode() if kind else None,
        "state": state.decode() if state else None,
        "progress": loads(progress) if progress else None,
        "started_at": started.decode() if started else None,
    }


async def recent_jobs(shards: Shards, ids: list[str]) -> list[dict[str, Any]]:
    """The jobs `ids` as they are now (newest end first): those no longer retained are left out."""
    fields = await shards.job_fields(ids, ["kind", "state", "finished_at", "error"])
    out = []
    for job_id, (kind, state, finished, error) in fields.items():
        if kind is None:
            continue
        problem = loads(error) if error else None
        out.append(
            {
                "id": job_id,
                "kind": kind.decode(),
                "state": state.decode() if state else None,
                "finished_at": finished.decode() if finished else None,
                "error": f"{problem['type']}: {problem['message']}" if problem else None,
            }
        )
    return out
