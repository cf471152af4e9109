"""The seam to MongoDB: one small adapter over a pymongo AsyncCollection or a Motor collection.

The two drivers differ in details (pymongo's `aggregate` is a coroutine, Motor's is not; only
pymongo accepts every codec option we ask for); those differences live here and nowhere else.
Driver exceptions are translated to DatabaseError with the original as the cause. Every call
counts as one database command in `commands`, which the benchmarks report per job.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bson.codec_options import CodecOptions, DatetimeConversion
from bson.errors import BSONError
from pymongo import ReturnDocument
from pymongo.collection import Collection as SyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from .errors import DatabaseError
from .limits import DEFAULT_LIMITS, cap_arrays, cap_pushes

Document = dict[str, Any]


def _with_clamped_dates(collection: Any) -> Any:
    """Read v1.x's far-future dates (beyond Python's datetime) clamped instead of failing."""
    try:
        return collection.with_options(
            codec_options=CodecOptions(datetime_conversion=DatetimeConversion.DATETIME_CLAMP)
        )
    except NotImplementedError:  # the in-memory backend never stores such dates
        return collection


class Store:
    """Async operations on one collection, with errors translated and commands counted."""

    def __init__(self, collection: Any, caps: Mapping[str, int] | None = None) -> None:
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
        self._coll = _with_clamped_dates(collection)
        self.commands = 0
        self.caps: dict[str, int] = dict(DEFAULT_LIMITS.push_caps() if caps is None else caps)
        """Arrays kept to their newest N items on every write (see limits.py)."""

    def capped(self, update: Mapping[str, Any]) -> dict[str, Any]:
        """An update whose pushes onto capped arrays keep only the newest items."""
        return cap_pushes(update, self.caps)

    async def _run(self, awaitable: Any) -> Any:
        self.commands += 1
        try:
            return await awaitable
        except (PyMongoError, BSONError) as exc:  # BSONError: e.g. a document over 16 MiB
            raise DatabaseError(f"database error: {exc}") from exc

    async def find(
        self,
        query: Mapping[str, Any],
        projection: Mapping[str, Any] | None = None,
        *,
        sort: Sequence[tuple[str, int]] | None = None,
        limit: int = 0,
    ) -> list[Document]:
        cursor = self._coll.find(dict(query), dict(projection) if projection else None)
        if sort:
            cursor = cursor.sort(list(sort))
        if limit:
            cursor = cursor.limit(limit)
        result: list[Document] = await self._run(cursor.to_list(length=None))
        return result

    async def find_one(
        self, query: Mapping[str, Any], projection: Mapping[str, Any] | None = None
    ) -> Document | None:
        found: Document | None = await self._run(
            self._coll.find_one(dict(query), dict(projection) if projection else None)
        )
        return found

    async def insert_one(self, doc: Document) -> Any:
        return (await self._run(self._coll.insert_one(cap_arrays(doc, self.caps)))).inserted_id

    async def insert_new(self, doc: Document) -> bool:
        """Insert a document that carries its `_id`; False if that `_id` is stored already
        (an earlier attempt whose reply was lost), which makes a retried insert a no-op."""
        try:
            await self._run(self._coll.insert_one(cap_arrays(doc, self.caps)))
        except DatabaseError as exc:
            if isinstance(exc.__cause__, DuplicateKeyError):
                return False
            raise
        return True

    async def insert_many(
        self, docs: Sequence[Document], *, skip_existing: bool = False
    ) -> list[Any]:
        """Insert documents in order; the ids. With skip_existing every document must carry
        its `_id`, and those whose `_id` exists already are skipped (an idempotent retry)."""
        capped = [cap_arrays(doc, self.caps) for doc in docs]
        if not skip_existing:
            result = await self._run(self._coll.insert_many(capped, ordered=True))
            return list(result.inserted_ids)
        try:
            await self._run(self._coll.insert_many(capped, ordered=False))
        except DatabaseError as exc:
            cause = exc.__cause__
            details = cause.details if isinstance(cause, BulkWriteError) else {}
            errors = details.get("writeErrors") or [{}]
            if details.get("writeConcernErrors") or any(e.get("code") != 11000 for e in errors):
                raise
        return [doc["_id"] for doc in capped]

    async def update_one(self, query: Mapping[str, Any], update: Mapping[str, Any]) -> int:
        """Apply an update to at most one document; the number matched."""
        return int(
            (await self._run(self._coll.update_one(dict(query), self.capped(update)))).matched_count
        )

    async def update_many(self, query: Mapping[str, Any], update: Mapping[str, Any]) -> int:
        """Apply an update to every match; the number modified."""
        result = await self._run(self._coll.update_many(dict(query), self.capped(update)))
        return int(result.modified_count)

    async def find_one_and_update(
        self,
        query: Mapping[str, Any],
        update: Mapping[str, Any],
        projection: Mapping[str, Any] | None = None,
        *,
        sort: Sequence[tuple[str, int]] | None = None,
        return_new: bool = True,
    ) -> Document | None:
        """Update the first match (in `sort` order) atomically; it as updated (or before)."""
        found: Document | None = await self._run(
            self._coll.find_one_and_update(
                dict(query),
                self.capped(update),
                projection=dict(projection) if projection else None,
                sort=list(sort) if sort else None,
                return_document=ReturnDocument.AFTER if return_new else ReturnDocument.BEFORE,
            )
        )
        return found

    async def bulk_write(self, requests: Sequence[Any]) -> int:
        """Unordered bulk write of update requests in one round trip; the number matched."""
        result = await self._run(self._coll.bulk_write(list(requests), ordered=False))
        return int(result.matched_count)

    async def delete_many(self, query: Mapping[str, Any]) -> int:
        return int((await self._run(self._coll.delete_many(dict(query)))).deleted_count)

    async def create_index(self, keys: Sequence[tuple[str, int]], **options: Any) -> str:
        return str(await self._run(self._coll.create_index(list(keys), **options)))
