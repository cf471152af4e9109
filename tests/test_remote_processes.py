"""The remote API across processes and a faulty network: `python -m jobcollection worker`
processes working a served JobCollection (end to end, SIGKILLed mid-job, stopped by one
SIGTERM or by two Ctrl-Cs), `jobcollection serve` and a worker both as processes, and a
client whose replies a TCP proxy (tcp_proxy.py) drops after the server applied the request.

What must hold: every job a worker process is handed ends completed (once), or failed and
retried when the process dies or is stopped hard; a report whose reply is lost is applied
once and a retry of it answers True; the first SIGTERM/SIGINT stops a worker gracefully
(exit 0), a second one at once. Nothing here waits for time to pass: the tests wait for a
line a process prints, a method event of the served collection, or a process to exit, each
bounded; leases run out by moving the manual clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from conftest import MakeJC
from helpers import messages, stored
from jobcollection import Job, JobCollection, ManualClock, PermissionDenied
from jobcollection.model.errors import DatabaseError
from jobcollection.model.events import MethodEvent
from jobcollection.remote import RemoteJobCollection
from remote_helpers import serve_jc
from tcp_proxy import TcpProxy

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

TESTS = Path(__file__).resolve().parent
LINE_TIMEOUT = 15.0
"""The longest a test waits for a process to print a line or to exit (a process starting up
imports the library: about a second)."""
_STDERR = itertools.count()
EXPIRED = "Failed for exceeding worker set workTimeout"
SHUTDOWN_FAILURE = "Worker shutdown"


# --- processes ---------------------------------------------------------------------------------


class Process:
    """A `python -m jobcollection ...` process: its stdout read line by line (every line kept
    in `lines`), its stderr in a file (shown when an expectation fails)."""

    def __init__(self, process: asyncio.subprocess.Process, stderr: Path) -> None:
        self.process = process
        self.stderr = stderr
        self.lines: list[str] = []

    def describe(self) -> str:
        return (
            f"stdout so far: {self.lines}\n"
            f"stderr:\n{self.stderr.read_text(errors='replace')[-4000:]}"
        )

    async def expect(self, text: str, timeout: float = LINE_TIMEOUT) -> str:
        """The next line that contains `text` (lines before it are kept, not checked)."""
        assert self.process.stdout is not None
        try:
            async with asyncio.timeout(timeout):
                while True:
                    raw = await self.process.stdout.readline()
                    if not raw:
                        raise AssertionError(f"the process ended before printing {text!r}")
                    line = raw.decode().rstrip("\n")
                    self.lines.append(line)
                    if text in line:
                        return line
        except (AssertionError, TimeoutError) as exc:
            raise AssertionError(f"no line with {text!r} ({exc!r})\n{self.describe()}") from None

    def send_signal(self, sig: int) -> None:
        self.process.send_signal(sig)

    async def exited(self, timeout: float = LINE_TIMEOUT) -> int:
        """The exit status, once the process has ended (its remaining stdout read)."""
        assert self.process.stdout is not None
        try:
            async with asyncio.timeout(timeout):
                rest = await self.process.stdout.read()
                code = await self.process.wait()
        except TimeoutError:
            raise AssertionError(f"the process did not exit\n{self.describe()}") from None
        self.lines.extend(rest.decode().splitlines())
        return code


def environment(token: str | None = None) -> dict[str, str]:
    """This environment, with the tests folder importable (remote_workers) and the token."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))
    env.pop("JOBCOLLECTION_TOKEN", None)
    env.pop("JOBCOLLECTION_MONGODB_URI", None)
    if token is not None:
        env["JOBCOLLECTION_TOKEN"] = token
    return env


