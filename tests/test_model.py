"""The stored job document, its defaults, v1.x compatibility, constants and the public surface."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import bson
import pytest
from bson import ObjectId
from bson.codec_options import CodecOptions, DatetimeConversion
from bson.datetime_ms import DatetimeMS

import jobcollection
from jobcollection import (
    FOREVER,
    FOREVER_DATE,
    JOB_LOG_LEVELS,
    JOB_PRIORITIES,
    JOB_RETRY_BACKOFF_METHODS,
    JOB_STATUS_CANCELLABLE,
    JOB_STATUS_PAUSABLE,
    JOB_STATUS_REMOVABLE,
    JOB_STATUS_RESTARTABLE,
    JOB_STATUSES,
    METHOD_PERMISSIONS,
    METHODS,
    PERMISSION_LEVELS,
    CronSchedule,
    DatabaseError,
    DuplicateJob,
    InvalidArgument,
    InvalidArgumentType,
    InvalidDocument,
    JobCollection,
    JobCollectionError,
    JobDoc,
    JobNotSaved,
    LaterSchedule,
    ManualClock,
    PermissionDenied,
)

START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

# Every top-level field of the original schema (SPEC B.1.2), plus `_private`.
ORIGINAL_FIELDS = {
    "_id",
    "runId",
    "type",
    "data",
    "status",
    "result",
    "failures",
    "priority",
    "depends",
    "resolved",
    "after",
    "updated",
    "created",
    "workTimeout",
    "expiresAfter",
    "log",
    "progress",
    "retries",
    "retried",
    "repeatRetries",
    "retryUntil",
    "retryWait",
    "retryBackoff",
    "repeats",
    "repeated",
    "repeatUntil",
    "repeatWait",
    "_private",
}


def _utc(value: datetime) -> datetime:
    """Stored datetimes may come back naive (mongomock, tz_aware=False): they are UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def _raw(jc: JobCollection, job_id: Any) -> dict[str, Any]:
    found = await jc.collection.find_one({"_id": job_id})
    assert found is not None
    return dict(found)


# --- stored field names and units -----------------------------------------------------------


async def test_stored_document_uses_original_names_and_millisecond_units(
    jc: JobCollection,
) -> None:
    job = (
        jc.create_job("email", {"to": "a@example.com"})
        .retry(2, wait=1.5, backoff="exponential")
        .repeat(3, wait=timedelta(minutes=1))
        .priority("high")
    )
    job_id = await job.save()
    [claimed] = await jc.get_work("email", work_timeout=30)
    assert claimed.id == job_id

    raw = await _raw(jc, job_id)
    assert set(raw) <= ORIGINAL_FIELDS
    assert not [k for k in raw if "_" in k and k not in ("_id", "_private")]
    assert raw["runId"] == claimed.doc.run_id
    assert raw["retryWait"] == 1500
    assert raw["retryBackoff"] == "exponential"
    assert raw["repeatWait"] == 60_000
    assert raw["workTimeout"] == 30_000
    assert _utc(raw["expiresAfter"]) == START + timedelta(seconds=30)
    assert raw["retries"] == 2  # stored 3 (2 + 1), one attempt taken by the claim
    assert raw["retried"] == 1
    assert raw["repeatRetries"] == 3
    assert raw["repeats"] == 3
    assert raw["priority"] == JOB_PRIORITIES["high"]
    assert raw["status"] == "running"
    for entry in raw["log"]:
        assert set(entry) <= {"time", "runId", "level", "message", "data"}
        assert "runId" in entry


async def test_fresh_job_defaults_when_stored(jc: JobCollection, clock: ManualClock) -> None:
    job = jc.create_job("plain")
    clock.advance(5)
    saved_at = clock.now()
    job_id = await job.save()

    raw = await _raw(jc, job_id)
    assert raw["runId"] is None
    assert raw["data"] == {}
    assert raw["priority"] == 0
    assert raw["retries"] == 1
    assert raw["repeatRetries"] == 1
    assert raw["retried"] == 0
    assert raw["retryWait"] == 300_000
    assert raw["retryBackoff"] == "constant"
    assert raw["repeats"] == 0
    assert raw["repeated"] == 0
    assert raw["repeatWait"] == 300_000
    assert raw["progress"] == {"completed": 0, "total": 1, "percent": 0}
    assert raw["depends"] == []
    assert raw["resolved"] == []
    assert _utc(raw["created"]) == saved_at
    assert _utc(raw["updated"]) == saved_at
    assert "result" not in raw
    assert "failures" not in raw
    assert "workTimeout" not in raw
    assert "expiresAfter" not in raw
    messages = [(e["message"], e["level"], e["runId"]) for e in raw["log"]]
    assert messages[:2] == [("Constructed", "info", None), ("Job Submitted", "info", None)]
    assert _utc(raw["log"][0]["time"]) == START
    assert _utc(raw["log"][1]["time"]) == saved_at

    loaded = await jc.get_job(job_id)
    assert loaded is not None
    assert loaded.doc.retry_until == FOREVER_DATE
    assert loaded.doc.repeat_until == FOREVER_DATE


