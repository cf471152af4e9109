"""Workflows (api/workflows.py): chains, groups and chords of new jobs saved in one ordered
insert with the dependencies between them, each marked with the workflow's id; a callback
that receives the results of what it waited for; finding, counting, cancelling and retrying
the jobs of a workflow; bad flows refused before anything is stored."""

from __future__ import annotations

import random
from typing import Any

import pytest

from conftest import MakeJC
from helpers import stored
from jobcollection import (
    InvalidArgument,
    Job,
    JobCollection,
    JobNotSaved,
    ManualClock,
    batch,
    chain,
    chord,
    group,
)

pytestmark = pytest.mark.both_sides


async def finish(jc: JobCollection, job_type: str, result: Any = None) -> Job:
    """Claim the one ready job of a type and complete it."""
    [job] = await jc.get_work(job_type)
    assert await job.done(result if result is not None else {"type": job_type}) is True
    return job


async def statuses(jc: JobCollection, ids: list[Any]) -> list[str]:
    return [(await stored(jc, i))["status"] for i in ids]


async def test_a_chain_runs_in_order_and_is_saved_in_one_insert(jc: JobCollection) -> None:
    a, b, c = jc.create_job("a"), jc.create_job("b"), jc.create_job("c")
    before = jc.commands
    workflow = await jc.save_workflow(chain(a, b, c))
    assert jc.commands - before == 1  # one ordered insert of the three
    assert workflow.ids == [a.id, b.id, c.id]
    assert await statuses(jc, workflow.ids) == ["ready", "waiting", "waiting"]
    assert (await stored(jc, c.id))["depends"] == [b.id]
    await finish(jc, "a")
    assert await statuses(jc, workflow.ids) == ["completed", "ready", "waiting"]
    await finish(jc, "b")
    [last] = await jc.get_work("c")
    assert await last.antecedent_results() == {b.id: {"type": "b"}}


async def test_a_chord_fires_its_callback_once_with_every_result(
    jc: JobCollection, clock: ManualClock
) -> None:
    parts = [jc.create_job("part", {"n": n}) for n in range(12)]
    report = jc.create_job("report")
    workflow = await jc.save_workflow(chord(parts, report))
    claimed = await jc.get_work("part", max_jobs=12)
    random.Random(7).shuffle(claimed)
    for i, job in enumerate(claimed):
        assert await jc.get_work("report") == []  # not before the last part completes
        assert await job.done({"n": job.data["n"]}) is True
        if i < len(claimed) - 1:
            assert (await stored(jc, report.id))["status"] == "waiting"
    [callback] = await jc.get_work("report")
    assert await jc.get_work("report") == []  # exactly once
    results = await callback.antecedent_results()
    assert {r["n"] for r in results.values()} == set(range(12))
    status = await workflow.status()
    assert status.counts == {"completed": 12, "running": 1} and status.total == 13
    assert not status.done and status.progress == 12 / 13


async def test_chains_of_groups_and_groups_of_chains(jc: JobCollection) -> None:
    a1, a2, b1, b2, c = (jc.create_job(t) for t in ("a1", "a2", "b1", "b2", "c"))
    fan_out, d = jc.create_job("d1"), jc.create_job("d2")
    flow = chain(group(chain(a1, a2), chain(b1, b2)), c, [fan_out, d])
    await jc.save_workflow(flow)
    assert sorted((await stored(jc, c.id))["depends"]) == sorted([a2.id, b2.id])
    assert (await stored(jc, d.id))["depends"] == [c.id]
    assert await statuses(jc, [a1.id, b1.id, a2.id]) == ["ready", "ready", "waiting"]
    for job_type in ("a1", "b1", "a2", "b2"):
        await finish(jc, job_type)
    await finish(jc, "c")
    assert await statuses(jc, [fan_out.id, d.id]) == ["ready", "ready"]


async def test_the_documents_stay_v1_documents_marked_as_their_own_saves_mark_them(
    jc: JobCollection,
) -> None:
    a, b = jc.create_job("a"), jc.create_job("b")
    workflow = await jc.save_workflow(chain(a, b, on_failure="ignore"))
    first, second = await stored(jc, a.id), await stored(jc, b.id)
    assert first["_private"]["jobcollectionDependents"] is True
    assert first["_private"]["jobcollectionWorkflow"] == workflow.id
    assert second["_private"]["jobcollectionAnnounced"] is True
    assert second["_private"]["jobcollectionOnFailure"] == [{"id": a.id, "policy": "ignore"}]
    assert second["depends"] == [a.id] and second["status"] == "waiting"
    [found] = await jc.get_jobs([b.id])
    assert found.doc.workflow == workflow.id
    assert [(e.id, e.policy) for e in found.doc.on_failure] == [(a.id, "ignore")]


