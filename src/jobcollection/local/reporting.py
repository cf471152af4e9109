"""Bundled reports: done/fail reports that arrive together are written together.

Each report waits for the current flush to finish (or for the next turn of the event loop),
then joins a batch: one read of the jobs (from the primary), one unordered bulk write of
single-document conditional updates (each fenced by `{_id, runId, status: "running"}`, and an
expiry also by `expiresAfter < now`; only single-document writes, so the driver retries the
batch after a failover), then the follow-ups of the jobs that finished (followups.py). Under
load this makes the cost of finishing a job a fraction of a round trip; a lone report costs
what it did unbatched.

Every report is judged alone: one whose value cannot be stored, or whose write the server
refuses, gets its own error and the rest of its batch is written. The write that completes a
job, or fails it for good, also marks its follow-ups pending, so a fault after it delays them
by one job-server pass and never loses them. A report on a job whose stored document is not a
valid job (a poison document) fails that job for good, with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from bson import ObjectId

from ..model.clock import Clock
from ..model.constants import Status
from ..model.document import CLAIMER, FLUSH, JobDoc, assume_utc
from ..model.errors import DatabaseError, InvalidDocument, PermissionDenied
from ..model.schedule import next_run
from ..model.types import Id
from ..mongo.store import Document, Store
from ..rules import transitions
from .followups import FollowUps, Pending, pending_of
from .reading import Reader

logger = logging.getLogger("jobcollection")

Outcome = bool | Id
"""What a report answers: whether it was applied (by this call, or by an earlier attempt of the
same call whose reply was lost), or the id of the repeat it scheduled when one was asked for."""
_CLAIMER_KEY = CLAIMER.split(".", 1)[1]


@dataclass(slots=True)
class Report:
    """One done or fail, waiting to be applied."""

    kind: Literal["done", "fail"]
    job_id: Id
    run_id: Id
    value: dict[str, Any]
    fatal: bool = False
    retry_in_ms: int | None = None
    """A failure's wait before its retry, as its worker chose (jobFail's `retryIn`)."""
    snooze_ms: int | None = None
    """Not a failure: the job waits so long without using an attempt (jobFail's `snooze`)."""
    repeat_id: bool = False
    delay_deps_ms: int | None = None
    checkpoint: Any = None
    """A failure's checkpoint its worker had not stored yet, stored with it (None: none)."""
    expired: bool = False
    """A failure for an expired lease (the job server's): it applies only while the lease is
    still expired, so a heartbeat that lands first wins."""
    claimed: JobDoc | None = None
    """The job as its holder claimed it, if the holder has it: the report is then written
    without reading the job first, when it sets off no follow-up (see Reporter)."""
    by: Any = None
    """The user the report must come from (`claimer_of` the user reporting), or None for a
    report that may come from anyone (server code, an admin): it applies only to a run that
    user claimed, and on a run another user claimed it fails with PermissionDenied."""
    future: asyncio.Future[Outcome] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


@dataclass(slots=True)
class _Planned:
    index: int
    fence: dict[str, Any]
    update: dict[str, Any]
    pending: Pending | None
    blind: bool
    """Planned from the holder's copy without reading the job: if its fence does not hold
    (the job has dependents now, or the claim is lost), the report is read and planned again."""


Result = Outcome | BaseException


class Reporter:
    """Collects done/fail reports and applies them in batches."""

    def __init__(self, store: Store, clock: Clock, follow_ups: FollowUps, reader: Reader) -> None:
        self._store = store
        self._clock = clock
        self._follow_ups = follow_ups
        self._parse = reader.job_with_private
        self._pending: list[Report] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, report: Report) -> Outcome:
        self._pending.append(report)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain(), name="jobcollection-completion")
        # Not shielded: a caller cancelled while it waits cancels only its own future; the
        # batch it joined is written all the same.
        return await report.future

    async def apply_alone(self, report: Report) -> Outcome:
        """Apply one report now, in the caller's task and through this Reporter's store (one
        joined to the caller's session: a report inside a transaction joins no batch), and
        leave its follow-ups to their mark: the write that finishes the job marks them
        pending, and they are finished after the commit (`FollowUps.finish_marked`) or by
        the next job-server pass. Raises the report's error."""
        [result], _ = await self._flush([report])
        if isinstance(result, BaseException):
            raise result
        return result

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _drain(self) -> None:
        await asyncio.sleep(0)  # let reports made in the same turn join this batch
        while self._pending:
            batch, self._pending = self._take_batch()
            try:
                results, follow = await self._flush(batch)
                await self._finish_follow_ups(batch, follow, results)
            except Exception as exc:  # a bug or an unexpected backend error: fail the batch
                results = [exc] * len(batch)
            for report, result in zip(batch, results, strict=True):
                if report.future.done():
                    continue
                if isinstance(result, BaseException):
                    report.future.set_exception(result)
                else:
                    if result is False and not report.expired:
                        logger.warning(
                            "job%s: job %s is not running under run %s",
                            "Done" if report.kind == "done" else "Fail",
                            report.job_id,
                            report.run_id,
                        )
                    report.future.set_result(result)

    def _take_batch(self) -> tuple[list[Report], list[Report]]:
        """One report per job in a batch; a second report for the same job waits its turn."""
        batch: list[Report] = []
        later: list[Report] = []
        seen: set[Id] = set()
        for report in self._pending:
            (later if report.job_id in seen else batch).append(report)
            seen.add(report.job_id)
        return batch, later

    async def _flush(self, batch: list[Report]) -> tuple[list[Result], list[tuple[int, Pending]]]:
        """Apply a batch: each report's result, and the follow-ups to finish (by index in the
        batch). A report whose holder gave its claimed copy and that sets off no follow-up
        (a completion without a repeat to schedule, or a failure) is written blind: its fence
        adds "no dependents" (DEPENDENTS absent), so one write suffices. The others are read
        first. A blind write whose fence did not hold is read and planned again."""
        now = self._clock.now()
        flush = ObjectId()  # marks this flush's writes, to tell them apart after a race
        blind = {i for i, report in enumerate(batch) if _blind(report, now)}
        read = [r.job_id for i, r in enumerate(batch) if i not in blind]
        found = {
            d["_id"]: d
            for d in (
                await self._store.find(
                    {"_id": {"$in": read}}, {"log": 0, "failures": {"$slice": -1}}
                )
                if read
                else []
            )
        }
        results: dict[int, Result] = {}
        planned: list[_Planned] = []
        follow: list[tuple[int, Pending]] = []
        for i, report in enumerate(batch):
            raw = found.get(report.job_id)
            if i in blind:
                planned.append(self._plan(i, report, report.claimed, None, now, flush))
            elif raw is None:
                results[i] = False
            elif not claimed_by(raw, report.run_id, report.by):
                results[i] = refused(
                    report.job_id, "jobDone" if report.kind == "done" else "jobFail"
                )
            elif _holds(report, raw, now):
                doc, reason = self._parse_or_reason(raw)
                planned.append(self._plan(i, report, doc, reason, now, flush))
            elif self._applied_before(report, raw):
                # The same call repeated after a lost reply: it was applied. Finish its
                # follow-ups if they are still marked pending for this run.
                results[i] = True
                pending = pending_of(raw, None)
                if pending is not None and pending.run_id == report.run_id:
                    pending.doc = self._parse_or_none(raw)
                    follow.append((i, pending))
            else:
                results[i] = False
        written, missed = await self._write(planned, flush, results)
        follow += written
        if missed:  # blind writes whose fence did not hold: read and plan them again
            again, more = await self._flush(
                [dataclasses.replace(batch[i], claimed=None) for i in missed]
            )
            results.update(zip(missed, again, strict=True))
            follow += [(missed[j], pending) for j, pending in more]
        return [results[i] for i in range(len(batch))], follow

    def _parse_or_reason(self, raw: Document) -> tuple[JobDoc | None, str | None]:
        """A stored document as a job, or None and why it is not one (a poison document)."""
        try:
            return self._parse(raw), None
        except InvalidDocument as exc:
            return None, f"Invalid job document: {exc}"[:2000]

    def _plan(
        self,
        index: int,
        report: Report,
        doc: JobDoc | None,
        reason: str | None,
        now: datetime,
        flush: ObjectId,
    ) -> _Planned:
        """The fenced update for one report. Its value was checked (storable, within the
        limits) before it was submitted. Without a document (`reason` says why it is not a
        valid job) the job is failed for good with that reason."""
        status: str
        blind = doc is not None and doc is report.claimed
        if doc is None:
            status = Status.FAILED
            logger.error("job %s: %s; failing it", report.job_id, reason)
            update = transitions.fail_invalid(report.run_id, {"value": reason}, now)
        else:
            if report.kind == "done":
                status, update = Status.COMPLETED, transitions.done(doc, report.value, now)
            else:
                if report.snooze_ms is not None:
                    status = Status.WAITING
                    update = transitions.snooze(
                        report.job_id, report.run_id, report.value, now, report.snooze_ms
                    )
                else:
                    status, update = transitions.fail(
                        doc, report.value, report.fatal, now, random.random(), report.retry_in_ms
                    )
                update = transitions.with_checkpoint(update, report.checkpoint)
        pending: Pending | None = None
        if status in (Status.COMPLETED, Status.FAILED) and not blind:
            delay = report.delay_deps_ms if status == Status.COMPLETED else None
            final: Literal[Status.COMPLETED, Status.FAILED] = (
                Status.COMPLETED if status == Status.COMPLETED else Status.FAILED
            )
            pending = Pending(report.job_id, report.run_id, final, now, delay, doc)
            marked = transitions.follow_ups_mark(report.run_id, final, now, delay)
            update = transitions.finish_update(update, flush, follow_ups=marked)
        else:
            # nothing follows this write: the job may be deleted from the date set with it
            # (with follow-ups, the write that clears them sets it; see followups.py)
            removal = None if doc is None else transitions.removal_date(doc, status, now)
            update = transitions.finish_update(update, flush, removal=removal)
        update = self._store.capped(update)
        fence = transitions.finish_fence(
            report.job_id, report.run_id, report.by, now if report.expired else None, blind
        )
        return _Planned(index, fence, update, pending, blind)

    async def _write(
        self, planned: list[_Planned], flush: ObjectId, results: dict[int, Result]
    ) -> tuple[list[tuple[int, Pending]], list[int]]:
        """Write the planned updates and record each report's result; the follow-ups to
        finish, and the blind writes whose fence did not hold (to read and plan again)."""
        if not planned:
            return [], []
        try:
            outcome = await self._store.update_each([(p.fence, p.update) for p in planned])
        except DatabaseError as exc:  # unknown outcome: the caller retries (see README)
            for p in planned:
                results[p.index] = exc
            return [], []
        written = [p for j, p in enumerate(planned) if j not in outcome.refused]
        for j, error in outcome.refused.items():
            results[planned[j].index] = error
        applied = written
        if outcome.matched < len(written):  # some fence did not hold: which ones?
            try:
                applied = await self._confirm(written, flush)
            except DatabaseError as exc:
                for p in written:
                    results[p.index] = exc
                return [], []
        follow: list[tuple[int, Pending]] = []
        for p in applied:
            results[p.index] = True
            if p.pending is not None:
                follow.append((p.index, p.pending))
        missed: list[int] = []
        for p in written:  # written but not applied: the fence no longer held
            if p.index in results:
                continue
            if p.blind:
                missed.append(p.index)
            else:
                results[p.index] = False
        return follow, missed

    async def _confirm(self, written: list[_Planned], flush: ObjectId) -> list[_Planned]:
        """After a write that matched fewer jobs than it named (another writer, perhaps
        another instance reporting on the same claim, got there first): the reports whose
        write carries this flush's mark."""
        marked = {
            d["_id"]
            for d in await self._store.find(
                {"_id": {"$in": [p.fence["_id"] for p in written]}, FLUSH: flush},
                {"_id": 1},
            )
        }
        return [p for p in written if p.fence["_id"] in marked]

    async def _finish_follow_ups(
        self, batch: list[Report], follow: list[tuple[int, Pending]], results: list[Result]
    ) -> None:
        if not follow:
            return
        try:
            repeats = await self._follow_ups.finish([p for _, p in follow])
        except Exception as exc:
            logger.warning(
                "follow-ups of %d finished job(s) are delayed (%s); the job server's next "
                "pass finishes them",
                len(follow),
                exc,
            )
            return
        for i, pending in follow:
            if batch[i].repeat_id and pending.job_id in repeats:
                results[i] = repeats[pending.job_id]

    def _parse_or_none(self, raw: Document) -> JobDoc | None:
        try:
            return self._parse(raw)
        except InvalidDocument:
            return None

    def _applied_before(self, report: Report, raw: Document) -> bool:
        """Whether this very report was applied before (its caller lost the reply).

        done() under runId R leaves the job completed with runId R and its result; fail()
        under R clears the runId and appends `{**error, runId: R}` to failures. The same
        value from the same run means the same call repeated. Values are compared as BSON
        after a round trip (tuples become lists, datetimes lose their microseconds), so the
        value given again matches the one stored. A lease expiry is never a repeat.
        """
        if report.expired:
            return False
        if report.kind == "done":
            return (
                raw.get("status") == Status.COMPLETED
                and raw.get("runId") == report.run_id
                and self._store.same(raw.get("result"), report.value)
            )
        failures = raw.get("failures") or [None]
        return raw.get("runId") != report.run_id and self._store.same(
            failures[-1], {**report.value, "runId": report.run_id}
        )


