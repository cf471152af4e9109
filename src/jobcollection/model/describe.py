"""How a job reads to people: its attempts, repeats, schedule and failures in the API's words.

The stored document keeps job-collection v1.x's fields and units, which do not read as the
API is written: `.retry(5)` is stored as `retries: 6` (attempts that may still start, the
first one included), "forever" as 2**53, and a job that used its last attempt logs "Job
Failed with Fatal Error". What is here turns a JobDoc into the words `Job.retry`/`Job.repeat`
take ("5 retries, 6 attempts", "repeats forever", "failed: no retries left") for `jobcollection
show` and the dashboard's job page; the stored fields and log messages stay as v1.x has them.
Pure functions of the document (and `now` for upcoming runs): no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .constants import FOREVER, FOREVER_DATE, Status
from .document import CronSchedule, JobDoc, LaterSchedule, LogEntry

NEAR_FOREVER: Final = FOREVER // 2
"""A count from here up reads as "forever": `retry()`/`repeat()` store FOREVER (2**53), and
each attempt or repeat takes one from it (no one asks for 4.5e15 of them)."""
NEXT_RUNS: Final = 3
"""How many upcoming runs of a cron schedule are shown."""
FAILURE_TEXT: Final = ("traceback", "stack")
"""Failure fields holding a traceback (Python workers' `traceback`, JavaScript's `stack`)."""
FAILURE_HEAD: Final = ("type", "message", "value")
"""Failure fields the one-line head of a failure is made of."""


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def stamp(moment: datetime) -> str:
    """A moment as `2026-01-01T09:00:00Z` (UTC, to the second)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def duration(ms: int) -> str:
    """A length of time for people: `5m`, `1h 30m`, `1.5s`, `2d`."""
    if ms < 1_000:
        return f"{ms}ms"
    if ms % 1_000:
        return f"{ms / 1_000:g}s"
    whole, parts = ms // 1_000, []
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        if whole >= size:
            parts.append(f"{whole // size}{unit}")
            whole %= size
    return " ".join(parts)


def attempts(doc: JobDoc) -> str:
    """The attempts a job has, in `retry()`'s words: `5 retries, 6 attempts; 2 made, 4 left`,
    `no retries, 1 attempt; 1 made, none left`, `retries forever; 3 attempts made`. (Stored:
    `retries` counts the attempts that may still start, `retried` those made.)"""
    made, left = doc.retried, doc.retries
    total = made + left
    if total >= NEAR_FOREVER:
        line = f"retries forever; {_plural(made, 'attempt')} made"
    else:
        retries = {0: "no retries", 1: "1 retry"}.get(total - 1, f"{total - 1:,} retries")
        line = (
            f"{retries}, {_plural(max(total, 1), 'attempt')}; {made:,} made, "
            f"{'none' if left == 0 else f'{left:,}'} left"
        )
    if doc.retry_until != FOREVER_DATE:
        line += f", none starting after {stamp(doc.retry_until)}"
    if total > 1 and doc.retry_wait:
        line += f"; waits {duration(doc.retry_wait)} ({doc.retry_backoff})"
    return line


def attempts_made(doc: JobDoc) -> str:
    """`attempts` in a table's few characters: the attempts made of those the job may make,
    `1 of 6` (`.retry(5)`: 5 retries, 6 attempts), `0 of 1` (no retries), `3 of forever`."""
    made, left = doc.retried, doc.retries
    total = made + left
    return f"{made:,} of {'forever' if total >= NEAR_FOREVER else f'{max(total, 1):,}'}"


def outcome(doc: JobDoc) -> str | None:
    """Why a failed job is failed for good: `failed: no retries left`, `failed: retry
    deadline passed`, or `failed: fatal error (N attempts were left)`; None for any other
    status. (v1.x logs "Job Failed with Fatal Error" for each of them.)"""
    if doc.status != Status.FAILED:
        return None
    if doc.retries <= 0:
        return "failed: no retries left"
    if doc.retry_until < doc.after:
        return f"failed: retry deadline passed ({stamp(doc.retry_until)})"
    if doc.retried + doc.retries >= NEAR_FOREVER:
        return "failed: fatal error (it would have been retried forever)"
    return f"failed: fatal error ({_plural(doc.retries, 'attempt')} were left)"


def deadline(doc: JobDoc) -> str | None:
    """A job's deadline (`Job.expires`) in words: `start by 2026-01-01T09:00:00Z`, or
    `missed: cancelled, not started by ...` once it was cancelled for it; None: none."""
    if doc.expires is None:
        return None
    if doc.expired:
        return f"missed: cancelled, not started by {stamp(doc.expires)}"
    return f"start by {stamp(doc.expires)}"


