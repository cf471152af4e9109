"""Every status transition of the original state diagram, and the ones it forbids.

Allowed transitions change the stored document as Part B says and write the B.1.4 log
entries; forbidden ones return False/None, leave the stored document exactly as it was and
log why on the "jobcollection" logger (SPEC A.5).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest

from conftest import START
from helpers import Doc, claim_one, messages, stored, utc
from jobcollection import InvalidArgument, Job, JobCollection, JobNotSaved, ManualClock

# --- helpers ---------------------------------------------------------------------------------


def entries(doc: Doc, message: str) -> list[Doc]:
    return [e for e in doc.get("log", []) if e["message"] == message]


async def save(jc: JobCollection, job: Job) -> Any:
    job_id = await job.save()
    assert job_id is not None
    return job_id


async def job_in(jc: JobCollection, status: str, *, retries: int = 0) -> tuple[Job, Job | None]:
    """A saved job of type "t" brought to `status`; the worker's handle when it ran."""
    job = jc.create_job("t", {"n": 1})
    if retries:
        job.retry(retries, wait=0)
    if status == "waiting":
        job.delay(60)
    await save(jc, job)
    worker = None
    if status == "paused":
        assert await job.pause()
    elif status == "cancelled":
        assert await job.cancel()
    elif status in ("running", "completed", "failed"):
        worker = await claim_one(jc)
        if status == "completed":
            assert await worker.done({"ok": True}) is True
        elif status == "failed":
            assert await worker.fail("boom", fatal=True)
    assert (await stored(jc, job.id))["status"] == status
    return job, worker


def warned(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "jobcollection" and r.levelno >= logging.WARNING
    ]


# --- allowed transitions -----------------------------------------------------------------------


async def test_saved_job_without_delay_is_ready_at_once(jc: JobCollection) -> None:
    job = jc.create_job("t", {"a": 1})
    job_id = await save(jc, job)
    doc = await stored(jc, job_id)
    assert doc["status"] == "ready"
    assert doc["runId"] is None
    assert utc(doc["created"]) == START
    assert messages(doc) == ["Constructed", "Job Submitted", "Promoted to ready"]
    assert all(e["level"] == "info" and e["runId"] is None for e in doc["log"])


async def test_waiting_to_ready_by_promotion(jc: JobCollection, clock: ManualClock) -> None:
    job = jc.create_job("t").delay(60)
    job_id = await save(jc, job)
    doc = await stored(jc, job_id)
    assert doc["status"] == "waiting"
    assert utc(doc["after"]) == START + timedelta(seconds=60)
    assert messages(doc) == ["Constructed", "Job Submitted"]

    clock.advance(59.999)
    assert not (await jc.run_server_pass()).promoted
    assert (await stored(jc, job_id))["status"] == "waiting"

    clock.advance(0.001)
    assert (await jc.run_server_pass()).promoted
    doc = await stored(jc, job_id)
    assert doc["status"] == "ready"
    assert messages(doc)[-1] == "Promoted to ready"
    assert utc(doc["updated"]) == clock.now()
    # the promote form leaves `after` as it was
    assert utc(doc["after"]) == START + timedelta(seconds=60)


async def test_ready_to_running_by_get_work(jc: JobCollection) -> None:
    job_id = await save(jc, jc.create_job("t").retry(2))
    worker = await claim_one(jc)
    assert worker.id == job_id
    assert worker.doc.status == "running"
    assert worker.doc.run_id is not None
    doc = await stored(jc, job_id)
    assert doc["status"] == "running"
    assert doc["runId"] == worker.doc.run_id
    assert (doc["retries"], doc["retried"]) == (2, 1)
    running = entries(doc, "Job Running")
    assert len(running) == 1
    assert running[0]["runId"] == worker.doc.run_id
    assert running[0]["level"] == "info"


async def test_running_to_completed(jc: JobCollection) -> None:
    job, worker = await job_in(jc, "running")
    assert worker is not None
    run_id = worker.doc.run_id
    assert await worker.progress(1, 4)
    assert await worker.done({"answer": 42}) is True
    doc = await stored(jc, job.id)
    assert doc["status"] == "completed"
    assert doc["result"] == {"answer": 42}
    assert doc["runId"] == run_id  # done leaves the runId
    assert doc["progress"] == {"completed": 4, "total": 4, "percent": 100}
    last = doc["log"][-1]
    assert (last["message"], last["level"], last["runId"]) == ("Job Completed", "success", run_id)


