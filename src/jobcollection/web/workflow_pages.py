"""The HTML of a workflow's page (`/workflows/ID`) and of a batch's (`/batches/ID`): how far
it is (a progress bar, its jobs counted per status), a workflow's graph (graph.py), the
buttons that cancel its unfinished jobs or retry its failed and cancelled ones, and its jobs,
50 a page, each with what it waits on. As pages.py: every value escaped, nothing inline."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..api.job import Job
from ..api.workflows import WorkflowStatus
from ..model.constants import JOB_STATUSES, Status
from ..model.document import JobDoc
from . import graph
from .html import e, stamp
from .pages import View, badge, layout

GROUP_ACTIONS: dict[str, tuple[str, tuple[Status, ...], str, dict[str, Any]]] = {
    "cancel": ("Cancel the unfinished jobs", Status.CANCELLABLE, "jobCancel", {}),
    "retry": (
        "Retry the failed and cancelled jobs",
        Status.RESTARTABLE,
        "jobRestart",
        {"antecedents": False},
    ),
}
"""Each action on a workflow or a batch: its button's label, the statuses of the jobs it
applies to, and the method (with its options) called on them, as Workflow.cancel and
Workflow.retry do (a retry restarts the jobs, not the antecedents they waited on)."""
NAMES = {"workflow": "Workflow", "batch": "Batch"}
SHOWN_ANTECEDENTS = 3
"""The most antecedents a row of the job list links (the job's page has them all)."""
MAX_SHOWN = 200
"""The most characters of a filter from the URL the page repeats."""


@dataclass(frozen=True, slots=True)
class Group:
    """What a workflow or batch page shows, as the route read it."""

    kind: str
    """"workflow" or "batch"."""
    id: Any
    progress: WorkflowStatus
    read_all: bool
    """False: it has more jobs than the route reads (app.MAX_MEMBERS): the counts and the
    graph are of those read."""
    jobs: Sequence[Job]
    """The page of the job list."""
    next_cursor: str | None
    job_type: str | None = None
    status: str | None = None
    """The job list's filters."""
    drawing: graph.Drawing | None = None
    workflows: tuple[Any, ...] = ()
    """The workflows its jobs were saved in (a batch's)."""
    inner: tuple[Any, ...] = ()
    """The batches among its jobs (nested in it, for a batch)."""
    outer: tuple[Any, ...] = ()
    """The batches it is nested in (a batch's)."""
    may: tuple[str, ...] = ()
    """The actions the user may take (GROUP_ACTIONS)."""


def related(
    kind: str, group_id: Any, docs: Sequence[JobDoc]
) -> tuple[tuple[Any, ...], tuple[Any, ...], tuple[Any, ...]]:
    """What a workflow's or a batch's jobs say it is part of and holds: the workflows they
    were saved in (for a batch), the batches it is nested in (for a batch) and the batches
    among them (nested in it, for a batch): each in the order first met."""
    if kind != "batch":
        return (), (), tuple(dict.fromkeys(b for doc in docs for b in doc.batches))
    nested = [doc.batches for doc in docs if group_id in doc.batches]
    outer = dict.fromkeys(b for bs in nested for b in bs[: bs.index(group_id)])
    inner = dict.fromkeys(b for bs in nested for b in bs[bs.index(group_id) + 1 :])
    workflows = dict.fromkeys(doc.workflow for doc in docs if doc.workflow is not None)
    return tuple(workflows), tuple(outer), tuple(inner)


def group_page(view: View, group: Group) -> str:
    """A workflow's or a batch's page."""
    body = [
        _progress(view, group),
        _related(view, group),
        _buttons(view, group),
    ]
    if group.drawing is not None:
        body.append(_graph(view, group, group.drawing))
    body.append(_job_list(view, group))
    return layout(view, f"{NAMES[group.kind]} {group.id}", "".join(body))


def _progress(view: View, group: Group) -> str:
    p = group.progress
    percent = f"{p.progress * 100:.0f}%"
    state = "done" if p.done else "in progress"
    read = "" if group.read_all else f"; it has more jobs: these are its newest {p.total:,}"
    head = "".join(f"<th>{e(s)}</th>" for s in JOB_STATUSES)
    cells = []
    for s in JOB_STATUSES:
        n = p.counts.get(s, 0)
        link = view.group_url(group.kind, group.id, [("status", s)]) + "#jobs"
        shown = f'<a href="{e(link)}">{n:,}</a>' if n else "0"
        cells.append(f'<td class="n" data-status="{e(s)}">{shown}</td>')
    return (
        f'<p id="progress" data-finished="{p.finished}" data-total="{p.total}">'
        f'<progress max="{p.total}" value="{p.finished}"></progress> '
        f"{p.finished:,} of {p.total:,} jobs finished ({percent}): {state}{e(read)}</p>"
        f'<div class="table-wrap"><table id="counts"><tr>{head}<th>total</th></tr>'
        f'<tr>{"".join(cells)}<td class="n total">{p.total:,}</td></tr></table></div>'
    )


def _links(view: View, kind: str, ids: Sequence[Any]) -> str:
    return ", ".join(f'<a href="{e(view.group_url(kind, i))}">{e(i)}</a>' for i in ids)


def _related(view: View, group: Group) -> str:
    """Links to the workflows and batches it is part of, and to those part of it."""
    parts = []
    if group.workflows:
        parts.append(f"Part of workflow {_links(view, 'workflow', group.workflows)}.")
    if group.outer:
        parts.append(f"Nested in batch {_links(view, 'batch', group.outer)}.")
    if group.inner:
        what = "Batches in it" if group.kind == "workflow" else "Batches nested in it"
        parts.append(f"{what}: {_links(view, 'batch', group.inner)}.")
    return f'<p id="related">{" ".join(parts)}</p>' if parts else ""


def _buttons(view: View, group: Group) -> str:
    """The forms that cancel or retry its jobs, for a user the rules let."""
    if view.read_only or not group.may:
        return ""
    base = view.group_url(group.kind, group.id)
    forms = [
        f'<form class="inline" method="post" action="{e(base)}/{name}">'
        f'<input type="hidden" name="csrf" value="{e(view.csrf)}">'
        f'<button type="submit" name="action" value="{name}">{e(label)}</button></form>'
        for name, (label, _, _, _) in GROUP_ACTIONS.items()
        if name in group.may
    ]
    return f'<div id="actions">{"".join(forms)}</div>'


def _graph(view: View, group: Group, drawing: graph.Drawing) -> str:
    """The workflow's graph, and what it leaves out."""

    def link(box: graph.Box) -> str | None:
        if box.job_id is not None:
            return view.job_url(box.job_id)
        if box.job_type is not None:
            return view.group_url(group.kind, group.id, [("type", box.job_type)]) + "#jobs"
        return None

    notes = []
    if drawing.grouped:
        notes.append(
            f"{drawing.grouped:,} jobs are drawn in boxes of several (more than "
            f"{graph.MAX_SAME} of a type in a step): a box links to its jobs."
        )
    if drawing.folded_layers:
        notes.append(
            f"The last {drawing.folded_layers:,} steps are drawn as one box "
            f"(at most {graph.MAX_COLUMNS} columns)."
        )
    if drawing.hidden_arrows:
        notes.append(
            f"{drawing.hidden_arrows:,} arrows are not drawn (at most {graph.MAX_ARROWS:,})."
        )
    legend = (
        "Arrows point from a job to those waiting on it; a label names the failure policy "
        "when it is not cancel (fail, ignore, remove) and the number of dependencies an arrow "
        "stands for; a dashed arrow is one the dependent may go on without."
    )
    note = "".join(f'<p class="note">{e(n)}</p>' for n in [*notes, legend])
    return (
        f'<h2>Graph</h2><div class="graph-wrap" id="graph">{graph.svg(drawing, link)}</div>{note}'
    )


def _antecedents(view: View, job: Job) -> str:
    """What a job waits on: links to the first SHOWN_ANTECEDENTS, each with its failure
    policy when it is not cancel, and how many more."""
    depends = list(job.doc.depends)
    if not depends:
        return "-"
    policies = {edge.id: edge.policy for edge in job.doc.on_failure}
    shown = [
        f'<a href="{e(view.job_url(i))}">{e(i)}</a>'
        + (f" ({e(policies[i])})" if i in policies else "")
        for i in depends[:SHOWN_ANTECEDENTS]
    ]
    more = len(depends) - SHOWN_ANTECEDENTS
    return ", ".join(shown) + (f" and {more:,} more" if more > 0 else "")


def _job_list(view: View, group: Group) -> str:
    filters = [("type", group.job_type), ("status", group.status)]
    given = [(k, val) for k, val in filters if val]
    said = ", ".join(
        f"{k} {val if len(val) <= MAX_SHOWN else val[:MAX_SHOWN] + '...'}" for k, val in given
    )
    heading = "Jobs" + (f" ({said})" if said else "")
    clear = ""
    if given:
        every = view.group_url(group.kind, group.id) + "#jobs"
        clear = f'<p><a id="every-job" href="{e(every)}">Every job</a></p>'
    rows = [
        f'<tr class="job" data-id="{e(job.id)}"><td><a href="{e(view.job_url(job.id))}">'
        f"{e(job.id)}</a></td><td>{e(job.type)}</td><td>{badge(job.doc.status)}</td>"
        f'<td class="waits">{_antecedents(view, job)}</td>'
        f"<td>{e(stamp(job.doc.updated))}</td></tr>"
        for job in group.jobs
    ]
    table = (
        '<div class="table-wrap"><table id="members"><tr><th>id</th><th>type</th><th>status</th>'
        f"<th>waits on</th><th>updated</th></tr>{''.join(rows)}</table></div>"
    )
    if not group.jobs:
        table += '<p class="note">No jobs match.</p>'
    if group.next_cursor is not None:
        link = view.group_url(group.kind, group.id, [*given, ("after", group.next_cursor)])
        table += f'<p><a id="next" href="{e(link + "#jobs")}">Next page</a></p>'
    return f'<h2 id="jobs">{e(heading)}</h2>{clear}{table}'
