"""Hostile input: every method of the method layer and every public method, fed values an
attacker or a buggy client would send.

Operator dicts where ids, types or options belong (`{"$ne": None}`, `{"$where": ...}`), keys
with `$` or `.` in data, NaN and infinities, bools where integers belong, integers beyond 64
bits, naive datetimes, nesting beyond 100 levels, documents over the size limits, huge log
messages. Each must be refused with a clear JobCollectionError (InvalidArgument or
InvalidDocument naming what is wrong) before any query runs, and the stored data must stay
exactly as it was. Strings that merely look like operators ("$where") are plain ids: they
match nothing and change nothing.

The tables below are exhaustive over (method, parameter, hostile value); a Hypothesis test
adds random nested values in every parameter of every method.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import START
from helpers import WORKER
from jobcollection import (
    METHODS,
    DatabaseError,
    InvalidArgument,
    InvalidDocument,
    Job,
    JobCollection,
    JobCollectionError,
    Limits,
    ManualClock,
)
from strict import memory_database

NAIVE = datetime(2026, 1, 1, 12, 0)
AWARE = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
LIMITS = Limits(
    max_log_entries=20,
    max_failures=5,
    max_message_length=200,
    max_data_bytes=4096,
    max_error_bytes=1024,
    max_log_data_bytes=512,
    max_checkpoint_bytes=512,
    max_jobs=50,
    max_depends=10,
)


def deep(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(levels):
        value = {"n": value}
    return value


OPERATORS: list[Any] = [
    {"$ne": None},
    {"$where": "sleep(1000) || true"},
    {"$gt": ""},
    {"$exists": True},
    {"$regex": ".*"},
    {"$in": [None, ""]},
]
NOT_BOOL: list[Any] = [1, 0, "true", 1.0, None, [True], *OPERATORS]
NOT_INT: list[Any] = [
    True,
    False,
    1.5,
    math.nan,
    math.inf,
    -math.inf,
    "1",
    [1],
    2**64,
    -(2**64),
    2**1100,
    NAIVE,
    *OPERATORS,
]
NOT_COUNT: list[Any] = [-1, True, 1.5, math.nan, math.inf, "1", [1], *OPERATORS]
NOT_NUMBER: list[Any] = [True, math.nan, math.inf, -math.inf, "1", None, 2**1100, *OPERATORS]
NOT_DATE: list[Any] = [NAIVE, "2026-01-01T00:00:00Z", 0, 1.5, True, date(2026, 1, 1), *OPERATORS]
NOT_ID: list[Any] = [
    True,
    0,
    2**64,
    math.nan,
    b"id",
    NAIVE,
    "",
    {},
    object(),
    [{"$ne": None}],
    [[]],
    *OPERATORS,
]
NOT_ONE_ID: list[Any] = [*NOT_ID, ["a"], (ObjectId(),)]
NOT_TYPES: list[Any] = [True, 0, "", [], [""], [True], [{"$ne": None}], b"t", None, *OPERATORS]
NOT_DATA: list[Any] = [
    *OPERATORS,
    {"a.b": 1},
    {"x": {"$ne": None}},
    {"x": [{"$where": "1"}]},
    deep(101),
    {"x": math.nan},
    {"x": math.inf},
    {"x": 2**64},
    {"x": NAIVE},
    {1: "x"},
    {"x": object()},
    {"x\x00y": 1},
    "not a dict",
    5,
    [1],
]
NOT_VALUE: list[Any] = [  # done/fail wrap a non-dict as {"value": ...}
    *OPERATORS,
    {"a.b": 1},
    deep(101),
    math.nan,
    math.inf,
    2**64,
    NAIVE,
    {1: "x"},
    object(),
    {1, 2},
]
NOT_STATE: list[Any] = [  # a checkpoint's state: a JSON value, storable as given, bounded
    *[x for x in NOT_DATA if not isinstance(x, str | int | list)],
    math.nan,
    2**64,
    AWARE,
    ObjectId(),
    b"bytes",
    {"at": AWARE},
    [{"id": ObjectId()}],
    {1, 2},
    "y" * LIMITS.max_checkpoint_bytes,
]
NOT_MESSAGE: list[Any] = [None, 1, b"x", True, "x" * (LIMITS.max_message_length + 1), *OPERATORS]
NOT_LEVEL: list[Any] = ["fatal", "", 1, None, "INFO", *OPERATORS]
NOT_OPTIONS: list[Any] = ["x", [1], 5, {"$where": "1"}, {"unknownOption": 1}]
NOT_SCHEDULE_ID: list[Any] = ["", 5, True, "x" * 201, "a\x00b", ["s"], b"s", *OPERATORS]
STRING_IDS: list[Any] = ["$where", "{'$ne': null}", "a.b", "$", "x\x00", "' || 1 == 1"]


# --- the world the calls run against --------------------------------------------------------


@dataclass
class World:
    jc: JobCollection
    ready: Any
    waiting: Any
    paused: Any
    running: Any
    run_id: Any
    completed: Any
    failed: Any

    async def snapshot(self) -> list[dict[str, Any]]:
        docs = await self.jc.collection.find({}).sort([("_id", 1)]).to_list(None)
        return [dict(d) for d in docs]


async def build_world(database: Any, clock: ManualClock) -> World:
    jc = JobCollection.from_database(database, "queue", clock=clock, limits=LIMITS)
    await jc.start_job_server()
    completed = await jc.create_job("done").save()
    [job] = await jc.get_work("done")
    await job.done()
    failed = await jc.create_job("fail").save()
    [job] = await jc.get_work("fail")
    await job.fail("x", fatal=True)
    running = await jc.create_job("t", {"k": "running"}).save()
    [held] = await jc.get_work("t", work_timeout=60)
    paused = jc.create_job("t", {"k": "paused"})
    await paused.pause()
    await jc.schedules.upsert("s", every=60, type="t")
    return World(
        jc=jc,
        ready=await jc.create_job("t", {"k": "ready"}).save(),
        waiting=await jc.create_job("t", {"k": "waiting"}).delay(3600).save(),
        paused=await paused.save(),
        running=running,
        run_id=held.doc.run_id,
        completed=completed,
        failed=failed,
    )


def new_doc(jc: JobCollection) -> dict[str, Any]:
    return jc.create_job("t", {"k": "new"}).doc.to_mongo()


# Slots: ("arg", i) the i-th parameter; ("opt", i, key) a key of the options dict at i;
# ("doc", field) a field of the job document given to jobSave.
Slot = tuple[Any, ...]


def not_checkpoints(w: World) -> list[Any]:
    """Hostile `checkpoints` of jobHeartbeat and jobRelease: [id, state] pairs, each id one
    of the call's, each state a JSON value."""
    return [
        True,
        "x",
        {},
        {"$ne": None},
        [w.running],
        [[w.running]],
        [[w.running, 1, 2]],
        [[w.running, None]],
        [[w.ready, 1]],
        [["no-such-job", 1]],
        [[w.running, 1], [w.running, 2]],
        *[[[bad, 1]] for bad in NOT_ID],
        *[[[w.running, bad]] for bad in NOT_STATE],
    ]


