"""The job server: promotion passes, work-timeout auto-fail and the stale-runId fence,
heartbeats, shutdown, and several servers on one collection (SPEC A.2, B.2.9-B.2.14, quirk 1)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from bson import ObjectId

from conftest import START, MakeJC
from helpers import claim_one, messages, stored, utc
from jobcollection import (
    InvalidArgument,
    InvalidArgumentType,
    Job,
    JobCollection,
    ManualClock,
    ServerPass,
)

EXPIRED = "Failed for exceeding worker set workTimeout"
SHUTDOWN = "Running at Job Server shutdown."


# --- promotion --------------------------------------------------------------------------------


async def test_delayed_job_is_promoted_only_once_after_passes(
    jc: JobCollection, clock: ManualClock
) -> None:
    job_id = await jc.create_job("t").delay(30).save()
    assert await jc.run_server_pass() == ServerPass(expired=0, promoted=False)
    clock.advance(29.999)
    assert await jc.run_server_pass() == ServerPass(expired=0, promoted=False)
    assert (await stored(jc, job_id))["status"] == "waiting"
    assert await jc.get_work("t") == []
    clock.advance(0.001)
    assert await jc.run_server_pass() == ServerPass(expired=0, promoted=True)
    doc = await stored(jc, job_id)
    assert doc["status"] == "ready"
    assert messages(doc).count("Promoted to ready") == 1
    assert await jc.run_server_pass() == ServerPass(expired=0, promoted=False)
    assert messages(await stored(jc, job_id)).count("Promoted to ready") == 1


async def test_job_after_a_given_time(jc: JobCollection, clock: ManualClock) -> None:
    when = START + timedelta(hours=2)
    job_id = await jc.create_job("t").after(when).save()
    assert utc((await stored(jc, job_id))["after"]) == when
    clock.set(when)
    await jc.run_server_pass()
    assert (await stored(jc, job_id))["status"] == "ready"


async def test_past_after_is_raised_to_now_at_save(jc: JobCollection) -> None:
    job_id = await jc.create_job("t").after(START - timedelta(days=3)).save()
    doc = await stored(jc, job_id)
    assert utc(doc["after"]) == START
    assert doc["status"] == "ready"


async def test_no_pass_while_the_server_is_stopped(make_jc: MakeJC, clock: ManualClock) -> None:
    jc = await make_jc(started=False)
    job_id = await jc.create_job("t").delay(1).save()
    clock.advance(5)
    assert await jc.run_server_pass() == ServerPass(expired=0, promoted=False)
    assert (await stored(jc, job_id))["status"] == "waiting"


@pytest.mark.parametrize(
    ("interval", "error"),
    [(0, InvalidArgument), (-1, InvalidArgument), ("5", InvalidArgumentType), (None, TypeError)],
)
async def test_promote_validates_the_interval(
    jc: JobCollection, interval: Any, error: type[Exception]
) -> None:
    with pytest.raises(error) as err:
        jc.promote(interval)
    assert isinstance(err.value, InvalidArgument)
    assert err.value.argument == "interval"


async def test_promote_runs_a_pass_at_once(jc: JobCollection, clock: ManualClock) -> None:
    job_id = await jc.create_job("t").delay(10).save()
    clock.advance(10)
    jc.promote(timedelta(hours=1))
    for _ in range(200):
        if (await stored(jc, job_id))["status"] == "ready":
            break
        await asyncio.sleep(0)
    assert (await stored(jc, job_id))["status"] == "ready"


# --- work timeout -----------------------------------------------------------------------------


async def test_expired_lease_is_failed_and_retried(jc: JobCollection, clock: ManualClock) -> None:
    """B.4: a job whose worker never reports within workTimeout is auto-failed and retried;
    the second run completes it."""
    job_id = await jc.create_job("t").retry(1, wait=0).save()
    stale = await claim_one(jc, work_timeout=10)
    run_id = stale.doc.run_id

    clock.advance(10)  # expiresAfter == now: not yet expired
    assert (await jc.run_server_pass()).expired == 0
    assert (await stored(jc, job_id))["status"] == "running"

    clock.advance(0.001)
    outcome = await jc.run_server_pass()
    assert outcome == ServerPass(expired=1, promoted=True)
    doc = await stored(jc, job_id)
    assert doc["status"] == "ready"  # failed non-fatally, then promoted in the same pass
    assert doc["runId"] is None
    assert doc["failures"] == [{"value": EXPIRED, "runId": run_id}]
    failed = [e for e in doc["log"] if e["message"].startswith("Job Failed")]
    assert [(e["message"], e["level"]) for e in failed] == [
        (f"Job Failed with Error: {EXPIRED}.", "warning")
    ]

    # the stale worker is fenced out: its reports change nothing
    before = await stored(jc, job_id)
    assert await stale.done() is False
    assert await stale.fail("late") is False
    assert await stale.progress(1, 2) is False
    assert await stale.heartbeat() is False
    assert await stored(jc, job_id) == before

    second = await claim_one(jc)
    assert second.id == job_id
    assert second.doc.run_id != run_id
    assert await second.done() is True
    assert (await stored(jc, job_id))["status"] == "completed"
    # the old claim stays fenced after the second run completed too
    assert await stale.done() is False


async def test_expired_lease_without_retries_left_fails_the_job(
    jc: JobCollection, clock: ManualClock
) -> None:
    job_id = await jc.create_job("t").save()
    dependent = jc.create_job("d")
    antecedent = await jc.get_job(job_id)
    assert antecedent is not None
    dependent.depends(antecedent)
    await dependent.save()
    await claim_one(jc, work_timeout=1)
    clock.advance(2)
    assert (await jc.run_server_pass()).expired == 1
    doc = await stored(jc, job_id)
    assert doc["status"] == "failed"
    assert doc["log"][-1]["message"] == f"Job Failed with Fatal Error: {EXPIRED}."
    assert (await stored(jc, dependent.id))["status"] == "cancelled"


async def test_jobs_without_a_work_timeout_never_expire(
    jc: JobCollection, clock: ManualClock
) -> None:
    job_id = await jc.create_job("t").save()
    worker = await claim_one(jc)
    clock.advance(timedelta(days=30))
    assert (await jc.run_server_pass()).expired == 0
    assert (await stored(jc, job_id))["status"] == "running"
    assert await worker.done() is True


@pytest.mark.parametrize("beat", ["log", "progress", "heartbeat"])
async def test_reports_from_the_holder_extend_the_lease(
    jc: JobCollection, clock: ManualClock, beat: str
) -> None:
    job_id = await jc.create_job("t").save()
    worker = await claim_one(jc, work_timeout=10)
    for step in range(1, 4):
        clock.advance(8)
        if beat == "log":
            assert await worker.log(f"step {step}") is True
        elif beat == "progress":
            assert await worker.progress(step, 4) is True
        else:
            assert await worker.heartbeat() is True
        doc = await stored(jc, job_id)
        assert utc(doc["expiresAfter"]) == clock.now() + timedelta(seconds=10)
        assert (await jc.run_server_pass()).expired == 0
    clock.advance(8)  # 32 s after the claim, well past the first lease
    assert (await jc.run_server_pass()).expired == 0
    assert await worker.done() is True


async def test_heartbeat_without_a_work_timeout_is_accepted(jc: JobCollection) -> None:
    job_id = await jc.create_job("t").save()
    worker = await claim_one(jc)
    before = await stored(jc, job_id)
    assert await worker.heartbeat() is True
    assert "expiresAfter" not in await stored(jc, job_id)
    assert (await stored(jc, job_id))["status"] == before["status"]


async def test_log_without_the_run_id_is_not_a_heartbeat(
    jc: JobCollection, clock: ManualClock
) -> None:
    job_id = await jc.create_job("t").save()
    await claim_one(jc, work_timeout=10)
    clock.advance(8)
    assert await jc.call("jobLog", job_id, None, "an observer's note") is True
    doc = await stored(jc, job_id)
    assert utc(doc["expiresAfter"]) == START + timedelta(seconds=10)
    assert doc["log"][-1]["message"] == "an observer's note"
    assert doc["log"][-1]["runId"] is None
    clock.advance(3)
    assert (await jc.run_server_pass()).expired == 1


async def test_log_works_in_any_state(jc: JobCollection) -> None:
    job = jc.create_job("t")
    await job.save()
    assert await job.cancel()
    assert await job.log("after the fact", level="danger") is True
    doc = await stored(jc, job.id)
    assert (doc["log"][-1]["message"], doc["log"][-1]["level"]) == ("after the fact", "danger")


# --- shutdown ---------------------------------------------------------------------------------


async def test_shutdown_fails_this_instances_running_jobs(make_jc: MakeJC) -> None:
    jc = await make_jc()
    other = await make_jc()
    retrying = await jc.create_job("a").retry(1, wait=0).save()
    single = await jc.create_job("b").save()
    elsewhere = await jc.create_job("c").save()
    w_retrying = await claim_one(jc, "a")
    w_single = await claim_one(jc, "b")
    w_elsewhere = await claim_one(other, "c")

    assert await jc.shutdown_job_server(timeout=0) is True

    doc = await stored(jc, retrying)
    assert doc["status"] == "waiting"  # non-fatal: retries are respected
    assert doc["failures"] == [{"value": SHUTDOWN, "runId": w_retrying.doc.run_id}]
    assert (doc["log"][-1]["message"], doc["log"][-1]["level"]) == (
        f"Job Failed with Error: {SHUTDOWN}.",  # the message ends with its own period
        "warning",
    )
    doc = await stored(jc, single)
    assert doc["status"] == "failed"
    assert doc["failures"] == [{"value": SHUTDOWN, "runId": w_single.doc.run_id}]
    assert doc["log"][-1]["message"] == f"Job Failed with Fatal Error: {SHUTDOWN}."
    # a job claimed through another instance is not this instance's to fail
    assert (await stored(jc, elsewhere))["status"] == "running"
    assert await w_elsewhere.done() is True


async def test_after_shutdown_get_work_is_empty_and_progress_is_none(
    jc: JobCollection,
) -> None:
    job_id = await jc.create_job("t").save()
    await jc.create_job("t").save()
    worker = await claim_one(jc)
    assert await jc.shutdown_job_server(timeout=60) is True
    assert await jc.get_work("t") == []
    before = await stored(jc, job_id)
    assert await worker.progress(1, 2) is None  # the worker should stop
    assert await stored(jc, job_id) == before
    # until the timeout, running jobs may still finish
    assert await worker.done() is True
    assert (await stored(jc, job_id))["status"] == "completed"


async def test_no_promotion_after_shutdown(jc: JobCollection, clock: ManualClock) -> None:
    job_id = await jc.create_job("t").delay(1).save()
    assert await jc.shutdown_job_server(timeout=0)
    clock.advance(5)
    assert await jc.run_server_pass() == ServerPass(expired=0, promoted=False)
    assert (await stored(jc, job_id))["status"] == "waiting"


async def test_start_again_after_shutdown(jc: JobCollection, clock: ManualClock) -> None:
    job_id = await jc.create_job("t").retry(1, wait=0).save()
    first = await claim_one(jc)
    assert await jc.shutdown_job_server(timeout=0)
    assert (await stored(jc, job_id))["status"] == "waiting"
    assert await jc.start_job_server() is True
    await jc.run_server_pass()
    second = await claim_one(jc)
    assert second.id == job_id
    assert second.doc.run_id != first.doc.run_id
    assert await second.done() is True
    # a second shutdown has nothing left to fail
    assert await jc.shutdown_job_server(timeout=0)
    assert (await stored(jc, job_id))["status"] == "completed"


async def test_shutdown_validates_the_timeout(jc: JobCollection) -> None:
    with pytest.raises(InvalidArgument) as err:
        await jc.shutdown_job_server(timeout=-1)
    assert err.value.argument == "timeout"
    job_id = await jc.create_job("t").save()
    assert [j.id for j in await jc.get_work("t")] == [job_id]  # still running


# --- several servers on one collection ---------------------------------------------------------


async def test_two_servers_never_promote_or_fail_a_job_twice(
    make_racy_jc: MakeJC, clock: ManualClock
) -> None:
    jc1 = await make_racy_jc()
    jc2 = await make_racy_jc()
    delayed = [await jc1.create_job("p", {"i": i}).delay(10).save() for i in range(10)]
    leased = [await jc1.create_job("e", {"i": i}).retry(1, wait=0).save() for i in range(10)]
    claimed = await jc1.get_work("e", max_jobs=10, work_timeout=5)
    assert len(claimed) == 10
    clock.advance(10)

    await asyncio.gather(*(jc.run_server_pass() for jc in (jc1, jc2, jc1, jc2)))

    for job_id in delayed:
        doc = await stored(jc1, job_id)
        assert doc["status"] == "ready"
        assert messages(doc).count("Promoted to ready") == 1
    for job_id in leased:
        doc = await stored(jc1, job_id)
        assert doc["status"] == "ready"
        assert len(doc["failures"]) == 1
        assert messages(doc).count(f"Job Failed with Error: {EXPIRED}.") == 1
        assert messages(doc).count("Promoted to ready") == 2  # at save, and after the fail
        assert doc["retries"] == 1  # retries changed once, at the single claim


async def test_the_leading_server_fails_expired_leases_once(
    make_jc: MakeJC, clock: ManualClock
) -> None:
    """Whichever of the two holds the job server's lease (one's background loop may have
    taken it first) fails the job; the other stands by."""
    jc1 = await make_jc()
    jc2 = await make_jc()
    job_id = await jc1.create_job("t").retry(1, wait=0).save()
    await claim_one(jc1, work_timeout=1)
    clock.advance(2)
    passes = [await jc2.run_server_pass(), await jc1.run_server_pass()]
    assert sorted(p.expired for p in passes) == [0, 1]
    assert sorted(p.leading for p in passes) == [False, True]
    assert len((await stored(jc1, job_id))["failures"]) == 1


async def test_two_servers_count_each_expired_job_once(
    make_racy_jc: MakeJC, clock: ManualClock
) -> None:
    jc1 = await make_racy_jc()
    jc2 = await make_racy_jc()
    for i in range(10):
        await jc1.create_job("e", {"i": i}).retry(1, wait=0).save()
    assert len(await jc1.get_work("e", max_jobs=10, work_timeout=5)) == 10
    clock.advance(10)
    passes = await asyncio.gather(jc1.run_server_pass(), jc2.run_server_pass())
    assert sum(p.expired for p in passes) == 10


async def test_two_dones_of_one_claim_through_two_instances_repeat_once(
    make_racy_jc: MakeJC,
) -> None:
    jc1 = await make_racy_jc()
    jc2 = await make_racy_jc()
    await jc1.create_job("t").repeat(5, wait=0).save()
    worker = await claim_one(jc1)
    twin = Job(jc2, worker.doc.model_copy(deep=True))  # the same claim, seen by jc2
    outcomes = await asyncio.gather(worker.done({"by": 1}), twin.done({"by": 2}))
    assert await jc1.collection.count_documents({}) == 2  # the job and one repeat
    # two different reports: exactly one of them is the job's outcome
    assert sorted(outcomes, key=bool) == [False, True]


async def test_heartbeat_of_a_claim_renews_its_jobs_in_two_round_trips(
    jc: JobCollection, clock: ManualClock
) -> None:
    await jc.save_jobs([jc.create_job("lease", {"n": n}) for n in range(12)])
    claimed = await jc.get_work("lease", max_jobs=12, work_timeout=30)
    run_id = claimed[0].doc.run_id
    await claimed[0].cancel()  # no longer held: it must not be reported as renewed
    clock.advance(20)

    before = jc.commands
    renewed = await jc.call("jobHeartbeat", [job.id for job in claimed], run_id)

    assert jc.commands - before == 2
    assert set(renewed) == {job.id for job in claimed[1:]}
    for job in await jc.get_jobs([job.id for job in claimed[1:]]):
        assert job.doc.expires_after == clock.now() + timedelta(seconds=30)
    clock.advance(25)  # past the original lease, within the renewed one
    assert (await jc.run_server_pass()).expired == 0


async def test_heartbeat_with_a_stale_run_id_renews_nothing(jc: JobCollection) -> None:
    await jc.create_job("lease").save()
    [job] = await jc.get_work("lease", work_timeout=30)
    before = await jc.collection.find_one({"_id": job.id})

    assert await jc.call("jobHeartbeat", [job.id], ObjectId()) == []
    assert await jc.call("jobHeartbeat", job.id, ObjectId()) is False
    assert await jc.collection.find_one({"_id": job.id}) == before
