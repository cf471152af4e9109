"""The operator commands of `jobcollection` (ls, show, retry, cancel, remove, purge, stats,
pause, resume, limit, limits, schedules, workers), run in-process on the test collection with the
arguments parsed as the command line would, their output captured and their confirmations
answered; the command itself runs as a process on the demo database, and `limit`/`limits` on
a database that processes share (the MongoDB wire stand-in)."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import timedelta
from os import getpid
from pathlib import Path
from socket import gethostname
from typing import Any

import pytest

from conftest import START
from helpers import claim_one
from jobcollection import ConcurrencyLimit, JobCollection, ManualClock, batch, chain, chord
from jobcollection.cli import Console, operate, parser
from jobcollection.model.constants import JOB_STATUSES
from test_cli_errors import run_cli
from test_cli_worker_db import collection_at, wire_database


@dataclass
class Ran:
    """What an operator command did: its exit code, output, notes and questions asked."""

    code: int
    out: str
    err: str
    asked: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return self.out.splitlines()


async def run(jc: Any, *argv: str, answer: str = "") -> Ran:
    """`jobcollection ARGV...` on `jc`, answering any confirmation with `answer`."""
    args = parser().parse_args(list(argv))
    out, err = io.StringIO(), io.StringIO()
    asked: list[str] = []

    def ask(prompt: str) -> str:
        asked.append(prompt)
        return answer

    code = await operate(jc, args, Console(out, err, ask))
    return Ran(code, out.getvalue(), err.getvalue(), asked)


async def statuses(jc: JobCollection, ids: list[Any]) -> list[str | None]:
    found = {job.id: job.doc.status for job in await jc.get_jobs(ids)}
    return [found.get(i) for i in ids]


async def failed_job(jc: JobCollection, job_type: str = "t", **data: Any) -> Any:
    """A job that failed its only attempt (claimed before any other ready job)."""
    job_id = await jc.create_job(job_type, data).priority("critical").save()
    worker = await claim_one(jc, job_type)
    assert worker.id == job_id
    assert await worker.fail("boom")
    return job_id


async def completed_job(jc: JobCollection, job_type: str = "t") -> Any:
    """A job done at its first attempt (claimed before any other ready job)."""
    job_id = await jc.create_job(job_type).priority("critical").save()
    worker = await claim_one(jc, job_type)
    assert worker.id == job_id
    assert await worker.done({"ok": True})
    return job_id


# --- ls ---------------------------------------------------------------------------------------


async def test_ls_lists_newest_first_as_a_table(jc: JobCollection, clock: ManualClock) -> None:
    first = await jc.create_job("mail", {"to": "a"}).save()
    clock.advance(60)
    second = await jc.create_job("sms").retry(5, wait=0).save()
    clock.advance(60)
    third = await jc.create_job("push").retry(wait=0).save()
    for job_type in ("sms", "push"):  # an attempt made, failed and retried
        assert await (await claim_one(jc, job_type)).fail("boom")
    ran = await run(jc, "ls")
    assert ran.code == 0
    header, *rows = ran.lines()
    assert header.split() == ["ID", "TYPE", "STATUS", "CREATED", "UPDATED", "ATTEMPTS"]
    assert [row.split()[:3] for row in rows] == [
        [str(third), "push", "waiting"],
        [str(second), "sms", "waiting"],
        [str(first), "mail", "ready"],
    ]
    assert rows[2].split()[3] == "2026-01-01T12:00:00Z"
    # Attempts made of those allowed, as `retry()` counts them (stored: retried/retries).
    assert [row.split(maxsplit=5)[5] for row in rows] == ["1 of forever", "1 of 6", "0 of 1"]
    assert ran.err == ""


async def test_ls_filters(jc: JobCollection, clock: ManualClock) -> None:
    old = await jc.create_job("mail", {"customer": {"id": 7}}).for_user("u1").save()
    clock.advance(3600)
    sms = await jc.create_job("sms", {"customer": {"id": 7}}).save()
    other = await jc.create_job("mail", {"customer": {"id": "7"}}).save()
    failed = await failed_job(jc, "mail")

    async def ids(*argv: str) -> list[str]:
        ran = await run(jc, "ls", "--json", *argv)
        return [json.loads(line)["_id"] for line in ran.lines()]

    assert await ids("--type", "mail") == [str(failed), str(other), str(old)]
    assert await ids("--type", "mail", "--type", "sms", "--status", "ready") == [
        str(other),
        str(sms),
        str(old),
    ]
    assert await ids("--status", "failed") == [str(failed)]
    assert await ids("--user", "u1") == [str(old)]
    assert await ids("--data", "customer.id=7") == [str(sms), str(old)]
    assert await ids("--data", 'customer.id="7"') == [str(other)]
    assert await ids("--created-before", "2026-01-01T12:30:00Z") == [str(old)]
    assert await ids("--created-before", "30m") == [str(old)]  # now is 13:00
    nothing = await run(jc, "ls", "--type", "nope")
    assert (nothing.code, nothing.out, nothing.err) == (1, "", "no jobs match\n")


async def test_ls_json_lines_are_the_documents(jc: JobCollection) -> None:
    job_id = await jc.create_job("mail", {"to": "a"}).save()
    ran = await run(jc, "ls", "--json")
    (doc,) = [json.loads(line) for line in ran.lines()]
    assert doc["_id"] == str(job_id) and doc["type"] == "mail" and doc["data"] == {"to": "a"}


async def test_ls_pages_with_the_cursor_on_stderr(jc: JobCollection) -> None:
    ids = [str(await jc.create_job("t", {"n": n}).save()) for n in range(5)]
    seen: list[str] = []
    after: list[str] = []
    for _ in range(3):
        ran = await run(jc, "ls", "--limit", "2", *after)
        assert ran.code == 0
        seen += [row.split()[0] for row in ran.lines()[1:]]
        if not ran.err:
            break
        prefix = "next page: --after "
        assert ran.err.startswith(prefix)
        after = ["--after", ran.err[len(prefix) :].strip()]
    assert seen == ids[::-1]


async def test_ls_bad_arguments_name_the_option(
    jc: JobCollection, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv, option in (
        (["--status", "nope"], "--status"),
        (["--created-before", "yesterday"], "--created-before"),
        (["--data", "no-equals-sign"], "--data"),
        (["--limit", "0"], "--limit"),
    ):
        with pytest.raises(SystemExit) as exited:
            parser().parse_args(["ls", *argv])
        assert exited.value.code == 2
        assert f"argument {option}" in capsys.readouterr().err
    for argv, message in (
        (["--after", "garbage"], "jobcollection ls: --after: must be the `next` cursor"),
        (["--data", "$x=1"], "jobcollection ls: --data: a path"),
        (["--user", "[1]"], "jobcollection ls: --user: must be"),
    ):
        ran = await run(jc, "ls", *argv)
        assert ran.code == 2 and ran.err.startswith(message), ran.err


# --- show -------------------------------------------------------------------------------------


async def test_show_prints_a_job_with_its_log_and_failures(jc: JobCollection) -> None:
    job_id = await failed_job(jc, "mail", to="a")
    ran = await run(jc, "show", str(job_id))
    assert ran.code == 0
    assert f"id:       {job_id}" in ran.lines()
    assert "status:   failed" in ran.lines()
    assert 'data:     {"to": "a"}' in ran.lines()
    assert "failures: 1" in ran.lines()
    assert "boom" in ran.out
    as_json = json.loads((await run(jc, "show", str(job_id), "--json")).out)
    assert as_json["_id"] == str(job_id) and as_json["status"] == "failed"
    assert len(as_json["failures"]) == 1 and as_json["log"]


async def test_show_a_missing_job_exits_1(jc: JobCollection) -> None:
    ran = await run(jc, "show", "6b0e00000000000000000000")
    assert (ran.code, ran.out, ran.err) == (1, "", "no job 6b0e00000000000000000000\n")


# --- retry, cancel, remove --------------------------------------------------------------------


async def test_cancel_by_id_asks_nothing_and_counts(jc: JobCollection) -> None:
    a = await jc.create_job("t").save()
    b = await jc.create_job("t").save()
    done = await completed_job(jc, "other")
    ran = await run(jc, "cancel", str(a), str(done), "6b0e00000000000000000000")
    assert ran.code == 0 and ran.asked == []
    assert ran.out == "cancel: 2 matched, 1 changed\n"
    assert await statuses(jc, [a, b, done]) == ["cancelled", "ready", "completed"]


async def test_cancel_by_filter_asks_first(jc: JobCollection) -> None:
    mail = [await jc.create_job("mail").save() for _ in range(3)]
    sms = await jc.create_job("sms").save()
    await failed_job(jc, "mail")  # not cancellable: not counted

    declined = await run(jc, "cancel", "--type", "mail", answer="n")
    assert declined.asked == ["Cancel 3 jobs? [y/N]"]
    assert (declined.code, declined.out, declined.err) == (1, "", "cancel: nothing done\n")
    assert await statuses(jc, [*mail, sms]) == ["ready"] * 4

    accepted = await run(jc, "cancel", "--type", "mail", answer="y")
    assert accepted.asked == ["Cancel 3 jobs? [y/N]"]
    assert (accepted.code, accepted.out) == (0, "cancel: 3 matched, 3 changed\n")
    assert await statuses(jc, [*mail, sms]) == ["cancelled"] * 3 + ["ready"]

    unasked = await run(jc, "cancel", "--type", "sms", "--yes")
    assert (unasked.code, unasked.out, unasked.asked) == (0, "cancel: 1 matched, 1 changed\n", [])
    none_left = await run(jc, "cancel", "--type", "mail", "--yes")
    assert (none_left.code, none_left.err) == (1, "cancel: no jobs match\n")


async def test_cancel_by_data_and_status(jc: JobCollection) -> None:
    seven = await jc.create_job("t", {"customer": 7}).save()
    eight = await jc.create_job("t", {"customer": 8}).save()
    ran = await run(jc, "cancel", "--data", "customer=7", "--status", "ready", "--yes")
    assert ran.out == "cancel: 1 matched, 1 changed\n"
    assert await statuses(jc, [seven, eight]) == ["cancelled", "ready"]


async def test_ids_and_a_filter_together_are_refused(jc: JobCollection) -> None:
    job_id = await jc.create_job("t").save()
    ran = await run(jc, "remove", str(job_id), "--type", "t")
    assert ran.code == 2 and "not both" in ran.err
    assert (await run(jc, "remove")).code == 2


async def test_retry_runs_failed_jobs_again_now(jc: JobCollection, clock: ManualClock) -> None:
    failed = [await failed_job(jc) for _ in range(2)]
    ready = await jc.create_job("t").save()
    ran = await run(jc, "retry", "--type", "t", answer="yes")
    assert ran.asked == ["Retry 2 jobs? [y/N]"]
    assert ran.out == "retry: 2 matched, 2 changed\n"
    # Ready at once: an operator's retry means now, not after the failure's retry wait.
    assert await statuses(jc, failed) == ["ready"] * 2
    assert all(job.doc.after == clock.now() for job in await jc.get_jobs(failed))
    assert await statuses(jc, [ready]) == ["ready"]
    again = await run(jc, "retry", str(ready))
    assert again.out == "retry: 1 matched, 0 changed\n"


async def test_remove_by_filter_removes_finished_jobs(jc: JobCollection) -> None:
    done = await completed_job(jc)
    failed = await failed_job(jc)
    ready = await jc.create_job("t").save()
    ran = await run(jc, "remove", "--type", "t", "--yes")
    assert ran.out == "remove: 2 matched, 2 changed\n"
    assert await statuses(jc, [done, failed, ready]) == [None, None, "ready"]


# --- purge ------------------------------------------------------------------------------------


async def test_purge_by_duration(jc: JobCollection, clock: ManualClock) -> None:
    old_done = await completed_job(jc)
    old_failed = await failed_job(jc)
    clock.advance(timedelta(days=3))
    new_done = await completed_job(jc)
    pending = await jc.create_job("t").save()
    clock.advance(timedelta(days=1))

    declined = await run(jc, "purge", "--completed-before", "2d")
    assert declined.code == 1
    assert declined.asked == [
        "Remove 2 completed/failed/cancelled jobs finished before 2026-01-03T12:00:00Z? [y/N]"
    ]
    ran = await run(jc, "purge", "--completed-before", "2d", "--yes")
    assert (ran.code, ran.out) == (0, "remove: 2 matched, 2 changed\n")
    assert await statuses(jc, [old_done, old_failed, new_done, pending]) == [
        None,
        None,
        "completed",
        "ready",
    ]


async def test_purge_by_date_and_status(jc: JobCollection, clock: ManualClock) -> None:
    done = await completed_job(jc)
    failed = await failed_job(jc)
    clock.advance(timedelta(days=10))
    moment = (START + timedelta(days=1)).isoformat()
    ran = await run(jc, "purge", "--completed-before", moment, "--status", "failed", answer="y")
    assert ran.asked == ["Remove 1 failed jobs finished before 2026-01-02T12:00:00Z? [y/N]"]
    assert ran.out == "remove: 1 matched, 1 changed\n"
    assert await statuses(jc, [done, failed]) == ["completed", None]
    early = await run(jc, "purge", "--completed-before", "2025-12-31", "--yes")
    assert (early.code, early.err) == (
        1,
        "remove: no completed/failed/cancelled jobs finished before 2025-12-31T00:00:00Z match\n",
    )


async def test_purge_keeps_jobs_finished_after_the_moment(
    jc: JobCollection, clock: ManualClock
) -> None:
    """A job created long ago but finished recently is kept: the finishing time counts."""
    job_id = await jc.create_job("t").save()
    clock.advance(timedelta(days=10))
    worker = await claim_one(jc)
    assert await worker.done()
    ran = await run(jc, "purge", "--completed-before", "1d", "--yes")
    assert ran.code == 1
    assert await statuses(jc, [job_id]) == ["completed"]


# --- stats ------------------------------------------------------------------------------------


async def test_stats_counts_per_type_and_status(jc: JobCollection, clock: ManualClock) -> None:
    await jc.create_job("mail").save()
    clock.advance(600)
    await jc.create_job("mail").save()
    await failed_job(jc, "mail")
    await completed_job(jc, "sms")
    await jc.create_job("sms").delay(3600).save()
    clock.advance(90)

    ran = await run(jc, "stats", "--json")
    report = json.loads(ran.out)
    assert report["total"] == 5
    mail, sms = report["types"]["mail"], report["types"]["sms"]
    assert mail["counts"]["ready"] == 2 and mail["counts"]["failed"] == 1
    assert mail["total"] == 3 and mail["oldest_ready_s"] == 690
    assert sms["counts"]["completed"] == 1 and sms["counts"]["waiting"] == 1
    assert sms["oldest_ready_s"] is None

    table = (await run(jc, "stats")).lines()
    assert table[0].split()[0] == "TYPE" and table[0].endswith("OLDEST READY")
    assert table[1].split() == ["mail", "0", "0", "2", "0", "1", "0", "0", "3", "11m", "30s"]
    assert table[2].split() == ["sms", "1", "0", "0", "0", "0", "0", "1", "2", "-"]
    assert table[3].split() == ["(all)", "1", "0", "2", "0", "1", "0", "1", "5"]


# --- the command ------------------------------------------------------------------------------


def test_the_command_runs_on_the_in_memory_backend() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MONGODB_URI"}
    for argv in (["ls", "--help"], ["stats", "--demo"]):
        done = subprocess.run(
            [sys.executable, "-m", "jobcollection", *argv],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            check=False,
        )
        assert done.returncode == 0, done.stderr
    assert "TYPE" in done.stdout


def test_the_cli_package_exports_what_runs_a_command_in_process() -> None:
    """`jobcollection.cli` re-exports the command (`main`, the entry point) and what runs an
    operator command in-process (`parser`, `operate`, `Console`), each documented; the rest
    is in the modules named for what they hold."""
    import inspect

    import jobcollection.cli

    assert sorted(jobcollection.cli.__all__) == ["Console", "main", "operate", "parser"]
    for name in jobcollection.cli.__all__:
        assert inspect.getdoc(getattr(jobcollection.cli, name)), name
    assert jobcollection.cli.__doc__ is not None
    assert parser().description == jobcollection.cli.__doc__.splitlines()[0]


async def test_pause_and_resume_stop_and_restart_the_claims_of_a_type(jc: JobCollection) -> None:
    await jc.create_job("mail").save()
    paused = await run(jc, "pause", "mail", "sms")
    assert (paused.code, paused.out.strip()) == (0, "paused: mail, sms")
    assert await jc.get_work("mail") == []
    await jc.run_server_pass()  # this process takes the job server's lease
    shown = (await run(jc, "stats")).lines()
    assert shown[-3:] == [
        "paused: mail, sms",
        "limits: none",
        f"job server: led by {gethostname()} pid {getpid()}",
    ]
    report = json.loads((await run(jc, "stats", "--json")).out)
    assert report["paused"] == {"types": ["mail", "sms"], "all": False}
    assert report["leader"]["pid"] == getpid() and report["leader"]["epoch"] == 1
    every = await run(jc, "pause", "--all")
    assert every.out.strip() == "paused: every type (and mail, sms)"
    assert (await run(jc, "resume", "--all")).out.strip() == "paused: nothing"
    assert len(await jc.get_work("mail")) == 1
    for argv in (["pause"], ["resume", "mail", "--all"]):
        refused = await run(jc, *argv)
        assert refused.code == 2 and "--all" in refused.err, refused
    assert (await jc.paused_types()).types == ()


async def test_workers_lists_the_live_queues(jc: JobCollection, clock: ManualClock) -> None:
    async def nothing(job: Any) -> None:
        await job.done()

    queue = jc.process_jobs("mail", nothing, concurrency=3, poll_interval=None)
    try:
        await queue.announce()
        [head, row] = (await run(jc, "workers")).lines()
        assert head.split()[:3] == ["ID", "HOST", "PID"]
        assert row.split()[:5] == [queue.worker_id, gethostname(), str(getpid()), "local", "mail"]
        [line] = (await run(jc, "workers", "--json")).out.splitlines()
        shown = json.loads(line)
        assert (shown["id"], shown["concurrency"], shown["holding"]) == (queue.worker_id, 3, 0)
    finally:
        await queue.shutdown(quiet=True)
    gone = await run(jc, "workers")
    assert gone.code == 0 and "none registered" in gone.err


# --- limit, limits ----------------------------------------------------------------------------


async def test_limit_sets_and_removes_a_types_concurrency_limit(jc: JobCollection) -> None:
    """`limit TYPE MAX [--group-by PATH]` sets the limit every claim honours, `limit TYPE
    --remove` removes it; each prints every limit; `limits` and `stats` show them."""
    for _ in range(3):
        await jc.create_job("mail").save()
    assert (await run(jc, "limits")).err == "no concurrency limits\n"
    set_ = await run(jc, "limit", "mail", "2")
    assert (set_.code, set_.out, set_.err) == (0, "limits: mail at most 2 running\n", "")
    assert len(await jc.get_work("mail", max_jobs=3)) == 2  # the limit holds
    grouped = await run(jc, "limit", "sms", "1", "--group-by", "data.customer")
    assert grouped.out == (
        "limits: mail at most 2 running, sms at most 1 running per data.customer\n"
    )
    assert await jc.concurrency_limits() == {
        "mail": ConcurrencyLimit(2),
        "sms": ConcurrencyLimit(1, group_by="data.customer"),
    }
    listed = await run(jc, "limits")
    assert [line.split() for line in listed.lines()] == [
        ["TYPE", "MAX", "RUNNING", "GROUP", "BY"],
        ["mail", "2", "-"],
        ["sms", "1", "data.customer"],
    ]
    assert json.loads((await run(jc, "limits", "--json")).out) == {
        "mail": {"max_running": 2, "group_by": None},
        "sms": {"max_running": 1, "group_by": "data.customer"},
    }
    assert (await run(jc, "stats")).lines()[-2] == (
        "limits: mail at most 2 running, sms at most 1 running per data.customer"
    )
    report = json.loads((await run(jc, "stats", "--json")).out)
    assert report["limits"]["mail"] == {"max_running": 2, "group_by": None}
    removed = await run(jc, "limit", "mail", "--remove")
    assert (removed.code, removed.out) == (0, "limits: sms at most 1 running per data.customer\n")
    assert len(await jc.get_work("mail")) == 1  # no limit: the third job is claimed
    again = await run(jc, "limit", "mail", "--remove")
    assert (again.code, again.err) == (0, "mail had no concurrency limit\n")
    assert list(await jc.concurrency_limits()) == ["sms"]


async def test_schedules_lists_each_schedule_with_its_next_and_last_run(
    jc: JobCollection, clock: ManualClock
) -> None:
    """`schedules` lists the schedule objects: their timing and policies, next run and last
    run; `--json` one object per schedule, as jobSchedules answers."""
    assert (await run(jc, "schedules")).err == "schedules: none\n"
    await jc.schedules.upsert(
        "nightly", cron="0 3 * * *", timezone="Europe/Paris", type="report", jitter=10
    )
    await jc.schedules.upsert("sync", every=60, type="sync", overlap="skip")
    await jc.schedules.pause("nightly")
    clock.advance(60)
    await jc.run_server_pass()
    clock.advance(60)  # the run of 12:01 is not final: the skip policy skips this one
    await jc.run_server_pass()
    [run_id] = [job.id for job in (await jc.find_jobs(schedule="sync")).jobs]
    listed = await run(jc, "schedules")
    assert [re.split(r"\s{2,}", line) for line in listed.lines()] == [
        ["ID", "TYPE", "WHEN", "OVERLAP", "CATCH-UP", "STATE", "NEXT RUN", "LAST RUN", "SKIPPED"],
        [
            *("nightly", "report", "cron 0 3 * * * Europe/Paris + jitter 10s", "allow"),
            *("latest", "paused", "-", "-", "0"),
        ],
        [
            *("sync", "sync", "every 60s", "skip", "latest", "active", "2026-01-01T12:03:00Z"),
            f"{run_id} ready (2026-01-01T12:01:00Z)",
            "1 (last 2026-01-01T12:02:00Z)",
        ],
    ]
    nightly, sync = [json.loads(line) for line in (await run(jc, "schedules", "--json")).lines()]
    assert nightly["cron"] == "0 3 * * *" and nightly["jitter"] == 10_000 and nightly["paused"]
    assert sync["nextRuns"][0] == "2026-01-01T12:03:00+00:00"
    assert (sync["skipped"], sync["lastSkipped"]) == (1, "2026-01-01T12:02:00+00:00")
    assert sync["lastRun"] == {
        "jobId": str(run_id),
        "at": "2026-01-01T12:01:00+00:00",
        "status": "ready",
        "triggered": False,
    }


async def test_limit_refuses_bad_arguments_naming_them(
    jc: JobCollection, capsys: pytest.CaptureFixture[str]
) -> None:
    """A MAX that is not a whole number from 1 to 1,000,000 is refused by the parser (exit
    2, naming MAX); a bad --group-by, TYPE, or a missing or extra argument, by the command
    (one line, exit 2, naming it); nothing changes."""
    for bad in ("0", "-1", "abc", "2.5", "1000001", "9" * 400):
        with pytest.raises(SystemExit) as exited:
            parser().parse_args(["limit", "mail", bad])
        assert exited.value.code == 2
        assert "argument MAX: " in capsys.readouterr().err
    for argv, line in (
        (["mail"], "give MAX, the most jobs of TYPE running at once, or --remove"),
        (["mail", "3", "--remove"], "--remove takes TYPE alone (not MAX nor --group-by)"),
        (["mail", "--remove", "--group-by", "user"], "--remove takes TYPE alone"),
        (["mail", "3", "--group-by", "customer"], "--group-by: must be 'user' or 'data.<field"),
        (["mail", "3", "--group-by", "data.$where"], "--group-by: must be 'user' or 'data."),
        (["", "3"], "TYPE: must be a non-empty string"),
        (["x" * 5_000, "3"], "TYPE: is longer than"),
    ):
        ran = await run(jc, "limit", *argv)
        assert ran.code == 2 and ran.out == "", argv
        assert ran.err.startswith(f"jobcollection limit: {line}"), ran.err
        assert ran.err.count("\n") == 1 and len(ran.err) < 300, ran.err
    assert await jc.concurrency_limits() == {}


async def test_limit_and_limits_as_processes_on_a_database(tmp_path: Path) -> None:
    """`limit` and `limits` as processes on a database (--mongodb-uri, and
    JOBCOLLECTION_MONGODB_URI): what one process sets, another lists and this process's
    collection reads; a bad MAX or --group-by exits 2 without a traceback."""
    async with wire_database(tmp_path) as uri:
        set_ = await run_cli("limit", "mail", "5", "--group-by", "user", "--mongodb-uri", uri)
        assert (set_.code, set_.out, set_.err) == (
            0,
            "limits: mail at most 5 running per user\n",
            "",
        )
        listed = await run_cli("limits", "--json", mongodb_uri=uri)
        assert listed.code == 0, listed.err
        assert json.loads(listed.out) == {"mail": {"max_running": 5, "group_by": "user"}}
        async with collection_at(uri) as theirs:
            assert await theirs.concurrency_limits() == {
                "mail": ConcurrencyLimit(5, group_by="user")
            }
        bad_group = await run_cli("limit", "mail", "3", "--group-by", "nope", mongodb_uri=uri)
        assert bad_group.code == 2
        assert bad_group.error_line().startswith("jobcollection limit: --group-by: must be")
        bad_max = await run_cli("limit", "mail", "0", mongodb_uri=uri)
        assert bad_max.code == 2 and "argument MAX: '0' is not a whole number" in bad_max.err
        assert "Traceback" not in bad_max.err
        removed = await run_cli("limit", "mail", "--remove", mongodb_uri=uri)
        assert (removed.code, removed.out) == (0, "limits: none\n")
        stats = await run_cli("stats", mongodb_uri=uri)
        assert stats.code == 0 and "limits: none" in stats.out.splitlines()


# --- workflow, batch --------------------------------------------------------------------------


async def test_workflow_shows_counts_progress_and_what_each_job_waits_on(
    jc: JobCollection,
) -> None:
    """`workflow ID`: a line saying how far it is, its jobs counted per status, and each job
    by step (antecedents first) with what it still waits on, non-default policies named;
    `--json` has every edge."""
    extract = jc.create_job("extract")
    parts = [jc.create_job("transform", {"n": n}) for n in range(2)]
    load = jc.create_job("load")
    workflow = await jc.save_workflow(chain(extract, chord(parts, load, on_failure="ignore")))
    assert await (await claim_one(jc, "extract")).done()
    done = await claim_one(jc, "transform")
    assert await done.done()
    [pending] = [p.id for p in parts if p.id != done.id]

    ran = await run(jc, "workflow", str(workflow.id))
    assert ran.code == 0 and ran.err == ""
    head, names, counts, blank, header, *rows = ran.lines()
    assert head == f"workflow {workflow.id}: 4 jobs, 2 finished (50%), in progress"
    assert names.split() == [s.upper() for s in JOB_STATUSES] + ["TOTAL"]
    assert dict(zip(names.lower().split(), counts.split(), strict=True)) == {
        **dict.fromkeys(JOB_STATUSES, "0"),
        "completed": "2",
        "ready": "1",
        "waiting": "1",
        "total": "4",
    }
    assert blank == "" and header.split() == ["STEP", "ID", "TYPE", "STATUS", "WAITS", "ON"]
    assert [row.split()[:4] for row in rows[:1] + rows[3:]] == [
        ["0", str(extract.id), "extract", "completed"],
        ["2", str(load.id), "load", "waiting"],
    ]
    assert sorted(row.split()[:4] for row in rows[1:3]) == sorted(
        [["1", str(done.id), "transform", "completed"], ["1", str(pending), "transform", "ready"]]
    )
    assert rows[3].split(maxsplit=4)[4] == f"{pending} (ignore)"
    assert rows[0].split(maxsplit=4)[4] == "-"

    report = json.loads((await run(jc, "workflow", str(workflow.id), "--json")).out)
    assert (report["workflow"], report["total"], report["finished"]) == (str(workflow.id), 4, 2)
    assert (report["progress"], report["done"]) == (0.5, False)
    assert report["counts"] == {
        **dict.fromkeys(JOB_STATUSES, 0),
        "completed": 2,
        "ready": 1,
        "waiting": 1,
    }
    assert [job["step"] for job in report["jobs"]] == [0, 1, 1, 2]
    last = report["jobs"][-1]
    assert (last["id"], last["depends"], last["resolved"]) == (
        str(load.id),
        [str(pending)],
        [str(done.id)],
    )
    assert sorted(edge["id"] for edge in last["on_failure"]) == sorted(str(p.id) for p in parts)
    assert {edge["policy"] for edge in last["on_failure"]} == {"ignore"}
    assert f"workflow: {workflow.id}" in (await run(jc, "show", str(load.id))).lines()


async def test_batch_shows_progress_and_counts(jc: JobCollection) -> None:
    members = [jc.create_job("import", {"f": f}).retry(0) for f in "abc"]
    imports = batch(members, on_complete=jc.create_job("cleanup"))
    await jc.save_workflow(imports)
    assert await (await claim_one(jc, "import")).done()
    assert await (await claim_one(jc, "import")).fail("bad header")

    ran = await run(jc, "batch", str(imports.id))
    assert ran.code == 0 and ran.err == ""
    head, names, counts = ran.lines()
    assert head == f"batch {imports.id}: 3 jobs, 2 finished (67%), in progress"  # no callback
    shown = dict(zip(names.lower().split(), counts.split(), strict=True))
    assert (shown["completed"], shown["failed"], shown["ready"], shown["total"]) == (
        "1",
        "1",
        "1",
        "3",
    )
    report = json.loads((await run(jc, "batch", str(imports.id), "--json")).out)
    assert report == {
        "batch": str(imports.id),
        "total": 3,
        "finished": 2,
        "progress": 2 / 3,
        "done": False,
        "counts": {**dict.fromkeys(JOB_STATUSES, 0), "completed": 1, "failed": 1, "ready": 1},
    }


async def test_workflow_and_batch_of_nothing_or_a_bad_id(jc: JobCollection) -> None:
    for command in ("workflow", "batch"):
        missing = await run(jc, command, "0" * 24)
        assert (missing.code, missing.out, missing.err) == (1, "", f"no {command} {'0' * 24}\n")
        bad = await run(jc, command, "")
        assert (bad.code, bad.out) == (2, "")
        assert bad.err == f"jobcollection {command}: ID: must not be an empty string\n"


async def test_workflow_and_batch_as_processes_on_a_database(tmp_path: Path) -> None:
    """`workflow` and `batch` as processes on a database (--mongodb-uri, and
    JOBCOLLECTION_MONGODB_URI): what this process saved and ran, they count; a missing one
    exits 1, a bad id 2, each with one line and no traceback."""
    async with wire_database(tmp_path) as uri, collection_at(uri) as jc:
        members = [jc.create_job("part", {"n": n}) for n in range(3)]
        flow = batch(members, on_success=jc.create_job("report"))
        workflow = await jc.save_workflow(chain(jc.create_job("start"), flow))
        await jc.start_job_server()
        try:
            assert await (await claim_one(jc, "start")).done()
        finally:
            await jc.shutdown_job_server(timeout=0)

        shown = await run_cli("workflow", str(workflow.id), "--mongodb-uri", uri)
        assert shown.code == 0, shown.err
        assert shown.out.splitlines()[0] == (
            f"workflow {workflow.id}: 5 jobs, 1 finished (20%), in progress"
        )
        steps = [row.split()[0] for row in shown.out.splitlines()[5:]]
        assert steps == ["0", "1", "1", "1", "2"]
        as_json = await run_cli("workflow", str(workflow.id), "--json", mongodb_uri=uri)
        assert json.loads(as_json.out)["counts"]["ready"] == 3
        counted = await run_cli("batch", str(flow.id), "--json", mongodb_uri=uri)
        assert counted.code == 0, counted.err
        assert json.loads(counted.out)["total"] == 3 and not json.loads(counted.out)["done"]

        missing = await run_cli("batch", "0" * 24, mongodb_uri=uri)
        assert (missing.code, missing.error_line()) == (1, f"no batch {'0' * 24}")
        bad = await run_cli("workflow", "", mongodb_uri=uri)
        assert (bad.code, bad.error_line()) == (
            2,
            "jobcollection workflow: ID: must not be an empty string",
        )
