"""Cron catch-up after downtime (`repeat(schedule=..., catch_up=...)`), and cron schedules
across the 2026 daylight-saving changes, through the public API on the manual clock.

"latest" runs once for all the occurrences missed while nothing ran the job; "none" skips a
run claimed more than `catch_up_window` late and waits for the next occurrence; "all" runs once
per missed occurrence (the newest CATCH_UP_LIMIT). Every occurrence given no run is logged on
the next run and counted in `doc.skipped_runs`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from helpers import run_repeatedly, stored, utc
from jobcollection import CronSchedule, InvalidArgument, JobCollection, JobDoc, ManualClock
from jobcollection.model.schedule import CATCH_UP_LIMIT, NextRun, late_start, next_run, occurrences

pytestmark = pytest.mark.both_sides

BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def run_of(cron: str, occurrence: datetime, catch_up: Any = "latest", **fields: Any) -> JobDoc:
    schedule = CronSchedule(cron=cron, catch_up=catch_up, **fields)
    return JobDoc(type="t", repeats=10**6, repeat_wait=schedule, after=occurrence)


# --- the rules -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("catch_up", "expected"),
    [
        ("latest", NextRun(at(2026, 5, 4, 7), 3)),  # 04:00, 05:00, 06:00 get no run
        ("none", NextRun(at(2026, 5, 4, 7), 3)),
        ("all", NextRun(at(2026, 5, 4, 4), 0)),  # 04:00's run, due at once
    ],
)
def test_the_run_after_a_late_one(catch_up: Any, expected: NextRun) -> None:
    # the 03:00 run of an hourly job ran after a three-hour outage and finished at 06:10
    doc = run_of("0 * * * *", at(2026, 5, 4, 3), catch_up)
    assert next_run(doc, at(2026, 5, 4, 6, 10)) == expected


def test_a_run_in_time_skips_nothing() -> None:
    for catch_up in ("latest", "none", "all"):
        doc = run_of("0 * * * *", at(2026, 5, 4, 3), catch_up)
        assert next_run(doc, at(2026, 5, 4, 3, 5)) == NextRun(at(2026, 5, 4, 4), 0)


def test_all_makes_up_for_the_newest_runs_only() -> None:
    doc = run_of("* * * * *", at(2026, 5, 4, 3), "all")
    found = next_run(doc, at(2026, 5, 4, 6))  # 180 occurrences missed
    assert found == NextRun(at(2026, 5, 4, 6) - timedelta(minutes=CATCH_UP_LIMIT - 1), 80)


def test_a_late_start_is_skipped_only_with_none_and_past_the_window() -> None:
    occurrence = at(2026, 5, 4, 3)
    late = run_of("0 * * * *", occurrence, "none", catch_up_window_ms=60_000)
    assert late_start(late, occurrence + timedelta(seconds=60)) is None  # within its window
    assert late_start(late, occurrence + timedelta(minutes=2)) == NextRun(at(2026, 5, 4, 4), 1)
    # three hours late: its own occurrence and the three after it are missed
    assert late_start(late, at(2026, 5, 4, 6, 0)) == NextRun(at(2026, 5, 4, 7), 4)
    for other in ("latest", "all"):
        assert late_start(run_of("0 * * * *", occurrence, other), at(2026, 5, 4, 6)) is None


def test_a_late_start_runs_if_no_occurrence_is_left() -> None:
    doc = run_of("0 * * * *", at(2026, 5, 4, 3), "none")
    doc = doc.model_copy(update={"repeat_until": at(2026, 5, 4, 5)})
    assert late_start(doc, at(2026, 5, 4, 6)) is None


# --- a three-hour outage, through the API --------------------------------------------------------


async def outage(jc: JobCollection, clock: ManualClock, catch_up: str) -> tuple[Any, list[Any]]:
    """An hourly job whose 03:00 run finds every worker down until 06:00; then the workers
    run whatever they are given until 07:30. Their start times, and the job's ids."""
    clock.set(at(2026, 5, 4, 2, 30))
    first = await jc.create_job("t").repeat(schedule="0 * * * *", catch_up=catch_up).save()
    clock.set(at(2026, 5, 4, 6))
    started, ids = [], [first]
    while clock.now() < at(2026, 5, 4, 7, 30):
        await jc.run_server_pass()
        got = await jc.get_work("t")
        if not got:
            clock.set(min(utc(d["after"]) for d in await waiting(jc)))
            continue
        started.append((clock.now(), utc((await stored(jc, got[0].id))["after"])))
        clock.advance(60)
        ids.append(await got[0].done(repeat_id=True))
    return started, ids


