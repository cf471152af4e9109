"""The rules of global concurrency limits (model/concurrency.py), pure: where the limits are
kept, the claim lock that orders the claims of a limited type, the running jobs that hold
its slots, and which candidates a claim takes. local/slots.py applies them.

Design. The slots of a type are its running jobs themselves: a claim counts the jobs of the
type that are `running` with a lease that has not run out (or with no lease), and takes at
most what is left. Nothing is incremented at a claim or decremented at a report, so nothing
can drift: a job that completes, fails, is cancelled, or whose worker dies gives its slot
back by its own transition, or when its lease runs out (a SIGKILLed worker's slot is free at
its lease's end, never later), whoever applies it. What needs ordering is two claims that
count the same jobs at once: a claim of a limited type runs under the type's claim lock, a
document in `<root>.limits` taken with one conditional upsert and given back after the claim;
a lock whose holder died is free after LOCK_MS.

Cheap while the limit is far. The lock's document also keeps an upper bound on the jobs
running: every holder adds what it claimed (jobs only start through the lock, and leave
`running` on their own, so the bound stays above the truth); a holder counts only when the
bound does not show the limit far away, and then sets it to the count. While the jobs
running and reserved stay within half the limit, a holder takes a quota instead: slots its
process claims into without the lock for a second (QUOTA_USE_MS), added to the bound at
once and kept in the document until they expire, so that a count also adds the quotas live.
A process claiming one job at a time thus takes the lock once per 16 claims, and counts
rarely; near the limit, every claim counts under the lock, exactly.

Fairness between groups (`group_by`): fewest running first. Each job a claim takes goes to
the group with the fewest jobs running (counting those taken in this claim), ties to the one
whose next job comes first in the usual order (priority, then due time), which also orders
the jobs within a group. It needs no stored state beyond the counts the claim reads anyway
(round-robin would need a stored cursor, a write per claim), a group that is busy does not
take more than one whose jobs wait, and groups converge to equal shares of the room.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from bson import ObjectId

from ..model.concurrency import ConcurrencyLimit, limit_from_wire
from ..model.constants import Status
from ..model.document import QUOTA
from ..model.errors import InvalidArgument
from ..model.types import Filter, Id, Update
from .ratecounters import EXPIRE_AT, group_key, group_of

LIMITS_ID: Final = "concurrencyLimits"
"""The `_id` of the document in `<root>.servers` that holds every type's limit."""

LOCK_MS: Final = 5_000
"""How long a claim lock is held at most: a holder that died frees it after this."""
LOCK_KEPT: Final = timedelta(hours=1)
"""An idle claim lock is deleted this long after it was last taken (TTL)."""

SCALARS: Final = (str, int, float, bool, ObjectId, datetime, type(None))
"""Group values a query can exclude with `$nin` as they are (no array or document
semantics)."""


# --- the stored limits ----------------------------------------------------------------------


def read_limits(stored: Mapping[str, Any] | None) -> dict[str, ConcurrencyLimit]:
    """The limits a stored document holds, by type (none stored: no limit); an entry that is
    not a limit (written by hand) is ignored."""
    limits: dict[str, ConcurrencyLimit] = {}
    entries = (stored or {}).get("limits")
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("type"), str):
            continue
        try:
            limits[entry["type"]] = limit_from_wire(
                {k: entry[k] for k in ("maxRunning", "groupBy") if k in entry}
            )
        except InvalidArgument:
            continue
    return limits


def set_limit(
    stored: Mapping[str, Any] | None, job_type: str, limit: ConcurrencyLimit | None
) -> tuple[Filter, Update]:
    """The conditional upsert that sets (None: removes) one type's limit in the document as
    it was read: it applies only if nobody changed it since (its version `v`), so two
    operators changing different types at once both land (the loser reads and tries again)."""
    limits = read_limits(stored)
    limits.pop(job_type, None)
    if limit is not None:
        limits[job_type] = limit
    version = (stored or {}).get("v")
    entries = [{"type": t, **lim.wire()} for t, lim in sorted(limits.items())]
    fence: Filter = {"_id": LIMITS_ID, "v": version if isinstance(version, int) else None}
    return fence, {"$set": {"limits": entries, "v": (version or 0) + 1}}


# --- the claim lock and its accounting ----------------------------------------------------


def lock_id(job_type: str) -> dict[str, str]:
    """The `_id` of a type's claim lock in `<root>.limits` (beside the rate-limit counters)."""
    return {"slotsOf": job_type}


def acquire(job_type: str, token: ObjectId, now: datetime) -> tuple[Filter, Update]:
    """Take a type's claim lock if it is free or its holder's time ran out (an upsert: a
    lock held by another raises a duplicate key, which is "busy")."""
    fence: Filter = {
        "_id": lock_id(job_type),
        "$or": [{"holder": None}, {"until": {"$lte": now}}],
    }
    until = now + timedelta(milliseconds=LOCK_MS)
    return fence, {"$set": {"holder": token, "until": until, EXPIRE_AT: now + LOCK_KEPT}}


def release(
    job_type: str, token: ObjectId, bound: int | None, quotas: Sequence[Quota] = ()
) -> tuple[Filter, Update]:
    """Give a claim lock back (only if this token still holds it), leaving the accounting
    for the next holder: the bound on the running jobs (None: unknown, the next holder
    counts) and the quotas live now."""
    update: Update = {"$set": {"holder": None, "quotas": [q.stored() for q in quotas]}}
    if bound is None:
        update["$unset"] = {"bound": ""}
    else:
        update["$set"]["bound"] = bound
    return {"_id": lock_id(job_type), "holder": token}, update