@contextlib.asynccontextmanager
async def jobcollection(
    tmp_path: Path, *args: str, token: str | None = None
) -> AsyncIterator[Process]:
    """`python -m jobcollection ARGS` running until the block ends (killed then if it has
    not exited)."""
    stderr = tmp_path / f"stderr-{next(_STDERR)}.txt"
    with stderr.open("wb") as errors:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "jobcollection",
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=errors,
            env=environment(token),
            cwd=tmp_path,
        )
    try:
        yield Process(process, stderr)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def worker(tmp_path: Path, function: str, job_type: str, url: str, *options: str) -> Any:
    """A worker process of remote_workers.FUNCTION on jobs of a type, through the remote API
    at `url` as "worker-1" (its token in JOBCOLLECTION_TOKEN)."""
    return jobcollection(
        tmp_path,
        "worker",
        f"remote_workers:{function}",
        "--type",
        job_type,
        "--url",
        url,
        *options,
        token="worker-token",
    )


# --- what the served collection did ------------------------------------------------------------


class Applied:
    """The calls of a method the served collection applied (no error, a true answer), by
    the job id they name first: `await applied.reach(n)` waits for the n-th."""

    def __init__(self, jc: JobCollection, method: str) -> None:
        self.ids: list[Any] = []
        self._changed = asyncio.Event()
        jc.events.on(method, self._on)

    def _on(self, event: MethodEvent) -> None:
        if event.error is None and event.return_value:
            self.ids.append(event.params[0])
            self._changed.set()

    async def reach(
        self, count: int, process: Process | None = None, timeout: float = LINE_TIMEOUT
    ) -> None:
        """Wait for the count-th (bounded); a failure shows what the worker process said."""
        try:
            async with asyncio.timeout(timeout):
                while len(self.ids) < count:
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            said = process.describe() if process is not None else ""
            raise AssertionError(f"{len(self.ids)} of {count} applied\n{said}") from None


# --- a worker process, end to end --------------------------------------------------------------


async def test_a_worker_process_runs_jobs_to_completion_and_stops_on_sigterm(
    make_jc: MakeJC, tmp_path: Path
) -> None:
    jc = await make_jc()
    jc.allow(worker=["worker-1"])
    done = Applied(jc, "jobDone")
    async with serve_jc(jc) as url:
        # Two jobs wait for the worker; three more are saved while it runs (they wake its
        # long poll, or its 1 s poll at worst).
        ids = [await jc.create_job("echo", {"n": n}).save() for n in range(2)]
        async with worker(tmp_path, "echo", "echo", url, "--poll-interval", "1") as process:
            assert await process.expect("worker started") == (
                "worker started: echo jobs, concurrency 1"
            )
            await done.reach(2, process)
            ids += [await jc.create_job("echo", {"n": n}).save() for n in range(2, 5)]
            await done.reach(5, process)
            process.send_signal(signal.SIGTERM)
            assert await process.expect("received SIGTERM") == (
                "received SIGTERM; shutting down (normal): running jobs finish"
            )
            assert await process.expect("worker stopped") == "worker stopped"
            assert await process.exited() == 0, process.describe()
    assert sorted(map(str, done.ids)) == sorted(map(str, ids))
    for n, job_id in enumerate(ids):
        doc = await stored(jc, job_id)
        assert doc["status"] == "completed"
        assert doc["result"] == {"echo": {"n": n}}
        assert f"echo worker saw {{'n': {n}}}" in messages(doc)
        assert messages(doc).count("Job Running") == 1
        assert messages(doc).count("Job Completed") == 1
        assert f"echo done {job_id}" in process.lines


