"""The rules of cluster-wide pause: the updates of the pause document `pausedTypes` in
`<root>.servers` (beside the jobs; the jobs collection keeps v1.x's closed schema), and what
a stored one says. Pure: local/pausing.py applies them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from ..model.types import Filter, Paused, Update

PAUSED_ID: Final = "pausedTypes"
"""The `_id` of the pause document."""


def pause(types: Sequence[str] | None) -> tuple[Filter, Update]:
    """Pause these types (None: every type), adding to what is paused (an upsert)."""
    if types is None:
        return {"_id": PAUSED_ID}, {"$set": {"every": True}}
    return {"_id": PAUSED_ID}, {"$addToSet": {"types": {"$each": list(types)}}}


def resume(types: Sequence[str] | None) -> tuple[Filter, Update]:
    """Resume these types (None: every type, and the pause of every type). Resuming some
    types while every type is paused changes only the list: every type stays paused."""
    if types is None:
        return {"_id": PAUSED_ID}, {"$set": {"every": False, "types": []}}
    return {"_id": PAUSED_ID}, {"$pull": {"types": {"$in": list(types)}}}


def read(stored: Mapping[str, Any] | None) -> Paused:
    """What a stored pause document says (none: nothing is paused)."""
    if not stored:
        return Paused()
    types = stored.get("types")
    listed = (
        tuple(sorted(t for t in types if isinstance(t, str))) if isinstance(types, list) else ()
    )
    return Paused(listed, stored.get("every") is True)


def claimable_types(types: Sequence[str], paused: Paused) -> list[str]:
    """The types a claim asks for that are not paused."""
    return [t for t in types if not paused.excludes(t)]
