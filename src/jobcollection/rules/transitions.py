"""The transition rules: what each operation does to a job document, as filters and updates.

Pure functions of (document or ids, options, now). Each transition is applied by the
collection as one conditional update whose filter states the status (and runId) it expects,
so a job can never be claimed twice, nor finished by a worker that lost its claim.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any, Final

from bson import ObjectId

from ..model.constants import (
    FOREVER,
    FOREVER_DATE,
    JOB_STATUS_CANCELLABLE,
    JOB_STATUS_PAUSABLE,
    JOB_STATUS_RESTARTABLE,
    Status,
)
from ..model.document import (
    CHECKPOINT,
    CLAIMER,
    DEPENDENTS,
    EXPIRE_AT,
    EXPIRES,
    FAILED_ANTECEDENTS,
    FLUSH,
    FOLLOW_UPS,
    LINEAGE_LIMIT,
    QUOTA,
    REMOVE_AFTER,
    REPEAT_OF,
    RESAVED_SETTINGS,
    RUN_IF,
    SKIPPED,
    UNIQUE,
    USER,
    WORKER,
    CronSchedule,
    JobDoc,
    JobWorker,
    LogEntry,
    Progress,
)
from ..model.schedule import NextRun, add_ms, first_run, retry_after
from ..model.types import Filter, Id, Update
from . import dedup

_UNIQUE_KEY = UNIQUE.split(".", 1)[1]
_EXPIRES_KEY = EXPIRES.split(".", 1)[1]
_WORKER_KEY = WORKER.split(".", 1)[1]

NO_LOG = {"log": 0, "failures": 0}
"""What a claim reads: the job without its log and failures (`_private` is read: it holds a
cron schedule, see document.SCHEDULE)."""


def entry(
    now: datetime,
    message: str,
    *,
    level: str = "info",
    run_id: Id | None = None,
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A stored log entry."""
    out: dict[str, Any] = {"time": now, "runId": run_id, "level": level, "message": message}
    if data is not None:
        out["data"] = data
    return out


def fresh_progress() -> dict[str, Any]:
    return Progress().model_dump()


# --- save -----------------------------------------------------------------------------------


def deadline_at_save(doc: JobDoc, now: datetime) -> datetime | None:
    """The deadline a save stores (`Job.expires`): one given relative to the save counts
    from `now`, the collection's clock at the save; an absolute one is kept as given."""
    return doc.expires if doc.expires_in_ms is None else add_ms(now, doc.expires_in_ms)


def normalize_for_save(doc: JobDoc, now: datetime) -> JobDoc:
    """Raise past deadlines and `after` to now and clamp counts to FOREVER, as the server
    does at every save; resolve a deadline given relative to the save (a job saved has not
    been cancelled for missing it)."""
    return doc.model_copy(
        update={
            "expires": deadline_at_save(doc, now),
            "expires_in_ms": None,
            "expired": False,
            "after": max(doc.after, now),
            "retry_until": max(doc.retry_until, now),
            "repeat_until": max(doc.repeat_until, now),
            "retries": min(doc.retries, FOREVER),
            "repeats": min(doc.repeats, FOREVER),
            "repeat_retries": None
            if doc.repeat_retries is None
            else min(doc.repeat_retries, FOREVER),
        }
    )


def prepare_save(doc: JobDoc, now: datetime) -> JobDoc | None:
    """The document a save writes, or None when a cron schedule has no run before
    repeatUntil. A scheduled job first runs at the first occurrence strictly after `after`."""
    doc = normalize_for_save(doc, now)
    if isinstance(doc.repeat_wait, CronSchedule):
        first = first_run(doc.repeat_wait, doc.after)
        if first is None or first > doc.repeat_until:
            return None
        doc = doc.model_copy(update={"after": first})
    return doc


