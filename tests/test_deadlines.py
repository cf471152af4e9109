"""Deadlines (`Job.expires`): a job not started by its deadline is cancelled, with the reason in
its log, instead of running late: a claim that takes it late cancels it and hands it to no
worker (local queues, get_work, the remote API: these tests run on both sides), and the job
server's pass cancels the pending jobs past theirs; its dependents follow their policies.

Time is the manual clock's: nothing sleeps.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId

from conftest import MakeJC, WrapJC
from faults import Faults, FaultyCollection
from helpers import messages, stored, utc
from jobcollection import (
    InvalidArgument,
    InvalidArgumentType,
    Job,
    JobCollection,
    ManualClock,
    chain,
    group,
)
from jobcollection.model import describe
from jobcollection.model.document import EXPIRES, JobDoc
from jobcollection.rules import deadlines
from strict import query_served
from test_ddp import ROOT as DDP_ROOT
from test_ddp import served, session
from test_show_job import show

pytestmark = pytest.mark.both_sides

BOUND = 5.0
_KEY = EXPIRES.split(".", 1)[1]


async def save(jc: JobCollection, expires: Any, job_type: str = "t", **kw: Any) -> Any:
    job = jc.create_job(job_type, kw.pop("data", {})).expires(expires)
    for name, args in kw.items():
        getattr(job, name)(*args)
    return await job.save()


def deadline(doc: dict[str, Any]) -> dict[str, Any] | None:
    """A stored job's deadline record (None: none)."""
    value = doc.get("_private", {}).get(_KEY)
    return None if value is None else {k: utc(v) if k == "at" else v for k, v in value.items()}


async def expired_reason(jc: JobCollection, job_id: Any) -> list[str]:
    doc = await stored(jc, job_id)
    assert doc["status"] == "cancelled"
    return [m for m in messages(doc) if m.startswith("Expired")]


# --- the builder --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("soon", InvalidArgumentType),
        (datetime(2030, 1, 1), InvalidArgument),  # naive
        (timedelta(seconds=-1), InvalidArgument),
        (0, InvalidArgument),
        (-5, InvalidArgument),
        (True, InvalidArgumentType),
    ],
)
async def test_a_bad_deadline_is_refused_naming_it_and_changes_nothing(
    jc: JobCollection, clock: ManualClock, value: Any, error: type[Exception]
) -> None:
    job = jc.create_job("t").expires(clock.now() + timedelta(hours=1))
    before = job.doc.model_copy()
    with pytest.raises(error) as raised:
        job.expires(value)
    assert isinstance(raised.value, InvalidArgument) and raised.value.argument == "at"
    assert job.doc == before


async def test_a_deadline_is_an_aware_datetime_or_a_time_after_the_save(
    jc: JobCollection, clock: ManualClock
) -> None:
    paris = datetime(2026, 6, 1, 14, 0, tzinfo=UTC).astimezone()
    job = jc.create_job("t").expires(paris)
    assert job.doc.expires == datetime(2026, 6, 1, 14, 0, tzinfo=UTC)
    relative = jc.create_job("t").expires(timedelta(minutes=10))
    assert relative.doc.expires is None and relative.doc.expires_in_ms == 600_000
    clock.advance(30)  # built, then saved later: it counts from the save
    job_id = await relative.save()
    assert deadline(await stored(jc, job_id)) == {"at": clock.now() + timedelta(minutes=10)}
    found = await jc.get_job(job_id)
    assert found is not None and found.doc.expires == clock.now() + timedelta(minutes=10)
    assert found.doc.expires_in_ms is None and not found.doc.expired
    cleared = jc.create_job("t").expires(60).expires(None)
    assert deadline(await stored(jc, await cleared.save())) is None


async def test_a_task_gives_each_of_its_jobs_a_deadline_after_its_save(
    jc: JobCollection, clock: ManualClock
) -> None:
    @jc.task("quote", expires=timedelta(minutes=5))
    async def quote(item: int) -> int:
        return item

    job_id = await quote.enqueue(7)
    assert deadline(await stored(jc, job_id)) == {"at": clock.now() + timedelta(minutes=5)}
    with pytest.raises(InvalidArgument) as raised:
        jc.task("bad", expires=0)
    assert raised.value.argument == "expires"


