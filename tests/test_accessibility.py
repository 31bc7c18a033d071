"""axe-core (from npm, clients/js's locked toolchain) on every page, in light and dark mode, in
real Chromium: no violations."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import demo, submit

AXE = Path(__file__).resolve().parent.parent / "clients" / "js" / "node_modules" / "axe-core" / "axe.min.js"


async def violations(page) -> list[str]:
    await page.add_script_tag(path=str(AXE))
    found = await page.evaluate("async () => (await axe.run(document)).violations")
    return [f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:3]}" for v in found]


@pytest.mark.parametrize("scheme", ["light", "dark"])
async def test_no_page_has_an_accessibility_violation(client, worker, browser, scheme: str) -> None:
    assert AXE.is_file(), "axe-core is missing: run scripts/bootstrap test"
    # The pages' CSP refuses injected scripts, axe's included: this context alone bypasses it.
    context = await browser.new_context(bypass_csp=True, color_scheme=scheme)
    page = await context.new_page()
    base = str(client.make_url("")).rstrip("/")
    done = await submit(client, "/api/jobs", demo(2, 10))
    await submit(client, "/api/jobs", {"kind": "demo", "params": {"steps": 2}, "delay_s": 600})
    for path in ("/", f"/jobs/{done['id']}", "/workers", "/scheduled", "/?state=failed"):
        await page.goto(base + path)
        await page.wait_for_load_state("networkidle")
        assert await violations(page) == [], f"{path} ({scheme})"
    await context.close()
