"""Pure time arithmetic: retry backoff and the next run of repeating jobs.

Everything here is a function of its arguments (no clock, no I/O), so the rules for retries,
repeats, cron schedules and `until` deadlines can be tested exhaustively.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, croniter

from .clock import to_millis
from .constants import FOREVER, FOREVER_DATE, SCHEDULE_MIN_LEAD_MS, RetryBackoff
from .document import CronSchedule, JobDoc, LaterSchedule
from .errors import InvalidArgument

logger = logging.getLogger("jobcollection")

_MAX_BACKOFF_EXPONENT = 62
_SECOND = timedelta(seconds=1)


def retry_after(doc: JobDoc, now: datetime, rand: float = 0.0) -> datetime:
    """When a failed attempt may run again (see retry_wait_ms); `rand` is a random number in
    [0, 1) that the job's jitter applies to."""
    wait = retry_wait_ms(
        doc.retry_wait,
        doc.retry_backoff,
        doc.retried,
        jitter=doc.retry_jitter,
        max_wait_ms=doc.retry_max_wait,
        rand=rand,
    )
    return add_ms(now, wait)


def retry_wait_ms(
    wait_ms: int,
    backoff: RetryBackoff,
    attempt: int,
    *,
    jitter: float = 0.0,
    max_wait_ms: int | None = None,
    rand: float = 0.0,
) -> int:
    """The wait after the `attempt`-th attempt failed: `wait_ms` each time (constant),
    `wait_ms * attempt` (linear) or `wait_ms * 2^(attempt - 1)` (exponential), at most
    `max_wait_ms`; then shortened by `jitter * rand` of itself (BullMQ's jitter: the wait is
    drawn from [wait * (1 - jitter), wait], so that jobs failing together spread out)."""
    attempt = max(attempt, 1)
    if backoff == "exponential":
        wait = wait_ms * 2 ** min(attempt - 1, _MAX_BACKOFF_EXPONENT)
    elif backoff == "linear":
        wait = wait_ms * attempt
    else:
        wait = wait_ms
    if max_wait_ms is not None:
        wait = min(wait, max_wait_ms)
    wait = int(min(wait, FOREVER))
    return wait - math.floor(wait * jitter * rand)


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


def occurrences(
    schedule: CronSchedule, start: datetime, n: int, until: datetime | None = None
) -> list[datetime]:
    """The next n occurrences strictly after start, in UTC (fewer if the schedule ends, or,
    given `until`, none after it).

    Daylight-saving changes follow Vixie cron's rule (see `_instants`): a fixed-time entry
    runs once in a repeated hour and once right after a skipped one; an entry with `*` at the
    start of its minute or hour field follows elapsed time.

    A stored schedule whose zone this host does not know (older tzdata) has none: the job
    stops repeating, with a warning, rather than failing the completion that asked.
    """
    try:
        zone = _zone(schedule)
    except InvalidArgument:
        logger.warning("schedule %r: unknown time zone %r", schedule.cron, schedule.timezone)
        return []
    out: list[datetime] = []
    if n <= 0:
        return out
    try:
        for instant in _instants(schedule.cron, zone, start):
            moment = to_millis(instant)
            if moment <= start or (out and moment <= out[-1]):
                continue  # a run already listed (several fixed times in one gap), or the past
            if until is not None and moment > until:
                break
            out.append(moment)
            if len(out) == n:
                break
    except (CroniterBadCronError, CroniterBadDateError, OverflowError, ValueError):
        pass  # the schedule ends (no further match, or past year 9999): what was found stands
    return out


def _fixed_time(cron: str) -> bool:
    """Whether an entry runs at a fixed local time, as Vixie cron's cron.c decides it.

    Vixie cron flags an entry MIN_STAR or HR_STAR when its minute or hour field starts with
    `*`; such entries follow elapsed time across a clock change, the others wall-clock time.
    Six-field (croniter) expressions put seconds last, so fields 0 and 1 are still minute
    and hour.
    """
    fields = cron.split()
    return len(fields) >= 2 and not fields[0].startswith("*") and not fields[1].startswith("*")


