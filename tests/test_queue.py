"""JobQueue (jc.process_jobs): options, claiming, workers, shutdown levels, heartbeat, wake-up.

No test sleeps to let time pass: queues are driven by their start, trigger() and worker
completions, leases by the ManualClock and `heartbeat_now()`, and every wait is bounded. Two
tests check that the queue's own timers exist (a 1 ms poll, a 3 ms lease renewed every 1 ms)
and the example's tests run it as a subprocess. Queues are made with polling and change-stream
wake-up off unless a test is about them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

from helpers import Yielding, clears_follow_ups, messages
from jobcollection import (
    DatabaseError,
    InvalidArgument,
    InvalidArgumentType,
    Job,
    JobCollection,
    JobQueue,
    ManualClock,
    MethodEvent,
    WakeupUnavailable,
)
from jobcollection.model.ops import GetWork
from strict import memory_database

pytestmark = pytest.mark.both_sides

T = TypeVar("T")
BOUND = 10.0
"""Seconds any single wait in these tests may take before it counts as a hang."""


Claim = Callable[[], Awaitable[Any]]


def on_claims(
    monkeypatch: pytest.MonkeyPatch,
    jc: Any,
    handler: Callable[[GetWork, Claim], Awaitable[Any]],
) -> Callable[..., Awaitable[Any]]:
    """Route the service's claims (GetWork operations) through handler(op, claim), where
    claim() runs the claim as the service would; the service's own run, to put back."""
    run = jc.service.run

    async def routed(op: Any, *args: Any) -> Any:
        if isinstance(op, GetWork):
            return await handler(op, lambda: run(op, *args))
        return await run(op, *args)

    monkeypatch.setattr(jc.service, "run", routed)
    return run


async def within(awaitable: Awaitable[T]) -> T:
    return await asyncio.wait_for(awaitable, BOUND)


class Gate:
    """A worker that records what it is given and waits until `release()`."""

    def __init__(self, result: Any = None) -> None:
        self.result = result
        self.calls: list[Any] = []
        self.active = 0
        self.peak = 0
        self.cancelled = 0
        self._open = asyncio.Event()
        self._arrived = asyncio.Condition()

    async def __call__(self, arg: Any) -> Any:
        self.calls.append(arg)
        self.active += 1
        self.peak = max(self.peak, self.active)
        async with self._arrived:
            self._arrived.notify_all()
        try:
            await self._open.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.active -= 1
        return self.result

    def release(self) -> None:
        self._open.set()

    async def wait_for_calls(self, count: int) -> None:
        async def arrived() -> None:
            async with self._arrived:
                await self._arrived.wait_for(lambda: len(self.calls) >= count)

        await within(arrived())

    def sizes(self) -> list[int]:
        return [len(call) if isinstance(call, list) else 1 for call in self.calls]


MakeQueue = Callable[..., JobQueue]


@pytest.fixture
async def make_queue(jc: JobCollection) -> AsyncIterator[MakeQueue]:
    """jc.process_jobs with polling and wake-up off unless given; every queue made is shut
    down (hard) after the test, so no task outlives it."""
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


async def save(jc: JobCollection, count: int, type: str = "work", **retry: Any) -> list[Any]:
    ids = []
    for n in range(count):
        job = jc.create_job(type, {"n": n})
        if retry:
            job.retry(**retry)
        ids.append(await job.save())
    return ids


async def statuses(jc: JobCollection) -> Counter[str]:
    docs = await jc.collection.find({}, {"status": 1}).to_list(None)
    return Counter(doc["status"] for doc in docs)


def claims(jc: JobCollection) -> list[int]:
    """maxJobs of every getWork call from now on."""
    seen: list[int] = []

    def record(event: MethodEvent) -> None:
        seen.append(event.params[1]["maxJobs"])

    jc.events.on("getWork", record)
    return seen


async def noop(job: Job) -> None:
    return None


# --- options -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "argument", "error"),
    [
        ({"type_or_types": ""}, "type_or_types[0]", InvalidArgumentType),
        ({"type_or_types": []}, "type_or_types", InvalidArgumentType),
        ({"type_or_types": ["work", ""]}, "type_or_types[1]", InvalidArgumentType),
        ({"type_or_types": 7}, "type_or_types", InvalidArgumentType),
        ({"worker": "not a function"}, "worker", InvalidArgumentType),
        ({"worker": None}, "worker", InvalidArgumentType),
        ({"concurrency": 0}, "concurrency", InvalidArgument),
        ({"concurrency": -1}, "concurrency", InvalidArgument),
        ({"concurrency": 1.5}, "concurrency", InvalidArgumentType),
        ({"concurrency": True}, "concurrency", InvalidArgumentType),
        ({"payload": 0}, "payload", InvalidArgument),
        ({"payload": "5"}, "payload", InvalidArgumentType),
        ({"prefetch": -1}, "prefetch", InvalidArgument),
        ({"prefetch": 2.0}, "prefetch", InvalidArgumentType),
        ({"poll_interval": -1}, "poll_interval", InvalidArgument),
        ({"poll_interval": "5"}, "poll_interval", InvalidArgumentType),
        ({"poll_interval": True}, "poll_interval", InvalidArgumentType),
        ({"work_timeout": -1}, "work_timeout", InvalidArgument),
        ({"work_timeout": 0}, "work_timeout", InvalidArgument),
        ({"work_timeout": "1m"}, "work_timeout", InvalidArgumentType),
        ({"error_callback": 3}, "error_callback", InvalidArgumentType),
        ({"wakeup": "yes"}, "wakeup", InvalidArgumentType),
    ],
)
async def test_invalid_options_raise_naming_the_option_and_claim_nothing(
    jc: JobCollection, options: dict[str, Any], argument: str, error: type[Exception]
) -> None:
    await save(jc, 1)
    seen = claims(jc)
    arguments: dict[str, Any] = {"type_or_types": "work", "worker": noop, **options}
    with pytest.raises(error) as raised:
        jc.process_jobs(arguments.pop("type_or_types"), arguments.pop("worker"), **arguments)
    assert raised.type is error
    assert raised.value.argument == argument  # type: ignore[attr-defined]
    await asyncio.sleep(0)
    assert seen == []
    assert await statuses(jc) == {"ready": 1}


