"""Several processes on one database, through pymongo's real driver: `jobcollection worker`
CLI processes and plain Python worker processes (tests/wire_workers.py, each with its own job
server) working one collection on the wire stand-in (tests/wire_server.py, a process of its
own), and a worker process SIGKILLed mid-job.

What must hold: every job is completed exactly once, whichever process claimed it; job
servers in several processes coexist (delayed jobs are promoted, dependents released, once);
a job whose worker process died is retried after its lease runs out, by another process, and
completed once. Nothing waits for time to pass: the tests wait for lines the processes print,
or for a process to exit, each bounded; the lease that runs out is one second long.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from helpers import messages, stored
from jobcollection import JobCollection, Leader
from test_remote_processes import EXPIRED, Process, environment, jobcollection
from wire_server import running

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

TESTS = Path(__file__).resolve().parent
ALL_DONE_TIMEOUT = 60.0
"""The longest a test waits for a set of jobs to be completed by the worker processes."""


@pytest.fixture(scope="module")
def wire_uri() -> Iterator[str]:
    """The wire stand-in, in a process of its own, for this module's tests."""
    with running() as uri:
        yield uri


@pytest.fixture
async def shared(wire_uri: str) -> AsyncIterator[tuple[str, JobCollection]]:
    """A fresh database on the stand-in (its name) and a JobCollection on it, through the
    real driver, without a job server: the worker processes run theirs."""
    name = f"procs_{uuid.uuid4().hex[:12]}"
    client: Any = AsyncMongoClient(wire_uri, tz_aware=False)
    jc = JobCollection.from_database(client[name], "queue")
    try:
        yield name, jc
    finally:
        await jc.close()
        await client.drop_database(name)
        await client.close()


def cli_worker(tmp_path: Path, uri: str, database: str, function: str, *options: str) -> Any:
    """`python -m jobcollection worker remote_workers:FUNCTION` on the database."""
    return jobcollection(
        tmp_path,
        "worker",
        f"remote_workers:{function}",
        *options,
        "--mongodb-uri",
        uri,
        "--database",
        database,
        "--poll-interval",
        "0.2",
    )


def script_worker(
    tmp_path: Path, uri: str, database: str, job_type: str, name: str, lease: float = 10.0
) -> Any:
    """`python tests/wire_workers.py` (process_jobs and a job server, no CLI)."""
    script = str(TESTS / "wire_workers.py")
    return _python(tmp_path, script, uri, database, job_type, name, str(lease))


def _python(tmp_path: Path, *args: str) -> Any:
    """A `python ARGS` process with the same plumbing as `jobcollection(...)`."""

    @contextlib.asynccontextmanager
    async def run() -> AsyncIterator[Process]:
        stderr = tmp_path / f"stderr-{uuid.uuid4().hex[:6]}.txt"
        with stderr.open("wb") as errors:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=errors,
                env=environment(),
                cwd=tmp_path,
            )
            try:
                yield Process(process, stderr)
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()

    return run()


async def collect(processes: list[Process], prefixes: tuple[str, ...], count: int) -> list[str]:
    """Read every process's output until `count` lines starting with one of `prefixes` have
    been printed in all (bounded); those lines (every line is kept in `process.lines`)."""
    found: list[str] = []
    enough = asyncio.Event()

    async def read(process: Process) -> None:
        assert process.process.stdout is not None
        while raw := await process.process.stdout.readline():
            line = raw.decode().rstrip("\n")
            process.lines.append(line)
            if line.startswith(prefixes):
                found.append(line)
                if len(found) >= count:
                    enough.set()

    readers = [asyncio.create_task(read(p)) for p in processes]
    try:
        async with asyncio.timeout(ALL_DONE_TIMEOUT):
            await enough.wait()
    except TimeoutError:
        said = "\n".join(p.describe() for p in processes)
        raise AssertionError(f"{len(found)} of {count} {prefixes} lines\n{said}") from None
    finally:
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    return found


async def stop(process: Process, last_line: str) -> None:
    """SIGTERM, then the process says `last_line` and exits 0."""
    process.send_signal(signal.SIGTERM)
    await process.expect(last_line)
    assert await process.exited() == 0, process.describe()


