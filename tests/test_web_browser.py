"""The dashboard in a real browser: headless Chromium (Debian's package, never a downloaded
build) driven by Playwright against uvicorn on loopback, with jobs in every state. It visits
every page (the overview, the job list with its filters, sort and pages, a job in each state,
a workflow, a batch, the queues, schedules and workers pages, a bulk action's confirmation and
outcome, the login form, an error page) and clicks every action each offers (a job's pause,
resume, cancel, restart, rerun and remove, copying a traceback, the bulk actions, a
workflow's and a batch's cancel and retry, pausing and resuming a type's claims or every
type's, setting and removing a concurrency limit, running, pausing and resuming a schedule,
logging in and out, the theme toggle), checking what the page shows after each and what is
stored (through `jc`), all under the dashboard's Content-Security-Policy (its stylesheet
applied, its scripts running, no violation reported); and another page cannot frame it.

Every page is also saved wide (1280 px), narrow (400 px, where the page must not scroll
sideways) and dark, to test-artifacts/dashboard/ (CI keeps them as artifacts), or to the
folder JOBCOLLECTION_SCREENSHOTS names. The module starts one Chromium, which every test
connects to (over the DevTools protocol) with a browser context of its own.

Skipped when chromium or playwright is missing, unless JOBCOLLECTION_REQUIRE_BROWSER is set
(CI sets it): then it fails."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from jobcollection import Job, JobCollection, ManualClock
from jobcollection.remote import TokenAuth
from jobcollection.rules.history import LAG
from jobcollection.web import create_dashboard
from remote_helpers import serving
from test_web_history import PY_TRACE, every_state

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext, Page

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
WIDE = {"width": 1280, "height": 900}
NARROW = {"width": 400, "height": 800}
TRACE = 'Traceback (most recent call last):\n  File "/app/tasks.py", line 3, in f\nValueError: boom'
RECORD_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener('securitypolicyviolation', function (ev) {
  window.cspViolations.push(ev.violatedDirective + ' ' + ev.blockedURI);
});
"""
"""Run in every page before its own scripts (so the policy does not apply to it): keeps the
Content-Security-Policy violations the page reports."""
WIDER_THAN_THE_SCREEN = """
[...document.querySelectorAll('body *')]
  .filter(el => el.getBoundingClientRect().left + el.scrollWidth > 400
    && !el.parentElement.closest('.table-wrap, .graph-wrap, pre'))
  .slice(-3).map(el => el.outerHTML.slice(0, 80))
"""
"""What sticks out of a 400-px screen (outside the boxes that scroll sideways), for the
failure's message."""
LISTENING = re.compile(r"DevTools listening on (ws://\S+)")


def missing() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    if importlib.util.find_spec("playwright") is None:
        return "playwright is missing (pip install playwright; never `playwright install`)"
    return None


