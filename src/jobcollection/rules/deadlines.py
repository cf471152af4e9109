"""Deadlines (`Job.expires`): a job not started by its deadline is cancelled instead of
running late.

Two places see to it, so that no job runs late whoever claims it and whether or not the job
server's pass came first: a claim that took a job past its deadline cancels it at once, in
one write fenced by the claim's runId, and hands it to no worker (local/claiming.py); the job
server's pass cancels the pending jobs (waiting, ready, paused) past theirs, each in one write
fenced by its status and deadline (local/managing.py). The claim itself is unchanged, so the
claim query stays served by its index. Every start counts, a retry's included: a job waiting
for a retry at its deadline is cancelled too (as Celery's `expires` and Dramatiq's `max_age`
do). Pure functions of the document and now.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Final

from ..model.constants import Status
from ..model.document import EXPIRES, JobDoc
from ..model.types import Filter, Id, Update
from .transitions import cancel, entry

EXPIRES_AT: Final = f"{EXPIRES}.at"
"""The deadline of a job, as stored: the key of the partial index the pass's query uses."""
_EXPIRED: Final = f"{EXPIRES}.expired"


def started_late(doc: JobDoc, now: datetime) -> bool:
    """Whether a job claimed at `now` is past its deadline (the claim is to be undone)."""
    return doc.expires is not None and now > doc.expires


def overdue(now: datetime) -> Filter:
    """The pending jobs past their deadlines (served by the partial index on EXPIRES_AT,
    which only jobs with a deadline are in, led by the status)."""
    return {
        "status": {"$in": list(Status.PENDING)},
        EXPIRES_AT: {"$lt": now, "$exists": True},
    }


def expire(
    ids: Sequence[Id], at: datetime, now: datetime, run_id: Id | None = None
) -> tuple[Filter, Update]:
    """Cancel jobs not started by their deadline `at` (they all share it), with the reason
    logged before "Job Cancelled" and the job marked expired. The filter states what each
    must still be: pending with that deadline, or, for a job a claim took late (`run_id`),
    running under that claim, whose attempt is given back and lease dropped (it never ran).
    Apply it as `cancel`'s (local/managing.py, which dates a retained job's removal too)."""
    fence, update = cancel(ids, now)
    fence[EXPIRES_AT] = at
    reason = entry(
        now,
        f"Expired: not started by {at.isoformat()}",
        level="warning",
        run_id=run_id,
        data={"expires": at},
    )
    update["$set"][_EXPIRED] = True
    update["$push"] = {"log": {"$each": [reason, update["$push"]["log"]]}}
    if run_id is not None:
        fence |= {"status": Status.RUNNING, "runId": run_id}
        update["$inc"] = {"retries": 1, "retried": -1}
        update["$unset"] |= {"workTimeout": "", "expiresAfter": ""}
    else:
        fence["status"] = {"$in": list(Status.PENDING)}
    return fence, update
