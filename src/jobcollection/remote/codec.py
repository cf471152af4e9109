"""The remote API's wire format: JSON with MongoDB Extended JSON for ids and dates.

Bodies are encoded and decoded with bson's `json_util`, so ObjectIds travel as `{"$oid": hex}`
and dates as `{"$date": milliseconds}`, decoded aware in UTC (any Extended JSON date form is
accepted). A method's parameters and
result are the method layer's (the original's names, camelCase options, milliseconds).

A body is decoded to plain values only: JSON's, ObjectIds, dates, binary data and decimals
(`$numberLong` gives a plain int). Extended JSON that would give a value of another BSON type
(`$code`, `$regex`, `$ref`, `$minKey`, `$maxKey`, `$timestamp`, ...), some of which pass
for a string or a dict, is refused as malformed, as are `NaN` and `Infinity` and strings that
are not Unicode (a lone surrogate `\ud800`, which no database can store).

A job document travels as job-collection v1.x stores it, without `_private`: the settings this
library keeps there for a job (its cron schedule, retry extras, retention, user, unique key,
lineage, skipped runs, timeout) travel under `jobcollection`, by short names (`user`,
`schedule`, ...), and its bookkeeping never leaves the server. The server reads a given
document's `jobcollection` back into `_private` for the method layer, which keeps only those
settings (document.parse_doc). A page of jobFind travels as `{"jobs": [document, ...],
"next": cursor | null}`; the counts of jobStats as `{"counts": [{"type", "status", "count"}],
"oldestReady": [{"type", "after"}], "at": date}` (lists: a job type may be any string, one
starting with `$` too, which as a key would read as Extended JSON).

Errors travel as `{"error": {"type": ..., "message": ..., ...}}` with an HTTP status, and are
raised on the client as the same exceptions (model/errors.py); a write the server refused travels as
a DatabaseError with `"refused": true` (and its `code`, when known) and is raised as
WriteRefused.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Final

from bson import Decimal128, Int64, ObjectId, json_util
from bson.json_util import DatetimeRepresentation, JSONMode, JSONOptions

from ..model.concurrency import ConcurrencyLimit, limit_from_wire
from ..model.constants import Status
from ..model.document import SENT_SETTINGS, JobDoc, Unique
from ..model.errors import (
    DatabaseError,
    DuplicateJob,
    InvalidArgument,
    InvalidArgumentType,
    InvalidDocument,
    JobCollectionError,
    JobNotSaved,
    PermissionDenied,
    WriteRefused,
)
from ..model.ops import Returns
from ..model.queries import DocPage, QueueStats
from ..model.schedules import Schedule
from ..model.types import Due, Paused
from ..model.workers import WIRE_KEYS, WorkerInfo, registration

JSON_OPTIONS: Final = JSONOptions(
    json_mode=JSONMode.LEGACY,
    datetime_representation=DatetimeRepresentation.LEGACY,
    tz_aware=True,
    tzinfo=UTC,
)
"""Dates as `{"$date": <milliseconds since the epoch>}` (the form EJSON uses too): decoding
an ISO date string costs a strptime per date, the largest part of a claim's decoding."""

SETTINGS: Final = "jobcollection"
"""The key a job's public settings travel under (its `_private` never leaves the server)."""
PUBLIC_SETTINGS: Final = frozenset(ext.key for ext in SENT_SETTINGS)
"""The `_private` keys that hold a job's settings the remote API sends (what the Python API
exposes, but the server's own record of who claimed it, document.WORKER); every other key of
this library's is bookkeeping (document.EXTENSIONS)."""
_SHORT: Final = {ext.key: ext.short for ext in SENT_SETTINGS}
"""Each setting's `_private` key by the name it travels under (`removeAfter`)."""
_LONG: Final = {ext.short: ext.key for ext in SENT_SETTINGS}


_DEFAULT = functools.partial(json_util.default, json_options=JSON_OPTIONS)


