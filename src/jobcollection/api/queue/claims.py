"""Claims: how a queue gets its jobs. It claims

    prefetch + payload * (concurrency - running) - queued

jobs at a time, one claim at a time: when it starts or resumes, every `poll_interval` seconds,
on `trigger()`, after each worker call finishes, and when its wake-up source (a change stream,
where the server has them) says that jobs may have become ready. While every free worker slot
has a queued job to start, it waits until the prefetched jobs are half used before claiming
more, so that each claim's round trips bring a batch rather than one job. A claim that finds
nothing ready promotes the queue's due jobs itself (the job server promotes only every 15 s by
default) and claims again, or sets a wake-up for when the next of them falls due, so a delay
or a retry wait that has passed starts the job on time. Under a `rate_limit` a claim takes
at most what the limit has left in the current window (model/ratelimit.py); when the limit held
jobs back, the queue looks again when the next window starts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from ...model.document import JobWorker
from ...model.errors import WakeupUnavailable
from ...model.ops import GetLimitedWork, GetWork, ReadyDue
from ...mongo.wakeup import WakeupSource, follow
from ..job import Job
from .background import Background
from .failures import ErrorSink
from .holdings import Holdings
from .leases import Leases
from .log import logger
from .options import QueueOptions

if TYPE_CHECKING:
    from ..seam import ServedCollection

MIN_WAKEUP_DELAY = 0.05
"""Seconds a queue waits at least before looking for a job that falls due (one just due is
claimed at the next look, never in a tight loop)."""


class Claims:
    """Claims jobs of the queue's types into its queue (`held.queued`), then calls `claimed`;
    owns the poll timer, the due-job wake-up, the claim in flight and the wake-up listeners."""

    def __init__(
        self,
        jc: ServedCollection,
        types: list[str],
        options: QueueOptions,
        held: Holdings,
        leases: Leases,
        background: Background,
        on_error: ErrorSink,
        *,
        claimed: Callable[[], None],
        worker: JobWorker,
    ) -> None:
        self._jc = jc
        self._worker = worker
        """What the jobs this queue claims record of it (Presence.claimant)."""
        self._service = jc.service
        self._types = types
        self._options = options
        self._poll_interval = options.poll_s
        self._held = held
        self._leases = leases
        self._background = background
        self._on_error = on_error
        self._claimed = claimed
        self._fetch_task: asyncio.Task[None] | None = None
        self._refetch = False
        self._poll_task: asyncio.Task[None] | None = None
        self._listen_task: asyncio.Task[None] | None = None
        self._wakeup_task: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self.next_wakeup: datetime | None = None
        """When the queue will look for work on its own because a job of its types falls due
        then (sooner than its next poll); None: at its next poll or trigger."""

    @property
    def in_flight(self) -> bool:
        """Whether a claim is in flight."""
        return self._fetch_task is not None

    def listen(self, source: WakeupSource | None, *, saves: bool) -> None:
        """Claim when `source` signals, and (with `saves`) when a job of the queue's types is
        saved in this process."""
        if source is not None:
            self._listen_task = self._background.spawn(self._listen(source), "wakeup")
        local = self._service.saves() if saves else None
        if local is not None:
            self._unsubscribe = local.subscribe(self._types, self._on_saved)

    def poll(self) -> None:
        """(Re)start the poll timer, if the queue polls."""
        self.stop_polling()
        if self._poll_interval is not None:
            self._poll_task = self._background.spawn(self._poll(self._poll_interval), "poll")

    def stop_polling(self) -> None:
        self._background.retire(self._poll_task)
        self._poll_task = None
        self._cancel_wakeup()

    async def stop(self) -> None:
        """Claim nothing more: stop polling and listening; return once the claim in flight,
        if any, has answered (its jobs queued)."""
        self.stop_polling()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._background.retire(self._listen_task)
        self._listen_task = None
        if self._fetch_task is not None:
            await asyncio.wait([self._fetch_task])

    def trigger(self) -> None:
        """Claim now, unless the queue's state says not to; a trigger during a claim makes
        another once it has answered."""
        if not self._held.state.claims:
            return
        if self._fetch_task is not None:
            self._refetch = True  # claim again once the claim in flight has answered
            return
        task = self._background.spawn(self._fetch(), "fetch")
        self._fetch_task = task
        task.add_done_callback(self._fetch_finished)
        self._held.notify()

    async def _poll(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.trigger()

    async def _fetch(self) -> None:
        while True:
            self._refetch = False
            await self._fetch_once()
            if not (self._refetch and self._held.state.claims):
                return

    async def _fetch_once(self) -> None:
        held, options = self._held, self._options
        if not held.state.claims:  # paused or stopped before this claim could start
            return
        free = options.payload * (options.concurrency - len(held.calls))
        # Reports in flight do not hold the next claim back, up to one round of them (a
        # worker slot's worth each): at most prefetch + 2 x payload x concurrency jobs are
        # in hand, queued, running or being reported.
        capacity = options.payload * options.concurrency
        backlog = max(0, held.reports_in_flight() - capacity)
        wanted = options.prefetch + free - len(held.queued) - backlog
        if wanted <= 0:
            return
        if len(held.queued) >= free and wanted < max(1, options.prefetch // 2):
            return  # every free slot has a job: refill the prefetch once it is half empty
        next_window = None
        try:
            if options.rate_limit is None:
                docs = await self._service.run(
                    GetWork(
                        self._types,
                        max_jobs=wanted,
                        work_timeout_ms=options.work_timeout_ms,
                        worker=self._worker,
                    )
                )
            else:
                work = await self._service.run(
                    GetLimitedWork(
                        self._types,
                        max_jobs=wanted,
                        work_timeout_ms=options.work_timeout_ms,
                        rate_limit=options.rate_limit,
                        worker=self._worker,
                    )
                )
                docs, next_window = work.docs, work.next_window
        except Exception as exc:
            await self._on_error(exc, "claiming work")
            return
        if self.next_wakeup is not None and self.next_wakeup <= self._service.clock.now():
            self._cancel_wakeup()  # this claim looked for what it would have looked for
        if next_window is not None:  # the rate limit held jobs back: look again then
            self._wake_at(next_window)
        if not docs:
            if next_window is None:  # nothing ready (rather than held back by the limit)
                await self._ready_due()
            return
        jobs = [Job._claimed(self._jc, doc) for doc in docs]
        for job in jobs:
            self._leases.claimed(job)
        held.queued.extend(jobs)
        self._claimed()

    async def _ready_due(self) -> None:
        """Nothing was ready: promote this queue's due jobs itself instead of waiting for the
        job server's next pass (and claim again at once if any was), or wake up when the next
        one falls due. So a delay, an `after` or a retry wait that has passed starts the job
        within moments, for the cost of one or two commands per empty claim."""
        try:
            due = await self._service.run(ReadyDue(self._types))
        except Exception as exc:
            await self._on_error(exc, "promoting due jobs")
            return
        if due.promoted:
            self._refetch = True
        elif due.next_due is not None:
            self._wake_at(due.next_due)

    def _fetch_finished(self, task: asyncio.Task[None]) -> None:
        if self._fetch_task is task:
            self._fetch_task = None
        if not task.cancelled() and task.exception() is not None:
            logger.error("claim task failed", exc_info=task.exception())
        self._held.notify()
        if self._refetch and not task.cancelled():
            # A trigger came after the claim's last look at `_refetch` but before this
            # callback: the claim it asked for is made now, not lost.
            self._refetch = False
            self.trigger()

    # --- waking up ---------------------------------------------------------------------------

    def _wake_at(self, when: datetime) -> None:
        """Look for work at `when` (a job falls due then), unless the poll comes first or a
        wake-up is set sooner. Without polling the queue claims only when triggered."""
        if self._poll_interval is None or not self._held.state.claims:
            return
        if self._wakeup_task is not None and not self._wakeup_task.done():
            if self.next_wakeup is not None and self.next_wakeup <= when:
                return
            self._background.retire(self._wakeup_task)
        delay = (when - self._service.clock.now()).total_seconds()
        if delay >= self._poll_interval:
            return
        self.next_wakeup = when
        self._wakeup_task = self._background.spawn(self._wake(max(delay, MIN_WAKEUP_DELAY)), "due")

    async def _wake(self, delay: float) -> None:
        await asyncio.sleep(delay)
        self.next_wakeup = None
        self.trigger()

    def _cancel_wakeup(self) -> None:
        self._background.retire(self._wakeup_task)
        self._wakeup_task = None
        self.next_wakeup = None

    async def _listen(self, source: WakeupSource) -> None:
        ended = await follow(source.signals(self._types), lambda _: self.trigger())
        if isinstance(ended, WakeupUnavailable):
            self._fall_back(f"prompt wake-up unavailable ({ended})", logging.INFO)
        elif ended is not None:
            self._fall_back(f"wake-up source failed ({ended!r}); rescanning", logging.WARNING)
            self.trigger()

    def _on_saved(self, due: datetime) -> None:
        """A job of this queue's types was saved in this process: look now if it is due, or
        wake up when it is (see _wake_at)."""
        if not self._held.state.claims:
            return
        if due <= self._service.clock.now():
            self.trigger()
        else:
            self._wake_at(due)

    def _fall_back(self, why: str, level: int) -> None:
        if self._poll_interval is not None:
            logger.log(level, "%s; polling every %g s", why, self._poll_interval)
        else:
            logger.warning("%s; polling is disabled, so only trigger() will find new jobs", why)
