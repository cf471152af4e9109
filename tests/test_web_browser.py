"""The dashboard in a real browser: headless Chromium (Debian's package, never a downloaded
build) driven by Playwright against uvicorn on loopback. It loads the overview, sees it update
live, filters the job list by type, opens a job, cancels it and checks the stored status, all
under the dashboard's Content-Security-Policy (its stylesheet applied, its script running, no
violation reported); and another page cannot frame it.
Screenshots go to test-artifacts/dashboard/ (CI keeps them as artifacts), or to the folder
JOBCOLLECTION_SCREENSHOTS names.

Skipped when chromium or playwright is missing, unless JOBCOLLECTION_REQUIRE_BROWSER is set
(CI sets it): then it fails."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from jobcollection import JobCollection, ManualClock
from jobcollection.rules.history import LAG
from jobcollection.web import create_dashboard
from remote_helpers import serving

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(
    os.environ.get("JOBCOLLECTION_SCREENSHOTS")
    or Path(__file__).resolve().parent.parent / "test-artifacts" / "dashboard"
)
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 15_000
TRACE = 'Traceback (most recent call last):\n  File "/app/tasks.py", line 3, in f\nValueError: boom'
RECORD_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener('securitypolicyviolation', function (ev) {
  window.cspViolations.push(ev.violatedDirective + ' ' + ev.blockedURI);
});
"""
"""Run in every page before its own scripts (so the policy does not apply to it): keeps the
Content-Security-Policy violations the page reports."""


def missing() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    if importlib.util.find_spec("playwright") is None:
        return "playwright is missing (pip install playwright; never `playwright install`)"
    return None


@pytest.fixture
def browser_available() -> None:
    reason = missing()
    if reason is None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        return
    if os.environ.get("JOBCOLLECTION_REQUIRE_BROWSER"):
        pytest.fail(f"JOBCOLLECTION_REQUIRE_BROWSER is set but {reason}")
    pytest.skip(reason)


@pytest.mark.usefixtures("browser_available")
async def test_filter_open_and_cancel_a_job_in_chromium(jc: JobCollection, tmp_path: Path) -> None:
    from playwright.async_api import async_playwright, expect

    expect.set_options(timeout=TIMEOUT_MS)
    for n in range(3):
        await jc.create_job("mail", {"n": n}).save()
    sms = [await jc.create_job("sms", {"to": f"+1555000{n}"}).save() for n in range(2)]
    app = create_dashboard(jc, poll_s=0.1)

    async with serving(app) as url, async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=ARGS,
        )
        try:
            await context.add_init_script(RECORD_VIOLATIONS)
            page = await context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            console: list[str] = []
            page.on("console", lambda message: console.append(message.text))

            async def assert_no_violation() -> None:
                assert await page.evaluate("window.cspViolations") == []
                assert not [m for m in console if "Content Security Policy" in m]

            response = await page.goto(f"{url}/")
            assert response is not None
            assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
            # The stylesheet is the app's own file, so the policy lets it apply.
            await expect(page.locator("header")).to_have_css("background-color", "rgb(29, 35, 42)")
            ready = page.locator('tr[data-type="mail"] td[data-status="ready"]')
            await expect(ready).to_have_text("3")
            await page.screenshot(path=str(ARTIFACTS / "1-overview.png"), full_page=True)

            await jc.create_job("mail", {"n": 3}).save()  # the page learns of it by itself
            await expect(ready).to_have_text("4")
            await assert_no_violation()

            # Pause the claims of a type on every process, from its row, then resume them.
            await page.click('tr[data-type="mail"] td.claims button')
            await expect(page.locator('tr[data-type="mail"] td.claims.paused')).to_be_visible()
            assert (await jc.paused_types()).types == ("mail",)
            await page.click('tr[data-type="mail"] td.claims button:text("Resume")')
            await expect(page.locator('tr[data-type="mail"] td.claims.claimed')).to_be_visible()
            assert (await jc.paused_types()).types == ()

            await page.click("header >> text=Jobs")
            await page.select_option("#filters select[name=type]", "sms")
            await page.click("#filters button[type=submit]")
            await page.wait_for_url("**/jobs?type=sms*")
            rows = page.locator("#jobs tr.job")
            await expect(rows).to_have_count(2)
            await page.screenshot(path=str(ARTIFACTS / "2-jobs-sms.png"), full_page=True)

            await page.click(f'#jobs a:text("{sms[0]}")')
            await expect(page.locator("h1")).to_have_text("Job sms")
            await expect(page.locator("#data")).to_contain_text("+15550000")
            await page.screenshot(path=str(ARTIFACTS / "3-job.png"), full_page=True)

            await page.click("#actions button[value=cancel]")
            await expect(page.locator("#live .status.cancelled")).to_be_visible()
            await page.screenshot(path=str(ARTIFACTS / "4-cancelled.png"), full_page=True)
            await assert_no_violation()

            # Another page framing the dashboard gets nothing: the browser refuses to frame it.
            framing = await context.new_page()
            async with framing.expect_console_message(lambda m: "frame-ancestors" in m.text):
                await framing.set_content(f'<iframe src="{url}/"></iframe>')
            [frame] = framing.main_frame.child_frames
            assert await frame.locator("#live").count() == 0
        finally:
            await context.close()
            await app.state.close()

    stored = await jc.get_job(sms[0])
    assert stored is not None and stored.doc.status == "cancelled"
    other = await jc.get_job(sms[1])
    assert other is not None and other.doc.status == "ready"


