"""The job snapshot's type: the TypedDict the code is checked against and the model the OpenAPI
document publishes describe the same fields, and a snapshot stays a plain dict at run time."""

from __future__ import annotations

from typing import NotRequired, get_origin, get_type_hints

from jobcast.server.http import schemas
from jobcast.snapshot import ErrorSnapshot, JobSnapshot, ProgressSnapshot
from jobcast.store.jobs import build_snapshot, no_links


def test_the_typed_snapshot_and_the_published_model_name_the_same_fields() -> None:
    assert set(get_type_hints(JobSnapshot)) == set(schemas.JobSnapshot.model_fields)
    assert set(get_type_hints(ProgressSnapshot)) == set(schemas.Progress.model_fields)
    assert set(get_type_hints(ErrorSnapshot)) == set(schemas.ErrorInfo.model_fields)


def test_a_snapshot_is_built_with_every_field_and_validated_by_nothing() -> None:
    raw = {b"kind": b"demo", b"state": b"running", b"seq": b"7", b"params": b'{"steps": 3}'}
    snapshot = build_snapshot("a" * 32, raw, no_links)
    assert type(snapshot) is dict  # no model, no copy: what the hot path sends is what it built
    # Every field but the one a listing's snapshots leave out: `output`, one job's own.
    hints = get_type_hints(JobSnapshot, include_extras=True)
    assert get_origin(hints["output"]) is NotRequired
    assert set(snapshot) == set(hints) - {"output"}
    assert (snapshot["kind"], snapshot["last_event_id"], snapshot["params"]) == ("demo", 7, {"steps": 3})
    assert schemas.JobSnapshot.model_validate({**snapshot, "links": LINKS}).state == "running"


LINKS = {k: "/x" for k in ("self", "events", "cancel", "retry", "result", "token", "page")}


def test_a_snapshot_reads_id_first_and_its_links_last() -> None:
    snapshot = build_snapshot("a" * 32, {b"kind": b"demo", b"state": b"queued"}, no_links)
    assert next(iter(snapshot)) == "id" and list(snapshot)[-2:] == ["links", "stream_token"]


async def test_a_stray_field_on_a_gone_jobs_key_is_no_job(client, redis, settings) -> None:
    # A claim may write a held job's waiting reason after the job's record expired: the hash that
    # leaves is not a job, and nobody is shown one with no kind and no state.
    from jobcast.protocol import Keys

    job_id = "d" * 32
    await redis.hset(
        Keys(settings.key_prefix).job(job_id), "waiting", "demo is at its limit (1 of 1 running)"
    )
    answer = await client.get(f"/api/jobs/{job_id}")
    assert answer.status == 404
    assert (await client.get(f"/api/jobs/{job_id}/events")).status == 404
    listed = await (await client.get("/api/jobs")).json()
    assert job_id not in [job["id"] for job in listed["jobs"]]
