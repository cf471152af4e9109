"""The worker that ran a job (`job.worker`, JobDoc.worker, `_private.jobcollectionWorker`):
the claim records it in its one update (no command more: test_round_trips.py counts them), a
finished job keeps it, the next claim replaces it, a save never stores a given one and a rerun
starts without; a job stored by job-collection v1.x (or by an earlier version) has none. On
both sides: a remote queue sends its registry id, host and pid with getWork, and the server
adds the user and `remote` (and never sends the record back: its clients read None). A DDP
session's record: test_ddp.py."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import pytest
from pymongo.errors import WriteError

from conftest import WrapJC
from helpers import Yielding, stored, stored_job
from jobcollection import InvalidArgument, Job, JobCollection, JobQueue, JobWorker, ManualClock
from jobcollection.model.document import WORKER
from jobcollection.remote import RemoteJobCollection
from remote_helpers import serve_jc

pytestmark = pytest.mark.both_sides

T = TypeVar("T")
KEY = WORKER.split(".", 1)[1]
HOST = socket.gethostname()


async def within(awaitable: Awaitable[T]) -> T:
    async with asyncio.timeout(5.0):
        return await awaitable


MakeQueue = Callable[..., JobQueue]


@pytest.fixture
async def make_queue(jc: JobCollection) -> AsyncIterator[MakeQueue]:
    """jc.process_jobs on type "work", polling and wake-up off; shut down after the test."""
    made: list[JobQueue] = []

    def make(worker: Any, **options: Any) -> JobQueue:
        queue = jc.process_jobs("work", worker, poll_interval=None, wakeup=False, **options)
        made.append(queue)
        return queue

    yield make
    for queue in made:
        await within(queue.shutdown("hard", quiet=True))


def remote(jc: Any) -> bool:
    return hasattr(jc, "remote")


def expected(jc: Any, queue: JobQueue | None) -> JobWorker:
    """What a claim by this queue (None: a bare get_work) of `jc`'s side records."""
    if queue is None:
        if remote(jc):  # a remote get_work says nothing of itself: the server knows its user
            return JobWorker(user="tester", remote=True)
        return JobWorker(host=HOST, pid=os.getpid())
    mine = JobWorker(id=queue.worker_id, host=HOST, pid=os.getpid())
    return mine.model_copy(update={"user": "tester", "remote": True}) if remote(jc) else mine


def handed(jc: Any, queue: JobQueue | None) -> JobWorker | None:
    """What a claimed job's copy says of its worker: the record locally; nothing through the
    remote API, which keeps it on the server."""
    return None if remote(jc) else expected(jc, queue)


async def recorded(jc: Any, job_id: Any) -> JobWorker | None:
    """The record stored on a job, read on the server's side."""
    job = await getattr(jc, "local", jc).get_job(job_id)
    assert job is not None
    return job.worker  # type: ignore[no-any-return]


async def test_a_queue_records_itself_and_a_finished_job_keeps_it(
    jc: JobCollection, make_queue: MakeQueue
) -> None:
    job_id = await jc.create_job("work").save()
    reached, finish = asyncio.Event(), asyncio.Event()
    seen: list[JobWorker | None] = []

    async def worker(job: Job) -> None:
        seen.append(job.worker)
        reached.set()
        await finish.wait()

    queue = make_queue(worker)
    queue.trigger()
    await within(reached.wait())
    await within(queue.announce())  # the registry lists it with the job it holds
    assert seen == [handed(jc, queue)]  # the claimed job carries it (locally)
    [live] = [w for w in await jc.workers() if w.id == queue.worker_id]
    assert job_id in live.held
    finish.set()
    await within(queue.drain())
    job = await jc.get_job(job_id)
    assert job is not None and job.doc.status == "completed"
    assert await recorded(jc, job_id) == expected(jc, queue)
    assert (await stored(jc, job_id))["_private"][KEY] == expected(jc, queue).stored()


async def test_a_retry_is_recorded_by_the_queue_that_claims_it(
    jc: JobCollection, make_queue: MakeQueue, clock: ManualClock
) -> None:
    job_id = await jc.create_job("work").retry(retries=1, wait=10).save()

    async def failing(job: Job) -> None:
        raise ValueError("boom")

    first = make_queue(failing)
    first.trigger()
    await within(first.drain())
    failed = await jc.get_job(job_id)
    assert failed is not None and failed.doc.status == "waiting"  # to be retried
    assert await recorded(jc, job_id) == expected(jc, first)  # kept after the attempt
    clock.advance(11)
    await jc.run_server_pass()

    async def working(job: Job) -> None:
        return None

    second = make_queue(working)
    second.trigger()
    await within(second.drain())
    done = await jc.get_job(job_id)
    assert done is not None and done.doc.status == "completed" and done.doc.retried == 2
    assert await recorded(jc, job_id) == expected(jc, second) != expected(jc, first)


async def test_a_bare_get_work_records_the_process_or_the_user(jc: JobCollection) -> None:
    job_id = await jc.create_job("work").save()
    [job] = await jc.get_work("work")
    assert job.worker == handed(jc, None)
    await job.fail("no", fatal=True)
    failed = await jc.get_job(job_id)
    assert failed is not None and failed.doc.status == "failed"
    assert await recorded(jc, job_id) == expected(jc, None)


