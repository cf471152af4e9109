"""Time from one authority: ServerClock reads the database server's clock.

The fake servers here report `localTime` from a ManualClock ("the server's clock"); each
worker's local clock is that clock shifted by a skew, so advancing the server clock moves
every local clock too, as real time does. The central property: a worker whose clock is an
hour off changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId
from pymongo.errors import AutoReconnect, OperationFailure

from conftest import MONGODB_URI, START
from faults import FaultyCollection
from jobcollection import (
    InvalidArgument,
    InvalidArgumentType,
    JobCollection,
    ManualClock,
    ServerClock,
)

HOUR = timedelta(hours=1)


class SkewedClock:
    """A local clock that runs `skew` ahead of (or behind) the reference clock."""

    def __init__(self, reference: ManualClock, skew: timedelta) -> None:
        self.reference = reference
        self.skew = skew

    def now(self) -> datetime:
        return self.reference.now() + self.skew


class FakeServer:
    """A database whose `hello` reports the server clock's time (naive UTC, as pymongo
    decodes it); `round_trip` moves the local clocks forward during the call."""

    def __init__(self, clock: ManualClock, *, reply: dict[str, Any] | None = None) -> None:
        self.clock = clock
        self.calls: list[str] = []
        self.round_trip = timedelta(0)
        self.reply = reply
        self.error: Exception | None = None
        self.name = "fake"

    async def command(self, name: str) -> dict[str, Any]:
        self.calls.append(name)
        if self.error is not None:
            raise self.error
        self.clock.advance(self.round_trip / 2)
        reported = self.clock.now().replace(tzinfo=None)
        self.clock.advance(self.round_trip / 2)
        if self.reply is not None:
            return self.reply
        return {"ok": 1.0, "isWritablePrimary": True, "localTime": reported}


def seconds_since_start(clock: ManualClock) -> Callable[[], float]:
    """A monotonic clock that follows the server clock."""
    return lambda: (clock.now() - START).total_seconds()


def server_clock(server: FakeServer, skew: timedelta = HOUR, **options: Any) -> ServerClock:
    return ServerClock(
        server,
        local=SkewedClock(server.clock, skew),
        monotonic=seconds_since_start(server.clock),
        **options,
    )


# --- measuring ---------------------------------------------------------------------------------


@pytest.mark.parametrize("skew", [HOUR, -HOUR, timedelta(days=-400), timedelta(0)])
async def test_now_is_the_servers_time_whatever_the_local_skew(
    clock: ManualClock, skew: timedelta
) -> None:
    server = FakeServer(clock)
    sc = server_clock(server, skew)
    assert sc.now() == START + skew  # not measured yet: the local time
    assert await sc.refresh() is True
    assert server.calls == ["hello"]
    assert sc.reports_time is True
    assert sc.offset == -skew
    assert sc.now() == START
    clock.advance(12.345)
    assert sc.now() == clock.now()


async def test_the_offset_is_taken_at_the_midpoint_of_the_round_trip(clock: ManualClock) -> None:
    server = FakeServer(clock)
    server.round_trip = timedelta(seconds=2)
    sc = server_clock(server, HOUR)
    await sc.refresh()
    assert sc.round_trip == timedelta(seconds=2)
    assert sc.offset == -HOUR
    assert sc.now() == clock.now()


async def test_the_offset_is_measured_again_after_the_refresh_interval(
    clock: ManualClock,
) -> None:
    server = FakeServer(clock)
    sc = server_clock(server, HOUR, refresh_interval=60)
    assert sc.stale()
    await sc.refresh()
    clock.advance(59)
    assert not sc.stale()
    assert await sc.refresh() is False
    clock.advance(1)
    assert sc.stale()
    assert await sc.refresh() is True
    assert await sc.refresh(force=True) is True
    assert server.calls == ["hello"] * 3


async def test_a_jump_of_the_local_clock_is_measured_again_at_once(clock: ManualClock) -> None:
    server = FakeServer(clock)
    local = SkewedClock(clock, HOUR)
    sc = ServerClock(
        server, local=local, monotonic=seconds_since_start(clock), refresh_interval=600
    )
    await sc.refresh()
    local.skew += timedelta(seconds=30)  # an NTP step on the worker
    assert sc.now() == clock.now() + timedelta(seconds=30)
    assert sc.stale()
    await sc.refresh()
    assert sc.now() == clock.now()


async def test_a_server_older_than_4_4_is_asked_with_is_master(clock: ManualClock) -> None:
    server = FakeServer(clock)

    async def command(name: str) -> dict[str, Any]:
        server.calls.append(name)
        if name == "hello":
            raise OperationFailure("no such command: 'hello'", code=59)
        return {"ok": 1.0, "localTime": clock.now().replace(tzinfo=None)}

    server.command = command  # type: ignore[method-assign]
    sc = server_clock(server, -HOUR)
    assert await sc.refresh() is True
    assert server.calls == ["hello", "isMaster"]
    assert sc.now() == START


# --- falling back ------------------------------------------------------------------------------


async def test_the_in_memory_backend_uses_the_local_clock_and_says_so_once(
    database: Any, caplog: pytest.LogCaptureFixture
) -> None:
    local = ManualClock(START)
    sc = ServerClock(database["queue.jobs"], local=local, monotonic=lambda: 0.0)
    with caplog.at_level(logging.INFO, logger="jobcollection"):
        assert await sc.refresh() is False
        await sc.refresh(force=True)
    if MONGODB_URI:  # a real server reports its time
        assert sc.reports_time is True
        assert abs(sc.now() - datetime.now(UTC)) < timedelta(minutes=1)
        return
    assert sc.reports_time is False
    assert sc.now() == START
    records = [r for r in caplog.records if "server time" in r.getMessage()]
    assert len(records) == 1 and records[0].levelno == logging.INFO


async def test_a_server_that_hides_its_time_gives_a_warning_and_the_local_clock(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    server = FakeServer(clock, reply={"ok": 1.0})
    sc = server_clock(server, HOUR)
    with caplog.at_level(logging.INFO, logger="jobcollection"):
        assert await sc.refresh() is False
    assert sc.reports_time is False
    assert sc.now() == START + HOUR
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert "localTime" in caplog.records[0].getMessage()


async def test_a_failed_refresh_keeps_the_last_offset(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    server = FakeServer(clock)
    sc = server_clock(server, HOUR, refresh_interval=10)
    await sc.refresh()
    clock.advance(10)
    server.error = AutoReconnect("connection refused")
    with caplog.at_level(logging.WARNING, logger="jobcollection"):
        assert await sc.refresh() is False
    assert sc.now() == clock.now()
    assert "connection refused" in caplog.text
    assert not sc.stale()  # not on every call while the server is unreachable
    server.error = None
    clock.advance(10)
    assert await sc.refresh() is True


async def test_a_cut_off_connection_does_not_break_the_clock(
    database: Any, clock: ManualClock
) -> None:
    faulty = FaultyCollection(database["queue.jobs"])
    sc = ServerClock(faulty, local=clock, monotonic=seconds_since_start(clock))
    faulty.faults.cut_off()
    assert await sc.refresh() is False
    assert sc.now() == clock.now()


def test_options_are_checked(clock: ManualClock) -> None:
    server = FakeServer(clock)
    with pytest.raises(InvalidArgument, match="refresh_interval"):
        ServerClock(server, refresh_interval=0)
    with pytest.raises(InvalidArgumentType, match="refresh_interval"):
        ServerClock(server, refresh_interval=True)
    with pytest.raises(InvalidArgument, match="jump_tolerance"):
        ServerClock(server, jump_tolerance=-1)
    with pytest.raises(InvalidArgumentType, match="local"):
        ServerClock(server, local=object())  # type: ignore[arg-type]


# --- in a JobCollection ------------------------------------------------------------------------


async def test_a_job_collection_reads_server_time_by_default(database: Any) -> None:
    jc = JobCollection.from_database(database, "queue")
    try:
        assert isinstance(jc.clock, ServerClock)
        before = datetime.now(UTC) - timedelta(seconds=5)
        await jc.start_job_server()
        job_id = await jc.create_job("t").save()
        doc = await jc.collection.find_one({"_id": job_id})
        assert (
            before <= doc["created"].replace(tzinfo=UTC) <= datetime.now(UTC) + timedelta(seconds=5)
        )
    finally:
        await jc.close()


@pytest.fixture
async def skewed(database: Any, clock: ManualClock) -> AsyncIterator[Callable[..., Any]]:
    made: list[JobCollection] = []

    async def make(skew: timedelta, server: FakeServer) -> JobCollection:
        jc = JobCollection(database["queue.jobs"], clock=server_clock(server, skew))
        await jc.start_job_server()
        made.append(jc)
        return jc

    yield make
    for jc in made:
        await jc.close()


async def test_the_clock_is_refreshed_before_calls_and_passes_when_due(
    clock: ManualClock, skewed: Callable[..., Any]
) -> None:
    server = FakeServer(clock)
    jc = await skewed(HOUR, server)
    assert server.calls == ["hello"]  # measured by the first call (start_job_server)
    await jc.create_job("t").save()
    await jc.run_server_pass()
    assert server.calls == ["hello"]
    clock.advance(60)
    await jc.run_server_pass()
    assert server.calls == ["hello", "hello"]
    clock.advance(60)
    await jc.get_job("000000000000000000000000")
    assert server.calls == ["hello"] * 3


def normalized(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stored documents with the ids (random per run) replaced by their order of creation."""
    names: dict[Any, str] = {}

    def name(value: Any) -> str:
        return names.setdefault(value, f"id{len(names)}")

    for doc in docs:
        name(doc["_id"])

    def scrub(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: scrub(v) for k, v in value.items()}
        if isinstance(value, list):
            return [scrub(v) for v in value]
        if isinstance(value, ObjectId):
            return name(value)
        return value

    return [scrub(d) for d in docs]


