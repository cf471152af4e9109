"""A near-zero-cost in-process collection: what jobcollection's own CPU per job is measured on.

`DictCollection` is a small async collection over a dict that implements exactly the calls
jobcollection and the naive baseline make (the filters, updates, projections and sorts they
send), so that a benchmark's time is the library's, not a database stand-in's. It is not a
database and not a test backend (tests/strict.py is that): it checks nothing, and it keeps
documents as the Python objects given (copied at the boundary, as a driver would encode and
decode them).

Claims are what would make a naive dict store slow: every claim asks for the ready jobs of some
types in priority order. Ready jobs are kept in one heap per type, keyed by the claim's sort
(priority, retryUntil, after); entries are checked when they come off the heap and dropped when
stale, so a claim costs O(k log n) for k jobs instead of a scan and a sort of every job.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bson import ObjectId
from bson.codec_options import CodecOptions
from pymongo import ReturnDocument
from pymongo.errors import BulkWriteError, DuplicateKeyError

Doc = dict[str, Any]
CLAIM_SORT = [("priority", 1), ("retryUntil", 1), ("after", 1)]
_MISSING = object()


def _copy(value: Any) -> Any:
    """A copy of nested dicts and lists (what a round trip through BSON gives)."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _get(doc: Mapping[str, Any], path: str) -> Any:
    value: Any = doc
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _values(found: Any) -> list[Any]:
    """What a filter on a field compares with: the value, or each element of an array."""
    if found is _MISSING:
        return [None]
    if isinstance(found, list):
        return [found, *found]
    return [found]


def _matches(doc: Mapping[str, Any], query: Mapping[str, Any]) -> bool:
    for path, condition in query.items():
        found = _get(doc, path)
        if isinstance(condition, Mapping) and any(str(k).startswith("$") for k in condition):
            if not all(_operator(found, op, arg) for op, arg in condition.items()):
                return False
        elif condition not in _values(found):
            return False
    return True


def _operator(found: Any, op: str, arg: Any) -> bool:
    values = _values(found)
    if op == "$in":
        return any(v in arg for v in values)
    if op == "$nin":
        return not any(v in arg for v in values)
    if op == "$ne":
        return arg not in values
    if op == "$exists":
        return (found is not _MISSING) is bool(arg)
    if op == "$size":
        return isinstance(found, list) and len(found) == arg
    if op == "$all":
        return isinstance(found, list) and all(a in found for a in arg)
    if op in ("$lt", "$lte", "$gt", "$gte"):
        present = [v for v in values if v is not None and not isinstance(v, list)]
        compare = {
            "$lt": lambda v: v < arg,
            "$lte": lambda v: v <= arg,
            "$gt": lambda v: v > arg,
            "$gte": lambda v: v >= arg,
        }[op]
        return any(compare(v) for v in present if type(v) is type(arg) or _numbers(v, arg))
    raise NotImplementedError(f"DictCollection: query operator {op}")


def _numbers(a: Any, b: Any) -> bool:
    return isinstance(a, int | float) and isinstance(b, int | float)


def _set(doc: Doc, path: str, value: Any) -> None:
    *parents, last = path.split(".")
    target = doc
    for part in parents:
        target = target.setdefault(part, {})
    target[last] = value


def _unset(doc: Doc, path: str) -> None:
    *parents, last = path.split(".")
    target: Any = doc
    for part in parents:
        target = target.get(part) if isinstance(target, dict) else None
    if isinstance(target, dict):
        target.pop(last, None)


def _apply(doc: Doc, update: Mapping[str, Any]) -> None:
    for op, fields in update.items():
        for path, arg in fields.items():
            current = _get(doc, path)
            if op == "$set":
                _set(doc, path, _copy(arg))
            elif op == "$unset":
                _unset(doc, path)
            elif op == "$inc":
                _set(doc, path, (0 if current is _MISSING else current) + arg)
            elif op == "$max":
                if current is _MISSING or arg > current:
                    _set(doc, path, arg)
            elif op == "$push":
                items = list([] if current is _MISSING else current)
                if isinstance(arg, Mapping) and "$each" in arg:
                    items += _copy(arg["$each"])
                    if "$slice" in arg and arg["$slice"] < 0:
                        items = items[arg["$slice"] :]
                else:
                    items.append(_copy(arg))
                _set(doc, path, items)
            elif op == "$addToSet":
                items = list([] if current is _MISSING else current)
                for item in arg["$each"] if isinstance(arg, Mapping) else [arg]:
                    if item not in items:
                        items.append(item)
                _set(doc, path, items)
            elif op == "$pull":
                drop = arg["$in"] if isinstance(arg, Mapping) else [arg]
                _set(doc, path, [x for x in (current or []) if x not in drop])
            else:
                raise NotImplementedError(f"DictCollection: update operator {op}")


