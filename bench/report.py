"""The figures of a run as a table, a JSON file and a plot."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import orjson

from bench.machine import run_name

MIXES = {"half": "half SSE, half WebSocket", "sse": "SSE", "ws": "WebSocket"}


def ratio(a: float, b: float) -> str:
    """a/b as "1.35x", or "-" when b is 0: a short run's CPU can read as 0 (/proc counts in 10 ms
    ticks)."""
    return f"{a / b:.2f}x" if b else "-"


def median_by_system(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for system in dict.fromkeys(row["system"] for row in rows):
        mine = [row for row in rows if row["system"] == system]
        out[system] = {
            "cpu_us": statistics.median(r["server_cpu_us_per_delivery"] for r in mine),
            "per_s": statistics.median(r["deliveries_per_s"] for r in mine),
            "p50": statistics.median(r["latency_ms"].get("p50_ms", 0) for r in mine),
            "p99": statistics.median(r["latency_ms"].get("p99_ms", 0) for r in mine),
            "max": max(r["latency_ms"].get("max_ms", 0) for r in mine),
            "cpu_share": statistics.median(r["server_cpu_share"] for r in mine),
            "load_share": statistics.median(r["load_side_cpu_share"] for r in mine),
        }
    return out


def table(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"machine: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), {m['memory_gb']} GB, "
        f"Linux {m['kernel']}, Python {m['python']}",
        "server pinned to core 0; load generator, publisher, Redis and workers to core 1",
    ]
    w = results["workload"]
    if "fanout" in results:
        lines += [
            "",
            f"fan-out: {w['watchers']} watchers over {w['jobs']} jobs (half SSE, half WebSocket; "
            f"socketio: WebSocket), {w['rate']:g} events/s, {w['seconds']:g} s",
            f"{'system':<10} {'deliveries/s':>13} {'CPU µs/deliv':>13} {'core used':>10} "
            f"{'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'vs ceiling':>11} {'load side':>10}",
        ]
        medians = median_by_system(results["fanout"])
        ceiling = medians.get("ceiling", {}).get("cpu_us") or 0
        for system, f in medians.items():
            vs_ceiling = ratio(f["cpu_us"], ceiling)
            lines.append(
                f"{system:<10} {f['per_s']:>13,.0f} {f['cpu_us']:>13.2f} {f['cpu_share']:>10.0%} "
                f"{f['p50']:>8.2f} {f['p99']:>8.2f} {f['max']:>8.1f} {vs_ceiling:>11} "
                f"{f['load_share']:>10.0%}"
            )
        for system, why in results.get("not_run", {}).items():
            lines.append(f"{system}: not run ({why})")
        if "jobcast" in medians and "socketio" in medians:
            lines.append(
                "python-socketio / jobcast CPU per delivery: "
                + ratio(medians["socketio"]["cpu_us"], medians["jobcast"]["cpu_us"])
            )
    if "polling" in results:
        p = results["polling"]
        lines += [
            "",
            f"polling every {w['poll_interval_s']:g} s ({p['watchers']} pollers): "
            f"{p['deliveries_per_s']:,.0f} updates seen/s, {p['requests_per_delivery']} requests per update, "
            f"{p['server_cpu_us_per_delivery']:.1f} µs server CPU per update, "
            f"latency p50 {p['latency_ms'].get('p50_ms', 0):.0f} ms, "
            f"p99 {p['latency_ms'].get('p99_ms', 0):.0f} ms",
        ]
    for row in results.get("idle", []):
        lines.append(
            f"idle {row['system']} ({MIXES[row['mix']]}): {row['connected']:,} watchers open "
            f"({row['failed']} failed) in "
            f"{row['connect_s']:.1f} s, {row['rss_kb_per_watcher']:.1f} KB RSS each "
            f"({row['rss_before_mb']} → {row['rss_after_mb']} MB)"
        )
    if "ingestion" in results:
        i = results["ingestion"]
        lines.append(
            f"relay ingestion: {i['taken_per_s']:,} messages/s taken ({i['taken']:,} of {i['published']:,} "
            f"published at {i['publish_rate']:,}/s), {i['server_cpu_us_per_message']} µs CPU each, "
            f"{i['behind_at_end_ms']} ms behind when publishing stopped, {i['reconnects']} reconnects"
        )
    if "ingestion_redispy" in results:
        r = results["ingestion_redispy"]
        lines.append(
            f"redis-py PubSub reader, same load: {r['taken_per_s']:,} messages/s taken "
            f"({r['taken']:,} of {r['published']:,} published at {r['publish_rate']:,}/s)"
            + (", disconnected by Redis" if r["disconnected"] else "")
        )
    if "submit" in results:
        s = results["submit"]
        lat = s["submit_to_started_ms"]
        lines.append(
            f"submit→started at {s['submit_rate']:g}/s: p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms, "
            f"max {lat['max_ms']} ms; {s['jobs_per_s']} jobs/s end to end ({s['throughput_jobs']} jobs, "
            "5 progress steps each, 2 workers)"
        )
    if "progress" in results:
        p = results["progress"]
        lines.append(
            f"progress.update(): {p['us_per_call']} µs per call "
            f"over {p['calls']:,} calls in {p['seconds']} s; "
            f"{p['published_per_s']} events/s published (limit {p['rate_limit_hz']:g}/s)"
        )
    lines += (
        jobs_lines(results)
        + progress_lines(results)
        + job_limits_lines(results)
        + jobs_live_lines(results)
        + cluster_lines(results)
        + cluster_intake_lines(results)
        + cluster_fanout_lines(results)
        + places_lines(results)
        + latency_lines(results)
        + limits_lines(results)
        + footprint_lines(results)
        + soak_lines(results)
        + frame_lines(results)
        + intake_lines(results)
        + saturation_lines(results)
        + search_lines(results)
        + tree_lines(results)
        + output_lines(results)
    )
    return "\n".join(lines)


def saturation_lines(results: dict[str, Any]) -> list[str]:
    if "saturation" not in results:
        return []
    s = results["saturation"]
    lines = [
        "",
        f"fan-out saturation: {s['watchers']} watchers over {s['jobs']} jobs, rates stepped up, "
        f"medians of {s.get('rounds', 1)} alternating rounds a step "
        "(sustained: ≥ 97% of the deliveries asked for, p99 < 50 ms)",
        f"{'system':<10} {'events/s':>9} {'asked/s':>9} {'delivered/s':>12} {'CPU µs/deliv':>13} "
        f"{'core used':>10} {'p99 ms':>8} {'load side':>10} {'sustained':>10}",
    ]
    for r in s["steps"]:
        lines.append(
            f"{r['system']:<10} {r['rate']:>9,.0f} {r['deliveries_asked_per_s']:>9,.0f} "
            f"{r['deliveries_per_s']:>12,.0f} {r['server_cpu_us_per_delivery']:>13.2f} "
            f"{r['server_cpu_share']:>10.0%} {r['latency_ms'].get('p99_ms', 0):>8.1f} "
            f"{r['load_side_cpu_share']:>10.0%} {'yes' if r['sustained'] else 'no':>10}"
        )
    highest = ", ".join(
        f"{system} {rate:,.0f} events/s" for system, rate in s["highest_sustained_rate"].items()
    )
    lines.append(f"highest rate sustained: {highest}")
    if s["jobcast_cpu_vs_ceiling"] is not None:
        lines.append(
            f"at {s['compared_at_rate']:,.0f} events/s, jobcast's CPU per delivery is "
            f"{s['jobcast_cpu_vs_ceiling']} times the ceiling's"
        )
    return lines


def limits_lines(results: dict[str, Any]) -> list[str]:
    if "limits" not in results:
        return []
    h = results["limits"]
    hz = h["healthz_ms"]
    seen = "; ".join(
        f"{name} " + ", ".join(f"{status}: {n}" for status, n in sorted(counts.items()))
        for name, counts in h["statuses"].items()
    )
    return [
        f"/healthz while every limit is hit ({h['seconds']:g} s, {h['slowloris_connections']} slowloris "
        f"connections): p50 {hz['p50_ms']} ms, p99 {hz['p99_ms']} ms, max {hz['max_ms']} ms over "
        f"{hz['count']} probes (target: under 100 ms); answers seen: {seen}"
    ]


def jobs_lines(results: dict[str, Any]) -> list[str]:
    rows = results.get("jobs")
    if not rows:
        return []
    title = f"job throughput: {rows[0]['jobs']:,} no-op jobs drained by 2 workers x 10 at once"
    return drain_table(title, rows)


def jobs_live_lines(results: dict[str, Any]) -> list[str]:
    rows = results.get("jobs_live")
    if not rows:
        return []
    title = (
        f"live drain: {rows[0]['jobs']:,} no-op jobs, each its own submission, all sent while 2 "
        "workers x 10 drain"
    )
    return drain_table(title, rows, (("client_cpu_us_per_job", "client"),))


def cluster_lines(results: dict[str, Any]) -> list[str]:
    rows = results.get("cluster")
    if not rows:
        return []
    fields = ("jobs_per_s", "worker_cpu_us_per_job", "primary_cpu_us_per_job")
    medians = median_rows(rows, fields)
    replicas = median_rows([r for r in rows if "replica_cpu_us_per_job" in r], ("replica_cpu_us_per_job",))
    cluster = median_rows(
        [r for r in rows if r["system"] == "cluster"],
        ("replica_cpu_us_per_job", "others_cpu_us_per_job", "other_primaries_commands"),
    ).get("cluster", {})
    single = medians.get("single server", {}).get("jobs_per_s") or 0
    lines = [
        "",
        f"one Redis and a cluster: {rows[0]['jobs']:,} no-op jobs drained by 2 workers x 10, the "
        "deployment on one slot or spread over shards (median of rounds; Redis CPU µs a job)",
        f"{'system':<14} {'jobs/s':>8} {'workers':>8} {'primary':>8} {'replica':>8} {'vs single':>10}",
    ]
    for system, row in medians.items():
        replica = replicas.get(system, {}).get("replica_cpu_us_per_job")
        lines.append(
            f"{system:<14} {row['jobs_per_s']:>8,.0f} {row['worker_cpu_us_per_job']:>8,.0f} "
            f"{row['primary_cpu_us_per_job']:>8,.0f} {'' if replica is None else f'{replica:,.0f}':>8} "
            f"{ratio(row['jobs_per_s'], single):>10}"
        )
    if cluster:
        lines.append(
            f"cluster: the other four nodes {cluster['others_cpu_us_per_job']:,.0f} µs a job; commands "
            f"jobcast sent the other primaries: "
            f"{cluster['other_primaries_commands']:,.0f} in the drain"
        )
    lines += per_shard_line(rows, "held", "jobs", "{:,.0f} jobs", "{:,.0f} µs")
    calls = median_rows([r for r in rows if "script_calls_per_job" in r], ("script_calls_per_job",))
    if calls:
        lines.append(
            "scripts the deployment's primaries ran a job: "
            + "; ".join(f"{system} {row['script_calls_per_job']:.2f}" for system, row in calls.items())
        )
    inside = median_rows([r for r in rows if "script_us_per_job" in r], ("script_us_per_job",))
    if inside:
        lines.append(
            "µs a job inside those scripts: "
            + "; ".join(f"{system} {row['script_us_per_job']:,.0f}" for system, row in inside.items())
        )
    return lines


def cluster_intake_lines(results: dict[str, Any]) -> list[str]:
    rows = results.get("cluster_intake")
    if not rows:
        return []
    fields = (
        "jobs_per_s",
        "web_cpu_us_per_job",
        "primary_cpu_us_per_job",
        "web_core_share",
        "load_core_share",
    )
    medians = median_rows(rows, fields)
    single = medians.get("single server", {}).get("jobs_per_s") or 0
    lines = [
        "",
        "intake on one Redis and a cluster: batches of 1,000 through one jobcast web, 8 connections, "
        "no worker (median of rounds; CPU µs a job; each core's busy share)",
        f"{'system':<14} {'jobs/s':>8} {'web':>8} {'primaries':>10} {'web core':>9} {'load core':>10} "
        f"{'vs single':>10}",
    ]
    for system, row in medians.items():
        lines.append(
            f"{system:<14} {row['jobs_per_s']:>8,.0f} {row['web_cpu_us_per_job']:>8,.1f} "
            f"{row['primary_cpu_us_per_job']:>10,.1f} {row['web_core_share']:>9.0%} "
            f"{row['load_core_share']:>10.0%} {ratio(row['jobs_per_s'], single):>10}"
        )
    return lines + per_shard_line(rows, "took", "jobs_share", "{:.1%} of the jobs", "{:,.1f} µs")


def per_shard_line(rows: list[dict[str, Any]], verb: str, field: str, share: str, cost: str) -> list[str]:
    """The sharded rows' jobs (`field`) and primary CPU a job of each shard, medians of the rounds."""
    sharded = [r for r in rows if "shards" in r]
    if not sharded:
        return []
    parts = []
    for k in range(len(sharded[0]["shards"])):
        jobs = statistics.median(r["shards"][k][field] for r in sharded)
        own = statistics.median(r["shards"][k]["primary_cpu_us_per_own_job"] for r in sharded)
        parts.append(f"shard {k} {share.format(jobs)}, {cost.format(own)}")
    return [f"{sharded[0]['system']}: each shard's primary a job it {verb}: " + "; ".join(parts)]


