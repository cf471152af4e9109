"""get_work: claim order, types, batches, round trips, the job server gate, leases, one runId
per call, and no job ever handed to two callers (SPEC A.2, B.2.2, B.4)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from bson import ObjectId

from conftest import SHARDED, START, MakeJC
from helpers import stored, utc
from jobcollection import InvalidArgument, Job, JobCollection, ManualClock

pytestmark = pytest.mark.both_sides


async def save_many(jc: JobCollection, n: int, job_type: str = "t") -> list[Any]:
    ids = []
    for i in range(n):
        job_id = await jc.create_job(job_type, {"i": i}).save()
        assert job_id is not None
        ids.append(job_id)
    return ids


async def test_priority_order(jc: JobCollection) -> None:
    """B.4: low, high and default saved in that order run high, default, low."""
    low = await jc.create_job("t", {"p": "low"}).priority("low").save()
    high = await jc.create_job("t", {"p": "high"}).priority("high").save()
    default = await jc.create_job("t", {"p": "default"}).save()
    order = [(await jc.get_work("t"))[0].id for _ in range(3)]
    assert order == [high, default, low]
    assert await jc.get_work("t") == []


async def test_priority_order_within_one_batch(jc: JobCollection) -> None:
    ids = {}
    for name in ("low", "normal", "critical", "medium", "high"):
        ids[name] = await jc.create_job("t").priority(name).save()
    got = await jc.get_work("t", max_jobs=5)
    assert [j.id for j in got] == [ids[n] for n in ("critical", "high", "medium", "normal", "low")]


async def test_equal_priority_runs_earliest_deadline_then_earliest_after(
    jc: JobCollection, clock: ManualClock
) -> None:
    late = await jc.create_job("t").save()
    urgent = await jc.create_job("t").retry(1, until=START + timedelta(hours=1)).save()
    assert [j.id for j in await jc.get_work("t", max_jobs=2)] == [urgent, late]


async def test_types_list(jc: JobCollection) -> None:
    a = await save_many(jc, 2, "a")
    b = await save_many(jc, 2, "b")
    c = await save_many(jc, 2, "c")
    got = await jc.get_work(["a", "b"], max_jobs=10)
    assert {j.id for j in got} == set(a + b)
    assert {j.type for j in got} == {"a", "b"}
    for job_id in c:
        assert (await stored(jc, job_id))["status"] == "ready"
    assert [j.id for j in await jc.get_work(("c",), max_jobs=10)] == c


async def test_unknown_type_gets_nothing(jc: JobCollection) -> None:
    await save_many(jc, 2, "a")
    assert await jc.get_work("nope", max_jobs=5) == []


async def test_max_jobs_batches(jc: JobCollection) -> None:
    ids = await save_many(jc, 5)
    first = await jc.get_work("t", max_jobs=3)
    second = await jc.get_work("t", max_jobs=3)
    assert len(first) == 3
    assert len(second) == 2
    assert {j.id for j in first + second} == set(ids)
    assert await jc.get_work("t", max_jobs=3) == []
    assert all(isinstance(j, Job) and j.doc.status == "running" for j in first + second)


async def test_round_trips_do_not_grow_with_max_jobs(jc: JobCollection) -> None:
    await save_many(jc, 25)
    await jc.paused_types()  # the settings every claim reads, at most once a second
    before = jc.commands
    assert len(await jc.get_work("t", max_jobs=1)) == 1
    one = jc.commands - before
    before = jc.commands
    assert len(await jc.get_work("t", max_jobs=20)) == 20
    twenty = jc.commands - before
    assert one == (2 if SHARDED else 1)  # one find-and-modify (a mongos: find, then by _id)
    assert twenty == 3  # find candidates, claim them, re-read by runId


async def test_claimed_documents_leave_out_log_and_failures(jc: JobCollection) -> None:
    await save_many(jc, 1)
    [job] = await jc.get_work("t")
    assert job.doc.log is None
    assert job.doc.failures is None
    assert (await stored(jc, job.id))["log"]


async def test_get_work_before_start_returns_nothing(make_jc: MakeJC) -> None:
    jc = await make_jc(started=False)
    job_id = await jc.create_job("t").save()
    assert await jc.get_work("t") == []
    assert (await stored(jc, job_id))["status"] == "ready"
    assert await jc.start_job_server() is True
    assert [j.id for j in await jc.get_work("t")] == [job_id]


async def test_get_work_after_shutdown_returns_nothing(jc: JobCollection) -> None:
    job_id = (await save_many(jc, 1))[0]
    assert await jc.shutdown_job_server(timeout=0) is True
    assert await jc.get_work("t") == []
    assert (await stored(jc, job_id))["status"] == "ready"
    assert await jc.start_job_server() is True
    assert [j.id for j in await jc.get_work("t")] == [job_id]


async def test_work_timeout_sets_the_lease(jc: JobCollection, clock: ManualClock) -> None:
    job_id = await jc.create_job("t").retry(1, wait=0).save()
    [job] = await jc.get_work("t", work_timeout=30)
    doc = await stored(jc, job_id)
    assert doc["workTimeout"] == 30_000
    assert utc(doc["expiresAfter"]) == START + timedelta(seconds=30)
    assert job.doc.work_timeout == 30_000
    assert job.doc.expires_after == START + timedelta(seconds=30)

    # a later claim without a timeout clears the lease
    assert await job.fail("again")
    await jc.run_server_pass()
    [again] = await jc.get_work("t")
    doc = await stored(jc, job_id)
    assert "workTimeout" not in doc
    assert "expiresAfter" not in doc
    assert again.doc.work_timeout is None


async def test_work_timeout_accepts_a_timedelta(jc: JobCollection) -> None:
    job_id = (await save_many(jc, 1))[0]
    await jc.get_work("t", work_timeout=timedelta(milliseconds=1500))
    assert (await stored(jc, job_id))["workTimeout"] == 1500


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"max_jobs": 0}, "max_jobs"),
        ({"max_jobs": 1.5}, "max_jobs"),
        ({"work_timeout": 0}, "work_timeout"),
        ({"work_timeout": -1}, "work_timeout"),
    ],
)
async def test_invalid_options_raise_and_claim_nothing(
    jc: JobCollection, kwargs: dict[str, Any], argument: str
) -> None:
    job_id = (await save_many(jc, 1))[0]
    before = await stored(jc, job_id)
    with pytest.raises(InvalidArgument) as err:
        await jc.get_work("t", **kwargs)
    assert err.value.argument == argument
    assert await stored(jc, job_id) == before


@pytest.mark.parametrize("types", ["", [], [""], [1], None, {"$ne": None}])
async def test_invalid_types_raise(jc: JobCollection, types: Any) -> None:
    job_id = (await save_many(jc, 1))[0]
    before = await stored(jc, job_id)
    with pytest.raises(InvalidArgument) as err:
        await jc.get_work(types)
    assert err.value.argument.startswith("type")
    assert await stored(jc, job_id) == before


async def test_one_call_shares_one_run_id(jc: JobCollection) -> None:
    await save_many(jc, 6)
    first = await jc.get_work("t", max_jobs=3)
    second = await jc.get_work("t", max_jobs=3)
    assert len({j.doc.run_id for j in first}) == 1
    assert len({j.doc.run_id for j in second}) == 1
    assert first[0].doc.run_id != second[0].doc.run_id
    for job in first:
        doc = await stored(jc, job.id)
        assert doc["runId"] == first[0].doc.run_id
        assert doc["log"][-1]["runId"] == first[0].doc.run_id


async def test_get_work_skips_jobs_that_are_not_ready(
    jc: JobCollection, clock: ManualClock
) -> None:
    ready = await jc.create_job("t").save()
    waiting = await jc.create_job("t").delay(60).save()
    paused_job = jc.create_job("t")
    await paused_job.save()
    assert await paused_job.pause()
    got = await jc.get_work("t", max_jobs=10)
    assert [j.id for j in got] == [ready]
    assert (await stored(jc, waiting))["status"] == "waiting"


async def test_fifty_concurrent_callers_never_share_a_job(make_racy_jc: MakeJC) -> None:
    instances = [await make_racy_jc() for _ in range(5)]
    ids = await save_many(instances[0], 60)

    async def take(i: int) -> list[Job]:
        jc = instances[i % len(instances)]
        return await jc.get_work("t", max_jobs=2)

    batches = await asyncio.gather(*(take(i) for i in range(50)))
    handed = [j.id for batch in batches for j in batch]
    assert len(handed) == len(set(handed)), "a job was handed to two callers"
    assert sorted(handed) == sorted(ids), "some ready jobs were not handed out"
    jc = instances[0]
    for batch in batches:
        for job in batch:
            doc = await stored(jc, job.id)
            assert doc["runId"] == job.doc.run_id
            assert doc["retried"] == 1
            assert [e["message"] for e in doc["log"]].count("Job Running") == 1
    assert len({batch[0].doc.run_id for batch in batches if batch}) == len(
        [b for b in batches if b]
    )


async def test_concurrent_callers_with_large_batches(make_racy_jc: MakeJC) -> None:
    instances = [await make_racy_jc() for _ in range(3)]
    ids = await save_many(instances[0], 40)
    batches = await asyncio.gather(*(instances[i % 3].get_work("t", max_jobs=7) for i in range(12)))
    handed = [j.id for batch in batches for j in batch]
    assert len(handed) == len(set(handed)) == len(ids)


async def test_five_hundred_jobs_ready_cancel_remove(jc: JobCollection) -> None:
    """B.4: 500 jobs saved are all ready; cancelJobs cancels all; removeJobs removes all."""
    ids = await save_many(jc, 500)
    assert await jc.collection.count_documents({"status": "ready"}) == 500
    assert await jc.cancel_jobs(ids) is True
    assert await jc.collection.count_documents({"status": "cancelled"}) == 500
    assert await jc.get_work("t") == []
    assert await jc.remove_jobs(ids) is True
    assert await jc.collection.count_documents({}) == 0
    assert await jc.remove_jobs(ids) is False


async def test_bulk_helpers_pause_resume_ready(jc: JobCollection) -> None:
    ids = await save_many(jc, 3)
    assert await jc.pause_jobs(ids) is True
    assert await jc.collection.count_documents({"status": "paused"}) == 3
    assert await jc.get_work("t") == []
    assert await jc.resume_jobs(ids) is True
    assert await jc.collection.count_documents({"status": "ready"}) == 3
    assert await jc.restart_jobs(ids) is False  # none is cancelled or failed


async def test_get_jobs_returns_stored_jobs(jc: JobCollection) -> None:
    """Quirk 2 fixed: get_jobs returns the stored jobs, in the order asked."""
    ids = await save_many(jc, 3)
    jobs = await jc.get_jobs([ids[2], ids[0]])
    assert [j.id for j in jobs] == [ids[2], ids[0]]
    assert all(j.doc.status == "ready" for j in jobs)
    assert jobs[0].data == {"i": 2}
    assert await jc.get_jobs([]) == []


async def test_get_job_log_and_failures_on_request(jc: JobCollection) -> None:
    job_id = await jc.create_job("t").retry(1, wait=0).save()
    [worker] = await jc.get_work("t")
    run_id = worker.doc.run_id
    assert await worker.fail("boom")
    plain = await jc.get_job(job_id)
    assert plain is not None
    assert plain.doc.log is None
    assert plain.doc.failures is None
    full = await jc.get_job(job_id, get_log=True, get_failures=True)
    assert full is not None
    assert full.doc.log is not None and full.doc.log[-1].message == "Job Failed with Error: boom."
    assert full.doc.failures == [{"value": "boom", "runId": run_id}]


async def test_bulk_actions_report_counts_when_asked(jc: JobCollection) -> None:
    ids = await save_many(jc, 4)
    missing = ObjectId()
    assert await jc.pause_jobs([*ids[:3], missing], count=True) == 3
    assert await jc.pause_jobs(ids[:3], count=True) == 0  # paused already
    assert await jc.resume_jobs(ids, count=True) == 3
    [claimed] = await jc.get_work("t")
    assert await jc.cancel_jobs(ids, count=True) == 4  # the running one included
    assert await jc.restart_jobs(ids[:2], count=True) == 2
    assert await jc.remove_jobs(ids, count=True) == 2  # the restarted two are not finished
    assert await jc.ready_jobs(ids, count=True) == 0
    assert await jc.pause_jobs(ids[:1]) is True  # without count: a bool, as before
    with pytest.raises(InvalidArgument, match="count"):
        await jc.ready_jobs(count=True)
    assert claimed.id in ids
