"""`jobcollection worker` on a database: the worker runs the job server (a JobCollection hands
out work only while its job server runs), so ready jobs are claimed and completed; several
worker processes on one database each run theirs, side by side; `--burst` stops a worker once
no job is ready; `--grace` bounds a normal shutdown; every job is logged (text or JSON) on
stderr.

The worker processes reach a shared database through the MongoDB wire-protocol stand-in
(tests/wire_server.py, a process of its own); the in-process tests run the command's main()
on the `--demo` database, which the process shares with the test.

Nothing here waits for time to pass: the tests wait for a line a process prints or for a
process to exit, each bounded; `--grace 0.2` is the worker's own timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from helpers import messages
from jobcollection import JobCollection
from jobcollection.cli import main
from jobcollection.cli.connect import demo_database
from test_cli_errors import run_cli
from test_remote_processes import LINE_TIMEOUT, jobcollection

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

TESTS = Path(__file__).resolve().parent
WIRE_SERVER = TESTS / "wire_server.py"
SHUTDOWN_FAILURE = "Worker shutdown"


# --- a database that worker processes share --------------------------------------------------


@contextlib.asynccontextmanager
async def wire_database(tmp_path: Path) -> AsyncIterator[str]:
    """The MongoDB wire-protocol stand-in (tests/wire_server.py) running as a process on
    127.0.0.1 until the block ends: its URI."""
    if not WIRE_SERVER.exists():
        pytest.skip("tests/wire_server.py (the MongoDB wire-protocol stand-in) is not there")
    stderr = tmp_path / "wire-server-stderr.txt"
    with stderr.open("wb") as errors:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(WIRE_SERVER),
            "--port",
            "0",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=errors,
        )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(LINE_TIMEOUT):
            line = (await process.stdout.readline()).decode().strip()
        assert line.startswith("PORT "), f"{line!r}\n{stderr.read_text()}"
        yield f"mongodb://127.0.0.1:{int(line.split()[1])}"
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


@contextlib.asynccontextmanager
async def collection_at(uri: str) -> AsyncIterator[JobCollection]:
    """The test's own JobCollection on the database at `uri` (its job server not started:
    the workers run theirs)."""
    from pymongo import AsyncMongoClient

    client: Any = AsyncMongoClient(uri, tz_aware=True)
    jc = JobCollection.from_database(client["jobcollection"], "queue")
    try:
        yield jc
    finally:
        await jc.close()
        await client.close()


async def document(jc: JobCollection, job_id: Any) -> dict[str, Any]:
    job = await jc.get_job(job_id, get_log=True, get_failures=True)
    assert job is not None
    found: dict[str, Any] = job.doc.model_dump(mode="json", by_alias=True)
    return found


# --- worker processes on a database ----------------------------------------------------------


async def test_a_worker_process_on_a_database_claims_and_completes_ready_jobs(
    tmp_path: Path,
) -> None:
    async with wire_database(tmp_path) as uri, collection_at(uri) as jc:
        ids = [await jc.create_job("echo", {"n": n}).save() for n in range(3)]
        async with jobcollection(
            tmp_path,
            "worker",
            "remote_workers:echo",
            "--type",
            "echo",
            "--mongodb-uri",
            uri,
            "--burst",
        ) as process:
            assert await process.expect("worker started") == (
                "worker started: echo jobs, concurrency 1"
            )
            for _ in ids:
                await process.expect("echo done ")
            assert await process.expect("no job is ready") == (
                "no job is ready (--burst); shutting down (normal)"
            )
            await process.expect("worker stopped")
            assert await process.exited() == 0, process.describe()
        for n, job_id in enumerate(ids):
            doc = await document(jc, job_id)
            assert doc["status"] == "completed", doc
            assert doc["result"] == {"echo": {"n": n}}
            assert messages(doc).count("Job Completed") == 1
        # One line per job started and per outcome, on stderr, with the attempt.
        logged = process.stderr.read_text()
        for job_id in ids:
            assert f"INFO jobcollection.queue: job echo {job_id} started (attempt 1)" in logged
            assert f"INFO jobcollection.queue: job echo {job_id} completed in " in logged


async def test_a_worker_process_finds_its_database_in_the_environment(tmp_path: Path) -> None:
    """JOBCOLLECTION_MONGODB_URI alone (no --mongodb-uri on the command line, where the process
    list shows a password) says where the jobs are."""
    async with wire_database(tmp_path) as uri, collection_at(uri) as jc:
        job_id = await jc.create_job("echo", {"n": 1}).save()
        ran = await run_cli(
            "worker", "remote_workers:echo", "--type", "echo", "--burst", mongodb_uri=uri
        )
        assert ran.code == 0, ran.err
        assert f"echo done {job_id}" in ran.out.splitlines()
        assert uri not in ran.out + ran.err
        doc = await document(jc, job_id)
        assert (doc["status"], doc["result"]) == ("completed", {"echo": {"n": 1}})


async def test_worker_processes_on_one_database_run_their_job_servers_side_by_side(
    tmp_path: Path,
) -> None:
    async with wire_database(tmp_path) as uri, collection_at(uri) as jc:
        ids = [await jc.create_job("echo", {"n": n}).save() for n in range(6)]
        command = ["worker", "remote_workers:echo", "--type", "echo", "--mongodb-uri", uri]
        async with (
            jobcollection(tmp_path, *command, "--poll-interval", "1") as first,
            jobcollection(tmp_path, *command, "--poll-interval", "1") as second,
        ):
            await first.expect("worker started")
            await second.expect("worker started")

            async def done_lines() -> list[str]:
                while True:
                    lines = [x for p in (first, second) for x in p.lines if "echo done" in x]
                    if len(lines) >= len(ids):
                        return lines
                    # whichever prints next (both read, bounded by `expect`'s timeout)
                    reads = [asyncio.create_task(p.expect("echo done ")) for p in (first, second)]
                    finished, pending = await asyncio.wait(
                        reads, return_when=asyncio.FIRST_COMPLETED
                    )
                    for task in pending:
                        task.cancel()
                    await asyncio.gather(*pending, return_exceptions=True)
                    for task in finished:
                        task.result()

            finished = await done_lines()
            for process in (first, second):
                process.send_signal(signal.SIGTERM)
                await process.expect("worker stopped")
                assert await process.exited() == 0, process.describe()
        assert sorted(line.split()[-1] for line in finished) == sorted(map(str, ids))
        for job_id in ids:
            doc = await document(jc, job_id)
            assert doc["status"] == "completed"
            assert messages(doc).count("Job Running") == 1
            assert messages(doc).count("Job Completed") == 1


async def test_grace_bounds_a_normal_shutdown_then_running_jobs_fail_and_are_retried(
    tmp_path: Path,
) -> None:
    async with wire_database(tmp_path) as uri, collection_at(uri) as jc:
        job_id = await jc.create_job("slow", {"n": 1}).retry(1, wait=0).save()
        async with jobcollection(
            tmp_path,
            "worker",
            "remote_workers:hang",
            "--type",
            "slow",
            "--mongodb-uri",
            uri,
            "--grace",
            "0.2",
        ) as process:
            assert await process.expect("hang started") == f"hang started {job_id}"
            process.send_signal(signal.SIGTERM)
            await process.expect("received SIGTERM")
            assert await process.expect("did not finish") == (
                "running jobs did not finish within --grace 0.2 s; shutting down (hard)"
            )
            assert await process.expect("hang cancelled") == f"hang cancelled {job_id}"
            await process.expect("worker stopped")
            assert await process.exited() == 0, process.describe()
        doc = await document(jc, job_id)
        assert doc["status"] in ("waiting", "ready") and doc["runId"] is None
        assert [f["value"] for f in doc["failures"]] == [SHUTDOWN_FAILURE]


TASKS_MODULE = """
from jobcollection import JobCollection
from jobcollection.testing import memory_database

