"""A strict test backend: the in-memory database, refusing what MongoDB and pymongo refuse.

mongomock-motor is lenient: it applies conflicting updates, stores `$`-prefixed and dotted
keys, keeps documents of any size, ignores codec options and answers any query without an
index. `StrictCollection` is a Motor-style proxy over one of its collections that implements
the calls jobcollection makes (and those the tests make) and refuses what a real deployment
would, raising what pymongo raises there:

1. conflicting update paths (a path twice, or a path and its prefix)        -> code 40
2. `$slice`/`$sort`/`$position` without `$each`, unknown `$push` modifiers  -> code 52 / 2
3. a replacement given to an update method (pymongo: ValueError), an update mixing operators
   with fields or naming an unknown operator                              -> code 9
4. `$`-prefixed or dotted keys in stored values, at any depth              -> code 52 / 57
5. a document over 16 MiB: insert -> DocumentTooLarge (client-side, as pymongo);
   update -> code 17419, and the write is not applied
6. an UpdateMany/DeleteMany inside bulk_write (the batch is no longer a retryable write)
                                                                           -> StrictViolation
7. values travel through BSON as on the wire: what bson cannot encode with the collection's
   codec options is refused, dates are stored in UTC to the millisecond, and documents come
   back decoded with the proxy's codec options (naive UTC by default; `with_options` may ask
   for tz_aware/tzinfo/datetime_conversion, as with pymongo)
8. every filter and sort the library sends must be served by one of its indexes (see
   `query_served`); violations are recorded in REGISTRY and fail the test at teardown
9. with `sharded=True`, what a mongos of MongoDB 5.0/6.x refuses for a collection sharded on
   `{_id: "hashed"}`; `hello` then answers as a mongos does
10. sessions and transactions, as far as one process can model them (`StrictSession`): a
   command given a session of another client is refused as pymongo refuses it; inside a
   transaction, what MongoDB does not allow there (createIndexes on an existing collection,
   distinct on a sharded one) is refused with code 263, an error aborts the transaction
   (the next command and the commit fail with NoSuchTransaction, 251), and an abort undoes
   the transaction's writes. Not modelled: isolation (other readers see a transaction's
   writes before its commit, and an abort also undoes other writes made meanwhile to the
   collections it wrote), write conflicts, the 60 s lifetime limit.

Server refusals raise pymongo's exceptions (WriteError, OperationFailure, BulkWriteError,
DuplicateKeyError, DocumentTooLarge) with the server's codes; an unordered bulk write applies
the operations that are not refused, as MongoDB does. Rules about reliability rather than
acceptance raise StrictViolation (an AssertionError) and are also recorded in REGISTRY, so
the test fails even when the library swallows the exception.

The suite uses this backend when `strict_mode()` says so (the JOBCOLLECTION_STRICT variable):
see `memory_database`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bson
from bson import ObjectId
from bson.codec_options import CodecOptions, DatetimeConversion
from pymongo import DeleteMany, DeleteOne, InsertOne, ReturnDocument, UpdateMany
from pymongo import UpdateOne as UpdateOneOp
from pymongo.errors import (
    BulkWriteError,
    DocumentTooLarge,
    DuplicateKeyError,
    InvalidOperation,
    OperationFailure,
    WriteError,
)
from pymongo.results import (
    BulkWriteResult,
    DeleteResult,
    InsertManyResult,
    InsertOneResult,
    UpdateResult,
)

import jobcollection
from jobcollection import testing

Document = dict[str, Any]
Sort = list[tuple[str, int]]

# --- the switch ---------------------------------------------------------------------------

STRICT_ENV = "JOBCOLLECTION_STRICT"
STRICT_DEFAULT = "1"
"""The mode when JOBCOLLECTION_STRICT is unset: strict. `JOBCOLLECTION_STRICT=0` runs the
suite on plain mongomock-motor, `=sharded` through the sharded rules."""


def strict_mode() -> str | None:
    """The backend the suite's in-memory fixtures use: None (plain mongomock-motor),
    "strict", or "sharded" (strict, and refusing what a mongos refuses). From the
    JOBCOLLECTION_STRICT variable: unset/""/"0" off, "sharded", anything else strict."""
    value = os.environ.get(STRICT_ENV, STRICT_DEFAULT).strip().lower()
    if value in ("", "0", "off", "false", "no"):
        return None
    return "sharded" if value == "sharded" else "strict"


def strict_database(inner: Any, *, sharded: bool = False) -> StrictDatabase:
    """A strict proxy over a mongomock-motor database."""
    return StrictDatabase(inner, sharded=sharded)


def memory_database(name: str = "jobcollection") -> Any:
    """The suite's drop-in for `jobcollection.testing.memory_database`: a fresh in-memory
    database, behind the strict proxy when strict_mode() says so, else exactly the plain one."""
    mode = strict_mode()
    inner = testing.memory_database(name)
    return inner if mode is None else StrictDatabase(inner, sharded=mode == "sharded")


# --- errors -------------------------------------------------------------------------------


class StrictViolation(AssertionError):
    """Something the server accepts but that breaks a guarantee the library makes."""


CODE_NAMES = {
    2: "BadValue",
    9: "FailedToParse",
    40: "ConflictingUpdateOperators",
    52: "DollarPrefixedFieldName",
    57: "DottedFieldName",
    61: "ShardKeyNotFound",
    67: "CannotCreateIndex",
    72: "InvalidOptions",
    11000: "DuplicateKey",
    17419: "Location17419",
}


class Refused(Exception):
    """The server refusing one operation; raised to callers as pymongo raises it."""

    def __init__(self, code: int, errmsg: str) -> None:
        super().__init__(errmsg)
        self.code = code
        self.errmsg = errmsg

    def entry(self, index: int) -> Document:
        """The `writeErrors` entry of a bulk write."""
        return {"index": index, "code": self.code, "errmsg": self.errmsg}

    def write_error(self) -> WriteError:
        """As insert_one/update_one/delete_one raise it."""
        return WriteError(self.errmsg, self.code, self.entry(0))

    def command_error(self) -> OperationFailure:
        """As a command (findAndModify, createIndexes) raises it."""
        details = {
            "ok": 0.0,
            "errmsg": self.errmsg,
            "code": self.code,
            "codeName": CODE_NAMES.get(self.code, ""),
        }
        return OperationFailure(self.errmsg, self.code, details)


# --- rules on update documents ------------------------------------------------------------

UPDATE_OPERATORS = frozenset(
    {
        "$currentDate",
        "$inc",
        "$min",
        "$max",
        "$mul",
        "$rename",
        "$set",
        "$setOnInsert",
        "$unset",
        "$addToSet",
        "$pop",
        "$pull",
        "$push",
        "$pullAll",
        "$bit",
    }
)
STORED_VALUE_OPERATORS = ("$set", "$setOnInsert", "$max", "$min")
"""Operators whose values are stored as given (`$push`/`$addToSet` are checked item by item)."""


def check_update_document(update: Any) -> None:
    """Rule 3, client side: pymongo refuses a replacement (or an empty update) given to an
    update method before sending anything (pymongo.common.validate_ok_for_update)."""
    if isinstance(update, list):
        raise NotImplementedError("the strict backend does not emulate pipeline updates")
    if not isinstance(update, Mapping):
        raise TypeError(f"update must be an instance of dict or a Mapping, not {type(update)}")
    if not update:
        raise ValueError("update cannot be empty")
    if not str(next(iter(update))).startswith("$"):
        raise ValueError("update only works with $ operators")


def check_update_operators(update: Mapping[str, Any]) -> None:
    """Rule 3, server side: an update mixing operators with fields, naming an unknown
    operator, or giving an operator something else than a document is refused (code 9).
    https://www.mongodb.com/docs/manual/reference/operator/update/"""
    for operator, argument in update.items():
        if operator not in UPDATE_OPERATORS:
            raise Refused(
                9,
                f"Unknown modifier: {operator}. Expected a valid update modifier or "
                "pipeline-style update specified as an array",
            )
        if not isinstance(argument, Mapping):
            raise Refused(
                9,
                f"Modifiers operate on fields but we found type {type(argument).__name__} "
                f"instead. For example: {{$mod: {{<field>: ...}}}} not {{{operator}: ...}}",
            )