def method_cases(w: World) -> dict[str, tuple[tuple[Any, ...], dict[Slot, list[Any]]]]:
    """For each method: valid parameters, and hostile values for each of its parameters."""
    doc = new_doc(w.jc)
    return {
        "startJobServer": ((), {("arg", 0): NOT_OPTIONS}),
        "startJobs": ((), {("arg", 0): NOT_OPTIONS}),
        "shutdownJobServer": (
            ({"timeout": 0},),
            {("opt", 0, "timeout"): [*NOT_INT, -1], ("arg", 0): NOT_OPTIONS},
        ),
        "stopJobs": (({"timeout": 0},), {("opt", 0, "timeout"): [*NOT_INT, -1]}),
        "jobSave": (
            (doc, {"cancelRepeats": False}),
            {
                ("arg", 0): [*OPERATORS, "x", [], 5, None, [doc]],
                ("doc", "_id"): NOT_ID,
                ("doc", "type"): [t for t in NOT_TYPES if not isinstance(t, list)],
                ("doc", "data"): [*NOT_DATA, {"big": "x" * LIMITS.max_data_bytes}],
                ("doc", "status"): ["running", "completed", "", 1, *OPERATORS],
                ("doc", "priority"): NOT_INT,
                ("doc", "retries"): [*NOT_COUNT, 2**64],
                ("doc", "repeats"): [*NOT_COUNT, 2**64],
                ("doc", "retryWait"): [*NOT_INT, -1],
                ("doc", "repeatWait"): [-1, True, 2**64, {"schedules": [{"$where": "1"}]}],
                ("doc", "workTimeout"): [0, True, 2**64, *OPERATORS],
                ("doc", "after"): NOT_DATE,
                ("doc", "retryUntil"): NOT_DATE,
                ("doc", "depends"): [[{"$ne": None}], {"$ne": None}, [True], ["x"] * 11],
                ("doc", "log"): [
                    [{"$where": "1"}],
                    "x",
                    [{"time": NAIVE, "message": "m"}],
                    [{"time": AWARE, "message": "x" * (LIMITS.max_message_length + 1)}],
                    [{"time": AWARE, "message": "m", "data": {"$ne": None}}],
                    [{"time": AWARE, "message": "m", "data": {"x": "y" * 600}}],
                ],
                ("doc", "progress"): [{"$gt": 0}, {"completed": math.nan, "total": 1}],
                ("doc", "failures"): [[{"$where": "1"}], [{"x": "y" * 2000}], {"$ne": None}],
                ("doc", "_private"): [{"$where": "1"}, {"a.b": 1}, {"x": 2**64}],
                ("doc", "result"): NOT_DATA[:12],
                ("doc", "$where"): ["1"],
                ("doc", "status.x"): ["1"],
                ("opt", 1, "cancelRepeats"): NOT_BOOL,
                ("arg", 1): NOT_OPTIONS,
            },
        ),
        "jobSaveMany": (
            ([doc],),
            {
                ("arg", 0): [*OPERATORS, "x", [{"$ne": None}], [{**doc, "data": {"$ne": 1}}]],
                ("opt", 1, "cancelRepeats"): NOT_BOOL,
            },
        ),
        "getWork": (
            ("t", {"maxJobs": 5}),
            {
                ("arg", 0): NOT_TYPES,
                ("opt", 1, "maxJobs"): [*NOT_INT, 0, -1],
                ("opt", 1, "workTimeout"): [x for x in NOT_INT if x is not None] + [0],
                ("opt", 1, "worker"): [
                    "q",
                    1,
                    [],
                    {"user": "admin"},  # the server's to say, never the worker's
                    {"remote": False},
                    {"$where": "1"},
                    {"id": "not an id!"},
                    {"id": "x" * 65},
                    {"host": 5},
                    {"host": "h" * 257},
                    {"pid": -1},
                    {"pid": "1"},
                    {"pid": True},
                ],
                ("arg", 1): NOT_OPTIONS,
            },
        ),
        "getJob": (
            (w.ready, {}),
            {
                ("arg", 0): NOT_ID,
                ("opt", 1, "getLog"): NOT_BOOL,
                ("opt", 1, "getFailures"): NOT_BOOL,
            },
        ),
        "jobRemove": ((w.completed,), {("arg", 0): [*NOT_ID, None], ("arg", 1): NOT_OPTIONS}),
        "jobPause": ((w.ready,), {("arg", 0): [*NOT_ID, None]}),
        "jobResume": ((w.paused,), {("arg", 0): [*NOT_ID, None]}),
        "jobReady": (
            ([w.waiting], {"force": True, "time": AWARE.replace(year=2030)}),
            {
                ("arg", 0): [x for x in NOT_ID if x != []],
                ("opt", 1, "time"): NOT_DATE,
                ("opt", 1, "force"): NOT_BOOL,
            },
        ),
        "jobCancel": (
            (w.ready, {}),
            {
                ("arg", 0): [*NOT_ID, None],
                ("opt", 1, "antecedents"): NOT_BOOL,
                ("opt", 1, "dependents"): NOT_BOOL,
            },
        ),
        "jobRestart": (
            (w.failed, {"retries": 1}),
            {
                ("arg", 0): [*NOT_ID, None],
                ("opt", 1, "retries"): NOT_COUNT,
                ("opt", 1, "until"): NOT_DATE,
                ("opt", 1, "antecedents"): NOT_BOOL,
            },
        ),
        "jobRerun": (
            (w.completed, {}),
            {
                ("arg", 0): [*NOT_ONE_ID, None],
                ("opt", 1, "repeats"): NOT_COUNT,
                ("opt", 1, "until"): NOT_DATE,
                ("opt", 1, "wait"): [*NOT_INT, -1],
            },
        ),
        "jobLog": (
            (w.ready, None, "hello", {"level": "info", "data": {"k": 1}}),
            {
                ("arg", 0): [*NOT_ONE_ID, None],
                ("arg", 1): NOT_ONE_ID,
                ("arg", 2): NOT_MESSAGE,
                ("opt", 3, "level"): NOT_LEVEL,
                ("opt", 3, "data"): [*NOT_DATA, {"x": "y" * LIMITS.max_log_data_bytes}],
            },
        ),
        "jobProgress": (
            (w.running, w.run_id, 1, 2),
            {
                ("arg", 0): NOT_ONE_ID,
                ("arg", 1): [*NOT_ONE_ID, None],
                ("arg", 2): [*NOT_NUMBER, -1, 3],
                ("arg", 3): [*NOT_NUMBER, 0, -1],
            },
        ),
        "jobDone": (
            (w.running, w.run_id, {"ok": 1}, {}),
            {
                ("arg", 0): NOT_ONE_ID,
                ("arg", 1): [*NOT_ONE_ID, None],
                ("arg", 2): [*NOT_VALUE, {"x": "y" * LIMITS.max_data_bytes}],
                ("opt", 3, "repeatId"): NOT_BOOL,
                ("opt", 3, "delayDeps"): [*NOT_INT, -1],
            },
        ),
        "jobFail": (
            (w.running, w.run_id, {"err": 1}, {}),
            {
                ("arg", 0): NOT_ONE_ID,
                ("arg", 1): [*NOT_ONE_ID, None],
                ("arg", 2): [*NOT_VALUE, {"x": "y" * LIMITS.max_error_bytes}],
                ("opt", 3, "fatal"): NOT_BOOL,
                ("opt", 3, "retryIn"): [*NOT_INT, -1, 2**53 + 1],
                ("opt", 3, "snooze"): [*NOT_INT, -1, 2**53 + 1],
                ("opt", 3, "cancel"): NOT_BOOL,
                ("opt", 3, "checkpoint"): NOT_STATE,
            },
        ),
        "jobHeartbeat": (
            (w.running, w.run_id, {"checkpoints": [[w.running, {"position": 1}]]}),
            {
                ("arg", 0): NOT_ID,
                ("arg", 1): [*NOT_ONE_ID, None],
                ("arg", 2): NOT_OPTIONS,
                ("opt", 2, "checkpoints"): not_checkpoints(w),
            },
        ),
        "jobRelease": (
            (w.running, w.run_id, {"checkpoints": [[w.running, {"position": 1}]]}),
            {
                ("arg", 0): NOT_ID,
                ("arg", 1): [*NOT_ONE_ID, None],
                ("arg", 2): NOT_OPTIONS,
                ("opt", 2, "checkpoints"): not_checkpoints(w),
            },
        ),
        "jobReadyDue": (("t",), {("arg", 0): NOT_TYPES, ("arg", 1): NOT_OPTIONS}),
        "jobCancelPending": (
            ("t", 0),
            {
                ("arg", 0): [t for t in NOT_TYPES if not isinstance(t, list)],
                ("arg", 1): [None, True, 2**64, 1.5, "", [], *OPERATORS],
                ("arg", 2): NOT_OPTIONS,
            },
        ),
        "jobFind": (
            ({"type": "t", "status": ["ready"], "data": {"k": "new"}}, {"limit": 10}),
            {
                ("arg", 0): NOT_OPTIONS,
                ("opt", 0, "type"): [t for t in NOT_TYPES if t is not None],
                ("opt", 0, "status"): ["nope", [], ["ready"] * 8, 1, {"ready": 1}, *OPERATORS],
                ("opt", 0, "userId"): [True, "", 2**64, 1.5, [], *OPERATORS],
                ("opt", 0, "createdBefore"): NOT_DATE,
                ("opt", 0, "data"): [
                    *[{path: 1} for path in ("$where", "a.$gt", "a..b", "", ".a", "a\x00")],
                    *[{"x": value} for value in NOT_DATA if isinstance(value, dict)],
                    {f"k{i}": 1 for i in range(101)},
                    "x",
                    [["x", 1]],
                ],
                ("opt", 1, "limit"): [*NOT_INT, 0, -1, 1_001, None],
                ("opt", 1, "after"): ["", "x", "s", "o" + "z" * 24, "o123", 5, [], *OPERATORS],
                ("arg", 1): NOT_OPTIONS,
            },
        ),
        "jobStats": ((), {("arg", 0): NOT_OPTIONS}),
        "jobPauseTypes": ((["t"],), {("arg", 0): [t for t in NOT_TYPES if t is not None]}),
        "jobResumeTypes": ((["t"],), {("arg", 0): [t for t in NOT_TYPES if t is not None]}),
        "jobPausedTypes": ((), {("arg", 0): NOT_OPTIONS}),
        "jobWorkerSeen": (
            (WORKER,),
            {
                ("arg", 0): [*OPERATORS, "x", [], 5, None, {**WORKER, "$set": 1}],
                ("doc", "id"): ["", "a b", "x" * 65, 5, None, {"$ne": None}],
                ("doc", "host"): [5, None, "h" * 257, {"$ne": None}],
                ("doc", "pid"): [-1, True, "1", 2**40],
                ("doc", "types"): [
                    *(t for t in NOT_TYPES if t is not None),
                    [f"t{n}" for n in range(101)],
                ],
                ("doc", "concurrency"): [0, True, "1", 2**40],
                ("doc", "held"): [[{"$ne": None}], ["x"] * 101, "x", 5],
            },
        ),
        "jobWorkerGone": (("w1",), {("arg", 0): ["", "a b", "x" * 65, 5, None, {"$ne": 1}]}),
        "jobWorkers": ((), {("arg", 0): NOT_OPTIONS}),
        "jobSetConcurrencyLimit": (
            ("t", {"maxRunning": 2, "groupBy": "data.customer"}),
            {
                ("arg", 0): [*NOT_TYPES, ["t"], "t" * 1_025],
                ("arg", 1): [*OPERATORS, "x", [], 5, True, {"maxRunning": 1, "$set": 1}],
                ("opt", 1, "maxRunning"): [*NOT_INT, 0, -1, 10**7, None],
                ("opt", 1, "groupBy"): [
                    "",
                    "data",
                    "data.",
                    "data.$where",
                    "x.y",
                    5,
                    [],
                    *OPERATORS,
                ],
            },
        ),
        "jobConcurrencyLimits": ((), {("arg", 0): NOT_OPTIONS}),
        "jobAddDepends": (
            ([w.paused], [w.ready]),
            {
                ("arg", 0): NOT_ID,
                ("arg", 1): [*NOT_ID, [w.paused], ["no-such-job"]],
                ("opt", 2, "onFailure"): ["explode", "", 5, None, *OPERATORS],
                ("arg", 2): NOT_OPTIONS,
            },
        ),
        "jobScheduleUpsert": (
            ("s", {"type": "t", "every": 60_000}),
            {
                ("arg", 0): [*NOT_SCHEDULE_ID, None],
                ("arg", 1): [*OPERATORS, "x", [], 5, None, {"type": "t", "$set": 1}],
                ("opt", 1, "type"): NOT_TYPES,
                ("opt", 1, "every"): [*NOT_INT, -1, 0, 999, None],
                ("opt", 1, "cron"): ["* * * * *", "x", "* * *", 5, *OPERATORS],
                ("opt", 1, "timezone"): ["Mars/Olympus", 5, "UTC", *OPERATORS],
                ("opt", 1, "data"): NOT_DATA,
                ("opt", 1, "jitter"): [*NOT_INT, -1],
                ("opt", 1, "overlap"): ["queue", "", 5, None, *OPERATORS],
                ("opt", 1, "catchUp"): ["some", "", 5, None, *OPERATORS],
            },
        ),
        "jobSchedules": ((), {("arg", 0): NOT_OPTIONS, ("opt", 0, "id"): NOT_SCHEDULE_ID}),
        "jobSchedulePause": (("s",), {("arg", 0): [*NOT_SCHEDULE_ID, None]}),
        "jobScheduleResume": (("s",), {("arg", 0): [*NOT_SCHEDULE_ID, None]}),
        "jobScheduleTrigger": (
            ("s",),
            {
                ("arg", 0): [*NOT_SCHEDULE_ID, None, "no-such"],
                ("arg", 1): NOT_OPTIONS,
                ("opt", 1, "key"): NOT_SCHEDULE_ID,
            },
        ),
        "jobScheduleBackfill": (
            ("s", START, START + timedelta(minutes=5)),
            {
                ("arg", 0): [*NOT_SCHEDULE_ID, None, "no-such"],
                ("arg", 1): [*NOT_DATE, None],
                ("arg", 2): [*NOT_DATE, None, START - timedelta(minutes=1)],
            },
        ),
        "jobScheduleRemove": (("s",), {("arg", 0): [*NOT_SCHEDULE_ID, None]}),
    }


