"""A JobQueue never leaves a job it was handed behind: every job ends completed, failed,
retried or released, whatever happens to the report's write.

- a report whose write raises is retried while the claim's lease lasts; after that the job
  server takes the job back (every claim a queue makes carries a lease);
- a report retrying cannot cure (a result too large to store, a write the server refuses)
  fails the job instead, with the reason; so does a worker whose exception cannot be printed;
- a normal shutdown releases the jobs it has not started, without using an attempt.

Retry delays are patched to zero: no test waits for time to pass.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import pytest
from pymongo.errors import BulkWriteError

import jobcollection.api.queue.reports
from faults import Faults, FaultyCollection
from helpers import Yielding, messages, stored
from jobcollection import DatabaseError, Job, JobCollection, JobQueue, Limits, ManualClock

pytestmark = pytest.mark.both_sides

T = TypeVar("T")


async def within(awaitable: Awaitable[T]) -> T:
    return await asyncio.wait_for(awaitable, 10.0)


@pytest.fixture(autouse=True)
def no_retry_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobcollection.api.queue.reports, "retry_delay", lambda attempt: 0.0)


Made = tuple[JobCollection, Faults]


@pytest.fixture
async def faulty_jc(database: Any, clock: ManualClock) -> AsyncIterator[Made]:
    faulty = FaultyCollection(database["queue.jobs"])
    jc = JobCollection(faulty, clock=clock)
    await jc.start_job_server()
    yield jc, faulty.faults
    await jc.close()


MakeQueue = Callable[..., JobQueue]


@pytest.fixture
async def make_queue(faulty_jc: Made) -> AsyncIterator[MakeQueue]:
    jc, _ = faulty_jc
    made: list[JobQueue] = []
    errors: list[Exception] = []

    def make(worker: Any, **options: Any) -> JobQueue:
        options.setdefault("poll_interval", None)
        options.setdefault("wakeup", False)
        options.setdefault("error_callback", errors.append)
        queue = jc.process_jobs("work", worker, **options)
        queue.errors = errors  # type: ignore[attr-defined]
        made.append(queue)
        return queue

    yield make
    for queue in made:
        await within(queue.shutdown("hard", quiet=True))


async def noop(job: Job) -> None:
    return None


async def status(jc: JobCollection, job_id: Any) -> str:
    return str((await stored(jc, job_id))["status"])


# --- reports whose write raises ------------------------------------------------------------


@pytest.mark.parametrize("fault", ["fail_before", "fail_after"])
async def test_a_completion_whose_write_raises_is_retried_and_its_follow_ups_happen(
    faulty_jc: Made, make_queue: MakeQueue, fault: str
) -> None:
    jc, faults = faulty_jc
    job = jc.create_job("work").repeat(1, wait=60)
    job_id = await job.save()
    dependent_id = await jc.create_job("next").depends([job]).save()
    getattr(faults, fault)("bulk_write", times=2)
    queue = make_queue(noop)
    await within(queue.drain())
    assert faults.pending == 0
    await jc.run_server_pass()  # finishes any follow-ups the second fault held up
    assert await status(jc, job_id) == "completed"
    assert await status(jc, dependent_id) == "ready"
    assert await jc.collection.count_documents({"type": "work"}) == 2  # the job, one repeat
    assert queue.errors == []  # type: ignore[attr-defined]


async def test_a_report_is_given_up_only_when_the_lease_ran_out_and_the_server_takes_over(
    faulty_jc: Made, make_queue: MakeQueue, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    jc, faults = faulty_jc
    retried_thrice = asyncio.Event()

    def delay(attempt: int) -> float:
        if attempt > 3:
            retried_thrice.set()
        return 0.0

    monkeypatch.setattr(jobcollection.api.queue.reports, "retry_delay", delay)
    job_id = await jc.create_job("work").retry(1, wait=0).save()
    finish = asyncio.Event()

    async def worker(job: Job) -> None:
        await finish.wait()

    queue = make_queue(worker, work_timeout=30)
    await within(queue.settle())
    faults.fail_before("bulk_write", times=10_000)  # the report's writes keep failing
    finish.set()
    await within(retried_thrice.wait())  # it retries ...
    assert not queue.idle()
    clock.advance(31)  # ... until the lease is over
    await within(queue.drain())
    assert [type(e) for e in queue.errors] == [DatabaseError]  # type: ignore[attr-defined]
    faults.clear()
    assert (await jc.run_server_pass()).expired == 1  # the job server takes it back
    doc = await stored(jc, job_id)
    assert doc["status"] == "ready"  # it had a retry left: it runs again
    assert doc["failures"][-1]["value"] == "Failed for exceeding worker set workTimeout"


async def test_every_claim_of_a_queue_carries_a_lease(
    faulty_jc: Made, make_queue: MakeQueue
) -> None:
    jc, _ = faulty_jc
    job_id = await jc.create_job("work").save()
    finish = asyncio.Event()

    async def worker(job: Job) -> None:
        await finish.wait()

    queue = make_queue(worker)  # no work_timeout given
    await within(queue.settle())
    doc = await stored(jc, job_id)
    assert doc["workTimeout"] == jobcollection.api.queue.DEFAULT_WORK_TIMEOUT * 1000
    assert doc["expiresAfter"] is not None
    finish.set()
    await within(queue.drain())
    assert await status(jc, job_id) == "completed"


# --- reports that retrying cannot cure -------------------------------------------------------


async def test_a_result_too_large_to_store_fails_the_job_with_the_reason(
    database: Any, clock: ManualClock
) -> None:
    jc = JobCollection(database["queue.jobs"], clock=clock, limits=Limits(max_data_bytes=1000))
    await jc.start_job_server()
    job_id = await jc.create_job("work").save()

    async def worker(job: Job) -> dict[str, str]:
        return {"blob": "x" * 5000}

    queue = jc.process_jobs("work", worker, poll_interval=None, wakeup=False)
    await within(queue.drain())
    await queue.shutdown("soft")
    await jc.close()
    doc = await stored(jc, job_id)
    assert doc["status"] == "failed"
    assert "result" in doc["failures"][-1]["value"] and "limit" in doc["failures"][-1]["value"]


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


async def test_a_worker_exception_whose_str_raises_still_fails_the_job(
    faulty_jc: Made, make_queue: MakeQueue
) -> None:
    jc, _ = faulty_jc
    job_id = await jc.create_job("work").save()

    async def worker(job: Job) -> None:
        raise Unprintable

    queue = make_queue(worker)
    await within(queue.drain())
    doc = await stored(jc, job_id)
    assert doc["status"] == "failed"
    assert doc["failures"][-1]["type"] == "Unprintable"
    assert "str() raised" in doc["failures"][-1]["value"]


class RefusesCompletion(Yielding):
    """A server that refuses, once, the write completing one job (as a schema validator or
    the 16 MiB limit would), applying the other writes of the same bulk."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.victim: Any = None

    async def bulk_write(self, requests: list[Any], **kwargs: Any) -> Any:
        index = next(
            (
                i
                for i, r in enumerate(requests)
                if r._filter.get("_id") == self.victim and "completed" in str(r._doc)
            ),
            None,
        )
        if index is None:
            return await self._inner.bulk_write(requests, **kwargs)
        self.victim = None
        others = [r for i, r in enumerate(requests) if i != index]
        matched = (await self._inner.bulk_write(others, **kwargs)).matched_count if others else 0
        error = {"index": index, "code": 121, "errmsg": "Document failed validation"}
        raise BulkWriteError(
            {"writeErrors": [error], "writeConcernErrors": [], "nMatched": matched}
        )