def insert_document(doc: JobDoc, now: datetime) -> dict[str, Any] | None:
    """The document a first save inserts (`prepare_save`'s rules, applied to the stored form
    directly): created now, `Job Submitted` after any local log, inserted ready when nothing
    holds it back; a unique job with what it holds its key by (dedup.bookkeeping), one saved
    with "debounce" starting a period from now at the earliest. None when a cron schedule
    has no run before repeatUntil."""
    stored = doc.to_mongo()
    if stored.get("_private", {}).pop(_WORKER_KEY, None) is not None and not stored["_private"]:
        del stored["_private"]  # only a claim records a worker
    after = max(doc.after, now, dedup.earliest_start(doc, now) or now)
    if held := dedup.bookkeeping(doc):
        stored["_private"] = {**stored["_private"], **held}
    repeat_until = max(doc.repeat_until, now)
    if isinstance(doc.repeat_wait, CronSchedule):
        first = first_run(doc.repeat_wait, after)
        if first is None or first > repeat_until:
            return None
        after = first
    retries = min(doc.retries, FOREVER)
    repeat_retries = retries + doc.retried if doc.repeat_retries is None else doc.repeat_retries
    stored.update(
        after=after,
        retryUntil=max(doc.retry_until, now),
        repeatUntil=repeat_until,
        retries=retries,
        repeats=min(doc.repeats, FOREVER),
        repeatRetries=min(repeat_retries, FOREVER),
        created=now,
        updated=now,
        runId=None,
    )
    stored["log"] = [*stored.get("log", []), entry(now, "Job Submitted")]
    deadline = deadline_at_save(doc, now)
    if deadline is not None and (doc.expires_in_ms is not None or doc.expired):
        stored["_private"][_EXPIRES_KEY] = {"at": deadline}  # as `normalize_for_save`'s
    return born_ready(stored, now)


def born_ready(
    stored: dict[str, Any], now: datetime, *, keep_after: bool = False
) -> dict[str, Any]:
    """A new waiting job that is due and depends on nothing is inserted ready: the same
    document as inserting it and then promoting it, in one write; by jobReady naming it
    (`after` becomes now), or, with `keep_after`, by the job server's pass, which keeps it (a
    repeat: a catch-up run's `after` is the occurrence it is for)."""
    if stored["status"] == Status.WAITING and not stored.get("depends") and stored["after"] <= now:
        stored["status"] = Status.READY
        if not keep_after:
            stored["after"] = now
        stored["log"] = [*stored.get("log", []), entry(now, "Promoted to ready")]
    return stored


def born_replaced(stored: dict[str, Any], doc: JobDoc, now: datetime) -> dict[str, Any]:
    """A unique job whose key a newer save took while this one was being saved: inserted
    cancelled (as if saved, then replaced), holding no key. The same document as inserting
    it and then cancelling it, in one write."""
    replaced = {**stored, "status": Status.CANCELLED, "progress": fresh_progress()}
    replaced["log"] = [*stored.get("log", []), entry(now, "Job Cancelled", level="warning")]
    private = {k: v for k, v in stored.get("_private", {}).items() if k != _UNIQUE_KEY}
    removal = removal_date(doc, Status.CANCELLED, now)
    if removal is not None:
        private[EXPIRE_AT.split(".", 1)[1]] = removal
    replaced["_private"] = private
    return replaced


def resave(doc: JobDoc, now: datetime) -> tuple[Filter, Update]:
    """Resubmit a paused job with new settings: only a paused job with no runId, of the
    document's own type and user, qualifies (a resave never changes who a job is for or what
    type it is: allow/deny rules judged the document's, so they must be the stored job's).

    `depends` and `resolved` are both replaced by the document's own (bounded by
    Limits.check_doc): the check that follows moves what is already complete over to
    `resolved` again, so resaving a job any number of times never grows it."""
    fields = doc.to_mongo()
    copied = {
        k: fields[k]
        for k in (
            "data",
            "retries",
            "retryUntil",
            "retryWait",
            "retryBackoff",
            "repeats",
            "repeatUntil",
            "repeatWait",
            "depends",
            "resolved",
            "priority",
            "after",
        )
    }
    copied["repeatRetries"] = (
        doc.repeat_retries if doc.repeat_retries is not None else doc.retries + doc.retried
    )
    update: Update = {
        "$set": {**copied, "status": Status.WAITING, "updated": now},
        "$push": {"log": entry(now, "Job Resubmitted")},
    }
    # The settings kept in _private beside the fields copied, written or cleared with them.
    private = fields.get("_private", {})
    for ext in RESAVED_SETTINGS:
        if ext.key in private:
            update["$set"][ext.path] = private[ext.key]
        else:
            update.setdefault("$unset", {})[ext.path] = ""
    owner = {"_id": doc.id, "type": doc.type, USER: doc.user_id}  # None: stored without a user
    return {**owner, "status": Status.PAUSED, "runId": None}, update