async def test_done_wraps_a_non_dict_result(jc: JobCollection) -> None:
    job, worker = await job_in(jc, "running")
    assert worker is not None
    assert await worker.done("Done!") is True
    assert (await stored(jc, job.id))["result"] == {"value": "Done!"}


async def test_running_to_waiting_by_non_fatal_fail(jc: JobCollection, clock: ManualClock) -> None:
    job = jc.create_job("t").retry(1, wait=30)
    job_id = await save(jc, job)
    worker = await claim_one(jc)
    run_id = worker.doc.run_id
    clock.advance(5)
    assert await worker.fail("boom") is True
    assert worker.doc.run_id is None
    doc = await stored(jc, job_id)
    assert doc["status"] == "waiting"
    assert doc["runId"] is None
    assert utc(doc["after"]) == clock.now() + timedelta(seconds=30)
    assert doc["failures"] == [{"value": "boom", "runId": run_id}]
    last = doc["log"][-1]
    assert (last["message"], last["level"], last["runId"]) == (
        "Job Failed with Error: boom.",
        "warning",
        run_id,
    )
    # sent back to waiting: promoted again once the wait is over
    clock.advance(30)
    await jc.run_server_pass()
    assert (await stored(jc, job_id))["status"] == "ready"


async def test_running_to_failed_by_fatal_fail(jc: JobCollection) -> None:
    job, worker = await job_in(jc, "running", retries=5)
    assert worker is not None
    run_id = worker.doc.run_id
    assert await worker.fail({"value": "boom", "code": 7}, fatal=True) is True
    doc = await stored(jc, job.id)
    assert doc["status"] == "failed"
    assert doc["runId"] is None
    assert doc["retries"] == 5  # attempts were left: it failed because it was fatal
    assert doc["failures"] == [{"value": "boom", "code": 7, "runId": run_id}]
    last = doc["log"][-1]
    assert (last["message"], last["level"], last["runId"]) == (
        "Job Failed with Fatal Error: boom.",
        "danger",
        run_id,
    )


async def test_running_to_failed_when_retries_are_exhausted(jc: JobCollection) -> None:
    job, worker = await job_in(jc, "running")  # a new job has one attempt
    assert worker is not None
    assert await worker.fail("boom") is True
    doc = await stored(jc, job.id)
    assert doc["status"] == "failed"
    assert doc["retries"] == 0
    assert (doc["log"][-1]["message"], doc["log"][-1]["level"]) == (
        "Job Failed with Fatal Error: boom.",
        "danger",
    )


async def test_running_to_failed_when_retry_until_has_passed(
    jc: JobCollection, clock: ManualClock
) -> None:
    job = jc.create_job("t").retry(5, until=START + timedelta(seconds=10), wait=60)
    job_id = await save(jc, job)
    worker = await claim_one(jc)
    assert await worker.fail("boom") is True
    doc = await stored(jc, job_id)
    assert doc["status"] == "failed"
    assert doc["retries"] == 5  # attempts were left, the deadline was not
    assert utc(doc["after"]) == START + timedelta(seconds=60)  # set even when failed
    assert doc["log"][-1]["message"] == "Job Failed with Fatal Error: boom."


@pytest.mark.parametrize(
    ("error", "message", "failure"),
    [
        (None, "Job Failed with Error: No error information provided.", None),
        ({"code": 3}, "Job Failed with Error.", {"code": 3}),
        (42, "Job Failed with Error.", {"value": 42}),
        ("boom", "Job Failed with Error: boom.", {"value": "boom"}),
    ],
)
async def test_fail_messages_and_stored_errors(
    jc: JobCollection, error: Any, message: str, failure: Doc | None
) -> None:
    job, worker = await job_in(jc, "running", retries=1)
    assert worker is not None
    assert await worker.fail(error) is True
    doc = await stored(jc, job.id)
    expected = {"value": "No error information provided"} if failure is None else failure
    assert doc["failures"] == [{**expected, "runId": doc["log"][-1]["runId"]}]
    assert doc["log"][-1]["message"] == message
    assert doc["log"][-1]["level"] == "warning"


