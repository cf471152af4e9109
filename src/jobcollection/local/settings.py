"""The settings every claim reads, kept in `<root>.servers` beside the jobs (the jobs
collection keeps v1.x's closed schema): the cluster-wide pause (rules/pausing.py) and the
concurrency limits (rules/concurrency.py). Both documents come in one read by `_id`, at most
once a second (FRESH): a change made on another process applies here within that second, and
a claim costs no read of its own. A collection object without a database beside it (a
test's wrapper) has no settings.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Final

from ..model.clock import Clock
from ..model.errors import DatabaseError
from ..mongo.store import Store
from ..rules.concurrency import LIMITS_ID
from ..rules.pausing import PAUSED_ID

logger = logging.getLogger("jobcollection")

FRESH: Final = timedelta(seconds=1)
"""How long this process uses its copy of the settings before reading them again."""

IDS: Final = (PAUSED_ID, LIMITS_ID)
"""The `_id`s of the settings documents."""


class Settings:
    """This process's copy of the settings documents, by `_id` (None: not stored)."""

    def __init__(self, jobs: Store, clock: Clock) -> None:
        self._jobs = jobs
        self._clock = clock
        self._store: Store | None = None
        self._alone = False
        self._known: dict[str, Mapping[str, Any] | None] = dict.fromkeys(IDS)
        self._read_at: datetime | None = None

    def store(self) -> Store | None:
        """The Store of `<root>.servers` (None: no database beside the jobs)."""
        if self._store is None and not self._alone:
            name = self._jobs.collection.name.removesuffix(".jobs") + ".servers"
            try:
                self._store = self._jobs.sibling(name)
            except DatabaseError as exc:
                logger.warning("cluster-wide settings are not available here: %s", exc)
                self._alone = True
        return self._store

    def required(self, what: str) -> Store:
        """The Store of `<root>.servers`, for a change (DatabaseError naming `what` if there
        is none)."""
        store = self.store()
        if store is None:
            raise DatabaseError(f"{what} needs the database beside the jobs")
        return store

    async def read(self) -> Mapping[str, Mapping[str, Any] | None]:
        """The settings documents, read now (and remembered)."""
        store = self.store()
        if store is not None:
            found = await store.find({"_id": {"$in": list(IDS)}})
            by_id = {doc["_id"]: doc for doc in found}
            self._known = {key: by_id.get(key) for key in IDS}
            self._read_at = self._clock.now()
        return self._known

    async def current(self) -> Mapping[str, Mapping[str, Any] | None]:
        """The settings documents, by a copy at most FRESH old."""
        if self.store() is None:
            return self._known
        if self._read_at is None or self._clock.now() - self._read_at >= FRESH:
            return await self.read()
        return self._known

    def remember(self, doc_id: str, doc: Mapping[str, Any] | None) -> None:
        """Keep a settings document this process just wrote (its copy is then current)."""
        self._known[doc_id] = doc
