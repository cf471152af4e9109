"""Claims under global rate limits: `Limiter` reserves slots on the counters beside the jobs,
claims at most what it got (through the concurrency limits: slots.py) and gives back the rest
(the rules are in ratecounters.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from ..model.document import JobDoc
from ..model.errors import DatabaseError
from ..model.ratelimit import LimitedWork, RateLimit, RateWindow
from ..model.types import Id
from ..mongo.indexes import LIMITS_INDEX
from ..mongo.store import Store, is_duplicate
from ..rules import transitions
from ..rules.ratecounters import (
    SCAN_FACTOR,
    counter_id,
    current,
    give_back,
    granted,
    group_key,
    group_of,
    reserve,
    window,
    windows,
)
from .claiming import SERVER, Claimant

if TYPE_CHECKING:
    from .claiming import Claimer
    from .slots import Slots

COUNTERS_READ: Final = 500
"""The most counters `current_windows` reads (those whose windows end last): a limit with
many groups, or many limits, may have more in their current windows."""


class Limiter:
    """Claims under rate limits: reserves slots on the counters, claims, gives back."""

    def __init__(self, counters: Store, claimer: Claimer, slots: Slots) -> None:
        self.counters = counters
        self.claimer = claimer
        self.slots = slots
        self._indexed = False

    async def _take(self, counter: Any, asked: int, end: datetime, limit: RateLimit) -> int:
        """Reserve up to `asked` slots of one counter; the number got (the excess is given
        back at once)."""
        update = reserve(asked, end, limit)
        try:
            after = await self.counters.find_one_and_update(
                {"_id": counter}, update, {"n": 1}, upsert=True
            )
        except DatabaseError as exc:
            # Two first reservations of a window raced to insert its counter: the other one
            # inserted it, so this one now finds it.
            if not is_duplicate(exc):
                raise
            after = await self.counters.find_one_and_update(
                {"_id": counter}, update, {"n": 1}, upsert=True
            )
        got = granted(int((after or {}).get("n", asked)), asked, limit.max)
        if got < asked:
            await self.counters.update_one({"_id": counter}, give_back(asked - got))
        return got

    async def _return(self, counter: Any, unused: int) -> None:
        if unused > 0:
            await self.counters.update_one({"_id": counter}, give_back(unused))

    async def _ensure_index(self) -> None:
        if self._indexed:
            return
        await self.counters.create_index(LIMITS_INDEX.keys, **LIMITS_INDEX.options())
        self._indexed = True

    async def get_work(
        self,
        types: Sequence[str],
        limit: RateLimit,
        max_jobs: int,
        work_timeout_ms: int | None,
        claimant: Claimant = SERVER,
    ) -> LimitedWork:
        """Claim up to max_jobs ready jobs of these types for `claimant`, as many as the
        limit allows in the current window."""
        if not self.claimer.accepting:
            return LimitedWork(
                await self.slots.get_work(types, max_jobs, work_timeout_ms, claimant=claimant)
            )
        await self._ensure_index()
        start, end = window(self.claimer.clock.now(), limit.per_ms)
        path = limit.path
        if path is None:
            counter = counter_id(types, limit, start)
            got = await self._take(counter, max_jobs, end, limit)
            docs = await self._claim(types, got, work_timeout_ms, None, claimant)
            await self._return(counter, got - len(docs))
            return LimitedWork(docs, end if got < max_jobs else None)
        return await self._get_grouped(
            types, limit, path, max_jobs, work_timeout_ms, start, end, claimant
        )

    async def _claim(
        self,
        types: Sequence[str],
        count: int,
        work_timeout_ms: int | None,
        among: Any,
        claimant: Claimant,
    ) -> list[JobDoc]:
        if count <= 0:
            return []
        return await self.slots.get_work(
            types, count, work_timeout_ms, among=among, claimant=claimant
        )

    async def _get_grouped(
        self,
        types: Sequence[str],
        limit: RateLimit,
        path: str,
        max_jobs: int,
        work_timeout_ms: int | None,
        start: datetime,
        end: datetime,
        claimant: Claimant,
    ) -> LimitedWork:
        candidates = await self.claimer.store.find(
            transitions.claimable(types),
            {"_id": 1, path: 1},
            sort=transitions.CLAIM_SORT,
            limit=max_jobs * SCAN_FACTOR,
        )
        groups: dict[bytes, tuple[Any, list[Id]]] = {}
        owner: dict[Id, bytes] = {}
        for doc in candidates:
            value = group_of(doc, path)
            owner[doc["_id"]] = key = group_key(value)
            groups.setdefault(key, (value, []))[1].append(doc["_id"])
        chosen: list[Id] = []
        reserved: dict[bytes, tuple[Any, int]] = {}
        held_back = False
        for key, (value, ids) in groups.items():
            asked = min(len(ids), max_jobs - len(chosen))
            if asked <= 0:
                break
            counter = counter_id(types, limit, start, value)
            got = await self._take(counter, asked, end, limit)
            held_back = held_back or got < asked
            reserved[key] = (counter, got)
            chosen += ids[:got]
        docs = await self._claim(types, len(chosen), work_timeout_ms, chosen, claimant)
        used: dict[bytes, int] = {}
        for job in docs:  # (a job an earlier claim left unhanded may come too: no group's)
            if job.id in owner:
                used[owner[job.id]] = used.get(owner[job.id], 0) + 1
        for key, (counter, got) in reserved.items():
            await self._return(counter, got - used.get(key, 0))
        return LimitedWork(docs, end if held_back else None)


def counter_store(jobs: Store) -> Store:
    """The Store of the rate-limit counters of a jobs collection (`<root>.limits` beside
    `<root>.jobs`)."""
    return jobs.sibling(jobs.collection.name.removesuffix(".jobs") + ".limits")


@dataclass(frozen=True, slots=True)
class RateWindows:
    """The rate limits' current windows (`current_windows`), and whether the read stopped at
    its cap (COUNTERS_READ counters): then some limits or groups may be missing or short."""

    windows: list[RateWindow]
    cut: bool


async def current_windows(jobs: Store, now: datetime, most: int = COUNTERS_READ) -> RateWindows:
    """The current window of every rate limit that started a job in it, from one read of at
    most `most` counters (served by the TTL index on expireAt: rules/ratecounters.py)."""
    query, order = current(now)
    docs = await counter_store(jobs).find(query, sort=order, limit=most + 1)
    return RateWindows(windows(docs[:most], now), len(docs) > most)
