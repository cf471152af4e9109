"""Which process runs the job server's passes: the holder of one lease document.

Every process that starts its job server claims work, but the passes (lease expiry, pending
follow-ups, adopting dependents saved elsewhere, promotion) run in one process at a time: the
one that holds the lease document `jobServer` in `<root>.servers`, a collection beside the jobs
(the jobs collection keeps v1.x's closed schema). The others stand by.

- The holder renews its lease (`expires`, on the collection's clock: the database server's
  time by default, so processes agree) every third of the lease. A renewal names the epoch it
  holds, so a holder that lost its lease cannot renew it back.
- A process standing by reads the lease (by `_id`) and, once it has expired (or was
  released), takes it over in one conditional update that raises the epoch; of two that try
  together one wins, the other's upsert meets the document's `_id` and loses.
- A pass starts only after its process renewed the lease it holds (`hold()`): a holder that
  lost it (paused past its lease, say) stands by and its pass changes nothing. The passes are
  conditional updates that are correct whoever runs them, so a pass already under way when the
  lease runs out does no harm; the lease only keeps N processes from doing the same work N
  times.
- A process that shuts its job server down releases the lease (its successor takes over at
  its next check, within a third of the lease); one that dies leaves it to expire.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from bson import ObjectId

from ..model.clock import Clock
from ..model.document import assume_utc
from ..model.errors import DatabaseError
from ..model.schedule import add_ms
from ..mongo.store import Store, is_duplicate

logger = logging.getLogger("jobcollection")

LEASE_ID: Final = "jobServer"
"""The `_id` of the lease document in `<root>.servers`."""
DEFAULT_LEASE_MS: Final = 10_000
"""How long a leader's lease lasts unless renewed (a dead leader is replaced after this)."""


@dataclass(frozen=True, slots=True)
class Leader:
    """Who runs the job server's passes: the process holding the lease (see leadership.py)."""

    holder: str
    """The holding JobCollection's instance id (ObjectId hex, new at every start)."""
    epoch: int
    """Raised at every change of holder: a fence against a holder that lost its lease."""
    host: str
    pid: int
    since: datetime
    """When this holder took the lease."""
    expires: datetime
    """When the lease ends unless renewed."""
    this_process: bool
    """Whether the JobCollection asking holds it."""


class Leadership:
    """This process's side of the election (see the module docstring)."""

    def __init__(self, jobs: Store, clock: Clock, lease_ms: int = DEFAULT_LEASE_MS) -> None:
        self._jobs = jobs
        self._store: Store | None = None
        self._alone = False
        """No `<root>.servers` beside the jobs (a collection object without a database, such
        as a test's wrapper): this process leads alone, as every process did before."""
        self._clock = clock
        self.lease_ms = lease_ms
        self.me = str(ObjectId())
        self.epoch: int | None = None
        """The epoch of the lease this process holds (None: it does not)."""
        self._holding = asyncio.Lock()
        """One hold() at a time: the loop's and an explicit pass's would otherwise race
        each other for the lease, and the loser would stand by beside itself."""

    @property
    def _servers(self) -> Store:
        """The Store of `<root>.servers` beside `<root>.jobs` (looked up at first use)."""
        if self._store is None:
            name = self._jobs.collection.name.removesuffix(".jobs") + ".servers"
            self._store = self._jobs.sibling(name, counted=False)
        return self._store

    def _beside(self) -> bool:
        """Whether the servers collection can be reached at all (see `_alone`)."""
        if self._store is None and not self._alone:
            try:
                self._servers  # noqa: B018 (looked up once)
            except DatabaseError as exc:
                logger.warning("job server: %s; this process runs the passes alone", exc)
                self._alone = True
        return not self._alone

    @property
    def leading(self) -> bool:
        """Whether this process held the lease at its last hold()."""
        return self.epoch is not None

    async def hold(self) -> bool:
        """Renew the lease this process holds, or take it over if it is free or expired;
        whether this process leads now. DatabaseError if the database cannot be reached (the
        caller stands by and tries again)."""
        async with self._holding:
            return await self._hold()

    async def _hold(self) -> bool:
        if not self._beside():
            self.epoch = 0
            return True
        now = self._clock.now()
        expires = add_ms(now, self.lease_ms)
        if self.epoch is not None:
            mine = {"_id": LEASE_ID, "holder": self.me, "epoch": self.epoch}
            if await self._servers.update_one(mine, {"$set": {"expires": expires}}):
                return True
            self.epoch = None  # another took it over after it expired
        held = await self._servers.find_one({"_id": LEASE_ID}, {"holder": 1, "expires": 1})
        if held is not None and held.get("holder") is not None:
            until = held.get("expires")
            if isinstance(until, datetime) and assume_utc(until) > now:
                return False  # standing by: a read, not a write that would fail
        free = {"_id": LEASE_ID, "$or": [{"expires": {"$lte": now}}, {"holder": None}]}
        take = {
            "$set": {
                "holder": self.me,
                "expires": expires,
                "since": now,
                "host": socket.gethostname(),
                "pid": os.getpid(),
            },
            "$inc": {"epoch": 1},
        }
        try:
            taken = await self._servers.find_one_and_update(free, take, {"epoch": 1}, upsert=True)
        except DatabaseError as exc:
            if is_duplicate(exc):  # held by another: the upsert met its _id
                return False
            raise
        if taken is None or taken.get("epoch") is None:
            return False
        self.epoch = int(taken["epoch"])
        return True

    async def release(self) -> None:
        """Give the lease up now (a shutdown), if this process holds it."""
        if self.epoch is None or self._alone:
            self.epoch = None
            return
        mine = {"_id": LEASE_ID, "holder": self.me, "epoch": self.epoch}
        self.epoch = None
        await self._servers.update_one(
            mine, {"$set": {"holder": None, "expires": self._clock.now()}}
        )

    async def leader(self) -> Leader | None:
        """The process that holds the lease now, if any holds an unexpired one."""
        if not self._beside():
            return None
        stored = await self._servers.find_one({"_id": LEASE_ID})
        found: dict[str, Any] | None = None if stored is None else assume_utc(stored)
        if not found or found.get("holder") is None or found["expires"] <= self._clock.now():
            return None
        return Leader(
            holder=found["holder"],
            epoch=int(found["epoch"]),
            host=str(found.get("host", "")),
            pid=int(found.get("pid", 0)),
            since=found["since"],
            expires=found["expires"],
            this_process=found["holder"] == self.me,
        )
