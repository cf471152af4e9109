"""The dashboard's overview trends and job page over HTTP (issue 26): jobs in every state, the
history's tables and charts, a job's last run, worker and tracebacks, hostile query
parameters, the vendored chart library, and the overview's command budget, which does not
grow with the jobs stored."""

from __future__ import annotations

import html
import json
import os
import re
import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from helpers import stored_job
from jobcollection import InvalidArgument, JobCollection, JobDoc, JobWorker, ManualClock
from jobcollection.model.workers import WorkerInfo
from jobcollection.rules.history import LAG
from jobcollection.web import create_dashboard
from jobcollection.web.assets import ASSETS
from jobcollection.web.job_facts import holder, needs_registry, traceback, worker_fact

Client = Callable[..., httpx.AsyncClient]

PY_TRACE = (
    "Traceback (most recent call last):\n"
    '  File "/app/tasks.py", line 12, in send\n'
    "    deliver(mail)\n"
    "ValueError: boom"
)
JS_TRACE = "Error: boom\n    at send (/app/tasks.js:12:5)\n    at run (/app/queue.js:40:3)"


async def every_state(jc: JobCollection, clock: ManualClock) -> dict[str, Any]:
    """A job in each status, by status."""
    ids: dict[str, Any] = {}
    ids["waiting"] = await jc.create_job("mail").delay(3_600_000).save()
    ids["paused"] = await jc.create_job("mail").save()
    await (await jc.get_job(ids["paused"])).pause()  # type: ignore[union-attr]
    ids["cancelled"] = await jc.create_job("mail").save()
    await (await jc.get_job(ids["cancelled"])).cancel()  # type: ignore[union-attr]
    for status in ("completed", "failed", "running"):
        ids[status] = await jc.create_job(status).retry(0).save()
    clock.advance(2)
    [done] = await jc.get_work("completed")
    await done.log("half way", level="warning")
    await done.progress(1, 2)
    clock.advance(3)
    await done.done({"sent": 3})
    [failed] = await jc.get_work("failed")
    clock.advance(1)
    await failed.fail({"type": "ValueError", "message": "boom", "traceback": PY_TRACE})
    assert await jc.get_work("running")
    clock.advance(7)
    ids["ready"] = await jc.create_job("mail").save()
    return ids


def facts_of(page: str) -> dict[str, str]:
    return {
        k: html.unescape(v)
        for k, v in re.findall(r'<tr data-fact="([^"]+)"><th>[^<]*</th><td>([^<]*)</td>', page)
    }


async def test_the_job_page_in_every_state(
    jc: JobCollection, clock: ManualClock, client: Client
) -> None:
    ids = await every_state(jc, clock)
    http = client(create_dashboard(jc))
    pages = {}
    for status, job_id in ids.items():
        for path in (f"/jobs/{job_id}", f"/jobs/{job_id}/live"):
            reply = await http.get(path)
            assert reply.status_code == 200, (status, reply.text)
        pages[status] = reply.text
        assert f'<span id="status" hidden>{status}</span>' in reply.text
    done = facts_of(pages["completed"])
    assert done["duration"] == "3s" and done["finished"].endswith("UTC")
    assert done["started"] != done["finished"]
    assert done["attempt"] == "1" and len(done["run id"]) == 24
    assert '<tr class="log-warning">' in pages["completed"] and "half way" in pages["completed"]
    assert "&quot;sent&quot;: 3" in pages["completed"]
    running = facts_of(pages["running"])
    assert running["finished"] == "-" and running["duration"] == "7s so far"
    here = f"{socket.gethostname()} pid {os.getpid()} (not a registered queue)"  # get_work
    assert running["worker"] == done["worker"] == here
    assert facts_of(pages["ready"])["started"] == "not yet"
    failed = pages["failed"]
    assert facts_of(failed)["duration"] == "1s"
    trace = re.search(r'<pre class="traceback" id="traceback-0">(.*?)</pre>', failed, re.DOTALL)
    assert trace
    assert html.unescape(trace[1]).endswith('<span class="exception">ValueError: boom</span>')
    assert 'class="copy" data-copy="traceback-0"' in failed
    assert re.search(r"<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC</time> <b>ValueError: boom", failed)