def test_a_queue_needs_a_running_event_loop() -> None:
    jc = JobCollection.from_database(memory_database("no_loop"))
    with pytest.raises(RuntimeError, match="running event loop"):
        jc.process_jobs("work", noop)


async def test_shutdown_arguments_are_checked_before_anything_stops(
    jc: JobCollection, make_queue: MakeQueue
) -> None:
    queue = make_queue(noop)
    with pytest.raises(InvalidArgument) as raised:
        await queue.shutdown("gentle")  # type: ignore[arg-type]
    assert raised.value.argument == "level"
    with pytest.raises(InvalidArgumentType) as raised:
        await queue.shutdown("soft", quiet="yes")  # type: ignore[arg-type]
    assert raised.value.argument == "quiet"
    await save(jc, 1)
    queue.trigger()
    await within(queue.drain())
    assert await statuses(jc) == {"completed": 1}


# --- claiming ----------------------------------------------------------------------------------


async def test_prefetch_claims_capacity_plus_prefetch_in_one_call(
    jc: JobCollection, make_queue: MakeQueue
) -> None:
    await save(jc, 10)
    seen = claims(jc)
    gate = Gate()
    queue = make_queue(gate, prefetch=4)
    await within(queue.settle())
    assert seen == [5]
    assert (queue.running(), queue.length(), queue.full(), queue.idle()) == (1, 4, True, False)
    assert await statuses(jc) == {"running": 5, "ready": 5}
    gate.release()
    await within(queue.drain())
    assert await statuses(jc) == {"completed": 10}
    assert max(seen) == 5
    assert queue.idle()


async def test_concurrency_runs_that_many_workers_at_once(
    jc: JobCollection, make_queue: MakeQueue
) -> None:
    await save(jc, 10)
    gate = Gate()
    queue = make_queue(gate, concurrency=5)
    await gate.wait_for_calls(5)
    await within(queue.settle())
    assert (queue.running(), queue.length(), queue.full()) == (5, 0, True)
    assert await statuses(jc) == {"running": 5, "ready": 5}
    gate.release()
    await within(queue.drain())
    assert await statuses(jc) == {"completed": 10}
    assert gate.peak == 5
    assert len(gate.calls) == 10


async def test_payload_hands_the_worker_a_list(jc: JobCollection, make_queue: MakeQueue) -> None:
    await save(jc, 7)
    gate = Gate()
    gate.release()
    queue = make_queue(gate, payload=5)
    await within(queue.drain())
    assert gate.sizes() == [5, 2]
    assert all(isinstance(job, Job) for call in gate.calls for job in call)
    assert await statuses(jc) == {"completed": 7}


async def test_payload_with_concurrency_counts_each_batch_as_one_worker(
    jc: JobCollection, make_queue: MakeQueue
) -> None:
    await save(jc, 7)
    seen = claims(jc)
    gate = Gate()
    queue = make_queue(gate, payload=2, concurrency=3)
    await gate.wait_for_calls(3)
    await within(queue.settle())
    assert seen == [6]
    assert gate.sizes() == [2, 2, 2]
    assert (queue.running(), queue.full()) == (3, True)
    gate.release()
    await within(queue.drain())
    assert sorted(gate.sizes()) == [1, 2, 2, 2]
    assert gate.peak == 3
    assert await statuses(jc) == {"completed": 7}


