"""Retries and repeats in use: backoff arithmetic, `until` deadlines, repeat clones, cron
schedules and rerun (SPEC A.3, B.2.8, B.2.11, B.2.12, B.4, quirks 4 and 5)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from conftest import START
from helpers import claim_one, messages, stored, utc
from jobcollection import JobCollection, ManualClock

pytestmark = pytest.mark.both_sides


async def nothing_ready(jc: JobCollection, job_type: str = "t") -> bool:
    return await jc.get_work(job_type) == []


async def after_pass(jc: JobCollection) -> None:
    await jc.run_server_pass()


# --- retries ----------------------------------------------------------------------------------


async def test_retry_forever_with_no_wait_reruns_the_same_job(jc: JobCollection) -> None:
    """B.4: retry(forever, wait 0): the same id runs again after each fail until a fatal fail."""
    job_id = await jc.create_job("t").retry(wait=0).save()
    assert (await stored(jc, job_id))["retries"] == jc.forever
    for attempt in range(1, 6):
        worker = await claim_one(jc)
        assert worker.id == job_id
        assert worker.doc.retried == attempt
        assert await worker.fail(f"attempt {attempt}")
        assert (await stored(jc, job_id))["status"] == "waiting"
        assert await nothing_ready(jc)  # readied by the next promotion, even with wait 0
        await after_pass(jc)
    worker = await claim_one(jc)
    assert worker.id == job_id
    assert await worker.fail("enough", fatal=True)
    doc = await stored(jc, job_id)
    assert doc["status"] == "failed"
    assert len(doc["failures"]) == 6
    await after_pass(jc)
    assert await nothing_ready(jc)
    assert await jc.collection.count_documents({}) == 1


async def test_linear_backoff_with_a_cap_survives_claims_and_resaves(
    jc: JobCollection, clock: ManualClock
) -> None:
    # The settings beyond v1.x live in _private: a claim reads them, so the worker's report
    # (written from its claimed copy) waits as asked: 10 s, 20 s, then the 25 s cap.
    job_id = await jc.create_job("t").retry(5, wait=10, backoff="linear", max_wait=25).save()
    raw = await stored(jc, job_id)
    assert raw["retryBackoff"] == "constant"
    assert raw["_private"]["jobcollectionRetry"] == {"backoff": "linear", "maxWait": 25_000}
    for wait in (10, 20, 25, 25):
        worker = await claim_one(jc)
        assert worker.doc.retry_backoff == "linear" and worker.doc.retry_max_wait == 25_000
        assert await worker.fail("boom")
        assert utc((await stored(jc, job_id))["after"]) == clock.now() + timedelta(seconds=wait)
        clock.advance(wait)
        await after_pass(jc)
    loaded = await jc.get_job(job_id)
    assert loaded is not None and loaded.doc.retry_backoff == "linear"
    assert loaded.doc.private is None  # the library's own keys are never returned


async def test_jitter_spreads_retries_within_the_wait(
    jc: JobCollection, clock: ManualClock
) -> None:
    ids = [await jc.create_job("t").retry(1, wait=100, jitter=0.5).save() for _ in range(20)]
    for _ in ids:
        assert await (await claim_one(jc)).fail("boom")
    waits = {(utc((await stored(jc, i))["after"]) - clock.now()).total_seconds() for i in ids}
    assert all(50 < w <= 100 for w in waits)
    assert len(waits) > 1  # 20 draws from 50,000 possible waits


async def test_resaving_with_plain_retries_clears_the_extra_settings(jc: JobCollection) -> None:
    job = jc.create_job("t").retry(3, backoff="linear", jitter=0.1)
    await job.pause()
    job_id = await job.save()
    job.retry(3, backoff="exponential")
    assert await job.save() == job_id
    raw = await stored(jc, job_id)
    assert raw["retryBackoff"] == "exponential"
    assert "jobcollectionRetry" not in raw.get("_private", {})


async def test_retry_exponential_backoff_doubles_the_wait(
    jc: JobCollection, clock: ManualClock
) -> None:
    """B.4: retry(2, exponential): three runs in all, waits of 10 s then 20 s."""
    job_id = await jc.create_job("t").retry(2, wait=10, backoff="exponential").save()
    runs = 0
    for wait in (10, 20):
        worker = await claim_one(jc)
        runs += 1
        assert await worker.fail("boom")
        doc = await stored(jc, job_id)
        assert doc["status"] == "waiting"
        assert utc(doc["after"]) == clock.now() + timedelta(seconds=wait)
        clock.advance(wait - 0.001)
        await after_pass(jc)
        assert await nothing_ready(jc), f"ready before its {wait} s wait elapsed"
        clock.advance(0.001)
        await after_pass(jc)
    worker = await claim_one(jc)
    runs += 1
    assert await worker.fail("boom")
    doc = await stored(jc, job_id)
    assert doc["status"] == "failed"
    assert doc["log"][-1]["message"] == "Job Failed with Fatal Error: boom."
    assert (doc["retries"], doc["retried"]) == (0, 3)
    clock.advance(timedelta(days=1))
    await after_pass(jc)
    assert await nothing_ready(jc)
    assert runs == 3


async def test_retry_constant_backoff_keeps_the_wait(jc: JobCollection, clock: ManualClock) -> None:
    job_id = await jc.create_job("t").retry(3, wait=7).save()
    for _ in range(3):
        worker = await claim_one(jc)
        assert await worker.fail()
        assert utc((await stored(jc, job_id))["after"]) == clock.now() + timedelta(seconds=7)
        clock.advance(7)
        await after_pass(jc)
    assert (await claim_one(jc)).id == job_id


async def test_retry_until_stops_retrying_past_the_deadline(
    jc: JobCollection, clock: ManualClock
) -> None:
    """B.4: retry(until = now + 1.5 s, wait 0.5 s), always failing: failed by 2.5 s."""
    job_id = (
        await jc.create_job("t").retry(10, until=START + timedelta(seconds=1.5), wait=0.5).save()
    )
    runs = 0
    while True:
        assert clock.now() <= START + timedelta(seconds=2.5)
        worker = await claim_one(jc)
        runs += 1
        assert await worker.fail("boom")
        doc = await stored(jc, job_id)
        if doc["status"] == "failed":
            break
        # the next attempt starts no later than `until`
        assert utc(doc["after"]) <= START + timedelta(seconds=1.5)
        clock.advance(0.5)
        await after_pass(jc)
    assert runs == 4  # at 0, 0.5, 1.0 and 1.5 s
    assert clock.now() == START + timedelta(seconds=1.5)
    assert doc["retries"] > 0  # attempts were left; the deadline stopped it
    assert doc["log"][-1]["message"] == "Job Failed with Fatal Error: boom."


async def test_fail_computes_exponential_wait_from_retried(
    jc: JobCollection, clock: ManualClock
) -> None:
    job_id = await jc.create_job("t").retry(5, wait=1, backoff="exponential").save()
    waits = []
    for _ in range(4):
        worker = await claim_one(jc)
        assert await worker.fail()
        after = utc((await stored(jc, job_id))["after"])
        waits.append((after - clock.now()).total_seconds())
        clock.set(after)
        await after_pass(jc)
    assert waits == [1, 2, 4, 8]


# --- repeats ----------------------------------------------------------------------------------


async def test_repeat_once_returns_the_new_id_then_true(
    jc: JobCollection, clock: ManualClock
) -> None:
    """B.4: repeat(repeats=1, wait) with done(repeat_id=True)."""
    first_id = await jc.create_job("t").repeat(1, wait=60).save()
    worker = await claim_one(jc)
    second_id = await worker.done(repeat_id=True)
    assert second_id not in (True, False, None, first_id)
    second = await stored(jc, second_id)
    assert second["status"] == "waiting"
    assert utc(second["after"]) == clock.now() + timedelta(seconds=60)
    assert second["repeats"] == 0

    clock.advance(59.999)
    await after_pass(jc)
    assert await nothing_ready(jc)
    clock.advance(0.001)
    await after_pass(jc)
    worker = await claim_one(jc)
    assert worker.id == second_id
    assert await worker.done(repeat_id=True) is True
    assert await jc.collection.count_documents({}) == 2


async def test_done_without_repeat_id_returns_true_and_still_repeats(
    jc: JobCollection,
) -> None:
    await jc.create_job("t").repeat(1, wait=0).save()
    worker = await claim_one(jc)
    assert await worker.done() is True
    assert await jc.collection.count_documents({}) == 2
    assert (await claim_one(jc)).id != worker.id


async def test_repeat_clone_fields(jc: JobCollection, clock: ManualClock) -> None:
    job = (
        jc.create_job("t", {"k": "v"})
        .priority("high")
        .retry(3, wait=5, backoff="exponential")
        .repeat(2, wait=0)
    )
    first_id = await job.save()
    worker = await claim_one(jc)
    assert await worker.fail("once")
    clock.advance(5)
    await after_pass(jc)
    worker = await claim_one(jc)
    run_id = worker.doc.run_id
    assert await worker.progress(1, 3)
    clock.advance(1)
    new_id = await worker.done({"r": 1}, repeat_id=True)
    original = await stored(jc, first_id)
    assert (original["retries"], original["retried"]) == (2, 2)

    clone = await stored(jc, new_id)
    assert clone["status"] == "ready"
    assert (clone["type"], clone["data"], clone["priority"]) == ("t", {"k": "v"}, -10)
    assert clone["runId"] is None
    assert (clone["retries"], clone["repeatRetries"], clone["retried"]) == (4, 4, 0)
    assert (clone["retryWait"], clone["retryBackoff"]) == (5000, "exponential")
    assert (clone["repeats"], clone["repeated"], clone["repeatWait"]) == (1, 1, 0)
    assert clone["progress"] == {"completed": 0, "total": 1, "percent": 0}
    assert utc(clone["created"]) == clock.now()
    assert utc(clone["after"]) == clock.now()
    for absent in ("result", "failures", "workTimeout", "expiresAfter"):
        assert absent not in clone
    assert clone["depends"] == []
    assert messages(clone) == ["Rerunning job", "Promoted to ready"]
    rerun_entry = clone["log"][0]
    assert rerun_entry["data"] == {"previousJob": {"id": first_id, "runId": run_id}}
    assert (rerun_entry["level"], rerun_entry["runId"]) == ("info", None)


async def test_repeat_stops_when_the_next_run_would_start_after_until(
    jc: JobCollection, clock: ManualClock
) -> None:
    await jc.create_job("t").repeat(wait=60, until=START + timedelta(seconds=150)).save()
    ids = []
    while True:
        worker = await claim_one(jc)
        ids.append(worker.id)
        outcome = await worker.done(repeat_id=True)
        if outcome is True:
            break
        clock.advance(60)
        await after_pass(jc)
    assert len(ids) == 3  # at 0, 60 and 120 s; 180 s is past until
    assert clock.now() == START + timedelta(seconds=120)
    assert await jc.collection.count_documents({}) == 3


async def test_repeat_retries_is_kept_across_repeats(jc: JobCollection) -> None:
    await jc.create_job("t").retry(2, wait=0).repeat(2, wait=0).save()
    for _ in range(3):
        worker = await claim_one(jc)
        assert worker.doc.retries == 2  # 3 attempts, one used by this claim
        assert await worker.done()
    assert await nothing_ready(jc)


# --- cron schedules ---------------------------------------------------------------------------


async def test_cron_first_run_is_strictly_after_now(jc: JobCollection) -> None:
    # START is 12:00:00 exactly, an occurrence of the schedule: the first run is the next one
    job_id = await jc.create_job("t").repeat(schedule="*/10 * * * *").save()
    doc = await stored(jc, job_id)
    assert doc["status"] == "waiting"
    assert utc(doc["after"]) == START + timedelta(minutes=10)
    # v1.x reads the later.js schedule of the same times; the expression is kept in _private
    assert doc["repeatWait"] == {
        "schedules": [{"s": [0], "m": [0, 10, 20, 30, 40, 50]}],
        "exceptions": [],
    }
    assert doc["_private"]["jobcollectionSchedule"] == {"cron": "*/10 * * * *"}


async def test_cron_repeats_at_each_occurrence_until(jc: JobCollection, clock: ManualClock) -> None:
    until = START + timedelta(minutes=25)
    await jc.create_job("t").repeat(schedule="*/10 * * * *", until=until).save()
    runs = []
    for _ in range(5):
        await after_pass(jc)
        got = await jc.get_work("t")
        if got:
            runs.append(clock.now())
            clock.advance(3)
            outcome = await got[0].done(repeat_id=True)
            if outcome is True:
                break
            nxt = await stored(jc, outcome)
            assert utc(nxt["after"]) > clock.now()
            clock.set(utc(nxt["after"]))
        else:
            clock.advance(timedelta(minutes=10))
    assert runs == [START + timedelta(minutes=10), START + timedelta(minutes=20)]
    assert await jc.collection.count_documents({}) == 2
    clock.advance(timedelta(hours=1))
    await after_pass(jc)
    assert await nothing_ready(jc)


async def test_cron_repeat_skips_an_occurrence_less_than_half_a_second_away(
    jc: JobCollection, clock: ManualClock
) -> None:
    await jc.create_job("t").repeat(schedule="*/10 * * * *").save()
    clock.set(START + timedelta(minutes=10))
    await after_pass(jc)
    worker = await claim_one(jc)
    clock.set(START + timedelta(minutes=19, seconds=59.6))
    new_id = await worker.done(repeat_id=True)
    assert utc((await stored(jc, new_id))["after"]) == START + timedelta(minutes=30)


async def test_cron_schedule_with_seconds_and_timezone(
    jc: JobCollection, clock: ManualClock
) -> None:
    # 09:00 in New York on 2026-01-01 is 14:00 UTC
    job_id = (
        await jc.create_job("t").repeat(schedule="0 9 * * *", timezone="America/New_York").save()
    )
    doc = await stored(jc, job_id)
    assert utc(doc["after"]) == datetime(2026, 1, 1, 14, 0, tzinfo=UTC)
    assert doc["repeatWait"] == {"schedules": [{"s": [0], "m": [0], "h": [9]}], "exceptions": []}
    assert doc["_private"]["jobcollectionSchedule"] == {
        "cron": "0 9 * * *",
        "timezone": "America/New_York",
    }
    # croniter syntax: a sixth field holds the seconds, last
    every_30s = await jc.create_job("u").repeat(schedule="* * * * * */30").save()
    assert utc((await stored(jc, every_30s))["after"]) == START + timedelta(seconds=30)


async def test_cron_with_no_run_before_until_is_not_saved(jc: JobCollection) -> None:
    job = jc.create_job("t").repeat(schedule="0 0 1 1 *", until=START + timedelta(days=1))
    assert await job.save() is None
    assert job.id is None
    assert await jc.collection.count_documents({}) == 0


async def test_rerun_of_a_scheduled_job_runs_at_the_next_occurrence(
    jc: JobCollection, clock: ManualClock
) -> None:
    """Quirk 5 fixed: rerun without a wait uses the schedule's next occurrence."""
    job = jc.create_job("t").repeat(0, schedule="*/10 * * * *")
    job_id = await job.save()
    clock.set(START + timedelta(minutes=10))
    await after_pass(jc)
    worker = await claim_one(jc)
    assert await worker.done() is True
    assert await jc.collection.count_documents({}) == 1  # repeats=0: no repeat
    clock.advance(5)
    new_id = await job.rerun()
    assert new_id not in (False, None, job_id)
    clone = await stored(jc, new_id)
    assert clone["status"] == "waiting"
    assert utc(clone["after"]) == START + timedelta(minutes=20)