def cluster_fanout_lines(results: dict[str, Any]) -> list[str]:
    rows = results.get("cluster_fanout")
    if not rows:
        return []
    medians = median_rows(rows, ("deliveries_per_s", "server_cpu_us_per_delivery", "published_per_s"))
    lines = [
        "",
        f"fan-out on one Redis and on shards: {rows[0]['watchers']:,} watchers of {rows[0]['jobs']} jobs "
        "through one jobcast web (median of rounds; Redis CPU µs an event, each server)",
        f"{'system':<14} {'events/s':>9} {'deliveries/s':>13} {'web µs':>8}  Redis",
    ]
    for system, row in medians.items():
        mine = [r for r in rows if r["system"] == system]
        redis = "; ".join(
            f"{name} {statistics.median(r['redis_cpu_us_per_event'][name] for r in mine):,.1f}"
            for name in mine[0]["redis_cpu_us_per_event"]
        )
        lines.append(
            f"{system:<14} {row['published_per_s']:>9,.0f} {row['deliveries_per_s']:>13,.0f} "
            f"{row['server_cpu_us_per_delivery']:>8,.2f}  {redis}"
        )
    return lines


# A drain's CPU a job, by whose: (field, column heading).
DRAIN_CPU = (("worker_cpu_us_per_job", "workers"), ("redis_cpu_us_per_job", "Redis"))


