"""The Store adapter over both driver shapes: pymongo's AsyncCollection and Motor's collection.

The pymongo shape is a small hand-written fake (coroutine methods, a cursor whose `to_list` is
a coroutine, `with_options(codec_options=...)`) whose query semantics are borrowed from an
in-memory mongomock collection, so the pymongo-async code path runs without a server. The Motor
shape is a mongomock-motor collection.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import mongomock
import pytest
from bson import ObjectId
from bson.binary import UuidRepresentation
from bson.codec_options import CodecOptions, DatetimeConversion
from mongomock_motor import AsyncMongoMockClient
from pymongo import ReadPreference, ReturnDocument
from pymongo.errors import DuplicateKeyError, OperationFailure, PyMongoError
from pymongo.read_concern import ReadConcern

from jobcollection import DatabaseError, JobCollection, ManualClock
from jobcollection.mongo.store import Store
from jobcollection.rules.transitions import repeat_job_id
from jobcollection.testing import memory_database

memory_database()  # applies the in-memory bulk_write shim to mongomock, which backs the fake

START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


class FakeCursor:
    """pymongo's AsyncCursor shape: sort/limit chain synchronously, to_list is awaited."""

    def __init__(self, owner: FakeAsyncCollection, query: Any, projection: Any) -> None:
        self._owner = owner
        self._query = query
        self._projection = projection
        self._sort: list[tuple[str, int]] | None = None
        self._limit = 0

    def sort(self, keys: list[tuple[str, int]]) -> FakeCursor:
        self._sort = keys
        return self

    def limit(self, n: int) -> FakeCursor:
        self._limit = n
        return self

    async def to_list(self, length: int | None = None) -> list[dict[str, Any]]:
        self._owner.record("find", self._query, self._projection, self._sort, self._limit)
        cursor = self._owner.backing.find(self._query, self._projection)
        if self._sort:
            cursor = cursor.sort(self._sort)
        if self._limit:
            cursor = cursor.limit(self._limit)
        docs = list(cursor)
        return docs if length is None else docs[:length]


class FakeAsyncCollection:
    """Just enough of pymongo.asynchronous.collection.AsyncCollection for the Store."""

    def __init__(
        self,
        backing: Any = None,
        *,
        name: str = "queue.jobs",
        codec_support: bool = True,
        log: list[tuple[Any, ...]] | None = None,
        codec_options: CodecOptions[Any] | None = None,
        read_preference: Any = None,
        read_concern: Any = None,
    ) -> None:
        self.backing = backing if backing is not None else mongomock.MongoClient()["db"][name]
        self.name = name
        self.codec_support = codec_support
        self.codec_options = codec_options or CodecOptions()
        self.read_preference = read_preference
        self.read_concern = read_concern
        self.calls: list[tuple[Any, ...]] = log if log is not None else []
        self.fail_with: BaseException | None = None

    def record(self, method: str, *args: Any) -> None:
        self.calls.append((method, self.codec_options, *args))
        if self.fail_with is not None:
            raise self.fail_with

    def with_options(
        self,
        codec_options: CodecOptions[Any] | None = None,
        read_preference: Any = None,
        read_concern: Any = None,
    ) -> FakeAsyncCollection:
        if not self.codec_support:
            raise NotImplementedError("custom codec options")
        derived = FakeAsyncCollection(
            self.backing,
            name=self.name,
            log=self.calls,
            codec_options=codec_options,
            read_preference=read_preference,
            read_concern=read_concern,
        )
        derived.fail_with = self.fail_with
        self.derived = derived
        return derived

    def find(self, filter: Any = None, projection: Any = None) -> FakeCursor:
        return FakeCursor(self, filter, projection)

    async def find_one(self, filter: Any = None, projection: Any = None) -> Any:
        self.record("find_one", filter, projection)
        return self.backing.find_one(filter, projection)

    async def insert_one(self, document: dict[str, Any]) -> Any:
        self.record("insert_one", document)
        return self.backing.insert_one(document)

    async def insert_many(self, documents: list[dict[str, Any]], ordered: bool = True) -> Any:
        self.record("insert_many", documents, ordered)
        return self.backing.insert_many(documents, ordered=ordered)

    async def update_one(self, filter: Any, update: Any) -> Any:
        self.record("update_one", filter, update)
        return self.backing.update_one(filter, update)

    async def update_many(self, filter: Any, update: Any) -> Any:
        self.record("update_many", filter, update)
        return self.backing.update_many(filter, update)

    async def find_one_and_update(
        self,
        filter: Any,
        update: Any,
        projection: Any = None,
        sort: Any = None,
        return_document: bool = ReturnDocument.BEFORE,
    ) -> Any:
        self.record("find_one_and_update", filter, update, projection, return_document)
        return self.backing.find_one_and_update(
            filter, update, projection=projection, sort=sort, return_document=return_document
        )

    async def bulk_write(self, requests: list[Any], ordered: bool = True) -> Any:
        self.record("bulk_write", requests, ordered)
        return self.backing.bulk_write(requests, ordered=ordered)

    async def delete_many(self, filter: Any) -> Any:
        self.record("delete_many", filter)
        return self.backing.delete_many(filter)

    async def create_index(self, keys: Any, **options: Any) -> str:
        self.record("create_index", keys, options)
        return str(self.backing.create_index(keys, **options))


