"""Workflows: new jobs saved together with the dependencies between them, built by composing
three builders named after Celery's canvas (a Python user's first guess):

- `chain(a, b, c)`: b runs after a completes, c after b;
- `group(a, b, ...)`: side by side, no order between them;
- `chord(header, callback)`: the callback runs after every job of the header completes, and
  receives their results (`await job.antecedent_results()`).

Each takes jobs, or other chains, groups and chords (a chain of groups, a group of chains):
a step that follows a group waits for every job the group ends with. Each dependency (an
edge) has a failure policy (constants.ON_FAILURE_POLICIES): what the later job does when the
earlier one fails for good or is cancelled: "cancel" (job-collection's behaviour, the
default), "fail", "ignore" (run anyway once the others complete, recording which failed), or
"remove" (drop the edge). Policies other than "cancel" are kept under `_private`, so the
documents stay valid for job-collection v1.x, whose dependencies they are.

`jc.save_workflow(flow)` saves every job of a flow in one ordered insert (as few commands as
`save_jobs` of the same jobs: one per 1,000 jobs; dependents before their antecedents, so
nothing runs before what depends on it is stored), each marked with the workflow's id, and
answers a `Workflow`: find its jobs, count them per status, cancel the unfinished, restart the
failed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from itertools import pairwise
from typing import TYPE_CHECKING, Any, TypeAlias

from bson import ObjectId

from ..model import ops
from ..model import validation as v
from ..model.constants import ON_FAILURE_POLICIES, OnFailure, Status
from ..model.document import Edge, assign
from ..model.errors import InvalidArgument, InvalidArgumentType
from ..model.types import Id
from .job import Job, save_all

if TYPE_CHECKING:
    from .jobs import JobsAPI
    from .seam import JobService


@dataclass(frozen=True, eq=False)
class Flow:
    """Jobs and the dependencies between them, as the builders compose them: every job (in
    the order given), the jobs it starts with (`sources`: none of them waits on another of
    the flow), the jobs it ends with (`sinks`), and the edges (antecedent, dependent,
    policy). `id` is the workflow's id once saved."""

    jobs: tuple[Job, ...]
    sources: tuple[Job, ...]
    sinks: tuple[Job, ...]
    edges: tuple[tuple[Job, Job, OnFailure], ...] = ()
    id: Id = field(default_factory=ObjectId)


Step: TypeAlias = "Job | Flow"


def chain(*steps: Step | Iterable[Step], on_failure: OnFailure = "cancel") -> Flow:
    """Steps one after the other: each step's first jobs wait on every last job of the step
    before it, with the failure policy `on_failure`. An iterable of steps in place of a step
    is a group of them."""
    policy = _policy(on_failure)
    flows = [_flow(step, f"steps[{i}]") for i, step in enumerate(steps)]
    if not flows:
        raise InvalidArgument("steps", "a chain needs at least one step")
    edges = [e for f in flows for e in f.edges]
    for before, after in pairwise(flows):
        edges += [(a, d, policy) for d in after.sources for a in before.sinks]
    return _checked(
        tuple(j for f in flows for j in f.jobs), flows[0].sources, flows[-1].sinks, edges
    )


def group(*members: Step | Iterable[Step]) -> Flow:
    """Steps side by side, with no order between them: the group starts with every step's
    first jobs and ends with every step's last. `group(jobs)` takes an iterable too."""
    flows: list[Flow] = []
    for i, member in enumerate(members):
        if isinstance(member, Job | Flow):
            flows.append(_flow(member, f"members[{i}]"))
        else:
            flows += [_flow(m, f"members[{i}][{k}]") for k, m in enumerate(_items(member, i))]
    if not flows:
        raise InvalidArgument("members", "a group needs at least one job")
    return _checked(
        tuple(j for f in flows for j in f.jobs),
        tuple(j for f in flows for j in f.sources),
        tuple(j for f in flows for j in f.sinks),
        [e for f in flows for e in f.edges],
    )


def chord(header: Step | Iterable[Step], callback: Step, on_failure: OnFailure = "cancel") -> Flow:
    """The callback after every job of the header (a group) completes: a fan-in. The
    callback receives their results (`await job.antecedent_results()`)."""
    return chain(group(header), callback, on_failure=on_failure)


