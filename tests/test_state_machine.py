"""A Hypothesis state machine driving the real JobCollection (in-memory backend) against a
small pure-Python model of the job lifecycle (SPEC Part B).

Rules: save (with dependencies, retries, repeats, delays, paused), get_work (with and without
a lease), done, fail (fatal or not), release, cancel, restart, pause, resume, remove, a worker
that hangs (crashes) holding its job, late reports from such workers (a new value, or its last
report sent again), clock advances, job-server passes, get_work/cancel/pause hit by an
injected fault (a refused write or a lost reply) and retried, and:

- done_with_fault, fail_with_fault, work_with_fault (a claim, then the report): done, fail or
  fatal fail whose status write, or one of its follow-ups (the repeat's insert_one, the
  dependents lookup, their resolution bulk_write, their promotion update_many, the cancel
  cascade's update_many and lookups, the mark-clearing bulk_write), is refused before it
  reaches the database or applied with its reply lost; the step is picked among those the
  report goes through. A fault in a follow-up never fails the report (it answers True). After
  a DatabaseError the worker retries the same report (True), or dies (a worker with a lease:
  if nothing was applied only the lease frees the job); or it sends the report once more even
  after True.
- poison_appears: a job another application stored with a field v1.x's closed schema does
  not have, ready (of one of the TYPES) or running with an expired lease.
- save_workflow (and a_workflow, at the start of every example): a chain or a chord of two or
  three new jobs saved together (`jc.save_workflow`), each edge with its own failure policy
  (cancel, fail, ignore, remove). When a job fails for good (one of its follow-ups, so under
  the faults above too) or is cancelled, the model applies its dependents' policies level by
  level (`expect_ended`, as `Manager.ended`): per dependent the strongest policy among its
  edges from the level's jobs wins, cancel then fail (failed for good, one failure more);
  "ignore" and "remove" drop those edges ("ignore" recording the antecedent in
  `_private.jobcollectionFailedAntecedents`) and promote it if nothing is left to wait for;
  dependents that ended already lead the cascade on. Restarting a failed job whose
  follow-ups are pending voids them, but the dependents they had ended already lead the
  cascade on to theirs.

What the model cannot know. The status write is certain: a refused write is not applied, a
lost reply is, and a retry answers True either way. The follow-ups are not: a fault cuts them
short after any step, and a write to several documents may be applied in part. After each
attempt a fault hit, the model computes the states its follow-ups go through (repeat inserted,
dependents resolved, promoted or cancelled, mark cleared), accepts for each document they
touch (the job and its mark, its repeat, its dependents) any one of those states, adopts the
one stored, and keeps the job's follow-ups pending while the mark is stored: the next pass,
or a resend of the same report, applies what is left (the repeat scheduled from the
completion time in the mark, promotions at the time they run). A resumed follow-up promotes
the dependents it resolves itself; one that the cut-short attempt resolved is promoted by the
pass's promotion step, within the one-pass delay the README allows. A cleared mark with a step
left undone, a removed repeat inserted again, or a failure's cascade of policies that stops at
a dependent already cancelled or failed (the model carries it on through them) fails the run.
Every other document is compared exactly. A claimed poison document is failed for good, with
the reason, instead of handed over: get_work returns fewer jobs than were ready by the number
of poison documents it claimed, learnt from their stored status (each one no longer ready must
be failed, not running); a pass fails an expired one the same way.

After every step: the stored jobs are exactly the model's (status, runId, pending
dependencies, retry/repeat counters, failures, follow-ups mark, failed antecedents, `after`
while waiting, `expiresAfter` while running); removed jobs stay removed; no job is claimed by
two live handles. After a server pass no job is running past its lease, and no waiting or
paused job waits on an antecedent that ended or is gone. A job is only ever claimed when each
of its antecedents completed or was dropped by its edge's policy. At the end, with faults
off, the workers finishing what they hold and a few server passes: every job reaches a final
state; every completion of a job with repeats left has exactly one repeat,
`rules.repeat_job_id(job, runId)`, and no other document whose log starts from that
completion (none if that repeat was removed); no dependent waits on a completed antecedent;
no follow-ups mark is left.

Deterministic (derandomize, no example database). JOBCOLLECTION_STATEFUL_EXAMPLES=1000 runs a
longer search; a failure is shrunk to a shorter example (Hypothesis gives up after five
minutes; JOBCOLLECTION_STATEFUL_SHRINK=0 reports it unshrunk at once). Examples run up to 100
steps (JOBCOLLECTION_STATEFUL_STEPS): fewer shrink faster but reach far fewer cut-short
follow-ups.
"""

from __future__ import annotations

import asyncio
import copy
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import pytest
from bson import ObjectId
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from conftest import START
from faults import FaultyCollection, Rule
from helpers import FAR, stored_job
from jobcollection import DatabaseError, Job, JobCollection, ManualClock
from jobcollection.api.workflows import Flow
from jobcollection.model.document import FAILED_ANTECEDENTS, FOLLOW_UPS, JobDoc
from jobcollection.rules.transitions import repeat_job_id
from strict import memory_database

EXAMPLES = int(os.environ.get("JOBCOLLECTION_STATEFUL_EXAMPLES", "100"))
STEPS_PER_EXAMPLE = int(os.environ.get("JOBCOLLECTION_STATEFUL_STEPS", "100"))
pytestmark = pytest.mark.timeout(600)  # a passing run takes seconds; shrinking a failure longer
TYPES = ("a", "b")
MAX_JOBS = 10
CANCELLABLE = ("running", "ready", "waiting", "paused")
RESTARTABLE = ("cancelled", "failed")
REMOVABLE = ("cancelled", "completed", "failed")
FINAL = ("completed", "failed", "cancelled")
ENDED_BADLY = ("failed", "cancelled")
NOT_STARTED = ("waiting", "paused", "ready")
POLICIES = ("cancel", "fail", "ignore", "remove")
MARK = FOLLOW_UPS.split(".", 1)[1]
FAILED_KEY = FAILED_ANTECEDENTS.split(".", 1)[1]

World = dict[Any, "Model"]
FLOWS = {
    "shape": st.sampled_from(["chain", "chord"]),
    "jobs": st.lists(st.tuples(st.sampled_from(TYPES), st.integers(0, 1)), min_size=2, max_size=3),
    "policies": st.lists(st.sampled_from(POLICIES), min_size=2, max_size=2),
}
"""A workflow: a chain or a chord of 2 or 3 new jobs (type, retries), a policy per edge."""