@pytest.mark.usefixtures("browser_available")
async def test_a_workflow_page_in_chromium(jc: JobCollection, tmp_path: Path) -> None:
    """A workflow's page under the policy: its graph is styled by the stylesheet (a
    completed job's box is green), a box of many jobs links to their list and a job's box
    to its page, and the cancel button cancels what is unfinished."""
    from playwright.async_api import async_playwright, expect

    from jobcollection import chain, group

    expect.set_options(timeout=TIMEOUT_MS)
    start = jc.create_job("extract")
    parts = [jc.create_job("transform", {"n": n}) for n in range(12)]
    workflow = await jc.save_workflow(
        chain(start, group(parts), group(jc.create_job("load"), jc.create_job("audit")))
    )
    [claimed] = await jc.get_work("extract")
    await claimed.done()
    app = create_dashboard(jc)

    async with serving(app) as url, async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=str(CHROMIUM), headless=True, args=ARGS
        )
        try:
            await context.add_init_script(RECORD_VIOLATIONS)
            page = await context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            await page.goto(f"{url}/workflows/{workflow.id}")
            box = page.locator(f'#graph g.node[data-job="{start.id}"] rect.box')
            await expect(box).to_have_css("fill", "rgb(212, 240, 217)")  # completed
            await expect(page.locator("#graph g.node.group")).to_have_attribute("data-jobs", "12")
            await page.screenshot(path=str(ARTIFACTS / "5-workflow.png"), full_page=True)
            assert await page.evaluate("window.cspViolations") == []

            await page.click("#graph g.node.group a")
            await page.wait_for_url("**?type=transform#jobs")
            await expect(page.locator("#members tr.job")).to_have_count(12)
            await page.click(f'#graph g.node[data-job="{start.id}"] a')
            await expect(page.locator("h1")).to_have_text("Job extract")
            await expect(page.locator("#groups a#workflow")).to_have_text(str(workflow.id))
            await page.click("#groups a#workflow")
            await page.click("#actions button[value=cancel]")
            await expect(page.locator('#counts td[data-status="cancelled"]')).to_have_text("14")
            assert await page.evaluate("window.cspViolations") == []
        finally:
            await context.close()
            await app.state.close()
    assert (await workflow.status()).counts == {"completed": 1, "cancelled": 14}


