"""Cron expressions as later.js schedules: the form job-collection v1.x stores in `repeatWait`.

v1.x's schema allows `repeatWait` to be milliseconds or a later.js schedule
(`{schedules: [...], exceptions: [...]}`), nothing else. A cron schedule is stored as the
later.js schedule that means the same times, so that a v1.x application reading the job
validates it, and a v1.x server completing it schedules its repeat at the times it names; the
expression and its zone themselves are kept under `_private` (document.SCHEDULE), which is
what this library evaluates.

A later.js schedule is a list of alternatives (any one matching is a match), each a set of
constraints that must all hold: `s` second, `m` minute, `h` hour, `D` day of the month (0:
the last), `M` month, `d` day of the week (1 is Sunday), `dc` its occurrence in the month
(0: the last). Cron's rules map onto them exactly, with three exceptions that follow what
later.js's own cron parser does, since that is how a v1.x server reads them:

- a time zone: later.js has none (it reads schedules in UTC unless the application switched
  it to the server's local time), so a schedule in another zone names its local times;
- `xL` in the day of the week (the last such day): later.js matches it in the month's last
  days-of-week block only (days 29 to 31);
- `xW` (the weekday nearest day x): later.js approximates it with two exceptions.

Unlike later.js's cron parser, a day of the month and a day of the week given together mean
either (as in cron), not both.
"""

from __future__ import annotations

from typing import Final

from croniter import croniter

Constraints = dict[str, list[int]]
LaterSchedule = dict[str, list[Constraints]]

_MON, _TUE, _THU, _FRI = 2, 3, 5, 6  # later.js counts the days of the week from Sunday = 1
_LAST: Final = 0


def later_schedule(cron: str) -> LaterSchedule:
    """The later.js schedule for a cron expression (croniter syntax, five fields or six with
    seconds last) that check_cron accepted."""
    parsed = croniter(cron)
    minute, hour, dom, month, dow = parsed.expanded[:5]
    second = parsed.expanded[5] if len(parsed.expanded) == 6 else [0]
    time: Constraints = {}
    for key, values in (("s", second), ("m", minute), ("h", hour), ("M", month)):
        if values != ["*"]:
            time[key] = sorted(int(v) for v in values)
    exceptions: list[Constraints] = []
    by_day_of_month: list[Constraints] = []
    if dom != ["*"]:
        days = sorted(_LAST if v == "l" else int(v) for v in dom)
        nearest = sorted(int(v) for v in parsed.nearest_weekday)
        plain = [d for d in days if d not in nearest]
        if plain:
            by_day_of_month.append({**time, "D": plain})
        for day in nearest:
            around, exceptions_for_day = _nearest_weekday(day)
            by_day_of_month.append({**time, **around})
            exceptions.extend(exceptions_for_day)
    by_day_of_week: list[Constraints] = []
    if dow != ["*"]:
        nth = parsed.nth_weekday_of_month
        plain_days = sorted({int(v) % 7 + 1 for v in dow if int(v) not in nth})
        if plain_days:
            by_day_of_week.append({**time, "d": plain_days})
        for day, counts in sorted(nth.items()):
            occurrences = sorted(_LAST if c == "l" else int(c) for c in counts)
            by_day_of_week.append({**time, "d": [int(day) % 7 + 1], "dc": occurrences})
    schedules = by_day_of_month + by_day_of_week or [time]
    return {"schedules": schedules, "exceptions": exceptions}


def _nearest_weekday(day: int) -> tuple[Constraints, list[Constraints]]:
    """`dayW` as later.js's cron parser writes it: the weekdays from the day before to the day
    after, less the two that are not nearest (the month's boundaries are not crossed)."""
    weekdays = list(range(_MON, _FRI + 1))
    if day == 1:
        return (
            {"D": [1, 2, 3], "d": weekdays},
            [
                {"D": [2], "d": list(range(_TUE, _FRI + 1))},
                {"D": [3], "d": list(range(_TUE, _FRI + 1))},
            ],
        )
    return (
        {"D": [day - 1, day, day + 1], "d": weekdays},
        [
            {"D": [day - 1], "d": list(range(_MON, _THU + 1))},
            {"D": [day + 1], "d": list(range(_TUE, _FRI + 1))},
        ],
    )