# --- rerun ------------------------------------------------------------------------------------


async def test_rerun_with_wait_and_repeats(jc: JobCollection, clock: ManualClock) -> None:
    job = jc.create_job("t", {"x": 1})
    job_id = await job.save()
    assert await (await claim_one(jc)).done({"ok": 1})
    until = START + timedelta(hours=1)
    new_id = await job.rerun(repeats=2, until=until, wait=30)
    clone = await stored(jc, new_id)
    assert clone["status"] == "waiting"
    assert utc(clone["after"]) == START + timedelta(seconds=30)
    assert (clone["repeats"], clone["repeated"]) == (2, 1)
    assert utc(clone["repeatUntil"]) == until
    assert utc(clone["retryUntil"]) == until
    assert clone["log"][0]["data"] == {
        "previousJob": {"id": job_id, "runId": (await stored(jc, job_id))["runId"]}
    }
    assert (await stored(jc, job_id))["status"] == "completed"


async def test_repeats_and_reruns_record_their_lineage(
    jc: JobCollection, clock: ManualClock
) -> None:
    first = jc.create_job("t").repeat(2, wait=0)
    first_id = await first.save()
    assert first.rescheduled_from is None and await first.lineage() == []
    chain = [first_id]
    for _ in range(2):  # each completion schedules the next run, made from it
        worker = await claim_one(jc)
        assert worker.id == chain[-1]
        assert await worker.lineage() == chain[:-1]
        repeat_id = await worker.done(repeat_id=True)
        chain.append(repeat_id)
        await after_pass(jc)
    last = await claim_one(jc)
    assert last.id == chain[-1] and last.rescheduled_from == chain[-2]
    assert await last.lineage() == chain[:-1]
    assert await last.done() is True
    rerun_id = await last.rerun(wait=0)
    rerun = await jc.get_job(rerun_id)
    assert rerun is not None and await rerun.lineage() == chain
    assert rerun.rescheduled_from == last.id


