"""The guarantees workflows make (issue 23), tested where they can break: several processes,
concurrency, faults and every failure policy.

- A fan-in (a chord) fires its callback exactly once, whatever the order and the concurrency
  its members finish in, across several JobCollections on one collection (each standing for
  a process, each over its own faulty connection, its database calls interleaved in a seeded
  random order), under lost replies and crashes between a member's completion write and its
  follow-ups; the job server's passes, run by any process, finish what a fault left.
- No job of a workflow is left waiting forever: for every failure policy, a member of a
  chain, a chord or a batch fails or is cancelled at each position (waiting, running, with
  its follow-ups cut short), and after every job-server pass every job is finished, ready, or
  waits on antecedents that have not ended; no job runs before its antecedents completed or
  were dropped by their policy; each job ends as its edges' policies say, and a batch's
  callbacks as the batch's definition says.

Then regressions found here (a pass and a reporter resolving the same fan-in at once; a
restart voiding follow-ups that had ended a dependent already; a batch's callbacks waiting
on the last jobs of its members only; a cancel's cascade cut short by a fault, now carried on
by the next pass).
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from conftest import WrapJC
from faults import Faults, FaultyCollection, Rule
from helpers import Jittery, claim_one, messages
from jobcollection import (
    DatabaseError,
    Job,
    JobCollection,
    ManualClock,
    batch,
    chain,
    chord,
)
from jobcollection.api.workflows import Flow
from jobcollection.model.document import FOLLOW_UPS

SEEDS = int(os.environ.get("JOBCOLLECTION_WORKFLOW_SEEDS", "2"))
"""Interleavings tried per fault (and three times as many without faults):
JOBCOLLECTION_WORKFLOW_SEEDS=50 searches longer."""
Doc = dict[str, Any]
Args = tuple[Any, ...]
FINAL = ("completed", "failed", "cancelled")
ENDED_BADLY = ("failed", "cancelled")
POLICIES = ("cancel", "fail", "ignore", "remove")


# --- processes over one collection ---------------------------------------------------------


@dataclass
class Proc:
    """A process: its JobCollection and the faults planned for its connection."""

    jc: JobCollection
    faults: Faults
    dead: bool = False


async def processes(make_wrapped_jc: WrapJC, n: int, rng: random.Random | None) -> list[Proc]:
    """n started JobCollections on the test collection, each over its own faulty connection
    (and, with `rng`, with their calls interleaved at random). Each runs job-server passes
    (a faulty connection has no lease collection: every process runs them)."""
    procs = []
    for _ in range(n):
        jc = await make_wrapped_jc(
            lambda c: FaultyCollection(c if rng is None else Jittery(c, rng))
        )
        procs.append(Proc(jc, jc.collection.faults))
    return procs


# --- recognising a report's steps in the calls a connection carries -------------------------


def requests(args: Args) -> list[Any]:
    return list(args[0])


def is_completion(op: str, args: Args) -> bool:
    """A report's status write: a bulk write that completes or fails running jobs."""
    return op == "bulk_write" and any(
        r._filter.get("runId") is not None and "status" in r._doc.get("$set", {})
        for r in requests(args)
    )


def is_dependents_lookup(op: str, args: Args) -> bool:
    """The first follow-up of a finished job: reading the jobs that wait on it."""
    return op == "find" and "depends" in args[0] and "status" not in args[0]


def is_resolution(op: str, args: Args) -> bool:
    return op == "bulk_write" and any("$pull" in r._doc for r in requests(args))


def is_promotion(op: str, args: Args) -> bool:
    return op == "update_many" and args[1].get("$set", {}).get("status") == "ready"


def is_mark_clearing(op: str, args: Args) -> bool:
    return op == "bulk_write" and any(
        FOLLOW_UPS in r._doc.get("$unset", {}) for r in requests(args)
    )


def is_cascade_lookup(op: str, args: Args) -> bool:
    return op == "find" and "depends" in args[0] and "status" in args[0]


# --- reading the shared collection ------------------------------------------------------------


async def docs_of(database: Any, ids: list[Any]) -> dict[Any, Doc]:
    found = await database["queue.jobs"].find({"_id": {"$in": ids}}).to_list(None)
    return {d["_id"]: d for d in found}


def failed_antecedents(doc: Doc) -> list[Any]:
    return list((doc.get("_private") or {}).get("jobcollectionFailedAntecedents") or [])


