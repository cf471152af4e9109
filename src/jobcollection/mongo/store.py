"""The seam to MongoDB: one small adapter over a pymongo AsyncCollection or a Motor collection.

The drivers and the in-memory backend differ in details; those differences live here and
nowhere else:

- **Codec options.** Reads use the collection's own codec options (its `uuid_representation`,
  `type_registry`, ...) with three changes: dates come back timezone-aware in UTC wherever they
  are in a document, and v1.x's far-future dates (beyond Python's datetime) are clamped instead
  of failing to decode. Values are encoded (for size checks and comparisons) with the same
  options, so what is accepted is what the collection can store.
- **Read your writes.** The library's own reads go to the primary with read concern "local",
  whatever the collection's read preference and read concern: a read right after a claim or a
  report must see it (a secondary, or "majority" over `w: 1`, may not yet). Writes keep the
  collection's write concern. Your own queries on `jc.collection` keep your settings.
- **The in-memory backend** (mongomock-motor) cannot take those options (nor pymongo's `sort`
  argument of bulk updates): the collection is used as given, and a bulk write is applied one
  update at a time, with the same result.
- **Errors.** Whatever a backend raises during an operation becomes DatabaseError, with the
  original as the cause; a write the server refused (rather than one whose fate is unknown)
  becomes its subclass WriteRefused (the server's code in `code`), which `refused()` tells.
- **Sessions.** `joined(session)` is the same Store with every command sent in the caller's
  session (a pymongo AsyncClientSession or a Motor session, inside its transaction): the
  transactional save and report (see docs/how-to/transactions.md). A server that cannot run
  transactions (a standalone) refuses the first command; that becomes a DatabaseError that
  says so.
- **Routers.** `detect_router()` asks the server whether it is a mongos; on one, claims avoid
  `findAndModify` without the shard key (see README, "Sharded clusters").

Every call counts as one database command in `commands`, which the benchmarks report per job.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

import bson
from bson.codec_options import CodecOptions, DatetimeConversion
from pymongo import ReadPreference, ReturnDocument, UpdateOne
from pymongo.collection import Collection as SyncCollection
from pymongo.errors import (
    BulkWriteError,
    ConnectionFailure,
    DuplicateKeyError,
    ExecutionTimeout,
    OperationFailure,
    PyMongoError,
    WriteError,
    WTimeoutError,
)
from pymongo.read_concern import ReadConcern

from ..model.errors import DatabaseError, WriteRefused
from ..model.limits import DEFAULT_LIMITS, cap_arrays, cap_pushes

Document = dict[str, Any]

DUPLICATE_KEY = 11000
NO_TRANSACTIONS = 20
"""IllegalOperation: what a standalone server answers a command sent in a transaction."""


def _library_view(collection: Any) -> tuple[Any, CodecOptions[Any]]:
    """The collection as the library reads it (see the module docstring), and the codec
    options values are encoded with."""
    changes: dict[str, Any] = {
        "tz_aware": True,
        "tzinfo": UTC,
        "datetime_conversion": DatetimeConversion.DATETIME_CLAMP,
    }
    try:
        options = collection.codec_options.with_options(**changes)
        view = collection.with_options(
            codec_options=options,
            read_preference=ReadPreference.PRIMARY,
            read_concern=ReadConcern("local"),
        )
    except (NotImplementedError, AttributeError, TypeError):
        # The in-memory backend (one process, no replicas, no codecs), or a lookalike that
        # takes no options: used as given; dates are made aware by the document model.
        return collection, CodecOptions(**changes)
    return view, options


RETRYABLE_CODES = frozenset(
    {6, 7, 89, 91, 134, 189, 262, 9001, 10058, 10107, 11600, 11602, 13435, 13436}
)
"""Server error codes of a failover or a network error (pymongo retries writes on them)."""


TRANSACTION_LABELS = frozenset({"TransientTransactionError", "UnknownTransactionCommitResult"})
"""The driver's labels on an error that its `with_transaction` retries the transaction for."""


class TransactionRetry(DatabaseError, PyMongoError):
    """A DatabaseError inside the caller's transaction that keeps the driver's error labels
    (a write conflict, a transaction aborted by the server: TransientTransactionError), so
    that pymongo's `with_transaction` retries the whole transaction as after its own errors.
    Callers catch it as a DatabaseError; the driver's error is the `__cause__`."""

    def __init__(self, message: str, labels: Iterable[str]) -> None:
        super().__init__(message)
        self._error_labels = set(labels)


