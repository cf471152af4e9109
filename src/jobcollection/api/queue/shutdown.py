"""Shutdown: how a queue stops, at one of three levels (a later call may only raise it).

Every level claims nothing more (a claim in flight is awaited, its jobs queued).
- "soft": queued jobs still start; it ends when nothing is queued or running.
- "normal": queued jobs are released (ready again for any worker, no attempt used); running
  ones finish.
- "hard": queued jobs are released; running ones are failed (not fatally) with "Worker
  shutdown" at once and their worker tasks are cancelled.
Then every background task the queue owns is stopped and awaited, and its child processes
(executor="process") are stopped: none outlives the shutdown.
"""

from __future__ import annotations

import asyncio
from typing import Literal, TypeAlias

from ...model import validation as v
from .background import Background
from .claims import Claims
from .holdings import Holdings, State
from .leases import Leases
from .log import logger
from .presence import Presence
from .reports import Reports
from .runner import Runner

ShutdownLevel: TypeAlias = Literal["soft", "normal", "hard"]

SHUTDOWN_LEVELS: tuple[ShutdownLevel, ...] = ("soft", "normal", "hard")
"""From least to most urgent; a later shutdown() call may only raise the level."""

_SHUTDOWN_STATES = {"soft": State.SOFT, "normal": State.NORMAL, "hard": State.HARD}

WORKER_SHUTDOWN_ERROR = {"value": "Worker shutdown"}
"""The failure given to running jobs a hard shutdown takes away from the queue (as in the
original)."""


class Shutdown:
    """Stops a queue's parts in order; `owner` is the queue, as its log lines name it."""

    def __init__(
        self,
        owner: object,
        held: Holdings,
        claims: Claims,
        runner: Runner,
        reports: Reports,
        leases: Leases,
        background: Background,
        presence: Presence,
    ) -> None:
        self._owner = owner
        self._held = held
        self._claims = claims
        self._runner = runner
        self._reports = reports
        self._leases = leases
        self._background = background
        self._presence = presence
        self._task: asyncio.Task[None] | None = None

    async def __call__(self, level: ShutdownLevel, quiet: bool) -> None:
        """Raise the queue's state to `level`'s, and return once the shutdown is over."""
        target = _SHUTDOWN_STATES[v.choice(level, "level", SHUTDOWN_LEVELS)]
        quiet = v.boolean(quiet, "quiet")
        if asyncio.current_task() in self._held.calls:
            raise RuntimeError(
                "shutdown() awaited inside a worker would wait for itself; "
                "run it in its own task: asyncio.create_task(queue.shutdown())"
            )
        if target.level > self._held.state.level:
            if not quiet:
                logger.info("%r: shutting down (%s)", self._owner, level)
            self._held.state = target
            self._held.notify()
        if self._task is None:
            self._task = asyncio.create_task(self._run(quiet), name="jobcollection-queue-shutdown")
        await asyncio.shield(self._task)

    async def _run(self, quiet: bool) -> None:
        held = self._held
        await self._claims.stop()
        released = failed_running = 0
        while True:
            changed = held.changed
            if held.state is State.SOFT:
                self._runner.start()
                if held.idle():
                    break
            elif held.queued:
                jobs = list(held.queued)
                held.queued.clear()
                held.notify()
                released += await self._reports.release(jobs)
                continue
            elif held.state is State.HARD and held.calls:
                failed_running += await self._runner.kill(WORKER_SHUTDOWN_ERROR)
                continue
            elif not held.calls and not held.reporting:
                break
            await changed.wait()
        self._leases.stop()
        await self._runner.release_executors()
        await self._presence.leave()
        await self._background.wait(self._leases.checks)
        if not quiet:
            logger.info(
                "%r: shut down; released %d queued and failed %d running job(s)",
                self._owner,
                released,
                failed_running,
            )
