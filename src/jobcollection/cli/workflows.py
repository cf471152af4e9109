"""The operator commands that show a workflow or a batch (api/workflows.py): `workflow ID`
(its jobs counted per status, how far it is, and each job with its type, status and what it
waits on, antecedents first) and `batch ID` (how far it is, its jobs counted per status).

Both read every job of the workflow or batch (`jc.workflow(id).jobs()`: jobFind's `workflow`
or `batch` condition, 1,000 jobs a call), so they work on a database and through a server
alike (a manager's or an admin's token there). Each is an `Operation` (operating.py).
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..api.workflows import WorkflowStatus
from ..model import constants as c
from ..model import graphs
from ..model import validation as v
from .operating import Console, table, to_json

if TYPE_CHECKING:
    from ..api.job import Job
    from ..api.jobs import JobsAPI

SHOWN_ANTECEDENTS = 3
"""The most antecedents the table names per job (`--json` has them all)."""


def _progress(jobs: Sequence[Job]) -> WorkflowStatus:
    return WorkflowStatus(dict(Counter(str(job.doc.status) for job in jobs)), len(jobs))


def _said(kind: str, group_id: Any, p: WorkflowStatus) -> str:
    """`workflow ID: 29 jobs, 26 finished (90%), in progress`."""
    state = "done" if p.done else "in progress"
    return (
        f"{kind} {group_id}: {p.total:,} jobs, {p.finished:,} finished "
        f"({p.progress * 100:.0f}%), {state}"
    )


def _counts_table(p: WorkflowStatus, console: Console) -> None:
    table(
        [
            [*(s.upper() for s in c.JOB_STATUSES), "TOTAL"],
            [*(str(p.counts.get(s, 0)) for s in c.JOB_STATUSES), str(p.total)],
        ],
        console.out,
    )


def _report(kind: str, group_id: Any, p: WorkflowStatus) -> dict[str, Any]:
    return {
        kind: str(group_id),
        "total": p.total,
        "finished": p.finished,
        "progress": p.progress,
        "done": p.done,
        "counts": {s.value: p.counts.get(s, 0) for s in c.JOB_STATUSES},
    }


def steps(jobs: Sequence[Job]) -> dict[Any, int]:
    """Each job's step: its layer in the graph of these jobs (model/graphs.py), the column the
    dashboard draws it in."""
    return graphs.layers(
        {job.id: [*job.doc.depends, *job.doc.resolved, *job.doc.failed_antecedents] for job in jobs}
    )


def _waits_on(job: Job) -> str:
    """The antecedents a job waits on, each with its failure policy when it is not cancel:
    the first SHOWN_ANTECEDENTS and how many more."""
    policies = {edge.id: edge.policy for edge in job.doc.on_failure}
    named = [
        f"{a}" + (f" ({policies[a]})" if a in policies else "")
        for a in job.doc.depends[:SHOWN_ANTECEDENTS]
    ]
    more = len(job.doc.depends) - SHOWN_ANTECEDENTS
    return ", ".join(named) + (f" and {more:,} more" if more > 0 else "") or "-"


def _job(job: Job, step: int) -> dict[str, Any]:
    doc = job.doc
    return {
        "id": str(job.id),
        "type": doc.type,
        "status": str(doc.status),
        "step": step,
        "depends": [str(i) for i in doc.depends],
        "resolved": [str(i) for i in doc.resolved],
        "on_failure": [{"id": str(e.id), "policy": e.policy} for e in doc.on_failure],
        "failed_antecedents": [str(i) for i in doc.failed_antecedents],
        "batches": [str(i) for i in doc.batches],
        "run_if": doc.run_if,
    }


async def workflow(jc: JobsAPI, args: argparse.Namespace, console: Console) -> int:
    """A workflow: its jobs counted per status, how far it is, and each job (by step, the
    antecedents first) with its type, status and what it waits on."""
    group_id = v.job_id(args.id, "id")
    jobs = await jc.workflow(group_id).jobs()
    if not jobs:
        print(f"no workflow {args.id}", file=console.err)
        return 1
    progress = _progress(jobs)
    step = steps(jobs)
    ordered = sorted(jobs, key=lambda job: step[job.id])  # newest first within a step
    if args.json:
        report = _report("workflow", group_id, progress)
        report["jobs"] = [_job(job, step[job.id]) for job in ordered]
        print(to_json(report), file=console.out)
        return 0
    print(_said("workflow", group_id, progress), file=console.out)
    _counts_table(progress, console)
    print(file=console.out)
    rows = [["STEP", "ID", "TYPE", "STATUS", "WAITS ON"]]
    rows += [
        [str(step[job.id]), str(job.id), job.doc.type, str(job.doc.status), _waits_on(job)]
        for job in ordered
    ]
    table(rows, console.out)
    return 0


async def batch(jc: JobsAPI, args: argparse.Namespace, console: Console) -> int:
    """A batch: how far it is and its jobs counted per status (its members: not its
    callbacks, unless they are members of an outer batch)."""
    group_id = v.job_id(args.id, "id")
    jobs = await jc.batch(group_id).jobs()
    if not jobs:
        print(f"no batch {args.id}", file=console.err)
        return 1
    progress = _progress(jobs)
    if args.json:
        print(to_json(_report("batch", group_id, progress)), file=console.out)
        return 0
    print(_said("batch", group_id, progress), file=console.out)
    _counts_table(progress, console)
    return 0
