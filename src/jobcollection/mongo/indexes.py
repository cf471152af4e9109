"""The indexes `start_job_server()` creates, and which query each one serves.

Every filter and sort the library sends is served by one of these (the suite checks it: see
tests/strict.py). job-collection v1.x creates its two indexes itself, so they are kept here for
a shared collection even though no query of this library needs them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..model.document import (
    BATCHES,
    CALLBACK_OF,
    CASCADE,
    EXPIRE_AT,
    EXPIRES,
    FOLLOW_UPS,
    SCHEDULED_ID,
    UNIQUE,
    UNIQUE_HELD,
    WORKFLOW,
)


@dataclass(frozen=True, slots=True)
class Index:
    """Index keys in order, with a partial filter where only some documents need indexing."""

    keys: tuple[tuple[str, int], ...]
    partial: Mapping[str, Any] | None = field(default=None)
    serves: str = ""
    unique: bool = False
    expire_after_seconds: int | None = None
    """A TTL index: MongoDB deletes a document this long after the date its key holds."""

    def options(self) -> dict[str, Any]:
        """Keyword arguments for `create_index`."""
        options: dict[str, Any] = {"unique": True} if self.unique else {}
        if self.expire_after_seconds is not None:
            options["expireAfterSeconds"] = self.expire_after_seconds
        if self.partial is not None:
            options["partialFilterExpression"] = dict(self.partial)
        return options


FINISHED: Mapping[str, str] = {"$gte": "completed", "$lte": "failed"}
"""The statuses completed and failed as a range (a partial index takes no `$in` before MongoDB
6.0): of the statuses, only these two sort between "completed" and "failed"."""

UNIQUE_JOBS = Index(
    ((UNIQUE, 1),),
    partial={UNIQUE: {"$exists": True}},
    unique=True,
    serves="unique jobs: no two pending jobs hold the same key (only those are indexed)",
)
UNIQUE_HELD_JOBS = Index(
    ((UNIQUE_HELD, 1),),
    partial={UNIQUE_HELD: {"$exists": True}},
    unique=True,
    serves="unique jobs that hold their key past pending: no two hold the same key (only those "
    "are indexed)",
)
UNIQUE_INDEXES = (UNIQUE_JOBS, UNIQUE_HELD_JOBS)
"""A sharded collection cannot have them (a unique index must start with the shard key): there
start_job_server() warns, and saving a unique job raises DatabaseError."""

INDEXES: tuple[Index, ...] = (
    Index(
        (("type", 1), ("status", 1), ("after", 1)),
        serves="cancel_repeats lookups (as v1.x's {type, status}); a queue's promotion of its "
        "types' due jobs, and the next of them due, in `after` order",
    ),
    Index(
        (("priority", 1), ("retryUntil", 1), ("after", 1)),
        serves="v1.x's index; no query of this library (the claim index below covers its sort)",
    ),
    Index(
        (("type", 1), ("status", 1), ("priority", 1), ("retryUntil", 1), ("after", 1)),
        serves="claims: ready jobs of some types in priority order",
    ),
    Index((("status", 1), ("expiresAfter", 1)), serves="expiry: running jobs past their lease"),
    Index((("status", 1), ("after", 1)), serves="promotion: waiting jobs that are due"),
    Index((("status", 1), ("runId", 1)), serves="the jobs held under some runIds"),
    Index((("depends", 1),), serves="dependents of a job"),
    UNIQUE_JOBS,
    UNIQUE_HELD_JOBS,
    Index(
        ((EXPIRE_AT, 1),),
        partial={EXPIRE_AT: {"$exists": True}},
        expire_after_seconds=0,
        serves="retention: MongoDB deletes each job at its removal date (a TTL index; only "
        "jobs with one are indexed); no query of this library",
    ),
    Index(
        ((WORKFLOW, 1), ("_id", -1)),
        partial={WORKFLOW: {"$exists": True}},
        serves="the members of a workflow, newest first (find_jobs(workflow=)); only the "
        "members of workflows are indexed",
    ),
    Index(
        ((BATCHES, 1), ("_id", -1)),
        partial={BATCHES: {"$exists": True}},
        serves="the members of a batch, newest first (find_jobs(batch=)); only the members "
        "of batches are indexed",
    ),
    Index(
        ((CALLBACK_OF, 1), ("_id", -1)),
        partial={CALLBACK_OF: {"$exists": True}},
        serves="the callbacks of a batch (find_jobs(callback_of=)), to add jobs to an open "
        "batch; only callbacks are indexed",
    ),
    Index(
        ((CASCADE, 1),),
        partial={CASCADE: {"$exists": True}},
        serves="cancels whose cascade to dependents a fault cut short (the job server carries "
        "them on); only jobs being cancelled with dependents are indexed",
    ),
    Index(
        (("status", 1), (f"{EXPIRES}.at", 1)),
        partial={f"{EXPIRES}.at": {"$exists": True}},
        serves="deadlines: the pending jobs past theirs, which the job server cancels; only "
        "jobs with a deadline are indexed",
    ),
    Index(
        ((SCHEDULED_ID, 1), ("_id", -1)),
        partial={SCHEDULED_ID: {"$exists": True}},
        serves="the runs of a schedule object, newest first (find_jobs(schedule=)), and its "
        "runs not final yet (the overlap policies); only runs of schedules are indexed",
    ),
    Index(
        ((f"{FOLLOW_UPS}.at", 1),),
        partial={FOLLOW_UPS: {"$exists": True}},
        serves="jobs whose follow-ups (repeat, dependents) are pending; only those are indexed",
    ),
    Index(
        (("updated", 1),),
        partial={"status": FINISHED},
        serves="the history (local/history.py): the jobs completed or failed in a range of "
        "time; only those are indexed (FINISHED), so no write to an unfinished job touches it",
    ),
)

WORKERS_INDEX = Index(
    (("expireAt", 1),),
    expire_after_seconds=0,
    serves="the worker registry (`<root>.workers`): the live registrations; MongoDB deletes "
    "each once it was not renewed (TTL)",
)
"""The index of `<root>.workers` beside `_id` (local/workers.py creates it)."""
SCHEDULE_INDEXES: tuple[Index, ...] = (
    Index(
        (("next", 1),),
        partial={"next": {"$exists": True}},
        serves="the schedules (`<root>.schedules`) due for materialising, by their next "
        "occurrence; only active ones have one",
    ),
    Index(
        (("plan.at", 1),),
        partial={"plan.at": {"$exists": True}},
        serves="the schedules whose materialising a fault left pending (the next job-server "
        "pass carries it out); only those are indexed",
    ),
)
"""The indexes of `<root>.schedules` beside `_id` (local/schedules.py creates them)."""
HISTORY_INDEXES: tuple[Index, ...] = (
    Index(
        (("start", 1),),
        expire_after_seconds=8 * 86_400,
        serves="the history (`<root>.history`): MongoDB deletes each minute's and hour's "
        "counts 8 days after its start (TTL; rules/history.py RETENTION)",
    ),
    Index(
        (("span", 1), ("start", 1)),
        serves="the history's minutes or hours from a time on (the dashboard's charts)",
    ),
)
"""The indexes of `<root>.history` (local/history.py creates them)."""
LIMITS_INDEX = Index(
    (("expireAt", 1),),
    expire_after_seconds=0,
    serves="the rate-limit counters and claim locks (`<root>.limits`): MongoDB deletes each "
    "counter a few windows after its own, and an idle lock after an hour (TTL); the dashboard "
    "reads the counters that expire last, the current windows' among them "
    "(rules/ratecounters.py current); otherwise they are read and written by _id only",
)
"""The index of `<root>.limits` beside `_id` (local/limiter.py and local/slots.py create it)."""
SIDE_INDEXES: tuple[Index, ...] = (
    WORKERS_INDEX,
    *SCHEDULE_INDEXES,
    *HISTORY_INDEXES,
    LIMITS_INDEX,
)
"""The indexes of the collections beside the jobs whose queries are not by `_id` alone."""