async def marked(database: Any) -> int:
    return int(await database["queue.jobs"].count_documents({FOLLOW_UPS: {"$exists": True}}))


async def passes(procs: list[Proc], rounds: int = 2) -> None:
    """Job-server passes by every live process, one after the other."""
    for _ in range(rounds):
        for proc in procs:
            if not proc.dead:
                assert (await proc.jc.run_server_pass()).leading


# --- a fan-in fires once -----------------------------------------------------------------------


async def save_chord(
    jc: JobCollection, n: int, policy: Any = "cancel", retries: int = 0
) -> tuple[list[Any], Job]:
    parts = [jc.create_job("part", {"n": i}).retry(retries, wait=0) for i in range(n)]
    callback = jc.create_job("callback")
    await jc.save_workflow(chord(parts, callback, on_failure=policy))
    return [p.id for p in parts], callback


Report = Callable[[Proc, Job], Awaitable[str]]
"""How a worker reports on a claimed part: the outcome it leaves ("completed", "failed", or
"lost": the process died before it knew)."""


async def complete(proc: Proc, job: Job) -> str:
    """done(); after a DatabaseError the worker sends the same report again (a live worker
    does), unless its process died."""
    value = {"n": job.data["n"]}
    for _ in range(3):  # the first send, then as many as the faults planned call for
        try:
            assert await Job(proc.jc, job.doc).done(value) is True
        except DatabaseError:
            if proc.dead:
                return "lost"
        else:
            return "completed"
    raise AssertionError(f"part {job.id}: done() kept failing")


async def run_parts(
    procs: list[Proc],
    rng: random.Random,
    clock: ManualClock,
    database: Any,
    parts: list[Any],
    callback: Job,
    report: Report = complete,
) -> dict[str, set[Any]]:
    """Rounds until every part finished: the live processes claim parts together (a few
    each), then report on them all at once in a shuffled order, job-server passes of random
    processes among the reports. Until the last part finishes, the callback waits and no
    process can claim it. The parts by outcome."""
    outcomes: dict[str, set[Any]] = {"completed": set(), "failed": set()}
    for _ in range(40):
        docs = await docs_of(database, parts)
        if all(d["status"] in FINAL for d in docs.values()):
            break
        live = [p for p in procs if not p.dead]
        claims = await asyncio.gather(
            *(p.jc.get_work("part", max_jobs=rng.randint(1, 6), work_timeout=30) for p in live)
        )
        held = [(p, job) for p, got in zip(live, claims, strict=True) for job in got]
        assert len({job.id for _, job in held}) == len(held), "a part claimed twice"
        rng.shuffle(held)
        passing = [rng.choice(live) for _ in range(rng.randint(0, 2))]
        steps: list[Awaitable[Any]] = [report(p, job) for p, job in held]
        steps += [p.jc.run_server_pass() for p in passing]
        order = list(range(len(steps)))
        rng.shuffle(order)  # the passes among the reports
        answers = await asyncio.gather(*(steps[i] for i in order))
        done = dict(zip(order, answers, strict=True))
        for i, (_, job) in enumerate(held):
            if done[i] in outcomes:
                outcomes[done[i]].add(job.id)
        if any(d["status"] not in FINAL for d in (await docs_of(database, parts)).values()):
            assert (await docs_of(database, [callback.id]))[callback.id]["status"] == "waiting"
            for proc in procs:
                assert proc.dead or await proc.jc.get_work("callback") == []
        if not held:  # parts held by a dead process: their leases run out
            clock.advance(31)
            await passes(procs, rounds=1)
    docs = await docs_of(database, parts)
    assert all(d["status"] in FINAL for d in docs.values()), "parts never finished"
    return outcomes


async def fired_once(
    procs: list[Proc], database: Any, parts: list[Any], callback: Job, failed: set[Any]
) -> Job:
    """After passes, the callback is ready, every process asks for it at once and one gets
    it; it was promoted once, resolved each completed part once, and receives their results
    and the ids of those that failed. It completes, and no follow-up is left pending."""
    live = [p for p in procs if not p.dead]
    for proc in live:
        proc.faults.rules.clear()
    await passes(procs)
    got = [
        j
        for batch in await asyncio.gather(*(p.jc.get_work("callback") for p in live))
        for j in batch
    ]
    assert len(got) == 1, got
    [job] = got
    doc = (await docs_of(database, [callback.id]))[callback.id]
    completed = set(parts) - failed
    assert messages(doc).count("Promoted to ready") == 1
    assert messages(doc).count("Dependency resolved") == len(completed)
    assert doc["depends"] == [] and sorted(map(str, doc["resolved"])) == sorted(map(str, completed))
    assert set(failed_antecedents(doc)) == failed
    assert set(await job.antecedent_results()) == completed
    assert await job.done() is True
    await passes(procs)
    for proc in live:
        assert await proc.jc.get_work("callback") == []
    assert await marked(database) == 0
    return job


