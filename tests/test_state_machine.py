"""A Hypothesis state machine driving the real JobCollection (in-memory backend) against a
small pure-Python model of the job lifecycle (SPEC Part B).

Rules: save (with dependencies, retries, repeats, delays, paused), get_work (with and without
a lease), done, fail (fatal or not), cancel, restart, pause, resume, remove, a worker that
hangs (crashes) holding its job, late reports from such workers, clock advances, job-server
passes, and done/fail/get_work/cancel/pause hit by injected faults (a refused write or a lost
reply) and then retried, as a worker would.

After every step: the stored jobs are exactly the model's, with the same status, runId,
pending dependencies and retry/repeat counters; no job is claimed by two live handles. After
a server pass no job is running past its lease. A job is only ever claimed when all its
antecedents completed. At the end, with faults off and the workers finishing what they hold,
every job reaches a final state.

Deterministic (derandomize, no example database). JOBCOLLECTION_STATEFUL_EXAMPLES=500 runs a
longer search; a failure is shrunk to a short example (up to a few minutes;
JOBCOLLECTION_STATEFUL_SHRINK=0 reports it unshrunk at once).
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
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
from faults import FaultyCollection
from jobcollection import DatabaseError, Job, JobCollection, ManualClock
from jobcollection.rules import repeat_job_id
from jobcollection.testing import memory_database

EXAMPLES = int(os.environ.get("JOBCOLLECTION_STATEFUL_EXAMPLES", "100"))
pytestmark = pytest.mark.timeout(600)  # a passing run takes seconds; shrinking a failure longer
TYPES = ("a", "b")
MAX_JOBS = 8
CANCELLABLE = ("running", "ready", "waiting", "paused")
RESTARTABLE = ("cancelled", "failed")
REMOVABLE = ("cancelled", "completed", "failed")
FINAL = ("completed", "failed", "cancelled")


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


@dataclass
class Handle:
    job: Job
    timeout: bool
    crashed: bool = False
    spent: bool = False  # fail() succeeded: the handle no longer has a runId


def utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def nth(op: str, k: int, extra: Any = None) -> Any:
    """A fault predicate that fires on the k-th call of `op` (optionally matching `extra`)."""
    seen = [0]

    def when(name: str, args: tuple[Any, ...]) -> bool:
        if name != op or (extra is not None and not extra(args)):
            return False
        seen[0] += 1
        return seen[0] == k

    return when


def is_claim(args: tuple[Any, ...]) -> bool:
    return bool(args[1].get("$set", {}).get("status") == "running")


def is_read_back(args: tuple[Any, ...]) -> bool:
    return args[0].get("runId") is not None


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
        self.model: dict[Any, Model] = {}
        self.removed: list[Any] = []
        self.handles: list[Handle] = []
        self.completed_ever: set[Any] = set()
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

    def expect_cancel(self, ids: list[Any]) -> bool:
        def apply(level: list[Any]) -> bool:
            hit = False
            for job_id in level:
                job = self.model.get(job_id)
                if job and job.status in CANCELLABLE:
                    job.status, job.run_id, hit = "cancelled", None, True
            return hit

        return self.cascade(ids, CANCELLABLE, apply, antecedents=False, dependents=True)

    def doomed(self, job_id: Any, seen: frozenset[Any] = frozenset()) -> bool:
        """A job that can never complete: it, or an antecedent it waits on, was removed."""
        if not self.alive(job_id):
            return True
        if job_id in seen:
            return False
        return any(self.doomed(a, seen | {job_id}) for a in self.model[job_id].depends)

    def expect_restart(self, ids: list[Any]) -> bool:
        def apply(level: list[Any]) -> bool:
            count = 0
            for job_id in level:
                job = self.model.get(job_id)
                runnable = job is not None and not any(self.doomed(a) for a in job.depends)
                if job and job.status in RESTARTABLE and runnable:
                    job.status = "waiting"
                    job.retries = max(job.retries, 1)
                    count += 1
            if count:
                self.expect_promote(level)
            return count > 0

        return self.cascade(ids, RESTARTABLE, apply, antecedents=True, dependents=False)

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

    def expect_done(self, job_id: Any) -> None:
        job = self.model[job_id]
        job.status = "completed"
        self.completed_ever.add(job_id)
        if job.repeats > 0:
            clone_id = repeat_job_id(job_id, job.run_id)
            after = self.now + timedelta(milliseconds=job.repeat_wait_ms)
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
            if after <= self.now:
                clone.status, clone.after = "ready", self.now
            self.model[clone_id] = clone
        waiting = [d for d, other in self.model.items() if job_id in other.depends]
        for dependent in waiting:
            self.model[dependent].depends.remove(job_id)
            self.model[dependent].resolved.append(job_id)
        if waiting:
            self.expect_promote(waiting)

    def expect_fail(self, job_id: Any, fatal: bool) -> None:
        job = self.model[job_id]
        job.after = self.now + timedelta(milliseconds=job.retry_wait_ms)
        job.status = "waiting" if not fatal and job.retries > 0 else "failed"
        job.run_id = None
        job.failures += 1
        if job.status == "failed":
            doomed = [
                d
                for d, other in self.model.items()
                if job_id in other.depends and other.status in CANCELLABLE
            ]
            if doomed:
                self.expect_cancel(doomed)

    def expect_server_pass(self) -> None:
        for job_id, job in list(self.model.items()):
            if job.status == "running" and job.expires_after and job.expires_after < self.now:
                self.expect_fail(job_id, fatal=False)
        self.expect_promote(None)

    # --- picking things ----------------------------------------------------------------------

    def known(self) -> list[Any]:
        return [*self.model, *self.removed]

    def pick(self, items: list[Any], index: int) -> Any:
        return items[index % len(items)]

    def live_handles(self) -> list[Handle]:
        return [h for h in self.handles if not h.crashed and not h.spent]

    # --- rules -------------------------------------------------------------------------------

    @initialize(
        jobs=st.lists(
            st.tuples(st.sampled_from(TYPES), st.integers(0, 2), st.integers(0, 1)),
            min_size=2,
            max_size=4,
        )
    )
    def some_jobs(self, jobs: list[tuple[str, int, int]]) -> None:
        for job_type, retries, repeats in jobs:
            self.save(job_type, retries, 0, repeats, 0, 0, [], False)

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
        assert len(got) == min(max_jobs, len(ready)), (got, ready)
        assert len({j.id for j in got}) == len(got)
        for job in got:
            assert job.id in ready
            self.expect_claim(job.id, job.doc.run_id, timeout)
            self.handles.append(Handle(job, timeout is not None))

    @precondition(lambda self: self.live_handles())
    @rule(index=st.integers(0, 100))
    def done(self, index: int) -> None:
        handle = self.pick(self.live_handles(), index)
        expected = self.holds(handle)
        assert self.run(handle.job.done({"n": self.next_key()})) is expected
        if expected:
            self.expect_done(handle.job.id)

    @precondition(lambda self: self.live_handles())
    @rule(index=st.integers(0, 100), fatal=st.booleans())
    def fail(self, index: int, fatal: bool) -> None:
        handle = self.pick(self.live_handles(), index)
        expected = self.holds(handle)
        assert self.run(handle.job.fail({"n": self.next_key()}, fatal=fatal)) is expected
        if expected:
            handle.spent = True
            self.expect_fail(handle.job.id, fatal)

    @precondition(lambda self: any(h.timeout for h in self.live_handles()))
    @rule(index=st.integers(0, 100))
    def crash(self, index: int) -> None:
        """The worker hangs (or dies) holding its job; only its lease can free the job."""
        self.pick([h for h in self.live_handles() if h.timeout], index).crashed = True

    @precondition(lambda self: any(h.crashed for h in self.handles))
    @rule(index=st.integers(0, 100))
    def late_report(self, index: int) -> None:
        handle = self.pick([h for h in self.handles if h.crashed], index)
        expected = self.holds(handle)
        assert self.run(handle.job.done({"late": self.next_key()})) is expected
        if expected:
            self.expect_done(handle.job.id)
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
        job_id = self.pick(self.known(), index)
        job = self.model.get(job_id)
        expected = job is not None and job.status in REMOVABLE
        if expected:
            del self.model[job_id]
            self.removed.append(job_id)
        assert self.run(self.jc.remove_jobs([job_id])) is expected

    @rule(seconds=st.sampled_from([1, 15, 31, 61]))
    def advance(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule()
    def server_pass(self) -> None:
        self.run(self.jc.run_server_pass())
        self.expect_server_pass()
        for doc in self.run(self.raw.find({"status": "running"}).to_list(None)):
            expires = utc(doc.get("expiresAfter"))
            assert expires is None or expires >= self.now, "running past its lease"

    # --- faults, then the retry a worker makes ------------------------------------------------

    @precondition(lambda self: any(self.holds(h) for h in self.live_handles()))
    @rule(
        index=st.integers(0, 100),
        kind=st.sampled_from(["fail_before", "fail_after"]),
        where=st.sampled_from(
            [("bulk_write", 1), ("bulk_write", 2), ("insert_many", 1), ("update_many", 1)]
        ),
        report=st.sampled_from(["done", "fail", "fatal"]),
    )
    def report_with_fault(self, index: int, kind: str, where: tuple[str, int], report: str) -> None:
        handle = self.pick([h for h in self.live_handles() if self.holds(h)], index)
        value = {"n": self.next_key()}
        getattr(self.faults, kind)(where[0], when=nth(*where))

        async def send() -> Any:
            if report == "done":
                return await handle.job.done(value)
            return await handle.job.fail(value, fatal=report == "fatal")

        try:
            self.run(send())
        except DatabaseError:
            self.faults.clear()
            retry = Job(self.jc, handle.job.doc)
            if report == "done":
                self.run(retry.done(value))
            else:
                self.run(retry.fail(value, fatal=report == "fatal"))
        self.faults.clear()
        if report == "done":
            self.expect_done(handle.job.id)
        else:
            handle.spent = True
            self.expect_fail(handle.job.id, report == "fatal")

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
        docs = {d["_id"]: d for d in self.run(self.raw.find({}).to_list(None))}
        assert set(docs) == set(self.model), set(docs) ^ set(self.model)
        for job_id, job in self.model.items():
            doc = docs[job_id]
            seen = {
                "status": doc["status"],
                "retries": doc["retries"],
                "retried": doc["retried"],
                "repeats": doc["repeats"],
                "repeated": doc["repeated"],
                "depends": sorted(map(str, doc["depends"])),
                "failures": len(doc.get("failures") or []),
                "runId": doc["runId"],
                "type": doc["type"],
            }
            expected = {
                "status": job.status,
                "retries": job.retries,
                "retried": job.retried,
                "repeats": job.repeats,
                "repeated": job.repeated,
                "depends": sorted(map(str, job.depends)),
                "failures": job.failures,
                "runId": job.run_id,
                "type": job.type,
            }
            assert seen == expected, (job_id, seen, expected)
            if job.status == "waiting":
                assert utc(doc["after"]) == job.after, (job_id, doc["after"], job.after)
            if job.status == "running":
                assert utc(doc.get("expiresAfter")) == job.expires_after

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
                    self.expect_done(handle.job.id)
            self.clock.advance(61)
            self.server_pass_rule_free()
            for job_type in TYPES:
                ready = [
                    j for j, m in self.model.items() if m.status == "ready" and m.type == job_type
                ]
                got = self.run(self.jc.get_work(job_type, max_jobs=100))
                self.took(got, ready, 100, None)
            self.stored_jobs_match_the_model()
            if all(m.status in FINAL for m in self.model.values()):
                return
            idle = idle + 1 if {j: m.status for j, m in self.model.items()} == before else 0
            if idle > 2:
                break  # nothing moves any more: fail now rather than after 30 rounds
        stuck = {j: m for j, m in self.model.items() if m.status not in FINAL}
        raise AssertionError(f"jobs never reached a final state: {stuck}")

    def server_pass_rule_free(self) -> None:
        self.run(self.jc.run_server_pass())
        self.expect_server_pass()


SHRINK = os.environ.get("JOBCOLLECTION_STATEFUL_SHRINK", "1") != "0"

JobLifecycle.TestCase.settings = settings(
    max_examples=EXAMPLES,
    phases=[p for p in Phase if SHRINK or p is not Phase.shrink],
    report_multiple_bugs=False,
    stateful_step_count=30,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestJobLifecycle = JobLifecycle.TestCase