def check_conflicting_paths(update: Mapping[str, Any]) -> None:
    """Rule 1. One update may not touch a path twice, nor a path and a path inside it, in
    the same operator or in two: "Updating the path 'a.b' would create a conflict at 'a'"
    (code 40, ConflictingUpdateOperators). The $set/$unset page states it ("you cannot
    ... the same field"): https://www.mongodb.com/docs/manual/reference/operator/update/set/
    and the server enforces it for every operator pair (UpdateObjectNode::parseAndMerge)."""
    seen: list[tuple[str, ...]] = []
    for operator, argument in update.items():
        paths = [str(p) for p in argument]
        if operator == "$rename":
            paths += [str(target) for target in argument.values()]
        for path in paths:
            parts = tuple(path.split("."))
            for other in seen:
                common = min(len(parts), len(other))
                if parts[:common] == other[:common]:
                    raise Refused(
                        40,
                        f"Updating the path '{path}' would create a conflict at "
                        f"'{'.'.join(parts[:common])}'",
                    )
            seen.append(parts)


PUSH_MODIFIERS = frozenset({"$each", "$slice", "$sort", "$position"})


def check_array_modifiers(update: Mapping[str, Any]) -> None:
    """Rule 2. `$slice`, `$sort` and `$position` only work alongside `$each` (without it the
    document is pushed as a value, and its `$`-prefixed field is not valid for storage);
    `$push` knows no other modifier and `$addToSet` only `$each`; `$each` takes an array.
    https://www.mongodb.com/docs/manual/reference/operator/update/push/#modifiers
    https://www.mongodb.com/docs/manual/reference/operator/update/slice/ ("Trying to use the
    $slice modifier without the $each modifier results in an error.")"""
    for operator in ("$push", "$addToSet"):
        for path, value in update.get(operator, {}).items():
            if not isinstance(value, Mapping):
                continue
            modifiers = [str(k) for k in value if str(k).startswith("$")]
            if not modifiers:
                continue
            if "$each" not in value:
                raise Refused(
                    52,
                    f"The dollar ($) prefixed field '{modifiers[0]}' in '{path}.{modifiers[0]}' "
                    "is not valid for storage.",
                )
            if not isinstance(value["$each"], list):
                raise Refused(
                    2,
                    f"The argument to $each in {operator} must be an array but it was of type: "
                    f"{type(value['$each']).__name__}",
                )
            allowed = PUSH_MODIFIERS if operator == "$push" else {"$each"}
            extra = [str(k) for k in value if k not in allowed]
            if extra and operator == "$push":
                raise Refused(2, f"Unrecognized clause in $push: {extra[0]}")
            if extra:
                raise Refused(2, f"Found unexpected fields after $each in $addToSet: {value}")


def check_storable(value: Any, path: str = "") -> None:
    """Rule 4. No `$`-prefixed or dotted field names in stored values, at any depth.
    https://www.mongodb.com/docs/manual/reference/limits/#mongodb-limit-Restrictions-on-Field-Names
    MongoDB 5.0 relaxed this for inserts (https://www.mongodb.com/docs/manual/core/dot-dollar-considerations/)
    but not for update operators, and v1.x documents never hold such keys: the library's own
    rule is the older, stricter one, kept here (the errors are those of MongoDB 4.4)."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            name = str(key)
            where = f"{path}.{name}" if path else name
            if name.startswith("$"):
                raise Refused(
                    52,
                    f"The dollar ($) prefixed field '{name}' in '{where}' is not valid for "
                    "storage.",
                )
            if "." in name:
                raise Refused(
                    57, f"The dotted field '{name}' in '{where}' is not valid for storage."
                )
            check_storable(item, where)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            check_storable(item, f"{path}.{i}")


def check_update_values(update: Mapping[str, Any]) -> None:
    """Rule 4 applied to an update: the values it stores."""
    for operator in STORED_VALUE_OPERATORS:
        for path, value in update.get(operator, {}).items():
            check_storable(value, str(path))
    for operator in ("$push", "$addToSet"):
        for path, value in update.get(operator, {}).items():
            items = value["$each"] if isinstance(value, Mapping) and "$each" in value else [value]
            for item in items:
                check_storable(item, str(path))


def check_update(update: Mapping[str, Any]) -> None:
    """Rules 1 to 4 (server side) on one update document that pymongo would send."""
    check_update_operators(update)
    check_array_modifiers(update)
    check_conflicting_paths(update)
    check_update_values(update)


def add_to_set_once(update: Document) -> Document:
    """`$addToSet` with `$each` adds each value once, even when `$each` repeats it (mongomock
    adds the repeats); the update with `$each` lists deduplicated, by BSON value.
    https://www.mongodb.com/docs/manual/reference/operator/update/addToSet/"""
    for path, value in update.get("$addToSet", {}).items():
        if isinstance(value, dict) and isinstance(value.get("$each"), list):
            seen: set[bytes] = set()
            once = []
            for item in value["$each"]:
                key = bson.encode({"v": item})
                if key not in seen:
                    seen.add(key)
                    once.append(item)
            update["$addToSet"][path] = {**value, "$each": once}
    return update


# --- rule 5: document size -------------------------------------------------------------------

MAX_BSON_SIZE = 16 * 1024 * 1024
"""https://www.mongodb.com/docs/manual/reference/limits/#mongodb-limit-BSON-Document-Size"""


