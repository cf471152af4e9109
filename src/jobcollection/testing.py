"""The in-memory backend for tests, demos and benchmarks (needs the `memory` extra).

`memory_database()` returns a mongomock-motor database with two shims applied, both to
mongomock only, never pymongo or Motor:

- current pymongo passes a `sort` keyword to the bulk builder that mongomock 4.x does not
  accept, which breaks `bulk_write`. jobcollection works on a plain mongomock-motor collection
  too (its driver seam then applies a bulk write one update at a time); the shim lets a bulk
  write stay one call, as on a server, which is what fault-injection tests that target
  `bulk_write` rely on. It drops the keyword when it is None and refuses a real sort loudly.
- the in-memory backend has no TTL monitor: mongomock would scan every document of a
  collection with a TTL index (retention's) on every call and delete by the wall clock, which
  the injected clocks of tests and simulations do not follow. MongoDB deletes expired
  documents in the background (every 60 s); here they stay.
"""

from __future__ import annotations

import functools
from typing import Any


def _accept_unset_sort(method: Any) -> Any:
    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, sort: Any = None, **kwargs: Any) -> Any:
        if sort is not None:
            raise NotImplementedError("the in-memory backend cannot sort bulk updates")
        return method(self, *args, **kwargs)

    wrapper.__jobcollection_shim__ = True  # type: ignore[attr-defined]
    return wrapper


def _patch_mongomock_bulk() -> None:
    from mongomock.collection import BulkOperationBuilder

    for name in ("add_update", "add_replace"):
        method = getattr(BulkOperationBuilder, name)
        if not getattr(method, "__jobcollection_shim__", False):
            setattr(BulkOperationBuilder, name, _accept_unset_sort(method))


def _no_ttl_monitor(self: Any) -> None:
    """Expired documents stay (see the module docstring)."""


def _patch_mongomock_ttl() -> None:
    from mongomock.store import CollectionStore

    setattr(CollectionStore, "_remove_expired_documents", _no_ttl_monitor)  # noqa: B010


def memory_database(name: str = "jobcollection") -> Any:
    """A fresh in-memory database (Motor-style API) that supports everything jobcollection
    uses, bulk writes included."""
    from mongomock_motor import AsyncMongoMockClient

    _patch_mongomock_bulk()
    _patch_mongomock_ttl()
    return AsyncMongoMockClient()[name]
