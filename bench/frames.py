"""The dashboard's frame times in Debian's Chromium: a page of `rows` jobs (`?limit=`), `live` of
them progressing at `hz` updates a second each on a real worker, for `seconds`.

Measured in the page: the interval between animation frames (requestAnimationFrame), the
long animation frames Chromium reports (over 50 ms, with the script time in them), and how many
events the rows took in meanwhile. Not a timed test: a figure for docs/performance.md.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import orjson

from bench import processes
from bench.chromium import CHROMIUM, CHROMIUM_ARGS
from jobcast.redis.embedded import RedisProcess

# Installed in the page before its scripts run: frame intervals and long animation frames.
RECORDER = """
window.__frames = { deltas: [], long: [], recording: false };
(() => {
  let last = 0;
  const tick = (now) => {
    if (window.__frames.recording && last) window.__frames.deltas.push(now - last);
    last = now;
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
  try {
    new PerformanceObserver((list) => {
      if (!window.__frames.recording) return;
      for (const entry of list.getEntries()) {
        const script = entry.scripts.reduce((sum, s) => sum + s.duration, 0);
        window.__frames.long.push({ duration: entry.duration, script });
      }
    }).observe({ type: "long-animation-frame" });
  } catch {}
})();
"""

SEQ_SUM = "() => [...document.querySelectorAll('#jobs .job')].reduce((s, r) => s + Number(r.dataset.seq), 0)"


TRACE_CATEGORIES = ["devtools.timeline", "disabled-by-default-devtools.timeline"]
# The main-thread work a frame is made of, as the trace names it (nested events are not summed
# twice: only these, which do not nest in one another, apart from script inside a task).
PHASES = {
    "FunctionCall": "script",
    "EventDispatch": "script",
    "TimerFire": "script",
    "FireAnimationFrame": "script",
    "UpdateLayoutTree": "style",
    "Layout": "layout",
    "PrePaint": "paint",
    "Paint": "paint",
    "Layerize": "paint",
    "UpdateLayer": "paint",
    "Commit": "commit",
}


def main_thread_profile(trace: bytes, seconds: float) -> dict[str, float]:
    """ms per second of each phase on the renderer's main thread (CrRendererMain)."""
    events = orjson.loads(trace)
    events = events.get("traceEvents", events) if isinstance(events, dict) else events
    main = {
        (e["pid"], e["tid"])
        for e in events
        if e.get("name") == "thread_name" and e.get("args", {}).get("name") == "CrRendererMain"
    }
    totals: dict[str, float] = {}
    for e in events:
        phase = PHASES.get(e.get("name", ""))
        if phase and e.get("ph") == "X" and (e["pid"], e["tid"]) in main:
            totals[phase] = totals.get(phase, 0.0) + e.get("dur", 0) / 1000
    return {phase: round(ms / seconds, 1) for phase, ms in sorted(totals.items())}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


async def _submit_all(url: str, bodies: list[dict[str, Any]]) -> list[str]:
    ids: list[str] = []
    async with aiohttp.ClientSession() as session:
        for start in range(0, len(bodies), 1000):
            batch = {"jobs": bodies[start : start + 1000]}
            async with session.post(f"{url}/api/jobs/batch", json=batch) as r:
                answer = await r.json()
            ids += [item["job"]["id"] for item in answer["results"] if item["status"] == 202]
    return ids


# The same rows as a plain table (the design before this one): every cell in one table layout,
# no containment, every row laid out and painted. Measured beside the shipped design.
PLAIN_TABLE = """
.jobs-table { display: table; table-layout: auto; }
.jobs-table thead { display: table-header-group; } .jobs-table tbody { display: table-row-group; }
.jobs-table tr, .jobs-table tbody tr { display: table-row; content-visibility: visible; }
.jobs-table th, .jobs-table td { display: table-cell; vertical-align: middle; }
.jobs-table .cell { contain: none; }
"""
DESIGNS = {"shipped": "", "plain_table": PLAIN_TABLE}


async def _page_frames(browser: Any, url: str, live: int, seconds: float, style: str) -> dict[str, Any]:
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    await page.add_init_script(RECORDER)
    await page.goto(url)
    await page.wait_for_selector("#connection[data-state=live]")
    if style:
        await page.add_style_tag(content=style)
    shown = await page.locator("#jobs .job").count()
    await page.wait_for_function(
        f"() => document.querySelectorAll('#jobs .job[data-state=running]').length >= {live}",
        timeout=60_000,
    )
    before = await page.evaluate(SEQ_SUM)
    await page.evaluate("() => { window.__frames.recording = true; }")
    started = time.monotonic()
    await asyncio.sleep(seconds)
    frames = await page.evaluate("() => { window.__frames.recording = false; return window.__frames; }")
    elapsed = time.monotonic() - started
    applied = await page.evaluate(SEQ_SUM) - before
    # Then a shorter window under Chromium's tracer, for where the time goes (tracing slows the
    # page down: its frame times are not the ones above).
    await browser.start_tracing(page=page, categories=TRACE_CATEGORIES)
    traced_from = time.monotonic()
    await asyncio.sleep(min(seconds, 3.0))
    trace = await browser.stop_tracing()
    profile = main_thread_profile(trace, time.monotonic() - traced_from)
    await page.close()
    deltas = frames["deltas"]
    long = frames["long"]
    return {
        "rows": shown,
        "seconds": round(elapsed, 2),
        "frames": len(deltas),
        "fps": round(len(deltas) / elapsed, 1),
        "frame_p50_ms": round(percentile(deltas, 0.5), 2),
        "frame_p99_ms": round(percentile(deltas, 0.99), 2),
        "frame_max_ms": round(max(deltas, default=0.0), 2),
        # A frame is late when it took longer than one 60 Hz interval and a bit of timer jitter.
        "late_frames": sum(d > 20 for d in deltas),
        "long_animation_frames": len(long),
        "long_frame_max_ms": round(max((f["duration"] for f in long), default=0.0), 1),
        "events_applied_per_s": round(applied / elapsed),
        # Where the renderer's main thread spent each second (ms), from Chromium's own trace.
        "main_thread_ms_per_s": profile,
    }


# What a first visit costs, from the browser's own timing (Navigation and Paint Timing): when the
# first row shows, and the bytes on the wire for the page and for everything it loads. The paint
# entry can come after the load event on a busy machine: it is waited for (5 s at most).
FIRST_VISIT = """async () => {
  const nav = performance.getEntriesByType("navigation")[0];
  const paint = performance.getEntriesByName("first-contentful-paint")[0] ?? await new Promise((resolve) => {
    new PerformanceObserver((list) => {
      const entry = list.getEntriesByName("first-contentful-paint")[0];
      if (entry) resolve(entry);
    }).observe({ type: "paint", buffered: true });
    setTimeout(() => resolve(null), 5000);
  });
  const files = performance.getEntriesByType("resource");
  return {
    response_end_ms: nav.responseEnd,
    first_paint_ms: paint ? paint.startTime : null,
    dom_content_loaded_ms: nav.domContentLoadedEventEnd,
    html_bytes: nav.decodedBodySize,
    html_transfer_bytes: nav.transferSize,
    total_transfer_bytes: files.reduce((sum, f) => sum + f.transferSize, nav.transferSize),
    rows: document.querySelectorAll("#jobs .job").length,
  };
}"""


async def _first_visits(browser: Any, url: str, paths: dict[str, str]) -> dict[str, Any]:
    """Each page loaded in a fresh context (nothing cached), as a first-time visitor loads it."""
    out = {}
    for name, path in paths.items():
        context = await browser.new_context(viewport={"width": 1280, "height": 900})
        page = await context.new_page()
        await page.goto(url + path, wait_until="load")
        visit = await page.evaluate(FIRST_VISIT)
        out[name] = {key: round(v, 1) if isinstance(v, float) else v for key, v in visit.items()}
        await context.close()
    return out


async def _measure(url: str, rows: int, live: int, hz: float, seconds: float) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    # Idle rows first (delayed an hour), then the live ones: the newest, at the top.
    idle = [{"kind": "demo", "params": {"steps": 1}, "delay_s": 3600} for _ in range(rows - live)]
    ids = await _submit_all(url, idle)
    # Long enough for every design's window, the tracing ones and the page loads.
    steps = int((len(DESIGNS) * (seconds + 3) + 40) * hz)
    running = [{"kind": "demo", "params": {"steps": steps, "step_ms": int(1000 / hz)}} for _ in range(live)]
    ids += await _submit_all(url, running)
    results: dict[str, Any] = {"rows": rows, "live": live, "hz": hz}
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            # With every row retained: the default page of 50 rows, and one of them all.
            paths = {"dashboard_50": "/", f"dashboard_{rows}": f"/?limit={rows}"}
            results["first_visit"] = await _first_visits(browser, url, paths)
            for name, style in DESIGNS.items():
                results[name] = await _page_frames(browser, f"{url}/?limit={rows}", live, seconds, style)
            await browser.close()
    finally:
        await _cancel(url, ids)
    return results


async def _cancel(url: str, ids: list[str]) -> None:
    """Cancel this part's jobs (a bulk job), so none is left to run later in the bench."""
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{url}/api/bulk", json={"action": "cancel", "ids": ids}) as r:
            bulk = await r.json()
        for _ in range(600):
            async with session.get(f"{url}/api/jobs/{bulk['id']}") as r:
                if (await r.json())["state"] in ("succeeded", "failed", "cancelled"):
                    return
            await asyncio.sleep(0.1)


def dashboard_frames(
    redis: RedisProcess, rows: int = 1000, live: int = 100, hz: float = 10.0, seconds: float = 10.0
) -> dict[str, Any]:
    # One slot more than the live jobs take: the bulk job that cancels them all at the end runs
    # at once, rather than after the live jobs' last step (40 s and more).
    env = {"JOBCAST_WORKER_MAX_JOBS": str(live + 1), "JOBCAST_PROGRESS_RATE_HZ": str(hz)}
    with processes.server("jobcast", redis, **env) as (_, port):
        worker = processes.worker(redis, **env)
        try:
            return asyncio.run(_measure(f"http://127.0.0.1:{port}", rows, live, hz, seconds))
        finally:
            processes.stop(worker)