def dumps(value: Any) -> bytes:
    """A value (already wire-shaped, see `encode`) as a JSON body. The C encoder walks it,
    calling json_util only for what JSON has no form of (ids, dates), rather than
    json_util.dumps's walk of every value in Python first."""
    return json.dumps(value, default=_DEFAULT).encode()


_PLAIN: Final = (ObjectId, datetime, bytes, Decimal128)
"""What an Extended JSON object may decode to, besides a dict (Binary is bytes)."""
_SURROGATE: Final = re.compile(rb"\\u[dD][89a-fA-F]")
"""A surrogate written as a JSON escape: the body is checked for lone ones (_unicode)."""


class _Refused(ValueError):
    """A body that is JSON, but not what this API accepts."""


def _object(value: dict[str, Any]) -> Any:
    """An object of the body: a dict, or the plain value of an Extended JSON form."""
    if not any(key[:1] == "$" for key in value):
        return value
    decoded = json_util.object_hook(value, JSON_OPTIONS)
    if type(decoded) is dict:
        return decoded
    if isinstance(decoded, Int64):
        return int(decoded)
    if isinstance(decoded, float):  # $numberDouble
        return _finite(decoded)
    if isinstance(decoded, _PLAIN):
        return decoded
    if decoded is None or type(decoded) in (int, str):  # $undefined, $numberInt, $symbol
        return decoded
    raise _Refused(f"Extended JSON {type(decoded).__name__} values are not accepted")


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise _Refused(f"{value} is not a finite number")
    return value


def _float(text: str) -> float:
    """A JSON number with a fraction or exponent (1e999 is too large, not infinite)."""
    return _finite(float(text))


def _constant(name: str) -> Any:
    raise _Refused(f"{name} is not a JSON number")


def _unicode(value: Any) -> None:
    """Refuse strings (and keys) with a lone surrogate, at any depth (walked without
    recursion: the parser bounded the depth, not this)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode()
            except UnicodeEncodeError:
                raise _Refused("a string holds a lone surrogate (not Unicode)") from None
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def loads(body: bytes) -> Any:
    """A JSON body with Extended JSON values decoded (see the module docstring); ValueError
    if it is not JSON, or not what this API accepts."""
    try:
        value = json.loads(body, object_hook=_object, parse_float=_float, parse_constant=_constant)
        if _SURROGATE.search(body):
            _unicode(value)
        return value
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except _Refused:
        raise
    except Exception as exc:  # JSON errors, and Extended JSON values that do not parse
        raise ValueError(f"{type(exc).__name__}: {exc}") from None


def encode_doc(doc: JobDoc) -> dict[str, Any]:
    """A job document as it leaves the server: v1.x's fields, and its settings apart."""
    stored = doc.to_mongo()
    private = stored.pop("_private", None) or {}
    settings = {_SHORT[k]: v for k, v in private.items() if k in _SHORT}
    if doc.unique is not None:  # what saving it does on a conflict travels with its key
        settings["unique"] = {**settings["unique"], **_unique_save(doc.unique)}
    if settings:
        stored[SETTINGS] = settings
    return stored


def _unique_save(unique: Unique) -> dict[str, Any]:
    """The settings of a unique job's save beside its key: its mode, and its period and
    states where not the default (document._unique_in reads them back)."""
    out: dict[str, Any] = {"onConflict": unique.on_conflict}
    if unique.period_ms is not None:
        out["period"] = unique.period_ms
    if unique.states != Status.PENDING:
        out["states"] = [str(status) for status in unique.states]
    return out


def decode_doc(raw: Mapping[str, Any]) -> JobDoc:
    """A job document the server sent (trusted: it validated it when it read it)."""
    fields = dict(raw)
    settings = fields.pop(SETTINGS, None)
    if isinstance(settings, dict):
        fields["_private"] = {_LONG[k]: v for k, v in settings.items() if k in _LONG}
    return JobDoc.from_mongo(fields, aware_dates=True)


