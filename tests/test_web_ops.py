"""The dashboard's queues, schedules and workers pages over HTTP (issue 26, second slice): jobs
in every state, the claims and schedule actions (CSRF, read-only users, the rules), hostile
query parameters, and the pages' command budget, which does not grow with the jobs stored."""

from __future__ import annotations

import asyncio
import html
import os
import re
import socket
import sys
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from helpers import WORKER, stored_job
from jobcollection import ConcurrencyLimit, JobCollection, ManualClock, __version__, chain
from jobcollection.remote import TokenAuth
from jobcollection.rules.history import LAG
from jobcollection.web import app as web_app
from jobcollection.web import create_dashboard
from recording import Command, Recorder, recording
from test_web_history import HOSTILE, every_state

Client = Callable[..., httpx.AsyncClient]
TOKENS = {"admin-token": "tester", "viewer-token": "viewer"}


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert found, "the page has no form token"
    return found[1]


def row(page: str, table_row: str) -> str:
    found = re.search(rf"<tr {table_row}>(.*?)</tr>", page)
    assert found, table_row
    return html.unescape(found[1])


# --- queues -------------------------------------------------------------------------------------


async def test_the_queues_page_shows_each_type_with_its_backlog_claims_and_limit(
    jc: JobCollection, clock: ManualClock, client: Client
) -> None:
    await every_state(jc, clock)
    await jc.set_concurrency_limit("running", ConcurrencyLimit(1))
    await jc.pause_type("mail")
    http = client(create_dashboard(jc))
    page = (await http.get("/queues")).text
    assert 'href="/queues"' in page and 'href="/schedules"' in page  # in the header
    mail = row(page, 'data-type="mail"')
    assert re.search(r'class="n backlog">1<', mail)  # one ready
    assert re.search(r'class="n oldest">\d+s<', mail)
    assert "claims paused" in mail and "Resume" in mail
    assert "0 running, no limit" in mail and "no queue registered" in mail
    running = row(page, 'data-type="running"')
    assert 'class="limit full">1 of 1 running (100%)' in running
    assert "claims claimed" in running and "Pause" in running
    assert "Rate limits are set per queue" in page and "Rate limits</h2>" in page

    reply = await http.post(
        "/claims/resume", data={"csrf": csrf_of(page), "type": "mail", "back": "/queues"}
    )
    assert (reply.status_code, reply.headers["location"]) == (303, "/queues")
    assert not (await jc.paused_types()).types
    reply = await http.post(
        "/claims/pause", data={"csrf": csrf_of(page), "type": "mail", "back": "https://evil"}
    )
    assert reply.headers["location"] == "/"  # only the dashboard's own pages
    assert (await jc.paused_types()).types == ("mail",)


async def test_the_queues_page_lists_the_queues_registered_for_a_type(
    jc: JobCollection, client: Client
) -> None:
    queue = jc.process_jobs("mail", lambda job, cb: None, concurrency=3, poll_interval=None)
    assert await queue.announce()
    try:
        page = (await client(create_dashboard(jc)).get("/queues")).text
        assert "1 queue, 3 at once" in row(page, 'data-type="mail"')
    finally:
        await queue.shutdown("soft", quiet=True)


async def test_claims_from_the_queues_page_need_the_token_and_a_writer(
    jc: JobCollection, client: Client
) -> None:
    await jc.create_job("mail").save()
    jc.allow(admin=["tester", "viewer"])
    app = create_dashboard(
        jc, auth=TokenAuth.from_tokens(TOKENS), read_only=lambda user: user == "viewer"
    )
    admin = client(app, headers={"authorization": "Bearer admin-token"})
    viewer = client(app, headers={"authorization": "Bearer viewer-token"})
    page = (await admin.get("/queues")).text
    seen = (await viewer.get("/queues")).text
    assert 'type="submit"' not in seen
    wrong = await admin.post("/claims/pause", data={"csrf": "0" * 64, "type": "mail"})
    refused = await viewer.post("/claims/pause", data={"csrf": csrf_of(page), "type": "mail"})
    assert (wrong.status_code, refused.status_code) == (403, 403)
    assert not (await jc.paused_types()).types


# --- workers ------------------------------------------------------------------------------------