@pytest.fixture(params=["pymongo", "motor"])
async def collection(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """A jobs collection in one of the two driver shapes."""
    if request.param == "pymongo":
        yield FakeAsyncCollection()
    else:
        yield memory_database("db")["queue.jobs"]


# --- every Store method, on both shapes -----------------------------------------------------


async def test_insert_and_find(collection: Any) -> None:
    store = Store(collection)
    first = await store.insert_one({"type": "a", "n": 2})
    assert isinstance(first, ObjectId)
    assert (
        await store.insert_missing(
            [{"_id": 1, "type": "b", "n": 1}, {"_id": 2, "type": "a", "n": 3}]
        )
        == set()
    )

    everything = await store.find({})
    assert len(everything) == 3
    only_a = await store.find({"type": "a"}, {"n": 1, "_id": 0}, sort=[("n", -1)])
    assert only_a == [{"n": 3}, {"n": 2}]
    limited = await store.find({}, {"n": 1}, sort=[("n", 1)], limit=2)
    assert [d["n"] for d in limited] == [1, 2]
    assert await store.find({"type": "zzz"}) == []

    found = await store.find_one({"_id": first})
    assert found is not None and found["n"] == 2
    projected = await store.find_one({"_id": first}, {"type": 1})
    assert projected == {"_id": first, "type": "a"}
    assert await store.find_one({"type": "zzz"}) is None
    assert store.commands == 9


async def test_updates(collection: Any) -> None:
    store = Store(collection)
    ids = [ObjectId(), ObjectId(), ObjectId()]
    await store.insert_missing(
        [
            {"_id": ids[0], "k": 1, "v": 0},
            {"_id": ids[1], "k": 1, "v": 0},
            {"_id": ids[2], "k": 2, "v": 5},
        ]
    )
    # update_one reports the number matched, even when nothing changed.
    assert await store.update_one({"k": 2}, {"$set": {"v": 5}}) == 1
    assert await store.update_one({"k": 9}, {"$set": {"v": 5}}) == 0
    # update_many reports the number modified.
    assert await store.update_many({"k": 1}, {"$set": {"v": 1}}) == 2
    assert await store.update_many({"k": 1}, {"$set": {"v": 1}}) == 0
    assert await store.update_many({"k": 9}, {"$set": {"v": 1}}) == 0

    after = await store.find_one_and_update({"_id": ids[2]}, {"$inc": {"v": 1}}, {"v": 1})
    assert after == {"_id": ids[2], "v": 6}
    before = await store.find_one_and_update(
        {"_id": ids[2]}, {"$inc": {"v": 1}}, {"v": 1}, return_new=False
    )
    assert before == {"_id": ids[2], "v": 6}
    assert (await store.find_one({"_id": ids[2]}) or {})["v"] == 7
    assert await store.find_one_and_update({"k": 9}, {"$set": {"v": 0}}) is None
    assert store.commands == 10


async def test_update_each(collection: Any) -> None:
    store = Store(collection)
    await store.insert_missing([{"_id": 1, "v": 0}, {"_id": 2, "v": 0}])
    outcome = await store.update_each(
        [
            ({"_id": 1}, {"$set": {"v": 1}}),
            ({"_id": 2}, {"$set": {"v": 2}}),
            ({"_id": 3}, {"$set": {"v": 3}}),
        ]
    )
    assert outcome.matched == 2 and outcome.refused == {}
    assert [d["v"] for d in await store.find({}, sort=[("v", 1)])] == [1, 2]
    assert store.commands == 3


async def test_insert_missing_skips_what_is_stored_and_names_it(collection: Any) -> None:
    store = Store(collection)
    assert await store.insert_missing([{"_id": 1, "v": 0}]) == set()
    assert await store.insert_missing([{"_id": 1, "v": 9}, {"_id": 2, "v": 0}]) == {1}
    assert [d["v"] for d in await store.find({}, sort=[("_id", 1)])] == [0, 0]


async def test_delete_and_create_index(collection: Any) -> None:
    store = Store(collection)
    await store.insert_missing(
        [{"_id": 1, "s": "done"}, {"_id": 2, "s": "done"}, {"_id": 3, "s": "ready"}]
    )
    assert await store.delete_many({"s": "done"}) == 2
    assert await store.delete_many({"s": "done"}) == 0
    assert len(await store.find({})) == 1
    name = await store.create_index([("type", 1), ("status", 1)])
    assert isinstance(name, str) and name
    assert store.commands == 5


async def test_collection_is_the_one_given(collection: Any) -> None:
    assert Store(collection).collection is collection


# --- the pymongo shape in particular ----------------------------------------------------------


async def test_the_library_view_keeps_the_callers_codec_options_and_reads_the_primary() -> None:
    given = CodecOptions(uuid_representation=UuidRepresentation.STANDARD, tz_aware=False)
    fake = FakeAsyncCollection(codec_options=given)
    store = Store(fake)
    assert store.collection is fake
    await store.insert_one({"a": 1})
    await store.find({})
    await store.find_one({})
    assert len(fake.calls) == 3
    for call in fake.calls:
        codec = call[1]
        assert codec.datetime_conversion == DatetimeConversion.DATETIME_CLAMP
        assert codec.tz_aware is True and codec.tzinfo is UTC
        assert codec.uuid_representation == UuidRepresentation.STANDARD
    assert fake.derived.read_preference == ReadPreference.PRIMARY
    assert fake.derived.read_concern == ReadConcern("local")
    assert store.codec_options.uuid_representation == UuidRepresentation.STANDARD


async def test_a_real_pymongo_collection_keeps_its_codec_options() -> None:
    """With a real AsyncMongoClient (never connected): the view keeps uuidRepresentation, so
    a uuid.UUID is accepted where the client can store one."""
    from pymongo import AsyncMongoClient

    client: Any = AsyncMongoClient(
        "mongodb://127.0.0.1:1", connect=False, uuidRepresentation="standard"
    )
    try:
        store = Store(client["db"]["queue.jobs"])
        assert store.codec_options.uuid_representation == UuidRepresentation.STANDARD
        assert store.codec_options.tz_aware is True
        assert store.encode({"id": uuid.uuid4()})
        plain = Store(AsyncMongoClient("mongodb://127.0.0.1:1", connect=False)["db"]["jobs"])
        with pytest.raises(ValueError):
            plain.encode({"id": uuid.uuid4()})
    finally:
        await client.close()


async def test_collection_without_codec_support_is_tolerated() -> None:
    fake = FakeAsyncCollection(codec_support=False)
    store = Store(fake)
    await store.insert_one({"a": 1})
    assert await store.find({}, {"_id": 0}) == [{"a": 1}]
    assert [call[1] for call in fake.calls] == [CodecOptions(), CodecOptions()]  # as given


async def test_find_passes_sort_and_limit_to_the_cursor() -> None:
    fake = FakeAsyncCollection()
    store = Store(fake)
    await store.find({"status": "ready"}, {"_id": 1}, sort=[("priority", 1)], limit=3)
    await store.find({"status": "ready"})
    finds = [c for c in fake.calls if c[0] == "find"]
    assert finds[0][2:] == ({"status": "ready"}, {"_id": 1}, [("priority", 1)], 3)
    assert finds[1][2:] == ({"status": "ready"}, None, None, 0)


async def test_store_copies_queries_it_is_given() -> None:
    fake = FakeAsyncCollection()
    store = Store(fake)
    query = {"a": 1}
    await store.update_many(query, {"$set": {"b": 2}})
    [(_, _, sent, _)] = [c for c in fake.calls if c[0] == "update_many"]
    assert sent == query and sent is not query


@pytest.mark.parametrize(
    ("method", "args"),
    [
        ("find", ({},)),
        ("find_one", ({},)),
        ("insert_one", ({"a": 1},)),
        ("insert_missing", ([{"_id": 1, "a": 1}],)),
        ("update_one", ({}, {"$set": {"a": 1}})),
        ("update_many", ({}, {"$set": {"a": 1}})),
        ("find_one_and_update", ({}, {"$set": {"a": 1}})),
        ("delete_many", ({},)),
        ("update_each", ([({"_id": 1}, {"$set": {"a": 1}})],)),
        ("create_index", ([("a", 1)],)),
    ],
)
async def test_driver_errors_become_database_errors(method: str, args: tuple[Any, ...]) -> None:
    fake = FakeAsyncCollection()
    store = Store(fake)
    cause = OperationFailure("not primary", code=10107)
    fake.derived.fail_with = cause
    with pytest.raises(DatabaseError, match="not primary") as caught:
        await getattr(store, method)(*args)
    assert caught.value.__cause__ is cause
    assert store.commands == 1
    assert fake.backing.count_documents({}) == 0


async def test_motor_driver_errors_become_database_errors() -> None:
    collection = AsyncMongoMockClient()["db"]["queue.jobs"]
    store = Store(collection)
    job_id = await store.insert_one({"a": 1})
    with pytest.raises(DatabaseError) as caught:
        await store.insert_one({"_id": job_id, "a": 2})
    assert isinstance(caught.value.__cause__, DuplicateKeyError)
    assert isinstance(caught.value.__cause__, PyMongoError)
    assert store.commands == 2
    assert await store.find({}, {"_id": 0}) == [{"a": 1}]


async def test_any_error_a_backend_raises_is_translated() -> None:
    fake = FakeAsyncCollection()
    store = Store(fake)
    cause = TypeError("the backend's own failure")
    fake.derived.fail_with = cause
    with pytest.raises(DatabaseError, match="backend's own") as caught:
        await store.find_one({})
    assert caught.value.__cause__ is cause
    assert store.commands == 1


@pytest.mark.parametrize(
    "not_a_collection",
    [
        object(),
        None,
        {"find": 1},
        "queue.jobs",
        mongomock.MongoClient()["db"],  # a database answers any attribute with a collection
        memory_database("db"),
    ],
)
def test_non_collections_are_rejected(not_a_collection: Any) -> None:
    with pytest.raises(TypeError, match="collection"):
        Store(not_a_collection)
    with pytest.raises(TypeError, match="collection"):
        JobCollection(not_a_collection)


async def test_pymongo_databases_and_sync_collections_are_rejected() -> None:
    from pymongo import AsyncMongoClient, MongoClient

    async_client: Any = AsyncMongoClient("mongodb://127.0.0.1:1", connect=False)
    sync_client: Any = MongoClient("mongodb://127.0.0.1:1", connect=False)
    try:
        for wrong in (async_client["db"], sync_client["db"]["queue.jobs"]):
            with pytest.raises(TypeError, match="AsyncCollection"):
                JobCollection(wrong)
        assert Store(async_client["db"]["queue.jobs"]).commands == 0
    finally:
        await async_client.close()
        sync_client.close()


# --- a JobCollection over the pymongo shape -------------------------------------------------


async def test_job_collection_over_pymongo_shape() -> None:
    fake = FakeAsyncCollection()
    clock = ManualClock(START)
    jc = JobCollection(fake, clock=clock)
    try:
        assert jc.root == "queue"
        assert jc.collection is fake
        assert await jc.start_job_server() is True
        job_id = await jc.create_job("email", {"to": "a"}).retry(2, wait=1).save()
        assert job_id is not None

        loaded = await jc.get_job(job_id, get_log=True)
        assert loaded is not None
        assert loaded.data == {"to": "a"}
        assert loaded.doc.retries == 3
        assert loaded.doc.created == START
        assert loaded.doc.log is not None and loaded.doc.log[0].message == "Constructed"

        [claimed] = await jc.get_work("email")
        assert claimed.id == job_id
        assert await claimed.done("sent") is True
        # Every command went through the clamped-date view, and each was counted.
        assert jc.commands == len(fake.calls)
        assert {c[1].datetime_conversion for c in fake.calls} == {DatetimeConversion.DATETIME_CLAMP}
        raw = fake.backing.find_one({"_id": job_id})
        assert raw["status"] == "completed"
        assert raw["result"] == {"value": "sent"}
    finally:
        await jc.close()


# --- a plain mongomock-motor collection, as a user's own tests would pass one ---------------


@pytest.fixture
def plain_mongomock(monkeypatch: pytest.MonkeyPatch) -> Any:
    """mongomock as installed, without jobcollection.testing's bulk_write shim (which other
    tests of this process applied): its bulk builder rejects pymongo's `sort` argument."""
    from mongomock.collection import BulkOperationBuilder

    for name in ("add_update", "add_replace"):
        method = getattr(BulkOperationBuilder, name)
        monkeypatch.setattr(BulkOperationBuilder, name, getattr(method, "__wrapped__", method))
    return AsyncMongoMockClient()["db"]["queue.jobs"]


async def test_every_operation_works_on_a_plain_mongomock_collection(plain_mongomock: Any) -> None:
    clock = ManualClock(START)
    jc = JobCollection(plain_mongomock, clock=clock)
    try:
        await jc.start_job_server()
        first = jc.create_job("t", {"n": 0}).retry(1, wait=0)
        await first.save()
        await jc.save_jobs([jc.create_job("t", {"n": n}).repeat(1, wait=0) for n in (1, 2)])
        await jc.create_job("d").depends([first]).save()
        a, b, c = await jc.get_work("t", max_jobs=3, work_timeout=10)
        assert await asyncio.gather(a.done(), b.done(repeat_id=True), c.fail("x")) == [
            True,
            repeat_job_id(b.id, b.doc.run_id),
            True,
        ]
        assert (await jc.run_server_pass()).errors == 0
        [again] = await jc.get_work(["t", "d"], max_jobs=1, work_timeout=10)
        clock.advance(11)
        assert (await jc.run_server_pass()).expired == 1
        [held] = await jc.get_work(["t", "d"])
        assert await jc.shutdown_job_server(timeout=0) is True
        docs = await plain_mongomock.find({}).to_list(None)
        assert "running" not in {d["status"] for d in docs}
        assert held.id != again.id
    finally:
        await jc.close()


async def test_a_cursor_the_backend_refuses_to_build_is_a_database_error() -> None:
    fake = FakeAsyncCollection()
    store = Store(fake)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("bad sort specification")

    fake.derived.find = refuse  # type: ignore[method-assign]
    with pytest.raises(DatabaseError, match="bad sort") as caught:
        await store.find({}, sort=[("a", 1)])
    assert isinstance(caught.value.__cause__, ValueError)