@dataclass
class FollowUp:
    """Follow-ups the model expects marked pending on a job (`_private.jobcollectionFollowUps`)."""

    run_id: Any
    status: str
    at: datetime


@dataclass
class Model:
    """One job as the model expects it to be stored."""

    type: str
    key: int
    status: str
    retries: int
    repeat_retries: int
    retry_wait_ms: int
    repeats: int
    repeat_wait_ms: int
    after: datetime
    depends: list[Any] = field(default_factory=list)
    resolved: list[Any] = field(default_factory=list)
    retried: int = 0
    repeated: int = 0
    run_id: Any = None
    expires_after: datetime | None = None
    failures: int = 0
    poison: bool = False  # stored by another application: fails validation
    result: Any = None
    last_failure: tuple[Any, Any] | None = None  # (runId, value) of the newest failure
    pending: FollowUp | None = None
    origin: tuple[Any, Any] | None = None  # a repeat: (job id, runId) of the completion
    policies: dict[Any, str] = field(default_factory=dict)  # antecedent -> its edge's policy
    failed_antecedents: list[Any] = field(default_factory=list)  # dropped by "ignore"


@dataclass
class Sent:
    """A report as a worker sends it (and may send again): the same runId, the same value."""

    kind: str  # "done" | "fail" | "fatal"
    value: dict[str, Any]
    doc: JobDoc

    @property
    def job_id(self) -> Any:
        return self.doc.id

    @property
    def run_id(self) -> Any:
        return self.doc.run_id


@dataclass
class Handle:
    job: Job
    timeout: bool
    crashed: bool = False
    spent: bool = False  # fail() or release() succeeded: the handle no longer has a runId
    last: Sent | None = None  # its newest report, for a worker that sends it again


def utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


Args = tuple[Any, ...]


def nth(op: str, k: int, extra: Callable[[Args], bool] | None = None) -> Any:
    """A fault predicate that fires on the k-th call of `op` (optionally matching `extra`)."""
    seen = [0]

    def when(name: str, args: Args) -> bool:
        if name != op or (extra is not None and not extra(args)):
            return False
        seen[0] += 1
        return seen[0] == k

    return when


def is_claim(args: Args) -> bool:
    return bool(args[1].get("$set", {}).get("status") == "running")


def is_read_back(args: Args) -> bool:
    return args[0].get("runId") is not None


def updates(args: Args) -> list[dict[str, Any]]:
    """The update documents of a bulk_write's UpdateOne requests."""
    return [request._doc for request in args[0]]


def is_status_write(args: Args) -> bool:
    return any("status" in u.get("$set", {}) for u in updates(args))


def is_resolution(args: Args) -> bool:
    return any("$pull" in u for u in updates(args))


def is_mark_clearing(args: Args) -> bool:
    return any(FOLLOW_UPS in u.get("$unset", {}) for u in updates(args))


def is_policy_write(args: Args) -> bool:
    """A bulk write to dependents (fenced by their `depends`): in a failure's follow-ups, the
    policies that fail some and drop edges of others."""
    return any("depends" in request._filter for request in args[0])


def is_dependents_lookup(args: Args) -> bool:
    return "depends" in args[0] and "status" not in args[0]


def is_cascade_lookup(args: Args) -> bool:
    return "depends" in args[0] and "status" in args[0]


def sets_status(status: str) -> Callable[[Args], bool]:
    return lambda args: bool(args[1].get("$set", {}).get("status") == status)


STEPS: dict[str, tuple[str, int, Callable[[Args], bool] | None]] = {
    "status write": ("bulk_write", 1, is_status_write),
    "repeat insert": ("insert_one", 1, None),
    "dependents lookup": ("find", 1, is_dependents_lookup),
    "resolution": ("bulk_write", 1, is_resolution),
    "promotion": ("update_many", 1, sets_status("ready")),
    "cancel cascade": ("update_many", 1, sets_status("cancelled")),
    "cascade lookup": ("find", 1, is_cascade_lookup),
    "policy write": ("bulk_write", 1, is_policy_write),
    "cascade, second lookup": ("find", 2, is_cascade_lookup),
    "cascade, second level": ("update_many", 2, sets_status("cancelled")),
    "mark clearing": ("bulk_write", 1, is_mark_clearing),
}
"""Where a report's write can be cut: (operation, which matching call, how to recognise it)."""


class JobLifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = ManualClock(START)
        self.raw = memory_database("stateful")["queue.jobs"]
        self.faulty = FaultyCollection(self.raw)
        self.faults = self.faulty.faults
        self.jc = JobCollection(self.faulty, clock=self.clock)
        self.run(self.jc.start_job_server())
        self.model: World = {}
        self.removed: list[Any] = []
        self.handles: list[Handle] = []
        self.completed_ever: set[Any] = set()
        self.completions: list[tuple[Any, Any, bool]] = []  # (id, runId, had repeats left)
        self.counter = 0

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        try:
            self.drain()
        finally:
            self.run(self.jc.close())
            self.loop.close()

    @property
    def now(self) -> datetime:
        return self.clock.now()

    def next_key(self) -> int:
        self.counter += 1
        return self.counter

    # --- the model's transitions (SPEC B.2) ------------------------------------------------

    def alive(self, job_id: Any) -> bool:
        return job_id in self.model

    def expect_promote(self, ids: list[Any] | None) -> None:
        """jobReady: waiting, due, no pending dependencies -> ready (named ids: after = now)."""
        for job_id in self.model if ids is None else ids:
            job = self.model.get(job_id)
            if job and job.status == "waiting" and job.after <= self.now and not job.depends:
                job.status = "ready"
                if ids is not None:
                    job.after = self.now

    def cascade(
        self,
        ids: list[Any],
        statuses: tuple[str, ...],
        apply: Any,
        *,
        antecedents: bool,
        dependents: bool,
    ) -> bool:
        changed = False
        seen: set[Any] = set()
        level = list(dict.fromkeys(ids))
        while level:
            seen.update(level)
            changed = apply(level) or changed
            related: list[Any] = []
            if antecedents:
                ante = [a for j in level if self.alive(j) for a in self.model[j].depends]
                related += [a for a in self.model if a in ante and self.model[a].status in statuses]
            if dependents:
                related += [
                    d
                    for d, job in self.model.items()
                    if job.status in statuses and any(x in job.depends for x in level)
                ]
            level = [r for r in dict.fromkeys(related) if r not in seen]
        return changed

    def cancel_level(self, level: list[Any]) -> bool:
        hit = False
        for job_id in level:
            job = self.model.get(job_id)
            if job and job.status in CANCELLABLE:
                job.status, job.run_id, hit = "cancelled", None, True
        return hit

    def expect_cancel(self, ids: list[Any]) -> bool:
        """jobCancel: these jobs, then the dependents of those cancelled (now or before) by
        their failure policies; a completed or failed job's are left to its follow-ups."""
        hit = self.cancel_level(list(dict.fromkeys(ids)))
        cancelled = [j for j in ids if self.alive(j) and self.model[j].status == "cancelled"]
        return self.expect_ended(dict.fromkeys(cancelled, "cancelled")) or hit

    def expect_ended(self, ended: dict[Any, str], step: Callable[[], None] | None = None) -> bool:
        """What the dependents of jobs that failed for good or were cancelled do, level by
        level: per dependent (as read before the level's writes), the strongest policy of
        its edges from the level's jobs wins, cancel then fail (a running one is only
        cancelled); "ignore" and "remove" drop those edges ("ignore" recording the
        antecedent) and promote it if it has nothing left to wait for. Dependents that ended
        already lead the cascade on, at every level. `step` records the model after each of
        the level's writes (cancels, then policy writes, then promotion). Whether any job
        changed."""
        record = step or (lambda: None)
        changed = False
        level = dict(ended)
        seen = set(level)
        while level:
            cancel: list[Any] = []
            fail: list[Any] = []
            drop: dict[Any, dict[Any, str]] = {}
            following: dict[Any, str] = {}
            for job_id, job in self.model.items():
                gone = [a for a in job.depends if a in level]
                if not gone or job.status not in (*CANCELLABLE, *ENDED_BADLY):
                    continue
                if job.status in ENDED_BADLY:
                    following[job_id] = job.status
                    continue
                policies = {a: job.policies.get(a, "cancel") for a in gone}
                if "cancel" in policies.values():
                    cancel.append(job_id)
                elif job.status not in NOT_STARTED:
                    continue
                elif "fail" in policies.values():
                    fail.append(job_id)
                else:
                    drop[job_id] = policies
            if cancel:
                changed = self.cancel_level(cancel) or changed
                record()
            for job_id in fail:
                job = self.model[job_id]
                job.status, job.run_id = "failed", None
                job.failures += 1
            for job_id, policies in drop.items():
                job = self.model[job_id]
                job.depends = [a for a in job.depends if a not in policies]
                for a, policy in policies.items():
                    if policy == "ignore" and a not in job.failed_antecedents:
                        job.failed_antecedents.append(a)
            if fail or drop:
                changed = True
                record()
            if drop:
                self.expect_promote(list(drop))
                record()
            following.update(dict.fromkeys(cancel, "cancelled"))
            following.update(dict.fromkeys(fail, "failed"))
            level = {j: status for j, status in following.items() if j not in seen}
            seen.update(level)
        return changed

    def doomed(self, job_id: Any, seen: frozenset[Any] = frozenset()) -> bool:
        """A job that can never complete: it, or an antecedent it waits on, was removed."""
        if not self.alive(job_id):
            return True
        if job_id in seen:
            return False
        return any(self.doomed(a, seen | {job_id}) for a in self.model[job_id].depends)

    def expect_restart(self, ids: list[Any]) -> bool:
        """jobRestart: each level of the cascade over antecedents restarted, then promoted. A
        failed job's follow-ups still pending are void (it runs again, its dependents still
        waiting wait for it), but the dependents they had ended already lead the policies'
        cascade on to theirs, as those follow-ups would have."""
        cut_short: list[Any] = []

        def apply(level: list[Any]) -> bool:
            count = 0
            for job_id in level:
                job = self.model.get(job_id)
                runnable = job is not None and not any(self.doomed(a) for a in job.depends)
                if job and job.status in RESTARTABLE and runnable:
                    if job.status == "failed" and job.pending is not None:
                        cut_short.append(job_id)
                    job.status = "waiting"
                    job.retries = max(job.retries, 1)
                    job.pending = None  # a failed job's pending follow-ups are void
                    count += 1
            if count:
                self.expect_promote(level)
            return count > 0

        restarted = self.cascade(ids, RESTARTABLE, apply, antecedents=True, dependents=False)
        ended = {
            d: job.status
            for d, job in self.model.items()
            if job.status in ENDED_BADLY and any(a in job.depends for a in cut_short)
        }
        if ended:
            self.expect_ended(ended)
        return restarted

    def expect_claim(self, job_id: Any, run_id: Any, timeout_s: int | None) -> None:
        job = self.model[job_id]
        assert job.status == "ready", (job_id, job)
        assert not job.depends
        for antecedent in job.resolved:
            assert antecedent in self.completed_ever, "a dependent ran before its antecedent"
        job.status, job.run_id = "running", run_id
        job.retries -= 1
        job.retried += 1
        job.expires_after = None if timeout_s is None else self.now + timedelta(seconds=timeout_s)

    def holds(self, handle: Handle) -> bool:
        job = self.model.get(handle.job.id)
        return job is not None and job.status == "running" and job.run_id == handle.job.doc.run_id

    def expect_done(self, job_id: Any, value: Any, worlds: list[World] | None = None) -> None:
        job = self.model[job_id]
        job.status, job.result = "completed", value
        self.completed_ever.add(job_id)
        self.completions.append((job_id, job.run_id, job.repeats > 0))
        job.pending = FollowUp(job.run_id, "completed", self.now)
        self.follow_up(job_id, worlds)

    def expect_fail(
        self, job_id: Any, fatal: bool, value: Any = None, worlds: list[World] | None = None
    ) -> None:
        """A failed attempt: retried while it has retries, else failed for good. A poison
        document is failed for good whatever it has left, and keeps its `after`."""
        job = self.model[job_id]
        final = fatal or job.poison or job.retries <= 0
        if not job.poison:
            job.after = self.now + timedelta(milliseconds=job.retry_wait_ms)
        job.status = "failed" if final else "waiting"
        job.last_failure = (job.run_id, value)
        job.run_id = None
        job.failures += 1
        if final:
            job.pending = FollowUp(job.last_failure[0], "failed", self.now)
            self.follow_up(job_id, worlds)

    def repeat_of(self, job: Model, at: datetime) -> Model:
        """The next run of a completed repeating job, scheduled from its completion time."""
        after = at + timedelta(milliseconds=job.repeat_wait_ms)
        clone = Model(
            type=job.type,
            key=job.key,
            status="waiting",
            retries=job.repeat_retries,
            repeat_retries=job.repeat_retries,
            retry_wait_ms=job.retry_wait_ms,
            repeats=job.repeats - 1,
            repeat_wait_ms=job.repeat_wait_ms,
            after=after,
            resolved=list(job.resolved),
            repeated=job.repeated + 1,
        )
        if after <= at:
            clone.status, clone.after = "ready", at
        return clone

    def follow_up(self, job_id: Any, worlds: list[World] | None = None) -> None:
        """Apply a job's pending follow-ups (each step idempotent), now. With `worlds`, record
        the model after every step: the states a fault may leave them in."""
        job = self.model[job_id]
        pending = job.pending
        assert pending is not None

        def step() -> None:
            if worlds is not None:
                worlds.append(copy.deepcopy(self.model))

        step()
        if pending.status == "completed":
            clone_id = repeat_job_id(job_id, pending.run_id)
            if job.repeats > 0 and clone_id not in self.model:
                assert clone_id not in self.removed  # its removal waits for these follow-ups
                self.model[clone_id] = self.repeat_of(job, pending.at)
                self.model[clone_id].origin = (job_id, pending.run_id)
                step()
            waiting = [d for d, other in self.model.items() if job_id in other.depends]
            for dependent in waiting:
                self.model[dependent].depends.remove(job_id)
                self.model[dependent].resolved.append(job_id)
            if waiting:
                step()
                self.expect_promote(waiting)
                step()
        elif any(job_id in other.depends for other in self.model.values()):
            # Its dependents follow their failure policies, and theirs in turn: dependents
            # that ended already lead the cascade on, at every level, so one cut short resumes.
            self.expect_ended({job_id: "failed"}, step)
        job.pending = None
        step()

    def expect_server_pass(self) -> None:
        """Expiry, then every pending follow-up (oldest first), then promotion."""
        for job_id, job in list(self.model.items()):
            if job.status == "running" and job.expires_after and job.expires_after < self.now:
                self.expect_fail(job_id, fatal=False)
        marked = [(m.pending.at, j) for j, m in self.model.items() if m.pending is not None]
        for _, job_id in sorted(marked, key=lambda item: item[0]):
            if self.alive(job_id) and self.model[job_id].pending is not None:
                self.follow_up(job_id)
        self.expect_promote(None)

    def expect_report(self, sent: Sent, relaxed: bool = False) -> None:
        """An applied report. `relaxed`: its follow-ups may have been cut short."""
        worlds: list[World] | None = [] if relaxed else None
        if sent.kind == "done":
            self.expect_done(sent.job_id, sent.value, worlds)
        else:
            self.expect_fail(sent.job_id, sent.kind == "fatal", sent.value, worlds)
        if worlds:
            self.observe(worlds)

    def resume(self, job_id: Any, relaxed: bool = False) -> None:
        """Pending follow-ups finished again (a resent report); `relaxed` as in expect_report."""
        worlds: list[World] | None = [] if relaxed else None
        self.follow_up(job_id, worlds)
        if worlds:
            self.observe(worlds)

    def applied_before(self, sent: Sent) -> bool:
        """Whether this very report was applied already (sending it again answers True)."""
        job = self.model.get(sent.job_id)
        if job is None:
            return False
        if sent.kind == "done":
            return (
                job.status == "completed" and job.run_id == sent.run_id and job.result == sent.value
            )
        return job.run_id != sent.run_id and job.last_failure == (sent.run_id, sent.value)

    # --- comparing the model with what is stored --------------------------------------------

    @staticmethod
    def expected(job: Model) -> dict[str, Any]:
        pending = job.pending
        return {
            "status": job.status,
            "retries": job.retries,
            "retried": job.retried,
            "repeats": job.repeats,
            "repeated": job.repeated,
            "depends": sorted(map(str, job.depends)),
            "failures": job.failures,
            "runId": job.run_id,
            "type": job.type,
            "after": job.after if job.status == "waiting" else None,
            "expiresAfter": job.expires_after if job.status == "running" else None,
            "followUps": None if pending is None else (pending.run_id, pending.status, pending.at),
            "failedAntecedents": sorted(map(str, job.failed_antecedents)),
        }

    @staticmethod
    def seen(doc: dict[str, Any]) -> dict[str, Any]:
        private = doc.get("_private")
        mark = private.get(MARK) if isinstance(private, dict) else None
        return {
            "status": doc["status"],
            "retries": doc["retries"],
            "retried": doc["retried"],
            "repeats": doc["repeats"],
            "repeated": doc["repeated"],
            "depends": sorted(map(str, doc["depends"])),
            "failures": len(doc.get("failures") or []),
            "runId": doc["runId"],
            "type": doc["type"],
            "after": utc(doc["after"]) if doc["status"] == "waiting" else None,
            "expiresAfter": utc(doc.get("expiresAfter")) if doc["status"] == "running" else None,
            "followUps": None
            if mark is None
            else (mark.get("runId"), mark.get("status"), utc(mark.get("at"))),
            "failedAntecedents": sorted(
                map(str, (private.get(FAILED_KEY) if isinstance(private, dict) else None) or [])
            ),
        }

    def stored(self, ids: list[Any] | None = None) -> dict[Any, dict[str, Any]]:
        query = {} if ids is None else {"_id": {"$in": ids}}
        return {d["_id"]: d for d in self.run(self.raw.find(query).to_list(None))}

    def observe(self, worlds: list[World]) -> None:
        """Follow-ups cut short: each document they touch may be in any of the states they go
        through (`worlds`, one per step, the last with all applied). Check it is, adopt it,
        and keep what is left pending until a pass or a resend of the report finishes it."""
        last = len(worlds) - 1
        every = dict.fromkeys(j for world in worlds for j in world)  # in a stable order
        touched = [j for j in every if any(w.get(j) != worlds[0].get(j) for w in worlds)]
        docs = self.stored(touched)
        matched: dict[Any, list[int]] = {}
        for job_id in touched:
            doc = docs.get(job_id)
            seen = None if doc is None else self.seen(doc)
            states = [w.get(job_id) for w in worlds]
            allowed = [None if s is None else self.expected(s) for s in states]
            matched[job_id] = [i for i, state in enumerate(allowed) if state == seen]
            assert matched[job_id], (
                f"job {job_id}: in no state its cut-short follow-ups allow",
                seen,
                allowed,
            )
            state = states[matched[job_id][-1]]
            if state is None:
                self.model.pop(job_id, None)
            else:
                self.model[job_id] = copy.deepcopy(state)
        cleared = [
            j
            for j in touched
            if (before := worlds[0].get(j)) is not None
            and before.pending is not None
            and self.model[j].pending is None
        ]
        lagging = [j for j in touched if last not in matched[j]]
        assert not (cleared and lagging), f"mark cleared, follow-ups not applied to {lagging}"

    # --- picking things ----------------------------------------------------------------------

    def known(self) -> list[Any]:
        return [*self.model, *self.removed]

    def pick(self, items: list[Any], index: int) -> Any:
        return items[index % len(items)]

    def live_handles(self) -> list[Handle]:
        return [h for h in self.handles if not h.crashed and not h.spent]

    async def send(self, sent: Sent) -> Any:
        job = Job(self.jc, sent.doc)  # a copy: the worker's handle is left as it was
        if sent.kind == "done":
            return await job.done(sent.value)
        return await job.fail(sent.value, fatal=sent.kind == "fatal")

    # --- rules -------------------------------------------------------------------------------

    @initialize(
        jobs=st.lists(
            st.tuples(st.sampled_from(TYPES), st.integers(0, 2), st.integers(0, 1), st.booleans()),
            min_size=2,
            max_size=4,
        )
    )
    def some_jobs(self, jobs: list[tuple[str, int, int, bool]]) -> None:
        """A few jobs, some depending on the one saved before them."""
        for job_type, retries, repeats, chained in jobs:
            deps = [len(self.model) - 1] if chained and self.model else []
            self.save(job_type, retries, 0, repeats, 0, 0, deps, False)

    @precondition(lambda self: len(self.model) < MAX_JOBS)
    @rule(
        job_type=st.sampled_from(TYPES),
        retries=st.integers(0, 2),
        retry_wait=st.sampled_from([0, 60]),
        repeats=st.integers(0, 1),
        repeat_wait=st.sampled_from([0, 60]),
        delay=st.sampled_from([0, 0, 30]),
        deps=st.one_of(st.just([]), st.lists(st.integers(0, 100), max_size=2, unique=True)),
        paused=st.booleans(),
    )
    def save(
        self,
        job_type: str,
        retries: int,
        retry_wait: int,
        repeats: int,
        repeat_wait: int,
        delay: int,
        deps: list[int],
        paused: bool,
    ) -> None:
        key = self.next_key()
        job = self.jc.create_job(job_type, {"k": key}).retry(retries, wait=retry_wait)
        if repeats:
            job.repeat(repeats, wait=repeat_wait)
        job.delay(delay)
        antecedents = (
            list(dict.fromkeys(self.pick(self.known(), i) for i in deps)) if self.known() else []
        )
        if antecedents:
            job.depends(
                [self.jc.make_job({"_id": a, "type": "x", "data": {}}) for a in antecedents]
            )
        if paused:
            self.run(job.pause())
        returned = self.run(job.save())
        doc = self.run(self.raw.find_one({"data.k": key}))
        assert doc is not None
        job_id = doc["_id"]
        model = Model(
            type=job_type,
            key=key,
            status="paused" if paused else "waiting",
            retries=retries + 1,
            repeat_retries=retries + 1,
            retry_wait_ms=retry_wait * 1000,
            repeats=repeats,
            repeat_wait_ms=repeat_wait * 1000 if repeats else 300_000,
            after=self.now + timedelta(seconds=delay),
            depends=list(antecedents),
        )
        self.model[job_id] = model
        expected: Any = job_id
        if not antecedents:
            if model.status == "waiting" and model.after <= self.now:
                model.status, model.after = "ready", self.now
        else:
            doomed = False
            for a in antecedents:
                status = self.model[a].status if a in self.model and a != job_id else None
                if status == "completed":
                    model.depends.remove(a)
                    model.resolved.append(a)
                elif status in (None, "failed", "cancelled"):
                    doomed = True
            if doomed:
                self.expect_cancel([job_id])
                expected = None
            elif model.status == "waiting":
                self.expect_promote([job_id])
        assert returned == expected

    @precondition(lambda self: len(self.model) + 3 <= MAX_JOBS)
    @rule(**FLOWS)
    def save_workflow(self, shape: str, jobs: list[tuple[str, int]], policies: list[str]) -> None:
        self.save_flow(shape, jobs, policies)

    @initialize(**FLOWS)
    def a_workflow(self, shape: str, jobs: list[tuple[str, int]], policies: list[str]) -> None:
        self.save_flow(shape, jobs, policies)

    def save_flow(self, shape: str, jobs: list[tuple[str, int]], policies: list[str]) -> None:
        """New jobs saved together: a chain (each after the one before) or a chord (the last
        after all the others), each edge with its own failure policy."""
        keys = [self.next_key() for _ in jobs]
        made = [
            self.jc.create_job(job_type, {"k": key}).retry(retries, wait=0)
            for key, (job_type, retries) in zip(keys, jobs, strict=True)
        ]
        if shape == "chain":
            pairs, sources = list(pairwise(made)), made[:1]
        else:
            pairs, sources = [(job, made[-1]) for job in made[:-1]], made[:-1]
        edges = tuple((a, d, policies[i]) for i, (a, d) in enumerate(pairs))
        flow = Flow(tuple(made), tuple(sources), (made[-1],), edges)
        workflow = self.run(self.jc.save_workflow(flow))
        assert workflow.ids == [job.id for job in made]
        for key, job, (job_type, retries) in zip(keys, made, jobs, strict=True):
            into = [(a.id, policy) for a, d, policy in edges if d is job]
            self.model[job.id] = Model(
                type=job_type,
                key=key,
                status="waiting" if into else "ready",
                retries=retries + 1,
                repeat_retries=retries + 1,
                retry_wait_ms=0,
                repeats=0,
                repeat_wait_ms=300_000,
                after=self.now,
                depends=[a for a, _ in into],
                policies={a: policy for a, policy in into if policy != "cancel"},
            )

    @precondition(lambda self: len(self.model) < MAX_JOBS)
    @rule(
        job_type=st.sampled_from(TYPES),
        state=st.sampled_from(["ready", "expired lease"]),
        priority=st.sampled_from([-1, 0, 1]),
    )
    def poison_appears(self, job_type: str, state: str, priority: int) -> None:
        """Another application stores a job this one cannot read (a field v1.x's closed
        schema does not have): claimable, or running with a lease that ran out."""
        key = self.next_key()
        now = self.now
        doc = stored_job(
            now, type=job_type, data={"k": key}, priority=priority, appField="not a job field"
        )
        model = Model(
            type=job_type,
            key=key,
            status="ready",
            retries=1,
            repeat_retries=1,
            retry_wait_ms=0,
            repeats=0,
            repeat_wait_ms=0,
            after=now,
            poison=True,
        )
        if state == "expired lease":
            lease = now - timedelta(seconds=1)
            doc.update(
                status="running",
                runId=ObjectId(),
                retries=0,
                retried=1,
                workTimeout=30_000,
                expiresAfter=lease,
            )
            model.status, model.run_id, model.expires_after = "running", doc["runId"], lease
            model.retries, model.retried = 0, 1
        self.run(self.raw.insert_one(doc))
        self.model[doc["_id"]] = model

    @rule(
        job_type=st.sampled_from(TYPES),
        max_jobs=st.integers(1, 3),
        timeout=st.sampled_from([None, 30]),
    )
    def get_work(self, job_type: str, max_jobs: int, timeout: int | None) -> None:
        ready = [j for j, m in self.model.items() if m.status == "ready" and m.type == job_type]
        got = self.run(self.jc.get_work(job_type, max_jobs=max_jobs, work_timeout=timeout))
        self.took(got, ready, max_jobs, timeout)

    def took(self, got: list[Job], ready: list[Any], max_jobs: int, timeout: int | None) -> None:
        """What a claim handed over. A poison document it claimed is failed for good, not
        handed over; which ones it claimed is learnt from their stored status."""
        poison = [j for j in ready if self.model[j].poison]
        docs = self.stored(poison)
        claimed_poison = [j for j in poison if docs[j]["status"] != "ready"]
        for job_id in claimed_poison:
            doc = docs[job_id]
            assert doc["status"] == "failed", f"claimed poison {job_id} left {doc['status']}"
            assert "Invalid job document" in doc["failures"][-1]["value"], doc["failures"]
        assert len(got) + len(claimed_poison) == min(max_jobs, len(ready)), (got, ready)
        assert len({j.id for j in got}) == len(got)
        for job in got:
            assert job.id in ready and not self.model[job.id].poison
            self.expect_claim(job.id, job.doc.run_id, timeout)
            self.handles.append(Handle(job, timeout is not None))
        for job_id in claimed_poison:
            self.expect_claim(job_id, None, timeout)
            self.expect_fail(job_id, fatal=True)

    @precondition(lambda self: self.live_handles())
    @rule(index=st.integers(0, 100))
    def done(self, index: int) -> None:
        handle = self.pick(self.live_handles(), index)
        expected = self.holds(handle)
        value = {"n": self.next_key()}
        handle.last = Sent("done", value, handle.job.doc.model_copy(deep=True))
        assert self.run(handle.job.done(value)) is expected
        if expected:
            self.expect_done(handle.job.id, value)

    @precondition(lambda self: self.live_handles())
    @rule(index=st.integers(0, 100), fatal=st.booleans())
    def fail(self, index: int, fatal: bool) -> None:
        handle = self.pick(self.live_handles(), index)
        expected = self.holds(handle)
        value = {"n": self.next_key()}
        kind = "fatal" if fatal else "fail"
        handle.last = Sent(kind, value, handle.job.doc.model_copy(deep=True))
        assert self.run(handle.job.fail(value, fatal=fatal)) is expected
        if expected:
            handle.spent = True
            self.expect_fail(handle.job.id, fatal, value)

    @precondition(lambda self: self.live_handles())
    @rule(index=st.integers(0, 100))
    def release(self, index: int) -> None:
        """The worker hands its job back unstarted: ready, the attempt given back."""
        handle = self.pick(self.live_handles(), index)
        expected = self.holds(handle)
        assert self.run(handle.job.release()) is expected
        if expected:
            handle.spent = True
            job = self.model[handle.job.id]
            job.status, job.run_id, job.expires_after = "ready", None, None
            job.retries += 1
            job.retried -= 1

    @precondition(lambda self: any(h.timeout for h in self.live_handles()))
    @rule(index=st.integers(0, 100))
    def crash(self, index: int) -> None:
        """The worker hangs (or dies) holding its job; only its lease can free the job."""
        self.pick([h for h in self.live_handles() if h.timeout], index).crashed = True

    @precondition(lambda self: any(h.crashed for h in self.handles))
    @rule(index=st.integers(0, 100), same=st.booleans())
    def late_report(self, index: int, same: bool) -> None:
        """A hung worker wakes up: it reports a new value, or sends its last report again
        (True if that report was applied, finishing its follow-ups if still pending)."""
        handle = self.pick([h for h in self.handles if h.crashed], index)
        if same and handle.last is not None:
            self.resend(handle.last)
            return
        expected = self.holds(handle)
        value = {"late": self.next_key()}
        assert self.run(handle.job.done(value)) is expected
        if expected:
            self.expect_done(handle.job.id, value)
        assert self.run(handle.job.progress(1, 2)) is False or expected

    @precondition(lambda self: self.known())
    @rule(index=st.integers(0, 100))
    def cancel_job(self, index: int) -> None:
        job_id = self.pick(self.known(), index)
        expected = self.expect_cancel([job_id])
        assert self.run(self.jc.cancel_jobs([job_id])) is expected

    @precondition(lambda self: self.known())
    @rule(index=st.integers(0, 100))
    def restart_job(self, index: int) -> None:
        job_id = self.pick(self.known(), index)
        expected = self.expect_restart([job_id])
        assert self.run(self.jc.restart_jobs([job_id])) is expected

    @precondition(lambda self: self.known())
    @rule(index=st.integers(0, 100))
    def pause_job(self, index: int) -> None:
        job_id = self.pick(self.known(), index)
        job = self.model.get(job_id)
        expected = job is not None and job.status in ("ready", "waiting")
        if expected:
            job.status = "paused"  # type: ignore[union-attr]
        assert self.run(self.jc.pause_jobs([job_id])) is expected

    @precondition(lambda self: self.known())
    @rule(index=st.integers(0, 100))
    def resume_job(self, index: int) -> None:
        job_id = self.pick(self.known(), index)
        job = self.model.get(job_id)
        expected = job is not None and job.status == "paused"
        if expected:
            job.status = "waiting"  # type: ignore[union-attr]
            self.expect_promote([job_id])
        assert self.run(self.jc.resume_jobs([job_id])) is expected

    @precondition(lambda self: self.known())
    @rule(index=st.integers(0, 100))
    def remove_job(self, index: int) -> None:
        """Finished jobs go; one whose follow-ups are pending stays until they are done, and
        so does the repeat they scheduled (they would insert it again)."""
        job_id = self.pick(self.known(), index)
        job = self.model.get(job_id)
        expected = job is not None and job.status in REMOVABLE and job.pending is None
        if expected and job is not None and job.origin is not None:
            source = self.model.get(job.origin[0])
            pending = source.pending if source is not None else None
            expected = pending is None or pending.run_id != job.origin[1]
        if expected:
            del self.model[job_id]
            self.removed.append(job_id)
        assert self.run(self.jc.remove_jobs([job_id])) is expected

    @rule(seconds=st.sampled_from([1, 15, 31, 61]))
    def advance(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule()
    def server_pass(self) -> None:
        expiring = [
            j
            for j, m in self.model.items()
            if m.poison and m.status == "running" and (m.expires_after or FAR) < self.now
        ]
        self.run(self.jc.run_server_pass())
        self.expect_server_pass()
        for doc in self.stored(expiring).values():  # failed for good, with the reason
            assert "Invalid job document" in doc["failures"][-1]["value"], doc["failures"]
        for doc in self.run(self.raw.find({"status": "running"}).to_list(None)):
            expires = utc(doc.get("expiresAfter"))
            assert expires is None or expires >= self.now, "running past its lease"
        docs = self.stored()
        for job_id, doc in docs.items():
            if doc["status"] in ("waiting", "paused"):
                ended = [
                    a
                    for a in doc["depends"]
                    if docs.get(a, {}).get("status", "gone") in (*FINAL, "gone")
                ]
                assert not ended, f"job {job_id} waits on {ended}, which ended"

    # --- faults, then what the worker does ----------------------------------------------------

    def steps_of(self, job_id: Any, report: str) -> list[str]:
        """The writes and reads a report on a held job goes through, as far as the model can
        tell (a fault planned for a step that does not happen does not fire)."""
        job = self.model[job_id]
        dependents = [d for d, m in self.model.items() if job_id in m.depends]
        if report == "done":
            steps = ["status write", "repeat insert"] if job.repeats > 0 else ["status write"]
            steps += ["dependents lookup"]
            steps += ["resolution", "promotion"] if dependents else []
            return [*steps, "mark clearing"]
        if report == "fail" and job.retries > 0:
            return ["status write"]  # back to waiting: no follow-ups
        doomed = [d for d in dependents if self.model[d].status in (*CANCELLABLE, *ENDED_BADLY)]
        cascade = [
            "cascade lookup",
            "cancel cascade",
            "policy write",
            "promotion",
            "cascade, second lookup",
            "cascade, second level",
        ]
        return ["status write", "dependents lookup", *(cascade if doomed else []), "mark clearing"]

    def attempt(self, sent: Sent, fault: Rule | None) -> tuple[bool | None, bool]:
        """Send a report: its answer (None: it raised DatabaseError), and whether a fault hit
        it."""
        fired = 0 if fault is None else fault.fired
        try:
            answer = self.run(self.send(sent))
        except DatabaseError:
            return None, True
        return answer, fault is not None and fault.fired > fired

    @precondition(lambda self: any(self.holds(h) for h in self.live_handles()))
    @rule(
        index=st.integers(0, 100),
        step=st.integers(0, 100),
        kind=st.sampled_from(["before", "after"]),
        worker=st.sampled_from(["retries", "dies", "repeats"]),
    )
    def done_with_fault(self, index: int, step: int, kind: str, worker: str) -> None:
        """done() whose write is refused (`before`) or whose reply is lost (`after`), in its
        status write or one of its follow-ups; see report_hit_by_fault."""
        handle = self.pick([h for h in self.live_handles() if self.holds(h)], index)
        self.report_hit_by_fault(handle, "done", step, kind, worker)

    @precondition(lambda self: any(self.holds(h) for h in self.live_handles()))
    @rule(
        index=st.integers(0, 100),
        fatal=st.booleans(),
        step=st.integers(0, 100),
        kind=st.sampled_from(["before", "after"]),
        worker=st.sampled_from(["retries", "dies", "repeats"]),
    )
    def fail_with_fault(self, index: int, fatal: bool, step: int, kind: str, worker: str) -> None:
        """fail() (fatal or not) hit by a fault, as done_with_fault."""
        handle = self.pick([h for h in self.live_handles() if self.holds(h)], index)
        self.report_hit_by_fault(handle, "fatal" if fatal else "fail", step, kind, worker)

    @precondition(lambda self: any(m.status == "ready" for m in self.model.values()))
    @rule(
        index=st.integers(0, 100),
        timeout=st.sampled_from([None, 30]),
        report=st.sampled_from(["done", "fail", "fatal"]),
        step=st.integers(0, 100),
        kind=st.sampled_from(["before", "after"]),
        worker=st.sampled_from(["retries", "dies", "repeats"]),
    )
    def work_with_fault(
        self, index: int, timeout: int | None, report: str, step: int, kind: str, worker: str
    ) -> None:
        """A worker claims one job of a type that has a ready one, then reports on it, hit by
        a fault as in done_with_fault."""
        ready = [j for j, m in self.model.items() if m.status == "ready"]
        job_type = self.model[self.pick(ready, index)].type
        ready = [j for j in ready if self.model[j].type == job_type]
        got = self.run(self.jc.get_work(job_type, max_jobs=1, work_timeout=timeout))
        self.took(got, ready, 1, timeout)
        if got:
            self.report_hit_by_fault(self.handles[-1], report, step, kind, worker)

    def report_hit_by_fault(
        self, handle: Handle, report: str, step: int, kind: str, worker: str
    ) -> None:
        """A report's write is refused (`before`) or its reply lost (`after`), in its status
        write or one of its follow-ups. A fault in the follow-ups never fails the report: it
        answers True and the next pass finishes them. After a DatabaseError the worker retries
        the same report (True), or dies; `repeats` sends it once more even after True."""
        if worker == "dies" and not handle.timeout:
            worker = "retries"  # without a lease nothing would ever free the job
        sent = Sent(report, {"n": self.next_key()}, handle.job.doc.model_copy(deep=True))
        handle.last = sent
        where = self.pick(self.steps_of(handle.job.id, report), step)
        op, k, when = STEPS[where]
        fault = getattr(self.faults, f"fail_{kind}")(op, when=nth(op, k, when))
        answer, faulted = self.attempt(sent, fault)
        if answer is None:  # only the status write raises: a fault in a follow-up does not
            assert where == "status write", (where, kind)
            if kind == "after":  # applied, its reply lost: the follow-ups did not run
                self.expect_report(sent, relaxed=True)
        else:
            assert answer is True, (where, kind, answer)
            self.expect_report(sent, relaxed=faulted)
        if answer is None and worker == "dies":
            handle.crashed = True  # if nothing was applied, only its lease frees the job
        else:
            handle.spent = report != "done"
            for _ in range((answer is None) + (worker == "repeats")):
                self.resend(sent, fault)
        self.faults.clear()

    def resend(self, sent: Sent, fault: Rule | None = None) -> None:
        """The same report again (same runId, same value): applied now if the job is still
        held under its run, True if it was applied before (then it finishes the follow-ups
        still marked pending for that run), else False."""
        job = self.model.get(sent.job_id)
        held = job is not None and job.status == "running" and job.run_id == sent.run_id
        applied = self.applied_before(sent)
        answer, faulted = self.attempt(sent, fault)
        assert answer is (held or applied), (sent, answer, held, applied)
        if held:
            self.expect_report(sent, relaxed=faulted)
        elif applied and job is not None and job.pending and job.pending.run_id == sent.run_id:
            self.resume(sent.job_id, relaxed=faulted)

    @rule(
        job_type=st.sampled_from(TYPES),
        max_jobs=st.integers(1, 3),
        timeout=st.sampled_from([None, 30]),
        fault=st.sampled_from(["lost claim reply", "refused claim", "lost read back"]),
    )
    def get_work_with_fault(
        self, job_type: str, max_jobs: int, timeout: int | None, fault: str
    ) -> None:
        ready = [j for j, m in self.model.items() if m.status == "ready" and m.type == job_type]
        if fault == "lost claim reply":
            self.faults.fail_after("update_many", when=nth("update_many", 1, is_claim))
        elif fault == "refused claim":
            self.faults.fail_before("update_many", when=nth("update_many", 1, is_claim))
        else:
            self.faults.fail_before("find", when=nth("find", 1, is_read_back))
        try:
            got = self.run(self.jc.get_work(job_type, max_jobs=max_jobs, work_timeout=timeout))
        except DatabaseError:
            self.faults.clear()
            got = self.run(self.jc.get_work(job_type, max_jobs=max_jobs, work_timeout=timeout))
        self.faults.clear()
        self.took(got, ready, max_jobs, timeout)

    @precondition(lambda self: self.known())
    @rule(index=st.integers(0, 100), action=st.sampled_from(["cancel", "pause"]))
    def manage_with_lost_reply(self, index: int, action: str) -> None:
        job_id = self.pick(self.known(), index)
        self.faults.fail_after("update_many", when=nth("update_many", 1))
        call = self.jc.cancel_jobs if action == "cancel" else self.jc.pause_jobs
        try:
            self.run(call([job_id]))
        except DatabaseError:
            self.faults.clear()
            self.run(call([job_id]))
        self.faults.clear()
        if action == "cancel":
            self.expect_cancel([job_id])
        elif (job := self.model.get(job_id)) and job.status in ("ready", "waiting"):
            job.status = "paused"

    # --- invariants ---------------------------------------------------------------------------

    @invariant()
    def stored_jobs_match_the_model(self) -> None:
        docs = self.stored()
        back = [j for j in docs if j in self.removed]
        assert not back, f"removed jobs are stored again: {back}"
        assert set(docs) == set(self.model), set(docs) ^ set(self.model)
        for job_id, job in self.model.items():
            seen, expected = self.seen(docs[job_id]), self.expected(job)
            assert seen == expected, (job_id, seen, expected)

    @invariant()
    def at_most_one_live_claim_per_job(self) -> None:
        holders: dict[Any, int] = {}
        for handle in self.handles:
            if self.holds(handle):
                holders[handle.job.id] = holders.get(handle.job.id, 0) + 1
        assert all(n == 1 for n in holders.values()), holders

    # --- the end: everything reaches a final state once faults stop --------------------------

    def drain(self) -> None:
        self.faults.clear()
        idle = 0
        for _ in range(30):
            before = {j: m.status for j, m in self.model.items()}
            paused = [j for j, m in self.model.items() if m.status == "paused"]
            if paused:
                assert self.run(self.jc.resume_jobs(paused)) is True
                for job_id in paused:
                    self.model[job_id].status = "waiting"
                self.expect_promote(paused)
            for handle in self.live_handles():
                if self.holds(handle):
                    assert self.run(handle.job.done({"drain": True})) is True
                    self.expect_done(handle.job.id, {"drain": True})
            self.clock.advance(61)
            self.server_pass_rule_free()
            self.stored_jobs_match_the_model()
            for job_type in TYPES:
                ready = [
                    j for j, m in self.model.items() if m.status == "ready" and m.type == job_type
                ]
                got = self.run(self.jc.get_work(job_type, max_jobs=100))
                self.took(got, ready, 100, None)
            self.stored_jobs_match_the_model()
            if all(m.status in FINAL for m in self.model.values()):
                self.settled()
                return
            idle = idle + 1 if {j: m.status for j, m in self.model.items()} == before else 0
            if idle > 2:
                break  # nothing moves any more: fail now rather than after 30 rounds
        stuck = {j: m for j, m in self.model.items() if m.status not in FINAL}
        raise AssertionError(f"jobs never reached a final state: {stuck}")

    def settled(self) -> None:
        """Once faults stopped and passes ran: no follow-ups left behind, every completion
        repeated exactly once (unless its repeat was removed), nobody waiting on a job that
        completed."""
        docs = self.stored()
        marked = [j for j, d in docs.items() if MARK in (d.get("_private") or {})]
        assert not marked, f"follow-ups still marked pending on {marked}"
        for job_id, doc in docs.items():
            done = [a for a in doc["depends"] if docs.get(a, {}).get("status") == "completed"]
            assert not done, f"job {job_id} still waits on completed {done}"
        for job_id, run_id, had_repeats in self.completions:
            clone = repeat_job_id(job_id, run_id)
            origin = {"id": job_id, "runId": run_id}
            copies = [
                j
                for j, d in docs.items()
                if ((d.get("log") or [{}])[0].get("data") or {}).get("previousJob") == origin
            ]
            if had_repeats and clone not in self.removed:
                assert copies == [clone], f"{origin} repeated as {copies}, expected [{clone}]"
            else:
                assert not copies, f"{origin} repeated as {copies}, expected none"

    def server_pass_rule_free(self) -> None:
        self.run(self.jc.run_server_pass())
        self.expect_server_pass()


SHRINK = os.environ.get("JOBCOLLECTION_STATEFUL_SHRINK", "1") != "0"

JobLifecycle.TestCase.settings = settings(
    max_examples=EXAMPLES,
    phases=[p for p in Phase if SHRINK or p is not Phase.shrink],
    report_multiple_bugs=False,
    stateful_step_count=STEPS_PER_EXAMPLE,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestJobLifecycle = JobLifecycle.TestCase