def cancel_repeats_filter(job_type: str, new_id: Id | None = None) -> Filter:
    """Earlier forever-repeating jobs of a type, replaced by a new save with cancel_repeats
    (not the job `new_id` itself, which a lost attempt of the save may have stored)."""
    query: Filter = {"type": job_type, "status": {"$in": list(JOB_STATUS_CANCELLABLE)}}
    if new_id is not None:
        query["_id"] = {"$ne": new_id}
    return query


# --- claim ----------------------------------------------------------------------------------


def claimable(types: Sequence[str], ids: Sequence[Id] | None = None) -> Filter:
    """Ready, unclaimed jobs of these types (and among these ids): the claim's fence."""
    query: Filter = {"type": {"$in": list(types)}, "status": Status.READY, "runId": None}
    if ids is not None:
        query["_id"] = {"$in": list(ids)}
    return query


CLAIM_SORT = [("priority", 1), ("retryUntil", 1), ("after", 1)]


def claim(run_id: ObjectId, now: datetime, work_timeout_ms: int | None) -> Update:
    """Claim ready jobs for one runId (apply it under `claimable`, which is the fence);
    retries and retried change here, at claim time."""
    update: Update = {
        "$set": {"status": Status.RUNNING, "runId": run_id, "updated": now},
        "$inc": {"retries": -1, "retried": 1},
        "$unset": {UNIQUE: ""},  # a started job holds no unique key
        "$push": {"log": entry(now, "Job Running", run_id=run_id)},
    }
    if work_timeout_ms is None:
        update["$unset"].update({"workTimeout": "", "expiresAfter": ""})
    else:
        update["$set"]["workTimeout"] = work_timeout_ms
        update["$set"]["expiresAfter"] = add_ms(now, work_timeout_ms)
    return update


def claimable_one(types: Sequence[str], job_id: Id) -> Filter:
    """One ready, unclaimed job of these types, named by its id (through a mongos,
    findAndModify must name the shard key, `_id`)."""
    return claimable(types) | {"_id": job_id}


def claim_for(
    run_id: ObjectId,
    now: datetime,
    work_timeout_ms: int | None,
    claimer: Any,
    quota: Any = None,
    worker: JobWorker | None = None,
) -> Update:
    """`claim`, recording `claimer` (claimer_of a user; None: server code, recorded as no
    claimer) as the only user who may report on the run, the concurrency-limit quota the
    job is claimed into (None: none) and the worker claiming it (WORKER, replacing the last
    claim's; None: left as it is), all in the claim's one update."""
    update = claim(run_id, now, work_timeout_ms)
    if worker is not None:
        update["$set"][WORKER] = worker.stored()
    for path, value in ((CLAIMER, claimer), (QUOTA, quota)):
        if value is None:
            update["$unset"][path] = ""
        else:
            update["$set"][path] = value
    return update


def claimer_fence(by: Any) -> Filter:
    """What a write on a run adds to its fence so that only `by` (claimer_of a user; None:
    anyone) may make it."""
    return {} if by is None else {CLAIMER: by}


def held_among(ids: Sequence[Id], run_id: Id) -> Filter:
    """These jobs, still running under this runId."""
    return {"_id": {"$in": list(ids)}, "runId": run_id, "status": Status.RUNNING}


def renew_leases(
    ids: Sequence[Id], run_id: Id, now: datetime, work_timeout_ms: int, by: Any = None
) -> tuple[Filter, Update]:
    """Extend the leases of jobs held under one runId (claimed by `by`, if given) that share
    a work timeout."""
    return held_among(ids, run_id) | claimer_fence(by), lease_renewal(now, work_timeout_ms)


def log_fence(job_id: Id, run_id: Id | None, by: Any) -> Filter:
    """A log line on a job in any state; one naming the run the job is running under only
    from the run's claimer, when `by` is given."""
    fence: Filter = {"_id": job_id}
    if by is not None and run_id is not None:
        fence["$nor"] = [{"runId": run_id, "status": Status.RUNNING, CLAIMER: {"$ne": by}}]
    return fence


def held(job_id: Id, run_id: Id) -> Filter:
    """The fence every worker write goes through: this job, this claim, still running."""
    return {"_id": job_id, "runId": run_id, "status": Status.RUNNING}


def lease_renewal(now: datetime, work_timeout_ms: int) -> Update:
    return {"$set": {"expiresAfter": add_ms(now, work_timeout_ms)}}


