"""Finding jobs: the filter of a `find_jobs` call and its page cursors, as pure functions.

A query lists jobs newest first (descending `_id`) and pages by keyset: a page's cursor is the
last id it holds, and the next page asks for ids below it (`{_id: {$lt: cursor}}`), so a page
costs the same however deep it is, where `skip` would scan every job before it. The `_id`
index serves the order; the other conditions are checked on the jobs it reads (a page of a rare
filter in a very large collection reads far; README "Finding jobs" names the index to add).

MongoDB compares ids of one BSON type at a time, and in descending order ObjectIds come before
strings: the pages go through the ObjectId-keyed jobs, then the string-keyed ones (a collection
shared with job-collection v1.x holds both). A cursor names its phase: `o<hex>` or `s<id>`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from bson import ObjectId

from . import validation as v
from .constants import JOB_STATUSES
from .document import USER, check_storable
from .errors import InvalidArgument, InvalidArgumentType
from .transitions import Filter, Id

MAX_PAGE: Final = 1_000
"""The most jobs one page may hold."""
ORDER: Final = (("_id", -1),)
STRINGS: Final = {"$type": "string"}


@dataclass(frozen=True, slots=True)
class JobQuery:
    """What a find_jobs call asks for, checked."""

    conditions: Filter
    limit: int

    def filter(self, cursor: str | None) -> Filter:
        """The filter of the page after `cursor` (None: the first page)."""
        if cursor is None:
            return dict(self.conditions)
        last = decode_cursor(cursor)
        bound: dict[str, Any] = {"$lt": last}
        if isinstance(last, str):
            bound.update(STRINGS)
        return {**self.conditions, "_id": bound}

    def strings(self) -> Filter:
        """The filter of the first page of string-keyed jobs (after the ObjectId ones)."""
        return {**self.conditions, "_id": dict(STRINGS)}


def job_query(
    type: str | Sequence[str] | None,
    status: str | Sequence[str] | None,
    user_id: Any,
    created_before: datetime | None,
    data: Mapping[str, Any] | None,
    limit: int,
) -> JobQuery:
    """The conditions of a find_jobs call (InvalidArgument naming a bad one)."""
    conditions: dict[str, Any] = {}
    if type is not None:
        types = v.job_types(type, "type")
        conditions["type"] = types[0] if len(types) == 1 else {"$in": types}
    if status is not None:
        statuses = [status] if isinstance(status, str) else list(status)
        if not statuses:
            raise InvalidArgument("status", "must name at least one status")
        checked = [v.choice(s, f"status[{i}]", JOB_STATUSES) for i, s in enumerate(statuses)]
        conditions["status"] = checked[0] if len(checked) == 1 else {"$in": checked}
    if user_id is not None:
        conditions[USER] = v.user_id(user_id)
    if created_before is not None:
        conditions["created"] = {"$lt": v.aware_datetime(created_before, "created_before")}
    if data is not None:
        conditions.update(_data_conditions(data))
    return JobQuery(conditions, v.integer(limit, "limit", minimum=1, maximum=MAX_PAGE))


def _data_conditions(data: Mapping[str, Any]) -> dict[str, Any]:
    """`data` as equality conditions on the jobs' data: `{"customer.id": 7}` matches jobs
    whose data has that value at that path. Values are matched as given, never as operators."""
    if not isinstance(data, Mapping):
        raise InvalidArgumentType("data", "must be a dict of data paths and values")
    out: dict[str, Any] = {}
    for path, value in data.items():
        name = f"data[{path!r}]"
        if not isinstance(path, str) or not path or path.startswith("$"):
            raise InvalidArgument(name, "a path must be a non-empty string not starting with $")
        if any(not part for part in path.split(".")):
            raise InvalidArgument(name, "a path must not have empty parts")
        try:
            check_storable({"value": value}, name)
        except ValueError as exc:
            raise InvalidArgument(name, str(exc)) from None
        out[f"data.{path}"] = {"$eq": value}
    return out


def encode_cursor(job_id: Id) -> str:
    """The cursor of the page after the job with this id."""
    return f"o{job_id}" if isinstance(job_id, ObjectId) else f"s{job_id}"


def decode_cursor(cursor: Any) -> Id:
    """The id a cursor names (InvalidArgument("after") if it is not a cursor)."""
    if isinstance(cursor, str) and len(cursor) > 1:
        kind, rest = cursor[0], cursor[1:]
        if kind == "o" and ObjectId.is_valid(rest) and len(rest) == 24:
            return ObjectId(rest)
        if kind == "s":
            return rest
    raise InvalidArgument("after", "must be the `next` cursor of a page find_jobs returned")