@pytest.mark.parametrize("status", ["waiting", "ready"])
async def test_pausable_to_paused(jc: JobCollection, status: str) -> None:
    job, _ = await job_in(jc, status)
    assert await job.pause() is True
    doc = await stored(jc, job.id)
    assert doc["status"] == "paused"
    assert (doc["log"][-1]["message"], doc["log"][-1]["level"]) == ("Job Paused", "info")
    # a paused job is never handed out, nor promoted
    assert await jc.get_work("t") == []
    await jc.run_server_pass()
    assert (await stored(jc, job.id))["status"] == "paused"


async def test_resume_moves_paused_to_ready_when_due(jc: JobCollection) -> None:
    job, _ = await job_in(jc, "paused")
    assert await job.resume() is True
    doc = await stored(jc, job.id)
    assert doc["status"] == "ready"
    assert messages(doc)[-2:] == ["Job Resumed", "Promoted to ready"]


async def test_resume_moves_paused_to_waiting_when_not_due(
    jc: JobCollection, clock: ManualClock
) -> None:
    job = jc.create_job("t").delay(60)
    await save(jc, job)
    assert await job.pause()
    assert await job.resume() is True
    doc = await stored(jc, job.id)
    assert doc["status"] == "waiting"
    assert messages(doc)[-1] == "Job Resumed"
    clock.advance(60)
    await jc.run_server_pass()
    assert (await stored(jc, job.id))["status"] == "ready"


@pytest.mark.parametrize("status", ["waiting", "ready", "paused", "running"])
async def test_cancellable_to_cancelled(jc: JobCollection, status: str) -> None:
    job, worker = await job_in(jc, status)
    if worker is not None:
        assert await worker.progress(1, 2)
    assert await job.cancel() is True
    doc = await stored(jc, job.id)
    assert doc["status"] == "cancelled"
    assert doc["runId"] is None
    assert doc["progress"] == {"completed": 0, "total": 1, "percent": 0}
    last = doc["log"][-1]
    assert (last["message"], last["level"], last["runId"]) == ("Job Cancelled", "warning", None)
    if worker is not None:
        # the worker that held it is fenced out
        assert await worker.done() is False
        assert await worker.progress(2, 2) is False
        assert await stored(jc, job.id) == doc


async def test_cancelled_to_ready_by_restart(jc: JobCollection) -> None:
    job, _ = await job_in(jc, "cancelled")
    assert await job.restart() is True
    doc = await stored(jc, job.id)
    assert doc["status"] == "ready"
    assert messages(doc)[-2:] == ["Job Restarted", "Promoted to ready"]
    assert (await claim_one(jc)).id == job.id


async def test_failed_to_waiting_by_restart_keeps_the_failure_after(
    jc: JobCollection, clock: ManualClock
) -> None:
    job, worker = await job_in(jc, "failed")
    assert worker is not None
    assert await job.restart() is True
    doc = await stored(jc, job.id)
    # a failed job keeps the `after` its failure computed (now + retryWait)
    assert doc["status"] == "waiting"
    assert utc(doc["after"]) == START + timedelta(minutes=5)
    assert messages(doc)[-1] == "Job Restarted"
    assert doc["failures"]  # failures are kept
    clock.advance(timedelta(minutes=5))
    await jc.run_server_pass()
    assert (await stored(jc, job.id))["status"] == "ready"


async def test_restart_with_until_sets_retry_until(jc: JobCollection) -> None:
    job, _ = await job_in(jc, "cancelled")
    until = START + timedelta(hours=1)
    assert await job.restart(until=until) is True
    assert utc((await stored(jc, job.id))["retryUntil"]) == until


