"""Faults between a worker and the database: refused writes, lost replies, delays, cut-offs.

Each JobCollection here talks to the shared collection through its own FaultyCollection, so
one "process" can lose a reply or its whole connection while the others carry on. The
properties: a lost reply never doubles a claim or a repeat; a report repeated after a lost
reply changes nothing more than the first one did, and finishes the follow-ups (repeat,
dependents) the fault interrupted; a network error alone never marks a job failed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from pymongo.errors import AutoReconnect, BulkWriteError

from conftest import SHARDED
from faults import Faults, FaultyCollection
from helpers import Yielding, claim_one, clears_follow_ups
from jobcollection import DatabaseError, InvalidArgument, Job, JobCollection, JobDoc, ManualClock
from jobcollection.rules.transitions import repeat_job_id

Doc = dict[str, Any]
MakeWorker = Callable[..., Awaitable[tuple[JobCollection, Faults]]]


@pytest.fixture
async def make_worker(database: Any, clock: ManualClock) -> AsyncIterator[MakeWorker]:
    """A started JobCollection over its own faulty connection to the shared collection."""
    made: list[JobCollection] = []

    async def make(*, started: bool = True) -> tuple[JobCollection, Faults]:
        faulty = FaultyCollection(database["queue.jobs"])
        jc = JobCollection(faulty, clock=clock)
        if started:
            await jc.start_job_server()
        made.append(jc)
        return jc, faulty.faults

    yield make
    for jc in made:
        await jc.close()


@pytest.fixture
def raw(database: Any) -> Any:
    """The shared collection without faults, for assertions."""
    return database["queue.jobs"]


async def stored(raw: Any, job_id: Any) -> Doc:
    doc = await raw.find_one({"_id": job_id})
    assert doc is not None
    return dict(doc)


async def everything(raw: Any) -> list[Doc]:
    return [dict(d) for d in await raw.find({}).sort([("_id", 1)]).to_list(None)]


def messages(doc: Doc) -> list[str]:
    return [e["message"] for e in doc.get("log", [])]


CLAIMS = ("find_one_and_update", "update_many")
"""A claim of one job is a find-and-modify; of several, an update_many."""


def is_claim(op: str, args: tuple[Any, ...]) -> bool:
    return op in CLAIMS and args[1].get("$set", {}).get("status") == "running"


def is_read_back(op: str, args: tuple[Any, ...]) -> bool:
    return op == "find" and args[0].get("runId") is not None


# --- the wrapper itself ----------------------------------------------------------------------


async def test_fail_before_write_reaches_nothing(make_worker: MakeWorker, raw: Any) -> None:
    jc, faults = await make_worker()
    job_id = await jc.create_job("t").save()
    before = await stored(raw, job_id)
    faults.fail_before("update_many")
    with pytest.raises(DatabaseError) as raised:
        await jc.pause_jobs([job_id])
    assert isinstance(raised.value.__cause__, AutoReconnect)
    assert await stored(raw, job_id) == before
    assert faults.pending == 0
    assert await jc.pause_jobs([job_id]) is True


async def test_fail_after_write_applies_it_and_loses_the_reply(
    make_worker: MakeWorker, raw: Any
) -> None:
    jc, faults = await make_worker()
    job_id = await jc.create_job("t").save()
    faults.fail_after("update_many")
    with pytest.raises(DatabaseError):
        await jc.pause_jobs([job_id])
    assert (await stored(raw, job_id))["status"] == "paused"


async def test_delay_holds_a_call_until_released(make_worker: MakeWorker, raw: Any) -> None:
    jc, faults = await make_worker()
    job_id = await jc.create_job("t").save()
    gate = faults.delay("update_many")
    pausing = asyncio.create_task(jc.pause_jobs([job_id]))
    await gate.wait_reached()
    assert (await stored(raw, job_id))["status"] == "ready"
    gate.release()
    assert await pausing is True
    assert (await stored(raw, job_id))["status"] == "paused"


async def test_a_cut_off_worker_fails_every_call_and_the_others_carry_on(
    make_worker: MakeWorker, raw: Any
) -> None:
    cut, cut_faults = await make_worker()
    other, _ = await make_worker()
    ids = [await other.create_job("t", {"i": i}).save() for i in range(3)]
    cut_faults.cut_off()
    for call in (cut.get_work("t"), cut.get_job(ids[0]), cut.create_job("t").save()):
        with pytest.raises(DatabaseError):
            await call
    for job in await other.get_work("t", max_jobs=3):
        assert await job.done() is True
    assert {d["status"] for d in await everything(raw)} == {"completed"}
    cut_faults.restore()
    assert await cut.get_job(ids[0]) is not None


# --- claims ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lose", "max_jobs"), [("claim reply", 1), ("claim reply", 2), ("read back", 2)]
)
async def test_a_lost_claim_reply_is_handed_over_by_the_next_get_work(
    make_worker: MakeWorker, raw: Any, lose: str, max_jobs: int
) -> None:
    worker, faults = await make_worker()
    other, _ = await make_worker()
    job_id = await worker.create_job("t").save()
    if lose == "claim reply":
        faults.fail_after(CLAIMS, when=is_claim)
    else:
        faults.fail_before("find", when=is_read_back)
    with pytest.raises(DatabaseError):
        await worker.get_work("t", max_jobs=max_jobs)
    doc = await stored(raw, job_id)
    assert doc["status"] == "running" and doc["runId"] is not None
    assert await other.get_work("t") == []  # nobody else can claim it
    job = await claim_one(worker)
    assert (job.id, job.doc.run_id) == (job_id, doc["runId"])
    assert await job.done() is True
    doc = await stored(raw, job_id)
    assert doc["status"] == "completed"
    assert messages(doc).count("Job Running") == 1
    assert doc["retried"] == 1
    assert await worker.get_work("t") == []  # handed over once


async def test_a_handed_over_claim_gets_a_fresh_lease_and_is_never_failed(
    make_worker: MakeWorker, raw: Any, clock: ManualClock
) -> None:
    worker, faults = await make_worker()
    server, _ = await make_worker()
    job_id = await worker.create_job("t").save()  # one attempt only: no retries
    faults.fail_after(CLAIMS, when=is_claim)
    with pytest.raises(DatabaseError):
        await worker.get_work("t", work_timeout=30)
    clock.advance(20)
    job = await claim_one(worker, work_timeout=30)
    clock.advance(25)  # past the first lease, within the renewed one
    assert (await server.run_server_pass()).expired == 0
    assert await job.done() is True
    doc = await stored(raw, job_id)
    assert doc["status"] == "completed" and "failures" not in doc


async def test_a_handed_over_claim_only_goes_to_a_caller_of_its_type(
    make_worker: MakeWorker, raw: Any
) -> None:
    worker, faults = await make_worker()
    job_id = await worker.create_job("a").save()
    faults.fail_after(CLAIMS, when=is_claim)
    with pytest.raises(DatabaseError):
        await worker.get_work(["a", "b"])
    assert await worker.get_work("b") == []
    job = await claim_one(worker, "a")
    assert job.id == job_id


async def test_the_claim_of_a_worker_that_dies_is_failed_at_lease_expiry_and_retried(
    make_worker: MakeWorker, raw: Any, clock: ManualClock
) -> None:
    dying, faults = await make_worker()
    server, _ = await make_worker()
    job_id = await server.create_job("t").retry(1, wait=0).save()
    faults.fail_after(CLAIMS, when=is_claim)
    with pytest.raises(DatabaseError):
        await dying.get_work("t", work_timeout=30)
    lost_run = (await stored(raw, job_id))["runId"]
    await dying.close()  # the process is gone; it never asks again
    clock.advance(31)
    assert (await server.run_server_pass()).expired == 1
    doc = await stored(raw, job_id)
    assert doc["status"] == "ready"
    assert [f["runId"] for f in doc["failures"]] == [lost_run]
    job = await claim_one(server)
    assert job.doc.run_id != lost_run
    late = Job(server, JobDoc.from_mongo({**doc, "status": "running", "runId": lost_run}))
    assert await late.done() is False  # the lost claim can never finish the job
    assert await job.done() is True
    assert (await stored(raw, job_id))["status"] == "completed"


async def test_shutdown_fails_the_jobs_of_a_claim_whose_reply_was_lost(
    make_worker: MakeWorker, raw: Any
) -> None:
    worker, faults = await make_worker()
    job_id = await worker.create_job("t").retry(1, wait=0).save()
    faults.fail_after(CLAIMS, when=is_claim)
    with pytest.raises(DatabaseError):
        await worker.get_work("t")
    assert await worker.shutdown_job_server(timeout=0) is True
    doc = await stored(raw, job_id)
    assert doc["status"] == "waiting"
    assert doc["failures"][0]["value"] == "Running at Job Server shutdown."


# --- done and fail ---------------------------------------------------------------------------


async def save_with_dependent(jc: JobCollection) -> tuple[Any, Any]:
    job = jc.create_job("t").repeat(1, wait=0)
    job_id = await job.save()
    dependent_id = await jc.create_job("d").depends([job]).save()
    return job_id, dependent_id


async def check_done_once(raw: Any, job_id: Any, dependent_id: Any) -> None:
    docs = await everything(raw)
    repeats = [d for d in docs if d["type"] == "t" and d["_id"] != job_id]
    assert len(repeats) == 1, repeats
    assert repeats[0]["log"][0]["data"]["previousJob"]["id"] == job_id
    dependent = await stored(raw, dependent_id)
    assert dependent["depends"] == [] and dependent["resolved"] == [job_id]
    assert messages(dependent).count("Dependency resolved") == 1
    assert dependent["status"] == "ready"
    done = await stored(raw, job_id)
    assert done["status"] == "completed"
    assert messages(done).count("Job Completed") == 1


async def test_a_done_retried_after_a_lost_reply_answers_true_and_finishes_its_follow_ups(
    make_worker: MakeWorker, raw: Any
) -> None:
    jc, faults = await make_worker()
    job_id, dependent_id = await save_with_dependent(jc)
    job = await claim_one(jc)
    faults.fail_after("bulk_write")  # the completion is written; its reply is lost
    with pytest.raises(DatabaseError):
        await job.done({"n": 1})
    assert faults.pending == 0
    # The same call again: it was applied, so it answers True and finishes the follow-ups.
    assert await Job(jc, job.doc).done({"n": 1}) is True
    await check_done_once(raw, job_id, dependent_id)
    before = await everything(raw)
    assert await Job(jc, job.doc).done({"n": 1}) is True
    assert await everything(raw) == before


@pytest.mark.parametrize(
    "fault",
    [
        "refused repeat insert",
        "lost reply of the repeat insert",
        "refused dependency resolution",
        "refused promotion of the dependent",
        "refused clearing of the mark",
    ],
)
async def test_a_fault_in_the_follow_ups_of_done_delays_them_to_the_next_pass(
    make_worker: MakeWorker, raw: Any, fault: str
) -> None:
    jc, faults = await make_worker()
    job_id, dependent_id = await save_with_dependent(jc)
    job = await claim_one(jc)
    follow_ups = "_private.jobcollectionFollowUps"
    if fault == "refused repeat insert":
        faults.fail_before("insert_one")
    elif fault == "lost reply of the repeat insert":
        faults.fail_after("insert_one")
    elif fault == "refused dependency resolution":
        faults.fail_before("bulk_write", when=lambda op, args: "depends" in str(args))
    elif fault == "refused promotion of the dependent":
        faults.fail_before("update_many")  # the dependent is resolved, not yet promoted
    else:
        faults.fail_before("bulk_write", when=lambda op, args: clears_follow_ups(args))
    # The completion itself is written: done() answers True; the follow-ups stay marked.
    assert await job.done({"n": 1}) is True
    assert faults.pending == 0
    assert (await stored(raw, job_id))["status"] == "completed"
    assert await raw.count_documents({follow_ups: {"$exists": True}}) == 1
    outcome = await jc.run_server_pass()
    assert outcome.followed_up == 1 and outcome.errors == 0
    await check_done_once(raw, job_id, dependent_id)
    assert await raw.count_documents({follow_ups: {"$exists": True}}) == 0
    before = await everything(raw)
    assert (await jc.run_server_pass()).followed_up == 0
    assert await everything(raw) == before


async def test_a_done_with_another_result_after_a_lost_reply_changes_nothing(
    make_worker: MakeWorker, raw: Any
) -> None:
    jc, faults = await make_worker()
    job_id = await jc.create_job("t").repeat(1, wait=0).save()
    job = await claim_one(jc)
    faults.fail_after("bulk_write")
    with pytest.raises(DatabaseError):
        await job.done({"n": 1})
    before = await everything(raw)
    assert await Job(jc, job.doc).done({"n": 2}) is False
    assert await everything(raw) == before
    assert (await stored(raw, job_id))["result"] == {"n": 1}


async def test_concurrent_dones_of_one_claim_schedule_one_repeat(
    make_worker: MakeWorker, raw: Any
) -> None:
    first, _ = await make_worker()
    second, _ = await make_worker()
    job_id = await first.create_job("t").repeat(3, wait=0).save()
    job = await claim_one(first)
    twin = Job(second, job.doc.model_copy(deep=True))
    outcomes = await asyncio.gather(job.done(), twin.done())
    assert True in outcomes
    docs = await everything(raw)
    assert len(docs) == 2, docs
    assert messages(await stored(raw, job_id)).count("Job Completed") == 1


@pytest.mark.parametrize("fault", ["fail_before", "fail_after"])
async def test_a_fail_retried_after_a_fault_is_recorded_once(
    make_worker: MakeWorker, raw: Any, fault: str
) -> None:
    jc, faults = await make_worker()
    job_id = await jc.create_job("t").retry(2, wait=0).save()
    job = await claim_one(jc)
    getattr(faults, fault)("bulk_write")
    with pytest.raises(DatabaseError):
        await job.fail("boom")
    # Applied now, or recognised as applied by the attempt whose reply was lost.
    assert await Job(jc, job.doc).fail("boom") is True
    doc = await stored(raw, job_id)
    assert doc["status"] == "waiting"
    assert [f["value"] for f in doc["failures"]] == ["boom"]
    assert doc["retries"] == 2  # one attempt used, not two
    before = await everything(raw)
    assert await Job(jc, job.doc).fail("boom") is True
    assert await Job(jc, job.doc).fail("another error") is False
    assert await everything(raw) == before


async def test_a_fatal_fail_retried_after_a_lost_reply_cancels_the_dependents(
    make_worker: MakeWorker, raw: Any
) -> None:
    jc, faults = await make_worker()
    job = jc.create_job("t")
    job_id = await job.save()
    dependent_id = await jc.create_job("d").depends([job]).save()
    claimed = await claim_one(jc)
    # The job has a dependent, so its failure is written after reading it (one write, which
    # is the one whose reply is lost).
    faults.fail_after(
        "bulk_write", when=lambda op, args: "jobcollectionDependents" not in str(args)
    )
    with pytest.raises(DatabaseError):
        await claimed.fail("fatal", fatal=True)
    assert (await stored(raw, job_id))["status"] == "failed"
    assert (await stored(raw, dependent_id))["status"] == "waiting"  # the cascade was lost
    assert await Job(jc, claimed.doc).fail("fatal", fatal=True) is True
    assert (await stored(raw, dependent_id))["status"] == "cancelled"


async def test_a_fatal_fail_retried_after_its_cascade_was_cut_short_cancels_the_chain(
    make_worker: MakeWorker, raw: Any
) -> None:
    jc, faults = await make_worker()
    job = jc.create_job("t")
    await job.save()
    first = jc.create_job("d").depends([job])
    first_id = await first.save()
    second_id = await jc.create_job("d").depends([first]).save()
    claimed = await claim_one(jc)
    faults.fail_before("update_many", when=lambda op, args: str(second_id) in str(args[0]))
    assert await claimed.fail("fatal", fatal=True) is True  # the failure itself is written
    assert (await stored(raw, first_id))["status"] == "cancelled"
    assert (await stored(raw, second_id))["status"] == "waiting"  # the cascade was cut short
    assert (await jc.run_server_pass()).followed_up == 1
    assert (await stored(raw, second_id))["status"] == "cancelled"


async def test_a_network_error_alone_never_marks_a_job_failed(
    make_worker: MakeWorker, raw: Any, clock: ManualClock
) -> None:
    worker, faults = await make_worker()
    server, _ = await make_worker()
    job_id = await worker.create_job("t").save()  # no retries: any failure would be final
    job = await claim_one(worker, work_timeout=60)
    faults.cut_off()
    for call in (job.heartbeat(), job.progress(1, 2), job.log("x"), job.done()):
        with pytest.raises(DatabaseError):
            await call
    clock.advance(30)
    assert (await server.run_server_pass()).expired == 0
    doc = await stored(raw, job_id)
    assert doc["status"] == "running" and "failures" not in doc
    faults.restore()
    assert await Job(worker, job.doc).done() is True
    doc = await stored(raw, job_id)
    assert doc["status"] == "completed" and "failures" not in doc


async def test_a_done_held_in_flight_past_its_lease_is_refused(
    make_worker: MakeWorker, raw: Any, clock: ManualClock
) -> None:
    slow, slow_faults = await make_worker()
    other, _ = await make_worker()
    job_id = await other.create_job("t").retry(1, wait=0).save()
    job = await claim_one(slow, work_timeout=10)
    gate = slow_faults.delay("bulk_write")
    finishing = asyncio.create_task(job.done({"by": "slow"}))
    await gate.wait_reached()
    clock.advance(11)
    assert (await other.run_server_pass()).expired == 1
    taken = await claim_one(other)
    gate.release()
    assert await finishing is False
    doc = await stored(raw, job_id)
    assert doc["status"] == "running" and doc["runId"] == taken.doc.run_id
    assert await taken.done({"by": "other"}) is True
    assert (await stored(raw, job_id))["result"] == {"by": "other"}


# --- saves -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["fail_after", "fail_before"])
async def test_a_save_repeated_after_a_fault_stores_the_job_once(
    make_worker: MakeWorker, raw: Any, fault: str
) -> None:
    worker, faults = await make_worker()
    job = worker.create_job("t", {"n": 1})
    getattr(faults, fault)("insert_one")
    with pytest.raises(DatabaseError):
        await job.save()
    assert job.id is None
    job_id = await job.save()
    assert job_id is not None and job.id == job_id
    [doc] = await everything(raw)
    assert doc["_id"] == job_id
    assert doc["status"] == "ready"
    assert messages(doc).count("Job Submitted") == 1
    assert messages(doc).count("Promoted to ready") == 1


async def test_a_repeated_save_finishes_the_dependency_check_the_lost_reply_cut_short(
    make_worker: MakeWorker, raw: Any
) -> None:
    worker, faults = await make_worker()
    antecedent = worker.create_job("a")
    await antecedent.save()
    [claimed] = await worker.get_work("a")
    assert await claimed.done() is True
    dependent = worker.create_job("t").depends([antecedent])
    faults.fail_after("insert_one")  # stored waiting, its dependency not yet resolved
    with pytest.raises(DatabaseError):
        await dependent.save()
    job_id = await dependent.save()
    doc = await stored(raw, job_id)
    assert doc["status"] == "ready"
    assert doc["depends"] == [] and doc["resolved"] == [antecedent.id]
    assert messages(doc).count("Dependency resolved") == 1
    assert await raw.count_documents({"type": "t"}) == 1


async def test_a_repeated_save_of_a_job_cancelled_at_save_still_answers_none(
    make_worker: MakeWorker, raw: Any
) -> None:
    worker, _ = await make_worker()
    antecedent = worker.create_job("a")
    await antecedent.save()
    await antecedent.cancel()
    dependent = worker.create_job("t").depends([antecedent])
    assert await dependent.save() is None  # cancelled: its antecedent was cancelled
    assert await dependent.save() is None
    assert await raw.count_documents({"type": "t"}) == 1


async def test_a_repeated_save_with_cancel_repeats_does_not_cancel_itself(
    make_worker: MakeWorker, raw: Any
) -> None:
    worker, faults = await make_worker()
    old = worker.create_job("tick").repeat(wait=60)
    await old.save()
    new = worker.create_job("tick").repeat(wait=60)
    faults.fail_after("insert_one")
    with pytest.raises(DatabaseError):
        await new.save(cancel_repeats=True)
    assert await new.save(cancel_repeats=True) == new.id
    assert (await stored(raw, old.id))["status"] == "cancelled"
    assert (await stored(raw, new.id))["status"] == "ready"
    assert await raw.count_documents({"type": "tick"}) == 2


async def test_save_jobs_repeated_after_a_lost_reply_inserts_each_job_once(
    make_worker: MakeWorker, raw: Any
) -> None:
    worker, faults = await make_worker()
    first = [worker.create_job("t", {"n": n}) for n in range(3)]
    await worker.save_jobs(first[:1])
    faults.fail_after("insert_many")
    with pytest.raises(DatabaseError):
        await worker.save_jobs(first[1:])
    assert [job.id for job in first[1:]] == [None, None]
    more = worker.create_job("t", {"n": 3})
    ids = await worker.save_jobs([*first[1:], more])
    assert None not in ids and ids == [job.id for job in [*first[1:], more]]
    assert sorted(d["data"]["n"] for d in await everything(raw)) == [0, 1, 2, 3]


# --- trust regressions: claims ---------------------------------------------------------------


async def test_a_lost_batch_claim_is_handed_over_a_few_jobs_at_a_time_each_once(
    make_worker: MakeWorker, raw: Any
) -> None:
    jc, faults = await make_worker()
    await jc.save_jobs([jc.create_job("t", {"n": n}) for n in range(6)])
    faults.fail_after("update_many", when=is_claim)  # six jobs claimed, the reply lost
    with pytest.raises(DatabaseError):
        await jc.get_work("t", max_jobs=6)
    handed: list[Any] = []
    for _ in range(3):
        got = await jc.get_work("t", max_jobs=2)
        assert len(got) == 2
        handed += [job.id for job in got]
    assert len(set(handed)) == 6  # each job handed over once, none twice
    assert await jc.get_work("t", max_jobs=2) == []
    assert {d["status"] for d in await everything(raw)} == {"running"}


class ShortReadBack(Yielding):
    """A collection whose read-back of a claim misses one job, as a read from a lagging
    secondary (or "majority" over w: 1) could."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.dropped: list[Any] = []

    def find(self, query: Any, *args: Any, **kwargs: Any) -> Any:
        cursor = self._inner.find(query, *args, **kwargs)
        if isinstance(query, dict) and query.get("runId") is not None and not self.dropped:
            return _Dropping(cursor, self.dropped)
        return cursor


