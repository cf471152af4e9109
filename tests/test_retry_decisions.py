"""Retries that read the error (model/decisions.py): which of a worker's exceptions are
retried (`process_jobs(retry_on=, non_retryable=)`, `Job.retry(on=)`), after what wait
(`retry_backoff`, an exception's `retry_after`, `job.fail(retry_in=)`), and the decisions a
worker raises (Snooze: back to wait, no attempt used; Cancel; Fatal), each carried by the
jobFail call (`fatal`, `retryIn`, `snooze`), so a remote worker's reports decide the same.

Every test runs on a local JobCollection and through its remote API (both_sides); the queues
are driven by trigger() and drain(), waits are observed on the manual clock."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

from conftest import START, MakeJC
from helpers import claim_one, messages, stored
from jobcollection import (
    Cancel,
    Fatal,
    InvalidArgument,
    InvalidArgumentType,
    Job,
    JobCollection,
    JobDoc,
    JobQueue,
    ManualClock,
    PermissionDenied,
    RetryRules,
    Snooze,
    TaskRegistry,
)
from jobcollection.model.decisions import Decision, decide
from jobcollection.remote import RemoteJobCollection
from jobcollection.testing import drain
from remote_helpers import serve_jc
from test_ddp import ROOT, email, needs_node, node, served
from test_remote_processes import Applied

pytestmark = pytest.mark.both_sides

T = TypeVar("T")
MakeQueue = Callable[..., JobQueue]


async def within(awaitable: Awaitable[T]) -> T:
    async with asyncio.timeout(5.0):
        return await awaitable


@pytest.fixture
async def make_queue(jc: JobCollection) -> AsyncIterator[MakeQueue]:
    """jc.process_jobs("work", ...) with polling and wake-up off; shut down after the test."""
    made: list[JobQueue] = []

    def make(worker: Any, **options: Any) -> JobQueue:
        queue = jc.process_jobs("work", worker, poll_interval=None, wakeup=False, **options)
        made.append(queue)
        return queue

    yield make
    for queue in made:
        await within(queue.shutdown("hard", quiet=True))


def raising(exc: BaseException) -> Callable[[Job], Awaitable[None]]:
    async def worker(job: Job) -> None:
        raise exc

    return worker


async def run_once(jc: JobCollection, make_queue: MakeQueue, worker: Any, **options: Any) -> Any:
    """Save a job of "work" with 3 retries 10 s apart, run it once through a queue with these
    options, and answer its stored document."""
    job_id = await jc.create_job("work").retry(3, wait=10).save()
    queue = make_queue(worker, **options)
    await within(queue.drain())
    return await stored(jc, job_id)


def waits(doc: Any) -> timedelta:
    """How long the stored job waits from the test's (unmoved) clock."""
    after: Any = doc["after"]
    return after.replace(tzinfo=START.tzinfo) - START


