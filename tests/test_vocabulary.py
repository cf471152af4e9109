"""One vocabulary: the Status enum, the table of `_private` extensions, WriteRefused, and the
type aliases at the bottom layer (issue 21)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import bson
import pytest

from jobcollection import (
    JOB_STATUS_CANCELLABLE,
    JOB_STATUS_PAUSABLE,
    JOB_STATUS_REMOVABLE,
    JOB_STATUS_RESTARTABLE,
    JOB_STATUSES,
    DatabaseError,
    JobCollection,
    JobDoc,
)
from jobcollection.model.constants import JOB_STATUS_PENDING, Status
from jobcollection.model.document import (
    EXPIRES,
    EXTENSIONS,
    INTERNAL_PRIVATE_KEYS,
    PRIVATE_SETTINGS,
    REMOVE_AFTER,
    RETRY,
    SCHEDULE,
    TIMEOUT,
    CronSchedule,
    RemoveAfter,
    parse_doc,
)
from jobcollection.model.errors import WriteRefused
from jobcollection.mongo.store import Store, refused
from jobcollection.remote import codec

# --- Status -------------------------------------------------------------------------------------


def test_members_are_the_stored_strings_in_v1_order() -> None:
    assert [str(s) for s in Status] == [
        "waiting",
        "paused",
        "ready",
        "running",
        "failed",
        "cancelled",
        "completed",
    ]
    assert tuple(Status) == JOB_STATUSES
    assert Status("ready") is Status.READY
    assert Status.READY == "ready" and {"ready": 1}[Status.READY] == 1  # hashes as its string
    assert f"{Status.FAILED}" == "failed" and repr(Status.FAILED) == "'failed'"


def test_the_groups_are_the_job_status_tuples_in_v1_order() -> None:
    assert JOB_STATUS_PENDING == Status.PENDING == ("waiting", "paused", "ready")
    assert JOB_STATUS_CANCELLABLE == Status.CANCELLABLE == ("running", "ready", "waiting", "paused")
    assert JOB_STATUS_PAUSABLE == Status.PAUSABLE == ("ready", "waiting")
    assert JOB_STATUS_REMOVABLE == Status.REMOVABLE == ("cancelled", "completed", "failed")
    assert JOB_STATUS_RESTARTABLE == Status.RESTARTABLE == ("cancelled", "failed")
    assert set(Status.FINAL) == {"completed", "failed", "cancelled"}
    for status in Status:
        assert status.is_pending == (status in ("waiting", "paused", "ready"))
        assert status.is_final == (status in ("completed", "failed", "cancelled"))
        assert status.cancellable == (status in JOB_STATUS_CANCELLABLE)
        assert status.pausable == (status in JOB_STATUS_PAUSABLE)
        assert status.removable == (status in JOB_STATUS_REMOVABLE)
        assert status.restartable == (status in JOB_STATUS_RESTARTABLE)


def test_bson_and_json_write_members_as_their_strings() -> None:
    for status in Status:
        assert bson.encode({"status": status}) == bson.encode({"status": status.value})
        assert type(bson.decode(bson.encode({"status": status}))["status"]) is str
        assert json.dumps({"status": status}) == json.dumps({"status": status.value})


def test_documents_read_stored_strings_and_write_plain_ones() -> None:
    doc = JobDoc.model_validate({"type": "t", "status": "ready"})
    assert doc.status is Status.READY and doc.status.pausable
    assert type(doc.to_mongo()["status"]) is str
    assert doc.model_dump()["status"] == "ready" and type(doc.model_dump()["status"]) is str
    assert json.loads(doc.model_dump_json())["status"] == "ready"
    copied = doc.model_copy(update={"status": "paused"})  # no validation: the string itself
    assert copied.to_mongo()["status"] == "paused"
    retention = RemoveAfter(delay_ms=5, statuses=("failed", "cancelled"))  # type: ignore[arg-type]
    assert retention.statuses == (Status.FAILED, Status.CANCELLED)
    stored = JobDoc(type="t", remove_after=retention).to_mongo()["_private"]
    assert [type(s) for s in stored["jobcollectionRemoveAfter"]["statuses"]] == [str, str]


async def test_the_in_memory_backend_matches_members_and_strings(jc: JobCollection) -> None:
    job_id = await jc.create_job("t").save()
    assert await jc.collection.count_documents({"status": "ready"}) == 1
    assert await jc.collection.count_documents({"status": Status.READY}) == 1
    [job] = await jc.get_work("t")
    assert await jc.collection.count_documents({"status": {"$in": ["running"]}}) == 1
    await job.done()
    raw = await jc.collection.find_one({"_id": job_id})
    assert raw is not None and raw["status"] == "completed"
    assert (await jc.get_job(job_id)).doc.status is Status.COMPLETED  # type: ignore[union-attr]


# --- the _private table -------------------------------------------------------------------------

OLD_INTERNAL_KEYS = {
    "jobcollectionFlush",
    "jobcollectionFollowUps",
    "jobcollectionRepeatOf",
    "jobcollectionDependents",
    "jobcollectionAnnounced",
    "jobcollectionSchedule",
    "jobcollectionRetry",
    "jobcollectionLineage",
    "jobcollectionUser",
    "jobcollectionUnique",
    "jobcollectionRemoveAfter",
    "jobcollectionExpireAt",
    "jobcollectionSkipped",
    "jobcollectionTimeout",
    "jobcollectionTrace",
    "jobcollectionClaimer",
    "jobcollectionQuota",
    "jobcollectionCascade",
    "jobcollectionOnFailure",
    "jobcollectionFailedAntecedents",
    "jobcollectionWorkflow",
    "jobcollectionBatches",
    "jobcollectionCallbackOf",
    "jobcollectionRunIf",
    "jobcollectionExpires",
    "jobcollectionUniqueHeld",
    "jobcollectionUniquePolicy",
    "jobcollectionCheckpoint",
    "jobcollectionScheduled",
    "jobcollectionWorker",
}
OLD_PUBLIC_SETTINGS = {
    "jobcollectionSchedule",
    "jobcollectionRetry",
    "jobcollectionRemoveAfter",
    "jobcollectionSkipped",
    "jobcollectionLineage",
    "jobcollectionUser",
    "jobcollectionUnique",
    "jobcollectionTimeout",
    "jobcollectionTrace",
    "jobcollectionOnFailure",
    "jobcollectionFailedAntecedents",
    "jobcollectionWorkflow",
    "jobcollectionBatches",
    "jobcollectionCallbackOf",
    "jobcollectionRunIf",
    "jobcollectionExpires",
    "jobcollectionCheckpoint",
    "jobcollectionScheduled",
    "jobcollectionWorker",
}


def test_the_derived_constants_are_the_ones_written_by_hand_before() -> None:
    assert INTERNAL_PRIVATE_KEYS == OLD_INTERNAL_KEYS
    assert len({ext.key for ext in EXTENSIONS}) == len(EXTENSIONS)
    # who claimed it stays on the server: the remote API neither sends nor takes it
    assert "jobcollectionWorker" not in codec.PUBLIC_SETTINGS
    assert codec.PUBLIC_SETTINGS | {"jobcollectionWorker"} == OLD_PUBLIC_SETTINGS
    assert PRIVATE_SETTINGS == (SCHEDULE, RETRY, REMOVE_AFTER, TIMEOUT, EXPIRES)
    shorts = {ext.short for ext in EXTENSIONS if ext.kind == "setting"}
    assert shorts == {
        "schedule",
        "retry",
        "removeAfter",
        "skipped",
        "lineage",
        "user",
        "unique",
        "timeout",
        "trace",
        "onFailure",
        "failedAntecedents",
        "workflow",
        "batches",
        "callbackOf",
        "runIf",
        "expires",
        "checkpoint",
        "scheduled",
        "worker",
    }


def _with_every_setting() -> dict[str, Any]:
    return {
        "type": "t",
        "repeat_wait": CronSchedule(cron="0 9 * * *", timezone="Europe/Paris"),
        "retry_backoff": "linear",
        "retry_jitter": 0.25,
        "retry_max_wait": 60_000,
        "retry_on": ("builtins.TimeoutError", "httpx.HTTPError"),
        "remove_after": {"delay_ms": 1_000, "statuses": ["completed", "failed"]},
        "skipped_runs": 2,
        "lineage": ["a", "b"],
        "user_id": 0,
        "timeout": 5_000,
        "trace": {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
        "unique": {
            "key": "k",
            "on_conflict": "ignore",
            "period_ms": 60_000,
            "states": ["waiting", "paused", "ready", "running"],
        },
        "on_failure": [{"id": "a", "policy": "ignore"}, {"id": "b", "policy": "fail"}],
        "failed_antecedents": ["c"],
        "workflow": "w",
        "batches": ["outer", "inner"],
        "callback_of": "outer",
        "run_if": "failed",
        "expires": datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
        "expired": True,
        "checkpoint": {"position": 3, "pages": [1, 2]},
        "scheduled": {"schedule": "nightly", "at": datetime(2026, 1, 1, 3, tzinfo=UTC)},
        "worker": {"id": "q1", "host": "h", "pid": 7, "user": "u", "remote": True},
    }


def test_every_setting_is_written_and_read_back_through_the_table() -> None:
    doc = JobDoc.model_validate(_with_every_setting())
    stored = doc.to_mongo()
    assert set(stored["_private"]) == OLD_PUBLIC_SETTINGS
    assert stored["retryBackoff"] == "constant"  # v1.x has no linear backoff
    assert stored["_private"]["jobcollectionUser"] == 0  # a user 0 is a user
    back = JobDoc.from_mongo(stored)
    for name in _with_every_setting():
        if name != "unique":  # on_conflict is the save's, not stored
            assert getattr(back, name) == getattr(doc, name), name
    assert back.unique is not None and back.unique.key == "k"
    over_the_wire = codec.decode_doc(codec.loads(codec.dumps(codec.encode(doc))))
    sent = {k: v for k, v in stored["_private"].items() if k != "jobcollectionWorker"}
    assert over_the_wire.to_mongo()["_private"] == sent  # who claimed it stays on the server
    assert over_the_wire.worker is None
    assert over_the_wire.unique == doc.unique


def test_a_given_document_keeps_its_settings_and_loses_bookkeeping() -> None:
    private = {"jobcollectionTimeout": 7, "jobcollectionFollowUps": {"x": 1}, "mine": 1}
    doc = parse_doc({"type": "t", "_private": private})
    assert doc.timeout == 7 and doc.private == {"mine": 1}


# --- WriteRefused -------------------------------------------------------------------------------


async def test_the_store_raises_write_refused_with_the_driver_error_as_cause(
    database: Any,
) -> None:
    store = Store(database["vocabulary"])
    await store.insert_one({"_id": 1})
    with pytest.raises(WriteRefused) as refusal:
        await store.insert_one({"_id": 1})
    assert isinstance(refusal.value, DatabaseError) and refused(refusal.value)
    assert refusal.value.code == 11000
    assert refusal.value.__cause__ is not None
    assert type(refusal.value.__cause__).__module__.startswith("pymongo")


def test_a_refusal_crosses_the_remote_api_as_write_refused() -> None:
    body = codec.error_body(WriteRefused("database error: no", 121))
    assert body["type"] == "DatabaseError" and body["refused"] is True and body["code"] == 121
    with pytest.raises(WriteRefused) as refusal:
        codec.raise_error(503, {"error": body})
    assert refusal.value.code == 121 and refused(refusal.value)
    with pytest.raises(DatabaseError) as unknown:
        codec.raise_error(503, {"error": {"type": "DatabaseError", "message": "lost"}})
    assert not isinstance(unknown.value, WriteRefused)


def test_the_remote_modules_name_types_without_the_rules() -> None:
    import jobcollection.model.types as types
    import jobcollection.remote.client as client

    assert client.Id is types.Id and codec.Due is types.Due
    assert "transitions" not in client.__dict__ and "pymongo" not in codec.__dict__