def test_a_deadline_reads_in_words() -> None:
    at = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
    assert describe.deadline(JobDoc(type="t")) is None
    assert describe.deadline(JobDoc(type="t", expires=at)) == "start by 2026-01-01T09:00:00Z"
    missed = JobDoc(type="t", expires=at, expired=True)
    assert describe.deadline(missed) == "missed: cancelled, not started by 2026-01-01T09:00:00Z"


async def test_show_says_the_deadline_and_that_it_was_missed(
    jc: JobCollection, clock: ManualClock
) -> None:
    job_id = await save(jc, 10)
    [line] = [x for x in await show(jc, job_id) if x.startswith("deadline:")]
    assert line.endswith(" start by 2026-01-01T12:00:10Z")
    clock.advance(11)
    await jc.run_server_pass()
    [line] = [x for x in await show(jc, job_id) if x.startswith("deadline:")]
    assert line.endswith(" missed: cancelled, not started by 2026-01-01T12:00:10Z")


# --- claims never hand a job out late -------------------------------------------------------------


async def test_get_work_cancels_a_job_past_its_deadline_instead_of_handing_it_out(
    jc: JobCollection, clock: ManualClock
) -> None:
    on_time = await save(jc, 120)
    late = await save(jc, 10)
    at = clock.now() + timedelta(seconds=10)
    clock.advance(11)
    claimed = await jc.get_work("t", max_jobs=5)
    assert [job.id for job in claimed] == [on_time]
    assert await expired_reason(jc, late) == [f"Expired: not started by {at.isoformat()}"]
    doc = await stored(jc, late)
    assert (doc["runId"], doc["retried"], doc["retries"]) == (None, 0, 1)  # the attempt given back
    assert "expiresAfter" not in doc and "workTimeout" not in doc
    assert deadline(doc) == {"at": at, "expired": True}
    found = await jc.get_job(late, get_log=True)
    assert found is not None and found.doc.expired and found.doc.expires == at
    assert await jc.get_work("t") == []  # and it stays cancelled


async def test_a_job_claimed_alone_past_its_deadline_is_not_handed_out(
    jc: JobCollection, clock: ManualClock
) -> None:
    job_id = await save(jc, clock.now() + timedelta(seconds=5))
    clock.advance(5)
    assert [j.id for j in await jc.get_work("t")] == [job_id]  # at the deadline: in time
    late_id = await save(jc, clock.now())
    clock.advance(0.001)
    assert await jc.get_work("t") == []
    assert len(await expired_reason(jc, late_id)) == 1


async def test_a_queue_never_runs_a_job_past_its_deadline(
    jc: JobCollection, clock: ManualClock
) -> None:
    ran: list[Any] = []

    async def worker(job: Job) -> None:
        ran.append(job.id)
        await job.done()

    late = await save(jc, 10)
    on_time = await save(jc, 3600)
    clock.advance(11)
    queue = jc.process_jobs("t", worker, poll_interval=None, wakeup=False)
    try:
        queue.trigger()
        async with asyncio.timeout(BOUND):
            await queue.drain()
    finally:
        await queue.shutdown("hard", quiet=True)
    assert ran == [on_time]
    assert len(await expired_reason(jc, late)) == 1


async def test_a_queue_does_not_start_a_prefetched_job_once_past_its_deadline(
    jc: JobCollection, clock: ManualClock
) -> None:
    ran: list[Any] = []
    first_started, go_on = asyncio.Event(), asyncio.Event()

    async def worker(job: Job) -> None:
        ran.append(job.id)
        first_started.set()
        await go_on.wait()

    first = await save(jc, 3600)
    held = await save(jc, 10)  # claimed in time with the first, held queued behind it
    queue = jc.process_jobs("t", worker, prefetch=1, poll_interval=None, wakeup=False)
    try:
        queue.trigger()
        async with asyncio.timeout(BOUND):
            await first_started.wait()
            assert queue.length() == 1  # the second is queued
            clock.advance(11)
            go_on.set()
            await queue.drain()
    finally:
        await queue.shutdown("hard", quiet=True)
    assert ran == [first]
    assert len(await expired_reason(jc, held)) == 1
    assert "Job Released" in messages(await stored(jc, held))


async def test_a_ddp_worker_is_never_handed_a_job_past_its_deadline(
    make_jc: MakeJC, clock: ManualClock
) -> None:
    jc = await make_jc(root=DDP_ROOT)
    late = await save(jc, 10)
    on_time = await save(jc, 3600)
    clock.advance(11)
    async with served(jc) as port, session(port) as ddp:
        assert (await ddp.call("login", {"resume": "admin-token"}))["result"]["id"] == "tester"
        claimed = (await ddp.call(f"{DDP_ROOT}_getWork", ["t"], {"maxJobs": 5}))["result"]
    assert [c["_id"] for c in claimed] == [on_time]
    assert len(await expired_reason(jc, late)) == 1