def check_insert_size(size: int) -> None:
    """Rule 5 for inserts: pymongo refuses a document over the server's maxBsonObjectSize
    (16 MiB) before sending it (pymongo.errors.DocumentTooLarge)."""
    if size > MAX_BSON_SIZE:
        raise DocumentTooLarge(
            f"BSON document too large ({size} bytes) - the connected server supports "
            f"BSON document sizes up to {MAX_BSON_SIZE} bytes."
        )


def check_updated_size(doc: Mapping[str, Any]) -> None:
    """Rule 5 for updates: the server refuses an update whose result is over 16 MiB."""
    if len(bson.encode(doc)) > MAX_BSON_SIZE:
        raise Refused(17419, f"Resulting document after update is larger than {MAX_BSON_SIZE}")


# --- rule 6: retryable bulk writes ------------------------------------------------------------


def check_bulk_retryable(requests: Sequence[Any]) -> None:
    """Rule 6. A bulk write containing an UpdateMany or DeleteMany is not a retryable write:
    "Bulk write operations that only consist of the single-document write operations" are
    (https://www.mongodb.com/docs/manual/core/retryable-writes/#retryable-write-operations),
    so after a failover every report bundled in it would fail instead of being retried."""
    for index, request in enumerate(requests):
        if isinstance(request, UpdateMany | DeleteMany):
            raise StrictViolation(
                f"bulk_write request {index} is a {type(request).__name__}: a bulk write "
                "with a multi-document operation is not retried after a primary step-down "
                "(retryable writes), so every other operation in it would fail too"
            )


# --- rule 7: the wire ---------------------------------------------------------------------

STORED: CodecOptions[Any] = CodecOptions(datetime_conversion=DatetimeConversion.DATETIME_AUTO)
"""How values are decoded into the store: naive UTC dates, out-of-range dates as DatetimeMS."""


def to_wire(value: Mapping[str, Any], options: CodecOptions[Any]) -> tuple[Document, int]:
    """A document as the server receives it, and its BSON size: encoded with the sender's
    codec options (so what pymongo cannot encode is refused, and dates become UTC
    milliseconds), decoded as stored. https://pymongo.readthedocs.io/en/stable/examples/datetimes.html"""
    encoded = bson.encode(value, codec_options=options)
    return bson.decode(encoded, codec_options=STORED), len(encoded)


def from_wire(doc: Mapping[str, Any], options: CodecOptions[Any]) -> Document:
    """A stored document as pymongo decodes it with these codec options: naive UTC dates by
    default, aware in `tzinfo` (or UTC) with tz_aware, out-of-range dates per
    datetime_conversion (DATETIME raises, CLAMP clamps, AUTO/MS give DatetimeMS)."""
    decoded: Document = bson.decode(bson.encode(doc), codec_options=options)
    return decoded


# --- rule 8: indexes ------------------------------------------------------------------------
#
# The exact rule (`query_served`). Each top-level field of a filter is classified:
#   "eq"    a value (or sub-document without operators), {$eq: v}
#   "in"    {$in: [...]}            (MongoDB explodes $in into point intervals, even for a sort)
#   "range" $lt/$lte/$gt/$gte/$all (bounded index scan, but no order beyond it)
#   "none"  anything else: $ne, $nin, $exists, $size, $not, $elemMatch, $regex, $or/$nor/$expr
#           at the top (they bound no index scan); `$and` is flattened into its clauses.
# A query (filter, sort) is served when
#   (a) the filter constrains `_id` by "eq" or "in" (the `_id` index; a sort of that bounded
#       set is cheap), or
#   (b) some index of jobcollection.mongo.indexes.INDEXES satisfies all of:
#       - partial: each (path, predicate) of its partialFilterExpression appears in the filter
#         literally (same path, equal predicate);
#       - bounded: the filter constrains the index's first key ("eq", "in" or "range"): a scan
#         of the whole index is no better than a collection scan for a job queue;
#       - sorted (ESR): drop from the sort the keys the filter pins by "eq"; let P be the
#         longest prefix of index keys constrained by "eq"/"in" that are not sort keys; the
#         index keys right after P must be the remaining sort keys, in order, with directions
#         all equal to the index's or all reversed.
#   (c) the sort starts with `_id` (a keyset listing: the `_id` index walks it in order).
#   Filter fields outside the index are a residual filter (fine: they are checked on the
#   documents the index scan fetches). https://www.mongodb.com/docs/manual/tutorial/equality-sort-range-rule/
#   https://www.mongodb.com/docs/manual/core/index-partial/#query-coverage
#   https://www.mongodb.com/docs/manual/reference/parameters/#mongodb-parameter-param.notablescan

RANGE_OPERATORS = frozenset({"$lt", "$lte", "$gt", "$gte", "$all"})


def classify(value: Any) -> str:
    """How a filter value constrains its field: "eq", "in", "range" or "none"."""
    if not isinstance(value, Mapping) or not any(str(k).startswith("$") for k in value):
        return "eq"
    if "$eq" in value:
        return "eq"
    if "$in" in value:
        return "in"
    if RANGE_OPERATORS & set(value):
        return "range"
    return "none"


def constraints(query: Mapping[str, Any]) -> dict[str, str]:
    """The fields a filter constrains and how (the strongest constraint when repeated)."""
    rank = {"eq": 3, "in": 2, "range": 1, "none": 0}
    found: dict[str, str] = {}
    clauses: list[tuple[str, Any]] = list(query.items())
    while clauses:
        key, value = clauses.pop()
        if key == "$and" and isinstance(value, list):
            clauses += [
                item for clause in value if isinstance(clause, Mapping) for item in clause.items()
            ]
            continue
        if key.startswith("$"):
            continue
        kind = classify(value)
        if rank[kind] > rank[found.get(key, "none")] or key not in found:
            found[key] = kind
    return found


def index_serves(
    keys: Sequence[tuple[str, int]],
    partial: Mapping[str, Any] | None,
    query: Mapping[str, Any],
    sort: Sequence[tuple[str, int]],
) -> bool:
    """Whether one index serves a query under the rule above."""
    if partial is not None and any(
        path not in query or not _implies(query[path], predicate)
        for path, predicate in partial.items()
    ):
        return False
    fields = constraints(query)
    if fields.get(keys[0][0], "none") == "none":
        return False
    remaining = [(k, d) for k, d in sort if fields.get(k) != "eq"]
    if not remaining:
        return True
    sort_keys = {k for k, _ in remaining}
    prefix = 0
    while (
        prefix < len(keys)
        and keys[prefix][0] not in sort_keys
        and fields.get(keys[prefix][0]) in ("eq", "in")
    ):
        prefix += 1
    window = list(keys[prefix : prefix + len(remaining)])
    if [k for k, _ in window] != [k for k, _ in remaining]:
        return False
    same = all(d == w for (_, d), (_, w) in zip(remaining, window, strict=True))
    reverse = all(d == -w for (_, d), (_, w) in zip(remaining, window, strict=True))
    return same or reverse


