"""Sync workers (api/queue/threads.py): a plain function given to a queue, or a task declared
on one, runs in a thread, so the event loop keeps renewing leases, claiming and reporting
while it blocks; `job.sync` gives it the job's actions as blocking calls. Nothing here waits
for time to pass: the threads block on events the test sets."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

import pytest

from conftest import MakeJC
from helpers import stored
from jobcollection import (
    InvalidArgument,
    Job,
    JobCollection,
    ManualClock,
    TaskRegistry,
    current_job,
)

WAIT = 10.0
"""The longest a test waits for a thread to reach a point (it normally takes milliseconds)."""


async def finished(jc: JobCollection, queue: Any, ids: list[Any]) -> list[Job]:
    """Let the queue claim now, wait until these jobs are final, then shut it down."""
    try:
        queue.trigger()
        return await jc.wait_for(ids, timeout=WAIT)
    finally:
        await queue.shutdown("soft", quiet=True)


async def reached(event: threading.Event) -> None:
    """Wait, without blocking the loop, until a worker thread sets the event."""
    assert await asyncio.to_thread(event.wait, WAIT), "the worker thread never got there"


async def test_a_blocking_sync_worker_keeps_its_lease_and_the_loop_free(
    jc: JobCollection, clock: ManualClock
) -> None:
    job_id = await jc.create_job("t").save()
    started, release = threading.Event(), threading.Event()
    seen: list[str] = []

    def worker(job: Job) -> dict[str, Any]:
        seen.append(threading.current_thread().name)
        started.set()
        assert release.wait(WAIT)  # blocks this thread, not the event loop
        return {"ok": True}

    queue = jc.process_jobs("t", worker, work_timeout=10, poll_interval=None, wakeup=False)
    try:
        queue.trigger()
        await reached(started)
        lease = (await stored(jc, job_id))["expiresAfter"]
        clock.advance(9)
        assert await queue.heartbeat_now() == 1  # the loop is free while the thread blocks
        renewed = (await stored(jc, job_id))["expiresAfter"]
        assert renewed > lease
        clock.advance(5)  # past the first lease, within the renewed one
        assert (await jc.run_server_pass()).expired == 0
        release.set()
        [done] = await jc.wait_for([job_id], timeout=WAIT)
        assert done.doc.status == "completed" and done.doc.result == {"ok": True}
        assert seen[0].startswith("jobcollection")  # the queue's own thread
    finally:
        release.set()
        await queue.shutdown("soft", quiet=True)


async def test_a_sync_worker_uses_the_jobs_actions_through_job_sync(jc: JobCollection) -> None:
    job_id = await jc.create_job("t", {"n": 3}).save()

    def worker(job: Job) -> int:
        for i in range(job.data["n"]):
            job.sync.progress(i + 1, job.data["n"])
        job.sync.log("all parts done", level="success")
        return job.data["n"]

    queue = jc.process_jobs("t", worker, poll_interval=None, wakeup=False)
    [done] = await finished(jc, queue, [job_id])
    doc = await stored(jc, job_id)
    assert doc["status"] == "completed" and doc["result"] == {"value": 3}
    assert doc["progress"]["percent"] == 100
    assert "all parts done" in [entry["message"] for entry in doc["log"]]
    assert done.doc.status == "completed"


async def test_sync_calls_run_side_by_side_up_to_the_concurrency(jc: JobCollection) -> None:
    ids = [await jc.create_job("t").save() for _ in range(3)]
    together = threading.Barrier(3, timeout=WAIT)  # only passes if three run at once

    def worker(job: Job) -> None:
        together.wait()

    queue = jc.process_jobs("t", worker, concurrency=3, poll_interval=None, wakeup=False)
    done = await finished(jc, queue, ids)
    assert [j.doc.status for j in done] == ["completed"] * 3


async def test_an_executor_of_ones_own(jc: JobCollection) -> None:
    job_id = await jc.create_job("t").save()
    names: list[str] = []
    with ThreadPoolExecutor(1, thread_name_prefix="mine") as executor:
        queue = jc.process_jobs(
            "t",
            lambda job: names.append(threading.current_thread().name),
            executor=executor,
            poll_interval=None,
            wakeup=False,
        )
        await finished(jc, queue, [job_id])
    assert names[0].startswith("mine")


async def test_a_sync_worker_that_raises_fails_its_job(jc: JobCollection) -> None:
    job_id = await jc.create_job("t").retry(0).save()

    def worker(job: Job) -> None:
        raise ValueError("bad input")

    queue = jc.process_jobs("t", worker, poll_interval=None, wakeup=False)
    [failed] = await finished(jc, queue, [job_id])
    assert failed.doc.status == "failed"
    assert "bad input" in str((await stored(jc, job_id))["failures"][-1])


async def test_a_timed_out_sync_call_fails_its_job_and_the_thread_runs_on(
    jc: JobCollection,
) -> None:
    job_id = await jc.create_job("t").retry(0).save()
    release, finished = threading.Event(), threading.Event()

    def worker(job: Job) -> None:
        release.wait(WAIT)
        finished.set()

    queue = jc.process_jobs("t", worker, timeout=0.05, poll_interval=None, wakeup=False)
    try:
        queue.trigger()
        [failed] = await jc.wait_for([job_id], timeout=WAIT)
        assert failed.doc.status == "failed"
        assert not finished.is_set()  # a thread cannot be stopped: it goes on
    finally:
        release.set()
        await queue.shutdown("soft", quiet=True)
    assert "timed out" in str((await stored(jc, job_id))["failures"][-1])
    await reached(finished)


async def test_a_sync_task_runs_in_a_thread_with_its_current_job(make_jc: MakeJC) -> None:
    jc = await make_jc()

    @jc.task("resize")
    def resize(image: str, width: int = 100) -> str:
        current_job().sync.log(f"resizing {image}")
        return f"{image}@{width}:{threading.current_thread().name}"

    job_id = await resize.enqueue("x.png", width=50)
    queue = jc.run_tasks([resize], poll_interval=None, wakeup=False)
    [done] = await finished(jc, queue, [job_id])
    value = done.doc.result["value"]
    assert value.startswith("x.png@50:jobcollection")
    assert "resizing x.png" in [e["message"] for e in (await stored(jc, job_id))["log"]]


async def test_calling_a_sync_task_directly_runs_it_in_a_thread() -> None:
    tasks = TaskRegistry()

    @tasks.task("where")
    def where(n: int) -> str:
        return f"{n}:{threading.current_thread().name}"

    value = await where(3)  # an awaitable, as for an async task
    assert value.startswith("3:") and value != f"3:{threading.current_thread().name}"
    assert where.function(4) == f"4:{threading.current_thread().name}"  # here and now


async def test_run_tasks_runs_sync_tasks_in_the_executor_given(make_jc: MakeJC) -> None:
    jc = await make_jc()

    @jc.task("where")
    def where(n: int) -> str:
        return threading.current_thread().name

    ids = [await where.enqueue(n) for n in range(3)]
    with ThreadPoolExecutor(2, thread_name_prefix="mine") as pool:
        queue = jc.run_tasks(executor=pool, concurrency=2, poll_interval=None, wakeup=False)
        done = await finished(jc, queue, ids)
    assert {job.doc.result["value"][:4] for job in done} == {"mine"}


async def test_job_sync_is_refused_outside_a_thread_and_on_the_loop(jc: JobCollection) -> None:
    await jc.create_job("t").save()
    [job] = await jc.get_work("t")
    with pytest.raises(RuntimeError, match="sync worker"):
        job.sync.progress(1, 2)
    job._bind_loop(asyncio.get_running_loop())
    with pytest.raises(RuntimeError, match=r"await job\.progress"):
        job.sync.progress(1, 2)  # from the loop's own thread it would wait for itself


async def test_executor_thread_names_the_queues_own_threads(jc: JobCollection) -> None:
    job_id = await jc.create_job("t").save()
    names: list[str] = []
    queue = jc.process_jobs(
        "t",
        lambda job: names.append(threading.current_thread().name),
        executor="thread",
        poll_interval=None,
        wakeup=False,
    )
    await finished(jc, queue, [job_id])
    assert names[0].startswith("jobcollection")


def test_a_process_pool_executor_is_refused_naming_the_option() -> None:
    from jobcollection import QueueOptions

    with (
        ProcessPoolExecutor(1) as pool,
        pytest.raises(InvalidArgument, match=r'^executor: .*use executor="process"'),
    ):
        QueueOptions(executor=pool)
    with pytest.raises(InvalidArgument, match=r"^executor: must be one of \['thread', 'process'\]"):
        QueueOptions(executor="threads")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match=r"^executor: must be None"):
        QueueOptions(executor=4)  # type: ignore[arg-type]
    assert QueueOptions(executor="thread").executor == "thread"
    for name in ("max_tasks_per_child", "max_memory_per_child"):
        with pytest.raises(InvalidArgument, match=rf'^{name}: applies to executor="process" only'):
            QueueOptions(executor="thread", **{name: 10})
        with pytest.raises(InvalidArgument, match=rf"^{name}: must be >= 1"):
            QueueOptions(executor="process", **{name: 0})