async def test_the_workers_page_shows_version_held_jobs_running_time_and_the_leader(
    jc: JobCollection, clock: ManualClock, client: Client
) -> None:
    job_id = await jc.create_job("mail").save()
    started, release = asyncio.Event(), asyncio.Event()

    async def worker(job: Any) -> None:
        started.set()
        await release.wait()
        await job.done()

    queue = jc.process_jobs("mail", worker, concurrency=2, poll_interval=None)
    http = client(create_dashboard(jc))
    try:
        async with asyncio.timeout(10):
            await started.wait()
        clock.advance(75)
        await queue.announce()
        await jc.run_server_pass()  # takes the job server's lease
        page = (await http.get("/workers")).text
        worker_row = row(page, f'class="worker" data-id="{queue.worker_id}"')
        assert f"{socket.gethostname()} (leads the job server)" in worker_row
        assert f">{os.getpid()}<" in worker_row and f">{__version__}<" in worker_row
        assert "2 (payload 1" in worker_row
        assert re.search(rf'href="/jobs/{job_id}">{job_id}</a> <span class="ran">\(1m 15s\)', page)
        assert f"led by {socket.gethostname()} pid {os.getpid()}" in page
    finally:
        release.set()
        await queue.shutdown("soft", quiet=True)


# --- schedules ----------------------------------------------------------------------------------


async def test_the_schedules_page_shows_schedules_and_repeating_jobs(
    jc: JobCollection, clock: ManualClock, client: Client
) -> None:
    await every_state(jc, clock)
    await jc.schedules.upsert("nightly", type="report", cron="0 3 * * *", timezone="Europe/Paris")
    await jc.schedules.upsert("sync", type="sync", every=300)
    await jc.schedules.pause("sync")
    forever = await jc.create_job("digest").repeat(schedule="0 9 * * 1-5").save()
    await jc.create_job("twice").repeat(repeats=2, wait=60_000).save()
    await jc.schedules.upsert("poll", type="poll", every=60, overlap="skip")
    clock.advance(60)
    await jc.run_server_pass()
    assert len(await jc.get_work("poll")) == 1  # its run of now is running
    clock.advance(60)
    await jc.run_server_pass()  # so this occurrence is skipped
    http = client(create_dashboard(jc))
    page = (await http.get("/schedules")).text
    poll = row(page, 'class="schedule" data-id="poll"')
    assert f'<td class="skipped">1, last at {clock.now():%Y-%m-%d %H:%M:%S} UTC</td>' in poll
    assert '<td class="skipped">none</td>' in row(page, 'class="schedule" data-id="sync"')
    nightly = row(page, 'class="schedule" data-id="nightly"')
    assert "cron 0 3 * * * in Europe/Paris" in nightly and "none yet" in nightly
    assert "active" in nightly and "Run now" in nightly and ">Pause<" in nightly
    sync = row(page, 'class="schedule" data-id="sync"')
    assert "every 5m" in sync and "paused" in sync and ">Resume<" in sync
    digest = row(page, f'class="repeating" data-id="{forever}"')
    assert "forever" in digest and "cron 0 9 * * 1-5" in digest
    assert "9007199254740992" not in page
    assert "2 more times" in page
    job_page = (await http.get(f"/jobs/{forever}")).text
    assert "forever" in job_page and "9007199254740992" not in job_page
    assert "newest 500 waiting, ready or paused" in page

    csrf = csrf_of(page)
    reply = await http.post("/schedules/trigger", data={"csrf": csrf, "id": "nightly"})
    assert (reply.status_code, reply.headers["location"]) == (303, "/schedules")
    made = await jc.find_jobs(schedule="nightly")
    assert [job.type for job in made.jobs] == ["report"]
    nightly = row((await http.get("/schedules")).text, 'class="schedule" data-id="nightly"')
    assert "(run now)" in nightly and "ready" in nightly
    runs = (await http.get("/jobs", params={"schedule": "nightly"})).text
    assert str(made.jobs[0].id) in runs
    await http.post("/schedules/pause", data={"csrf": csrf, "id": "nightly"})
    await http.post("/schedules/resume", data={"csrf": csrf, "id": "sync"})
    states = {s.id: s.paused for s in await jc.schedules.list()}
    assert states == {"nightly": True, "sync": False, "poll": False}
    missing = await http.post("/schedules/pause", data={"csrf": csrf, "id": "nope"})
    no_id = await http.post("/schedules/pause", data={"csrf": csrf})
    unknown = await http.post("/schedules/remove", data={"csrf": csrf, "id": "sync"})
    assert (missing.status_code, no_id.status_code, unknown.status_code) == (404, 400, 404)