async def test_a_worker_process_killed_mid_job_loses_it_only_until_its_lease_runs_out(
    make_jc: MakeJC, clock: ManualClock, tmp_path: Path
) -> None:
    jc = await make_jc()
    jc.allow(worker=["worker-1"])
    job_id = await jc.create_job("slow", {"n": 1}).retry(1, wait=0).save()
    async with serve_jc(jc) as url:
        async with worker(tmp_path, "hang", "slow", url, "--work-timeout", "5") as process:
            assert await process.expect("hang started") == f"hang started {job_id}"
            process.send_signal(signal.SIGKILL)
            assert await process.exited() == -signal.SIGKILL
        doc = await stored(jc, job_id)
        assert doc["status"] == "running"
        killed_run = doc["runId"]
        assert "hang worker started" in messages(doc)
        clock.advance(4)  # the lease (5 s, on the server's clock) still holds
        assert (await jc.run_server_pass()).expired == 0
        clock.advance(2)
        assert (await jc.run_server_pass()).expired == 1
        doc = await stored(jc, job_id)
        assert doc["status"] == "ready" and doc["runId"] is None
        assert [(f["value"], f["runId"]) for f in doc["failures"]] == [(EXPIRED, killed_run)]

        done = Applied(jc, "jobDone")
        calls: list[Any] = []

        async def finish(job: Job) -> dict[str, Any]:
            calls.append(job.id)
            return {"finished": job.data["n"]}

        async with RemoteJobCollection(url, token="worker-token", clock=clock) as remote:
            queue = remote.process_jobs("slow", finish, poll_interval=None)
            try:
                await done.reach(1)
            finally:
                async with asyncio.timeout(LINE_TIMEOUT):
                    await queue.shutdown("normal")
    assert calls == [job_id]
    doc = await stored(jc, job_id)
    assert doc["status"] == "completed"
    assert doc["result"] == {"finished": 1}
    assert messages(doc).count("Job Running") == 2
    assert messages(doc).count("Job Completed") == 1


async def test_a_second_sigint_stops_a_worker_process_hard_and_its_job_is_retried(
    make_jc: MakeJC, tmp_path: Path
) -> None:
    jc = await make_jc()
    jc.allow(worker=["worker-1"])
    job_id = await jc.create_job("slow", {"n": 1}).retry(1, wait=0).save()
    failed = Applied(jc, "jobFail")
    async with serve_jc(jc) as url, worker(tmp_path, "hang", "slow", url) as process:
        assert await process.expect("hang started") == f"hang started {job_id}"
        process.send_signal(signal.SIGINT)
        assert await process.expect("received SIGINT") == (
            "received SIGINT; shutting down (normal): running jobs finish"
        )
        assert (await stored(jc, job_id))["status"] == "running"  # it waits for the job
        process.send_signal(signal.SIGINT)
        assert await process.expect("received SIGINT again") == (
            "received SIGINT again; shutting down (hard)"
        )
        assert await process.expect("hang cancelled") == f"hang cancelled {job_id}"
        assert await process.expect("worker stopped") == "worker stopped"
        assert await process.exited(timeout=5) == 0, process.describe()
    assert failed.ids == [job_id]
    doc = await stored(jc, job_id)
    assert doc["status"] in ("waiting", "ready") and doc["runId"] is None
    assert [f["value"] for f in doc["failures"]] == [SHUTDOWN_FAILURE]
    await jc.run_server_pass()
    [again] = await jc.get_work("slow")  # not lost: any worker gets it again
    assert again.id == job_id
    assert await again.done() is True
    assert (await stored(jc, job_id))["status"] == "completed"


# --- `jobcollection serve` and a worker, both processes ----------------------------------------


async def make_token(tmp_path: Path, user: str, role: str) -> tuple[str, str]:
    """`jobcollection token USER ROLE`: the token and its tokens-file line."""
    async with jobcollection(tmp_path, "token", user, role) as process:
        token = (await process.expect("token: ")).removeprefix("token: ")
        line = (await process.expect("tokens file line: ")).removeprefix("tokens file line: ")
        assert await process.exited() == 0
    assert line.split()[0] == user and line.split()[2:] == [role]
    return token, line