async def test_a_workflow_is_found_counted_cancelled_and_retried(jc: JobCollection) -> None:
    a, b, c = jc.create_job("a"), jc.create_job("b").retry(0), jc.create_job("c")
    workflow = await jc.save_workflow(chain(a, b, c))
    other = await jc.save_workflow(jc.create_job("a"))
    found = await workflow.jobs()
    assert sorted(map(str, (j.id for j in found))) == sorted(map(str, workflow.ids))
    assert len(await other.jobs()) == 1
    await finish(jc, "a")
    [held] = await jc.get_work("b")
    assert await held.fail("broken", fatal=True) is True
    assert await statuses(jc, workflow.ids) == ["completed", "failed", "cancelled"]
    assert (await workflow.status()).done
    assert await workflow.retry() == 2  # b and c wait again (b for the next promotion)
    assert await statuses(jc, workflow.ids) == ["completed", "waiting", "waiting"]
    again = jc.workflow(workflow.id)
    assert await again.cancel() == 2
    assert await statuses(jc, workflow.ids) == ["completed", "cancelled", "cancelled"]


async def test_saving_again_after_an_error_stores_each_job_once(jc: JobCollection) -> None:
    flow = chain(jc.create_job("a"), group(jc.create_job("b"), jc.create_job("c")))
    first = await jc.save_workflow(flow)
    for job in flow.jobs:  # as if the reply had been lost: the jobs never learnt their ids
        job.doc.__dict__["id"] = None
    second = await jc.save_workflow(flow)
    assert second.ids == first.ids and second.id == first.id
    assert await jc.collection.count_documents({}) == 3


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda jc: chain(), "steps"),
        (lambda jc: group(), "members"),
        (lambda jc: chain(jc.create_job("a"), 5), "steps[1]"),
        (lambda jc: group([jc.create_job("a"), "b"]), "members[0][1]"),
        (
            lambda jc: chain(jc.create_job("a"), jc.create_job("b"), on_failure="explode"),
            "on_failure",
        ),
    ],
)
async def test_bad_flows_are_refused_naming_the_part(
    jc: JobCollection, build: Any, field: str
) -> None:
    with pytest.raises(InvalidArgument, match=field.replace("[", r"\[").replace("]", r"\]")):
        build(jc)


async def test_a_job_twice_or_already_saved_is_refused_and_nothing_is_stored(
    jc: JobCollection,
) -> None:
    a = jc.create_job("a")
    with pytest.raises(InvalidArgument, match="appears twice"):
        chain(a, jc.create_job("b"), a)
    saved = jc.create_job("s")
    await saved.save()
    with pytest.raises(InvalidArgument, match="saved already"):
        chain(saved, a)
    assert await jc.collection.count_documents({}) == 1


async def test_a_cycle_given_over_the_wire_is_refused(make_jc: MakeJC) -> None:
    jc = await make_jc()
    a, b = jc.create_job("a"), jc.create_job("b")
    ids = [a._insert_id(), b._insert_id()]
    docs = [
        {**a.doc.to_mongo(), "depends": [ids[1]]},
        {**b.doc.to_mongo(), "depends": [ids[0]]},
    ]
    with pytest.raises(InvalidArgument, match="cycle"):
        await jc.call("jobSaveMany", docs, {"jobIds": ids})
    assert await jc.collection.count_documents({}) == 0


# --- failure policies -----------------------------------------------------------------------


async def fail_one(jc: JobCollection, job_type: str) -> Job:
    [job] = await jc.get_work(job_type)
    assert await job.fail("broken", fatal=True) is True
    return job


async def test_ignore_runs_the_callback_without_what_failed_and_records_it(
    jc: JobCollection,
) -> None:
    parts = [jc.create_job("part", {"n": n}) for n in range(3)]
    report = jc.create_job("report")
    await jc.save_workflow(chord(parts, report, on_failure="ignore"))
    claimed = await jc.get_work("part", max_jobs=3)
    assert await claimed[0].fail("broken", fatal=True) is True
    assert (await stored(jc, report.id))["status"] == "waiting"
    for job in claimed[1:]:
        assert await job.done({"n": job.data["n"]}) is True
    [callback] = await jc.get_work("report")
    assert callback.doc.failed_antecedents == [claimed[0].id]
    results = await callback.antecedent_results()
    assert sorted(r["n"] for r in results.values()) == sorted(j.data["n"] for j in claimed[1:])
    log = [e["message"] for e in (await stored(jc, report.id))["log"]]
    assert f"Antecedent {claimed[0].id} failed: running without it" in log


