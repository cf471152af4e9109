"""What a job shows, in `jobcollection show` and on the dashboard's job page: attempts and
repeats in the API's words (`.retry(5)` is "5 retries, 6 attempts", stored v1.x-style as
`retries: 6`), why a failed job failed ("failed: no retries left", where v1.x's log says "Job
Failed with Fatal Error"), a cron job's expression, zone and next runs, "forever" never as
9007199254740992, and each failure with its time and its traceback as lines.

`show` runs in-process on the test collection (both sides: local and through the remote API)
with the manual clock, then as a process, and the dashboard as a process (a real uvicorn on
127.0.0.1), both on the wire stand-in (tests/wire_server.py) that the test fills through
pymongo's real driver.
"""

from __future__ import annotations

import html
import io
import json
import re
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from jobcollection import FOREVER, JobCollection, ManualClock
from jobcollection.api.queue import failure_info
from jobcollection.cli import Console, operate, parser
from jobcollection.model.describe import attempts, outcome, repeats
from jobcollection.model.document import JobDoc
from test_remote_processes import jobcollection
from wire_server import running

CRON = "0 9 * * 1-5"
FOREVER_TEXT = str(FOREVER)  # 9007199254740992


async def show(jc: Any, job_id: Any) -> list[str]:
    """`jobcollection show ID` on `jc`: its lines (exit code 0)."""
    out, err = io.StringIO(), io.StringIO()
    code = await operate(jc, parser().parse_args(["show", str(job_id)]), Console(out, err, str))
    assert code == 0, err.getvalue()
    return out.getvalue().splitlines()


def raised(message: str) -> dict[str, Any]:
    """The failure a queue stores for a worker that raised ValueError(message)."""
    try:
        raise ValueError(message)
    except ValueError as exc:
        return failure_info(exc)


async def used_every_attempt(jc: Any, job_type: str = "mail") -> Any:
    """A job given `.retry(5)` whose six attempts all raised: failed for good."""
    job_id = await jc.create_job(job_type, {"to": "a"}).retry(5, wait=0).save()
    for n in range(6):
        [job] = await jc.get_work(job_type)
        assert job.id == job_id
        assert await job.fail(raised(f"boom {n + 1}")) is True
        await jc.run_server_pass()
    return job_id


# --- the words, as pure functions ---------------------------------------------------------------


def test_the_words_for_attempts_repeats_and_outcomes() -> None:
    fresh = JobDoc(type="t", retries=6, retried=0, retry_wait=0)
    assert attempts(fresh) == "5 retries, 6 attempts; 0 made, 6 left"
    waits = JobDoc(type="t", retries=6, retried=0, retry_wait=90_000, retry_backoff="exponential")
    assert attempts(waits) == "5 retries, 6 attempts; 0 made, 6 left; waits 1m 30s (exponential)"
    assert attempts(JobDoc(type="t")) == "no retries, 1 attempt; 0 made, 1 left"
    assert attempts(JobDoc(type="t", retries=1, retried=1, retry_wait=0)) == (
        "1 retry, 2 attempts; 1 made, 1 left"
    )
    assert attempts(JobDoc(type="t", retries=FOREVER - 3, retried=3)).startswith(
        "retries forever; 3 attempts made"
    )
    spent = JobDoc(type="t", status="failed", retries=0, retried=6)
    assert outcome(spent) == "failed: no retries left"
    fatal = JobDoc(type="t", status="failed", retries=4, retried=2)
    assert outcome(fatal) == "failed: fatal error (4 attempts were left)"
    assert outcome(JobDoc(type="t", status="completed")) is None
    assert repeats(JobDoc(type="t")) == "none"
    assert repeats(JobDoc(type="t", repeats=FOREVER - 2, repeated=2)) == "forever; 2 so far"
    assert repeats(JobDoc(type="t", repeats=1, repeated=3)) == "1 more time; 3 so far"


# --- show, in-process ---------------------------------------------------------------------------


