"""The dashboard's HTML: each page as a function of what the route read, every value escaped
on its way in (`e`). No template engine, no external assets, and nothing inline that a
Content-Security-Policy would have to allow (no `<script>`, `<style>` or `style=`): the
stylesheet and the one script are files the app serves (assets.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from ..api.job import Job
from ..local.leadership import Leader
from ..model import describe
from ..model.concurrency import MAX_RUNNING, ConcurrencyLimit
from ..model.constants import JOB_STATUSES, Status
from ..model.types import Paused
from ..model.workers import WorkerInfo
from .assets import url_of
from .html import age, e, pretty, stamp
from .job_facts import facts, failures, log_table

ACTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "pause": ("Pause", Status.PAUSABLE),
    "resume": ("Resume", (Status.PAUSED,)),
    "cancel": ("Cancel", Status.CANCELLABLE),
    "restart": ("Restart", Status.RESTARTABLE),
    "rerun": ("Rerun", (Status.COMPLETED,)),
    "remove": ("Remove", Status.REMOVABLE),
}
"""Each action: its label and the statuses of the jobs it applies to."""


@dataclass(frozen=True, slots=True)
class View:
    """Who a page is for and where the dashboard lives."""

    base: str
    """The dashboard's path prefix (where it is mounted), "" at the root."""
    user: Any
    read_only: bool
    csrf: str
    cookie_login: bool = False

    def url(self, path: str, query: Mapping[str, Any] | Sequence[tuple[str, Any]] = ()) -> str:
        items = list(query.items()) if isinstance(query, Mapping) else list(query)
        return self.base + path + (f"?{urlencode(items)}" if items else "")

    def job_url(self, job_id: Any) -> str:
        return f"{self.base}/jobs/{quote(str(job_id), safe='')}"

    def group_url(
        self, kind: str, group_id: Any, query: Mapping[str, Any] | Sequence[tuple[str, Any]] = ()
    ) -> str:
        """The page of a workflow (`kind` "workflow") or of a batch ("batch")."""
        where = "workflows" if kind == "workflow" else "batches"
        return self.url(f"/{where}/{quote(str(group_id), safe='')}", query)


def layout(
    view: View | None,
    title: str,
    body: str,
    *,
    live: bool = False,
    base: str = "",
    charts: bool = False,
) -> str:
    """A whole page; `live` adds the script that keeps its `#live` part current, `charts` the
    chart library and the script that draws the `.chart` elements. `base`: the dashboard's
    path prefix when there is no view (login and error pages). Every page has the theme
    script (light, dark or the system's; its toggle shows once the script runs)."""
    base = view.base if view is not None else base
    nav = ""
    if view is not None:
        logout = ""
        if view.cookie_login:
            logout = (
                f'<form class="inline" method="post" action="{e(view.url("/logout"))}">'
                f'<input type="hidden" name="csrf" value="{e(view.csrf)}">'
                '<button type="submit">Log out</button></form>'
            )
        role = " (read-only)" if view.read_only else ""
        nav = (
            f'<nav aria-label="dashboard"><a href="{e(view.url("/"))}"><b>jobcollection</b></a> '
            f'<a href="{e(view.url("/"))}">Overview</a> '
            f'<a href="{e(view.url("/jobs"))}">Jobs</a> '
            f'<a href="{e(view.url("/queues"))}">Queues</a> '
            f'<a href="{e(view.url("/schedules"))}">Schedules</a> '
            f'<a href="{e(view.url("/workers"))}">Workers</a></nav>'
            f'<span class="who">{e(view.user)}{role}</span>{logout}'
        )
    nav += '<button type="button" id="theme" hidden aria-pressed="false">Dark / light</button>'
    head = f'<script src="{e(url_of(base, "theme.js"))}"></script>'
    if charts:
        head += (
            f'<link rel="stylesheet" href="{e(url_of(base, "uPlot.min.css"))}">'
            f'<script src="{e(url_of(base, "uPlot.iife.min.js"))}" defer></script>'
            f'<script src="{e(url_of(base, "charts.js"))}" defer></script>'
        )
    if live:
        head += f'<script src="{e(url_of(base, "live.js"))}" defer></script>'
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{e(title)} - jobcollection</title>"
        f'<link rel="stylesheet" href="{e(url_of(base, "dashboard.css"))}">{head}</head>'
        f'<body><header>{nav}</header><main id="main"><h1>{e(title)}</h1>{body}</main>'
        "</body></html>"
    )


