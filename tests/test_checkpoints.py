"""Checkpoints (`job.checkpoint(state)`, `job.checkpoint_state`, `job.iterate()`): the state
is written with the queue's next lease renewal (no command of its own), at once with
`flush=True` or outside a queue, with the failure or release that ends an attempt; the next
attempt resumes from the last one written, after a failure, a timeout, a hard shutdown, a
release or a lost lease; a completion clears it and a repeat starts without one. On both
sides: the remote queue carries checkpoints in jobHeartbeat's options.

Nothing waits for time to pass: workers signal through events, queues are driven by
trigger(), drain() and heartbeat_now(), leases by the ManualClock; the timeout case uses a
50 ms worker timeout, which is what it is about."""

from __future__ import annotations

import asyncio
import math
import signal
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from bson import ObjectId

from conftest import MakeJC
from helpers import stored
from jobcollection import (
    InvalidArgument,
    Job,
    JobCollection,
    JobNotSaved,
    JobQueue,
    JobView,
    ManualClock,
    Snooze,
)
from jobcollection.model import ops
from jobcollection.model.document import CHECKPOINT
from jobcollection.remote import RemoteJobCollection
from remote_helpers import serve_jc
from test_processes_db import cli_worker, collect, shared, stop, wire_uri
from test_remote_processes import Process

__all__ = ["shared", "wire_uri"]  # fixtures of test_processes_db's, used here

pytestmark = pytest.mark.both_sides

T = TypeVar("T")
BOUND = 5.0
"""Seconds any single wait may take before it counts as a hang."""
WAIT = 30.0
"""The longest a process worker's test waits (a new child process imports this module)."""


async def within(awaitable: Awaitable[T]) -> T:
    async with asyncio.timeout(BOUND):
        return await awaitable


async def within_long(awaitable: Awaitable[T]) -> T:
    async with asyncio.timeout(WAIT):
        return await awaitable


MakeQueue = Callable[..., JobQueue]


@pytest.fixture
async def make_queue(jc: JobCollection) -> AsyncIterator[MakeQueue]:
    """jc.process_jobs on type "work", polling and wake-up off; shut down (hard) after the
    test."""
    made: list[JobQueue] = []

    def make(worker: Any, **options: Any) -> JobQueue:
        options.setdefault("poll_interval", None)
        options.setdefault("wakeup", False)
        queue = jc.process_jobs("work", worker, **options)
        made.append(queue)
        return queue

    yield make
    for queue in made:
        await within(queue.shutdown("hard", quiet=True))


async def written(jc: JobCollection, job_id: Any) -> Any:
    """The checkpoint stored on a job (None: none)."""
    return (await stored(jc, job_id)).get("_private", {}).get(CHECKPOINT.split(".", 1)[1])


async def claimed(jc: JobCollection, **options: Any) -> Job:
    """A saved job of type "work", claimed outside any queue."""
    await jc.create_job("work").save()
    [job] = await jc.get_work("work", **options)
    return job


# --- when a checkpoint is written ---------------------------------------------------------------


async def test_a_checkpoint_is_written_with_the_next_heartbeat_at_no_extra_command(
    jc: JobCollection, make_queue: MakeQueue
) -> None:
    job_id = await jc.create_job("work").save()
    reached, finish = asyncio.Event(), asyncio.Event()
    costs: list[int] = []

    async def worker(job: Job) -> None:
        before = jc.commands
        assert await job.checkpoint({"page": 1}) is True
        costs.append(jc.commands - before)
        reached.set()
        await finish.wait()

    queue = make_queue(worker)
    queue.trigger()
    await within(reached.wait())
    assert costs == [0]  # recorded, not written
    assert await written(jc, job_id) is None
    before = jc.commands
    assert await within(queue.heartbeat_now()) == 1
    with_checkpoint = jc.commands - before
    assert await written(jc, job_id) == {"page": 1}
    before = jc.commands
    assert await within(queue.heartbeat_now()) == 1  # nothing pending now
    assert jc.commands - before == with_checkpoint  # the checkpoint cost no command
    finish.set()
    await within(queue.drain())
    assert (await stored(jc, job_id))["status"] == "completed"
    assert await written(jc, job_id) is None  # a completion clears it


