"""job-collection v1.x's schema for a stored job document (SPEC B.1.2, seed 000's `validJobDoc`).

A v1.x application sharing a collection validates every job it reads with Meteor's `check`
against this closed pattern; a document that fails it breaks that application's `getJob`,
`getWork` and server. `v1_problems` lists what in a document would fail, in the pattern's own
terms (`_private` aside, which v1.x leaves to the server). conftest.py runs it over every
document the suite leaves stored.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from bson import ObjectId

STATUSES = {"waiting", "paused", "ready", "running", "failed", "cancelled", "completed"}
LOG_LEVELS = {"info", "success", "warning", "danger"}
BACKOFFS = {"constant", "exponential"}


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def valid_id(v: Any) -> bool:
    return isinstance(v, str | ObjectId)


def num_gte_zero(v: Any) -> bool:
    return _is_number(v) and v >= 0


def int_gte_zero(v: Any) -> bool:
    """v1.x's validIntGTEZero: a non-negative number without a fraction (not Match.Integer,
    so 2**53 passes)."""
    return num_gte_zero(v) and float(v).is_integer()


def int_gte_one(v: Any) -> bool:
    return int_gte_zero(v) and v >= 1


def match_integer(v: Any) -> bool:
    """Meteor's Match.Integer: a signed 32-bit integer."""
    return _is_number(v) and float(v).is_integer() and -(2**31) <= v < 2**31


def is_object(v: Any) -> bool:
    return isinstance(v, dict)


def is_date(v: Any) -> bool:
    return isinstance(v, datetime)


def _log_problems(log: Any) -> list[str]:
    if not isinstance(log, list):
        return ["log: not an array"]
    problems = []
    for i, entry in enumerate(log):
        where = f"log[{i}]"
        if not isinstance(entry, dict):
            problems.append(f"{where}: not an object")
            continue
        extra = set(entry) - {"time", "runId", "level", "message", "data"}
        if extra:
            problems.append(f"{where}: unknown keys {sorted(extra)}")
        if not is_date(entry.get("time")):
            problems.append(f"{where}.time: not a Date")
        if "runId" not in entry or not (entry["runId"] is None or valid_id(entry["runId"])):
            problems.append(f"{where}.runId: not an id or null")
        if entry.get("level") not in LOG_LEVELS:
            problems.append(f"{where}.level: {entry.get('level')!r}")
        if not isinstance(entry.get("message"), str):
            problems.append(f"{where}.message: not a string")
        if "data" in entry and not is_object(entry["data"]):
            problems.append(f"{where}.data: not an object")
    return problems


def _later_problems(v: Any) -> list[str]:
    if not isinstance(v, dict):
        return ["repeatWait: neither a non-negative integer nor a later.js schedule"]
    problems = []
    extra = set(v) - {"schedules", "exceptions"}
    if extra:
        problems.append(f"repeatWait: unknown keys {sorted(extra)} in a later.js schedule")
    schedules = v.get("schedules")
    if not isinstance(schedules, list) or not all(is_object(s) for s in schedules):
        problems.append("repeatWait.schedules: not an array of objects")
    if "exceptions" in v and not (
        isinstance(v["exceptions"], list) and all(is_object(e) for e in v["exceptions"])
    ):
        problems.append("repeatWait.exceptions: not an array of objects")
    return problems


REQUIRED: dict[str, Callable[[Any], bool]] = {
    "runId": lambda v: v is None or valid_id(v),
    "type": lambda v: isinstance(v, str),
    "status": lambda v: v in STATUSES,
    "data": is_object,
    "priority": match_integer,
    "depends": lambda v: isinstance(v, list) and all(valid_id(i) for i in v),
    "resolved": lambda v: isinstance(v, list) and all(valid_id(i) for i in v),
    "after": is_date,
    "updated": is_date,
    "progress": lambda v: (
        isinstance(v, dict)
        and set(v) == {"completed", "total", "percent"}
        and all(num_gte_zero(x) for x in v.values())
    ),
    "retries": int_gte_zero,
    "retried": int_gte_zero,
    "retryUntil": is_date,
    "retryWait": int_gte_zero,
    "retryBackoff": lambda v: v in BACKOFFS,
    "repeats": int_gte_zero,
    "repeated": int_gte_zero,
    "repeatUntil": is_date,
    "created": is_date,
}
OPTIONAL: dict[str, Callable[[Any], bool]] = {
    "_id": lambda v: v is None or valid_id(v),
    "result": is_object,
    "failures": lambda v: isinstance(v, list) and all(is_object(f) for f in v),
    "workTimeout": int_gte_one,
    "expiresAfter": is_date,
    "repeatRetries": int_gte_zero,
}


def v1_problems(doc: dict[str, Any]) -> list[str]:
    """What in a stored job document v1.x's `validJobDoc` would refuse (empty: valid)."""
    problems = []
    extra = set(doc) - set(REQUIRED) - set(OPTIONAL) - {"log", "repeatWait", "_private"}
    if extra:
        problems.append(f"unknown top-level keys {sorted(extra)}")
    for key, valid in REQUIRED.items():
        if key not in doc:
            problems.append(f"{key}: missing")
        elif not valid(doc[key]):
            problems.append(f"{key}: {doc[key]!r} does not match")
    for key, valid in OPTIONAL.items():
        if key in doc and not valid(doc[key]):
            problems.append(f"{key}: {doc[key]!r} does not match")
    if "log" in doc:
        problems.extend(_log_problems(doc["log"]))
    if "repeatWait" not in doc:
        problems.append("repeatWait: missing")
    elif not int_gte_zero(doc["repeatWait"]):
        problems.extend(_later_problems(doc["repeatWait"]))
    return problems
