"""The job server: promotion of due jobs, expiry of leases and pending follow-ups, on a
background task.

`run_pass()` is one step (fail expired leases, finish pending follow-ups, promote), so tests
drive the server without waiting. Several processes may run a server on one collection: every
pass is a set of idempotent conditional updates. A pass isolates its parts: a step that fails
(a driver error, a job that cannot be failed) is logged and the rest of the pass goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from .operations import Operations
from .servertime import refresh_clock

logger = logging.getLogger("jobcollection")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ServerPass:
    """What one pass did."""

    expired: int
    promoted: bool
    followed_up: int = 0
    """Jobs whose pending follow-ups (repeat, dependents) this pass finished."""
    errors: int = 0
    """Steps of the pass that failed (each logged); the next pass tries them again."""


class JobServer:
    """Owns the promotion loop and the shutdown timer of one JobCollection."""

    def __init__(self, ops: Operations, on_closed: Callable[[], None]) -> None:
        self._ops = ops
        self.interval = 15.0
        self._loop_task: asyncio.Task[None] | None = None
        self._shutdown_task: asyncio.Task[None] | None = None
        self._on_closed = on_closed

    @property
    def running(self) -> bool:
        return self._ops.server_running

    async def start(self) -> bool:
        if self._shutdown_task is not None:
            self._shutdown_task.cancel()
            self._shutdown_task = None
        self._ops.server_running = True
        await self._ops.store.detect_router()
        self._start_loop()
        return True

    def promote(self, interval: float) -> None:
        """Set the seconds between passes and run a pass soon."""
        self.interval = interval
        if self.running:
            self._start_loop(immediately=True)

    def _start_loop(self, immediately: bool = False) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
        self._loop_task = asyncio.create_task(self._loop(immediately), name="jobcollection-promote")

    async def _loop(self, immediately: bool) -> None:
        if immediately:
            await self._safe_pass()
        while True:
            await asyncio.sleep(self.interval)
            await self._safe_pass()

    async def _safe_pass(self) -> None:
        try:
            await self.run_pass()
        except Exception:
            logger.exception("job server pass failed; retrying at the next interval")

    async def run_pass(self) -> ServerPass:
        """Fail jobs whose lease expired, finish pending follow-ups, then promote due waiting
        jobs. Without the server's time (a ServerClock that cannot read it) nothing is done."""
        if not self.running:
            return ServerPass(expired=0, promoted=False)
        await refresh_clock(self._ops.clock)  # a ServerClock re-reads the server's time when due
        errors = 0

        async def step(name: str, action: Callable[[], Awaitable[T]], default: T) -> T:
            nonlocal errors
            try:
                return await action()
            except Exception:
                errors += 1
                logger.exception("job server pass: %s failed; the next pass tries again", name)
                return default

        expired = await step("lease expiry", self._ops.fail_expired, 0)
        followed_up = await step("follow-ups", self._ops.finish_follow_ups, 0)
        promoted = await step("promotion", self._ops.job_ready, False)
        await step("forgetting finished claims", self._ops.forget_finished_runs, None)
        return ServerPass(expired, promoted, followed_up, errors)

    async def shutdown(self, timeout: float) -> bool:
        """Stop promotion and claiming now; fail this instance's running jobs after timeout."""
        self._ops.server_running = False
        await self._stop_loop()
        if self._shutdown_task is not None:
            self._shutdown_task.cancel()
        if timeout <= 0:
            await self._finish()
        else:
            self._shutdown_task = asyncio.create_task(self._finish_later(timeout))
        return True

    async def _stop_loop(self) -> None:
        task, self._loop_task = self._loop_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _finish_later(self, timeout: float) -> None:
        await asyncio.sleep(timeout)
        await self._finish()

    async def _finish(self) -> None:
        try:
            failed = await self._ops.fail_claimed_running()
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
        task, self._shutdown_task = self._shutdown_task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await self._finish()
