"""The worker registry's values: what a queue says of itself (`WorkerInfo`), and its checks for a
registration that came from outside (a remote worker's, through the method layer).

Each queue, local or remote, registers itself in `<root>.workers` when it starts, again every
ANNOUNCE_S seconds with the jobs it holds, and leaves at its shutdown; a registration not
renewed within TTL_S is gone (a TTL index deletes it, and reads skip it already). The
database side is local/workers.py; the queue's side api/queue/presence.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from . import validation as v
from .errors import InvalidArgument, InvalidArgumentType
from .types import Id

ANNOUNCE_S: Final = 10.0
"""Seconds between a queue's registrations."""
TTL_S: Final = 30.0
"""Seconds a registration lasts unless renewed (three announcements)."""
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
    and the jobs it holds now. `user`, `kind`, `started` and `last_seen` are the server's:
    who registered it (None: server code), "local" or "remote", when it first and last
    registered."""

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
    user: Any = None
    kind: str = "local"
    started: datetime | None = None
    last_seen: datetime | None = None

    def wire(self) -> dict[str, Any]:
        """The registration as a worker sends it (WIRE_KEYS; the server adds the rest)."""
        return {
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


WIRE_KEYS: Final = frozenset(
    ("id", "host", "pid", "version", "types", "concurrency", "payload", "prefetch", "held")
) | {"holding"}
"""The fields a worker sends (WorkerInfo.wire)."""


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
    )


def _count(value: Any, name: str, minimum: int) -> int:
    return v.integer(value, name, minimum=minimum, maximum=MAX_COUNT)


def _types(value: Any, name: str) -> tuple[str, ...]:
    types = v.job_types(value, name)
    if len(types) > MAX_TYPES or any(len(t) > MAX_TEXT for t in types):
        raise InvalidArgument(name, f"must be at most {MAX_TYPES} types of {MAX_TEXT} characters")
    return tuple(types)