def _implies(condition: Any, predicate: Any) -> bool:
    """Whether a query's condition on a path states a partial index's predicate on it: the
    same, or operators among which are the predicate's (MongoDB uses a partial index only for
    queries that state its filter)."""
    if condition == predicate:
        return True
    return (
        isinstance(condition, Mapping)
        and isinstance(predicate, Mapping)
        and all(str(op).startswith("$") for op in predicate)
        and all(op in condition and condition[op] == arg for op, arg in predicate.items())
    )


def _library_indexes() -> tuple[Any, ...]:
    from jobcollection.mongo.indexes import INDEXES

    return INDEXES


def query_served(query: Mapping[str, Any], sort: Sequence[tuple[str, int]] = ()) -> bool:
    """Rule 8: whether the `_id` index or one of jobcollection's indexes serves the query
    (those of the jobs, and those of the collections beside them)."""
    from jobcollection.mongo.indexes import INDEXES, SIDE_INDEXES  # read at each check

    if constraints(query).get("_id") in ("eq", "in"):
        return True
    if sort and sort[0][0] == "_id":
        # (c) a listing in `_id` order (find_jobs' keyset pages): the `_id` index walks the
        # jobs in order and the query stops at its limit; other conditions are residual.
        return True
    return any(index_serves(ix.keys, ix.partial, query, sort) for ix in (*INDEXES, *SIDE_INDEXES))


def shape(query: Mapping[str, Any]) -> str:
    """A filter without its values: `{type: $in, status: eq, after: $lte}`."""
    parts = []
    for key, value in query.items():
        if isinstance(value, Mapping) and any(str(k).startswith("$") for k in value):
            parts.append(f"{key}: {'/'.join(str(k) for k in value)}")
        elif key.startswith("$") and isinstance(value, list):
            inner = ", ".join(shape(v) for v in value if isinstance(v, Mapping))
            parts.append(f"{key}: [{inner}]")
        else:
            parts.append(f"{key}: eq")
    return "{" + ", ".join(parts) + "}"


@dataclass(frozen=True)
class Finding:
    """A query no index serves, or a StrictViolation, and the library code that caused it."""

    kind: str  # "unindexed" | "violation"
    operation: str
    detail: str
    caller: str

    def __str__(self) -> str:
        if self.kind == "unindexed":
            return f"{self.operation} {self.detail}  (from {self.caller})"
        return f"{self.operation}: {self.detail}  (from {self.caller})"


@dataclass
class Registry:
    """What the strict proxies found during a test; the autouse fixture in conftest.py
    fails the test that caused any of it (unindexed queries can be allowed, see `allow`)."""

    findings: list[Finding] = field(default_factory=list)
    allowed: int = 0

    def record(self, finding: Finding) -> None:
        if finding.kind == "unindexed" and self.allowed:
            return
        if finding not in self.findings:
            self.findings.append(finding)

    @contextlib.contextmanager
    def allow_unindexed(self) -> Iterator[None]:
        """Queries sent inside this block are not checked against the indexes."""
        self.allowed += 1
        try:
            yield
        finally:
            self.allowed -= 1

    def take(self) -> list[Finding]:
        found, self.findings = self.findings, []
        return found

    @staticmethod
    def report(findings: Sequence[Finding]) -> str:
        from jobcollection.mongo.indexes import INDEXES

        lines = []
        unindexed = [f for f in findings if f.kind == "unindexed"]
        violations = [f for f in findings if f.kind == "violation"]
        if unindexed:
            lines.append("queries sent by the library that no index serves (tests/strict.py):")
            lines += [f"  {f}" for f in unindexed]
            lines.append("the indexes (jobcollection.mongo.indexes.INDEXES, and _id):")
            for ix in INDEXES:
                keys = ", ".join(f"{k}: {d}" for k, d in ix.keys)
                partial = f" partial {dict(ix.partial)}" if ix.partial else ""
                lines.append(f"  {{{keys}}}{partial}")
            lines.append(
                "add an index, or reshape the query; a test sending such queries on purpose "
                "can be marked @pytest.mark.unindexed_queries"
            )
        if violations:
            lines.append("strict backend violations (tests/strict.py):")
            lines += [f"  {f}" for f in violations]
        return "\n".join(lines)


REGISTRY = Registry()

_PACKAGE_DIR = str(Path(jobcollection.__file__).resolve().parent) + os.sep


@functools.lru_cache(maxsize=4096)
def _package_module(filename: str) -> str | None:
    """The module name of a file of the jobcollection package, else None."""
    resolved = str(Path(filename).resolve())
    return Path(resolved).stem if resolved.startswith(_PACKAGE_DIR) else None


def library_caller() -> str | None:
    """The innermost jobcollection frame on the stack (outside driver.py, where possible):
    `module.function:line`; None when no library code is running (a test's own query)."""
    frame = sys._getframe(1)
    fallback = None
    while frame is not None:
        module = _package_module(frame.f_code.co_filename)
        if module is not None:
            where = f"{module}.{frame.f_code.co_qualname}:{frame.f_lineno}"
            if module != "driver":
                return where
            fallback = fallback or where
        frame = frame.f_back  # type: ignore[assignment]
    return fallback


def check_query(
    operation: str, query: Mapping[str, Any], sort: Sequence[tuple[str, int]], caller: str | None
) -> None:
    """Rule 8: record a library query no index serves."""
    if caller is None or query_served(query, sort):
        return
    detail = shape(query)
    if sort:
        detail += " sort " + ", ".join(f"{k} {d}" for k, d in sort)
    REGISTRY.record(Finding("unindexed", operation, detail, caller))


def violation(exc: StrictViolation, operation: str, caller: str | None) -> StrictViolation:
    """Record a StrictViolation (so the test fails even if the library catches it)."""
    REGISTRY.record(Finding("violation", operation, str(exc), caller or "test code"))
    return exc


# --- rule 9: a mongos, collection sharded on {_id: "hashed"} --------------------------------

SHARD_KEY = '{ _id: "hashed" }'


def has_id_equality(query: Mapping[str, Any]) -> bool:
    """Whether the filter pins `_id` to one value ({_id: v} or {_id: {$eq: v}}), which is
    what a mongos extracts as a hashed `_id` shard key (not `$in`, not a range)."""
    if "_id" not in query:
        return False
    value = query["_id"]
    if isinstance(value, Mapping) and any(str(k).startswith("$") for k in value):
        return set(value) == {"$eq"}
    return True


def check_sharded_find_and_modify(query: Mapping[str, Any]) -> None:
    """findAndModify on a sharded collection: "the query filter must include an equality
    condition on the shard key" (5.0/6.x).
    https://www.mongodb.com/docs/v6.0/reference/command/findAndModify/#sharded-collections"""
    if not has_id_equality(query):
        raise Refused(61, "Query for sharded findAndModify must contain the shard key")


