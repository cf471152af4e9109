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
from pymongo import ReturnDocument
from pymongo.errors import PyMongoError

from .errors import DatabaseError

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

    def __init__(self, collection: Any) -> None:
        for attr in ("find", "update_many", "insert_one", "delete_many", "create_index"):
            if not callable(getattr(collection, attr, None)):
                raise TypeError(
                    "collection must be a pymongo AsyncCollection or a Motor collection, "
                    f"not {type(collection).__name__}"
                )
        self.collection = collection
        self._coll = _with_clamped_dates(collection)
        self.commands = 0

    async def _run(self, awaitable: Any) -> Any:
        self.commands += 1
        try:
            return await awaitable
        except PyMongoError as exc:
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
        return (await self._run(self._coll.insert_one(doc))).inserted_id

    async def insert_many(self, docs: Sequence[Document]) -> list[Any]:
        result = await self._run(self._coll.insert_many(list(docs), ordered=True))
        return list(result.inserted_ids)

    async def update_one(self, query: Mapping[str, Any], update: Mapping[str, Any]) -> int:
        """Apply an update to at most one document; the number matched."""
        return int(
            (await self._run(self._coll.update_one(dict(query), dict(update)))).matched_count
        )

    async def update_many(self, query: Mapping[str, Any], update: Mapping[str, Any]) -> int:
        """Apply an update to every match; the number modified."""
        result = await self._run(self._coll.update_many(dict(query), dict(update)))
        return int(result.modified_count)

    async def find_one_and_update(
        self,
        query: Mapping[str, Any],
        update: Mapping[str, Any],
        projection: Mapping[str, Any] | None = None,
        *,
        return_new: bool = True,
    ) -> Document | None:
        found: Document | None = await self._run(
            self._coll.find_one_and_update(
                dict(query),
                dict(update),
                projection=dict(projection) if projection else None,
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