def live_part(events: str, fragment_url: str, fragment: str) -> str:
    """A page's live part: `fragment` in the `#live` element, which the live script reloads
    from `fragment_url` on each `change` event of the `events` stream (assets.py)."""
    return (
        f'<div id="live" data-events="{e(events)}" data-fragment="{e(fragment_url)}" '
        f'data-event="">{fragment}</div>'
    )


def badge(status: str) -> str:
    return f'<span class="status {e(status)}">{e(status)}</span>'


# --- overview -----------------------------------------------------------------------------------


def counts_fragment(
    view: View,
    counts: Mapping[tuple[str, str], int],
    oldest_ready_s: Mapping[str, float],
    paused: Paused,
    leader: Leader | None = None,
    limits: Mapping[str, ConcurrencyLimit] | None = None,
    may_limit: Callable[[str], bool] | None = None,
) -> str:
    """The live part of the overview: counts per type and status, the oldest ready job's
    age, whether each type is paused on every process (with its button, for those who may
    act), each type's concurrency limit (with a button that removes it, for the types
    `may_limit` says the user may change), and which process leads the job server."""
    limits = limits or {}
    types = sorted({t for t, _ in counts} | set(paused.types) | set(limits))
    head = "".join(f"<th>{e(s)}</th>" for s in JOB_STATUSES)
    rows = []
    for t in types:
        cells = []
        for s in JOB_STATUSES:
            n = counts.get((t, s), 0)
            link = view.url("/jobs", [("type", t), ("status", s)])
            shown = f'<a href="{e(link)}">{n}</a>' if n else "0"
            cells.append(f'<td class="n" data-status="{e(s)}">{shown}</td>')
        total = sum(counts.get((t, s), 0) for s in JOB_STATUSES)
        oldest = age(oldest_ready_s[t]) if t in oldest_ready_s else "-"
        rows.append(
            f'<tr data-type="{e(t)}"><th><a href="{e(view.url("/jobs", [("type", t)]))}">'
            f'{e(t)}</a></th>{"".join(cells)}<td class="n total">{total}</td>'
            f'<td class="n oldest">{e(oldest)}</td>{claims_cell(view, t, paused)}'
            f"{limit_cell(view, t, limits.get(t), bool(may_limit and may_limit(t)))}</tr>"
        )
    totals = "".join(
        f'<td class="n">{sum(counts.get((t, s), 0) for t in types)}</td>' for s in JOB_STATUSES
    )
    grand = sum(counts.values())
    rows.append(
        f'<tr class="all"><th>(all)</th>{totals}<td class="n total">{grand}</td><td></td>'
        f"{claims_cell(view, None, paused)}<td></td></tr>"
    )
    table = (
        f'<div class="table-wrap"><table id="counts"><tr><th>type</th>{head}<th>total</th>'
        f"<th>oldest ready</th><th>claims</th><th>concurrency limit</th></tr>{''.join(rows)}"
        "</table></div>"
    )
    if not types:
        table += '<p class="note">No jobs yet.</p>'
    led = "no process" if leader is None else f"{leader.host} pid {leader.pid}"
    table += f'<p class="note" id="leader">Job server: led by {e(led)}.</p>'
    return table