async def test_completed_is_cloned_by_rerun(jc: JobCollection, clock: ManualClock) -> None:
    job, _ = await job_in(jc, "completed")
    before = await stored(jc, job.id)
    new_id = await job.rerun(wait=0)
    assert new_id not in (False, None, job.id)
    assert await stored(jc, job.id) == before  # the original stays completed
    clone = await stored(jc, new_id)
    assert clone["status"] == "ready"
    assert clone["data"] == {"n": 1}

    # without a wait, the clone waits the job's repeat wait (300 s by default)
    later_id = await job.rerun()
    later = await stored(jc, later_id)
    assert later["status"] == "waiting"
    assert utc(later["after"]) == clock.now() + timedelta(minutes=5)


@pytest.mark.parametrize("status", ["cancelled", "completed", "failed"])
async def test_removable_to_removed(jc: JobCollection, status: str) -> None:
    job, _ = await job_in(jc, status)
    assert await job.remove() is True
    assert await jc.collection.find_one({"_id": job.id}) is None
    assert await jc.get_job(job.id) is None


# --- forbidden transitions ---------------------------------------------------------------------

FORBIDDEN = [
    ("pause", "running"),
    ("pause", "paused"),
    ("pause", "completed"),
    ("pause", "failed"),
    ("pause", "cancelled"),
    ("resume", "waiting"),
    ("resume", "ready"),
    ("resume", "running"),
    ("resume", "completed"),
    ("resume", "failed"),
    ("resume", "cancelled"),
    ("restart", "waiting"),
    ("restart", "ready"),
    ("restart", "paused"),
    ("restart", "running"),
    ("restart", "completed"),
    ("remove", "waiting"),
    ("remove", "ready"),
    ("remove", "paused"),
    ("remove", "running"),
    ("rerun", "waiting"),
    ("rerun", "ready"),
    ("rerun", "paused"),
    ("rerun", "running"),
    ("rerun", "failed"),
    ("rerun", "cancelled"),
    ("cancel", "completed"),
    ("cancel", "failed"),
    ("cancel", "cancelled"),
    ("ready", "ready"),
    ("ready", "paused"),
    ("ready", "running"),
    ("ready", "completed"),
    ("ready", "failed"),
    ("ready", "cancelled"),
]


@pytest.mark.parametrize(("action", "status"), FORBIDDEN)
async def test_forbidden_transition_changes_nothing_and_logs_why(
    jc: JobCollection, caplog: pytest.LogCaptureFixture, action: str, status: str
) -> None:
    job, _ = await job_in(jc, status)
    before = await stored(jc, job.id)
    count = await jc.collection.count_documents({})
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="jobcollection"):
        outcome = await getattr(job, action)()
    assert outcome is False
    assert await stored(jc, job.id) == before
    assert await jc.collection.count_documents({}) == count
    assert warned(caplog), f"{action} on a {status} job logged nothing"


async def test_ready_of_a_waiting_job_with_future_after_is_refused(
    jc: JobCollection, caplog: pytest.LogCaptureFixture
) -> None:
    job, _ = await job_in(jc, "waiting")
    before = await stored(jc, job.id)
    with caplog.at_level(logging.WARNING, logger="jobcollection"):
        assert await job.ready() is False
    assert await stored(jc, job.id) == before
    assert warned(caplog)
    # an explicit time at or past `after` readies it, and sets after to now
    assert await job.ready(time=START + timedelta(seconds=60)) is True
    doc = await stored(jc, job.id)
    assert doc["status"] == "ready"
    assert utc(doc["after"]) == START


@pytest.mark.parametrize("action", ["done", "fail", "progress"])
@pytest.mark.parametrize("status", ["completed", "failed", "cancelled"])
async def test_worker_reports_on_a_job_no_longer_running_are_refused(
    jc: JobCollection, caplog: pytest.LogCaptureFixture, action: str, status: str
) -> None:
    job, worker = await job_in(jc, "running")
    assert worker is not None
    stale = Job(jc, worker.doc.model_copy(deep=True))  # a second handle on the same claim
    # the stale handle reports something else than what happened (a replay of the very same
    # report may be acknowledged again; a different one never is)
    if status == "completed":
        assert await worker.done({"by": "the other handle"}) is True
    elif status == "failed":
        assert await worker.fail("x", fatal=True) is True
    else:
        assert await job.cancel() is True
    before = await stored(jc, job.id)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="jobcollection"):
        if action == "progress":
            outcome = await stale.progress(1, 2)
        else:
            outcome = await getattr(stale, action)()
    assert outcome is False
    assert await stored(jc, job.id) == before
    assert warned(caplog)