def check_sharded_single_write(query: Mapping[str, Any], kind: str) -> None:
    """updateOne/deleteOne on a sharded collection need an exact `_id` match or the shard key
    (here both are `_id`).
    https://www.mongodb.com/docs/v6.0/reference/method/db.collection.updateOne/#sharded-collections
    https://www.mongodb.com/docs/v6.0/reference/method/db.collection.deleteOne/#sharded-collections"""
    if has_id_equality(query):
        return
    code = 72 if kind == "update" else 61
    raise Refused(
        code,
        f"A single {kind} on a sharded collection must contain an exact match on _id (and "
        "have the collection default collation) or contain the shard key (and have the "
        f"simple collation). {kind.capitalize()} request: {{ q: {dict(query)} }}, shard key "
        f"pattern: {SHARD_KEY}",
    )


def check_sharded_upsert(query: Mapping[str, Any]) -> None:
    """An upsert on a sharded collection needs an equality on the full shard key.
    https://www.mongodb.com/docs/v6.0/reference/method/db.collection.updateOne/#upsert-on-a-sharded-collection"""
    if not has_id_equality(query):
        raise Refused(61, "Failed to target upsert by query :: could not extract exact shard key")


def check_sharded_unique_index(keys: Sort, unique: bool) -> None:
    """A unique index on a sharded collection must be prefixed by the shard key (field names
    compared, as createIndexes does; `_id`'s own index is always unique).
    https://www.mongodb.com/docs/manual/tutorial/create-unique-index-on-sharded-collection/"""
    if unique and keys[0][0] != "_id":
        pattern = "{ " + ", ".join(f"{k}: {d}" for k, d in keys) + " }"
        raise Refused(
            67, f"cannot create unique index over {pattern} with shard key pattern {SHARD_KEY}"
        )


PARTIAL_FILTER_OPERATORS = frozenset({"$eq", "$exists", "$gt", "$gte", "$lt", "$lte", "$type"})


def check_partial_filter(expression: Mapping[str, Any]) -> None:
    """A partialFilterExpression may use only equality, `$exists: true`, comparisons, `$type`
    and a top-level `$and` (MongoDB 5.0; 6.0 adds `$in`/`$or`, not relied on here).
    https://www.mongodb.com/docs/v5.0/core/index-partial/#create-a-partial-index"""
    for key, value in expression.items():
        if key == "$and" and isinstance(value, list):
            for clause in value:
                check_partial_filter(clause)
            continue
        if not isinstance(value, Mapping) or not any(str(k).startswith("$") for k in value):
            continue
        for operator, argument in value.items():
            if operator not in PARTIAL_FILTER_OPERATORS or (
                operator == "$exists" and argument is not True
            ):
                raise Refused(
                    67, f"Expression not supported in partial index: {{ {key}: {dict(value)} }}"
                )


# --- the proxies ----------------------------------------------------------------------------


def _sort_list(key_or_list: Any, direction: Any = None) -> Sort:
    if isinstance(key_or_list, str):
        return [(key_or_list, 1 if direction is None else int(direction))]
    return [(str(k), int(d)) for k, d in key_or_list]


def _no_other_options(method: str, options: Mapping[str, Any]) -> None:
    given = [k for k, v in options.items() if v is not None]
    if given:
        raise NotImplementedError(f"the strict backend does not emulate {method}({given[0]}=...)")


NOT_IN_TRANSACTION = 263
"""OperationNotSupportedInTransaction."""
NO_SUCH_TRANSACTION = 251


class StrictSession:
    """A client session of the strict backend (rule 10), with pymongo's async API: start,
    commit and abort a transaction, end the session. `commands` lists every command sent in
    it (its operation's name, and whether it was inside the transaction), for tests to check
    that an operation sent all of its commands in the caller's session."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.in_transaction = False
        self.commands: list[tuple[str, bool]] = []
        self.failed: OperationFailure | None = None
        """The error that aborted the open transaction on the server's side, if one did."""
        self._undo: dict[int, tuple[Any, list[Document]]] = {}
        self.ended = False

    async def start_transaction(self) -> None:
        if self.in_transaction:
            raise InvalidOperation("Transaction already in progress")
        self.in_transaction, self.failed, self._undo = True, None, {}

    async def commit_transaction(self) -> None:
        if not self.in_transaction:
            raise InvalidOperation("No transaction started")
        if self.failed is not None:
            await self.abort_transaction()
            raise OperationFailure(
                "Transaction has been aborted.", NO_SUCH_TRANSACTION, {"code": NO_SUCH_TRANSACTION}
            )
        self.in_transaction, self._undo = False, {}

    async def abort_transaction(self) -> None:
        if not self.in_transaction:
            raise InvalidOperation("No transaction started")
        for inner, before in self._undo.values():
            await inner.delete_many({})
            if before:
                await inner.insert_many(before)
        self.in_transaction, self._undo = False, {}

    async def end_session(self) -> None:
        if self.in_transaction:
            await self.abort_transaction()
        self.ended = True

    def join(self, collection: StrictCollection, operation: str) -> None:
        """A command sent in this session: refused as a server refuses it in a transaction."""
        if self.ended:
            raise InvalidOperation("Cannot use ended session")
        if self.client is not collection.database.client:
            raise InvalidOperation("Can only use session with the MongoClient that started it")
        self.commands.append((operation, self.in_transaction))
        if not self.in_transaction:
            return
        if self.failed is not None:
            raise self.failed
        refused = operation == "create_index" or (collection.sharded and operation == "distinct")
        if refused:
            self.abort_with(
                OperationFailure(
                    f"Cannot run '{operation}' in a multi-document transaction.",
                    NOT_IN_TRANSACTION,
                    {"code": NOT_IN_TRANSACTION},
                )
            )
            raise OperationFailure(
                f"Cannot run '{operation}' in a multi-document transaction.", NOT_IN_TRANSACTION
            )

    async def before_write(self, collection: StrictCollection) -> None:
        """Keep what a collection holds before the transaction's first write to it (an
        abort puts it back)."""
        if self.in_transaction and id(collection.inner) not in self._undo:
            before = await collection.inner.find({}).to_list(None)
            self._undo[id(collection.inner)] = (collection.inner, before)

    def abort_with(self, error: BaseException) -> None:
        """An error inside the transaction: the server aborts it."""
        if self.in_transaction and self.failed is None:
            self.failed = OperationFailure(
                f"Transaction aborted by an earlier error: {error}",
                NO_SUCH_TRANSACTION,
                {"code": NO_SUCH_TRANSACTION},
            )