def claims_cell(view: View, job_type: str | None, paused: Paused, back: str = "/") -> str:
    """Whether workers claim jobs of this type (None: of every type) on every process, and
    the button that pauses or resumes them (none for read-only users), which comes `back` to
    this page (CLAIM_PAGES)."""
    stopped = paused.every if job_type is None else paused.excludes(job_type)
    state = "paused" if stopped else "claimed"
    if view.read_only:
        return f'<td class="claims {state}">{state}</td>'
    action = "resume" if stopped else "pause"
    which = (
        '<input type="hidden" name="every" value="1">'
        if job_type is None
        else f'<input type="hidden" name="type" value="{e(job_type)}">'
    )
    label = f"{action.capitalize()} every type" if job_type is None else action.capitalize()
    return (
        f'<td class="claims {state}">{state} '
        f'<form method="post" class="inline" action="{e(view.url(f"/claims/{action}"))}">'
        f'<input type="hidden" name="csrf" value="{e(view.csrf)}">{which}'
        f'<input type="hidden" name="back" value="{e(back)}">'
        f'<button type="submit">{e(label)}</button></form></td>'
    )


def limited(limit: ConcurrencyLimit) -> str:
    """A concurrency limit in words: `at most 5 running`, `at most 2 running per user`."""
    per = f" per {limit.group_by}" if limit.group_by else ""
    return f"at most {limit.max_running} running{per}"


def limit_cell(view: View, job_type: str, limit: ConcurrencyLimit | None, may: bool) -> str:
    """A type's concurrency limit (`none` without one; `data-max` holds its max_running),
    and, for a user who `may` change it, the button that removes it."""
    if limit is None:
        return '<td class="limit">none</td>'
    remove = ""
    if may:
        remove = (
            f' <form method="post" class="inline" action="{e(view.url("/limits/remove"))}">'
            f'<input type="hidden" name="csrf" value="{e(view.csrf)}">'
            f'<input type="hidden" name="type" value="{e(job_type)}">'
            '<button type="submit">Remove limit</button></form>'
        )
    return (
        f'<td class="limit limited" data-max="{limit.max_running}" '
        f'data-group-by="{e(limit.group_by or "")}">{e(limited(limit))}{remove}</td>'
    )


def limit_form(view: View, types: Iterable[str]) -> str:
    """The form that sets a type's concurrency limit (jobSetConcurrencyLimit): the type (one
    of `types` or another), the most jobs running at once, and what to count them per."""
    options = "".join(f'<option value="{e(t)}">' for t in types)
    return (
        f'<form id="limit" method="post" action="{e(view.url("/limits/set"))}"><fieldset>'
        "<legend>Concurrency limit: at most so many jobs of a type running at once, on every "
        "process</legend>"
        f'<input type="hidden" name="csrf" value="{e(view.csrf)}">'
        '<label>type <input name="type" list="limit-types" required size="16"></label>'
        f'<datalist id="limit-types">{options}</datalist> '
        '<label>max running <input name="max_running" type="number" min="1" '
        f'max="{MAX_RUNNING}" step="1" required size="7"></label> '
        '<label>per <input name="group_by" placeholder="user or data.PATH (optional)" '
        'size="24"></label> <button type="submit">Set limit</button></fieldset></form>'
    )


def overview(view: View, fragment: str, below: str = "", trends: str = "") -> str:
    """The overview page: its live part (`fragment`, counts_fragment), then `below` (forms
    that the live part's reloads must not wipe while someone types in them), then the
    `trends` (web/trends.py: read at each load of the page)."""
    live = live_part(view.url("/events"), view.url("/live"), fragment)
    return layout(view, "Overview", live + below + trends, live=True, charts=True)


# --- workers ------------------------------------------------------------------------------------