def _transition(zone: ZoneInfo, lo: datetime, hi: datetime) -> datetime:
    """The first instant in (lo, hi] whose UTC offset differs from lo's, to the second.

    The caller brackets exactly one offset change; tzdata transitions fall on whole seconds.
    Found by bisection because zoneinfo does not expose its transition table.
    """
    before = lo.astimezone(zone).utcoffset()
    low, high = 0, math.ceil((hi - lo) / _SECOND)
    while high - low > 1:
        mid = (low + high) // 2
        if (lo + mid * _SECOND).astimezone(zone).utcoffset() == before:
            low = mid
        else:
            high = mid
    return lo + high * _SECOND


def _offsets(naive: datetime, zone: ZoneInfo) -> tuple[timedelta, timedelta]:
    """The UTC offsets of a wall-clock time read with fold=0 and with fold=1 (PEP 495).

    Equal: the time exists once. fold=0 larger: it is repeated (the clock was set back; fold=0
    is the first pass). fold=0 smaller: it is skipped (the clock was set forward; PEP 495
    gives fold=0 the offset before the change and fold=1 the offset after it).
    """
    first = naive.replace(tzinfo=zone, fold=0).utcoffset()
    second = naive.replace(tzinfo=zone, fold=1).utcoffset()
    assert first is not None and second is not None  # a ZoneInfo always has an offset
    return first, second