def with_checkpoint(update: Update, state: Any) -> Update:
    """A write on a held job (a lease renewal, a failure, a release) that also stores the
    checkpoint its worker has not stored yet (`state`; None: the update as it is). A copy."""
    if state is None:
        return update
    return {**update, "$set": {**update.get("$set", {}), CHECKPOINT: state}}


def renewal(now: datetime, work_timeout_ms: int | None, state: Any) -> Update | None:
    """One held job's lease renewal with its checkpoint (a job claimed without a lease: the
    checkpoint alone); None: nothing to write."""
    update = lease_renewal(now, work_timeout_ms) if work_timeout_ms else {}
    return with_checkpoint(update, state) or None


def held_by(job_id: Id, run_id: Id, by: Any) -> Filter:
    """`held`, for a write only the run's claimer `by` (None: anyone) may make."""
    return held(job_id, run_id) | claimer_fence(by)


def held_runs(run_ids: Sequence[Id]) -> Filter:
    """The jobs still running under any of these runIds."""
    return {"status": Status.RUNNING, "runId": {"$in": list(run_ids)}}


def release(ids: Sequence[Id], run_id: Id, now: datetime, by: Any = None) -> tuple[Filter, Update]:
    """Hand claimed jobs back, ready, as if never claimed: the attempt the claim counted is
    given back and the lease dropped (a worker that will not start them, e.g. at shutdown);
    only by the run's claimer `by`, if given."""
    return held_among(ids, run_id) | claimer_fence(by), {
        "$set": {"status": Status.READY, "runId": None, "updated": now},
        "$inc": {"retries": 1, "retried": -1},
        "$unset": {"workTimeout": "", "expiresAfter": ""},
        "$push": {"log": entry(now, "Job Released", run_id=run_id)},
    }


def put_back(
    job_id: Id, run_id: Id, now: datetime, until: datetime, message: str = "Job Rate Limited"
) -> tuple[Filter, Update]:
    """A held job whose worker met a rate limit (or snoozed it: `snooze`): back to waiting
    until `until`, as if never claimed (the attempt given back, the lease dropped, like a
    release), with `message` logged."""
    _, update = release([job_id], run_id, now)
    update["$set"] |= {"status": Status.WAITING, "after": until}
    wait_ms = (until - now) // timedelta(milliseconds=1)
    line = entry(now, message, level="warning", run_id=run_id, data={"retryAfterMs": wait_ms})
    update["$push"] = {"log": line}
    return held(job_id, run_id), update


def skip_late(job_id: Id, run_id: Id, late: NextRun, now: datetime) -> tuple[Filter, Update]:
    """A claimed run of a catch_up="none" schedule that starts too late (schedule.late_start):
    back to waiting for the next occurrence instead of running, its attempt given back, the
    occurrences missed logged and counted."""
    message = f"Skipped {late.skipped} missed run(s) of the schedule (catch_up=none)"
    return held(job_id, run_id), {
        "$set": {"status": Status.WAITING, "runId": None, "after": late.at, "updated": now},
        "$inc": {"retries": 1, "retried": -1, SKIPPED: late.skipped},
        "$unset": {"workTimeout": "", "expiresAfter": ""},
        "$push": {
            "log": entry(
                now, message, level="warning", run_id=run_id, data={"skipped": late.skipped}
            )
        },
    }


# --- worker reports -------------------------------------------------------------------------


def log_line(now: datetime, message: str, level: str, run_id: Id | None, data: Any) -> Update:
    return {
        "$set": {"updated": now},
        "$push": {"log": entry(now, message, level=level, run_id=run_id, data=data)},
    }


def progress(now: datetime, completed: float, total: float) -> Update:
    percent = 100 * completed / total
    return {
        "$set": {
            "progress": {"completed": completed, "total": total, "percent": percent},
            "updated": now,
        }
    }


def done(doc: JobDoc, result: dict[str, Any], now: datetime) -> Update:
    total = doc.progress.total or 1
    return {
        "$set": {
            "status": Status.COMPLETED,
            "result": result,
            "updated": now,
            "progress": {"completed": total, "total": total, "percent": 100},
        },
        "$push": {"log": entry(now, "Job Completed", level="success", run_id=doc.run_id)},
        "$unset": {CHECKPOINT: ""},  # a completed job has nothing to resume
    }


def fail_invalid(run_id: Id | None, error: dict[str, Any], now: datetime) -> Update:
    """Fail a held job for good whose stored document is not a valid job (it cannot be read,
    so nothing of it is used): with the reason as its failure."""
    return {
        "$set": {"status": Status.FAILED, "runId": None, "updated": now},
        "$push": {
            "failures": {**error, "runId": run_id},
            "log": entry(
                now,
                f"Job Failed with Fatal Error: {error['value']}.",
                level="danger",
                run_id=run_id,
            ),
        },
    }