def substituted(params: tuple[Any, ...], slot: Slot, value: Any) -> tuple[Any, ...]:
    out = list(params)
    if slot[0] == "arg":
        while len(out) <= slot[1]:
            out.append({})
        out[slot[1]] = value
    elif slot[0] == "opt":
        while len(out) <= slot[1]:
            out.append({})
        out[slot[1]] = {**(out[slot[1]] or {}), slot[2]: value}
    else:
        out[0] = {**out[0], slot[1]: value}
    return tuple(out)


def cases(w: World) -> Iterator[tuple[str, tuple[Any, ...], Slot, Any]]:
    for method, (params, slots) in method_cases(w).items():
        for slot, values in slots.items():
            for value in values:
                yield method, substituted(params, slot, value), slot, value


async def refused(w: World, method: str, params: tuple[Any, ...]) -> JobCollectionError:
    before = await w.snapshot()
    with pytest.raises(JobCollectionError) as raised:
        await w.jc.call(method, *params)
    error = raised.value
    assert not isinstance(error, DatabaseError), error  # refused before reaching the database
    assert isinstance(error, InvalidArgument | InvalidDocument), error
    assert str(error)
    assert await w.snapshot() == before, f"{method}{params!r} changed stored data"
    return error


@pytest.fixture
async def world(database: Any, clock: ManualClock) -> AsyncIterator[World]:
    w = await build_world(database, clock)
    yield w
    await w.jc.close()


