"""Checks for arguments at the API boundary: each raises InvalidArgument naming the argument.

They run before any query is built, so bad input never reaches the database and never
changes stored data.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

import bson
from bson import ObjectId

from .constants import (
    FOREVER,
    JOB_LOG_LEVELS,
    JOB_PRIORITIES,
    RETRY_BACKOFF_METHODS,
    UNIQUE_ON_CONFLICT,
    LogLevel,
    OnConflict,
    RetryBackoff,
    Status,
)
from .document import (
    CronSchedule,
    JobDoc,
    check_json,
    check_storable,
    is_text,
    normalize_datetime,
    parse_doc,
)
from .errors import InvalidArgument, InvalidArgumentType
from .schedule import check_cron

T = TypeVar("T")
Id = ObjectId | str

MAX_IDS = 100_000
"""The most ids one call may name; bulk helpers split longer lists."""


def job_id(value: Any, name: str = "id") -> ObjectId | str:
    """An ObjectId or a non-empty string; anything else (a dict, a list, ...) is refused.

    A string of 24 hexadecimal digits is the ObjectId it spells: what `str(job.id)` gave a web
    page, a URL or a JSON client finds the job again. Every other string is a string id
    (job-collection's own are 17 characters, Meteor's `Random.id()`, so they are never taken
    for ObjectIds). A collection whose ids are 24-hex *strings* cannot be addressed by them."""
    if isinstance(value, ObjectId):
        return value
    if isinstance(value, str):
        if not is_text(value):
            raise InvalidArgumentType(name, "must be text (not bson Code, no lone surrogate)")
        if not value:
            raise InvalidArgument(name, "must not be an empty string")
        if len(value) == 24 and ObjectId.is_valid(value):
            return ObjectId(value)
        return value
    raise InvalidArgumentType(name, f"must be an ObjectId or a string, not {type(value).__name__}")


def job_ids(value: Any, name: str = "ids") -> list[ObjectId | str]:
    """One id or a list/tuple of ids, returned as a list without duplicates, order kept."""
    if isinstance(value, ObjectId | str):
        return [job_id(value, name)]
    if not isinstance(value, list | tuple):
        raise InvalidArgumentType(
            name, f"must be an id or a list of ids, not {type(value).__name__}"
        )
    if len(value) > MAX_IDS:
        raise InvalidArgument(name, f"names more than {MAX_IDS} ids")
    seen: dict[ObjectId | str, None] = {}
    for i, item in enumerate(value):
        seen[job_id(item, f"{name}[{i}]")] = None
    return list(seen)


def job_types(value: Any, name: str = "type") -> list[str]:
    """A non-empty type string or a non-empty list of them."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not items:
        raise InvalidArgumentType(name, "must be a non-empty string or a non-empty list of strings")
    for i, item in enumerate(items):
        if not isinstance(item, str) or not item:
            raise InvalidArgumentType(f"{name}[{i}]", "must be a non-empty string")
        if not is_text(item):
            raise InvalidArgumentType(
                f"{name}[{i}]", "must be text (not bson Code, no lone surrogate)"
            )
    return list(dict.fromkeys(items))