async def test_one_refused_report_fails_its_job_and_the_bundle_it_came_in_is_written(
    database: Any, clock: ManualClock
) -> None:
    collection = RefusesCompletion(database["queue.jobs"])
    jc = JobCollection(collection, clock=clock)
    await jc.start_job_server()
    ids = [await jc.create_job("work", {"n": n}).save() for n in range(3)]
    collection.victim = ids[1]
    queue = jc.process_jobs("work", noop, concurrency=3, poll_interval=None, wakeup=False)
    await within(queue.drain())
    await queue.shutdown("soft")
    await jc.close()
    assert [await status(jc, i) for i in ids] == ["completed", "failed", "completed"]
    assert "Document failed validation" in (await stored(jc, ids[1]))["failures"][-1]["value"]


# --- shutdown ------------------------------------------------------------------------------


async def test_a_normal_shutdown_releases_queued_jobs_even_when_the_first_write_is_refused(
    faulty_jc: Made, make_queue: MakeQueue
) -> None:
    jc, faults = faulty_jc
    ids = [await jc.create_job("work", {"n": n}).save() for n in range(3)]
    finish = asyncio.Event()

    async def worker(job: Job) -> None:
        await finish.wait()

    queue = make_queue(worker, prefetch=2)
    await within(queue.settle())
    assert (queue.running(), queue.length()) == (1, 2)
    faults.fail_before("update_many", when=lambda op, args: "Job Released" in str(args))
    stopping = asyncio.create_task(queue.shutdown("normal"))
    finish.set()
    await within(stopping)
    assert faults.pending == 0
    statuses = sorted([await status(jc, i) for i in ids])
    assert statuses == ["completed", "ready", "ready"]
    for job_id in ids:
        doc = await stored(jc, job_id)
        if doc["status"] == "ready":
            assert (doc["retries"], doc["retried"]) == (1, 0)  # no attempt used
            assert messages(doc).count("Job Released") == 1


class HoldsReplies(Yielding):
    """A server whose bulk writes are applied at once but answered only when released."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.applied = asyncio.Event()
        self.answer = asyncio.Event()

    async def bulk_write(self, requests: list[Any], **kwargs: Any) -> Any:
        result = await self._inner.bulk_write(requests, **kwargs)
        self.applied.set()
        await self.answer.wait()
        return result


async def test_a_heartbeat_during_a_report_does_not_call_the_claim_lost(
    database: Any, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    collection = HoldsReplies(database["queue.jobs"])
    jc = JobCollection(collection, clock=clock)
    await jc.start_job_server()
    await jc.create_job("work").save()
    queue = jc.process_jobs("work", noop, poll_interval=None, wakeup=False)
    await within(collection.applied.wait())  # completed, the reply not yet in
    with caplog.at_level(logging.WARNING, logger="jobcollection.queue"):
        assert await queue.heartbeat_now() == 0
    assert "lost its claim" not in caplog.text
    collection.answer.set()
    await within(queue.shutdown("soft"))
    await jc.close()