def claimer_of(user_id: Any) -> Any:
    """How a user is recorded as a run's claimer (document.CLAIMER), and compared with it: an
    id MongoDB stores and matches as itself (a string, a 64-bit integer, an ObjectId) as is;
    anything else an `auth` may return, as its type and repr (a string)."""
    if isinstance(user_id, str | ObjectId) or (
        type(user_id) is int and -(2**63) <= user_id < 2**63
    ):
        return user_id
    return f"<{type(user_id).__name__}> {user_id!r}"


def claimed_by(raw: Document, run_id: Id, by: Any) -> bool:
    """Whether a report from `by` (None: anyone) may apply to a stored job as read: a run
    `by` did not claim refuses it. A job not running under `run_id` is another matter (the
    report does not apply; this says True). The read decides safely: a claim sets the claimer
    with its runId, and nothing changes it while the runId stays."""
    if by is None or raw.get("status") != Status.RUNNING or raw.get("runId") != run_id:
        return True
    private = raw.get("_private")
    return isinstance(private, dict) and private.get(_CLAIMER_KEY, _NOBODY) == by


_NOBODY = object()


def refused(job_id: Id, method: str) -> PermissionDenied:
    """The error of a report on a run another user claimed."""
    return PermissionDenied(
        f"Method not authorized: {method} (job {job_id} is held by another user's claim)"
    )


def _blind(report: Report, now: datetime) -> bool:
    """Whether a report can be written from its holder's copy of the job, unread: it sets
    off no follow-up but for dependents (which its fence rules out), so nothing else of the
    stored job is needed. A completion with a repeat to schedule, an expiry, and a report on
    a job of a workflow (which most likely has dependents: the blind write's fence would
    fail, then be read and written again) are read first."""
    doc = report.claimed
    if doc is None or report.expired or doc.run_id != report.run_id or doc.workflow is not None:
        return False
    return report.kind == "fail" or next_run(doc, now) is None


def _holds(report: Report, raw: Document, now: datetime) -> bool:
    """Whether the report's fence holds on the stored document as read."""
    if raw.get("status") != Status.RUNNING or raw.get("runId") != report.run_id:
        return False
    if report.expired:
        expires = assume_utc(raw.get("expiresAfter"))
        return isinstance(expires, datetime) and expires < now
    return True