def test_unsaved_job_defaults(jc: JobCollection) -> None:
    doc = jc.create_job("plain").doc
    assert doc.id is None
    assert doc.run_id is None
    assert doc.status == "waiting"
    assert doc.after == datetime(1970, 1, 1, tzinfo=UTC)
    assert doc.retry_until == FOREVER_DATE
    assert doc.repeat_until == FOREVER_DATE
    assert doc.created == START
    assert [e.message for e in doc.log or []] == ["Constructed"]


async def test_new_jobs_share_no_mutable_state(jc: JobCollection) -> None:
    # A new job's document is a copy of one validated template: nothing of it is shared.
    first, second = jc.create_job("a", {"n": 1}), jc.create_job("a", {"n": 1})
    antecedent = jc.create_job("before")
    await antecedent.save()
    first.depends([antecedent])
    assert second.doc.depends == [] and second.doc.resolved == []
    for field in ("data", "depends", "resolved", "log", "progress"):
        assert getattr(first.doc, field) is not getattr(second.doc, field), field
    assert jc.create_job("a").doc.depends == []


async def test_a_clock_giving_naive_times_is_refused(make_jc: Any) -> None:
    class Naive:
        def now(self) -> datetime:
            return datetime(2026, 1, 1)

    jc = await make_jc(clock=Naive(), started=False)
    with pytest.raises(ValueError, match="timezone-aware"):
        jc.create_job("t")


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        (START, START),
        (START.replace(microsecond=123456), START.replace(microsecond=123000)),
        (datetime(2026, 1, 1, 14, 0, 0, 999, tzinfo=timezone(timedelta(hours=2))), START),
        (START.astimezone(bson.tz_util.utc), START),
        (datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC), FOREVER_DATE),
    ],
)
def test_dates_are_kept_in_utc_milliseconds(given: datetime, stored: datetime) -> None:
    after = JobDoc(type="t", after=given).after
    assert after == stored and after.tzinfo is UTC
    assert after.microsecond == stored.microsecond


@pytest.mark.parametrize("aware", [False, True])
def test_stored_doubles_read_back_as_integers(aware: bool) -> None:
    # JavaScript stores integers beyond 32 bits as doubles; either driver path reads ints.
    raw = {"type": "t", "data": {"x": 2.0}, "repeats": float(FOREVER), "retries": 3.0}
    doc = JobDoc.from_mongo(raw, aware_dates=aware)
    assert (doc.repeats, doc.retries) == (FOREVER, 3)
    assert type(doc.repeats) is int and type(doc.retries) is int
    assert type(doc.data["x"]) is float  # only the schema's integer fields
    assert raw["repeats"] == float(FOREVER)  # the given document is not changed


async def test_past_dates_are_raised_to_now_at_save(jc: JobCollection, clock: ManualClock) -> None:
    past = START - timedelta(days=3)
    clock.advance(60)
    job = jc.create_job("late").after(past).retry(1, until=past).repeat(1, until=past, wait=0)
    await job.pause()  # saved paused, so promotion does not touch `after`
    job_id = await job.save()

    raw = await _raw(jc, job_id)
    assert raw["status"] == "paused"
    assert _utc(raw["after"]) == clock.now()
    assert _utc(raw["retryUntil"]) == clock.now()
    assert _utc(raw["repeatUntil"]) == clock.now()


async def test_future_dates_are_kept_at_save(jc: JobCollection) -> None:
    later = START + timedelta(days=3)
    job_id = await jc.create_job("future").after(later).retry(1, until=later).save()
    raw = await _raw(jc, job_id)
    assert raw["status"] == "waiting"
    assert _utc(raw["after"]) == later
    assert _utc(raw["retryUntil"]) == later


