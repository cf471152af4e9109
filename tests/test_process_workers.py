"""Process workers (api/queue/processes.py): `executor="process"` runs a plain function in child
processes, handed a JobView; a timeout or a cancel kills the child (SIGTERM, SIGKILL after the
grace) and the next call runs in a new one; children are recycled after max_tasks_per_child
calls or past max_memory_per_child; what does not pickle fails its job with the reason; the
queue's shutdown leaves no child behind.

Nothing here waits for time to pass: a child tells the test where it is by connecting to a
local socket (`Children`), and blocks until the test answers; the test waits for those
connections, for jobs to be final and for the queue to drain, each bounded by WAIT. The only
durations are the limits under test (a job's timeout, the grace before SIGKILL)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import threading
from typing import Any

import pytest

from helpers import stored
from jobcollection import InvalidArgument, Job, JobCollection, JobQueue, TaskRegistry
from jobcollection.api.queue.processes import JobView

WAIT = 30.0
"""The longest a test waits for a child to get somewhere (a new child imports this module:
about a second on a loaded machine)."""
GRACE = 0.5
"""cancel_grace of the queues that test a SIGKILL: seconds between SIGTERM and SIGKILL. The
others have WAIT, so that a child ending by itself (it takes a few tenths of a second to exit,
more on a loaded machine) is never killed."""
MIB = 1 << 20


# --- the worker function, run in the children --------------------------------------------


class Unpicklable(Exception):
    """An exception whose instances do not pickle (it holds a lock)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = threading.Lock()


LEAKED: list[bytes] = []
"""What a child keeps after a "leak" call: its resident memory grows by that much."""


def work(job: JobView) -> Any:
    """What `job.data["do"]` says; by default, the child's pid and what it was given."""
    data = job.data
    do = data.get("do")
    if do == "block":  # tell the test our pid, then wait for its answer (or to be killed)
        if data.get("ignore_sigterm"):
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        with socket.create_connection(("127.0.0.1", data["port"])) as conn:
            conn.sendall(f"{os.getpid()}\n".encode())
            conn.recv(1)
    elif do == "leak":
        LEAKED.append(b"\1" * (data["mib"] * MIB))  # written, so resident
    elif do == "raise":
        raise ValueError(f"bad input {data['n']}")
    elif do == "raise unpicklable":
        raise Unpicklable("a lock inside")
    elif do == "return unpicklable":
        return {"lock": threading.Lock()}
    elif do == "exit":
        os._exit(7)  # the child dies
    elif do == "sys.exit":
        sys.exit(3)
    return {
        "pid": os.getpid(),
        "id": str(job.id),
        "type": job.type,
        "attempt": job.attempt,
        "square": data.get("n", 0) ** 2,
    }


def describe(views: list[JobView]) -> dict[str, Any]:
    """What a call given several jobs was handed, and where it ran."""
    return {
        "kinds": sorted({type(view).__name__ for view in views}),
        "ns": [view.data["n"] for view in views],
        "pid": os.getpid(),
    }


# --- helpers ------------------------------------------------------------------------------


