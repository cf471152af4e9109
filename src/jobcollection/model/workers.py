"""The worker registry's values: what a queue says of itself (`WorkerInfo`), and its checks for a
registration that came from outside (a remote worker's, through the method layer).

Each queue, local or remote, registers itself in `<root>.workers` when it starts, again every
third of its TTL with the jobs it holds, and leaves at its shutdown; a registration not
renewed within its TTL is gone (a TTL index deletes it, and reads skip it already). The TTL
is the registering queue's own (`ttl_ms`, from its JobCollection's `worker_ttl`; TTL_S by
default): whoever renews a registration knows how often it does. The database side is
local/workers.py; the queue's side api/queue/presence.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from . import validation as v
from .errors import InvalidArgument, InvalidArgumentType
from .types import Id

TTL_S: Final = 30.0
"""Seconds a registration lasts unless renewed, by default (JobCollection's `worker_ttl`)."""
TTL_MS: Final = 30_000
"""TTL_S in milliseconds, as a registration carries it (`ttl` on the wire)."""
ANNOUNCE_S: Final = TTL_S / 3
"""Seconds between the registrations of a queue with the default TTL (`announce_s`)."""
MIN_TTL_MS: Final = 1_000
"""The shortest TTL accepted: its queues renew three times a second, which is load enough."""
MAX_TTL_MS: Final = 86_400_000
"""The longest TTL accepted (a day): a killed process stays listed for as long as this."""
MAX_HELD: Final = 100
"""The most held job ids a registration lists (`holding` counts them all)."""
MAX_TEXT: Final = 256
"""The longest host name, version or job type a registration keeps."""
MAX_TYPES: Final = 100
"""The most job types a registration names."""
MAX_COUNT: Final = 1_000_000
"""The largest concurrency, payload, prefetch or count of held jobs a registration gives."""


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A queue, as it registers itself: which process it runs in, what it claims and how,
    the jobs it holds now, and how long the registration lasts unless renewed (`ttl_ms`).
    `user`, `kind`, `started` and `last_seen` are the server's: who registered it (None:
    server code), "local" or "remote", when it first and last registered."""

    id: str
    host: str
    pid: int
    version: str
    types: tuple[str, ...]
    concurrency: int
    payload: int
    prefetch: int
    held: tuple[Id, ...] = ()
    holding: int = 0
    ttl_ms: int = TTL_MS
    """How long the registration lasts unless renewed; the queue renews it every third."""
    user: Any = None
    kind: str = "local"
    started: datetime | None = None
    last_seen: datetime | None = None

    def wire(self) -> dict[str, Any]:
        """The registration as a worker sends it (WIRE_KEYS; the server adds the rest). `ttl`
        only when it is not the default, so that a server of an earlier version, which does
        not know the key, still takes the registrations of queues that keep the default."""
        wire: dict[str, Any] = {
            "id": self.id,
            "host": self.host,
            "pid": self.pid,
            "version": self.version,
            "types": list(self.types),
            "concurrency": self.concurrency,
            "payload": self.payload,
            "prefetch": self.prefetch,
            "held": list(self.held),
            "holding": self.holding,
        }
        if self.ttl_ms != TTL_MS:
            wire["ttl"] = self.ttl_ms
        return wire


WIRE_KEYS: Final = frozenset(
    ("id", "host", "pid", "version", "types", "concurrency", "payload", "prefetch", "held")
) | {"holding", "ttl"}
"""The fields a worker sends (WorkerInfo.wire); `ttl` is in milliseconds, and optional."""


def announce_s(ttl_ms: int) -> float:
    """Seconds between the registrations of a queue whose registration lasts `ttl_ms`: a
    third, so that two renewals may fail before a live queue is taken for gone."""
    return ttl_ms / 3000


def worker_ttl_ms(value: float | timedelta, name: str = "worker_ttl") -> int:
    """A registration's TTL given in seconds (or a timedelta), as milliseconds: from 1 second
    (MIN_TTL_MS) to a day (MAX_TTL_MS); InvalidArgument naming `name` otherwise."""
    ms = v.duration_ms(value, name, minimum_ms=MIN_TTL_MS)
    if ms > MAX_TTL_MS:
        raise InvalidArgument(name, f"must be at most {MAX_TTL_MS // 1000} seconds")
    return ms


def worker_id(value: Any, name: str = "id") -> str:
    """A registration's id: 1 to 64 characters of letters, digits, `-` and `_`."""
    text = v.text(value, name, max_length=64)
    if not text or not all(c.isascii() and (c.isalnum() or c in "-_") for c in text):
        raise InvalidArgument(name, "must be 1 to 64 letters, digits, '-' or '_'")
    return text


def registration(value: Any, name: str = "worker") -> WorkerInfo:
    """A registration as a worker sent it (InvalidArgument naming the field otherwise)."""
    if isinstance(value, WorkerInfo):
        return value
    if not isinstance(value, Mapping):
        raise InvalidArgumentType(name, f"must be an object, not {type(value).__name__}")
    unknown = sorted(str(k) for k in value if k not in WIRE_KEYS)
    if unknown:
        raise InvalidArgument(name, f"unknown keys {unknown}")
    held = value.get("held", [])
    if not isinstance(held, list | tuple) or len(held) > MAX_HELD:
        raise InvalidArgument(f"{name}.held", f"must be a list of at most {MAX_HELD} job ids")
    return WorkerInfo(
        id=worker_id(value.get("id"), f"{name}.id"),
        host=v.text(value.get("host"), f"{name}.host", max_length=MAX_TEXT),
        pid=v.integer(value.get("pid"), f"{name}.pid", minimum=0, maximum=2**31),
        version=v.text(value.get("version"), f"{name}.version", max_length=MAX_TEXT),
        types=_types(value.get("types"), f"{name}.types"),
        concurrency=_count(value.get("concurrency"), f"{name}.concurrency", 1),
        payload=_count(value.get("payload"), f"{name}.payload", 1),
        prefetch=_count(value.get("prefetch"), f"{name}.prefetch", 0),
        held=tuple(v.job_id(x, f"{name}.held[{i}]") for i, x in enumerate(held)),
        holding=_count(value.get("holding", 0), f"{name}.holding", 0),
        ttl_ms=v.integer(
            value.get("ttl", TTL_MS), f"{name}.ttl", minimum=MIN_TTL_MS, maximum=MAX_TTL_MS
        ),
    )


def _count(value: Any, name: str, minimum: int) -> int:
    return v.integer(value, name, minimum=minimum, maximum=MAX_COUNT)


def _types(value: Any, name: str) -> tuple[str, ...]:
    types = v.job_types(value, name)
    if len(types) > MAX_TYPES or any(len(t) > MAX_TEXT for t in types):
        raise InvalidArgument(name, f"must be at most {MAX_TYPES} types of {MAX_TEXT} characters")
    return tuple(types)