async def test_the_jobs_of_one_claim_have_their_checkpoints_in_one_renewal(
    jc: JobCollection, make_queue: MakeQueue
) -> None:
    """A claim of several jobs (payload) is renewed by one write however many of its jobs
    have a checkpoint pending: a bulk write of an update per job in place of one update of
    them all."""
    ids = await jc.save_jobs([jc.create_job("work", {"n": n}) for n in range(3)])
    reached, finish = asyncio.Event(), asyncio.Event()

    async def worker(jobs: list[Job]) -> None:
        for job in jobs[:2]:  # the third has none
            await job.checkpoint({"n": job.data["n"]})
        reached.set()
        await finish.wait()

    queue = make_queue(worker, payload=3)
    queue.trigger()
    await within(reached.wait())
    before = jc.commands
    assert await within(queue.heartbeat_now()) == 3
    with_checkpoints = jc.commands - before
    assert [await written(jc, job_id) for job_id in ids] == [{"n": 0}, {"n": 1}, None]
    before = jc.commands
    assert await within(queue.heartbeat_now()) == 3
    assert jc.commands - before == with_checkpoints
    finish.set()
    await within(queue.drain())


async def test_flush_writes_a_checkpoint_at_once(jc: JobCollection, make_queue: MakeQueue) -> None:
    job_id = await jc.create_job("work").save()
    seen: list[Any] = []

    async def worker(job: Job) -> None:
        seen.append(await job.checkpoint({"page": 2}, flush=True))
        seen.append(await written(jc, job.id))
        seen.append(job.checkpoint_state)

    queue = make_queue(worker)
    queue.trigger()
    await within(queue.drain())
    assert seen == [True, {"page": 2}, {"page": 2}]
    assert (await stored(jc, job_id))["status"] == "completed"


async def test_a_flushed_state_is_written_again_by_the_next_renewal(
    jc: JobCollection, make_queue: MakeQueue
) -> None:
    """A renewal that was in flight with an older state when a flush wrote a newer one may
    land after it: the next renewal writes the newer one again."""
    job_id = await jc.create_job("work").save()
    reached, finish = asyncio.Event(), asyncio.Event()

    async def worker(job: Job) -> None:
        await job.checkpoint({"page": 2}, flush=True)
        reached.set()
        await finish.wait()

    queue = make_queue(worker)
    queue.trigger()
    await within(reached.wait())
    older = {"$set": {CHECKPOINT: {"page": 1}}}  # as the late renewal would leave it
    await jc.collection.update_one({"_id": job_id}, older)
    assert await within(queue.heartbeat_now()) == 1
    assert await written(jc, job_id) == {"page": 2}
    finish.set()
    await within(queue.drain())


async def test_outside_a_queue_a_checkpoint_is_written_at_once(jc: JobCollection) -> None:
    job = await claimed(jc, work_timeout=60)
    lease = (await stored(jc, job.id))["expiresAfter"]
    assert await job.checkpoint(["a", 1, {"b": [True, None, 2.5]}]) is True
    assert await written(jc, job.id) == ["a", 1, {"b": [True, None, 2.5]}]
    assert (await stored(jc, job.id))["expiresAfter"] >= lease  # a heartbeat too


async def test_a_checkpoint_of_a_lost_claim_answers_false(
    jc: JobCollection, clock: ManualClock
) -> None:
    job = await claimed(jc, work_timeout=1)
    clock.advance(2)
    assert (await jc.run_server_pass()).expired == 1
    assert await job.checkpoint({"page": 1}) is False
    assert await written(jc, job.id) is None


# --- what the next attempt is handed ------------------------------------------------------------