async def test_serve_and_worker_processes_run_jobs_and_stop_on_sigterm(tmp_path: Path) -> None:
    admin_token, admin_line = await make_token(tmp_path, "admin-user", "admin")
    worker_token, worker_line = await make_token(tmp_path, "worker-user", "worker")
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# users of the test server\n{admin_line}\n{worker_line}\n")
    async with jobcollection(
        tmp_path, "serve", "--port", "0", "--tokens", str(tokens), "--log-level", "warning"
    ) as server:
        url = (await server.expect("jobcollection serving on ")).rsplit(" ", 1)[1]
        assert url.startswith("http://127.0.0.1:")
        async with jobcollection(
            tmp_path,
            "worker",
            "remote_workers:echo",
            "--type",
            "echo",
            "--url",
            url,
            "--poll-interval",
            "1",
            token=worker_token,
        ) as process:
            await process.expect("worker started")
            async with RemoteJobCollection(url, token=admin_token) as admin:
                ids: list[Any] = [await admin.create_job("echo", {"n": n}).save() for n in range(3)]
                for _ in ids:
                    await process.expect("echo done ")
                # A graceful stop waits for the reports of the jobs the worker finished.
                process.send_signal(signal.SIGTERM)
                await process.expect("worker stopped")
                assert await process.exited() == 0, process.describe()
                finished = [line.split()[-1] for line in process.lines if "echo done" in line]
                assert sorted(finished) == sorted(map(str, ids))
                jobs = await admin.get_jobs(ids, get_log=True)
                assert len(jobs) == 3
                for job in jobs:
                    assert job.doc.status == "completed"
                    assert job.doc.result == {"echo": job.data}
                    assert [e.message for e in job.doc.log or []].count("Job Completed") == 1

                # The worker token may work jobs, not manage them.
                other_id: Any = await admin.create_job("other").save()
                async with RemoteJobCollection(url, token=worker_token) as as_worker:
                    with pytest.raises(PermissionDenied):
                        await as_worker.cancel_jobs([other_id])
                    other = await as_worker.get_job(other_id)
                    assert other is not None and other.doc.status in ("waiting", "ready")
                assert await admin.cancel_jobs([other_id]) is True
        server.send_signal(signal.SIGTERM)
        assert await server.exited() == 0, server.describe()


async def test_serve_exits_0_after_a_graceful_sigterm(tmp_path: Path) -> None:
    async with jobcollection(tmp_path, "serve", "--port", "0", "--log-level", "warning") as server:
        await server.expect("jobcollection serving on ")
        server.send_signal(signal.SIGTERM)
        assert await server.exited() == 0, server.describe()


# --- lost replies --------------------------------------------------------------------------------


def completing(request: bytes) -> bool:
    """A request completing a job (and claiming none: a claim whose reply is lost is another
    story, see the tests of lost claims)."""
    return b"jobDone" in request and b"getWork" not in request


def claiming(request: bytes) -> bool:
    return b"getWork" in request


async def test_a_report_whose_reply_is_lost_is_applied_once_and_its_retry_answers_true(
    make_jc: MakeJC, clock: ManualClock
) -> None:
    jc = await make_jc()
    jc.allow(worker=["worker-1"])
    job_id = await jc.create_job("t", {"x": 1}).save()
    async with (
        serve_jc(jc) as url,
        TcpProxy.to(url) as proxy,
        RemoteJobCollection(proxy.url, token="worker-token", clock=clock) as remote,
    ):
        [job] = await remote.get_work("t", work_timeout=30)
        cut = proxy.cut_next_reply(completing)
        with pytest.raises(DatabaseError):
            await job.done({"answer": 42})
        assert cut.is_set() and proxy.cuts == 1
        doc = await stored(jc, job_id)  # the server applied it
        assert doc["status"] == "completed" and doc["result"] == {"answer": 42}
        assert await job.done({"answer": 42}) is True  # the retry: as the first answered
        assert await job.done({"answer": 43}) is False  # another value for the run
        assert await job.fail("too late") is False
    doc = await stored(jc, job_id)
    assert doc["status"] == "completed"
    assert doc["result"] == {"answer": 42}
    assert doc["repeated"] == 0
    assert messages(doc).count("Job Completed") == 1
    assert not doc.get("failures")