def workers_live(
    view: View,
    workers: Sequence[WorkerInfo],
    leader: Leader | None = None,
    started: Mapping[Any, datetime] | None = None,
    now: datetime | None = None,
) -> str:
    """The workers page's live part: the live queues of every process (the worker registry):
    host, pid, version, types, concurrency, each with the jobs it holds and how long each has
    run (`started`: when their last run started, given `now`); and which process leads the
    job server."""
    started = started or {}
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "host",
            "pid",
            "version",
            "kind",
            "user",
            "types",
            "concurrency",
            "holding",
            "last seen",
        )
    )
    rows = []
    for w in workers:
        held = " ".join(
            f'<a href="{e(view.job_url(i))}">{e(str(i))}</a>'
            + (
                f' <span class="ran">({e(age((now - started[i]).total_seconds()))})</span>'
                if now is not None and i in started
                else ""
            )
            for i in w.held
        )
        more = f" and {w.holding - len(w.held)} more" if w.holding > len(w.held) else ""
        lead = (
            " (leads the job server)"
            if leader is not None and (leader.host, leader.pid) == (w.host, w.pid)
            else ""
        )
        rows.append(
            f'<tr class="worker" data-id="{e(w.id)}"><td>{e(w.host)}{e(lead)}</td>'
            f'<td class="n">{w.pid}</td><td>{e(w.version)}</td><td>{e(w.kind)}</td>'
            f"<td>{e('' if w.user is None else str(w.user))}</td>"
            f"<td>{e(', '.join(w.types))}</td><td>{w.concurrency} (payload {w.payload}, "
            f'prefetch {w.prefetch})</td><td class="n holding">{w.holding}</td>'
            f"<td>{e(stamp(w.last_seen))}</td></tr>"
            f'<tr class="held"><td colspan="9">{held or "no jobs held"}{e(more)}</td></tr>'
        )
    table = (
        f'<div class="table-wrap"><table id="workers"><tr>{head}</tr>{"".join(rows)}</table></div>'
    )
    if not workers:
        table += '<p class="note">No queue is registered now.</p>'
    led = (
        "no process"
        if leader is None
        else f"{leader.host} pid {leader.pid} (since {stamp(leader.since)}, epoch {leader.epoch})"
    )
    return table + f'<p class="note" id="leader">Job server: led by {e(led)}.</p>'


def workers_page(view: View, live: str) -> str:
    """The workers page: its `live` part (live_part around workers_live), then a note."""
    note = (
        '<p class="note">Every queue registers itself every third of its TTL (10 of 30 seconds '
        "by default) with the jobs it holds, and leaves at its shutdown; one not seen within "
        "its TTL is gone. Beside each held job: how long its run has lasted.</p>"
    )
    return layout(view, "Workers", live + note, live=True)


# --- job list -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Filters:
    """A job list's filters as given in its URL (and as find_jobs takes them)."""

    types: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    user: str = ""
    data: tuple[tuple[str, str], ...] = ()
    """(path, value as given): values are JSON when they parse (`7`, `"7"`, `true`)."""
    schedule: str = ""
    """The id of a schedule object whose runs to list."""
    failure: str = ""
    """Text the jobs' failures must hold (searched in a capped read: app.py FAILURE_SCAN)."""
    oldest: bool = False
    """Oldest first (`sort=oldest`) rather than newest first: the order, not a filter."""

    def query(self) -> list[tuple[str, str]]:
        """These filters as URL query items."""
        items = [("type", t) for t in self.types] + [("status", s) for s in self.statuses]
        if self.user:
            items.append(("user", self.user))
        items += [(f"data.{path}", value) for path, value in self.data]
        if self.schedule:
            items.append(("schedule", self.schedule))
        if self.failure:
            items.append(("failure", self.failure))
        if self.oldest:
            items.append(("sort", "oldest"))
        return items

    def empty(self) -> bool:
        return not (
            self.types or self.statuses or self.user or self.data or self.schedule or self.failure
        )

    def describe(self) -> str:
        parts = []
        if self.types:
            parts.append("type " + " or ".join(self.types))
        if self.statuses:
            parts.append("status " + " or ".join(self.statuses))
        if self.user:
            parts.append(f"user {self.user}")
        parts += [f"data.{p} = {v}" for p, v in self.data]
        if self.schedule:
            parts.append(f"runs of schedule {self.schedule}")
        if self.failure:
            parts.append(f"failures holding {self.failure!r}")
        return ", ".join(parts) or "every job"


