"""The rule of adding antecedents to saved jobs that have not started (AddDepends, applied by
local/edges.py), pure like transitions.py."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from ..model.constants import OnFailure, Status
from ..model.document import ON_FAILURE
from ..model.types import Filter, Id, Update
from .transitions import entry


def add_edges(
    ids: Sequence[Id],
    antecedents: Sequence[Id],
    policy: OnFailure,
    max_depends: int,
    now: datetime,
) -> tuple[Filter, Update]:
    """Add antecedents to the jobs among `ids` still waiting or paused, each once, with their
    failure policy (stored unless "cancel"), logged; a job that would wait on more than
    `max_depends` is left as it is."""
    fence: Filter = {
        "_id": {"$in": list(ids)},
        "status": {"$in": [Status.WAITING, Status.PAUSED]},
        f"depends.{max_depends - len(antecedents)}": {"$exists": False},
    }
    update: Update = {
        "$addToSet": {"depends": {"$each": list(antecedents)}},
        "$push": {"log": entry(now, f"Dependencies added: {len(antecedents)}")},
        "$set": {"updated": now},
    }
    if policy != "cancel":
        edges = [{"id": a, "policy": policy} for a in antecedents]
        update["$addToSet"][ON_FAILURE] = {"$each": edges}
    return fence, update