class _Dropping:
    def __init__(self, cursor: Any, dropped: list[Any]) -> None:
        self._cursor = cursor
        self._dropped = dropped

    async def to_list(self, length: Any = None) -> list[Any]:
        docs = await self._cursor.to_list(length)
        self._dropped.append(docs[-1]["_id"])
        return list(docs[:-1])


async def test_a_job_a_short_read_back_missed_is_handed_over_by_the_next_get_work(
    database: Any, clock: ManualClock
) -> None:
    collection = ShortReadBack(database["queue.jobs"])
    jc = JobCollection(collection, clock=clock)
    await jc.start_job_server()
    try:
        await jc.save_jobs([jc.create_job("t", {"n": n}) for n in range(3)])
        first = await jc.get_work("t", max_jobs=3)
        assert len(first) == 2 and len(collection.dropped) == 1
        [missed] = await jc.get_work("t", max_jobs=3)
        assert missed.id == collection.dropped[0]
        assert missed.doc.run_id == first[0].doc.run_id  # the same claim, handed over
    finally:
        await jc.close()


# --- trust regressions: reports --------------------------------------------------------------


async def test_a_fail_retried_after_another_worker_completed_the_retry_adds_no_repeat(
    make_worker: MakeWorker, raw: Any
) -> None:
    jc, faults = await make_worker()
    other, _ = await make_worker()
    job_id = await jc.create_job("t").retry(1, wait=0).repeat(1, wait=0).save()
    first = await claim_one(jc)
    faults.fail_after("bulk_write")  # the failure (retry: back to waiting) is written, reply lost
    with pytest.raises(DatabaseError):
        await first.fail("flaky")
    await other.ready_jobs()
    second = await claim_one(other)
    assert await second.done() is True  # completes, schedules its one repeat
    assert await Job(jc, first.doc).fail("flaky") is True  # recognised as applied before
    repeats = [d for d in await everything(raw) if d["_id"] != job_id]
    assert len(repeats) == 1
    assert repeats[0]["_id"] == repeat_job_id(job_id, second.doc.run_id)