@pytest.mark.parametrize("seed", range(3 * SEEDS))
async def test_a_chord_fires_its_callback_once_whatever_the_order_and_concurrency(
    make_wrapped_jc: WrapJC, database: Any, clock: ManualClock, seed: int
) -> None:
    rng = random.Random(seed)
    procs = await processes(make_wrapped_jc, 3, rng)
    parts, callback = await save_chord(procs[0].jc, 40)
    outcomes = await run_parts(procs, rng, clock, database, parts, callback)
    assert outcomes["completed"] == set(parts)
    await fired_once(procs, database, parts, callback, set())


@pytest.mark.parametrize("seed", range(2 * SEEDS))
async def test_a_chord_that_ignores_failures_fires_once_with_the_failed_parts_named(
    make_wrapped_jc: WrapJC, database: Any, clock: ManualClock, seed: int
) -> None:
    """Failures (each applying the callback's policy) and completions (each resolving its
    edge) interleaved on three processes: the callback runs once, without the failed."""
    rng = random.Random(100 + seed)
    procs = await processes(make_wrapped_jc, 3, rng)
    parts, callback = await save_chord(procs[0].jc, 30, policy="ignore")

    async def complete_or_fail(proc: Proc, job: Job) -> str:
        if rng.random() < 0.3:
            assert await job.fail("broken", fatal=True) is True
            return "failed"
        return await complete(proc, job)

    outcomes = await run_parts(procs, rng, clock, database, parts, callback, complete_or_fail)
    assert outcomes["failed"], "no part failed: the test tests nothing"
    await fired_once(procs, database, parts, callback, outcomes["failed"])


FAULTS: dict[str, Callable[[Faults], Rule]] = {
    "refused completion write": lambda f: f.fail_before("bulk_write", 2, is_completion),
    "lost reply of a completion": lambda f: f.fail_after("bulk_write", 2, is_completion),
    "crash before the follow-ups": lambda f: f.fail_before("find", 2, is_dependents_lookup),
    "lost reply of the resolution": lambda f: f.fail_after("bulk_write", 2, is_resolution),
    "refused resolution": lambda f: f.fail_before("bulk_write", 2, is_resolution),
    "crash before the promotion": lambda f: f.fail_before("update_many", 2, is_promotion),
    "crash before the mark is cleared": lambda f: f.fail_before("bulk_write", 2, is_mark_clearing),
}
"""Faults planned twice on every process's connection, each at a step of a completion."""


@pytest.mark.parametrize("seed", range(SEEDS))
@pytest.mark.parametrize("fault", list(FAULTS))
async def test_a_chord_fires_once_when_faults_cut_completions_short(
    make_wrapped_jc: WrapJC, database: Any, clock: ManualClock, fault: str, seed: int
) -> None:
    rng = random.Random(seed)
    procs = await processes(make_wrapped_jc, 3, rng)
    parts, callback = await save_chord(procs[0].jc, 24)
    rules = [FAULTS[fault](p.faults) for p in procs]
    outcomes = await run_parts(procs, rng, clock, database, parts, callback)
    assert sum(rule.fired for rule in rules) > 0, "no fault fired: the test tests nothing"
    assert outcomes["completed"] == set(parts)
    await fired_once(procs, database, parts, callback, set())