@dataclass(frozen=True, slots=True)
class Quota:
    """Slots a process took in advance, to claim into without the lock until `until`."""

    token: ObjectId
    size: int
    until: datetime

    def stored(self) -> dict[str, Any]:
        return {"t": self.token, "n": self.size, "until": self.until}


@dataclass(frozen=True, slots=True)
class Accounts:
    """What a claim lock's document says when it is taken: an upper bound on the jobs of the
    type running (None: not known: the lock is new, was taken over from a holder that died,
    or its last holder failed), and the quotas still live."""

    bound: int | None
    quotas: tuple[Quota, ...]

    @property
    def reserved(self) -> int:
        """The slots the live quotas hold, used or not (a count leaves out the jobs claimed
        into them: `holding`)."""
        return sum(q.size for q in self.quotas)


def accounts(
    before: Mapping[str, Any] | None, now: datetime, given_up: ObjectId | None = None
) -> Accounts:
    """The accounting a taken lock held (its document as it was before it was taken), but
    for quotas that ran out and the one this process gives up (`given_up`: it claims into it
    no more; its jobs are counted from then on). The bound is kept only from a lock its
    holder gave back: one taken over from a holder that died may lack the jobs that holder
    claimed."""
    before = before or {}
    quotas = []
    for raw in before.get("quotas") or []:
        try:
            quota = Quota(raw["t"], int(raw["n"]), raw["until"])
        except (KeyError, TypeError, ValueError):
            continue
        live = isinstance(quota.until, datetime) and _aware(quota.until) > now
        if live and quota.token != given_up:
            quotas.append(quota)
    bound = before.get("bound")
    given_back = before.get("holder") is None
    known = given_back and isinstance(bound, int) and not isinstance(bound, bool)
    return Accounts(bound if known else None, tuple(quotas))


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


QUOTA_FACTOR: Final = 16
"""A quota is this many times the jobs a claim wants (at most QUOTA_MAX, at least what it
wants), so that a queue claiming one job at a time takes the lock once per 16 claims."""
QUOTA_MAX: Final = 64
QUOTA_MS: Final = 2_000
"""How long a quota lasts; it is claimed into only in its first half (QUOTA_USE_MS), so that
a claim started just before the end lands before another process recounts without it."""
QUOTA_USE_MS: Final = 1_000


def quota_size(limit: ConcurrencyLimit, bound: int, wanted: int) -> int:
    """The quota a claim takes when the limit is far from binding: all the jobs (running,
    and held in quotas) stay within half the limit; 0 when they would not (the claim then
    counts and claims under the lock)."""
    far = limit.max_running // 2 - bound
    if wanted > far:
        return 0
    return min(far, max(wanted, min(wanted * QUOTA_FACTOR, QUOTA_MAX)))


# --- the running jobs -----------------------------------------------------------------------


def holding(job_type: str, now: datetime, quotas: Sequence[Quota] = ()) -> Filter:
    """The jobs of a type that hold a slot now: running, with a lease that has not run out,
    or with none; but those claimed into these quotas (live ones, which account for them)."""
    query: Filter = {
        "type": job_type,
        "status": Status.RUNNING,
        "$or": [{"expiresAfter": {"$gt": now}}, {"expiresAfter": {"$exists": False}}],
    }
    if quotas:
        query[QUOTA] = {"$nin": [q.token for q in quotas]}
    return query


def holding_per_group(job_type: str, path: str, now: datetime) -> list[dict[str, Any]]:
    """The aggregation that counts the slots held per group value (`_id`, `n`)."""
    return [
        {"$match": holding(job_type, now)},
        {"$group": {"_id": f"${path}", "n": {"$sum": 1}}},
    ]


def room(limit: ConcurrencyLimit, held: int, wanted: int) -> int:
    """How many jobs a claim may take: what it wants, at most the free slots."""
    return max(0, min(wanted, limit.max_running - held))


def counts_by_group(rows: Sequence[Mapping[str, Any]]) -> dict[bytes, tuple[Any, int]]:
    """The aggregation's rows by group key: (the group's value, its running jobs)."""
    return {group_key(row.get("_id")): (row.get("_id"), int(row.get("n", 0))) for row in rows}


def excluding(query: Filter, path: str, values: Sequence[Any]) -> Filter | None:
    """The query without the jobs of these groups, or None if a value is not a scalar (an
    array or a document matches more than itself in a query: those are left to `choose`)."""
    if not values:
        return query
    if not all(isinstance(value, SCALARS) for value in values):
        return None
    return {**query, path: {"$nin": list(values)}}


def choose(
    candidates: Sequence[Mapping[str, Any]],
    path: str,
    running: Mapping[bytes, tuple[Any, int]],
    limit: ConcurrencyLimit,
    wanted: int,
) -> list[Id]:
    """Which candidates (in the usual claim order) a claim takes: fewest running first, at
    most `max_running` per group, at most `wanted` in all."""
    queues: dict[bytes, list[Id]] = {}
    for doc in candidates:
        queues.setdefault(group_key(group_of(doc, path)), []).append(doc["_id"])
    heap = [
        (running.get(key, (None, 0))[1], order, key)
        for order, key in enumerate(queues)
        if running.get(key, (None, 0))[1] < limit.max_running
    ]
    heapq.heapify(heap)
    taken: list[Id] = []
    next_of = dict.fromkeys(queues, 0)
    while heap and len(taken) < wanted:
        load, order, key = heapq.heappop(heap)
        taken.append(queues[key][next_of[key]])
        next_of[key] += 1
        if next_of[key] < len(queues[key]) and load + 1 < limit.max_running:
            heapq.heappush(heap, (load + 1, order, key))
    return taken
