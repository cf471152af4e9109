"""Schedules as objects (`jc.schedules`, local/schedules.py): stored beside the jobs, their
occurrences materialised by the elected job server's pass as ordinary jobs, exactly one run per
occurrence, across processes taking turns as the leader, racing passes and lost replies.

Passes are run explicitly (`run_server_pass`) on an injected clock; the background loops are
stopped so that they do not race the test.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from conftest import START, MakeJC
from faults import Faults, FaultyCollection, FaultyDatabase
from helpers import claim_one
from jobcollection import InvalidArgument, JobCollection, ManualClock, Status
from jobcollection.model.schedules import jitter_ms, run_id

pytestmark = pytest.mark.both_sides
MINUTE = timedelta(minutes=1)


@pytest.fixture
def make_jc(make_jc: MakeJC) -> MakeJC:
    """Started JobCollections whose background loops are stopped (the tests run each pass)."""

    async def make(**options: Any) -> JobCollection:
        jc = await make_jc(**options)
        await jc._core.server._stop_loop()
        return jc

    return make


async def runs(jc: JobCollection, schedule: str) -> list[Any]:
    """The jobs a schedule made, oldest occurrence first."""
    page = await jc.find_jobs(schedule=schedule, limit=1000)
    assert page.next is None
    return sorted((job.doc for job in page.jobs), key=lambda doc: doc.scheduled.at)


async def occurrences_run(jc: JobCollection, schedule: str) -> list[datetime]:
    return [doc.scheduled.at for doc in await runs(jc, schedule)]


# --- upsert, get, list ---------------------------------------------------------------------------


async def test_upsert_stores_a_schedule_that_lists_its_next_runs(
    jc: Any, clock: ManualClock
) -> None:
    every = await jc.schedules.upsert("every-minute", every=60, type="t", data={"n": 1})
    assert every.next_runs == [START + MINUTE, START + 2 * MINUTE, START + 3 * MINUTE]
    assert every.every == MINUTE and every.cron is None and not every.paused
    assert every.last_run is None and every.data == {"n": 1}
    nightly = await jc.schedules.upsert(
        "nightly", cron="0 3 * * *", timezone="Europe/Paris", type="report"
    )
    assert nightly.next_runs[0] == datetime(2026, 1, 2, 2, tzinfo=UTC)  # 03:00 in Paris (CET)
    assert [s.id for s in await jc.schedules.list()] == ["every-minute", "nightly"]
    assert await jc.schedules.get("nightly") == nightly
    assert await jc.schedules.get("none") is None


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"type": "t"}, "cron"),
        ({"type": "t", "cron": "* * * * *", "every": 60}, "cron"),
        ({"type": "t", "cron": "not cron"}, "cron"),
        ({"type": "t", "cron": "* * * * *", "timezone": "Mars/Olympus"}, "timezone"),
        ({"type": "t", "every": 60, "timezone": "UTC"}, "timezone"),
        ({"type": "t", "every": 0.5}, "every"),
        ({"type": "t", "every": -1}, "every"),
        ({"type": "", "every": 60}, "type"),
        ({"type": ["a", "b"], "every": 60}, "type"),
        ({"type": "t", "every": 60, "data": {"$bad": 1}}, "data"),
        ({"type": "t", "every": 60, "jitter": -1}, "jitter"),
        ({"type": "t", "every": 60, "overlap": "queue"}, "overlap"),
        ({"type": "t", "every": 60, "catch_up": "some"}, "catch_up"),
    ],
)
async def test_bad_settings_raise_naming_the_field_and_store_nothing(
    jc: Any, options: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidArgument) as raised:
        await jc.schedules.upsert("s", **options)
    assert raised.value.argument == field
    with pytest.raises(InvalidArgument, match=r"^id"):
        await jc.schedules.upsert("", every=60, type="t")
    assert await jc.schedules.list() == []


async def test_an_upsert_replaces_the_settings_and_keeps_the_next_run_unless_the_timing_changed(
    jc: Any, clock: ManualClock
) -> None:
    await jc.schedules.upsert("s", every=60, type="t")
    clock.advance(90)  # its first occurrence is due, and no pass ran yet
    again = await jc.schedules.upsert("s", every=60, type="t", data={"v": 2})  # an app restart
    assert again.next_runs[0] == START + MINUTE and again.data == {"v": 2}
    await jc.run_server_pass()
    [run] = await runs(jc, "s")
    assert run.scheduled.at == START + MINUTE and run.data == {"v": 2}
    changed = await jc.schedules.upsert("s", every=3600, type="t")
    assert changed.next_runs[0] == START + timedelta(hours=1)
    switched = await jc.schedules.upsert("s", cron="*/5 * * * *", type="t")
    assert switched.every is None and switched.next_runs[0] == START + 5 * MINUTE


# --- materialising -------------------------------------------------------------------------------


async def test_each_occurrence_gets_one_ordinary_job_carrying_the_schedule(
    jc: Any, clock: ManualClock
) -> None:
    await jc.schedules.upsert("s", every=60, type="t", data={"k": "v"})
    assert (await jc.run_server_pass()).scheduled == 0  # nothing due yet
    for _ in range(3):
        clock.advance(60)
        assert (await jc.run_server_pass()).scheduled == 1
        assert (await jc.run_server_pass()).scheduled == 0  # the same occurrence: no second run
    made = await runs(jc, "s")
    assert [d.scheduled.at for d in made] == [START + k * MINUTE for k in (1, 2, 3)]
    assert all(d.type == "t" and d.data == {"k": "v"} and d.status == "ready" for d in made)
    assert [d.id for d in made] == [run_id("s", START + k * MINUTE) for k in (1, 2, 3)]
    job = await claim_one(jc)
    assert job.doc.scheduled is not None and job.doc.scheduled.schedule == "s"
    [shown] = await jc.schedules.list()
    assert shown.last_run is not None and shown.last_run.job_id == made[-1].id
    assert shown.last_run.at == START + 3 * MINUTE and shown.last_run.status == "ready"
    assert shown.next_runs[0] == START + 4 * MINUTE


async def test_a_pause_stops_the_runs_and_a_resume_starts_from_the_next_occurrence(
    jc: Any, clock: ManualClock
) -> None:
    await jc.schedules.upsert("s", every=60, type="t")
    assert await jc.schedules.pause("s") and not await jc.schedules.pause("s")
    paused = await jc.schedules.get("s")
    assert paused is not None and paused.paused and paused.next_runs == []
    assert (await jc.schedules.upsert("s", every=60, type="t", data={"x": 1})).paused
    clock.advance(150)
    assert (await jc.run_server_pass()).scheduled == 0
    assert await jc.schedules.resume("s") and not await jc.schedules.resume("s")
    resumed = await jc.schedules.get("s")
    assert resumed is not None and resumed.next_runs[0] == START + 3 * MINUTE
    await jc.run_server_pass()
    clock.advance(30)
    await jc.run_server_pass()
    assert await occurrences_run(jc, "s") == [START + 3 * MINUTE]
    assert not await jc.schedules.pause("none") and not await jc.schedules.resume("none")


async def test_trigger_makes_one_run_now(jc: Any, clock: ManualClock) -> None:
    await jc.schedules.upsert("s", cron="0 0 1 1 *", type="t", data={"a": 1})
    await jc.schedules.pause("s")
    job_id = await jc.schedules.trigger("s")
    [run] = await runs(jc, "s")
    assert run.id == job_id and run.status == "ready" and run.data == {"a": 1}
    assert run.scheduled is not None and run.scheduled.triggered and run.scheduled.at == START
    shown = await jc.schedules.get("s")
    assert shown is not None and shown.last_run is not None
    assert shown.last_run.job_id == job_id and shown.last_run.triggered
    with pytest.raises(InvalidArgument, match=r"^id: no schedule"):
        await jc.schedules.trigger("none")


async def test_a_trigger_with_a_key_makes_one_run_however_often_it_is_repeated(
    jc: Any, clock: ManualClock
) -> None:
    """An idempotency key makes a retried trigger safe: calls with the same key (a retry
    after a lost reply, a racing caller) answer the first run; another key makes another."""
    await jc.schedules.upsert("s", cron="0 0 1 1 *", type="t")
    first = await jc.schedules.trigger("s", key="deploy-42")
    clock.advance(5)
    again = await asyncio.gather(*(jc.schedules.trigger("s", key="deploy-42") for _ in range(3)))
    assert set(again) == {first}
    other = await jc.schedules.trigger("s", key="deploy-43")
    assert other != first
    assert sorted(r.id for r in await runs(jc, "s")) == sorted([first, other])
    for bad in ("", 5, "x" * 201, "a\nb"):
        with pytest.raises(InvalidArgument, match=r"^key: "):
            await jc.schedules.trigger("s", key=bad)
    assert len(await runs(jc, "s")) == 2


async def test_backfill_runs_each_occurrence_once_however_often_it_is_called(
    jc: Any, clock: ManualClock
) -> None:
    clock.advance(600)
    await jc.schedules.upsert("s", every=60, type="t")
    made = await jc.schedules.backfill("s", START, START + 5 * MINUTE)
    assert len(made) == 6
    assert await jc.schedules.backfill("s", START, START + 5 * MINUTE) == []
    assert len(await jc.schedules.backfill("s", START + 4 * MINUTE, START + 7 * MINUTE)) == 2
    assert await occurrences_run(jc, "s") == [START + k * MINUTE for k in range(8)]
    # a backfill reaching into the future: the job server makes no second run of those
    await jc.schedules.backfill("s", START + 11 * MINUTE, START + 12 * MINUTE)
    for _ in range(3):
        clock.advance(60)
        await jc.run_server_pass()
    counts = Counter(await occurrences_run(jc, "s"))
    assert set(counts.values()) == {1}  # 0..7 backfilled, 11 and 12 too, then 13 by a pass
    assert sorted(counts) == [START + k * MINUTE for k in (*range(8), 11, 12, 13)]
    with pytest.raises(InvalidArgument, match=r"^end"):
        await jc.schedules.backfill("s", START, START - MINUTE)
    with pytest.raises(InvalidArgument, match=r"^end: the range holds more than"):
        await jc.schedules.backfill("s", START, START + timedelta(days=1))
    with pytest.raises(InvalidArgument, match=r"^start"):
        await jc.schedules.backfill("s", datetime(2026, 1, 1), START)


async def test_remove_deletes_the_schedule_and_leaves_its_runs(jc: Any, clock: ManualClock) -> None:
    await jc.schedules.upsert("s", every=60, type="t")
    clock.advance(60)
    await jc.run_server_pass()
    assert await jc.schedules.remove("s") and not await jc.schedules.remove("s")
    clock.advance(60)
    assert (await jc.run_server_pass()).scheduled == 0
    assert await jc.schedules.list() == [] and len(await runs(jc, "s")) == 1


# --- overlap -------------------------------------------------------------------------------------


async def test_skip_makes_no_run_while_the_previous_one_is_not_final(
    jc: Any, clock: ManualClock
) -> None:
    await jc.schedules.upsert("s", every=60, type="t", overlap="skip")
    clock.advance(60)
    await jc.run_server_pass()
    job = await claim_one(jc)
    clock.advance(60)
    before = await jc.schedules.get("s")
    assert before is not None and (before.skipped, before.last_skipped) == (0, None)
    await jc.run_server_pass()  # the first still runs: this occurrence is skipped
    assert await occurrences_run(jc, "s") == [START + MINUTE]
    shown = await jc.schedules.get("s")
    assert shown is not None and (shown.skipped, shown.last_skipped) == (1, clock.now())
    await job.done()
    clock.advance(60)
    await jc.run_server_pass()
    assert await occurrences_run(jc, "s") == [START + MINUTE, START + 3 * MINUTE]


async def test_allow_runs_beside_the_previous_run(jc: Any, clock: ManualClock) -> None:
    await jc.schedules.upsert("s", every=60, type="t")
    clock.advance(60)
    await jc.run_server_pass()
    await claim_one(jc)
    clock.advance(60)
    await jc.run_server_pass()
    statuses = [d.status for d in await runs(jc, "s")]
    assert statuses == ["running", "ready"]


async def test_buffer_one_keeps_one_run_waiting_behind_the_running_one(
    jc: Any, clock: ManualClock
) -> None:
    await jc.schedules.upsert("s", every=60, type="t", overlap="buffer_one")
    clock.advance(60)
    await jc.run_server_pass()
    job = await claim_one(jc)
    for _ in range(2):  # the second is buffered, the third skipped
        clock.advance(60)
        await jc.run_server_pass()
    made = await runs(jc, "s")
    assert [(d.scheduled.at, d.status) for d in made] == [
        (START + MINUTE, "running"),
        (START + 2 * MINUTE, "waiting"),
    ]
    assert made[1].depends == [job.id]
    await job.fail("boom", fatal=True)  # it runs whatever became of the one before
    await jc.run_server_pass()
    assert [d.status for d in await runs(jc, "s")] == ["failed", "ready"]


async def test_cancel_other_cancels_the_previous_run_then_runs(jc: Any, clock: ManualClock) -> None:
    await jc.schedules.upsert("s", every=60, type="t", overlap="cancel_other")
    clock.advance(60)
    await jc.run_server_pass()
    await claim_one(jc)
    clock.advance(60)
    await jc.run_server_pass()
    assert [d.status for d in await runs(jc, "s")] == ["cancelled", "ready"]


# --- catch-up and jitter -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("catch_up", "every", "outage", "expected"),
    [
        ("latest", 1, 5.5, [5]),
        ("all", 1, 5.5, [1, 2, 3, 4, 5]),
        ("none", 5, 10.5, [10]),  # the newest missed occurrence is at most a minute old
        ("none", 5, 12, []),  # it is two minutes old: the outage's occurrences are skipped
    ],
)
async def test_catch_up_decides_what_an_outage_s_occurrences_become(
    jc: Any,
    clock: ManualClock,
    catch_up: str,
    every: int,
    outage: float,
    expected: list[int],
) -> None:
    await jc.schedules.upsert("s", every=every * 60, type="t", catch_up=catch_up)  # type: ignore[arg-type]
    clock.advance(outage * 60)
    await jc.run_server_pass()
    assert await occurrences_run(jc, "s") == [START + k * MINUTE for k in expected]
    shown = await jc.schedules.get("s")
    assert shown is not None
    missed = int(outage // every)  # the occurrences that fell during the outage
    assert shown.skipped == missed - len(expected)
    assert shown.last_skipped == (clock.now() if shown.skipped else None)
    clock.set(shown.next_runs[0])  # and then on time again
    assert (await jc.run_server_pass()).scheduled == 1


async def test_jitter_delays_each_run_by_at_most_the_jitter_the_same_everywhere(
    jc: Any, clock: ManualClock
) -> None:
    await jc.schedules.upsert("s", every=60, type="t", jitter=30)
    for _ in range(40):
        clock.advance(60)
        await jc.run_server_pass()
    made = await runs(jc, "s")
    delays = [d.after - d.scheduled.at for d in made]
    assert len(delays) == 40 and all(
        timedelta(0) <= delay <= timedelta(seconds=30) for delay in delays
    )
    assert len(set(delays)) > 10  # spread, not one delay for all
    expected = [jitter_ms("s", d.scheduled.at, 30_000) for d in made]
    assert [delay // timedelta(milliseconds=1) for delay in delays] == expected
    assert made[-1].status == "waiting"  # the newest waits for its delay


# --- exactly one run per occurrence across processes ---------------------------------------------


async def leads(jc: JobCollection) -> bool:
    held = await jc.job_server_leader()
    return held is not None and held.this_process


class _Faults(Faults):
    """A fault plan whose calls each first give the event loop a turn, so that the passes of
    several processes run concurrently interleave between their commands."""

    async def run(self, op: str, args: tuple[Any, ...], call: Any) -> Any:
        await asyncio.sleep(0)
        return await super().run(op, args, call)


class Process(FaultyCollection):
    """One process's connection to the jobs, with the collections beside them reachable (the
    servers' lease, the schedules), each with a fault plan of its own (`plans[name]`)."""

    def __init__(self, inner: Any, plans: dict[str, Faults]) -> None:
        super().__init__(inner, plans.setdefault(str(inner.name), _Faults()))
        self.plans = plans

    @property
    def database(self) -> FaultyDatabase:
        return _Database(self._inner.database, self.plans)

    def with_options(self, **kwargs: Any) -> Process:
        return Process(self._inner.with_options(**kwargs), self.plans)