@pytest.mark.parametrize("seed", range(SEEDS))
async def test_a_chord_fires_once_when_a_process_dies_between_a_completion_and_its_follow_ups(
    make_wrapped_jc: WrapJC, database: Any, clock: ManualClock, seed: int
) -> None:
    """A process holding four parts completes one and dies before its follow-ups: the
    passes of the others finish them, the leases of the three it held run out, and those
    parts are claimed again and completed by the others."""
    rng = random.Random(seed)
    procs = await processes(make_wrapped_jc, 3, rng)
    parts, callback = await save_chord(procs[0].jc, 24, retries=3)
    dying = procs[1]
    crash = dying.faults.fail_before("find", when=is_dependents_lookup)
    first, *held = await dying.jc.get_work("part", max_jobs=4, work_timeout=30)
    assert await first.done({"n": first.data["n"]}) is True  # written, not followed up
    assert crash.fired == 1
    dying.dead = True
    dying.faults.cut_off()
    await run_parts(procs, rng, clock, database, parts, callback)
    docs = await docs_of(database, parts)
    assert all(d["status"] == "completed" for d in docs.values())
    for job in held:  # failed once at the lease's expiry, retried and completed elsewhere
        assert len(docs[job.id]["failures"]) == 1 and docs[job.id]["runId"] != job.doc.run_id
    await fired_once(procs, database, parts, callback, set())
    dying.faults.clear()  # (for its close at the end of the test)


async def test_a_pass_resolving_marked_completions_while_a_reporter_resolves_its_own(
    make_wrapped_jc: WrapJC, database: Any
) -> None:
    """Part a completes on one process, which dies before its follow-ups; part b completes
    on another, whose resolution is in flight when a third process's pass reads the callback
    (waiting on a, b and c) to resolve a and b together. b's resolution lands first: the
    pass's resolution of both then matches nothing, and must still resolve a (it used to
    clear a's mark with a left pending: the callback waited forever)."""
    server, one, two = await processes(make_wrapped_jc, 3, None)
    parts, callback = await save_chord(server.jc, 3)
    a = await claim_one(two.jc, "part")
    b = await claim_one(one.jc, "part")
    c = await claim_one(one.jc, "part")
    two.faults.fail_before("find", when=is_dependents_lookup)
    assert await a.done() is True  # written; its follow-ups are not
    in_flight = one.faults.delay("bulk_write", when=is_resolution)
    reporting = asyncio.create_task(b.done())
    await in_flight.wait_reached()
    held = server.faults.delay("bulk_write", when=is_resolution)
    passing = asyncio.create_task(server.jc.run_server_pass())
    await held.wait_reached()
    in_flight.release()
    assert await reporting is True
    held.release()
    assert (await passing).followed_up == 2
    assert await marked(database) == 0
    waiting = (await docs_of(database, [callback.id]))[callback.id]
    assert waiting["depends"] == [c.id]  # a and b resolved, each once
    assert messages(waiting).count("Dependency resolved") == 2
    assert await c.done() is True
    await fired_once([server, one], database, parts, callback, set())


# --- no job of a workflow waits forever ----------------------------------------------------------


@dataclass
class Shape:
    """A workflow to end one job of badly: its flow, its jobs by name (each of its own type),
    and, for a batch, its members and callbacks."""

    flow: Flow
    jobs: dict[str, Job]
    members: tuple[str, ...] = ()
    callbacks: dict[str, str] | None = None  # on_success/on_complete/on_failure -> name

    def name_of(self, job_id: Any) -> str:
        return next(n for n, j in self.jobs.items() if j.id == job_id)


SHAPES = {
    "chain": ["j0", "j1", "j2", "j3"],
    "chord": ["h0", "h1", "h2", "cb", "tail"],
    "batch": ["m0", "m1", "m2", "ok", "all", "bad", "after"],
}
"""The jobs of each workflow, by name, in the flow's order."""


def build(jc: JobCollection, shape: str, policy: Any) -> Shape:
    """chain(j0, j1, j2, j3); chain(chord([h0, h1, h2], cb), tail); or chain(batch([m0, m1,
    m2], on_success=ok, on_complete=all, on_failure=bad), after): every edge made here with
    `policy` (a batch's callbacks have theirs)."""
    jobs = {n: jc.create_job(n, {"name": n}) for n in SHAPES[shape]}
    j = jobs
    if shape == "chain":
        return Shape(chain(j["j0"], j["j1"], j["j2"], j["j3"], on_failure=policy), jobs)
    if shape == "chord":
        fan_in = chord([j["h0"], j["h1"], j["h2"]], j["cb"], on_failure=policy)
        return Shape(chain(fan_in, j["tail"], on_failure=policy), jobs)
    body = batch(
        [j["m0"], j["m1"], j["m2"]], on_success=j["ok"], on_complete=j["all"], on_failure=j["bad"]
    )
    return Shape(
        chain(body, j["after"], on_failure=policy),
        jobs,
        members=("m0", "m1", "m2"),
        callbacks={"on_success": "ok", "on_complete": "all", "on_failure": "bad"},
    )