async def test_cli_and_script_workers_complete_every_job_once(
    shared: tuple[str, JobCollection], wire_uri: str, tmp_path: Path
) -> None:
    database, jc = shared
    async with (
        cli_worker(tmp_path, wire_uri, database, "echo", "--type", "echo") as cli_a,
        cli_worker(tmp_path, wire_uri, database, "echo", "--type", "echo") as cli_b,
        script_worker(tmp_path, wire_uri, database, "echo", "s1") as script_1,
        script_worker(tmp_path, wire_uri, database, "echo", "s2") as script_2,
    ):
        for process in (cli_a, cli_b):
            await process.expect("worker started")
        for process, name in ((script_1, "s1"), (script_2, "s2")):
            await process.expect(f"ready {name}")
        # Delayed jobs and their dependents need a job server (promotion) and completions
        # in other processes: only the worker processes run job servers. The delay keeps
        # the prerequisites pending while their dependents are saved.
        delayed = [jc.create_job("echo", {"n": n}).delay(1.0) for n in range(4)]
        ids = await jc.save_jobs(delayed)
        first = jc.create_job("echo", {"n": 4}).depends(delayed[:2])
        ids.append(await first.save())
        ids.append(await jc.create_job("echo", {"n": 5}).depends([delayed[2], first]).save())
        # Saved while the four processes poll: they race for every claim.
        ids += await jc.save_jobs([jc.create_job("echo", {"n": n}) for n in range(6, 30)])
        assert len(ids) == 30 and None not in ids
        processes = [cli_a, cli_b, script_1, script_2]
        lines = await collect(processes, ("echo done ", "done "), len(ids))
        await stop(cli_a, "worker stopped")
        await stop(cli_b, "worker stopped")
        await stop(script_1, "stopped s1")
        await stop(script_2, "stopped s2")

    by_id = collections.Counter(line.split()[-1] for line in lines)
    assert sorted(by_id) == sorted(map(str, ids))
    assert set(by_id.values()) == {1}, by_id  # no job reported done twice
    for job_id in ids:
        doc = await stored(jc, job_id)
        assert doc["status"] == "completed", doc
        assert messages(doc).count("Job Running") == 1, messages(doc)
        assert messages(doc).count("Job Completed") == 1, messages(doc)
    first_done = {line.split()[-1]: n for n, line in enumerate(lines)}
    for dependent, needs in ((ids[4], ids[:2]), (ids[5], [ids[2], ids[4]])):
        assert all(first_done[str(d)] < first_done[str(dependent)] for d in needs)


async def test_a_worker_process_killed_mid_job_has_its_job_retried_once_elsewhere(
    shared: tuple[str, JobCollection], wire_uri: str, tmp_path: Path
) -> None:
    """SIGKILL of a CLI worker holding a job with a 1 s lease: the job servers (this
    process's, passing every 0.1 s, and the second worker's) fail it once the lease runs
    out, it is retried, and another worker process completes it; the other jobs are
    completed once each, by that worker."""
    database, jc = shared
    jc.promote(0.1)
    await jc.start_job_server()
    held = await jc.create_job("slow", {"n": 0}).retry(3, wait=0).save()
    async with cli_worker(
        tmp_path, wire_uri, database, "hang", "--type", "slow", "--work-timeout", "1"
    ) as doomed:
        started = await doomed.expect("hang started")
        assert started == f"hang started {held}"
        later = await jc.save_jobs([jc.create_job("slow", {"n": n}) for n in range(1, 4)])
        doomed.process.send_signal(signal.SIGKILL)
        assert await doomed.exited() == -signal.SIGKILL
    async with cli_worker(tmp_path, wire_uri, database, "echo", "--type", "slow") as rescuer:
        await rescuer.expect("worker started")
        lines = await collect([rescuer], ("echo done ",), 4)
        await stop(rescuer, "worker stopped")

    assert sorted(line.split()[-1] for line in lines) == sorted(map(str, [held, *later]))
    doc = await stored(jc, held)
    assert doc["status"] == "completed", doc
    assert doc["retried"] == 2  # counts the runs (v1.x): the killed one and the rescue
    log = messages(doc)
    assert log.count("Job Running") == 2, log  # the killed attempt, then the rescuer's
    assert sum(EXPIRED in m for m in log) == 1, log
    assert log.count("Job Completed") == 1, log
    assert "hang worker started" in log and "echo worker saw {'n': 0}" in log
    for job_id in later:
        assert messages(await stored(jc, job_id)).count("Job Completed") == 1


async def leader_other_than(jc: JobCollection, pid: int | None) -> Leader:
    """The job server's leader once it is a process other than `pid` (bounded: the lease of
    these tests is one second, so a change takes at most a second and a third)."""
    async with asyncio.timeout(ALL_DONE_TIMEOUT):
        while True:
            leader = await jc.job_server_leader()
            if leader is not None and leader.pid != pid:
                return leader
            await asyncio.sleep(0.05)


async def test_a_killed_leader_is_replaced_by_a_process_standing_by(
    shared: tuple[str, JobCollection], wire_uri: str, tmp_path: Path
) -> None:
    """Two worker processes, each with a job server (1 s lease): one leads, the other stands
    by. SIGKILL of the leader: the other takes the lease over once it runs out, under the next
    epoch, and its passes run (a delayed job saved then is promoted and completed)."""
    database, jc = shared
    first = script_worker(tmp_path, wire_uri, database, "t", "first", lease=1.0)
    second = script_worker(tmp_path, wire_uri, database, "t", "second", lease=1.0)
    async with first as one, second as two:
        await one.expect("ready first")
        await two.expect("ready second")
        leader = await leader_other_than(jc, None)
        by_pid = {one.process.pid: one, two.process.pid: two}
        assert set(by_pid) == {one.process.pid, two.process.pid} and leader.pid in by_pid
        doomed = by_pid.pop(leader.pid)
        [survivor] = by_pid.values()
        doomed.process.send_signal(signal.SIGKILL)
        assert await doomed.exited() == -signal.SIGKILL
        successor = await leader_other_than(jc, leader.pid)
        assert successor.pid == survivor.process.pid and successor.epoch == leader.epoch + 1
        job_id = await jc.create_job("t").delay(0.3).save()
        [line] = await collect([survivor], ("done ",), 1)
        assert line.split()[-1] == str(job_id)
        assert messages(await stored(jc, job_id)).count("Job Completed") == 1
