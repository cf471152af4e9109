"""Global rate limits (issue 15): counters in `<root>.limits` cap how many jobs start per
window over every JobCollection on the database; `job.rate_limited()` puts a job back.

Driven by a ManualClock and `trigger()`/`drain()`: nothing here sleeps.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest

from conftest import START, MakeJC
from jobcollection import (
    InvalidArgument,
    InvalidArgumentType,
    Job,
    JobCollection,
    ManualClock,
    RateLimit,
)
from jobcollection.api.queue import JobQueue
from jobcollection.rules.ratecounters import current, granted, reserve, window, windows

T = TypeVar("T")
SECOND = 1000


async def within(awaitable: Awaitable[T]) -> T:
    return await asyncio.wait_for(awaitable, 10.0)


def queue_of(jc: JobCollection, worker: Any, limit: RateLimit, **options: Any) -> JobQueue:
    options = {"concurrency": 10, "poll_interval": None, "wakeup": False, **options}
    return jc.process_jobs("call", worker, rate_limit=limit, **options)


async def save(jc: JobCollection, count: int, **data: Any) -> None:
    await jc.save_jobs([jc.create_job("call", {"n": n, **data}) for n in range(count)])


async def counters(jc: JobCollection) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = await jc.collection.database["queue.limits"].find().to_list(None)
    return found


# --- the rules ---------------------------------------------------------------------------------


def test_windows_are_fixed_intervals_of_the_clock() -> None:
    at = datetime(2026, 1, 1, 12, 0, 7, 400_000, tzinfo=UTC)
    assert window(at, SECOND) == (at.replace(microsecond=0), at.replace(second=8, microsecond=0))
    assert window(at, 5 * SECOND)[0] == at.replace(second=5, microsecond=0)
    assert window(at.replace(second=5, microsecond=0), 5 * SECOND)[0].second == 5


@pytest.mark.parametrize(
    ("n_after", "asked", "got"), [(3, 3, 3), (7, 4, 2), (12, 5, 0), (5, 5, 5), (9, 2, 0)]
)
def test_a_reservation_gets_what_was_left_under_the_limit(
    n_after: int, asked: int, got: int
) -> None:
    assert granted(n_after, asked, 5) == got


def test_a_counter_is_current_while_its_window_lasts_with_or_without_its_limit() -> None:
    limit = RateLimit(5, per=2.0)
    start, end = window(START, limit.per_ms)
    made = reserve(3, end, limit)["$setOnInsert"]
    assert (made["max"], made["per"]) == (5, 2_000)
    new = {"_id": {"types": ["a"], "at": start}, "n": 3, **made}
    old = {"_id": {"types": ["b"], "at": start}, "n": 4, "expireAt": made["expireAt"]}
    assert made["expireAt"] > current(START)[0]["expireAt"]["$gt"]
    [a, b] = windows([new, old], START + timedelta(seconds=1))
    assert (a.types, a.max, a.per_ms, a.started) == (("a",), 5, 2_000, 3)
    assert (b.types, b.max, b.per_ms, b.started) == (("b",), None, 2_000, 4)  # per from expiry
    assert windows([new, old], end) == []  # the next window: these are past


@pytest.mark.parametrize(
    ("arguments", "argument", "error"),
    [
        ({"max": 0}, "max", InvalidArgument),
        ({"max": "5"}, "max", InvalidArgumentType),
        ({"max": True}, "max", InvalidArgumentType),
        ({"max": 5, "per": 0}, "per", InvalidArgument),
        ({"max": 5, "per": -1.0}, "per", InvalidArgument),
        ({"max": 5, "per": "1s"}, "per", InvalidArgumentType),
        ({"max": 5, "group_by": "customer"}, "group_by", InvalidArgument),
        ({"max": 5, "group_by": "data."}, "group_by", InvalidArgument),
        ({"max": 5, "group_by": "data.$x"}, "group_by", InvalidArgument),
        ({"max": 5, "group_by": 3}, "group_by", InvalidArgumentType),
    ],
)
def test_bad_rate_limits_name_the_field(
    arguments: dict[str, Any], argument: str, error: type[Exception]
) -> None:
    with pytest.raises(error) as raised:
        RateLimit(**arguments)
    assert raised.value.argument == argument  # type: ignore[attr-defined]


def test_a_rate_limit_takes_seconds_or_a_timedelta() -> None:
    assert RateLimit(3, timedelta(minutes=1)).per_ms == 60_000
    assert RateLimit(3, 0.25, "user").per_ms == 250
    assert RateLimit(3, 0.25, "user").path == "_private.jobcollectionUser"


async def test_process_jobs_refuses_what_is_not_a_rate_limit(make_jc: MakeJC) -> None:
    jc = await make_jc()
    with pytest.raises(InvalidArgumentType) as raised:
        jc.process_jobs("call", _noop, rate_limit={"max": 5})  # type: ignore[arg-type]
    assert raised.value.argument == "rate_limit"


async def _noop(job: Job) -> None:
    return None


# --- across collections ------------------------------------------------------------------------


async def test_three_collections_start_within_the_limit_per_window(
    make_jc: MakeJC, clock: ManualClock
) -> None:
    """The issue's test: three JobCollections on one database, each a queue of concurrency
    10 limited to 5 per second, over 10 windows."""
    jcs = [await make_jc() for _ in range(3)]
    await save(jcs[0], 200)
    starts: Counter[datetime] = Counter()

    async def worker(job: Job) -> None:
        starts[window(clock.now(), SECOND)[0]] += 1

    limit = RateLimit(max=5, per=1.0)
    queues = [queue_of(jc, worker, limit) for jc in jcs]
    for _ in range(10):
        for queue in queues:
            queue.trigger()
        for queue in queues:
            await within(queue.drain())
        clock.advance(1)
    for queue in queues:
        await within(queue.shutdown("soft"))
    assert sorted(starts) == [START + timedelta(seconds=s) for s in range(10)]
    assert all(4 <= n <= 6 for n in starts.values()), starts
    assert sum(starts.values()) == 50
    stored = await jcs[0].collection.count_documents({"status": "completed"})
    assert stored == 50
    assert all(c["n"] <= 5 for c in await counters(jcs[0]))


async def test_jobs_over_the_limit_stay_ready(make_jc: MakeJC, clock: ManualClock) -> None:
    jc = await make_jc()
    await save(jc, 20)
    queue = queue_of(jc, _noop, RateLimit(5))
    await within(queue.drain())
    assert await jc.collection.count_documents({"status": "completed"}) == 5
    assert await jc.collection.count_documents({"status": "ready", "runId": None}) == 15
    assert queue.length() == 0  # not claimed and held
    await within(queue.shutdown("soft"))


async def test_an_unused_reservation_is_given_back(make_jc: MakeJC, clock: ManualClock) -> None:
    jc = await make_jc()
    await save(jc, 3)
    queue = queue_of(jc, _noop, RateLimit(5))
    await within(queue.drain())
    assert [c["n"] for c in await counters(jc)] == [3]  # reserved 10, got 5, used 3
    await save(jc, 5)
    queue.trigger()
    await within(queue.drain())  # the same window: the 2 slots left
    assert await jc.collection.count_documents({"status": "completed"}) == 5
    clock.advance(1)
    queue.trigger()
    await within(queue.drain())
    assert await jc.collection.count_documents({"status": "completed"}) == 8
    assert sorted(c["n"] for c in await counters(jc)) == [3, 5]
    await within(queue.shutdown("soft"))


async def test_a_limited_queue_looks_again_when_the_next_window_starts(
    make_jc: MakeJC, clock: ManualClock
) -> None:
    jc = await make_jc()
    await save(jc, 8)
    queue = queue_of(jc, _noop, RateLimit(5, per=2.0), poll_interval=30.0)
    await within(queue.drain())
    assert queue.next_wakeup == START + timedelta(seconds=2)
    await within(queue.shutdown("soft"))


async def test_group_by_limits_each_group(make_jc: MakeJC, clock: ManualClock) -> None:
    jc = await make_jc()
    for customer in ("a", "b", "c"):
        await save(jc, 6, customer=customer)
    started: Counter[str] = Counter()

    async def worker(job: Job) -> None:
        started[job.data["customer"]] += 1

    queue = queue_of(jc, worker, RateLimit(2, group_by="data.customer"), concurrency=20)
    await within(queue.drain())
    assert started == {"a": 2, "b": 2, "c": 2}
    assert await jc.collection.count_documents({"status": "ready", "runId": None}) == 12
    clock.advance(1)
    queue.trigger()
    await within(queue.drain())
    assert started == {"a": 4, "b": 4, "c": 4}
    await within(queue.shutdown("soft"))


async def test_group_by_user(make_jc: MakeJC, clock: ManualClock) -> None:
    jc = await make_jc()
    jobs = [
        jc.create_job("call", {"n": n}).for_user(user) for user in ("u1", "u2") for n in range(4)
    ]
    await jc.save_jobs(jobs)
    started: Counter[Any] = Counter()

    async def worker(job: Job) -> None:
        started[job.user_id] += 1

    queue = queue_of(jc, worker, RateLimit(1, group_by="user"))
    await within(queue.drain())
    assert started == {"u1": 1, "u2": 1}
    await within(queue.shutdown("soft"))


# --- a worker that meets a rate limit ------------------------------------------------------------


async def test_rate_limited_puts_the_job_back_without_an_attempt(
    make_jc: MakeJC, clock: ManualClock
) -> None:
    jc = await make_jc()
    job = jc.create_job("call", {"n": 1}).retry(retries=2)
    await job.save()
    answers: list[bool] = []

    async def worker(claimed: Job) -> str:
        answers.append(await claimed.rate_limited(30))
        assert claimed.reported
        return "not stored"

    queue = jc.process_jobs("call", worker, poll_interval=None, wakeup=False)
    await within(queue.drain())
    await within(queue.shutdown("soft"))
    assert answers == [True]
    doc = await jc.collection.find_one({"_id": job.id})
    assert doc is not None
    assert doc["status"] == "waiting"
    assert doc["runId"] is None
    assert doc["retried"] == 0
    assert doc["retries"] == 3  # as saved (retry(retries=2) counts the first attempt too)
    assert doc["after"].replace(tzinfo=UTC) == START + timedelta(seconds=30)
    assert "result" not in doc
    assert doc["log"][-1]["message"] == "Job Rate Limited"
    # and it runs again once due
    clock.advance(30)
    ran: list[int] = []

    async def again(claimed: Job) -> None:
        ran.append(claimed.doc.retried)

    queue = jc.process_jobs("call", again, poll_interval=None, wakeup=False)
    await within(queue.drain())
    await within(queue.shutdown("soft"))
    assert ran == [1]


async def test_a_remote_collection_refuses_rate_limits(make_jc: MakeJC, clock: ManualClock) -> None:
    from jobcollection.remote import RemoteJobCollection
    from remote_helpers import serve_jc

    local = await make_jc()
    async with (
        serve_jc(local) as url,
        RemoteJobCollection(url, token="admin-token", clock=clock) as remote,
    ):
        with pytest.raises(InvalidArgument) as raised:
            remote.process_jobs("call", _noop, rate_limit=RateLimit(5))
        assert raised.value.argument == "rate_limit"
        assert "local JobCollection" in str(raised.value)
