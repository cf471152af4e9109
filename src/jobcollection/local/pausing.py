"""Cluster-wide pause, applied: the pause document in `<root>.servers` (rules/pausing.py)
written by pause and resume, and read by every claim of this process, at most once a second.

Every claim path runs through the core's claim (local queues, `get_work`, the remote API and
DDP, which call the core), so a paused type is claimed nowhere: on this process at once, on
the others within a second of the write (the age of their copy). Running jobs are not
touched. A collection object without a database beside it (a test's wrapper) has nothing
paused.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Final

from ..model.clock import Clock
from ..model.errors import DatabaseError
from ..model.types import Paused
from ..mongo.store import Store
from ..rules import pausing

logger = logging.getLogger("jobcollection")

FRESH: Final = timedelta(seconds=1)
"""How long this process uses its copy of the pause document before reading it again."""


class Pauses:
    """This process's side of the cluster-wide pause."""

    def __init__(self, jobs: Store, clock: Clock) -> None:
        self._jobs = jobs
        self._clock = clock
        self._store: Store | None = None
        self._alone = False
        self._known: Paused = Paused()
        self._read_at: datetime | None = None

    def _servers(self) -> Store | None:
        """The Store of `<root>.servers` (None: no database beside the jobs)."""
        if self._store is None and not self._alone:
            name = self._jobs.collection.name.removesuffix(".jobs") + ".servers"
            try:
                self._store = self._jobs.sibling(name)
            except DatabaseError as exc:
                logger.warning("cluster-wide pause is not available here: %s", exc)
                self._alone = True
        return self._store

    async def pause(self, types: Sequence[str] | None) -> Paused:
        """Pause these types (None: every type) on every process; what is paused now."""
        return await self._write(*pausing.pause(types))

    async def resume(self, types: Sequence[str] | None) -> Paused:
        """Resume these types (None: every type) on every process; what is paused now."""
        return await self._write(*pausing.resume(types))

    async def _write(self, query: dict[str, object], update: dict[str, object]) -> Paused:
        servers = self._servers()
        if servers is None:
            raise DatabaseError("cluster-wide pause needs the database beside the jobs")
        stored = await servers.find_one_and_update(query, update, upsert=True)
        self._remember(pausing.read(stored))
        return self._known

    async def paused(self) -> Paused:
        """What is paused now, read from the database (and remembered)."""
        servers = self._servers()
        if servers is None:
            return Paused()
        self._remember(pausing.read(await servers.find_one({"_id": pausing.PAUSED_ID})))
        return self._known

    async def claimable(self, types: Sequence[str]) -> list[str]:
        """The types a claim may take now: those not paused, by a copy at most FRESH old."""
        if self._servers() is None:
            return list(types)
        if self._read_at is None or self._clock.now() - self._read_at >= FRESH:
            await self.paused()
        return pausing.claimable_types(types, self._known)

    def _remember(self, paused: Paused) -> None:
        self._known = paused
        self._read_at = self._clock.now()
