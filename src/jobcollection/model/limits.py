"""Bounds on everything a job can accumulate, so no caller can grow a document without limit.

A MongoDB document holds at most 16 MiB. A job's document grows with its log (every claim,
failure, promotion and `job.log()` adds an entry), its failures, and whatever data, result
and error values callers store. `Limits` bounds each of them; the defaults keep the largest
possible job well under 16 MiB (see `Limits.worst_case_bytes`).

- Log entries and failures are capped as they are written: every `$push` onto `log` or
  `failures` becomes `{"$each": [...], "$slice": -N}`, so the newest N are kept and the oldest
  dropped in the same atomic update. A job saved with a longer local log keeps its newest N.
- Values (job data, results, errors, log data) are measured BSON-encoded and refused with
  `InvalidArgument` before anything is written, as is a log message that is too long.
- `max_jobs` bounds how many jobs one `get_work` call may claim; larger requests are clamped
  (a worker asking for "as many as possible" still gets a bounded batch).

The core (local/core.py) applies these checks to every call, from Python or through the
method layer.

Give a JobCollection other limits with `JobCollection(collection, limits=Limits(...))`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import bson
from bson.codec_options import DEFAULT_CODEC_OPTIONS, CodecOptions

from .errors import InvalidArgument, InvalidArgumentType

if TYPE_CHECKING:
    from .document import JobDoc

MAX_BSON_BYTES = 16 * 1024 * 1024
"""The largest document MongoDB stores."""

_FIXED_FIELDS_BYTES = 64 * 1024
"""Generous room for a job's fixed-size fields (status, dates, counters, progress, ids)."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-collection bounds on what one job may hold and one call may ask for."""

    max_log_entries: int = 200
    """Log entries kept per job; older entries are dropped as new ones are written."""
    max_failures: int = 50
    """Failure records kept per job (the newest ones)."""
    max_message_length: int = 10_000
    """Characters in one log message."""
    max_data_bytes: int = 1024 * 1024
    """BSON-encoded bytes of a job's data, and separately of its result."""
    max_error_bytes: int = 64 * 1024
    """BSON-encoded bytes of one failure's error value (a JobQueue failure with its
    traceback fits: the queue keeps at most 2,000 characters of message and 10,000 of
    traceback)."""
    max_log_data_bytes: int = 8 * 1024
    """BSON-encoded bytes of one log entry's data."""
    max_checkpoint_bytes: int = 16 * 1024
    """BSON-encoded bytes of a job's checkpoint (`job.checkpoint(state)`): a position to
    resume from, not a store of results."""
    max_jobs: int = 10_000
    """Jobs one get_work call may claim; larger requests are clamped to it."""
    max_depends: int = 1_000
    """Antecedents one job may wait on, and resolved antecedents it may be saved with."""

    def __post_init__(self) -> None:
        for name in (
            "max_log_entries",
            "max_failures",
            "max_message_length",
            "max_data_bytes",
            "max_error_bytes",
            "max_log_data_bytes",
            "max_checkpoint_bytes",
            "max_jobs",
            "max_depends",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidArgumentType(name, f"must be an integer, not {type(value).__name__}")
            if value < 1:
                raise InvalidArgument(name, f"must be >= 1, got {value}")
        if self.worst_case_bytes() > MAX_BSON_BYTES:
            raise InvalidArgument(
                "limits",
                f"allow a job of {self.worst_case_bytes()} bytes; MongoDB stores at most "
                f"{MAX_BSON_BYTES} bytes per document",
            )

    def worst_case_bytes(self) -> int:
        """An upper bound on the BSON size of a job that stays within these limits."""
        log_entry = 4 * self.max_message_length + self.max_log_data_bytes + 128  # 4 B/char
        failure = self.max_error_bytes + 64
        depends = self.max_depends * 2 * 32  # `depends` plus `resolved`, ids of up to 24 bytes
        return (
            _FIXED_FIELDS_BYTES
            + 3 * self.max_data_bytes  # data, result and _private
            + self.max_checkpoint_bytes
            + self.max_log_entries * log_entry
            + self.max_failures * failure
            + depends
        )

    def push_caps(self) -> dict[str, int]:
        """The arrays capped on every write, and how many of their newest items are kept."""
        return {"log": self.max_log_entries, "failures": self.max_failures}

    # --- checks at the boundary -----------------------------------------------------------------

    def check_doc(self, doc: JobDoc, name: str = "doc", codec: Codec = None) -> None:
        """A job document given to jobSave: its data, local log, failures, antecedents and
        resolved antecedents. Values are measured with `codec`, the codec options of the
        collection they are stored in (pymongo's defaults if None)."""
        _check_size(doc.data, f"{name}.data", self.max_data_bytes, codec)
        _check_size(doc.result, f"{name}.result", self.max_data_bytes, codec)
        for i, failure in enumerate(doc.failures or []):
            _check_size(failure, f"{name}.failures[{i}]", self.max_error_bytes, codec)
        for i, entry in enumerate(doc.log or []):
            self.check_message(entry.message, f"{name}.log[{i}].message")
            _check_size(entry.data, f"{name}.log[{i}].data", self.max_log_data_bytes, codec)
        # `resolved` is bounded like `depends`: saves store it as given and resolving only
        # moves ids over from `depends`, so the two together never hold more than twice
        # max_depends ids (as worst_case_bytes counts them).
        for field in ("depends", "resolved"):
            if len(getattr(doc, field)) > self.max_depends:
                raise InvalidArgument(
                    f"{name}.{field}", f"names more than {self.max_depends} antecedents"
                )
        _check_size(doc.private, f"{name}._private", self.max_data_bytes, codec)

    def check_message(self, message: str, name: str = "message") -> None:
        """A log message (InvalidArgument `name` if it is longer than max_message_length)."""
        if len(message) > self.max_message_length:
            raise InvalidArgument(
                name, f"is longer than {self.max_message_length} characters ({len(message)})"
            )

    def check_result(self, result: Mapping[str, Any], codec: Codec = None) -> None:
        """A done() result (InvalidArgument "result" if it is too large or cannot be stored)."""
        _check_size(result, "result", self.max_data_bytes, codec)

    def check_error(self, error: Mapping[str, Any], codec: Codec = None) -> None:
        """A fail() error value."""
        _check_size(error, "error", self.max_error_bytes, codec)

    def check_checkpoint(self, state: Any, codec: Codec = None) -> None:
        """A checkpoint's state (InvalidArgument "state" if it is larger than
        max_checkpoint_bytes BSON-encoded, measured as the value of a one-key document)."""
        _check_size({"state": state}, "state", self.max_checkpoint_bytes, codec)

    def check_log(self, message: str, data: Mapping[str, Any] | None, codec: Codec = None) -> None:
        """A log line: its message and data."""
        self.check_message(message)
        _check_size(data, "data", self.max_log_data_bytes, codec)


DEFAULT_LIMITS = Limits()

Codec = CodecOptions[Any] | None


def _check_size(
    value: Mapping[str, Any] | None, name: str, limit: int, codec: Codec = None
) -> None:
    if not value:  # None, or {}: nothing to measure (an empty document is 5 bytes)
        return
    size = encoded_size(value, name, codec)
    if size > limit:
        raise InvalidArgument(name, f"is {size} bytes BSON-encoded; the limit is {limit}")


def encoded_size(value: Mapping[str, Any], name: str, codec: Codec = None) -> int:
    """The BSON-encoded size of a document; InvalidArgument if it cannot be encoded at all
    (with these codec options: a `uuid.UUID` needs a uuid_representation, for example)."""
    try:
        return len(bson.encode(value, codec_options=codec or DEFAULT_CODEC_OPTIONS))
    except (bson.errors.BSONError, OverflowError, TypeError, ValueError) as exc:
        raise InvalidArgument(name, f"cannot be stored: {exc}") from None


def cap_pushes(update: Mapping[str, Any], caps: Mapping[str, int]) -> dict[str, Any]:
    """The update with every `$push` onto a capped array turned into `$each` + `$slice: -N`.

    Pure: returns a new update (the given one is not changed). A push that already uses
    `$each` keeps its items and gets the slice (an existing negative `$slice` is tightened,
    never loosened).
    """
    push = update.get("$push")
    if push is None or not any(field in push for field in caps):
        return dict(update)
    capped: dict[str, Any] = {}
    for field, value in push.items():
        if field not in caps:
            capped[field] = value
            continue
        keep = caps[field]
        if isinstance(value, Mapping) and "$each" in value:
            spec = dict(value)
            current = spec.get("$slice")
            spec["$slice"] = max(current, -keep) if isinstance(current, int) else -keep
            capped[field] = spec
        else:
            capped[field] = {"$each": [value], "$slice": -keep}
    return {**update, "$push": capped}


def cap_arrays(doc: Mapping[str, Any], caps: Mapping[str, int]) -> dict[str, Any]:
    """A document to insert with each capped array cut to its newest N items (pure)."""
    out = dict(doc)
    for field, keep in caps.items():
        value = out.get(field)
        if isinstance(value, list) and len(value) > keep:
            out[field] = value[-keep:]
    return out