def test_every_method_has_hostile_cases() -> None:
    loop = asyncio.new_event_loop()
    try:
        w = loop.run_until_complete(build_world(memory_database("hostile"), ManualClock(START)))
        assert set(method_cases(w)) == set(METHODS)
        loop.run_until_complete(w.jc.close())
    finally:
        loop.close()


async def test_hostile_parameters_are_refused_and_change_nothing(world: World) -> None:
    failures = []
    checked = 0
    for method, params, slot, value in cases(world):
        checked += 1
        try:
            await refused(world, method, params)
        except AssertionError as exc:  # collect them all: one report lists every hole
            failures.append(f"{method} {slot} = {value!r:.60}: {exc!s:.200}")
        except pytest.fail.Exception as exc:
            failures.append(f"{method} {slot} = {value!r:.60}: not refused ({exc!s:.200})")
    assert checked > 500
    assert not failures, "\n".join(failures)


async def test_the_valid_baselines_do_succeed(world: World) -> None:
    """The tables substitute one hostile value into otherwise valid calls: check that the
    valid calls are valid, so each refusal above is due to the hostile value."""
    for method, (params, _) in method_cases(world).items():
        if method in ("shutdownJobServer", "stopJobs"):
            continue
        await world.jc.call(method, *params)


@pytest.mark.parametrize("method", [m for m in METHODS if m not in ("startJobs", "stopJobs")])
async def test_extra_parameters_are_refused(world: World, method: str) -> None:
    params, _ = method_cases(world)[method]
    await refused(world, method, (*params, {}, {}, {}, {}, {}))


