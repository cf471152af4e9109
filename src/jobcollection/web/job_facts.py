"""A job's page, the parts read from its log and its record: its last run (started, finished,
how long, under which runId), the worker that claimed it (JobDoc.worker) and whether that is
still live in the worker registry, its log with levels, and its failures' tracebacks as frames
then the exception, copyable. Pure: the route reads the job and the registry."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..model import describe
from ..model.constants import Status
from ..model.document import JobDoc
from ..model.workers import WorkerInfo
from .html import age, e, pretty, stamp

ENDS = ("Job Completed", "Job Failed", "Job Released", "Job Cancelled")
"""Log messages that end a run."""


@dataclass(frozen=True, slots=True)
class Run:
    """A job's last run as its log tells it."""

    run_id: Any
    started: datetime
    finished: datetime | None
    """None: still running (or its end is not in the log)."""


def last_run(doc: JobDoc) -> Run | None:
    """The last `Job Running` entry of the log, and the entry that ended that run, if any."""
    log = list(doc.log or [])
    starts = [i for i, entry in enumerate(log) if entry.message == "Job Running"]
    if not starts:
        return None
    start = log[starts[-1]]
    end = next(
        (
            entry
            for entry in log[starts[-1] + 1 :]
            if entry.message.startswith(ENDS)
            and (entry.run_id is None or entry.run_id == start.run_id)
        ),
        None,
    )
    finished = end.time if end is not None else None
    if finished is None and doc.status in (Status.COMPLETED, Status.FAILED):
        finished = doc.updated
    return Run(start.run_id, start.time, finished)


def holder(job_id: Any, workers: Sequence[WorkerInfo]) -> WorkerInfo | None:
    """The registered queue that holds the job now, if any."""
    return next((w for w in workers if job_id in w.held), None)


def needs_registry(doc: JobDoc) -> bool:
    """Whether the worker fact reads the registry: to tell whether the recorded worker is
    live, or, for a running job with no record (claimed by an earlier version), which queue
    holds it."""
    if doc.worker is None:
        return doc.status == Status.RUNNING
    return doc.worker.id is not None


def worker_fact(doc: JobDoc, workers: Sequence[WorkerInfo]) -> str:
    """The worker that claimed the job's current or last run (JobDoc.worker), and whether it
    is still live in the registry (`workers`: its live queues) and holds the job now."""
    ran = doc.worker
    if ran is None:
        held_by = holder(doc.id, workers) if doc.status == Status.RUNNING else None
        if held_by is not None:
            return f"{held_by.host} pid {held_by.pid} ({held_by.kind} queue {held_by.id})"
        return "not recorded"
    where = " pid ".join(str(p) for p in (ran.host, ran.pid) if p is not None)
    parts = [where or "host not known"]
    if ran.id is not None:
        parts.append(f"queue {ran.id}")
    if ran.remote:
        parts.append("remote" if ran.user is None else f"remote, as user {ran.user}")
    text = ", ".join(parts)
    if ran.id is None:
        return f"{text} (not a registered queue)"
    live = next((w for w in workers if w.id == ran.id), None)
    if live is None:
        return f"{text} (no longer in the registry)"
    holds = doc.status == Status.RUNNING and doc.id in live.held
    return f"{text} (live{', holding it now' if holds else ''})"


def facts(doc: JobDoc, now: datetime, workers: Sequence[WorkerInfo]) -> list[tuple[str, str]]:
    """What the summary adds about the job's last run: started, finished, duration, which
    attempt it is (v1.x's `retried`: the attempts made), its runId and the worker that
    claimed it (`workers`: the registry's live queues, read where `needs_registry`)."""
    run = last_run(doc)
    if run is None:
        return [("started", "not yet"), ("attempt", f"{doc.retried} made")]
    end = run.finished or (now if doc.status == Status.RUNNING else None)
    took = "-" if end is None else age(max(0.0, (end - run.started).total_seconds()))
    if end is not None and run.finished is None:
        took += " so far"
    return [
        ("started", stamp(run.started)),
        ("finished", stamp(run.finished)),
        ("duration", took),
        ("attempt", str(doc.retried)),
        ("run id", str(run.run_id)),
        ("worker", worker_fact(doc, workers)),
    ]


def _frames_then_exception(lines: list[str]) -> list[str]:
    """A traceback with the exception last: Python's are; a JavaScript stack (the error, then
    `    at ...` frames) gets its first line moved to the end."""
    if len(lines) > 1 and not lines[0].startswith(" ") and lines[1].lstrip().startswith("at "):
        return [*lines[1:], lines[0]]
    return lines


def traceback(lines: list[str], element_id: str) -> str:
    """A traceback in a <pre>: its frames, then the exception, with a copy button."""
    ordered = _frames_then_exception(lines)
    frames = "".join(f"{e(line)}\n" for line in ordered[:-1])
    return (
        f'<button type="button" class="copy" data-copy="{e(element_id)}">Copy</button>'
        f'<pre class="traceback" id="{e(element_id)}">{frames}'
        f'<span class="exception">{e(ordered[-1])}</span></pre>'
    )


def failures(doc: JobDoc) -> str:
    """Each failure with its time, its head, its traceback and its other fields."""
    items = []
    for n, failure in enumerate(describe.failures(doc)):
        items.append(
            f'<li class="failure"><p><time>{e(stamp(failure.time))}</time> '
            f"<b>{e(failure.head)}</b></p>"
            + (traceback(failure.traceback, f"traceback-{n}") if failure.traceback else "")
            + (f"<pre>{e(pretty(failure.details))}</pre>" if failure.details else "")
            + "</li>"
        )
    return f'<ol id="failures">{"".join(items)}</ol>' if items else "none"


def log_table(doc: JobDoc) -> str:
    """The log, a row an entry, each with its level (also as the row's class)."""
    rows = "".join(
        f'<tr class="log-{e(entry.level)}"><td data-label="time">{e(stamp(entry.time))}</td>'
        f'<td class="level" data-label="level">{e(entry.level)}</td>'
        f'<td data-label="message">{e(entry.message)}</td><td data-label="data">'
        f"{'' if entry.data is None else f'<pre>{e(pretty(entry.data))}</pre>'}</td></tr>"
        for entry in doc.log or []
    )
    return (
        '<div class="table-wrap"><table id="log" class="stack"><thead><tr><th>time</th>'
        f"<th>level</th><th>message</th><th>data</th></tr></thead><tbody>{rows}</tbody>"
        "</table></div>"
    )