class RateLimitedError(Exception):
    """An exception that says when to try again (an HTTP 429's Retry-After, say)."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"try again in {retry_after} s")
        self.retry_after = retry_after


class NotFound(Fatal):
    """A marker: retrying cannot cure it."""


# --- which exceptions are retried ------------------------------------------------------------


async def test_retry_on_types_retries_those_and_fails_others_fatally(
    jc: JobCollection, make_queue: MakeQueue
) -> None:
    retried = await run_once(jc, make_queue, raising(TimeoutError("slow")), retry_on=TimeoutError)
    assert (retried["status"], waits(retried)) == ("waiting", timedelta(seconds=10))
    failed = await run_once(jc, make_queue, raising(KeyError("x")), retry_on=(TimeoutError,))
    assert (failed["status"], failed["retries"]) == ("failed", 3)  # retries were left
    assert failed["failures"][-1]["type"] == "KeyError"
    assert "Job Failed with Fatal Error" in messages(failed)[-1]


async def test_retry_on_a_predicate_reads_the_exception(
    jc: JobCollection, make_queue: MakeQueue
) -> None:
    def transient(exc: BaseException) -> bool:
        return "transient" in str(exc)

    retried = await run_once(jc, make_queue, raising(OSError("transient")), retry_on=transient)
    failed = await run_once(jc, make_queue, raising(OSError("disk gone")), retry_on=transient)
    assert (retried["status"], failed["status"]) == ("waiting", "failed")


async def test_non_retryable_types_and_fatal_subclasses_fail_at_once(
    jc: JobCollection, make_queue: MakeQueue
) -> None:
    by_type = await run_once(jc, make_queue, raising(ValueError("bad")), non_retryable=ValueError)
    # non_retryable wins over retry_on
    both = await run_once(
        jc,
        make_queue,
        raising(ValueError("bad")),
        retry_on=Exception,
        non_retryable=(ValueError,),
    )
    marked = await run_once(jc, make_queue, raising(NotFound("no such user")))
    assert [d["status"] for d in (by_type, both, marked)] == ["failed"] * 3
    assert marked["failures"][-1]["value"] == "no such user"


async def test_a_jobs_own_retry_on_is_stored_by_name_and_honoured_by_any_queue(
    jc: JobCollection, make_queue: MakeQueue
) -> None:
    ids = []
    for _ in range(3):
        job = jc.create_job("work").retry(3, wait=10, on=(TimeoutError, "builtins.OSError"))
        ids.append(await job.save())
    raw = await stored(jc, ids[0])
    assert raw["_private"]["jobcollectionRetry"]["on"] == [
        "builtins.TimeoutError",
        "builtins.OSError",
    ]
    outcomes = {}

    async def worker(job: Job) -> None:
        errors = {0: TimeoutError(), 1: KeyError("k"), 2: ConnectionError()}
        raise errors[ids.index(job.id)]

    queue = make_queue(worker, concurrency=3)
    await within(queue.drain())
    for job_id in ids:
        outcomes[ids.index(job_id)] = (await stored(jc, job_id))["status"]
    # TimeoutError is named; KeyError is not; ConnectionError is an OSError (by its MRO)
    assert outcomes == {0: "waiting", 1: "failed", 2: "waiting"}


async def test_retry_on_refuses_what_cannot_be_stored_and_leaves_the_job_unchanged(
    jc: JobCollection,
) -> None:
    job = jc.create_job("work").retry(2)
    before = job.doc.model_copy()
    with pytest.raises(InvalidArgumentType, match="on: a callable cannot be stored"):
        job.retry(5, on=lambda exc: True)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentType, match=r"on\[1\]"):
        job.retry(5, on=(KeyError, 3))  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="qualified name"):
        job.retry(5, on="KeyError")
    with pytest.raises(InvalidArgument, match="at least one"):
        job.retry(5, on=())
    assert job.doc == before


def test_queue_retry_rules_are_checked_when_made() -> None:
    with pytest.raises(InvalidArgumentType, match="retry_on"):
        RetryRules(retry_on=(KeyError, "x"))  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentType, match="non_retryable"):
        RetryRules(non_retryable=3)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentType, match="retry_backoff"):
        RetryRules(retry_backoff=5)  # type: ignore[arg-type]


# --- how long a retry waits ------------------------------------------------------------------


async def test_a_backoff_of_the_queue_chooses_the_wait_from_the_error_and_attempt(
    jc: JobCollection, make_queue: MakeQueue, clock: ManualClock
) -> None:
    seen: list[tuple[str, int]] = []

    def backoff(exc: BaseException, attempt: int) -> float | None:
        seen.append((type(exc).__name__, attempt))
        return 42.5 if isinstance(exc, TimeoutError) else None

    chosen = await run_once(jc, make_queue, raising(TimeoutError()), retry_backoff=backoff)
    own = await run_once(jc, make_queue, raising(KeyError()), retry_backoff=backoff)
    assert waits(chosen) == timedelta(seconds=42.5)
    assert waits(own) == timedelta(seconds=10)  # None: the job's own backoff
    assert seen == [("TimeoutError", 1), ("KeyError", 1)]


async def test_an_exceptions_retry_after_is_the_wait(
    jc: JobCollection, make_queue: MakeQueue
) -> None:
    doc = await run_once(jc, make_queue, raising(RateLimitedError(90)))
    assert (doc["status"], waits(doc)) == ("waiting", timedelta(seconds=90))


async def test_a_chosen_wait_is_still_bounded_by_the_jobs_retries_and_until(
    jc: JobCollection, make_queue: MakeQueue
) -> None:
    job_id = await jc.create_job("work").retry(3, until=START + timedelta(minutes=1)).save()
    queue = make_queue(raising(RateLimitedError(3600)))
    await within(queue.drain())
    assert (await stored(jc, job_id))["status"] == "failed"  # the retry would start too late


async def test_a_backoff_that_raises_is_logged_and_the_jobs_own_applies(
    jc: JobCollection, make_queue: MakeQueue, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(exc: BaseException, attempt: int) -> float:
        raise RuntimeError("oops")

    with caplog.at_level(logging.ERROR, "jobcollection"):
        doc = await run_once(jc, make_queue, raising(KeyError()), retry_backoff=broken)
    assert (doc["status"], waits(doc)) == ("waiting", timedelta(seconds=10))
    assert any("deciding on its KeyError failed" in r.getMessage() for r in caplog.records)


async def test_fail_with_retry_in_waits_that_long(jc: JobCollection) -> None:
    job_id = await jc.create_job("work").retry(3, wait=10).save()
    job = await claim_one(jc, "work")
    assert await job.fail("429", retry_in=timedelta(seconds=7))
    doc = await stored(jc, job_id)
    assert (doc["status"], waits(doc), doc["retries"]) == ("waiting", timedelta(seconds=7), 3)
    with pytest.raises(InvalidArgument, match="retry_in"):
        await job.fail("x", fatal=True, retry_in=1)


# --- decisions a worker raises ---------------------------------------------------------------


async def test_snooze_puts_the_job_back_without_using_an_attempt(
    jc: JobCollection, make_queue: MakeQueue, clock: ManualClock
) -> None:
    job_id = await jc.create_job("work").retry(1, wait=10).save()
    runs: list[int] = []

    async def worker(job: Job) -> str:
        runs.append(job.doc.retried)
        if len(runs) < 3:
            raise Snooze(30, "upstream busy")
        return "ok"

    queue = make_queue(worker)
    await within(queue.drain())
    doc = await stored(jc, job_id)
    assert (doc["status"], doc["retries"], doc["retried"]) == ("waiting", 2, 0)
    assert waits(doc) == timedelta(seconds=30)
    assert "failures" not in doc or doc["failures"] == []
    assert messages(doc)[-1] == "Job Snoozed: upstream busy."
    for _ in range(2):
        clock.advance(timedelta(seconds=30))
        await jc.run_server_pass()
        queue.trigger()
        await within(queue.drain())
    doc = await stored(jc, job_id)
    assert (doc["status"], runs) == ("completed", [1, 1, 1])  # every run its first attempt


async def test_cancel_cancels_the_job_with_its_reason_logged(
    jc: JobCollection, make_queue: MakeQueue
) -> None:
    first = jc.create_job("work").retry(3)
    job_id = await first.save()
    dependent = await jc.create_job("next").depends(first).save()
    queue = make_queue(raising(Cancel("the order was withdrawn")))
    await within(queue.drain())
    doc = await stored(jc, job_id)
    assert doc["status"] == "cancelled"
    assert "Cancelled by its worker: the order was withdrawn" in messages(doc)
    assert (await stored(jc, dependent))["status"] == "cancelled"


async def test_fatal_fails_with_retries_left(jc: JobCollection, make_queue: MakeQueue) -> None:
    doc = await run_once(jc, make_queue, raising(Fatal("card declined")))
    assert (doc["status"], doc["retries"]) == ("failed", 3)
    assert doc["failures"][-1]["value"] == "card declined"


async def test_drain_honours_the_decisions_too(jc: JobCollection, clock: ManualClock) -> None:
    snoozed = await jc.create_job("snooze").retry(1).save()
    fatal = await jc.create_job("fatal").retry(5).save()
    named = await jc.create_job("named").retry(5, on=TimeoutError).save()
    await drain(
        jc,
        {
            "snooze": raising(Snooze(60)),
            "fatal": raising(Fatal("no")),
            "named": raising(KeyError()),
        },
    )
    assert (await stored(jc, snoozed))["status"] == "waiting"
    assert (await stored(jc, snoozed))["retried"] == 0
    assert (await stored(jc, fatal))["status"] == "failed"
    assert (await stored(jc, named))["status"] == "failed"


# --- the method layer ------------------------------------------------------------------------


async def test_jobfail_options_carry_the_decision(jc: JobCollection) -> None:
    ids = [await jc.create_job("work").retry(3, wait=10).save() for _ in range(3)]
    jobs = [await claim_one(jc, "work") for _ in ids]
    call = jc.service.call if hasattr(jc, "remote") else jc.call
    chosen = [{"fatal": False, "retryIn": 5_000}, {"fatal": False, "snooze": 60_000}, {}]
    for job, options in zip(jobs, chosen, strict=True):
        assert await call("jobFail", job.id, job.doc.run_id, {"value": "e"}, options) is True
    docs = [await stored(jc, job.id) for job in jobs]
    assert [waits(d) for d in docs] == [timedelta(seconds=s) for s in (5, 60, 10)]
    assert [d["retries"] for d in docs] == [3, 4, 3]  # a snooze gives its attempt back


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"retryIn": -1}, "retryIn"),
        ({"snooze": "soon"}, "snooze"),
        ({"fatal": True, "retryIn": 5}, "retryIn"),
        ({"retryIn": 5, "snooze": 5}, "snooze"),
        ({"fatal": True, "snooze": 5}, "snooze"),
        ({"cancel": "yes"}, "cancel"),
        ({"snooze": 5, "cancel": True}, "cancel"),
    ],
)
async def test_jobfail_refuses_bad_or_contradictory_options(
    jc: JobCollection, options: dict[str, Any], named: str
) -> None:
    job_id = await jc.create_job("work").retry(3).save()
    job = await claim_one(jc, "work")
    call = jc.service.call if hasattr(jc, "remote") else jc.call
    with pytest.raises(InvalidArgument, match=named):
        await call("jobFail", job.id, job.doc.run_id, {"value": "e"}, options)
    assert (await stored(jc, job_id))["status"] == "running"


# --- the pure rule ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "rules", "decision"),
    [
        (Snooze(1.5), RetryRules(), Decision("snooze", 1_500, "snoozed for 1.5 s")),
        (Cancel(), RetryRules(), Decision("cancel", reason="cancelled by its worker")),
        (Fatal("x"), RetryRules(retry_on=Fatal), Decision("fatal")),
        (KeyError(), RetryRules(retry_on=KeyError, non_retryable=LookupError), Decision("fatal")),
        (RateLimitedError(2), RetryRules(retry_backoff=lambda e, n: 3), Decision("retry", 3_000)),
        (RateLimitedError(2), RetryRules(), Decision("retry", 2_000)),
        (KeyError(), RetryRules(), Decision("retry")),
    ],
)
def test_decide_is_a_pure_function_of_the_exception_job_and_rules(
    exc: BaseException, rules: RetryRules, decision: Decision
) -> None:
    assert decide(exc, JobDoc(type="t"), rules) == decision


def test_a_wait_that_is_not_a_duration_is_refused_naming_where_it_came_from() -> None:
    doc = JobDoc(type="t")
    with pytest.raises(InvalidArgument, match="seconds"):
        decide(Snooze(-1), doc)
    with pytest.raises(InvalidArgument, match="retry_after"):
        decide(RateLimitedError("soon"), doc)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="retry_backoff"):
        decide(KeyError(), doc, RetryRules(retry_backoff=lambda e, n: -5))


async def test_a_worker_without_the_cancel_permission_cancels_the_job_it_holds(
    make_jc: MakeJC, clock: ManualClock
) -> None:
    """A Cancel is a report on the claim (jobFail's `cancel`), not jobCancel: a worker's user
    (the worker group only) gives up its own job, and no other."""
    local = await make_jc()
    local.allow(worker=["worker-1"])
    job_id = await local.create_job("work").retry(3).save()
    async with (
        serve_jc(local) as url,
        RemoteJobCollection(url, token="worker-token", clock=clock) as remote,
    ):
        queue = remote.process_jobs("work", raising(Cancel("nope")), poll_interval=None)
        await within(queue.drain())
        await within(queue.shutdown(quiet=True))
    doc = await stored(local, job_id)
    assert (doc["status"], doc["retries"]) == ("cancelled", 3)
    assert messages(doc)[-2:] == ["Cancelled by its worker: nope", "Job Cancelled"]


async def test_a_cancel_is_fenced_by_the_claim(jc: JobCollection, clock: ManualClock) -> None:
    job_id = await jc.create_job("work").retry(3).save()
    [old] = await jc.get_work("work")
    old_run = old.doc.run_id
    assert await old.fail("first attempt")  # the claim ends; the retry is claimed anew
    clock.advance(600)
    await jc.run_server_pass()
    [new] = await jc.get_work("work")
    # The old claim cannot cancel the new run:
    assert not await jc.call("jobFail", job_id, old_run, "too late", {"cancel": True})
    assert (await stored(jc, job_id))["status"] == "running"
    new_run = new.doc.run_id
    assert await new.cancel_run("given up")
    assert (await stored(jc, job_id))["status"] == "cancelled"
    # Made already (sent again after a lost reply, say): False, and nothing changes.
    assert not await jc.call("jobFail", job_id, new_run, "again", {"cancel": True})
    assert messages(await stored(jc, job_id))[-2:] == [
        "Cancelled by its worker: given up",
        "Job Cancelled",
    ]


# --- permissions and node.js workers ---------------------------------------------------------


async def test_only_the_claimer_may_snooze_or_choose_the_wait(make_jc: MakeJC) -> None:
    jc = await make_jc()
    jc.allow(worker=["w1", "w2"])
    job_id = await jc.create_job("work").retry(3).save()
    [mine] = await jc.call("getWork", "work", user_id="w1")
    before = await stored(jc, job_id)
    for options in ({"snooze": 60_000}, {"retryIn": 0}, {"fatal": True}, {"cancel": True}):
        with pytest.raises(PermissionDenied):
            await jc.call("jobFail", job_id, mine.run_id, "x", options, user_id="w2")
    assert await stored(jc, job_id) == before
    assert await jc.call("jobFail", job_id, mine.run_id, "x", {"snooze": 1_000}, user_id="w1")
    assert (await stored(jc, job_id))["status"] == "waiting"


@needs_node
async def test_node_workers_carry_fatal_snooze_retry_in_and_cancel(
    make_jc: MakeJC, tmp_path: Path
) -> None:
    """job-collection's node.js worker (meteor-job) passes job.fail's options through to
    jobFail: {fatal: true} fails with retries left, {snooze: ms} waits without using an
    attempt, {retryIn: ms} waits so long before the retry, {cancel: true} gives the job up."""
    jc = await make_jc(root=ROOT)
    failed = Applied(jc, "jobFail")
    chosen = [{"fatal": True}, {"snooze": 60_000}, {"retryIn": 5_000}, {"cancel": True}]
    ids = [
        await jc.create_job("sendEmail", email(n, fail=True, failOptions=options))
        .retry(3, wait=10)
        .save()
        for n, options in enumerate(chosen)
    ]
    async with (
        served(jc) as port,
        node(tmp_path, port, "worker.js", token="worker-token") as worker,
    ):
        await worker.expect("logged in")
        await failed.reach(4, worker)
    fatal, snoozed, retried, cancelled = [await stored(jc, job_id) for job_id in ids]
    assert (fatal["status"], fatal["retries"]) == ("failed", 3)
    assert (snoozed["status"], snoozed["retries"], waits(snoozed)) == (
        "waiting",
        4,
        timedelta(seconds=60),
    )
    assert "failures" not in snoozed or snoozed["failures"] == []
    assert messages(snoozed)[-1] == "Job Snoozed: Error: mailbox full."
    assert (retried["status"], retried["retries"], waits(retried)) == (
        "waiting",
        3,
        timedelta(seconds=5),
    )
    assert cancelled["status"] == "cancelled"
    assert messages(cancelled)[-2:] == [
        "Cancelled by its worker: Error: mailbox full",
        "Job Cancelled",
    ]


# --- tasks -----------------------------------------------------------------------------------


async def test_a_tasks_own_rules_replace_the_queues_for_its_jobs(jc: JobCollection) -> None:
    tasks = TaskRegistry()

    @tasks.task("strict", retry=3, non_retryable=ValueError)
    async def strict(n: int) -> None:
        raise ValueError("bad") if n == 0 else KeyError("k")

    @tasks.task("plain", retry=3)
    async def plain(n: int) -> None:
        raise KeyError("k")

    ids = [
        await strict.on(jc).enqueue(0),  # ValueError: non-retryable for this task
        await strict.on(jc).enqueue(1),  # KeyError: retried (the queue's retry_on is not its)
        await plain.on(jc).enqueue(1),  # KeyError: the queue's retry_on says fatal
    ]
    queue = jc.run_tasks(tasks, retry_on=TimeoutError, poll_interval=None, wakeup=False)
    try:
        await within(queue.drain())
    finally:
        await within(queue.shutdown(quiet=True))
    assert [(await stored(jc, i))["status"] for i in ids] == ["failed", "waiting", "failed"]


async def test_drain_applies_a_tasks_rules(jc: JobCollection) -> None:
    tasks = TaskRegistry()

    @tasks.task("later", retry=3, retry_backoff=lambda exc, attempt: 120)
    async def later() -> None:
        raise ConnectionError("down")

    job_id = await later.on(jc).enqueue()
    await drain(jc, tasks)
    doc = await stored(jc, job_id)
    assert (doc["status"], waits(doc)) == ("waiting", timedelta(seconds=120))


def test_task_retry_rules_are_checked_when_declared() -> None:
    tasks = TaskRegistry()
    with pytest.raises(InvalidArgumentType, match="non_retryable"):
        tasks.task("t", non_retryable="ValueError")  # type: ignore[arg-type]