async def test_one_claim_at_a_time_and_triggers_during_a_claim_make_one_more(
    jc: JobCollection, make_queue: MakeQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    await save(jc, 1)
    calls: list[int] = []
    claiming, answer = asyncio.Event(), asyncio.Event()

    async def slow_get_work(op: GetWork, claim: Claim) -> Any:
        calls.append(op.max_jobs)
        jobs = await claim()
        claiming.set()
        await answer.wait()  # the claim is in flight until the test lets it answer
        return jobs

    on_claims(monkeypatch, jc, slow_get_work)
    gate = Gate()
    queue = make_queue(gate, concurrency=3)
    await within(claiming.wait())
    await save(jc, 2)
    for _ in range(3):  # say, three wake-up signals for the new jobs
        queue.trigger()
    assert calls == [3]  # they wait for the claim in flight...
    answer.set()
    await gate.wait_for_calls(3)
    await within(queue.settle())
    assert calls == [3, 2]  # ...and then make exactly one more claim, for the room left
    assert await statuses(jc) == {"running": 3}


async def test_a_trigger_that_comes_as_a_claim_ends_is_not_lost(
    jc: JobCollection, make_queue: MakeQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    await save(jc, 1)
    calls: list[int] = []

    async def first_looks_too_early(op: GetWork, claim: Claim) -> Any:
        calls.append(op.max_jobs)
        return [] if len(calls) == 1 else await claim()  # the first looked before the save

    on_claims(monkeypatch, jc, first_looks_too_early)
    gate = Gate()
    gate.release()
    queue = make_queue(gate, poll_interval=None)
    claims = queue._claims
    task = claims._fetch_task
    assert task is not None

    def ended(task: asyncio.Task[None]) -> None:
        # The claim has made its last look; its own done callback has not run yet: the
        # wake-up for the saved job (a trigger) comes now.
        queue.trigger()
        claims._fetch_finished(task)

    task.remove_done_callback(claims._fetch_finished)
    task.add_done_callback(ended)
    await within(gate.wait_for_calls(1))
    await within(queue.drain())
    assert await statuses(jc) == {"completed": 1}


async def test_polling_disabled_the_queue_claims_on_trigger(
    jc: JobCollection, make_queue: MakeQueue
) -> None:
    gate = Gate()
    gate.release()
    for disabled in (None, 0, timedelta(0)):
        queue = make_queue(gate, poll_interval=disabled)
        await within(queue.settle())
        await save(jc, 1)
        await within(queue.settle())
        assert (await statuses(jc))["ready"] == 1
        queue.trigger()
        await within(queue.drain())
        assert (await statuses(jc))["ready"] == 0
        await within(queue.shutdown(quiet=True))
    assert await statuses(jc) == {"completed": 3}


async def test_work_timeout_is_stored_on_the_claimed_jobs(
    jc: JobCollection, make_queue: MakeQueue
) -> None:
    await save(jc, 1)
    gate = Gate()
    queue = make_queue(gate, work_timeout=timedelta(seconds=30))
    await gate.wait_for_calls(1)
    doc = await jc.collection.find_one({})
    assert doc["workTimeout"] == 30_000
    gate.release()
    await within(queue.drain())


async def test_claim_errors_go_to_the_error_callback_and_the_queue_carries_on(
    jc: JobCollection, make_queue: MakeQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    await save(jc, 1)
    errors: list[Exception] = []

    async def failing_get_work(op: GetWork, claim: Claim) -> Any:
        raise DatabaseError("database error: no primary")

    async def callback(exc: Exception) -> None:
        errors.append(exc)

    run = on_claims(monkeypatch, jc, failing_get_work)
    queue = make_queue(noop, error_callback=callback)
    await within(queue.settle())
    assert [str(e) for e in errors] == ["database error: no primary"]
    assert await statuses(jc) == {"ready": 1}
    monkeypatch.setattr(jc.service, "run", run)
    queue.trigger()
    await within(queue.drain())
    assert await statuses(jc) == {"completed": 1}


async def test_claim_errors_are_logged_without_an_error_callback(
    jc: JobCollection,
    make_queue: MakeQueue,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def failing_get_work(op: GetWork, claim: Claim) -> Any:
        raise DatabaseError("database error: no primary")

    on_claims(monkeypatch, jc, failing_get_work)
    with caplog.at_level(logging.ERROR, "jobcollection.queue"):
        queue = make_queue(noop)
        await within(queue.settle())
    assert any(
        r.levelno == logging.ERROR and "claiming work failed" in r.getMessage()
        for r in caplog.records
    )


# --- pause and resume --------------------------------------------------------------------------


async def test_created_paused_then_resumed(jc: JobCollection, make_queue: MakeQueue) -> None:
    await save(jc, 2)
    seen = claims(jc)
    queue = make_queue(noop)
    queue.pause()
    await within(queue.settle())
    queue.trigger()  # ignored while paused
    await within(queue.settle())
    assert seen == []
    assert await statuses(jc) == {"ready": 2}
    queue.resume()
    await within(queue.drain())
    assert await statuses(jc) == {"completed": 2}


async def test_pause_lets_running_workers_finish_and_holds_queued_jobs(
    jc: JobCollection, make_queue: MakeQueue
) -> None:
    await save(jc, 3)
    gate = Gate()
    queue = make_queue(gate, prefetch=1)
    await gate.wait_for_calls(1)
    await within(queue.settle())
    seen = claims(jc)
    queue.pause()
    gate.release()
    await within(queue.drain())
    assert (queue.running(), queue.length()) == (0, 1)
    assert seen == []
    assert await statuses(jc) == {"completed": 1, "running": 1, "ready": 1}
    queue.resume()
    await within(queue.drain())
    assert await statuses(jc) == {"completed": 3}


# --- the worker contract -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("returned", "stored"),
    [("sent", {"value": "sent"}), ({"sent": 3}, {"sent": 3}), (None, {}), (7, {"value": 7})],
)
async def test_a_returned_value_completes_the_job_with_it(
    jc: JobCollection, make_queue: MakeQueue, returned: Any, stored: dict[str, Any]
) -> None:
    [job_id] = await save(jc, 1)
    gate = Gate(result=returned)
    gate.release()
    queue = make_queue(gate)
    await within(queue.drain())
    job = await jc.get_job(job_id)
    assert job is not None
    assert (job.doc.status, job.doc.result) == ("completed", stored)


async def boom(job: Job) -> None:
    raise ValueError(f"cannot send to {job.data['n']}")


async def test_an_exception_fails_the_job_with_type_message_and_traceback(
    jc: JobCollection, make_queue: MakeQueue, caplog: pytest.LogCaptureFixture
) -> None:
    [job_id] = await save(jc, 1)
    queue = make_queue(boom)
    with caplog.at_level(logging.WARNING, "jobcollection.queue"):
        await within(queue.drain())
    job = await jc.get_job(job_id, get_failures=True)
    assert job is not None and job.doc.failures
    assert job.doc.status == "failed"
    failure = job.doc.failures[-1]
    assert failure["value"] == failure["message"] == "cannot send to 0"
    assert failure["type"] == "ValueError"
    assert "in boom" in failure["traceback"]
    assert failure["traceback"].rstrip().endswith("ValueError: cannot send to 0")
    [line] = [r for r in caplog.records if "ValueError" in r.getMessage()]
    assert "failed" in line.getMessage() and "it will not be retried" in line.getMessage()
    assert line.exc_info is not None and line.exc_info[0] is ValueError  # the traceback
    assert (line.job_type, line.outcome, line.retry) == ("work", "failed", False)  # type: ignore[attr-defined]


async def test_each_job_logs_its_start_and_outcome_without_its_data(
    jc: JobCollection, make_queue: MakeQueue, caplog: pytest.LogCaptureFixture
) -> None:
    [ok] = await save(jc, 1, type="fine")
    [flaky] = await save(jc, 1, retries=1, wait=60)

    async def fine(job: Job) -> dict[str, str]:
        return {"secret": "result-secret"}

    with caplog.at_level(logging.INFO, "jobcollection.queue"):
        await within(make_queue(fine, "fine").drain())
        await within(make_queue(boom).drain())
    lines = {
        (r.job_id, r.outcome if hasattr(r, "outcome") else "started"): r
        for r in caplog.records
        if hasattr(r, "job_id")
    }  # type: ignore[attr-defined]
    assert (str(ok), "started") in lines and (str(ok), "completed") in lines
    done = lines[(str(ok), "completed")]
    assert done.levelno == logging.INFO and done.job_type == "fine"  # type: ignore[attr-defined]
    assert done.getMessage().startswith(f"job fine {ok} completed in ")
    failed = lines[(str(flaky), "failed")]
    assert failed.levelno == logging.WARNING and "it will be retried" in failed.getMessage()
    assert failed.retry is True  # type: ignore[attr-defined]
    assert "result-secret" not in "\n".join(r.getMessage() for r in caplog.records)


async def test_a_failure_from_an_exception_is_not_fatal(
    jc: JobCollection, make_queue: MakeQueue
) -> None:
    [job_id] = await save(jc, 1, retries=1, wait=0)
    attempts: list[int] = []

    async def flaky(job: Job) -> str:
        attempts.append(job.doc.retried)
        if len(attempts) == 1:
            raise ConnectionError("smtp down")
        return "sent"

    queue = make_queue(flaky)
    # the retry is due at once (wait 0): the queue promotes it itself, no server pass needed
    await within(queue.drain())
    job = await jc.get_job(job_id)
    assert job is not None
    assert (job.doc.status, job.doc.result, attempts) == ("completed", {"value": "sent"}, [1, 2])


async def outcomes(jc: JobCollection) -> list[tuple[str, Any]]:
    """(status, result or last failure value) of every job, sorted."""
    found = []
    for doc in await jc.collection.find({}).to_list(None):
        if doc["status"] == "failed":
            found.append(("failed", doc["failures"][-1]["value"]))
        else:
            found.append((doc["status"], doc.get("result")))
    return sorted(found)


async def test_a_job_the_worker_failed_itself_stays_failed_when_it_returns(
    jc: JobCollection, make_queue: MakeQueue, caplog: pytest.LogCaptureFixture
) -> None:
    await save(jc, 2)

    async def worker(jobs: list[Job]) -> str:
        await jobs[0].fail("bad address")
        return "ok"

    queue = make_queue(worker, payload=2)
    with caplog.at_level(logging.WARNING, "jobcollection"):
        await within(queue.drain())
    assert await outcomes(jc) == [("completed", {"value": "ok"}), ("failed", "bad address")]
    assert caplog.records == []  # the queue did not try to complete the failed job


async def test_a_job_the_worker_completed_itself_stays_completed_when_it_raises(
    jc: JobCollection, make_queue: MakeQueue, caplog: pytest.LogCaptureFixture
) -> None:
    await save(jc, 2)

    async def worker(jobs: list[Job]) -> str:
        await jobs[0].done("sent")
        raise RuntimeError("lost connection")

    queue = make_queue(worker, payload=2)
    with caplog.at_level(logging.WARNING, "jobcollection"):
        await within(queue.drain())
    assert await outcomes(jc) == [("completed", {"value": "sent"}), ("failed", "lost connection")]
    assert [r.name for r in caplog.records] == ["jobcollection.queue"]  # "worker raised"; no
    # attempt to fail the completed job


async def test_a_worker_cancelled_from_inside_fails_its_job(
    jc: JobCollection, make_queue: MakeQueue
) -> None:
    [job_id] = await save(jc, 1)

    async def worker(job: Job) -> None:
        raise asyncio.CancelledError  # e.g. it awaited something that was cancelled

    queue = make_queue(worker)
    await within(queue.drain())
    job = await jc.get_job(job_id, get_failures=True)
    assert job is not None and job.doc.failures
    assert (job.doc.status, job.doc.failures[-1]["type"]) == ("failed", "CancelledError")


@pytest.mark.parametrize(
    ("returned", "problem"),
    [({"$bad": 1}, "'$'"), (object(), "cannot be stored"), ({1, 2}, "cannot be stored")],
    ids=["dollar-key", "object", "set"],
)
async def test_a_result_that_cannot_be_stored_fails_the_job(
    jc: JobCollection, make_queue: MakeQueue, returned: Any, problem: str
) -> None:
    [job_id] = await save(jc, 1)

    async def worker(job: Job) -> Any:
        return returned

    queue = make_queue(worker)
    await within(queue.drain())
    job = await jc.get_job(job_id, get_failures=True)
    assert job is not None and job.doc.failures
    assert job.doc.status == "failed"
    failure = job.doc.failures[-1]
    assert failure["type"] == "InvalidArgument"
    assert failure["message"].startswith("result: ")
    assert problem in failure["message"]


async def test_a_sync_worker_runs_in_a_thread_and_completes_the_job(
    jc: JobCollection, make_queue: MakeQueue
) -> None:
    [job_id] = await save(jc, 1)
    loop_thread = threading.get_ident()

    def sync_worker(job: Job) -> bool:
        return threading.get_ident() != loop_thread  # (tests/test_sync_workers.py: more)

    queue = make_queue(sync_worker)
    await within(queue.drain())
    job = await jc.get_job(job_id)
    assert job is not None and job.doc.status == "completed"
    assert job.doc.result == {"value": True}


async def test_a_worker_cannot_await_its_own_queue_shutdown(
    jc: JobCollection, make_queue: MakeQueue
) -> None:
    [job_id] = await save(jc, 1)
    queues: list[JobQueue] = []

    async def worker(job: Job) -> None:
        await queues[0].shutdown()

    queues.append(make_queue(worker))
    await within(queues[0].drain())
    job = await jc.get_job(job_id, get_failures=True)
    assert job is not None and job.doc.failures
    assert job.doc.failures[-1]["type"] == "RuntimeError"


# --- shutdown ----------------------------------------------------------------------------------


async def test_soft_shutdown_finishes_queued_jobs_and_claims_no_more(
    jc: JobCollection, make_queue: MakeQueue
) -> None:
    await save(jc, 6)
    gate = Gate()
    queue = make_queue(gate, prefetch=2)
    await gate.wait_for_calls(1)
    await within(queue.settle())
    seen = claims(jc)
    stopping = asyncio.create_task(queue.shutdown("soft"))
    await asyncio.sleep(0)
    assert not stopping.done()
    gate.release()
    await within(stopping)
    assert seen == []
    assert await statuses(jc) == {"completed": 3, "ready": 3}
    assert queue.idle()


async def test_soft_shutdown_of_a_paused_queue_still_runs_its_queued_jobs(
    jc: JobCollection, make_queue: MakeQueue
) -> None:
    await save(jc, 3)
    gate = Gate()
    queue = make_queue(gate, prefetch=1)
    await gate.wait_for_calls(1)
    await within(queue.settle())
    queue.pause()
    gate.release()
    await within(queue.shutdown("soft"))
    assert await statuses(jc) == {"completed": 2, "ready": 1}


async def test_normal_shutdown_finishes_running_and_releases_queued_jobs(
    jc: JobCollection, make_queue: MakeQueue
) -> None:
    await save(jc, 5)
    gate = Gate()
    queue = make_queue(gate, concurrency=2, prefetch=3)
    await gate.wait_for_calls(2)
    await within(queue.settle())
    assert (queue.running(), queue.length()) == (2, 3)
    stopping = asyncio.create_task(queue.shutdown("normal"))
    await asyncio.sleep(0)
    assert not stopping.done()
    gate.release()
    await within(stopping)
    assert await statuses(jc) == {"completed": 2, "ready": 3}
    released = await jc.collection.find({"status": "ready"}).to_list(None)
    for doc in released:  # as before the claim: no attempt used, no runId, no lease
        assert (doc["retries"], doc["retried"], doc["runId"]) == (1, 0, None)
        assert "expiresAfter" not in doc and "failures" not in doc
        assert messages(doc)[-1] == "Job Released"
    assert gate.cancelled == 0


async def test_hard_shutdown_fails_running_jobs_at_once_and_releases_queued_ones(
    jc: JobCollection, make_queue: MakeQueue
) -> None:
    await save(jc, 5)
    gate = Gate()
    queue = make_queue(gate, concurrency=2, prefetch=3)
    await gate.wait_for_calls(2)
    await within(queue.settle())
    await within(queue.shutdown("hard"))  # the gate never opens
    assert await statuses(jc) == {"failed": 2, "ready": 3}
    values = [
        d["failures"][-1]["value"]
        for d in await jc.collection.find({"status": "failed"}).to_list(None)
    ]
    assert values == ["Worker shutdown"] * 2
    assert gate.cancelled == 2
    assert (queue.running(), queue.length(), queue.idle()) == (0, 0, True)


async def test_hard_shutdown_leaves_jobs_the_worker_finished(
    jc: JobCollection, make_queue: MakeQueue
) -> None:
    await save(jc, 1)
    reported = asyncio.Event()

    async def worker(job: Job) -> None:
        await job.done("early")
        reported.set()
        await asyncio.Event().wait()  # hangs after reporting

    queue = make_queue(worker)
    await within(reported.wait())
    await within(queue.shutdown("hard"))
    assert await statuses(jc) == {"completed": 1}


async def test_a_second_shutdown_call_can_raise_the_level(
    jc: JobCollection, make_queue: MakeQueue
) -> None:
    await save(jc, 1)
    gate = Gate()
    queue = make_queue(gate)
    await gate.wait_for_calls(1)
    normal = asyncio.create_task(queue.shutdown("normal"))
    await asyncio.sleep(0)
    assert not normal.done()
    await within(queue.shutdown("hard"))
    await within(normal)
    assert gate.cancelled == 1
    assert await statuses(jc) == {"failed": 1}


async def test_after_shutdown_the_queue_claims_nothing(
    jc: JobCollection, make_queue: MakeQueue, caplog: pytest.LogCaptureFixture
) -> None:
    queue = make_queue(noop)
    await within(queue.shutdown())
    await save(jc, 1)
    seen = claims(jc)
    with caplog.at_level(logging.WARNING, "jobcollection.queue"):
        queue.trigger()
        queue.resume()
    await within(queue.settle())
    assert seen == []
    assert any("resume() ignored" in r.getMessage() for r in caplog.records)
    await within(queue.shutdown("hard"))  # shutting down again is harmless


async def test_shutdown_logs_unless_quiet(
    jc: JobCollection, make_queue: MakeQueue, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, "jobcollection.queue"):
        await within(make_queue(noop).shutdown())
        assert any("shutting down (normal)" in r.getMessage() for r in caplog.records)
        caplog.clear()
        await within(make_queue(noop).shutdown(quiet=True))
        assert caplog.records == []


async def test_async_with_shuts_down_softly_on_exit(jc: JobCollection) -> None:
    await save(jc, 4)
    gate = Gate()
    async with jc.process_jobs("work", gate, prefetch=3, poll_interval=None, wakeup=False) as queue:
        await gate.wait_for_calls(1)
        await within(queue.settle())
        assert queue.length() == 3
        gate.release()
    assert await statuses(jc) == {"completed": 4}
    assert queue.idle()


# --- heartbeat ---------------------------------------------------------------------------------


async def test_the_heartbeat_keeps_a_long_healthy_job_alive(
    jc: JobCollection, make_queue: MakeQueue, clock: ManualClock
) -> None:
    [job_id] = await save(jc, 1)
    gate = Gate(result="finished")
    queue = make_queue(gate, work_timeout=3)
    await gate.wait_for_calls(1)
    for _ in range(5):  # 10 s of work against a 3 s lease, renewed every 2 s
        clock.advance(2)
        assert await within(queue.heartbeat_now()) == 1
        assert (await jc.run_server_pass()).expired == 0
    doc = await jc.collection.find_one({"_id": job_id})
    assert doc["status"] == "running"
    gate.release()
    await within(queue.drain())
    assert await statuses(jc) == {"completed": 1}


async def test_the_queue_beats_by_itself_every_third_of_the_work_timeout(
    jc: JobCollection, make_queue: MakeQueue
) -> None:
    await save(jc, 1)
    beat = asyncio.Event()

    def on_heartbeat(event: MethodEvent) -> None:
        beat.set()

    jc.events.on("jobHeartbeat", on_heartbeat)
    gate = Gate()
    make_queue(gate, work_timeout=0.003)
    await gate.wait_for_calls(1)
    # The queue's own 1 ms timer (real time, the one place here that uses it) renews it.
    await within(beat.wait())


async def test_a_job_whose_heartbeat_stops_is_failed_by_the_server(
    jc: JobCollection, make_queue: MakeQueue, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    await save(jc, 2)
    gate = Gate(result="too late")
    queue = make_queue(gate, work_timeout=3, prefetch=1)
    await gate.wait_for_calls(1)
    await within(queue.settle())
    assert queue.length() == 1
    clock.advance(4)  # no heartbeat: as if the process hung
    assert (await jc.run_server_pass()).expired == 2
    with caplog.at_level(logging.WARNING, "jobcollection.queue"):
        assert await within(queue.heartbeat_now()) == 0
    assert sum("lost its claim" in r.getMessage() for r in caplog.records) == 2
    assert queue.length() == 0  # the queued job whose claim was lost is not started
    gate.release()
    await within(queue.drain())
    assert len(gate.calls) == 1
    assert await statuses(jc) == {"failed": 2}


# --- wake-up -----------------------------------------------------------------------------------


class FakeSource:
    """A wake-up source driven by the test: emit() a signal, or fail() with an exception."""

    def __init__(self) -> None:
        self.items: asyncio.Queue[object] = asyncio.Queue()
        self.subscribed: list[list[str]] = []
        self.ended = asyncio.Event()

    async def signals(self, types: Any) -> AsyncIterator[object]:
        self.subscribed.append(list(types))
        try:
            while True:
                item = await self.items.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.ended.set()

    def emit(self) -> None:
        self.items.put_nowait("changed")

    def fail(self, exc: BaseException) -> None:
        self.items.put_nowait(exc)


async def test_a_wakeup_signal_starts_a_new_job_without_polling(
    jc: JobCollection, make_queue: MakeQueue, make_jc: Any
) -> None:
    source = FakeSource()
    gate = Gate()
    gate.release()
    queue = make_queue(gate, ["work", "other"], wakeup=source)
    await within(queue.settle())
    await save(await make_jc(), 1)  # saved by another process: no local hint
    await within(queue.settle())
    assert await statuses(jc) == {"ready": 1}
    source.emit()
    await gate.wait_for_calls(1)
    await within(queue.drain())
    assert await statuses(jc) == {"completed": 1}
    assert source.subscribed == [["work", "other"]]
    await within(queue.shutdown())
    await within(source.ended.wait())  # the queue closed its subscription


@pytest.mark.local_only(
    "in-process save signals: a remote queue is woken by its long poll (test_remote)"
)
async def test_a_job_saved_in_the_same_process_starts_without_polling(
    jc: JobCollection, make_queue: MakeQueue, clock: ManualClock
) -> None:
    # no wake-up source, no polling: the collection tells its own queues of each save
    gate = Gate()
    gate.release()
    queue = make_queue(gate, wakeup=True)
    await within(queue.settle())
    await save(jc, 1)
    await gate.wait_for_calls(1)
    await within(queue.drain())
    assert await statuses(jc) == {"completed": 1}
    # a job due later: the queue sets its wake-up for then (it polls every 5 s)
    delayed = make_queue(gate, "later", wakeup=True, poll_interval=5)
    await within(delayed.settle())
    await jc.create_job("later").delay(2).save()
    assert delayed.next_wakeup == clock.now() + timedelta(seconds=2)


async def test_when_the_wakeup_source_fails_the_queue_rescans_and_polls(
    jc: JobCollection, make_queue: MakeQueue, caplog: pytest.LogCaptureFixture
) -> None:
    source = FakeSource()
    gate = Gate()
    gate.release()
    queue = make_queue(gate, wakeup=source, poll_interval=30)
    await within(queue.settle())
    await save(jc, 1)
    with caplog.at_level(logging.INFO, "jobcollection.queue"):
        source.fail(RuntimeError("change stream closed"))
        await within(source.ended.wait())
        await gate.wait_for_calls(1)  # the rescan found the job saved before the failure
    await within(queue.drain())
    assert await statuses(jc) == {"completed": 1}
    [record] = [r for r in caplog.records if "wake-up source failed" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert "polling every 30 s" in record.getMessage()


@pytest.mark.local_only("change streams are the local service's wake-up")
async def test_an_unavailable_wakeup_source_falls_back_to_polling(
    jc: JobCollection, make_queue: MakeQueue, caplog: pytest.LogCaptureFixture
) -> None:
    source = FakeSource()
    gate = Gate()
    gate.release()
    with caplog.at_level(logging.INFO, "jobcollection.queue"):
        # A 50 ms poll: long beside a round trip to a real server (tests/wire_tier.py), so
        # the queue settles between polls.
        queue = make_queue(gate, wakeup=source, poll_interval=0.05)
        source.fail(WakeupUnavailable("standalone server"))
        await within(source.ended.wait())
        await within(queue.settle())
        await save(jc, 1)
        # The one test that lets the queue's own timer run: a 50 ms poll finds the job.
        await gate.wait_for_calls(1)
    await within(queue.drain())
    assert await statuses(jc) == {"completed": 1}
    [record] = [r for r in caplog.records if "wake-up unavailable" in r.getMessage()]
    assert record.levelno == logging.INFO
    assert "polling every 0.05 s" in record.getMessage()


async def test_without_polling_a_failed_wakeup_source_is_a_warning(
    jc: JobCollection, make_queue: MakeQueue, caplog: pytest.LogCaptureFixture
) -> None:
    source = FakeSource()
    with caplog.at_level(logging.INFO, "jobcollection.queue"):
        make_queue(noop, wakeup=source)
        source.fail(WakeupUnavailable("standalone server"))
        await within(source.ended.wait())
    [record] = [r for r in caplog.records if "wake-up unavailable" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert "only trigger()" in record.getMessage()


async def test_by_default_the_in_memory_backend_falls_back_to_polling(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    jc = JobCollection.from_database(memory_database("default_wakeup"), clock=clock)
    await jc.start_job_server()
    try:
        with caplog.at_level(logging.INFO, "jobcollection.queue"):
            queue = jc.process_jobs("work", noop)
            await within(queue.settle())
            for _ in range(3):
                await asyncio.sleep(0)
            await within(queue.shutdown(quiet=True))
        messages = [r.getMessage() for r in caplog.records]
        assert any("this backend has no change streams" in m for m in messages)
        assert not any("not callable" in m for m in messages)  # no backend internals
    finally:
        await jc.close()


# --- the example -------------------------------------------------------------------------------

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "worker.py"
PROCESS_BOUND = 45.0
"""A subprocess starts Python and imports the package: allow for a loaded CI machine."""


@contextlib.asynccontextmanager
async def example(*args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """Run examples/worker.py on the in-memory backend; killed if a test gives up on it."""
    env = {k: v for k, v in os.environ.items() if k != "MONGODB_URI"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLE),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_the_worker_example_finishes_by_itself_in_demo_mode() -> None:
    async with example("--demo", "--jobs", "4") as process:
        out, err = await asyncio.wait_for(process.communicate(), PROCESS_BOUND)
    assert process.returncode == 0, err.decode()
    text = out.decode()
    assert text.count("sent welcome email to user") == 4
    assert "all 4 demo jobs done; shutting down (normal)" in text
    assert text.rstrip().endswith("stopped: 4 completed, 0 failed")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
async def test_the_worker_example_shuts_down_normally_on_sigterm() -> None:
    async with example("--jobs", "2") as process:
        assert process.stdout is not None
        readline = process.stdout.readline
        while b"waiting for jobs" not in (
            line := await asyncio.wait_for(readline(), PROCESS_BOUND)
        ):
            assert line, "the example ended before it was ready"
        process.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(process.communicate(), PROCESS_BOUND)
    assert process.returncode == 0, err.decode()
    text = out.decode()
    assert "received SIGTERM; shutting down (normal)" in text
    assert "stopped:" in text


# --- reports -----------------------------------------------------------------------------------


class SlowBulkWrites(Yielding):
    """A server whose bulk writes take a while (20 turns of the event loop, no real time)
    compared with a worker call, as over a network; records how many jobs each bulk write of
    a bundle of done/fail reports matched (not those clearing follow-up marks)."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.matched: list[int] = []

    async def bulk_write(self, *args: Any, **kwargs: Any) -> Any:
        for _ in range(20):
            await asyncio.sleep(0)
        result = await self._inner.bulk_write(*args, **kwargs)
        if not clears_follow_ups(args):
            self.matched.append(result.matched_count)
        return result


async def test_reports_bundle_beyond_the_worker_slots(database: Any, clock: ManualClock) -> None:
    collection = SlowBulkWrites(database["queue.jobs"])
    jc = JobCollection(collection, clock=clock)
    await jc.start_job_server()
    await jc.save_jobs([jc.create_job("work", {"n": n}) for n in range(100)])
    queue = jc.process_jobs("work", noop, concurrency=2, prefetch=50, poll_interval=None)
    await within(queue.drain())
    await queue.shutdown("soft")
    await jc.close()
    assert await statuses(jc) == {"completed": 100}
    # A slot is free as soon as its worker returns, so reports of more calls than there are
    # slots share one write (holding the slot until its report was stored capped it at 2).
    assert max(collection.matched) > 2
    assert sum(collection.matched) == 100


async def test_jobs_in_hand_never_exceed_prefetch_plus_capacity(
    jc: JobCollection, make_queue: MakeQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    await jc.save_jobs([jc.create_job("work", {"n": n}) for n in range(40)])
    held: list[int] = []

    async def counting_get_work(op: GetWork, claim: Claim) -> Any:
        got = await claim()
        held.append(await jc.collection.count_documents({"status": "running"}))
        return got

    on_claims(monkeypatch, jc, counting_get_work)
    queue = make_queue(noop, concurrency=2, payload=2, prefetch=3)
    await within(queue.drain())
    assert await statuses(jc) == {"completed": 40}
    assert held and max(held) <= 3 + 2 * (2 * 2)  # prefetch + a round of reports in flight


@pytest.mark.local_only("holds the local store's writes")
async def test_shutdown_waits_for_reports_in_flight(
    jc: JobCollection, make_queue: MakeQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    await save(jc, 4)
    writes_may_go = asyncio.Event()
    store = jc.service.store  # hold the bundled report writes until the shutdown has begun
    update_each = store.update_each

    async def held_update_each(updates: Any) -> Any:
        await writes_may_go.wait()
        return await update_each(updates)

    monkeypatch.setattr(store, "update_each", held_update_each)
    queue = make_queue(noop, concurrency=2, prefetch=2)
    await within(queue.settle())
    await asyncio.sleep(0)
    shutting = asyncio.create_task(queue.shutdown("normal"))
    await asyncio.sleep(0)
    assert not shutting.done()
    writes_may_go.set()
    await within(shutting)
    assert (await statuses(jc))["running"] == 0
