"""Cron schedules stored as later.js schedules (later.py): the times they name are cron's."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from croniter import croniter

from jobcollection.model.later import later_schedule


def later_matches(schedule: dict[str, Any], moment: datetime) -> bool:
    """What later.js computes: any of the schedules holds and none of the exceptions does.
    In a constraint, 0 for the day of the month or its day-of-week count means the last one
    (later.js's `val || extent[1]`)."""
    return any(_holds(s, moment) for s in schedule["schedules"]) and not any(
        _holds(e, moment) for e in schedule.get("exceptions", [])
    )


def _holds(constraints: dict[str, list[int]], moment: datetime) -> bool:
    days = calendar.monthrange(moment.year, moment.month)[1]
    values = {
        "s": (moment.second, None),
        "m": (moment.minute, None),
        "h": (moment.hour, None),
        "D": (moment.day, days),
        "M": (moment.month, None),
        "d": (moment.isoweekday() % 7 + 1, None),
        "dc": ((moment.day - 1) // 7 + 1, -(-days // 7)),
    }
    for key, allowed in constraints.items():
        value, last = values[key]
        if value not in [last if a == 0 and last is not None else a for a in allowed]:
            return False
    return True


def _cron_times(cron: str, start: datetime, end: datetime) -> set[datetime]:
    times = set()
    it = croniter(cron, start - timedelta(seconds=1))
    while (t := it.get_next(datetime)) < end:
        times.add(t)
    return times


def _later_times(schedule: dict[str, Any], start: datetime, end: datetime, step: timedelta) -> set:
    times = set()
    t = start
    while t < end:
        if later_matches(schedule, t):
            times.add(t)
        t += step
    return times


YEARLY = {"59 23 31 12 *", "0 0 29 2 *"}


@pytest.mark.parametrize(
    "cron",
    [
        "0 3 * * *",
        "30 2 * * *",
        "*/15 * * * *",
        "5,35 */6 * * *",
        "0 9-17/2 * * 1-5",
        "0 0 1 * *",
        "0 0 L * *",
        "0 12 1,15 * 1",  # a day of the month or a day of the week: either
        "0 8 * jan,jul sun",
        "0 8 * * 7",
        "0 6 * * 1#2",
        "0 6 * * 5#1,5#3",
        "59 23 31 12 *",
        "0 0 29 2 *",
    ],
)
def test_a_cron_schedule_names_the_same_minutes_in_later_js(cron: str) -> None:
    start = datetime(2027, 1, 1, tzinfo=UTC)
    # the once-a-year ones over two years (2028 is a leap year), the others over two months
    end = start + timedelta(days=731 if cron in YEARLY else 62)
    expected = _cron_times(cron, start, end)
    schedule = later_schedule(cron)
    # later.js checks every constraint it is given: only the hours and minutes can match
    # croniter's, so scan those.
    found = set()
    day = start
    while day < end:
        if any(
            _holds({k: v for k, v in s.items() if k in ("D", "M", "d", "dc")}, day)
            for s in schedule["schedules"]
        ):
            for minute in range(24 * 60):
                t = day + timedelta(minutes=minute)
                if later_matches(schedule, t):
                    found.add(t)
        day += timedelta(days=1)
    assert found == expected and expected


def test_seconds_last_is_the_later_js_seconds_constraint() -> None:
    cron = "0 0 * * * 15,45"
    start = datetime(2027, 3, 1, tzinfo=UTC)
    end = start + timedelta(hours=3)
    assert _later_times(later_schedule(cron), start, end, timedelta(seconds=1)) == (
        _cron_times(cron, start, end)
    )
    assert later_schedule(cron)["schedules"] == [{"s": [15, 45], "m": [0], "h": [0]}]


def test_shapes_follow_later_js() -> None:
    assert later_schedule("0 3 * * *") == {
        "schedules": [{"s": [0], "m": [0], "h": [3]}],
        "exceptions": [],
    }
    # cron's Sunday is 0 or 7; later.js counts days of the week from Sunday = 1
    assert later_schedule("0 3 * * 0,6")["schedules"] == [
        {"s": [0], "m": [0], "h": [3], "d": [1, 7]}
    ]
    # the last day of the month, and the last Friday as later.js's cron parser writes it
    assert later_schedule("0 3 L * *")["schedules"] == [{"s": [0], "m": [0], "h": [3], "D": [0]}]
    assert later_schedule("0 3 * * L5")["schedules"] == [
        {"s": [0], "m": [0], "h": [3], "d": [6], "dc": [0]}
    ]
    # the weekday nearest the 15th, as later.js approximates it
    nearest = later_schedule("0 3 15W * *")
    assert nearest["schedules"] == [
        {"s": [0], "m": [0], "h": [3], "D": [14, 15, 16], "d": [2, 3, 4, 5, 6]}
    ]
    assert nearest["exceptions"] == [{"D": [14], "d": [2, 3, 4, 5]}, {"D": [16], "d": [3, 4, 5, 6]}]
    # every second: no constraint at all
    assert later_schedule("* * * * * *") == {"schedules": [{}], "exceptions": []}


def test_the_nearest_weekday_lands_on_a_weekday_near_the_day() -> None:
    schedule = later_schedule("0 3 15W * *")
    for month in range(1, 13):
        hits = [
            day
            for day in range(1, calendar.monthrange(2027, month)[1] + 1)
            if later_matches(schedule, datetime(2027, month, day, 3, tzinfo=UTC))
        ]
        assert len(hits) == 1, (month, hits)
        assert abs(hits[0] - 15) <= 1 and datetime(2027, month, hits[0]).isoweekday() <= 5