async def test_a_different_second_report_on_the_same_claim_is_refused(jc: JobCollection) -> None:
    job, worker = await job_in(jc, "running")
    assert worker is not None
    assert await worker.done({"n": 1}) is True
    before = await stored(jc, job.id)
    assert await worker.done({"n": 2}) is False
    assert await worker.fail("late") is False
    assert await stored(jc, job.id) == before


async def test_done_and_fail_need_a_claim(jc: JobCollection) -> None:
    job = jc.create_job("t")
    with pytest.raises(JobNotSaved):
        await job.done()
    await save(jc, job)
    with pytest.raises(JobNotSaved):
        await job.fail()
    assert (await stored(jc, job.id))["status"] == "ready"


# --- the log of a whole life ---------------------------------------------------------------------


async def test_log_entries_over_a_life(jc: JobCollection, clock: ManualClock) -> None:
    job = jc.create_job("t").retry(1, wait=0)
    job_id = await save(jc, job)
    assert await job.pause()
    assert await job.resume()
    w1 = await claim_one(jc)
    assert await w1.log("working", level="success", data={"step": 1})
    run1 = w1.doc.run_id
    assert await w1.fail("boom")
    await jc.run_server_pass()
    w2 = await claim_one(jc)
    run2 = w2.doc.run_id
    assert await w2.fail("boom")
    assert await job.restart()
    w3 = await claim_one(jc)
    assert await w3.done()
    doc = await stored(jc, job_id)
    got = [(e["message"], e["level"]) for e in doc["log"]]
    assert got == [
        ("Constructed", "info"),
        ("Job Submitted", "info"),
        ("Promoted to ready", "info"),
        ("Job Paused", "info"),
        ("Job Resumed", "info"),
        ("Promoted to ready", "info"),
        ("Job Running", "info"),
        ("working", "success"),
        ("Job Failed with Error: boom.", "warning"),
        ("Promoted to ready", "info"),
        ("Job Running", "info"),
        ("Job Failed with Fatal Error: boom.", "danger"),
        ("Job Restarted", "info"),
        ("Promoted to ready", "info"),
        ("Job Running", "info"),
        ("Job Completed", "success"),
    ]
    worked = entries(doc, "working")[0]
    assert worked["data"] == {"step": 1}
    assert worked["runId"] == run1
    run_ids = [e["runId"] for e in entries(doc, "Job Running")]
    assert run_ids == [run1, run2, w3.doc.run_id]
    assert len(set(run_ids)) == 3
    for e in doc["log"]:
        if e["message"] not in ("Job Running", "working") and not e["message"].startswith(
            ("Job Failed", "Job Completed")
        ):
            assert e["runId"] is None, e


# --- resave --------------------------------------------------------------------------------------


async def test_resave_of_a_job_saved_paused(jc: JobCollection) -> None:
    job = jc.create_job("t", {"v": 1})
    assert await job.pause() is True  # unsaved: changes the local status only
    job_id = await save(jc, job)
    doc = await stored(jc, job_id)
    assert doc["status"] == "paused"
    assert messages(doc)[-1] == "Job Submitted"

    job.doc.data = {"v": 2}
    job.priority("high").retry(3, wait=1)
    assert await job.save() == job_id
    doc = await stored(jc, job_id)
    assert doc["status"] == "ready"
    assert doc["data"] == {"v": 2}
    assert doc["priority"] == -10
    assert (doc["retries"], doc["repeatRetries"], doc["retryWait"]) == (4, 4, 1000)
    assert messages(doc)[-2:] == ["Job Resubmitted", "Promoted to ready"]
    assert await jc.collection.count_documents({}) == 1


async def test_resave_of_a_job_paused_after_save(jc: JobCollection, clock: ManualClock) -> None:
    job = jc.create_job("t", {"v": 1})
    job_id = await save(jc, job)
    assert await job.pause()
    job.doc.data = {"v": 3}
    job.delay(120)
    assert await job.save() == job_id
    doc = await stored(jc, job_id)
    assert doc["status"] == "waiting"
    assert doc["data"] == {"v": 3}
    assert utc(doc["after"]) == START + timedelta(seconds=120)
    assert messages(doc)[-1] == "Job Resubmitted"


