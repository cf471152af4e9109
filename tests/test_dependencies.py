"""Dependencies: dependents wait for their antecedents, are resolved by done, cancelled when
an antecedent fails, and cancel/restart cascade over whole chains (SPEC B.2.1, B.2.5-B.2.7,
B.2.11, B.2.12, B.4, quirks 4 and 6)."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest

from conftest import START
from helpers import claim_one, messages, stored, utc
from jobcollection import InvalidArgument, Job, JobCollection, ManualClock

pytestmark = pytest.mark.both_sides


async def status(jc: JobCollection, job: Job) -> str:
    return str((await stored(jc, job.id))["status"])


async def saved(jc: JobCollection, job_type: str = "t", *, on: Any = None, **kw: Any) -> Job:
    job = jc.create_job(job_type, kw or None)
    if on is not None:
        job.depends(on)
    assert await job.save() is not None
    return job


async def complete(jc: JobCollection, job: Job, **done_kw: Any) -> Any:
    """Claim `job` (it must be the only ready one of its type) and complete it."""
    worker = await claim_one(jc, job.type)
    assert worker.id == job.id
    assert await worker.done(**done_kw) is True
    return worker.doc.run_id


async def chain(jc: JobCollection) -> tuple[Job, Job, Job]:
    """a <- b <- c: b depends on a, c depends on b; a is ready, b and c wait."""
    a = await saved(jc, "a")
    b = await saved(jc, "b", on=a)
    c = await saved(jc, "c", on=b)
    return a, b, c


# --- waiting and resolving -----------------------------------------------------------------------


async def test_dependent_waits_for_its_antecedent(jc: JobCollection, clock: ManualClock) -> None:
    a = jc.create_job("a").delay(30)
    assert await a.save()
    b = await saved(jc, "b", on=a)
    b_doc = await stored(jc, b.id)
    assert b_doc["status"] == "waiting"
    assert b_doc["depends"] == [a.id]
    assert b_doc["resolved"] == []

    clock.advance(30)
    await jc.run_server_pass()
    assert await status(jc, a) == "ready"
    assert await status(jc, b) == "waiting"  # promotion ignores jobs with dependencies
    assert await jc.get_work("b") == []

    run_id = await complete(jc, a)
    b_doc = await stored(jc, b.id)
    assert b_doc["status"] == "ready"
    assert b_doc["depends"] == []
    assert b_doc["resolved"] == [a.id]
    resolved = [e for e in b_doc["log"] if e["message"] == "Dependency resolved"]
    assert len(resolved) == 1
    assert resolved[0]["data"] == {"dependency": {"id": a.id, "runId": run_id}}
    assert resolved[0]["level"] == "info"
    assert messages(b_doc)[-1] == "Promoted to ready"
    assert (await claim_one(jc, "b")).id == b.id


async def test_dependent_of_two_waits_for_both(jc: JobCollection) -> None:
    a1 = await saved(jc, "a1")
    a2 = await saved(jc, "a2")
    b = await saved(jc, "b", on=[a1, a2])
    await complete(jc, a1)
    doc = await stored(jc, b.id)
    assert (doc["status"], doc["depends"], doc["resolved"]) == ("waiting", [a2.id], [a1.id])
    await complete(jc, a2)
    doc = await stored(jc, b.id)
    assert (doc["status"], doc["depends"], doc["resolved"]) == ("ready", [], [a1.id, a2.id])


async def test_done_resolves_dependents_in_any_status(jc: JobCollection) -> None:
    a = await saved(jc, "a")
    b = await saved(jc, "b", on=a)
    assert await b.pause()
    await complete(jc, a)
    doc = await stored(jc, b.id)
    assert doc["status"] == "paused"  # resolved, but stays paused
    assert (doc["depends"], doc["resolved"]) == ([], [a.id])
    assert await b.resume()
    assert await status(jc, b) == "ready"


async def test_delay_deps_delays_dependents(jc: JobCollection, clock: ManualClock) -> None:
    a = await saved(jc, "a")
    b = await saved(jc, "b", on=a)
    clock.advance(10)
    done_at = clock.now()
    await complete(jc, a, delay_deps=60)
    doc = await stored(jc, b.id)
    assert doc["status"] == "waiting"
    assert doc["depends"] == []
    assert utc(doc["after"]) == done_at + timedelta(seconds=60)
    clock.advance(59.999)
    await jc.run_server_pass()
    assert await status(jc, b) == "waiting"
    clock.advance(0.001)
    await jc.run_server_pass()
    assert await status(jc, b) == "ready"


async def test_delay_deps_never_moves_after_earlier(jc: JobCollection, clock: ManualClock) -> None:
    a = await saved(jc, "a")
    b = jc.create_job("b").depends(a).delay(3600)
    assert await b.save()
    await complete(jc, a, delay_deps=60)
    doc = await stored(jc, b.id)
    assert utc(doc["after"]) == START + timedelta(hours=1)  # $max keeps the later time
    assert doc["status"] == "waiting"


async def test_dependent_on_a_delayed_antecedent_runs_after_it(
    jc: JobCollection, clock: ManualClock
) -> None:
    a = jc.create_job("t", {"n": "a"}).delay(5)
    assert await a.save()
    b = await saved(jc, "t", on=a, n="b")
    assert await jc.get_work("t") == []  # neither may run yet
    clock.advance(5)
    await jc.run_server_pass()
    first = await claim_one(jc)
    assert first.id == a.id
    assert await jc.get_work("t") == []
    assert await first.done()
    assert (await claim_one(jc)).id == b.id


# --- the save-time dependency check ---------------------------------------------------------------


async def test_save_after_antecedent_completed_runs(jc: JobCollection) -> None:
    a = await saved(jc, "a")
    run_id = await complete(jc, a)
    b = await saved(jc, "b", on=a)
    doc = await stored(jc, b.id)
    assert doc["status"] == "ready"
    assert (doc["depends"], doc["resolved"]) == ([], [a.id])
    resolved = [e for e in doc["log"] if e["message"] == "Dependency resolved"]
    assert [e["data"] for e in resolved] == [{"dependency": {"id": a.id, "runId": run_id}}]


async def test_save_with_one_completed_and_one_pending_antecedent(jc: JobCollection) -> None:
    a1 = await saved(jc, "a1")
    await complete(jc, a1)
    a2 = await saved(jc, "a2")
    b = await saved(jc, "b", on=[a1, a2])
    doc = await stored(jc, b.id)
    assert (doc["status"], doc["depends"], doc["resolved"]) == ("waiting", [a2.id], [a1.id])


async def test_job_saved_paused_gets_completed_antecedents_resolved(jc: JobCollection) -> None:
    """Quirk 6 fixed: the save-time resolution applies to a job saved paused too."""
    a = await saved(jc, "a")
    await complete(jc, a)
    b = jc.create_job("b").depends(a)
    assert await b.pause()
    assert await b.save() is not None
    doc = await stored(jc, b.id)
    assert doc["status"] == "paused"
    assert (doc["depends"], doc["resolved"]) == ([], [a.id])
    assert "Dependency resolved" in messages(doc)
    assert await b.resume()
    assert await status(jc, b) == "ready"


@pytest.mark.parametrize(
    ("fate", "line"),
    [
        ("failed", "Antecedent job failed before save"),
        ("cancelled", "Antecedent job cancelled before save"),
        ("removed", "Antecedent job {id} missing at save"),
    ],
)
async def test_save_after_antecedent_failed_cancelled_or_removed_is_cancelled(
    jc: JobCollection, fate: str, line: str
) -> None:
    a = await saved(jc, "a")
    if fate == "failed":
        worker = await claim_one(jc, "a")
        assert await worker.fail("boom", fatal=True)
    else:
        assert await a.cancel()
        if fate == "removed":
            assert await a.remove()
    b = jc.create_job("b").depends(a)
    assert await b.save() is None
    assert b.id is None
    doc = await jc.collection.find_one({"type": "b"})
    assert doc is not None
    assert doc["status"] == "cancelled"
    assert line.format(id=a.id) in messages(doc)
    assert messages(doc)[-1] == "Job Cancelled"
    assert await jc.get_work("b") == []


async def test_save_depending_on_a_running_job_waits(jc: JobCollection) -> None:
    a = await saved(jc, "a")
    worker = await claim_one(jc, "a")
    b = await saved(jc, "b", on=a)
    assert await status(jc, b) == "waiting"
    assert await worker.done()
    assert await status(jc, b) == "ready"


# --- failure cascades -----------------------------------------------------------------------------


async def test_fatal_fail_cancels_dependents_transitively(jc: JobCollection) -> None:
    a, b, c = await chain(jc)
    worker = await claim_one(jc, "a")
    assert await worker.fail("boom", fatal=True)
    assert await status(jc, a) == "failed"
    for job in (b, c):
        doc = await stored(jc, job.id)
        assert doc["status"] == "cancelled"
        assert messages(doc)[-1] == "Job Cancelled"


async def test_fail_with_retries_left_cancels_nothing(jc: JobCollection) -> None:
    a = jc.create_job("a").retry(1, wait=0)
    assert await a.save()
    b = await saved(jc, "b", on=a)
    worker = await claim_one(jc, "a")
    assert await worker.fail("boom")
    assert await status(jc, a) == "waiting"
    assert await status(jc, b) == "waiting"


async def test_exhausted_retries_cancel_dependents(jc: JobCollection) -> None:
    a, b, c = await chain(jc)
    worker = await claim_one(jc, "a")
    assert await worker.fail("boom")  # one attempt only: failed
    assert [await status(jc, j) for j in (a, b, c)] == ["failed", "cancelled", "cancelled"]


# --- cancel cascades ------------------------------------------------------------------------------


async def test_cancel_cascades_to_dependents_by_default(jc: JobCollection) -> None:
    a, b, c = await chain(jc)
    assert await a.cancel() is True
    assert [await status(jc, j) for j in (a, b, c)] == ["cancelled"] * 3


async def test_cancel_without_dependents(jc: JobCollection) -> None:
    a, b, c = await chain(jc)
    assert await a.cancel(dependents=False) is True
    assert [await status(jc, j) for j in (a, b, c)] == ["cancelled", "waiting", "waiting"]


async def test_cancel_with_antecedents(jc: JobCollection) -> None:
    a, b, c = await chain(jc)
    d = await saved(jc, "d", on=c)
    assert await c.cancel(antecedents=True, dependents=False) is True
    assert [await status(jc, j) for j in (a, b, c, d)] == [
        "cancelled",
        "cancelled",
        "cancelled",
        "waiting",
    ]


async def test_cancel_with_antecedents_and_dependents_takes_the_whole_tree(
    jc: JobCollection,
) -> None:
    a, b, c = await chain(jc)
    d = await saved(jc, "d", on=c)
    assert await b.cancel(antecedents=True) is True
    assert [await status(jc, j) for j in (a, b, c, d)] == ["cancelled"] * 4


async def test_cancel_cascade_skips_finished_jobs(jc: JobCollection) -> None:
    a = await saved(jc, "a")
    await complete(jc, a)
    b = await saved(jc, "b", on=a)
    c = await saved(jc, "c", on=b)
    assert await c.cancel(antecedents=True) is True
    # b is ready (cancellable); a is completed and no longer listed in b's depends
    assert [await status(jc, j) for j in (a, b, c)] == ["completed", "cancelled", "cancelled"]


async def test_cancel_returns_true_when_only_a_dependent_was_cancelled(
    jc: JobCollection,
) -> None:
    a, b, c = await chain(jc)
    assert await b.cancel(dependents=False)
    assert await b.cancel() is True  # b itself is already cancelled; c is not
    assert await status(jc, c) == "cancelled"
    assert await status(jc, a) == "ready"


# --- restart cascades -----------------------------------------------------------------------------


async def test_restart_with_dependents(jc: JobCollection) -> None:
    a, b, c = await chain(jc)
    assert await a.cancel()
    assert await a.restart(dependents=True) is True
    assert [await status(jc, j) for j in (a, b, c)] == ["ready", "waiting", "waiting"]
    await complete(jc, a)
    assert await status(jc, b) == "ready"
    await complete(jc, b)
    assert await status(jc, c) == "ready"


async def test_restart_without_dependents_by_default(jc: JobCollection) -> None:
    a, b, c = await chain(jc)
    assert await a.cancel()
    assert await a.restart() is True
    assert [await status(jc, j) for j in (a, b, c)] == ["ready", "cancelled", "cancelled"]


async def test_restart_takes_antecedents_by_default(jc: JobCollection) -> None:
    a, b, c = await chain(jc)
    assert await a.cancel()
    assert await c.restart() is True
    assert [await status(jc, j) for j in (a, b, c)] == ["ready", "waiting", "waiting"]


async def test_restart_without_antecedents(jc: JobCollection) -> None:
    a, b, c = await chain(jc)
    assert await a.cancel()
    assert await c.restart(antecedents=False) is True
    assert [await status(jc, j) for j in (a, b, c)] == ["cancelled", "cancelled", "waiting"]


async def test_restarted_dependents_of_a_failed_job_wait_for_it(
    jc: JobCollection, clock: ManualClock
) -> None:
    a, b, c = await chain(jc)
    worker = await claim_one(jc, "a")
    assert await worker.fail("boom", fatal=True)
    assert await a.restart(dependents=True) is True
    assert [await status(jc, j) for j in (b, c)] == ["waiting", "waiting"]
    assert (await stored(jc, b.id))["depends"] == [a.id]  # still listed
    clock.advance(timedelta(minutes=5))  # the failure's after
    await jc.run_server_pass()
    await complete(jc, a)
    assert await status(jc, b) == "ready"


async def test_restart_of_a_middle_job_with_antecedents_and_dependents(
    jc: JobCollection,
) -> None:
    a, b, c = await chain(jc)
    assert await a.cancel()
    assert await b.restart(antecedents=True, dependents=True) is True
    assert [await status(jc, j) for j in (a, b, c)] == ["ready", "waiting", "waiting"]


# --- forced ready ---------------------------------------------------------------------------------


async def test_ready_without_force_refuses_a_job_with_dependencies(
    jc: JobCollection, caplog: pytest.LogCaptureFixture
) -> None:
    a = await saved(jc, "a")
    b = await saved(jc, "b", on=a)
    before = await stored(jc, b.id)
    with caplog.at_level(logging.WARNING, logger="jobcollection"):
        assert await b.ready() is False
    assert await stored(jc, b.id) == before
    assert any(r.name == "jobcollection" for r in caplog.records)


async def test_ready_force_clears_depends(jc: JobCollection) -> None:
    a = await saved(jc, "a")
    b = await saved(jc, "b", on=a)
    assert await b.ready(force=True) is True
    doc = await stored(jc, b.id)
    assert doc["status"] == "ready"
    assert doc["depends"] == []
    assert doc["resolved"] == []  # not moved to resolved: they were not resolved
    forced = [e for e in doc["log"] if e["message"] == "Dependencies force resolved"]
    assert len(forced) == 1
    assert forced[0]["level"] == "warning"
    assert messages(doc)[-2:] == ["Dependencies force resolved", "Promoted to ready"]
    assert (await claim_one(jc, "b")).id == b.id
    assert await status(jc, a) == "ready"  # the antecedent is untouched


async def test_ready_jobs_force_with_time_forever(jc: JobCollection) -> None:
    a = await saved(jc, "a")
    b = jc.create_job("b").depends(a).delay(3600)
    assert await b.save()
    assert await jc.ready_jobs([b.id], force=True) is False  # not due yet
    assert await jc.ready_jobs([b.id], time=jc.forever_date, force=True) is True
    doc = await stored(jc, b.id)
    assert doc["status"] == "ready"
    assert utc(doc["after"]) == START


async def test_depends_builder_requires_saved_jobs(jc: JobCollection) -> None:
    unsaved = jc.create_job("a")
    with pytest.raises(InvalidArgument) as err:
        jc.create_job("b").depends(unsaved)
    assert err.value.argument == "jobs[0]"
    assert await jc.collection.count_documents({}) == 0