def batch(
    members: Step | Iterable[Step],
    *,
    on_success: Job | None = None,
    on_complete: Job | None = None,
    on_failure: Job | None = None,
) -> Flow:
    """A batch: members (jobs, chains, groups, other batches) counted together
    (`jc.batch(flow.id).status()`), and callbacks, ordinary jobs each fired at most once:
    `on_success` once every member completed (cancelled if one fails or is cancelled),
    `on_complete` once every member finished, whatever the outcomes, and `on_failure` once
    every member finished if one failed or was cancelled (cancelled otherwise). Each waits
    on every member (a failure inside a member chain counts too), and receives the members'
    results (`antecedent_results()`) and the ids of those that failed (`failed_antecedents`).
    A step after the batch in a chain waits for its members' last jobs and its on_complete.
    The flow's id is the batch's."""
    body = group(members)
    callbacks = {"on_success": on_success, "on_complete": on_complete, "on_failure": on_failure}
    given = {name: job for name, job in callbacks.items() if job is not None}
    for name, job in given.items():
        if not isinstance(job, Job):
            raise InvalidArgumentType(name, f"must be a Job, not {type(job).__name__}")
        if job.id is not None:
            raise InvalidArgument(name, f"is saved already ({job.id}): a workflow's jobs are new")
    batch_id = ObjectId()
    for job in body.jobs:
        assign(job.doc, batches=[batch_id, *job.doc.batches])
    policies: dict[str, OnFailure] = {
        "on_success": "cancel",
        "on_complete": "ignore",
        "on_failure": "ignore",
    }
    edges = list(body.edges)
    for name, job in given.items():  # every member, not only the last of each: a failure
        edges += [(member, job, policies[name]) for member in body.jobs]  # inside a chain too
    for job in given.values():
        assign(job.doc, callback_of=batch_id)
    if on_failure is not None:
        assign(on_failure.doc, run_if="failed")
    sinks = body.sinks + ((on_complete,) if on_complete is not None else ())
    flow = _checked((*body.jobs, *given.values()), body.sources, sinks, edges)
    return Flow(flow.jobs, flow.sources, flow.sinks, flow.edges, batch_id)


def _items(value: Any, index: int) -> list[Any]:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise InvalidArgumentType(
            f"members[{index}]",
            f"must be a Job, a flow or an iterable of them, not {type(value).__name__}",
        )
    return list(value)


def _flow(step: Any, name: str) -> Flow:
    """A step as a flow: a flow as it is, a job as a flow of one, an iterable as a group."""
    if isinstance(step, Flow):
        return step
    if isinstance(step, Job):
        if step.id is not None:
            raise InvalidArgument(name, f"is saved already ({step.id}): a workflow's jobs are new")
        return Flow((step,), (step,), (step,))
    if isinstance(step, str | bytes) or not isinstance(step, Iterable):
        raise InvalidArgumentType(
            name, f"must be a Job, a flow or an iterable of them, not {type(step).__name__}"
        )
    return group(*step)


def _checked(
    jobs: tuple[Job, ...],
    sources: tuple[Job, ...],
    sinks: tuple[Job, ...],
    edges: list[tuple[Job, Job, OnFailure]],
) -> Flow:
    """A flow, once no job appears in it twice (a job is one node: reuse makes no sense)."""
    seen: set[int] = set()
    for job in jobs:
        if id(job) in seen:
            raise InvalidArgument("jobs", f"{job!r} appears twice in the workflow")
        seen.add(id(job))
    return Flow(jobs, sources, sinks, tuple(edges))


def _policy(value: Any) -> OnFailure:
    return v.choice(value, "on_failure", ON_FAILURE_POLICIES)


def as_flow(value: Any) -> Flow:
    """What save_workflow takes: a flow, or a job (a workflow of one)."""
    return _flow(value, "flow")


def prepare(flow: Flow) -> list[Job]:
    """Set each job of a flow up for its save: its antecedents in the flow (by the ids they
    will be inserted under), the failure policies that are not "cancel", the workflow's id.
    Preparing the same flow again (a save retried after an error) changes nothing more."""
    policies: dict[int, dict[Id, OnFailure]] = {}
    antecedents: dict[int, list[Id]] = {}
    for antecedent, dependent, policy in flow.edges:
        if not antecedent._is_new():
            raise InvalidArgument("flow", f"{antecedent!r} is saved already")
        ante_id = antecedent._to_save()[1]
        assert ante_id is not None
        antecedents.setdefault(id(dependent), []).append(ante_id)
        policies.setdefault(id(dependent), {})[ante_id] = policy
    for job in flow.jobs:
        if not job._is_new():
            raise InvalidArgument("flow", f"{job!r} is saved already: a workflow's jobs are new")
        doc = job.doc
        depends = list(dict.fromkeys([*doc.depends, *antecedents.get(id(job), [])]))
        kept = {edge.id: edge.policy for edge in doc.on_failure}
        kept.update(policies.get(id(job), {}))
        edges = [Edge(id=a, policy=p) for a, p in kept.items() if p != "cancel"]
        assign(doc, depends=depends, on_failure=edges, workflow=flow.id)
    return list(flow.jobs)


FINISHED = (Status.COMPLETED, Status.FAILED, Status.CANCELLED)


