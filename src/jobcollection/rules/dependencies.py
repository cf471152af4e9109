"""The dependency bookkeeping rules: marking antecedents (DEPENDENTS), adopting dependents
saved elsewhere (ANNOUNCED), and resolving or dooming a dependent from what its antecedents'
stored statuses say.

Pure functions of (ids, the documents read, now) returning filters and updates, like
transitions.py; local/dependents.py applies them. (`transitions.resolve_dependents`
resolves a dependent once its antecedents complete.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..model.constants import JOB_STATUS_CANCELLABLE, Status
from ..model.document import ANNOUNCED, DEPENDENTS
from ..model.types import Filter, Id, Update
from .transitions import entry, resolve_dependents

DOOMING = (Status.FAILED, Status.CANCELLED)
"""An antecedent in one of these statuses dooms its dependents: they are cancelled."""


def announce(antecedents: Sequence[Id]) -> tuple[Filter, Update]:
    """Mark antecedents as having a dependent (DEPENDENTS), before the dependent is stored or
    adopted: a completion then looks its dependents up."""
    return {"_id": {"$in": list(antecedents)}}, {"$set": {DEPENDENTS: True}}


def announced(update: Update) -> Update:
    """A save's update of a dependent whose antecedents it marked first: the dependent is
    marked ANNOUNCED with it (it is never adopted). Changes `update`."""
    update.setdefault("$set", {})[ANNOUNCED] = True
    return update


def announced_document(stored: dict[str, Any]) -> dict[str, Any]:
    """A dependent's document inserted by a save that marked its antecedents first: marked
    ANNOUNCED (it is never adopted). Changes `stored`."""
    stored.setdefault("_private", {})[ANNOUNCED.split(".", 1)[1]] = True
    return stored


def unannounced() -> Filter:
    """Dependents saved by another application (job-collection v1.x): waiting or paused,
    with antecedents, not marked ANNOUNCED."""
    return {
        "status": {"$in": [Status.WAITING, Status.PAUSED]},
        "depends.0": {"$exists": True},
        ANNOUNCED: {"$exists": False},
    }


def adopted(dependents: Sequence[Id]) -> tuple[Filter, Update]:
    """Mark dependents as adopted (ANNOUNCED): their antecedents carry DEPENDENTS."""
    return {"_id": {"$in": list(dependents)}}, {"$set": {ANNOUNCED: True}}


def finished_among(antecedents: Sequence[Id]) -> Filter:
    """The antecedents among these that completed or doom their dependents."""
    return {"_id": {"$in": list(antecedents)}, "status": {"$in": [Status.COMPLETED, *DOOMING]}}


@dataclass
class Adoption:
    """What adopting some dependents does: the resolutions to write, the dependents they
    resolve (to promote when due), and the dependents to cancel (with theirs)."""

    updates: list[tuple[Filter, Update]] = field(default_factory=list)
    resolved: list[Id] = field(default_factory=list)
    doomed: list[Id] = field(default_factory=list)


def adopt(
    dependents: Sequence[Mapping[str, Any]],
    finished: Mapping[Id, Mapping[str, Any]],
    now: datetime,
) -> Adoption:
    """Adopt dependents (read with their `depends`), given their antecedents that finished
    (by id, read with `status` and `runId`): each is cancelled if one failed or was
    cancelled, else resolved for those that completed."""
    out = Adoption()
    for dependent in dependents:
        statuses = {a: finished.get(a, {}).get("status") for a in dependent["depends"]}
        done = [(a, finished[a].get("runId")) for a, s in statuses.items() if s == Status.COMPLETED]
        if any(s in DOOMING for s in statuses.values()):
            out.doomed.append(dependent["_id"])
        elif done:
            out.updates.append(resolve_dependents(dependent["_id"], done, now, None))
            out.resolved.append(dependent["_id"])
    return out


def check_at_save(
    job_id: Id, depends: Sequence[Id], found: Mapping[Id, Mapping[str, Any]], now: datetime
) -> tuple[tuple[Filter, Update] | None, bool]:
    """What a save does with a job's antecedents (`found`: those stored, by id, read with
    `status` and `runId`): the update that moves the completed ones to `resolved` and logs
    the missing, failed or cancelled ones (None: nothing to write), and whether one of those
    dooms the job (it is then cancelled)."""
    resolved = [d for d in depends if found.get(d, {}).get("status") == Status.COMPLETED]
    entries = [
        entry(
            now,
            "Dependency resolved",
            data={"dependency": {"id": d, "runId": found[d].get("runId")}},
        )
        for d in resolved
    ]
    doomed = False
    for dep in depends:
        status = found.get(dep, {}).get("status")
        if status is None:
            entries.append(entry(now, f"Antecedent job {dep} missing at save"))
        elif status in (Status.FAILED, Status.CANCELLED):
            entries.append(entry(now, f"Antecedent job {status} before save"))
        else:
            continue
        doomed = True
    if not entries:
        return None, doomed
    update: Update = {"$push": {"log": {"$each": entries}}}
    if resolved:
        # A set: a resave or a repeated save resolving an id again adds it once.
        update["$pull"] = {"depends": {"$in": resolved}}
        update["$addToSet"] = {"resolved": {"$each": resolved}}
    return ({"_id": job_id, "status": {"$in": [Status.WAITING, Status.PAUSED]}}, update), doomed


def resolve_completed(
    dependents: Sequence[Mapping[str, Any]],
    completed: Mapping[Id, tuple[Id, datetime, int | None]],
) -> tuple[list[Id], list[tuple[Filter, Update]]]:
    """The dependents (read with `depends`) of jobs that completed (by id: the runId, when,
    and the delayDeps in ms or None), and the update resolving each: dated by its first
    completed antecedent's completion, delayed by the longest delay asked."""
    waiting = [d for d in dependents if any(a in completed for a in d.get("depends", []))]
    updates = []
    for dependent in waiting:
        antecedents = [a for a in dependent.get("depends", []) if a in completed]
        delays = [d for a in antecedents if (d := completed[a][2]) is not None]
        updates.append(
            resolve_dependents(
                dependent["_id"],
                [(a, completed[a][0]) for a in antecedents],
                completed[antecedents[0]][1],
                max(delays) if delays else None,
            )
        )
    return [d["_id"] for d in waiting], updates


def doomed_by(failed: set[Id], dependents: Sequence[Mapping[str, Any]]) -> list[Id]:
    """The dependents (read with `depends` and `status`) of jobs that failed for good, to
    cancel with theirs. Dependents already cancelled are included, so a cascade cut short by
    a fault is carried on."""
    statuses = {*JOB_STATUS_CANCELLABLE, Status.CANCELLED}
    return [
        d["_id"]
        for d in dependents
        if d.get("status") in statuses and any(a in failed for a in d.get("depends", []))
    ]
