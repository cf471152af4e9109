"""Dependents: every database step of dependency bookkeeping, applying the pure rules of
rules/dependencies.py.

A dependent waits on its antecedents (`depends`). Its antecedents are marked (DEPENDENTS)
before it is stored, so that a completion, written in one blind update, knows to look its
dependents up; a save then checks the antecedents' statuses, resolving the completed ones
and cancelling the dependent if one is missing, failed or was cancelled. Dependents saved by
job-collection v1.x, which marks nothing, are adopted by the job server. When an antecedent
finishes, its dependents are resolved (it completed) or cancelled (it failed for good), as
one of its follow-ups (followups.py).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from ..model.constants import Status
from ..model.document import RUN_IF
from ..model.types import Id, Update
from ..mongo.store import Document, Store
from ..rules import dependencies
from .managing import Manager

logger = logging.getLogger("jobcollection")


class Finished(Protocol):
    """A job that completed or failed for good, as its dependents need it
    (followups.Pending is one)."""

    @property
    def job_id(self) -> Id: ...
    @property
    def run_id(self) -> Id: ...
    @property
    def status(self) -> Status: ...
    @property
    def at(self) -> datetime: ...
    @property
    def delay_deps_ms(self) -> int | None: ...


class Dependents:
    """Applies the dependency rules: announces antecedents, checks them at save, adopts
    dependents saved elsewhere, and resolves or cancels dependents when antecedents finish."""

    def __init__(self, store: Store, manager: Manager) -> None:
        self._store = store
        self._manager = manager

    async def announce_insert(self, depends: Sequence[Id], stored: Document) -> Document:
        """Announce a new dependent's antecedents (see `_announce`); its document to insert,
        marked ANNOUNCED (it is never adopted). Changes `stored`."""
        await self._announce(depends)
        return dependencies.announced_document(stored)

    async def announce_resave(self, depends: Sequence[Id], update: Update) -> Update:
        """Announce a resaved dependent's antecedents (see `_announce`); the resave's update,
        marking it ANNOUNCED (it is never adopted). Changes `update`."""
        await self._announce(depends)
        return dependencies.announced(update)

    async def check_at_save(self, job_id: Id, depends: Sequence[Id], now: datetime) -> bool:
        """Resolve completed antecedents; cancel the job if one is missing, failed or cancelled."""
        if not depends:
            return True
        found = {
            d["_id"]: d
            for d in await self._store.find(
                {"_id": {"$in": list(depends)}}, {"status": 1, "runId": 1}
            )
        }
        write, doomed = dependencies.check_at_save(job_id, depends, found, now)
        if write is not None:
            await self._store.update_one(*write)
        if doomed:
            await self._manager.cancel([job_id])
            return False
        return True

    async def adopt(self, now: datetime, limit: int = 1000) -> int:
        """Adopt the dependents another application saved: job-collection v1.x does not mark
        their antecedents with DEPENDENTS, so a completion written in one blind write would
        not look them up. Each such dependent (waiting or paused, without ANNOUNCED) is
        adopted once, as a save of this library would do it: its antecedents are marked
        first, then read; the dependent is resolved (and promoted when due) for those that
        completed, cancelled if one failed or was cancelled, and marked ANNOUNCED. The number
        adopted."""
        dependents = await self._store.find(dependencies.unannounced(), {"depends": 1}, limit=limit)
        if not dependents:
            return 0
        antecedents = list({a for d in dependents for a in d.get("depends", [])})
        await self._announce(antecedents)
        finished = {
            a["_id"]: a
            for a in await self._store.find(
                dependencies.finished_among(antecedents), {"status": 1, "runId": 1}
            )
        }
        adoption = dependencies.adopt(dependents, finished, now)
        await self._store.update_each(adoption.updates)
        if adoption.resolved:
            await self._manager.promote(adoption.resolved)
        if adoption.doomed:
            await self._manager.cancel_cascade(adoption.doomed)
        await self._store.update_many(*dependencies.adopted([d["_id"] for d in dependents]))
        return len(dependents)

    async def follow(self, finished: Sequence[Finished]) -> None:
        """Resolve the dependents of the jobs that completed, then cancel those of the jobs
        that failed for good."""
        dependents = await self._store.find(
            {"depends": {"$in": [f.job_id for f in finished]}},
            {"depends": 1, "status": 1, RUN_IF: 1},
        )
        if dependents:
            await self._resolve([f for f in finished if f.status == Status.COMPLETED], dependents)
            failed = {f.job_id for f in finished if f.status == Status.FAILED}
            await self._cancel(failed, dependents)

    async def _announce(self, depends: Sequence[Id]) -> None:
        """Mark antecedents as having a dependent, before the dependent is stored (or adopted):
        a completion racing this save then either sees the mark (and looks its dependents up)
        or happened first (and the save's check of their statuses sees it completed)."""
        await self._store.update_many(*dependencies.announce(depends))

    async def _resolve(self, completed: Sequence[Finished], dependents: Sequence[Document]) -> None:
        """Move each completed job from its dependents' `depends` to `resolved`, then promote
        those dependents that have nothing left to wait for."""
        done = {f.job_id: (f.run_id, f.at, f.delay_deps_ms) for f in completed}
        waiting, updates = dependencies.resolve_completed(dependents, done)
        if not waiting:
            return
        outcome = await self._store.update_each(updates)
        for index, error in outcome.refused.items():
            logger.error(
                "job %s: cannot resolve its completed dependencies (%s)", waiting[index], error
            )
        if outcome.matched + len(outcome.refused) < len(updates):
            # Some dependent was resolved in part by another process since it was read: an
            # update of several antecedents misses it, so resolve them one by one.
            again = await self._store.update_each(dependencies.resolve_each(dependents, done))
            for error in again.refused.values():
                logger.error("cannot resolve completed dependencies (%s)", error)
        conditional = any(dependencies.conditional(d) for d in dependents)
        await self._manager.promote(waiting, conditional=conditional)

    async def _cancel(self, failed: set[Id], dependents: Sequence[Document]) -> None:
        """Apply the failure policies of the dependents of jobs that failed for good (cancel,
        fail, or run without them), and on to theirs. Dependents that ended already lead the
        cascade on, at every level (see `ended` in managing.py), so a cascade cut short by
        a fault is carried on."""
        if any(a in failed for d in dependents for a in d.get("depends", [])):
            await self._manager.ended(dict.fromkeys(failed, Status.FAILED))
