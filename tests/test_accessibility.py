"""axe-core (from npm, clients/js's locked toolchain) on every page, in light and dark mode, in
real Chromium: no violations."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest
from pydantic import SecretStr

from jobcast.server.app import create_app
from tests.helpers import demo, get_json, submit, watch_to_end

AXE = Path(__file__).resolve().parent.parent / "clients" / "js" / "node_modules" / "axe-core" / "axe.min.js"


async def violations(page) -> list[str]:
    await page.add_script_tag(path=str(AXE))
    found = await page.evaluate("async () => (await axe.run(document)).violations")
    return [f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:3]}" for v in found]


# A phone and a desktop.
WIDTHS = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1440, "height": 900}}


async def overflow(page) -> int:
    """How far the page is wider than the viewport (a page that scrolls sideways on a phone)."""
    return await page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")


@pytest.mark.parametrize("width", sorted(WIDTHS))
@pytest.mark.parametrize("scheme", ["light", "dark"])
async def test_no_page_has_an_accessibility_violation(
    client, worker, browser, scheme: str, width: str
) -> None:
    assert AXE.is_file(), "axe-core is missing: run scripts/bootstrap test"
    # The pages' CSP refuses injected scripts, axe's included: this context alone bypasses it.
    context = await browser.new_context(bypass_csp=True, color_scheme=scheme, viewport=WIDTHS[width])
    page = await context.new_page()
    base = str(client.make_url("")).rstrip("/")
    done = await submit(client, "/api/jobs", demo(2, 10))
    await submit(client, "/api/jobs", {"kind": "demo", "params": {"steps": 2}, "delay_s": 600})
    # A job with output and a log: the page's output panels.
    summary = {"kind": "summarize", "params": {"paragraphs": 5, "max_words": 40, "tokens_per_s": 0}}
    written = await submit(client, "/api/jobs", summary)
    await watch_to_end(client, written["id"])
    # A failure, for the Failures page's groups and one group's jobs.
    failed = await submit(client, "/api/jobs", {"kind": "demo", "params": {"steps": 2, "fail_at_step": 1}})
    await watch_to_end(client, failed["id"])
    group = "/failures?group=DemoFailure%3A%20failed%20at%20step%20%E2%80%A6%20as%20asked"
    paths = ("/", f"/jobs/{done['id']}", f"/jobs/{written['id']}", "/workers", "/scheduled", "/?state=failed")
    paths += ("/failures", group, "/schedules", "/?state=delayed")
    # A worker's own page, with the jobs that ended on it.
    name = (await get_json(client, "/api/workers"))["workers"][0]["name"]
    paths += (f"/workers/{quote(name)}",)
    # Error pages too: a search miss, a malformed search, and /login where there is no sign-in.
    errors = ("/find?id=ffffffff", "/find?id=zz", "/login")
    for path in paths + errors:
        await page.goto(base + path)
        await page.wait_for_load_state("networkidle")
        assert await violations(page) == [], f"{path} ({scheme}, {width})"
        assert await overflow(page) <= 0, f"{path} scrolls sideways ({width})"
    await context.close()


@pytest.mark.parametrize("width", sorted(WIDTHS))
@pytest.mark.parametrize("scheme", ["light", "dark"])
async def test_owner_mode_pages_have_no_accessibility_violation(
    aiohttp_client, settings, worker, browser, scheme: str, width: str
) -> None:
    # An owner's view (no counters, no bulk actions) and the sign-in page exist only in owner mode.
    client = await aiohttp_client(create_app(settings.model_copy(update={"secret": SecretStr("s" * 32)})))
    context = await browser.new_context(bypass_csp=True, color_scheme=scheme, viewport=WIDTHS[width])
    page = await context.new_page()
    base = str(client.make_url("")).rstrip("/")
    await page.goto(base + "/")
    # Submitted from the page, so the job is this browser's own (on a phone the form is folded).
    if width == "phone":
        await page.get_by_text("Submit a job").click()
    await page.select_option("#kind", "demo")
    await page.fill("#demo-steps", "2")
    await page.click("#submit-form button[type=submit]")
    await page.locator("#jobs .job").first.wait_for()
    own = await page.locator("#jobs .job").first.get_attribute("data-job-id")
    for path in ("/", f"/jobs/{own}", "/login"):
        await page.goto(base + path)
        await page.wait_for_load_state("networkidle")
        assert await violations(page) == [], f"{path} ({scheme}, {width}, owner mode)"
        assert await overflow(page) <= 0, f"{path} scrolls sideways ({width}, owner mode)"
    await context.close()