async def test_counts_are_clamped_to_forever(jc: JobCollection) -> None:
    built = jc.create_job("many").retry(2**60).repeat(2**60)
    assert built.doc.retries == FOREVER
    assert built.doc.repeats == FOREVER
    from_doc = jc.make_job(
        {"type": "many", "data": {}, "retries": 2**60, "repeats": 2**60, "repeatRetries": 2**60}
    )
    for job in (built, from_doc):
        raw = await _raw(jc, await job.save())
        assert raw["retries"] == FOREVER
        assert raw["repeats"] == FOREVER
        assert raw["repeatRetries"] == FOREVER


# --- _private ---------------------------------------------------------------------------------


async def test_private_is_stored_but_never_returned(jc: JobCollection) -> None:
    job = jc.make_job({"type": "secret", "data": {"a": 1}, "_private": {"token": "s3cr3t"}})
    job_id = await job.save()
    assert (await _raw(jc, job_id))["_private"] == {"token": "s3cr3t"}

    loaded = await jc.get_job(job_id, get_log=True, get_failures=True)
    assert loaded is not None
    assert loaded.doc.private is None
    assert "_private" not in loaded.doc.to_mongo()
    [listed] = await jc.get_jobs([job_id])
    assert listed.doc.private is None

    [claimed] = await jc.get_work("secret")
    assert claimed.doc.private is None
    assert await claimed.refresh()
    assert claimed.doc.private is None

    assert await claimed.done() is True
    new_id = await claimed.rerun(wait=0)
    assert new_id
    # the application's keys are copied; the library's own record which job the rerun is of
    assert (await _raw(jc, new_id))["_private"] == {
        "token": "s3cr3t",
        "jobcollectionLineage": [job_id],
    }
    rerun = await jc.get_job(new_id)
    assert rerun is not None and rerun.doc.private is None


# --- documents written by job-collection v1.x ------------------------------------------------


def _v1_document(job_id: ObjectId) -> dict[str, Any]:
    """A completed job as pymongo returns it from a v1.x collection: naive UTC datetimes,
    JavaScript numbers beyond 32 bits stored as doubles, a later.js repeat schedule."""
    when = datetime(2025, 6, 1, 8, 30)
    run_id = ObjectId()
    return {
        "_id": job_id,
        "runId": run_id,
        "type": "legacy",
        "data": {"recipient": "x@example.com", "n": 3},
        "status": "completed",
        "result": {"sent": True},
        "failures": [{"value": "timeout", "runId": run_id}],
        "priority": 0,
        "depends": [],
        "resolved": [],
        "after": when,
        "updated": when,
        "created": when,
        "log": [
            {"time": when, "runId": None, "level": "info", "message": "Constructed"},
            {"time": when, "runId": run_id, "level": "success", "message": "Job Completed"},
        ],
        "progress": {"completed": 1, "total": 1, "percent": 100},
        "retries": float(FOREVER - 1),
        "retried": 1,
        "repeatRetries": float(FOREVER),
        "retryUntil": datetime(9999, 12, 31, 23, 59, 59, 999000),
        "retryWait": 300000,
        "retryBackoff": "constant",
        "repeats": float(FOREVER),
        "repeated": 4,
        "repeatUntil": datetime(9999, 12, 31, 23, 59, 59, 999000),
        "repeatWait": {"schedules": [{"h": [3], "m": [0]}], "exceptions": []},
    }


async def test_v1_document_reads_back(jc: JobCollection) -> None:
    job_id = ObjectId()
    await jc.collection.insert_one(_v1_document(job_id))

    job = await jc.get_job(job_id, get_log=True, get_failures=True)
    assert job is not None
    doc = job.doc
    assert doc.id == job_id
    assert doc.type == "legacy"
    assert doc.data == {"recipient": "x@example.com", "n": 3}
    assert doc.status == "completed"
    assert doc.result == {"sent": True}
    assert doc.failures is not None and doc.failures[0]["value"] == "timeout"
    assert doc.after == datetime(2025, 6, 1, 8, 30, tzinfo=UTC)
    assert doc.after.tzinfo is not None
    assert doc.retries == FOREVER - 1
    assert doc.repeat_retries == FOREVER
    assert doc.repeats == FOREVER
    assert doc.retry_until == FOREVER_DATE
    assert doc.repeat_until == FOREVER_DATE
    assert isinstance(doc.repeat_wait, LaterSchedule)
    assert doc.repeat_wait.schedules == [{"h": [3], "m": [0]}]
    assert doc.log is not None
    assert [e.message for e in doc.log] == ["Constructed", "Job Completed"]
    assert all(e.time.tzinfo is not None for e in doc.log)

    without = await jc.get_job(job_id)
    assert without is not None
    assert without.doc.log is None and without.doc.failures is None