def decode_page(raw: Any) -> DocPage:
    """A page of jobFind as the server sent it (DatabaseError if it is not one)."""
    try:
        following = raw["next"]
        if following is not None and not isinstance(following, str):
            raise TypeError("next is not a cursor")
        return DocPage([decode_doc(doc) for doc in raw["jobs"]], following)
    except (KeyError, TypeError, ValueError) as exc:
        raise DatabaseError(f"the remote API's jobFind answer is not a page: {exc!r}") from None


def decode_stats(raw: Any) -> QueueStats:
    """The counts of jobStats as the server sent them (DatabaseError if they are not)."""
    try:
        counts = {(str(c["type"]), str(c["status"])): int(c["count"]) for c in raw["counts"]}
        oldest = {str(o["type"]): o["after"] for o in raw["oldestReady"]}
        at = raw["at"]
        if not all(isinstance(d, datetime) for d in [at, *oldest.values()]):
            raise TypeError("a date is not a date")
        return QueueStats(counts, oldest, at)
    except (KeyError, TypeError, ValueError) as exc:
        raise DatabaseError(f"the remote API's jobStats answer is not counts: {exc!r}") from None


def decode_result(returns: Returns, raw: Any) -> Any:
    """An operation's answer as the server sent it, by the operation's shape (ops.Returns)."""
    if returns is Returns.DOCS:
        return [decode_doc(doc) for doc in raw]
    if returns is Returns.PAGE:
        return decode_page(raw)
    if returns is Returns.STATS:
        return decode_stats(raw)
    if returns is Returns.DUE:
        return Due(promoted=int(raw["promoted"]), next_due=raw.get("nextDue"))
    if returns is Returns.PAUSED:
        return Paused(tuple(map(str, raw["types"])), raw["all"] is True)
    if returns is Returns.WORKERS:
        return [_worker(item) for item in raw]
    if returns is Returns.LIMITS:
        return {str(job_type): limit_from_wire(limit) for job_type, limit in raw.items()}
    if returns is Returns.SCHEDULES:
        if isinstance(raw, list):
            return [Schedule.from_wire(item) for item in raw]
        return Schedule.from_wire(raw)
    return raw


def _worker(raw: Mapping[str, Any]) -> WorkerInfo:
    """A registration as jobWorkers sent it (trusted: the server wrote it)."""
    return replace(
        registration({k: value for k, value in raw.items() if k in WIRE_KEYS}),
        user=raw.get("user"),
        kind=str(raw.get("kind", "remote")),
        started=raw.get("started"),
        last_seen=raw.get("lastSeen"),
    )


def inbound_doc(raw: Any, name: str) -> Any:
    """A job document a client sent, for the method layer: its settings put back under
    `_private`. A client may not write `_private` itself, nor settings this library does not
    have (InvalidArgument naming them); anything that is not a dict is left to the method
    layer to refuse."""
    if not isinstance(raw, dict):
        return raw
    if "_private" in raw:
        raise InvalidArgument(
            f"{name}._private", f"is kept by the server; give settings in {SETTINGS}"
        )
    if SETTINGS not in raw:
        return raw
    fields = dict(raw)
    settings = fields.pop(SETTINGS)
    if not isinstance(settings, dict):
        raise InvalidArgumentType(f"{name}.{SETTINGS}", "must be an object of settings")
    unknown = sorted(str(k) for k in settings if k not in _LONG)
    if unknown:
        raise InvalidArgument(
            f"{name}.{SETTINGS}", f"unknown settings {unknown}; use {sorted(_LONG)}"
        )
    fields["_private"] = {_LONG[k]: v for k, v in settings.items()}
    return fields


def inbound_params(method: str, params: list[Any]) -> list[Any]:
    """The params of a call as the method layer takes them: job documents' settings under
    `_private` (inbound_doc)."""
    if method == "jobSave" and params:
        return [inbound_doc(params[0], "doc"), *params[1:]]
    if method == "jobSaveMany" and params and isinstance(params[0], list):
        docs = [inbound_doc(d, f"docs[{i}]") for i, d in enumerate(params[0])]
        return [docs, *params[1:]]
    return params