async def test_schedule_actions_need_the_token_a_writer_and_the_rules(
    jc: JobCollection, client: Client
) -> None:
    await jc.schedules.upsert("sync", type="sync", every=300)
    jc.allow(admin=["viewer"], creator=["tester"])  # tester may not touch schedules
    app = create_dashboard(
        jc, auth=TokenAuth.from_tokens(TOKENS), read_only=lambda user: user == "viewer"
    )
    creator = client(app, headers={"authorization": "Bearer admin-token"})
    viewer = client(app, headers={"authorization": "Bearer viewer-token"})
    seen = (await viewer.get("/schedules")).text
    page = (await creator.get("/schedules")).text
    assert "Run now" not in seen and "Run now" not in page  # the rules refuse the creator
    csrf = app.state.dashboard.csrf("tester")
    assert (
        await viewer.post("/schedules/pause", data={"csrf": csrf, "id": "sync"})
    ).status_code == 403
    assert (
        await creator.post("/schedules/pause", data={"csrf": "0", "id": "sync"})
    ).status_code == 403
    assert (
        await creator.post("/schedules/pause", data={"csrf": csrf, "id": "sync"})
    ).status_code == 403
    assert not (await jc.schedules.list())[0].paused


# --- hostile parameters and the command budget --------------------------------------------------


async def test_hostile_parameters_on_the_queues_and_schedules_pages_are_no_500(
    jc: JobCollection, clock: ManualClock, client: Client
) -> None:
    await every_state(jc, clock)
    await jc.schedules.upsert("s", type="t", every=60)
    http = client(create_dashboard(jc))
    for path in ("/queues", "/schedules", "/jobs", "/workers"):
        for params in [
            *HOSTILE,
            {"schedule": "<script>alert(1)</script>"},
            {"schedule": "x" * 5000},
            {"id": "<script>alert(1)</script>"},
            {"id": "9" * 5000},
            {"id": "\u0000", "failure": "\u0000"},
            {"failure": "<script>alert(1)</script>", "after": "o" + "f" * 24},
            {"failure": "x" * 10_000, "type": "failed"},
            {"sort": "<script>alert(1)</script>"},
            {"sort": "oldest", "after": "s" + "x" * 3000},
        ]:
            reply = await http.get(path, params=params)
            assert reply.status_code < 500, (path, params, reply.status_code)
            assert "<script>alert" not in reply.text
    csrf = csrf_of((await http.get("/schedules")).text)
    for action in ("trigger", "pause", "%00", "x" * 300):
        for given in ("", "<b>", "x" * 10_000, "\u0000", "$where"):
            reply = await http.post(f"/schedules/{action}", data={"csrf": csrf, "id": given})
            assert reply.status_code < 500, (action, given, reply.status_code)
            assert "<b>" not in reply.text


STATUSES = ("waiting", "ready", "paused", "running", "completed", "failed", "cancelled")
STORED = 100_000
"""The jobs stored for the pages' command budget (issue 26: "a page with 100,000 jobs stored
renders within the same command budget as with 10")."""
ON_STAND_IN = {"wire_tier", "tests.wire_tier"} & set(sys.modules)
"""Whether the suite runs on the wire stand-in (tests/wire_tier.py), whose insert reads the
collection for each document: 100,000 jobs would take hours to store there, so it stores 2,000
(still more than MOST_RETURNED: a page reading every job fails alike)."""
MOST_RETURNED = 1_000
"""The most documents one command of a page may return: a page reads pages of jobs, never
all of them (the largest read is a workflow's members, 1,000 a command)."""


async def ten_jobs(jc: JobCollection, clock: ManualClock) -> dict[str, Any]:
    """Jobs of two types in every status, for two users, one failed with a text, one
    repeating, a workflow, a schedule, a registered queue holding the running job, and the
    history counted: what each page reads has something to show."""
    ids: dict[str, Any] = {}
    await jc.start_job_server()  # makes the indexes; stopped before the pages are read
    for n, status in enumerate(STATUSES):
        job = jc.create_job(("mail", "report")[n % 2], {"to": "a"}).retry(0).for_user(f"u{n % 2}")
        if status in ("completed", "failed", "running"):
            job.priority("critical")  # claimed first
        ids[status] = await (job.delay(3_600) if status == "waiting" else job).save()
    ids["repeating"] = await jc.create_job("mail").repeat(schedule="0 * * * *").save()
    workflow = await jc.save_workflow(chain(jc.create_job("mail"), jc.create_job("report")))
    ids["workflow"] = workflow.id
    await jc.schedules.upsert("s", type="report", every=60)
    await (await jc.get_job(ids["paused"])).pause()  # type: ignore[union-attr]
    await (await jc.get_job(ids["cancelled"])).cancel()  # type: ignore[union-attr]
    for status in ("running", "completed", "failed"):
        [job] = await jc.get_work(("mail", "report")[STATUSES.index(status) % 2])
        assert job.id == ids[status]
        clock.advance(1)
        if status == "completed":
            await job.done()
        elif status == "failed":
            await job.fail({"message": "disk full"})
    await jc.shutdown_job_server()
    seen = {**WORKER, "types": ["mail", "report"], "held": [ids["running"]], "holding": 1}
    assert await jc.call("jobWorkerSeen", seen) is True
    clock.advance(LAG.total_seconds() + 60)
    history = jc.service.server.history
    assert history is not None and await history.record() >= 2
    return ids


