"""Type aliases and small result types shared by every layer (it imports nothing of the
library's, so any module, the remote client's included, can name them without importing the
rules that use them)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bson import ObjectId

Id = ObjectId | str
"""A job's id (or a run's): an ObjectId, or a string (ids v1.x's clients made)."""
Filter = dict[str, Any]
"""A MongoDB query."""
Update = dict[str, Any]
"""A MongoDB update (operators such as `$set`)."""


@dataclass(frozen=True, slots=True)
class Paused:
    """Which job types no process claims now (cluster-wide pause): these types, or every
    type (`every`). Running jobs are not touched; claims resume with resume_type."""

    types: tuple[str, ...] = ()
    every: bool = False

    def excludes(self, job_type: str) -> bool:
        """Whether a job of this type may not be claimed now."""
        return self.every or job_type in self.types


@dataclass(frozen=True, slots=True)
class Due:
    """What promoting the due jobs of some types found: how many it promoted, and, when it
    promoted none, when the next waiting job of those types falls due (None: no job of
    theirs waits on time alone)."""

    promoted: int
    next_due: datetime | None = None