def fail_bare(now: datetime) -> Update:
    """Fail a job for good by its status alone (a poison document that refuses even
    `fail_invalid`'s update)."""
    return {"$set": {"status": Status.FAILED, "runId": None, "updated": now}}


def follow_ups_mark(
    run_id: Id, status: Status, now: datetime, delay_deps_ms: int | None
) -> dict[str, Any]:
    """The value stored under FOLLOW_UPS by the write that finishes a job."""
    value: dict[str, Any] = {"runId": run_id, "status": status, "at": now}
    if delay_deps_ms is not None:
        value["delayDeps"] = delay_deps_ms
    return value


def finish_update(
    update: Update,
    flush: ObjectId,
    follow_ups: dict[str, Any] | None = None,
    removal: datetime | None = None,
) -> Update:
    """A report's update (`done`, `fail` or `fail_invalid`) as written: tagged with the
    flush that writes it, and with its follow-ups mark, or else its removal date (nothing
    follows the write: the job may be deleted from that date). Changes `update`."""
    update.setdefault("$set", {})[FLUSH] = flush
    if follow_ups is not None:
        update["$set"][FOLLOW_UPS] = follow_ups
    elif removal is not None:
        update["$set"][EXPIRE_AT] = removal
    return update


def finish_fence(
    job_id: Id, run_id: Id, by: Any, expired_before: datetime | None, blind: bool
) -> Filter:
    """The fence of a report's write: the job held under the run (claimed by `by`), past
    its lease when the report is the lease's expiry (`expired_before`: now), and, for a blind
    write (it marks no follow-ups), with no dependents to look up."""
    fence = held_by(job_id, run_id, by)
    if expired_before is not None:
        fence["expiresAfter"] = {"$lt": expired_before}
    if blind:
        fence[DEPENDENTS] = {"$exists": False}
    return fence


def fail_outcome(
    doc: JobDoc, fatal: bool, now: datetime, rand: float = 0.0, retry_in_ms: int | None = None
) -> tuple[Status, datetime]:
    """The status a failed attempt leads to, and the `after` it sets (even when failed);
    `rand` (in [0, 1)) draws the job's retry jitter, if it has one. `retry_in_ms`, the wait
    its worker chose (jobFail's `retryIn`), replaces the job's backoff and jitter; the job's
    retries and `retryUntil` still decide whether it is retried."""
    after = retry_after(doc, now, rand) if retry_in_ms is None else add_ms(now, retry_in_ms)
    retry = not fatal and doc.retries > 0 and doc.retry_until >= after
    return (Status.WAITING if retry else Status.FAILED), after


def fail(
    doc: JobDoc,
    error: dict[str, Any],
    fatal: bool,
    now: datetime,
    rand: float = 0.0,
    retry_in_ms: int | None = None,
) -> tuple[Status, Update]:
    """A held job's failed attempt (see fail_outcome): waiting for its retry, or failed."""
    status, after = fail_outcome(doc, fatal, now, rand, retry_in_ms)
    value = error.get("value")
    kind = "Error" if status == Status.WAITING else "Fatal Error"
    message = (
        f"Job Failed with {kind}: {value}."
        if isinstance(value, str)
        else (f"Job Failed with {kind}.")
    )
    level = "warning" if status == Status.WAITING else "danger"
    return status, {
        "$set": {"status": status, "runId": None, "after": after, "updated": now},
        "$push": {
            "failures": {**error, "runId": doc.run_id},
            "log": entry(now, message, level=level, run_id=doc.run_id),
        },
    }


def snooze(job_id: Id, run_id: Id, error: dict[str, Any], now: datetime, wait_ms: int) -> Update:
    """A held job its worker snoozed (jobFail's `snooze`): not a failure, but put back to
    wait `wait_ms` without using an attempt (put_back), the error's value logged."""
    value = error.get("value")
    message = f"Job Snoozed: {value}." if isinstance(value, str) else "Job Snoozed."
    _, update = put_back(job_id, run_id, now, add_ms(now, wait_ms), message)
    return update


# --- management -----------------------------------------------------------------------------


def ids_in(ids: Sequence[Id], statuses: Sequence[Status]) -> Filter:
    return {"_id": {"$in": list(ids)}, "status": {"$in": list(statuses)}}