@pytest.mark.both_sides
async def test_show_says_attempts_and_why_a_job_failed(jc: JobCollection) -> None:
    job_id = await used_every_attempt(jc)
    lines = await show(jc, job_id)
    assert "status:   failed" in lines
    assert "outcome:  failed: no retries left" in lines
    assert "attempts: 5 retries, 6 attempts; 6 made, none left" in lines
    assert "repeats:  none" in lines
    assert not any(line.startswith("retried:") for line in lines)
    # v1.x's stored form stays: the log's last line, the stored counts
    assert lines[-1].endswith("danger  Job Failed with Fatal Error: boom 6.")
    stored = (await jc.get_job(job_id)).doc
    assert (stored.retries, stored.retried) == (0, 6)


@pytest.mark.both_sides
async def test_show_prints_each_failure_with_its_time_and_traceback_lines(
    jc: JobCollection, clock: ManualClock
) -> None:
    job_id = await jc.create_job("mail").retry(1, wait=0).save()
    [job] = await jc.get_work("mail")
    clock.advance(90)
    await job.fail(raised("first"))
    await jc.run_server_pass()
    [job] = await jc.get_work("mail")
    clock.advance(30)
    await job.fail({"value": "plain", "code": 7})
    lines = await show(jc, job_id)
    at = lines.index("failures: 2")
    assert lines[at + 1] == "  1. 2026-01-01T12:01:30Z  ValueError: first"
    assert lines[at + 2] == "       Traceback (most recent call last):"
    assert lines[at + 3].startswith('         File "')
    trace_end = lines.index("       ValueError: first", at)
    second = lines[trace_end + 1 :]
    assert second[0] == "  2. 2026-01-01T12:02:00Z  plain"
    assert second[1] == '       {"code": 7}'
    assert not any("\\n" in line for line in lines)


@pytest.mark.both_sides
async def test_show_gives_a_cron_jobs_expression_zone_and_next_runs(
    jc: JobCollection,
) -> None:
    job_id = await jc.create_job("report").repeat(schedule=CRON, timezone="Europe/Paris").save()
    lines = await show(jc, job_id)
    assert "repeats:  forever" in lines
    assert "schedule: cron 0 9 * * 1-5 in Europe/Paris (catch-up: latest)" in lines
    assert (
        "next runs: 2026-01-02T08:00:00Z (Fri 09:00 Europe/Paris), "
        "2026-01-05T08:00:00Z (Mon 09:00 Europe/Paris), "
        "2026-01-06T08:00:00Z (Tue 09:00 Europe/Paris)"
    ) in lines
    assert "attempts: no retries, 1 attempt; 0 made, 1 left" in lines


@pytest.mark.both_sides
async def test_forever_never_shows_as_a_number(jc: JobCollection) -> None:
    job_id = await jc.create_job("poll").retry().repeat(wait=300).save()
    lines = await show(jc, job_id)
    assert "attempts: retries forever; 0 attempts made; waits 5m (constant)" in lines
    assert "repeats:  forever" in lines
    assert "schedule: every 5m after each run" in lines
    assert not any(FOREVER_TEXT in line or str(FOREVER - 1) in line for line in lines)


# --- as users run them: `show` and the dashboard as processes -----------------------------------


@pytest.fixture(scope="module")
def wire_uri() -> Iterator[str]:
    with running() as uri:
        yield uri


@pytest.fixture
async def filled(wire_uri: str) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """A database on the wire stand-in with a job that used its six attempts, a cron job and a
    job that retries and repeats forever: its name and the jobs' ids."""
    name = f"show_{uuid.uuid4().hex[:12]}"
    client: Any = AsyncMongoClient(wire_uri, tz_aware=True)
    jc = JobCollection.from_database(client[name], "queue")
    await jc.start_job_server()
    try:
        ids = {
            "failed": await used_every_attempt(jc),
            "cron": await jc.create_job("report")
            .repeat(schedule=CRON, timezone="Europe/Paris")
            .save(),
            "forever": await jc.create_job("poll").retry().repeat(wait=300).save(),
        }
        await jc.shutdown_job_server(timeout=0)
        yield name, ids
    finally:
        await jc.close()
        await client.drop_database(name)
        await client.close()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
