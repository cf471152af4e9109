"""Cancelling running jobs and timing worker calls out: a cancelled job's worker is cancelled
(`job.cancelled`, `cancel_grace`), a worker call that runs too long is failed not fatally
(`process_jobs(timeout=)`, `Job.timeout`), and the ways a queue learns of a cancel (a cancel in the
same process, a change stream, the heartbeat).

No test sleeps to let time pass: workers signal through events, queues are driven by
trigger(), drain() and heartbeat_now(), and every wait is bounded. The timeout and grace tests
use tiny real durations (50 ms, 10 ms): they are what those tests are about.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

import pytest
from mongomock.filtering import filter_applies

from conftest import MakeJC
from helpers import stored
from jobcollection import (
    ChangeStreamSource,
    InvalidArgument,
    InvalidArgumentType,
    Job,
    JobCollection,
    JobQueue,
    ManualClock,
    MethodEvent,
)
from jobcollection.model.document import TIMEOUT
from jobcollection.mongo.wakeup import CancelSource, LocalCancels, WakeupSource, cancel_pipeline

pytestmark = pytest.mark.both_sides

T = TypeVar("T")
BOUND = 5.0
"""Seconds any single wait in these tests may take before it counts as a hang."""


async def within(awaitable: Awaitable[T]) -> T:
    async with asyncio.timeout(BOUND):
        return await awaitable


class Hang:
    """A worker that runs until cancelled, ignoring the first `swallow` cancellations, and
    records its calls, its cancellations and its cleanup (its finally)."""

    def __init__(self, swallow: int = 0) -> None:
        self.swallow = swallow
        self.calls: list[Any] = []
        self.cancellations = 0
        self.started = asyncio.Event()
        self.cancelled = asyncio.Event()
        self.cleaned_up = asyncio.Event()

    async def __call__(self, arg: Any) -> None:
        self.calls.append(arg)
        self.started.set()
        try:
            while True:
                try:
                    await asyncio.Event().wait()
                except asyncio.CancelledError:
                    self.cancellations += 1
                    self.cancelled.set()
                    if self.cancellations > self.swallow:
                        raise
        finally:
            self.cleaned_up.set()


MakeQueue = Callable[..., JobQueue]


@pytest.fixture
async def make_queue(jc: JobCollection) -> AsyncIterator[MakeQueue]:
    """jc.process_jobs with polling and wake-up off unless given; every queue made is shut
    down (hard) after the test."""
    made: list[JobQueue] = []

    def make(worker: Any, type_or_types: Any = "work", **options: Any) -> JobQueue:
        options.setdefault("poll_interval", None)
        options.setdefault("wakeup", False)
        queue = jc.process_jobs(type_or_types, worker, **options)
        made.append(queue)
        return queue

    yield make
    for queue in made:
        await within(queue.shutdown("hard", quiet=True))


async def save(jc: JobCollection, count: int = 1, **retry: Any) -> list[Any]:
    ids = []
    for n in range(count):
        job = jc.create_job("work", {"n": n})
        if retry:
            job.retry(**retry)
        ids.append(await job.save())
    return ids


def reports(jc: JobCollection) -> list[str]:
    """The jobDone and jobFail calls made from now on."""
    seen: list[str] = []

    def record(event: MethodEvent) -> None:
        seen.append(event.method)

    jc.events.on("jobDone", record)
    jc.events.on("jobFail", record)
    return seen


# --- cancelling a running job ------------------------------------------------------------------


@pytest.mark.parametrize("how", ["job.cancel", "jc.cancel_jobs"])
async def test_a_job_cancelled_in_the_same_process_stops_its_worker_at_once(
    jc: JobCollection, make_queue: MakeQueue, how: str
) -> None:
    [job_id] = await save(jc, retries=3, wait=0)
    hang = Hang()
    queue = make_queue(hang)  # its heartbeat is 20 s away: the cancel itself tells the queue
    await within(hang.started.wait())
    sent = reports(jc)
    if how == "job.cancel":
        job = await jc.get_job(job_id)
        assert job is not None and await job.cancel()
    else:
        assert await jc.cancel_jobs([job_id])
    await within(hang.cleaned_up.wait())
    await within(queue.drain())
    queue.trigger()
    await within(queue.drain())
    doc = await stored(jc, job_id)
    assert (doc["status"], doc["retried"], doc.get("failures")) == ("cancelled", 1, None)
    assert (hang.cancellations, len(hang.calls), sent) == (1, 1, [])
    assert hang.calls[0].cancelled
    assert queue.idle()


async def test_a_cancel_from_elsewhere_is_found_by_the_heartbeat(
    jc: JobCollection, make_jc: MakeJC, make_queue: MakeQueue
) -> None:
    [job_id] = await save(jc)
    hang = Hang()
    queue = make_queue(hang)
    await within(hang.started.wait())
    other = await make_jc(started=False)  # another process, as far as the queue can tell
    assert await other.cancel_jobs([job_id])
    for _ in range(5):
        await asyncio.sleep(0)
    assert (queue.running(), hang.cleaned_up.is_set()) == (1, False)
    assert await within(queue.heartbeat_now()) == 0
    await within(hang.cleaned_up.wait())
    await within(queue.drain())
    assert (await stored(jc, job_id))["status"] == "cancelled"


async def test_a_job_whose_lease_ran_out_has_its_worker_cancelled(
    jc: JobCollection, make_queue: MakeQueue, clock: ManualClock
) -> None:
    [job_id] = await save(jc)
    hang = Hang()
    queue = make_queue(hang, work_timeout=3)
    await within(hang.started.wait())
    clock.advance(4)  # no heartbeat: as if the process hung
    assert (await jc.run_server_pass()).expired == 1
    sent = reports(jc)
    assert await within(queue.heartbeat_now()) == 0
    await within(hang.cleaned_up.wait())
    await within(queue.drain())
    doc = await stored(jc, job_id)
    assert (doc["status"], len(doc["failures"]), sent) == ("failed", 1, [])  # the server's


async def test_a_worker_that_swallows_the_cancel_is_cancelled_again_after_the_grace(
    jc: JobCollection, make_queue: MakeQueue, caplog: pytest.LogCaptureFixture
) -> None:
    [job_id] = await save(jc)
    hang = Hang(swallow=2)
    queue = make_queue(hang, cancel_grace=0.01)
    await within(hang.started.wait())
    with caplog.at_level(logging.WARNING, "jobcollection.queue"):
        assert await jc.cancel_jobs([job_id])
        await within(hang.cleaned_up.wait())
        await within(queue.drain())
    again = [r for r in caplog.records if "cancelling it again" in r.getMessage()]
    assert [r.levelno for r in again] == [logging.WARNING] * 2
    assert hang.cancellations == 3
    assert (await stored(jc, job_id))["status"] == "cancelled"


async def test_a_hard_shutdown_leaves_a_cancelled_job_whose_worker_lingers_cancelled(
    jc: JobCollection, make_queue: MakeQueue
) -> None:
    [job_id] = await save(jc)
    hang = Hang(swallow=1)
    queue = make_queue(hang)  # a grace of 5 s: the shutdown comes first
    await within(hang.started.wait())
    sent = reports(jc)
    assert await jc.cancel_jobs([job_id])
    await within(hang.cancelled.wait())
    await within(queue.shutdown("hard"))
    assert (hang.cancellations, hang.cleaned_up.is_set(), sent) == (2, True, [])
    assert (await stored(jc, job_id))["status"] == "cancelled"


async def test_a_hard_shutdown_fails_a_timed_out_job_whose_worker_lingers_once(
    jc: JobCollection, make_queue: MakeQueue
) -> None:
    [job_id] = await save(jc)
    hang = Hang(swallow=1)
    queue = make_queue(hang, timeout=0.05)  # a grace of 5 s: the shutdown comes first
    sent = reports(jc)
    await within(hang.cancelled.wait())
    await within(queue.shutdown("hard"))
    assert (hang.cancellations, sent) == (2, ["jobFail"])
    doc = await stored(jc, job_id)
    assert (doc["status"], [f["value"] for f in doc["failures"]]) == (
        "failed",
        ["Worker shutdown"],
    )


async def test_a_payload_batch_with_some_jobs_cancelled_runs_on_and_reports_the_others(
    jc: JobCollection, make_queue: MakeQueue
) -> None:
    ids = await save(jc, 3)
    go = asyncio.Event()
    seen: list[list[bool]] = []

    async def worker(jobs: list[Job]) -> str:
        seen.append([job.cancelled for job in jobs])
        await go.wait()
        seen.append([job.cancelled for job in jobs])
        return "done"

    queue = make_queue(worker, payload=3)
    await within(queue.settle())
    assert queue.running() == 1
    assert await jc.cancel_jobs([ids[1]])
    assert await within(queue.heartbeat_now()) == 2  # found lost by now, however told
    assert queue.running() == 1
    go.set()
    await within(queue.drain())
    assert seen == [[False, False, False], [False, True, False]]
    docs = [await stored(jc, job_id) for job_id in ids]
    assert [d["status"] for d in docs] == ["completed", "cancelled", "completed"]
    assert docs[0]["result"] == {"value": "done"}


@pytest.mark.local_only("orders a local heartbeat's answer against the start of a batch")
async def test_a_batch_whose_claims_are_lost_before_it_starts_never_runs(
    jc: JobCollection, make_jc: MakeJC, make_queue: MakeQueue
) -> None:
    first, second = await save(jc, 2)
    answered = asyncio.Event()
    resume_heartbeat = asyncio.Event()

    async def hold_heartbeat(event: MethodEvent) -> None:  # the answer is in; it waits
        answered.set()
        await resume_heartbeat.wait()

    jc.events.on("jobHeartbeat", hold_heartbeat)
    calls: list[Any] = []

    async def worker(job: Job) -> str:
        calls.append(job.id)
        if job.id == first:
            await answered.wait()
            resume_heartbeat.set()  # the heartbeat goes on once this call is over and the
        return "done"  # queue has started the second job's task, before that task runs

    queue = make_queue(worker, prefetch=1, cancel_grace=0.01)
    await within(queue.settle())
    assert (queue.running(), queue.length()) == (1, 1)
    other = await make_jc(started=False)
    assert await other.cancel_jobs([second])
    assert await within(queue.heartbeat_now()) == 1
    await within(queue.drain())
    assert calls == [first]
    assert (await stored(jc, first))["status"] == "completed"
    assert (await stored(jc, second))["status"] == "cancelled"
    assert queue.idle()


async def test_a_job_being_reported_by_its_worker_is_not_taken_for_lost(
    jc: JobCollection, make_queue: MakeQueue
) -> None:
    [job_id] = await save(jc)
    reporting = asyncio.Event()
    answer = asyncio.Event()
    finished = asyncio.Event()

    async def slow_done(event: MethodEvent) -> None:  # the report is stored; its answer waits
        reporting.set()
        await answer.wait()

    jc.events.on("jobDone", slow_done)

    async def worker(job: Job) -> None:
        await job.done("mine")
        finished.set()

    queue = make_queue(worker)
    await within(reporting.wait())
    assert await within(queue.heartbeat_now()) == 0  # no longer held: it is completed
    answer.set()
    await within(finished.wait())
    await within(queue.drain())
    assert (await stored(jc, job_id))["status"] == "completed"


# --- timeouts ----------------------------------------------------------------------------------


async def test_a_worker_call_that_runs_too_long_fails_its_job_which_is_retried(
    jc: JobCollection, make_queue: MakeQueue
) -> None:
    [job_id] = await save(jc, retries=1, wait=0)
    hang = Hang()

    async def worker(job: Job) -> str:
        if not hang.calls:
            await hang(job)
        return "second time lucky"

    queue = make_queue(worker, timeout=0.05)
    await within(hang.cleaned_up.wait())
    await within(queue.drain())
    doc = await stored(jc, job_id)
    assert (doc["status"], doc["result"]) == ("completed", {"value": "second time lucky"})
    [failure] = doc["failures"]
    assert failure["value"] == failure["message"] == "timed out after 0.05 s"
    assert failure["type"] == "TimeoutError"


async def test_a_timed_out_job_without_retries_left_fails(
    jc: JobCollection, make_queue: MakeQueue
) -> None:
    [job_id] = await save(jc)
    queue = make_queue(Hang(), timeout=timedelta(milliseconds=50))
    await within(queue.drain())
    doc = await stored(jc, job_id)
    assert (doc["status"], doc["failures"][-1]["value"]) == ("failed", "timed out after 0.05 s")


@pytest.mark.parametrize(
    ("queue_timeout", "job_timeout", "message"),
    [(30, 0.05, "timed out after 0.05 s"), (0.05, 0.06, "timed out after 0.06 s")],
    ids=["shorter", "longer"],
)
async def test_a_job_timeout_overrides_the_queue_timeout(
    jc: JobCollection,
    make_queue: MakeQueue,
    queue_timeout: float,
    job_timeout: float,
    message: str,
) -> None:
    job_id = await jc.create_job("work").timeout(job_timeout).save()
    queue = make_queue(Hang(), timeout=queue_timeout)
    await within(queue.drain())
    assert (await stored(jc, job_id))["failures"][-1]["value"] == message


async def test_a_payload_batch_is_bounded_by_the_smallest_timeout(
    jc: JobCollection, make_queue: MakeQueue
) -> None:
    ids = [
        await jc.create_job("work").timeout(0.08).save(),
        await jc.create_job("work").save(),  # the queue's 0.09 s
        await jc.create_job("work").timeout(0.05).save(),
    ]
    hang = Hang()
    queue = make_queue(hang, payload=3, timeout=0.09)
    await within(queue.drain())
    assert [len(call) for call in hang.calls] == [3]
    for job_id in ids:
        doc = await stored(jc, job_id)
        assert (doc["status"], doc["failures"][-1]["value"]) == (
            "failed",
            "timed out after 0.05 s",
        )


async def test_a_queue_without_a_timeout_lets_workers_run(
    jc: JobCollection, make_queue: MakeQueue
) -> None:
    [job_id] = await save(jc)
    go = asyncio.Event()

    async def worker(job: Job) -> str:
        await go.wait()
        return "ok"

    queue = make_queue(worker, timeout=None)
    await within(queue.settle())
    go.set()
    await within(queue.drain())
    assert (await stored(jc, job_id))["status"] == "completed"


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (-1, InvalidArgument),
        (0, InvalidArgument),
        (2**64, InvalidArgument),
        (timedelta(0), InvalidArgument),
        (float("nan"), InvalidArgument),
        ("5", InvalidArgumentType),
        (True, InvalidArgumentType),
    ],
)
async def test_job_timeout_checks_its_argument_and_leaves_the_job_unchanged(
    jc: JobCollection, value: Any, error: type[Exception]
) -> None:
    job = jc.create_job("work").timeout(2)
    with pytest.raises(error) as raised:
        job.timeout(value)
    assert isinstance(raised.value, InvalidArgument) and raised.value.argument == "seconds"
    assert job.doc.timeout == 2000


async def test_job_timeout_takes_seconds_or_a_timedelta_and_none_clears_it(
    jc: JobCollection,
) -> None:
    job = jc.create_job("work")
    assert job.timeout(timedelta(minutes=1)).doc.timeout == 60_000
    assert job.timeout(0.0011).doc.timeout == 2  # whole milliseconds, rounded up
    assert job.timeout(None).doc.timeout is None


@pytest.mark.parametrize(
    ("options", "argument", "error"),
    [
        ({"timeout": 0}, "timeout", InvalidArgument),
        ({"timeout": -1}, "timeout", InvalidArgument),
        ({"timeout": "1"}, "timeout", InvalidArgumentType),
        ({"cancel_grace": 0}, "cancel_grace", InvalidArgument),
        ({"cancel_grace": None}, "cancel_grace", InvalidArgumentType),
    ],
)
async def test_queue_timeouts_are_checked(
    jc: JobCollection, options: dict[str, Any], argument: str, error: type[Exception]
) -> None:
    with pytest.raises(error) as raised:
        jc.process_jobs("work", Hang(), poll_interval=None, wakeup=False, **options)
    assert isinstance(raised.value, InvalidArgument) and raised.value.argument == argument


# --- the timeout in storage --------------------------------------------------------------------


async def test_the_timeout_is_stored_in_private_and_read_back(jc: JobCollection) -> None:
    job_id = await jc.create_job("work").timeout(1.5).save()
    doc = await stored(jc, job_id)
    assert doc["_private"] == {TIMEOUT.split(".", 1)[1]: 1500}
    assert "timeout" not in doc  # v1.x's fields only (conftest checks its schema too)
    job = await jc.get_job(job_id)
    assert job is not None and job.doc.timeout == 1500
    [claimed] = await jc.get_work("work")
    assert claimed.doc.timeout == 1500


async def test_resaving_a_paused_job_sets_or_clears_its_timeout(jc: JobCollection) -> None:
    job = jc.create_job("work").timeout(3)
    await job.pause()
    job_id = await job.save()  # inserted paused
    assert (await stored(jc, job_id))["_private"] == {"jobcollectionTimeout": 3000}
    job.timeout(None)
    await job.save()  # resubmitted
    doc = await stored(jc, job_id)
    assert doc["status"] != "paused"
    assert "jobcollectionTimeout" not in doc.get("_private", {})
    assert await job.pause()
    job.timeout(5)
    await job.save()
    assert (await stored(jc, job_id))["_private"] == {"jobcollectionTimeout": 5000}


async def test_a_repeat_and_a_rerun_keep_the_timeout(jc: JobCollection) -> None:
    job = jc.create_job("work").repeat(1, wait=0).timeout(2)
    await job.save()
    [claimed] = await jc.get_work("work")
    repeat_id = await claimed.done(repeat_id=True)
    assert (await stored(jc, repeat_id))["_private"]["jobcollectionTimeout"] == 2000
    rerun_id = await claimed.rerun()
    assert (await stored(jc, rerun_id))["_private"]["jobcollectionTimeout"] == 2000
    rerun = await jc.get_job(rerun_id)
    assert rerun is not None and rerun.doc.timeout == 2000


# --- how a queue learns of a cancel ------------------------------------------------------------


def test_local_cancels_tell_subscribers_until_they_unsubscribe() -> None:
    hub = LocalCancels()
    told: list[list[Any]] = []

    def failing(ids: Any) -> None:
        raise RuntimeError("a broken queue")

    hub.subscribe(failing)  # its error is logged; the others are still told
    unsubscribe = hub.subscribe(lambda ids: told.append(list(ids)))
    hub.publish(["a"])
    unsubscribe()
    unsubscribe()  # twice is harmless
    hub.publish(["b"])
    assert told == [["a"]]


async def test_a_collection_publishes_the_ids_it_is_asked_to_cancel_or_remove(
    jc: JobCollection,
) -> None:
    hub = jc.service.cancels()
    assert isinstance(hub, LocalCancels)
    told: list[list[Any]] = []
    hub.subscribe(lambda ids: told.append(list(ids)))
    job_id = await jc.create_job("work").save()
    assert await jc.cancel_jobs([job_id])
    assert await jc.remove_jobs([job_id])
    assert told == [[job_id], [job_id]]


def cancelled_change(fields: dict[str, Any], op: str = "update") -> dict[str, Any]:
    return {
        "_id": {"_data": "t"},
        "operationType": op,
        "documentKey": {"_id": "job"},
        "updateDescription": {"updatedFields": fields, "removedFields": []},
    }


def test_the_cancel_pipeline_matches_updates_that_cancel_a_job() -> None:
    [match, project] = cancel_pipeline()
    assert project == {"$project": {"_id": 1, "documentKey": 1}}

    def matches(change: dict[str, Any]) -> bool:
        return bool(filter_applies(match["$match"], change))

    assert matches(cancelled_change({"status": "cancelled", "updated": 1}))
    assert not matches(cancelled_change({"status": "completed", "runId": None}))
    assert not matches(cancelled_change({"status": "ready"}))
    assert not matches(cancelled_change({"log.3": {"message": "hi"}}))
    assert not matches(cancelled_change({}, op="delete"))


class FakeStream:
    """A change stream that yields the given changes, then waits for ever."""

    def __init__(self, *changes: dict[str, Any]) -> None:
        self.changes = list(changes)
        self.resume_token: dict[str, str] | None = None
        self.closed = False

    def __aiter__(self) -> FakeStream:
        return self

    async def __anext__(self) -> dict[str, Any]:
        await asyncio.sleep(0)
        if not self.changes:
            await asyncio.Event().wait()
        change = self.changes.pop(0)
        self.resume_token = change["_id"]
        return change

    async def close(self) -> None:
        self.closed = True


class FakeCollection:
    def __init__(self, stream: FakeStream) -> None:
        self.stream = stream
        self.pipelines: list[Any] = []

    def watch(self, pipeline: Any, resume_after: Any = None) -> FakeStream:
        self.pipelines.append(pipeline)
        return self.stream


async def test_a_change_stream_source_yields_the_ids_of_cancelled_jobs() -> None:
    stream = FakeStream(
        cancelled_change({"status": "cancelled"}),
        {"_id": {"_data": "u"}, "operationType": "update"},  # says no id: check every claim
    )
    collection = FakeCollection(stream)
    source = ChangeStreamSource(collection)
    assert isinstance(source, CancelSource)
    cancellations: Any = source.cancellations()
    got = [await within(anext(cancellations)) for _ in range(3)]
    await cancellations.aclose()
    assert got == [None, "job", None]  # None first: it opened, and may have missed some
    assert collection.pipelines == [cancel_pipeline()]
    assert stream.closed


class FakeCancels:
    """A wake-up source that is also a cancel source, driven by the test (or `broken`)."""

    def __init__(self, broken: bool = False) -> None:
        self.items: asyncio.Queue[Any] = asyncio.Queue()
        self.broken = broken

    async def signals(self, types: Any) -> AsyncIterator[object]:
        await asyncio.Event().wait()
        yield "never"

    async def cancellations(self) -> AsyncIterator[Any]:
        if self.broken:
            raise RuntimeError("stream broke")
        while True:
            yield await self.items.get()


@pytest.mark.parametrize("told", ["id", "rescan"])
async def test_a_cancel_source_tells_the_queue_of_cancels_from_elsewhere(
    jc: JobCollection, make_jc: MakeJC, make_queue: MakeQueue, told: str
) -> None:
    [job_id] = await save(jc)
    source = FakeCancels()
    assert isinstance(source, WakeupSource) and isinstance(source, CancelSource)
    hang = Hang()
    queue = make_queue(hang, wakeup=source)
    await within(hang.started.wait())
    other = await make_jc(started=False)
    assert await other.cancel_jobs([job_id])
    source.items.put_nowait("some other job")  # held by no one here: nothing to check
    source.items.put_nowait(job_id if told == "id" else None)
    await within(hang.cleaned_up.wait())
    await within(queue.drain())
    assert (await stored(jc, job_id))["status"] == "cancelled"


async def test_a_failing_cancel_source_leaves_the_heartbeat(
    jc: JobCollection, make_queue: MakeQueue, caplog: pytest.LogCaptureFixture
) -> None:
    source = FakeCancels(broken=True)
    with caplog.at_level(logging.WARNING, "jobcollection.queue"):
        queue = make_queue(Hang(), wakeup=source)
        await within(queue.shutdown(quiet=True))
    assert any("cancel stream failed" in r.getMessage() for r in caplog.records)