@pytest.mark.usefixtures("browser_available")
async def test_the_overview_charts_and_a_job_page_wide_narrow_and_dark(
    jc: JobCollection, clock: ManualClock, tmp_path: Path
) -> None:
    """The overview draws its charts (uPlot, under the policy), a failed job's page shows its
    traceback, both fit a 400-px screen without sideways scrolling of the page, and the theme
    follows the system's (dark) and the toggle, which the keyboard reaches."""
    from playwright.async_api import async_playwright, expect

    expect.set_options(timeout=TIMEOUT_MS)
    for n in range(6):
        await jc.create_job(f"type-{n % 2}").retry(0).save()
    clock.advance(2)
    for n, job in enumerate(await jc.get_work(["type-0", "type-1"], max_jobs=6)):
        clock.advance(n)
        if n % 3:
            await job.done()
        else:
            await job.fail({"type": "ValueError", "message": "boom", "traceback": TRACE})
            failed = job.id
    await jc.create_job("type-0").save()  # a backlog
    clock.advance(LAG.total_seconds() + 1)
    await jc.run_server_pass()
    app = create_dashboard(jc)

    async with serving(app) as url, async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=str(CHROMIUM), headless=True, args=ARGS
        )
        try:
            await context.add_init_script(RECORD_VIOLATIONS)
            page = await context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            await page.set_viewport_size({"width": 1280, "height": 900})
            await page.goto(f"{url}/")
            charts = page.locator("#trends .chart canvas")
            await expect(charts).to_have_count(8)  # 2 types x 2 windows x 2 charts
            await expect(page.locator("#trends .u-legend").first).to_contain_text("completed")
            await page.screenshot(path=str(ARTIFACTS / "6-overview-wide.png"), full_page=True)
            assert await page.evaluate("window.cspViolations") == []

            await page.set_viewport_size({"width": 400, "height": 800})
            await page.goto(f"{url}/")
            await expect(charts).to_have_count(8)
            assert await page.evaluate("document.documentElement.scrollWidth") <= 400
            await page.screenshot(path=str(ARTIFACTS / "7-overview-narrow.png"), full_page=True)
            await page.goto(f"{url}/jobs/{failed}")
            await expect(page.locator("pre.traceback .exception")).to_have_text("ValueError: boom")
            await expect(page.locator('#run tr[data-fact="duration"] td')).to_have_text("6s")
            assert await page.evaluate("document.documentElement.scrollWidth") <= 400
            await page.screenshot(path=str(ARTIFACTS / "8-job-narrow.png"), full_page=True)

            # The system's dark theme, then the toggle (reached with the keyboard) to light.
            await page.emulate_media(color_scheme="dark")
            await page.set_viewport_size({"width": 1280, "height": 900})
            await page.goto(f"{url}/")
            await expect(page.locator("body")).to_have_css("background-color", "rgb(20, 24, 29)")
            await expect(charts).to_have_count(8)
            await page.screenshot(path=str(ARTIFACTS / "9-overview-dark.png"), full_page=True)
            await page.goto(f"{url}/jobs/{failed}")
            await page.screenshot(path=str(ARTIFACTS / "10-job-dark.png"), full_page=True)
            toggle = page.locator("#theme")
            await expect(toggle).to_be_visible()
            for _ in range(20):
                await page.keyboard.press("Tab")
                if await toggle.evaluate("b => b === document.activeElement"):
                    break
            await page.keyboard.press("Enter")
            await expect(page.locator("body")).to_have_css("background-color", "rgb(246, 247, 249)")
            await page.goto(f"{url}/")  # the choice is kept
            await expect(page.locator("body")).to_have_css("background-color", "rgb(246, 247, 249)")
            assert await page.evaluate("window.cspViolations") == []
        finally:
            await context.close()
            await app.state.close()