async def waiting(jc: JobCollection) -> list[dict[str, Any]]:
    return await jc.collection.find({"status": {"$in": ["waiting", "ready"]}}).to_list(None)


def skipped_log(doc: dict[str, Any]) -> list[str]:
    return [e["message"] for e in doc["log"] if e["message"].startswith("Skipped")]


async def test_latest_runs_once_for_the_outage(jc: JobCollection, clock: ManualClock) -> None:
    started, ids = await outage(jc, clock, "latest")
    assert [s for s, _ in started] == [at(2026, 5, 4, 6), at(2026, 5, 4, 7)]
    after_outage = await stored(jc, ids[1])  # the run after the late one
    assert after_outage["_private"]["jobcollectionSkipped"] == 3
    assert skipped_log(after_outage) == [
        "Skipped 3 missed run(s) of the schedule (catch_up=latest)"
    ]
    loaded = await jc.get_job(ids[1])
    assert loaded is not None and loaded.doc.skipped_runs == 3


async def test_none_skips_the_late_run(jc: JobCollection, clock: ManualClock) -> None:
    started, ids = await outage(jc, clock, "none")
    assert [s for s, _ in started] == [at(2026, 5, 4, 7)]  # nothing ran at 06:00
    skipped = await stored(jc, ids[0])  # the 03:00 run, put back for 07:00, then run
    assert skipped["_private"]["jobcollectionSkipped"] == 4  # 03:00 to 06:00
    assert skipped_log(skipped) == ["Skipped 4 missed run(s) of the schedule (catch_up=none)"]
    assert (skipped["retries"], skipped["retried"]) == (0, 1)  # one attempt, at 07:00


async def test_all_runs_once_per_missed_occurrence(jc: JobCollection, clock: ManualClock) -> None:
    started, _ = await outage(jc, clock, "all")
    occurrence_of_each_run = [occurrence for _, occurrence in started]
    assert occurrence_of_each_run == [at(2026, 5, 4, h) for h in (3, 4, 5, 6, 7)]
    assert [s for s, _ in started][:4] == [at(2026, 5, 4, 6, m) for m in (0, 1, 2, 3)]


def test_catch_up_needs_a_schedule(jc: JobCollection) -> None:
    with pytest.raises(InvalidArgument, match="catch_up"):
        jc.create_job("t").repeat(wait=60, catch_up="none")
    with pytest.raises(InvalidArgument, match="catch_up"):
        jc.create_job("t").repeat(schedule="0 * * * *", catch_up="some")


def test_the_policy_is_stored_only_when_not_the_default(jc: JobCollection) -> None:
    plain = jc.create_job("t").repeat(schedule="0 3 * * *").doc.to_mongo()
    assert plain["_private"]["jobcollectionSchedule"] == {"cron": "0 3 * * *"}
    job = jc.create_job("t").repeat(schedule="0 3 * * *", catch_up="none", catch_up_window=300)
    assert job.doc.to_mongo()["_private"]["jobcollectionSchedule"] == {
        "cron": "0 3 * * *",
        "catchUp": "none",
        "catchUpWindow": 300_000,
    }


# --- the 2026 daylight-saving changes, through the API -------------------------------------------

CHANGES = {
    (BERLIN, "spring"): at(2026, 3, 28, 12),
    (BERLIN, "fall"): at(2026, 10, 24, 12),
    (NEW_YORK, "spring"): at(2026, 3, 7, 12),
    (NEW_YORK, "fall"): at(2026, 10, 31, 12),
}


@pytest.mark.parametrize("cron", ["30 2 * * *", "30 1 * * *", "0 * * * *", "*/30 * * * *"])
@pytest.mark.parametrize("change", list(CHANGES), ids=lambda c: f"{c[0]}-{c[1]}")
async def test_runs_across_a_change_follow_the_rule(
    jc: JobCollection, clock: ManualClock, cron: str, change: tuple[str, str]
) -> None:
    # Each run starts at its occurrence and takes 3 s; the runs across the change are the
    # occurrences of Vixie cron's rule (checked minute by minute in test_schedule.py).
    zone, _ = change
    clock.set(CHANGES[change])
    daily = not cron.startswith(("*", "0 *"))
    count = 4 if daily else (40 if cron.startswith("0") else 80)  # past the change
    expected = occurrences(CronSchedule(cron=cron, timezone=zone), clock.now(), count)
    job_id = await jc.create_job("t").repeat(schedule=cron, timezone=zone).save()
    assert await run_repeatedly(jc, clock, job_id, count) == expected
    # none was skipped: every run started at its own occurrence
    assert await jc.collection.count_documents({"_private.jobcollectionSkipped": {"$gt": 0}}) == 0