def _project(doc: Doc, projection: Mapping[str, Any] | None) -> Doc:
    if not projection:
        return _copy(doc)
    including = any(v == 1 for k, v in projection.items() if k != "_id")
    if including:
        out = {"_id": doc["_id"]} if projection.get("_id", 1) else {}
        for path, flag in projection.items():
            if flag == 1 and path != "_id" and (value := _get(doc, path)) is not _MISSING:
                _set(out, path, _copy(value))
        return out
    out = _copy(doc)
    for path, flag in projection.items():
        if flag == 0:
            _unset(out, path)
        elif isinstance(flag, Mapping) and "$slice" in flag:
            value = _get(out, path)
            if isinstance(value, list):
                _set(out, path, value[flag["$slice"] :] if flag["$slice"] < 0 else value)
    return out


def _sort_key(sort: Sequence[tuple[str, int]]) -> Any:
    def key(doc: Doc) -> tuple[Any, ...]:
        out: list[Any] = []
        for path, direction in sort:
            value = _get(doc, path)
            present = value is not _MISSING and value is not None
            out.append(_Ordered(present, value if present else 0, direction))
        return tuple(out)

    return key


@dataclass(frozen=True, slots=True)
class _Ordered:
    present: bool
    value: Any
    direction: int

    def __lt__(self, other: _Ordered) -> bool:
        mine, theirs = (self.present, self.value), (other.present, other.value)
        return mine < theirs if self.direction > 0 else theirs < mine


@dataclass(slots=True)
class _Result:
    inserted_id: Any = None
    inserted_ids: list[Any] | None = None
    matched_count: int = 0
    modified_count: int = 0
    deleted_count: int = 0
    upserted_id: Any = None


class _Cursor:
    def __init__(self, owner: DictCollection, query: Doc, projection: Any) -> None:
        self._owner = owner
        self._query = query
        self._projection = projection
        self._sort: list[tuple[str, int]] = []
        self._limit = 0

    def sort(self, keys: Any, direction: Any = None) -> _Cursor:
        self._sort = [(keys, direction or 1)] if isinstance(keys, str) else list(keys)
        return self

    def limit(self, n: int) -> _Cursor:
        self._limit = n
        return self

    async def to_list(self, length: int | None = None) -> list[Doc]:
        docs = self._owner._select(self._query, self._sort, self._limit or length or 0)
        return [_project(d, self._projection) for d in docs]


