"""The job server: promotion of due jobs, expiry of leases, deadlines and pending follow-ups,
schedules and the per-minute history (history.py), on a background task.

`run_pass()` is one step (fail expired leases, cancel jobs past their deadlines, finish
pending follow-ups, materialise schedules, promote, count finished jobs into the history), so
tests drive the server without waiting. Several processes may run a server on one collection:
each claims work, and the passes run in the one that holds the job server's lease
(leadership.py); the others stand by, checking every third of the lease whether it is free.
Every pass is a set of idempotent conditional updates. A pass isolates its parts: a step that
fails (a driver error, a job that cannot be failed) is logged and the rest of the pass goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ..model.clock import Clock
from ..model.types import Id
from ..mongo.servertime import refresh_clock
from ..mongo.store import Document, Store, transient
from ..rules import transitions
from .claiming import Claimer
from .dependents import Dependents
from .followups import FollowUps
from .history import History
from .leadership import Leadership
from .managing import Manager
from .reporting import Report, Reporter
from .schedules import Scheduler

logger = logging.getLogger("jobcollection")

T = TypeVar("T")
STOP_S = 5.0
"""The longest a stop waits for the loop's step under way (a pass) before cutting it off."""


@dataclass(frozen=True, slots=True)
class ServerPass:
    """What one pass did."""

    expired: int
    promoted: bool
    followed_up: int = 0
    """Jobs whose pending follow-ups (repeat, dependents) this pass finished."""
    errors: int = 0
    """Steps of the pass that failed (each logged); the next pass tries them again."""
    leading: bool = True
    """Whether this process held the job server's lease (else it stood by: nothing done)."""
    overdue: int = 0
    """Pending jobs cancelled for not starting by their deadlines (`Job.expires`)."""
    scheduled: int = 0
    """Runs of schedule objects this pass made (local/schedules.py)."""