async def test_v1_document_writes_back_in_its_own_shape(jc: JobCollection) -> None:
    job_id = ObjectId()
    original = _v1_document(job_id)
    await jc.collection.insert_one(dict(original))
    job = await jc.get_job(job_id, get_log=True, get_failures=True)
    assert job is not None
    written = job.doc.to_mongo()
    assert set(written) == set(original)
    assert written["repeatWait"] == original["repeatWait"]
    assert written["retryWait"] == 300000


def test_forever_date_round_trips() -> None:
    # The original's foreverDate, as a pymongo client with DATETIME_CLAMP decodes it.
    encoded = bson.encode({"retryUntil": DatetimeMS(8_640_000_000_000_000)})
    clamped = bson.decode(
        encoded, CodecOptions(datetime_conversion=DatetimeConversion.DATETIME_CLAMP)
    )["retryUntil"]
    doc = JobDoc.from_mongo({"type": "t", "data": {}, "retryUntil": clamped})
    assert doc.retry_until == FOREVER_DATE

    stored = JobDoc(type="t").to_mongo()
    assert stored["retryUntil"] == FOREVER_DATE
    # MongoDB keeps milliseconds; what comes back still reads as FOREVER_DATE.
    back = stored["retryUntil"].replace(microsecond=999000, tzinfo=None)
    assert JobDoc.from_mongo({"type": "t", "data": {}, "retryUntil": back}).retry_until == (
        FOREVER_DATE
    )


async def test_forever_date_round_trips_through_the_collection(jc: JobCollection) -> None:
    job_id = await jc.create_job("forever").save()
    loaded = await jc.get_job(job_id)
    assert loaded is not None
    assert loaded.doc.retry_until == FOREVER_DATE
    assert loaded.doc.repeat_until == FOREVER_DATE


def test_given_naive_datetimes_are_rejected_but_stored_ones_are_utc(jc: JobCollection) -> None:
    naive = datetime(2025, 1, 1)
    with pytest.raises(InvalidDocument, match="after"):
        jc.make_job({"type": "t", "data": {}, "after": naive})
    stored = JobDoc.from_mongo({"type": "t", "data": {}, "after": naive})
    assert stored.after == naive.replace(tzinfo=UTC)


async def test_a_cron_schedule_is_stored_as_v1_reads_it(jc: JobCollection) -> None:
    # v1.x's schema allows milliseconds or a later.js schedule in repeatWait: the stored form
    # is the later.js schedule of the same times, the expression is kept in _private.
    schedule = CronSchedule(cron="0 3 * * 1", timezone="Europe/Paris")
    job_id = (
        await jc.create_job("cron").repeat(schedule="0 3 * * 1", timezone="Europe/Paris").save()
    )
    raw = await jc.collection.find_one({"_id": job_id})
    assert raw["repeatWait"] == {
        "schedules": [{"s": [0], "m": [0], "h": [3], "d": [2]}],
        "exceptions": [],
    }
    assert raw["_private"]["jobcollectionSchedule"] == {
        "cron": "0 3 * * 1",
        "timezone": "Europe/Paris",
    }
    # every way of reading the job gives the schedule back, never the key in _private
    loaded = await jc.get_job(job_id)
    assert loaded is not None and loaded.doc.repeat_wait == schedule
    assert loaded.doc.private is None
    await jc.collection.update_one({"_id": job_id}, {"$set": {"status": "ready", "after": START}})
    [claimed] = await jc.get_work("cron")
    assert claimed.doc.repeat_wait == schedule