class Children:
    """A local socket the children of `do: block` jobs connect to: `await reached()` is the
    pid of the next child that got there (bounded by WAIT); `release()` answers them all, so
    their calls return."""

    def __init__(self) -> None:
        self.pids: asyncio.Queue[int] = asyncio.Queue()
        self.writers: list[asyncio.StreamWriter] = []
        self.port = 0

    async def __aenter__(self) -> Children:
        self.server = await asyncio.start_server(self._connected, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        for writer in self.writers:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        await self.server.wait_closed()

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        self.pids.put_nowait(int(await reader.readline()))

    async def reached(self) -> int:
        return await asyncio.wait_for(self.pids.get(), WAIT)

    def release(self) -> None:
        for writer in self.writers:
            writer.write(b"x")

    def block(self, **more: Any) -> dict[str, Any]:
        """The data of a job whose call blocks until released (or killed)."""
        return {"do": "block", "port": self.port, **more}


def alive(pid: int) -> bool:
    """Whether a process of this pid exists (a zombie not reaped counts as existing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def ended(caplog: pytest.LogCaptureFixture, pid: int) -> dict[str, Any]:
    """The structured fields of the log line saying that worker process `pid` ended."""
    found = [
        {"exitcode": r.exitcode, "why": r.why}
        for r in caplog.records
        if getattr(r, "pid", None) == pid and hasattr(r, "exitcode")
    ]
    assert len(found) == 1, f"worker process {pid} ended {len(found)} times"
    return found[0]


def process_queue(jc: JobCollection, **options: Any) -> JobQueue:
    options.setdefault("cancel_grace", WAIT)
    return jc.process_jobs(
        "t", work, executor="process", poll_interval=None, wakeup=False, **options
    )


async def start(queue: JobQueue, job: Job) -> Any:
    """Save a job and let the queue claim it now; its id."""
    job_id = await job.save()
    queue.trigger()
    return job_id


async def run(jc: JobCollection, queue: JobQueue, data: dict[str, Any]) -> Any:
    """Save a job (no retries), let the queue run it, and return its stored document once
    final."""
    job_id = await start(queue, jc.create_job("t", data).retry(0))
    await jc.wait_for([job_id], timeout=WAIT)
    return await stored(jc, job_id)


def pid_of(doc: dict[str, Any]) -> int:
    assert doc["status"] == "completed", doc.get("failures")
    pid: int = doc["result"]["pid"]
    return pid


@pytest.fixture(autouse=True)
def queue_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="jobcollection.queue")


TASKS = TaskRegistry()
"""Tasks that run_tasks(executor="process") runs in children (module-level functions)."""


@TASKS.task("square")
def square(n: int) -> dict[str, int]:
    return {"square": n * n, "pid": os.getpid()}


@TASKS.task("hello")
async def hello(name: str) -> str:
    return f"hello {name}"


# --- tests ----------------------------------------------------------------------------------


@pytest.mark.both_sides  # a remote worker's queue runs process workers the same way
async def test_a_process_worker_completes_jobs_with_their_results(jc: JobCollection) -> None:
    ids = [await jc.create_job("t", {"n": n}).save() for n in range(1, 5)]
    queue = process_queue(jc, concurrency=2)
    try:
        queue.trigger()
        done = await jc.wait_for(ids, timeout=WAIT)
    finally:
        await queue.shutdown("soft", quiet=True)
    results = [job.doc.result for job in done]
    assert [r["square"] for r in results] == [1, 4, 9, 16]
    assert [r["id"] for r in results] == [str(i) for i in ids]  # the JobView's fields
    assert {r["type"] for r in results} == {"t"} and {r["attempt"] for r in results} == {1}
    pids = {r["pid"] for r in results}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2  # in children, at most concurrency
    assert not any(alive(pid) for pid in pids)  # the shutdown stopped them


async def test_a_payload_hands_the_function_a_list_of_views(jc: JobCollection) -> None:
    ids = [await jc.create_job("t", {"n": n}).save() for n in (2, 3)]
    queue = jc.process_jobs(
        "t", describe, executor="process", payload=2, poll_interval=None, wakeup=False
    )
    try:
        queue.trigger()
        done = await jc.wait_for(ids, timeout=WAIT)
    finally:
        await queue.shutdown("soft", quiet=True)
    result = done[0].doc.result
    assert done[1].doc.result == result  # one call completed both
    assert result["kinds"] == ["JobView"] and sorted(result["ns"]) == [2, 3]
    assert result["pid"] != os.getpid()


async def test_a_timeout_kills_the_child_and_the_next_job_runs_in_a_new_one(
    jc: JobCollection, caplog: pytest.LogCaptureFixture
) -> None:
    async with Children() as children:
        queue = process_queue(jc, cancel_grace=GRACE)
        try:
            first = pid_of(await run(jc, queue, {}))  # a warm child, so the timeout is the call's
            blocking = jc.create_job("t", children.block(ignore_sigterm=True))
            job_id = await start(queue, blocking.timeout(1).retry(0))
            assert await children.reached() == first
            [failed] = await jc.wait_for([job_id], timeout=WAIT)
            assert alive(first) is False  # killed and reaped before the job was failed
            after = pid_of(await run(jc, queue, {}))
        finally:
            await queue.shutdown("soft", quiet=True)
    assert failed.doc.status == "failed"
    assert (await stored(jc, job_id))["failures"][-1]["value"] == "timed out after 1 s"
    # It ignored SIGTERM: SIGKILL after the grace.
    assert ended(caplog, first) == {"exitcode": -signal.SIGKILL, "why": "its call was cancelled"}
    assert after != first


async def test_a_cancel_of_the_running_job_kills_its_child(
    jc: JobCollection, caplog: pytest.LogCaptureFixture
) -> None:
    async with Children() as children:
        queue = process_queue(jc)
        try:
            job_id = await start(queue, jc.create_job("t", children.block()))
            pid = await children.reached()
            assert await queue.heartbeat_now() == 1  # the parent holds the lease meanwhile
            assert alive(pid)
            assert await jc.cancel_jobs([job_id]) == 1
            async with asyncio.timeout(WAIT):
                await queue.drain()  # the call ends once its child is gone
            assert not alive(pid)
            after = pid_of(await run(jc, queue, {}))
        finally:
            await queue.shutdown("soft", quiet=True)
    doc = await stored(jc, job_id)
    assert doc["status"] == "cancelled" and not doc.get("failures")  # no report written
    assert ended(caplog, pid) == {"exitcode": -signal.SIGTERM, "why": "its call was cancelled"}
    assert after != pid


async def test_a_child_over_max_memory_per_child_is_recycled(
    jc: JobCollection, caplog: pytest.LogCaptureFixture
) -> None:
    queue = process_queue(jc, max_memory_per_child=200 * MIB)
    try:
        first = pid_of(await run(jc, queue, {}))
        assert pid_of(await run(jc, queue, {"do": "leak", "mib": 10})) == first  # under the cap
        assert pid_of(await run(jc, queue, {"do": "leak", "mib": 250})) == first
        after = pid_of(await run(jc, queue, {}))  # the leaky child was replaced
    finally:
        await queue.shutdown("soft", quiet=True)
    assert after != first and not alive(first)
    why = ended(caplog, first)["why"]
    assert "over max_memory_per_child (200 MiB)" in why


async def test_max_tasks_per_child_recycles_a_child_after_so_many_calls(
    jc: JobCollection, caplog: pytest.LogCaptureFixture
) -> None:
    queue = process_queue(jc, max_tasks_per_child=2)
    try:
        pids = [pid_of(await run(jc, queue, {})) for _ in range(5)]
    finally:
        await queue.shutdown("soft", quiet=True)
    assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4]
    assert ended(caplog, pids[0]) == {
        "exitcode": 0,
        "why": "recycled after 2 calls (max_tasks_per_child)",
    }


async def test_a_function_that_does_not_pickle_is_refused_when_the_queue_is_made(
    jc: JobCollection,
) -> None:
    def local(job: JobView) -> None:
        return None

    async def coroutine(job: JobView) -> None:
        return None

    for worker in (lambda job: None, local):
        with pytest.raises(InvalidArgument, match=r"^worker: must pickle .*top level"):
            jc.process_jobs("t", worker, executor="process")
    with pytest.raises(InvalidArgument, match=r"^executor: .*this worker is async"):
        jc.process_jobs("t", coroutine, executor="process")
    with pytest.raises(InvalidArgument, match=r"^max_tasks_per_child: .*process"):
        jc.process_jobs("t", work, max_tasks_per_child=3)


async def test_what_does_not_cross_fails_its_job_with_the_reason_and_the_child_carries_on(
    jc: JobCollection,
) -> None:
    queue = process_queue(jc)
    try:
        first = pid_of(await run(jc, queue, {}))
        result = await run(jc, queue, {"do": "return unpicklable"})
        raised = await run(jc, queue, {"do": "raise unpicklable"})
        same = pid_of(await run(jc, queue, {}))
    finally:
        await queue.shutdown("soft", quiet=True)
    assert result["status"] == "failed"
    failure = result["failures"][-1]
    assert failure["type"] == "WorkerProcessError"
    assert failure["message"].startswith("the result of work cannot be pickled to leave its")
    assert raised["status"] == "failed"
    assert raised["failures"][-1]["message"] == "test_process_workers.Unpicklable: a lock inside"
    assert same == first  # neither took the child down


async def test_an_exception_in_the_child_fails_the_job_with_its_type_and_traceback(
    jc: JobCollection,
) -> None:
    queue = process_queue(jc)
    try:
        doc = await run(jc, queue, {"do": "raise", "n": 7})
        exited = await run(jc, queue, {"do": "sys.exit"})
    finally:
        await queue.shutdown("soft", quiet=True)
    failure = doc["failures"][-1]
    assert failure["type"] == "ValueError" and failure["message"] == "bad input 7"
    assert 'raise ValueError(f"bad input' in failure["traceback"]  # the child's own line
    # SystemExit in the child fails the job; the queue's process is unaffected.
    assert exited["failures"][-1]["type"] == "WorkerProcessError"
    assert exited["failures"][-1]["message"] == "SystemExit: 3"


async def test_a_child_that_dies_fails_its_job_and_is_replaced(
    jc: JobCollection, caplog: pytest.LogCaptureFixture
) -> None:
    queue = process_queue(jc)
    try:
        first = pid_of(await run(jc, queue, {}))
        died = await run(jc, queue, {"do": "exit"})
        after = pid_of(await run(jc, queue, {}))
    finally:
        await queue.shutdown("soft", quiet=True)
    assert died["status"] == "failed"
    message = died["failures"][-1]["message"]
    assert message == f"the worker process {first} running work died: exit code 7"
    assert ended(caplog, first)["exitcode"] == 7
    assert after != first and not alive(first)


async def test_the_queues_shutdown_stops_its_children(jc: JobCollection) -> None:
    async with Children() as children:
        queue = process_queue(jc, concurrency=2)
        try:
            ids = [await jc.create_job("t", children.block()).save() for _ in range(2)]
            queue.trigger()
            pids = {await children.reached(), await children.reached()}
            assert len(pids) == 2  # side by side, one child each
            children.release()
            await jc.wait_for(ids, timeout=WAIT)
            assert all(alive(pid) for pid in pids)  # idle children wait for the next call
        finally:
            await queue.shutdown("normal", quiet=True)
    assert not any(alive(pid) for pid in pids)


async def test_a_hard_shutdown_kills_the_running_children(
    jc: JobCollection, caplog: pytest.LogCaptureFixture
) -> None:
    async with Children() as children:
        queue = process_queue(jc, cancel_grace=GRACE)
        job_id = await start(queue, jc.create_job("t", children.block(ignore_sigterm=True)))
        pid = await children.reached()
        await queue.shutdown("hard", quiet=True)
    assert not alive(pid)
    assert ended(caplog, pid)["exitcode"] == -signal.SIGKILL
    doc = await stored(jc, job_id)
    assert doc["status"] == "failed" and doc["failures"][-1]["value"] == "Worker shutdown"


@pytest.mark.both_sides
async def test_run_tasks_runs_plain_task_functions_in_child_processes(jc: JobCollection) -> None:
    bound = square.on(jc)
    ids = [await bound.enqueue(n) for n in (2, 3)]
    bad = await jc.create_job("square", {"n": "two"}).retry(0).save()  # does not validate
    queue = jc.run_tasks([square], executor="process", poll_interval=None, wakeup=False)
    try:
        queue.trigger()
        done = await jc.wait_for([*ids, bad], timeout=WAIT)
    finally:
        await queue.shutdown("soft", quiet=True)
    assert [job.doc.result["square"] for job in done[:2]] == [4, 9]
    assert os.getpid() not in {job.doc.result["pid"] for job in done[:2]}
    failure = (await stored(jc, bad))["failures"][-1]
    assert done[2].doc.status == "failed"
    assert "does not validate for task 'square'" in failure["message"], failure


def test_run_tasks_refuses_tasks_a_child_cannot_run(jc: JobCollection) -> None:
    with pytest.raises(InvalidArgument, match=r"^executor: .*task 'hello' is async"):
        jc.run_tasks([square, hello], executor="process")

    @jc.task("nested")
    def nested(n: int) -> int:
        return n

    with pytest.raises(InvalidArgument, match=r"^executor: .*declare it at the top level"):
        jc.run_tasks([nested], executor="process")