async def save_flow(service: JobService, flow: Flow, *, session: Any = None) -> list[Id | None]:
    """Save the jobs of a flow (prepared: `prepare`) in one save_jobs (inside `session`'s
    transaction, if given); their ids, in order (each job learns its id as save() would
    teach it)."""
    return await save_all(service, prepare(flow), session=session)


@dataclass(frozen=True)
class WorkflowStatus:
    """A workflow's jobs counted per status, and how far it is: the share of its jobs that
    finished (completed, failed or cancelled)."""

    counts: dict[str, int]
    total: int

    @property
    def finished(self) -> int:
        """How many finished: completed, failed or cancelled."""
        return sum(self.counts.get(s, 0) for s in FINISHED)

    @property
    def progress(self) -> float:
        """From 0.0 to 1.0."""
        return self.finished / self.total if self.total else 1.0

    @property
    def done(self) -> bool:
        """Every job finished."""
        return self.finished == self.total


class Workflow:
    """A saved workflow: its id, the ids of its jobs as saved (in the flow's order; None: a
    job not saved; [] when found by id), and operations on the whole."""

    _by = "workflow"
    """The find_jobs condition its jobs are found by."""

    def __init__(self, jc: JobsAPI, workflow_id: Id, ids: list[Id | None]) -> None:
        self._jc = jc
        self.id = workflow_id
        self.ids = ids

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} of {len(self.ids)} jobs>"

    async def jobs(self, status: str | list[str] | None = None) -> list[Job]:
        """Every job of the workflow (in a status, or statuses), newest first: one find per
        1,000 jobs."""
        found: list[Job] = []
        after = None
        while True:
            where: dict[str, Any] = {self._by: self.id}
            page = await self._jc.find_jobs(status=status, limit=1000, after=after, **where)
            found += page.jobs
            if page.next is None:
                return found
            after = page.next

    async def status(self) -> WorkflowStatus:
        """Its jobs counted per status."""
        jobs = await self.jobs()
        counts: dict[str, int] = {}
        for job in jobs:
            status = str(job.doc.status)
            counts[status] = counts.get(status, 0) + 1
        return WorkflowStatus(counts, len(jobs))

    async def cancel(self) -> int:
        """Cancel every unfinished job of the workflow (their dependents follow their
        policies); how many were cancelled."""
        pending = await self.jobs(list(Status.CANCELLABLE))
        if not pending:
            return 0
        ids = [j.id for j in pending if j.id is not None]
        return await self._jc.cancel_jobs(ids, count=True)

    async def retry(self) -> int:
        """Restart the failed and cancelled jobs of the workflow, each with its dependents
        waiting again; how many were restarted."""
        ended = await self.jobs([Status.FAILED, Status.CANCELLED])
        if not ended:
            return 0
        ids = [j.id for j in ended if j.id is not None]
        return await self._jc.restart_jobs(ids, antecedents=False, count=True)


class Batch(Workflow):
    """A batch (`batch`): its members (not its callbacks, unless they are members of an outer
    batch), counted, cancelled and retried as a workflow's jobs are; more added while it is
    open."""

    _by = "batch"

    async def callbacks(self) -> list[Job]:
        """Its callbacks (on_success, on_complete, on_failure), whatever their status."""
        page = await self._jc.find_jobs(callback_of=self.id, limit=10)
        return page.jobs

    async def add(self, *members: Step | Iterable[Step]) -> list[Id | None]:
        """Add new members (jobs, chains, groups) to the batch while it is open (a callback
        still waits): they join its workflow and its outer batches, and each waiting callback
        waits for them too, with its own policy. InvalidArgument("batch") once it is closed
        (every callback has fired or been cancelled); a batch without callbacks is always
        open. The new members' ids. Safe to call again with the same jobs after an error."""
        callbacks = await self.callbacks()
        waiting = [c for c in callbacks if c.doc.status == Status.WAITING]
        if callbacks and not waiting:
            raise InvalidArgument("batch", f"{self.id} is closed: its callbacks have fired")
        flow = group(*members)
        known = await self._jc.find_jobs(batch=self.id, limit=1)
        model = known.jobs[0].doc if known.jobs else (callbacks[0].doc if callbacks else None)
        outer: list[Id] = []
        if model is not None and self.id in model.batches:  # a member: the batches around it
            outer = model.batches[: model.batches.index(self.id)]
        elif model is not None:  # a callback: a member of the outer batches only
            outer = list(model.batches)
        for job in flow.jobs:
            assign(job.doc, batches=[*outer, self.id, *job.doc.batches])
        workflow = None if model is None else model.workflow
        ids = await save_flow(self._jc.service, replace(flow, id=workflow or self.id))
        added = [job.id for job in flow.jobs if job.id is not None]
        for callback in waiting:
            assert callback.id is not None
            edges = callback.doc.on_failure
            policy: OnFailure = edges[0].policy if edges else "cancel"
            await self._jc.service.run(ops.AddDepends([callback.id], added, on_failure=policy))
        return ids