class _Database:
    def __init__(self, name: str) -> None:
        self.name = name

    async def command(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("DictCollection has no server to ask")


class DictCollection:
    """The async collection calls jobcollection makes, over a dict, at next to no cost."""

    def __init__(self, name: str = "queue.jobs") -> None:
        self.name = name
        self.database = _Database("bench")
        self._docs: dict[Any, Doc] = {}
        self._ready: dict[str, list[tuple[Any, ...]]] = {}
        self._seq = itertools.count()
        self._dependents: set[Any] = set()
        """Ids of the jobs with antecedents: what a lookup of dependents scans (on a server,
        the index on `depends`)."""

    codec_options = CodecOptions()

    def with_options(self, **options: Any) -> DictCollection:
        """As a driver's view with other options: the same documents. Dates are kept as
        given (aware, from jobcollection), as a driver told `tz_aware=True` returns them."""
        return self

    # --- the ready heaps ---------------------------------------------------------------------

    @staticmethod
    def _claim_key(doc: Doc) -> tuple[Any, ...]:
        return (doc.get("priority", 0), doc.get("retryUntil"), doc.get("after"))

    def _track(self, doc: Doc) -> None:
        if doc.get("depends"):
            self._dependents.add(doc["_id"])
        else:
            self._dependents.discard(doc["_id"])
        if doc.get("status") == "ready" and doc.get("runId") is None:
            heap = self._ready.setdefault(doc["type"], [])
            heapq.heappush(heap, (self._claim_key(doc), next(self._seq), doc["_id"]))

    def _ready_in_order(self, types: Iterable[str], query: Doc, limit: int) -> list[Doc]:
        """Up to `limit` ready jobs of these types matching the query, in claim order."""
        heaps = [self._ready.get(t, []) for t in types]
        taken: list[tuple[list[tuple[Any, ...]], tuple[Any, ...]]] = []
        out: list[Doc] = []
        seen: set[Any] = set()
        while len(out) < limit:
            live = [h for h in heaps if h]
            if not live:
                break
            heap = min(live, key=lambda h: h[0][:2])
            entry = heapq.heappop(heap)
            doc = self._docs.get(entry[2])
            fresh = (
                doc is not None
                and doc.get("status") == "ready"
                and doc.get("runId") is None
                and self._claim_key(doc) == entry[0]
                and entry[2] not in seen
            )
            if not fresh:
                continue  # stale: dropped for good
            taken.append((heap, entry))
            seen.add(entry[2])
            if _matches(doc, query):  # type: ignore[arg-type]
                out.append(doc)  # type: ignore[arg-type]
        for heap, entry in taken:  # a read: they stay ready
            heapq.heappush(heap, entry)
        return out

    def _select(self, query: Doc, sort: Sequence[tuple[str, int]], limit: int) -> list[Doc]:
        ids = query.get("_id")
        if ids is not None and not isinstance(ids, Mapping):
            candidates: Iterable[Doc] = [self._docs[ids]] if ids in self._docs else []
        elif isinstance(ids, Mapping) and set(ids) == {"$in"}:
            candidates = [self._docs[i] for i in dict.fromkeys(ids["$in"]) if i in self._docs]
            query = {k: v for k, v in query.items() if k != "_id"}  # met by every candidate
        elif isinstance(query.get("depends"), Mapping):
            candidates = [self._docs[i] for i in self._dependents if i in self._docs]
        elif (
            list(sort) == CLAIM_SORT
            and query.get("status") == "ready"
            and isinstance(query.get("type"), Mapping)
            and limit
        ):
            return self._ready_in_order(query["type"]["$in"], query, limit)
        else:
            candidates = self._docs.values()
        found = [d for d in candidates if _matches(d, query)]
        if sort:
            found.sort(key=_sort_key(sort))
        return found[:limit] if limit else found

    # --- the calls ---------------------------------------------------------------------------

    def find(self, filter: Any = None, projection: Any = None) -> _Cursor:
        return _Cursor(self, dict(filter or {}), projection)

    async def find_one(self, filter: Any = None, projection: Any = None) -> Doc | None:
        found = self._select(dict(filter or {}), [], 1)
        return _project(found[0], projection) if found else None

    async def count_documents(self, filter: Any) -> int:
        return len(self._select(dict(filter), [], 0))

    def _insert(self, doc: Doc) -> Any:
        stored = _copy(doc)
        stored.setdefault("_id", ObjectId())
        doc.setdefault("_id", stored["_id"])
        if stored["_id"] in self._docs:
            raise DuplicateKeyError("E11000 duplicate key", 11000, {"keyPattern": {"_id": 1}})
        self._docs[stored["_id"]] = stored
        self._track(stored)
        return stored["_id"]

    async def insert_one(self, document: Doc) -> _Result:
        return _Result(inserted_id=self._insert(document))

    async def insert_many(self, documents: list[Doc], ordered: bool = True) -> _Result:
        ids: list[Any] = []
        errors: list[Doc] = []
        for index, document in enumerate(documents):
            try:
                ids.append(self._insert(document))
            except DuplicateKeyError:
                errors.append({"index": index, "code": 11000, "keyPattern": {"_id": 1}})
                if ordered:
                    break
        if errors:
            raise BulkWriteError({"writeErrors": errors, "writeConcernErrors": []})
        return _Result(inserted_ids=ids)

    def _update(self, query: Doc, update: Mapping[str, Any], multi: bool) -> _Result:
        found = self._select(query, [], 0 if multi else 1)
        for doc in found:
            _apply(doc, update)
            self._track(doc)
        return _Result(matched_count=len(found), modified_count=len(found))

    async def update_one(self, filter: Doc, update: Mapping[str, Any]) -> _Result:
        return self._update(dict(filter), update, False)

    async def update_many(self, filter: Doc, update: Mapping[str, Any]) -> _Result:
        return self._update(dict(filter), update, True)

    async def find_one_and_update(
        self,
        filter: Doc,
        update: Mapping[str, Any],
        projection: Any = None,
        sort: Any = None,
        return_document: Any = ReturnDocument.BEFORE,
    ) -> Doc | None:
        found = self._select(dict(filter), sort or [], 1)
        if not found:
            return None
        doc = found[0]
        before = _project(doc, projection)
        _apply(doc, update)
        self._track(doc)
        return _project(doc, projection) if return_document == ReturnDocument.AFTER else before

    async def bulk_write(self, requests: list[Any], ordered: bool = True) -> _Result:
        matched = 0
        for request in requests:
            matched += self._update(
                dict(request._filter), request._doc, multi=type(request).__name__ == "UpdateMany"
            ).matched_count
        return _Result(matched_count=matched)

    async def delete_many(self, filter: Doc) -> _Result:
        found = self._select(dict(filter), [], 0)
        for doc in found:
            del self._docs[doc["_id"]]
            self._dependents.discard(doc["_id"])
        return _Result(deleted_count=len(found))

    async def create_index(self, keys: Any, **options: Any) -> str:
        return "_".join(f"{k}_{d}" for k, d in keys)

    async def drop(self) -> None:
        self._docs.clear()
        self._ready.clear()