@pytest.mark.parametrize("how", ["fail", "timeout", "release", "hard shutdown", "snooze"])
async def test_the_last_checkpoint_is_handed_to_the_next_attempt(
    jc: JobCollection, make_queue: MakeQueue, how: str
) -> None:
    job_id = await jc.create_job("work").retry(retries=2, wait=0).save()
    seen: list[Any] = []
    checkpointed = asyncio.Event()

    async def worker(job: Job) -> str | None:
        seen.append(job.checkpoint_state)
        if len(seen) > 1:
            return "resumed"
        await job.checkpoint({"page": 1}, flush=True)
        await job.checkpoint({"page": 2})  # pending: written by the write that ends the attempt
        checkpointed.set()
        if how == "fail":
            raise RuntimeError("boom")
        if how == "snooze":
            raise Snooze(0)
        if how == "release":
            assert await job.release()
            return None
        await asyncio.Event().wait()  # until timed out or cancelled
        return None

    queue = make_queue(worker, timeout=0.05 if how == "timeout" else None)
    queue.trigger()
    await within(checkpointed.wait())
    if how == "hard shutdown":
        await within(queue.shutdown("hard", quiet=True))
        queue = make_queue(worker)
    await jc.run_server_pass()  # promotes the retry, if the queue did not take it at once
    queue.trigger()
    [job] = await jc.wait_for([job_id], timeout=BOUND)
    assert seen == [None, {"page": 2}]  # page 2 was written only by the attempt's end
    assert job.doc.status == "completed"
    assert await written(jc, job_id) is None


async def test_after_a_lost_lease_the_last_checkpoint_written_is_handed_over(
    jc: JobCollection, make_queue: MakeQueue, clock: ManualClock
) -> None:
    job_id = await jc.create_job("work").retry(retries=1, wait=0).save()
    first, more, second = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def worker(job: Job) -> None:
        await job.checkpoint({"page": 1})
        first.set()
        await more.wait()
        await job.checkpoint({"page": 2})  # never written: the process "hangs" from here
        second.set()
        await asyncio.Event().wait()

    queue = make_queue(worker, work_timeout=3)
    queue.trigger()
    await within(first.wait())
    assert await within(queue.heartbeat_now()) == 1  # writes page 1
    more.set()
    await within(second.wait())
    clock.advance(4)  # no heartbeat since: the lease runs out
    assert (await jc.run_server_pass()).expired == 1
    [job] = await jc.get_work("work")  # the retry, claimed elsewhere
    assert job.id == job_id and job.checkpoint_state == {"page": 1}
    assert await within(queue.heartbeat_now()) == 0  # the first queue finds its claim lost
    assert await job.done() is True


async def test_a_repeat_starts_without_the_checkpoint_of_the_run_before(
    jc: JobCollection,
) -> None:
    await jc.create_job("work").repeat(repeats=1, wait=0).save()
    [job] = await jc.get_work("work")
    await job.checkpoint({"page": 9})
    assert await job.done() is True
    assert job.checkpoint_state is None
    await jc.run_server_pass()
    [repeat] = await jc.get_work("work")
    assert repeat.id != job.id and repeat.checkpoint_state is None


# --- refused states -----------------------------------------------------------------------------

NOT_STATES: list[Any] = [
    None,
    math.nan,
    math.inf,
    2**64,
    datetime(2026, 1, 1, tzinfo=UTC),
    ObjectId(),
    b"bytes",
    {"a.b": 1},
    {"$set": 1},
    {1: "x"},
    {"x": {1, 2}},
    [object()],
    "x" * 20_000,  # over the default 16 KiB
]


@pytest.mark.parametrize("bad", NOT_STATES, ids=lambda bad: f"{bad!r:.20}")
async def test_a_state_that_is_not_small_json_is_refused_naming_state(
    jc: JobCollection, bad: Any
) -> None:
    job = await claimed(jc)
    for flush in (False, True):
        with pytest.raises(InvalidArgument, match="state"):
            await job.checkpoint(bad, flush=flush)
    assert job.checkpoint_state is None
    assert await written(jc, job.id) is None


async def test_a_checkpoint_needs_a_claimed_job(jc: JobCollection) -> None:
    with pytest.raises(JobNotSaved):
        await jc.create_job("work").checkpoint({"page": 1})


async def test_the_state_is_taken_as_it_was_when_checkpointed(jc: JobCollection) -> None:
    job = await claimed(jc)
    state = {"pages": [1]}
    await job.checkpoint(state)
    state["pages"].append(2)  # changed afterwards: not what was checkpointed
    assert job.checkpoint_state == {"pages": [1]}
    assert await written(jc, job.id) == {"pages": [1]}


# --- iterate ------------------------------------------------------------------------------------