class JobServer:
    """Owns the promotion loop, the shutdown timer and the passes of one JobCollection."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        claimer: Claimer,
        reporter: Reporter,
        manager: Manager,
        follow_ups: FollowUps,
        dependents: Dependents,
        leadership: Leadership,
        scheduler: Scheduler,
        on_closed: Callable[[], None],
        on_pass: Callable[[ServerPass], Awaitable[None]],
        history: History | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._claimer = claimer
        self._reporter = reporter
        self._manager = manager
        self._follow_ups = follow_ups
        self._dependents = dependents
        self.leadership = leadership
        self._scheduler = scheduler
        self.history = history
        """The per-minute history each pass counts the finished jobs into (None: none)."""
        self.interval = 15.0
        self.running = False
        self.quarantined: set[Id] = set()
        """Jobs whose expiry the server refused to write: not read again by later passes."""
        self._loop_task: asyncio.Task[None] | None = None
        self._loop_stop = asyncio.Event()
        self._ending: set[asyncio.Task[None]] = set()
        """Loops asked to end, until they have."""
        self._shutdown_task: asyncio.Task[None] | None = None
        self._on_closed = on_closed
        self._on_pass = on_pass

    async def start(self) -> bool:
        if self._shutdown_task is not None:
            self._shutdown_task.cancel()
            self._shutdown_task = None
        self.running = self._claimer.accepting = self._claimer.started_once = True
        await self._store.detect_router()
        self._start_loop()
        return True

    def promote(self, interval: float) -> None:
        """Set the seconds between passes and run a pass soon."""
        self.interval = interval
        if self.running:
            self._start_loop(immediately=True)

    def _start_loop(self, immediately: bool = False) -> None:
        """Start the loop, asking the one running (if any) to end after its current step."""
        self._stop_loop_soon()
        self._loop_stop = stop = asyncio.Event()
        self._loop_task = asyncio.create_task(
            self._loop(immediately, stop), name="jobcollection-promote"
        )

    def _stop_loop_soon(self) -> None:
        """Ask the loop to end after its current step; `_stop_loop` awaits it."""
        task, self._loop_task = self._loop_task, None
        if task is not None:
            self._loop_stop.set()
            self._ending.add(task)
            task.add_done_callback(self._ending.discard)

    async def _loop(self, immediately: bool, stop: asyncio.Event) -> None:
        """Hold (or try for) the lease every third of it; pass every `interval` while
        leading. A process that stood by past its own next pass and takes the lease over
        passes at once (the last leader may have died mid-interval). It ends when `stop` is
        set, after the step under way: a command cut off mid-way would leave its connection
        for the garbage collector."""
        loop = asyncio.get_running_loop()
        next_pass = loop.time() + (0 if immediately else self.interval)
        while not stop.is_set():
            leading = await self._safe_hold()
            if leading and loop.time() >= next_pass and not stop.is_set():
                await self._safe_pass(held=True)
                next_pass = loop.time() + self.interval
            wait = min(self.leadership.lease_ms / 3000, max(0.0, next_pass - loop.time()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    stop.wait(), wait if leading else self.leadership.lease_ms / 3000
                )

    async def _safe_hold(self) -> bool:
        try:
            await refresh_clock(self._clock)
            return await self.leadership.hold()
        except Exception:
            logger.exception("job server: could not renew or take its lease; standing by")
            self.leadership.epoch = None
            return False

    async def _safe_pass(self, held: bool = False) -> None:
        try:
            await self.run_pass(held=held)
        except Exception:
            logger.exception("job server pass failed; retrying at the next interval")

    async def run_pass(self, *, held: bool = False) -> ServerPass:
        """Fail jobs whose lease expired, cancel pending jobs past their deadlines, finish
        pending follow-ups, materialise the due occurrences of schedule objects, promote due
        waiting jobs, then count finished jobs into the history, if this process holds the
        job server's lease (renewed, or taken over if free, first; `held`: the loop just
        did). Without the server's time (a ServerClock that cannot read it) nothing is done."""
        if not self.running:
            return ServerPass(expired=0, promoted=False)
        await refresh_clock(self._clock)  # a ServerClock re-reads the server's time when due
        if not held and not await self.leadership.hold():
            return ServerPass(expired=0, promoted=False, leading=False)
        errors = 0

        async def step(name: str, action: Callable[[], Awaitable[T]], default: T) -> T:
            nonlocal errors
            try:
                return await action()
            except Exception:
                errors += 1
                logger.exception("job server pass: %s failed; the next pass tries again", name)
                return default

        expired = await step("lease expiry", self.fail_expired, 0)
        overdue = await step("deadlines", self.expire_overdue, 0)
        followed_up = await step("follow-ups", self.finish_follow_ups, 0)
        await step("cancels cut short", self.carry_on_cancels, 0)
        await step("dependents saved elsewhere", self.adopt_dependents, 0)
        scheduled = await step("schedules", self._scheduler.materialise, 0)
        promoted = await step("promotion", self._manager.promote, False)
        await step("forgetting finished claims", self._claimer.forget_finished_runs, None)
        if self.history is not None:
            await step("history", self.history.record, 0)
        done = ServerPass(
            expired, promoted, followed_up, errors, overdue=overdue, scheduled=scheduled
        )
        await self._on_pass(done)
        return done

    async def fail_expired(self) -> int:
        """Fail (non-fatally) every running job whose lease ran out; the number failed. Each
        job is judged alone: one whose failure cannot be written is logged and skipped, and if
        the server refused the write, later passes of this instance do not read it again."""
        query = transitions.expired(self._clock.now(), self.quarantined)
        expired = await self._store.find(query, {"runId": 1})
        return await self._fail_each(expired, transitions.EXPIRED_ERROR, expired=True)

    async def expire_overdue(self) -> int:
        """Cancel the pending jobs past their deadlines, with their dependents as after any
        cancel (managing.py)."""
        return await self._manager.expire_overdue(self._clock.now())

    async def finish_follow_ups(self) -> int:
        """Finish the follow-ups (repeats, dependents) that faults left pending."""
        return await self._follow_ups.finish_stored(self._clock.now())

    async def carry_on_cancels(self) -> int:
        """Carry on the cascades of cancels that faults cut short (managing.py)."""
        return await self._manager.carry_on_cancels(self._clock.now())

    async def adopt_dependents(self) -> int:
        """Adopt the dependents other applications saved (see dependents.py)."""
        return await self._dependents.adopt(self._clock.now())

    async def fail_claimed_running(self) -> int:
        """At shutdown: fail the jobs still running under runIds this instance handed out.
        RunIds of jobs that could not be failed are kept, so that a later call tries again."""
        claimer = self._claimer
        if not claimer.claimed_run_ids:
            return 0
        held = transitions.held_runs(list(claimer.claimed_run_ids))
        failed = await self._fail_each(
            await self._store.find(held, {"runId": 1}), transitions.SHUTDOWN_ERROR
        )
        claimer.claimed_run_ids = {j["runId"] for j in await self._store.find(held, {"runId": 1})}
        claimer.unconfirmed_claims.clear()
        return failed

    async def _fail_each(
        self, jobs: Sequence[Document], error: dict[str, Any], *, expired: bool = False
    ) -> int:
        """Fail held jobs non-fatally, bundled; the number failed. Errors are logged per job."""
        reports = [Report("fail", j["_id"], j["runId"], dict(error), expired=expired) for j in jobs]
        outcomes = await asyncio.gather(
            *(self._reporter.submit(r) for r in reports), return_exceptions=True
        )
        failed = 0
        for report, outcome in zip(reports, outcomes, strict=True):
            if isinstance(outcome, Exception):
                logger.error("job %s: could not fail it: %s", report.job_id, outcome)
                if not transient(outcome):
                    fence = transitions.held(report.job_id, report.run_id)
                    if not await self._claimer.set_aside(fence, report.run_id, f"{outcome}"):
                        self.quarantined.add(report.job_id)
            elif isinstance(outcome, BaseException):
                raise outcome
            elif outcome:
                failed += 1
        return failed

    async def shutdown(self, timeout: float) -> bool:
        """Stop promotion and claiming now; fail this instance's running jobs after timeout."""
        self.running = self._claimer.accepting = False
        await self._stop_loop()
        await self._release()
        if self._shutdown_task is not None:
            self._shutdown_task.cancel()
        if timeout <= 0:
            await self._finish()
        else:
            self._shutdown_task = asyncio.create_task(self._finish_later(timeout))
        return True

    async def _release(self) -> None:
        """Give the lease up, so that a process standing by takes over at its next check."""
        try:
            await self.leadership.release()
        except Exception as exc:  # it expires on its own
            logger.warning("job server: could not release its lease (%s); it will expire", exc)

    async def _stop_loop(self) -> None:
        """Stop the loop after its current step (cut off after STOP_S), and any loop a
        restart asked to end."""
        self._stop_loop_soon()
        ending = set(self._ending)
        if not ending:
            return
        _, pending = await asyncio.wait(ending, timeout=STOP_S)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _finish_later(self, timeout: float) -> None:
        await asyncio.sleep(timeout)
        await self._finish()

    async def _finish(self) -> None:
        try:
            failed = await self.fail_claimed_running()
        except Exception:
            logger.exception("job server shutdown: could not fail the jobs still running")
        else:
            if failed:
                logger.warning("job server shutdown: failed %d jobs still running", failed)
        self._on_closed()

    async def close(self) -> None:
        """Cancel and await every background task (for tests and process exit). A shutdown
        still in its grace period is finished now: the jobs this instance handed out that are
        still running are failed, rather than left running with nobody to fail them."""
        await self._stop_loop()
        await self._release()
        task, self._shutdown_task = self._shutdown_task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await self._finish()