def expected_ends(shape: Shape, target: str, end: str) -> dict[str, tuple[str, set[str]]]:
    """How every job ends when `target` ends `end` (failed or cancelled) and every other job
    that runs completes: by the policies of its edges from antecedents that ended badly
    (cancel, then fail, is the strongest; "ignore" and "remove" run it anyway, "ignore"
    recording the antecedent), and a job that runs only if an antecedent failed is cancelled
    when none did. Each job's status and failed antecedents, by name."""
    edges: dict[str, dict[str, str]] = {}
    for antecedent, dependent, policy in shape.flow.edges:
        edges.setdefault(shape.name_of(dependent.id), {})[shape.name_of(antecedent.id)] = policy
    ends: dict[str, tuple[str, set[str]]] = {}
    for job in shape.flow.jobs:  # the builders list every job after its antecedents
        name = shape.name_of(job.id)
        if name == target:
            ends[name] = (end, set())
            continue
        bad = {a: p for a, p in edges.get(name, {}).items() if ends[a][0] in ENDED_BADLY}
        ignored = {a for a, p in bad.items() if p == "ignore"}
        if "cancel" in bad.values():
            ends[name] = ("cancelled", set())
        elif "fail" in bad.values():
            ends[name] = ("failed", set())
        elif job.doc.run_if == "failed" and not ignored:
            ends[name] = ("cancelled", set())
        else:
            ends[name] = ("completed", ignored)
    return ends


def nothing_waits_on_what_ended(shape: Shape, docs: dict[Any, Doc]) -> None:
    """After a pass: every job finished, ready, or waiting on antecedents none of which has
    ended (a completed one would be resolved, a failed or cancelled one settled by policy)."""
    for name, job in shape.jobs.items():
        doc = docs[job.id]
        assert doc["status"] in (*FINAL, "ready", "waiting"), (name, doc["status"])
        if doc["status"] == "waiting":
            assert doc["depends"], f"{name} waits on nothing and was not promoted"
            ended = {shape.name_of(a): docs[a]["status"] for a in doc["depends"] if a in docs}
            assert all(s not in FINAL for s in ended.values()), f"{name} waits on {ended}"


def may_run(shape: Shape, name: str, docs: dict[Any, Doc]) -> None:
    """A job handed to a worker: each antecedent completed, or ended badly on an edge whose
    policy drops it (ignore: recorded); a batch callback only once every member finished."""
    job, doc = shape.jobs[name], docs[shape.jobs[name].id]
    assert doc["depends"] == []
    for antecedent, dependent, policy in shape.flow.edges:
        if dependent is not job:
            continue
        status = docs[antecedent.id]["status"]
        assert status == "completed" or (status in ENDED_BADLY and policy in ("ignore", "remove"))
        if status in ENDED_BADLY:
            assert (antecedent.id in failed_antecedents(doc)) is (policy == "ignore")
    if shape.callbacks and name in shape.callbacks.values():
        members = {m: docs[shape.jobs[m].id]["status"] for m in shape.members}
        assert all(s in FINAL for s in members.values()), f"{name} ran before {members}"


ACTIONS = ("fail", "fail, crash before its follow-ups", "cancel while waiting", "cancel running")


def cases() -> list[Any]:
    return [
        pytest.param(shape, target, action, policy, id=f"{shape}-{target}-{action}-{policy}")
        for shape, names in SHAPES.items()
        for target in names
        for action in ACTIONS
        # on_failure runs only if a member failed: here it never runs, it is cancelled
        if target != "bad" or action == "cancel while waiting"
        for policy in POLICIES
    ]