def filter_form(view: View, filters: Filters, types: Iterable[str]) -> str:
    def options(values: Iterable[str], chosen: tuple[str, ...]) -> str:
        return '<option value="">any</option>' + "".join(
            f'<option value="{e(x)}"{" selected" if x in chosen else ""}>{e(x)}</option>'
            for x in values
        )

    known = sorted(set(types) | set(filters.types))
    data = " ".join(f"{p}={v}" for p, v in filters.data)
    return (
        f'<form id="filters" method="get" action="{e(view.url("/jobs"))}"><fieldset>'
        f'<label>type <select name="type">{options(known, filters.types)}</select></label> '
        f'<label>status <select name="status">{options(JOB_STATUSES, filters.statuses)}'
        "</select></label> "
        f'<label>user <input name="user" value="{e(filters.user)}" size="12"></label> '
        f'<label>data <input name="data" value="{e(data)}" placeholder="path=value" size="20">'
        "</label> "
        f'<label>failure text <input name="failure" value="{e(filters.failure)}" size="16">'
        "</label> "
        '<label>sort <select name="sort"><option value="newest">newest first</option>'
        f'<option value="oldest"{" selected" if filters.oldest else ""}>oldest first</option>'
        "</select></label> "
        '<label>or the id <input name="id" size="12"></label> '
        + (
            f'<input type="hidden" name="schedule" value="{e(filters.schedule)}">'
            if filters.schedule
            else ""
        )
        + '<button type="submit">Filter</button></fieldset></form>'
    )


def job_list_live(
    view: View,
    filters: Filters,
    jobs: Sequence[Job],
    next_cursor: str | None,
    error: str | None = None,
    scanned: int | None = None,
) -> str:
    """The job list's live part: a page of jobs; `scanned`: a failure text search read the
    newest (or oldest) so many jobs of the other filters (after the `after` cursor), and says
    so; its next page searches the next ones. Bulk actions are offered for filters MongoDB
    applies."""
    body = []
    if error is not None:
        body.append(f'<p class="error">{e(error)}</p>')
    if scanned is not None:
        body.append(
            f'<p class="note" id="scanned">Failures holding {e(repr(filters.failure))}: '
            f"searched the {'oldest' if filters.oldest else 'newest'} {scanned:,} jobs matching "
            "the other filters (no index serves text; the next page searches further).</p>"
        )
        if next_cursor is not None:
            body.append(
                '<p class="note cut" id="cut">Cut: more jobs match the other filters than '
                "were searched. Narrow them (a type, status=failed, a user, a data field) or "
                "search further back with the link below.</p>"
            )
    rows = [
        f'<tr class="job" data-id="{e(job.id)}"><td><a href="{e(view.job_url(job.id))}">'
        f"{e(job.id)}</a></td><td>{e(job.type)}</td><td>{badge(job.doc.status)}</td>"
        f"<td>{e('' if job.user_id is None else job.user_id)}</td>"
        f"<td>{e(stamp(job.doc.created))}</td><td>{e(stamp(job.doc.updated))}</td>"
        f'<td class="n">{job.doc.progress.percent:g}%</td></tr>'
        for job in jobs
    ]
    body.append(  # in its box, which scrolls sideways on a narrow screen, not the page
        '<div class="table-wrap"><table id="jobs"><tr><th>id</th><th>type</th><th>status</th>'
        f"<th>user</th><th>created</th><th>updated</th><th>progress</th></tr>{''.join(rows)}"
        "</table></div>"
    )
    if not jobs:
        body.append('<p class="note">No jobs match.</p>')
    if next_cursor is not None:
        link = view.url("/jobs", [*filters.query(), ("after", next_cursor)])
        label = "Search further" if scanned is not None else "Next page"
        body.append(f'<p><a id="next" href="{e(link)}">{label}</a></p>')
    if not view.read_only and not filters.empty() and not filters.failure:
        links = " ".join(
            f'<a class="bulk" href="{e(view.url(f"/bulk/{name}", filters.query()))}">'
            f"{e(label)} all</a>"
            for name, (label, _) in ACTIONS.items()
        )
        body.append(f"<p>Every job matching {e(filters.describe())}: {links}</p>")
    return "".join(body)


def job_list(view: View, filters: Filters, types: Iterable[str], live: str) -> str:
    """The job list: the filter form (outside the `live` part, which is reloaded while
    someone may be typing in it), then the live part (live_part around job_list_live)."""
    return layout(view, "Jobs", filter_form(view, filters, types) + live, live=True)