def integer(
    value: Any, name: str, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    """A real int (bool refused), within bounds."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentType(name, f"must be an integer, not {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise InvalidArgument(name, f"must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise InvalidArgument(name, f"must be <= {maximum}, got {value}")
    return value


def count(value: Any, name: str) -> int:
    """A non-negative integer, clamped to FOREVER (retries, repeats)."""
    return min(integer(value, name, minimum=0), FOREVER)


def number(value: Any, name: str, *, minimum: float | None = None) -> float:
    """A finite int or float (bool refused)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidArgumentType(name, f"must be a number, not {type(value).__name__}")
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        raise InvalidArgument(name, "is beyond 64 bits")  # float() of it may overflow
    if not math.isfinite(value):
        raise InvalidArgument(name, "must be finite")
    if minimum is not None and value < minimum:
        raise InvalidArgument(name, f"must be >= {minimum}, got {value}")
    return float(value)


def duration_ms(value: Any, name: str, *, minimum_ms: int = 0) -> int:
    """Seconds (int/float) or a timedelta, as whole milliseconds (rounded up)."""
    seconds = value.total_seconds() if isinstance(value, timedelta) else number(value, name)
    if seconds < 0:
        raise InvalidArgument(name, f"must not be negative, got {seconds}")
    ms = math.ceil(seconds * 1000)
    if ms > FOREVER:
        raise InvalidArgument(name, "is too long")
    if ms < minimum_ms:
        raise InvalidArgument(name, f"must be at least {minimum_ms / 1000} seconds")
    return ms


def aware_datetime(value: Any, name: str) -> datetime:
    """An aware datetime, normalised to UTC milliseconds; naive datetimes are refused."""
    if not isinstance(value, datetime):
        raise InvalidArgumentType(name, f"must be a datetime, not {type(value).__name__}")
    try:
        return normalize_datetime(value)
    except ValueError as exc:
        raise InvalidArgument(name, str(exc)) from None


def priority(value: Any, name: str = "priority") -> int:
    """An integer or one of the JOB_PRIORITIES names."""
    if isinstance(value, str):
        if value not in JOB_PRIORITIES:
            raise InvalidArgument(name, f"unknown priority {value!r}; use {list(JOB_PRIORITIES)}")
        return JOB_PRIORITIES[value]
    return integer(value, name, minimum=-(2**31), maximum=2**31 - 1)


def choice(value: Any, name: str, options: Iterable[T]) -> T:
    """One of a fixed set of values."""
    allowed = list(options)
    if value not in allowed:
        raise InvalidArgument(name, f"must be one of {allowed}, got {value!r}")
    return value  # type: ignore[no-any-return]


def log_level(value: Any, name: str = "level") -> LogLevel:
    return choice(value, name, JOB_LOG_LEVELS)


def backoff(value: Any, name: str = "backoff") -> RetryBackoff:
    return choice(value, name, RETRY_BACKOFF_METHODS)


def fraction(value: Any, name: str) -> float:
    """A number from 0 to 1."""
    checked = number(value, name)
    if not 0 <= checked <= 1:
        raise InvalidArgument(name, f"must be from 0 to 1, got {checked}")
    return checked


def boolean(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidArgumentType(name, f"must be True or False, not {type(value).__name__}")
    return value


def text(value: Any, name: str, *, max_length: int) -> str:
    if not isinstance(value, str):
        raise InvalidArgumentType(name, f"must be a string, not {type(value).__name__}")
    if len(value) > max_length:
        raise InvalidArgument(name, f"is longer than {max_length} characters")
    return value


MAX_KEY_LENGTH = 1024
"""The longest unique key (an index entry stays well within MongoDB's limits)."""


def user_id(value: Any, name: str = "user_id") -> int | str | ObjectId:
    """Who a job is for: an integer (0 for the system, as seed 003 has it), a non-empty
    string or an ObjectId."""
    if isinstance(value, ObjectId):
        return value
    if isinstance(value, str):
        if not value:
            raise InvalidArgument(name, "must not be empty")
        return text(value, name, max_length=MAX_KEY_LENGTH)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentType(
            name, f"must be an int, a string or an ObjectId, not {type(value).__name__}"
        )
    if not -(2**63) <= value < 2**63:
        raise InvalidArgument(name, "is beyond 64 bits")
    return value


def unique_key(value: Any, name: str = "key") -> str | None:
    """A unique job's key: None (one pending job per type and user) or a non-empty string."""
    if value is None:
        return None
    key = text(value, name, max_length=MAX_KEY_LENGTH)
    if not key:
        raise InvalidArgument(name, "must not be empty (None: one per type and user)")
    return key


def on_conflict(value: Any, name: str = "on_conflict") -> OnConflict:
    return choice(value, name, UNIQUE_ON_CONFLICT)


def unique_states(value: Any, name: str = "states") -> tuple[Status, ...]:
    """The statuses in which a unique job holds its key: a list of statuses (each once; the
    pending ones among them, which Unique checks)."""
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise InvalidArgumentType(name, "must be a list of statuses")
    states = tuple(Status(choice(s, f"{name}[{i}]", list(Status))) for i, s in enumerate(value))
    if len(set(states)) != len(states):
        raise InvalidArgument(name, "names a status twice")
    return states


def plain_object(value: Any, name: str) -> dict[str, Any]:
    """A dict MongoDB can store as given: no `$`/`.` keys, finite numbers, bounded nesting."""
    if not isinstance(value, dict):
        raise InvalidArgumentType(name, f"must be a dict, not {type(value).__name__}")
    try:
        check_storable(value, name)
    except ValueError as exc:
        raise InvalidArgument(name, str(exc)) from None
    return value


def checkpoint_state(value: Any, name: str = "state") -> Any:
    """A checkpoint's state: a JSON value (JSON_KINDS: dicts, lists, strings, numbers,
    booleans) MongoDB can store as given, not None (None is "no checkpoint"). Its size is
    the collection's to bound (Limits.check_checkpoint)."""
    if value is None:
        raise InvalidArgumentType(name, "must be a JSON value, not None")
    try:
        check_json(value, name)
    except ValueError as exc:
        raise InvalidArgument(name, str(exc)) from None
    return value


def wrap_value(value: Any, name: str) -> dict[str, Any]:
    """done/fail values: a dict is stored as is, anything else as {"value": value}."""
    return plain_object(value if isinstance(value, dict) else {"value": value}, name)


def job_doc(value: Any, name: str) -> JobDoc:
    """A job document given to a save: a JobDoc (re-checked where it can have changed in
    place) or a dict in the stored shape, validated."""
    if isinstance(value, JobDoc):
        # Saving never changes the given document (it stores fresh dicts made from it), so
        # it is used as given. What can change in place since the model validated it is
        # checked again.
        plain_object(value.data, f"{name}.data")
        for field in ("depends", "resolved"):
            for i, dep in enumerate(getattr(value, field)):
                job_id(dep, f"{name}.{field}[{i}]")
        return value
    if not isinstance(value, dict):
        raise InvalidArgumentType(name, f"must be a job document, not {type(value).__name__}")
    return parse_doc(value)


def saveable(value: Any, name: str) -> JobDoc:
    """A job document a save may store: waiting or paused, with a cron schedule that can be
    evaluated."""
    doc = job_doc(value, name)
    if doc.status not in (Status.WAITING, Status.PAUSED):
        raise InvalidArgument(
            f"{name}.status", f"a saved job must be waiting or paused, not {doc.status}"
        )
    if isinstance(doc.repeat_wait, CronSchedule):
        check_cron(doc.repeat_wait)
    return doc


def check_own_ids(
    docs: Sequence[JobDoc],
    new_ids: Sequence[Id | None],
    doc_names: Sequence[str],
    id_names: Sequence[str],
) -> None:
    """Each job of one save names a job of its own: no two save under the same id (both
    would be reported saved while one job is stored), and none depends on itself (it would
    wait forever). A job's own id is its `_id` (a resave) or the id it is inserted under
    (`jobId`/`jobIds[i]`); a new job without one is unique. InvalidArgument names the later
    of two duplicates and the earlier one."""
    seen: dict[Id, str] = {}
    for doc, new_id, doc_name, id_name in zip(docs, new_ids, doc_names, id_names, strict=True):
        own, where = (doc.id, f"{doc_name}._id") if doc.id is not None else (new_id, id_name)
        if own is None:
            continue
        if own in doc.depends:
            raise InvalidArgument(f"{doc_name}.depends", "a job cannot depend on itself")
        if own in seen:
            raise InvalidArgument(where, f"duplicates {seen[own]}")
        seen[own] = where


def check_results_size(
    results: Mapping[Any, Mapping[str, Any]],
    max_bytes: int,
    encode: Callable[[Mapping[str, Any]], bytes] = bson.encode,
) -> None:
    """Antecedents' results read together may be at most `max_bytes` BSON-encoded
    (InvalidArgument("max_bytes") naming their size otherwise)."""
    size = sum(len(encode(result)) for result in results.values())
    if size > max_bytes:
        raise InvalidArgument(
            "max_bytes", f"the results of {len(results)} antecedents are {size} bytes BSON-encoded"
        )
