"""The method layer: every method with wire params, validation, events, the log stream and
allow/deny rules (SPEC A.2, B.1.1, B.2.15, quirk 3)."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId

from conftest import START, MakeJC
from helpers import Doc, stored, utc
from jobcollection import (
    METHOD_PERMISSIONS,
    METHODS,
    ConcurrencyLimit,
    InvalidArgument,
    InvalidArgumentType,
    InvalidDocument,
    JobCollection,
    JobDoc,
    ManualClock,
    MethodEvent,
    Paused,
    PermissionDenied,
)


def wire_doc(jc: JobCollection, job_type: str = "t", data: Doc | None = None) -> Doc:
    """A new job's document as a remote client would send it to jobSave."""
    return jc.create_job(job_type, data).doc.to_mongo()


class Lines:
    """A log stream that remembers what was written and whether it was closed."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.closed = False

    def write(self, text: str) -> int:
        self.lines.append(text)
        return len(text)

    def close(self) -> None:
        self.closed = True


# --- every method, with wire params --------------------------------------------------------------


async def test_every_method_with_wire_params(make_jc: MakeJC, clock: ManualClock) -> None:
    jc = await make_jc(started=False)
    called: list[str] = []
    jc.events.on("call", lambda e: called.append(e.method))
    errors: list[MethodEvent] = []
    jc.events.on("error", errors.append)

    assert await jc.call("startJobs") is True
    assert await jc.call("stopJobs", {"timeout": 0}) is True
    assert await jc.call("getWork", "t") == []  # stopped
    assert await jc.call("startJobServer", {}) is True

    job_id = await jc.call("jobSave", wire_doc(jc, "t", {"n": 1}), {"cancelRepeats": False})
    assert (await stored(jc, job_id))["status"] == "ready"
    many = await jc.call("jobSaveMany", [wire_doc(jc, "m"), wire_doc(jc, "m")])
    assert len(many) == 2 and all(i is not None for i in many)

    one = await jc.call("getJob", job_id, {"getLog": True, "getFailures": False})
    assert isinstance(one, JobDoc) and one.id == job_id and one.log
    listed = await jc.call("getJob", [job_id, many[0]])
    assert [d.id for d in listed] == [job_id, many[0]]
    page = await jc.call("jobFind", {"type": ["m"], "status": "ready"}, {"limit": 1})
    assert [d.id for d in page.docs] == [many[1]] and page.next is not None
    rest = await jc.call("jobFind", {"type": "m"}, {"after": page.next})
    assert ([d.id for d in rest.docs], rest.next) == ([many[0]], None)
    assert len((await jc.call("jobFind")).docs) == 3
    counted = await jc.call("jobStats")
    assert counted.counts == {("t", "ready"): 1, ("m", "ready"): 2}
    assert await jc.call("jobPauseTypes", ["m"]) == Paused(("m",))
    assert await jc.call("jobPausedTypes") == Paused(("m",))
    assert await jc.call("getWork", "m") == []
    assert await jc.call("jobResumeTypes", None) == Paused()
    registration = {
        **{"id": "w1", "host": "h", "pid": 1, "version": "0", "types": ["t"]},
        **{"concurrency": 1, "payload": 1, "prefetch": 0, "held": [job_id], "holding": 1},
    }
    assert await jc.call("jobWorkerSeen", registration) is True
    [seen] = await jc.call("jobWorkers")
    assert (seen.id, seen.held, seen.kind, seen.started) == ("w1", (job_id,), "remote", START)
    assert await jc.call("jobWorkerGone", "w1") is True
    assert await jc.call("jobWorkers") == []
    limit = {"maxRunning": 1, "groupBy": "user"}
    assert await jc.call("jobSetConcurrencyLimit", "m", limit) == {
        "m": ConcurrencyLimit(1, group_by="user")
    }
    assert await jc.call("jobConcurrencyLimits") == {"m": ConcurrencyLimit(1, group_by="user")}
    assert await jc.call("jobSetConcurrencyLimit", "m", None) == {}
    later = await jc.create_job("m").delay(3600).save()
    assert await jc.call("jobAddDepends", [later], [job_id], {"onFailure": "ignore"}) == 1
    assert (await stored(jc, later))["depends"] == [job_id]

    assert await jc.call("jobPause", [job_id]) is True
    assert await jc.call("jobResume", job_id) is True
    assert (await stored(jc, job_id))["status"] == "ready"

    [doc] = await jc.call("getWork", ["t"], {"maxJobs": 2, "workTimeout": 5_000})
    run_id = doc.run_id
    assert doc.id == job_id and doc.work_timeout == 5_000
    clock.advance(1)
    assert await jc.call("jobLog", job_id, run_id, "hello", {"level": "warning", "data": {"a": 1}})
    assert await jc.call("jobProgress", job_id, run_id, 1, 2) is True
    assert await jc.call("jobHeartbeat", job_id, run_id) is True
    assert await jc.call("jobRelease", [job_id], ObjectId()) == []  # not held under that run
    assert await jc.call("jobFail", job_id, run_id, {"value": "x"}, {"fatal": True}) is True
    assert (await stored(jc, job_id))["status"] == "failed"

    until = START + timedelta(hours=1)
    assert await jc.call("jobRestart", job_id, {"retries": 2, "until": until}) is True
    restarted = await stored(jc, job_id)
    assert (restarted["retries"], utc(restarted["retryUntil"])) == (3, until)
    assert await jc.call("jobReady", [job_id], {"time": jc.forever_date, "force": False}) is True
    assert await jc.call("jobReady") is False  # the promote form: nothing else is due
    [doc] = await jc.call("getWork", "t")
    assert await jc.call("jobDone", job_id, doc.run_id, {"r": 1}, {"repeatId": False}) is True
    assert (await stored(jc, job_id))["result"] == {"r": 1}

    rerun_id = await jc.call("jobRerun", job_id, {"repeats": 1, "until": until, "wait": 1_000})
    assert (await stored(jc, rerun_id))["repeats"] == 1
    assert await jc.call("jobCancel", rerun_id, {"antecedents": False, "dependents": True})
    assert await jc.call("jobRemove", [rerun_id, job_id]) is True
    delayed = {**wire_doc(jc, "later"), "after": START + timedelta(hours=2)}
    later = await jc.call("jobSave", delayed)
    due = await jc.call("jobReadyDue", ["later"])
    assert (due.promoted, due.next_due) == (0, START + timedelta(hours=2))
    assert await jc.call("jobCancelPending", "later", 0) == 0  # not that user's
    assert (await stored(jc, later))["status"] == "waiting"
    assert await jc.collection.count_documents({"_id": {"$in": [rerun_id, job_id]}}) == 0

    settings = {"type": "s", "every": 60_000, "jitter": 0, "overlap": "skip", "catchUp": "all"}
    upserted = await jc.call("jobScheduleUpsert", "nightly", settings)
    assert (upserted.id, upserted.every, upserted.overlap) == (
        "nightly",
        timedelta(minutes=1),
        "skip",
    )
    assert await jc.call("jobSchedules", {"id": "nightly"}) == [upserted]
    assert await jc.call("jobSchedulePause", "nightly") is True
    assert await jc.call("jobScheduleResume", "nightly") is True
    triggered = await jc.call("jobScheduleTrigger", "nightly")
    assert (await stored(jc, triggered))["type"] == "s"
    backfilled = await jc.call(
        "jobScheduleBackfill", "nightly", START, START + timedelta(minutes=1)
    )
    assert len(backfilled) == 2
    assert await jc.call("jobScheduleRemove", "nightly") is True
    assert await jc.call("jobSchedules") == []
    assert await jc.call("shutdownJobServer", {"timeout": 0}) is True
    assert await jc.call("getWork", "m") == []

    assert errors == []
    assert set(called) == set(METHODS), set(METHODS) - set(called)


async def test_every_method_has_permission_groups() -> None:
    assert set(METHOD_PERMISSIONS) == set(METHODS)
    for method, names in METHOD_PERMISSIONS.items():
        assert names[0] == method
        assert "admin" in names


async def test_get_job_single_missing_is_none_and_list_missing_is_empty(
    jc: JobCollection,
) -> None:
    assert await jc.call("getJob", ObjectId()) is None
    assert await jc.call("getJob", [ObjectId()]) == []


async def test_done_with_delay_deps_and_fail_without_error(
    jc: JobCollection, clock: ManualClock
) -> None:
    first = await jc.call("jobSave", wire_doc(jc, "a"))
    [a] = await jc.call("getWork", "a")
    assert await jc.call("jobFail", first, a.run_id) is True
    assert (await stored(jc, first))["failures"][0]["value"] == "No error information provided"


# --- validation ---------------------------------------------------------------------------------


async def test_unknown_method(jc: JobCollection) -> None:
    with pytest.raises(InvalidArgument) as err:
        await jc.call("jobExplode", "x")
    assert err.value.argument == "method"
    assert "jobExplode" in str(err.value)
    with pytest.raises(InvalidArgument):
        await jc.call(42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("method", "params", "key"),
    [
        ("getWork", ("t", {"maxJob": 2}), "maxJob"),
        ("jobCancel", ("0" * 24, {"dependent": False}), "dependent"),
        ("jobSave", (None, {"cancel_repeats": True}), "cancel_repeats"),
        ("jobDone", ("a", "b", {}, {"repeat_id": True}), "repeat_id"),
        ("jobPause", ("a", {"force": True}), "force"),
        ("shutdownJobServer", ({"timeOut": 5},), "timeOut"),
    ],
)
async def test_unknown_option_key_is_named(
    jc: JobCollection, method: str, params: tuple[Any, ...], key: str
) -> None:
    if method == "jobSave":
        params = (wire_doc(jc), *params[1:])
    with pytest.raises(InvalidArgument) as err:
        await jc.call(method, *params)
    assert key in str(err.value)
    assert await jc.collection.count_documents({}) == 0


@pytest.mark.parametrize(
    ("method", "params", "argument"),
    [
        ("getWork", ("t", {"maxJobs": 0}), "maxJobs"),
        ("getWork", ("t", {"maxJobs": "2"}), "maxJobs"),
        ("getWork", ("t", {"workTimeout": 0}), "workTimeout"),
        ("getWork", (["t", 3],), "type[1]"),
        ("getWork", ("t", "not options"), "options"),
        ("getJob", ({"$ne": None},), "ids"),
        ("jobRemove", ([{"$gt": ""}],), "ids[0]"),
        ("jobLog", ("a", None, 5), "message"),
        ("jobLog", ("a", None, "m", {"level": "loud"}), "level"),
        ("jobProgress", ("a", "r", 3, 2), "completed"),
        ("jobProgress", ("a", "r", 1, 0), "total"),
        ("jobProgress", ("a", "r", -1, 2), "completed"),
        ("jobDone", ("a", None), "runId"),
        ("jobRestart", ("a", {"retries": -1}), "retries"),
        ("jobRerun", ("a", {"wait": -5}), "wait"),
        ("jobReady", (["a"], {"time": datetime(2026, 1, 1)}), "time"),
        ("jobCancel", ("a", {"antecedents": "yes"}), "antecedents"),
        ("shutdownJobServer", ({"timeout": -1},), "timeout"),
    ],
)
async def test_invalid_params_name_the_argument(
    jc: JobCollection, method: str, params: tuple[Any, ...], argument: str
) -> None:
    job_id = await jc.create_job("t").save()
    before = await stored(jc, job_id)
    with pytest.raises(InvalidArgument) as err:
        await jc.call(method, *params)
    assert err.value.argument == argument, err.value
    assert await stored(jc, job_id) == before
    assert await jc.collection.count_documents({}) == 1


@pytest.mark.parametrize(
    ("method", "params"),
    [("jobDone", ()), ("getWork", ()), ("jobLog", ("a", None)), ("getJob", ("a", {}, 3))],
)
async def test_wrong_number_of_params(
    jc: JobCollection, method: str, params: tuple[Any, ...]
) -> None:
    with pytest.raises(InvalidArgument):
        await jc.call(method, *params)


async def test_job_save_rejects_a_bad_document(jc: JobCollection) -> None:
    doc = wire_doc(jc)
    doc["surprise"] = 1
    with pytest.raises(InvalidDocument) as err:
        await jc.call("jobSave", doc)
    assert "surprise" in str(err.value)
    doc = wire_doc(jc)
    doc["status"] = "running"
    with pytest.raises(InvalidArgument):
        await jc.call("jobSave", doc)
    assert await jc.collection.count_documents({}) == 0


# --- events -------------------------------------------------------------------------------------


async def test_success_emits_call_and_the_method_event(jc: JobCollection) -> None:
    seen: dict[str, list[MethodEvent]] = {"call": [], "jobSave": [], "error": []}
    for name, got in seen.items():
        jc.events.on(name, got.append)
    doc = wire_doc(jc)
    job_id = await jc.call("jobSave", doc, user_id=None)
    assert len(seen["call"]) == len(seen["jobSave"]) == 1
    assert seen["error"] == []
    event = seen["call"][0]
    assert event is seen["jobSave"][0]
    assert event.method == "jobSave"
    assert tuple(event.params) == (doc,)
    assert event.user_id is None
    assert event.error is None
    assert event.return_value == job_id
    with pytest.raises(AttributeError):
        event.method = "other"  # type: ignore[misc]


async def test_python_api_calls_emit_events_too(jc: JobCollection) -> None:
    names: list[str] = []
    jc.events.on("call", lambda e: names.append(e.method))
    job = jc.create_job("t")
    await job.save()
    await jc.get_work("t")
    await jc.get_job(job.id)
    assert names == ["jobSave", "getWork", "getJob"]


async def test_failure_emits_error_and_the_method_event(jc: JobCollection) -> None:
    calls: list[MethodEvent] = []
    errors: list[MethodEvent] = []
    named: list[MethodEvent] = []
    jc.events.on("call", calls.append)
    jc.events.on("error", errors.append)
    jc.events.on("getWork", named.append)
    with pytest.raises(InvalidArgument) as err:
        await jc.call("getWork", "t", {"maxJobs": -3}, user_id=None)
    assert calls == []
    assert errors == named
    assert len(errors) == 1
    event = errors[0]
    assert event.method == "getWork"
    assert event.error is err.value
    assert event.return_value is None


async def test_once_and_off(jc: JobCollection) -> None:
    once: list[str] = []
    always: list[str] = []
    removed: list[str] = []

    def keep(e: MethodEvent) -> None:
        always.append(e.method)

    def drop(e: MethodEvent) -> None:
        removed.append(e.method)

    jc.events.once("call", lambda e: once.append(e.method))
    jc.events.on("call", keep)
    jc.events.on("call", drop)
    await jc.call("getWork", "t")
    jc.events.off("call", drop)
    await jc.call("getJob", [])
    assert once == ["getWork"]
    assert always == ["getWork", "getJob"]
    assert removed == ["getWork"]
    jc.events.off("call")
    await jc.call("getWork", "t")
    assert always == ["getWork", "getJob"]


async def test_async_handlers_are_awaited(jc: JobCollection) -> None:
    seen: list[Any] = []

    async def handler(event: MethodEvent) -> None:
        await asyncio.sleep(0)
        seen.append(event.return_value)

    jc.events.on("jobSave", handler)
    job_id = await jc.create_job("t").save()
    assert seen == [job_id]


async def test_a_failing_handler_does_not_break_the_call(
    jc: JobCollection, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: MethodEvent) -> None:
        raise RuntimeError("handler bug")

    after: list[str] = []
    jc.events.on("call", broken)
    jc.events.on("call", lambda e: after.append(e.method))
    with caplog.at_level(logging.ERROR, logger="jobcollection"):
        job_id = await jc.create_job("t").save()
    assert job_id is not None
    assert after == ["jobSave"]
    assert any("handler" in r.getMessage() for r in caplog.records)


# --- the log stream -----------------------------------------------------------------------------


async def test_log_stream_gets_one_line_per_call(jc: JobCollection) -> None:
    stream = Lines()
    jc.set_log_stream(stream)
    await jc.create_job("t").save()
    await jc.get_work("t")
    with pytest.raises(PermissionDenied):
        await jc.call("getWork", "t", {"maxJobs": 1}, user_id="u9")
    assert len(stream.lines) == 3
    assert all(line.endswith("\n") and line.count("\n") == 1 for line in stream.lines)
    assert ["jobSave" in stream.lines[0], "getWork" in stream.lines[1]] == [True, True]
    assert "u9" in stream.lines[2]


async def test_a_second_log_stream_in_one_cycle_is_refused(jc: JobCollection) -> None:
    first = Lines()
    jc.set_log_stream(first)
    with pytest.raises(InvalidArgument) as err:
        jc.set_log_stream(Lines())
    assert err.value.argument == "stream"
    await jc.get_work("t")
    assert len(first.lines) == 1


async def test_shutdown_closes_the_log_stream_and_a_new_cycle_takes_another(
    jc: JobCollection,
) -> None:
    first = Lines()
    jc.set_log_stream(first)
    assert await jc.shutdown_job_server(timeout=0)
    assert first.closed
    written = len(first.lines)
    second = Lines()
    jc.set_log_stream(second)
    await jc.start_job_server()
    assert len(first.lines) == written
    assert len(second.lines) == 1


async def test_log_stream_must_be_writable(jc: JobCollection) -> None:
    with pytest.raises(InvalidArgumentType) as err:
        jc.set_log_stream(object())  # type: ignore[arg-type]
    assert err.value.argument == "stream"


async def test_calls_are_logged_to_logging(
    jc: JobCollection, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="jobcollection"):
        await jc.call("getWork", "t")
        with pytest.raises(PermissionDenied):
            await jc.call("getWork", "t", user_id="u1")
    assert any(r.levelno == logging.DEBUG and "getWork" in r.getMessage() for r in caplog.records)
    # u1 is refused (no rules), and the refusal is logged with the call
    assert any("getWork" in r.getMessage() and "u1" in r.getMessage() for r in caplog.records)


# --- permissions --------------------------------------------------------------------------------


async def test_user_call_without_rules_is_denied(jc: JobCollection) -> None:
    errors: list[MethodEvent] = []
    jc.events.on("error", errors.append)
    with pytest.raises(PermissionDenied) as err:
        await jc.call("jobSave", wire_doc(jc), user_id="mallory")
    assert "jobSave" in str(err.value)
    assert await jc.collection.count_documents({}) == 0
    assert len(errors) == 1
    assert isinstance(errors[0].error, PermissionDenied)
    assert errors[0].user_id == "mallory"


async def test_direct_calls_need_no_rules(jc: JobCollection) -> None:
    jc.deny(admin=lambda user, method, params: True)
    job_id = await jc.create_job("t").save()
    [job] = await jc.get_work("t")
    assert await job.done() is True
    assert await jc.call("getJob", job_id) is not None


GROUP_CASES = [
    ("admin", "startJobServer", True),
    ("admin", "jobRemove", True),
    ("admin", "jobSave", True),
    ("admin", "getWork", True),
    ("manager", "jobCancel", True),
    ("manager", "jobRestart", True),
    ("manager", "jobSave", False),
    ("manager", "getWork", False),
    ("manager", "shutdownJobServer", False),
    ("creator", "jobSave", True),
    ("creator", "jobRerun", True),
    ("creator", "jobCancel", False),
    ("worker", "getWork", True),
    ("worker", "jobDone", True),
    ("worker", "getJob", True),
    ("worker", "jobSave", False),
    ("worker", "jobRemove", False),
]


@pytest.mark.parametrize(("group", "method", "allowed"), GROUP_CASES)
async def test_allow_by_group(jc: JobCollection, group: str, method: str, allowed: bool) -> None:
    jc.allow(**{group: lambda user, m, params: user == "u1"})
    assert jc.method_permissions[method].count(group) == int(allowed)
    assert METHOD_PERMISSIONS[method] == jc.method_permissions[method]
    decided = await _permitted(jc, method, "u1")
    assert decided is allowed
    assert await _permitted(jc, method, "u2") is False


async def _permitted(jc: JobCollection, method: str, user: str) -> bool:
    """Whether the rules let `user` make the call (`jc.call` checks the parameters first)."""
    return jc.permits(method, *_harmless_params(method), user_id=user)


def _harmless_params(method: str) -> tuple[Any, ...]:
    """Params that get past the rules and then fail validation or change nothing."""
    if method in ("startJobServer", "startJobs"):
        return ()
    return ({"$invalid": True},) if method != "getWork" else ("nothing-of-this-type",)


async def test_allow_by_method_name(jc: JobCollection) -> None:
    jc.allow(getWork=lambda user, method, params: True)
    assert await jc.call("getWork", "t", user_id="anyone") == []
    with pytest.raises(PermissionDenied):
        await jc.call("getJob", "a", user_id="anyone")


async def test_rule_receives_user_method_and_params(jc: JobCollection) -> None:
    seen: list[tuple[Any, str, Any]] = []

    def rule(user: Any, method: str, params: Any) -> bool:
        seen.append((user, method, tuple(params)))
        return True

    jc.allow(worker=rule)
    await jc.call("getWork", "t", {"maxJobs": 2}, user_id="w1")
    assert seen == [("w1", "getWork", ("t", {"maxJobs": 2}))]


async def test_deny_overrides_allow(jc: JobCollection) -> None:
    jc.allow(admin=lambda user, method, params: True)
    jc.deny(jobRemove=["eve"])
    job = jc.create_job("t")
    await job.save()
    assert await job.cancel()
    with pytest.raises(PermissionDenied):
        await jc.call("jobRemove", job.id, user_id="eve")
    assert await jc.collection.count_documents({}) == 1
    assert await jc.call("jobRemove", job.id, user_id="adam") is True
    assert await jc.call("getWork", "t", user_id="eve") == []  # only jobRemove is denied


async def test_deny_by_group_covers_its_methods(jc: JobCollection) -> None:
    jc.allow(admin=lambda user, method, params: True)
    jc.deny(worker=["w"])
    with pytest.raises(PermissionDenied):
        await jc.call("getWork", "t", user_id="w")
    assert await jc.call("jobReady", user_id="w") is False  # manager method, not denied


@pytest.mark.parametrize("members", [["alice", "bob"], ("alice", "bob"), {"alice", "bob"}])
async def test_list_of_user_ids_rules_match(jc: JobCollection, members: Any) -> None:
    """Quirk 3 fixed: a list of user ids allows exactly those users."""
    jc.allow(worker=members)
    assert await jc.call("getWork", "t", user_id="alice") == []
    assert await jc.call("getWork", "t", user_id="bob") == []
    with pytest.raises(PermissionDenied):
        await jc.call("getWork", "t", user_id="carol")


async def test_several_rules_any_allow_suffices(jc: JobCollection) -> None:
    jc.allow(worker=["a"])
    jc.allow(getWork=lambda user, method, params: user == "b")
    assert await jc.call("getWork", "t", user_id="a") == []
    assert await jc.call("getWork", "t", user_id="b") == []
    with pytest.raises(PermissionDenied):
        await jc.call("getWork", "t", user_id="c")


@pytest.mark.parametrize(
    ("rules", "argument", "error"),
    [
        ({"bogus": ["a"]}, "bogus", InvalidArgument),
        ({"getwork": ["a"]}, "getwork", InvalidArgument),
        ({"admin": 5}, "admin", InvalidArgumentType),
        ({"worker": "alice"}, "worker", InvalidArgumentType),
        ({"worker": None}, "worker", InvalidArgumentType),
    ],
)
@pytest.mark.parametrize("kind", ["allow", "deny"])
async def test_invalid_rules_raise_and_add_nothing(
    jc: JobCollection, rules: Doc, argument: str, error: type[Exception], kind: str
) -> None:
    with pytest.raises(error) as err:
        getattr(jc, kind)(getWork=["alice"], **rules)
    assert isinstance(err.value, InvalidArgument)
    assert err.value.argument == argument
    if kind == "allow":
        # the valid rule given with the invalid one was not added either
        with pytest.raises(PermissionDenied):
            await jc.call("getWork", "t", user_id="alice")
    else:
        jc.allow(getWork=["alice"])
        assert await jc.call("getWork", "t", user_id="alice") == []


async def test_permits_answers_what_call_would_decide_without_calling(
    make_jc: MakeJC,
) -> None:
    jc = await make_jc()
    jc.allow(worker=["w"])
    jc.deny(getWork=lambda user, method, params: params[0] == ["secret"])
    assert jc.permits("getWork", ["t"], user_id="w") is True
    assert jc.permits("getWork", ["secret"], user_id="w") is False
    assert jc.permits("jobCancel", [], user_id="w") is False
    assert jc.permits("jobCancel", [], user_id="nobody") is False
    with pytest.raises(InvalidArgument, match="unknown method"):
        jc.permits("nope", user_id="w")
    assert await jc.collection.count_documents({}) == 0


async def test_logs_show_ids_and_options_never_job_data(
    jc: JobCollection, caplog: pytest.LogCaptureFixture
) -> None:
    secret = {"api_key": "s3cr3t-token", "nested": {"password": "hunter2"}}
    with caplog.at_level(logging.DEBUG, logger="jobcollection"):
        job_id = await jc.create_job("t", secret).save()
        await jc.call("jobSave", {**jc.create_job("t", secret).doc.to_mongo()}, user_id=None)
        [job] = await jc.get_work("t")
        await job.done({"token": "result-secret"})
        await jc.call("jobLog", job_id, None, "x", {"data": {"k": "log-secret"}})
        with pytest.raises(InvalidArgument):
            await jc.call("jobDone", job_id, ObjectId(), {"$bad": "done-secret"})
    text = "\n".join(r.getMessage() for r in caplog.records)
    for word in ("s3cr3t-token", "hunter2", "result-secret", "log-secret", "done-secret"):
        assert word not in text
    assert str(job_id) in text and "jobDone" in text
    calls = [r for r in caplog.records if getattr(r, "method", None) == "jobSave"]
    assert calls and all(hasattr(r, "user_id") for r in calls)  # structured fields (extra=)


async def test_a_claim_before_the_job_server_ever_started_warns_once(
    make_jc: MakeJC, caplog: pytest.LogCaptureFixture
) -> None:
    jc = await make_jc(started=False)
    with caplog.at_level(logging.WARNING, logger="jobcollection"):
        assert await jc.get_work("t") == []
        assert await jc.get_work("t") == []
    warnings = [r for r in caplog.records if "start_job_server" in r.getMessage()]
    assert len(warnings) == 1
    await jc.start_job_server()
    await jc.shutdown_job_server(timeout=0)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="jobcollection"):
        assert await jc.get_work("t") == []  # after a deliberate shutdown: no news
    assert not [r for r in caplog.records if "start_job_server" in r.getMessage()]
