"""Wake-up sources: the change-stream pipeline, ChangeStreamSource's resume/rescan/fallback
behaviour (driven by fake streams), and, on a replica set (MONGODB_URI), the real thing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import pytest
from mongomock.filtering import filter_applies
from pymongo.errors import AutoReconnect, OperationFailure

from jobcollection import (
    ChangeStreamSource,
    Job,
    JobCollection,
    WakeupSource,
    WakeupUnavailable,
)
from jobcollection.mongo.wakeup import ready_pipeline
from jobcollection.testing import memory_database

T = TypeVar("T")
BOUND = 10.0


async def within(awaitable: Awaitable[T]) -> T:
    return await asyncio.wait_for(awaitable, BOUND)


# --- the pipeline ------------------------------------------------------------------------------


def matches(change: dict[str, Any], types: list[str] | None = None) -> bool:
    [match, project] = ready_pipeline(types or ["email", "sms"])
    assert project == {"$project": {"_id": 1, "operationType": 1}}
    return bool(filter_applies(match["$match"], change))


def inserted(status: str, type: str = "email", op: str = "insert") -> dict[str, Any]:
    return {
        "_id": {"_data": "t"},
        "operationType": op,
        "fullDocument": {"type": type, "status": status},
    }


def updated(fields: dict[str, Any]) -> dict[str, Any]:
    return {
        "_id": {"_data": "t"},
        "operationType": "update",
        "updateDescription": {"updatedFields": fields, "removedFields": []},
    }


def test_the_pipeline_matches_jobs_of_the_types_that_become_ready() -> None:
    assert matches(inserted("ready"))
    assert matches(inserted("ready", "sms"))
    assert matches(inserted("ready", op="replace"))
    assert matches(updated({"status": "ready", "updated": 1}))


def test_the_pipeline_matches_jobs_that_will_fall_due() -> None:
    # a delayed job, a retry after a failure, a resumed or restarted job: the queue's claim
    # finds nothing ready and sets its wake-up for the due time
    assert matches(inserted("waiting"))
    assert matches(updated({"status": "waiting", "after": 1, "runId": None}))


def test_the_pipeline_ignores_other_changes() -> None:
    assert not matches(inserted("waiting", "push"))
    assert not matches(inserted("paused"))
    assert not matches(updated({"status": "completed", "runId": 1}))
    assert not matches(inserted("ready", "push"))
    assert not matches(updated({"status": "running", "runId": 1}))
    assert not matches(updated({"log.3": {"message": "hi"}, "updated": 1}))
    assert not matches({"_id": {"_data": "t"}, "operationType": "delete"})


# --- ChangeStreamSource with fake streams ------------------------------------------------------

HANG = "hang"
END = "end"


class FakeStream:
    """A change stream that plays a script: tokens become changes, exceptions are raised,
    END ends the stream (as an invalidate does) and HANG waits for ever."""

    def __init__(self, *script: Any) -> None:
        self.script = list(script)
        self.resume_token: dict[str, str] | None = None
        self.closed = False

    def __aiter__(self) -> FakeStream:
        return self

    async def __anext__(self) -> dict[str, Any]:
        await asyncio.sleep(0)
        item = self.script.pop(0) if self.script else HANG
        if isinstance(item, BaseException):
            raise item
        if item == END:
            raise StopAsyncIteration
        if item == HANG:
            await asyncio.Event().wait()
        self.resume_token = {"_data": item}
        return {"_id": self.resume_token, "operationType": "insert"}

    async def close(self) -> None:
        self.closed = True


class FakeCollection:
    """watch() hands out the given streams in order (or raises the given exceptions); with
    coroutine=True it behaves like pymongo's AsyncCollection, else like Motor's."""

    def __init__(self, *streams: FakeStream | BaseException, coroutine: bool = False) -> None:
        self.streams = list(streams)
        self.coroutine = coroutine
        self.resumed_after: list[Any] = []
        self.pipelines: list[Any] = []

    def watch(self, pipeline: Any, resume_after: Any = None) -> Any:
        self.pipelines.append(pipeline)
        self.resumed_after.append(resume_after)
        stream = self.streams.pop(0)
        if not self.coroutine:
            if isinstance(stream, BaseException):
                raise stream
            return stream

        async def opened() -> FakeStream:
            if isinstance(stream, BaseException):
                raise stream
            return stream

        return opened()


class Delays:
    """A sleep that records the delay instead of waiting."""

    def __init__(self) -> None:
        self.seen: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.seen.append(seconds)


async def take(signals: AsyncIterator[object], count: int) -> list[object]:
    return [await within(anext(signals)) for _ in range(count)]


def test_change_stream_source_is_a_wakeup_source() -> None:
    assert isinstance(ChangeStreamSource(FakeCollection()), WakeupSource)


@pytest.mark.parametrize("coroutine", [False, True], ids=["motor", "pymongo"])
async def test_signals_on_open_and_on_each_change_then_resumes_from_the_token(
    coroutine: bool,
) -> None:
    first = FakeStream("t1", "t2", AutoReconnect("connection reset"))
    second = FakeStream("t3")
    collection = FakeCollection(first, second, coroutine=coroutine)
    delays = Delays()
    signals = ChangeStreamSource(collection, sleep=delays).signals(["email"])
    got = await take(signals, 5)
    assert got == ["opened", "changed", "changed", "opened", "changed"]
    assert collection.resumed_after == [None, {"_data": "t2"}]
    assert collection.pipelines[0] == ready_pipeline(["email"])
    assert delays.seen == [1.0]
    assert first.closed
    await signals.aclose()  # type: ignore[attr-defined]
    assert second.closed


async def test_a_lost_history_or_an_invalidated_stream_starts_afresh() -> None:
    collection = FakeCollection(
        FakeStream("t1", OperationFailure("history lost", code=286)),
        FakeStream("t2", END),
        FakeStream(),
    )
    signals = ChangeStreamSource(collection, sleep=Delays()).signals(["email"])
    assert await take(signals, 5) == ["opened", "changed", "opened", "changed", "opened"]
    assert collection.resumed_after == [None, None, None]
    await signals.aclose()  # type: ignore[attr-defined]


async def test_streams_that_keep_ending_without_changes_are_reopened_with_backoff() -> None:
    collection = FakeCollection(FakeStream(END), FakeStream(END), FakeStream(END), FakeStream())
    delays = Delays()
    signals = ChangeStreamSource(collection, sleep=delays).signals(["email"])
    assert await take(signals, 4) == ["opened"] * 4
    assert delays.seen == [1.0, 2.0]
    await signals.aclose()  # type: ignore[attr-defined]


async def test_retry_delays_double_up_to_the_maximum_and_reset_after_a_change() -> None:
    def refused() -> AutoReconnect:
        return AutoReconnect("connection refused")

    collection = FakeCollection(
        *(refused() for _ in range(4)), FakeStream("t1", refused()), refused(), FakeStream()
    )
    delays = Delays()
    source = ChangeStreamSource(collection, retry_delay=1, max_retry_delay=4, sleep=delays)
    signals = source.signals(["email"])
    assert await take(signals, 3) == ["opened", "changed", "opened"]
    assert delays.seen == [1, 2, 4, 4, 1, 2]
    await signals.aclose()  # type: ignore[attr-defined]


async def test_after_max_failures_the_source_gives_up_with_the_error() -> None:
    collection = FakeCollection(AutoReconnect("one"), AutoReconnect("two"), FakeStream())
    source = ChangeStreamSource(collection, max_failures=2, sleep=Delays())
    with pytest.raises(AutoReconnect, match="two"):
        await take(source.signals(["email"]), 1)


@pytest.mark.parametrize(
    "collection",
    [
        FakeCollection(FakeStream(OperationFailure("only on replica sets", code=40573))),
        FakeCollection(OperationFailure("only on replica sets", code=40573), coroutine=True),
        FakeCollection(OperationFailure("not authorized", code=13), coroutine=True),
        FakeCollection(NotImplementedError("no change streams")),
        object(),
    ],
    ids=["motor-standalone", "pymongo-standalone", "unauthorized", "not-implemented", "no-watch"],
)
async def test_where_change_streams_cannot_work_the_source_says_so(collection: Any) -> None:
    with pytest.raises(WakeupUnavailable):
        await take(ChangeStreamSource(collection, sleep=Delays()).signals(["email"]), 2)


async def test_the_in_memory_backend_has_no_change_streams() -> None:
    source = ChangeStreamSource(memory_database("wakeup")["queue.jobs"])
    with pytest.raises(WakeupUnavailable, match="this backend has no change streams"):
        await take(source.signals(["email"]), 1)


# --- on a replica set (MONGODB_URI) ------------------------------------------------------------


async def open_or_skip(signals: AsyncIterator[object]) -> None:
    try:
        assert await within(anext(signals)) == "opened"
    except WakeupUnavailable as exc:
        await signals.aclose()  # type: ignore[attr-defined]
        pytest.skip(f"needs a MongoDB replica set: {exc}")


async def test_a_real_change_stream_signals_jobs_that_become_ready(database: Any) -> None:
    collection = database["queue.jobs"]
    signals = ChangeStreamSource(collection).signals(["email"])
    await open_or_skip(signals)
    try:
        await collection.insert_one({"type": "email", "status": "waiting"})
        await collection.update_one({"type": "email"}, {"$set": {"status": "ready"}})
        assert await within(anext(signals)) == "changed"
        await collection.insert_one({"type": "email", "status": "ready"})
        assert await within(anext(signals)) == "changed"
    finally:
        await signals.aclose()  # type: ignore[attr-defined]


async def test_on_a_replica_set_a_queue_starts_new_jobs_without_polling(
    jc: JobCollection, database: Any
) -> None:
    probe = ChangeStreamSource(jc.collection).signals(["email"])
    await open_or_skip(probe)
    await probe.aclose()  # type: ignore[attr-defined]
    started = asyncio.Event()

    async def worker(job: Job) -> None:
        started.set()

    queue = jc.process_jobs("email", worker, poll_interval=None)
    try:
        await within(queue.settle())
        await jc.create_job("email", {"to": "ada@example.com"}).save()
        await within(started.wait())
        await within(queue.drain())
    finally:
        await within(queue.shutdown(quiet=True))
    assert await jc.collection.count_documents({"status": "completed"}) == 1