@pytest.mark.parametrize("name", ["$where", {"$ne": None}, "jobSave.x", "", None, 1, "getwork"])
async def test_unknown_methods_are_refused(world: World, name: Any) -> None:
    with pytest.raises(InvalidArgument, match="method"):
        await world.jc.call(name)


@pytest.mark.parametrize("job_id", STRING_IDS)
async def test_strings_that_look_like_operators_are_plain_ids(world: World, job_id: str) -> None:
    before = await world.snapshot()
    jc = world.jc
    assert await jc.call("getJob", job_id) is None
    assert await jc.call("getJob", [job_id, world.ready]) == [await jc.call("getJob", world.ready)]
    for method in ("jobRemove", "jobPause", "jobResume", "jobCancel", "jobRestart"):
        assert await jc.call(method, job_id) is False
    assert await jc.call("jobReady", job_id) is False
    assert await jc.call("jobRerun", job_id) is None
    assert await jc.call("jobLog", job_id, None, "m") is False
    assert await jc.call("jobDone", job_id, job_id) is False
    assert await jc.call("jobFail", job_id, world.run_id) is False
    assert await jc.call("jobProgress", world.running, job_id, 1, 2) is False
    assert await jc.call("jobHeartbeat", world.running, job_id) is False
    assert await jc.call("getWork", job_id) == []
    assert await world.snapshot() == before


