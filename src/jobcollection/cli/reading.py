"""The operator commands that only read: `ls` (a page of jobs), `show` (one job, with its
log and failures), `stats` (jobs per type and status, what is paused and limited) and
`workers` (the live queues).

Each is an `Operation` (operating.py): it writes to its Console and answers its exit code, 1
when nothing matched. How a job reads to people (attempts, outcome, schedule, failures) comes
from model/describe.py, so the dashboard and `show` say the same things.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..api.collection import JobCollection
from ..local.leadership import Leader
from ..model import constants as c
from ..model import validation as v
from ..model.workers import WorkerInfo
from ..mongo.servertime import refresh_clock
from .limits import as_json as limits_json
from .limits import said as said_limits
from .operating import Console, stamp, table, to_json
from .pausing import said
from .values import job_filters, when

if TYPE_CHECKING:
    from ..api.jobs import JobsAPI


def _age(seconds: float) -> str:
    """A duration for people: `3d 4h`, `12m 5s`, `40s`."""
    whole = int(seconds)
    parts: list[str] = []
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        if whole >= size or (unit == "s" and not parts):
            parts.append(f"{whole // size}{unit}")
            whole %= size
    return " ".join(parts[:2])


async def ls(jc: JobsAPI, args: argparse.Namespace, console: Console) -> int:
    """A page of jobs, newest first; the next page's cursor on stderr. The table's ATTEMPTS
    are those made of those allowed, in the API's words (`1 of 6`: `.retry(5)`)."""
    from ..model import describe

    await refresh_clock(jc.service.clock)
    now = jc.service.clock.now()
    page = await jc.find_jobs(
        **job_filters(args),
        created_before=None if args.created_before is None else when(args.created_before, now),
        limit=args.limit,
        after=args.after,
    )
    if args.json:
        for job in page.jobs:
            print(to_json(job.doc.model_dump(mode="json", by_alias=True)), file=console.out)
    elif page.jobs:
        rows = [["ID", "TYPE", "STATUS", "CREATED", "UPDATED", "ATTEMPTS"]]
        rows += [
            [
                str(job.id),
                job.doc.type,
                job.doc.status,
                stamp(job.doc.created),
                stamp(job.doc.updated),
                describe.attempts_made(job.doc),
            ]
            for job in page.jobs
        ]
        table(rows, console.out)
    if page.next is not None:
        print(f"next page: --after {page.next}", file=console.err)
    if not page.jobs:
        print("no jobs match", file=console.err)
        return 1
    return 0


async def show(jc: JobsAPI, args: argparse.Namespace, console: Console) -> int:
    """One job with its log and failures."""
    job = await jc.get_job(v.job_id(args.id, "id"), get_log=True, get_failures=True)
    if job is None:
        print(f"no job {args.id}", file=console.err)
        return 1
    doc = job.doc.model_dump(mode="json", by_alias=True)
    if args.json:
        print(to_json(doc), file=console.out)
        return 0
    for line in describe_job(job, doc, jc.service.clock.now()):
        print(line, file=console.out)
    return 0


def describe_job(job: Any, doc: dict[str, Any], now: datetime) -> list[str]:
    """`show`'s lines: the job's fields (the workflow and batches it is part of, when it
    is: `jobcollection workflow ID`, `batch ID`), its attempts and repeats in the API's words
    (model/describe.py: "5 retries, 6 attempts", "failed: no retries left", "repeats
    forever"), a cron schedule with its next runs, each failure with its time and its
    traceback as lines, and its log."""
    from ..model import describe
    from ..model.document import jsonable

    d = job.doc
    why = describe.outcome(d)
    plan = describe.schedule(d)
    due_by = describe.deadline(d)
    upcoming = describe.next_runs(d, now)
    fields = [
        ("id", str(job.id)),
        ("type", d.type),
        ("status", d.status),
        *([("outcome", why)] if why else []),
        ("priority", str(d.priority)),
        ("created", stamp(d.created)),
        ("updated", stamp(d.updated)),
        ("after", stamp(d.after)),
        ("attempts", describe.attempts(d)),
        *([("deadline", due_by)] if due_by else []),
        ("repeats", describe.repeats(d)),
        *([("schedule", plan)] if plan else []),
        *(
            [("next runs", ", ".join(describe.run_time(t, d) for t in upcoming))]
            if upcoming
            else []
        ),
        ("progress", f"{d.progress.percent:g}%"),
        ("depends", ", ".join(str(i) for i in d.depends) or "-"),
        *([("workflow", str(d.workflow))] if d.workflow is not None else []),
        *([("batches", ", ".join(str(b) for b in d.batches))] if d.batches else []),
        ("data", to_json(doc["data"])),
        ("result", "-" if d.result is None else to_json(doc["result"])),
    ]
    lines = [f"{name + ':':<10}{' ' if len(name) >= 9 else ''}{value}" for name, value in fields]
    failures = describe.failures(d)
    lines.append(f"failures: {len(failures)}")
    for n, failure in enumerate(failures, 1):
        lines.append(f"  {n}. {stamp(failure.time)}  {failure.head}")
        lines += [f"       {text}" for text in failure.traceback]
        if failure.details:
            lines.append(f"       {to_json(jsonable(failure.details))}")
    log = d.log or []
    lines.append(f"log: {len(log)} lines")
    lines += [f"  {stamp(entry.time)} {entry.level:<8}{entry.message}" for entry in log]
    return lines