async def test_a_done_retried_with_values_changed_by_storage_is_recognised(
    make_worker: MakeWorker, raw: Any
) -> None:
    """A tuple is stored as a list and a datetime to the millisecond: the retried call's value
    still matches the stored one, so the retry answers True and finishes the follow-ups."""
    jc, faults = await make_worker()
    job_id = await jc.create_job("t").repeat(1, wait=0).save()
    job = await claim_one(jc)
    result = {"pair": (1, 2), "at": datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)}
    faults.fail_after("bulk_write")  # completed, reply lost: no repeat scheduled yet
    with pytest.raises(DatabaseError):
        await job.done(result)
    assert await raw.count_documents({}) == 1
    assert await Job(jc, job.doc).done(result) is True
    assert len([d for d in await everything(raw) if d["_id"] != job_id]) == 1


class WriteConcernFailure(Yielding):
    """A bulk write applied by the primary whose write concern was not satisfied in time (a
    BulkWriteError carrying writeConcernErrors, code 64): the writes are in, durability is not
    known."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.armed = False

    async def bulk_write(self, requests: Any, **kwargs: Any) -> Any:
        result = await self._inner.bulk_write(requests, **kwargs)
        if self.armed:
            self.armed = False
            raise BulkWriteError(
                {
                    "writeErrors": [],
                    "writeConcernErrors": [{"code": 64, "errmsg": "waiting for replication"}],
                    "nMatched": result.matched_count,
                }
            )
        return result


async def test_a_write_concern_error_on_a_completion_keeps_its_follow_ups(
    database: Any, clock: ManualClock
) -> None:
    collection = WriteConcernFailure(database["queue.jobs"])
    jc = JobCollection(collection, clock=clock)
    await jc.start_job_server()
    try:
        job = jc.create_job("t").repeat(1, wait=0)
        job_id = await job.save()
        dependent_id = await jc.create_job("d").depends([job]).save()
        [claimed] = await jc.get_work("t")
        collection.armed = True
        with pytest.raises(DatabaseError):
            await claimed.done()
        assert (await stored(collection, job_id))["status"] == "completed"
        assert (await stored(collection, dependent_id))["status"] == "waiting"
        assert (await jc.run_server_pass()).followed_up == 1
        assert (await stored(collection, dependent_id))["status"] == "ready"
        assert await collection.count_documents({"type": "t"}) == 2  # the job and its repeat
    finally:
        await jc.close()


async def test_expiry_does_not_fail_a_job_whose_lease_was_renewed_meanwhile(
    make_worker: MakeWorker, raw: Any, clock: ManualClock
) -> None:
    worker, _ = await make_worker()
    server, server_faults = await make_worker()
    job_id = await worker.create_job("t").save()
    job = await claim_one(worker, work_timeout=10)
    clock.advance(11)  # the lease ran out ...
    gate = server_faults.delay("bulk_write")
    expiring = asyncio.create_task(server.run_server_pass())
    await gate.wait_reached()  # ... the server read it as expired; its write is in flight
    assert await job.heartbeat() is True  # the worker renews first
    gate.release()
    assert (await expiring).expired == 0
    doc = await stored(raw, job_id)
    assert doc["status"] == "running" and "failures" not in doc
    assert await job.done() is True


# --- trust regressions: saves ----------------------------------------------------------------


@pytest.mark.skipif(SHARDED, reason="a mongos refuses a unique index not prefixed by _id")
async def test_a_duplicate_on_the_applications_unique_index_is_an_error_not_a_save(
    make_worker: MakeWorker, raw: Any
) -> None:
    jc, _ = await make_worker()
    await raw.create_index([("data.key", 1)], unique=True)
    await jc.create_job("t", {"key": "a"}).save()
    with pytest.raises(DatabaseError):
        await jc.create_job("t", {"key": "a"}).save()
    jobs = [jc.create_job("t", {"key": "b"}), jc.create_job("t", {"key": "a"})]
    with pytest.raises(DatabaseError):
        await jc.save_jobs(jobs)
    assert sorted(d["data"]["key"] for d in await everything(raw)) == ["a", "b"]
    assert jobs[1].id is None


async def test_a_save_under_the_id_of_another_job_is_refused(
    make_worker: MakeWorker, raw: Any
) -> None:
    jc, _ = await make_worker()
    existing = await jc.create_job("t", {"n": 1}).save()
    before = await everything(raw)
    other = jc.create_job("t", {"n": 2}).doc
    with pytest.raises(InvalidArgument, match="jobId"):
        await jc.call("jobSave", other, {"jobId": existing})
    with pytest.raises(InvalidArgument, match=r"jobIds\[0\]"):
        await jc.call("jobSaveMany", [other], {"jobIds": [existing]})
    assert await everything(raw) == before


async def test_a_cancel_cascade_cut_short_two_levels_down_is_carried_to_its_end(
    make_worker: MakeWorker, raw: Any
) -> None:
    """A <- B <- C <- D; A fails for good; the cancel of C is applied but its reply is lost.
    The next pass carries the cascade on through the cancelled B and C down to D."""
    jc, faults = await make_worker()
    chain = [jc.create_job("a")]
    await chain[0].save()
    for name in ("b", "c", "d"):
        job = jc.create_job(name).depends([chain[-1]])
        await job.save()
        chain.append(job)
    claimed = await claim_one(jc, "a")
    c_id = chain[2].id
    faults.fail_after("update_many", when=lambda op, args: str(c_id) in str(args[0]))
    assert await claimed.fail("fatal", fatal=True) is True
    statuses = [(await stored(raw, job.id))["status"] for job in chain]
    assert statuses == ["failed", "cancelled", "cancelled", "waiting"]
    await jc.run_server_pass()
    assert (await stored(raw, chain[3].id))["status"] == "cancelled"


async def test_a_repeat_cannot_be_removed_while_the_follow_ups_that_made_it_are_pending(
    make_worker: MakeWorker, raw: Any
) -> None:
    """Removing the repeat then would let the pending follow-ups insert it a second time."""
    jc, faults = await make_worker()
    job_id = await jc.create_job("t").repeat(1, wait=0).save()
    first = await claim_one(jc)
    faults.fail_before("find", when=lambda op, args: "depends" in str(args))
    assert await first.done() is True  # the repeat is inserted; the dependents lookup fails
    repeat = await claim_one(jc)
    assert repeat.id == repeat_job_id(job_id, first.doc.run_id)
    assert await repeat.done() is True
    assert await jc.remove_jobs([repeat.id]) is False  # its origin's follow-ups are pending
    assert (await jc.run_server_pass()).followed_up == 1
    assert await jc.remove_jobs([repeat.id]) is True
    await jc.run_server_pass()
    assert await raw.count_documents({"_id": repeat.id}) == 0  # not inserted again
