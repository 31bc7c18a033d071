"""The benchmark harness must not rot: a tiny run of every part, checking that it runs and reports
(figures are not judged here; they belong to `make bench` and docs/performance.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import jobs, report
from bench.machine import run_name
from bench.peers import nchan

ROOT = Path(__file__).resolve().parent.parent


# A quick run of every part takes about two minutes on the 2-core machine.
@pytest.mark.timeout(300)
def test_the_benchmark_harness_runs_every_part_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "results"
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "fan-out:" in run.stdout and "relay ingestion:" in run.stdout
    (written,) = out.glob("*.json")
    results = json.loads(written.read_text())
    # Named by date, machine and commit, and saying which commit it measured.
    assert written.stem == run_name(results["machine"], results["started"])
    assert written.with_suffix(".png").exists() and results["machine"]["commit"]
    systems = {row["system"] for row in results["fanout"]}
    if nchan.available():
        assert systems == {"ceiling", "jobcast", "socketio", "nchan"}
    else:  # a machine without Debian's nchan: the run says what it left out
        assert systems == {"ceiling", "jobcast", "socketio"} and "nchan" in results["not_run"]
    for row in results["fanout"]:
        # Every watcher connected and events reached them, whichever system served them.
        assert row["connected"] == row["watchers"], row
        assert row["deliveries_per_s"] > 0 and row["latency_ms"]["count"] > 0, row
    # A poll sees one update at most (counted at the window edges, so not exactly >= 1).
    assert results["polling"]["requests_per_delivery"] > 0
    assert all(row["connected"] == row["watchers"] for row in results["idle"])
    assert results["ingestion"]["taken"] == results["ingestion"]["published"]
    # The redis-py reader it is compared with took messages too (at its own pace).
    assert 0 < results["ingestion_redispy"]["taken"] <= results["ingestion_redispy"]["published"]
    assert "redis-py PubSub reader" in run.stdout
    assert results["submit"]["submitted"] > 0 and results["submit"]["jobs_per_s"] > 0
    assert 0 < results["progress"]["published"] <= results["progress"]["calls"]
    # Every limit was hit and answered with its status while /healthz kept answering.
    limits = results["limits"]["statuses"]
    assert "413" in limits["body"] and "429" in limits["rate"] and "413" in limits["quota"]
    assert set(limits["bad"]) == {"400"} and "408" in limits["slow"]
    assert results["limits"]["healthz_ms"]["count"] > 0
    # On a cluster, the drain ran on the slot's primary and sent the other primaries nothing.
    cluster = [row for row in results["cluster"] if row["system"] == "cluster"]
    assert cluster and all(row["jobs_per_s"] > 0 and row["other_primaries_commands"] == 0 for row in cluster)
    assert {row["system"] for row in results["cluster"]} == {
        "single server",
        "with a replica",
        "cluster",
        "3 shards",
    }
    # Spread over three shards, each shard's primary ran jobs and spent CPU on them.
    (sharded,) = [row for row in results["cluster"] if row["system"] == "3 shards"]
    assert sum(shard["jobs"] for shard in sharded["shards"]) == sharded["jobs"]
    # (A quick run's CPU can read as 0: /proc counts it in 10 ms ticks.)
    assert all(shard["jobs"] > 0 and shard["primary_cpu_us_per_own_job"] >= 0 for shard in sharded["shards"])
    # Intake and fan-out through jobcast web on one server and on three shards.
    intake_rows = results["cluster_intake"]
    assert {row["system"] for row in intake_rows} == {"single server", "cluster", "3 shards"}
    assert all(row["jobs"] > 0 and row["refused_requests"] == 0 for row in intake_rows)
    (spread,) = [row for row in intake_rows if row["system"] == "3 shards"]
    assert all(0.2 < shard["jobs_share"] < 0.45 for shard in spread["shards"]), spread
    fanout = results["cluster_fanout"]
    assert {row["system"] for row in fanout} == {"single server", "3 shards"}
    assert all(row["deliveries_per_s"] > 0 and row["connected"] == row["watchers"] for row in fanout)
    (sharded_fanout,) = [row for row in fanout if row["system"] == "3 shards"]
    assert set(sharded_fanout["redis_cpu_us_per_event"]) == {
        f"shard {k}{r}" for k in range(3) for r in ("", " replica")
    }
    assert (
        "intake on one Redis and a cluster" in run.stdout
        and "fan-out on one Redis and on shards" in run.stdout
    )
    # Compaction shrinks what Redis holds per finished job, with either encoding setting.
    for row in results["footprint"]["rows"]:
        assert 0 < row["bytes_per_job_compacted"] < row["bytes_per_job_whole"], row
    # Jobs reporting progress: jobcast and saq, and how many events jobcast's coalescing kept.
    assert {row["system"] for row in results["jobs_progress"]} == {"jobcast", "saq"}
    (coalesced,) = [
        r["progress_events_per_job"] for r in results["jobs_progress"] if r["system"] == "jobcast"
    ]
    assert 1 <= coalesced <= 5
    # The drain with limits and fair turns beside plain jobcast and saq; a binding limit held.
    limited = results["jobs_limits"]
    assert {row["system"] for row in limited} == {"jobcast", "saq"} | {f"jobcast {v}" for v in jobs.VARIANTS}
    (binding,) = [row for row in limited if row["system"] == "jobcast limit-binding"]
    assert 1 <= binding["most_running"] <= jobs.LIMIT, binding
    (half,) = [row for row in limited if row["system"] == "jobcast limit-half"]
    assert 1 <= half["most_running"] <= 2 * jobs.LIMIT, half
    assert "with limits and fair turns:" in run.stdout
    # The live drain, jobcast beside saq.
    assert {row["system"] for row in results["jobs_live"]} == {"jobcast", "saq"}
    assert all(row["jobs_per_s"] > 0 for row in results["jobs_live"])
    assert "live drain:" in run.stdout
    # Each system's enqueue→start delays at a steady rate, from its own timestamps.
    assert {row["system"] for row in results["jobs_latency"]} == {"jobcast", "arq", "arq-tuned", "saq"}
    for row in results["jobs_latency"]:
        assert row["jobs"] > 0 and 0 <= row["p50_ms"] <= row["p99_ms"] <= row["max_ms"], row
    # The soak's short run loaded the server and sampled it.
    soak = results["soak"]
    assert soak["counts"]["submitted"] > 0 and soak["counts"]["streams_opened"] > 0 and soak["samples"]
    assert soak["gauge_after_load"] == 0  # every stream the load opened was counted closed
    # Saturation: both servers stepped through the rates, each with its highest sustained rate.
    saturation = results["saturation"]
    assert {row["system"] for row in saturation["steps"]} == {"ceiling", "jobcast"}
    for row in saturation["steps"]:
        assert row["connected"] == row["watchers"] and row["deliveries_per_s"] > 0, row
        assert len(row["rounds"]) == saturation["rounds"] == 1, row
    assert set(saturation["highest_sustained_rate"]) == {"ceiling", "jobcast"}
    assert "fan-out saturation:" in run.stdout
    # Text search: pages read their bound and the oldest job was found, at both sizes retained.
    assert [row["retained"] for row in results["search"]] == [200, 2_000]
    for row in results["search"]:
        assert row["page_ms_median"] > 0 and row["pages_to_the_oldest"] >= 1, row
    # HTTP intake: singles and a batch were taken, and Redis said where its time went.
    assert [row["mode"] for row in results["intake"]] == ["single", "batch of 1000"]
    for row in results["intake"]:
        assert row["jobs"] > 0 and row["refused_requests"] == 0 and "evalsha" in row["redis_commands"], row
    # Redis timed the create script's calls, on an emptied Redis and an accumulating one.
    assert [row["redis"] for row in results["create_script"]] == ["emptied before each batch", "accumulating"]
    for row in results["create_script"]:
        assert row["script_calls"] == row["jobs"] // 100 and row["script_us_per_job"]["min"] > 0, row
    # The dashboard took the live events in both designs it compares, frame by frame.
    for design in ("shipped", "plain_table"):
        frames = results["frames"][design]
        assert frames["frames"] > 0 and frames["events_applied_per_s"] > 0, frames
        assert frames["main_thread_ms_per_s"], frames
    for visit in results["frames"]["first_visit"].values():
        assert visit["first_paint_ms"] > 0 and 0 < visit["html_transfer_bytes"] < visit["html_bytes"], visit
    # Trees: the parent and its children drained beside the plain batch, the bar within its rate.
    assert [row["shape"] for row in results["trees"]] == ["tree", "batch"]
    tree, batch = results["trees"]
    assert tree["jobs"] == batch["jobs"] == 300 and tree["redis_bytes_per_job"] > 0
    assert 1 <= tree["parent_progress_events"] <= 10 * tree["seconds"] + 3, tree
    assert "trees:" in run.stdout
    assert written.with_suffix(".png").stat().st_size > 0


def test_the_report_copes_with_cpu_too_small_to_measure() -> None:
    # /proc counts CPU in 10 ms ticks: a short run can read 0 for a server, and the table must
    # still print (a quick run once died dividing by it).
    def row(system: str, cpu_us: float) -> dict[str, object]:
        return {
            "system": system,
            "server_cpu_us_per_delivery": cpu_us,
            "deliveries_per_s": 200.0,
            "latency_ms": {"p50_ms": 1.0, "p99_ms": 2.0, "max_ms": 3.0},
            "server_cpu_share": 0.0,
            "load_side_cpu_share": 0.1,
        }

    machine = {"cpu": "x", "cores": 2, "usable_cores": 2, "memory_gb": 1, "kernel": "k", "python": "3.11"}
    workload = {"watchers": 20, "jobs": 4, "rate": 200.0, "seconds": 1.0}
    rows = [row("ceiling", 0.0), row("jobcast", 0.0), row("socketio", 30.0)]
    text = report.table({"machine": machine, "workload": workload, "fanout": rows})
    assert "python-socketio / jobcast CPU per delivery: -" in text
    assert report.ratio(5.4, 4.0) == "1.35x"
