"""The rules of the worker registry: the filter and update of a registration in
`<root>.workers` (beside the jobs; the jobs collection keeps v1.x's closed schema), what a
stored one says, and which ones are alive. Pure: local/workers.py applies them."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from ..model.schedule import add_ms
from ..model.types import Filter, Update
from ..model.workers import TTL_MS, WorkerInfo

EXPIRE_AT: Final = "expireAt"
"""The field the TTL index deletes a registration by."""


def register(worker: WorkerInfo, user: Any, kind: str, now: datetime) -> tuple[Filter, Update]:
    """Register (or renew) a queue as `user` (None: server code) saw it now, until its TTL
    runs out. The filter names the user, so a registration can be renewed only by the user
    who made it: another user's upsert meets its `_id` and fails."""
    fields = {k: value for k, value in worker.wire().items() if k != "id"}
    fields |= {
        "ttl": worker.ttl_ms,
        "user": user,
        "kind": kind,
        "lastSeen": now,
        EXPIRE_AT: add_ms(now, worker.ttl_ms),
    }
    return {"_id": worker.id, "user": user}, {"$set": fields, "$setOnInsert": {"started": now}}


def leave(worker_id: str, user: Any) -> Filter:
    """The registration a queue removes at its shutdown (its own user's only)."""
    return {"_id": worker_id, "user": user}


def alive(now: datetime) -> Filter:
    """The registrations renewed within their TTL (the TTL monitor deletes the others within
    a minute; this filter does not wait for it)."""
    return {EXPIRE_AT: {"$gt": now}}


def read(stored: Mapping[str, Any]) -> WorkerInfo:
    """A stored registration (written by `register`) as a WorkerInfo."""
    return WorkerInfo(
        id=str(stored["_id"]),
        host=str(stored.get("host", "")),
        pid=int(stored.get("pid", 0)),
        version=str(stored.get("version", "")),
        types=tuple(stored.get("types", ())),
        concurrency=int(stored.get("concurrency", 1)),
        payload=int(stored.get("payload", 1)),
        prefetch=int(stored.get("prefetch", 0)),
        held=tuple(stored.get("held", ())),
        holding=int(stored.get("holding", 0)),
        ttl_ms=int(stored.get("ttl", TTL_MS)),
        user=stored.get("user"),
        kind=str(stored.get("kind", "local")),
        started=stored.get("started"),
        last_seen=stored.get("lastSeen"),
    )
