"""Global rate limits: how many jobs of a queue's types may start per window, across every
process and machine that claims them (`process_jobs(..., rate_limit=RateLimit(...))`).

A limit is enforced at claim time by counter documents in a collection next to the jobs
(`<root>.limits`; the jobs collection keeps v1.x's closed schema), one per (limit key, window):

1. the claim reserves the slots it wants with one atomic `$inc` (an upsert) on the counter of
   the current window, and gives back at once what went over the limit;
2. it claims at most the slots it got;
3. it gives back the slots it did not use (fewer jobs were ready than reserved).

Windows are fixed intervals of `per` on the collection's clock (the database server's time by
default): a window starts at a multiple of `per` since the epoch. Counters are deleted by a
TTL index a few windows after their window ends. Jobs over the limit are not claimed: they
stay ready for any worker, and the queue looks again when the next window starts.

With `group_by` each group (a `data.` field, or "user": the job's user) has its own counter:
the claim reads the ready candidates' ids and groups first, reserves per group found among
them, then claims the reserved jobs by id.

The rules here are pure (windows, counter keys and updates, what a reservation granted, the
put-back of a rate-limited job); `Limiter` applies them through the Store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import bson

from . import transitions
from . import validation as v
from .document import USER, JobDoc
from .errors import DatabaseError, InvalidArgument, InvalidArgumentType
from .indexes import Index
from .schedule import add_ms
from .store import Store, is_duplicate
from .types import Id, Update

if TYPE_CHECKING:
    from .claiming import Claimer

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EXPIRE_AT = "expireAt"
KEPT_WINDOWS = 3
"""Windows a counter is kept after its own (then the TTL index deletes it)."""
KEPT_MARGIN = timedelta(minutes=1)
"""And this much more, for the TTL monitor and the clocks of the machines that claim."""
SCAN_FACTOR = 4
"""With group_by, a claim reads up to this many candidates per job it wants, so that a group
at its limit does not hide the ready jobs of other groups."""

COUNTER_INDEX = Index(
    ((EXPIRE_AT, 1),),
    expire_after_seconds=0,
    serves="rate-limit counters: MongoDB deletes each a few windows after its own (TTL); "
    "counters are otherwise read and written by _id only",
)
"""The one index of the counters' collection (`<root>.limits`)."""


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most `max` jobs of a queue's types start per `per` (seconds or a timedelta), over
    every process sharing the database; with `group_by` ("data.<field path>", or "user" for
    the job's user), at most `max` per group. Raises InvalidArgument naming a bad field."""

    max: int
    per: float | timedelta = 1.0
    group_by: str | None = None
    per_ms: int = field(init=False, repr=False, compare=False)
    """The window's length in milliseconds."""

    def __post_init__(self) -> None:
        v.integer(self.max, "max", minimum=1)
        object.__setattr__(self, "per_ms", v.duration_ms(self.per, "per", minimum_ms=1))
        group_path(self.group_by)

    @property
    def path(self) -> str | None:
        """The stored field the groups are read from (None: one counter for all)."""
        return group_path(self.group_by)


def group_path(group_by: Any) -> str | None:
    """The stored field path of a group_by: "user" is the job's user; "data.<path>" a field
    of its data. Raises InvalidArgument("group_by") otherwise."""
    if group_by is None:
        return None
    if not isinstance(group_by, str):
        raise InvalidArgumentType("group_by", "must be None, 'user' or 'data.<field path>'")
    if group_by == "user":
        return USER
    parts = group_by.split(".")
    if parts[0] != "data" or len(parts) < 2 or any(not p or p.startswith("$") for p in parts):
        problem = f"must be 'user' or 'data.<field path>', not {group_by!r}"
        raise InvalidArgument("group_by", problem)
    return group_by


def window(now: datetime, per_ms: int) -> tuple[datetime, datetime]:
    """The window `now` falls in: its start (a multiple of per_ms since the epoch) and end."""
    elapsed = (now - EPOCH) // timedelta(milliseconds=1)
    start = add_ms(EPOCH, elapsed // per_ms * per_ms)
    return start, add_ms(start, per_ms)


def counter_id(types: Sequence[str], limit: RateLimit, start: datetime, group: Any = None) -> Any:
    """The counter of one limit key (the types, and the group) in the window from `start`."""
    key: dict[str, Any] = {"types": sorted(types)}
    if limit.group_by is not None:
        key |= {"by": limit.group_by, "group": group}
    return key | {"at": start}


def reserve(count: int, end: datetime, per_ms: int) -> Update:
    """Take `count` slots of a window's counter (created with its expiry if new)."""
    expire = add_ms(end, per_ms * KEPT_WINDOWS) + KEPT_MARGIN
    return {"$inc": {"n": count}, "$setOnInsert": {EXPIRE_AT: expire}}


def give_back(count: int) -> Update:
    return {"$inc": {"n": -count}}


def granted(n_after: int, asked: int, maximum: int) -> int:
    """How many of `asked` slots a reservation got, given the counter after its `$inc`:
    what was left under `maximum` before it, at most what it asked, at least none."""
    return max(0, min(asked, maximum - (n_after - asked)))


def group_of(doc: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path of a stored document (None where it is missing)."""
    value: Any = doc
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _group_key(value: Any) -> bytes:
    """A hashable stand-in for a group value (groups may be documents or lists)."""
    return bson.encode({"v": value})


@dataclass(frozen=True, slots=True)
class LimitedWork:
    """What a claim under a rate limit got: the jobs, and when the next window starts if the
    limit held some back (None: it did not; look again as usual)."""

    docs: list[JobDoc]
    next_window: datetime | None = None


class Limiter:
    """Claims under rate limits: reserves slots on the counters, claims, gives back."""

    def __init__(self, counters: Store, claimer: Claimer) -> None:
        self.counters = counters
        self.claimer = claimer
        self._indexed = False

    async def _take(self, counter: Any, asked: int, end: datetime, limit: RateLimit) -> int:
        """Reserve up to `asked` slots of one counter; the number got (the excess is given
        back at once)."""
        update = reserve(asked, end, limit.per_ms)
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
        await self.counters.create_index(COUNTER_INDEX.keys, **COUNTER_INDEX.options())
        self._indexed = True

    async def get_work(
        self,
        types: Sequence[str],
        limit: RateLimit,
        max_jobs: int,
        work_timeout_ms: int | None,
    ) -> LimitedWork:
        """Claim up to max_jobs ready jobs of these types, as many as the limit allows in the
        current window."""
        if not self.claimer.accepting:
            return LimitedWork(await self.claimer.get_work(types, max_jobs, work_timeout_ms))
        await self._ensure_index()
        start, end = window(self.claimer.clock.now(), limit.per_ms)
        path = limit.path
        if path is None:
            counter = counter_id(types, limit, start)
            got = await self._take(counter, max_jobs, end, limit)
            docs = await self._claim(types, got, work_timeout_ms, None)
            await self._return(counter, got - len(docs))
            return LimitedWork(docs, end if got < max_jobs else None)
        return await self._get_grouped(types, limit, path, max_jobs, work_timeout_ms, start, end)

    async def _claim(
        self, types: Sequence[str], count: int, work_timeout_ms: int | None, among: Any
    ) -> list[JobDoc]:
        if count <= 0:
            return []
        return await self.claimer.get_work(types, count, work_timeout_ms, among=among)

    async def _get_grouped(
        self,
        types: Sequence[str],
        limit: RateLimit,
        path: str,
        max_jobs: int,
        work_timeout_ms: int | None,
        start: datetime,
        end: datetime,
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
            owner[doc["_id"]] = key = _group_key(value)
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
        docs = await self._claim(types, len(chosen), work_timeout_ms, chosen)
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