async def test_a_job_started_before_its_deadline_runs_on(
    jc: JobCollection, clock: ManualClock
) -> None:
    job_id = await save(jc, 10)
    [job] = await jc.get_work("t")
    clock.advance(60)
    passed = await jc.run_server_pass()
    assert passed.overdue == 0
    assert (await stored(jc, job_id))["status"] == "running"
    assert await job.done() is True
    assert (await stored(jc, job_id))["status"] == "completed"


# --- the job server's pass ------------------------------------------------------------------------


async def test_the_pass_cancels_pending_jobs_past_their_deadlines_with_the_reason(
    jc: JobCollection, clock: ManualClock
) -> None:
    ready = await save(jc, 10)
    delayed = await save(jc, 10, delay=(60,))
    paused_job = jc.create_job("t").expires(10)
    await paused_job.pause()
    paused = await paused_job.save()
    later = await save(jc, 3600)
    assert (await jc.run_server_pass()).overdue == 0
    clock.advance(11)
    assert (await jc.run_server_pass()).overdue == 3
    for job_id in (ready, delayed, paused):
        assert len(await expired_reason(jc, job_id)) == 1
    assert (await stored(jc, later))["status"] == "ready"
    assert (await jc.run_server_pass()).overdue == 0  # each once


async def test_a_failure_whose_retry_would_start_past_the_deadline_is_cancelled_at_it(
    jc: JobCollection, clock: ManualClock
) -> None:
    job_id = await save(jc, 30, retry=(3,))
    [job] = await jc.get_work("t")
    assert await job.fail({"value": "flaky"}) is True
    doc = await stored(jc, job_id)
    assert doc["status"] == "waiting" and utc(doc["after"]) > clock.now()
    clock.advance(31)
    assert (await jc.run_server_pass()).overdue == 1
    assert len(await expired_reason(jc, job_id)) == 1
    assert len((await stored(jc, job_id))["failures"]) == 1


async def test_dependents_of_an_expired_job_follow_their_failure_policies(
    jc: JobCollection, clock: ManualClock
) -> None:
    a, b = jc.create_job("a").expires(10), jc.create_job("b")
    a2, c = jc.create_job("a").expires(10), jc.create_job("c")
    await jc.save_workflow(group(chain(a, b), chain(a2, c, on_failure="ignore")))
    clock.advance(11)
    assert (await jc.run_server_pass()).overdue == 2
    assert (await stored(jc, b.id))["status"] == "cancelled"  # the default policy
    assert (await stored(jc, c.id))["status"] == "ready"  # runs without it
    [runs] = await jc.get_work("c")
    assert runs.doc.failed_antecedents == [a2.id]


async def test_a_dependent_follows_when_a_claim_cancels_its_antecedent(
    jc: JobCollection, clock: ManualClock
) -> None:
    a, b = jc.create_job("a").expires(10), jc.create_job("b")
    await jc.save_workflow(chain(a, b))
    clock.advance(11)
    assert await jc.get_work("a") == []
    assert (await stored(jc, b.id))["status"] == "cancelled"


# --- repeats, reruns, restarts ------------------------------------------------------------------


async def test_a_repeat_or_a_rerun_does_not_keep_the_deadline(
    jc: JobCollection, clock: ManualClock
) -> None:
    job_id = await save(jc, 10, repeat=(1,))
    [job] = await jc.get_work("t")
    repeat_id = await job.done(repeat_id=True)
    assert repeat_id not in (True, False)
    assert deadline(await stored(jc, repeat_id)) is None
    clock.advance(600)
    assert (await jc.run_server_pass()).overdue == 0
    assert (await stored(jc, repeat_id))["status"] == "ready"
    rerun_id = await (await jc.get_job(job_id)).rerun()  # type: ignore[union-attr]
    assert deadline(await stored(jc, rerun_id)) is None


async def test_a_restart_clears_the_deadline_so_the_job_runs(
    jc: JobCollection, clock: ManualClock
) -> None:
    job_id = await save(jc, 10)
    clock.advance(11)
    await jc.run_server_pass()
    job = await jc.get_job(job_id)
    assert job is not None and job.doc.expired
    assert await job.restart() is True
    assert deadline(await stored(jc, job_id)) is None
    assert (await jc.run_server_pass()).overdue == 0
    [claimed] = await jc.get_work("t")
    assert claimed.id == job_id and not claimed.doc.expired


