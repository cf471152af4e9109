"""Where the benchmarks run and how they count round trips.

- `MemoryBackend`: the in-memory backend (`jobcollection.testing.memory_database()`), or with
  `store="dict"` the near-zero-cost `DictCollection` (dictstore.py), each collection wrapped
  in `CountingCollection`, which counts one command per driver call that reaches the database
  (an awaited method, or a cursor's `to_list`) and can add a simulated network round trip
  (`--rtt-ms`) before each one.
- `MongoBackend`: a real server (`--uri`), counted with pymongo command monitoring
  (`jobcollection.monitoring.CommandCounter`), so a `getMore` counts as the round trip it is.

Both give every run a fresh collection and count jobcollection and the raw-driver baseline
the same way.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from typing import Any

from dictstore import DictCollection

from jobcollection.monitoring import CommandCounter
from jobcollection.testing import memory_database

COMMANDS = (
    "find_one",
    "insert_one",
    "insert_many",
    "update_one",
    "update_many",
    "find_one_and_update",
    "bulk_write",
    "delete_many",
    "create_index",
    "count_documents",
    "drop",
)
"""The awaited collection methods the benchmarks and jobcollection use: one command each."""


class CountingCollection:
    """A proxy over an in-memory collection that counts the commands sent through it."""

    def __init__(self, inner: Any, backend: MemoryBackend) -> None:
        self._inner = inner
        self._backend = backend

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)  # name, codec_options, database...

    def find(self, *args: Any, **kwargs: Any) -> _CountingCursor:
        return _CountingCursor(self._inner.find(*args, **kwargs), self._backend)

    def with_options(self, **options: Any) -> CountingCollection:
        """The inner collection's view, counted the same way (mongomock refuses options)."""
        return CountingCollection(self._inner.with_options(**options), self._backend)


def _counted(name: str) -> Any:
    def method(self: CountingCollection, *args: Any, **kwargs: Any) -> Any:
        return self._backend.command(getattr(self._inner, name)(*args, **kwargs))

    method.__name__ = name
    return method


for _name in COMMANDS:
    setattr(CountingCollection, _name, _counted(_name))


class _CountingCursor:
    def __init__(self, inner: Any, backend: MemoryBackend) -> None:
        self._inner = inner
        self._backend = backend

    def sort(self, *args: Any, **kwargs: Any) -> _CountingCursor:
        self._inner = self._inner.sort(*args, **kwargs)
        return self

    def limit(self, *args: Any, **kwargs: Any) -> _CountingCursor:
        self._inner = self._inner.limit(*args, **kwargs)
        return self

    def to_list(self, *args: Any, **kwargs: Any) -> Any:
        return self._backend.command(self._inner.to_list(*args, **kwargs))


class MemoryBackend:
    """mongomock-motor through jobcollection's test shim, or the dict store; every figure it
    gives is labelled "in-memory" or "in-process": its commands cost Python work, not a
    network hop (the dict store's next to none)."""

    real = False

    def __init__(self, rtt_ms: float = 0.0, store: str = "mongomock") -> None:
        self.store = store
        self.rtt_s = rtt_ms / 1000
        self.commands = 0
        self.backend_s = 0.0
        """Seconds spent inside the in-memory backend (its stand-in for the server's work)."""
        self.waited_s = 0.0
        """Seconds spent in simulated round trips."""
        self._names = itertools.count()
        label = (
            "in-process dict store (near-zero cost)"
            if store == "dict"
            else "in-memory (mongomock-motor)"
        )
        self.label = f"{label}, simulated round trip {rtt_ms:g} ms" if rtt_ms else label

    async def command(self, awaitable: Any) -> Any:
        self.commands += 1
        if self.rtt_s:
            started = time.perf_counter()
            await asyncio.sleep(self.rtt_s)
            self.waited_s += time.perf_counter() - started
        started = time.perf_counter()
        try:
            return await awaitable  # the backend never suspends: this is its own CPU time
        finally:
            self.backend_s += time.perf_counter() - started

    async def collection(self) -> Any:
        """A fresh, empty, counted collection."""
        if self.store == "dict":
            return CountingCollection(DictCollection(), self)
        db = memory_database(f"bench{next(self._names)}")
        return CountingCollection(db["queue.jobs"], self)

    async def drop(self, collection: Any) -> None:
        await collection.drop()

    async def describe(self) -> str:
        return self.label

    async def close(self) -> None:
        return None


class MongoBackend:
    """A real MongoDB; collections live in a throwaway database dropped at close()."""

    real = True

    def __init__(self, uri: str) -> None:
        from pymongo import AsyncMongoClient

        self.db_name = f"jobcollection_bench_{uuid.uuid4().hex[:8]}"
        self.counter = CommandCounter(database=self.db_name)
        self.client: Any = AsyncMongoClient(uri, event_listeners=[self.counter], tz_aware=False)
        self.db = self.client[self.db_name]
        self._names = itertools.count()

    backend_s = 0.0  # the server's time cannot be told apart from the client's here
    waited_s = 0.0

    @property
    def commands(self) -> int:
        return self.counter.total

    async def collection(self) -> Any:
        return self.db[f"run{next(self._names)}.jobs"]

    async def drop(self, collection: Any) -> None:
        await collection.drop()

    async def describe(self) -> str:
        info = await self.client.server_info()
        hello = await self.client.admin.command("hello")
        topology = "replica set" if hello.get("setName") else "standalone"
        if hello.get("msg") == "isdbgrid":
            topology = "sharded (mongos)"
        return f"MongoDB {info.get('version', '?')} ({topology})"

    async def change_streams(self) -> bool:
        hello = await self.client.admin.command("hello")
        return bool(hello.get("setName")) or hello.get("msg") == "isdbgrid"

    async def close(self) -> None:
        await self.client.drop_database(self.db_name)
        await self.client.close()


Backend = MemoryBackend | MongoBackend
