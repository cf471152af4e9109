"""The dashboard's operations pages: the queues (per job type: counts, claims paused or not,
the concurrency limit and how close the type is to it, the backlog and its oldest job; then
the rate limits' current windows) and the schedules (schedule objects with their next and
last runs, and the repeating jobs). Pure: the routes (app.py) read what they show. Each page
is its live part (`..._live`, what its script reloads) inside the page around it."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ..api.job import Job
from ..local.limiter import COUNTERS_READ, RateWindows
from ..model import describe
from ..model.concurrency import ConcurrencyLimit
from ..model.constants import JOB_STATUSES, Status
from ..model.ratelimit import RateWindow
from ..model.schedules import Schedule
from ..model.types import Paused
from ..model.workers import WorkerInfo
from .html import age, e, stamp
from .pages import View, badge, claims_cell, layout, limited

SCHEDULE_ACTIONS = {
    "trigger": ("Run now", "jobScheduleTrigger"),
    "pause": ("Pause", "jobSchedulePause"),
    "resume": ("Resume", "jobScheduleResume"),
}
"""Each schedule action: its label and the method it calls (with the schedule's id)."""
NEXT_SHOWN = 3
"""How many of a schedule's next runs its row lists."""
_MS = timedelta(milliseconds=1)
GROUP_SHOWN = 60
"""The most characters of a group's value the rate limits' table shows."""


@dataclass(frozen=True, slots=True)
class Queues:
    """What the queues page shows, as the route read it."""

    counts: Mapping[tuple[str, str], int]
    oldest_ready_s: Mapping[str, float]
    paused: Paused
    limits: Mapping[str, ConcurrencyLimit]
    workers: Sequence[WorkerInfo]
    rates: RateWindows


def closeness(limit: ConcurrencyLimit | None, running: int) -> str:
    """How close a type is to its concurrency limit: `3 of 5 running (60%)`; with a limit
    per group only the running count (the groups' counts are not read); `no limit`."""
    if limit is None:
        return f"{running} running, no limit"
    if limit.group_by:
        return f"{running} running in all; {limited(limit)}"
    share = 100 * running // limit.max_running
    return f"{running} of {limit.max_running} running ({share}%)"


def capacity(job_type: str, workers: Sequence[WorkerInfo]) -> str:
    """The registered queues claiming a type, and how many jobs they may run at once."""
    serving = [w for w in workers if job_type in w.types]
    if not serving:
        return "no queue registered"
    slots = sum(w.concurrency for w in serving)
    return f"{len(serving)} {'queue' if len(serving) == 1 else 'queues'}, {slots} at once"


def group_text(value: Any) -> str:
    """A group's value as the rate limits' table shows it (cut to GROUP_SHOWN characters)."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= GROUP_SHOWN else text[:GROUP_SHOWN] + "..."


def rate_window(w: RateWindow) -> str:
    """How close a rate limit is in its current window: `3 of 5 per 1s (60%)`; with a limit
    per group, the limit and the jobs started in every group; `3 started this window, limit
    unknown` for counters written before they recorded their limit."""
    per = describe.duration(w.per_ms)
    if w.max is None:
        return f"{w.started} started this window, limit unknown"
    if w.group_by is not None:
        return f"at most {w.max} per {w.group_by} per {per}; {w.started} started in all"
    return f"{w.started} of {w.max} per {per} ({100 * w.started // w.max}%)"


def rate_groups(w: RateWindow) -> str:
    """A limit per group: the groups seen this window and the fullest (`-` without)."""
    if w.group_by is None:
        return "-"
    fullest = (
        f"{w.fullest_n} of {w.max} ({100 * w.fullest_n // w.max}%)" if w.max else str(w.fullest_n)
    )
    plural = "group" if w.groups == 1 else "groups"
    return f"{w.groups} {plural}; fullest {group_text(w.fullest)}: {fullest}"


def rates_table(rates: RateWindows) -> str:
    """Each rate limit that started a job in its current window: the types it covers, how
    close it is (marked when full), its groups; and whether the read stopped at its cap."""
    rows = []
    for w in rates.windows:
        n = w.started if w.group_by is None else w.fullest_n
        full = w.max is not None and n >= w.max
        rows.append(
            f'<tr class="rate" data-types="{e(",".join(w.types))}" '
            f'data-group-by="{e(w.group_by or "")}"><td>{e(", ".join(w.types))}</td>'
            f'<td class="window{" full" if full else ""}">{e(rate_window(w))}</td>'
            f'<td class="groups">{e(rate_groups(w))}</td></tr>'
        )
    table = (
        '<h2>Rate limits</h2><div class="table-wrap"><table id="rates"><tr><th>types</th>'
        f"<th>this window</th><th>groups</th></tr>{''.join(rows)}</table></div>"
    )
    if not rates.windows:
        table += '<p class="note">No job started under a rate limit in its current window.</p>'
    if rates.cut:
        table += (
            f'<p class="note" id="rates-cut">Read the {COUNTERS_READ:,} counters whose windows '
            "end last, and there are more: some limits or groups may be missing here.</p>"
        )
    return table


def queues_live(view: View, queues: Queues) -> str:
    """Per job type: its jobs by status, the backlog (ready) and the age of its oldest ready
    job, whether its claims are paused everywhere (with the button), its concurrency limit
    and how close it is, and the queues registered for it; then the rate limits."""
    counts = queues.counts
    served = {t for w in queues.workers for t in w.types}
    types = sorted({t for t, _ in counts} | set(queues.paused.types) | set(queues.limits) | served)
    head = "".join(f"<th>{e(s)}</th>" for s in JOB_STATUSES)
    rows = []
    for t in types:
        cells = "".join(
            f'<td class="n" data-status="{e(s)}">'
            + (
                f'<a href="{e(view.url("/jobs", [("type", t), ("status", s)]))}">{n}</a>'
                if (n := counts.get((t, s), 0))
                else "0"
            )
            + "</td>"
            for s in JOB_STATUSES
        )
        limit = queues.limits.get(t)
        running = counts.get((t, Status.RUNNING), 0)
        near = limit is not None and not limit.group_by and running >= limit.max_running
        oldest = age(queues.oldest_ready_s[t]) if t in queues.oldest_ready_s else "-"
        rows.append(
            f'<tr data-type="{e(t)}"><th><a href="{e(view.url("/jobs", [("type", t)]))}">'
            f'{e(t)}</a></th>{cells}<td class="n backlog">{counts.get((t, Status.READY), 0)}'
            f'</td><td class="n oldest">{e(oldest)}</td>'
            f"{claims_cell(view, t, queues.paused, '/queues')}"
            f'<td class="limit{" full" if near else ""}">{e(closeness(limit, running))}</td>'
            f'<td class="capacity">{e(capacity(t, queues.workers))}</td></tr>'
        )
    table = (
        f'<div class="table-wrap"><table id="queues"><tr><th>type</th>{head}<th>backlog</th>'
        "<th>oldest ready</th><th>claims</th><th>concurrency</th><th>queues</th></tr>"
        f"{''.join(rows)}</table></div>"
    )
    if not types:
        table += '<p class="note">No jobs yet.</p>'
    every = (
        '<div class="table-wrap"><table id="every"><tr>'
        f"<th>every type</th>{claims_cell(view, None, queues.paused, '/queues')}</tr>"
        "</table></div>"
    )
    return table + every + rates_table(queues.rates)


def queues_page(view: View, live: str) -> str:
    """The queues page: its `live` part (pages.live_part around queues_live), then notes."""
    note = (
        '<p class="note">Backlog: the jobs ready to run now. Concurrency limits hold on every '
        "process (set them on the overview). Rate limits are set per queue (JobQueue "
        "rate_limit): the counters of their current windows say how many jobs each let start "
        "and, since this version, the limit they count against.</p>"
    )
    return layout(view, "Queues", live + note, live=True)


# --- schedules ----------------------------------------------------------------------------------


def timing(schedule: Schedule) -> str:
    """When a schedule makes runs: `cron 0 9 * * 1-5 in Europe/Paris`, `every 5m`."""
    if schedule.cron is not None:
        return f"cron {schedule.cron} in {schedule.timezone or 'UTC'}"
    every = schedule.every
    return "never" if every is None else f"every {describe.duration(every // _MS)}"


def schedule_buttons(view: View, schedule: Schedule, may: Callable[[str, str], bool]) -> str:
    """Run now, and pause or resume, for a user the rules permit them (none when read-only)."""
    if view.read_only:
        return ""
    wanted = ("trigger", "resume" if schedule.paused else "pause")
    return "".join(
        f'<form class="inline" method="post" action="{e(view.url(f"/schedules/{name}"))}">'
        f'<input type="hidden" name="csrf" value="{e(view.csrf)}">'
        f'<input type="hidden" name="id" value="{e(schedule.id)}">'
        f'<button type="submit">{e(SCHEDULE_ACTIONS[name][0])}</button></form>'
        for name in wanted
        if may(SCHEDULE_ACTIONS[name][1], schedule.id)
    )


def last_run_cell(view: View, schedule: Schedule) -> str:
    last = schedule.last_run
    if last is None:
        return "none yet"
    how = " (run now)" if last.triggered else ""
    outcome = badge(last.status) if last.status else "(removed)"
    return f'<a href="{e(view.job_url(last.job_id))}">{e(stamp(last.at))}</a>{e(how)} {outcome}'


def skipped_cell(schedule: Schedule) -> str:
    """The occurrences the job server skipped (overlap, catch-up) and when it last did."""
    if not schedule.skipped:
        return "none"
    return f"{schedule.skipped}, last at {stamp(schedule.last_skipped)}"


def schedule_rows(
    view: View, schedules: Sequence[Schedule], may: Callable[[str, str], bool]
) -> str:
    rows = []
    for s in schedules:
        runs = ", ".join(stamp(t) for t in s.next_runs[:NEXT_SHOWN]) or "none"
        state = "paused" if s.paused else "active"
        runs_link = view.url("/jobs", [("schedule", s.id)])
        rows.append(
            f'<tr class="schedule" data-id="{e(s.id)}"><td><a href="{e(runs_link)}">{e(s.id)}'
            f"</a></td><td>{e(s.type)}</td><td>{e(timing(s))}</td>"
            f"<td>{e(runs)}</td><td>{last_run_cell(view, s)}</td>"
            f'<td class="skipped">{e(skipped_cell(s))}</td><td class="state {state}">{state}</td>'
            f"<td>{schedule_buttons(view, s, may)}</td></tr>"
        )
    return "".join(rows)


def repeating_rows(view: View, jobs: Sequence[Job], now: datetime) -> str:
    rows = []
    for job in jobs:
        doc = job.doc
        upcoming = describe.next_runs(doc, now, NEXT_SHOWN)
        runs = ", ".join(describe.run_time(t, doc) for t in upcoming) or stamp(doc.after)
        rows.append(
            f'<tr class="repeating" data-id="{e(job.id)}"><td><a href="{e(view.job_url(job.id))}">'
            f"{e(job.id)}</a></td><td>{e(doc.type)}</td>"
            f"<td>{e(describe.schedule(doc) or '')}</td><td>{e(describe.repeats(doc))}</td>"
            f"<td>{e(runs)}</td><td>{badge(doc.status)}</td></tr>"
        )
    return "".join(rows)


def schedules_live(
    view: View,
    schedules: Sequence[Schedule],
    may: Callable[[str, str], bool],
    repeating: Sequence[Job],
    scanned: int,
    now: datetime,
    cut: bool = False,
) -> str:
    """The schedules page's live part: the schedule objects (timing, next runs, last run and
    its outcome, paused or not, with the buttons the user may press), then the repeating jobs
    found among the `scanned` newest pending jobs (their schedule, repeats, next runs); `cut`:
    more jobs are pending than were read, and the page says so and how to find the others."""
    table = (
        '<div class="table-wrap"><table id="schedules"><tr><th>id</th><th>type</th>'
        "<th>when</th><th>next runs</th><th>last run</th><th>skipped</th><th>state</th>"
        "<th></th></tr>"
        f"{schedule_rows(view, schedules, may)}</table></div>"
    )
    if not schedules:
        table += '<p class="note">No schedule objects (jc.schedules.upsert makes them).</p>'
    jobs = (
        '<h2>Repeating jobs</h2><div class="table-wrap"><table id="repeating"><tr><th>id</th>'
        "<th>type</th><th>schedule</th><th>repeats</th><th>next runs</th><th>status</th></tr>"
        f"{repeating_rows(view, repeating, now)}</table></div>"
        f'<p class="note" id="scanned">Jobs that repeat (job.repeat()), among the newest '
        f"{scanned:,} waiting, ready or paused jobs.</p>"
    )
    if cut:
        jobs += (
            f'<p class="note cut" id="cut">Cut: more than {scanned:,} jobs are waiting, ready or '
            "paused, and the older ones were not read (no index serves repeats). Find an older "
            f'repeating job in the <a href="{e(view.url("/jobs", [("status", "waiting")]))}">'
            "job list</a> by its type and status, or make it a schedule object "
            "(jc.schedules.upsert): those are always listed.</p>"
        )
    return table + jobs


def schedules_page(view: View, live: str) -> str:
    """The schedules page: its `live` part (pages.live_part around schedules_live)."""
    return layout(view, "Schedules", live, live=True)
