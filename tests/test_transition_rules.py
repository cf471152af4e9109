"""The pure transition rules (transitions.py), tested directly: each is a function of a
document (or ids), options and "now", returning plain filters and updates. No database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId

from jobcollection import FOREVER, FOREVER_DATE, JobDoc
from jobcollection.model.constants import Status
from jobcollection.model.document import EXPIRE_AT, FOLLOW_UPS, LINEAGE_LIMIT
from jobcollection.model.schedule import NextRun
from jobcollection.model.types import Id
from jobcollection.rules import dependencies as deps
from jobcollection.rules import transitions as t
from strict import check_update

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
        # a failed job's pending cancels are void, it is no longer to be removed, and its
        # deadline is gone (whoever restarts a job means it to run)
        assert update["$unset"] == {
            FOLLOW_UPS: "",
            "_private.jobcollectionExpireAt": "",
            "_private.jobcollectionExpires": "",
        }


def test_ready_promotes_due_jobs_without_dependencies_unless_forced() -> None:
    query, update = t.ready(None, NOW, NOW, False)
    assert query == {
        "status": "waiting",
        "after": {"$lte": NOW},
        "depends": {"$size": 0},
        "$nor": [t.UNMET],  # a job that runs only if an antecedent failed, none of which did
    }
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


# --- rules moved out of the appliers (issue 21): every filter and update is built here ------

CLAIMER = "_private.jobcollectionClaimer"
HELD = {"runId": RUN, "status": "running"}


def test_a_claim_records_its_claimer_or_clears_it() -> None:
    mine = t.claim_for(RUN, NOW, None, "user:u1")
    assert mine["$set"][CLAIMER] == "user:u1" and CLAIMER not in mine["$unset"]
    server = t.claim_for(RUN, NOW, 5_000, None)
    assert server["$unset"][CLAIMER] == "" and CLAIMER not in server["$set"]
    check_update(mine)
    check_update(server)
    job = ObjectId()
    assert t.claimable_one(["a"], job) == {
        "type": {"$in": ["a"]},
        "status": "ready",
        "runId": None,
        "_id": job,
    }


def test_writes_on_a_run_are_fenced_by_its_claimer_when_one_is_named() -> None:
    job = ObjectId()
    assert t.claimer_fence(None) == {}
    assert t.held_by(job, RUN, None) == {"_id": job, **HELD}
    assert t.held_by(job, RUN, "user:u1") == {"_id": job, **HELD, CLAIMER: "user:u1"}
    assert t.held_among([job], RUN) == {"_id": {"$in": [job]}, **HELD}
    fence, _ = t.release([job], RUN, NOW, "user:u1")
    assert fence == {"_id": {"$in": [job]}, **HELD, CLAIMER: "user:u1"}
    assert t.release([job], RUN, NOW)[0] == {"_id": {"$in": [job]}, **HELD}


def test_lease_renewals_and_log_lines_name_their_run() -> None:
    job = ObjectId()
    fence, update = t.renew_leases([job], RUN, NOW, 60_000, "user:u1")
    assert fence == {"_id": {"$in": [job]}, **HELD, CLAIMER: "user:u1"}
    assert update == {"$set": {"expiresAfter": NOW + timedelta(minutes=1)}}
    assert t.log_fence(job, None, "user:u1") == {"_id": job}
    assert t.log_fence(job, RUN, None) == {"_id": job}
    assert t.log_fence(job, RUN, "user:u1") == {
        "_id": job,
        "$nor": [{**HELD, CLAIMER: {"$ne": "user:u1"}}],
    }


def test_a_bare_failure_sets_the_status_alone() -> None:
    assert t.fail_bare(NOW) == {"$set": {"status": "failed", "runId": None, "updated": NOW}}


def test_a_finishing_write_marks_its_follow_ups_or_its_removal_date() -> None:
    flush = ObjectId()
    mark = t.follow_ups_mark(RUN, Status.COMPLETED, NOW, 500)
    assert mark == {"runId": RUN, "status": "completed", "at": NOW, "delayDeps": 500}
    assert "delayDeps" not in t.follow_ups_mark(RUN, Status.FAILED, NOW, None)
    done = t.finish_update(t.done(claimed(), {"x": 1}, NOW), flush, follow_ups=mark)
    assert done["$set"]["_private.jobcollectionFlush"] == flush
    assert done["$set"][FOLLOW_UPS] == mark and EXPIRE_AT not in done["$set"]
    check_update(done)
    removal = NOW + timedelta(days=1)
    failed = t.finish_update(t.fail_invalid(RUN, {"value": "x"}, NOW), flush, removal=removal)
    assert failed["$set"][EXPIRE_AT] == removal and FOLLOW_UPS not in failed["$set"]
    check_update(failed)
    plain = t.finish_update({"$push": {"log": {}}}, flush)
    assert plain["$set"] == {"_private.jobcollectionFlush": flush}


def test_a_finishing_write_is_fenced_by_its_run_lease_and_dependents() -> None:
    job = ObjectId()
    assert t.finish_fence(job, RUN, None, None, False) == {"_id": job, **HELD}
    fence = t.finish_fence(job, RUN, "user:u1", NOW, True)
    assert fence == {
        "_id": job,
        **HELD,
        CLAIMER: "user:u1",
        "expiresAfter": {"$lt": NOW},
        "_private.jobcollectionDependents": {"$exists": False},
    }


def test_follow_ups_are_cleared_for_their_run_only() -> None:
    job = ObjectId()
    fence, update = t.clear_follow_ups(job, RUN)
    assert fence == {"_id": job, f"{FOLLOW_UPS}.runId": RUN}
    assert update == {"$unset": {FOLLOW_UPS: ""}}
    removal = NOW + timedelta(hours=1)
    assert t.clear_follow_ups(job, RUN, removal)[1] == {
        "$unset": {FOLLOW_UPS: ""},
        "$set": {EXPIRE_AT: removal},
    }
    value = {"runId": RUN, "status": "bogus"}
    assert t.drop_mark(job, value) == (
        {"_id": job, FOLLOW_UPS: value},
        {"$unset": {FOLLOW_UPS: ""}},
    )


def test_a_repeat_document_remembers_the_run_it_repeats() -> None:
    job = claimed(repeats=3, repeatWait=60_000)
    assert job.id is not None
    found = NextRun(NOW + timedelta(minutes=1), 0)
    clone = t.repeat_document(job, job.id, RUN, found, NOW)
    assert clone["_id"] == t.repeat_job_id(job.id, RUN)
    assert clone["_private"]["jobcollectionRepeatOf"] == {"id": job.id, "runId": RUN}
    assert clone["after"] == NOW + timedelta(minutes=1) and clone["repeats"] == 2


def test_a_cancel_dates_the_removal_of_jobs_kept_for_a_while() -> None:
    ids = [ObjectId(), ObjectId()]
    fence, update = t.cancel(ids, NOW)
    retained = t.cancel_retained(fence)
    assert retained == {**fence, "_private.jobcollectionRemoveAfter.statuses": "cancelled"}
    query, dated = t.cancel_dated(fence, update, ids[:1], 1_000, NOW)
    assert query == {
        **fence,
        "_id": {"$in": ids[:1]},
        "_private.jobcollectionRemoveAfter.delay": 1_000,
    }
    assert dated["$set"][EXPIRE_AT] == NOW + timedelta(seconds=1)
    assert EXPIRE_AT not in update["$set"]  # the cancel's own update is kept
    check_update(dated)
    rest = t.cancel_unretained(dict(fence))
    assert rest["_private.jobcollectionRemoveAfter.statuses"] == {"$ne": "cancelled"}


def test_filters_for_repeats_to_cancel_and_leases_to_expire_can_leave_jobs_out() -> None:
    new = ObjectId()
    assert "_id" not in t.cancel_repeats_filter("t")
    assert t.cancel_repeats_filter("t", new)["_id"] == {"$ne": new}
    assert "_id" not in t.expired(NOW, set())
    assert t.expired(NOW, [new]) == {
        "status": "running",
        "expiresAfter": {"$lt": NOW},
        "_id": {"$nin": [new]},
    }


# --- dependency bookkeeping (dependencies.py) ------------------------------------------------

DEPENDENTS = "_private.jobcollectionDependents"
ANNOUNCED = "_private.jobcollectionAnnounced"


def test_antecedents_are_marked_and_dependents_announced() -> None:
    a, b = ObjectId(), ObjectId()
    assert deps.announce([a, b]) == ({"_id": {"$in": [a, b]}}, {"$set": {DEPENDENTS: True}})
    assert deps.adopted([a]) == ({"_id": {"$in": [a]}}, {"$set": {ANNOUNCED: True}})
    assert deps.announced({"$set": {"x": 1}}) == {"$set": {"x": 1, ANNOUNCED: True}}
    assert deps.announced_document({"type": "t"}) == {
        "type": "t",
        "_private": {"jobcollectionAnnounced": True},
    }
    assert deps.unannounced() == {
        "status": {"$in": ["waiting", "paused"]},
        "depends.0": {"$exists": True},
        ANNOUNCED: {"$exists": False},
    }
    assert deps.finished_among([a]) == {
        "_id": {"$in": [a]},
        "status": {"$in": ["completed", "failed", "cancelled"]},
    }


def test_adoption_resolves_completed_antecedents_and_dooms_on_a_failed_one() -> None:
    a, b, c = ObjectId(), ObjectId(), ObjectId()
    d1, d2, d3 = ObjectId(), ObjectId(), ObjectId()
    finished: dict[Id, dict[str, Any]] = {
        a: {"status": "completed", "runId": RUN},
        b: {"status": "failed"},
    }
    adoption = deps.adopt(
        [
            {"_id": d1, "depends": [a, c]},
            {"_id": d2, "depends": [a, b]},
            {"_id": d3, "depends": [c]},
        ],
        finished,
        NOW,
    )
    assert adoption.resolved == [d1] and adoption.doomed == [d2]
    [(fence, update)] = adoption.updates
    assert fence == {"_id": d1, "depends": {"$all": [a]}}
    assert update["$pull"] == {"depends": {"$in": [a]}}


def test_a_save_resolves_completed_antecedents_and_is_doomed_by_a_missing_one() -> None:
    job, a, b = ObjectId(), ObjectId(), ObjectId()
    assert deps.check_at_save(job, [a], {a: {"status": "running"}}, NOW) == (None, False)
    write, doomed = deps.check_at_save(job, [a, b], {a: {"status": "completed", "runId": RUN}}, NOW)
    assert doomed
    assert write is not None
    fence, update = write
    assert fence == {"_id": job, "status": {"$in": ["waiting", "paused"]}}
    assert update["$pull"] == {"depends": {"$in": [a]}}
    assert update["$addToSet"] == {"resolved": {"$each": [a]}}
    messages = [e["message"] for e in update["$push"]["log"]["$each"]]
    assert messages == ["Dependency resolved", f"Antecedent job {b} missing at save"]
    check_update(update)


def test_completions_resolve_their_dependents_with_the_longest_delay() -> None:
    a, b, d = ObjectId(), ObjectId(), ObjectId()
    later = NOW + timedelta(seconds=5)
    waiting, updates = deps.resolve_completed(
        [{"_id": d, "depends": [a, b]}, {"_id": ObjectId(), "depends": [ObjectId()]}],
        {a: (RUN, NOW, 1_000), b: (RUN, later, 3_000)},
    )
    assert waiting == [d]
    [(fence, update)] = updates
    assert fence == {"_id": d, "depends": {"$all": [a, b]}}
    assert update["$max"] == {"after": NOW + timedelta(seconds=3)}  # dated by the first


def test_a_failure_dooms_dependents_still_cancellable_or_already_cancelled() -> None:
    f = ObjectId()
    d1, d2, d3 = ObjectId(), ObjectId(), ObjectId()
    dependents = [
        {"_id": d1, "depends": [f], "status": "waiting"},
        {"_id": d2, "depends": [f], "status": "cancelled"},
        {"_id": d3, "depends": [f], "status": "completed"},
    ]
    plan = deps.verdicts({f: Status.FAILED}, dependents, NOW)
    assert plan.cancel == [d1]  # cancelled by its (default) policy
    assert plan.ended == {d2: Status.CANCELLED}  # the cascade goes on through it


def test_failure_policies_per_edge() -> None:
    f, c, ok = ObjectId(), ObjectId(), ObjectId()
    d_fail, d_ignore, d_remove, d_mixed = (ObjectId() for _ in range(4))

    def dependent(job_id: ObjectId, *edges: tuple[ObjectId, str]) -> dict[str, Any]:
        private = {"jobcollectionOnFailure": [{"id": a, "policy": p} for a, p in edges]}
        return {"_id": job_id, "depends": [f, c, ok], "status": "waiting", "_private": private}

    dependents = [
        dependent(d_fail, (f, "fail"), (c, "ignore")),
        dependent(d_ignore, (f, "ignore"), (c, "ignore")),
        dependent(d_remove, (f, "remove"), (c, "ignore")),
        dependent(d_mixed, (f, "ignore")),  # its edge from c is "cancel": cancel wins
    ]
    plan = deps.verdicts({f: Status.FAILED, c: Status.CANCELLED}, dependents, NOW)
    assert plan.cancel == [d_mixed] and plan.fail == [d_fail]
    assert plan.freed == [d_ignore, d_remove]
    fail, ignore, remove = plan.writes
    assert fail[0] == {
        "_id": d_fail,
        "status": {"$in": ["waiting", "paused", "ready"]},
        "depends": f,
    }
    assert fail[1]["$set"]["status"] == "failed"
    assert ignore[1]["$pull"] == {"depends": {"$in": [f, c]}}
    assert ignore[1]["$addToSet"] == {"_private.jobcollectionFailedAntecedents": {"$each": [f, c]}}
    assert remove[1]["$addToSet"] == {"_private.jobcollectionFailedAntecedents": {"$each": [c]}}
