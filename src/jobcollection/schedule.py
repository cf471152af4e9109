"""Pure time arithmetic: retry backoff and the next run of repeating jobs.

Everything here is a function of its arguments (no clock, no I/O), so the rules for retries,
repeats, cron schedules and `until` deadlines can be tested exhaustively.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, croniter

from .clock import to_millis
from .constants import FOREVER_DATE, SCHEDULE_MIN_LEAD_MS
from .document import CronSchedule, JobDoc, LaterSchedule
from .errors import InvalidArgument

logger = logging.getLogger("jobcollection")

_MAX_BACKOFF_EXPONENT = 62


def retry_after(doc: JobDoc, now: datetime) -> datetime:
    """When a failed attempt may run again: constant wait, or wait * 2^(retried - 1)."""
    wait = doc.retry_wait
    if doc.retry_backoff == "exponential":
        wait *= 2 ** min(max(doc.retried - 1, 0), _MAX_BACKOFF_EXPONENT)
    return add_ms(now, wait)


def add_ms(moment: datetime, ms: int) -> datetime:
    """moment + ms, saturating at FOREVER_DATE instead of overflowing."""
    try:
        return to_millis(moment + timedelta(milliseconds=ms))
    except OverflowError:
        return FOREVER_DATE


def check_cron(schedule: CronSchedule) -> None:
    """Raise InvalidArgument unless the expression and zone can be evaluated."""
    _zone(schedule)
    if not croniter.is_valid(schedule.cron):
        raise InvalidArgument("schedule", f"not a valid cron expression: {schedule.cron!r}")
    fields = schedule.cron.split()
    if len(fields) not in (5, 6):
        raise InvalidArgument("schedule", "a cron expression has five fields, or six with seconds")


def _zone(schedule: CronSchedule) -> ZoneInfo:
    try:
        return ZoneInfo("UTC" if schedule.timezone is None else schedule.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidArgument("timezone", f"unknown time zone {schedule.timezone!r}") from None


def occurrences(schedule: CronSchedule, start: datetime, n: int) -> list[datetime]:
    """The next n occurrences strictly after start, in UTC (fewer if the schedule ends).

    A stored schedule whose zone this host does not know (older tzdata) has none: the job
    stops repeating, with a warning, rather than failing the completion that asked.
    """
    try:
        zone = _zone(schedule)
    except InvalidArgument:
        logger.warning("schedule %r: unknown time zone %r", schedule.cron, schedule.timezone)
        return []
    local = start.astimezone(zone)
    try:
        it = croniter(schedule.cron, local)
        out = []
        for _ in range(n):
            nxt = it.get_next(datetime)
            out.append(to_millis(nxt.astimezone(UTC)))
        return out
    except (CroniterBadCronError, CroniterBadDateError, OverflowError, ValueError):
        return []


def first_run(schedule: CronSchedule, after: datetime) -> datetime | None:
    """The first occurrence strictly after `after`."""
    found = occurrences(schedule, after, 1)
    return found[0] if found else None


def next_repeat_wait_ms(doc: JobDoc, now: datetime) -> int | None:
    """Milliseconds from now until a completed job's next repeat, or None for no repeat.

    A numeric repeatWait repeats after that wait; a cron schedule at its next occurrence that
    is at least SCHEDULE_MIN_LEAD_MS away (so a job finishing right at an occurrence does not
    run twice for it). Either way the repeat must start no later than repeatUntil.
    """
    if doc.repeats <= 0:
        return None
    wait = doc.repeat_wait
    if isinstance(wait, LaterSchedule):
        return None
    if isinstance(wait, CronSchedule):
        upcoming = occurrences(wait, now, 2)
        lead = [t for t in upcoming if t - now > timedelta(milliseconds=SCHEDULE_MIN_LEAD_MS)]
        if not lead:
            return None
        ms = int((lead[0] - now) / timedelta(milliseconds=1))
    else:
        ms = wait
    if add_ms(now, ms) > doc.repeat_until:
        return None
    return ms