async def test_remove_drops_the_edge_and_records_nothing(jc: JobCollection) -> None:
    a, b = jc.create_job("a"), jc.create_job("b")
    await jc.save_workflow(chain(a, b, on_failure="remove"))
    await fail_one(jc, "a")
    [job] = await jc.get_work("b")
    assert job.doc.failed_antecedents == [] and job.doc.depends == []


async def test_fail_fails_the_dependent_and_its_own_dependents_follow_their_policies(
    jc: JobCollection,
) -> None:
    a, b, c, d = (jc.create_job(t) for t in "abcd")
    flow = chain(a, chain(b, group(c, d), on_failure="cancel"), on_failure="fail")
    await jc.save_workflow(flow)
    await fail_one(jc, "a")
    assert await statuses(jc, [b.id, c.id, d.id]) == ["failed", "cancelled", "cancelled"]
    failure = (await stored(jc, b.id))["failures"][-1]
    assert failure["antecedents"] == [{"antecedent": a.id, "status": "failed"}]


async def test_the_default_cancels_as_job_collection_does(jc: JobCollection) -> None:
    a, b, c = (jc.create_job(t) for t in "abc")
    await jc.save_workflow(chain(a, b, c))
    await fail_one(jc, "a")
    assert await statuses(jc, [b.id, c.id]) == ["cancelled", "cancelled"]


async def test_policies_apply_when_an_antecedent_is_cancelled_too(jc: JobCollection) -> None:
    a, b, c = (jc.create_job(t) for t in "abc")
    await jc.save_workflow(chain(a, group(b, c), on_failure="ignore"))
    assert await jc.cancel_jobs([a.id]) is True
    assert await statuses(jc, [a.id, b.id, c.id]) == ["cancelled", "ready", "ready"]
    [found] = await jc.get_jobs([b.id])
    assert found.doc.failed_antecedents == [a.id]


# --- children at run time -------------------------------------------------------------------


async def test_a_running_job_adds_children_and_a_continuation(jc: JobCollection) -> None:
    parent_id = await jc.create_job("parent").save()
    [parent] = await jc.get_work("parent")
    children = [jc.create_job("child", {"n": n}) for n in range(3)]
    then = jc.create_job("gather")
    ids = await parent.add_children(children, then=then)
    assert ids == [*(c.id for c in children), then.id]
    assert await parent.done() is True  # the parent completes as usual
    [first, second, third] = await jc.get_work("child", max_jobs=3)
    # A child adds its own (nested): they join the same workflow, the parent's id.
    grandchild = jc.create_job("grandchild")
    await first.add_children([grandchild])
    assert (await stored(jc, grandchild.id))["_private"]["jobcollectionWorkflow"] == parent_id
    assert await first.done({"n": 0}) is True
    assert await second.fail("broken", fatal=True) is True
    assert await jc.get_work("gather") == []
    assert await third.done({"n": 2}) is True
    [gather] = await jc.get_work("gather")  # whatever their outcomes
    assert gather.doc.failed_antecedents == [second.id]
    assert sorted(r["n"] for r in (await gather.antecedent_results()).values()) == [0, 2]
    members = await jc.workflow(parent_id).jobs()
    assert len(members) == 5  # three children, the continuation, the grandchild


async def test_only_a_held_job_adds_children(jc: JobCollection) -> None:
    job = jc.create_job("parent")
    await job.save()
    with pytest.raises(JobNotSaved, match="add_children"):
        await job.add_children([jc.create_job("child")])
    assert await jc.collection.count_documents({}) == 1


# --- batches --------------------------------------------------------------------------------


