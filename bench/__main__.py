"""`python -m bench [--quick] [--rounds N] [--only NAME ...] [--out DIR]`: run, print, save.

Prints a table, and writes DIR/<date>-<machine>-<commit>.json and its plot beside it (default DIR:
bench/results).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import (
    cluster,
    footprint,
    frames,
    intake,
    jobs,
    limits,
    output,
    processes,
    queue_places,
    report,
    saturation,
    scenarios,
    search,
    soak,
    trees,
)
from bench.machine import describe
from bench.peers import nchan
from jobcast.files.local import FileStore

FANOUT_SYSTEMS = ("ceiling", "jobcast", "socketio", "nchan")
PARTS = (
    "fanout",
    "saturation",
    "polling",
    "idle",
    "ingestion",
    "submit",
    "progress",
    "jobs",
    "jobs_limits",
    "jobs_live",
    "queue_places",
    "limits",
    "footprint",
    "frames",
    "intake",
    "search",
    "output",
    "trees",
    "cluster",
    "soak",
)
# The soak runs 30 minutes: only when asked for by name (or as a short one with --quick).
DEFAULT_PARTS = tuple(part for part in PARTS if part != "soak")


def run(
    workload: scenarios.Workload, rounds: int, only: set[str], systems: list[str], tmp: Path
) -> dict[str, Any]:
    results: dict[str, Any] = {"machine": describe(), "workload": vars(workload), "started": time.time()}
    with processes.redis_server() as redis:
        if "nchan" in systems and not nchan.available():
            systems = [s for s in systems if s != "nchan"]
            results["not_run"] = {"nchan": "nginx with libnginx-mod-nchan is not installed"}
        if "fanout" in only:
            # Alternating systems round by round, so drift in the machine hits them all alike.
            results["fanout"] = [
                scenarios.deliveries(system, redis, workload, tmp)
                for _ in range(rounds)
                for system in systems
            ]
        if "saturation" in only:
            results["saturation"] = saturation.saturation(redis, workload, tmp, rounds)
        if "polling" in only:
            results["polling"] = scenarios.deliveries("polling", redis, workload, tmp)
        if "idle" in only:
            runs = [("ceiling", "half"), ("jobcast", "half"), ("jobcast", "sse"), ("jobcast", "ws")]
            results["idle"] = [scenarios.idle(s, redis, workload, tmp, mix) for s, mix in runs]
        if "ingestion" in only:
            results["ingestion"] = scenarios.ingestion(redis, workload, tmp)
            results["ingestion_redispy"] = scenarios.ingestion_redispy(redis, workload, tmp)
        if "submit" in only:
            results["submit"] = scenarios.submissions(redis, workload, tmp)
        if "progress" in only:
            results["progress"] = scenarios.progress_api(redis, workload)
        if "limits" in only:
            results["limits"] = limits.healthz_under_limits(redis, workload.limits_seconds)
        if "jobs" in only:
            results["jobs"] = jobs.throughput(redis, workload.drain_jobs, rounds)
            results["jobs_progress"] = jobs.throughput_with_progress(redis, workload.drain_jobs, rounds)
            results["jobs_latency"] = jobs.latency(
                redis, workload.steady_rate, workload.steady_seconds, rounds
            )
        if "soak" in only:
            results["soak"] = soak.soak(redis, workload.soak_seconds, workload.soak_sample_s)
        results |= later_parts(redis, workload, only, tmp, rounds)
    return results


def later_parts(
    redis: Any, workload: scenarios.Workload, only: set[str], tmp: Path, rounds: int
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    if "jobs_limits" in only:
        results["jobs_limits"] = jobs.throughput_with_limits(redis, workload.drain_jobs, rounds)
    if "jobs_live" in only:
        results["jobs_live"] = jobs.throughput_live(redis, workload.drain_jobs, rounds)
    if "queue_places" in only:
        results["queue_places"] = queue_places.cost(
            redis, workload.places_jobs, workload.places_watchers, workload.places_seconds
        )
    if "footprint" in only:
        files = FileStore(tmp / "files")
        results["footprint"] = footprint.redis_footprint(redis, files, quick=workload is scenarios.QUICK)
    if "intake" in only:
        results["intake"] = intake.intake(redis, workload.intake_seconds)
        results["create_script"] = intake.create_script(redis, workload.create_batches)
    if "search" in only:
        results["search"] = search.text_search(redis, workload.search_retained)
    if "output" in only:
        results["output"] = output.one_job(
            redis, workload.output_rate, workload.output_watchers, workload.output_seconds, tmp
        )
        # With the writers on the load core (beside Redis and the watchers), and on the server's,
        # where the load core is left to Redis and the watchers.
        results["output_many"] = [
            output.many_jobs(
                redis, workload.output_jobs, workload.output_jobs_rate, workload.output_seconds, tmp, core
            )
            for core in (processes.LOAD_CORE, processes.SERVER_CORE)
        ]
        results["output_memory"] = output.redis_memory(redis, workload.output_memory_mb)
        results["output_page"] = output.large_page(redis, workload.output_page_mb, workload.output_seconds)
    if "cluster" in only:
        results["cluster"] = cluster.drains(workload.drain_jobs, rounds)
        results["cluster_intake"] = cluster.intakes(workload.intake_seconds, rounds)
        results["cluster_fanout"] = cluster.fanouts(workload, rounds, tmp)
    if "trees" in only:
        results["trees"] = trees.trees(redis, workload.tree_children, rounds)
    if "frames" in only:
        results["frames"] = frames.dashboard_frames(
            redis, workload.frame_rows, workload.frame_live, seconds=workload.frame_seconds
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a tiny workload: checks the harness runs")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="rounds per system, alternating, where a part has rounds (fan-out, saturation steps, jobs)",
    )
    parser.add_argument("--only", nargs="*", choices=PARTS, default=None)
    parser.add_argument("--systems", nargs="*", choices=FANOUT_SYSTEMS, default=list(FANOUT_SYSTEMS))
    parser.add_argument("--watchers", type=int, help="override the fan-out watcher count")
    parser.add_argument("--rate", type=float, help="override the fan-out event rate (events/s)")
    parser.add_argument("--ingest-rate", type=float, help="override the relay ingestion rate (messages/s)")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    workload = scenarios.QUICK if args.quick else scenarios.Workload()
    if args.watchers:
        workload.watchers = args.watchers
    if args.rate:
        workload.rate = args.rate
    if args.ingest_rate:
        workload.ingest_rate = args.ingest_rate
    with tempfile.TemporaryDirectory(prefix="jobcast-bench-") as tmp:
        only = set(args.only or (PARTS if args.quick else DEFAULT_PARTS))
        results = run(workload, args.rounds, only, args.systems, Path(tmp))
    print(report.table(results))
    args.out.mkdir(parents=True, exist_ok=True)
    path = report.save(results, args.out)
    print(f"\nwrote {path} and {path.with_suffix('.png')}")


if __name__ == "__main__":
    main()