def pause(ids: Sequence[Id], now: datetime) -> tuple[Filter, Update]:
    return ids_in(ids, JOB_STATUS_PAUSABLE), {
        "$set": {"status": Status.PAUSED, "updated": now},
        "$push": {"log": entry(now, "Job Paused")},
    }


def resume(ids: Sequence[Id], now: datetime) -> tuple[Filter, Update]:
    return {"_id": {"$in": list(ids)}, "status": Status.PAUSED}, {
        "$set": {"status": Status.WAITING, "updated": now},
        "$push": {"log": entry(now, "Job Resumed")},
    }


def waiting_on_time(types: Sequence[str]) -> Filter:
    """Waiting jobs of these types that wait for their `after` alone (no antecedent)."""
    return {"type": {"$in": list(types)}, "status": Status.WAITING, "depends": {"$size": 0}}


def ready(
    ids: Sequence[Id] | None,
    now: datetime,
    time: datetime,
    force: bool,
    types: Sequence[str] | None = None,
) -> tuple[Filter, Update]:
    """Promote waiting jobs that are due (and, unless forced, have no pending dependencies);
    of some types only, if given."""
    query: Filter = {"status": Status.WAITING}
    if types is not None:
        query["type"] = {"$in": list(types)}
    if time != FOREVER_DATE:
        query["after"] = {"$lte": time}
    if not force:
        query["depends"] = {"$size": 0}
        query["$nor"] = [UNMET]  # settled by `unmet` instead: cancelled
    update: Update = {"$set": {"status": Status.READY, "updated": now}}
    if ids is not None:
        query["_id"] = {"$in": list(ids)}
        update["$set"]["after"] = now
    if force:
        update["$set"]["depends"] = []
        update["$push"] = {
            "log": {
                "$each": [
                    entry(now, "Dependencies force resolved", level="warning"),
                    entry(now, "Promoted to ready"),
                ]
            }
        }
    else:
        update["$push"] = {"log": entry(now, "Promoted to ready")}
    return query, update


UNMET: Final = {RUN_IF: "failed", f"{FAILED_ANTECEDENTS}.0": {"$exists": False}}
"""A job that runs only if an antecedent failed (RUN_IF), none of which did."""


def unmet(ids: Sequence[Id] | None) -> Filter:
    """The jobs (among ids; None: any) that have nothing left to wait for but run only if an
    antecedent failed, and none did: they are cancelled instead of promoted."""
    query: Filter = {"status": Status.WAITING, "depends": {"$size": 0}, **UNMET}
    if ids is not None:
        query["_id"] = {"$in": list(ids)}
    return query


def cancel(ids: Sequence[Id], now: datetime) -> tuple[Filter, Update]:
    return ids_in(ids, JOB_STATUS_CANCELLABLE), {
        "$set": {
            "status": Status.CANCELLED,
            "runId": None,
            "progress": fresh_progress(),
            "updated": now,
        },
        "$unset": {UNIQUE: ""},  # its unique key is free for another job
        "$push": {"log": entry(now, "Job Cancelled", level="warning")},
    }


def cancel_run(
    job_id: Id, run_id: Id, now: datetime, reason: str, by: Any
) -> tuple[Filter, Update]:
    """A held job its worker gave up on (jobFail's `cancel`): `cancel`, fenced by this run
    (and its claimer `by`, as every report), with the reason logged before "Job Cancelled".
    Apply it as `cancel`'s (local/managing.py)."""
    fence, update = cancel([job_id], now)
    fence |= held_by(job_id, run_id, by)
    given = entry(now, f"Cancelled by its worker: {reason}", level="warning", run_id=run_id)
    update["$push"] = {"log": {"$each": [given, update["$push"]["log"]]}}
    return fence, update


def cancel_retained(fence: Filter) -> Filter:
    """Among a cancel's filter, the jobs whose retention covers "cancelled" (read for their
    delays, see `cancel_dated`)."""
    return {**fence, f"{REMOVE_AFTER}.statuses": Status.CANCELLED}


def cancel_dated(
    fence: Filter, update: Update, ids: Sequence[Id], delay_ms: int, now: datetime
) -> tuple[Filter, Update]:
    """`cancel` (its filter `fence`, its update) for the jobs among `ids` whose retention
    delay is `delay_ms`, with their removal date set in the same write."""
    dated = {**update, "$set": {**update["$set"], EXPIRE_AT: add_ms(now, delay_ms)}}
    return {**fence, "_id": {"$in": list(ids)}, f"{REMOVE_AFTER}.delay": delay_ms}, dated