def repeats(doc: JobDoc) -> str:
    """How often a job runs again, in `repeat()`'s words: `none`, `forever; 3 so far`,
    `4 more times; 1 so far`, with its deadline when it has one."""
    if doc.repeats >= NEAR_FOREVER:
        line = "forever"
    elif doc.repeats == 0:
        line = "none" if doc.repeated == 0 else "no more"
    else:
        line = f"{doc.repeats:,} more {'time' if doc.repeats == 1 else 'times'}"
    if doc.repeated:
        line += f"; {doc.repeated:,} so far"
    if doc.repeats and doc.repeat_until != FOREVER_DATE:
        line += f", none starting after {stamp(doc.repeat_until)}"
    return line


def schedule(doc: JobDoc) -> str | None:
    """When a repeating job runs again: `cron 0 9 * * 1-5 in Europe/Paris (catch-up: latest)`,
    `every 5m after each run`; None for a job that does not repeat."""
    if doc.repeats == 0:
        return None
    wait = doc.repeat_wait
    if isinstance(wait, CronSchedule):
        window = "" if wait.catch_up != "none" else f", window {duration(wait.catch_up_window_ms)}"
        return f"cron {wait.cron} in {wait.timezone or 'UTC'} (catch-up: {wait.catch_up}{window})"
    if isinstance(wait, LaterSchedule):
        return "a later.js schedule (written by job-collection v1.x; not evaluated here)"
    return f"every {duration(wait)} after each run"


def next_runs(doc: JobDoc, now: datetime, n: int = NEXT_RUNS) -> list[datetime]:
    """The next runs of a pending job on a cron schedule: this run when it is due later, then
    the schedule's occurrences after it (as many as it has repeats left, by its deadline).
    Empty for a finished job (its repeat, if any, is another job) or one without a schedule."""
    from .schedule import occurrences

    wait = doc.repeat_wait
    if not isinstance(wait, CronSchedule) or doc.status in Status.FINAL:
        return []
    runs = [doc.after] if doc.after > now and doc.status != Status.RUNNING else []
    start = max(doc.after, now)
    more = min(n - len(runs), doc.repeats)
    return runs + occurrences(wait, start, more, until=doc.repeat_until)


def run_time(moment: datetime, doc: JobDoc) -> str:
    """A run's time in UTC, and on the wall clock of its cron schedule's zone when it has one:
    `2026-01-05T08:00:00Z (09:00 Europe/Paris)`."""
    wait = doc.repeat_wait
    if not isinstance(wait, CronSchedule) or wait.timezone is None:
        return stamp(moment)
    try:
        local = moment.astimezone(ZoneInfo(wait.timezone))
    except (ZoneInfoNotFoundError, ValueError):
        return stamp(moment)
    return f"{stamp(moment)} ({local:%a %H:%M} {wait.timezone})"


@dataclass(frozen=True, slots=True)
class Failure:
    """One failed attempt as people read it."""

    time: datetime | None
    """When it failed: the time of the log line its failure wrote (None: not in the log)."""
    head: str
    """`ValueError: boom`, or the error's value."""
    traceback: list[str]
    """The traceback's lines (none when the worker sent none)."""
    details: dict[str, Any]
    """The failure's other fields (runId excepted)."""


def failures(doc: JobDoc) -> list[Failure]:
    """The job's failures, oldest first, each with its time: a failure's time is that of the
    log line the same failed attempt (`runId`) wrote at level warning or danger."""
    times: dict[Any, datetime] = {}
    for entry in doc.log or []:
        if entry.run_id is not None and _failure_line(entry):
            times[entry.run_id] = entry.time
    found = []
    for failure in doc.failures or []:
        run_id = failure.get("runId")
        found.append(
            Failure(
                time=times.get(run_id) if run_id is not None else None,
                head=_head(failure),
                traceback=_traceback(failure),
                details={
                    k: v
                    for k, v in failure.items()
                    if k not in {"runId", *FAILURE_TEXT, *FAILURE_HEAD}
                },
            )
        )
    return found


def _failure_line(entry: LogEntry) -> bool:
    return entry.level in ("warning", "danger") and entry.message.startswith("Job Failed")


def _head(failure: Mapping[str, Any]) -> str:
    kind, message, value = (failure.get(k) for k in FAILURE_HEAD)
    if isinstance(kind, str) and isinstance(message, str) and message:
        return f"{kind}: {message}"
    if isinstance(kind, str) and not message:
        return kind
    return str(value) if value is not None else "(no error value)"


def _traceback(failure: Mapping[str, Any]) -> list[str]:
    for key in FAILURE_TEXT:
        text = failure.get(key)
        if isinstance(text, str) and text.strip():
            return text.rstrip("\n").splitlines()
    return []
