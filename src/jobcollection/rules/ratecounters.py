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
TTL index a few windows after their window ends. A counter also records, when it is created,
the limit it counts against (`max`, and `per` in milliseconds: those of the first claim of
its window), so that the dashboard can say how close each limit is (`current`, `windows`);
counters written before they did (no `max`) still count, their limit unknown. Jobs over the
limit are not claimed: they stay ready for any worker, and the queue looks again when the
next window starts.

With `group_by` each group (a `data.` field, or "user": the job's user) has its own counter:
the claim reads the ready candidates' ids and groups first, reserves per group found among
them, then claims the reserved jobs by id.

The rules here are pure (windows, counter keys and updates, what a reservation granted; the
put-back of a rate-limited job is in transitions.py); `Limiter` (local/limiter.py) applies them
through the Store.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import bson

from ..model.document import assume_utc
from ..model.ratelimit import RateLimit, RateWindow
from ..model.schedule import add_ms
from ..model.types import Filter, Update

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EXPIRE_AT = "expireAt"
KEPT_WINDOWS = 3
"""Windows a counter is kept after its own (then the TTL index deletes it)."""
KEPT_MARGIN = timedelta(minutes=1)
"""And this much more, for the TTL monitor and the clocks of the machines that claim."""
SCAN_FACTOR = 4
"""With group_by, a claim reads up to this many candidates per job it wants, so that a group
at its limit does not hide the ready jobs of other groups."""


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


def reserve(count: int, end: datetime, limit: RateLimit) -> Update:
    """Take `count` slots of a window's counter (created with its expiry and the limit it
    counts against if new)."""
    expire = add_ms(end, limit.per_ms * KEPT_WINDOWS) + KEPT_MARGIN
    created = {EXPIRE_AT: expire, "max": limit.max, "per": limit.per_ms}
    return {"$inc": {"n": count}, "$setOnInsert": created}


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


def group_key(value: Any) -> bytes:
    """A hashable stand-in for a group value (groups may be documents or lists)."""
    return bson.encode({"v": value})


def current(now: datetime) -> tuple[Filter, list[tuple[str, int]]]:
    """The query and order of the counters that may be of a window current at `now`, those
    whose window ends last first (the TTL index on expireAt serves it). A current window ends
    after `now`, so its counter expires more than KEPT_MARGIN after it (with the last
    KEPT_WINDOWS windows of each limit, which `windows` leaves out); `_id.at` leaves out the
    claim locks kept in the same collection (rules/concurrency.py)."""
    query = {EXPIRE_AT: {"$gt": now + KEPT_MARGIN}, "_id.at": {"$exists": True}}
    return query, [(EXPIRE_AT, -1)]


def _per_ms(doc: Mapping[str, Any], start: datetime) -> int:
    """A counter's window length: as recorded, or, for a counter written before counters
    recorded it, from its expiry (`reserve`: its window's end plus KEPT_WINDOWS windows and
    KEPT_MARGIN, that is its start plus KEPT_WINDOWS + 1 windows and KEPT_MARGIN)."""
    per = doc.get("per")
    if isinstance(per, int) and per > 0:
        return per
    kept: int = (doc[EXPIRE_AT] - start - KEPT_MARGIN) // timedelta(milliseconds=1)
    return max(1, kept // (KEPT_WINDOWS + 1))


def windows(docs: Iterable[Mapping[str, Any]], now: datetime) -> list[RateWindow]:
    """The current windows of the limits these counters (as `current` read them) count for,
    one per limit key (types, group_by, window length), in the order of their types: the jobs
    started in each, and with group_by the groups seen and the fullest one. A counter that
    does not say its limit (written by an older version) gives max None."""
    found: dict[tuple[Any, ...], RateWindow] = {}
    for stored in docs:
        doc = assume_utc(stored)
        key, n = doc["_id"], doc.get("n")
        start, by = key.get("at"), key.get("by")
        if not (
            isinstance(start, datetime)
            and isinstance(by, str | None)
            and isinstance(key.get("types"), list)
            and isinstance(n, int)
            and isinstance(doc.get(EXPIRE_AT), datetime)
        ):
            continue  # not a counter this module wrote
        per_ms = _per_ms(doc, start)
        if not start <= now < add_ms(start, per_ms):
            continue
        maximum = doc.get("max") if isinstance(doc.get("max"), int) else None
        limit_key = (tuple(key["types"]), by, per_ms)
        seen = found.get(limit_key)
        if seen is None:
            seen = RateWindow(tuple(key["types"]), by, maximum, per_ms, start, 0)
        fuller = by is not None and (seen.groups == 0 or n > seen.fullest_n)
        found[limit_key] = RateWindow(
            types=seen.types,
            group_by=by,
            max=seen.max if seen.max is not None else maximum,
            per_ms=per_ms,
            start=start,
            started=seen.started + n,
            groups=seen.groups + (by is not None),
            fullest=key.get("group") if fuller else seen.fullest,
            fullest_n=n if fuller else seen.fullest_n,
        )
    return sorted(found.values(), key=lambda w: (w.types, w.group_by or "", w.per_ms))
