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
from pymongo import ReturnDocument, WriteConcern
from pymongo.errors import AutoReconnect, OperationFailure

from conftest import REPORTS_TIME, START
from faults import FaultyCollection
from jobcollection import (
    DatabaseError,
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
    decodes it); `round_trip` moves the local clocks forward during the call. `error` fails
    every call; `lose` lists errors for the next calls, one each."""

    def __init__(self, clock: ManualClock, *, reply: dict[str, Any] | None = None) -> None:
        self.clock = clock
        self.calls: list[str] = []
        self.round_trip = timedelta(0)
        self.reply = reply
        self.error: Exception | None = None
        self.lose: list[Exception] = []
        self.name = "fake"

    async def command(self, name: str) -> dict[str, Any]:
        self.calls.append(name)
        if self.error is not None:
            raise self.error
        if self.lose:
            raise self.lose.pop(0)
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
    clock.advance(5)
    local.skew += timedelta(seconds=30)  # an NTP step on the worker
    assert sc.extrapolating  # the offset is 30 s off now: counted on the monotonic clock
    assert sc.now() == clock.now()
    assert sc.stale()
    assert await sc.refresh() is True
    assert not sc.extrapolating
    assert sc.offset == -HOUR - timedelta(seconds=30)
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
        assert await sc.refresh() is REPORTS_TIME
        await sc.refresh(force=True)
    if REPORTS_TIME:  # a real server (or the sharded proxy's mongos) reports its time
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


async def test_a_lost_hello_before_the_first_measurement_raises_instead_of_using_the_local_clock(
    clock: ManualClock,
) -> None:
    server = FakeServer(clock)
    server.lose = [AutoReconnect("hello lost"), AutoReconnect("hello lost again")]
    sc = server_clock(server, -HOUR)  # a worker an hour behind the server
    with pytest.raises(DatabaseError, match="could not read the server's clock") as lost:
        await sc.refresh()
    assert isinstance(lost.value.__cause__, AutoReconnect)
    assert sc.reports_time is None
    assert sc.stale()  # not taken for a measurement: the next call measures again
    with pytest.raises(DatabaseError, match="hello lost again"):
        await sc.refresh()  # at once, without waiting for refresh_interval
    assert await sc.refresh() is True
    assert server.calls == ["hello"] * 3
    assert sc.now() == clock.now()


async def test_a_failed_refresh_after_a_measurement_is_tried_again_within_seconds(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    server = FakeServer(clock)
    sc = server_clock(server, HOUR, refresh_interval=60)
    await sc.refresh()
    clock.advance(60)
    server.error = AutoReconnect("connection refused")
    with caplog.at_level(logging.DEBUG, logger="jobcollection"):
        assert await sc.refresh() is False  # no error: the measured offset stays valid
        assert sc.now() == clock.now()
        clock.advance(4.999)
        assert not sc.stale()
        clock.advance(0.001)
        assert sc.stale()  # after 5 s, not after refresh_interval
        assert await sc.refresh() is False
        server.error = None
        clock.advance(5)
        assert await sc.refresh() is True
    assert server.calls == ["hello"] * 4
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.DEBUG, logging.INFO]
    assert not sc.stale()
    clock.advance(59)
    assert not sc.stale()  # back to refresh_interval


async def test_a_jump_and_a_lost_hello_count_on_the_monotonic_clock(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    server = FakeServer(clock)
    local = SkewedClock(clock, timedelta(0))
    sc = ServerClock(
        server, local=local, monotonic=seconds_since_start(clock), refresh_interval=600
    )
    await sc.refresh()
    clock.advance(100)
    local.skew = -HOUR  # the worker's clock is stepped an hour back...
    server.error = AutoReconnect("connection refused")  # ...and the server is out of reach
    assert sc.stale()
    with caplog.at_level(logging.WARNING, logger="jobcollection"):
        assert await sc.refresh() is False
    assert "monotonic" in caplog.text
    assert sc.offset == timedelta(0)  # the last measured offset, now an hour wrong...
    assert sc.extrapolating
    assert sc.now() == clock.now()  # ...so the time is the server's at the measurement + 100 s
    clock.advance(3)
    assert sc.now() == clock.now()
    server.error = None
    clock.advance(2)
    assert await sc.refresh() is True
    assert not sc.extrapolating
    assert sc.offset == HOUR
    assert sc.now() == clock.now()


async def test_a_reply_without_local_time_after_a_measurement_keeps_the_offset(
    clock: ManualClock,
) -> None:
    server = FakeServer(clock)
    sc = server_clock(server, HOUR)
    await sc.refresh()
    server.reply = {"ok": 1.0}
    assert await sc.refresh(force=True) is False
    assert sc.reports_time is True
    assert sc.now() == clock.now()


async def test_a_cut_off_connection_before_the_first_measurement_fails_the_refresh(
    database: Any, clock: ManualClock
) -> None:
    faulty = FaultyCollection(database["queue.jobs"])
    sc = ServerClock(faulty, local=clock, monotonic=seconds_since_start(clock))
    faulty.faults.cut_off()
    with pytest.raises(DatabaseError, match="could not read the server's clock"):
        await sc.refresh()
    assert sc.reports_time is None and sc.stale()
    faulty.faults.restore()
    await sc.refresh()
    assert sc.reports_time is REPORTS_TIME  # the plain in-memory backend has no time
    faulty.faults.cut_off()  # found out once: a cut-off connection keeps what there is
    assert await sc.refresh(force=True) is False
    if not REPORTS_TIME:
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


# --- through mongos ---------------------------------------------------------------------------


class FakeShardCollection:
    """A collection behind the routers: `find_one_and_update` applies `$currentDate` with the
    clock of the shard primary (the reference clock) and is recorded; it has no other method,
    so any other use fails the test."""

    def __init__(self, database: FakeRouters, name: str) -> None:
        self.database = database
        self.name = name
        self.calls: list[tuple[Any, ...]] = []
        self.lose: list[Exception] = []

    async def find_one_and_update(
        self, query: dict[str, Any], update: dict[str, Any], **options: Any
    ) -> dict[str, Any]:
        self.calls.append((query, update, options))
        if self.lose:
            raise self.lose.pop(0)
        clock = self.database.clock
        clock.advance(self.database.round_trip / 2)
        written = clock.now().replace(tzinfo=None)
        clock.advance(self.database.round_trip / 2)
        return {"_id": query["_id"], "now": written}


class FakeRouters:
    """A sharded cluster seen through two mongos routers that answer in turn, whose clocks
    run `spread` ahead of and behind the shard primary's (the reference clock)."""

    def __init__(self, clock: ManualClock, spread: timedelta) -> None:
        self.clock = clock
        self.router_skews = [spread, -spread]
        self.calls: list[str] = []
        self.round_trip = timedelta(0)
        self.collections: dict[str, FakeShardCollection] = {}
        self.options: dict[str, dict[str, Any]] = {}
        self.name = "fake"

    async def command(self, name: str) -> dict[str, Any]:
        skew = self.router_skews[len(self.calls) % 2]
        self.calls.append(name)
        reported = (self.clock.now() + skew).replace(tzinfo=None)
        return {"ok": 1.0, "isWritablePrimary": True, "msg": "isdbgrid", "localTime": reported}

    def get_collection(self, name: str, **options: Any) -> FakeShardCollection:
        self.options[name] = options
        return self.collections.setdefault(name, FakeShardCollection(self, name))

    def __getitem__(self, name: str) -> FakeShardCollection:
        return self.get_collection(name)