def test_a_traceback_shows_its_frames_then_the_exception() -> None:
    js = html.unescape(traceback(JS_TRACE.splitlines(), "t"))
    assert js.index("at send") < js.index("at run") < js.index("Error: boom")
    py = html.unescape(traceback(PY_TRACE.splitlines(), "t"))
    assert py.index("Traceback") < py.index('File "/app') < py.index("ValueError: boom")


def worker(name: str, held: tuple[Any, ...], kind: str = "local") -> WorkerInfo:
    return WorkerInfo(name, "host", 7, "1", ("t",), 1, 1, 0, held, len(held), kind=kind)


def test_the_worker_of_a_running_job_is_the_registered_queue_holding_it() -> None:
    queues = [worker("a", ("x",)), worker("b", ("y", "z"))]
    found = holder("z", queues)
    assert found is not None and found.id == "b"
    assert holder("w", queues) is None


def test_the_worker_fact_names_the_recorded_worker_and_whether_it_is_live() -> None:
    """What the claim recorded (JobDoc.worker), live or gone from the registry; a job with no
    record (job-collection v1.x, an earlier version) says so, or, running, which registered
    queue holds it."""
    queue = JobWorker(id="q1", host="h1", pid=5)
    registry = [worker("q1", ("j",)), worker("q2", ())]

    def fact(status: str, ran: JobWorker | None, workers: list[WorkerInfo]) -> str:
        doc = JobDoc(_id="j", type="t", status=status, worker=ran)
        assert needs_registry(doc) == (ran.id is not None if ran else status == "running")
        return worker_fact(doc, workers)

    assert fact("running", queue, registry) == "h1 pid 5, queue q1 (live, holding it now)"
    assert fact("completed", queue, registry) == "h1 pid 5, queue q1 (live)"
    assert fact("failed", queue, []) == "h1 pid 5, queue q1 (no longer in the registry)"
    remote = JobWorker(id="q2", host="h2", pid=6, user="tester", remote=True)
    assert (
        fact("cancelled", remote, registry) == "h2 pid 6, queue q2, remote, as user tester (live)"
    )
    ddp = JobWorker(id="q3", host="10.0.0.9", user="u", remote=True)
    assert (
        fact("completed", ddp, [])
        == "10.0.0.9, queue q3, remote, as user u (no longer in the registry)"
    )
    unsaid = JobWorker(remote=True)
    assert fact("completed", unsaid, []) == "host not known, remote (not a registered queue)"
    assert fact("completed", None, registry) == "not recorded"
    assert fact("running", None, []) == "not recorded"
    assert fact("running", None, [worker("q9", ("j",), "ddp")]) == "host pid 7 (ddp queue q9)"


async def test_the_overview_shows_each_types_trends_as_tables_and_charts(
    jc: JobCollection, clock: ManualClock, client: Client
) -> None:
    await every_state(jc, clock)
    clock.advance(LAG.total_seconds() + 1)
    await jc.run_server_pass()
    http = client(create_dashboard(jc))
    page = (await http.get("/")).text
    for window in ("hour", "day"):
        table = re.search(rf'id="trends-{window}">(.*?)</table>', page, re.DOTALL)
        assert table
        rows = dict(re.findall(r'<tr data-type="([^"]+)">(.*?)</tr>', table[1]))
        assert set(rows) == {"completed", "failed"}  # the running job has not finished
        assert '"completed">1</td>' in rows["completed"]
        assert '"failed">1</td>' in rows["failed"]
        assert 'data-label="run p50">' in rows["completed"]
    charts = [json.loads(html.unescape(c)) for c in re.findall(r'data-chart="([^"]+)"', page)]
    assert len(charts) == 2 * 2 * 2  # 2 types x 2 windows x (finished, times)
    counts = [c for c in charts if c["kind"] == "count"]
    assert {len(c["x"]) for c in counts} == {60, 24}
    assert all([s["label"] for s in c["series"]] == ["completed", "failed"] for c in counts)
    times = [c for c in charts if c["kind"] == "ms"]
    assert [s["label"] for s in times[0]["series"]] == [
        "wait p50", "wait p95", "wait p99", "run p50", "run p95", "run p99"
    ]  # fmt: skip
    assert "uPlot.iife.min.js" in page and "charts.js" in page and 'id="theme"' in page