async def test_iterate_resumes_after_the_last_position_written(
    jc: JobCollection, make_queue: MakeQueue
) -> None:
    job_id = await jc.create_job("work").retry(retries=1, wait=0).save()
    done: list[int] = []

    async def worker(job: Job) -> None:
        async for item in job.iterate(range(10), every=3):
            if item == 7 and job.doc.retried == 1:
                raise RuntimeError("fails at item 7 on the first attempt")
            done.append(item)

    queue = make_queue(worker)
    queue.trigger()
    await within(queue.drain())
    await jc.run_server_pass()  # promotes the retry, if the queue did not take it at once
    queue.trigger()
    await jc.wait_for([job_id], timeout=BOUND)
    # Items 0-6 on the first attempt, position 6 written with its failure; then 6 again
    # (after the last position written), and 7-9.
    assert done == [0, 1, 2, 3, 4, 5, 6, 6, 7, 8, 9]
    assert set(done) == set(range(10))


async def test_iterate_over_an_async_iterable_checkpoints_at_the_end(jc: JobCollection) -> None:
    job = await claimed(jc)

    async def source() -> AsyncIterator[str]:
        for letter in "abcde":
            yield letter

    assert [item async for item in job.iterate(source(), every=2)] == list("abcde")
    assert await written(jc, job.id) == {"position": 5}
    assert [item async for item in job.iterate(source(), every=2)] == []  # all done


async def test_iterate_refuses_a_checkpoint_it_did_not_write(jc: JobCollection) -> None:
    job = await claimed(jc)
    await job.checkpoint({"page": 1})
    with pytest.raises(InvalidArgument, match="checkpoint_state"):
        async for _ in job.iterate([1, 2]):
            pass
    with pytest.raises(InvalidArgument, match="every"):
        async for _ in job.iterate([1, 2], every=0):
            pass


# --- sync workers -------------------------------------------------------------------------------


async def test_a_sync_worker_checkpoints_through_job_sync(
    jc: JobCollection, make_queue: MakeQueue
) -> None:
    job_id = await jc.create_job("work").save()
    reached, finish = threading.Event(), threading.Event()

    def worker(job: Job) -> None:
        assert job.sync.checkpoint({"row": 41}) is True
        reached.set()
        assert finish.wait(BOUND)

    queue = make_queue(worker)
    queue.trigger()
    assert await asyncio.to_thread(reached.wait, BOUND)
    assert await within(queue.heartbeat_now()) == 1
    assert await written(jc, job_id) == {"row": 41}
    finish.set()
    await within(queue.drain())


# --- process workers ----------------------------------------------------------------------------


def in_a_child(job: JobView) -> dict[str, Any]:
    """A process worker (run in a child process): items 0-5 with a checkpointed position
    every two, failing at item 3 on the job's first attempt; then a state too large for the
    parent's limits, and a flush."""
    done = []
    for item in job.iterate(range(6), every=2):
        if item == 3 and job.attempt == 1:
            raise RuntimeError("fails at item 3 on the first attempt")
        done.append(item)
    try:
        job.checkpoint("x" * 20_000)
    except InvalidArgument as exc:
        refused = str(exc)
    return {"done": done, "refused": refused, "flushed": job.checkpoint({"end": 1}, flush=True)}


async def test_a_process_worker_checkpoints_through_its_pipe(jc: JobCollection) -> None:
    job_id = await jc.create_job("work").retry(retries=1, wait=0).save()
    queue = jc.process_jobs(
        "work", in_a_child, executor="process", poll_interval=None, wakeup=False
    )
    try:
        queue.trigger()
        await within_long(queue.drain())
        await jc.run_server_pass()  # promotes the retry, if the queue did not take it at once
        queue.trigger()
        [job] = await jc.wait_for([job_id], timeout=WAIT)
    finally:
        await queue.shutdown("soft", quiet=True)
    result = job.doc.result
    assert result["done"] == [2, 3, 4, 5]  # position 2 came back with the first failure
    assert "state" in result["refused"] and "16384" in result["refused"]
    assert result["flushed"] is True
    assert job.doc.status == "completed" and await written(jc, job_id) is None


def test_a_job_view_checkpoints_in_a_worker_call_only() -> None:
    view = JobView("id", "work", {}, 1)
    with pytest.raises(RuntimeError, match="process worker"):
        view.checkpoint({"page": 1})


# --- a worker process killed mid-way ------------------------------------------------------------


