"""The dependency bookkeeping rules: marking antecedents (DEPENDENTS), adopting dependents
saved elsewhere (ANNOUNCED), and resolving or dooming a dependent from what its antecedents'
stored statuses say.

Pure functions of (ids, the documents read, now) returning filters and updates, like
transitions.py; local/dependents.py applies them. (`transitions.resolve_dependents`
resolves a dependent once its antecedents complete.)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from ..model.constants import JOB_STATUS_CANCELLABLE, ON_FAILURE_POLICIES, Status
from ..model.document import (
    ANNOUNCED,
    CASCADE,
    DEPENDENTS,
    EXPIRE_AT,
    FAILED_ANTECEDENTS,
    ON_FAILURE,
    REMOVE_AFTER,
    RUN_IF,
)
from ..model.errors import InvalidArgument
from ..model.schedule import add_ms
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


def resolve_each(
    dependents: Sequence[Mapping[str, Any]],
    completed: Mapping[Id, tuple[Id, datetime, int | None]],
) -> list[tuple[Filter, Update]]:
    """`resolve_completed` one edge at a time, for the dependents it resolves several
    antecedents of in one update: each fenced by its own antecedent still pending. The
    update of several requires every one of them still pending, so it misses a dependent
    another process resolved one of them of in the meantime (a job-server pass finishing
    marked follow-ups while a reporter finishes its own); these resolve the rest."""
    updates = []
    for dependent in dependents:
        antecedents = [a for a in dependent.get("depends", []) if a in completed]
        if len(antecedents) < 2:
            continue
        for a in antecedents:
            run_id, at, delay = completed[a]
            updates.append(resolve_dependents(dependent["_id"], [(a, run_id)], at, delay))
    return updates


@dataclass
class BatchPlan:
    """How a batch of jobs whose dependencies point into the batch itself is saved: `bulk`,
    the new jobs inserted together in one ordered insert, dependents before their
    antecedents (so a completion always finds its dependents stored), and `rest`, the jobs
    saved one by one afterwards, antecedents first."""

    bulk: list[int] = field(default_factory=list)
    rest: list[int] = field(default_factory=list)
    antecedents: set[int] = field(default_factory=set)
    """Bulk jobs with a dependent in the bulk (stored marked DEPENDENTS)."""


def plan_batch(
    depends: Sequence[Sequence[Id]], new_ids: Sequence[Id | None], bulkable: Sequence[bool]
) -> BatchPlan | None:
    """Plan a batch (each job's antecedents, the id each new job is inserted under, and
    whether it could be inserted in bulk on its own merits: new, not unique, ...), or None if
    no job depends on another of the batch (save_many's usual way applies). A job is in the
    bulk if it is bulkable and every antecedent is a bulk job of the batch. Raises
    InvalidArgument("jobs") if the batch's dependencies form a cycle."""
    position = {job_id: i for i, job_id in enumerate(new_ids) if job_id is not None}
    inner = [[position[a] for a in deps if a in position] for deps in depends]
    if not any(inner):
        return None
    order = _topological(inner)
    in_bulk = [False] * len(depends)
    for i in order:  # antecedents first: a job's antecedents are decided before it
        in_bulk[i] = bulkable[i] and all(a in position and in_bulk[position[a]] for a in depends[i])
    plan = BatchPlan()
    plan.bulk = [i for i in reversed(order) if in_bulk[i]]
    plan.rest = [i for i in order if not in_bulk[i]]
    plan.antecedents = {a for i in plan.bulk for a in inner[i]}
    return plan


def _topological(inner: Sequence[Sequence[int]]) -> list[int]:
    """The batch's jobs, each after its antecedents in the batch (Kahn's algorithm, keeping
    the given order among jobs free to go); InvalidArgument if there is a cycle."""
    waiting = [len(set(deps)) for deps in inner]
    dependents: list[list[int]] = [[] for _ in inner]
    for i, deps in enumerate(inner):
        for a in set(deps):
            dependents[a].append(i)
    ready = deque(i for i, n in enumerate(waiting) if n == 0)
    order: list[int] = []
    while ready:
        i = ready.popleft()
        order.append(i)
        for d in dependents[i]:
            waiting[d] -= 1
            if waiting[d] == 0:
                ready.append(d)
    if len(order) < len(inner):
        stuck = sorted(set(range(len(inner))) - set(order))[:5]
        raise InvalidArgument("jobs", f"their dependencies form a cycle (through jobs {stuck})")
    return order


def mark_in_batch(stored: dict[str, Any], antecedent: bool, dependent: bool) -> dict[str, Any]:
    """A bulk job's document as a save of its own would have marked it: DEPENDENTS on an
    antecedent, ANNOUNCED on a dependent. Changes `stored`."""
    private = stored.setdefault("_private", {})
    if antecedent:
        private[DEPENDENTS.split(".", 1)[1]] = True
    if dependent:
        private[ANNOUNCED.split(".", 1)[1]] = True
    return stored


# --- failure policies ----------------------------------------------------------------------

ENDED_BADLY = (Status.FAILED, Status.CANCELLED)
"""How an antecedent ends for its dependents' failure policies to apply."""

NOT_STARTED = (Status.WAITING, Status.PAUSED, Status.READY)
"""The dependents a policy acts on (a running one is its worker's: it finishes, or its
cancel stops it)."""

_POLICY_KEY = ON_FAILURE.split(".", 1)[1]
_RETENTION_KEY = REMOVE_AFTER.split(".", 1)[1]
_RUN_IF_KEY = RUN_IF.split(".", 1)[1]


def conditional(dependent: Mapping[str, Any]) -> bool:
    """Whether a stored job runs only on a condition of its antecedents (RUN_IF)."""
    return _RUN_IF_KEY in (dependent.get("_private") or {})


def policy_of(dependent: Mapping[str, Any], antecedent: Id) -> str:
    """A stored dependent's failure policy for one of its antecedents ("cancel" unless its
    ON_FAILURE says otherwise; an entry that is not a policy counts as "cancel")."""
    edges = (dependent.get("_private") or {}).get(_POLICY_KEY)
    for edge in edges if isinstance(edges, list) else []:
        if isinstance(edge, Mapping) and edge.get("id") == antecedent:
            policy = edge.get("policy")
            return policy if policy in ON_FAILURE_POLICIES else "cancel"
    return "cancel"


@dataclass
class Verdicts:
    """What the dependents of jobs that ended badly do, by their failure policies: the ids
    to cancel (with theirs), the writes that fail some or drop edges of others (and the
    dependents those may free, to promote), and the dependents that ended already (cancelled
    or failed by an earlier pass of the same cascade cut short by a fault), whose own
    dependents the cascade goes on to."""

    cancel: list[Id] = field(default_factory=list)
    fail: list[Id] = field(default_factory=list)
    writes: list[tuple[Filter, Update]] = field(default_factory=list)
    freed: list[Id] = field(default_factory=list)
    conditional: bool = False
    """Some freed job runs only on a condition (RUN_IF): the promotion settles it."""
    ended: dict[Id, Status] = field(default_factory=dict)


def verdicts(
    ended: Mapping[Id, Status], dependents: Sequence[Mapping[str, Any]], now: datetime
) -> Verdicts:
    """Apply the failure policies of dependents (read with `depends`, `status`, their
    policies and retention) to the antecedents among `ended` (id: FAILED or CANCELLED). Per
    dependent, the strongest policy among its edges from those wins: cancel, then fail; its
    "ignore" and "remove" edges are dropped otherwise ("ignore" recorded in
    FAILED_ANTECEDENTS), and it is freed if nothing is left to wait for."""
    out = Verdicts()
    for dependent in dependents:
        job_id, status = dependent["_id"], dependent.get("status")
        gone = [a for a in dependent.get("depends", []) if a in ended]
        if not gone:
            continue
        if status in ENDED_BADLY:  # ended before, by this cascade: go on to its dependents
            out.ended[job_id] = Status(status)
            continue
        policies = {a: policy_of(dependent, a) for a in gone}
        if "cancel" in policies.values():
            if status in JOB_STATUS_CANCELLABLE:  # (a running one too, as job-collection does)
                out.cancel.append(job_id)
        elif status not in NOT_STARTED:
            continue
        elif "fail" in policies.values():
            out.fail.append(job_id)
            out.writes.append(fail_dependent(dependent, gone, ended, now))
        else:
            out.writes.append(drop_edges(job_id, policies, ended, now))
            out.freed.append(job_id)
            out.conditional = out.conditional or conditional(dependent)
    return out


def fail_dependent(
    dependent: Mapping[str, Any], gone: Sequence[Id], ended: Mapping[Id, Status], now: datetime
) -> tuple[Filter, Update]:
    """Fail a dependent (not started) for good because of its antecedents that ended
    badly (policy "fail"); its removal date set if its retention covers "failed"."""
    causes = [{"antecedent": a, "status": str(ended[a])} for a in gone]
    first = gone[0]
    message = f"Job Failed: antecedent {first} {ended[first]}"
    update: Update = {
        "$set": {"status": Status.FAILED, "updated": now, "runId": None},
        "$push": {
            "failures": {"$each": [{"value": message, "antecedents": causes}]},
            "log": entry(now, message, level="danger"),
        },
    }
    retention = (dependent.get("_private") or {}).get(_RETENTION_KEY)
    if isinstance(retention, Mapping) and Status.FAILED in (retention.get("statuses") or []):
        delay = retention.get("delay")
        if isinstance(delay, int) and not isinstance(delay, bool):
            update["$set"][EXPIRE_AT] = add_ms(now, delay)
    fence: Filter = {
        "_id": dependent["_id"],
        "status": {"$in": list(NOT_STARTED)},
        "depends": first,
    }
    return fence, update


def drop_edges(
    job_id: Id, policies: Mapping[Id, str], ended: Mapping[Id, Status], now: datetime
) -> tuple[Filter, Update]:
    """Drop a dependent's edges from antecedents that ended badly (policies "ignore",
    recorded in FAILED_ANTECEDENTS, and "remove"), each logged."""
    gone = list(policies)
    ignored = [a for a, p in policies.items() if p == "ignore"]
    entries = [
        entry(
            now,
            f"Antecedent {a} {ended[a]}: "
            + ("running without it" if policies[a] == "ignore" else "dependency removed"),
            level="warning",
        )
        for a in gone
    ]
    update: Update = {
        "$pull": {"depends": {"$in": gone}},
        "$push": {"log": {"$each": entries}},
    }
    if ignored:
        update["$addToSet"] = {FAILED_ANTECEDENTS: {"$each": ignored}}
    return {"_id": job_id, "depends": {"$in": gone}}, update


def dependents_of(ended: Mapping[Id, Status]) -> tuple[Filter, dict[str, int]]:
    """The query and projection of the dependents `verdicts` judges: those of these jobs
    that may be cancelled, or that ended already."""
    statuses = [*JOB_STATUS_CANCELLABLE, *ENDED_BADLY]
    query: Filter = {"depends": {"$in": list(ended)}, "status": {"$in": statuses}}
    return query, {"depends": 1, "status": 1, ON_FAILURE: 1, REMOVE_AFTER: 1, RUN_IF: 1}


def ended_dependents(antecedents: Sequence[Id]) -> tuple[Filter, dict[str, int]]:
    """The query and projection of the dependents of these jobs that ended badly (failed or
    cancelled) while still waiting on them: a cascade of failure policies goes on from them."""
    query: Filter = {"depends": {"$in": list(antecedents)}, "status": {"$in": list(ENDED_BADLY)}}
    return query, {"status": 1}


# --- durable cancel cascades ---------------------------------------------------------------

_CASCADE_KEY = CASCADE.split(".", 1)[1]


def cascade_begins(ids: Sequence[Id], now: datetime) -> tuple[Filter, Update]:
    """Mark the jobs among ids that have dependents and may be cancelled: their cancel's
    cascade is pending (cleared by `cascade_done` once it is applied)."""
    fence: Filter = {
        "_id": {"$in": list(ids)},
        DEPENDENTS: True,
        "status": {"$in": list(JOB_STATUS_CANCELLABLE)},
    }
    return fence, {"$set": {CASCADE: now}}


def cascade_done(ids: Sequence[Id]) -> tuple[Filter, Update]:
    """Clear the pending-cascade marks of these jobs."""
    return {"_id": {"$in": list(ids)}, CASCADE: {"$exists": True}}, {"$unset": {CASCADE: ""}}


CASCADE_GRACE: Final = timedelta(minutes=1)
"""How long a pending-cascade mark on a job that is not cancelled is left alone (its cancel
may be under way) before a pass clears it (the cancel never happened)."""


def cascades_pending(now: datetime) -> tuple[Filter, dict[str, int]]:
    """The jobs whose cancel's cascade is marked pending (since before now), with their
    status and mark."""
    return {CASCADE: {"$exists": True, "$lte": now}}, {"status": 1, CASCADE: 1}
