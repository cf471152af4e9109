"""Leases: every claim a queue makes carries one (`work_timeout`), renewed by the heartbeat
(every third of it) while the queue holds a job of the claim, so that the jobs of a process
that dies are recovered by the job server. Each renewal also stores the checkpoints its jobs
recorded since the last one (`job.checkpoint(state)`), in the same write. Renewing a claim is
also how the queue finds that it lost it (cancelled, removed, or its lease ran out): at every
heartbeat, at once when a job
is cancelled or removed through a JobCollection of this process (LocalCancels), and at once
from a cancel stream where the server has one (CancelSource). A queued job whose claim is lost
is dropped; a worker call whose unreported jobs all lost their claims is stopped (stops.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ...model.errors import WakeupUnavailable
from ...model.ops import Heartbeat
from ...mongo.wakeup import CancelSource, follow
from ..job import Job
from .background import Background
from .failures import ErrorSink
from .holdings import Holdings
from .log import logger
from .options import QueueOptions
from .stops import Stops

if TYPE_CHECKING:
    from ..seam import JobService


class Leases:
    """When the lease of each claim held runs out, as last renewed, and the heartbeat and
    cancel listeners that renew and check them."""

    def __init__(
        self,
        service: JobService,
        options: QueueOptions,
        held: Holdings,
        stops: Stops,
        background: Background,
        on_error: ErrorSink,
    ) -> None:
        self._service = service
        self._lease = timedelta(milliseconds=options.work_timeout_ms)
        self._interval = options.heartbeat_s
        self._held = held
        self._stops = stops
        self._background = background
        self._on_error = on_error
        self._expires: dict[Any, datetime] = {}
        """When the lease of each claim held (by runId) runs out, as last renewed; an entry
        goes when the queue holds no job of its claim any more (forget)."""
        self._releasing: set[Any] = set()
        """RunIds of claims whose jobs are being released (no longer queued, still held)."""
        self.checks: set[asyncio.Task[None]] = set()
        """Claim checks in flight, started by a cancel (see on_cancelled)."""
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._cancels_task: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None

    def start(self, source: object) -> None:
        """Listen to cancels (from `source` if it is a CancelSource, and from this process's
        JobCollections) and start the heartbeat."""
        if isinstance(source, CancelSource):
            self._cancels_task = self._background.spawn(self._listen_cancels(source), "cancels")
        cancels = self._service.cancels()
        if cancels is not None:
            self._unsubscribe = cancels.subscribe(self.on_cancelled)
        self._heartbeat_task = self._background.spawn(self._heartbeat_loop(), "heartbeat")

    def stop(self) -> None:
        """Renew and check nothing more (claim checks in flight go on: await `checks`)."""
        self._background.retire(self._heartbeat_task)
        self._heartbeat_task = None
        self._background.retire(self._cancels_task)
        self._cancels_task = None
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    # --- the table --------------------------------------------------------------------------

    def count(self) -> int:
        """Claims whose lease is kept track of: those the queue holds jobs of, queued,
        running, being reported or being released."""
        return len(self._expires)

    def claimed(self, job: Job) -> None:
        """A job was claimed: its lease runs out when its document says, and its checkpoints
        are stored with its renewals."""
        job._heartbeats = True
        if job.doc.expires_after is not None:
            self._expires.setdefault(job.doc.run_id, job.doc.expires_after)

    def expires(self, run_id: Any, now: datetime) -> datetime:
        """When the lease of a claim runs out (a claim not known: a lease from now)."""
        return self._expires.setdefault(run_id, now + self._lease)

    @contextmanager
    def releasing(self, run_ids: Sequence[Any]) -> Iterator[None]:
        """Keep the leases of these claims while their jobs are released (no longer queued,
        still held), then forget those the queue holds no job of."""
        self._releasing.update(run_ids)
        try:
            yield
        finally:
            self._releasing.difference_update(run_ids)
            self.forget()

    def forget(self) -> None:
        """Drop the leases of claims the queue holds no job of any more (every way a claim
        ends passes here: its batch's task ended, its queued jobs were dropped or released),
        so that the table stays as small as what the queue holds, however long it idles."""
        for run_id in set(self._expires) - self._held.run_ids() - self._releasing:
            del self._expires[run_id]

    # --- renewing and checking ---------------------------------------------------------------

    async def heartbeat_now(self) -> int:
        """Renew the lease of every job held now; the number renewed."""
        claims = self._held.claims()
        self.forget()
        if not claims:
            return 0
        return await self._renew(claims)

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.heartbeat_now()
            except Exception as exc:
                await self._on_error(exc, "heartbeat")

    async def _renew(self, claims: dict[Any, list[Job]]) -> int:
        """Renew the lease of these claims, finding the jobs whose claim is lost; the number
        of jobs renewed."""
        renewed = 0
        for run_id, jobs in claims.items():  # one renewal per claim: its jobs share a lease
            asked_at = self._service.clock.now()
            pending = [(job, job._pending_checkpoint()) for job in jobs]
            checkpoints = [
                (job._saved_id("checkpoint"), state) for job, state in pending if state is not None
            ]
            try:
                still_held = set(
                    await self._service.run(
                        Heartbeat(
                            [job._saved_id("heartbeat") for job in jobs],
                            run_id,
                            checkpoints=checkpoints or None,
                        )
                    )
                )
            except Exception as exc:
                await self._on_error(exc, f"heartbeat of claim {run_id}")
                continue
            for job, state in pending:
                job._checkpoint_stored(state)
            self._expires[run_id] = asked_at + self._lease
            reporting = {id(job) for batch in self._held.reporting.values() for job in batch}
            for job in jobs:
                if job.id in still_held:
                    renewed += 1
                elif not (job.reported or job._report_in_flight or id(job) in reporting):
                    self._claim_lost(job)  # (a job reported since it was asked is not lost)
        return renewed

    def _claim_lost(self, job: Job) -> None:
        """Drop a queued job whose claim is lost; stop the worker call holding a running one
        once every job the call has not reported is lost."""
        queued = job in self._held.queued
        logger.warning(
            "job %s lost its claim (lease expired, cancelled or removed); %s",
            job.id,
            "not starting it" if queued else "its result will not be stored",
        )
        job._lose_claim()
        if queued:
            self._held.queued.remove(job)
            self.forget()
            self._held.notify()
            return
        for task, batch in self._held.calls.items():
            if job in batch:
                if all(other.cancelled for other in batch if not other.reported):
                    self._stops.stop(task, "its jobs lost their claims", None)
                return

    def on_cancelled(self, ids: Sequence[Any]) -> None:
        """Jobs were cancelled or removed: check the claims of those the queue holds now (so
        their worker call is cancelled at once, not at the next heartbeat)."""
        named = set(ids)
        claims = {
            run_id: jobs
            for run_id, jobs in self._held.claims().items()
            if any(job.id in named for job in jobs)
        }
        if claims:
            self._check(claims)

    async def _listen_cancels(self, source: CancelSource) -> None:
        ended = await follow(source.cancellations(), self._on_cancel_signal)
        if isinstance(ended, WakeupUnavailable):
            logger.debug("cancel stream unavailable; the heartbeat finds cancelled jobs")
        elif ended is not None:
            logger.warning(
                "cancel stream failed (%r); the heartbeat finds cancelled jobs every %g s",
                ended,
                self._interval,
            )

    def _on_cancel_signal(self, job_id: Any) -> None:
        if job_id is not None:
            self.on_cancelled([job_id])
        elif claims := self._held.claims():  # cancels may have been missed: check them all
            self._check(claims)

    def _check(self, claims: dict[Any, list[Job]]) -> None:
        """Renew (and so check) these claims in a task of their own; shutdown awaits it."""
        task = self._background.spawn(self._check_claims(claims), "claim-check")
        self.checks.add(task)
        task.add_done_callback(self.checks.discard)

    async def _check_claims(self, claims: dict[Any, list[Job]]) -> None:
        await self._renew(claims)