@pytest.mark.parametrize(("shape_name", "target", "action", "policy"), cases())
async def test_no_job_of_a_workflow_waits_forever(
    make_wrapped_jc: WrapJC,
    database: Any,
    shape_name: str,
    target: str,
    action: str,
    policy: str,
) -> None:
    """One job fails or is cancelled, every other job that runs completes, one at a time in
    the order that runs the newest ready job first (a callback as soon as it may run)."""
    [proc] = await processes(make_wrapped_jc, 1, None)
    jc = proc.jc
    shape = build(jc, shape_name, policy)
    await jc.save_workflow(shape.flow)
    ids = [job.id for job in shape.jobs.values()]
    bad_job = shape.jobs[target]
    if action == "cancel while waiting":
        assert await jc.cancel_jobs([bad_job.id]) is True
    seen_ready: list[Any] = []
    for _ in range(3 * len(ids)):
        await jc.run_server_pass()
        docs = await docs_of(database, ids)
        nothing_waits_on_what_ended(shape, docs)
        seen_ready = [i for i in seen_ready if docs[i]["status"] == "ready"]
        seen_ready += [i for i in ids if docs[i]["status"] == "ready" and i not in seen_ready]
        if not seen_ready:
            break
        name = shape.name_of(seen_ready[-1])
        job = await claim_one(jc, name)
        may_run(shape, name, docs)
        if name != target or action == "cancel while waiting":
            assert await job.done({"name": name}) is True
        elif action == "cancel running":
            assert await jc.cancel_jobs([job.id]) is True
            assert await job.done() is False
        else:
            if action == "fail, crash before its follow-ups":
                crash = proc.faults.fail_before("find", when=is_dependents_lookup)
            assert await job.fail("broken", fatal=True) is True
            if action == "fail, crash before its follow-ups":
                proc.faults.clear()
                # (a job nothing waits on may have no follow-ups: its failure one write)
                if any(a is shape.jobs[name] for a, _, _ in shape.flow.edges):
                    assert crash.fired == 1 and await marked(database) == 1
    docs = await docs_of(database, ids)
    ends = {
        n: (docs[j.id]["status"], {shape.name_of(a) for a in failed_antecedents(docs[j.id])})
        for n, j in shape.jobs.items()
    }
    end = "failed" if action.startswith("fail") else "cancelled"
    assert ends == expected_ends(shape, target, end)
    assert await marked(database) == 0
    if shape.callbacks:
        members = [ends[m][0] for m in shape.members]
        callbacks = {k: ends[n][0] for k, n in shape.callbacks.items() if n != target}
        all_completed = all(s == "completed" for s in members)
        if "on_success" in callbacks:
            assert (callbacks["on_success"] == "completed") is all_completed
        if "on_failure" in callbacks:
            assert (callbacks["on_failure"] == "completed") is not all_completed
        if "on_complete" in callbacks:
            assert callbacks["on_complete"] == "completed"


def nth_call(k: int, when: Callable[[str, Args], bool]) -> Callable[[str, Args], bool]:
    """A fault predicate that matches the k-th call `when` matches."""
    seen = [0]

    def matches(op: str, args: Args) -> bool:
        if not when(op, args):
            return False
        seen[0] += 1
        return seen[0] == k

    return matches


@pytest.mark.parametrize("first", ["cancel", "fail"])
@pytest.mark.parametrize("policy", POLICIES)
async def test_restarting_a_failure_whose_follow_ups_were_cut_short_carries_them_on(
    make_wrapped_jc: WrapJC, database: Any, clock: ManualClock, first: str, policy: str
) -> None:
    """a <- b <- c: a fails for good and its follow-ups end b by their policy (cancelled or
    failed), then stop short of c; a is restarted before any pass, which voids what is left
    of them (a runs again). c waited forever on b, which has ended: it follows its policy."""
    [proc] = await processes(make_wrapped_jc, 1, None)
    jc = proc.jc
    a, b, c = jc.create_job("a").retry(0, wait=0), jc.create_job("b"), jc.create_job("c")
    await jc.save_workflow(chain(a, chain(b, c, on_failure=policy), on_failure=first))
    job = await claim_one(jc, "a")
    cut = proc.faults.fail_before("find", when=nth_call(2, is_cascade_lookup))
    assert await job.fail("broken", fatal=True) is True
    assert cut.fired == 1
    docs = await docs_of(database, [b.id, c.id])
    assert docs[b.id]["status"] == ("cancelled" if first == "cancel" else "failed")
    assert docs[c.id]["status"] == "waiting" and docs[c.id]["depends"] == [b.id]
    assert await jc.restart_jobs([a.id]) is True
    await jc.run_server_pass()
    docs = await docs_of(database, [a.id, b.id, c.id])
    assert docs[a.id]["status"] == "ready"  # it runs again; b stays as its failure left it
    expected = {"cancel": "cancelled", "fail": "failed"}.get(policy, "ready")
    assert docs[c.id]["status"] == expected
    assert failed_antecedents(docs[c.id]) == ([b.id] if policy == "ignore" else [])
    assert await (await claim_one(jc, "a")).done() is True
    await jc.run_server_pass()
    assert (await docs_of(database, [c.id]))[c.id]["status"] == expected
    assert await marked(database) == 0