async def test_the_overview_without_history_says_so(jc: JobCollection, client: Client) -> None:
    page = (await client(create_dashboard(jc)).get("/")).text
    assert page.count("No job finished in it") == 2


async def test_the_vendored_chart_library_is_served_with_its_licence(
    jc: JobCollection, client: Client
) -> None:
    http = client(create_dashboard(jc))
    for name in ("uPlot.iife.min.js", "uPlot.min.css"):
        reply = await http.get(f"/static/{name}", params={"v": ASSETS[name].version})
        assert reply.status_code == 200
        assert reply.text.startswith("/*! uPlot v1.6.32 (npm: uplot) | MIT License")
        assert "immutable" in reply.headers["cache-control"]
        assert "script-src 'self'" in reply.headers["content-security-policy"]


HOSTILE = [
    {"window": "'; DROP"},
    {"span": "x" * 10_000},
    {"type": "<script>alert(1)</script>"},
    {"\u0000": "\ud800".encode("utf-8", "surrogatepass").decode("utf-8", "replace")},
    {"after": "{}", "v": "../../etc/passwd"},
]


async def test_hostile_query_parameters_on_the_new_pages_are_no_500(
    jc: JobCollection, clock: ManualClock, client: Client
) -> None:
    ids = await every_state(jc, clock)
    http = client(create_dashboard(jc))
    paths = ["/", "/live", f"/jobs/{ids['failed']}", f"/jobs/{ids['running']}/live"]
    paths += ["/jobs/%00", "/jobs/" + "9" * 500, "/jobs/%3Cb%3E/live", "/static/charts.js"]
    for path in paths:
        for params in HOSTILE:
            reply = await http.get(path, params=params)
            assert reply.status_code < 500, (path, params, reply.status_code)
            assert "<script>alert" not in reply.text


async def overview_commands(jc: JobCollection, http: httpx.AsyncClient) -> int:
    history = jc._core.server.history
    assert history is not None
    store = await history._history()
    assert store is not None
    before = jc.commands + store.commands
    assert (await http.get("/")).status_code == 200
    return jc.commands + store.commands - before


async def test_the_overview_costs_as_many_commands_with_many_jobs_as_with_ten(
    make_jc: Any, clock: ManualClock, client: Client
) -> None:
    costs = []
    for root, jobs in (("few", 10), ("many", 1_500)):
        jc = await make_jc(root=root)
        await jc.save_jobs([jc.create_job(f"t{n % 3}") for n in range(jobs)])
        for job in await jc.get_work(["t0", "t1", "t2"], max_jobs=jobs * 2 // 3):
            await job.done()
        clock.advance(LAG.total_seconds() + 1)
        await jc.run_server_pass()
        http = client(create_dashboard(jc))
        await overview_commands(jc, http)  # the first load: settings read, indexes made
        costs.append(await overview_commands(jc, http))
    assert costs[0] == costs[1], costs


def test_chart_sample_is_still_accepted_with_a_deprecation_warning(jc: JobCollection) -> None:
    """The charts read the history now; a caller that passes chart_sample keeps working."""
    with pytest.warns(DeprecationWarning, match="chart_sample"):
        create_dashboard(jc, chart_sample=500)
    with pytest.raises(InvalidArgument, match="chart_sample"):
        create_dashboard(jc, chart_sample=0)


async def test_a_job_claimed_by_job_collection_v1_says_its_worker_is_not_recorded(
    jc: JobCollection, clock: ManualClock, client: Client
) -> None:
    now = clock.now()
    running = {"time": now, "runId": "r1", "message": "Job Running", "level": "info"}
    finished = {**running, "message": "Job Completed", "level": "success"}
    raw = stored_job(now, status="completed", runId="r1", log=[running, finished], retried=1)
    await jc.collection.insert_one(raw)
    page = (await client(create_dashboard(jc)).get(f"/jobs/{raw['_id']}")).text
    assert facts_of(page)["worker"] == "not recorded"