async def test_resaving_a_cron_job_with_a_plain_wait_clears_its_schedule(jc: JobCollection) -> None:
    job = jc.create_job("cron").repeat(schedule="0 3 * * *")
    await job.pause()  # an unsaved job is saved paused, and a paused job can be resaved
    job_id = await job.save()
    job.repeat(wait=60)
    assert await job.save() == job_id
    raw = await jc.collection.find_one({"_id": job_id})
    assert raw["repeatWait"] == 60_000
    assert "jobcollectionSchedule" not in raw.get("_private", {})
    loaded = await jc.get_job(job_id)
    assert loaded is not None and loaded.doc.repeat_wait == 60_000
    # and back to a schedule
    assert await job.pause()
    job.repeat(schedule="*/5 * * * *")
    assert await job.save() == job_id
    loaded = await jc.get_job(job_id)
    assert loaded is not None and loaded.doc.repeat_wait == CronSchedule(cron="*/5 * * * *")


def test_a_cron_schedule_in_repeat_wait_itself_is_still_read() -> None:
    # as versions of this library before 0.1.0 stored it
    doc = JobDoc.from_mongo({"type": "t", "data": {}, "repeatWait": {"cron": "0 3 * * *"}})
    assert doc.repeat_wait == CronSchedule(cron="0 3 * * *")


@pytest.mark.parametrize(
    "extra",
    [{"bogus": 1}, {"retryWaitMs": 5}, {"expires": 1}, {"$set": {"status": "ready"}}],
)
def test_unknown_top_level_keys_are_rejected(jc: JobCollection, extra: dict[str, Any]) -> None:
    [key] = extra
    with pytest.raises(InvalidDocument, match=key.replace("$", r"\$")):
        jc.make_job({"type": "t", "data": {}, **extra})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("status", "sleeping"),
        ("retryBackoff", "fibonacci"),
        ("retries", -1),
        ("retryWait", 1.5),
        ("priority", "high"),
        ("workTimeout", 0),
        ("progress", {"completed": -1, "total": 1, "percent": 0}),
        ("repeatWait", {"cron": "* * * * *", "zone": "UTC"}),
        ("data", {"$where": "1"}),
        ("type", ""),
    ],
)
def test_invalid_field_values_are_rejected(jc: JobCollection, field: str, value: Any) -> None:
    with pytest.raises(InvalidDocument, match=field):
        jc.make_job({"type": "t", "data": {}, field: value})


# --- constants ----------------------------------------------------------------------------------

SPEC_CONSTANTS = (
    "FOREVER",
    "FOREVER_DATE",
    "JOB_PRIORITIES",
    "JOB_STATUSES",
    "JOB_LOG_LEVELS",
    "JOB_RETRY_BACKOFF_METHODS",
    "JOB_STATUS_CANCELLABLE",
    "JOB_STATUS_PAUSABLE",
    "JOB_STATUS_REMOVABLE",
    "JOB_STATUS_RESTARTABLE",
    "METHODS",
    "PERMISSION_LEVELS",
    "METHOD_PERMISSIONS",
)


def test_constant_values() -> None:
    assert FOREVER == 2**53
    assert datetime.max.replace(tzinfo=UTC) == FOREVER_DATE
    assert FOREVER_DATE.utcoffset() == timedelta(0)
    assert JOB_PRIORITIES == {"low": 10, "normal": 0, "medium": -5, "high": -10, "critical": -15}
    assert list(JOB_STATUSES) == [
        "waiting",
        "paused",
        "ready",
        "running",
        "failed",
        "cancelled",
        "completed",
    ]
    assert list(JOB_LOG_LEVELS) == ["info", "success", "warning", "danger"]
    assert list(JOB_RETRY_BACKOFF_METHODS) == ["constant", "exponential"]
    assert set(JOB_STATUS_CANCELLABLE) == {"running", "ready", "waiting", "paused"}
    assert set(JOB_STATUS_PAUSABLE) == {"ready", "waiting"}
    assert set(JOB_STATUS_REMOVABLE) == {"cancelled", "completed", "failed"}
    assert set(JOB_STATUS_RESTARTABLE) == {"cancelled", "failed"}
    assert set(PERMISSION_LEVELS) == {"admin", "manager", "creator", "worker"}
    assert list(METHODS) == [
        "startJobs",
        "stopJobs",
        "startJobServer",
        "shutdownJobServer",
        "jobRemove",
        "jobPause",
        "jobResume",
        "jobReady",
        "jobCancel",
        "jobRestart",
        "jobSave",
        "jobRerun",
        "getWork",
        "getJob",
        "jobLog",
        "jobProgress",
        "jobDone",
        "jobFail",
        # this project's extensions, after the original's methods:
        "jobSaveMany",
        "jobHeartbeat",
        "jobRelease",
        "jobReadyDue",
        "jobCancelPending",
        "jobFind",
        "jobStats",
        "jobPauseTypes",
        "jobResumeTypes",
        "jobPausedTypes",
        "jobWorkerSeen",
        "jobWorkerGone",
        "jobWorkers",
        "jobSetConcurrencyLimit",
        "jobConcurrencyLimits",
        "jobAddDepends",
        "jobScheduleUpsert",
        "jobSchedules",
        "jobSchedulePause",
        "jobScheduleResume",
        "jobScheduleRemove",
        "jobScheduleTrigger",
        "jobScheduleBackfill",
    ]