# --- the public Python API ---------------------------------------------------------------------

PublicCall = Callable[[World], Awaitable[Any]]


def public_cases() -> list[tuple[str, PublicCall]]:
    out: list[tuple[str, PublicCall]] = []

    def add(name: str, call: PublicCall) -> None:
        out.append((name, call))

    for bad in NOT_ID:
        add(f"get_job({bad!r:.30})", lambda w, b=bad: w.jc.get_job(b))
        add(f"get_jobs([{bad!r:.30}])", lambda w, b=bad: w.jc.get_jobs([w.ready, b]))
        for name in ("pause_jobs", "resume_jobs", "cancel_jobs", "restart_jobs", "remove_jobs"):
            add(f"{name}([{bad!r:.30}])", lambda w, b=bad, n=name: getattr(w.jc, n)([w.ready, b]))
        add(f"ready_jobs([{bad!r:.30}])", lambda w, b=bad: w.jc.ready_jobs([w.waiting, b]))
    for bad in NOT_TYPES:
        add(f"get_work({bad!r:.30})", lambda w, b=bad: w.jc.get_work(b))
    for bad in [*NOT_INT, 0, -1]:
        add(f"get_work(max_jobs={bad!r:.30})", lambda w, b=bad: w.jc.get_work("t", max_jobs=b))
    for bad in [True, math.nan, math.inf, -1, 0, "1", *OPERATORS, 2**1100]:
        add(f"get_work(work_timeout={bad!r:.30})", lambda w, b=bad: w.jc.get_work("t", 1, b))
    for bad in NOT_COUNT:
        add(f"restart_jobs(retries={bad!r:.30})", lambda w, b=bad: w.jc.restart_jobs([w.failed], b))
    for bad in NOT_BOOL:
        add(
            f"cancel_jobs(dependents={bad!r:.30})",
            lambda w, b=bad: w.jc.cancel_jobs([w.ready], dependents=b),
        )
        add(
            f"ready_jobs(force={bad!r:.30})", lambda w, b=bad: w.jc.ready_jobs([w.waiting], force=b)
        )
        add(f"get_job(get_log={bad!r:.30})", lambda w, b=bad: w.jc.get_job(w.ready, get_log=b))
    for bad in NOT_DATE:
        add(f"ready_jobs(time={bad!r:.30})", lambda w, b=bad: w.jc.ready_jobs([w.waiting], time=b))
        add(
            f"restart_jobs(until={bad!r:.30})",
            lambda w, b=bad: w.jc.restart_jobs([w.failed], until=b),
        )
    for bad in [math.nan, math.inf, -1, True, "1", 2**1100, *OPERATORS]:
        add(f"shutdown_job_server({bad!r:.30})", lambda w, b=bad: w.jc.shutdown_job_server(b))
    for bad in NOT_DATA:
        add(f"create_job(data={bad!r:.30}).save()", lambda w, b=bad: w.jc.create_job("t", b).save())
    for bad in [*OPERATORS, "", 1, None, [], True]:
        add(f"create_job({bad!r:.30})", lambda w, b=bad: _sync(lambda: w.jc.create_job(b)))
    for bad in [*OPERATORS, {"$where": "1", "type": "t", "data": {}}, {"type": {"$ne": None}}]:
        add(f"make_job({bad!r:.30})", lambda w, b=bad: _sync(lambda: w.jc.make_job(b)))
    builders: list[tuple[str, Callable[[Job, Any], Any], list[Any]]] = [
        ("priority", lambda j, b: j.priority(b), [True, 1.5, "super", 2**64, *OPERATORS]),
        ("retry", lambda j, b: j.retry(b), NOT_COUNT),
        ("retry(wait)", lambda j, b: j.retry(1, wait=b), [math.nan, -1, True, 2**1100]),
        ("retry(until)", lambda j, b: j.retry(1, until=b), NOT_DATE),
        ("retry(backoff)", lambda j, b: j.retry(1, backoff=b), ["fibonacci", *OPERATORS]),
        ("repeat", lambda j, b: j.repeat(b), NOT_COUNT),
        ("repeat(schedule)", lambda j, b: j.repeat(schedule=b), ["* *", *OPERATORS, 5]),
        (
            "repeat(timezone)",
            lambda j, b: j.repeat(schedule="* * * * *", timezone=b),
            ["Mars/Olympus", *OPERATORS],
        ),
        ("delay", lambda j, b: j.delay(b), [math.nan, math.inf, -1, True, "1", 2**1100]),
        ("after", lambda j, b: j.after(b), NOT_DATE),
        ("depends", lambda j, b: j.depends(b), [[{"$ne": None}], "id", [ObjectId()]]),
    ]
    for name, build, values in builders:
        for bad in values:
            add(
                f"{name}({bad!r:.30})",
                lambda w, b=bad, f=build: _sync(lambda: f(w.jc.create_job("t"), b)),
            )
    held = [
        ("log", lambda j, b: j.log(b), NOT_MESSAGE),
        ("log(level)", lambda j, b: j.log("m", level=b), NOT_LEVEL),
        ("log(data)", lambda j, b: j.log("m", data=b), [d for d in NOT_DATA if d is not None]),
        ("progress", lambda j, b: j.progress(b, 10), [*NOT_NUMBER, -1, 11]),
        ("progress(total)", lambda j, b: j.progress(0, b), [*NOT_NUMBER, 0]),
        ("done", lambda j, b: j.done(b), NOT_VALUE),
        ("done(delay_deps)", lambda j, b: j.done(delay_deps=b), [math.nan, -1, True]),
        ("fail", lambda j, b: j.fail(b), NOT_VALUE),
        ("fail(fatal)", lambda j, b: j.fail("x", fatal=b), NOT_BOOL),
    ]
    for name, act, values in held:
        for bad in values:
            add(f"held.{name}({bad!r:.30})", lambda w, b=bad, f=act: _held(w, f, b))
    return out