# --- cancels cut short ----------------------------------------------------------------------


async def test_a_cancel_whose_cascade_was_cut_short_is_carried_on_by_a_pass(
    make_wrapped_jc: WrapJC, database: Any
) -> None:
    [proc] = await processes(make_wrapped_jc, 1, None)
    jc = proc.jc
    a, b = jc.create_job("a"), jc.create_job("b")
    await jc.save_workflow(chain(a, b, on_failure="ignore"))
    proc.faults.fail_before("find", when=is_cascade_lookup)
    with pytest.raises(DatabaseError):
        await jc.cancel_jobs([a.id])  # a is cancelled; the process dies before the cascade
    await jc.run_server_pass()
    docs = await docs_of(database, [a.id, b.id])
    assert docs[a.id]["status"] == "cancelled"
    assert docs[b.id]["status"] == "ready" and failed_antecedents(docs[b.id]) == [a.id]


@pytest.mark.parametrize("policy", ["ignore", "remove"])
async def test_a_batch_member_that_fails_inside_a_chain_that_runs_on_fires_on_failure(
    make_wrapped_jc: WrapJC, database: Any, policy: Any
) -> None:
    [proc] = await processes(make_wrapped_jc, 1, None)
    jc = proc.jc
    m0, m1, m2 = (jc.create_job(t) for t in ("m0", "m1", "m2"))
    ok, everything, bad = jc.create_job("ok"), jc.create_job("all"), jc.create_job("bad")
    flow = batch(
        [m0, chain(m1, m2, on_failure=policy)],
        on_success=ok,
        on_complete=everything,
        on_failure=bad,
    )
    await jc.save_workflow(flow)
    assert await (await claim_one(jc, "m1")).fail("broken", fatal=True) is True
    for name in ("m0", "m2", "all"):
        assert await (await claim_one(jc, name)).done() is True
    await jc.run_server_pass()
    docs = await docs_of(database, [ok.id, bad.id])
    assert (await jc.batch(flow.id).status()).counts == {"failed": 1, "completed": 2}
    assert docs[ok.id]["status"] == "cancelled"  # a member failed ...
    assert docs[bad.id]["status"] == "ready"  # ... so on_failure runs


async def test_on_complete_waits_for_every_member_to_finish(
    make_wrapped_jc: WrapJC, database: Any
) -> None:
    [proc] = await processes(make_wrapped_jc, 1, None)
    jc = proc.jc
    m0, m1, m2 = (jc.create_job(t) for t in ("m0", "m1", "m2"))
    everything = jc.create_job("all")
    await jc.save_workflow(batch([m0, chain(m1, m2)], on_complete=everything))
    assert await jc.cancel_jobs([m2.id]) is True  # the chain's last job, while it waits
    assert await (await claim_one(jc, "m0")).done() is True
    await jc.run_server_pass()
    docs = await docs_of(database, [m1.id, everything.id])
    assert docs[m1.id]["status"] == "ready"  # a member still to run ...
    assert docs[everything.id]["status"] == "waiting"  # ... so on_complete waits for it


@pytest.mark.parametrize("policy", POLICIES)
async def test_cancelling_a_job_that_completed_leaves_its_dependents_to_its_follow_ups(
    make_wrapped_jc: WrapJC, database: Any, policy: str
) -> None:
    """a completes, its follow-ups cut short; a cancel of a (too late: it completed) must not
    apply b's failure policy as if a had been cancelled: the pass resolves b, which runs."""
    [proc] = await processes(make_wrapped_jc, 1, None)
    jc = proc.jc
    a, b = jc.create_job("a"), jc.create_job("b")
    await jc.save_workflow(chain(a, b, on_failure=policy))
    crash = proc.faults.fail_before("find", when=is_dependents_lookup)
    assert await (await claim_one(jc, "a")).done() is True
    assert crash.fired == 1
    assert await jc.cancel_jobs([a.id]) is False
    await jc.run_server_pass()
    docs = await docs_of(database, [a.id, b.id])
    assert docs[a.id]["status"] == "completed"
    assert docs[b.id]["status"] == "ready" and failed_antecedents(docs[b.id]) == []
    assert docs[b.id]["resolved"] == [a.id]