class _Database(FaultyDatabase):
    def __init__(self, inner: Any, plans: dict[str, Faults]) -> None:
        super().__init__(inner, plans["queue.jobs"])
        self.plans = plans

    def __getitem__(self, name: str) -> Process:
        return Process(self._inner[name], self.plans)


async def test_one_run_per_occurrence_across_failover_races_and_lost_replies(
    database: Any, clock: ManualClock
) -> None:
    """Three processes over one collection take turns as the elected server (one stops, one
    dies and its lease runs out), stale leaders' passes race the leader's, and replies are
    lost after the insert of runs and after the plan's write: over 60 occurrences of two
    schedules, each occurrence has exactly one run, and none is lost."""
    rng = random.Random(24)
    leaders: set[int] = set()
    dead: set[int] = set()
    processes = [Process(database["queue.jobs"], {}) for _ in range(3)]
    collections = [JobCollection(p, clock=clock, server_lease=150) for p in processes]
    for jc in collections:
        await jc.start_job_server()
        await jc._core.server._stop_loop()
    try:
        await collections[0].schedules.upsert("a", every=60, type="t", catch_up="all")
        await collections[1].schedules.upsert("b", cron="* * * * *", type="u", catch_up="all")
        for step in range(60):
            clock.advance(60)
            plans = rng.choice(processes).plans
            fault = rng.randrange(5)
            if fault == 0:  # the runs are inserted, the reply is lost
                plans["queue.jobs"].fail_after(("insert_one", "insert_many"))
            elif fault == 1:  # the plan is written, the reply is lost
                plans["queue.schedules"].fail_after("update_one")
            elif fault == 2:  # the process is cut off mid-pass, before the runs are inserted
                plans["queue.jobs"].fail_before(("insert_one", "insert_many"))
            if step % 20 == 5:  # the leader dies: its lease runs out, another takes over
                dead = {i for i, jc in enumerate(collections) if await leads(jc)}
            if step % 20 == 15:  # the leader stops and hands over; the dead one is back
                dead = set()
                for jc in collections:
                    if await leads(jc):
                        await jc.shutdown_job_server(0)
                        await jc.start_job_server()
                        await jc._core.server._stop_loop()
            alive = [i for i in rng.sample(range(3), 3) if i not in dead]
            # the leader's pass races the others' and stale leaders' (they believe they lead)
            outcomes = await asyncio.gather(
                *(collections[i].run_server_pass() for i in alive),
                *(jc._core.scheduler.materialise() for jc in rng.sample(collections, 2)),
                return_exceptions=True,
            )
            passes = zip(alive, outcomes[: len(alive)], strict=True)
            leaders.update(i for i, o in passes if getattr(o, "leading", False))
        fired = Counter(
            (name, rule.kind)
            for p in processes
            for name, plan in p.plans.items()
            for rule in plan.rules
            if rule.fired
        )
        assert leaders == {0, 1, 2}  # each took its turn as the elected server
        for process in processes:
            for plan in process.plans.values():
                plan.clear()
        for jc in collections:  # whatever a fault left pending is carried out
            await jc._core.scheduler.materialise()
        end = clock.now()
        for name in ("a", "b"):
            made = Counter(await occurrences_run(collections[2], name))
            assert set(made.values()) == {1}, made.most_common(3)
            expected = [START + k * MINUTE for k in range(1, (end - START) // MINUTE + 1)]
            assert sorted(made) == expected
        assert {kind for _, kind in fired} == {"before", "after"} and sum(fired.values()) > 20
    finally:
        for jc in collections:
            await jc.close()


async def test_a_plan_left_pending_by_a_crash_is_carried_out_by_the_next_leader(
    database: Any, clock: ManualClock
) -> None:
    first, second = Process(database["queue.jobs"], {}), Process(database["queue.jobs"], {})
    dying, taking_over = JobCollection(first, clock=clock), JobCollection(second, clock=clock)
    for jc in (dying, taking_over):
        await jc.start_job_server()
        await jc._core.server._stop_loop()
    try:
        await dying.schedules.upsert("s", every=60, type="t")
        clock.advance(60)
        first.plans["queue.jobs"].cut_off()  # after planning, before inserting: it dies
        assert (await dying.run_server_pass()).errors >= 1
        pending = await database["queue.schedules"].find_one({"_id": "s"})
        assert pending is not None and "plan" in pending and await runs(taking_over, "s") == []
        clock.advance(11)  # its lease runs out
        assert (await taking_over.run_server_pass()).scheduled == 1
        assert await occurrences_run(taking_over, "s") == [START + MINUTE]
        cleared = await database["queue.schedules"].find_one({"_id": "s"})
        assert cleared is not None and "plan" not in cleared
    finally:
        first.plans["queue.jobs"].restore()
        for jc in (dying, taking_over):
            await jc.close()


async def test_the_runs_are_ordinary_jobs_a_queue_works(jc: Any, clock: ManualClock) -> None:
    await jc.schedules.upsert("s", every=60, type="t")
    clock.advance(60)
    await jc.run_server_pass()
    job = await claim_one(jc)
    await job.done({"ok": True})
    [run] = await runs(jc, "s")
    assert run.status == Status.COMPLETED
    shown = await jc.schedules.get("s")
    assert shown is not None and shown.last_run is not None
    assert shown.last_run.status == "completed"


async def test_a_schedule_that_cannot_be_read_holds_up_no_other(
    make_jc: MakeJC, database: Any, clock: ManualClock
) -> None:
    jc = await make_jc()
    await jc.schedules.upsert("good", every=60, type="t")
    await database["queue.schedules"].insert_one({"_id": "bad", "next": START})  # no type
    clock.advance(60)
    done = await jc.run_server_pass()
    assert done.errors == 1  # counted and logged; the good one's run is made all the same
    assert await occurrences_run(jc, "good") == [START + MINUTE]


async def test_buffer_one_catching_up_runs_one_and_buffers_one(jc: Any, clock: ManualClock) -> None:
    await jc.schedules.upsert("s", every=60, type="t", overlap="buffer_one", catch_up="all")
    clock.advance(300)  # five occurrences missed: the first runs, one waits behind it
    await jc.run_server_pass()
    first, second = await runs(jc, "s")
    assert (first.scheduled.at, first.status) == (START + MINUTE, "ready")
    assert (second.scheduled.at, second.status, second.depends) == (
        START + 2 * MINUTE,
        "waiting",
        [first.id],
    )