def drain_table(title: str, rows: list[dict[str, Any]], more: tuple[tuple[str, str], ...] = ()) -> list[str]:
    """Each system's median drain over the rounds, its CPU a job by whose, and its ratio to saq."""
    columns = (*DRAIN_CPU, *more)
    medians = median_rows(rows, ("jobs_per_s", "cpu_us_per_job", *(field for field, _ in columns)))
    saq = medians.get("saq", {}).get("jobs_per_s") or 0
    headings = "".join(f" {heading:>8}" for _, heading in columns)
    lines = [
        "",
        f"{title} (median of rounds)",
        f"{'system':<10} {'jobs/s':>8} {'CPU µs/job':>11}{headings} {'vs saq':>7}",
    ]
    for system, row in medians.items():
        cells = "".join(f" {row[field]:>8,.0f}" for field, _ in columns)
        lines.append(
            f"{system:<10} {row['jobs_per_s']:>8,.0f} {row['cpu_us_per_job']:>11,.0f}{cells} "
            f"{ratio(row['jobs_per_s'], saq):>7}"
        )
    return lines


def job_limits_lines(results: dict[str, Any]) -> list[str]:
    rows = results.get("jobs_limits")
    if not rows:
        return []
    medians = median_jobs(rows)
    plain = medians.get("jobcast", {}).get("jobs_per_s") or 0
    saq = medians.get("saq", {}).get("jobs_per_s") or 0
    lines = [
        "",
        f"with limits and fair turns: {rows[0]['jobs']:,} no-op jobs of 100 owners (median of rounds; "
        "most running: the most leases seen held at once, sampled throughout)",
        f"{'system':<23} {'jobs/s':>8} {'CPU µs/job':>11} {'vs plain':>9} {'vs saq':>7} {'most running':>13}",
    ]
    for system, row in medians.items():
        most = max((r["most_running"] or 0) for r in rows if r["system"] == system)
        lines.append(
            f"{system:<23} {row['jobs_per_s']:>8,.0f} {row['cpu_us_per_job']:>11,.0f} "
            f"{ratio(row['jobs_per_s'], plain):>9} {ratio(row['jobs_per_s'], saq):>7} "
            f"{most if system.startswith('jobcast ') else '':>13}"
        )
    return lines