async def test_show_as_a_process(
    tmp_path: Path, wire_uri: str, filled: tuple[str, dict[str, Any]]
) -> None:
    name, ids = filled
    where = ("--mongodb-uri", wire_uri, "--database", name)
    async with jobcollection(tmp_path, "show", str(ids["failed"]), *where) as shown:
        assert await shown.exited() == 0, shown.describe()
    lines = shown.lines
    assert "outcome:  failed: no retries left" in lines
    assert "attempts: 5 retries, 6 attempts; 6 made, none left" in lines
    assert "       Traceback (most recent call last):" in lines
    times = [line for line in lines if re.match(r"  \d\. \d{4}-\d\d-\d\dT\S+Z  ValueError", line)]
    assert len(times) == 6
    async with jobcollection(tmp_path, "show", str(ids["cron"]), *where) as shown:
        assert await shown.exited() == 0, shown.describe()
    assert "schedule: cron 0 9 * * 1-5 in Europe/Paris (catch-up: latest)" in shown.lines
    [upcoming] = [line for line in shown.lines if line.startswith("next runs: ")]
    assert upcoming.count("09:00 Europe/Paris") == 3
    async with jobcollection(tmp_path, "show", str(ids["forever"]), "--json", *where) as shown:
        assert await shown.exited() == 0, shown.describe()
    assert json.loads(shown.lines[0])["retries"] == FOREVER  # stored as v1.x stores it


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
async def test_the_dashboard_job_page(
    tmp_path: Path, wire_uri: str, filled: tuple[str, dict[str, Any]]
) -> None:
    name, ids = filled
    async with jobcollection(
        tmp_path, "dashboard", "--mongodb-uri", wire_uri, "--database", name, "--port", "0",
        "--log-level", "warning",
    ) as dashboard:  # fmt: skip
        line = await dashboard.expect("jobcollection serving on ")
        base = line.split()[-1]
        port = base.rsplit(":", 1)[1]
        headers = {"Host": f"localhost:{port}"}
        async with httpx.AsyncClient(base_url=base, headers=headers) as client:
            pages = {}
            for kind, job_id in ids.items():
                response = await client.get(f"/jobs/{job_id}")
                assert response.status_code == 200, response.text
                pages[kind] = response.text
        dashboard.send_signal(signal.SIGTERM)
        assert await dashboard.exited() == 0, dashboard.describe()

    failed = html.unescape(pages["failed"])
    assert '<p id="outcome">failed: no retries left</p>' in failed
    assert "Attempts: 5 retries, 6 attempts; 6 made, none left" in failed
    traces = [
        re.sub(r"</?span[^>]*>", "", trace)
        for trace in re.findall(r'<pre class="traceback"[^>]*>(.*?)</pre>', failed, re.DOTALL)
    ]
    assert len(traces) == 6
    assert traces[0].startswith("Traceback (most recent call last):\n  File ")
    assert traces[0].endswith("\nValueError: boom 1")
    assert len(re.findall(r"<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC</time>", failed)) == 6
    assert "\\n" not in failed

    cron = html.unescape(pages["cron"])
    assert "<th>schedule</th><td>cron 0 9 * * 1-5 in Europe/Paris (catch-up: latest)</td>" in cron
    [upcoming] = re.findall(r"<th>next runs</th><td>(.*?)</td>", cron)
    assert upcoming.count("09:00 Europe/Paris") == 3
    forever = html.unescape(pages["forever"])
    assert "<th>repeats</th><td>forever</td>" in forever
    assert "Attempts: retries forever; 0 attempts made" in forever
    for page in pages.values():
        assert FOREVER_TEXT not in page and str(FOREVER - 1) not in page
