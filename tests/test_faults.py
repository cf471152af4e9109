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
from typing import Any

import pytest
from pymongo.errors import AutoReconnect

from faults import Faults, FaultyCollection
from helpers import claim_one
from jobcollection import DatabaseError, Job, JobCollection, JobDoc, ManualClock

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


@pytest.mark.parametrize(
    "fault",
    [
        "lost reply of the completion",
        "refused repeat insert",
        "lost reply of the repeat insert",
        "refused dependency resolution",
        "refused promotion of the dependent",
    ],
)
async def test_a_done_retried_after_a_fault_completes_once_with_one_repeat(
    make_worker: MakeWorker, raw: Any, fault: str
) -> None:
    jc, faults = await make_worker()
    job_id, dependent_id = await save_with_dependent(jc)
    job = await claim_one(jc)
    if fault == "lost reply of the completion":
        faults.fail_after("bulk_write")
    elif fault == "refused repeat insert":
        faults.fail_before("insert_many")
    elif fault == "lost reply of the repeat insert":
        faults.fail_after("insert_many")
    elif fault == "refused dependency resolution":
        faults.fail_before("bulk_write", when=lambda op, args: "depends" in str(args))
    else:
        faults.fail_before("update_many")  # the dependent is resolved, not yet promoted
    with pytest.raises(DatabaseError):
        await job.done({"n": 1})
    assert faults.pending == 0
    # the retry: answers False (the job is no longer running) and repairs the follow-ups
    assert await Job(jc, job.doc).done({"n": 1}) is False
    await check_done_once(raw, job_id, dependent_id)
    before = await everything(raw)
    assert await Job(jc, job.doc).done({"n": 1}) is False
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
    retried = await Job(jc, job.doc).fail("boom")
    assert retried is (fault == "fail_before")  # applied now, or already applied before
    doc = await stored(raw, job_id)
    assert doc["status"] == "waiting"
    assert [f["value"] for f in doc["failures"]] == ["boom"]
    assert doc["retries"] == 2  # one attempt used, not two
    before = await everything(raw)
    assert await Job(jc, job.doc).fail("boom") is False
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
    faults.fail_after("bulk_write")
    with pytest.raises(DatabaseError):
        await claimed.fail("fatal", fatal=True)
    assert (await stored(raw, job_id))["status"] == "failed"
    assert (await stored(raw, dependent_id))["status"] == "waiting"  # the cascade was lost
    assert await Job(jc, claimed.doc).fail("fatal", fatal=True) is False
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
    with pytest.raises(DatabaseError):
        await claimed.fail("fatal", fatal=True)
    assert (await stored(raw, first_id))["status"] == "cancelled"
    assert (await stored(raw, second_id))["status"] == "waiting"  # the cascade was cut short
    assert await Job(jc, claimed.doc).fail("fatal", fatal=True) is False
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