def stored_jobs(count: int, now: datetime) -> Iterator[list[dict[str, Any]]]:
    """`count` job documents in batches, spread over the types, statuses, users, data and
    finishing times of ten_jobs (the last two hours): no type or status the ten lack."""
    batch = []
    for n in range(count):
        status = STATUSES[n % len(STATUSES)]
        updated = now - timedelta(seconds=n % 7_200)
        doc = stored_job(
            updated, type=("mail", "report")[n % 2], status=status, data={"to": f"{n % 10}"}
        )
        doc["_private"] = {"jobcollectionUser": f"u{n % 3}"}
        if status in ("completed", "failed"):
            doc["log"] = [{"time": updated, "runId": None, "message": "Job Ended", "level": "info"}]
        batch.append(doc)
        if len(batch) == 10_000:
            yield batch
            batch = []
    if batch:
        yield batch


@pytest.mark.timeout(300)
async def test_every_page_costs_as_many_commands_with_100_000_jobs_as_with_ten(
    database: Any, clock: ManualClock, client: Client
) -> None:
    """Each page sends the same commands (every collection's: the jobs, the history, the
    workers, the settings) with 10 and with 100,000 jobs stored, and none returns more than
    MOST_RETURNED documents: no page reads every job. No job server runs while the pages are
    read (its loop's commands would fall into a page's count at random)."""
    sent: dict[str, dict[str, list[Command]]] = {}
    for root, stored in (("few", 0), ("many", (2_000 if ON_STAND_IN else STORED) - 10)):
        # Stored before the collection has its indexes, past the strict proxy: the in-memory
        # backend reads every job to check each insert (for a duplicate `_id`, a unique key).
        jobs = database[f"{root}.jobs"]
        for docs in stored_jobs(stored, clock.now()):
            await getattr(jobs, "inner", jobs).insert_many(docs)
        recorder = Recorder()
        jc = JobCollection.from_database(recording(database, recorder), root, clock=clock)
        try:
            ids = await ten_jobs(jc, clock)
            http = client(create_dashboard(jc))
            pages = {
                "overview": "/",
                "its live part": "/live",
                "jobs": "/jobs",
                "jobs filtered": "/jobs?type=mail&status=ready&user=u0&data.to=a&sort=oldest",
                "failure search": "/jobs?type=report&status=failed&failure=disk",
                "job by id": f"/jobs?id={ids['ready']}",
                "a job": f"/jobs/{ids['failed']}",
                "a job's live part": f"/jobs/{ids['running']}/live",
                "workflow": f"/workflows/{ids['workflow']}",
                "queues": "/queues",
                "schedules": "/schedules",
                "workers": "/workers",
            }
            # Read once each: both collections go through the same steps, so what a first
            # load does (settings read, indexes made) is in both counts alike.
            sent[root] = {}
            for page, path in pages.items():
                start = len(recorder.commands)
                reply = await http.get(path)
                assert reply.status_code in (200, 303), (path, reply.status_code)
                sent[root][page] = recorder.commands[start:]
        finally:
            await jc.close()
    # The jobs stored directly are as v1.x stores them: dropped rather than read again at
    # teardown (the fixture's check of every stored job).
    await database.drop_collection("many.jobs")
    few, many = sent["few"], sent["many"]
    for page, commands in many.items():
        kinds = [(c.collection.replace("many", "few"), c.name) for c in commands]
        assert kinds == [(c.collection, c.name) for c in few[page]], (page, few[page], commands)
        largest = max(commands, key=lambda c: c.returned, default=None)
        assert largest is None or largest.returned <= MOST_RETURNED, (page, str(largest))


# --- job search ---------------------------------------------------------------------------------