@pytest.mark.local_only
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
async def test_a_worker_process_killed_mid_way_resumes_from_its_last_checkpoint(
    shared: tuple[str, JobCollection], wire_uri: str, tmp_path: Path
) -> None:
    """A CLI worker process doing a job's eight items (`wire_workers.stepped`: one file per
    item, its position checkpointed after each) is SIGKILLed after doing item 4, before its
    position moved past it; once the lease (1 s) runs out the job is retried, and another
    process resumes at item 4: items 0-3 are done once, item 4 twice (the work of the
    attempt that was killed, whose position was not stored), and every item's file is
    there once."""
    database, jc = shared
    jc.promote(0.1)
    await jc.start_job_server()
    job_id = await jc.create_job("steps", {"count": 8, "stop_at": 4}).retry(3, wait=0).save()
    lines = f"did {job_id} "
    options = ("--type", "steps", "--work-timeout", "1")
    async with cli_worker(tmp_path, wire_uri, database, "wire_workers:stepped", *options) as doomed:
        await doomed.expect(f"{lines}4")
        assert await written(jc, job_id) == {"position": 4}
        doomed.process.send_signal(signal.SIGKILL)
        assert await doomed.exited() == -signal.SIGKILL
    async with cli_worker(
        tmp_path, wire_uri, database, "wire_workers:stepped", *options
    ) as rescuer:
        await collect([rescuer], (lines,), 4)
        [job] = await jc.wait_for([job_id], timeout=60)
        await stop(rescuer, "worker stopped")

    def done(process: Process) -> list[int]:
        return [int(line.split()[-1]) for line in process.lines if line.startswith(lines)]

    assert done(doomed) == [0, 1, 2, 3, 4]
    assert done(rescuer) == [4, 5, 6, 7]
    files = await asyncio.to_thread(lambda: sorted(p.name for p in tmp_path.iterdir()))
    assert [name for name in files if name.startswith("item-")] == [
        f"item-{job_id}-{i}" for i in range(8)
    ]
    assert job.doc.status == "completed" and job.doc.retried == 2
    assert await written(jc, job_id) is None


async def test_a_sync_worker_iterates_through_job_sync(
    jc: JobCollection, make_queue: MakeQueue
) -> None:
    job_id = await jc.create_job("work").retry(retries=1, wait=0).save()
    done: list[str] = []

    def worker(job: Job) -> None:
        for letter in job.sync.iterate("abcdef", every=2, flush=True):
            if letter == "e" and job.doc.retried == 1:
                raise RuntimeError("fails at e on the first attempt")
            done.append(letter)

    queue = make_queue(worker)
    queue.trigger()
    await within(queue.drain())
    await jc.run_server_pass()  # promotes the retry, if the queue did not take it at once
    queue.trigger()
    await jc.wait_for([job_id], timeout=BOUND)
    assert done == list("abcd") + list("ef")  # position 4 was stored at once (flush)


# --- a remote worker's checkpoints, as the server sees them -------------------------------------


@pytest.mark.local_only  # it makes its own remote client, to send what the Python API refuses
@pytest.mark.parametrize(
    "bad",
    [datetime(2026, 1, 1, tzinfo=UTC), ObjectId(), {"at": b"bytes"}, "x" * 20_000],
    ids=["datetime", "ObjectId", "bytes", "too large"],
)
async def test_the_server_refuses_a_remote_workers_bad_checkpoint(
    make_jc: MakeJC, clock: ManualClock, bad: Any
) -> None:
    local = await make_jc()
    async with (
        serve_jc(local) as url,
        RemoteJobCollection(url, token="admin-token", clock=clock) as remote,
    ):
        await remote.create_job("work").save()
        [job] = await remote.get_work("work")
        assert job.id is not None and job.doc.run_id is not None
        for op in (
            ops.Heartbeat([job.id], job.doc.run_id, checkpoints=[(job.id, bad)]),
            ops.Release([job.id], job.doc.run_id, checkpoints=[(job.id, bad)]),
            ops.Fail(job.id, job.doc.run_id, {"value": "x"}, checkpoint=bad),
        ):
            with pytest.raises(InvalidArgument, match=r"checkpoint|state"):
                await remote.service.run(op)
        raw = await stored(local, job.id)
        assert raw["status"] == "running" and await written(local, job.id) is None
        assert await job.checkpoint({"page": 1}) is True  # no queue: written at once
        assert await written(local, job.id) == {"page": 1}
