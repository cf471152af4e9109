"""The operator commands through a server: `jobcollection serve` and `jobcollection ls | show |
stats | retry | cancel | remove | purge | limit | limits | workflow | batch --url URL`, each a
process, the token given with `--token` or in JOBCOLLECTION_TOKEN and the command running
under the token's roles (finding and counting jobs, jobFind and jobStats, is a manager's or an
admin's); a wrong URL path, a
bad token, a role that lacks a method each end the command with one line and the documented
exit code.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from jobcollection import batch, chord
from jobcollection.cli.errors import EXIT_UNAVAILABLE, EXIT_USAGE
from jobcollection.remote import RemoteJobCollection
from test_cli_errors import Ran, run_cli
from test_remote_processes import jobcollection, make_token

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

DAY_AGO = datetime.now(UTC) - timedelta(days=1)


@contextlib.asynccontextmanager
async def serving_roles(tmp_path: Path) -> AsyncIterator[tuple[Any, str, dict[str, str]]]:
    """A `jobcollection serve` process whose tokens file names an admin, a manager and a
    worker user: the process, its URL, and each role's token."""
    lines: list[str] = []
    tokens: dict[str, str] = {}
    for role in ("admin", "manager", "worker"):
        tokens[role], line = await make_token(tmp_path, f"{role}-user", role)
        lines.append(line)
    (tmp_path / "tokens").write_text("\n".join(lines) + "\n")
    async with jobcollection(
        tmp_path, "serve", "--port", "0", "--tokens", "tokens", "--log-level", "warning"
    ) as server:
        url = (await server.expect("jobcollection serving on ")).rsplit(" ", 1)[1]
        yield server, url, tokens


async def test_operator_commands_through_a_serve_process(tmp_path: Path) -> None:
    async with serving_roles(tmp_path) as (server, url, tokens):

        async def as_(role: str, *argv: str) -> Ran:
            """The command run with the role's token in JOBCOLLECTION_TOKEN."""
            return await run_cli(*argv, "--url", url, token=tokens[role])

        async with RemoteJobCollection(url, token=tokens["admin"]) as admin:
            mail: Any = await admin.create_job("mail", {"to": "a"}).save()
            # Due a day ago: ready however this client's clock and the server's differ.
            sms: Any = await admin.create_job("sms").retry(0).after(DAY_AGO).save()
            async with RemoteJobCollection(url, token=tokens["worker"]) as worker:
                [job] = await worker.get_work("sms")
                assert await job.fail("no signal") is True

            shown = await as_("worker", "show", str(mail))
            assert shown.code == 0, shown.err
            assert "status:   ready" in shown.out.splitlines()
            assert 'data:     {"to": "a"}' in shown.out.splitlines()
            as_json = json.loads((await as_("worker", "show", str(sms), "--json")).out)
            assert as_json["status"] == "failed"
            assert as_json["failures"][0]["value"] == "no signal"
            missing = await as_("admin", "show", "6b0e00000000000000000000")
            assert (missing.code, missing.err) == (1, "no job 6b0e00000000000000000000\n")

            # A worker's token may read, not manage; a manager's may manage, not read (as in
            # job-collection): the server refuses what the role may not do.
            refused = await as_("worker", "cancel", str(mail))
            assert refused.code == EXIT_UNAVAILABLE
            assert refused.error_line() == (
                "jobcollection cancel: not allowed: the token's user may not call jobCancel (a "
                "token with the role admin or manager may)"
            )
            unread = await as_("manager", "show", str(mail))
            assert unread.code == EXIT_UNAVAILABLE
            assert unread.error_line() == (
                "jobcollection show: not allowed: the token's user may not call getJob (a token "
                "with the role admin or worker may)"
            )
            still = await admin.get_job(mail)
            assert still is not None and still.doc.status == "ready"

            cancelled = await run_cli(
                "cancel", str(mail), "--url", url, "--token", tokens["manager"]
            )
            assert (cancelled.code, cancelled.out) == (
                0,
                "cancel: 1 given, some changed (not counted: the token's user may not read jobs)\n",
            )
            retried = await as_("admin", "retry", str(mail), str(sms))
            assert (retried.code, retried.out) == (0, "retry: 2 matched, 2 changed\n")
            assert await admin.cancel_jobs([sms]) is True
            removed = await as_("admin", "remove", str(sms))
            assert (removed.code, removed.out) == (0, "remove: 1 matched, 1 changed\n")
            assert await admin.get_job(sms) is None
            job_after = await admin.get_job(mail)
            assert job_after is not None and job_after.doc.status in ("waiting", "ready")

        # Mistakes (a token the server does not know, a URL with a path) end with one line.
        # Run side by side.
        paths = ["/nope", "/dashboard/"]
        ran = await asyncio.gather(
            run_cli("show", str(mail), "--url", url, "--token", "not-a-token"),
            *(run_cli("show", str(mail), "--url", url + p, token=tokens["admin"]) for p in paths),
            run_cli("dashboard", "--url", url),
            as_("manager", "worker", "remote_workers:echo", "--type", "echo"),
        )
        bad, *wrong, dashboard, not_a_worker = ran
        assert bad.code == EXIT_UNAVAILABLE
        assert bad.error_line() == (
            f"jobcollection show: the server at {url} refused the token (a valid bearer token "
            "is required); check --token or JOBCOLLECTION_TOKEN"
        )
        for path, wrong_here in zip(paths, wrong, strict=True):
            assert wrong_here.code == EXIT_UNAVAILABLE
            assert wrong_here.error_line().startswith(
                f"jobcollection show: {url}{path} does not answer as a jobcollection remote API"
            )
            assert wrong_here.error_line().endswith(
                "give its base URL: the address `jobcollection serve` prints, or where an "
                "application mounts it"
            )
        assert dashboard.code == EXIT_USAGE
        assert f"open {url}/dashboard/ and log in with a token" in dashboard.error_line()
        # A worker whose token may not claim says so at once, rather than at every poll.
        assert not_a_worker.code == EXIT_UNAVAILABLE
        assert not_a_worker.error_line() == (
            "jobcollection worker: not allowed: the token's user may not call getWork (a token "
            "with the role admin or worker may)"
        )
        server.send_signal(signal.SIGINT)
        assert await server.exited() == 0, server.describe()
    assert "serve: no --mongodb-uri: serving an IN-MEMORY database" in server.stderr.read_text()