async def test_the_job_list_finds_a_job_by_id_and_failures_by_their_text(
    jc: JobCollection, clock: ManualClock, client: Client
) -> None:
    ids = await every_state(jc, clock)
    other = await jc.create_job("failed").retry(0).save()
    [job] = await jc.get_work("failed")
    await job.fail({"message": "disk full"})
    app = create_dashboard(jc)
    http = client(app)
    found = await http.get("/jobs", params={"id": str(ids["ready"])})
    assert (found.status_code, found.headers["location"]) == (303, f"/jobs/{ids['ready']}")
    missing = await http.get("/jobs", params={"id": "0" * 24})
    assert missing.status_code == 404 and "no job 000" in missing.text

    page = (await http.get("/jobs", params={"failure": "BOOM", "type": "failed"})).text
    listed = re.findall(r'<tr class="job" data-id="([^"]+)"', page)
    assert listed == [str(ids["failed"])] and str(other) not in listed
    assert "searched the newest 500 jobs matching the other filters" in page
    assert 'class="bulk"' not in page  # text is no filter an action may select by
    assert 'name="failure" value="BOOM"' in page
    disk = (await http.get("/jobs", params={"failure": "disk"})).text
    assert re.findall(r'<tr class="job" data-id="([^"]+)"', disk) == [str(other)]
    csrf = app.state.dashboard.csrf("dashboard")
    refused = await http.post("/bulk/restart", data={"csrf": csrf, "failure": "disk"})
    confirm = await http.get("/bulk/restart", params={"type": "failed", "failure": "disk"})
    assert (refused.status_code, confirm.status_code) == (400, 400)
    assert await status_of(jc, other) == "failed"


async def test_the_job_list_sorts_oldest_first_and_keeps_every_filter_in_its_links(
    jc: JobCollection, client: Client
) -> None:
    ids = [await jc.create_job("mail", {"to": "a"}).save() for _ in range(55)]
    await jc.create_job("mail", {"to": "b"}).save()
    http = client(create_dashboard(jc))
    params = {"type": "mail", "data.to": "a", "sort": "oldest"}
    page = (await http.get("/jobs", params=params)).text
    listed = re.findall(r'<tr class="job" data-id="([^"]+)"', page)
    assert listed == [str(i) for i in ids[:50]]
    assert '<option value="oldest" selected>' in page
    following = re.search(r'<a id="next" href="([^"]+)"', page)
    assert following is not None
    link = html.unescape(following[1])
    assert "sort=oldest" in link and "data.to=a" in link and "type=mail" in link
    rest = re.findall(r'<tr class="job" data-id="([^"]+)"', (await http.get(link)).text)
    assert rest == [str(i) for i in ids[50:]]
    newest = (await http.get("/jobs", params={**params, "sort": "newest"})).text
    assert re.findall(r'<tr class="job" data-id="([^"]+)"', newest)[0] == str(ids[-1])
    bad = await http.get("/jobs", params={"sort": "sideways"})
    assert bad.status_code == 400 and "sort" in bad.text
    # Bulk actions keep working on the filters (the order is no filter).
    confirm = (await http.get("/bulk/pause", params=params)).text
    assert 'data-count="55"' in confirm


async def status_of(jc: JobCollection, job_id: Any) -> str | None:
    job = await jc.get_job(job_id)
    return None if job is None else job.doc.status


async def test_a_capped_read_says_on_the_page_that_it_was_cut_and_how_to_narrow_it(
    jc: JobCollection, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(web_app, "REPEATING_SCAN", 2)
    monkeypatch.setattr(web_app, "FAILURE_SCAN", 2)
    http = client(create_dashboard(jc))
    await jc.create_job("digest").repeat(schedule="0 9 * * 1-5").save()
    await jc.create_job("mail").save()
    whole = (await http.get("/schedules")).text
    assert "among the newest 2 waiting" in whole and 'id="cut"' not in whole
    await jc.create_job("mail").save()
    cut = (await http.get("/schedules")).text
    assert 'id="cut"' in cut and "Cut: more than 2 jobs are waiting, ready or paused" in cut
    assert "schedule object" in cut and 'href="/jobs?status=waiting"' in cut

    for _ in range(2):
        job = await jc.create_job("failed").retry(0).save()
        [claimed] = await jc.get_work("failed")
        assert claimed.id == job
        await claimed.fail({"message": "disk full"})
    searched = (await http.get("/jobs", params={"failure": "disk", "type": "failed"})).text
    assert "searched the newest 2 jobs" in searched and 'id="cut"' not in searched
    more = (await http.get("/jobs", params={"failure": "disk"})).text
    assert 'id="cut"' in more and "Narrow them (a type, status=failed" in more
    assert 'id="next"' in more