def encode(value: Any) -> Any:
    """A method's result, wire-shaped: job documents encoded; Due, a page of jobFind and the
    counts of jobStats as objects (see decode_page, decode_stats)."""
    if isinstance(value, JobDoc):
        return encode_doc(value)
    if isinstance(value, Due):
        return {"promoted": value.promoted, "nextDue": value.next_due}
    if isinstance(value, Paused):
        return {"types": list(value.types), "all": value.every}
    if isinstance(value, WorkerInfo):
        return {
            **value.wire(),
            "user": value.user,
            "kind": value.kind,
            "started": value.started,
            "lastSeen": value.last_seen,
        }
    if isinstance(value, Schedule):
        return value.wire()
    if isinstance(value, DocPage):
        return {"jobs": [encode_doc(doc) for doc in value.docs], "next": value.next}
    if isinstance(value, QueueStats):
        return {
            "counts": [
                {"type": job_type, "status": status, "count": n}
                for (job_type, status), n in value.counts.items()
            ],
            "oldestReady": [
                {"type": job_type, "after": after} for job_type, after in value.oldest_ready.items()
            ],
            "at": value.at,
        }
    if isinstance(value, list | tuple):
        return [encode(item) for item in value]
    if isinstance(value, dict) and any(isinstance(v, ConcurrencyLimit) for v in value.values()):
        return {key: item.wire() for key, item in value.items()}
    return value


# --- errors ---------------------------------------------------------------------------------

_STATUS: Final[tuple[tuple[type[Exception], int], ...]] = (
    (PermissionDenied, 403),
    (DuplicateJob, 409),
    (InvalidArgument, 400),
    (InvalidDocument, 400),
    (JobNotSaved, 400),
    (DatabaseError, 503),
)


def error_status(exc: Exception) -> int:
    """The HTTP status of an error a method raised (500: not one of the library's)."""
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return 500


def error_body(exc: Exception) -> dict[str, Any]:
    """What a client is told of an error: the library's own errors in full; of a database
    error whether the server refused the write (retrying cannot help) or its outcome is
    unknown, and the library's words but not the driver's; of anything else only that it
    happened (details stay in the server's log)."""
    if not isinstance(exc, JobCollectionError):
        return {"type": "InternalError", "message": "internal server error"}
    body: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, InvalidArgument):
        body.update(argument=exc.argument, problem=exc.problem)
    elif isinstance(exc, DuplicateJob):
        body.update(key=exc.key, holder=exc.holder)
    elif isinstance(exc, DatabaseError):  # the driver's words stay in the server's log
        message = "database error" if exc.__cause__ is not None else str(exc)
        # A WriteRefused travels as a refused DatabaseError, which every client reads.
        body.update(type="DatabaseError", message=message, refused=isinstance(exc, WriteRefused))
        if isinstance(exc, WriteRefused) and exc.code is not None:
            body.update(code=exc.code)
    return body


def raise_error(status: int, body: Any) -> None:
    """Raise on the client the error a server answered with."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        error = {"type": "InternalError", "message": f"HTTP {status}"}
    kind, message = error.get("type"), str(error.get("message", f"HTTP {status}"))
    if kind == "InvalidArgumentType":
        raise InvalidArgumentType(str(error.get("argument")), str(error.get("problem")))
    if kind == "InvalidArgument":
        raise InvalidArgument(str(error.get("argument")), str(error.get("problem")))
    if kind == "InvalidDocument":
        raise InvalidDocument(message)
    if kind == "JobNotSaved":
        raise JobNotSaved(message)
    if kind == "DuplicateJob":
        raise DuplicateJob(dict(error.get("key") or {}), error.get("holder"))
    if status in (401, 403):
        raise PermissionDenied(message)
    if kind == "DatabaseError" and error.get("refused"):
        code = error.get("code")
        raise WriteRefused(
            f"the server refused the write: {message}",
            code if isinstance(code, int) and not isinstance(code, bool) else None,
        )
    raise DatabaseError(f"the server answered {status}: {message}")