async def test_a_remote_queue_loses_no_job_and_runs_none_twice_when_a_reply_is_lost(
    make_jc: MakeJC, clock: ManualClock
) -> None:
    jc = await make_jc()
    jc.allow(worker=["worker-1"])
    ids = [await jc.create_job("t", {"n": n}).save() for n in range(10)]
    done = Applied(jc, "jobDone")
    calls: list[Any] = []
    async with serve_jc(jc) as url, TcpProxy.to(url) as proxy:
        cut: asyncio.Event | None = None

        async def work(job: Job) -> dict[str, Any]:
            nonlocal cut
            calls.append(job.id)
            if len(calls) == 5:  # midway: lose the reply to this job's completion
                cut = proxy.cut_next_reply(completing)
            return {"n": job.data["n"]}

        async with RemoteJobCollection(proxy.url, token="worker-token", clock=clock) as remote:
            queue = remote.process_jobs("t", work, poll_interval=None)
            try:
                await done.reach(11)  # ten completions and the retry of the one cut
                async with asyncio.timeout(LINE_TIMEOUT):
                    await queue.drain()
            finally:
                async with asyncio.timeout(LINE_TIMEOUT):
                    await queue.shutdown("normal")
    assert cut is not None and cut.is_set() and proxy.cuts == 1
    assert sorted(map(str, calls)) == sorted(map(str, ids))  # each job ran once
    assert len(done.ids) == 11 and len(set(map(str, done.ids))) == 10
    for n, job_id in enumerate(ids):
        doc = await stored(jc, job_id)
        assert doc["status"] == "completed"
        assert doc["result"] == {"n": n}
        assert messages(doc).count("Job Running") == 1
        assert messages(doc).count("Job Completed") == 1


async def test_a_claim_whose_reply_is_lost_is_recovered_when_its_lease_runs_out(
    make_jc: MakeJC, clock: ManualClock
) -> None:
    """At least once: when the client whose claim's reply was lost is gone too (its process
    died before claiming again), the job claimed is running for nobody until its lease runs
    out; then it is retried, and any worker completes it."""
    jc = await make_jc()
    jc.allow(worker=["worker-1"])
    job_id = await jc.create_job("t", {"x": 1}).retry(1, wait=0).save()
    async with serve_jc(jc) as url, TcpProxy.to(url) as proxy:
        async with RemoteJobCollection(proxy.url, token="worker-token", clock=clock) as gone:
            cut = proxy.cut_next_reply(claiming)
            with pytest.raises(DatabaseError):
                await gone.get_work("t", work_timeout=30)
            assert cut.is_set()
        doc = await stored(jc, job_id)
        assert doc["status"] == "running"  # claimed, for nobody
        async with RemoteJobCollection(url, token="worker-token", clock=clock) as remote:
            assert await remote.get_work("t", work_timeout=30) == []
            clock.advance(31)
            assert (await jc.run_server_pass()).expired == 1
            [job] = await remote.get_work("t", work_timeout=30)
            assert job.id == job_id
            assert await job.done({"ok": True}) is True
    doc = await stored(jc, job_id)
    assert doc["status"] == "completed"
    assert [f["value"] for f in doc["failures"]] == [EXPIRED]
    assert messages(doc).count("Job Running") == 2
    assert messages(doc).count("Job Completed") == 1


async def test_a_claim_whose_reply_is_lost_is_handed_over_by_the_next_claim(
    make_jc: MakeJC, clock: ManualClock
) -> None:
    jc = await make_jc()
    jc.allow(worker=["worker-1"])
    job_id = await jc.create_job("t", {"x": 1}).retry(0).save()
    async with (
        serve_jc(jc) as url,
        TcpProxy.to(url) as proxy,
        RemoteJobCollection(proxy.url, token="worker-token", clock=clock) as remote,
    ):
        cut = proxy.cut_next_reply(claiming)
        with pytest.raises(DatabaseError):
            await remote.get_work("t", work_timeout=30)
        assert cut.is_set()
        assert await remote.get_work("other") == []  # another claim's key is its own
        [handed] = await remote.get_work("t", work_timeout=30)
        assert handed.id == job_id
        assert await handed.done({"ok": 1}) is True
        assert await remote.get_work("t") == []  # the key is answered once
    raw = await stored(jc, job_id)
    assert (raw["status"], raw["result"], raw["retried"]) == ("completed", {"ok": 1}, 1)