def places_lines(results: dict[str, Any]) -> list[str]:
    rows = results.get("queue_places")
    if not rows:
        return []
    first = rows[0]
    lines = [
        "",
        f"places in line: {first['jobs_waiting']:,} jobs waiting, {first['watchers']:,} SSE watchers on "
        f"waiting jobs, {first['seconds']:g} s each way",
        f"{'places':<7} {'queue events':>13} {'web CPU ms/s':>13} {'Redis CPU ms/s':>15}",
    ]
    for row in rows:
        lines.append(
            f"{'on' if row['queue_places'] else 'off':<7} {row['queue_events']:>13,} "
            f"{row['web_cpu_ms_per_s']:>13} {row['redis_cpu_ms_per_s']:>15}"
        )
    return lines


def progress_lines(results: dict[str, Any]) -> list[str]:
    rows = results.get("jobs_progress")
    if not rows:
        return []
    events = sorted(r["progress_events_per_job"] for r in rows if r["progress_events_per_job"] is not None)
    lines = [
        "",
        f"with progress: {rows[0]['jobs']:,} jobs reporting progress 5 times each (median of rounds; "
        f"jobcast coalesced them to {events[len(events) // 2] if events else '?'} events a job)",
        f"{'system':<10} {'jobs/s':>8} {'CPU µs/job':>11} {'workers':>8} {'Redis':>7}",
    ]
    for system, row in median_jobs(rows).items():
        lines.append(
            f"{system:<10} {row['jobs_per_s']:>8,.0f} {row['cpu_us_per_job']:>11,.0f} "
            f"{row['worker_cpu_us_per_job']:>8,.0f} {row['redis_cpu_us_per_job']:>7,.0f}"
        )
    return lines


