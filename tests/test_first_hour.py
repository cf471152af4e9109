"""A new user's first hour, with real processes on 127.0.0.1, in the order the documentation
walks it: a database (the MongoDB wire-protocol stand-in, tests/wire_server.py), tokens from
`jobcollection token`, `jobcollection serve --mongodb-uri URI --tokens FILE --port 0
--metrics-port 0`, a worker through the server (`--url` and a worker's token) and one on the
database (`--mongodb-uri`), both running a module of the user's own; jobs enqueued from two
scripts (RemoteJobCollection with a creator's token, JobCollection on the URI from
JOBCOLLECTION_MONGODB_URI); the operator commands through the server with an admin's token
(ls, show, stats, retry, cancel, remove, purge; a worker's token refused with exit 3 and one
line); a `/metrics` scrape checked by `promtool check metrics` (when it is on PATH, as in
tests/test_metrics_scrape.py); a SIGTERM to each worker while it runs a job, which finishes
within `--grace`, and exit 0; then the mistakes a newcomer makes, each one line and its exit
code.

The mistakes are a representative run against the live server; tests/test_cli_errors.py checks
each of them (and the rest: a URL that is not http, a bad port, an unreachable database, a
missing extra, --debug) in detail, tests/test_cli_remote.py the roles.

Nothing waits for time to pass: the test waits for lines the processes print, for processes to
end, for jobs to be final (jc.wait_for), for a worker's job to connect to the test, each
bounded.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from bson import ObjectId

from jobcollection.cli.errors import EXIT_UNAVAILABLE, EXIT_USAGE
from test_cli_errors import Ran, closed_port, run_cli
from test_cli_worker_db import collection_at, document, wire_database
from test_metrics_scrape import address, check_metrics, scrape_until
from test_remote_processes import LINE_TIMEOUT, jobcollection, make_token

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

FINAL_TIMEOUT = 30.0
"""The longest the test waits for jobs to be final."""

USER_MODULE = '''
"""What a new user writes first: one async function for the job types their workers run."""

import asyncio

from jobcollection import Job


async def work(job: Job) -> dict[str, object]:
    if job.type == "email":
        print(f"email sent {job.id}", flush=True)
        return {"sent": job.data["to"]}
    if job.type == "charge":
        raise ValueError("card declined")
    # "slow": runs until the test, listening on data["port"], answers a line
    reader, writer = await asyncio.open_connection("127.0.0.1", job.data["port"])
    writer.write(f"{job.id}\\n".encode())
    await writer.drain()
    print(f"slow started {job.id}", flush=True)
    answer = await reader.readline()
    writer.close()
    await writer.wait_closed()
    print(f"slow finished {job.id}", flush=True)
    return {"answer": answer.decode().strip()}
'''

ENQUEUE_REMOTE = """
import asyncio, os, sys
from jobcollection.remote import RemoteJobCollection

async def main() -> None:
    async with RemoteJobCollection(sys.argv[1], token=os.environ["JOBCOLLECTION_TOKEN"]) as jc:
        for to in ("ada", "grace", "alan"):
            print(await jc.create_job("email", {"to": to}).save())
        print(await jc.create_job("charge", {"cents": 500}).retry(0).save())

asyncio.run(main())
"""

ENQUEUE_LOCAL = """
import asyncio, os
from pymongo import AsyncMongoClient
from jobcollection import JobCollection

async def main() -> None:
    client = AsyncMongoClient(os.environ["JOBCOLLECTION_MONGODB_URI"], tz_aware=True)
    jc = JobCollection.from_database(client["jobcollection"], "queue")
    for to in ("edsger", "barbara", "donald"):
        print(await jc.create_job("email", {"to": to}).save())
    print(await jc.create_job("report", {"month": 11}).save())
    await jc.close()
    await client.close()

