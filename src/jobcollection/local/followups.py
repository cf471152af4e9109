"""Follow-ups: what a job's completion, or its failure for good, sets off in other documents.

A completed job may schedule its next run (its repeat) and releases the jobs that wait on it
(its dependents, through dependents.py); a job that failed for good cancels its dependents.
These writes touch other documents, so they cannot be part of the atomic update that finishes
the job. To make them durable, that update also records that they are pending: `FOLLOW_UPS`
in `_private` (the one field job-collection v1.x lets a server keep data in) holds the run,
the new status, the time and the `delay_deps` asked for. Whoever finishes the follow-ups
clears the mark: the reporter right after its write, or, if it crashed or lost its connection
first, the next job-server pass (`finish_stored`). A lost reply, a driver error or a crash
between the status write and the follow-ups delays them by one pass and never loses them.

Every step is idempotent, so finishing the same follow-ups twice (a pass racing the reporter,
a retried report) changes nothing:

- a repeat's `_id` is derived from the job's id and runId (`transitions.repeat_job_id`), so a second
  insert is refused as a duplicate, and its schedule is computed from the time in the mark;
- a dependent's resolution is fenced by its `depends` still naming the antecedent;
- promotion and cancellation are fenced by status.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from ..model.constants import Status
from ..model.document import FOLLOW_UPS, JobDoc, assume_utc
from ..model.schedule import next_run
from ..model.types import Filter, Id, Update
from ..mongo.store import Document, Store
from ..rules import transitions
from .dependents import Dependents
from .reading import Reader

logger = logging.getLogger("jobcollection")

FinalStatus = Literal[Status.COMPLETED, Status.FAILED]
_MARK_KEY = FOLLOW_UPS.split(".", 1)[1]


@dataclass(slots=True)
class Pending:
    """The follow-ups of one job's completion or final failure."""

    job_id: Id
    run_id: Id
    status: FinalStatus
    at: datetime
    delay_deps_ms: int | None = None
    doc: JobDoc | None = None
    """The job as it was when it finished (for its repeat); None if it cannot be read as a
    job (then no repeat is scheduled; its dependents are still resolved or cancelled)."""


def pending_of(raw: Document, doc: JobDoc | None) -> Pending | None:
    """The follow-ups a stored document says are pending, or None. A mark whose status is no
    longer the job's (a failed job restarted since) is void."""
    private = raw.get("_private")
    value = private.get(_MARK_KEY) if isinstance(private, dict) else None
    if not isinstance(value, dict):
        return None
    status, at, run_id = value.get("status"), assume_utc(value.get("at")), value.get("runId")
    if (
        status not in (Status.COMPLETED, Status.FAILED)
        or not isinstance(at, datetime)
        or run_id is None
    ):
        return None
    if raw.get("status") != status:
        return None
    delay = value.get("delayDeps")
    final: FinalStatus = Status.COMPLETED if status == Status.COMPLETED else Status.FAILED
    return Pending(raw["_id"], run_id, final, at, delay if isinstance(delay, int) else None, doc)


def _clearing(pending: Pending) -> tuple[Filter, Update]:
    """The write that ends a job's follow-ups: the mark goes, the removal date comes (from
    the time it finished, for a job with retention)."""
    removal = (
        None
        if pending.doc is None
        else transitions.removal_date(pending.doc, pending.status, pending.at)
    )
    return transitions.clear_follow_ups(pending.job_id, pending.run_id, removal)


class FollowUps:
    """Finishes pending follow-ups: repeats, dependents, then the mark."""

    def __init__(self, store: Store, reader: Reader, dependents: Dependents) -> None:
        self._store = store
        self._reader = reader
        self._dependents = dependents

    async def finish(self, pending: Sequence[Pending]) -> dict[Id, Id]:
        """Finish these follow-ups; the repeat scheduled for each completed job that has one,
        by job id. Raises DatabaseError if a step fails: the marks stay, and the next
        job-server pass finishes what is left."""
        if not pending:
            return {}
        repeats = await self._repeat([p for p in pending if p.status == Status.COMPLETED])
        await self._dependents.follow(pending)
        await self._clear(pending)
        return repeats

    async def finish_marked(self, ids: Sequence[Id]) -> int:
        """Finish the follow-ups these jobs' stored documents mark pending (after the commit
        of a transaction that completed or failed them: what the commit made durable, and
        nothing of a transaction that aborted); the number finished. Raises DatabaseError if
        a step fails: the marks stay, and the next job-server pass finishes what is left."""
        if not ids:
            return 0
        raws = await self._store.find({"_id": {"$in": list(ids)}}, {"log": 0, "failures": 0})
        pending = [
            found for raw in raws if (found := pending_of(raw, self._job_or_none(raw))) is not None
        ]
        await self.finish(pending)
        return len(pending)

    def _job_or_none(self, raw: Document) -> JobDoc | None:
        try:
            return self._reader.job_with_private(raw)
        except Exception:  # a poison document: its dependents are still followed, no repeat
            return None

    async def finish_stored(self, now: datetime, limit: int = 1000) -> int:
        """Finish the follow-ups marked pending in stored documents (a job-server pass); the
        number of jobs whose follow-ups were finished. A document that is not a valid job
        still gets its dependents handled, without a repeat."""
        raws = await self._store.find(
            {FOLLOW_UPS: {"$exists": True}, f"{FOLLOW_UPS}.at": {"$lte": now}},
            {"log": 0, "failures": 0},
            sort=[(f"{FOLLOW_UPS}.at", 1)],
            limit=limit,
        )
        pending: list[Pending] = []
        void: list[Document] = []
        for raw in raws:
            doc: JobDoc | None = None
            try:
                doc = self._reader.job_with_private(raw)
            except Exception as exc:
                logger.error(
                    "job %s: its follow-ups are pending but it cannot be read (%s); no repeat",
                    raw.get("_id"),
                    exc,
                )
            found = pending_of(raw, doc)
            if found is None:
                void.append(raw)
            else:
                pending.append(found)
        if void:  # a malformed mark, or a status that changed since: nothing left to do
            await self._store.update_each(
                [transitions.drop_mark(raw["_id"], raw["_private"][_MARK_KEY]) for raw in void]
            )
        await self.finish(pending)
        return len(pending)

    async def _repeat(self, completed: Sequence[Pending]) -> dict[Id, Id]:
        """Insert the next run of each completed repeating job (at most once per completion)."""
        clones: dict[Id, Document] = {}
        for p in completed:
            if p.doc is None:
                continue
            found = next_run(p.doc, p.at)
            if found is None:
                continue
            clones[p.job_id] = transitions.repeat_document(p.doc, p.job_id, p.run_id, found, p.at)
        if clones:
            await self._store.insert_missing(list(clones.values()))
        return {job_id: clone["_id"] for job_id, clone in clones.items()}

    async def _clear(self, pending: Sequence[Pending]) -> None:
        """Remove the marks of finished follow-ups (each fenced by its run, so a newer mark on
        a job restarted and finished again is kept), setting the removal date of a job with
        retention: only now that nothing depends on its document may MongoDB delete it."""
        await self._store.update_each([_clearing(p) for p in pending])