def _joins(operation: str, *, writes: bool = False) -> Any:
    """A StrictCollection method that takes `session=` (rule 10): the session joins the
    command (or refuses it), a write keeps what it changes for an abort, an error aborts the
    transaction; the method itself never sees the session."""

    def wrap(method: Any) -> Any:
        @functools.wraps(method)
        async def joined(self: StrictCollection, *args: Any, **kwargs: Any) -> Any:
            session = kwargs.pop("session", None)
            if session is None:
                return await method(self, *args, **kwargs)
            _session_of(session).join(self, operation)
            if writes:
                await session.before_write(self)
            try:
                return await method(self, *args, **kwargs)
            except Exception as exc:
                session.abort_with(exc)
                raise

        return joined

    return wrap


def _session_of(session: Any) -> StrictSession:
    if not isinstance(session, StrictSession):
        raise InvalidOperation("Can only use session with the MongoClient that started it")
    return session


class StrictCursor:
    """The cursor of StrictCollection.find: sort/limit/skip chain, to_list runs the query."""

    def __init__(
        self,
        collection: StrictCollection,
        query: Document,
        projection: Any,
        caller: str | None,
    ) -> None:
        self._collection = collection
        self._query = query
        self._projection = projection
        self._caller = caller
        self._sort: Sort = []
        self._limit = 0
        self._skip = 0

    def sort(self, key_or_list: Any, direction: Any = None) -> StrictCursor:
        self._sort = _sort_list(key_or_list, direction)
        return self

    def limit(self, limit: int) -> StrictCursor:
        self._limit = int(limit)
        return self

    def skip(self, skip: int) -> StrictCursor:
        self._skip = int(skip)
        return self

    async def to_list(self, length: int | None = None) -> list[Document]:
        check_query("find", self._query, self._sort, self._caller)
        cursor = self._collection._inner.find(self._query, self._projection)
        if self._sort:
            cursor = cursor.sort(self._sort)
        if self._skip:
            cursor = cursor.skip(self._skip)
        if self._limit:
            cursor = cursor.limit(self._limit)
        found = await cursor.to_list(None)
        if length:
            found = found[:length]
        return [self._collection._out(doc) for doc in found]

    async def __aiter__(self) -> AsyncIterator[Document]:
        for doc in await self.to_list():
            yield doc


class StrictAggregate:
    """The cursor of an aggregation's documents (all in one batch here)."""

    def __init__(self, docs: list[Document]) -> None:
        self._docs = docs

    async def to_list(self, length: int | None = None) -> list[Document]:
        return self._docs if length is None else self._docs[:length]