def transient(exc: BaseException) -> bool:
    """Whether a DatabaseError may go away by itself (a lost connection, a failover, a
    timeout), as opposed to an operation the server or the backend will refuse every time."""
    cause = exc.__cause__ if isinstance(exc, DatabaseError) else exc
    if isinstance(cause, ConnectionFailure | ExecutionTimeout | WTimeoutError):
        return True
    if isinstance(cause, PyMongoError) and cause.has_error_label("RetryableWriteError"):
        return True
    return isinstance(cause, OperationFailure) and cause.code in RETRYABLE_CODES


def refused(exc: BaseException) -> bool:
    """Whether a DatabaseError is the server refusing a write (retrying cannot help), rather
    than a driver error whose outcome is unknown (a lost reply, a failover): a WriteRefused."""
    return isinstance(exc, WriteRefused)


def refusal(message: str, cause: WriteError) -> WriteRefused:
    """The WriteRefused a driver's WriteError (or one entry of a bulk's) stands for."""
    error = WriteRefused(message, cause.code)
    error.__cause__ = cause
    return error


def is_id_duplicate(error: Mapping[str, Any]) -> bool:
    """Whether a duplicate-key error says it is about `_id` (the job exists already). Servers
    name the index in `keyPattern`; the in-memory backend leaves it out for `_id`, or names
    another unique index instead (mongomock-motor names the first unique index whose key the
    document shares with any stored one): False is not conclusive, see `insert_missing`."""
    if error.get("code") != DUPLICATE_KEY:
        return False
    pattern = error.get("keyPattern")
    if pattern is None:
        return "_id" in (error.get("keyValue") or {"_id": None})
    return dict(pattern) == {"_id": 1}


def _duplicates(exc: DatabaseError) -> list[Mapping[str, Any]]:
    """The duplicate-key errors (index, code, key) of a failed insert; re-raises `exc` if it
    failed otherwise, or with no error listed."""
    cause = exc.__cause__
    if isinstance(cause, DuplicateKeyError):
        errors: list[Mapping[str, Any]] = [
            {"index": 0, "code": cause.code, **(cause.details or {})}
        ]
    elif isinstance(cause, BulkWriteError) and not cause.details.get("writeConcernErrors"):
        errors = list(cause.details.get("writeErrors") or [])
    else:
        raise exc
    if not errors or any(e.get("code") != DUPLICATE_KEY for e in errors):
        raise exc
    return errors


def is_duplicate(exc: BaseException) -> bool:
    """Whether a DatabaseError is a duplicate key (an upsert that raced another's insert, or
    whose filter missed a document with its `_id`): a DuplicateKeyError, or a command error
    with its code (11000) as findAndModify may report it."""
    cause = exc.__cause__ if isinstance(exc, DatabaseError) else None
    return isinstance(cause, DuplicateKeyError) or getattr(cause, "code", None) == 11000


def is_unique_conflict(exc: DatabaseError) -> bool:
    """Whether an insert failed on a unique index other than `_id` (a unique job's key)."""
    cause = exc.__cause__
    if isinstance(cause, DuplicateKeyError):
        errors = [{"code": cause.code, **(cause.details or {})}]
    elif isinstance(cause, BulkWriteError):
        errors = cause.details.get("writeErrors") or []
    else:
        return False
    return any(e.get("code") == DUPLICATE_KEY and not is_id_duplicate(e) for e in errors)


@dataclass(slots=True)
class BulkOutcome:
    """What an unordered bulk write of single-document updates did."""

    matched: int
    refused: dict[int, WriteRefused] = field(default_factory=dict)
    """Requests the server refused, by index; every other request was applied (or matched
    nothing)."""


