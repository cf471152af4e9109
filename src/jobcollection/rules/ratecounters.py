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

The rules here are pure (windows, counter keys and updates, what a reservation granted; the
put-back of a rate-limited job is in transitions.py); `Limiter` (local/limiter.py) applies them
through the Store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import bson

from ..model.ratelimit import RateLimit
from ..model.schedule import add_ms
from ..model.types import Update

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


def group_key(value: Any) -> bytes:
    """A hashable stand-in for a group value (groups may be documents or lists)."""
    return bson.encode({"v": value})