async def test_a_batch_that_succeeds_fires_on_success_and_on_complete_once(
    jc: JobCollection,
) -> None:
    members = [jc.create_job("m", {"n": n}) for n in range(4)]
    success, complete, failure = (jc.create_job(t) for t in ("ok", "all", "bad"))
    flow = batch(members, on_success=success, on_complete=complete, on_failure=failure)
    await jc.save_workflow(flow)
    status = await jc.batch(flow.id).status()
    assert status.total == 4 and status.counts == {"ready": 4}  # the members only
    for job in await jc.get_work("m", max_jobs=4):
        assert await job.done({"n": job.data["n"]}) is True
    assert await statuses(jc, [success.id, complete.id, failure.id]) == [
        "ready",
        "ready",
        "cancelled",  # nothing failed: on_failure does not run
    ]
    log = [e["message"] for e in (await stored(jc, failure.id))["log"]]
    assert "Job Cancelled" in log
    assert (await jc.batch(flow.id).status()).progress == 1.0


async def test_a_batch_with_a_failure_fires_on_failure_and_on_complete(jc: JobCollection) -> None:
    members = [jc.create_job("m", {"n": n}) for n in range(3)]
    success, complete, failure = (jc.create_job(t) for t in ("ok", "all", "bad"))
    flow = batch(members, on_success=success, on_complete=complete, on_failure=failure)
    await jc.save_workflow(flow)
    claimed = await jc.get_work("m", max_jobs=3)
    assert await claimed[0].fail("broken", fatal=True) is True
    assert await statuses(jc, [success.id, failure.id]) == ["cancelled", "waiting"]
    for job in claimed[1:]:
        assert await job.done() is True
    assert await statuses(jc, [complete.id, failure.id]) == ["ready", "ready"]
    [on_failure] = await jc.get_work("bad")
    assert on_failure.doc.failed_antecedents == [claimed[0].id]
    assert (await jc.batch(flow.id).status()).counts == {"failed": 1, "completed": 2}


async def test_nested_batches_count_their_own_members(jc: JobCollection) -> None:
    inner = batch([jc.create_job("in") for _ in range(2)], on_complete=jc.create_job("in-cb"))
    outer = batch([inner, jc.create_job("out")], on_complete=jc.create_job("out-cb"))
    await jc.save_workflow(outer)
    assert (await jc.batch(inner.id).status()).total == 2
    assert (await jc.batch(outer.id).status()).total == 4  # and the inner's callback
    for job_type in ("in", "in", "out", "in-cb"):
        await finish(jc, job_type)
    [last] = await jc.get_work("out-cb")
    assert last.type == "out-cb"


async def test_cancelling_a_batch_runs_its_on_failure(jc: JobCollection) -> None:
    failure = jc.create_job("bad")
    flow = batch([jc.create_job("m") for _ in range(3)], on_failure=failure)
    await jc.save_workflow(flow)
    assert await jc.batch(flow.id).cancel() == 3
    [job] = await jc.get_work("bad")
    assert len(job.doc.failed_antecedents) == 3


async def test_jobs_added_to_an_open_batch_are_waited_for(jc: JobCollection) -> None:
    complete = jc.create_job("all")
    flow = batch([jc.create_job("m")], on_complete=complete)
    await jc.save_workflow(flow)
    opened = jc.batch(flow.id)
    late = jc.create_job("m", {"late": True})
    [late_id] = await opened.add(late)
    assert (await opened.status()).total == 2
    await finish(jc, "m")
    assert (await stored(jc, complete.id))["status"] == "waiting"  # the late one still runs
    await finish(jc, "m")
    [callback] = await jc.get_work("all")
    assert late_id in (await callback.antecedent_results())
    with pytest.raises(InvalidArgument, match="closed"):
        await opened.add(jc.create_job("m"))


async def test_a_member_added_after_it_completed_is_resolved_at_once(jc: JobCollection) -> None:
    complete = jc.create_job("all")
    flow = batch([jc.create_job("m"), jc.create_job("m")], on_complete=complete)
    await jc.save_workflow(flow)
    first = await finish(jc, "m")
    # An antecedent that completed already is resolved as it is added (jobAddDepends).
    added = await jc.call("jobAddDepends", [complete.id], [first.id])
    assert added == 1
    await finish(jc, "m")
    assert (await stored(jc, complete.id))["status"] == "ready"


async def test_completing_a_member_costs_a_read_a_write_and_its_follow_ups(
    jc: JobCollection,
) -> None:
    await jc.save_workflow(chain(jc.create_job("a"), jc.create_job("b")))
    [job] = await jc.get_work("a")
    before = jc.commands
    assert await job.done() is True
    # The job read (a member of a workflow has dependents: no blind write to fail first),
    # its completion, then the follow-up: its dependents read, resolved and promoted, and
    # the follow-ups mark cleared.
    assert jc.commands - before == 6
