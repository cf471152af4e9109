"""schedule.py: pure time arithmetic (backoff, saturation, cron occurrences, next repeat)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from helpers import run_repeatedly
from jobcollection import (
    FOREVER,
    FOREVER_DATE,
    CronSchedule,
    InvalidArgument,
    JobCollection,
    JobDoc,
    ManualClock,
)
from jobcollection.model.document import LaterSchedule
from jobcollection.model.schedule import (
    add_ms,
    check_cron,
    first_run,
    next_repeat_wait_ms,
    occurrences,
    retry_after,
    retry_wait_ms,
)

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def doc(**fields: Any) -> JobDoc:
    return JobDoc(type="t", **fields)


# --- backoff ----------------------------------------------------------------------------------


@pytest.mark.parametrize("retried", [0, 1, 2, 3, 10])
def test_constant_backoff(retried: int) -> None:
    job = doc(retry_wait=5_000, retried=retried, retry_backoff="constant")
    assert retry_after(job, NOW) == NOW + timedelta(seconds=5)


@pytest.mark.parametrize(("retried", "factor"), [(0, 1), (1, 1), (2, 2), (3, 4), (4, 8), (10, 512)])
def test_exponential_backoff(retried: int, factor: int) -> None:
    job = doc(retry_wait=1_000, retried=retried, retry_backoff="exponential")
    assert retry_after(job, NOW) == NOW + timedelta(seconds=factor)


def test_zero_wait_retries_now() -> None:
    assert retry_after(doc(retry_wait=0, retried=5, retry_backoff="exponential"), NOW) == NOW


@pytest.mark.parametrize(
    "fields",
    [
        {"retry_wait": FOREVER, "retried": 1},
        {"retry_wait": 300_000, "retried": 10_000, "retry_backoff": "exponential"},
        {"retry_wait": FOREVER, "retried": 60, "retry_backoff": "exponential"},
    ],
)
def test_backoff_saturates_at_forever_date(fields: dict[str, Any]) -> None:
    assert retry_after(doc(**fields), NOW) == FOREVER_DATE


@pytest.mark.parametrize(
    ("backoff", "waits"),
    [
        ("constant", [10, 10, 10, 10]),
        ("linear", [10, 20, 30, 40]),
        ("exponential", [10, 20, 40, 80]),
    ],
)
def test_the_wait_after_each_attempt(backoff: Any, waits: list[int]) -> None:
    assert [retry_wait_ms(10, backoff, attempt) for attempt in (1, 2, 3, 4)] == waits
    assert retry_wait_ms(10, backoff, 0) == 10  # no attempt counted yet: the first wait


@pytest.mark.parametrize("backoff", ["constant", "linear", "exponential"])
def test_max_wait_caps_every_backoff(backoff: Any) -> None:
    waits = [retry_wait_ms(10, backoff, n, max_wait_ms=25) for n in range(1, 70)]
    assert max(waits) <= 25 and waits[0] == 10
    assert retry_wait_ms(10, backoff, 3, max_wait_ms=0) == 0


@pytest.mark.parametrize(
    ("jitter", "rand", "wait"),
    [
        (0.0, 0.99, 1000),  # no jitter: the full wait
        (0.5, 0.0, 1000),  # the draw at 0 keeps it all
        (0.5, 0.5, 750),
        (0.5, 0.999, 501),  # never below wait * (1 - jitter)
        (1.0, 0.999, 1),
        (1.0, 0.5, 500),
    ],
)
def test_jitter_draws_from_the_top_of_the_wait(jitter: float, rand: float, wait: int) -> None:
    assert retry_wait_ms(1000, "constant", 1, jitter=jitter, rand=rand) == wait


def test_jitter_applies_after_the_cap_and_the_wait_saturates() -> None:
    assert retry_wait_ms(10, "exponential", 5, max_wait_ms=100, jitter=0.5, rand=0.5) == 75
    assert retry_wait_ms(FOREVER, "linear", 10) == FOREVER
    assert retry_wait_ms(FOREVER, "exponential", 10_000) == FOREVER


def test_a_documents_retry_settings_drive_retry_after() -> None:
    job = doc(retry_wait=1_000, retried=3, retry_backoff="linear", retry_max_wait=2_500)
    assert retry_after(job, NOW) == NOW + timedelta(milliseconds=2_500)
    job = doc(retry_wait=1_000, retried=1, retry_jitter=0.5)
    assert retry_after(job, NOW, rand=0.5) == NOW + timedelta(milliseconds=750)


def test_add_ms() -> None:
    assert add_ms(NOW, 0) == NOW
    assert add_ms(NOW, 1_500) == NOW + timedelta(milliseconds=1_500)
    assert add_ms(NOW, FOREVER) == FOREVER_DATE
    assert add_ms(FOREVER_DATE - timedelta(seconds=1), 2_000) == FOREVER_DATE
    assert add_ms(FOREVER_DATE, 1) == FOREVER_DATE
    # Results are at millisecond precision, as MongoDB stores them.
    assert add_ms(NOW + timedelta(microseconds=1_999), 1).microsecond == 2_000


# --- cron -------------------------------------------------------------------------------------


def test_occurrences_in_utc_by_default() -> None:
    found = occurrences(CronSchedule(cron="0 3 * * *"), NOW, 3)
    assert found == [
        datetime(2026, 1, 2, 3, tzinfo=UTC),
        datetime(2026, 1, 3, 3, tzinfo=UTC),
        datetime(2026, 1, 4, 3, tzinfo=UTC),
    ]
    assert all(t.tzinfo == UTC for t in found)


def test_occurrences_are_strictly_after_start() -> None:
    on_the_hour = datetime(2026, 1, 1, 13, 0, tzinfo=UTC)
    assert occurrences(CronSchedule(cron="0 * * * *"), on_the_hour, 1) == [
        datetime(2026, 1, 1, 14, tzinfo=UTC)
    ]
    assert first_run(CronSchedule(cron="0 * * * *"), on_the_hour) == datetime(
        2026, 1, 1, 14, tzinfo=UTC
    )


def test_occurrences_in_a_timezone() -> None:
    schedule = CronSchedule(cron="0 9 * * 1-5", timezone="America/New_York")
    # 2026-01-01 is a Thursday; 9:00 EST is 14:00 UTC.
    assert occurrences(schedule, NOW, 3) == [
        datetime(2026, 1, 1, 14, tzinfo=UTC),
        datetime(2026, 1, 2, 14, tzinfo=UTC),
        datetime(2026, 1, 5, 14, tzinfo=UTC),
    ]


def test_occurrences_across_a_dst_change_in_paris() -> None:
    # Summer time starts in Paris on 2026-03-29: 03:00 local moves from 02:00 to 01:00 UTC.
    schedule = CronSchedule(cron="0 3 * * *", timezone="Europe/Paris")
    start = datetime(2026, 3, 27, 12, tzinfo=UTC)
    assert occurrences(schedule, start, 3) == [
        datetime(2026, 3, 28, 2, tzinfo=UTC),
        datetime(2026, 3, 29, 1, tzinfo=UTC),
        datetime(2026, 3, 30, 1, tzinfo=UTC),
    ]
    # And back to winter time on 2026-10-25.
    autumn = occurrences(schedule, datetime(2026, 10, 23, 12, tzinfo=UTC), 3)
    assert autumn == [
        datetime(2026, 10, 24, 1, tzinfo=UTC),
        datetime(2026, 10, 25, 2, tzinfo=UTC),
        datetime(2026, 10, 26, 2, tzinfo=UTC),
    ]


def test_six_field_schedule_has_seconds_last() -> None:
    schedule = CronSchedule(cron="*/15 * * * * 30")
    check_cron(schedule)
    assert occurrences(schedule, NOW, 3) == [
        datetime(2026, 1, 1, 12, 0, 30, tzinfo=UTC),
        datetime(2026, 1, 1, 12, 15, 30, tzinfo=UTC),
        datetime(2026, 1, 1, 12, 30, 30, tzinfo=UTC),
    ]


def test_schedule_without_occurrences() -> None:
    never = CronSchedule(cron="0 0 30 2 *")  # 30 February
    assert occurrences(never, NOW, 2) == []
    assert first_run(never, NOW) is None
    late = datetime(9999, 6, 1, tzinfo=UTC)
    assert occurrences(CronSchedule(cron="0 0 1 1 *"), late, 1) == []


@pytest.mark.parametrize(
    ("cron", "timezone", "name"),
    [
        ("bad cron", None, "schedule"),
        ("61 * * * *", None, "schedule"),
        ("* * * *", None, "schedule"),
        ("* * * * * * *", None, "schedule"),
        ("", None, "schedule"),
        ("* * * * *", "Nowhere/Special", "timezone"),
        ("* * * * *", "", "timezone"),
    ],
)
def test_check_cron_rejects(cron: str, timezone: str | None, name: str) -> None:
    with pytest.raises(InvalidArgument, match=name):
        check_cron(CronSchedule(cron=cron, timezone=timezone))


@pytest.mark.parametrize(
    ("cron", "timezone"),
    [("* * * * *", None), ("0 3 * * mon", "Europe/Paris"), ("0 0 * * * 15", "UTC")],
)
def test_check_cron_accepts(cron: str, timezone: str | None) -> None:
    check_cron(CronSchedule(cron=cron, timezone=timezone))


# --- cron across daylight-saving changes (Vixie cron's rule) ----------------------------------
#
# 2026 transitions: Berlin sets its clocks forward 02:00 CET -> 03:00 CEST on 29 March (01:00
# UTC) and back 03:00 CEST -> 02:00 CET on 25 October (01:00 UTC); New York forward 02:00 EST
# -> 03:00 EDT on 8 March (07:00 UTC) and back 02:00 EDT -> 01:00 EST on 1 November (06:00 UTC).

BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"


def at(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def runs(cron: str, zone: str, start: datetime, n: int) -> list[datetime]:
    return occurrences(CronSchedule(cron=cron, timezone=zone), start, n)


@pytest.mark.parametrize(
    ("cron", "zone", "start", "expected"),
    [
        # Fall back: 02:30 happens twice in Berlin; the fixed entry runs at the first, CEST.
        (
            "30 2 * * *",
            BERLIN,
            at(2026, 10, 23, 12),
            [at(2026, 10, 24, 0, 30), at(2026, 10, 25, 0, 30), at(2026, 10, 26, 1, 30)],
        ),
        # 01:30 happens twice in New York: once, at 01:30 EDT.
        (
            "30 1 * * *",
            NEW_YORK,
            at(2026, 10, 30, 12),
            [at(2026, 10, 31, 5, 30), at(2026, 11, 1, 5, 30), at(2026, 11, 2, 6, 30)],
        ),
        # Spring forward: 02:30 does not exist; the entry runs once, at the change (03:00).
        (
            "30 2 * * *",
            BERLIN,
            at(2026, 3, 27, 12),
            [at(2026, 3, 28, 1, 30), at(2026, 3, 29, 1), at(2026, 3, 30, 0, 30)],
        ),
        (
            "30 2 * * *",
            NEW_YORK,
            at(2026, 3, 6, 12),
            [at(2026, 3, 7, 7, 30), at(2026, 3, 8, 7), at(2026, 3, 9, 6, 30)],
        ),
    ],
)
def test_fixed_time_entry_runs_once_across_a_change(
    cron: str, zone: str, start: datetime, expected: list[datetime]
) -> None:
    assert runs(cron, zone, start, 3) == expected


@pytest.mark.parametrize(
    ("zone", "start", "change"),
    [
        (BERLIN, at(2026, 3, 28, 12), at(2026, 3, 29, 1)),
        (NEW_YORK, at(2026, 3, 7, 12), at(2026, 3, 8, 7)),
    ],
)
def test_fixed_times_in_one_gap_make_one_run(zone: str, start: datetime, change: datetime) -> None:
    # 02:15 and 02:45 are both skipped: one run at the change, then both again the next day.
    day = timedelta(days=1)
    hour = timedelta(hours=1)
    assert runs("15,45 2 * * *", zone, start, 3) == [
        change,
        change + day - hour + timedelta(minutes=15),  # the next day, summer time: one hour less
        change + day - hour + timedelta(minutes=45),
    ]


def test_fixed_times_in_a_repeated_hour_run_in_the_first_pass_only() -> None:
    assert runs("15,45 2 * * *", BERLIN, at(2026, 10, 24, 12), 4) == [
        at(2026, 10, 25, 0, 15),  # 02:15 CEST
        at(2026, 10, 25, 0, 45),  # 02:45 CEST, and not again at 02:15 or 02:45 CET
        at(2026, 10, 26, 1, 15),
        at(2026, 10, 26, 1, 45),
    ]
    # From inside the first pass, the rest of the first pass; from the second pass, the next day.
    assert runs("15,45 2 * * *", BERLIN, at(2026, 10, 25, 0, 20), 2) == [
        at(2026, 10, 25, 0, 45),
        at(2026, 10, 26, 1, 15),
    ]
    assert runs("15,45 2 * * *", BERLIN, at(2026, 10, 25, 1, 20), 1) == [at(2026, 10, 26, 1, 15)]


def half_hours(first: datetime, count: int) -> list[datetime]:
    return [first + timedelta(minutes=30 * i) for i in range(count)]


@pytest.mark.parametrize(
    ("zone", "start", "expected"),
    [
        # Every half hour of elapsed time, through both passes of Berlin's 02:00-03:00
        # (00:00-00:30 UTC are 02:00 and 02:30 CEST, 01:00-01:30 UTC the same in CET) ...
        (BERLIN, at(2026, 10, 24, 23, 45), half_hours(at(2026, 10, 25, 0), 6)),
        # ... and of New York's 01:00-02:00 (EDT from 05:00 UTC, then EST from 06:00 UTC).
        (NEW_YORK, at(2026, 11, 1, 4, 45), half_hours(at(2026, 11, 1, 5), 6)),
        # Spring forward: the skipped hour has no times, and elapsed time goes on half-hourly
        # (01:30 CET at 00:30 UTC, then 03:00 CEST at 01:00 UTC).
        (BERLIN, at(2026, 3, 28, 23, 45), half_hours(at(2026, 3, 29, 0), 6)),
        # (01:30 EST at 06:30 UTC, then 03:00 EDT at 07:00 UTC).
        (NEW_YORK, at(2026, 3, 8, 5, 45), half_hours(at(2026, 3, 8, 6), 6)),
    ],
)
def test_wildcard_entry_follows_elapsed_time(
    zone: str, start: datetime, expected: list[datetime]
) -> None:
    assert runs("*/30 * * * *", zone, start, 6) == expected


def test_hourly_entry_follows_elapsed_time() -> None:
    # Fall back: 02:00 CEST and 02:00 CET both run. Spring forward: 02:00 never comes.
    assert runs("0 * * * *", BERLIN, at(2026, 10, 24, 22, 30), 4) == [
        at(2026, 10, 24, 23),  # 01:00 CEST
        at(2026, 10, 25, 0),  # 02:00 CEST
        at(2026, 10, 25, 1),  # 02:00 CET
        at(2026, 10, 25, 2),  # 03:00 CET
    ]
    assert runs("0 * * * *", NEW_YORK, at(2026, 3, 8, 5, 30), 3) == [
        at(2026, 3, 8, 6),  # 01:00 EST
        at(2026, 3, 8, 7),  # 03:00 EDT
        at(2026, 3, 8, 8),  # 04:00 EDT
    ]
    # A `*` leading the hour field makes the entry follow elapsed time even at minute 30.
    assert runs("30 */2 * * *", BERLIN, at(2026, 10, 24, 23), 3) == [
        at(2026, 10, 25, 0, 30),  # 02:30 CEST
        at(2026, 10, 25, 1, 30),  # 02:30 CET
        at(2026, 10, 25, 3, 30),  # 04:30 CET
    ]


def test_wildcard_entry_from_inside_a_repeated_hour() -> None:
    # 02:40 CEST, first pass: the second pass's 02:00 and 02:30 CET (earlier wall-clock times,
    # later instants) are still to come.
    assert runs("*/30 * * * *", BERLIN, at(2026, 10, 25, 0, 40), 4) == [
        at(2026, 10, 25, 1),
        at(2026, 10, 25, 1, 30),
        at(2026, 10, 25, 2),
        at(2026, 10, 25, 2, 30),
    ]
    # 01:10 EDT, first pass in New York: 01:30 EDT, then 01:00 and 01:30 EST.
    assert runs("*/30 * * * *", NEW_YORK, at(2026, 11, 1, 5, 10), 4) == [
        at(2026, 11, 1, 5, 30),
        at(2026, 11, 1, 6),
        at(2026, 11, 1, 6, 30),
        at(2026, 11, 1, 7),
    ]
    # 02:10 CET, second pass: the first pass is over.
    assert runs("*/30 * * * *", BERLIN, at(2026, 10, 25, 1, 10), 3) == [
        at(2026, 10, 25, 1, 30),
        at(2026, 10, 25, 2),
        at(2026, 10, 25, 2, 30),
    ]
    # Exactly at the change (02:00 CET): strictly after it.
    assert runs("*/30 * * * *", BERLIN, at(2026, 10, 25, 1), 1) == [at(2026, 10, 25, 1, 30)]
    # The last second of the first pass: the whole second pass is still to come.
    assert runs("0 * * * *", BERLIN, at(2026, 10, 25, 0, 59, 59), 2) == [
        at(2026, 10, 25, 1),
        at(2026, 10, 25, 2),
    ]


def test_six_field_entries_across_changes() -> None:
    # Seconds last: minute 30, hour 2 is a fixed time, at second 15.
    assert runs("30 2 * * * 15", BERLIN, at(2026, 10, 24, 12), 2) == [
        at(2026, 10, 25, 0, 30, 15),
        at(2026, 10, 26, 1, 30, 15),
    ]
    assert runs("30 2 * * * 15", BERLIN, at(2026, 3, 28, 12), 2) == [
        at(2026, 3, 29, 1),  # the change, not 03:30:15
        at(2026, 3, 30, 0, 30, 15),
    ]
    # `*/30 * * * * 10` follows elapsed time, from inside the first pass too.
    assert runs("*/30 * * * * 10", BERLIN, at(2026, 10, 25, 0, 40), 3) == [
        at(2026, 10, 25, 1, 0, 10),
        at(2026, 10, 25, 1, 30, 10),
        at(2026, 10, 25, 2, 0, 10),
    ]
    # Every second, across the end of the first pass: no second is lost or repeated.
    assert runs("* * * * * *", BERLIN, at(2026, 10, 25, 0, 59, 58), 3) == [
        at(2026, 10, 25, 0, 59, 59),
        at(2026, 10, 25, 1),
        at(2026, 10, 25, 1, 0, 1),
    ]


def test_ordinary_days_are_unchanged() -> None:
    assert runs("30 2 * * *", BERLIN, at(2026, 7, 1), 2) == [
        at(2026, 7, 1, 0, 30),
        at(2026, 7, 2, 0, 30),
    ]
    assert runs("30 2 * * *", NEW_YORK, at(2026, 1, 10), 2) == [
        at(2026, 1, 10, 7, 30),
        at(2026, 1, 11, 7, 30),
    ]
    assert runs("*/30 * * * *", BERLIN, at(2026, 7, 1, 0, 10), 2) == [
        at(2026, 7, 1, 0, 30),
        at(2026, 7, 1, 1),
    ]


MINUTE = timedelta(minutes=1)


def _expected_runs(cron: str, zone_name: str, begin: datetime, end: datetime) -> list[datetime]:
    """The rule restated minute by minute in UTC: a reference for occurrences() near a change.

    Only for five-field entries on every day (`m h * * *`), so that a wall-clock time matches
    on its minute and hour alone.
    """
    fields = [[str(value) for value in field] for field in croniter(cron).expanded]
    assert fields[2:] == [["*"], ["*"], ["*"]]
    minutes = set(range(60)) if fields[0] == ["*"] else {int(value) for value in fields[0]}
    hours = set(range(24)) if fields[1] == ["*"] else {int(value) for value in fields[1]}
    fixed = not cron.split()[0].startswith("*") and not cron.split()[1].startswith("*")

    def matches(wall: datetime) -> bool:
        return wall.minute in minutes and wall.hour in hours

    zone = ZoneInfo(zone_name)
    found: list[datetime] = []
    moment = begin
    while moment < end:
        local = moment.astimezone(zone)
        wall = local.replace(tzinfo=None)
        jump = local.utcoffset() or timedelta(0)
        jump -= (moment - MINUTE).astimezone(zone).utcoffset() or timedelta(0)
        if jump > timedelta(0):  # the clock was set forward at `moment`: were times skipped?
            skipped = (wall - jump + m * MINUTE for m in range(jump // MINUTE))
            if fixed and any(matches(t) for t in skipped):
                found.append(moment)
        second_pass = (
            local.fold == 1 and wall.replace(tzinfo=zone, fold=0).utcoffset() != local.utcoffset()
        )
        if matches(wall) and not (fixed and second_pass) and moment not in found[-1:]:
            found.append(moment)
        moment += MINUTE
    return found


@pytest.mark.parametrize(
    "cron",
    [
        "30 2 * * *",
        "15,45 1,2 * * *",
        "0 3 * * *",
        "*/20 * * * *",
        "0 * * * *",
        "10 */3 * * *",
        "5-10 2 * * *",
    ],
)
@pytest.mark.parametrize(
    ("zone", "change"),
    [
        (BERLIN, at(2026, 3, 29, 1)),
        (BERLIN, at(2026, 10, 25, 1)),
        (NEW_YORK, at(2026, 3, 8, 7)),
        (NEW_YORK, at(2026, 11, 1, 6)),
    ],
)
def test_occurrences_match_the_rule_minute_by_minute(
    cron: str, zone: str, change: datetime
) -> None:
    """From every start in the four hours around a change, the next three runs are those the
    rule gives when stated minute by minute."""
    begin, end = change - timedelta(hours=3), change + timedelta(days=4)
    expected = _expected_runs(cron, zone, begin, end)
    for offset in range(0, 4 * 60, 5):
        start = begin + timedelta(minutes=offset, seconds=offset % 2 * 30)
        later = [t for t in expected if t > start][:3]
        assert runs(cron, zone, start, 3) == later, (start, later)


# --- next repeat --------------------------------------------------------------------------------


def test_no_repeats_left_means_no_repeat() -> None:
    assert next_repeat_wait_ms(doc(repeats=0, repeat_wait=1_000), NOW) is None
    assert next_repeat_wait_ms(doc(repeats=0, repeat_wait=CronSchedule(cron="* * * * *")), NOW) is (
        None
    )


def test_numeric_wait() -> None:
    assert next_repeat_wait_ms(doc(repeats=1, repeat_wait=60_000), NOW) == 60_000
    assert next_repeat_wait_ms(doc(repeats=FOREVER, repeat_wait=0), NOW) == 0


def test_numeric_wait_past_repeat_until_means_no_repeat() -> None:
    until = NOW + timedelta(seconds=60)
    assert next_repeat_wait_ms(doc(repeats=5, repeat_wait=60_000, repeat_until=until), NOW) == (
        60_000
    )
    assert next_repeat_wait_ms(doc(repeats=5, repeat_wait=60_001, repeat_until=until), NOW) is None


def test_schedule_wait_is_time_to_next_occurrence() -> None:
    job = doc(repeats=3, repeat_wait=CronSchedule(cron="0 * * * *"))
    now = datetime(2026, 1, 1, 12, 20, tzinfo=UTC)
    assert next_repeat_wait_ms(job, now) == 40 * 60_000


def test_schedule_skips_an_occurrence_closer_than_500_ms() -> None:
    job = doc(repeats=3, repeat_wait=CronSchedule(cron="0 * * * *"))
    close = datetime(2026, 1, 1, 12, 59, 59, 700_000, tzinfo=UTC)  # 300 ms before 13:00
    assert next_repeat_wait_ms(job, close) == 300 + 3_600_000
    at_limit = datetime(2026, 1, 1, 12, 59, 59, 500_000, tzinfo=UTC)  # exactly 500 ms
    assert next_repeat_wait_ms(job, at_limit) == 500 + 3_600_000
    far_enough = datetime(2026, 1, 1, 12, 59, 59, 499_000, tzinfo=UTC)  # 501 ms
    assert next_repeat_wait_ms(job, far_enough) == 501


def test_schedule_past_repeat_until_means_no_repeat() -> None:
    schedule = CronSchedule(cron="0 0 * * *")
    until = datetime(2026, 1, 2, 0, 0, tzinfo=UTC)
    assert next_repeat_wait_ms(doc(repeats=3, repeat_wait=schedule, repeat_until=until), NOW) == (
        12 * 3_600_000
    )
    earlier = until - timedelta(milliseconds=1)
    assert (
        next_repeat_wait_ms(doc(repeats=3, repeat_wait=schedule, repeat_until=earlier), NOW) is None
    )


def test_schedule_without_occurrences_means_no_repeat() -> None:
    job = doc(repeats=3, repeat_wait=CronSchedule(cron="0 0 30 2 *"))
    assert next_repeat_wait_ms(job, NOW) is None


def test_later_schedule_is_never_evaluated() -> None:
    job = doc(repeats=3, repeat_wait=LaterSchedule(schedules=[{"h": [3]}]))
    assert next_repeat_wait_ms(job, NOW) is None


def test_runs_near_a_change_cost_a_few_candidates(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every-second and every-minute schedules never scan the repeated or skipped hour."""
    calls = 0
    get_next = croniter.get_next

    def counting(self: croniter, *args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return get_next(self, *args, **kwargs)

    monkeypatch.setattr(croniter, "get_next", counting)
    for cron in ("* * * * * *", "* * * * *", "30 2 * * * *"):
        for change in (at(2026, 3, 29, 1), at(2026, 10, 25, 1)):
            for seconds in range(-3_600, 3_600, 59):
                calls = 0
                found = runs(cron, BERLIN, change + timedelta(seconds=seconds), 2)
                assert len(found) == 2
                assert calls <= 4, (cron, seconds)


# --- cron across daylight-saving changes, through the public API --------------------------------


async def test_fixed_time_job_runs_once_on_the_fall_back_day(
    jc: JobCollection, clock: ManualClock
) -> None:
    clock.set(at(2026, 10, 23, 12))
    job = jc.create_job("t").repeat(schedule="30 2 * * *", timezone=BERLIN)
    job_id = await job.save()
    assert await run_repeatedly(jc, clock, job_id, 3) == [
        at(2026, 10, 24, 0, 30),  # 02:30 CEST
        at(2026, 10, 25, 0, 30),  # 02:30 CEST, the first of the day's two 02:30s
        at(2026, 10, 26, 1, 30),  # 02:30 CET: the second 02:30 of the 25th was skipped
    ]
    assert await jc.collection.count_documents({}) == 4


async def test_fixed_time_job_runs_once_on_the_spring_forward_day(
    jc: JobCollection, clock: ManualClock
) -> None:
    clock.set(at(2026, 3, 27, 12))
    job_id = await jc.create_job("t").repeat(schedule="30 2 * * *", timezone=BERLIN).save()
    assert await run_repeatedly(jc, clock, job_id, 3) == [
        at(2026, 3, 28, 1, 30),  # 02:30 CET
        at(2026, 3, 29, 1),  # 03:00 CEST: there is no 02:30 that day
        at(2026, 3, 30, 0, 30),  # 02:30 CEST
    ]


async def test_hourly_job_runs_every_elapsed_hour_on_the_fall_back_day(
    jc: JobCollection, clock: ManualClock
) -> None:
    clock.set(at(2026, 11, 1, 4, 30))  # 00:30 EDT
    job_id = await jc.create_job("t").repeat(schedule="0 * * * *", timezone=NEW_YORK).save()
    assert await run_repeatedly(jc, clock, job_id, 4) == [
        at(2026, 11, 1, 5),  # 01:00 EDT
        at(2026, 11, 1, 6),  # 01:00 EST
        at(2026, 11, 1, 7),  # 02:00 EST
        at(2026, 11, 1, 8),
    ]
