"""A database proxy that records every command sent through it, on every collection of the
database (the jobs and the collections beside them, whose commands `jc.commands` does not
count), with what a command reads: its filter, sort and limit, and how many documents it
returned. The dashboard's command budget (tests/test_web_ops.py) is measured with it.

    recorder = Recorder()
    jc = JobCollection.from_database(recording(database, recorder), "queue")
    start = len(recorder.commands)
    ...                                   # recorder.commands[start:] were sent meanwhile

It wraps whatever the `database` fixture gives (the strict in-memory backend, or pymongo's
client of the wire stand-in), so what a backend refuses is still refused.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Command:
    """One command: the collection, the method, its filter, sort and limit (0: none), and
    how many documents it returned (a count or a write: 1)."""

    collection: str
    name: str
    filter: Any
    sort: Any = None
    limit: int = 0
    returned: int = 1

    def __str__(self) -> str:
        sort = f" sort {self.sort}" if self.sort else ""
        limit = f" limit {self.limit}" if self.limit else ""
        return f"{self.collection}.{self.name} {self.filter}{sort}{limit} -> {self.returned}"


@dataclass
class Recorder:
    """The commands sent through the proxies that share it, in order."""

    commands: list[Command] = field(default_factory=list)


class RecordingDatabase:
    """A database whose collections record their commands in `recorder`."""

    def __init__(self, inner: Any, recorder: Recorder) -> None:
        self._inner = inner
        self.recorder = recorder

    def __getitem__(self, name: str) -> RecordingCollection:
        return RecordingCollection(self._inner[name], self)

    def get_collection(self, name: str, **options: Any) -> RecordingCollection:
        return RecordingCollection(self._inner.get_collection(name, **options), self)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def recording(database: Any, recorder: Recorder) -> RecordingDatabase:
    """`database`, its commands recorded in `recorder`."""
    return RecordingDatabase(database, recorder)


class RecordingCursor:
    """A find's cursor: sort and limit are remembered, to_list runs and records it."""

    def __init__(self, collection: RecordingCollection, cursor: Any, query: Any) -> None:
        self._collection = collection
        self._cursor = cursor
        self._query = query
        self._sort: Any = None
        self._limit = 0

    def sort(self, *args: Any) -> RecordingCursor:
        self._cursor = self._cursor.sort(*args)
        self._sort = args[0] if len(args) == 1 else [args]
        return self

    def limit(self, limit: int) -> RecordingCursor:
        self._cursor = self._cursor.limit(limit)
        self._limit = limit
        return self

    async def to_list(self, length: int | None = None) -> list[Any]:
        found: list[Any] = await self._cursor.to_list(length)
        self._collection.record("find", self._query, self._sort, self._limit, len(found))
        return found


class _Listed:
    """An aggregation's cursor: to_list records how many documents it produced."""

    def __init__(self, collection: RecordingCollection, cursor: Any, pipeline: Any) -> None:
        self._collection = collection
        self._cursor = cursor
        self._pipeline = pipeline

    async def to_list(self, length: int | None = None) -> list[Any]:
        found: list[Any] = await self._cursor.to_list(length)
        self._collection.record("aggregate", self._pipeline, None, 0, len(found))
        return found


class RecordingCollection:
    """A collection that records each command in its database's recorder."""

    def __init__(self, inner: Any, database: RecordingDatabase) -> None:
        self._inner = inner
        self._database = database

    @property
    def database(self) -> RecordingDatabase:
        return self._database

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def record(self, name: str, query: Any, sort: Any, limit: int, returned: int) -> None:
        self._database.recorder.commands.append(
            Command(self._inner.name, name, query, sort, limit, returned)
        )

    def with_options(self, **options: Any) -> RecordingCollection:
        return RecordingCollection(self._inner.with_options(**options), self._database)

    def find(self, filter: Any = None, *args: Any, **options: Any) -> RecordingCursor:
        sort, limit = options.pop("sort", None), options.pop("limit", 0)
        cursor = RecordingCursor(self, self._inner.find(filter, *args, **options), filter)
        if sort:
            cursor.sort(sort)
        return cursor.limit(limit) if limit else cursor

    async def find_one(self, filter: Any = None, *args: Any, **options: Any) -> Any:
        found = await self._inner.find_one(filter, *args, **options)
        self.record("find_one", filter, options.get("sort"), 1, int(found is not None))
        return found

    async def count_documents(self, filter: Any, **options: Any) -> int:
        found = int(await self._inner.count_documents(filter, **options))
        self.record("count_documents", filter, None, 0, 1)
        return found

    async def distinct(self, key: str, filter: Any = None, **options: Any) -> list[Any]:
        found = list(await self._inner.distinct(key, filter, **options))
        self.record("distinct", {key: filter}, None, 0, len(found))
        return found

    async def aggregate(self, pipeline: Any, **options: Any) -> _Listed:
        cursor = self._inner.aggregate(pipeline, **options)
        if inspect.isawaitable(cursor):  # pymongo's async API; Motor's is a cursor
            cursor = await cursor
        return _Listed(self, cursor, pipeline)


def _write(name: str) -> Any:
    async def method(self: RecordingCollection, *args: Any, **options: Any) -> Any:
        result = await getattr(self._inner, name)(*args, **options)
        first = args[0] if args and isinstance(args[0], Mapping) else None
        self.record(name, first, None, 0, 1)
        return result

    method.__name__ = name
    return method


for _name in (
    "insert_one",
    "insert_many",
    "update_one",
    "update_many",
    "find_one_and_update",
    "bulk_write",
    "delete_one",
    "delete_many",
    "create_index",
):
    setattr(RecordingCollection, _name, _write(_name))
