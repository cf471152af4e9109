"""The job server: promotion of due jobs and auto-fail of expired leases on a background task.

`run_pass()` is one step (fail expired, then promote), so tests drive the server without
waiting. Several processes may run a server on one collection: every pass is a set of
idempotent conditional updates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from .operations import Operations
from .servertime import refresh_clock

logger = logging.getLogger("jobcollection")


@dataclass(frozen=True, slots=True)
class ServerPass:
    """What one pass did."""

    expired: int
    promoted: bool


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
        """Fail jobs whose lease expired, then promote due waiting jobs."""
        if not self.running:
            return ServerPass(expired=0, promoted=False)
        await refresh_clock(self._ops.clock)  # a ServerClock re-reads the server's time when due
        expired = await self._ops.fail_expired()
        promoted = await self._ops.job_ready()
        await self._ops.forget_finished_runs()
        return ServerPass(expired=expired, promoted=promoted)

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
        failed = await self._ops.fail_claimed_running()
        if failed:
            logger.warning("job server shutdown: failed %d jobs still running", failed)
        self._on_closed()

    async def close(self) -> None:
        """Cancel and await every background task (for tests and process exit)."""
        await self._stop_loop()
        task, self._shutdown_task = self._shutdown_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