async def test_a_save_never_stores_a_given_worker_and_a_rerun_starts_without(
    jc: JobCollection,
) -> None:
    forged = {KEY: {"id": "q", "host": "elsewhere", "pid": 1}}
    job_id = await jc.create_job({"type": "work", "_private": forged}).save()
    assert KEY not in (await stored(jc, job_id)).get("_private", {})
    saved = await jc.get_job(job_id)
    assert saved is not None and saved.worker is None
    [claimed] = await jc.get_work("work")
    await claimed.done()
    assert (await stored(jc, job_id))["_private"][KEY] == expected(jc, None).stored()
    done = await jc.get_job(job_id)
    assert done is not None
    rerun_id = await done.rerun()
    rerun = await jc.get_job(rerun_id)
    assert rerun is not None and rerun.worker is None
    assert KEY not in (await stored(jc, rerun_id)).get("_private", {})


async def test_a_job_stored_by_v1_has_no_worker_until_claimed(
    jc: JobCollection, clock: ManualClock
) -> None:
    local: Any = getattr(jc, "local", jc)
    finished = stored_job(clock.now(), type="work", status="completed", retried=1)
    pending = stored_job(clock.now(), type="work")
    await local.collection.insert_many([finished, pending])
    old = await jc.get_job(finished["_id"])
    assert old is not None and old.worker is None
    [claimed] = await jc.get_work("work")
    assert claimed.id == pending["_id"] and claimed.worker == handed(jc, None)
    assert await recorded(jc, pending["_id"]) == expected(jc, None)


@pytest.mark.local_only("a remote client against a server of an earlier version")
async def test_a_remote_queue_claims_from_a_server_that_does_not_know_the_option(
    jc: JobCollection,
) -> None:
    """A server of an earlier version refuses getWork's `worker` (an unknown option): the
    client claims again without it, and from then on sends none."""
    served = await jc.create_job("work").save(), await jc.create_job("work").save()
    call = jc.call
    refused: list[Any] = []

    async def earlier_version(method: str, *params: Any, **options: Any) -> Any:
        if method == "getWork" and len(params) > 1 and "worker" in params[1]:
            refused.append(params[1]["worker"])
            raise InvalidArgument("options", "unknown keys ['worker']")
        return await call(method, *params, **options)

    jc.call = earlier_version  # type: ignore[method-assign]
    async with serve_jc(jc) as url, RemoteJobCollection(url, token="admin-token") as remote:
        done: list[Any] = []

        async def worker(job: Job) -> None:
            done.append(job.id)

        queue = remote.process_jobs("work", worker, poll_interval=None, wakeup=False)
        try:
            queue.trigger()
            await within(queue.drain())
            queue.trigger()
            await within(queue.drain())
        finally:
            await within(queue.shutdown("hard", quiet=True))
    assert sorted(done) == sorted(served)
    assert len(refused) == 1  # asked once, then never again
    for job_id in served:
        job = await jc.get_job(job_id)
        assert job is not None and job.worker == JobWorker(user="tester", remote=True)


class NoRoomForTheRecord(Yielding):
    """A collection whose server refuses to write the worker record on one job, as MongoDB
    refuses to create a field inside a `_private` another application stored as null."""

    # `refused_id` and `refusals` are set by the test (on the shared state of every view).

    def _refuse(self, query: Any, update: Any) -> None:
        """Refuse an update writing the record that reaches that job: one naming it, or one
        by type alone (the job is the first a claim takes)."""
        named = query.get("_id")
        ids = named["$in"] if isinstance(named, dict) else [named]
        reaches = named is None or self.refused_id in ids
        if WORKER in update.get("$set", {}) and reaches:
            self.refusals += 1
            raise WriteError(f"Cannot create field '{KEY}' in element {{_private: null}}", 28)

    async def find_one_and_update(self, query: Any, update: Any, *args: Any, **kw: Any) -> Any:
        self._refuse(query, update)
        return await self._inner.find_one_and_update(query, update, *args, **kw)

    async def update_many(self, query: Any, update: Any, *args: Any, **kw: Any) -> Any:
        self._refuse(query, update)
        return await self._inner.update_many(query, update, *args, **kw)


@pytest.mark.local_only("the claim's fallback for a document that cannot take the record")
@pytest.mark.parametrize("max_jobs", [1, 3])
async def test_a_job_that_cannot_take_the_record_is_claimed_without_it(
    make_wrapped_jc: WrapJC, clock: ManualClock, max_jobs: int
) -> None:
    """A claim a document refuses for the worker record alone claims it without the record
    (no longer failing it as a poison document), and the others with theirs."""
    local = await make_wrapped_jc(NoRoomForTheRecord)
    odd = stored_job(clock.now(), type="work", _private=None, priority=-1)  # claimed first
    await local.collection.insert_one(odd)
    local.collection.refused_id = odd["_id"]
    local.collection.refusals = 0
    plain = await local.create_job("work").save()
    jobs = await local.get_work("work", max_jobs=max_jobs)
    claimed = {job.id: job for job in jobs}
    assert odd["_id"] in claimed and claimed[odd["_id"]].doc.status == "running"
    assert claimed[odd["_id"]].worker is None
    if max_jobs > 1:
        assert claimed[plain].worker == JobWorker(host=HOST, pid=os.getpid())
    assert local.collection.refusals >= 1  # the fallback ran
    for job in jobs:
        assert await job.done() is True
