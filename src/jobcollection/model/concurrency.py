"""Global concurrency limits as values: `ConcurrencyLimit`, at most N jobs of a type running at
once over every process and remote worker (per group, with `group_by`), and its wire form.

Where a limit is kept and how claims honour it: rules/concurrency.py (the pure rules) and
local/slots.py (the claims that apply them)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from . import validation as v
from .errors import InvalidArgument, InvalidArgumentType
from .ratelimit import group_path

MAX_RUNNING: Final = 1_000_000
"""The largest limit accepted (a limit above every queue's concurrency never binds)."""

WIRE_KEYS: Final = frozenset({"maxRunning", "groupBy"})
"""The keys of a limit on the wire (jobSetConcurrencyLimit's second parameter)."""


@dataclass(frozen=True, slots=True)
class ConcurrencyLimit:
    """At most `max_running` jobs of a type running at once, over every process, remote and
    DDP worker that claims through a JobCollection; with `group_by` ("data.<field path>", or
    "user" for the job's user), at most `max_running` per value of that field. A running job
    holds its slot until it leaves `running` or its lease (workTimeout) runs out, whichever
    comes first. Raises InvalidArgument naming a bad field."""

    max_running: int
    group_by: str | None = None

    def __init__(self, max_running: int, *, group_by: str | None = None) -> None:
        object.__setattr__(
            self,
            "max_running",
            v.integer(max_running, "max_running", minimum=1, maximum=MAX_RUNNING),
        )
        group_path(group_by)
        object.__setattr__(self, "group_by", group_by)

    @property
    def path(self) -> str | None:
        """The stored field the groups are read from (None: one count for the type)."""
        return group_path(self.group_by)

    def wire(self) -> dict[str, Any]:
        """The limit as jobSetConcurrencyLimit takes it and jobConcurrencyLimits answers it."""
        return {"maxRunning": self.max_running, "groupBy": self.group_by}


def limit_from_wire(value: Any, name: str = "limit") -> ConcurrencyLimit:
    """A limit as the wire (or a caller) gives it: a ConcurrencyLimit, or an object with
    `maxRunning` and optionally `groupBy`. Raises InvalidArgument naming the field."""
    if isinstance(value, ConcurrencyLimit):
        return value
    if not isinstance(value, Mapping):
        raise InvalidArgumentType(
            name,
            f"must be a ConcurrencyLimit or {{maxRunning, groupBy}}, not {type(value).__name__}",
        )
    unknown = sorted(str(k) for k in value if k not in WIRE_KEYS)
    if unknown:
        raise InvalidArgument(name, f"unknown keys {unknown}; use {sorted(WIRE_KEYS)}")
    if "maxRunning" not in value:
        raise InvalidArgument(f"{name}.maxRunning", "is required")
    try:
        return ConcurrencyLimit(value["maxRunning"], group_by=value.get("groupBy"))
    except InvalidArgument as exc:
        field = {"max_running": "maxRunning", "group_by": "groupBy"}.get(exc.argument, exc.argument)
        raise type(exc)(f"{name}.{field}", exc.problem) from None