SPREAD = timedelta(seconds=2)


def router_clock(target: Any, clock: ManualClock, **options: Any) -> ServerClock:
    return ServerClock(
        target,
        local=SkewedClock(clock, HOUR),
        monotonic=seconds_since_start(clock),
        **options,
    )


async def test_through_mongos_the_time_is_the_shard_primarys_whichever_router_answers(
    clock: ManualClock,
) -> None:
    routers = FakeRouters(clock, SPREAD)
    routers.round_trip = timedelta(milliseconds=4)
    jobs = routers["queue.jobs"]
    sc = router_clock(jobs, clock)
    offsets = []
    for _ in range(4):
        assert await sc.refresh(force=True) is True
        offsets.append(sc.offset)
        clock.advance(1)
    assert offsets == [-HOUR] * 4  # not flipping between the routers' clocks
    assert sc.router is True
    assert sc.round_trip == timedelta(milliseconds=4)
    assert sc.now() == clock.now()
    assert routers.calls == ["hello"]  # asked once what the server is
    side = routers.collections["queue.clock"]
    assert (
        side.calls
        == [
            (
                {"_id": "clock"},
                {"$currentDate": {"now": True}},
                {"upsert": True, "return_document": ReturnDocument.AFTER},
            )
        ]
        * 4
    )
    assert routers.options["queue.clock"] == {"write_concern": WriteConcern(w=1)}
    assert jobs.calls == []  # the jobs collection holds job documents only
    assert set(routers.collections) == {"queue.jobs", "queue.clock"}