@pytest.fixture(scope="module")
def chromium() -> Iterator[str]:
    """One headless Chromium for the module's tests: its DevTools endpoint. Stopped (by its
    process) after the module's last test."""
    reason = missing()
    if reason is not None:
        if os.environ.get("JOBCOLLECTION_REQUIRE_BROWSER"):
            pytest.fail(f"JOBCOLLECTION_REQUIRE_BROWSER is set but {reason}")
        pytest.skip(reason)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    profile = tempfile.mkdtemp(prefix="jobcollection-chromium-")
    process = subprocess.Popen(
        [str(CHROMIUM), *ARGS, "--remote-debugging-port=0", f"--user-data-dir={profile}"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        endpoint = None
        for line in process.stderr:  # ends when Chromium exits
            if found := LISTENING.search(line):
                endpoint = found[1]
                break
        assert endpoint is not None, "chromium exited without a DevTools endpoint"
        # Keep reading what it logs, so that it never blocks on a full pipe.
        drain = threading.Thread(target=process.stderr.read, daemon=True)
        drain.start()
        yield endpoint
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
async def context(chromium: str) -> AsyncIterator[BrowserContext]:
    """A browser context of the module's Chromium (its own cookies and storage) that keeps
    the policy's violations (`window.cspViolations`), closed after the test."""
    from playwright.async_api import async_playwright, expect

    expect.set_options(timeout=TIMEOUT_MS)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.connect_over_cdp(chromium)
        made = await browser.new_context(viewport=WIDE)  # type: ignore[arg-type]
        made.set_default_timeout(TIMEOUT_MS)
        await made.add_init_script(RECORD_VIOLATIONS)
        try:
            yield made
        finally:
            await made.close()
            await browser.close()  # disconnects: the browser is the module's


async def no_violation(page: Page) -> None:
    assert await page.evaluate("window.cspViolations") == []


async def shoot(page: Page, name: str, *, reload: bool = True) -> None:
    """Save the page shown wide, narrow and dark (`<name>-wide.png`, ...), loading it again
    for each (charts are drawn for the width they load in; `reload=False` for the answer to
    a POST), and check that at 400 px the page itself does not scroll sideways. Leaves the
    page wide and light."""
    for variant, size, scheme in (
        ("wide", WIDE, "light"),
        ("narrow", NARROW, "light"),
        ("dark", WIDE, "dark"),
    ):
        await page.set_viewport_size(size)  # type: ignore[arg-type]
        await page.emulate_media(color_scheme=scheme)  # type: ignore[arg-type]
        if reload:
            await page.reload()
        await page.screenshot(path=str(ARTIFACTS / f"{name}-{variant}.png"), full_page=True)
        if variant == "narrow":
            width = await page.evaluate("document.documentElement.scrollWidth")
            wide = await page.evaluate(WIDER_THAN_THE_SCREEN)
            assert width <= NARROW["width"], f"{name}: {width} px wide at 400 px: {wide}"
    await page.set_viewport_size(WIDE)  # type: ignore[arg-type]
    await page.emulate_media(color_scheme="light")
    await no_violation(page)


async def click_and_load(page: Page, selector: str) -> None:
    """Click a button that submits a form, and wait for the page it leads to."""
    async with page.expect_navigation():
        await page.click(selector)


ACTIONS = {
    "pause": ("ready", "waiting"),
    "resume": ("paused",),
    "cancel": ("running", "ready", "waiting", "paused"),
    "restart": ("cancelled", "failed"),
    "rerun": ("completed",),
    "remove": ("cancelled", "completed", "failed"),
}
"""The job actions, in the order the pages offer them, and the statuses each applies to."""


def offered(status: str) -> list[str]:
    return [name for name, statuses in ACTIONS.items() if status in statuses]


async def stored_status(jc: JobCollection, job_id: Any) -> str | None:
    job = await jc.get_job(job_id)
    return None if job is None else str(job.doc.status)


async def shows_status(page: Page, status: str) -> None:
    from playwright.async_api import expect

    await expect(page.locator("#live .status").first).to_have_text(status)
    await expect(page.locator("#status")).to_have_text(status)


async def test_a_job_in_each_state_its_worker_and_every_action_it_offers(
    jc: JobCollection, clock: ManualClock, context: BrowserContext
) -> None:
    """Each state's page offers the actions that apply to it (and shows the worker that ran
    it), and each action, clicked, changes what the page and the database say."""
    from playwright.async_api import expect

    ids = await every_state(jc, clock)
    started, release = asyncio.Event(), asyncio.Event()

    async def hold(job: Job) -> None:
        started.set()
        await release.wait()

    ids["held"] = await jc.create_job("hold", {"by": "a queue"}).save()
    queue = jc.process_jobs("hold", hold, poll_interval=None, wakeup=False)
    app = create_dashboard(jc)
    async with serving(app) as url:
        try:
            queue.trigger()
            await asyncio.wait_for(started.wait(), 5)
            await queue.announce()
            page = await context.new_page()
            for name, job_id in ids.items():
                status = "running" if name == "held" else name
                await page.goto(f"{url}/jobs/{job_id}")
                await shows_status(page, status)
                buttons = page.locator("#actions button")
                assert await buttons.evaluate_all("bs => bs.map(b => b.value)") == offered(status)
                await shoot(page, f"job-{name}")
            worker = page.locator('#run tr[data-fact="worker"] td')  # the held job's
            await expect(worker).to_contain_text(f"queue {queue.worker_id} (live, holding it now)")

            # Cancel the job the queue holds: the page says so, and keeps who ran it.
            await click_and_load(page, "#actions button[value=cancel]")
            await shows_status(page, "cancelled")
            await expect(worker).to_contain_text(f"queue {queue.worker_id} (live)")
            held = await jc.get_job(ids["held"])
            assert held is not None and held.doc.status == "cancelled"
            assert held.worker is not None and held.worker.id == queue.worker_id

            # A ready job: pause, resume, cancel, restart.
            await page.goto(f"{url}/jobs/{ids['ready']}")
            for action, status in (
                ("pause", "paused"),
                ("resume", "ready"),
                ("cancel", "cancelled"),
            ):
                await click_and_load(page, f"#actions button[value={action}]")
                await shows_status(page, status)
                assert await stored_status(jc, ids["ready"]) == status
            await click_and_load(page, "#actions button[value=restart]")
            restarted = await stored_status(jc, ids["ready"])
            assert restarted in ("waiting", "ready")
            await shows_status(page, restarted)

            # A waiting job paused, a paused one resumed.
            await page.goto(f"{url}/jobs/{ids['waiting']}")
            await click_and_load(page, "#actions button[value=pause]")
            await shows_status(page, "paused")
            await page.goto(f"{url}/jobs/{ids['paused']}")
            await click_and_load(page, "#actions button[value=resume]")
            resumed = await stored_status(jc, ids["paused"])
            assert resumed in ("waiting", "ready")
            await shows_status(page, resumed)

            # A failed job: its traceback copied, then restarted.
            await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=url)
            await page.goto(f"{url}/jobs/{ids['failed']}")
            await page.click("button.copy")
            await expect(page.locator("button.copy")).to_have_text("Copied")
            assert await page.evaluate("navigator.clipboard.readText()") == PY_TRACE
            await click_and_load(page, "#actions button[value=restart]")
            assert await stored_status(jc, ids["failed"]) in ("waiting", "ready")

            # A completed job: rerun (the new job's page), then removed (back to the list).
            await page.goto(f"{url}/jobs/{ids['completed']}")
            await click_and_load(page, "#actions button[value=rerun]")
            rerun_id = page.url.rsplit("/", 1)[1]
            assert rerun_id != str(ids["completed"])
            [rerun] = [
                j for j in (await jc.find_jobs(type="completed")).jobs if j.id != ids["completed"]
            ]
            assert str(rerun.id) == rerun_id and rerun.rescheduled_from == ids["completed"]
            await expect(page.locator("#lineage")).to_contain_text(str(ids["completed"]))
            await page.goto(f"{url}/jobs/{ids['completed']}")
            await click_and_load(page, "#actions button[value=remove]")
            await expect(page.locator("h1")).to_have_text("Jobs")
            assert await jc.get_job(ids["completed"]) is None

            # The cancelled one removed too; its page is gone then.
            await page.goto(f"{url}/jobs/{ids['cancelled']}")
            await click_and_load(page, "#actions button[value=remove]")
            assert await jc.get_job(ids["cancelled"]) is None
            gone = await page.goto(f"{url}/jobs/{ids['cancelled']}")
            assert gone is not None and gone.status == 404
            await expect(page.locator("#problem")).to_contain_text("no job")
            await shoot(page, "not-found")
            await no_violation(page)
        finally:
            release.set()
            await queue.shutdown("hard", quiet=True)
            await app.state.close()


async def test_the_job_list_filters_sorts_pages_and_every_bulk_action(
    jc: JobCollection, clock: ManualClock, context: BrowserContext
) -> None:
    """The filter form (type, status, user, data, failure text, sort, an id), the next page,
    and each bulk action from its link through its confirmation to its outcome."""
    from playwright.async_api import expect

    ids = await every_state(jc, clock)
    for n in range(60):  # more than a page of 50
        clock.advance(1)
        await jc.create_job("mail", {"n": n}).for_user(f"u{n % 2}").save()
    [done] = await jc.get_work("mail")
    await done.done()
    app = create_dashboard(jc)
    async with serving(app) as url:
        try:
            page = await context.new_page()
            await page.goto(f"{url}/jobs")
            rows = page.locator("#jobs tr.job")
            await expect(rows).to_have_count(50)
            await shoot(page, "jobs")
            await page.click("#next")
            await expect(rows).to_have_count(len(ids) + 60 - 50)

            # Every filter at once, sorted oldest first.
            await page.goto(f"{url}/jobs")
            form = page.locator("#filters")
            await form.locator("select[name=type]").select_option("mail")
            await form.locator("select[name=status]").select_option("ready")
            await form.locator("input[name=user]").fill("u1")
            await form.locator("input[name=data]").fill("n=7")
            await form.locator("select[name=sort]").select_option("oldest")
            await click_and_load(page, "#filters button[type=submit]")
            assert "type=mail" in page.url and "sort=oldest" in page.url
            await expect(rows).to_have_count(1)
            await shoot(page, "jobs-filtered")
            await page.goto(f"{url}/jobs?type=mail&user=u0&sort=oldest")
            first = await rows.first.get_attribute("data-id")
            await page.goto(f"{url}/jobs?type=mail&user=u0")
            assert await rows.last.get_attribute("data-id") == first  # newest first reversed

            # Failure text: the note on how far it searched, and no bulk action.
            await page.goto(f"{url}/jobs")
            await form.locator("input[name=failure]").fill("boom")
            await click_and_load(page, "#filters button[type=submit]")
            await expect(rows).to_have_count(1)
            await expect(page.locator("#scanned")).to_be_visible()
            assert await page.locator("a.bulk").count() == 0

            # An id opens its job.
            await page.goto(f"{url}/jobs")
            await form.locator("input[name=id]").fill(str(ids["failed"]))
            await click_and_load(page, "#filters button[type=submit]")
            await expect(page.locator("h1")).to_have_text("Job failed")

            # Each bulk action on every "mail" job, from the list's link.
            for action, label in (
                ("pause", "Pause"),
                ("resume", "Resume"),
                ("cancel", "Cancel"),
                ("restart", "Restart"),
                ("rerun", "Rerun"),
                ("remove", "Remove"),
            ):
                before = {s: n for (t, s), n in (await jc.stats()).counts.items() if t == "mail"}
                applies = sum(before.get(s, 0) for s in ACTIONS[action])
                await page.goto(f"{url}/jobs?type=mail")
                await click_and_load(page, f'a.bulk:text("{label} all")')
                count = page.locator("#count")
                await expect(count).to_have_attribute("data-count", str(applies))
                if action == "pause":  # the confirmation, as every action's looks
                    await shoot(page, "bulk-confirm")
                if not applies:
                    continue
                await click_and_load(page, "main form button[type=submit]")
                outcome = page.locator("#outcome")
                await expect(outcome).to_have_attribute("data-matched", str(applies))
                await expect(outcome).to_have_attribute("data-changed", str(applies))
                if action == "pause":
                    await shoot(page, "bulk-done", reload=False)
                after = {s: n for (t, s), n in (await jc.stats()).counts.items() if t == "mail"}
                if action == "rerun":  # new jobs, pending
                    pending = ("waiting", "ready")
                    assert sum(after.get(s, 0) - before.get(s, 0) for s in pending) == applies
                else:  # none left in the statuses the action applies to
                    assert not any(after.get(s) for s in ACTIONS[action]), (action, after)
            await no_violation(page)
        finally:
            await app.state.close()


async def test_the_overview_and_queues_pause_every_type_and_set_and_remove_a_limit(
    jc: JobCollection, clock: ManualClock, context: BrowserContext
) -> None:
    """The claims of every type paused and resumed from the overview and the queues page,
    and a concurrency limit set through the overview's form, then removed from its row."""
    from playwright.async_api import expect

    await every_state(jc, clock)
    clock.advance(LAG.total_seconds() + 1)
    await jc.run_server_pass()  # the history the charts draw
    app = create_dashboard(jc)
    async with serving(app) as url:
        try:
            page = await context.new_page()
            for path, back in (("/", "overview"), ("/queues", "queues")):
                await page.goto(f"{url}{path}")
                await click_and_load(page, 'button:text("Pause every type")')
                assert (await jc.paused_types()).every
                await expect(page.locator('button:text("Resume every type")')).to_be_visible()
                await shoot(page, f"{back}-paused")
                await click_and_load(page, 'button:text("Resume every type")')
                assert not (await jc.paused_types()).every
                await expect(page.locator('button:text("Pause every type")')).to_be_visible()
            await page.goto(f"{url}/")
            await shoot(page, "overview")
            limit = page.locator("#limit")
            await limit.locator("input[name=type]").fill("mail")
            await limit.locator("input[name=max_running]").fill("3")
            await limit.locator("input[name=group_by]").fill("user")
            await click_and_load(page, "#limit button[type=submit]")
            cell = page.locator('#counts tr[data-type="mail"] td.limit')
            await expect(cell).to_contain_text("at most 3 running per user")
            [(job_type, set_limit)] = (await jc.concurrency_limits()).items()
            assert (job_type, set_limit.max_running, set_limit.group_by) == ("mail", 3, "user")
            await page.goto(f"{url}/queues")
            await expect(page.locator('#queues tr[data-type="mail"] td.limit')).to_contain_text(
                "at most 3 running per user"
            )
            await shoot(page, "queues")
            await page.goto(f"{url}/")
            await click_and_load(page, '#counts tr[data-type="mail"] button:text("Remove limit")')
            await expect(cell).to_have_text("none")
            assert await jc.concurrency_limits() == {}
        finally:
            await app.state.close()


async def test_a_workflow_and_a_batch_retried_and_cancelled(
    jc: JobCollection, context: BrowserContext
) -> None:
    """A workflow's page retries its failed job, then cancels what is unfinished; a batch's
    page cancels its members, then retries them."""
    from playwright.async_api import expect

    from jobcollection import batch, chain, group

    flow = await jc.save_workflow(
        chain(
            jc.create_job("extract").retry(0), group(jc.create_job("load"), jc.create_job("audit"))
        )
    )
    [extract] = await jc.get_work("extract")
    await extract.fail("boom", fatal=True)
    imports = await jc.save_workflow(
        batch([jc.create_job("import", {"f": f}) for f in "abc"], on_complete=jc.create_job("x"))
    )
    app = create_dashboard(jc)
    async with serving(app) as url:
        try:
            page = await context.new_page()
            await page.goto(f"{url}/workflows/{flow.id}")
            await expect(page.locator('#counts td[data-status="failed"]')).to_have_text("1")
            await shoot(page, "workflow")
            await click_and_load(page, "#actions button[value=retry]")
            await expect(page.locator('#counts td[data-status="failed"]')).to_have_text("0")
            assert await stored_status(jc, extract.id) in ("ready", "waiting")
            await click_and_load(page, "#actions button[value=cancel]")
            await expect(page.locator('#counts td[data-status="cancelled"]')).to_have_text("3")
            assert (await flow.status()).counts == {"cancelled": 3}

            await page.goto(f"{url}/batches/{imports.id}")
            await expect(page.locator("#progress")).to_have_attribute("data-total", "3")
            await shoot(page, "batch")
            await click_and_load(page, "#actions button[value=cancel]")
            await expect(page.locator('#counts td[data-status="cancelled"]')).to_have_text("3")
            await click_and_load(page, "#actions button[value=retry]")
            await expect(page.locator('#counts td[data-status="cancelled"]')).to_have_text("0")
            counts = (await jc.batch(imports.id).status()).counts
            assert "cancelled" not in counts and sum(counts.values()) == 3
            await no_violation(page)
        finally:
            await app.state.close()


async def test_schedules_run_pause_and_resume_and_the_workers_page(
    jc: JobCollection, context: BrowserContext
) -> None:
    """A schedule run now, paused and resumed from its row; the workers page lists a live
    queue with the job it holds and the job server's leader."""
    from playwright.async_api import expect

    await jc.schedules.upsert("nightly", type="report", cron="0 3 * * *", timezone="Europe/Paris")
    await jc.create_job("digest").repeat(schedule="0 9 * * 1-5").save()
    await jc.run_server_pass()
    started, release = asyncio.Event(), asyncio.Event()

    async def hold(job: Job) -> None:
        started.set()
        await release.wait()

    await jc.create_job("hold").save()
    queue = jc.process_jobs("hold", hold, poll_interval=None, wakeup=False)
    app = create_dashboard(jc)
    async with serving(app) as url:
        try:
            queue.trigger()
            await asyncio.wait_for(started.wait(), 5)
            await queue.announce()
            page = await context.new_page()
            await page.goto(f"{url}/schedules")
            row = page.locator('#schedules tr[data-id="nightly"]')
            await click_and_load(page, '#schedules tr[data-id="nightly"] button:text("Run now")')
            await expect(row).to_contain_text("(run now)")
            await click_and_load(page, '#schedules tr[data-id="nightly"] button:text("Pause")')
            await expect(row.locator("td.state.paused")).to_be_visible()
            assert (await jc.schedules.get("nightly")).paused  # type: ignore[union-attr]
            await click_and_load(page, '#schedules tr[data-id="nightly"] button:text("Resume")')
            await expect(row.locator("td.state.paused")).to_have_count(0)
            assert not (await jc.schedules.get("nightly")).paused  # type: ignore[union-attr]
            await shoot(page, "schedules")

            await page.click("header >> text=Workers")
            listed = page.locator(f'#workers tr.worker[data-id="{queue.worker_id}"]')
            await expect(listed).to_contain_text("hold")
            await expect(page.locator("#leader")).to_contain_text("led by")
            await shoot(page, "workers")
        finally:
            release.set()
            await queue.shutdown("hard", quiet=True)
            await app.state.close()


async def test_logging_in_and_out_and_a_read_only_user(
    jc: JobCollection, context: BrowserContext
) -> None:
    """With tokens: the login form refuses a wrong token, keeps a good one (the user shown,
    a Log out button), logs out; a read-only user is offered no action."""
    from playwright.async_api import expect

    job_id = await jc.create_job("mail").save()
    jc.allow(admin=["tester", "viewer"])  # the rules would let the viewer: the role does not
    tokens = {"admin-token": "tester", "viewer-token": "viewer"}
    app = create_dashboard(
        jc, auth=TokenAuth.from_tokens(tokens), read_only=lambda user: user == "viewer"
    )
    async with serving(app) as url:
        try:
            page = await context.new_page()
            await page.goto(f"{url}/")
            await expect(page.locator("input[name=token]")).to_be_visible()
            await shoot(page, "login")
            await page.fill("input[name=token]", "wrong")
            await click_and_load(page, 'button:text("Log in")')
            await expect(page.locator("p.error")).to_contain_text("not valid")
            await page.fill("input[name=token]", "admin-token")
            await click_and_load(page, 'button:text("Log in")')
            await expect(page.locator("header .who")).to_have_text("tester")
            await page.goto(f"{url}/jobs/{job_id}")
            assert await page.locator("#actions button").count() == len(offered("ready"))
            await click_and_load(page, 'button:text("Log out")')
            await expect(page.locator("input[name=token]")).to_be_visible()

            await page.fill("input[name=token]", "viewer-token")
            await click_and_load(page, 'button:text("Log in")')
            await expect(page.locator("header .who")).to_have_text("viewer (read-only)")
            await page.goto(f"{url}/jobs/{job_id}")
            await expect(page.locator("#status")).to_have_text("ready")
            assert await page.locator("#actions button").count() == 0
            await page.goto(f"{url}/")
            assert await page.locator("main form").count() == 0  # no pause, no limit form
            await no_violation(page)
        finally:
            await app.state.close()
    assert await stored_status(jc, job_id) == "ready"


async def test_filter_open_and_cancel_a_job_in_chromium(
    jc: JobCollection, context: BrowserContext
) -> None:
    from playwright.async_api import expect

    for n in range(3):
        await jc.create_job("mail", {"n": n}).save()
    sms = [await jc.create_job("sms", {"to": f"+1555000{n}"}).save() for n in range(2)]
    app = create_dashboard(jc, poll_s=0.1)

    async with serving(app) as url:
        try:
            page = await context.new_page()
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
            await app.state.close()

    stored = await jc.get_job(sms[0])
    assert stored is not None and stored.doc.status == "cancelled"
    other = await jc.get_job(sms[1])
    assert other is not None and other.doc.status == "ready"


async def test_a_workflow_page_in_chromium(jc: JobCollection, context: BrowserContext) -> None:
    """A workflow's page under the policy: its graph is styled by the stylesheet (a
    completed job's box is green), a box of many jobs links to their list and a job's box
    to its page, and the cancel button cancels what is unfinished."""
    from playwright.async_api import expect

    from jobcollection import chain, group

    start = jc.create_job("extract")
    parts = [jc.create_job("transform", {"n": n}) for n in range(12)]
    workflow = await jc.save_workflow(
        chain(start, group(parts), group(jc.create_job("load"), jc.create_job("audit")))
    )
    [claimed] = await jc.get_work("extract")
    await claimed.done()
    app = create_dashboard(jc)

    async with serving(app) as url:
        try:
            page = await context.new_page()
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
            await app.state.close()
    assert (await workflow.status()).counts == {"completed": 1, "cancelled": 14}


async def test_the_overview_charts_and_a_job_page_wide_narrow_and_dark(
    jc: JobCollection, clock: ManualClock, context: BrowserContext
) -> None:
    """The overview draws its charts (uPlot, under the policy), a failed job's page shows its
    traceback, both fit a 400-px screen without sideways scrolling of the page, and the theme
    follows the system's (dark) and the toggle, which the keyboard reaches."""
    from playwright.async_api import expect

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

    async with serving(app) as url:
        try:
            page = await context.new_page()
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
            await app.state.close()


async def test_the_queues_schedules_and_workers_pages_wide_narrow_and_dark(
    jc: JobCollection, context: BrowserContext
) -> None:
    """The queues page pauses and resumes a type's claims, and shows a pause made elsewhere
    by itself (live), the schedules page runs a schedule now and pauses it, the workers page
    names the job server's leader; each fits a 400-px screen without sideways scrolling of
    the page, light and dark, under the policy."""
    from playwright.async_api import expect

    from jobcollection import ConcurrencyLimit

    for n in range(5):
        await jc.create_job(f"type-{n % 2}").save()
    await jc.create_job("digest").repeat(schedule="0 9 * * 1-5").save()
    await jc.set_concurrency_limit("type-0", ConcurrencyLimit(2))
    await jc.schedules.upsert("nightly", type="report", cron="0 3 * * *", timezone="Europe/Paris")
    await jc.run_server_pass()
    app = create_dashboard(jc)

    async with serving(app) as url:
        try:
            page = await context.new_page()
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
            await app.state.close()