@pytest.mark.parametrize("status", ["waiting", "ready", "running", "completed", "cancelled"])
async def test_resave_is_refused_unless_paused(
    jc: JobCollection, caplog: pytest.LogCaptureFixture, status: str
) -> None:
    job, _ = await job_in(jc, status)
    before = await stored(jc, job.id)
    job.doc.data = {"changed": True}
    with caplog.at_level(logging.WARNING, logger="jobcollection"):
        assert await job.save() is None
    assert await stored(jc, job.id) == before
    assert await jc.collection.count_documents({}) == 1
    assert warned(caplog)


async def test_save_refuses_a_document_in_another_status(jc: JobCollection) -> None:
    job = jc.create_job("t")
    job.doc.status = "ready"
    with pytest.raises(InvalidArgument) as err:
        await job.save()
    assert err.value.argument == "doc.status"
    assert await jc.collection.count_documents({}) == 0


# --- restart arithmetic ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("retries_option", "expected"),
    [(0, 1), (1, 2), (3, 4)],
)
async def test_restart_of_a_cancelled_job_that_never_ran(
    jc: JobCollection, retries_option: int, expected: int
) -> None:
    job, _ = await job_in(jc, "cancelled")
    assert (await stored(jc, job.id))["retries"] == 1
    assert await job.restart(retries=retries_option) is True
    assert (await stored(jc, job.id))["retries"] == expected  # max(1, 1) + n


@pytest.mark.parametrize(("retries_option", "expected"), [(0, 1), (2, 3)])
async def test_restart_of_a_failed_job_with_no_attempts_left(
    jc: JobCollection, retries_option: int, expected: int
) -> None:
    job, _ = await job_in(jc, "failed")
    assert (await stored(jc, job.id))["retries"] == 0
    assert await job.restart(retries=retries_option) is True
    assert (await stored(jc, job.id))["retries"] == expected  # max(0, 1) + n


async def test_restart_adds_to_the_attempts_left(jc: JobCollection) -> None:
    job, _ = await job_in(jc, "failed", retries=3)  # stored 4, one claimed: 3 left
    assert (await stored(jc, job.id))["retries"] == 3
    assert await job.restart(retries=2) is True
    doc = await stored(jc, job.id)
    assert doc["retries"] == 5
    assert doc["retried"] == 1  # unchanged by restart
    assert doc["repeatRetries"] == 4


async def test_restart_keeps_repeat_retries_balanced(jc: JobCollection) -> None:
    """B.4: save, cancel, restart(retries=0), refresh: repeatRetries == retries + retried."""
    job = jc.create_job("t")
    await save(jc, job)
    assert await job.cancel()
    assert await job.restart(retries=0)
    assert await job.refresh()
    assert job.doc.repeat_retries == job.doc.retries + job.doc.retried
    assert job.doc.status == "ready"


async def test_a_restarted_job_can_run_again_to_completion(jc: JobCollection) -> None:
    job, _ = await job_in(jc, "failed")
    assert await job.restart(retries=0)
    await jc.ready_jobs([job.id], time=jc.forever_date)
    worker = await claim_one(jc)
    assert worker.id == job.id
    assert await worker.done() is True
    doc = await stored(jc, job.id)
    assert (doc["status"], doc["retries"], doc["retried"]) == ("completed", 0, 2)


async def test_unsaved_job_pause_resume_change_local_status_only(
    jc: JobCollection,
) -> None:
    job = jc.create_job("t")
    assert await job.pause() is True
    assert job.doc.status == "paused"
    assert await job.resume() is True
    assert job.doc.status == "waiting"
    assert await jc.collection.count_documents({}) == 0


async def test_updated_moves_with_each_transition(jc: JobCollection, clock: ManualClock) -> None:
    job, _ = await job_in(jc, "ready")
    clock.advance(1)
    assert await job.pause()
    assert utc((await stored(jc, job.id))["updated"]) == clock.now()
    clock.advance(1)
    assert await job.cancel()
    assert utc((await stored(jc, job.id))["updated"]) == clock.now()