class Tally:
    """A count of database commands, shared by a Store and its siblings."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


class Store:
    """Async operations on one collection, with errors translated and commands counted."""

    def __init__(
        self, collection: Any, caps: Mapping[str, int] | None = None, tally: Tally | None = None
    ) -> None:
        # Looked up on the type: databases (and collections) answer any attribute with a
        # sub-collection, so `getattr(db, "find")` would pass for a database.
        methods = ("find", "update_many", "insert_one", "delete_many", "create_index")
        if isinstance(collection, SyncCollection) or not all(
            callable(getattr(type(collection), attr, None)) for attr in methods
        ):
            raise TypeError(
                "collection must be a pymongo AsyncCollection or a Motor collection, "
                f"not {type(collection).__name__}"
            )
        self.collection = collection
        self._coll, self.codec_options = _library_view(collection)
        self.aware_dates = self._coll is not collection
        """Whether reads return every datetime aware in UTC (the driver took the codec
        options); otherwise the document model makes naive ones UTC."""
        self._bulk_supported = True
        self.routed = False
        """True on a mongos: single-document writes must name `_id` (see detect_router)."""
        self.unique_jobs: bool | None = None
        """Whether the index that keeps unique jobs unique exists: set when the job server
        creates the indexes (a sharded collection cannot have it); None: not known here."""
        self._tally = tally or Tally()
        self.caps: dict[str, int] = dict(DEFAULT_LIMITS.push_caps() if caps is None else caps)
        """Arrays kept to their newest N items on every write (see model/limits.py)."""
        self.session: Any = None
        """The caller's session every command is sent in (see `joined`), or None."""
        self._in: dict[str, Any] = {}
        """The keyword arguments every driver call gets: the session, when joined."""

    def joined(self, session: Any) -> Store:
        """This Store with every command sent in `session` (the caller's, inside its
        transaction): a copy sharing the collection, its options, its caps and its count of
        commands. The session is the caller's to commit or abort."""
        bound = copy.copy(self)
        bound.session = session
        bound._in = {"session": session}
        return bound

    @property
    def commands(self) -> int:
        """Commands sent so far through this Store and its siblings (for benchmarks)."""
        return self._tally.n

    def capped(self, update: Mapping[str, Any]) -> dict[str, Any]:
        """An update whose pushes onto capped arrays keep only the newest items."""
        return cap_pushes(update, self.caps)

    def encode(self, value: Mapping[str, Any]) -> bytes:
        """A value as BSON, with the codec options of the collection (so a `uuid.UUID` is
        accepted exactly where the collection can store one). Raises what bson raises."""
        return bson.encode(value, codec_options=self.codec_options)

    def same(self, stored: Any, given: Any) -> bool:
        """Whether a value read back equals a value given, as MongoDB stores them: both are
        compared as BSON after a round trip (tuples become lists, datetimes keep
        milliseconds, naive ones are UTC, patterns become Regex)."""
        if not isinstance(stored, Mapping) or not isinstance(given, Mapping):
            return False
        try:
            return self._canonical(stored) == self._canonical(given)
        except (bson.errors.BSONError, TypeError, ValueError, OverflowError):
            return False

    def _canonical(self, value: Mapping[str, Any]) -> bytes:
        decoded = bson.decode(self.encode(value), codec_options=self.codec_options)
        return self.encode(decoded)

    async def _run(self, awaitable: Any) -> Any:
        self._tally.n += 1
        try:
            return await awaitable
        except DatabaseError:
            raise
        except PyMongoError as exc:
            labels = {label for label in TRANSACTION_LABELS if exc.has_error_label(label)}
            if self.session is None or not labels:
                raise self._translated(exc) from exc
            raise TransactionRetry(f"database error: {exc}", labels) from exc
        except Exception as exc:  # bson, or the backend's own error
            raise DatabaseError(f"database error: {exc}") from exc

    def _translated(self, exc: PyMongoError) -> DatabaseError:
        """Our error for a driver's: WriteRefused for a write the server refused, a
        DatabaseError that says so when a server cannot run the caller's transaction."""
        if isinstance(exc, WriteError):  # the server refused the write (DuplicateKeyError too)
            return refusal(f"database error: {exc}", exc)
        if (
            self.session is not None
            and isinstance(exc, OperationFailure)
            and exc.code == NO_TRANSACTIONS
        ):
            return DatabaseError(
                "database error: this server cannot run transactions (a standalone): a "
                "transactional save or report needs a replica set or a sharded cluster; "
                f"the server said: {exc}"
            )
        return DatabaseError(f"database error: {exc}")

    def sibling(self, name: str, *, counted: bool = True) -> Store:
        """A Store over another collection of the same database (`database[name]`), with the
        same options as this one's collection and no capped arrays; its commands count with
        this one's (`counted`: those of the claims and saves, such as the settings and the
        claim locks), or apart (the background bookkeeping of the job server's lease and the
        worker registry, which no job's cost includes)."""
        try:
            other = self.collection.database[name]
        except Exception as exc:  # a wrapper without a database
            raise DatabaseError(f"database error: no collection {name!r} here: {exc}") from exc
        return Store(other, caps={}, tally=self._tally if counted else None)

    async def detect_router(self) -> bool:
        """Ask the server whether it is a mongos (`hello` says `msg: "isdbgrid"`); remembered
        in `routed`. A backend that cannot answer (the in-memory one) is not a router."""
        try:
            reply = await self._run(self.collection.database.command("hello"))
        except (DatabaseError, AttributeError, NotImplementedError):
            return self.routed
        self.routed = isinstance(reply, Mapping) and reply.get("msg") == "isdbgrid"
        return self.routed

    async def find(
        self,
        query: Mapping[str, Any],
        projection: Mapping[str, Any] | None = None,
        *,
        sort: Sequence[tuple[str, int]] | None = None,
        limit: int = 0,
    ) -> list[Document]:
        try:  # building a cursor sends nothing, but a backend may refuse its arguments
            cursor = self._coll.find(
                dict(query), dict(projection) if projection else None, **self._in
            )
            if sort:
                cursor = cursor.sort(list(sort))
            if limit:
                cursor = cursor.limit(limit)
        except Exception as exc:
            raise DatabaseError(f"database error: {exc}") from exc
        result: list[Document] = await self._run(cursor.to_list(length=None))
        return result

    async def find_one(
        self, query: Mapping[str, Any], projection: Mapping[str, Any] | None = None
    ) -> Document | None:
        found: Document | None = await self._run(
            self._coll.find_one(dict(query), dict(projection) if projection else None, **self._in)
        )
        return found

    async def count(self, query: Mapping[str, Any]) -> int:
        """How many documents match (countDocuments)."""
        found: int = await self._run(self._coll.count_documents(dict(query), **self._in))
        return found

    async def aggregate(self, pipeline: Sequence[Mapping[str, Any]]) -> list[Document]:
        """The documents an aggregation pipeline produces (counted as one command)."""

        async def run() -> list[Document]:
            cursor = self._coll.aggregate([dict(stage) for stage in pipeline], **self._in)
            if inspect.isawaitable(cursor):  # pymongo's async API; Motor's is a cursor
                cursor = await cursor
            found: list[Document] = await cursor.to_list(length=None)
            return found

        result: list[Document] = await self._run(run())
        return result

    async def distinct(self, field: str) -> list[Any]:
        """The distinct values of a field (one command; served by an index that starts with
        the field)."""
        found: list[Any] = await self._run(self._coll.distinct(field, **self._in))
        return found

    async def insert_one(self, doc: Document) -> Any:
        return (
            await self._run(self._coll.insert_one(cap_arrays(doc, self.caps), **self._in))
        ).inserted_id

    async def insert_missing(self, docs: Sequence[Document], *, ordered: bool = False) -> set[Any]:
        """Insert documents that carry their `_id`, so a retried batch inserts only what an
        earlier attempt did not; the ids found stored already. A duplicate key whose `_id` is
        stored is one of those, whatever index the error names (a server may name another
        unique index the stored document also fills, and the in-memory backend names any
        unique index but `_id`): a document under that `_id` is read to tell. A duplicate of
        a document whose `_id` is not stored (another job holds a unique key) raises like any
        other error. The caller checks that each id found is the job it meant.

        Unordered by default; `ordered` inserts them in the order given (the server stops at
        a duplicate, and the rest is sent again after it: one command more per duplicate)."""
        capped = [cap_arrays(doc, self.caps) for doc in docs]
        found: set[Any] = set()
        while capped:
            try:
                if len(capped) == 1:
                    await self._run(self._coll.insert_one(capped[0], **self._in))
                else:
                    await self._run(self._coll.insert_many(capped, ordered=ordered, **self._in))
                break
            except DatabaseError as exc:
                errors = _duplicates(exc)
                found |= {capped[e["index"]]["_id"] for e in errors}
                unsure = [capped[e["index"]]["_id"] for e in errors if not is_id_duplicate(e)]
                if unsure and not await self._all_stored(unsure):
                    raise
                capped = capped[errors[-1]["index"] + 1 :] if ordered else []
        return found

    async def _all_stored(self, ids: Sequence[Any]) -> bool:
        """Whether a document is stored under each of these ids."""
        stored = await self.find({"_id": {"$in": list(ids)}}, {"_id": 1})
        return len({d["_id"] for d in stored}) == len(set(ids))

    async def update_one(self, query: Mapping[str, Any], update: Mapping[str, Any]) -> int:
        """Apply an update to at most one document; the number matched."""
        return int(
            (
                await self._run(self._coll.update_one(dict(query), self.capped(update), **self._in))
            ).matched_count
        )

    async def update_many(self, query: Mapping[str, Any], update: Mapping[str, Any]) -> int:
        """Apply an update to every match; the number modified."""
        result = await self._run(
            self._coll.update_many(dict(query), self.capped(update), **self._in)
        )
        return int(result.modified_count)

    async def find_one_and_update(
        self,
        query: Mapping[str, Any],
        update: Mapping[str, Any],
        projection: Mapping[str, Any] | None = None,
        *,
        sort: Sequence[tuple[str, int]] | None = None,
        return_new: bool = True,
        upsert: bool = False,
    ) -> Document | None:
        """Update the first match (in `sort` order) atomically; it as updated (or before).
        With `upsert`, a document is inserted from the query's equalities if none matches."""
        options: dict[str, Any] = {"upsert": True} if upsert else {}
        found: Document | None = await self._run(
            self._coll.find_one_and_update(
                dict(query),
                self.capped(update),
                projection=dict(projection) if projection else None,
                sort=list(sort) if sort else None,
                return_document=ReturnDocument.AFTER if return_new else ReturnDocument.BEFORE,
                **options,
                **self._in,
            )
        )
        return found

    async def update_each(
        self,
        updates: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]],
        *,
        upsert: bool = False,
    ) -> BulkOutcome:
        """Apply single-document updates (filter, update) in one unordered round trip
        (`upsert`: each inserts a document from its filter's equalities if none matches).

        Only single-document operations, so the driver retries the batch after a failover
        (retryable writes); each request is applied or refused on its own. Raises
        DatabaseError when the outcome is unknown (a lost reply) or a write concern was not
        met (the writes may not survive a failover).
        """
        if not updates:
            return BulkOutcome(0)
        pairs = [(dict(q), self.capped(u)) for q, u in updates]
        if not self._bulk_supported:
            self._tally.n += 1
            return await self._one_by_one(pairs, upsert)
        try:
            requests = [UpdateOne(q, u, upsert=upsert) for q, u in pairs]
            result = await self._run(self._coll.bulk_write(requests, ordered=False, **self._in))
        except DatabaseError as exc:
            cause = exc.__cause__
            if isinstance(cause, TypeError) and "sort" in str(cause):
                # mongomock's bulk builder rejects pymongo's `sort` argument before applying
                # anything: apply the same updates one at a time from now on (the in-memory
                # backend has no round trips to save).
                self._bulk_supported = False
                return await self._one_by_one(pairs, upsert)
            if not isinstance(cause, BulkWriteError) or cause.details.get("writeConcernErrors"):
                raise
            details = cause.details
            outcome = BulkOutcome(int(details.get("nMatched", 0)))
            for error in details.get("writeErrors", []):
                refused_one = WriteError(str(error.get("errmsg")), error.get("code"), error)
                message = f"write refused: {error.get('errmsg')}"
                outcome.refused[error["index"]] = refusal(message, refused_one)
            return outcome
        return BulkOutcome(int(result.matched_count))

    async def _one_by_one(
        self, pairs: Sequence[tuple[Document, Document]], upsert: bool = False
    ) -> BulkOutcome:
        """An unordered bulk write emulated with one update_one per request."""
        outcome = BulkOutcome(0)
        for i, (query, update) in enumerate(pairs):
            try:
                result = await self._coll.update_one(query, update, upsert=upsert, **self._in)
            except WriteError as exc:
                outcome.refused[i] = refusal(f"write refused: {exc}", exc)
            except Exception as exc:
                raise DatabaseError(f"database error: {exc}") from exc
            else:
                outcome.matched += int(result.matched_count)
        return outcome

    async def delete_many(self, query: Mapping[str, Any]) -> int:
        return int((await self._run(self._coll.delete_many(dict(query), **self._in))).deleted_count)

    async def create_index(self, keys: Sequence[tuple[str, int]], **options: Any) -> str:
        return str(await self._run(self._coll.create_index(list(keys), **options)))
