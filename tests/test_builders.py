"""Job construction, the chainable builders and the local-only behaviour of unsaved jobs."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from jobcollection import (
    FOREVER,
    FOREVER_DATE,
    JOB_PRIORITIES,
    CronSchedule,
    InvalidArgument,
    InvalidArgumentType,
    InvalidDocument,
    Job,
    JobCollection,
    JobDoc,
    JobNotSaved,
    ManualClock,
)

pytestmark = pytest.mark.both_sides

START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


async def _raw(jc: JobCollection, job_id: Any) -> dict[str, Any]:
    found = await jc.collection.find_one({"_id": job_id})
    assert found is not None
    return dict(found)


async def _claimed(jc: JobCollection, job_type: str = "work", **data: Any) -> Job:
    await jc.create_job(job_type, data).save()
    [job] = await jc.get_work(job_type)
    return job


# --- construction -------------------------------------------------------------------------------


def test_construction_forms_agree(jc: JobCollection) -> None:
    direct = Job(jc, "email", {"to": "a"})
    created = jc.create_job("email", {"to": "a"})
    assert direct.type == created.type == "email"
    assert direct.data == created.data == {"to": "a"}
    assert direct.id is None
    assert direct.doc.to_mongo() == created.doc.to_mongo()
    assert Job(jc, "bare").data == {}
    assert jc.create_job("bare").data == {}


def test_construction_from_a_document(jc: JobCollection) -> None:
    source = jc.create_job("email", {"to": "a"}).priority("low")
    raw = source.doc.to_mongo()
    for job in (Job(jc, raw), jc.make_job(raw), Job(jc, source.doc), jc.make_job(source.doc)):
        assert job.type == "email"
        assert job.data == {"to": "a"}
        assert job.doc.priority == JOB_PRIORITIES["low"]
    # The job holds its own copy of a given JobDoc.
    copy = jc.make_job(source.doc)
    copy.priority("high")
    assert source.doc.priority == JOB_PRIORITIES["low"]


def test_doc_is_a_pydantic_job_doc(jc: JobCollection) -> None:
    job = jc.create_job("t")
    assert isinstance(job.doc, JobDoc)
    assert job.doc.type == "t"
    with pytest.raises(AttributeError):
        job.type = "other"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        job.doc = JobDoc(type="x")  # type: ignore[misc]


@pytest.mark.parametrize("bad_type", [123, None, "", b"bytes", ["t"], 1.5])
def test_bad_type_raises(jc: JobCollection, bad_type: Any) -> None:
    with pytest.raises(InvalidArgumentType, match="type"):
        Job(jc, bad_type)
    with pytest.raises(InvalidArgumentType, match="type"):
        jc.create_job(bad_type)


@pytest.mark.parametrize("bad_data", ["text", 1, [1, 2], ("a",), True])
def test_bad_data_raises(jc: JobCollection, bad_data: Any) -> None:
    with pytest.raises(InvalidArgumentType, match="data"):
        Job(jc, "t", bad_data)
    with pytest.raises(InvalidArgumentType, match="data"):
        jc.create_job("t", bad_data)


def test_document_and_data_together_raise(jc: JobCollection) -> None:
    with pytest.raises(InvalidArgument, match="data"):
        Job(jc, {"type": "t", "data": {}}, {"x": 1})


def test_bad_document_raises(jc: JobCollection) -> None:
    with pytest.raises(InvalidDocument, match="type"):
        jc.make_job({"data": {}})
    with pytest.raises(InvalidDocument, match="status"):
        jc.make_job({"type": "t", "data": {}, "status": "lost"})


# --- builders -----------------------------------------------------------------------------------


def test_builders_chain_and_return_the_same_job(jc: JobCollection, clock: ManualClock) -> None:
    job = jc.create_job("t")
    assert job.priority("high") is job
    assert job.retry(1) is job
    assert job.repeat(1) is job
    assert job.delay(1) is job
    assert job.after(START) is job
    assert job.depends(None) is job
    chained = (
        jc.create_job("t")
        .priority("critical")
        .retry(2, wait=1)
        .repeat(3, wait=2)
        .delay(10)
        .depends([])
    )
    assert chained.doc.priority == -15
    assert chained.doc.retries == 3
    assert chained.doc.repeats == 3
    assert chained.doc.after == clock.now() + timedelta(seconds=10)


@pytest.mark.parametrize(("level", "stored"), [*JOB_PRIORITIES.items(), (7, 7), (-3, -3)])
def test_priority(jc: JobCollection, level: Any, stored: int) -> None:
    assert jc.create_job("t").priority(level).doc.priority == stored


def test_priority_default_is_normal(jc: JobCollection) -> None:
    assert jc.create_job("t").priority("low").priority().doc.priority == 0


@pytest.mark.parametrize(
    ("level", "error"),
    [
        ("super", InvalidArgument),
        (3.14, InvalidArgumentType),
        (True, InvalidArgumentType),
        (None, InvalidArgumentType),
        (2**40, InvalidArgument),
    ],
)
def test_priority_rejects(jc: JobCollection, level: Any, error: type[Exception]) -> None:
    job = jc.create_job("t")
    with pytest.raises(error, match="level"):
        job.priority(level)
    assert job.doc.priority == 0


def test_retry_stores_attempts_plus_one(jc: JobCollection) -> None:
    job = jc.create_job("t").retry(3)
    assert job.doc.retries == 4
    assert job.doc.repeat_retries == 4
    assert jc.create_job("t").retry(retries=3).doc.retries == 4
    assert jc.create_job("t").retry(0).doc.retries == 1


def test_retry_defaults(jc: JobCollection) -> None:
    doc = jc.create_job("t").retry().doc
    assert doc.retries == FOREVER
    assert doc.repeat_retries == FOREVER
    assert doc.retry_wait == 300_000
    assert doc.retry_backoff == "constant"
    assert doc.retry_until == FOREVER_DATE


def test_retry_options(jc: JobCollection) -> None:
    until = START + timedelta(hours=1)
    doc = jc.create_job("t").retry(2, until=until, wait=0.25, backoff="exponential").doc
    assert (doc.retries, doc.retry_wait, doc.retry_backoff) == (3, 250, "exponential")
    assert doc.retry_until == until
    assert jc.create_job("t").retry(1, wait=timedelta(minutes=2)).doc.retry_wait == 120_000
    assert jc.create_job("t").retry(1, wait=0).doc.retry_wait == 0


def test_retry_backoff_beyond_v1(jc: JobCollection) -> None:
    doc = jc.create_job("t").retry(3, wait=10, backoff="linear", jitter=0.25, max_wait=60).doc
    assert (doc.retry_backoff, doc.retry_jitter, doc.retry_max_wait) == ("linear", 0.25, 60_000)
    stored = doc.to_mongo()
    assert stored["retryBackoff"] == "constant"  # v1.x knows constant and exponential only
    assert stored["_private"]["jobcollectionRetry"] == {
        "backoff": "linear",
        "jitter": 0.25,
        "maxWait": 60_000,
    }
    plain = jc.create_job("t").retry(3, backoff="exponential").doc.to_mongo()
    assert plain["retryBackoff"] == "exponential" and "_private" not in plain


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"retries": -1}, InvalidArgument, "retries"),
        ({"retries": 3.14}, InvalidArgumentType, "retries"),
        ({"retries": True}, InvalidArgumentType, "retries"),
        ({"retries": "3"}, InvalidArgumentType, "retries"),
        ({"retries": 1, "wait": -1}, InvalidArgument, "wait"),
        ({"retries": 1, "wait": "5"}, InvalidArgumentType, "wait"),
        ({"retries": 1, "wait": float("nan")}, InvalidArgument, "wait"),
        ({"retries": 1, "backoff": "fibonacci"}, InvalidArgument, "backoff"),
        ({"retries": 1, "jitter": 1.5}, InvalidArgument, "jitter"),
        ({"retries": 1, "jitter": -0.1}, InvalidArgument, "jitter"),
        ({"retries": 1, "jitter": "0.5"}, InvalidArgumentType, "jitter"),
        ({"retries": 1, "jitter": float("nan")}, InvalidArgument, "jitter"),
        ({"retries": 1, "max_wait": -1}, InvalidArgument, "max_wait"),
        ({"retries": 1, "max_wait": "60"}, InvalidArgumentType, "max_wait"),
        ({"retries": 1, "until": datetime(2030, 1, 1)}, InvalidArgument, "until"),
        ({"retries": 1, "until": 123}, InvalidArgumentType, "until"),
    ],
)
def test_retry_rejects(
    jc: JobCollection, kwargs: dict[str, Any], error: type[Exception], name: str
) -> None:
    job = jc.create_job("t")
    before = job.doc.to_mongo()
    with pytest.raises(error, match=name):
        job.retry(**kwargs)
    assert job.doc.to_mongo() == before


def test_repeat_defaults_and_options(jc: JobCollection) -> None:
    doc = jc.create_job("t").repeat().doc
    assert doc.repeats == FOREVER
    assert doc.repeat_wait == 300_000
    assert doc.repeat_until == FOREVER_DATE
    until = START + timedelta(days=1)
    doc = jc.create_job("t").repeat(5, until=until, wait=timedelta(seconds=30)).doc
    assert (doc.repeats, doc.repeat_wait, doc.repeat_until) == (5, 30_000, until)
    # No +1 for repeats.
    assert jc.create_job("t").repeat(repeats=2).doc.repeats == 2


def test_repeat_schedule_replaces_wait(jc: JobCollection) -> None:
    job = jc.create_job("t").repeat(3, wait=10).repeat(3, schedule="*/5 * * * *")
    assert job.doc.repeat_wait == CronSchedule(cron="*/5 * * * *")
    zoned = jc.create_job("t").repeat(schedule="0 9 * * 1-5", timezone="America/New_York")
    assert zoned.doc.repeat_wait == CronSchedule(cron="0 9 * * 1-5", timezone="America/New_York")
    with_seconds = jc.create_job("t").repeat(schedule="0 */2 * * * 30")
    assert isinstance(with_seconds.doc.repeat_wait, CronSchedule)


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"wait": 5, "schedule": "* * * * *"}, InvalidArgument, "schedule"),
        ({"schedule": "bad cron"}, InvalidArgument, "schedule"),
        ({"schedule": "61 * * * *"}, InvalidArgument, "schedule"),
        ({"schedule": "* * * *"}, InvalidArgument, "schedule"),
        ({"schedule": "* * * * * * * *"}, InvalidArgument, "schedule"),
        ({"schedule": 5}, InvalidArgumentType, "schedule"),
        ({"schedule": "* * * * *", "timezone": "Mars/Olympus_Mons"}, InvalidArgument, "timezone"),
        ({"schedule": "* * * * *", "timezone": 1}, InvalidArgumentType, "timezone"),
        ({"timezone": "UTC"}, InvalidArgument, "timezone"),
        ({"repeats": -1}, InvalidArgument, "repeats"),
        ({"repeats": 1.5}, InvalidArgumentType, "repeats"),
        ({"wait": -0.5}, InvalidArgument, "wait"),
        ({"until": datetime(2030, 1, 1)}, InvalidArgument, "until"),
    ],
)
def test_repeat_rejects(
    jc: JobCollection, kwargs: dict[str, Any], error: type[Exception], name: str
) -> None:
    job = jc.create_job("t")
    before = job.doc.to_mongo()
    with pytest.raises(error, match=name):
        job.repeat(**kwargs)
    assert job.doc.to_mongo() == before


def test_delay_and_after(jc: JobCollection, clock: ManualClock) -> None:
    assert jc.create_job("t").delay(90).doc.after == START + timedelta(seconds=90)
    assert jc.create_job("t").delay(timedelta(minutes=1)).doc.after == START + timedelta(minutes=1)
    assert jc.create_job("t").delay().doc.after == START
    clock.advance(10)
    assert jc.create_job("t").delay(0.5).doc.after == START + timedelta(seconds=10.5)
    paris = datetime(2026, 3, 1, 9, 0, tzinfo=timezone(timedelta(hours=1)))
    assert jc.create_job("t").after(paris).doc.after == datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("seconds", "error"),
    [(-1, InvalidArgument), ("1", InvalidArgumentType), (True, InvalidArgumentType)],
)
def test_delay_rejects(jc: JobCollection, seconds: Any, error: type[Exception]) -> None:
    job = jc.create_job("t")
    with pytest.raises(error, match="seconds"):
        job.delay(seconds)
    assert job.doc.after == datetime(1970, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("when", "error"),
    [
        (123, InvalidArgumentType),
        ("2026-01-01T00:00:00Z", InvalidArgumentType),
        (datetime(2026, 1, 1), InvalidArgument),
        (None, InvalidArgumentType),
    ],
)
def test_after_rejects(jc: JobCollection, when: Any, error: type[Exception]) -> None:
    job = jc.create_job("t")
    with pytest.raises(error, match="when"):
        job.after(when)
    assert job.doc.after == datetime(1970, 1, 1, tzinfo=UTC)


async def test_depends(jc: JobCollection) -> None:
    first = jc.create_job("a")
    second = jc.create_job("b")
    first_id = await first.save()
    second_id = await second.save()
    job = jc.create_job("c").depends(first)
    assert job.doc.depends == [first_id]
    job.depends([second])
    assert job.doc.depends == [first_id, second_id]
    assert job.doc.resolved == []
    assert jc.create_job("c").depends((first, second)).doc.depends == [first_id, second_id]
    assert job.depends(None).doc.depends == []
    assert job.depends([first]).depends([]).doc.depends == []
    assert job.doc.resolved == []


async def test_depends_rejects_unsaved_and_non_jobs(jc: JobCollection) -> None:
    saved = jc.create_job("a")
    await saved.save()
    job = jc.create_job("c")
    with pytest.raises(InvalidArgument, match=r"jobs\[1\]"):
        job.depends([saved, jc.create_job("unsaved")])
    with pytest.raises(InvalidArgument, match=r"jobs\[0\]"):
        job.depends(jc.create_job("unsaved"))
    with pytest.raises(InvalidArgumentType, match=r"jobs\[0\]"):
        job.depends(["not a job"])  # type: ignore[list-item]
    assert job.doc.depends == []


async def test_depends_on_saved_job_is_stored(jc: JobCollection) -> None:
    antecedent = jc.create_job("a")
    ante_id = await antecedent.save()
    dep_id = await jc.create_job("b").depends(antecedent).save()
    raw = await _raw(jc, dep_id)
    assert raw["depends"] == [ante_id]
    assert raw["resolved"] == []
    assert raw["status"] == "waiting"


# --- unsaved jobs: local log, progress, pause, resume ------------------------------------------


async def test_log_on_unsaved_job_is_local(jc: JobCollection, clock: ManualClock) -> None:
    job = jc.create_job("t")
    clock.advance(1)
    commands = jc.commands
    assert await job.log("hello", level="warning", data={"k": 1}) is True
    assert jc.commands == commands
    entries = job.doc.log or []
    assert [(e.message, e.level, e.data) for e in entries][-1] == ("hello", "warning", {"k": 1})
    assert entries[-1].time == clock.now()
    job_id = await job.save()
    raw = await _raw(jc, job_id)
    assert [e["message"] for e in raw["log"]][:3] == ["Constructed", "hello", "Job Submitted"]


async def test_progress_on_unsaved_job_is_local(jc: JobCollection) -> None:
    job = jc.create_job("t")
    commands = jc.commands
    assert await job.progress(1, 4) is True
    assert job.doc.progress.completed == 1
    assert job.doc.progress.total == 4
    assert job.doc.progress.percent == 25
    assert jc.commands == commands


async def test_pause_and_resume_unsaved_job_change_local_status(jc: JobCollection) -> None:
    job = jc.create_job("t")
    commands = jc.commands
    assert await job.pause() is True
    assert job.doc.status == "paused"
    assert await job.resume() is True
    assert job.doc.status == "waiting"
    assert await job.pause() is True
    assert jc.commands == commands
    job_id = await job.save()
    assert (await _raw(jc, job_id))["status"] == "paused"


@pytest.mark.parametrize("action", ["ready", "cancel", "restart", "rerun", "remove", "refresh"])
async def test_actions_on_unsaved_job_raise(jc: JobCollection, action: str) -> None:
    job = jc.create_job("t")
    commands = jc.commands
    with pytest.raises(JobNotSaved, match=action):
        await getattr(job, action)()
    assert jc.commands == commands
    assert await jc.collection.count_documents({}) == 0


@pytest.mark.parametrize("action", ["done", "fail"])
async def test_done_and_fail_need_a_claim(jc: JobCollection, action: str) -> None:
    unsaved = jc.create_job("t")
    with pytest.raises(JobNotSaved, match=action):
        await getattr(unsaved, action)()
    saved = jc.create_job("t")
    job_id = await saved.save()
    before = await _raw(jc, job_id)
    commands = jc.commands
    with pytest.raises(JobNotSaved, match="runId"):
        await getattr(saved, action)()
    assert jc.commands == commands
    assert await _raw(jc, job_id) == before
    assert saved.reported is False


# --- log and progress arguments --------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "name"),
    [
        ((123,), {}, InvalidArgumentType, "message"),
        ((None,), {}, InvalidArgumentType, "message"),
        (("m",), {"level": "fatal"}, InvalidArgument, "level"),
        (("m",), {"level": None}, InvalidArgument, "level"),
        (("m",), {"data": "x"}, InvalidArgumentType, "data"),
        (("m",), {"data": {"$bad": 1}}, InvalidArgument, "data"),
        (("m",), {"echo": "loud"}, InvalidArgument, "echo"),
        (("x" * 10_001,), {}, InvalidArgument, "message"),
    ],
)
async def test_log_rejects(
    jc: JobCollection,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    error: type[Exception],
    name: str,
) -> None:
    unsaved = jc.create_job("t")
    with pytest.raises(error, match=name):
        await unsaved.log(*args, **kwargs)
    assert [e.message for e in unsaved.doc.log or []] == ["Constructed"]
    saved = jc.create_job("t")
    job_id = await saved.save()
    before = await _raw(jc, job_id)
    with pytest.raises(error, match=name):
        await saved.log(*args, **kwargs)
    assert await _raw(jc, job_id) == before


@pytest.mark.parametrize(
    ("completed", "total", "name"),
    [
        (2, 1, "completed"),
        (0, 0, "total"),
        (-1, 100, "completed"),
        (1, -1, "total"),
        ("1", 2, "completed"),
        (1, float("inf"), "total"),
        (float("nan"), 1, "completed"),
        (True, 2, "completed"),
    ],
)
async def test_progress_rejects(jc: JobCollection, completed: Any, total: Any, name: str) -> None:
    unsaved = jc.create_job("t")
    with pytest.raises(InvalidArgument, match=name):
        await unsaved.progress(completed, total)
    assert unsaved.doc.progress.completed == 0
    claimed = await _claimed(jc)
    before = await _raw(jc, claimed.id)
    with pytest.raises(InvalidArgument, match=name):
        await claimed.progress(completed, total)
    assert await _raw(jc, claimed.id) == before


async def test_saved_log_and_progress_go_to_the_database(jc: JobCollection) -> None:
    claimed = await _claimed(jc)
    assert await claimed.log("step", level="success", data={"n": 1}) is True
    assert await claimed.progress(3, 6) is True
    assert claimed.doc.progress.percent == 50
    raw = await _raw(jc, claimed.id)
    last = raw["log"][-1]
    assert (last["message"], last["level"], last["data"]) == ("step", "success", {"n": 1})
    assert last["runId"] == claimed.doc.run_id
    assert raw["progress"] == {"completed": 3, "total": 6, "percent": 50}


async def test_progress_on_a_saved_unclaimed_job_is_none(jc: JobCollection) -> None:
    job = jc.create_job("t")
    job_id = await job.save()
    before = await _raw(jc, job_id)
    assert await job.progress(1, 2) is None
    assert await _raw(jc, job_id) == before


# --- done and fail values ------------------------------------------------------------------


async def test_done_wraps_non_dict_results(jc: JobCollection) -> None:
    job = await _claimed(jc)
    assert await job.done("Done!") is True
    assert job.reported is True
    raw = await _raw(jc, job.id)
    assert raw["status"] == "completed"
    assert raw["result"] == {"value": "Done!"}


@pytest.mark.parametrize(
    ("result", "stored"),
    [
        (None, {}),
        ({"sent": 3}, {"sent": 3}),
        (42, {"value": 42}),
        ([1, "two"], {"value": [1, "two"]}),
        (False, {"value": False}),
    ],
)
async def test_done_results(jc: JobCollection, result: Any, stored: dict[str, Any]) -> None:
    job = await _claimed(jc)
    assert await job.done(result) is True
    assert (await _raw(jc, job.id))["result"] == stored


async def test_fail_default_error(jc: JobCollection) -> None:
    job = await _claimed(jc)
    assert await job.fail() is True
    raw = await _raw(jc, job.id)
    assert raw["status"] == "failed"  # a new job has no retries left after its attempt
    assert len(raw["failures"]) == 1
    failure = raw["failures"][0]
    assert failure["value"] == "No error information provided"
    assert failure["runId"] is not None
    assert (
        raw["log"][-1]["message"] == "Job Failed with Fatal Error: No error information provided."
    )


async def test_fail_wraps_non_dict_errors(jc: JobCollection) -> None:
    job = await _claimed(jc)
    assert await job.fail("boom") is True
    assert (await _raw(jc, job.id))["failures"][0]["value"] == "boom"
    job = await _claimed(jc)
    assert await job.fail({"code": 7, "reason": "x"}) is True
    failure = (await _raw(jc, job.id))["failures"][0]
    assert (failure["code"], failure["reason"]) == (7, "x")


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ({"$set": 1}, InvalidArgument),
        ({"a.b": 1}, InvalidArgument),
        (float("nan"), InvalidArgument),
    ],
)
@pytest.mark.parametrize("action", ["done", "fail"])
async def test_done_and_fail_reject_unstorable_values(
    jc: JobCollection, action: str, value: Any, error: type[Exception]
) -> None:
    job = await _claimed(jc)
    before = await _raw(jc, job.id)
    with pytest.raises(error):
        await getattr(job, action)(value)
    assert await _raw(jc, job.id) == before


async def test_done_and_rerun_accept_timedelta(jc: JobCollection, clock: ManualClock) -> None:
    antecedent = await _claimed(jc, "a")
    dependent_id = await jc.create_job("b").depends(antecedent).save()
    assert await antecedent.done(delay_deps=timedelta(seconds=30)) is True
    raw = await _raw(jc, dependent_id)
    assert raw["status"] == "waiting"
    assert raw["after"].replace(tzinfo=UTC) == clock.now() + timedelta(seconds=30)
    new_id = await antecedent.rerun(wait=timedelta(minutes=1))
    assert new_id
    assert (await _raw(jc, new_id))["after"].replace(tzinfo=UTC) == clock.now() + timedelta(
        minutes=1
    )


async def test_collection_durations_accept_timedelta(jc: JobCollection) -> None:
    await jc.create_job("t").save()
    [job] = await jc.get_work("t", work_timeout=timedelta(seconds=30))
    raw = await _raw(jc, job.id)
    assert raw["workTimeout"] == 30_000
    assert raw["expiresAfter"].replace(tzinfo=UTC) == START + timedelta(seconds=30)


# --- echo -------------------------------------------------------------------------------------


def _echoed(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "jobcollection.job"]


async def test_log_echo(jc: JobCollection, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="jobcollection.job")
    job = jc.create_job("t")
    await job.log("quiet")
    assert _echoed(caplog) == []
    await job.log("plain", echo=True)
    await job.log("careful", level="warning", echo=True)
    await job.log("broken", level="danger", echo=True)
    echoed = _echoed(caplog)
    assert [level for level, _ in echoed] == [logging.INFO, logging.WARNING, logging.ERROR]
    assert [m.split(": ")[-1] for _, m in echoed] == ["plain", "careful", "broken"]


async def test_log_echo_threshold(jc: JobCollection, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="jobcollection.job")
    job = jc.create_job("t")
    for level in ("info", "success", "warning", "danger"):
        await job.log(f"at {level}", level=level, echo="warning")
    assert [m.split(": ")[-1] for _, m in _echoed(caplog)] == ["at warning", "at danger"]
    caplog.clear()
    await job.log("ok", level="success", echo="success")
    await job.log("info", level="info", echo="success")
    assert [m.split(": ")[-1] for _, m in _echoed(caplog)] == ["ok"]


async def test_progress_echo(jc: JobCollection, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="jobcollection.job")
    job = jc.create_job("t")
    await job.progress(1, 4)
    assert _echoed(caplog) == []
    await job.progress(1, 4, echo=True)
    [(level, message)] = _echoed(caplog)
    assert level == logging.INFO
    assert "25.0%" in message
