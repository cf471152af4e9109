"""Round trips per job at the defaults: a claim, and one write for the report when the job sets
nothing else off; and the cases where a report must read the job first.

A worker's handle holds the job as claimed, so its done() or fail() is planned from that copy
and written blind, fenced by "no dependents" (`_private.jobcollectionDependents`, set on an
antecedent before its dependent is stored). A job with dependents, a repeat to schedule, or a
handle made from another copy is read first, as before. Dependents another application saved
(job-collection v1.x does not mark their antecedents) are adopted by the job server's pass.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from bson import ObjectId

from conftest import SHARDED
from helpers import claim_one, messages, stored, stored_job
from jobcollection import Job, JobCollection, ManualClock


async def costs(jc: JobCollection, action: Any) -> int:
    before = jc.commands
    await action
    return jc.commands - before


async def test_a_plain_job_costs_a_claim_and_one_write(jc: JobCollection) -> None:
    job_id = await jc.create_job("t").save()
    claimed: list[Job] = []

    async def claim() -> None:
        claimed.extend(await jc.get_work("t"))

    await jc.paused_types()  # the settings every claim reads, at most once a second
    assert await costs(jc, claim()) == (2 if SHARDED else 1)  # a mongos: find, then by _id
    assert await costs(jc, claimed[0].done({"ok": 1})) == 1
    doc = await stored(jc, job_id)
    assert doc["status"] == "completed" and doc["result"] == {"ok": 1}
    assert "jobcollectionFollowUps" not in doc.get("_private", {})


async def test_a_failure_costs_one_write_too(jc: JobCollection) -> None:
    job_id = await jc.create_job("t").retry(1, wait=0).save()
    job = await claim_one(jc)
    assert await costs(jc, job.fail("flaky")) == 1
    doc = await stored(jc, job_id)
    assert doc["status"] == "waiting" and doc["failures"][-1]["value"] == "flaky"
    assert await jc.ready_jobs([job_id]) is True
    job = await claim_one(jc)
    assert await costs(jc, job.fail("again")) == 1  # a failure for good, with no dependents
    assert (await stored(jc, job_id))["status"] == "failed"


async def test_a_dependent_saved_after_the_claim_is_still_resolved(jc: JobCollection) -> None:
    first = jc.create_job("a")
    await first.save()
    held = await claim_one(jc, "a")  # claimed before anything depends on it
    dependent_id = await jc.create_job("b").depends([first]).save()
    assert await held.done() is True  # the blind write misses; the job is read, then written
    dependent = await stored(jc, dependent_id)
    assert dependent["status"] == "ready" and dependent["resolved"] == [first.id]


async def test_a_fatal_failure_with_a_dependent_cancels_it(jc: JobCollection) -> None:
    first = jc.create_job("a")
    await first.save()
    held = await claim_one(jc, "a")
    dependent_id = await jc.create_job("b").depends([first]).save()
    assert await held.fail("broken", fatal=True) is True
    assert (await stored(jc, dependent_id))["status"] == "cancelled"


async def test_a_repeating_job_is_read_before_its_completion(jc: JobCollection) -> None:
    job_id = await jc.create_job("t").repeat(1, wait=60).save()
    job = await claim_one(jc)
    assert await job.done() is True
    assert await jc.collection.count_documents({"type": "t"}) == 2
    assert (await stored(jc, job_id))["status"] == "completed"


async def test_a_job_repeating_on_a_cron_schedule_is_read_before_its_completion(
    jc: JobCollection, clock: ManualClock
) -> None:
    # The claim reads the schedule from _private (repeatWait holds its later.js form): a
    # claimed copy without it would look like a job with no repeat and be completed blind.
    job_id = await jc.create_job("t").repeat(schedule="*/10 * * * *").save()
    clock.set((await stored(jc, job_id))["after"].replace(tzinfo=UTC))
    await jc.ready_jobs()
    job = await claim_one(jc)
    assert await job.done() is True
    assert await jc.collection.count_documents({"type": "t"}) == 2


async def test_a_handle_built_from_another_copy_reads_the_job_first(jc: JobCollection) -> None:
    job_id = await jc.create_job("t").save()
    claimed = await claim_one(jc)
    copy = Job(jc, claimed.doc)  # not the claimed copy: its fields are not trusted
    assert await costs(jc, copy.done()) > 1
    assert (await stored(jc, job_id))["status"] == "completed"


async def test_dependents_saved_by_another_application_are_adopted_by_the_server(
    jc: JobCollection, clock: ManualClock
) -> None:
    """A job-collection v1.x application saves dependents without marking their antecedents:
    a completion written blind does not find them, and the next job-server pass does."""
    done_id, failed_id = await jc.create_job("a").save(), await jc.create_job("a").save()
    resolved = stored_job(clock.now(), type="later", status="waiting", depends=[done_id])
    doomed = stored_job(clock.now(), type="later", status="waiting", depends=[failed_id])
    await jc.collection.insert_many([resolved, doomed])
    first, second = await jc.get_work("a", max_jobs=2)
    ok, bad = (first, second) if first.id == done_id else (second, first)
    assert await ok.done() is True
    assert await bad.fail("broken", fatal=True) is True
    assert (await stored(jc, resolved["_id"]))["status"] == "waiting"  # not found by then
    await jc.run_server_pass()
    now_ready = await stored(jc, resolved["_id"])
    assert now_ready["status"] == "ready" and now_ready["resolved"] == [done_id]
    assert "Dependency resolved" in messages(now_ready)
    assert (await stored(jc, doomed["_id"]))["status"] == "cancelled"
    # Another one, saved later, is adopted by the next pass the same way.
    later_id = ObjectId()
    await jc.collection.insert_one(
        stored_job(clock.now(), _id=later_id, type="b", status="waiting", depends=[done_id])
    )
    await jc.run_server_pass()
    assert (await stored(jc, later_id))["status"] == "ready"