# --- job page -----------------------------------------------------------------------------------


def action_buttons(view: View, job: Job) -> str:
    if view.read_only:
        return ""
    buttons = [
        f'<form class="inline" method="post" action="{e(view.job_url(job.id))}/{name}">'
        f'<input type="hidden" name="csrf" value="{e(view.csrf)}">'
        f'<button type="submit" name="action" value="{name}">{e(label)}</button></form>'
        for name, (label, statuses) in ACTIONS.items()
        if job.doc.status in statuses
    ]
    return f'<div id="actions">{"".join(buttons)}</div>'


def _job_links(view: View, ids: Sequence[Any], statuses: Mapping[Any, str]) -> str:
    if not ids:
        return "none"
    items = []
    for job_id in ids:
        status = statuses.get(job_id)
        items.append(
            f'<li><a href="{e(view.job_url(job_id))}">{e(job_id)}</a> '
            f"{badge(status) if status else '(removed)'}</li>"
        )
    return f"<ul>{''.join(items)}</ul>"


def job_live(
    view: View, job: Job, now: datetime | None = None, workers: Sequence[WorkerInfo] = ()
) -> str:
    """The part of the job page that changes while the job runs: its status, its last run
    (started, finished, duration, attempt, worker: job_facts.py, given `now`), progress,
    result, log and failures."""
    doc = job.doc
    p = doc.progress
    result = "none" if doc.result is None else f'<pre id="result">{e(pretty(doc.result))}</pre>'
    why = describe.outcome(doc)
    run = ""
    if now is not None:
        rows = "".join(
            f'<tr data-fact="{e(k)}"><th>{e(k)}</th><td>{e(v)}</td></tr>'
            for k, v in facts(doc, now, workers)
        )
        run = f'<table id="run">{rows}</table>'
    return (
        f'<p>Status {badge(doc.status)} <span id="status" hidden>{e(doc.status)}</span>, '
        f"updated {e(stamp(doc.updated))}</p>"
        + (f'<p id="outcome">{e(why)}</p>' if why else "")
        + f'<p id="attempts">Attempts: {e(describe.attempts(doc))}</p>'
        f"{run}{action_buttons(view, job)}"
        f'<h2>Progress</h2><p><progress max="100" value="{p.percent:g}"></progress> '
        f"{p.percent:g}% ({p.completed:g} of {p.total:g})</p>"
        f"<h2>Result</h2>{result}"
        f"<h2>Log</h2>{log_table(doc)}"
        f"<h2>Failures (one per failed attempt)</h2>{failures(doc)}"
    )


def group_links(view: View, workflow: Any, batches: Sequence[Any]) -> str:
    """A job page's links to the workflow it was saved in and the batches it belongs to."""
    parts = []
    if workflow is not None:
        link = view.group_url("workflow", workflow)
        parts.append(f'Workflow <a id="workflow" href="{e(link)}">{e(workflow)}</a>')
    if batches:
        links = ", ".join(
            f'<a class="batch" href="{e(view.group_url("batch", b))}">{e(b)}</a>' for b in batches
        )
        parts.append(f"batch {links}" + (" (outermost first)" if len(batches) > 1 else ""))
    return f'<p id="groups">{"; ".join(parts)}.</p>' if parts else ""


