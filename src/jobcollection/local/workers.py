"""The worker registry, applied: registrations in `<root>.workers` (rules/workers.py), written
by the queues (SeeWorker, ForgetWorker; a remote queue's through the method layer, as its
user) and listed by `jc.workers()`. Each registration lasts for the TTL its queue gives (the
queues of this process give `Registry.ttl_ms`, JobCollection's `worker_ttl`). A TTL index,
made at the first registration, deletes registrations that were not renewed; listing skips
them already."""

from __future__ import annotations

import logging
from typing import Any

from ..model.clock import Clock
from ..model.document import assume_utc
from ..model.errors import DatabaseError, PermissionDenied
from ..model.workers import TTL_MS, WorkerInfo
from ..mongo.indexes import WORKERS_INDEX
from ..mongo.store import Store, is_duplicate
from ..rules import workers as rules

logger = logging.getLogger("jobcollection")

MAX_LISTED = 10_000
"""The most registrations `workers()` lists."""


class Registry:
    """The registrations of the queues working on one collection."""

    def __init__(self, jobs: Store, clock: Clock, ttl_ms: int = TTL_MS) -> None:
        self._jobs = jobs
        self._clock = clock
        self.ttl_ms = ttl_ms
        """How long the registrations of this process's queues last unless renewed (they
        renew them every third of it): JobCollection's `worker_ttl`. Registrations that come
        through the method layer carry their own."""
        self._store: Store | None = None
        self._indexed = False

    async def _workers(self) -> Store | None:
        """The Store of `<root>.workers`, its index made (None: no database beside the
        jobs, as for a test's wrapper of the collection: nothing is registered)."""
        if self._store is None:
            name = self._jobs.collection.name.removesuffix(".jobs") + ".workers"
            try:
                self._store = self._jobs.sibling(name, counted=False)
            except DatabaseError:
                return None
        if not self._indexed:
            await self._store.create_index(WORKERS_INDEX.keys, **WORKERS_INDEX.options())
            self._indexed = True
        return self._store

    async def see(self, worker: WorkerInfo, user: Any, kind: str) -> bool:
        """Register or renew a queue; PermissionDenied if another user registered its id."""
        store = await self._workers()
        if store is None:
            return False
        query, update = rules.register(worker, user, kind, self._clock.now())
        try:
            await store.find_one_and_update(query, update, {"_id": 1}, upsert=True)
        except DatabaseError as exc:
            if is_duplicate(exc):
                raise PermissionDenied(f"worker {worker.id} is another user's") from None
            raise
        return True

    async def forget(self, worker_id: str, user: Any) -> bool:
        """Remove a queue's registration (at its shutdown); whether there was one."""
        store = await self._workers()
        return store is not None and bool(await store.delete_many(rules.leave(worker_id, user)))

    async def list(self) -> list[WorkerInfo]:
        """The live registrations, oldest first."""
        store = await self._workers()
        if store is None:
            return []
        found = await store.find(rules.alive(self._clock.now()), limit=MAX_LISTED)
        return [rules.read(assume_utc(doc)) for doc in sorted(found, key=lambda d: d["_id"])]