async def test_ls_stats_and_purge_through_a_serve_process(tmp_path: Path) -> None:
    """`ls`, `stats`, `purge` and filters reach the server (jobFind, jobStats): with an admin's
    token they list, count and remove; a worker's token is refused with one line and exit 3;
    a manager's finds and changes jobs without counting them (it may not call getJob)."""
    async with serving_roles(tmp_path) as (server, url, tokens):

        async def as_(role: str, *argv: str) -> Ran:
            return await run_cli(*argv, "--url", url, token=tokens[role])

        async with RemoteJobCollection(url, token=tokens["admin"]) as admin:
            first: Any = await admin.create_job("mail", {"customer": {"id": 7}}).save()
            second: Any = await admin.create_job("mail", {"customer": {"id": 8}}).save()
            failed: Any = await admin.create_job("sms").retry(0).after(DAY_AGO).save()
            done: Any = await admin.create_job("report").after(DAY_AGO).save()
            async with RemoteJobCollection(url, token=tokens["worker"]) as worker:
                [sms] = await worker.get_work("sms")
                assert await sms.fail("no signal") is True
                [report] = await worker.get_work("report")
                assert await report.done({"rows": 3}) is True

            (
                listed,
                as_json,
                by_data,
                first_page,
                counted,
                counted_json,
                *refused,
            ) = await asyncio.gather(
                as_("admin", "ls"),
                as_("admin", "ls", "--type", "mail", "--json"),
                as_("manager", "ls", "--data", "customer.id=7"),
                as_("admin", "ls", "--limit", "1"),
                as_("admin", "stats"),
                as_("manager", "stats", "--json"),
                as_("worker", "ls"),
                as_("worker", "stats"),
                as_("worker", "purge", "--completed-before", "1d", "--yes"),
                as_("worker", "cancel", "--type", "mail", "--yes"),
            )
            assert listed.code == 0, listed.err
            rows = listed.out.splitlines()
            assert rows[0].split() == ["ID", "TYPE", "STATUS", "CREATED", "UPDATED", "ATTEMPTS"]
            assert [row.split()[:3] for row in rows[1:]] == [
                [str(done), "report", "completed"],
                [str(failed), "sms", "failed"],
                [str(second), "mail", "ready"],
                [str(first), "mail", "ready"],
            ]
            assert [json.loads(line)["_id"] for line in as_json.out.splitlines()] == [
                str(second),
                str(first),
            ]
            assert "_private" not in as_json.out
            assert (by_data.code, [row.split()[0] for row in by_data.out.splitlines()[1:]]) == (
                0,
                [str(first)],
            )
            cursor = first_page.err.strip().removeprefix("next page: --after ")
            assert cursor != first_page.err.strip()
            second_page = await as_("admin", "ls", "--limit", "1", "--after", cursor)
            assert second_page.out.splitlines()[1].split()[0] == str(failed)

            assert counted.code == 0, counted.err
            table = {row.split()[0]: row.split()[1:] for row in counted.out.splitlines()}
            assert table["mail"][:8] == ["0", "0", "2", "0", "0", "0", "0", "2"]
            assert table["(all)"] == ["0", "0", "2", "0", "1", "0", "1", "4"]
            report_json = json.loads(counted_json.out)
            assert report_json["total"] == 4
            assert report_json["types"]["sms"]["counts"]["failed"] == 1
            assert report_json["types"]["mail"]["oldest_ready_s"] >= 0

            # A worker's token may not find nor count: one line, exit 3, nothing changed.
            methods = ["jobFind", "jobStats", "jobFind", "jobFind"]
            for ran, method in zip(refused, methods, strict=True):
                assert ran.code == EXIT_UNAVAILABLE, ran.err
                command = ran.err.split(":")[0]
                assert ran.error_line() == (
                    f"{command}: not allowed: the token's user may not call {method} (a token "
                    "with the role admin or manager may)"
                )
            assert len((await admin.find_jobs()).jobs) == 4

            # Purge finds in pages and removes what it found; a moment before the jobs
            # finished leaves them be.
            soon = (datetime.now(UTC) + timedelta(days=1)).isoformat()
            kept = await as_("admin", "purge", "--completed-before", "2d", "--yes")
            assert kept.code == 1
            assert kept.err.startswith("remove: no completed/failed/cancelled jobs finished")
            purged = await as_("admin", "purge", "--completed-before", soon, "--yes")
            assert (purged.code, purged.out) == (0, "remove: 2 matched, 2 changed\n")
            assert await admin.get_jobs([failed, done]) == []

            # A manager finds jobs by a filter and changes them, uncounted.
            cancelled = await as_("manager", "cancel", "--type", "mail", "--yes")
            assert (cancelled.code, cancelled.out) == (
                0,
                "cancel: 2 matched, some changed (not counted: the token's user may not read "
                "jobs)\n",
            )
            statuses = {job.doc.status for job in (await admin.find_jobs(type="mail")).jobs}
            assert statuses == {"cancelled"}
        server.send_signal(signal.SIGINT)
        assert await server.exited() == 0, server.describe()