def _overlap(naive: datetime, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """For a repeated wall-clock time: the (naive) start and end of its repeated interval.

    The clock is set back at an instant T from offset `before` to `after`; wall-clock times
    in [T + after, T + before) occur twice, first at offset `before`, then at `after`.
    """
    before, after = _offsets(naive, zone)
    moment = _transition(
        zone, (naive - before).replace(tzinfo=UTC), (naive - after).replace(tzinfo=UTC)
    )
    wall = moment.replace(tzinfo=None)
    return wall + after, wall + before


def _gap(naive: datetime, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """For a skipped wall-clock time: the instant T (UTC) the clock was set forward, and the
    first wall-clock time that exists after the gap (T read locally)."""
    before, after = _offsets(naive, zone)
    moment = _transition(
        zone, (naive - after).replace(tzinfo=UTC), (naive - before).replace(tzinfo=UTC)
    )
    return moment, moment.replace(tzinfo=None) + after


def _in_window(cron: str, after: datetime, end: datetime) -> Iterator[datetime]:
    """The wall-clock matches of cron strictly after `after` and before `end` (naive)."""
    it = croniter(cron, after)
    while (candidate := it.get_next(datetime)) < end:
        yield candidate


def _instants(cron: str, zone: ZoneInfo, start: datetime) -> Iterator[datetime]:
    """The runs of cron read in zone, from start on, as aware UTC instants in order.

    croniter walks naive wall-clock times (plain arithmetic, no zone); each match is then
    placed in time with zoneinfo, following Vixie cron's rule for clock changes:

    - a time that exists once runs at that instant;
    - a repeated time (clock set back): a fixed-time entry runs once, at the first pass; an
      elapsed-time entry (`*` leading its minute or hour field) runs in both passes, so all
      of the first pass's runs come before all of the second's;
    - a skipped time (clock set forward): a fixed-time entry runs once at the instant of the
      change, however many of its times fall in the gap; an elapsed-time entry does not run.

    May yield instants at or before start, and the same instant twice (several fixed times
    in one gap, or one of them and a match right at the gap's end): the caller filters.
    Raises what croniter raises when the schedule has no further match.
    """
    fixed = _fixed_time(cron)
    local = start.astimezone(zone)
    cursor = local.replace(tzinfo=None, fold=0)  # matches strictly after this wall-clock time
    first, second = _offsets(cursor, zone)
    if first > second:
        # start is inside a repeated interval: finish the pass it is in, then (first pass
        # only) the whole second pass, whose earlier wall-clock times are still to come.
        begin, end = _overlap(cursor, zone)
        if local.fold == 0:
            for wall in _in_window(cron, cursor, end):
                yield (wall - first).replace(tzinfo=UTC)
        if not fixed:
            since = begin - _SECOND if local.fold == 0 else cursor
            for wall in _in_window(cron, since, end):
                yield (wall - second).replace(tzinfo=UTC)
        cursor = end - _SECOND
    it = croniter(cron, cursor)
    while True:
        wall = it.get_next(datetime)
        first, second = _offsets(wall, zone)
        if first == second:
            yield (wall - first).replace(tzinfo=UTC)
            continue
        if first > second:
            begin, end = _overlap(wall, zone)
            for again in _in_window(cron, wall - _SECOND, end):
                yield (again - first).replace(tzinfo=UTC)
            if not fixed:
                for again in _in_window(cron, begin - _SECOND, end):
                    yield (again - second).replace(tzinfo=UTC)
        else:
            moment, end = _gap(wall, zone)
            if fixed:
                yield moment
        it = croniter(cron, end - _SECOND)


def first_run(schedule: CronSchedule, after: datetime) -> datetime | None:
    """The first occurrence strictly after `after`."""
    found = occurrences(schedule, after, 1)
    return found[0] if found else None


CATCH_UP_LIMIT = 100
"""catch_up="all": the most runs made up for at once; older missed occurrences are skipped."""
COUNT_LIMIT = 10_000
"""The most missed occurrences counted (an every-minute schedule down for a week)."""


@dataclass(frozen=True, slots=True)
class NextRun:
    """When a completed job runs next, and how many occurrences of its schedule before that
    get no run of their own (each is logged and counted on that next run)."""

    at: datetime
    skipped: int = 0


def next_run(doc: JobDoc, now: datetime) -> NextRun | None:
    """A completed job's next run (None: no repeat), which must start by repeatUntil.

    A numeric repeatWait repeats that long after now. A cron schedule looks at the occurrences
    after the one this run was for (`after`) up to now, the missed ones: "latest" and "none"
    run at the first occurrence after now that is at least SCHEDULE_MIN_LEAD_MS away (so a job
    finishing right at an occurrence does not run twice for it), skipping the missed ones;
    "all" runs at the first missed one (a catch-up run, due at once), and so on, for the newest
    CATCH_UP_LIMIT of them. ("none" also skips a run that starts too late: see
    late_start.)"""
    if doc.repeats <= 0 or isinstance(doc.repeat_wait, LaterSchedule):
        return None
    schedule = doc.repeat_wait
    if isinstance(schedule, CronSchedule):
        edge = now + timedelta(milliseconds=SCHEDULE_MIN_LEAD_MS)
        missed = occurrences(schedule, doc.after, COUNT_LIMIT, until=edge)
        if schedule.catch_up == "all" and missed:
            runs = missed[-CATCH_UP_LIMIT:]
            found = NextRun(runs[0], len(missed) - len(runs))
        else:
            upcoming = occurrences(schedule, max(edge, doc.after), 1)
            if not upcoming:
                return None
            found = NextRun(upcoming[0], len(missed))
    else:
        found = NextRun(add_ms(now, schedule))
    return None if found.at > doc.repeat_until else found


def late_start(doc: JobDoc, now: datetime) -> NextRun | None:
    """For a run of a catch_up="none" schedule claimed more than its window after the
    occurrence it was for: the occurrence to wait for instead, and how many were missed (this
    one included). None: the run goes ahead (in time, another policy, or no later occurrence
    before repeatUntil, when a late run beats none)."""
    schedule = doc.repeat_wait
    if not isinstance(schedule, CronSchedule) or schedule.catch_up != "none":
        return None
    if now - doc.after <= timedelta(milliseconds=schedule.catch_up_window_ms):
        return None
    upcoming = occurrences(schedule, now, 1)
    if not upcoming or upcoming[0] > doc.repeat_until:
        return None
    missed = occurrences(schedule, doc.after, COUNT_LIMIT, until=now)
    return NextRun(upcoming[0], 1 + len(missed))


def next_repeat_wait_ms(doc: JobDoc, now: datetime) -> int | None:
    """Milliseconds from now until a completed job's next run (next_run), None for no repeat;
    negative for a catch-up run due already."""
    found = next_run(doc, now)
    return None if found is None else int((found.at - now) / timedelta(milliseconds=1))
