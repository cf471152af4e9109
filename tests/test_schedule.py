"""schedule.py: pure time arithmetic (backoff, saturation, cron occurrences, next repeat)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jobcollection import FOREVER, FOREVER_DATE, CronSchedule, InvalidArgument, JobDoc
from jobcollection.document import LaterSchedule
from jobcollection.schedule import (
    add_ms,
    check_cron,
    first_run,
    next_repeat_wait_ms,
    occurrences,
    retry_after,
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
