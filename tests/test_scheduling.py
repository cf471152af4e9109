"""Seed 003's scheduling: `schedule_job` and `schedule_cron_job`.

Scheduling cancels a user's matching pending jobs first (same type and user; not started, or
started but past their lease) and leaves at most one pending however many calls race.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from conftest import SHARDED
from helpers import claim_one, stored, utc
from jobcollection import (
    FOREVER,
    CronSchedule,
    InvalidArgument,
    InvalidArgumentType,
    JobCollection,
    ManualClock,
)

pytestmark = [
    pytest.mark.skipif(SHARDED, reason="scheduling keeps jobs unique: not sharded"),
    pytest.mark.both_sides,
]

PENDING = {"$in": ["waiting", "paused", "ready"]}


async def statuses(jc: JobCollection, ids: list[Any]) -> list[str]:
    return [(await stored(jc, i))["status"] for i in ids]


async def test_schedule_job_maps_seed_003s_config(jc: JobCollection, clock: ManualClock) -> None:
    due = clock.now() + timedelta(hours=2)
    job_id = await jc.schedule_job(
        "report",
        {"month": 11},
        user_id=42,
        due=due,
        retry_on_failure=True,
        retry_delay=30,
        remove_after=timedelta(days=1),
    )
    job = await jc.get_job(job_id)
    assert job is not None
    doc = job.doc
    assert (doc.type, doc.data, job.user_id) == ("report", {"month": 11}, 42)
    assert doc.after == due and doc.status == "waiting"
    assert (doc.retries, doc.retry_wait) == (FOREVER, 30_000)
    assert doc.remove_after is not None and doc.remove_after.delay_ms == 86_400_000
    assert doc.remove_after.statuses == ("completed",)


async def test_the_defaults_are_a_system_job_due_now_without_retries(jc: JobCollection) -> None:
    job_id = await jc.schedule_job("cleanup")
    job = await jc.get_job(job_id)
    assert job is not None
    assert job.user_id == 0 and job.doc.status == "ready"
    assert job.doc.retries == 1 and job.doc.remove_after is None  # one attempt


async def test_scheduling_again_replaces_the_pending_job(jc: JobCollection) -> None:
    first = await jc.schedule_job("report", {"v": 1}, user_id=1)
    other_user = await jc.schedule_job("report", user_id=2)
    other_type = await jc.schedule_job("digest", user_id=1)
    second = await jc.schedule_job("report", {"v": 2}, user_id=1)
    assert await statuses(jc, [first, other_user, other_type, second]) == [
        "cancelled",
        "ready",
        "ready",
        "ready",
    ]


async def test_a_running_job_is_replaced_only_past_its_lease(
    jc: JobCollection, clock: ManualClock
) -> None:
    first = await jc.schedule_job("report", user_id=1)
    running = await claim_one(jc, "report", work_timeout=60)
    assert running.id == first
    second = await jc.schedule_job("report", user_id=1)
    assert await statuses(jc, [first, second]) == ["running", "ready"]  # within its lease
    clock.advance(61)
    third = await jc.schedule_job("report", user_id=1)
    assert await statuses(jc, [first, second, third]) == ["cancelled", "cancelled", "ready"]
    assert await running.done() is False  # its run was cancelled


async def test_a_hundred_concurrent_calls_leave_one_pending_job(make_racy_jc: Any) -> None:
    collections = [await make_racy_jc() for _ in range(4)]
    await asyncio.gather(
        *(collections[n % 4].schedule_job("report", {"n": n}, user_id=7) for n in range(100))
    )
    jc = collections[0]
    assert await jc.collection.count_documents({"status": PENDING}) == 1
    assert await jc.collection.count_documents({}) == 100
    assert await jc.collection.count_documents({"status": "cancelled"}) == 99


async def test_schedule_cron_job_runs_on_its_schedule_and_is_replaced_whole(
    jc: JobCollection, clock: ManualClock
) -> None:
    first = await jc.schedule_cron_job("0 3 * * *", "backup", timezone="Europe/Paris", user_id=0)
    job = await jc.get_job(first)
    assert job is not None
    assert job.doc.repeat_wait == CronSchedule(cron="0 3 * * *", timezone="Europe/Paris")
    assert job.doc.repeats == FOREVER
    assert job.doc.after == datetime(2026, 1, 2, 2, 0, tzinfo=UTC)  # 03:00 in Paris (CET)
    # its next run, saved as it completes, is replaced too by a new schedule
    clock.set(job.doc.after)
    await jc.ready_jobs()
    worker = await claim_one(jc, "backup")
    next_run = await worker.done(repeat_id=True)
    assert (await stored(jc, next_run))["status"] == "waiting"
    replacement = await jc.schedule_cron_job("30 4 * * *", "backup")
    assert await statuses(jc, [first, next_run, replacement]) == [
        "completed",
        "cancelled",
        "waiting",
    ]
    stored_schedule = (await stored(jc, replacement))["_private"]["jobcollectionSchedule"]
    assert stored_schedule == {"cron": "30 4 * * *", "timezone": "UTC"}


@pytest.mark.parametrize(
    ("call", "error", "name"),
    [
        (lambda jc: jc.schedule_job(5), InvalidArgumentType, "type"),
        (lambda jc: jc.schedule_job("t", user_id=None), InvalidArgumentType, "user_id"),
        (lambda jc: jc.schedule_job("t", due=datetime(2030, 1, 1)), InvalidArgument, "due"),
        (lambda jc: jc.schedule_job("t", retry_delay=5), InvalidArgument, "retry_delay"),
        (
            lambda jc: jc.schedule_job("t", retry_on_failure=True, retry_delay=-1),
            InvalidArgument,
            "retry_delay",
        ),
        (lambda jc: jc.schedule_job("t", retry_on_failure=1), InvalidArgumentType, "retry_on"),
        (lambda jc: jc.schedule_job("t", remove_after="1d"), InvalidArgumentType, "remove_after"),
        (lambda jc: jc.schedule_cron_job("every day", "t"), InvalidArgument, "crontab"),
        (lambda jc: jc.schedule_cron_job(None, "t"), InvalidArgumentType, "crontab"),
        (lambda jc: jc.schedule_cron_job("0 3 * * *", "t", timezone="Mars"), InvalidArgument, "tz"),
    ],
)
async def test_bad_arguments_are_refused_before_anything_is_cancelled(
    jc: JobCollection, call: Any, error: type[Exception], name: str
) -> None:
    existing = await jc.schedule_job("t")
    with pytest.raises(error, match=name if name != "tz" else "timezone"):
        await call(jc)
    assert (await stored(jc, existing))["status"] == "ready"
    assert await jc.collection.count_documents({}) == 1


async def test_due_is_kept_in_utc_milliseconds(jc: JobCollection) -> None:
    due = datetime(2026, 6, 1, 12, 0, 0, 123456, tzinfo=UTC)
    job_id = await jc.schedule_job("t", due=due)
    assert utc((await stored(jc, job_id))["after"]) == due.replace(microsecond=123000)