def cancel_unretained(fence: Filter) -> Filter:
    """Among a cancel's filter, the jobs whose retention does not cover "cancelled". Changes
    `fence`."""
    fence[f"{REMOVE_AFTER}.statuses"] = {"$ne": Status.CANCELLED}
    return fence


def restart(
    ids: Sequence[Id], retries: int, until: datetime | None, now: datetime
) -> list[tuple[Filter, Update]]:
    """Restart cancelled/failed jobs with stored retries = min(max(retries, 1) + n, FOREVER).

    Three updates with disjoint filters, each under the same status/id fence, give each job
    its new count atomically without an aggregation-pipeline update: jobs with no attempts
    left get 1 + n, jobs whose count stays within FOREVER get n more, and the rest FOREVER
    (so repeated restarts never add up past it towards a 64-bit overflow). `retries` is a
    count from 0 to FOREVER.
    """
    base = ids_in(ids, JOB_STATUS_RESTARTABLE)
    common: dict[str, Any] = {
        "status": Status.WAITING,
        "progress": fresh_progress(),
        "updated": now,
    }
    if until is not None:
        common["retryUntil"] = until
    # A failed job's follow-ups still pending (its dependents not yet cancelled) are void:
    # it runs again, so its dependents keep waiting for it; and it is no longer to be removed.
    # Its deadline goes too (Job.expires): whoever restarts a job means it to run.
    log = {
        "$push": {"log": entry(now, "Job Restarted")},
        "$unset": {FOLLOW_UPS: "", EXPIRE_AT: "", EXPIRES: ""},
    }
    ceiling = FOREVER - retries  # the largest stored count that n more keeps within FOREVER
    exhausted = (
        {**base, "retries": {"$lt": 1}},
        {"$set": {**common, "retries": min(1 + retries, FOREVER)}, **log},
    )
    remaining = (
        {**base, "retries": {"$gte": 1, "$lte": ceiling}},
        {"$set": common, "$inc": {"retries": retries}, **log},
    )
    saturated = (
        {**base, "retries": {"$gte": 1, "$gt": ceiling}},
        {"$set": {**common, "retries": FOREVER}, **log},
    )
    return [exhausted, remaining, saturated]


def removal_date(doc: JobDoc, status: Status, at: datetime) -> datetime | None:
    """When a job that reached `status` at `at` is to be deleted, by its retention (None:
    kept)."""
    if doc.remove_after is None or status not in doc.remove_after.statuses:
        return None
    return add_ms(at, doc.remove_after.delay_ms)


def removable(ids: Sequence[Id], statuses: Sequence[Status]) -> Filter:
    """Finished jobs, except those whose follow-ups are still pending (removing one would
    lose its repeat or leave its dependents waiting): they become removable within a pass."""
    return {**ids_in(ids, statuses), FOLLOW_UPS: {"$exists": False}}


def clear_follow_ups(
    job_id: Id, run_id: Id, removal: datetime | None = None
) -> tuple[Filter, Update]:
    """End a job's follow-ups: the mark of this run goes (a newer mark, on a job restarted
    and finished again, is kept), the removal date comes, for a job with retention."""
    update: Update = {"$unset": {FOLLOW_UPS: ""}}
    if removal is not None:
        update["$set"] = {EXPIRE_AT: removal}
    return {"_id": job_id, f"{FOLLOW_UPS}.runId": run_id}, update


def drop_mark(job_id: Id, value: Any) -> tuple[Filter, Update]:
    """Remove a follow-ups mark that is void (malformed, or its status changed since), if it
    is still the stored `value`."""
    return {"_id": job_id, FOLLOW_UPS: value}, {"$unset": {FOLLOW_UPS: ""}}


def repeat_job_id(job_id: Id, run_id: Id) -> ObjectId:
    """The id of the repeat scheduled when `job_id` completes under `run_id`.

    Derived from the two (the runId's timestamp, then 8 bytes of a hash of both), so a done()
    retried after a lost reply inserts the same id again and the duplicate is refused: one
    completion never schedules two repeats.
    """
    digest = hashlib.sha256(f"{job_id!r}/{run_id!r}".encode()).digest()
    stamp = run_id.binary[:4] if isinstance(run_id, ObjectId) else digest[8:12]
    return ObjectId(stamp + digest[:8])


