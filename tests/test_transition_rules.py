"""The pure transition rules (transitions.py), tested directly: each is a function of a
document (or ids), options and "now", returning plain filters and updates. No database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bson import ObjectId

from jobcollection import FOREVER, FOREVER_DATE, JobDoc
from jobcollection import transitions as t
from jobcollection.document import FOLLOW_UPS, LINEAGE_LIMIT

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
RUN = ObjectId("0123456789abcdef01234567")


def claimed(**fields: object) -> JobDoc:
    return JobDoc.model_validate(
        {"type": "t", "status": "running", "runId": RUN, "_id": ObjectId(), **fields}
    )


def test_the_claim_fence_and_update() -> None:
    assert t.claimable(["a", "b"]) == {
        "type": {"$in": ["a", "b"]},
        "status": "ready",
        "runId": None,
    }
    ids = [ObjectId()]
    assert t.claimable(["a"], ids)["_id"] == {"$in": ids}
    update = t.claim(RUN, NOW, 30_000)
    assert update["$set"]["status"] == "running" and update["$set"]["runId"] == RUN
    assert update["$set"]["expiresAfter"] == NOW + timedelta(seconds=30)
    assert update["$inc"] == {"retries": -1, "retried": 1}
    # a started job lets go of its unique key, if it holds one
    assert update["$unset"] == {"_private.jobcollectionUnique": ""}
    leaseless = t.claim(RUN, NOW, None)
    assert leaseless["$unset"] == {
        "_private.jobcollectionUnique": "",
        "workTimeout": "",
        "expiresAfter": "",
    }


def test_every_worker_write_is_fenced_by_id_run_and_status() -> None:
    job_id = ObjectId()
    assert t.held(job_id, RUN) == {"_id": job_id, "runId": RUN, "status": "running"}


def test_done_completes_with_full_progress_and_a_log_line() -> None:
    doc = claimed(progress={"completed": 1, "total": 4, "percent": 25})
    update = t.done(doc, {"ok": 1}, NOW)
    assert update["$set"]["status"] == "completed" and update["$set"]["result"] == {"ok": 1}
    assert update["$set"]["progress"] == {"completed": 4, "total": 4, "percent": 100}
    assert update["$push"]["log"]["message"] == "Job Completed"
    assert update["$push"]["log"]["runId"] == RUN


def test_fail_retries_while_attempts_and_time_remain() -> None:
    retrying = claimed(retries=2, retried=1, retryWait=1000)
    status, update = t.fail(retrying, {"value": "x"}, False, NOW)
    assert status == "waiting"
    assert update["$set"]["after"] == NOW + timedelta(seconds=1)
    assert update["$set"]["runId"] is None
    assert update["$push"]["failures"] == {"value": "x", "runId": RUN}
    assert t.fail(retrying, {"value": "x"}, True, NOW)[0] == "failed"  # fatal
    assert t.fail(claimed(retries=0), {"value": "x"}, False, NOW)[0] == "failed"
    too_late = claimed(retries=5, retryWait=60_000, retryUntil=NOW + timedelta(seconds=30))
    assert t.fail(too_late, {"value": "x"}, False, NOW)[0] == "failed"


def test_exponential_backoff_doubles_the_wait_per_attempt() -> None:
    doc = claimed(retries=5, retried=3, retryWait=1000, retryBackoff="exponential")
    assert t.fail(doc, {"value": "x"}, False, NOW)[1]["$set"]["after"] == NOW + timedelta(seconds=4)


def test_release_gives_the_attempt_back_and_drops_the_lease() -> None:
    ids = [ObjectId()]
    fence, update = t.release(ids, RUN, NOW)
    assert fence == {"_id": {"$in": ids}, "runId": RUN, "status": "running"}
    assert update["$set"]["status"] == "ready" and update["$set"]["runId"] is None
    assert update["$inc"] == {"retries": 1, "retried": -1}
    assert update["$unset"] == {"workTimeout": "", "expiresAfter": ""}


def test_restart_splits_into_disjoint_updates_that_never_pass_forever() -> None:
    ids = [ObjectId()]
    exhausted, remaining, saturated = t.restart(ids, 5, None, NOW)
    assert exhausted[0]["retries"] == {"$lt": 1}
    assert exhausted[1]["$set"]["retries"] == 6
    assert remaining[0]["retries"] == {"$gte": 1, "$lte": FOREVER - 5}
    assert remaining[1]["$inc"] == {"retries": 5}
    assert saturated[0]["retries"] == {"$gte": 1, "$gt": FOREVER - 5}
    assert saturated[1]["$set"]["retries"] == FOREVER
    for _, update in (exhausted, remaining, saturated):
        # a failed job's pending cancels are void, and it is no longer to be removed
        assert update["$unset"] == {FOLLOW_UPS: "", "_private.jobcollectionExpireAt": ""}


def test_ready_promotes_due_jobs_without_dependencies_unless_forced() -> None:
    query, update = t.ready(None, NOW, NOW, False)
    assert query == {"status": "waiting", "after": {"$lte": NOW}, "depends": {"$size": 0}}
    assert "after" not in update["$set"]  # a pass keeps each job's own after
    ids = [ObjectId()]
    forced_query, forced = t.ready(ids, NOW, FOREVER_DATE, True)
    assert forced_query == {"status": "waiting", "_id": {"$in": ids}}
    assert forced["$set"]["depends"] == [] and forced["$set"]["after"] == NOW
    assert [e["message"] for e in forced["$push"]["log"]["$each"]] == [
        "Dependencies force resolved",
        "Promoted to ready",
    ]


def test_resolving_a_dependent_is_fenced_and_adds_each_id_once() -> None:
    dependent, antecedent = ObjectId(), ObjectId()
    query, update = t.resolve_dependents(dependent, [(antecedent, RUN)], NOW, 5000)
    assert query == {"_id": dependent, "depends": {"$all": [antecedent]}}
    assert update["$pull"] == {"depends": {"$in": [antecedent]}}
    assert update["$addToSet"] == {"resolved": {"$each": [antecedent]}}
    assert update["$max"] == {"after": NOW + timedelta(seconds=5)}


def test_a_job_with_pending_follow_ups_is_not_removable() -> None:
    ids = [ObjectId()]
    query = t.removable(ids, ["completed"])
    assert query[FOLLOW_UPS] == {"$exists": False}


def test_one_completion_derives_one_repeat_id() -> None:
    job_id = ObjectId()
    assert t.repeat_job_id(job_id, RUN) == t.repeat_job_id(job_id, RUN)
    assert t.repeat_job_id(job_id, RUN) != t.repeat_job_id(job_id, ObjectId())
    assert t.repeat_job_id("a string id", "a run") == t.repeat_job_id("a string id", "a run")


def test_a_repeat_is_a_fresh_copy_scheduled_from_its_completion() -> None:
    done = claimed(
        status="completed",
        repeats=3,
        repeated=1,
        retries=0,
        retried=2,
        repeatRetries=2,
        data={"k": 1},
        result={"r": 1},
    )
    clone = t.rerun_document(done, 2, FOREVER_DATE, 60_000, NOW)
    assert clone["status"] == "waiting" and clone["after"] == NOW + timedelta(minutes=1)
    assert (clone["repeats"], clone["repeated"], clone["retries"], clone["retried"]) == (
        2,
        2,
        2,
        0,
    )
    assert clone["data"] == {"k": 1} and "result" not in clone
    assert clone["log"][0]["data"] == {"previousJob": {"id": done.id, "runId": RUN}}
    due = t.rerun_document(done, 2, FOREVER_DATE, 0, NOW)
    assert due["status"] == "ready"  # due at once: inserted ready, promoted in the same write


def test_a_new_job_with_nothing_to_wait_for_is_inserted_ready() -> None:
    stored = t.insert_document(JobDoc(type="t", after=NOW), NOW)
    assert stored is not None
    assert stored["status"] == "ready"
    assert [e["message"] for e in stored["log"]] == ["Job Submitted", "Promoted to ready"]
    later = t.insert_document(JobDoc(type="t", after=NOW + timedelta(hours=1)), NOW)
    assert later is not None
    assert later["status"] == "waiting"


def test_a_poison_document_is_failed_with_its_reason_alone() -> None:
    update = t.fail_invalid(RUN, {"value": "Invalid job document: appField"}, NOW)
    assert update["$set"] == {"status": "failed", "runId": None, "updated": NOW}
    assert update["$push"]["failures"] == {"value": "Invalid job document: appField", "runId": RUN}


def test_expiry_reads_running_jobs_past_their_lease() -> None:
    assert t.expired(NOW) == {"status": "running", "expiresAfter": {"$lt": NOW}}
    assert t.held_runs([RUN]) == {"status": "running", "runId": {"$in": [RUN]}}


def test_a_clones_lineage_keeps_the_newest_forebears() -> None:
    forebears = [ObjectId() for _ in range(LINEAGE_LIMIT)]
    parent = JobDoc(type="t", id=ObjectId(), status="completed", lineage=forebears)
    clone = t.rerun_document(parent, 0, FOREVER_DATE, 0, NOW)
    assert clone["_private"]["jobcollectionLineage"] == [*forebears[1:], parent.id]
    fresh = t.rerun_document(
        JobDoc(type="t", id=ObjectId(), status="completed"), 0, FOREVER_DATE, 0, NOW
    )
    assert len(fresh["_private"]["jobcollectionLineage"]) == 1