def test_method_permissions() -> None:
    groups = {
        "admin": {"startJobs", "stopJobs", "startJobServer", "shutdownJobServer"},
        "manager": {
            "jobRemove",
            "jobPause",
            "jobResume",
            "jobCancel",
            "jobReady",
            "jobRestart",
            "jobCancelPending",
            "jobFind",
            "jobStats",
            "jobPauseTypes",
            "jobResumeTypes",
            "jobPausedTypes",
            "jobWorkers",
            "jobSetConcurrencyLimit",
            "jobConcurrencyLimits",
            "jobScheduleUpsert",
            "jobSchedules",
            "jobSchedulePause",
            "jobScheduleResume",
            "jobScheduleRemove",
            "jobScheduleTrigger",
            "jobScheduleBackfill",
        },
        "creator": {"jobSave", "jobRerun", "jobSaveMany", "jobAddDepends"},
        "worker": {
            "getWork",
            "getJob",
            "jobLog",
            "jobProgress",
            "jobDone",
            "jobFail",
            "jobHeartbeat",
            "jobRelease",
            "jobReadyDue",
            "jobWorkerSeen",
            "jobWorkerGone",
        },
    }
    assert set(METHOD_PERMISSIONS) == set(METHODS)
    for method, allowed in METHOD_PERMISSIONS.items():
        expected = {method, "admin"} | {g for g, names in groups.items() if method in names}
        assert set(allowed) == expected, method


def test_collection_mirrors_constants_in_lower_case(jc: JobCollection) -> None:
    for name in SPEC_CONSTANTS:
        assert getattr(jc, name.lower()) == getattr(jobcollection, name), name
        assert getattr(JobCollection, name.lower()) == getattr(jobcollection, name), name
    assert jc.forever == 2**53
    assert "completed" in jc.job_statuses


# --- public surface -----------------------------------------------------------------------------


def test_all_names_are_importable() -> None:
    assert len(set(jobcollection.__all__)) == len(jobcollection.__all__)
    for name in jobcollection.__all__:
        assert hasattr(jobcollection, name), name


def test_all_names_the_documented_api() -> None:
    required = {
        *SPEC_CONSTANTS,
        "JobCollection",
        "Job",
        "ManualClock",
        "JobCollectionError",
        "InvalidArgument",
        "InvalidArgumentType",
        "InvalidDocument",
        "JobNotSaved",
        "PermissionDenied",
        "DatabaseError",
    }
    assert required <= set(jobcollection.__all__)
    if hasattr(jobcollection, "JobQueue"):
        assert "JobQueue" in jobcollection.__all__


PUBLIC_SURFACE = {
    *SPEC_CONSTANTS,
    "BoundTask",
    "Cancel",
    "Fatal",
    "JobDecision",
    "RetryRules",
    "Snooze",
    "ChangeStreamSource",
    "ConcurrencyLimit",
    "ON_FAILURE_POLICIES",
    "Batch",
    "Flow",
    "JobView",
    "WorkerProcessError",
    "Workflow",
    "batch",
    "WorkflowStatus",
    "chain",
    "chord",
    "group",
    "Clock",
    "CronSchedule",
    "DatabaseError",
    "DuplicateJob",
    "InvalidArgument",
    "InvalidArgumentType",
    "InvalidDocument",
    "Job",
    "JobCollection",
    "JobCollectionError",
    "JobDoc",
    "JobNotSaved",
    "JobPage",
    "JobQueue",
    "JobService",
    "JobWorker",
    "LaterSchedule",
    "Limits",
    "LogEntry",
    "ManualClock",
    "MethodEvent",
    "PermissionDenied",
    "QueueOptions",
    "QueueStats",
    "Progress",
    "RateLimit",
    "ServedCollection",
    "ServerClock",
    "ServerPass",
    "Schedule",
    "ScheduledRun",
    "Schedules",
    "LastRun",
    "Paused",
    "WorkerInfo",
    "Leader",
    "SystemClock",
    "Task",
    "TaskOptions",
    "TaskRegistry",
    "UniqueOptions",
    "Status",
    "WakeupSource",
    "WakeupUnavailable",
    "WriteRefused",
    "__version__",
    "current_job",
}
"""The package's whole public surface: a name added or dropped must change this list."""