def latency_lines(results: dict[str, Any]) -> list[str]:
    rows = results.get("jobs_latency")
    if not rows:
        return []
    lines = [
        "",
        f"enqueue→start at {rows[0]['rate']:g} jobs/s, {rows[0]['jobs']:,} no-op jobs (median of rounds)",
        f"{'system':<10} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'mean ms':>8}",
    ]
    for system, row in median_rows(rows, ("p50_ms", "p99_ms", "max_ms", "mean_ms")).items():
        lines.append(
            f"{system:<10} {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} {row['max_ms']:>8.2f} "
            f"{row['mean_ms']:>8.3f}"
        )
    return lines


def median_jobs(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    return median_rows(
        rows, ("jobs_per_s", "cpu_us_per_job", "worker_cpu_us_per_job", "redis_cpu_us_per_job")
    )


def median_rows(rows: list[dict[str, Any]], fields: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """Per system, the median of each field over its rounds."""
    by_system: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_system.setdefault(row["system"], []).append(row)
    return {
        system: {f: sorted(r[f] for r in runs)[len(runs) // 2] for f in fields}
        for system, runs in by_system.items()
    }


def intake_lines(results: dict[str, Any]) -> list[str]:
    if "intake" not in results:
        return []
    lines = [
        "",
        "HTTP intake, one jobcast web, no worker (targets: 4,000 singles/s, 20,000 batched jobs/s)",
        f"{'mode':<15} {'conns':>5} {'jobs/s':>8} {'web core':>9} {'Redis core':>11} {'load core':>10} "
        f"{'web µs/job':>11} {'Redis µs/job':>13} {'refused':>8}",
    ]
    for r in results["intake"]:
        lines.append(
            f"{r['mode']:<15} {r['connections']:>5} {r['jobs_per_s']:>8,} {r['web_cpu_share']:>9.0%} "
            f"{r['redis_cpu_share']:>11.0%} {r['load_cpu_share']:>10.0%} {r['web_cpu_us_per_job']:>11} "
            f"{r['redis_cpu_us_per_job']:>13} {r['refused_requests']:>8}"
        )
    for r in results.get("create_script", []):
        t = r["script_us_per_job"]
        lines.append(
            f"create script, batches of 1,000 ({r['redis']}): {t['median']} µs a job median, "
            f"{t['p10']} fastest tenth, {t['min']} min ({r['script_calls']} calls)"
        )
    return lines


def frame_lines(results: dict[str, Any]) -> list[str]:
    if "frames" not in results:
        return []
    r = results["frames"]
    lines = [
        "",
        f"dashboard frames in Chromium: {r['rows']} rows, {r['live']} progressing at {r['hz']:g}/s each",
        f"{'design':<12} {'rows':>5} {'fps':>6} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'late':>9} "
        f"{'LoAF':>5} {'events/s':>9}  main thread ms/s",
    ]
    for name in ("shipped", "plain_table"):
        if name not in r:
            continue
        f = r[name]
        profile = ", ".join(f"{k} {v:g}" for k, v in f["main_thread_ms_per_s"].items())
        lines.append(
            f"{name:<12} {f['rows']:>5} {f['fps']:>6} {f['frame_p50_ms']:>7} {f['frame_p99_ms']:>7} "
            f"{f['frame_max_ms']:>7} {f['late_frames']:>4}/{f['frames']:<4} {f['long_animation_frames']:>5} "
            f"{f['events_applied_per_s']:>9}  {profile}"
        )
    for name, v in r.get("first_visit", {}).items():
        lines.append(
            f"first visit, {name}: {v['rows']} rows, first paint {v['first_paint_ms']} ms, "
            f"page {v['html_transfer_bytes'] / 1000:.1f} KB on the wire ({v['html_bytes'] / 1000:.1f} KB), "
            f"{v['total_transfer_bytes'] / 1000:.1f} KB with its files"
        )
    return lines


def search_lines(results: dict[str, Any]) -> list[str]:
    if "search" not in results:
        return []
    lines = ["", "text search of the jobs table (GET /api/jobs?text=), one web process"]
    for r in results["search"]:
        lines.append(
            f"{r['retained']:>7} retained: a page that matches nothing (reading up to "
            f"{r['scanned_per_page']} records) {r['page_ms_median']} ms (max {r['page_ms_max']}); "
            f"the oldest job found in {r['pages_to_the_oldest']} pages, {r['walk_to_the_oldest_ms']} ms"
        )
    return lines


def tree_lines(results: dict[str, Any]) -> list[str]:
    if "trees" not in results:
        return []
    lines = [
        "",
        "trees: a parent with N no-op children (one create call) beside N jobs as a plain batch, "
        "2 workers x 10",
        f"{'shape':<6} {'jobs':>6} {'create s':>8} {'drain s':>8} {'jobs/s':>8} {'worker µs/job':>13} "
        f"{'Redis µs/job':>12} {'Redis B/job':>11} {'parent events/s':>15}",
    ]
    for r in results["trees"]:
        lines.append(
            f"{r['shape']:<6} {r['jobs']:>6} {r['create_s']:>8} {r['seconds']:>8} {r['jobs_per_s']:>8} "
            f"{r['worker_cpu_us_per_job']:>13} {r['redis_cpu_us_per_job']:>12} "
            f"{r['redis_bytes_per_job']:>11} {r.get('parent_events_per_s', '-'):>15}"
        )
    return lines


def output_lines(results: dict[str, Any]) -> list[str]:
    if "output" not in results:
        return []
    many = results["output_many"]
    many = many if isinstance(many, list) else [many]  # results files before writer placements
    rows = [
        *results["output"],
        *({**r, "system": f"many, writer {r.get('writer_core', 'load')}"} for r in many),
    ]
    lines = [
        "",
        "job output: tokens written by jobs, delivered over SSE (latency from write to watcher)",
        f"{'path':<18} {'jobs':>5} {'watchers':>8} {'tok/s in':>9} {'tok/s/watcher':>13} "
        f"{'redis/s/job':>11} {'p50 ms':>7} {'p99 ms':>7} {'srv CPU':>7} {'CPU ms/MB':>9} {'writer µs':>9}"
        "  load core (writer, watchers, Redis)",
    ]
    for r in rows:
        latency = r["latency_ms"]
        lines.append(
            f"{r['system']:<18} {r['jobs']:>5} {r['watchers']:>8} {r['tokens_per_s_written']:>9} "
            f"{r['tokens_per_s_per_watcher']:>13} {r['redis_calls_per_s_per_job']:>11} "
            f"{latency.get('p50', '-'):>7} {latency.get('p99', '-'):>7} {r['server_cpu_share']:>7} "
            f"{r['server_cpu_ms_per_mb']:>9} {r['writer_cpu_us_per_write']:>9}"
            f"  {', '.join(f'{v:g}' for v in r.get('load_side_cpu_shares', {}).values())}"
        )
    m = results["output_memory"]
    lines.append(
        f"Redis memory per MB of output kept: {m['redis_mb_per_output_mb']} MB while the job's history "
        f"holds its events, {m['after_compaction_mb_per_output_mb']} MB once compacted "
        f"({m['output_mb']} MB written)"
    )
    if "output_page" in results:
        p = results["output_page"]
        lines.append(
            f"job page with {p['output_mb']} MB of output in Chromium: live in {p['page_ready_ms']} ms, "
            f"{p['characters_shown']:,} characters shown; while it writes on: {p['fps']} fps, "
            f"frame p50 {p['frame_p50_ms']} ms, p99 {p['frame_p99_ms']} ms, "
            f"{p['long_animation_frames']} long animation frames"
        )
    return lines


def soak_lines(results: dict[str, Any]) -> list[str]:
    if "soak" not in results:
        return []
    s = results["soak"]
    last = s["samples"][-1] if s["samples"] else {}
    return [
        "",
        f"soak, {s['seconds']:g} s: {s['counts']}; web RSS slope over the last two thirds "
        f"{s['web_rss_slope_mib_per_min']} MiB/min (target < 0.05), worker "
        f"{s['worker_rss_slope_mib_per_min']} MiB/min; open-streams gauge vs open, largest gap "
        f"{s['largest_gauge_gap']} (read a moment apart), {s.get('gauge_after_load')} once the load "
        f"stopped; at the end: web RSS {last.get('web_rss', 0) / 2**20:.0f} MiB, "
        f"{last.get('web_fds', 0)} fds, Redis {last.get('redis_clients', 0)} clients",
    ]


def footprint_lines(results: dict[str, Any]) -> list[str]:
    if "footprint" not in results:
        return []
    f = results["footprint"]
    lines = [
        "",
        f"{f['redis']} bytes per finished job (INFO memory over N jobs, indexes included, the capped "
        "feed aside), by the server's hash/zset listpack value limit:",
        f"{'job':<42} {'listpack':>8} {'events':>7} {'whole history':>14} {'compacted':>10} "
        f"{'history/raw':>12}",
    ]
    for row in f["rows"]:
        lines.append(
            f"{row['job']:<42} {row['listpack_value']:>8} {row['progress_events']:>7,} "
            f"{row['bytes_per_job_whole']:>14,} {row['bytes_per_job_compacted']:>10,} "
            f"{row['history_bytes_per_record_byte']:>12}"
        )
    return lines


def save(results: dict[str, Any], out: Path) -> Path:
    """Write the run as `<date>-<machine>-<commit>.json` (and its plot beside it): runs are kept
    side by side, and bench/results/README.md indexes the ones committed."""
    name = run_name(results["machine"], results["started"])
    path = out / f"{name}.json"
    path.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    plot(results, path.with_suffix(".png"))
    return path


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    if "fanout" in results:
        medians = median_by_system(results["fanout"])
        systems = list(medians)
        if "polling" in results:
            poll = results["polling"]
            systems.append("polling")
            medians["polling"] = {
                "cpu_us": poll["server_cpu_us_per_delivery"],
                "p50": poll["latency_ms"].get("p50_ms", 0),
                "p99": poll["latency_ms"].get("p99_ms", 0),
            }
        colors = [
            "#6b7280" if s == "ceiling" else "#2563eb" if s == "jobcast" else "#f59e0b" for s in systems
        ]
        axes[0].bar(systems, [medians[s]["cpu_us"] for s in systems], color=colors)
        axes[0].set_title("server CPU per delivered event (µs, lower is better)")
        x = range(len(systems))
        axes[1].bar([i - 0.2 for i in x], [medians[s]["p50"] for s in systems], 0.4, label="p50")
        axes[1].bar([i + 0.2 for i in x], [medians[s]["p99"] for s in systems], 0.4, label="p99")
        axes[1].set_xticks(list(x), systems)
        axes[1].set_yscale("log")
        axes[1].set_title("publish → receive latency (ms, log scale)")
        axes[1].legend()
    w = results["workload"]
    fig.suptitle(
        f"{w['watchers']} watchers, {w['jobs']} jobs, {w['rate']:g} events/s; {results['machine']['cpu']}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