async def _sync(build: Callable[[], Any]) -> Any:
    return build()


async def _held(w: World, act: Callable[[Job, Any], Awaitable[Any]], bad: Any) -> Any:
    job = await w.jc.get_job(w.running)
    assert job is not None
    return await act(job, bad)


@pytest.mark.parametrize(("name", "call"), public_cases(), ids=[n for n, _ in public_cases()])
async def test_public_methods_refuse_hostile_values(
    world: World, name: str, call: PublicCall
) -> None:
    before = await world.snapshot()
    with pytest.raises(JobCollectionError) as raised:
        await call(world)
    assert not isinstance(raised.value, DatabaseError)
    assert str(raised.value)
    assert await world.snapshot() == before


# --- limits ------------------------------------------------------------------------------------


async def test_log_entries_and_failures_are_capped_to_the_newest(world: World) -> None:
    jc = world.jc
    job_id = await jc.create_job("capped").retry(100, wait=0).save()
    for i in range(LIMITS.max_log_entries + 15):
        assert await jc.call("jobLog", job_id, None, f"line {i}") is True
    doc = await jc.collection.find_one({"_id": job_id})
    assert len(doc["log"]) == LIMITS.max_log_entries
    assert doc["log"][-1]["message"] == f"line {LIMITS.max_log_entries + 14}"
    assert doc["log"][0]["message"] == "line 15"
    for i in range(LIMITS.max_failures + 3):
        await jc.run_server_pass()
        [job] = await jc.get_work("capped")
        assert await job.fail(f"failure {i}") is True
    doc = await jc.collection.find_one({"_id": job_id})
    assert [f["value"] for f in doc["failures"]] == [
        f"failure {i}" for i in range(3, LIMITS.max_failures + 3)
    ]
    assert len(doc["log"]) == LIMITS.max_log_entries