def job_page(
    view: View,
    job: Job,
    statuses: Mapping[Any, str],
    now: datetime | None = None,
    workers: Sequence[WorkerInfo] = (),
) -> str:
    """A job: what it is (its attempts, repeats and schedule in the API's words, model/describe.py;
    the next runs of a cron schedule, given `now`), the workflow and batches it is part of, the
    live part (with its last run, and `workers`: the registry's live queues, to tell whether
    the worker that claimed it is one), its dependencies
    and lineage."""
    doc = job.doc
    plan = describe.schedule(doc)
    due_by = describe.deadline(doc)
    upcoming = [] if now is None else describe.next_runs(doc, now)
    summary = [
        ("id", job.id),
        ("type", doc.type),
        ("user", "" if doc.user_id is None else doc.user_id),
        ("created", stamp(doc.created)),
        ("due (after)", stamp(doc.after)),
        ("priority", doc.priority),
        *([("deadline", due_by)] if due_by else []),
        ("repeats", describe.repeats(doc)),
        *([("schedule", plan)] if plan else []),
        *(
            [("next runs", ", ".join(describe.run_time(t, doc) for t in upcoming))]
            if upcoming
            else []
        ),
    ]
    rows = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in summary)
    lineage = list(doc.lineage)
    live_url = f"{view.job_url(job.id)}/live"
    events = view.url("/events", [("job", str(job.id))])
    body = (
        f'<table id="summary">{rows}</table>{group_links(view, doc.workflow, doc.batches)}'
        f'<h2>Data</h2><pre id="data">{e(pretty(doc.data))}</pre>'
        f"{live_part(events, live_url, job_live(view, job, now, workers))}"
        f'<h2>Dependencies</h2><div id="depends"><p>Waits on:</p>'
        f"{_job_links(view, doc.depends, statuses)}"
        f"<p>Resolved:</p>{_job_links(view, doc.resolved, statuses)}</div>"
        f'<h2>Lineage</h2><div id="lineage"><p>Made from (oldest first):</p>'
        f"{_job_links(view, lineage, statuses)}"
        f"<p>Rescheduled from: "
        + (
            "none"
            if job.rescheduled_from is None
            else f'<a href="{e(view.job_url(job.rescheduled_from))}">{e(job.rescheduled_from)}</a>'
        )
        + "</p></div>"
    )
    return layout(view, f"Job {doc.type}", body, live=True)


# --- actions ------------------------------------------------------------------------------------


def confirm_bulk(view: View, action: str, filters: Filters, count: int) -> str:
    label, statuses = ACTIONS[action]
    hidden = "".join(
        f'<input type="hidden" name="{e(k)}" value="{e(v)}">' for k, v in filters.query()
    )
    if count == 0:
        form = '<p id="count" data-count="0">No jobs match: nothing to do.</p>'
    else:
        form = (
            f'<p id="count" data-count="{count}">{e(label)} <b>{count:,}</b> '
            f"{'job' if count == 1 else 'jobs'} matching {e(filters.describe())} "
            f"(those {e('/'.join(statuses))})?</p>"
            f'<form method="post" action="{e(view.url(f"/bulk/{action}"))}">{hidden}'
            f'<input type="hidden" name="csrf" value="{e(view.csrf)}">'
            f'<input type="hidden" name="expected" value="{count}">'
            f'<button type="submit">{e(label)} {count:,}</button></form>'
        )
    back = f'<p><a href="{e(view.url("/jobs", filters.query()))}">Back to the list</a></p>'
    return layout(view, f"{label} every matching job", form + back)


def bulk_done(view: View, action: str, filters: Filters, matched: int, changed: int) -> str:
    label, _ = ACTIONS[action]
    body = (
        f'<p id="outcome" data-matched="{matched}" data-changed="{changed}">{e(label)}: '
        f"{matched:,} matched, {changed:,} changed.</p>"
        f'<p><a href="{e(view.url("/jobs", filters.query()))}">Back to the list</a></p>'
    )
    return layout(view, f"{label} done", body)


def problem(view: View | None, title: str, message: str, base: str = "") -> str:
    back = f'<p><a href="{e(view.url("/"))}">Overview</a></p>' if view is not None else ""
    body = f'<p class="error" id="problem">{e(message)}</p>{back}'
    return layout(view, title, body, base=base)


def login(base: str, message: str = "") -> str:
    note = f'<p class="error">{e(message)}</p>' if message else ""
    form = (
        f'{note}<form method="post" action="{e(base)}/login"><fieldset>'
        '<label>Token <input type="password" name="token" autocomplete="current-password" '
        'size="50"></label> <button type="submit">Log in</button></fieldset></form>'
        '<p class="note">The token is kept in a cookie for this dashboard only.</p>'
    )
    return layout(None, "Log in", form, base=base)