async def stats(jc: JobsAPI, args: argparse.Namespace, console: Console) -> int:
    """Jobs per type and status, and how long the longest-waiting ready job of each type
    has been due (now - its `after`): `jc.stats()`; then which types are paused on every
    process (`jc.paused_types()`), each type's concurrency limit (`jc.concurrency_limits()`)
    and, on a database, which process leads the job server."""
    read = await jc.stats()
    paused = await jc.paused_types()
    limited = await jc.concurrency_limits()
    leader = await jc.job_server_leader() if isinstance(jc, JobCollection) else None
    counts: dict[str, dict[str, int]] = {}
    for (job_type, status), n in read.counts.items():
        counts.setdefault(job_type, {})[status] = n
    waiting = {t: read.oldest_ready_age(t) for t in read.oldest_ready}
    types = sorted(counts)
    if args.json:
        report = {
            "types": {
                t: {
                    "counts": {s: counts[t].get(s, 0) for s in c.JOB_STATUSES},
                    "total": sum(counts[t].values()),
                    "oldest_ready_s": waiting.get(t),
                }
                for t in types
            },
            "total": sum(sum(n.values()) for n in counts.values()),
            "paused": {"types": list(paused.types), "all": paused.every},
            "limits": limits_json(limited),
        }
        if isinstance(jc, JobCollection):
            report["leader"] = None if leader is None else _leader(leader)
        print(to_json(report), file=console.out)
        return 0
    rows = [["TYPE", *(s.upper() for s in c.JOB_STATUSES), "TOTAL", "OLDEST READY"]]
    for t in types:
        oldest = waiting.get(t)
        rows.append(
            [
                t,
                *(str(counts[t].get(s, 0)) for s in c.JOB_STATUSES),
                str(sum(counts[t].values())),
                "-" if oldest is None else _age(oldest),
            ]
        )
    total = [sum(counts[t].get(s, 0) for t in types) for s in c.JOB_STATUSES]
    rows.append(["(all)", *(str(n) for n in total), str(sum(total)), ""])
    table(rows, console.out)
    print(said(paused), file=console.out)
    print(said_limits(limited), file=console.out)
    if isinstance(jc, JobCollection):
        led = "no process" if leader is None else f"{leader.host} pid {leader.pid}"
        print(f"job server: led by {led}", file=console.out)
    return 0


def _leader(leader: Leader) -> dict[str, Any]:
    since = leader.since.isoformat()
    return {"host": leader.host, "pid": leader.pid, "epoch": leader.epoch, "since": since}


async def workers(jc: JobsAPI, args: argparse.Namespace, console: Console) -> int:
    """The live queues of every process (`jc.workers()`): where each runs, what it claims and
    how, and how many jobs it holds."""
    found = await jc.workers()
    if args.json:
        for w in found:
            print(to_json(_worker(w)), file=console.out)
        return 0
    head = ["ID", "HOST", "PID", "KIND", "TYPES", "CONCURRENCY", "HOLDING", "LAST SEEN"]
    rows = [
        [
            w.id,
            w.host,
            str(w.pid),
            w.kind,
            ",".join(w.types),
            f"{w.concurrency} (payload {w.payload}, prefetch {w.prefetch})",
            str(w.holding),
            stamp(w.last_seen),
        ]
        for w in found
    ]
    table([head, *rows], console.out)
    if not found:
        print("workers: none registered", file=console.err)
    return 0


def _worker(w: WorkerInfo) -> dict[str, Any]:
    fields = {**w.wire(), "user": w.user, "kind": w.kind}
    fields["held"] = [str(i) for i in w.held]
    for name, moment in (("started", w.started), ("last_seen", w.last_seen)):
        fields[name] = None if moment is None else moment.isoformat()
    return fields