async def lifecycle(make: Callable[..., Any], clock: ManualClock, skews: list[timedelta]) -> Any:
    """Two workers and a job server with the given clock skews run the same jobs."""
    server = FakeServer(clock)
    worker, other, job_server = [await make(skew, server) for skew in skews]
    await worker.create_job("lease").retry(1, wait=0).save()
    await worker.create_job("delayed").delay(600).save()
    await other.create_job("repeat").repeat(1, wait=3600).save()
    [held] = await worker.get_work("lease", work_timeout=60)
    [repeat] = await other.get_work("repeat")
    await repeat.done()
    clock.advance(30)
    first = await job_server.run_server_pass()
    clock.advance(31)
    second = await job_server.run_server_pass()
    clock.advance(540)
    third = await job_server.run_server_pass()
    late = await held.done()
    docs = await worker.collection.find({}).sort([("type", 1), ("created", 1)]).to_list(None)
    return (first, second, third, late, normalized(docs))


async def test_workers_whose_clocks_are_an_hour_off_change_nothing(
    clock: ManualClock, skewed: Callable[..., Any], database: Any
) -> None:
    agreed = await lifecycle(skewed, clock, [timedelta(0)] * 3)
    (first, second, third, late, _) = agreed
    assert (first.expired, second.expired, late) == (0, 1, False)  # lease of 60 s, server time
    assert third.promoted  # the job delayed by 600 s, promoted at 601 s
    await database["queue.jobs"].delete_many({})
    clock.set(START)
    disagreeing = await lifecycle(skewed, clock, [HOUR, -HOUR, timedelta(minutes=-30)])
    assert disagreeing == agreed