@pytest.mark.parametrize(
    ("given", "side"),
    [("queue.jobs", "queue.clock"), ("tasks", "tasks.clock"), (None, "jobcollection.clock")],
)
async def test_the_clock_collection_is_named_after_what_the_clock_is_given(
    clock: ManualClock, given: str | None, side: str
) -> None:
    routers = FakeRouters(clock, SPREAD)
    sc = router_clock(routers if given is None else routers[given], clock)
    assert sc.clock_collection == side
    await sc.refresh()
    assert len(routers.collections[side].calls) == 1


async def test_through_mongos_a_refused_clock_write_falls_back_to_the_routers_time(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    routers = FakeRouters(clock, SPREAD)
    jobs = routers["queue.jobs"]
    side = routers["queue.clock"]
    side.lose = [OperationFailure("not authorized on queue to execute command", code=13)]
    sc = router_clock(jobs, clock)
    with caplog.at_level(logging.INFO, logger="jobcollection"):
        for _ in range(4):
            assert await sc.refresh(force=True) is True
            assert abs(sc.offset + HOUR) == SPREAD  # the answering router's clock
    assert routers.calls == ["hello"] * 4
    assert len(side.calls) == 1  # refused once: not asked again
    assert jobs.calls == []
    [warning] = caplog.records
    assert warning.levelno == logging.WARNING
    assert "refused" in warning.getMessage() and "queue.clock" in warning.getMessage()


async def test_through_mongos_a_lost_clock_write_is_not_a_refusal(clock: ManualClock) -> None:
    routers = FakeRouters(clock, SPREAD)
    side = routers["queue.clock"]
    side.lose = [AutoReconnect("shard primary unreachable")]
    sc = router_clock(routers["queue.jobs"], clock)
    with pytest.raises(DatabaseError, match="shard primary unreachable"):
        await sc.refresh()  # the first measurement: no time to fall back on
    assert await sc.refresh() is True
    assert sc.offset == -HOUR
    assert routers.calls == ["hello"]
    assert len(side.calls) == 2


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
    await database["queue.servers"].delete_many({})  # the first run's job server lease
    clock.set(START)
    disagreeing = await lifecycle(skewed, clock, [HOUR, -HOUR, timedelta(minutes=-30)])
    assert disagreeing == agreed


async def test_a_worker_whose_first_hello_is_lost_writes_no_local_times(
    clock: ManualClock, database: Any
) -> None:
    lossy = FakeServer(clock)
    lossy.lose = [AutoReconnect("hello lost"), AutoReconnect("hello lost")]
    job_server = JobCollection(
        database["queue.jobs"], clock=server_clock(FakeServer(clock), timedelta(0))
    )
    watched = FaultyCollection(database["queue.jobs"])
    worker = JobCollection(watched, clock=server_clock(lossy, -HOUR))  # an hour behind
    try:
        await job_server.start_job_server()
        await job_server.create_job("t").save()
        with pytest.raises(DatabaseError, match="could not read the server's clock"):
            await worker.start_job_server()
        with pytest.raises(DatabaseError, match="could not read the server's clock"):
            await worker.create_job("u").save()
        assert watched.faults.calls == []  # nothing read or written on the local clock
        assert await job_server.collection.count_documents({}) == 1
        await worker.start_job_server()  # the third hello answers
        assert lossy.calls == ["hello"] * 3
        [job] = await worker.get_work("t", work_timeout=60)
        doc = await job_server.collection.find_one({"_id": job.id})
        lease = doc["expiresAfter"].replace(tzinfo=UTC)
        assert lease == clock.now() + timedelta(seconds=60)  # server time, not an hour old
        clock.advance(59)
        assert (await job_server.run_server_pass()).expired == 0
        clock.advance(1.001)
        assert (await job_server.run_server_pass()).expired == 1
    finally:
        await worker.close()
        await job_server.close()