@pytest.mark.parametrize("status", ["ready", "running", "failed", "cancelled"])
async def test_rerun_of_a_job_that_is_not_completed_returns_false(
    jc: JobCollection, status: str
) -> None:
    job = jc.create_job("t")
    await job.save()
    if status != "ready":
        worker = await claim_one(jc)
        if status == "failed":
            assert await worker.fail("x", fatal=True)
        elif status == "cancelled":
            assert await job.cancel()
    before = await stored(jc, job.id)
    assert await job.rerun() is False
    assert await stored(jc, job.id) == before
    assert await jc.collection.count_documents({}) == 1


async def test_rerun_of_a_removed_job_returns_false(jc: JobCollection) -> None:
    job = jc.create_job("t")
    await job.save()
    assert await (await claim_one(jc)).done()
    assert await job.remove()
    assert await job.rerun() is False
    assert await jc.collection.count_documents({}) == 0


# --- cancel_repeats ---------------------------------------------------------------------------


async def test_cancel_repeats_on_save_cancels_earlier_repeating_jobs(jc: JobCollection) -> None:
    first = await jc.create_job("t").repeat(wait=60).save()
    other_type = await jc.create_job("u").repeat(wait=60).save()
    second = await jc.create_job("t").repeat(wait=60).save(cancel_repeats=True)
    assert (await stored(jc, first))["status"] == "cancelled"
    assert (await stored(jc, second))["status"] == "ready"
    assert (await stored(jc, other_type))["status"] == "ready"


async def test_save_without_cancel_repeats_keeps_earlier_repeating_jobs(
    jc: JobCollection,
) -> None:
    first = await jc.create_job("t").repeat(wait=60).save()
    second = await jc.create_job("t").repeat(wait=60).save()
    assert (await stored(jc, first))["status"] == "ready"
    assert (await stored(jc, second))["status"] == "ready"


async def test_cancel_repeats_applies_only_to_a_forever_repeating_job(
    jc: JobCollection,
) -> None:
    first = await jc.create_job("t").repeat(wait=60).save()
    await jc.create_job("t").repeat(5, wait=60).save(cancel_repeats=True)
    assert (await stored(jc, first))["status"] == "ready"
