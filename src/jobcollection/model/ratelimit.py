"""Global rate limits as values: a queue's limit (`RateLimit`), what a claim under one got
(`LimitedWork`) and how far a limit's current window is (`RateWindow`). How limits are
enforced: rules/ratecounters.py (the pure counter rules) and
local/limiter.py (the claims that apply them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from . import validation as v
from .document import USER, JobDoc
from .errors import InvalidArgument, InvalidArgumentType

MAX_PATH: Final = 1_024
"""The longest group_by accepted (a field path of a job's data)."""


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most `max` jobs of a queue's types start per `per` (seconds or a timedelta), over
    every process sharing the database; with `group_by` ("data.<field path>", or "user" for
    the job's user), at most `max` per group. Raises InvalidArgument naming a bad field."""

    max: int
    per: float | timedelta = 1.0
    group_by: str | None = None
    per_ms: int = field(init=False, repr=False, compare=False)
    """The window's length in milliseconds."""

    def __post_init__(self) -> None:
        v.integer(self.max, "max", minimum=1)
        object.__setattr__(self, "per_ms", v.duration_ms(self.per, "per", minimum_ms=1))
        group_path(self.group_by)

    @property
    def path(self) -> str | None:
        """The stored field the groups are read from (None: one counter for all)."""
        return group_path(self.group_by)


def group_path(group_by: Any) -> str | None:
    """The stored field path of a group_by: "user" is the job's user; "data.<path>" a field
    of its data. Raises InvalidArgument("group_by") otherwise."""
    if group_by is None:
        return None
    if not isinstance(group_by, str):
        raise InvalidArgumentType("group_by", "must be None, 'user' or 'data.<field path>'")
    if len(group_by) > MAX_PATH:
        raise InvalidArgument("group_by", f"is longer than {MAX_PATH} characters")
    if group_by == "user":
        return USER
    parts = group_by.split(".")
    if parts[0] != "data" or len(parts) < 2 or any(not p or p.startswith("$") for p in parts):
        problem = f"must be 'user' or 'data.<field path>', not {group_by!r}"
        raise InvalidArgument("group_by", problem)
    return group_by


@dataclass(frozen=True, slots=True)
class LimitedWork:
    """What a claim under a rate limit got: the jobs, and when the next window starts if the
    limit held some back (None: it did not; look again as usual)."""

    docs: list[JobDoc]
    next_window: datetime | None = None


@dataclass(frozen=True, slots=True)
class RateWindow:
    """A rate limit's current window, as its counters in `<root>.limits` tell: the types it
    covers, its group_by (None: one counter), the limit it counts against (`max` None: its
    counters were written by a version that did not record it), the window's length and
    start, the jobs started in it (in every group), and with group_by the groups seen in it
    and the fullest one with its count."""

    types: tuple[str, ...]
    group_by: str | None
    max: int | None
    per_ms: int
    start: datetime
    started: int
    groups: int = 0
    fullest: Any = None
    fullest_n: int = 0
