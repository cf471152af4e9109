"""Hostile ids and arguments are refused before any query, and stored data stays unchanged.

Every case asserts three things: the error is an InvalidArgument (or InvalidDocument for whole
documents) naming the argument, `jc.commands` did not move, and the stored documents are
exactly as they were.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from bson import ObjectId

from jobcollection import (
    InvalidArgument,
    InvalidArgumentType,
    InvalidDocument,
    Job,
    JobCollection,
    JobCollectionError,
)

NAIVE = datetime(2026, 1, 2, 12, 0)


class Seeded:
    """A collection holding a ready, a paused and a running job, and a way to check that
    nothing was read or written since."""

    def __init__(self, jc: JobCollection, ready: Job, paused: Job, running: Job) -> None:
        self.jc = jc
        self.ready = ready
        self.paused = paused
        self.running = running
        self.snapshot: list[dict[str, Any]] = []
        self.commands = 0

    async def mark(self) -> None:
        self.snapshot = await self._all()
        self.commands = self.jc.commands

    async def _all(self) -> list[dict[str, Any]]:
        docs: list[dict[str, Any]] = await self.jc.collection.find({}).sort("_id", 1).to_list(None)
        return docs

    async def assert_untouched(self) -> None:
        assert self.jc.commands == self.commands, "a command reached the database"
        assert await self._all() == self.snapshot, "stored data changed"


@pytest.fixture
async def seeded(jc: JobCollection) -> AsyncIterator[Seeded]:
    running = jc.create_job("work", {"n": 1})
    await running.save()
    [claimed] = await jc.get_work("work")
    ready = jc.create_job("work", {"n": 2})
    await ready.save()
    paused = jc.create_job("other", {"n": 3})
    await paused.pause()
    await paused.save()
    state = Seeded(jc, ready, paused, claimed)
    await state.mark()
    yield state


async def _refused(
    seeded: Seeded,
    call: Awaitable[Any] | Callable[[], Any],
    name: str | None,
    error: type[Exception] = InvalidArgument,
) -> None:
    with pytest.raises(error) as caught:
        await call if isinstance(call, Awaitable) else call()
    if name is not None:
        assert name in str(caught.value)
    await seeded.assert_untouched()


# --- hostile ids ------------------------------------------------------------------------------

HOSTILE_IDS: list[Any] = [
    {"$ne": None},
    {"$where": "sleep(1000) || true"},
    {"$gt": ""},
    {},
    [{"$ne": None}],
    [ObjectId(), {"$in": [1]}],
    [[ObjectId()]],
    "",
    [""],
    123,
    True,
    1.5,
    b"\x00" * 12,
    (i for i in ()),
]

ID_APIS: dict[str, Callable[[JobCollection, Any], Awaitable[Any]]] = {
    "get_job": lambda jc, ids: jc.get_job(ids),
    "get_jobs": lambda jc, ids: jc.get_jobs(ids),
    "cancel_jobs": lambda jc, ids: jc.cancel_jobs(ids),
    "pause_jobs": lambda jc, ids: jc.pause_jobs(ids),
    "resume_jobs": lambda jc, ids: jc.resume_jobs(ids),
    "remove_jobs": lambda jc, ids: jc.remove_jobs(ids),
    "restart_jobs": lambda jc, ids: jc.restart_jobs(ids),
    "ready_jobs": lambda jc, ids: jc.ready_jobs(ids),
}


def _id_label(value: Any) -> str:
    return repr(value)[:30]


@pytest.mark.parametrize("api", list(ID_APIS))
@pytest.mark.parametrize("ids", HOSTILE_IDS, ids=_id_label)
async def test_hostile_ids_are_refused_before_any_query(seeded: Seeded, api: str, ids: Any) -> None:
    if api == "get_job" and isinstance(ids, list):
        ids = ids[-1]  # get_job takes one id; a list is itself refused below
    await _refused(seeded, ID_APIS[api](seeded.jc, ids), None)


@pytest.mark.parametrize("api", [a for a in ID_APIS if a != "ready_jobs"])
async def test_none_is_not_an_id(seeded: Seeded, api: str) -> None:
    await _refused(seeded, ID_APIS[api](seeded.jc, None), "id")


async def test_get_job_refuses_a_list(seeded: Seeded) -> None:
    await _refused(seeded, seeded.jc.get_job([seeded.ready.id]), "id", InvalidArgumentType)


async def test_the_error_names_the_bad_element(seeded: Seeded) -> None:
    ok = seeded.ready.id
    with pytest.raises(InvalidArgumentType, match=r"ids\[2\]"):
        await seeded.jc.cancel_jobs([ok, ok, {"$ne": None}])
    await seeded.assert_untouched()


@pytest.mark.parametrize(
    ("method", "params", "name"),
    [
        ("jobDone", ({"$ne": None}, ObjectId(), {}), "id"),
        ("jobDone", (ObjectId(), {"$ne": None}, {}), "runId"),
        ("jobFail", ({"$ne": None}, ObjectId(), {}), "id"),
        ("jobFail", (ObjectId(), {"$exists": True}, {}), "runId"),
        ("jobLog", ({"$ne": None}, None, "message"), "id"),
        ("jobLog", (ObjectId(), {"$ne": None}, "message"), "runId"),
        ("jobProgress", ({"$ne": None}, ObjectId(), 1, 2), "id"),
        ("jobProgress", (ObjectId(), {"$ne": None}, 1, 2), "runId"),
        ("jobRerun", ({"$ne": None},), "id"),
        ("getJob", ({"$ne": None},), "ids"),
        ("getJob", ([{"$ne": None}],), "ids[0]"),
        ("jobRemove", ({"$ne": None},), "ids"),
        ("jobPause", ([{"$ne": None}],), "ids[0]"),
        ("jobResume", ({"$where": "1"},), "ids"),
        ("jobCancel", ({"$ne": None},), "ids"),
        ("jobRestart", ({"$ne": None},), "ids"),
        ("jobReady", ({"$ne": None},), "ids"),
        ("getWork", ({"$ne": None},), "type"),
        ("getWork", (["work", {"$ne": None}],), "type[1]"),
    ],
)
async def test_method_layer_refuses_hostile_ids(
    seeded: Seeded, method: str, params: tuple[Any, ...], name: str
) -> None:
    await _refused(seeded, seeded.jc.call(method, *params), name)


@pytest.mark.parametrize(
    "doc",
    [
        {"_id": {"$ne": None}, "type": "t", "data": {}},
        {"type": "t", "data": {}, "depends": [{"$ne": None}]},
        {"type": "t", "data": {}, "runId": {"$gt": ""}},
        {"type": {"$ne": None}, "data": {}},
    ],
)
async def test_documents_with_hostile_ids_are_refused(seeded: Seeded, doc: dict[str, Any]) -> None:
    await _refused(seeded, lambda: seeded.jc.make_job(doc), None, InvalidDocument)
    await _refused(seeded, seeded.jc.call("jobSave", doc), None, InvalidDocument)


async def test_running_jobs_handle_cannot_be_redirected(seeded: Seeded) -> None:
    # A stored runId is re-validated whenever the handle's document is assigned.
    with pytest.raises(ValueError):
        seeded.running.doc.run_id = {"$ne": None}  # type: ignore[assignment]
    assert isinstance(seeded.running.doc.run_id, ObjectId)
    await seeded.assert_untouched()


# --- hostile data -------------------------------------------------------------------------------


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def _nested_list(depth: int) -> list[Any]:
    value: list[Any] = [1]
    for _ in range(depth - 1):
        value = [value]
    return value


BAD_DATA: list[Any] = [
    {"$set": {"status": "ready"}},
    {"a.b": 1},
    {"ok": {"$inc": 1}},
    {"ok": [{"$where": "1"}]},
    {"nul\x00key": 1},
    {1: "non-string key"},
    {"x": float("nan")},
    {"x": float("inf")},
    {"x": [1.0, float("-inf")]},
    {"x": 2**64},
    {"x": -(2**63) - 1},
    {"x": NAIVE},
    {"x": [NAIVE]},
    _nested(150),
    {"deep": _nested_list(150)},
]


def _data_label(value: Any) -> str:
    return repr(value)[:25]


@pytest.mark.parametrize("data", BAD_DATA, ids=_data_label)
async def test_bad_job_data_is_refused(seeded: Seeded, data: Any) -> None:
    jc = seeded.jc
    await _refused(seeded, lambda: jc.create_job("t", data), "data")
    await _refused(seeded, lambda: Job(jc, "t", data), "data")
    await _refused(
        seeded, lambda: jc.make_job({"type": "t", "data": data}), "data", InvalidDocument
    )
    raw_doc = {"type": "t", "data": data}
    await _refused(seeded, jc.call("jobSave", raw_doc), "data", InvalidDocument)


@pytest.mark.parametrize("data", BAD_DATA, ids=_data_label)
async def test_bad_results_errors_and_log_data_are_refused(seeded: Seeded, data: Any) -> None:
    job = seeded.running
    await _refused(seeded, job.log("m", data=data), "data")
    await _refused(seeded, job.done(data), "result")
    await _refused(seeded, job.fail(data), "error")
    run_id = job.doc.run_id
    await _refused(seeded, seeded.jc.call("jobLog", job.id, run_id, "m", {"data": data}), "data")
    await _refused(seeded, seeded.jc.call("jobDone", job.id, run_id, data), "result")
    await _refused(seeded, seeded.jc.call("jobFail", job.id, run_id, data), "error")


async def test_moderately_nested_data_is_accepted(jc: JobCollection) -> None:
    data = {"tree": _nested(50), "list": _nested_list(50)}
    job_id = await jc.create_job("t", data).save()
    stored = await jc.collection.find_one({"_id": job_id})
    assert stored["data"] == data


# --- bools, floats and other wrong types where integers are expected ------------------------


async def test_bools_are_not_integers(seeded: Seeded) -> None:
    jc = seeded.jc
    job = jc.create_job("t")
    await _refused(seeded, lambda: job.retry(True), "retries", InvalidArgumentType)
    await _refused(seeded, lambda: job.repeat(True), "repeats", InvalidArgumentType)
    await _refused(seeded, lambda: job.priority(True), "level", InvalidArgumentType)
    await _refused(seeded, lambda: job.delay(True), "seconds", InvalidArgumentType)
    await _refused(seeded, jc.get_work("work", max_jobs=True), "max_jobs", InvalidArgumentType)
    await _refused(seeded, jc.get_work("work", work_timeout=True), "work_timeout")
    await _refused(seeded, jc.call("getWork", "work", {"maxJobs": True}), "maxJobs")
    await _refused(seeded, jc.restart_jobs([seeded.ready.id], retries=True), "retries")
    await _refused(seeded, seeded.running.progress(True, 2), "completed")
    run = seeded.running
    await _refused(seeded, jc.call("jobProgress", run.id, run.doc.run_id, 1, True), "total")
    await _refused(seeded, jc.call("jobRerun", run.id, {"repeats": False}), "repeats")
    await _refused(seeded, jc.call("jobRerun", run.id, {"wait": True}), "wait")
    await _refused(
        seeded, jc.call("jobDone", run.id, run.doc.run_id, {}, {"delayDeps": True}), None
    )
    await _refused(seeded, jc.call("shutdownJobServer", {"timeout": True}), "timeout")
    assert job.doc.retries == 1 and job.doc.repeats == 0 and job.doc.priority == 0


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda jc: jc.get_work("work", max_jobs=0), "max_jobs"),
        (lambda jc: jc.get_work("work", max_jobs=-1), "max_jobs"),
        (lambda jc: jc.get_work("work", max_jobs=1.5), "max_jobs"),
        (lambda jc: jc.get_work("work", max_jobs="2"), "max_jobs"),
        (lambda jc: jc.get_work("work", work_timeout=0), "work_timeout"),
        (lambda jc: jc.get_work("work", work_timeout=-1), "work_timeout"),
        (lambda jc: jc.get_work("work", work_timeout=float("nan")), "work_timeout"),
        (lambda jc: jc.get_work("", max_jobs=1), "type"),
        (lambda jc: jc.get_work([], max_jobs=1), "type"),
        (lambda jc: jc.get_work(None), "type"),
        (lambda jc: jc.get_work(["work", ""]), "type[1]"),
        (lambda jc: jc.get_job(ObjectId(), get_log=1), "get_log"),
        (lambda jc: jc.get_jobs([ObjectId()], get_failures="yes"), "get_failures"),
        (lambda jc: jc.cancel_jobs([ObjectId()], antecedents=1), "antecedents"),
        (lambda jc: jc.cancel_jobs([ObjectId()], dependents=None), "dependents"),
        (lambda jc: jc.restart_jobs([ObjectId()], retries=-1), "retries"),
        (lambda jc: jc.restart_jobs([ObjectId()], retries=1.5), "retries"),
        (lambda jc: jc.ready_jobs(force="yes"), "force"),
        (lambda jc: jc.ready_jobs(time=1), "time"),
        (lambda jc: jc.call("getWork", "work", {"maxJobs": 1, "$where": "1"}), "options"),
        (lambda jc: jc.call("getWork", "work", ["maxJobs"]), "options"),
        (lambda jc: jc.call("jobCancel", ObjectId(), {"antecedent": True}), "options"),
        (lambda jc: jc.call("getJob"), "getJob"),
        (lambda jc: jc.call("jobDone", ObjectId()), "jobDone"),
        (lambda jc: jc.call("noSuchMethod", ObjectId()), "method"),
        (lambda jc: jc.call("jobLog", ObjectId(), None, 5), "message"),
        (lambda jc: jc.call("jobLog", ObjectId(), None, "m", {"level": "loud"}), "level"),
        (lambda jc: jc.call("jobProgress", ObjectId(), ObjectId(), 3, 2), "completed"),
        (lambda jc: jc.call("jobProgress", ObjectId(), ObjectId(), 0, 0), "total"),
        (lambda jc: jc.call("jobFail", ObjectId(), ObjectId(), {}, {"fatal": "yes"}), "fatal"),
    ],
)
async def test_bad_arguments_are_refused(
    seeded: Seeded, make: Callable[[JobCollection], Awaitable[Any]], name: str
) -> None:
    await _refused(seeded, make(seeded.jc), name)


# --- naive datetimes ----------------------------------------------------------------------------


async def test_naive_datetimes_are_refused(seeded: Seeded) -> None:
    jc = seeded.jc
    job = jc.create_job("t")
    await _refused(seeded, lambda: job.after(NAIVE), "when")
    await _refused(seeded, lambda: job.retry(1, until=NAIVE), "until")
    await _refused(seeded, lambda: job.repeat(1, until=NAIVE), "until")
    await _refused(seeded, jc.ready_jobs(time=NAIVE), "time")
    await _refused(seeded, jc.ready_jobs([seeded.ready.id], time=NAIVE), "time")
    await _refused(seeded, jc.restart_jobs([seeded.ready.id], until=NAIVE), "until")
    await _refused(seeded, seeded.ready.ready(time=NAIVE), "time")
    await _refused(seeded, seeded.ready.restart(until=NAIVE), "until")
    await _refused(seeded, seeded.ready.rerun(until=NAIVE), "until")
    await _refused(seeded, jc.call("jobRestart", seeded.ready.id, {"until": NAIVE}), "until")
    doc = {"type": "t", "data": {}, "after": NAIVE}
    await _refused(seeded, jc.call("jobSave", doc), "after", InvalidDocument)
    assert job.doc.after == datetime(1970, 1, 1, tzinfo=UTC)


async def test_all_refusals_share_the_root(seeded: Seeded) -> None:
    for call in (
        seeded.jc.get_job({"$ne": None}),
        seeded.jc.call("jobSave", {"type": "t", "data": {"$x": 1}}),
    ):
        with pytest.raises(JobCollectionError) as caught:
            await call
        assert isinstance(caught.value, ValueError)
    await seeded.assert_untouched()


@pytest.mark.parametrize(
    ("mutate", "argument"),
    [
        (lambda job: job.data.update({"$bad": 1}), "data"),
        (lambda job: job.data.update({"n": float("nan")}), "data"),
        (lambda job: job.doc.depends.append({"$ne": None}), "depends[0]"),
    ],
)
async def test_job_changed_in_place_after_building_is_checked_again_at_save(
    jc: JobCollection, mutate: Any, argument: str
) -> None:
    job = jc.create_job("mutated", {"n": 1})
    mutate(job)
    for save in (job.save, lambda: jc.save_jobs([job])):
        with pytest.raises(InvalidArgument, match=re.escape(argument)):
            await save()
    assert await jc.collection.count_documents({}) == 0
