"""Take the README's screenshots: the dashboard, its graphs, a job page with two attempts, the
workers, a worker's own, scheduled and failures pages, an end user's job page (owner mode), light
and dark, and the dashboard on a phone.

    .venv/bin/python scripts/screenshots.py        # writes docs/screenshots/*.png

Starts its own Redis, web server and worker on free ports, runs a few jobs of each kind, and
photographs the pages in Debian's Chromium.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
from playwright.async_api import async_playwright

from jobcast.redis.embedded import RedisProcess, free_port

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # bench/, for the one way this checkout starts Chromium
from bench.chromium import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

OUT = ROOT / "docs" / "screenshots"


async def wait_healthy(session: aiohttp.ClientSession, url: str) -> None:
    for _ in range(100):
        try:
            async with session.get(url + "/readyz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("jobcast web did not start")


async def make_jobs(url: str) -> dict[str, Any]:
    """A mix of finished, failed, retried, running and delayed jobs (over 30 of them); returns a
    job that failed once and then ran again (its page shows two attempts)."""
    async with aiohttp.ClientSession() as session:
        await wait_healthy(session, url)

        async def submit(kind: str, params: dict[str, Any], **extra: Any) -> dict[str, Any]:
            async with session.post(url + "/api/jobs", json={"kind": kind, "params": params, **extra}) as r:
                return await r.json()

        await submit("report", {"user_id": "ada", "days": 8})
        await submit("aggregate", {"rows": 200_000})
        for _ in range(3):
            await submit("demo", {"steps": 3, "step_ms": 10, "fail_at_step": 2})
        for i in range(20):
            await submit("demo", {"steps": 5 + i, "step_ms": 20}, priority=("high", "default", "low")[i % 3])
        await asyncio.sleep(3)
        retried = await submit("demo", {"steps": 400, "step_ms": 50, "fail_at_step": 10, "fail_attempts": 1})
        for steps in (300, 400, 500):
            await submit("demo", {"steps": steps, "step_ms": 60})
        for delay in (600, 900, 1800):
            await submit("demo", {}, priority="low", delay_s=delay)
        # A paused kind: its job waits, held, and says so.
        async with session.post(url + "/api/kinds/aggregate/pause") as r:
            assert r.status == 200
        await submit("aggregate", {"rows": 1000})
        await asyncio.sleep(6)
        return retried


async def photograph(url: str, owners_url: str, job: dict[str, Any]) -> None:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for scheme in ("light", "dark"):
            viewport = {"width": 1280, "height": 900}
            context = await browser.new_context(viewport=viewport, color_scheme=scheme)
            page = await context.new_page()
            await page.goto(url + "/")
            await page.wait_for_selector("#connection[data-state=live]")
            await asyncio.sleep(1)
            await page.screenshot(path=OUT / f"dashboard-{scheme}.png", full_page=True)
            await page.locator(".counters").screenshot(path=OUT / f"graphs-{scheme}.png")
            await page.goto(url + job["links"]["page"])
            await page.wait_for_selector("#connection:is([data-state=live], [data-state=ended])")
            await asyncio.sleep(1)
            await page.screenshot(path=OUT / f"job-{scheme}.png", full_page=True)
            await page.goto(url + "/workers")
            await asyncio.sleep(1)
            await page.screenshot(path=OUT / f"workers-{scheme}.png", full_page=True)
            await page.locator(".worker h2 a").first.click()
            await asyncio.sleep(1)
            await page.screenshot(path=OUT / f"worker-{scheme}.png", full_page=True)
            await page.goto(url + "/scheduled")
            await page.screenshot(path=OUT / f"scheduled-{scheme}.png", full_page=True)
            await page.goto(url + "/failures")
            await page.screenshot(path=OUT / f"failures-{scheme}.png", full_page=True)
            await context.close()
            # Someone signed out, on the owner-mode server: the end user's own job page.
            context = await browser.new_context(viewport=viewport, color_scheme=scheme)
            page = await context.new_page()
            await page.goto(owners_url + "/")
            await page.select_option("#kind", "report")
            await page.fill("#report-user_id", "ada")
            await page.fill("#report-days", "20")
            await page.click("#submit-form button[type=submit]")
            await page.locator("#jobs .job .job-link").first.click()
            await page.wait_for_selector("#plain-state:text-is('Done')", timeout=60_000)
            await page.screenshot(path=OUT / f"end-user-{scheme}.png", full_page=True)
            await context.close()
        phone = await browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2)
        page = await phone.new_page()
        await page.goto(url + "/")
        await page.wait_for_selector("#connection[data-state=live]")
        await asyncio.sleep(1)
        await page.screenshot(path=OUT / "phone-light.png")
        await phone.close()
        await browser.close()


async def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        redis = RedisProcess(Path(tmp) / "redis")
        redis.start()
        port, owners_port = free_port(), free_port()
        env = {**os.environ, "REDIS_URL": redis.url, "JOBCAST_FILES_DIR": f"{tmp}/files"}
        # A second web in owner mode, its own jobs apart (another key prefix), for the end user.
        owners = {**env, "JOBCAST_SECRET": "screenshots-" + "s" * 24, "JOBCAST_KEY_PREFIX": "owners"}
        me = (sys.executable, "-m", "jobcast")
        procs = [
            await asyncio.create_subprocess_exec(*me, "worker", env={**env, "JOBCAST_WORKER_MAX_JOBS": "4"}),
            await asyncio.create_subprocess_exec(*me, "web", "--port", str(port), env=env),
            await asyncio.create_subprocess_exec(*me, "worker", env=owners),
            await asyncio.create_subprocess_exec(*me, "web", "--port", str(owners_port), env=owners),
        ]
        try:
            url, owners_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{owners_port}"
            async with aiohttp.ClientSession() as session:
                await wait_healthy(session, owners_url)
            await photograph(url, owners_url, await make_jobs(url))
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                await proc.wait()
            redis.stop()
    print(f"screenshots in {OUT}")


if __name__ == "__main__":
    asyncio.run(main())
