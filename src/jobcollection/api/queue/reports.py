"""Reports: how the jobs a queue was handed end. A worker call's outcome completes its
unreported jobs (its return value as their result) or fails them (the exception's type,
message and traceback, not fatally); a shutdown releases queued jobs (ready again, no attempt
used) or fails running ones. A write that fails with a DatabaseError is retried, with backoff,
for as long as the claim's lease holds (after that the job server fails the job, and it is
retried by its retries); a report that retrying cannot cure (a result too large or that cannot
be encoded, a write the server refuses) fails the job instead, with the reason. One line is
logged per job: INFO for a completion, WARNING (with the traceback) for a failure.

What a worker's exception decides for its jobs (a retry, after which wait; a fatal failure; a
snooze; a cancel) is the queue's RetryRules and the job's own `retry(on=...)` applied to it
(model/decisions.py), and travels as the options of the jobs' failures (failures.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from ...model.decisions import Decision, RetryRules
from ...model.errors import DatabaseError, InvalidArgument, WriteRefused
from ...model.ops import Release
from ..job import Job
from .failures import ErrorSink, decision_for, failure_info, report_failure, text
from .leases import Leases
from .log import fields, logger

if TYPE_CHECKING:
    from ..seam import JobService

RETRY = Decision("retry")
"""An ordinary failure: retried after the job's own backoff while its retries allow."""
_OUTCOMES = {"snooze": "snoozed", "cancel": "cancelled"}
"""The outcome a decision logs (any other: "failed")."""


def _consequence(decision: Decision, retry: bool) -> str:
    """What becomes of a job whose worker raised, as its log line ends."""
    if decision.kind == "snooze":
        assert decision.wait_ms is not None
        return f"it waits {decision.wait_ms / 1000:g} s, no attempt used"
    if decision.kind == "cancel":
        return "it is cancelled"
    if decision.kind == "fatal":
        return "it will not be retried (fatal)"
    if retry and decision.wait_ms is not None:
        return f"it will be retried in {decision.wait_ms / 1000:g} s"
    return "it will be retried" if retry else "it will not be retried"


MAX_RETRY_DELAY = 5.0
"""The longest wait, in seconds, between two attempts to write a report."""


def retry_delay(attempt: int) -> float:
    """Seconds to wait before attempt `attempt` (2, 3, ...) of a report: none before the first
    retry, then 50 ms doubling up to MAX_RETRY_DELAY."""
    if attempt <= 2:
        return 0.0
    return float(min(0.05 * 2 ** (attempt - 3), MAX_RETRY_DELAY))