async def test_limit_and_limits_through_a_serve_process(tmp_path: Path) -> None:
    """`limit` and `limits` reach the server (jobSetConcurrencyLimit, jobConcurrencyLimits):
    a manager's token sets and removes a limit, which the server's claims then honour; a
    worker's token is refused with one line and exit 3, and nothing changes; a bad argument
    is refused before any call (exit 2)."""
    async with serving_roles(tmp_path) as (server, url, tokens):

        async def as_(role: str, *argv: str) -> Ran:
            return await run_cli(*argv, "--url", url, token=tokens[role])

        async with RemoteJobCollection(url, token=tokens["admin"]) as admin:
            for _ in range(3):
                await admin.create_job("mail").after(DAY_AGO).save()
            set_ = await as_("manager", "limit", "mail", "2")
            assert (set_.code, set_.out) == (0, "limits: mail at most 2 running\n"), set_.err
            async with RemoteJobCollection(url, token=tokens["worker"]) as worker:
                assert len(await worker.get_work("mail", max_jobs=3)) == 2

            listed, as_json, counted, *refused = await asyncio.gather(
                as_("admin", "limits"),
                as_("manager", "limits", "--json"),
                as_("admin", "stats"),
                as_("worker", "limit", "mail", "--remove"),
                as_("worker", "limit", "mail", "9"),
                as_("worker", "limits"),
            )
            assert listed.out.splitlines()[1].split() == ["mail", "2", "-"]
            assert json.loads(as_json.out) == {"mail": {"max_running": 2, "group_by": None}}
            assert "limits: mail at most 2 running" in counted.out.splitlines()
            methods = ["jobSetConcurrencyLimit", "jobSetConcurrencyLimit", "jobConcurrencyLimits"]
            for ran, method in zip(refused, methods, strict=True):
                assert ran.code == EXIT_UNAVAILABLE, ran.err
                assert ran.error_line() == (
                    f"jobcollection limit{'s' if 'limits' in ran.err else ''}: not allowed: "
                    f"the token's user may not call {method} (a token with the role admin or "
                    "manager may)"
                )
            bad = await as_("manager", "limit", "mail", "3", "--group-by", "customer")
            assert bad.code == EXIT_USAGE
            assert bad.error_line().startswith("jobcollection limit: --group-by: must be")
            assert (await admin.concurrency_limits())["mail"].max_running == 2

            removed = await as_("manager", "limit", "mail", "--remove")
            assert (removed.code, removed.out) == (0, "limits: none\n")
            assert await admin.concurrency_limits() == {}
        server.send_signal(signal.SIGINT)
        assert await server.exited() == 0, server.describe()