@pytest.mark.usefixtures("browser_available")
async def test_the_queues_schedules_and_workers_pages_wide_narrow_and_dark(
    jc: JobCollection, tmp_path: Path
) -> None:
    """The queues page pauses and resumes a type's claims, and shows a pause made elsewhere
    by itself (live), the schedules page runs a schedule now and pauses it, the workers page
    names the job server's leader; each fits a 400-px screen without sideways scrolling of
    the page, light and dark, under the policy."""
    from playwright.async_api import async_playwright, expect

    from jobcollection import ConcurrencyLimit

    expect.set_options(timeout=TIMEOUT_MS)
    for n in range(5):
        await jc.create_job(f"type-{n % 2}").save()
    await jc.create_job("digest").repeat(schedule="0 9 * * 1-5").save()
    await jc.set_concurrency_limit("type-0", ConcurrencyLimit(2))
    await jc.schedules.upsert("nightly", type="report", cron="0 3 * * *", timezone="Europe/Paris")
    await jc.run_server_pass()
    app = create_dashboard(jc)

    async with serving(app) as url, async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=str(CHROMIUM), headless=True, args=ARGS
        )
        try:
            await context.add_init_script(RECORD_VIOLATIONS)
            page = await context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            await page.set_viewport_size({"width": 1280, "height": 900})
            await page.goto(f"{url}/")
            await page.click("header >> text=Queues")
            row = page.locator('#queues tr[data-type="type-0"]')
            await expect(row.locator("td.limit")).to_have_text("0 of 2 running (0%)")
            await row.locator("td.claims button").click()
            await page.wait_for_url("**/queues")
            await expect(row.locator("td.claims.paused")).to_be_visible()
            assert (await jc.paused_types()).types == ("type-0",)
            await page.screenshot(path=str(ARTIFACTS / "11-queues.png"), full_page=True)
            await row.locator('td.claims button:text("Resume")').click()
            await expect(row.locator("td.claims.claimed")).to_be_visible()
            await jc.pause_type("type-1")  # not from the page: it learns of it by itself
            other = page.locator('#queues tr[data-type="type-1"] td.claims.paused')
            await expect(other).to_be_visible()
            await jc.resume_type("type-1")

            await page.click("header >> text=Schedules")
            nightly = page.locator('#schedules tr[data-id="nightly"]')
            await expect(nightly).to_contain_text("cron 0 3 * * * in Europe/Paris")
            await expect(page.locator("#repeating tr.repeating")).to_contain_text("forever")
            await nightly.locator('button:text("Run now")').click()
            await expect(nightly).to_contain_text("(run now)")
            await nightly.locator('button:text("Pause")').click()
            await expect(nightly.locator("td.state.paused")).to_be_visible()
            await page.screenshot(path=str(ARTIFACTS / "12-schedules.png"), full_page=True)
            assert (await jc.schedules.list())[0].paused

            await page.click("header >> text=Workers")
            await expect(page.locator("#leader")).to_contain_text("led by")
            assert await page.evaluate("window.cspViolations") == []

            await page.set_viewport_size({"width": 400, "height": 800})
            for n, path in enumerate(("/queues", "/schedules", "/workers")):
                await page.goto(f"{url}{path}")
                assert await page.evaluate("document.documentElement.scrollWidth") <= 400, path
                name = f"{13 + n}-{path[1:]}-narrow.png"
                await page.screenshot(path=str(ARTIFACTS / name), full_page=True)

            await page.emulate_media(color_scheme="dark")
            await page.set_viewport_size({"width": 1280, "height": 900})
            for n, path in enumerate(("/queues", "/schedules")):
                await page.goto(f"{url}{path}")
                body = page.locator("body")
                await expect(body).to_have_css("background-color", "rgb(20, 24, 29)")
                await page.screenshot(path=str(ARTIFACTS / f"{16 + n}-{path[1:]}-dark.png"))
            assert await page.evaluate("window.cspViolations") == []
        finally:
            await context.close()
            await app.state.close()