class Reports:
    """Writes the reports (done, fail, release) of the jobs a queue holds."""

    def __init__(
        self,
        service: JobService,
        leases: Leases,
        on_error: ErrorSink,
        rules: Callable[[str], RetryRules],
    ) -> None:
        self._service = service
        self._leases = leases
        self._on_error = on_error
        self._rules = rules
        """The retry rules of a job type's jobs."""

    async def finish(
        self,
        batch: list[Job],
        *,
        result: Any = None,
        error: BaseException | None = None,
        seconds: float | None = None,
    ) -> None:
        """Report the outcome of a worker call on the jobs it left unreported, and log one
        line per job: INFO for a completion, WARNING (with the traceback) for a failure,
        saying whether the job will be retried. Job data and results are never logged."""
        pending = [job for job in batch if not job.reported and not job.cancelled]
        if not pending:
            return
        took = "" if seconds is None else f" in {seconds:.3f} s"
        if error is None:
            await self._settle_all(pending, "done", lambda: result)
            if logger.isEnabledFor(logging.INFO):
                for job in pending:
                    extra = {**fields(job), "outcome": "completed", "seconds": seconds}
                    logger.info("job %s %s completed%s", job.type, job.id, took, extra=extra)
            return
        message = text(lambda: str(error), "<str() raised>")
        now = self._service.clock.now()
        decisions: dict[int, Decision] = {}
        for job in pending:
            decision = decisions[id(job)] = decision_for(error, job, self._rules(job.type))
            retry = decision.kind == "retry" and job.doc.retries > 0 and job.doc.retry_until > now
            outcome = _OUTCOMES.get(decision.kind, "failed")
            logger.log(
                logging.INFO if decision.kind == "snooze" else logging.WARNING,
                "job %s %s %s%s: %s: %s; %s",
                job.type,
                job.id,
                outcome,
                took,
                type(error).__name__,
                message,
                _consequence(decision, retry),
                exc_info=error if outcome == "failed" else None,
                extra={**fields(job), "outcome": outcome, "retry": retry, "seconds": seconds},
            )
        failure = failure_info(error, self._service.limits.max_error_bytes)
        await self._settle_all(pending, "fail", lambda: failure, decisions)

    async def fail(self, jobs: list[Job], error: dict[str, Any]) -> int:
        """Fail jobs (not fatally) concurrently; the number failed."""
        return await self._settle_all(jobs, "fail", lambda: dict(error))

    async def release(self, jobs: list[Job]) -> int:
        """Hand queued jobs back, ready for any worker, without using an attempt; the number
        released. A failed write is retried while the lease lasts."""
        claims: dict[Any, list[Job]] = {}
        for job in jobs:
            claims.setdefault(job.doc.run_id, []).append(job)
        released = 0
        with self._leases.releasing(list(claims)):
            for run_id, held in claims.items():
                attempt = 1
                while True:
                    try:
                        ids = await self._service.run(
                            Release(
                                [job._saved_id("release") for job in held],
                                run_id,
                                checkpoints=_pending(held),
                            )
                        )
                    except DatabaseError as exc:
                        if isinstance(exc, WriteRefused) or not await self._may_retry(
                            held[0], attempt, exc
                        ):
                            await self._on_error(exc, f"releasing the jobs of claim {run_id}")
                            break
                        attempt += 1
                        continue
                    released += len(ids)
                    for job in held:
                        job._checkpoint_stored(job._pending_checkpoint())
                    break
        return released

    async def _settle_all(
        self,
        jobs: list[Job],
        kind: Literal["done", "fail"],
        value: Callable[[], Any],
        decisions: dict[int, Decision] | None = None,
    ) -> int:
        """Write the reports of several jobs concurrently (so they share one bundled write);
        the number applied. A failure is reported as `decisions` says for each job (by
        id(job); none: an ordinary retry). A lone report is awaited directly: no task to
        create."""
        chosen = {} if decisions is None else decisions
        if len(jobs) == 1:
            return int(await self._settle(jobs[0], kind, value(), chosen.get(id(jobs[0]))))
        outcomes = await asyncio.gather(
            *(self._settle(job, kind, value(), chosen.get(id(job))) for job in jobs)
        )
        return sum(outcomes)

    async def _settle(
        self,
        job: Job,
        kind: Literal["done", "fail"],
        value: Any,
        decision: Decision | None = None,
    ) -> bool:
        """Write one job's report (a failure as `decision` says; None: an ordinary retry);
        whether it was applied. A DatabaseError is retried (see retry_delay) while the
        claim's lease lasts; a report that cannot be stored, or that the server refuses,
        becomes a failure with the reason."""
        attempt = 1
        while True:
            try:
                if kind == "done":
                    return bool(await job.done(value))
                return await report_failure(job, value, decision or RETRY)
            except InvalidArgument as exc:  # the value cannot be stored: retrying cannot help
                if kind == "fail":
                    await self._on_error(exc, f"failing job {job.id}")
                    return False
                kind, value = "fail", failure_info(exc, self._service.limits.max_error_bytes)
            except DatabaseError as exc:
                if isinstance(exc, WriteRefused) and kind == "done":
                    kind, value = "fail", failure_info(exc, self._service.limits.max_error_bytes)
                    continue
                if isinstance(exc, WriteRefused) or not await self._may_retry(job, attempt, exc):
                    await self._on_error(exc, f"reporting on job {job.id}")
                    return False
            attempt += 1

    async def _may_retry(self, job: Job, attempt: int, exc: Exception) -> bool:
        """Wait before the next attempt at writing a report; False once the claim's lease
        has run out (the job server fails the job from then on, so it is not lost)."""
        now = self._service.clock.now()
        if now >= self._leases.expires(job.doc.run_id, now):
            logger.error(
                "giving up reporting on job %s: its lease ran out (%s); the job server fails "
                "it and it is retried if it has retries left",
                job.id,
                exc,
            )
            return False
        delay = retry_delay(attempt + 1)
        logger.warning("report on job %s failed (%s); retrying in %.2f s", job.id, exc, delay)
        await asyncio.sleep(delay)
        return True


def _pending(jobs: list[Job]) -> list[tuple[Any, Any]] | None:
    """The checkpoints these jobs recorded and did not store yet (None: none)."""
    pairs = [(job.id, state) for job in jobs if (state := job._pending_checkpoint()) is not None]
    return pairs or None