def test_the_public_surface_is_pinned() -> None:
    assert set(jobcollection.__all__) == PUBLIC_SURFACE


def test_the_local_collection_provides_the_seam_jobs_and_queues_use(jc: JobCollection) -> None:
    assert isinstance(jc, jobcollection.ServedCollection)
    assert isinstance(jc.service, jobcollection.JobService)


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "bases"),
    [
        (InvalidArgument, (ValueError,)),
        (InvalidArgumentType, (InvalidArgument, ValueError, TypeError)),
        (InvalidDocument, (ValueError,)),
        (JobNotSaved, (RuntimeError,)),
        (PermissionDenied, (PermissionError,)),
        (DatabaseError, ()),
        (DuplicateJob, ()),
    ],
)
def test_error_hierarchy(error: type[Exception], bases: tuple[type[Exception], ...]) -> None:
    assert issubclass(error, JobCollectionError)
    for base in bases:
        assert issubclass(error, base)


def test_error_messages() -> None:
    err = InvalidArgument("retries", "must be >= 0")
    assert (err.argument, err.problem) == ("retries", "must be >= 0")
    assert str(err) == "retries: must be >= 0"
    assert str(InvalidArgumentType("type", "must be a string")) == "type: must be a string"
    # Without a message, the class docstring is the message.
    assert str(PermissionDenied()) == "Method not authorized."
    assert str(JobNotSaved("save it first")) == "save it first"
    assert str(DatabaseError()) == "The database driver reported an error."


@pytest.mark.v1_invalid("an application's own field is stored on purpose (scrub removes it)")
async def test_scrub_runs_before_validation_in_get_job_and_get_work(jc: JobCollection) -> None:
    job_id = await jc.create_job("shared", {"n": 1}).save()
    await jc.collection.update_one({"_id": job_id}, {"$set": {"appField": "x"}})
    with pytest.raises(InvalidDocument, match="appField"):
        await jc.get_job(job_id)  # the schema is closed

    seen: list[Any] = []

    def scrub(doc: dict[str, Any]) -> dict[str, Any]:
        seen.append(doc["_id"])
        return {k: v for k, v in doc.items() if k != "appField"}

    jc.scrub = scrub
    job = await jc.get_job(job_id)
    assert job is not None and job.data == {"n": 1}
    [claimed] = await jc.get_work("shared")
    assert claimed.id == job_id
    assert seen == [job_id, job_id]
    with pytest.raises(InvalidArgumentType, match="scrub"):
        jc.scrub = "not a function"  # type: ignore[assignment]


def test_every_public_name_has_a_docstring() -> None:
    """The public API (the package's and the remote API's `__all__`, and their methods and
    properties) is documented where it is defined or where the protocol it implements is."""
    import inspect

    from pydantic import BaseModel

    from jobcollection import remote

    missing = []
    for module in (jobcollection, remote):
        for name in module.__all__:
            found = getattr(module, name)
            if not (inspect.isclass(found) or inspect.isfunction(found)):
                continue
            if not inspect.getdoc(found):
                missing.append(name)
            if not inspect.isclass(found):
                continue
            for member in dir(found):
                pydantic_own = issubclass(found, BaseModel) and hasattr(BaseModel, member)
                if member.startswith("_") or pydantic_own:
                    continue
                static = inspect.getattr_static(found, member)
                value = getattr(found, member)
                if isinstance(value, type) or not (callable(value) or isinstance(static, property)):
                    continue
                if not inspect.getdoc(value) and not getattr(static, "__doc__", None):
                    missing.append(f"{name}.{member}")
    assert missing == []