jc = JobCollection.from_database(memory_database("unused"), "queue")


@jc.task("halve")
async def halve(n: int) -> float:
    print(f"halved {n}", flush=True)
    return n / 2
"""


async def test_a_tasks_worker_on_a_database_runs_its_tasks(tmp_path: Path) -> None:
    (tmp_path / "cli_db_tasks.py").write_text(TASKS_MODULE)
    async with wire_database(tmp_path) as uri, collection_at(uri) as jc:
        job_id = await jc.create_job("halve", {"n": 5}).save()
        async with jobcollection(
            tmp_path, "worker", "cli_db_tasks:jc", "--tasks", "--mongodb-uri", uri, "--burst"
        ) as process:
            assert await process.expect("halved") == "halved 5"
            await process.expect("worker stopped")
            assert await process.exited() == 0, process.describe()
        doc = await document(jc, job_id)
        assert (doc["status"], doc["result"]) == ("completed", {"value": 2.5})


@pytest.mark.parametrize("executor", ["thread", "process"])
async def test_a_worker_process_runs_a_plain_function_in_its_threads_or_child_processes(
    tmp_path: Path, executor: str
) -> None:
    async with wire_database(tmp_path) as uri, collection_at(uri) as jc:
        ids = [await jc.create_job("where", {"n": n}).save() for n in range(4)]
        async with jobcollection(
            tmp_path,
            "worker",
            "remote_workers:where",
            "--type",
            "where",
            "--executor",
            executor,
            "--concurrency",
            "2",
            "--mongodb-uri",
            uri,
            "--burst",
        ) as process:
            assert await process.expect("worker started") == (
                f"worker started: where jobs, concurrency 2, in {executor}s"
            )
            await process.expect("worker stopped")
            assert await process.exited() == 0, process.describe()
        worker_pid = process.process.pid
        results = [await document(jc, job_id) for job_id in ids]
        assert {doc["status"] for doc in results} == {"completed"}
        pids = {doc["result"]["pid"] for doc in results}
        if executor == "thread":
            assert pids == {worker_pid}
            assert all(doc["result"]["thread"].startswith("jobcollection") for doc in results)
        else:
            assert worker_pid not in pids and 1 <= len(pids) <= 2


async def test_a_demo_worker_says_it_is_in_memory(tmp_path: Path) -> None:
    async with jobcollection(
        tmp_path, "worker", "remote_workers:echo", "--type", "echo", "--demo", "--burst"
    ) as process:
        await process.expect("worker stopped")
        assert await process.exited() == 0, process.describe()
    assert "jobcollection worker: --demo: an IN-MEMORY database" in process.stderr.read_text()


# --- the command's main(), in this process -----------------------------------------------------


def test_main_runs_a_worker_that_claims_and_completes_jobs_on_the_demo_database(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """main(["worker", ..., "--demo"]) on the in-memory database this process shares with
    it: the jobs saved before are claimed and completed, each logged as JSON."""
    database = f"cli-{uuid.uuid4().hex}"

    async def save() -> list[Any]:
        jc = JobCollection.from_database(demo_database(database), "queue")
        try:
            return [await jc.create_job("echo", {"n": n}).save() for n in range(2)]
        finally:
            await jc.close()

    async def read(ids: list[Any]) -> list[dict[str, Any]]:
        jc = JobCollection.from_database(demo_database(database), "queue")
        try:
            return [await document(jc, job_id) for job_id in ids]
        finally:
            await jc.close()

    ids = asyncio.run(save())
    code = main(
        [
            "worker",
            "remote_workers:echo",
            "--type",
            "echo",
            "--demo",
            "--database",
            database,
            "--burst",
            "--log-format",
            "json",
        ]
    )
    assert code == 0
    docs = asyncio.run(read(ids))
    assert [d["status"] for d in docs] == ["completed", "completed"]
    assert [d["result"] for d in docs] == [{"echo": {"n": 0}}, {"echo": {"n": 1}}]
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == "worker started: echo jobs, concurrency 1"
    assert out.splitlines()[-1] == "worker stopped"
    records = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    for job_id in ids:
        mine = [r for r in records if r.get("job_id") == str(job_id)]
        assert [r["message"].split()[-1] for r in mine[:1]] == ["started"]
        (outcome,) = [r for r in mine if "outcome" in r]
        assert outcome["outcome"] == "completed" and outcome["attempt"] == 1
        assert outcome["level"] == "INFO" and outcome["logger"] == "jobcollection.queue"
        assert outcome["job_type"] == "echo" and outcome["seconds"] >= 0
        assert outcome["time"].endswith("Z")