asyncio.run(main())
"""

TYPES = ("--type", "email", "--type", "charge", "--type", "slow")


def promtool() -> str | None:
    """promtool, or None where it is not installed (unless JOBCOLLECTION_REQUIRE_PROMTOOL)."""
    found = shutil.which("promtool")
    if found is None and os.environ.get("JOBCOLLECTION_REQUIRE_PROMTOOL"):
        pytest.fail("promtool is not on PATH (apt-get install prometheus)")
    return found


def ids_of(ran: Ran) -> list[str]:
    assert ran.code == 0, ran.err
    return ran.out.split()


class Holder:
    """A TCP server the "slow" jobs connect to: each says its job id and runs until it is
    answered (`release`)."""

    def __init__(self) -> None:
        self.held: dict[str, asyncio.StreamWriter] = {}
        self._arrived = asyncio.Event()

    async def arrived(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.held[(await reader.readline()).decode().strip()] = writer
        self._arrived.set()

    async def reach(self, count: int) -> None:
        async with asyncio.timeout(LINE_TIMEOUT):
            while len(self.held) < count:
                self._arrived.clear()
                await self._arrived.wait()

    async def release(self) -> None:
        for writer in self.held.values():
            writer.write(b"go\n")
            await writer.drain()
            writer.close()
            await writer.wait_closed()


async def test_a_new_users_first_hour(tmp_path: Path) -> None:
    (tmp_path / "myapp_jobs.py").write_text(USER_MODULE)
    # --- tokens, and the server on the database ------------------------------------------
    made = await asyncio.gather(
        *(make_token(tmp_path, f"{role}-user", role) for role in ("admin", "creator", "worker"))
    )
    admin, creator, worker = (token for token, _ in made)
    (tmp_path / "tokens").write_text("".join(f"{line}\n" for _, line in made))
    async with (
        wire_database(tmp_path) as uri,
        collection_at(uri) as jc,
        jobcollection(
            tmp_path, "serve", "--mongodb-uri", uri, "--tokens", "tokens", "--port", "0",
            "--metrics-port", "0", "--log-level", "warning",
        ) as server,
    ):  # fmt: skip
        metrics = address(await server.expect("metrics on http://127.0.0.1:"))
        url = address(await server.expect("jobcollection serving on "))

        # --- two workers: through the server, and on the database -------------------------
        async with (
            jobcollection(
                tmp_path, "worker", "myapp_jobs:work", *TYPES, "--url", url,
                "--poll-interval", "0.5", "--grace", "30", token=worker,
            ) as remote_worker,
            jobcollection(
                tmp_path, "worker", "myapp_jobs:work", *TYPES, "--mongodb-uri", uri,
                "--poll-interval", "0.2", "--grace", "30",
            ) as db_worker,
        ):  # fmt: skip
            workers = (remote_worker, db_worker)
            for process in workers:
                assert await process.expect("worker started") == (
                    "worker started: email, charge, slow jobs, concurrency 1"
                )

            # --- jobs enqueued from scripts -----------------------------------------------
            remote_ran, local_ran = await asyncio.gather(
                run_cli(url, token=creator, program=(sys.executable, "-c", ENQUEUE_REMOTE)),
                run_cli(mongodb_uri=uri, program=(sys.executable, "-c", ENQUEUE_LOCAL)),
            )
            *remote_emails, charge = ids_of(remote_ran)
            *local_emails, report = ids_of(local_ran)
            emails = remote_emails + local_emails
            finished = await jc.wait_for([ObjectId(i) for i in [*emails, charge]], FINAL_TIMEOUT)
            assert {str(job.id): job.doc.status for job in finished} == {
                **dict.fromkeys(emails, "completed"),
                charge: "failed",
            }

            # --- the operator commands through the server, with an admin's token ----------
            async def as_(token: str, *argv: str) -> Ran:
                return await run_cli(*argv, "--url", url, token=token)

            listed, shown, counted, refused = await asyncio.gather(
                as_(admin, "ls"),
                as_(admin, "show", charge),
                as_(admin, "stats"),
                as_(worker, "ls"),
            )
            assert listed.code == 0, listed.err
            header, *rows = listed.out.splitlines()
            assert header.split() == ["ID", "TYPE", "STATUS", "CREATED", "UPDATED", "ATTEMPTS"]
            by_id = {row.split()[0]: row.split(maxsplit=5) for row in rows}
            assert sorted(by_id) == sorted([*emails, charge, report])
            assert by_id[charge][1:3] == ["charge", "failed"]
            assert by_id[charge][5] == "1 of 1"
            assert by_id[report][1:3] == ["report", "ready"]
            assert shown.code == 0, shown.err
            assert "outcome:  failed: no retries left" in shown.out.splitlines()
            assert any(
                line.endswith("  ValueError: card declined") for line in shown.out.splitlines()
            )
            assert counted.code == 0, counted.err
            table = {row.split()[0]: row.split()[1:] for row in counted.out.splitlines()}
            assert table["(all)"][-1] == "8"
            assert refused.code == EXIT_UNAVAILABLE
            assert refused.error_line() == (
                "jobcollection ls: not allowed: the token's user may not call jobFind (a token "
                "with the role admin or manager may)"
            )

            retried, cancelled = await asyncio.gather(
                as_(admin, "retry", charge), as_(admin, "cancel", report)
            )
            assert (retried.code, retried.out) == (0, "retry: 1 matched, 1 changed\n")
            assert (cancelled.code, cancelled.out) == (0, "cancel: 1 matched, 1 changed\n")
            tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat()
            removed, purged = await asyncio.gather(
                as_(admin, "remove", report),
                as_(admin, "purge", "--completed-before", tomorrow, "--status", "completed",
                    "--yes"),
            )  # fmt: skip
            assert (removed.code, removed.out) == (0, "remove: 1 matched, 1 changed\n")
            assert (purged.code, purged.out) == (0, "remove: 6 matched, 6 changed\n")
            assert await jc.get_jobs([ObjectId(i) for i in [*emails, report]]) == []
            # The retried charge is due at once (the operator's retry promotes it: a restart
            # alone keeps the `after` its failure's default 5-minute retry wait set, as in
            # v1.x), so a worker takes it, and it fails again.
            await jc.wait_for([ObjectId(charge)], FINAL_TIMEOUT)
            again = await document(jc, ObjectId(charge))
            assert again["status"] == "failed"
            assert [f["message"] for f in again["failures"]] == ["card declined"] * 2

            # --- /metrics, as Prometheus scrapes it -------------------------------------
            body = await scrape_until(
                metrics, r'^jobcollection_jobs_enqueued_total\{type="email"\} 3\.0$'
            )
            assert re.search(r'^jobcollection_jobs_finished_total\{outcome="completed"', body, re.M)
            checker = promtool()
            if checker is not None:
                check_metrics(checker, body)

            # --- SIGTERM while each worker runs a job: it finishes within --grace ---------
            holder = Holder()
            listening = await asyncio.start_server(holder.arrived, "127.0.0.1", 0)
            port = listening.sockets[0].getsockname()[1]
            async with listening:
                saved = await jc.save_jobs([jc.create_job("slow", {"port": port}) for _ in workers])
                slow = [job_id for job_id in saved if job_id is not None]
                await holder.reach(len(workers))  # each worker (concurrency 1) holds one
                assert sorted(holder.held) == sorted(map(str, slow))
                for process in workers:
                    await process.expect("slow started")
                    process.send_signal(signal.SIGTERM)
                for process in workers:
                    assert await process.expect("received SIGTERM") == (
                        "received SIGTERM; shutting down (normal): running jobs finish"
                    )
                await holder.release()
                for process in workers:
                    await process.expect("slow finished")
                    await process.expect("worker stopped")
                    assert await process.exited() == 0, process.describe()
                    assert not any("--grace" in line for line in process.lines)
            done = await jc.wait_for(slow, FINAL_TIMEOUT)
            assert [(job.doc.status, job.doc.result) for job in done] == [
                ("completed", {"answer": "go"})
            ] * len(workers)

        # --- the mistakes a newcomer makes: one line each, and the exit code --------------
        await the_mistakes(url, admin, tmp_path)
        server.send_signal(signal.SIGTERM)
        assert await server.exited() == 0, server.describe()


async def the_mistakes(url: str, admin: str, tmp_path: Path) -> None:
    """A representative run (tests/test_cli_errors.py checks each in detail)."""
    job = "6b0e00000000000000000000"
    nowhere = f"http://127.0.0.1:{closed_port()}"
    path, bad_token, no_token, unreachable, function, mongodb_uri, no_place = await asyncio.gather(
        run_cli("show", job, "--url", f"{url}/dashboard/", token=admin),
        run_cli("show", job, "--url", url, "--token", "not-a-token"),
        run_cli("show", job, "--url", url),
        run_cli("show", job, "--url", nowhere, token=admin),
        run_cli("worker", "myapp_jobs:send", "--type", "email", "--url", url, token=admin,
                cwd=tmp_path),
        run_cli("stats", "--mongodb-uri", "localhost:27017"),
        run_cli("ls"),
    )  # fmt: skip
    expected: list[tuple[Ran, int, str]] = [
        (path, EXIT_UNAVAILABLE, f"{url}/dashboard/ does not answer as a jobcollection "),
        (bad_token, EXIT_UNAVAILABLE, f"the server at {url} refused the token "),
        (no_token, EXIT_USAGE, "--url needs a token: --token TOKEN or JOBCOLLECTION_TOKEN"),
        (unreachable, EXIT_UNAVAILABLE, f"cannot reach {nowhere} (ConnectError: "),
        (function, EXIT_USAGE, "myapp_jobs:send: myapp_jobs has no 'send'"),
        (mongodb_uri, EXIT_USAGE, "--mongodb-uri: not a MongoDB connection string "),
        (no_place, EXIT_USAGE, "say where the jobs are: --url URL "),
    ]
    for ran, code, start in expected:
        command = ran.err.split(":")[0]
        assert ran.code == code, ran.err
        assert ran.error_line().startswith(f"{command}: {start}"), ran.err
        assert ran.out == ""
