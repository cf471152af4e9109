"""Cluster-wide pause, applied: the pause document (rules/pausing.py) written by pause and
resume, and read with the other settings by every claim of this process (settings.py).

Every claim path runs through the core's claim (local queues, `get_work`, the remote API and
DDP, which call the core), so a paused type is claimed nowhere: on this process at once, on
the others within a second of the write (the age of their copy). Running jobs are not
touched.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..model.types import Paused
from ..rules import pausing
from .settings import Settings


class Pauses:
    """This process's side of the cluster-wide pause."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    async def pause(self, types: Sequence[str] | None) -> Paused:
        """Pause these types (None: every type) on every process; what is paused now."""
        return await self._write(*pausing.pause(types))

    async def resume(self, types: Sequence[str] | None) -> Paused:
        """Resume these types (None: every type) on every process; what is paused now."""
        return await self._write(*pausing.resume(types))

    async def _write(self, query: dict[str, object], update: dict[str, object]) -> Paused:
        servers = self._settings.required("cluster-wide pause")
        stored = await servers.find_one_and_update(query, update, upsert=True)
        self._settings.remember(pausing.PAUSED_ID, stored)
        return pausing.read(stored)

    async def paused(self) -> Paused:
        """What is paused now, read from the database (and remembered)."""
        return pausing.read((await self._settings.read())[pausing.PAUSED_ID])

    async def claimable(self, types: Sequence[str]) -> list[str]:
        """The types a claim may take now: those not paused, by a copy at most FRESH old."""
        paused = pausing.read((await self._settings.current())[pausing.PAUSED_ID])
        return pausing.claimable_types(types, paused)
