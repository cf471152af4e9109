"""Finding and counting jobs: the query of a `find_jobs` call, its page cursors, and the
values find_jobs and stats answer with, as pure data and functions.

A query lists jobs newest first (descending `_id`; `oldest`: ascending) and pages by keyset: a
page's cursor is the last id it holds, and the next page asks for ids below it (`{_id: {$lt:
cursor}}`; oldest first, above it), so a page
costs the same however deep it is, where `skip` would scan every job before it. The `_id`
index serves the order; the other conditions are checked on the jobs it reads (a page of a rare
filter in a very large collection reads far; README "Finding jobs" names the index to add).

MongoDB compares ids of one BSON type at a time, and in descending order ObjectIds come before
strings: the pages go through the ObjectId-keyed jobs, then the string-keyed ones (a collection
shared with job-collection v1.x holds both; oldest first, the other way round). A cursor names
its phase: `o<hex>` or `s<id>`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from bson import ObjectId

from . import validation as v
from .constants import JOB_STATUSES
from .document import BATCHES, CALLBACK_OF, SCHEDULED_ID, USER, WORKFLOW, JobDoc, check_storable
from .errors import InvalidArgument, InvalidArgumentType
from .schedules import schedule_id
from .types import Filter, Id

MAX_PAGE: Final = 1_000
"""The most jobs one page may hold."""
MAX_DATA_PATHS: Final = 100
"""The most data paths one query may name."""
ORDER: Final = (("_id", -1),)
OLDEST_ORDER: Final = (("_id", 1),)
STRINGS: Final = {"$type": "string"}
OBJECT_IDS: Final = {"$type": "objectId"}


@dataclass(frozen=True, slots=True)
class JobQuery:
    """What a find_jobs call asks for, checked: the conditions as given (None: any) and the
    page size. One value from the Python API to the store and across the remote API
    (`wire`, and the method layer's jobFind reads it back)."""

    types: tuple[str, ...] | None
    statuses: tuple[str, ...] | None
    user_id: int | str | ObjectId | None
    created_before: datetime | None
    data: dict[str, Any] | None
    """Data paths (`customer.id`) and the values the jobs' data must hold there."""
    limit: int
    workflow: ObjectId | str | None = None
    """The workflow the jobs were saved in (None: any)."""
    batch: ObjectId | str | None = None
    """A batch the jobs belong to (None: any)."""
    callback_of: ObjectId | str | None = None
    """The batch the jobs are callbacks of (None: any)."""
    schedule: str | None = None
    """The schedule object the jobs are runs of (None: any)."""
    oldest: bool = False
    """Oldest first (ascending `_id`) rather than newest first."""

    @property
    def order(self) -> tuple[tuple[str, int], ...]:
        """The pages' sort: by `_id`, newest or oldest first (the `_id` index serves both)."""
        return OLDEST_ORDER if self.oldest else ORDER

    @property
    def conditions(self) -> Filter:
        """The query's MongoDB filter (without the page's bound on `_id`)."""
        out: dict[str, Any] = {}
        if self.types is not None:
            out["type"] = self.types[0] if len(self.types) == 1 else {"$in": list(self.types)}
        if self.statuses is not None:
            statuses = list(self.statuses)
            out["status"] = statuses[0] if len(statuses) == 1 else {"$in": statuses}
        if self.user_id is not None:
            out[USER] = self.user_id
        if self.created_before is not None:
            out["created"] = {"$lt": self.created_before}
        for path, value in (self.data or {}).items():
            out[f"data.{path}"] = {"$eq": value}
        if self.workflow is not None:  # (stated as the partial index's filter is)
            out[WORKFLOW] = {"$eq": self.workflow, "$exists": True}
        if self.batch is not None:
            out[BATCHES] = {"$eq": self.batch, "$exists": True}
        if self.callback_of is not None:
            out[CALLBACK_OF] = {"$eq": self.callback_of, "$exists": True}
        if self.schedule is not None:
            out[SCHEDULED_ID] = {"$eq": self.schedule, "$exists": True}
        return out

    def filter(self, cursor: str | None) -> Filter:
        """The filter of the page after `cursor` (None: the first page)."""
        if cursor is None:
            return self.conditions
        last = decode_cursor(cursor)
        bound: dict[str, Any] = {"$gt" if self.oldest else "$lt": last}
        if isinstance(last, str):
            bound.update(STRINGS)
        return {**self.conditions, "_id": bound}

    def first_phase(self, cursor: str) -> bool:
        """Whether a cursor is in the first phase (ObjectIds newest first, strings oldest
        first), which the second phase's ids follow once it runs out."""
        return cursor.startswith("s" if self.oldest else "o")

    def second_phase(self) -> Filter:
        """The filter of the first page of the second phase: string-keyed jobs after the
        ObjectId ones (newest first), or ObjectId-keyed after the string ones (oldest)."""
        return {**self.conditions, "_id": dict(OBJECT_IDS if self.oldest else STRINGS)}

    def wire(self, after: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
        """The query as jobFind's parameters: a filter of the conditions given (`type`,
        `status`, `userId`, `createdBefore`, `data`, `workflow`, `batch`, `callbackOf`,
        `schedule`) and the options `limit`, `after` and `oldest` (only when true, so that
        a server of an earlier version takes the newest-first queries it knows)."""
        given: dict[str, Any] = {
            "type": None if self.types is None else list(self.types),
            "status": None if self.statuses is None else list(self.statuses),
            "userId": self.user_id,
            "createdBefore": self.created_before,
            "data": self.data,
            "workflow": self.workflow,
            "batch": self.batch,
            "callbackOf": self.callback_of,
            "schedule": self.schedule,
        }
        options: dict[str, Any] = {"limit": self.limit}
        if self.oldest:
            options["oldest"] = True
        if after is not None:
            options["after"] = after
        return {k: value for k, value in given.items() if value is not None}, options


@dataclass(frozen=True, slots=True)
class DocPage:
    """A page of find_jobs as the service answers it: the documents, newest first, and the
    cursor of the next page (None: the last). `JobsAPI.find_jobs` wraps them in Jobs."""

    docs: list[JobDoc]
    next: str | None


@dataclass(frozen=True, slots=True)
class QueueStats:
    """What `stats()` read: the jobs of each type in each status, and since when the oldest
    ready job of each type has been due."""

    counts: dict[tuple[str, str], int]
    """(type, status) -> how many jobs (statuses with none are left out)."""
    oldest_ready: dict[str, datetime]
    """type -> the due date (`after`) of its oldest ready job (types with none left out)."""
    at: datetime
    """When they were read (the collection's clock)."""

    def oldest_ready_age(self, job_type: str) -> float:
        """Seconds the oldest ready job of a type has waited since it fell due (0: none)."""
        due = self.oldest_ready.get(job_type)
        return 0.0 if due is None else max(0.0, (self.at - due).total_seconds())


def job_query(
    type: str | Sequence[str] | None,
    status: str | Sequence[str] | None,
    user_id: Any,
    created_before: datetime | None,
    data: Mapping[str, Any] | None,
    limit: int,
    workflow: Any = None,
    batch: Any = None,
    callback_of: Any = None,
    schedule: Any = None,
    oldest: bool = False,
) -> JobQuery:
    """The checked query of a find_jobs call (InvalidArgument naming a bad argument)."""
    types = None if type is None else tuple(dict.fromkeys(v.job_types(type, "type")))
    statuses = None
    if status is not None:
        try:
            if isinstance(status, Mapping):
                raise TypeError
            given = [status] if isinstance(status, str) else list(status)
        except TypeError:
            raise InvalidArgumentType("status", "must be a status or a list of them") from None
        if not given:
            raise InvalidArgument("status", "must name at least one status")
        checked = [v.choice(s, f"status[{i}]", JOB_STATUSES) for i, s in enumerate(given)]
        statuses = tuple(dict.fromkeys(checked))
    return JobQuery(
        types=types,
        statuses=statuses,
        user_id=None if user_id is None else v.user_id(user_id),
        created_before=None
        if created_before is None
        else v.aware_datetime(created_before, "created_before"),
        data=None if data is None else _data_conditions(data),
        limit=v.integer(limit, "limit", minimum=1, maximum=MAX_PAGE),
        workflow=None if workflow is None else v.job_id(workflow, "workflow"),
        batch=None if batch is None else v.job_id(batch, "batch"),
        callback_of=None if callback_of is None else v.job_id(callback_of, "callback_of"),
        schedule=None if schedule is None else schedule_id(schedule, "schedule"),
        oldest=v.boolean(oldest, "oldest"),
    )


def _data_conditions(data: Mapping[str, Any]) -> dict[str, Any]:
    """`data` checked as conditions on the jobs' data: `{"customer.id": 7}` matches jobs whose
    data has that value at that path. Values are matched as given, never as operators; at
    most MAX_DATA_PATHS paths."""
    if not isinstance(data, Mapping):
        raise InvalidArgumentType("data", "must be a dict of data paths and values")
    if len(data) > MAX_DATA_PATHS:
        raise InvalidArgument("data", f"names more than {MAX_DATA_PATHS} paths")
    out: dict[str, Any] = {}
    for path, value in data.items():
        name = f"data[{path!r}]"
        if not isinstance(path, str) or not path:
            raise InvalidArgument(name, "a path must be a non-empty string")
        if any(not part or part.startswith("$") or "\0" in part for part in path.split(".")):
            raise InvalidArgument(name, "a path's parts must be non-empty, without $ first or NUL")
        try:
            check_storable({"value": value}, name)
        except ValueError as exc:
            raise InvalidArgument(name, str(exc)) from None
        out[path] = value
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
