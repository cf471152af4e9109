"""The operator command `schedules`: every schedule object (`jc.schedules.list()`), with its
timing, its policies, its next run and its last run (on a remote API: jobSchedules, a
manager's or an admin's)."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..model.document import jsonable
from ..model.schedules import Schedule
from .operating import Console, stamp, table, to_json

if TYPE_CHECKING:
    from ..api.jobs import JobsAPI


async def schedules(jc: JobsAPI, args: argparse.Namespace, console: Console) -> int:
    """`jobcollection schedules [--json]`: a table (ID, TYPE, WHEN, OVERLAP, CATCH-UP, STATE,
    NEXT RUN, LAST RUN, SKIPPED), or one JSON object per schedule (as jobSchedules answers it,
    dates in ISO 8601); "schedules: none" on stderr when there are none."""
    found = await jc.schedules.list()
    if args.json:
        for schedule in found:
            print(to_json(as_json(schedule)), file=console.out)
        return 0
    head = ["ID", "TYPE", "WHEN", "OVERLAP", "CATCH-UP", "STATE", "NEXT RUN", "LAST RUN", "SKIPPED"]
    rows = [
        [
            s.id,
            s.type,
            timing(s),
            s.overlap,
            s.catch_up,
            "paused" if s.paused else "active",
            stamp(s.next_runs[0] if s.next_runs else None),
            last_run(s),
            skipped(s),
        ]
        for s in found
    ]
    table([head, *rows], console.out)
    if not found:
        print("schedules: none", file=console.err)
    return 0


def timing(schedule: Schedule) -> str:
    """`cron 0 3 * * * Europe/Paris` or `every 300s`, with `+ jitter 10s` if any."""
    if schedule.cron is not None:
        when = f"cron {schedule.cron} {schedule.timezone or 'UTC'}"
    else:
        assert schedule.every is not None
        when = f"every {schedule.every.total_seconds():g}s"
    jitter = schedule.jitter.total_seconds()
    return f"{when} + jitter {jitter:g}s" if jitter else when


def last_run(schedule: Schedule) -> str:
    """`<job id> <status> at <occurrence>` (`triggered` for a triggered run), or `-`."""
    last = schedule.last_run
    if last is None:
        return "-"
    kind = "triggered" if last.triggered else stamp(last.at)
    return f"{last.job_id} {last.status or 'gone'} ({kind})"


def skipped(schedule: Schedule) -> str:
    """`<count> (last <when>)`: the occurrences the job server skipped; `0` if none."""
    if not schedule.skipped:
        return "0"
    return f"{schedule.skipped} (last {stamp(schedule.last_skipped)})"


def as_json(schedule: Schedule) -> dict[str, Any]:
    """A schedule as one JSON object: jobSchedules' shape, ids as strings, dates ISO 8601."""
    return dict(_iso(jsonable(schedule.wire())))


def _iso(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {key: _iso(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_iso(item) for item in value]
    return value