class StrictCollection:
    """A Motor-style collection over a mongomock-motor one that refuses what MongoDB (or a
    mongos, with sharded=True) and pymongo refuse. See the module docstring."""

    def __init__(
        self,
        inner: Any,
        *,
        database: StrictDatabase | None = None,
        sharded: bool = False,
        codec_options: CodecOptions[Any] | None = None,
        read_preference: Any = None,
        read_concern: Any = None,
        write_concern: Any = None,
    ) -> None:
        self._inner = inner
        self._database = database
        self.sharded = sharded
        self._codec_options: CodecOptions[Any] = codec_options or CodecOptions()
        self.read_preference = read_preference
        self.read_concern = read_concern
        self.write_concern = write_concern

    def __repr__(self) -> str:
        return f"StrictCollection({self.name!r}, sharded={self.sharded})"

    # --- attributes ---------------------------------------------------------------------

    @property
    def name(self) -> str:
        return str(self._inner.name)

    @property
    def full_name(self) -> str:
        return f"{self.database.name}.{self.name}"

    @property
    def database(self) -> StrictDatabase:
        if self._database is None:
            self._database = StrictDatabase(self._inner.database, sharded=self.sharded)
        return self._database

    @property
    def codec_options(self) -> CodecOptions[Any]:
        return self._codec_options

    @property
    def inner(self) -> Any:
        """The mongomock-motor collection underneath (no checks: for assertions)."""
        return self._inner

    def with_options(
        self,
        codec_options: CodecOptions[Any] | None = None,
        read_preference: Any = None,
        write_concern: Any = None,
        read_concern: Any = None,
    ) -> StrictCollection:
        """The same collection with other options (never the inner's with_options, which
        mongomock-motor answers with a synchronous collection)."""
        if codec_options is not None and not isinstance(codec_options, CodecOptions):
            raise TypeError("codec_options must be an instance of bson.codec_options.CodecOptions")
        return StrictCollection(
            self._inner,
            database=self._database,
            sharded=self.sharded,
            codec_options=codec_options or self._codec_options,
            read_preference=read_preference or self.read_preference,
            read_concern=read_concern or self.read_concern,
            write_concern=write_concern or self.write_concern,
        )

    # --- helpers ------------------------------------------------------------------------

    def _out(self, doc: Mapping[str, Any]) -> Document:
        return from_wire(doc, self._codec_options)

    def _in(self, doc: Mapping[str, Any]) -> tuple[Document, int]:
        return to_wire(doc, self._codec_options)

    def _filter(self, query: Any) -> Document:
        if query is None:
            return {}
        if not isinstance(query, Mapping):
            return {"_id": query}
        bson.encode(query, codec_options=self._codec_options)  # refused as pymongo refuses it
        return dict(query)

    async def _snapshot(self, query: Document) -> list[Document]:
        found: list[Document] = await self._inner.find(query).to_list(None)
        return found

    async def _guard_size(
        self, query: Document, update: Document, before: list[Document], upserted: Any = None
    ) -> None:
        """Rule 5 after an update: undo it and refuse when a document grew over 16 MiB.
        Skipped when no document can have: an update adds at most twice its own size."""
        largest = max((len(bson.encode(d)) for d in before), default=len(bson.encode(query)))
        if largest + 2 * len(bson.encode(update)) + 1024 <= MAX_BSON_SIZE:
            return
        ids = [d["_id"] for d in before]
        if upserted is not None:
            ids.append(upserted)
        after = await self._inner.find({"_id": {"$in": ids}}).to_list(None)
        try:
            for doc in after:
                check_updated_size(doc)
        except Refused:
            for doc in before:
                await self._inner.replace_one({"_id": doc["_id"]}, doc)
            if upserted is not None:
                await self._inner.delete_one({"_id": upserted})
            raise

    async def _update(
        self,
        query: Document,
        update: Any,
        *,
        multi: bool,
        upsert: bool,
        caller: str | None,
        operation: str,
    ) -> UpdateResult:
        """An update after its client-side checks; raises Refused for server refusals."""
        check_query(operation, query, (), caller)
        if self.sharded and upsert:
            check_sharded_upsert(query)
        if self.sharded and not multi:
            check_sharded_single_write(query, "update")
        check_update(update)
        wired = add_to_set_once(self._in(update)[0])
        before = await self._snapshot(query)
        apply = self._inner.update_many if multi else self._inner.update_one
        async with self._atomically(before):
            result: UpdateResult = await apply(query, wired, upsert=upsert)
        await self._guard_size(query, wired, before, result.upserted_id)
        return result

    @contextlib.asynccontextmanager
    async def _atomically(self, before: list[Document]) -> AsyncIterator[None]:
        """An update that fails changes nothing, as in MongoDB, where a single-document write
        is atomic: mongomock applies the operators one after the other and may stop half-way
        (an `$inc` of a string after a `$set`), so the documents are put back and the server's
        refusal is raised (https://www.mongodb.com/docs/manual/core/write-operations-atomicity/)."""
        try:
            yield
        except (TypeError, ValueError, WriteError, OperationFailure) as exc:
            for doc in before:
                await self._inner.replace_one({"_id": doc["_id"]}, doc)
            code = 14 if isinstance(exc, TypeError) else getattr(exc, "code", None) or 2
            raise Refused(code, f"{exc}") from None

    async def _insert(self, document: Any) -> Any:
        """An insert after its client-side checks; raises Refused for server refusals and
        DuplicateKeyError as the server reports it."""
        if "_id" not in document:
            document["_id"] = ObjectId()  # pymongo sets it on the caller's document
        wired, size = self._in(document)
        check_insert_size(size)
        check_storable(document)
        if await self._inner.find_one({"_id": wired["_id"]}, {"_id": 1}) is not None:
            raise DuplicateKeyError(
                f"E11000 duplicate key error collection: {self.full_name} index: _id_ dup "
                f"key: {{ _id: {wired['_id']!r} }}",
                11000,
                {
                    "index": 0,
                    "code": 11000,
                    "errmsg": "E11000 duplicate key error",
                    "keyPattern": {"_id": 1},
                    "keyValue": {"_id": wired["_id"]},
                },
            )
        await self._inner.insert_one(wired)
        return wired["_id"]

    # --- reads --------------------------------------------------------------------------

    def find(self, filter: Any = None, projection: Any = None, **options: Any) -> StrictCursor:
        session = options.pop("session", None)
        if session is not None:
            _session_of(session).join(self, "find")
        cursor = StrictCursor(self, self._filter(filter), projection, library_caller())
        if options.get("sort") is not None:
            cursor.sort(options.pop("sort"))
        if options.get("limit"):
            cursor.limit(options.pop("limit"))
        _no_other_options("find", options)
        return cursor

    @_joins("find_one")
    async def find_one(
        self, filter: Any = None, projection: Any = None, *, sort: Any = None, **options: Any
    ) -> Document | None:
        _no_other_options("find_one", options)
        caller = library_caller()
        cursor = StrictCursor(self, self._filter(filter), projection, caller).limit(1)
        if sort is not None:
            cursor.sort(sort)
        found = await cursor.to_list()
        return found[0] if found else None

    @_joins("count_documents")
    async def count_documents(self, filter: Any, **options: Any) -> int:
        _no_other_options("count_documents", options)
        query = self._filter(filter)
        check_query("count_documents", query, (), library_caller())
        return int(await self._inner.count_documents(query))

    @_joins("aggregate")
    async def aggregate(self, pipeline: Any, **options: Any) -> StrictAggregate:
        """An aggregation (as pymongo's async API: a coroutine of a cursor); its first
        `$match` must be served by an index, as a find's filter."""
        _no_other_options("aggregate", options)
        stages = [dict(stage) for stage in pipeline]
        if stages and "$match" in stages[0]:
            query = self._filter(stages[0]["$match"])
            check_query("aggregate", query, (), library_caller())
        found = await self._inner.aggregate(stages).to_list(None)
        return StrictAggregate([self._out(doc) for doc in found])

    @_joins("distinct")
    async def distinct(self, key: Any, filter: Any = None, **options: Any) -> list[Any]:
        _no_other_options("distinct", options)
        query = self._filter(filter or {})
        if not any(ix.keys[0][0] == key for ix in _library_indexes()) and not query:
            check_query("distinct", {key: {"$exists": True}}, (), library_caller())
        return list(await self._inner.distinct(key, query))

    # --- writes -------------------------------------------------------------------------

    @_joins("insert_one", writes=True)
    async def insert_one(self, document: Any, **options: Any) -> InsertOneResult:
        _no_other_options("insert_one", options)
        try:
            inserted = await self._insert(document)
        except Refused as exc:
            raise exc.write_error() from None
        return InsertOneResult(inserted, True)

    @_joins("insert_many", writes=True)
    async def insert_many(
        self, documents: Sequence[Any], ordered: bool = True, **options: Any
    ) -> InsertManyResult:
        _no_other_options("insert_many", options)
        documents = list(documents)
        if not documents:
            raise TypeError("documents must be a non-empty list")
        for document in documents:  # pymongo sets every _id and encodes before sending
            if "_id" not in document:
                document["_id"] = ObjectId()
            check_insert_size(len(bson.encode(document, codec_options=self._codec_options)))
        errors: list[Document] = []
        inserted = 0
        for index, document in enumerate(documents):
            try:
                await self._insert(document)
                inserted += 1
            except Refused as exc:
                errors.append(exc.entry(index))
            except DuplicateKeyError as exc:
                errors.append({**(exc.details or {}), "index": index, "code": 11000})
            if errors and ordered:
                break
        if errors:
            raise BulkWriteError(_bulk_details(errors, nInserted=inserted))
        return InsertManyResult([d["_id"] for d in documents], True)

    @_joins("update_one", writes=True)
    async def update_one(
        self, filter: Any, update: Any, upsert: bool = False, **options: Any
    ) -> UpdateResult:
        return await self._update_command("update_one", filter, update, upsert, options)

    @_joins("update_many", writes=True)
    async def update_many(
        self, filter: Any, update: Any, upsert: bool = False, **options: Any
    ) -> UpdateResult:
        return await self._update_command("update_many", filter, update, upsert, options)

    async def _update_command(
        self, operation: str, filter: Any, update: Any, upsert: bool, options: Mapping[str, Any]
    ) -> UpdateResult:
        _no_other_options(operation, options)
        check_update_document(update)
        caller = library_caller()
        try:
            return await self._update(
                self._filter(filter),
                update,
                multi=operation == "update_many",
                upsert=upsert,
                caller=caller,
                operation=operation,
            )
        except Refused as exc:
            raise exc.write_error() from None

    @_joins("find_one_and_update", writes=True)
    async def find_one_and_update(
        self,
        filter: Any,
        update: Any,
        projection: Any = None,
        sort: Any = None,
        upsert: bool = False,
        return_document: bool = ReturnDocument.BEFORE,
        **options: Any,
    ) -> Document | None:
        _no_other_options("find_one_and_update", options)
        check_update_document(update)
        query = self._filter(filter)
        order = _sort_list(sort) if sort is not None else []
        check_query("find_one_and_update", query, order, library_caller())
        try:
            if self.sharded:
                check_sharded_find_and_modify(query)
            check_update(update)
            wired = add_to_set_once(self._in(update)[0])
            before = await self._snapshot(query)
            async with self._atomically(before):
                found = await self._inner.find_one_and_update(
                    query,
                    wired,
                    projection=projection,
                    sort=order or None,
                    upsert=upsert,
                    return_document=return_document,
                )
            upserted = None
            if upsert and not before:
                match = await self._inner.find_one(query, {"_id": 1})
                upserted = match["_id"] if match else None
            await self._guard_size(query, wired, before, upserted)
        except Refused as exc:
            raise exc.command_error() from None
        return None if found is None else self._out(found)

    @_joins("delete_one", writes=True)
    async def delete_one(self, filter: Any, **options: Any) -> DeleteResult:
        _no_other_options("delete_one", options)
        query = self._filter(filter)
        check_query("delete_one", query, (), library_caller())
        if self.sharded:
            try:
                check_sharded_single_write(query, "delete")
            except Refused as exc:
                raise exc.write_error() from None
        result: DeleteResult = await self._inner.delete_one(query)
        return result

    @_joins("delete_many", writes=True)
    async def delete_many(self, filter: Any, **options: Any) -> DeleteResult:
        _no_other_options("delete_many", options)
        query = self._filter(filter)
        check_query("delete_many", query, (), library_caller())
        result: DeleteResult = await self._inner.delete_many(query)
        return result

    @_joins("bulk_write", writes=True)
    async def bulk_write(
        self, requests: Sequence[Any], ordered: bool = True, **options: Any
    ) -> BulkWriteResult:
        """Each request applied on its own; an unordered batch applies every request the
        server does not refuse, and reports the refused ones in a BulkWriteError."""
        _no_other_options("bulk_write", options)
        requests = list(requests)
        if not requests:
            raise InvalidOperation("No operations to execute")
        caller = library_caller()
        try:
            check_bulk_retryable(requests)
        except StrictViolation as exc:
            raise violation(exc, "bulk_write", caller) from None
        for request in requests:  # pymongo validates every request before sending any
            if isinstance(request, UpdateOneOp | UpdateMany):
                check_update_document(request._doc)
                if request._sort is not None:
                    raise NotImplementedError("bulk updates with a sort need MongoDB 8.0")
            elif not isinstance(request, InsertOne | DeleteOne | DeleteMany):
                raise NotImplementedError(f"the strict backend does not emulate {request!r}")
        counts = {"nInserted": 0, "nUpserted": 0, "nMatched": 0, "nModified": 0, "nRemoved": 0}
        upserted: list[Document] = []
        errors: list[Document] = []
        for index, request in enumerate(requests):
            try:
                await self._bulk_one(request, index, counts, upserted, caller)
            except Refused as exc:
                errors.append(exc.entry(index))
            except DuplicateKeyError as exc:
                errors.append({**(exc.details or {}), "index": index, "code": 11000})
            if errors and ordered:
                break
        if errors:
            raise BulkWriteError(_bulk_details(errors, upserted=upserted, **counts))
        return BulkWriteResult({**counts, "upserted": upserted}, True)

    async def _bulk_one(
        self,
        request: Any,
        index: int,
        counts: dict[str, int],
        upserted: list[Document],
        caller: str | None,
    ) -> None:
        if isinstance(request, InsertOne):
            await self._insert(request._doc)
            counts["nInserted"] += 1
            return
        query = self._filter(request._filter)
        if isinstance(request, DeleteOne | DeleteMany):
            single = isinstance(request, DeleteOne)
            check_query("bulk_write " + type(request).__name__, query, (), caller)
            if self.sharded and single:
                check_sharded_single_write(query, "delete")
            delete = self._inner.delete_one if single else self._inner.delete_many
            counts["nRemoved"] += (await delete(query)).deleted_count
            return
        result = await self._update(
            query,
            request._doc,
            multi=isinstance(request, UpdateMany),
            upsert=bool(request._upsert),
            caller=caller,
            operation="bulk_write " + type(request).__name__,
        )
        counts["nMatched"] += result.matched_count
        counts["nModified"] += result.modified_count
        if result.upserted_id is not None:
            counts["nUpserted"] += 1
            upserted.append({"index": index, "_id": result.upserted_id})

    # --- indexes --------------------------------------------------------------------------

    @_joins("create_index", writes=True)
    async def create_index(self, keys: Any, **options: Any) -> str:
        order = _sort_list(keys)
        try:
            if self.sharded:
                check_sharded_unique_index(order, bool(options.get("unique")))
            if options.get("partialFilterExpression") is not None:
                check_partial_filter(options["partialFilterExpression"])
        except Refused as exc:
            raise exc.command_error() from None
        return str(await self._inner.create_index(order, **options))

    async def index_information(self) -> Document:
        info: Document = await self._inner.index_information()
        return info


