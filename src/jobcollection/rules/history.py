"""The rules of the per-minute history (`<root>.history`, beside the jobs): what a finished job
adds to it, the buckets and their updates, and the percentiles read back. Pure: local/history.py
applies them.

One document per (span, type, start): a minute's (`span` "m") and an hour's ("h"), each with the
jobs of the type that completed and that failed for good in it, and two fixed histograms
(BOUNDS_MS) of their times: `wait`, from ready (saved, promoted or released) to the claim that
ran it, and `run`, from that claim to the end. A histogram is a sub-document of counts by bucket
number, so one `$inc` adds a whole pass's jobs. Percentiles read from it are interpolated within
their bucket: exact to the bucket's width (each bound is 2 to 3 times the one before).

Size: a type-minute holds at most 2 * len(BOUNDS_MS) counters, 4 other numbers, its key and the
last APPLIED tokens: under 1.5 KB as BSON (see tests/test_history.py), so about 17 MB per type
for the default 8 days of minutes, plus 192 hour documents. A TTL index on `start` deletes each
document RETENTION after its start.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from ..model.constants import Status
from ..model.types import Filter, Update

RETENTION: Final = timedelta(days=8)
"""How long a history document is kept after its start (the TTL index's expireAfterSeconds)."""
LAG: Final = timedelta(seconds=10)
"""How far behind now a pass counts: a job is counted once its finishing write (stamped with
its writer's time) is this old, so that writes in flight at the pass are not skipped."""
MAX_SPAN: Final = timedelta(minutes=5)
"""The most time one range of a pass covers (its jobs are read at once)."""
BATCH: Final = 1_000
"""The most finished jobs one read of a pass returns: a range's jobs are read in batches (see
local/history.py), so a pass stays bounded at any rate of jobs."""
BY_UPDATED: Final = (("updated", 1),)
"""The order a range's finished jobs are read in (the partial index on `updated`)."""
BY_ID: Final = (("_id", 1),)
"""The order the finished jobs of one millisecond are read in."""
MAX_RANGES: Final = 12
"""The most ranges one pass counts; the next pass goes on."""
CATCH_UP: Final = MAX_SPAN * MAX_RANGES
"""How far back a pass counts at most: after a longer time without a job server (no process
ran one), the history starts again this far back, and the time before is not counted."""
MARK_ID: Final = "mark"
"""The `_id` of the document holding how far the history is counted (`upto`), and the range
a pass took and has yet to apply (`pending`)."""
APPLIED_KEPT: Final = 20
"""How many tokens of applied ranges a bucket keeps (a range is applied at most twice in a
row: by the pass that took it and, after a crash, by the next)."""
BOUNDS_MS: Final = (
    5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 120_000,
    300_000, 600_000, 1_800_000, 3_600_000, 10_800_000, 43_200_000, 86_400_000,
)  # fmt: skip
"""Upper bounds (ms) of the histogram buckets; bucket len(BOUNDS_MS) holds what is longer."""
SPANS: Final = {"m": timedelta(minutes=1), "h": timedelta(hours=1)}
"""The buckets' spans: a minute and an hour."""
READY_MARKS: Final = ("Job Submitted", "Job Resubmitted", "Promoted to ready", "Job Released")
"""Log messages written when a job becomes ready (or due) to be claimed."""
PROJECTION: Final = {
    "type": 1,
    "status": 1,
    "created": 1,
    "updated": 1,
    "log.time": 1,
    "log.message": 1,
}
"""What a pass reads of each finished job."""


def bucket_of(ms: float) -> int:
    """The histogram bucket of a duration in milliseconds."""
    return bisect.bisect_left(BOUNDS_MS, ms)


def floor(moment: datetime, span: str) -> datetime:
    """The start of the span (`m` or `h`) holding `moment`."""
    start = moment.replace(second=0, microsecond=0)
    return start.replace(minute=0) if span == "h" else start


@dataclass(frozen=True, slots=True)
class Finished:
    """What one finished job adds to the history."""

    type: str
    status: str
    at: datetime
    """When it finished (its `Job Completed` or `Job Failed` log entry; else `updated`)."""
    wait_ms: float | None = None
    run_ms: float | None = None


def _entries(raw: Mapping[str, Any]) -> list[tuple[datetime, str]]:
    """A stored job's log entries as (time, message), those with a time."""
    found = []
    for entry in raw.get("log") or []:
        moment = entry.get("time") if isinstance(entry, Mapping) else None
        if isinstance(moment, datetime):
            found.append((moment, str(entry.get("message", ""))))
    return found


def finished(raw: Mapping[str, Any]) -> Finished | None:
    """What a stored job (PROJECTION of it) adds, or None if it is not finished (or is not a
    readable job): its times come from its log (the last run's `Job Running` entry, and the
    latest ready mark before it, or its creation)."""
    status, job_type = raw.get("status"), raw.get("type")
    if status not in (Status.COMPLETED, Status.FAILED) or not isinstance(job_type, str):
        return None
    log = _entries(raw)
    end_mark = "Job Completed" if status == Status.COMPLETED else "Job Failed"
    ends = [t for t, message in log if message.startswith(end_mark)]
    at = ends[-1] if ends else raw.get("updated")
    if not isinstance(at, datetime):
        return None
    runs = [t for t, message in log if message == "Job Running" and t <= at]
    if not runs:
        return Finished(job_type, status, at)
    start = runs[-1]
    created = raw.get("created")
    ready = [t for t, message in log if message in READY_MARKS and t <= start]
    if isinstance(created, datetime):
        ready.append(created)
    wait = max(0.0, (start - max(ready)).total_seconds() * 1000) if ready else None
    return Finished(job_type, status, at, wait, (at - start).total_seconds() * 1000)


@dataclass(slots=True)
class Tally:
    """The jobs of one type that finished in one span, as a history document counts them."""

    completed: int = 0
    failed: int = 0
    wait: dict[int, int] = field(default_factory=dict)
    run: dict[int, int] = field(default_factory=dict)

    def add(self, job: Finished) -> None:
        if job.status == Status.COMPLETED:
            self.completed += 1
        else:
            self.failed += 1
        for histogram, ms in ((self.wait, job.wait_ms), (self.run, job.run_ms)):
            if ms is not None:
                number = bucket_of(ms)
                histogram[number] = histogram.get(number, 0) + 1

    def merge(self, other: Tally) -> None:
        self.completed += other.completed
        self.failed += other.failed
        for mine, theirs in ((self.wait, other.wait), (self.run, other.run)):
            for number, n in theirs.items():
                mine[number] = mine.get(number, 0) + n


Key = tuple[str, str, datetime]
"""A history document's span, type and start."""


def doc_id(key: Key) -> str:
    span, job_type, start = key
    return f"{span}|{start:%Y-%m-%dT%H:%M}Z|{job_type}"


def tally(jobs: Iterable[Finished], found: dict[Key, Tally] | None = None) -> dict[Key, Tally]:
    """The jobs counted into minute and hour buckets by type (added to `found`, the buckets
    of a range's earlier batches, when given)."""
    found = {} if found is None else found
    for job in jobs:
        for span in SPANS:
            found.setdefault((span, job.type, floor(job.at, span)), Tally()).add(job)
    return found


def add(key: Key, counts: Tally, token: Any) -> tuple[Filter, Update]:
    """The upsert adding a bucket's counts once for the range `token` names: the filter skips
    a document that has it (the upsert then meets the `_id` and fails: a duplicate, already
    applied)."""
    span, job_type, start = key
    inc: dict[str, int] = {"completed": counts.completed, "failed": counts.failed}
    for name, histogram in (("wait", counts.wait), ("run", counts.run)):
        inc.update({f"{name}.{number}": n for number, n in histogram.items()})
    return {"_id": doc_id(key), "applied": {"$ne": token}}, {
        "$inc": inc,
        "$push": {"applied": {"$each": [token], "$slice": -APPLIED_KEPT}},
        "$setOnInsert": {"span": span, "type": job_type, "start": start},
    }


FINISHED: Final = {"$gte": Status.COMPLETED, "$lte": Status.FAILED}
"""Completed or failed, as the partial index of finished jobs states it (mongo/indexes.py)."""


def finished_in(after: datetime, upto: datetime) -> Filter:
    """The finished jobs whose last write is in (after, upto] (served by the partial index on
    `updated` of the finished jobs)."""
    return {"status": dict(FINISHED), "updated": {"$gt": after, "$lte": upto}}


def finished_at(moment: datetime, after_id: Any = None) -> Filter:
    """The finished jobs whose last write is at `moment` exactly (the jobs of the millisecond
    a full batch ended in), those after `after_id` in `_id` order when given."""
    query: dict[str, Any] = {"status": dict(FINISHED), "updated": moment}
    if after_id is not None:
        query["_id"] = {"$gt": after_id}
    return query


def within(raw: Finished, after: datetime, upto: datetime) -> bool:
    """Whether a job's finish falls in the range (a later write, such as a log line on a
    finished job, moves `updated` but not its finish: it is not counted again)."""
    return after < raw.at <= upto


def next_range(upto: datetime, now: datetime) -> tuple[datetime, datetime] | None:
    """The range a pass takes after `upto` (None: nothing is old enough yet); a mark older
    than CATCH_UP skips ahead to it."""
    end = (now - LAG).replace(microsecond=0)  # as stored: BSON dates hold milliseconds
    begin = max(upto, end - CATCH_UP)
    if end <= begin:
        return None
    return begin, min(end, begin + MAX_SPAN)


def first_mark(now: datetime) -> dict[str, Any]:
    """The mark the first pass ever stores: nothing counted yet, from CATCH_UP back (so the
    jobs of the last hour are counted at once)."""
    return {"_id": MARK_ID, "upto": (now - LAG - CATCH_UP).replace(microsecond=0), "pending": None}


def take(upto: datetime, begin: datetime, end: datetime) -> tuple[Filter, Update]:
    """Take the range (begin, end] for this pass: only if the mark still says `upto` and no
    range is pending (a conditional update: of two passes, one takes it)."""
    return {"_id": MARK_ID, "upto": upto, "pending": None}, {
        "$set": {"pending": {"from": begin, "to": end}}
    }


def applied(end: datetime) -> tuple[Filter, Update]:
    """Mark the pending range ending at `end` as counted."""
    return {"_id": MARK_ID, "pending.to": end}, {"$set": {"upto": end, "pending": None}}


# --- reading ------------------------------------------------------------------------------------


def stored_tally(doc: Mapping[str, Any]) -> Tally:
    """A history document's counts."""

    def histogram(name: str) -> dict[int, int]:
        value = doc.get(name)
        if not isinstance(value, Mapping):
            return {}
        return {int(k): int(n) for k, n in value.items() if str(k).isdigit() and n}

    return Tally(
        int(doc.get("completed") or 0),
        int(doc.get("failed") or 0),
        histogram("wait"),
        histogram("run"),
    )


def percentile(histogram: Mapping[int, int], p: float) -> float | None:
    """The p-th percentile (0 < p < 1) in ms, interpolated within its bucket (the last bucket,
    beyond BOUNDS_MS, reads as its lower bound); None for an empty histogram."""
    total = sum(histogram.values())
    if total <= 0:
        return None
    wanted = p * total
    seen = 0
    for number in sorted(histogram):
        n = histogram[number]
        if seen + n >= wanted and n > 0:
            low = 0.0 if number == 0 else float(BOUNDS_MS[min(number, len(BOUNDS_MS)) - 1])
            if number >= len(BOUNDS_MS):
                return low
            return low + (BOUNDS_MS[number] - low) * (wanted - seen) / n
        seen += n
    return float(BOUNDS_MS[-1])


PERCENTILES: Final = (0.5, 0.95, 0.99)


@dataclass(frozen=True, slots=True)
class Point:
    """One span of one type as a chart shows it: jobs finished, and percentiles (ms) of wait
    and run time (None: no job)."""

    start: datetime
    completed: int
    failed: int
    wait: tuple[float | None, ...]
    run: tuple[float | None, ...]


def point(start: datetime, counts: Tally) -> Point:
    return Point(
        start,
        counts.completed,
        counts.failed,
        tuple(percentile(counts.wait, p) for p in PERCENTILES),
        tuple(percentile(counts.run, p) for p in PERCENTILES),
    )


def series(
    docs: Sequence[Mapping[str, Any]], span: str, now: datetime, count: int
) -> dict[str, tuple[list[Point], Point]]:
    """Per type: the last `count` spans up to now's (oldest first, empty ones included), and
    the whole window's totals as one Point (starting at the first span)."""
    step = SPANS[span]
    last = floor(now, span)
    starts = [last - step * (count - 1 - i) for i in range(count)]
    by_type: dict[str, dict[datetime, Tally]] = {}
    for doc in docs:
        start, job_type = doc.get("start"), doc.get("type")
        if doc.get("span") != span or not isinstance(job_type, str):
            continue
        if not isinstance(start, datetime) or not starts[0] <= start <= last:
            continue
        by_type.setdefault(job_type, {}).setdefault(start, Tally()).merge(stored_tally(doc))
    out: dict[str, tuple[list[Point], Point]] = {}
    for job_type, spans in sorted(by_type.items()):
        whole = Tally()
        for counts in spans.values():
            whole.merge(counts)
        points = [point(s, spans.get(s, Tally())) for s in starts]
        out[job_type] = (points, point(starts[0], whole))
    return out


def recent(span: str, since: datetime) -> Filter:
    """The history documents of a span from `since` on (served by the (span, start) index)."""
    return {"span": span, "start": {"$gte": since}}