async def test_a_resave_of_a_paused_job_replaces_or_clears_its_deadline(
    jc: JobCollection, clock: ManualClock
) -> None:
    job = jc.create_job("t").expires(10)
    await job.pause()
    job_id = await job.save()
    found = await jc.get_job(job_id)
    assert found is not None
    clock.advance(5)
    assert await found.expires(timedelta(minutes=1)).save() == job_id
    assert deadline(await stored(jc, job_id)) == {"at": clock.now() + timedelta(minutes=1)}
    assert await found.pause() is True  # (a resave resubmits it: waiting)
    assert await found.expires(None).save() == job_id
    assert deadline(await stored(jc, job_id)) is None


async def test_a_job_cancelled_otherwise_is_not_marked_expired(
    jc: JobCollection, clock: ManualClock
) -> None:
    job_id = await save(jc, 10)
    assert await jc.cancel_jobs([job_id]) is True
    clock.advance(11)
    assert (await jc.run_server_pass()).overdue == 0
    job = await jc.get_job(job_id)
    assert job is not None and not job.doc.expired and job.doc.expires is not None


# --- faults ---------------------------------------------------------------------------------------


def _expiry(op: str, args: tuple[Any, ...]) -> bool:
    """The write that cancels a job past its deadline."""
    return op == "update_many" and f"{EXPIRES}.expired" in args[1].get("$set", {})


@pytest.mark.local_only("faults are injected into the local collection's connection")
async def test_a_late_claim_whose_cancel_fails_is_not_handed_out_and_is_cancelled_next_time(
    make_wrapped_jc: WrapJC, clock: ManualClock
) -> None:
    jc = await make_wrapped_jc(FaultyCollection)
    faults: Faults = jc.collection.faults
    job_id = await save(jc, 10)
    clock.advance(11)
    faults.fail_before("update_many", when=_expiry)
    assert await jc.get_work("t") == []  # not handed out, though still claimed
    assert (await stored(jc, job_id))["status"] == "running"
    assert await jc.get_work("t") == []  # this instance takes it up again, and cancels it
    assert len(await expired_reason(jc, job_id)) == 1


@pytest.mark.local_only("faults are injected into the local collection's connection")
async def test_a_cascade_cut_short_by_a_lost_reply_is_carried_on_by_the_pass(
    make_wrapped_jc: WrapJC, clock: ManualClock
) -> None:
    jc = await make_wrapped_jc(FaultyCollection)
    faults: Faults = jc.collection.faults
    a, b = jc.create_job("a").expires(10), jc.create_job("b")
    await jc.save_workflow(chain(a, b))
    clock.advance(11)
    faults.fail_after("update_many", when=_expiry)  # cancelled, but the reply is lost
    assert await jc.get_work("a") == []
    assert len(await expired_reason(jc, a.id)) == 1
    assert (await stored(jc, b.id))["status"] == "waiting"
    await jc.run_server_pass()
    assert (await stored(jc, b.id))["status"] == "cancelled"


# --- the rules, as plain dicts --------------------------------------------------------------------


def test_the_pass_query_is_served_by_the_partial_deadline_index() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert query_served(deadlines.overdue(now))
    assert not query_served({deadlines.EXPIRES_AT: {"$lt": now}})  # the index's own: status first


def test_an_expiry_is_fenced_by_the_status_and_the_deadline_it_expects() -> None:
    now, at = datetime(2026, 1, 1, 0, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)
    ids = [ObjectId()]
    fence, update = deadlines.expire(ids, at, now)
    assert fence["status"] == {"$in": ["waiting", "paused", "ready"]}
    assert fence[deadlines.EXPIRES_AT] == at and fence["_id"] == {"$in": ids}
    assert "$inc" not in update
    run_id = ObjectId()
    fence, update = deadlines.expire(ids, at, now, run_id)
    assert (fence["status"], fence["runId"]) == ("running", run_id)
    assert update["$inc"] == {"retries": 1, "retried": -1}  # the attempt given back
    assert [e["message"] for e in update["$push"]["log"]["$each"]] == [
        "Expired: not started by 2026-01-01T00:00:00+00:00",
        "Job Cancelled",
    ]
    assert update["$set"][f"{EXPIRES}.expired"] is True