def _bulk_details(errors: list[Document], **counts: Any) -> Document:
    details: Document = {
        "writeErrors": errors,
        "writeConcernErrors": [],
        "nInserted": 0,
        "nUpserted": 0,
        "nMatched": 0,
        "nModified": 0,
        "nRemoved": 0,
        "upserted": [],
    }
    details.update(counts)
    return details


class StrictDatabase:
    """A Motor-style database whose collections are StrictCollections."""

    def __init__(self, inner: Any, *, sharded: bool = False) -> None:
        self._inner = inner
        self.sharded = sharded

    def __repr__(self) -> str:
        return f"StrictDatabase({self.name!r}, sharded={self.sharded})"

    @property
    def name(self) -> str:
        return str(self._inner.name)

    @property
    def inner(self) -> Any:
        return self._inner

    @property
    def client(self) -> Any:
        """The in-memory client (what a StrictSession is started on)."""
        return self._inner.client

    def __getitem__(self, name: str) -> StrictCollection:
        return self.get_collection(name)

    def get_collection(self, name: str, **options: Any) -> StrictCollection:
        return StrictCollection(self._inner[name], database=self, sharded=self.sharded, **options)

    async def command(self, command: Any, *args: Any, **kwargs: Any) -> Any:
        """`hello`/`isMaster` answer as a mongos in sharded mode; anything else (and every
        command otherwise) goes to mongomock, which raises NotImplementedError for `hello`:
        the library's sign of the in-memory backend.
        https://www.mongodb.com/docs/manual/reference/command/hello/ (`msg: "isdbgrid"`)"""
        name = next(iter(command)) if isinstance(command, Mapping) else command
        if self.sharded and str(name).lower() in ("hello", "ismaster"):
            now = datetime.now(UTC)
            return {
                "ismaster": True,
                "isWritablePrimary": True,
                "msg": "isdbgrid",
                "localTime": now.replace(microsecond=now.microsecond // 1000 * 1000, tzinfo=None),
                "maxWireVersion": 17,
                "ok": 1.0,
            }
        return await self._inner.command(command, *args, **kwargs)

    async def drop_collection(self, name: str) -> Any:
        return await self._inner.drop_collection(name)

    async def list_collection_names(self) -> list[str]:
        names: list[str] = await self._inner.list_collection_names()
        return names
