"""More antecedents for saved jobs that have not started (AddDepends): what adding members to
an open batch does to its callbacks.

The order is a save's: the antecedents are marked first (DEPENDENTS, so that a completion
looks its dependents up), then the edges are added to the jobs still waiting or paused (a
conditional update), then the antecedents' statuses are read again: one that completed in
the meantime (or before) is resolved at once, one that failed or was cancelled applies the
new edges' policy (managing.py `ended`). A crash between the steps leaves nothing waiting
forever that a retry of the same call does not mend: the mark and the edges are sets.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..model.clock import Clock
from ..model.constants import OnFailure, Status
from ..model.errors import InvalidArgument
from ..model.limits import Limits
from ..model.types import Id
from ..mongo.store import Store
from ..rules import dependencies, edges, transitions
from .managing import Manager


class Edges:
    """Adds antecedents to jobs not started yet."""

    def __init__(self, store: Store, clock: Clock, manager: Manager, limits: Limits) -> None:
        self._store = store
        self._clock = clock
        self._manager = manager
        self._limits = limits

    async def add(self, ids: Sequence[Id], antecedents: Sequence[Id], policy: OnFailure) -> int:
        """Make jobs (those still waiting or paused) wait for these antecedents too, with this
        failure policy; how many did. InvalidArgument if an antecedent is one of the jobs,
        is not stored, or would make a job wait on more than `Limits.max_depends`."""
        if set(ids) & set(antecedents):
            raise InvalidArgument("antecedents", "a job cannot depend on itself")
        if len(antecedents) > self._limits.max_depends:
            raise InvalidArgument(
                "antecedents", f"names more than {self._limits.max_depends} antecedents"
            )
        stored = await self._store.find({"_id": {"$in": list(antecedents)}}, {"_id": 1})
        missing = set(antecedents) - {d["_id"] for d in stored}
        if missing:
            names = sorted(map(str, missing))[:5]
            raise InvalidArgument("antecedents", f"names jobs that are not stored: {names}")
        now = self._clock.now()
        await self._store.update_many(*dependencies.announce(antecedents))
        added = await self._store.update_many(
            *edges.add_edges(ids, antecedents, policy, self._limits.max_depends, now)
        )
        if not added:
            return 0
        found = await self._store.find(
            dependencies.finished_among(antecedents), {"status": 1, "runId": 1}
        )
        completed = [(d["_id"], d.get("runId")) for d in found if d["status"] == Status.COMPLETED]
        if completed:
            await self._store.update_each(
                [transitions.resolve_dependents(job_id, completed, now, None) for job_id in ids]
            )
            await self._manager.promote(list(ids), conditional=True)
        ended = {d["_id"]: Status(d["status"]) for d in found if d["status"] != Status.COMPLETED}
        if ended:
            await self._manager.ended(ended)
        return added
