"""The strict backend of tests/strict.py: each rule refuses what MongoDB (or pymongo, or a
mongos) refuses and accepts its legitimate neighbour; dates come back as pymongo returns them;
the index check on a table of query shapes. These run whatever JOBCOLLECTION_STRICT says;
a test that records findings on purpose takes them from REGISTRY (the conftest fixture fails
any test that leaves one).

The last section runs the library itself on the strict backend, and only when
JOBCOLLECTION_STRICT is set (like the rest of the suite on that backend).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import bson
import pytest
from bson import ObjectId
from bson.binary import UuidRepresentation
from bson.codec_options import CodecOptions, DatetimeConversion
from bson.datetime_ms import DatetimeMS
from pymongo import DeleteMany, DeleteOne, InsertOne, ReturnDocument, UpdateMany, UpdateOne
from pymongo.errors import (
    BulkWriteError,
    DocumentTooLarge,
    DuplicateKeyError,
    OperationFailure,
    WriteError,
)

from jobcollection import JobCollection, testing
from jobcollection.model.document import FOLLOW_UPS
from jobcollection.mongo.store import Store
from strict import (
    REGISTRY,
    StrictCollection,
    StrictDatabase,
    StrictViolation,
    check_update,
    query_served,
    strict_database,
    strict_mode,
)

Doc = dict[str, Any]
TZ = timezone(timedelta(hours=2))
MIB = 1024 * 1024


@pytest.fixture
def db() -> StrictDatabase:
    return strict_database(testing.memory_database("strict"))


@pytest.fixture
def coll(db: StrictDatabase) -> StrictCollection:
    return db["queue.jobs"]


@pytest.fixture
def sharded(db: StrictDatabase) -> StrictCollection:
    return strict_database(db.inner, sharded=True)["queue.jobs"]


async def raw(coll: StrictCollection, job_id: Any) -> Doc:
    doc = await coll.inner.find_one({"_id": job_id})
    assert doc is not None
    return dict(doc)


# --- the switch ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "mode"),
    [(None, "strict"), ("", None), ("0", None), ("1", "strict"), ("sharded", "sharded")],
)
def test_strict_mode_reads_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str | None, mode: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("JOBCOLLECTION_STRICT", raising=False)
    else:
        monkeypatch.setenv("JOBCOLLECTION_STRICT", value)
    assert strict_mode() == mode


def test_the_proxy_passes_the_library_s_collection_check(coll: StrictCollection) -> None:
    store = Store(coll)
    assert store.collection is coll


# --- rule 1: conflicting update paths -------------------------------------------------------


@pytest.mark.parametrize(
    ("update", "path", "at"),
    [
        ({"$set": {"a": 1}, "$unset": {"a.b": ""}}, "a.b", "a"),
        ({"$set": {"_private": {"x": 0}, "_private.x": 1}}, "_private.x", "_private"),
        ({"$set": {"a": 1}, "$inc": {"a": 1}}, "a", "a"),
        ({"$push": {"log": {"m": 1}}, "$unset": {"log": ""}}, "log", "log"),
        ({"$set": {"b": 1}, "$rename": {"a": "b"}}, "b", "b"),
    ],
)
async def test_conflicting_paths_are_refused(
    coll: StrictCollection, update: Doc, path: str, at: str
) -> None:
    await coll.insert_one({"_id": 1, "a": {"b": 1}})
    with pytest.raises(WriteError) as refused:
        await coll.update_one({"_id": 1}, update)
    assert refused.value.code == 40
    assert f"would create a conflict at '{at}'" in str(refused.value)
    assert await raw(coll, 1) == {"_id": 1, "a": {"b": 1}}


async def test_neighbouring_paths_are_no_conflict(coll: StrictCollection) -> None:
    await coll.insert_one({"_id": 1, "a": {"b": 1, "c": 2}})
    await coll.update_one({"_id": 1}, {"$set": {"a.b": 5, "ab": 1}, "$unset": {"a.c": ""}})
    assert await raw(coll, 1) == {"_id": 1, "a": {"b": 5}, "ab": 1}


async def test_conflicts_are_checked_by_every_update_method(coll: StrictCollection) -> None:
    await coll.insert_one({"_id": 1})
    conflict = {"$set": {"a": 1, "a.b": 2}}
    with pytest.raises(WriteError, match="conflict"):
        await coll.update_many({}, conflict)
    with pytest.raises(OperationFailure) as command:
        await coll.find_one_and_update({"_id": 1}, conflict)
    assert type(command.value) is OperationFailure  # a command error, not a write error
    assert command.value.code == 40
    with pytest.raises(BulkWriteError) as bulk:
        await coll.bulk_write([UpdateOne({"_id": 1}, conflict)], ordered=False)
    assert [e["code"] for e in bulk.value.details["writeErrors"]] == [40]


# --- rule 2: $push modifiers ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("push", "code"),
    [
        ({"log": {"$slice": -2}}, 52),
        ({"log": {"$sort": {"t": 1}}}, 52),
        ({"log": {"$position": 0}}, 52),
        ({"log": {"$each": [1], "$limit": 2}}, 2),
        ({"log": {"$each": 1}}, 2),
    ],
)
async def test_push_modifiers_need_each(coll: StrictCollection, push: Doc, code: int) -> None:
    await coll.insert_one({"_id": 1, "log": [0]})
    with pytest.raises(WriteError) as refused:
        await coll.update_one({"_id": 1}, {"$push": push})
    assert refused.value.code == code
    assert (await raw(coll, 1))["log"] == [0]


async def test_add_to_set_takes_only_each(coll: StrictCollection) -> None:
    await coll.insert_one({"_id": 1, "s": []})
    with pytest.raises(WriteError) as refused:
        await coll.update_one({"_id": 1}, {"$addToSet": {"s": {"$each": [1], "$slice": -1}}})
    assert refused.value.code == 2
    await coll.update_one({"_id": 1}, {"$addToSet": {"s": {"$each": [1, 1, 2]}}})
    assert (await raw(coll, 1))["s"] == [1, 2]


async def test_push_with_each_and_slice_keeps_the_newest(coll: StrictCollection) -> None:
    await coll.insert_one({"_id": 1, "log": [0, 1]})
    await coll.update_one({"_id": 1}, {"$push": {"log": {"$each": [2, 3], "$slice": -3}}})
    assert (await raw(coll, 1))["log"] == [1, 2, 3]


# --- rule 3: the form of an update ----------------------------------------------------------


async def test_a_replacement_is_refused_by_update_methods(coll: StrictCollection) -> None:
    await coll.insert_one({"_id": 1, "a": 1})
    with pytest.raises(ValueError, match=r"update only works with \$ operators"):
        await coll.update_one({"_id": 1}, {"a": 2})
    with pytest.raises(ValueError, match="update cannot be empty"):
        await coll.update_many({}, {})
    with pytest.raises(ValueError, match=r"update only works with \$ operators"):
        await coll.find_one_and_update({"_id": 1}, {"a": 2})
    with pytest.raises(ValueError, match=r"update only works with \$ operators"):
        await coll.bulk_write([UpdateOne({"_id": 1}, {"$set": {"a": 3}}), UpdateOne({}, {"a": 2})])
    assert await raw(coll, 1) == {"_id": 1, "a": 1}  # nothing of the batch was sent


@pytest.mark.parametrize("update", [{"$set": {"a": 2}, "b": 1}, {"$set": {"a": 2}, "$sett": {}}])
async def test_an_unknown_modifier_is_refused(coll: StrictCollection, update: Doc) -> None:
    await coll.insert_one({"_id": 1, "a": 1})
    with pytest.raises(WriteError) as refused:
        await coll.update_one({"_id": 1}, update)
    assert refused.value.code == 9
    assert "Unknown modifier" in str(refused.value)


# --- rule 4: field names in stored values -----------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "code"),
    [
        ({"data": {"a.b": 1}}, 57),
        ({"data": {"$x": 1}}, 52),
        ({"data": {"list": [{"deep": {"$ref": 1}}]}}, 52),
        ({"a.b": 1}, 57),
    ],
)
async def test_inserted_keys_must_be_storable(coll: StrictCollection, doc: Doc, code: int) -> None:
    with pytest.raises(WriteError) as refused:
        await coll.insert_one({"_id": 1, **doc})
    assert refused.value.code == code
    assert await coll.inner.count_documents({}) == 0


@pytest.mark.parametrize(
    "update",
    [
        {"$set": {"data": {"x": [{"$y": 1}]}}},
        {"$set": {"data.x": {"a.b": 1}}},
        {"$push": {"log": {"data": {"k.v": 1}}}},
        {"$push": {"log": {"$each": [{"$m": 1}], "$slice": -5}}},
        {"$addToSet": {"tags": {"$each": [{"a.b": 1}]}}},
    ],
)
async def test_updated_values_must_be_storable(coll: StrictCollection, update: Doc) -> None:
    await coll.insert_one({"_id": 1, "log": []})
    with pytest.raises(WriteError) as refused:
        await coll.update_one({"_id": 1}, update)
    assert refused.value.code in (52, 57)
    assert await raw(coll, 1) == {"_id": 1, "log": []}


async def test_dotted_paths_and_modifiers_are_not_stored_keys(coll: StrictCollection) -> None:
    await coll.insert_one({"_id": 1, "log": []})
    await coll.update_one(
        {"_id": 1},
        {"$set": {"data.a": 1}, "$push": {"log": {"$each": [{"m": 1}], "$sort": {"m": 1}}}},
    )
    assert await raw(coll, 1) == {"_id": 1, "log": [{"m": 1}], "data": {"a": 1}}
    check_update({"$push": {"log": {"$each": [], "$sort": {"m.x": 1}}}})  # a sort spec


# --- rule 5: 16 MiB ---------------------------------------------------------------------------


async def test_an_insert_over_16_mib_is_refused_before_sending(coll: StrictCollection) -> None:
    with pytest.raises(DocumentTooLarge):
        await coll.insert_one({"_id": 1, "data": "x" * (16 * MIB)})
    with pytest.raises(DocumentTooLarge):
        await coll.insert_many([{"_id": 2}, {"_id": 3, "data": "x" * (16 * MIB)}])
    assert await coll.inner.count_documents({}) == 0
    await coll.insert_one({"_id": 4, "data": "x" * (15 * MIB)})  # under the limit


async def test_an_update_growing_a_document_over_16_mib_is_not_applied(
    coll: StrictCollection,
) -> None:
    await coll.insert_many([{"_id": 1, "data": "x" * (15 * MIB)}, {"_id": 2, "data": ""}])
    grow = {"$push": {"log": "y" * (2 * MIB)}}
    with pytest.raises(WriteError) as refused:
        await coll.update_one({"_id": 1}, grow)
    assert refused.value.code == 17419
    assert "log" not in await raw(coll, 1)
    with pytest.raises(BulkWriteError) as bulk:
        await coll.bulk_write([UpdateOne({"_id": 1}, grow), UpdateOne({"_id": 2}, grow)], False)
    assert [(e["index"], e["code"]) for e in bulk.value.details["writeErrors"]] == [(0, 17419)]
    assert "log" not in await raw(coll, 1)
    assert len((await raw(coll, 2))["log"]) == 1  # the other request was applied
    await coll.update_one({"_id": 1}, {"$push": {"log": "small"}})  # still fits


# --- rule 6: bulk writes stay retryable --------------------------------------------------------


@pytest.mark.parametrize("multi", [UpdateMany({}, {"$set": {"a": 1}}), DeleteMany({"a": 1})])
async def test_a_multi_document_operation_in_a_bulk_write_is_a_violation(
    coll: StrictCollection, multi: Any
) -> None:
    await coll.insert_one({"_id": 1})
    with pytest.raises(StrictViolation, match="retr"):
        await coll.bulk_write([UpdateOne({"_id": 1}, {"$set": {"b": 1}}), multi], ordered=False)
    assert await raw(coll, 1) == {"_id": 1}
    [finding] = REGISTRY.take()
    assert finding.kind == "violation"


async def test_an_unordered_bulk_write_applies_every_request_not_refused(
    coll: StrictCollection,
) -> None:
    await coll.insert_many([{"_id": i, "n": 0} for i in range(3)])
    requests = [
        UpdateOne({"_id": 0}, {"$inc": {"n": 1}}),
        UpdateOne({"_id": 1}, {"$set": {"n": 1}, "$inc": {"n": 1}}),
        UpdateOne({"_id": 2}, {"$inc": {"n": 1}}),
        InsertOne({"_id": 0}),
        DeleteOne({"_id": 99}),
    ]
    with pytest.raises(BulkWriteError) as refused:
        await coll.bulk_write(requests, ordered=False)
    details = refused.value.details
    assert [(e["index"], e["code"]) for e in details["writeErrors"]] == [(1, 40), (3, 11000)]
    assert details["writeErrors"][1]["keyPattern"] == {"_id": 1}
    assert (details["nMatched"], details["nModified"], details["nInserted"]) == (2, 2, 0)
    assert [d["n"] for d in await coll.inner.find({}).sort("_id").to_list(None)] == [1, 0, 1]


async def test_an_ordered_bulk_write_stops_at_the_first_refusal(coll: StrictCollection) -> None:
    await coll.insert_many([{"_id": i, "n": 0} for i in range(3)])
    requests = [
        UpdateOne({"_id": 0}, {"$inc": {"n": 1}}),
        UpdateOne({"_id": 1}, {"$set": {"n": 1}, "$inc": {"n": 1}}),
        UpdateOne({"_id": 2}, {"$inc": {"n": 1}}),
    ]
    with pytest.raises(BulkWriteError) as refused:
        await coll.bulk_write(requests)
    assert refused.value.details["nMatched"] == 1
    assert [d["n"] for d in await coll.inner.find({}).sort("_id").to_list(None)] == [1, 0, 0]


async def test_a_bulk_write_result_counts_as_pymongo_s(coll: StrictCollection) -> None:
    await coll.insert_many([{"_id": 1}, {"_id": 2}])
    result = await coll.bulk_write(
        [
            UpdateOne({"_id": 1}, {"$set": {"a": 1}}),
            UpdateOne({"_id": 9}, {"$set": {"a": 1}}),
            UpdateOne({"_id": 3}, {"$set": {"a": 1}}, upsert=True),
            DeleteOne({"_id": 2}),
        ],
        ordered=False,
    )
    assert (result.matched_count, result.upserted_count, result.deleted_count) == (1, 1, 1)
    assert result.upserted_ids == {2: 3}


async def test_duplicate_ids_are_reported_as_a_server_does(coll: StrictCollection) -> None:
    await coll.insert_one({"_id": 1})
    with pytest.raises(DuplicateKeyError) as duplicate:
        await coll.insert_one({"_id": 1})
    assert duplicate.value.details is not None
    assert duplicate.value.details["keyPattern"] == {"_id": 1}
    with pytest.raises(BulkWriteError) as bulk:
        await coll.insert_many([{"_id": 2}, {"_id": 1}, {"_id": 3}], ordered=False)
    [error] = bulk.value.details["writeErrors"]
    assert (error["index"], error["code"], error["keyValue"]) == (1, 11000, {"_id": 1})
    assert await coll.inner.count_documents({}) == 3


# --- rule 7: values travel through BSON ------------------------------------------------------


async def test_dates_come_back_naive_utc_to_the_millisecond_at_every_depth(
    coll: StrictCollection,
) -> None:
    at = datetime(2026, 1, 1, 14, 0, 0, 123456, tzinfo=TZ)
    utc = datetime(2026, 1, 1, 12, 0, 0, 123000)
    await coll.insert_one({"_id": 1, "after": at, "data": {"at": at, "list": [{"at": at}]}})
    assert await coll.find_one({"_id": 1}) == {
        "_id": 1,
        "after": utc,
        "data": {"at": utc, "list": [{"at": utc}]},
    }
    found = await coll.find_one_and_update(
        {"_id": 1}, {"$push": {"log": {"time": at}}}, return_document=ReturnDocument.AFTER
    )
    assert found is not None
    assert found["log"] == [{"time": utc}]
    assert [d["data"]["at"] for d in await coll.find({}).to_list(None)] == [utc]


async def test_tz_aware_codec_options_are_honoured(coll: StrictCollection) -> None:
    at = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    await coll.insert_one({"_id": 1, "data": {"at": at}})
    aware = coll.with_options(codec_options=CodecOptions(tz_aware=True))
    assert isinstance(aware, StrictCollection)
    assert aware.codec_options.tz_aware
    assert (await aware.find_one({"_id": 1}) or {})["data"]["at"] == at
    assert (await aware.find_one({"_id": 1}) or {})["data"]["at"].utcoffset() == timedelta(0)
    local = coll.with_options(codec_options=CodecOptions(tz_aware=True, tzinfo=TZ))
    [doc] = await local.find({"_id": 1}).to_list(None)
    assert doc["data"]["at"].utcoffset() == timedelta(hours=2)
    assert (await coll.find_one({"_id": 1}) or {})["data"]["at"].tzinfo is None  # unchanged


async def test_out_of_range_dates_follow_datetime_conversion(coll: StrictCollection) -> None:
    forever = DatetimeMS(8_640_000_000_000_000)  # v1.x's foreverDate, year 275760
    await coll.insert_one({"_id": 1, "retryUntil": forever})
    clamp: CodecOptions[Any] = CodecOptions(datetime_conversion=DatetimeConversion.DATETIME_CLAMP)
    found = await coll.with_options(codec_options=clamp).find_one({"_id": 1})
    assert found is not None
    assert found["retryUntil"] == datetime.max.replace(microsecond=999000)
    auto: CodecOptions[Any] = CodecOptions(datetime_conversion=DatetimeConversion.DATETIME_AUTO)
    assert (await coll.with_options(codec_options=auto).find_one({"_id": 1}) or {})[
        "retryUntil"
    ] == forever
    with pytest.raises(bson.errors.InvalidBSON, match="out of range"):
        await coll.find_one({"_id": 1})  # a default client cannot decode it


async def test_values_bson_cannot_encode_are_refused(coll: StrictCollection) -> None:
    with pytest.raises((bson.errors.InvalidDocument, ValueError)):
        await coll.insert_one({"_id": 1, "data": {"id": uuid.uuid4()}})  # no uuid codec
    with pytest.raises(bson.errors.InvalidDocument):
        await coll.update_one({"_id": 1}, {"$set": {"s": {1, 2}}})
    standard: CodecOptions[Any] = CodecOptions(uuid_representation=UuidRepresentation.STANDARD)
    key = uuid.uuid4()
    with_uuid = coll.with_options(codec_options=standard)
    await with_uuid.insert_one({"_id": 2, "key": key})
    assert (await with_uuid.find_one({"_id": 2}) or {})["key"] == key


async def test_insert_sets_the_id_on_the_caller_s_document(coll: StrictCollection) -> None:
    doc: Doc = {"a": (1, 2)}
    result = await coll.insert_one(doc)
    assert isinstance(doc["_id"], ObjectId)
    assert result.inserted_id == doc["_id"]
    assert await coll.find_one({"_id": doc["_id"]}) == {"_id": doc["_id"], "a": [1, 2]}


# --- rule 8: the index check ------------------------------------------------------------------

CLAIM_SORT = [("priority", 1), ("retryUntil", 1), ("after", 1)]
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("query", "sort", "served"),
    [
        ({"type": {"$in": ["a"]}, "status": "ready", "runId": None}, CLAIM_SORT, True),
        ({"status": "ready", "type": "a", "runId": None}, CLAIM_SORT, True),
        ({"type": {"$in": ["a"]}, "status": "ready"}, [("priority", -1)], True),
        ({"type": "a", "status": "ready"}, [("priority", 1), ("after", 1)], False),
        ({"type": "a", "status": "ready"}, [("priority", 1), ("retryUntil", -1)], False),
        ({"status": "ready"}, CLAIM_SORT, False),
        ({"status": "running", "runId": {"$in": [1, 2]}}, [], True),
        ({"runId": {"$in": [1]}, "status": "running"}, [], True),
        ({"runId": {"$in": [1]}}, [], False),
        ({"resolved": {"$in": [1]}}, [], False),
        ({"status": "running", "expiresAfter": {"$lt": NOW}}, [], True),
        ({"status": "waiting", "after": {"$lte": NOW}, "depends": {"$size": 0}}, [], True),
        ({"depends": {"$in": [1]}, "status": {"$in": ["waiting"]}}, [], True),
        ({"type": "a", "status": {"$in": ["ready", "waiting"]}}, [], True),
        ({"_id": 1, "runId": 2, "status": "running"}, [], True),
        ({"_id": {"$in": [1, 2]}}, [("priority", 1)], True),
        ({"_id": {"$ne": 1}}, [], False),
        ({"status": {"$ne": "ready"}}, [], False),
        ({}, [], False),
        ({}, [("priority", 1)], False),
        ({FOLLOW_UPS: {"$exists": True}, f"{FOLLOW_UPS}.at": {"$lte": NOW}}, [], True),
        (
            {FOLLOW_UPS: {"$exists": True}, f"{FOLLOW_UPS}.at": {"$lte": NOW}},
            [(f"{FOLLOW_UPS}.at", 1)],
            True,
        ),
        ({f"{FOLLOW_UPS}.at": {"$lte": NOW}}, [], False),  # the partial index's predicate
        ({FOLLOW_UPS: {"$exists": False}, f"{FOLLOW_UPS}.at": {"$lte": NOW}}, [], False),
        ({"$and": [{"status": "running"}, {"expiresAfter": {"$lt": NOW}}]}, [], True),
        ({"$or": [{"status": "running"}, {"status": "ready"}]}, [], False),
    ],
)
def test_which_query_shapes_an_index_serves(query: Doc, sort: list[Any], served: bool) -> None:
    assert query_served(query, sort) is served


async def test_unindexed_library_queries_are_recorded(coll: StrictCollection) -> None:
    store = Store(coll)
    await store.find({"resolved": {"$in": [1]}}, {"_id": 1})
    await store.update_many({"status": "ready"}, {"$set": {"a": 1}})  # served: no finding
    await store.find({"status": "ready"}, sort=[("priority", -1)], limit=3)
    findings = REGISTRY.take()
    assert [(f.kind, f.operation) for f in findings] == [("unindexed", "find")] * 2
    assert "{resolved: $in}" in str(findings[0])
    assert "Store.find" in findings[0].caller
    assert "{status: eq} sort priority -1" in str(findings[1])
    assert "{resolved: $in}" in REGISTRY.report(findings)


async def test_a_test_s_own_queries_are_not_checked(coll: StrictCollection) -> None:
    await coll.find({"resolved": {"$in": [1]}}).to_list(None)
    await coll.count_documents({"anything": 1})
    assert REGISTRY.take() == []


async def test_unindexed_queries_can_be_allowed(coll: StrictCollection) -> None:
    with REGISTRY.allow_unindexed():
        await Store(coll).find({"resolved": {"$in": [1]}})
    assert REGISTRY.take() == []


@pytest.mark.unindexed_queries
async def test_a_marked_test_may_send_unindexed_queries(coll: StrictCollection) -> None:
    """The finding is left for the conftest fixture, which drops it for a marked test."""
    await Store(coll).find({"resolved": {"$in": [1]}})
    assert [f.kind for f in REGISTRY.findings] == ["unindexed"]


async def test_a_partial_filter_must_be_supported(coll: StrictCollection) -> None:
    await coll.create_index([("a", 1)], partialFilterExpression={"b": {"$exists": True}})
    with pytest.raises(OperationFailure) as refused:
        await coll.create_index([("a", 1)], partialFilterExpression={"b": {"$exists": False}})
    assert refused.value.code == 67


# --- rule 9: a mongos --------------------------------------------------------------------------


async def test_sharded_find_and_modify_needs_an_id_equality(sharded: StrictCollection) -> None:
    await sharded.insert_many([{"_id": 1, "status": "ready"}, {"_id": 2, "status": "ready"}])
    for query in ({"status": "ready"}, {"_id": {"$in": [1]}}, {"_id": {"$gte": 1}}):
        with pytest.raises(OperationFailure) as refused:
            await sharded.find_one_and_update(query, {"$set": {"status": "running"}})
        assert refused.value.code == 61
        assert "must contain the shard key" in str(refused.value)
    found = await sharded.find_one_and_update(
        {"_id": 1, "status": "ready"},
        {"$set": {"status": "running"}},
        return_document=ReturnDocument.AFTER,
    )
    assert found == {"_id": 1, "status": "running"}
    assert await sharded.find_one_and_update({"_id": {"$eq": 2}}, {"$set": {"x": 1}}) is not None


async def test_sharded_single_writes_need_an_id_equality(sharded: StrictCollection) -> None:
    await sharded.insert_many([{"_id": 1, "s": "a"}, {"_id": 2, "s": "a"}])
    with pytest.raises(WriteError) as update:
        await sharded.update_one({"s": "a"}, {"$set": {"t": 1}})
    assert update.value.code == 72
    assert "A single update on a sharded collection" in str(update.value)
    with pytest.raises(WriteError) as delete:
        await sharded.delete_one({"s": "a"})
    assert delete.value.code == 61
    with pytest.raises(BulkWriteError) as bulk:
        await sharded.bulk_write(
            [UpdateOne({"s": "a"}, {"$set": {"t": 1}}), UpdateOne({"_id": 2}, {"$set": {"t": 2}})],
            ordered=False,
        )
    assert [(e["index"], e["code"]) for e in bulk.value.details["writeErrors"]] == [(0, 72)]
    assert (await sharded.find_one({"_id": 2}) or {})["t"] == 2
    assert (await sharded.update_many({"s": "a"}, {"$set": {"u": 1}})).modified_count == 2
    assert (await sharded.update_one({"_id": 1, "s": "a"}, {"$set": {"t": 1}})).matched_count


async def test_sharded_upserts_need_an_id_equality(sharded: StrictCollection) -> None:
    with pytest.raises(WriteError) as refused:
        await sharded.update_many({"s": "a"}, {"$set": {"t": 1}}, upsert=True)
    assert refused.value.code == 61
    await sharded.update_one({"_id": "clock"}, {"$currentDate": {"at": True}}, upsert=True)
    assert isinstance((await sharded.find_one({"_id": "clock"}) or {})["at"], datetime)


async def test_sharded_unique_indexes_need_the_shard_key_prefix(
    sharded: StrictCollection,
) -> None:
    with pytest.raises(OperationFailure) as refused:
        await sharded.create_index([("type", 1)], unique=True)
    assert refused.value.code == 67
    await sharded.create_index([("_id", 1), ("type", 1)], unique=True)
    await sharded.create_index([("type", 1)])


async def test_hello_answers_as_a_mongos_in_sharded_mode(db: StrictDatabase) -> None:
    reply = await strict_database(db.inner, sharded=True).command("hello")
    assert reply["msg"] == "isdbgrid"
    assert reply["localTime"].tzinfo is None
    assert abs(reply["localTime"] - datetime.now(UTC).replace(tzinfo=None)) < timedelta(seconds=5)
    with pytest.raises(NotImplementedError):  # mongomock: the library's sign of memory
        await db.command("hello")


# --- the library on the strict backend ------------------------------------------------------

library = pytest.mark.skipif(strict_mode() is None, reason="JOBCOLLECTION_STRICT is not set")


@library
async def test_claimed_jobs_keep_their_nested_dates(jc: JobCollection) -> None:
    at = datetime(2026, 1, 1, 12, 30, tzinfo=UTC)
    job_id = await jc.create_job("t", {"at": at, "list": [at]}).save()
    assert job_id is not None
    [job] = await jc.get_work("t")
    assert job.id == job_id
    assert job.data == {"at": at, "list": [at]}
    assert (await jc.get_job(job_id) or job).data["at"] == at


@library
async def test_a_payload_completed_with_one_result_stays_retryable(jc: JobCollection) -> None:
    await jc.save_jobs([jc.create_job("t", {"n": n}) for n in range(3)])
    claimed = await jc.get_work("t", max_jobs=3)
    assert await asyncio.gather(*(job.done({"same": True}) for job in claimed)) == [True] * 3
