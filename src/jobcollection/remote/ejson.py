"""EJSON, Meteor's extended JSON, both ways: what the DDP endpoint (ddp.py) speaks.

    {"$date": <ms since the epoch>}               <-> an aware datetime (UTC)
    {"$type": "oid", "$value": "<24 hex>"}         <-> a bson ObjectId (Meteor's Mongo.ObjectID)
    {"$binary": "<base64>"}                        <-> bytes (a UUID is sent as its 16 bytes)
    {"$InfNaN": 1 | -1 | 0}                        <-> float inf, -inf, nan
    {"$escape": {...}}                             <-> a dict whose keys only look like the above

No Python EJSON library was found to depend on (python-ejson, meteor-ejson and ejson are not
on the package index this project installs from), so this is the small codec, after Meteor's
`ejson` package: an object is read as one of the forms above when it has exactly that form's keys
(`$date` alone, `$type` with `$value`, ...), and a plain dict of that shape is sent under
`$escape`. Any other `$type` is refused (ValueError), as Meteor refuses a custom type it does
not know; sending refuses (TypeError, naming where) what Meteor's EJSON has no form of, such
as BSON's regex, Decimal128, Timestamp, MinKey, MaxKey, DBRef or code. Dates beyond what
Python holds (JavaScript's `new Date(8640000000000000)`, meteor-job's `Job.foreverDate`) are
read as FOREVER_DATE, and FOREVER_DATE is sent as that date.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from uuid import UUID

from bson import Code, ObjectId

from ..model.constants import FOREVER_DATE

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
JS_FOREVER_MS: Final = 8_640_000_000_000_000
"""The latest JavaScript date, in ms (meteor-job's Job.foreverDate)."""
_LATEST_MS: Final = (datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC) - EPOCH) // timedelta(
    milliseconds=1
)
MAX_DEPTH: Final = 200
"""Nesting beyond this is refused (ValueError) rather than walked."""


def _form(value: Mapping[str, Any]) -> str | None:
    """Which EJSON form a JSON object has by its keys, if any (Meteor's matchJSONValue)."""
    size = len(value)
    if size == 1:
        for key in ("$date", "$binary", "$InfNaN", "$escape"):
            if key in value:
                return key
    elif size == 2 and "$type" in value and "$value" in value:
        return "$type"
    return None


# --- decoding --------------------------------------------------------------------------------


def from_json_value(value: Any, depth: int = 0) -> Any:
    """A value parsed from JSON with its EJSON forms decoded (ValueError if one is invalid)."""
    if depth > MAX_DEPTH:
        raise ValueError("nested too deeply")
    if isinstance(value, list):
        return [from_json_value(item, depth + 1) for item in value]
    if not isinstance(value, dict):
        return value
    form = _form(value)
    if form is None:
        return {key: from_json_value(item, depth + 1) for key, item in value.items()}
    if form == "$escape":
        inner = value["$escape"]
        if not isinstance(inner, dict):
            raise ValueError("$escape must hold an object")
        return {key: from_json_value(item, depth + 1) for key, item in inner.items()}
    if form == "$date":
        return _date(value["$date"])
    if form == "$binary":
        return _binary(value["$binary"])
    if form == "$InfNaN":
        sign = value["$InfNaN"]
        if sign not in (1, -1, 0) or isinstance(sign, bool):
            raise ValueError("$InfNaN must be 1, -1 or 0")
        return math.nan if sign == 0 else math.copysign(math.inf, sign)
    return _custom(value["$type"], value["$value"])


def _date(ms: Any) -> datetime:
    if isinstance(ms, bool) or not isinstance(ms, int | float) or not math.isfinite(ms):
        raise ValueError("$date must be a number of milliseconds")
    if ms > _LATEST_MS:
        return FOREVER_DATE
    try:
        return EPOCH + timedelta(milliseconds=int(ms))
    except OverflowError:
        raise ValueError(f"$date {ms} is before the year 1") from None


def _binary(text: Any) -> bytes:
    if not isinstance(text, str):
        raise ValueError("$binary must be a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        raise ValueError("$binary is not valid base64") from None


def _custom(kind: Any, value: Any) -> ObjectId:
    if kind != "oid":
        raise ValueError(f"custom EJSON type {kind!r} is not defined")
    if not isinstance(value, str) or not ObjectId.is_valid(value):
        raise ValueError("an oid's $value must be 24 hexadecimal digits")
    return ObjectId(value)


def loads(text: str | bytes) -> Any:
    """An EJSON text, decoded (ValueError if it is not JSON or an EJSON form is invalid)."""
    try:
        parsed = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"not JSON: {exc}") from None
    return from_json_value(parsed)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (EJSON sends it as $InfNaN)")


# --- encoding --------------------------------------------------------------------------------


def to_json_value(value: Any, depth: int = 0) -> Any:
    """A value as plain JSON values, its dates, ids, bytes (and UUIDs, as their 16 bytes) and
    non-finite floats in EJSON forms and its dicts that look like them escaped. TypeError for
    what EJSON has no form of (BSON's regex, Decimal128, Timestamp, MinKey, DBRef, code...,
    which a node.js client could not read), naming where: `data.price: EJSON has no form for
    Decimal128`."""
    try:
        return _to_json(value, depth)
    except _Unsendable as exc:
        raise TypeError("".join(reversed(exc.path)).lstrip(".") + exc.problem) from None


class _Unsendable(Exception):
    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.path: list[str] = []


def _to_json(value: Any, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise ValueError("nested too deeply")
    if value is None or type(value) is str or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return {"$InfNaN": 0 if math.isnan(value) else (1 if value > 0 else -1)}
    if isinstance(value, datetime):
        return {"$date": _millis(value)}
    if isinstance(value, ObjectId):
        return {"$type": "oid", "$value": str(value)}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$binary": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            try:
                out[str(key)] = _to_json(item, depth + 1)
            except _Unsendable as exc:
                exc.path.append(f".{key}")
                raise
        return {"$escape": out} if _form(value) is not None else out
    if isinstance(value, list | tuple):
        items = []
        for i, item in enumerate(value):
            try:
                items.append(_to_json(item, depth + 1))
            except _Unsendable as exc:
                exc.path.append(f"[{i}]")
                raise
        return items
    if isinstance(value, UUID):
        return {"$binary": base64.b64encode(value.bytes).decode("ascii")}
    if isinstance(value, str) and not isinstance(value, Code):
        return str(value)
    raise _Unsendable(f"{': ' if depth else ''}EJSON has no form for {type(value).__name__}")


def _millis(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # the driver's naive dates are UTC
    if moment >= FOREVER_DATE - timedelta(milliseconds=1):
        return JS_FOREVER_MS
    return (moment - EPOCH) // timedelta(milliseconds=1)


def dumps(value: Any) -> str:
    """A value as EJSON text (compact)."""
    return json.dumps(to_json_value(value), separators=(",", ":"), allow_nan=False)