async def test_a_long_local_log_is_saved_with_its_newest_entries(world: World) -> None:
    job = world.jc.create_job("t")
    for i in range(LIMITS.max_log_entries * 2):
        await job.log(f"local {i}")
    job_id = await job.save()
    doc = await world.jc.collection.find_one({"_id": job_id})
    assert len(doc["log"]) == LIMITS.max_log_entries
    assert doc["log"][-1]["message"] in ("Job Submitted", "Promoted to ready")


async def test_get_work_is_clamped_to_max_jobs(world: World) -> None:
    await world.jc.save_jobs([world.jc.create_job("many") for _ in range(LIMITS.max_jobs + 5)])
    got = await world.jc.get_work("many", max_jobs=LIMITS.max_jobs * 10)
    assert len(got) == LIMITS.max_jobs


async def test_values_at_the_limits_are_accepted(world: World) -> None:
    jc = world.jc
    message = "m" * LIMITS.max_message_length
    assert await jc.call("jobLog", world.ready, None, message) is True
    padding = LIMITS.max_data_bytes - 64
    job_id = await jc.create_job("t", {"x": "y" * padding}).save()
    assert job_id is not None


def test_the_default_limits_keep_a_job_under_16_mib() -> None:
    limits = Limits()
    assert limits.worst_case_bytes() <= 16 * 1024 * 1024
    assert limits.max_log_entries == 200 and limits.max_failures == 50


@pytest.mark.parametrize(
    "options",
    [
        {"max_log_entries": 0},
        {"max_jobs": -1},
        {"max_failures": True},
        {"max_data_bytes": 1.5},
        {"max_data_bytes": 8 * 1024 * 1024, "max_log_entries": 10_000},
    ],
)
def test_limits_are_checked(options: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument):
        Limits(**options)


def test_limits_must_be_a_limits(database: Any) -> None:
    with pytest.raises(InvalidArgument, match="limits"):
        JobCollection(database["queue.jobs"], limits={"max_jobs": 5})  # type: ignore[arg-type]


# --- random hostile structures (Hypothesis) ---------------------------------------------------

HOSTILE_KEYS = st.sampled_from(["$ne", "$where", "$gt", "$set", "a.b", ".", "$", "x\x00", "ok"])
LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4),
    st.just(NAIVE),
    st.just(AWARE),
    st.binary(max_size=2),
    st.sampled_from(OPERATORS),
)
VALUES = st.recursive(
    LEAVES,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.one_of(HOSTILE_KEYS, st.text(max_size=3)), children, max_size=3)
    ),
    max_leaves=8,
)


@settings(
    max_examples=150,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=st.data())
def test_random_values_in_any_parameter_are_refused_or_stored_faithfully(data: Any) -> None:
    """Any value in any parameter of any method: either the call succeeds, or it raises a
    JobCollectionError (never a driver or encoding error) and changes nothing."""
    loop = asyncio.new_event_loop()
    try:
        world = loop.run_until_complete(build_world(memory_database("fuzz"), ManualClock(START)))
        table = method_cases(world)
        method = data.draw(st.sampled_from(sorted(table)), label="method")
        params, slots = table[method]
        slot = data.draw(st.sampled_from(sorted(slots, key=repr)), label="slot")
        value = data.draw(VALUES, label="value")
        call = substituted(params, slot, value)

        async def run() -> None:
            before = await world.snapshot()
            try:
                await world.jc.call(method, *call)
            except JobCollectionError as exc:
                assert not isinstance(exc, DatabaseError), exc
                assert await world.snapshot() == before
            await world.jc.close()

        loop.run_until_complete(run())
    finally:
        loop.close()
