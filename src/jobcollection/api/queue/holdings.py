"""What a queue holds, and where: its `State`, and the jobs it claimed, each queued (claimed,
not started), in a worker call (which holds a worker slot) or being reported (the call is
over, its slot free). Every part of the queue reads and moves jobs here, and `notify()`s the
change, so that whoever waits for the queue to settle, drain or shut down looks again."""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from collections.abc import Callable
from typing import Any

from ..job import Job


class State(enum.Enum):
    """Where a queue is in its life; what it does follows from this one value."""

    ACTIVE = "active"
    """Claims jobs and starts them."""
    PAUSED = "paused"
    """Claims and starts nothing; running workers carry on, queued jobs wait."""
    SOFT = "shutdown soft"
    """Claims nothing; queued jobs still start; ends when nothing is queued or running."""
    NORMAL = "shutdown normal"
    """Claims and starts nothing; queued jobs are released; running ones finish."""
    HARD = "shutdown hard"
    """As NORMAL, and running workers are cancelled, their jobs failed."""

    @property
    def claims(self) -> bool:
        return self is State.ACTIVE

    @property
    def starts(self) -> bool:
        return self in (State.ACTIVE, State.SOFT)

    @property
    def level(self) -> int:
        """How urgent a shutdown this is: -1 for none."""
        return _LEVELS.get(self, -1)


_LEVELS = {State.SOFT: 0, State.NORMAL: 1, State.HARD: 2}


class Holdings:
    """A queue's State and the jobs it holds, by where they are."""

    def __init__(self, concurrency: int) -> None:
        self.state = State.PAUSED
        self.queued: deque[Job] = deque()
        """Jobs claimed and waiting for a worker slot, first claimed first."""
        self.calls: dict[asyncio.Task[None], list[Job]] = {}
        """Batches whose worker call is in flight (each holds a slot), by their task."""
        self.reporting: dict[asyncio.Task[None], list[Job]] = {}
        """Batches whose worker call is over and whose reports (done/fail) are being written;
        their slots are free."""
        self._concurrency = concurrency
        self._changed: asyncio.Event | None = None
        """Set at the next notify(), made only when someone is to wait on it."""

    def full(self) -> bool:
        """True when every worker slot has a call in flight."""
        return len(self.calls) >= self._concurrency

    def idle(self) -> bool:
        return not self.queued and not self.calls and not self.reporting

    def in_hand(self) -> list[Job]:
        """Jobs a worker call holds or whose report is being written."""
        batches = (*self.calls.values(), *self.reporting.values())
        return [job for batch in batches for job in batch]

    def reports_in_flight(self) -> int:
        return sum(len(batch) for batch in self.reporting.values())

    def run_ids(self) -> set[Any]:
        """The claims (runIds) of every job held, reported or not."""
        return {job.doc.run_id for job in (*self.queued, *self.in_hand())}

    def claims(self) -> dict[Any, list[Job]]:
        """The jobs held (queued, running or being reported) whose claim the queue has not
        found lost and that are not reported, by claim (runId)."""
        claims: dict[Any, list[Job]] = {}
        for job in (*self.queued, *self.in_hand()):
            if not job.reported and not job.cancelled:
                claims.setdefault(job.doc.run_id, []).append(job)
        return claims

    @property
    def changed(self) -> asyncio.Event:
        """Set at the next notify(): take it before looking, then wait on it."""
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    def notify(self) -> None:
        """Wake everything waiting for the queue's state to change (an event is made only
        for those who wait: notify runs several times a job)."""
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        while not condition():
            await self.changed.wait()