async def test_workflow_and_batch_through_a_serve_process(tmp_path: Path) -> None:
    """`workflow` and `batch` reach the server (jobFind's `workflow` and `batch` conditions):
    a manager's token shows how far each is and what each job waits on, failure policies
    included (they travel in the documents); a worker's token is refused with one line and
    exit 3; a missing one exits 1."""
    async with serving_roles(tmp_path) as (server, url, tokens):

        async def as_(role: str, *argv: str) -> Ran:
            return await run_cli(*argv, "--url", url, token=tokens[role])

        async with RemoteJobCollection(url, token=tokens["admin"]) as admin:
            # Due a day ago: ready however this client's clock and the server's differ.
            parts = [admin.create_job("part", {"n": n}).after(DAY_AGO) for n in range(2)]
            report = admin.create_job("report")
            workflow = await admin.save_workflow(chord(parts, report, on_failure="ignore"))
            imports = batch([admin.create_job("import").after(DAY_AGO) for _ in range(2)])
            await admin.save_workflow(imports)
            async with RemoteJobCollection(url, token=tokens["worker"]) as worker:
                [done] = await worker.get_work("part")
                assert await done.done({"n": done.data["n"]}) is True
            [pending] = [p.id for p in parts if p.id != done.id]

            shown, as_json, counted, refused, missing = await asyncio.gather(
                as_("manager", "workflow", str(workflow.id)),
                as_("admin", "workflow", str(workflow.id), "--json"),
                as_("manager", "batch", str(imports.id)),
                as_("worker", "workflow", str(workflow.id)),
                as_("admin", "batch", "0" * 24),
            )
            assert shown.code == 0, shown.err
            lines = shown.out.splitlines()
            assert lines[0] == f"workflow {workflow.id}: 3 jobs, 1 finished (33%), in progress"
            last = lines[-1].split(maxsplit=4)
            assert last[:4] == ["1", str(report.id), "report", "waiting"]
            assert last[4] == f"{pending} (ignore)"
            jobs = {job["id"]: job for job in json.loads(as_json.out)["jobs"]}
            assert {e["policy"] for e in jobs[str(report.id)]["on_failure"]} == {"ignore"}
            assert jobs[str(report.id)]["resolved"] == [str(done.id)]
            assert counted.code == 0, counted.err
            assert counted.out.splitlines()[0] == (
                f"batch {imports.id}: 2 jobs, 0 finished (0%), in progress"
            )
            assert refused.code == EXIT_UNAVAILABLE
            assert refused.error_line() == (
                "jobcollection workflow: not allowed: the token's user may not call jobFind (a "
                "token with the role admin or manager may)"
            )
            assert (missing.code, missing.error_line()) == (1, f"no batch {'0' * 24}")
        server.send_signal(signal.SIGINT)
        assert await server.exited() == 0, server.describe()