def rerun_document(
    doc: JobDoc, repeats: int, until: datetime, wait_ms: int, now: datetime, skipped: int = 0
) -> dict[str, Any]:
    """The clone a repeat or rerun inserts, remembering which job and run it came from, and
    logging the `skipped` occurrences of its schedule before it (schedule.next_run)."""
    log = [
        LogEntry(
            time=now,
            message="Rerunning job",
            data={"previousJob": {"id": doc.id, "runId": doc.run_id}},
        )
    ]
    if skipped:
        catch_up = doc.repeat_wait.catch_up if isinstance(doc.repeat_wait, CronSchedule) else ""
        log.append(
            LogEntry(
                time=now,
                level="warning",
                message=f"Skipped {skipped} missed run(s) of the schedule (catch_up={catch_up})",
                data={"skipped": skipped},
            )
        )
    repeat_retries = (
        doc.repeat_retries if doc.repeat_retries is not None else (doc.retries + doc.retried)
    )
    clone = doc.model_copy(
        update={
            "id": None,
            "run_id": None,
            "status": Status.WAITING,
            "result": None,
            "failures": None,
            "expires_after": None,
            "work_timeout": None,
            "repeat_retries": repeat_retries,
            "retries": repeat_retries,
            "retry_until": until,
            "retried": 0,
            "repeats": repeats,
            "repeat_until": until,
            "repeated": doc.repeated + 1,
            "created": now,
            "updated": now,
            "progress": Progress(),
            "depends": [],
            "log": log,
            "skipped_runs": skipped,
            "after": add_ms(now, wait_ms),
            "lineage": [*doc.lineage, doc.id][-LINEAGE_LIMIT:],
            "unique": None,  # only the job saved as unique holds its key
            "expires": None,  # a deadline is the job's own
            "expires_in_ms": None,
            "expired": False,
            "checkpoint": None,  # a new run starts from the beginning
            "worker": None,  # nobody has claimed it yet
        }
    )
    return born_ready(clone.to_mongo(), now, keep_after=True)


def repeat_document(
    doc: JobDoc, job_id: Id, run_id: Id, found: NextRun, at: datetime
) -> dict[str, Any]:
    """The next run of a repeating job that completed at `at` under `run_id` (`found`:
    schedule.next_run), with the id derived from the completion (`repeat_job_id`) and
    remembering which job and run it repeats."""
    wait_ms = int((found.at - at) / timedelta(milliseconds=1))
    clone = rerun_document(doc, doc.repeats - 1, doc.repeat_until, wait_ms, at, found.skipped)
    clone["_id"] = repeat_job_id(job_id, run_id)
    private = clone.setdefault("_private", {})
    private[REPEAT_OF.split(".", 1)[1]] = {"id": job_id, "runId": run_id}
    return clone


def resolve_dependents(
    dependent: Id, antecedents: Sequence[tuple[Id, Id | None]], now: datetime, delay_ms: int | None
) -> tuple[Filter, Update]:
    """Move completed antecedents (id, runId) from a dependent's `depends` to `resolved`.

    The filter requires every one of them still pending, so a resolution applies once;
    `$addToSet` keeps an id out of `resolved` that a save already put there.
    """
    ids = [a for a, _ in antecedents]
    update: Update = {
        "$pull": {"depends": {"$in": ids}},
        "$addToSet": {"resolved": {"$each": ids}},
        "$push": {
            "log": {
                "$each": [
                    entry(now, "Dependency resolved", data={"dependency": {"id": a, "runId": r}})
                    for a, r in antecedents
                ]
            },
        },
        "$set": {"updated": now},
    }
    if delay_ms is not None:
        update["$max"] = {"after": add_ms(now, delay_ms)}
    return {"_id": dependent, "depends": {"$all": ids}}, update


def expired(now: datetime, excluding: Collection[Id] = ()) -> Filter:
    """Running jobs whose lease ran out, except those `excluding` names (jobs whose failure
    the server refused: a job server does not read them again)."""
    query: Filter = {"status": Status.RUNNING, "expiresAfter": {"$lt": now}}
    if excluding:
        query["_id"] = {"$nin": list(excluding)}
    return query


EXPIRED_ERROR = {"value": "Failed for exceeding worker set workTimeout"}
SHUTDOWN_ERROR = {"value": "Running at Job Server shutdown."}
NO_ERROR = {"value": "No error information provided"}
