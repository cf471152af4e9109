"""The rules of unique jobs (deduplication): what a save stores to hold a key, whether a job
found holding one still does, how it lets go, and what "debounce" and "keep_latest" write to it.

Pure functions of (document, now). A job holds its key under UNIQUE while it is pending (a
claim or a cancel unsets it, see transitions) and, if it holds it past pending, under
UNIQUE_HELD too; a partial unique index on each keeps two jobs from holding one key at once,
however many processes save. Time and statuses past pending end a hold without a write of
their own: a save that meets a job whose hold is over (`holds` is False) lets go of its key
for it (`release`, one write fenced on the status it read) and inserts again, so the index
still decides between racing saves.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from ..model.constants import Status
from ..model.document import UNIQUE, UNIQUE_HELD, UNIQUE_POLICY, JobDoc, assume_utc
from ..model.schedule import add_ms
from ..model.types import Filter, Id, Update

_UNIQUE_KEY: Final = UNIQUE.split(".", 1)[1]
_HELD_KEY: Final = UNIQUE_HELD.split(".", 1)[1]
_POLICY_KEY: Final = UNIQUE_POLICY.split(".", 1)[1]

HOLDER: Final = {"_id": 1, "status": 1, "created": 1, UNIQUE: 1, UNIQUE_POLICY: 1}
"""What a save reads of the job holding its key: enough to judge whether it still holds it."""


def bookkeeping(doc: JobDoc) -> dict[str, Any]:
    """The keys a new unique job stores in `_private` beside UNIQUE (which to_mongo writes):
    UNIQUE_HELD if it holds its key past pending, UNIQUE_POLICY if its hold is not the
    default."""
    unique = doc.unique
    if unique is None:
        return {}
    out: dict[str, Any] = {}
    if unique.held_beyond_pending:
        out[_HELD_KEY] = doc.unique_key()
    if (policy := unique.policy()) is not None:
        out[_POLICY_KEY] = policy
    return out


def earliest_start(doc: JobDoc, now: datetime) -> datetime | None:
    """When a new job saved with "debounce" may start at the earliest: `period` from now
    (each later save of its key pushes it back again). None for other jobs."""
    unique = doc.unique
    if unique is None or unique.on_conflict != "debounce" or unique.period_ms is None:
        return None
    return add_ms(now, unique.period_ms)


def holding(key: dict[str, Any], beyond_pending: bool) -> Filter:
    """The job holding `key` (stating the partial index's filter, so that it serves the
    read): pending (UNIQUE), or past pending (UNIQUE_HELD)."""
    return {UNIQUE_HELD if beyond_pending else UNIQUE: {"$eq": key, "$exists": True}}


def holds(holder: dict[str, Any], now: datetime) -> bool:
    """Whether a job found holding a key (read with HOLDER) still holds it, by the policy it
    was saved with: within its period of its creation, and pending and not started (it has
    UNIQUE) or, if it holds past pending, in one of its states."""
    private = holder.get("_private") or {}
    policy = private.get(_POLICY_KEY) or {}
    period = policy.get("period")
    created = assume_utc(holder.get("created"))
    if period is not None and isinstance(created, datetime) and add_ms(created, period) <= now:
        return False
    if not_started(holder):
        return True
    return holder.get("status") in policy.get("states", ())


def not_started(holder: dict[str, Any]) -> bool:
    """Whether a job found holding a key (read with HOLDER) holds it as pending, not
    started (so a newer save may replace it or give it its data)."""
    return _UNIQUE_KEY in (holder.get("_private") or {})


def release(holder: dict[str, Any]) -> tuple[Filter, Update]:
    """Let go of the key of a job whose hold is over (`holds` said so of what was read): one
    write fenced on the status read, so that a job that moved meanwhile (into one of its
    states again: a retry, a restart) is judged again rather than let go of."""
    return (
        {"_id": holder["_id"], "status": holder.get("status")},
        {"$unset": {UNIQUE: "", UNIQUE_HELD: ""}},
    )


def refresh(
    holder: Id, key: dict[str, Any], data: dict[str, Any], start: datetime | None, now: datetime
) -> list[tuple[Filter, Update]]:
    """The writes, tried in order until one applies, that give the pending job holding `key`
    a newer save's data ("keep_latest"), and with `start` ("debounce") push its start back
    to then at the earliest: a ready job goes back to waiting (the job server promotes it
    when due), a paused one stays paused. Fenced on its still holding the key: none applies
    once it has started or been cancelled."""
    fence: Filter = {"_id": holder, UNIQUE: key}
    update: Update = {"$set": {"data": data, "updated": now}}
    if start is None:
        return [({**fence, "status": {"$in": list(Status.PENDING)}}, update)]
    pushed: Update = {**update, "$max": {"after": start}}
    waiting: Update = {**pushed, "$set": {**update["$set"], "status": Status.WAITING}}
    return [
        ({**fence, "status": {"$in": [Status.WAITING, Status.READY]}}, waiting),
        ({**fence, "status": Status.PAUSED}, pushed),
    ]
