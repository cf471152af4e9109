"""The remote API's wire format: JSON with MongoDB Extended JSON for ids and dates.

Bodies are encoded and decoded with bson's `json_util`, so ObjectIds travel as `{"$oid": hex}`
and dates as `{"$date": milliseconds}`, decoded aware in UTC (any Extended JSON date form is
accepted). A method's parameters and
result are the method layer's (the original's names, camelCase options, milliseconds).

A job document travels as job-collection v1.x stores it, without `_private`: the settings this
library keeps there for a job (its cron schedule, retry extras, retention, user, unique key,
lineage, skipped runs, timeout) travel under `jobcollection`, by short names (`user`,
`schedule`, ...), and its bookkeeping never leaves the server. The server reads a given
document's `jobcollection` back into `_private` for the method layer, which keeps only those
settings (document.parse_doc).

Errors travel as `{"error": {"type": ..., "message": ..., ...}}` with an HTTP status, and are
raised on the client as the same exceptions (errors.py).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from datetime import UTC
from typing import Any, Final

from bson import json_util
from bson.json_util import DatetimeRepresentation, JSONMode, JSONOptions
from pymongo.errors import WriteError

from ..document import JobDoc
from ..errors import (
    DatabaseError,
    DuplicateJob,
    InvalidArgument,
    InvalidArgumentType,
    InvalidDocument,
    JobCollectionError,
    JobNotSaved,
    PermissionDenied,
)
from ..store import refused
from ..transitions import Due

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
_PREFIX: Final = "jobcollection"
PUBLIC_SETTINGS: Final = frozenset(
    {
        "jobcollectionSchedule",
        "jobcollectionRetry",
        "jobcollectionRemoveAfter",
        "jobcollectionSkipped",
        "jobcollectionLineage",
        "jobcollectionUser",
        "jobcollectionUnique",
        "jobcollectionTimeout",
        "jobcollectionTrace",
    }
)
"""The `_private` keys that hold a job's settings (what the Python API exposes); every other
key of this library's is bookkeeping."""


_DEFAULT = functools.partial(json_util.default, json_options=JSON_OPTIONS)


def dumps(value: Any) -> bytes:
    """A value (already wire-shaped, see `encode`) as a JSON body. The C encoder walks it,
    calling json_util only for what JSON has no form of (ids, dates), rather than
    json_util.dumps's walk of every value in Python first."""
    return json.dumps(value, default=_DEFAULT).encode()


def loads(body: bytes) -> Any:
    """A JSON body with Extended JSON values decoded; ValueError if it is not JSON."""
    try:
        return json_util.loads(body, json_options=JSON_OPTIONS)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except Exception as exc:  # JSON errors, and Extended JSON values that do not parse
        raise ValueError(f"{type(exc).__name__}: {exc}") from None


def _short(key: str) -> str:
    rest = key[len(_PREFIX) :]
    return rest[:1].lower() + rest[1:]


_LONG = {_short(key): key for key in PUBLIC_SETTINGS}


def encode_doc(doc: JobDoc) -> dict[str, Any]:
    """A job document as it leaves the server: v1.x's fields, and its settings apart."""
    stored = doc.to_mongo()
    private = stored.pop("_private", None) or {}
    settings = {_short(k): v for k, v in private.items() if k in PUBLIC_SETTINGS}
    if doc.unique is not None:  # what saving it does on a conflict travels with its key
        settings["unique"] = {**settings["unique"], "onConflict": doc.unique.on_conflict}
    if settings:
        stored[SETTINGS] = settings
    return stored


def decode_doc(raw: Mapping[str, Any]) -> JobDoc:
    """A job document the server sent (trusted: it validated it when it read it)."""
    fields = dict(raw)
    settings = fields.pop(SETTINGS, None)
    if isinstance(settings, dict):
        fields["_private"] = {_LONG[k]: v for k, v in settings.items() if k in _LONG}
    return JobDoc.from_mongo(fields, aware_dates=True)


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
    """A method's result, wire-shaped: job documents encoded, Due as an object."""
    if isinstance(value, JobDoc):
        return encode_doc(value)
    if isinstance(value, Due):
        return {"promoted": value.promoted, "nextDue": value.next_due}
    if isinstance(value, list | tuple):
        return [encode(item) for item in value]
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
        body.update(message=message, refused=refused(exc))
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
        raise DatabaseError(f"the server refused the write: {message}") from WriteError(
            message, 121
        )
    raise DatabaseError(f"the server answered {status}: {message}")
