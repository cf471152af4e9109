"""Timely starts: a queue that finds nothing ready promotes the due jobs of its types itself
(rather than waiting up to 15 s for the job server's next pass) and sets a wake-up for the next
one due, so a delay, an `after` or a retry wait that has passed starts the job on time.

The tests run on the manual clock: they advance it past a due time and trigger the queue as
its wake-up would, and read `queue.next_wakeup` to see when it would have looked on its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import pytest

from conftest import MakeJC
from jobcollection import Job, JobCollection, JobQueue, ManualClock
from jobcollection.model.ops import ReadyDue

pytestmark = pytest.mark.both_sides

BOUND = 10.0
MakeQueue = Callable[..., JobQueue]


@pytest.fixture
async def make_queue(jc: JobCollection) -> AsyncIterator[MakeQueue]:
    """Queues that poll (every 5 s, the default) but do not listen for change streams."""
    made: list[JobQueue] = []

    def make(worker: Any, **options: Any) -> JobQueue:
        options.setdefault("wakeup", False)
        queue = jc.process_jobs("t", worker, **options)
        made.append(queue)
        return queue

    yield make
    for queue in made:
        await asyncio.wait_for(queue.shutdown("hard", quiet=True), BOUND)


class Recorder:
    def __init__(self, fail_first: int = 0) -> None:
        self.runs: list[Any] = []
        self.fail_first = fail_first

    async def __call__(self, job: Job) -> None:
        self.runs.append(job.id)
        if len(self.runs) <= self.fail_first:
            raise ConnectionError("down")


async def drained(queue: JobQueue) -> None:
    await asyncio.wait_for(queue.drain(), BOUND)


async def test_a_delayed_job_starts_when_due_without_a_server_pass(
    jc: JobCollection, clock: ManualClock, make_queue: MakeQueue
) -> None:
    job_id = await jc.create_job("t").delay(2).save()
    worker = Recorder()
    queue = make_queue(worker)
    await drained(queue)
    assert worker.runs == []
    assert queue.next_wakeup == clock.now() + timedelta(seconds=2)
    clock.advance(2)
    queue.trigger()  # what the wake-up does when it fires
    await drained(queue)
    assert worker.runs == [job_id]
    assert queue.next_wakeup is None


async def test_a_retry_starts_when_its_wait_has_passed(
    jc: JobCollection, clock: ManualClock, make_queue: MakeQueue
) -> None:
    job_id = await jc.create_job("t").retry(1, wait=1).save()
    worker = Recorder(fail_first=1)
    queue = make_queue(worker)
    await drained(queue)
    assert worker.runs == [job_id]
    assert queue.next_wakeup == clock.now() + timedelta(seconds=1)
    clock.advance(1)
    queue.trigger()
    await drained(queue)
    assert worker.runs == [job_id, job_id]
    job = await jc.get_job(job_id)
    assert job is not None and job.doc.status == "completed"


async def test_a_due_time_after_the_next_poll_is_left_to_the_poll(
    jc: JobCollection, clock: ManualClock, make_queue: MakeQueue
) -> None:
    await jc.create_job("t").delay(60).save()
    queue = make_queue(Recorder(), poll_interval=5)
    await drained(queue)
    assert queue.next_wakeup is None


async def test_without_polling_a_triggered_queue_still_promotes_due_jobs(
    jc: JobCollection, clock: ManualClock, make_queue: MakeQueue
) -> None:
    job_id = await jc.create_job("t").delay(2).save()
    worker = Recorder()
    queue = make_queue(worker, poll_interval=None)
    await drained(queue)
    assert queue.next_wakeup is None  # it claims only when triggered
    clock.advance(2)
    queue.trigger()
    await drained(queue)
    assert worker.runs == [job_id]


async def test_only_the_queues_own_types_and_jobs_free_of_antecedents_are_promoted(
    jc: JobCollection, clock: ManualClock, make_queue: MakeQueue
) -> None:
    other = await jc.create_job("other").delay(1).save()
    antecedent = jc.create_job("before")
    await antecedent.save()
    dependent = await jc.create_job("t").depends([antecedent]).delay(1).save()
    queue = make_queue(Recorder())
    await drained(queue)
    assert queue.next_wakeup is None  # nothing of its types waits on time alone
    clock.advance(1)
    queue.trigger()
    await drained(queue)
    for job_id in (other, dependent):
        job = await jc.get_job(job_id)
        assert job is not None and job.doc.status == "waiting"


async def test_an_empty_claim_costs_a_promotion_and_a_lookup(
    jc: JobCollection, clock: ManualClock, make_queue: MakeQueue
) -> None:
    await jc.create_job("t").delay(2).save()
    queue = make_queue(Recorder(), poll_interval=None)
    await drained(queue)
    before = jc.commands
    queue.trigger()
    await drained(queue)
    assert jc.commands - before == 3  # the claim, the promotion, the next one due


async def test_two_collections_promote_a_due_job_once(make_jc: MakeJC, clock: ManualClock) -> None:
    first, second = await make_jc(), await make_jc()
    job_id = await first.create_job("t").delay(1).save()
    clock.advance(1)
    outcomes = await asyncio.gather(
        first.service.run(ReadyDue(["t"])), second.service.run(ReadyDue(["t"]))
    )
    assert sorted(o.promoted for o in outcomes) == [0, 1]
    job = await second.get_job(job_id)
    assert job is not None and job.doc.status == "ready"
    log = [entry.message for entry in (await first.get_job(job_id, get_log=True)).doc.log or []]
    assert log.count("Promoted to ready") == 1
