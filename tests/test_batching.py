"""The batched hot path: save_jobs (one insert for many jobs), get_work batches, and bundled
done/fail (reports that arrive together are written together, each caller keeping its own
answer). Round trips are asserted through `jc.commands`; semantics through stored documents."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

import pytest
from bson import ObjectId

from conftest import SHARDED, START, MakeJC
from helpers import Doc, messages, stored, utc
from jobcollection import (
    FOREVER,
    InvalidArgument,
    InvalidArgumentType,
    InvalidDocument,
    Job,
    JobCollection,
    ManualClock,
    MethodEvent,
)
from jobcollection.mongo.store import Store


async def all_docs(jc: JobCollection) -> list[Doc]:
    return [dict(d) async for d in jc.collection.find({})]


async def claim(jc: JobCollection, n: int, job_type: str = "t") -> list[Job]:
    jobs = [jc.create_job(job_type, {"i": i}) for i in range(n)]
    await jc.save_jobs(jobs)
    claimed = await jc.get_work(job_type, max_jobs=n)
    assert len(claimed) == n
    return claimed


# --- save_jobs ------------------------------------------------------------------------------


async def test_save_jobs_inserts_simple_jobs_in_one_round_trip(jc: JobCollection) -> None:
    jobs = [jc.create_job("t", {"i": i}) for i in range(25)]
    before = jc.commands
    ids = await jc.save_jobs(jobs)
    assert jc.commands - before == 1
    assert len(ids) == 25 and None not in ids
    assert [job.id for job in jobs] == ids
    docs = {d["_id"]: d for d in await all_docs(jc)}
    assert set(docs) == set(ids)
    for i, job_id in enumerate(ids):
        assert docs[job_id]["data"] == {"i": i}
        assert docs[job_id]["status"] == "ready"  # due, no dependencies: born ready


async def test_save_jobs_stores_what_save_stores(jc: JobCollection) -> None:
    def build(job_type: str) -> Job:
        return (
            jc.create_job(job_type, {"x": 1})
            .priority("high")
            .retry(3, wait=10)
            .repeat(2, wait=60)
            .delay(30)
        )

    one = build("t")
    await one.save()
    [many_id] = await jc.save_jobs([build("t")])
    a, b = await stored(jc, one.id), await stored(jc, many_id)
    for doc in (a, b):
        del doc["_id"]
    assert a == b
    assert b["status"] == "waiting"  # delayed: not ready yet


async def test_save_jobs_empty_list_issues_no_command(jc: JobCollection) -> None:
    before = jc.commands
    assert await jc.save_jobs([]) == []
    assert jc.commands == before


async def test_save_jobs_cron_job_gets_its_first_run(jc: JobCollection) -> None:
    cron = jc.create_job("c").repeat(schedule="*/5 * * * *")
    plain = jc.create_job("t")
    ids = await jc.save_jobs([cron, plain])
    assert None not in ids
    doc = await stored(jc, cron.id)
    assert doc["status"] == "waiting"
    assert utc(doc["after"]) == START + timedelta(minutes=5)  # strictly after now


async def test_save_jobs_cron_without_a_run_before_until_is_not_saved(
    jc: JobCollection, caplog: pytest.LogCaptureFixture
) -> None:
    never = jc.create_job("c").repeat(schedule="0 0 1 1 *", until=START + timedelta(hours=1))
    plain = jc.create_job("t")
    with caplog.at_level(logging.WARNING, logger="jobcollection"):
        ids = await jc.save_jobs([never, plain])
    assert ids[0] is None and never.id is None
    assert ids[1] is not None and plain.id == ids[1]
    assert [d["_id"] for d in await all_docs(jc)] == [ids[1]]
    assert "no run before repeatUntil" in caplog.text


async def test_save_jobs_paused_jobs_stay_paused(jc: JobCollection) -> None:
    paused = jc.create_job("t")
    await paused.pause()
    ready = jc.create_job("t")
    await jc.save_jobs([paused, ready])
    assert (await stored(jc, paused.id))["status"] == "paused"
    assert (await stored(jc, ready.id))["status"] == "ready"
    assert [j.id for j in await jc.get_work("t", max_jobs=5)] == [ready.id]


async def test_save_jobs_dependent_jobs_fall_back_to_save_semantics(
    jc: JobCollection,
) -> None:
    done_dep = (await claim(jc, 1, "dep"))[0]
    assert await done_dep.done() is True
    pending_dep = jc.create_job("dep")
    await pending_dep.save()
    cancelled_dep = jc.create_job("dep")
    await cancelled_dep.save()
    await cancelled_dep.cancel()

    after_done = jc.create_job("t").depends([done_dep])
    after_pending = jc.create_job("t").depends([pending_dep])
    after_cancelled = jc.create_job("t").depends([cancelled_dep])
    plain = jc.create_job("t")
    ids = await jc.save_jobs([after_done, after_pending, plain, after_cancelled])

    resolved = await stored(jc, ids[0])
    assert resolved["status"] == "ready"
    assert resolved["depends"] == [] and resolved["resolved"] == [done_dep.id]
    waiting = await stored(jc, ids[1])
    assert waiting["status"] == "waiting" and waiting["depends"] == [pending_dep.id]
    assert (await stored(jc, ids[2]))["status"] == "ready"
    assert ids[3] is None and after_cancelled.id is None  # save() returns None: cancelled
    [doomed] = [d for d in await all_docs(jc) if d["type"] == "t" and d["status"] == "cancelled"]
    assert "Antecedent job cancelled before save" in messages(doomed)


async def test_save_jobs_cancel_repeats_cancels_only_jobs_listed_before(
    jc: JobCollection,
) -> None:
    """As if saved one by one in order: a forever-repeating job saved with cancel_repeats
    cancels the earlier jobs of its type, including those earlier in the same list."""
    old = jc.create_job("r").repeat(FOREVER, wait=60)
    await old.save()
    before = jc.create_job("r")
    forever = jc.create_job("r").repeat(FOREVER, wait=60)
    after = jc.create_job("r")
    other = jc.create_job("other")
    ids = await jc.save_jobs([before, forever, after, other], cancel_repeats=True)
    assert None not in ids
    status = {d["_id"]: d["status"] for d in await all_docs(jc)}
    assert status[old.id] == "cancelled"
    assert status[before.id] == "cancelled"
    assert status[forever.id] == "ready"
    assert status[after.id] == "ready"
    assert status[other.id] == "ready"


async def test_save_jobs_without_cancel_repeats_keeps_earlier_repeats(
    jc: JobCollection,
) -> None:
    old = jc.create_job("r").repeat(FOREVER, wait=60)
    await old.save()
    before = jc.commands
    ids = await jc.save_jobs([jc.create_job("r").repeat(FOREVER, wait=60), jc.create_job("r")])
    assert jc.commands - before == 1  # no fallback needed
    status = {d["_id"]: d["status"] for d in await all_docs(jc)}
    assert status == {old.id: "ready", ids[0]: "ready", ids[1]: "ready"}


async def test_save_jobs_resubmits_a_paused_job(jc: JobCollection) -> None:
    job = jc.create_job("t", {"v": 1})
    await job.save()
    await job.pause()
    job.data["v"] = 2
    fresh = jc.create_job("t")
    ids = await jc.save_jobs([job, fresh])
    assert ids[0] == job.id and ids[1] == fresh.id
    doc = await stored(jc, job.id)
    assert doc["data"] == {"v": 2} and doc["status"] == "ready"
    assert "Job Resubmitted" in messages(doc)


async def test_save_jobs_invalid_status_anywhere_raises_before_storing(
    jc: JobCollection,
) -> None:
    [running] = await claim(jc, 1, "busy")
    snapshot = await all_docs(jc)
    jobs = [jc.create_job("t"), jc.create_job("t"), running]
    with pytest.raises(InvalidArgument, match=r"jobs\[2\]\.status"):
        await jc.save_jobs(jobs)
    assert await all_docs(jc) == snapshot
    assert jobs[0].id is None and jobs[1].id is None


async def test_save_jobs_non_job_item_raises_before_storing(jc: JobCollection) -> None:
    jobs: list[Any] = [jc.create_job("t"), {"type": "t"}]
    with pytest.raises(InvalidArgumentType, match=r"jobs\[1\]"):
        await jc.save_jobs(jobs)
    assert await all_docs(jc) == []
    assert jobs[0].id is None


async def test_job_save_many_invalid_document_raises_before_storing(
    jc: JobCollection,
) -> None:
    good = jc.create_job("t").doc
    with pytest.raises(InvalidDocument):
        await jc.call("jobSaveMany", [good, {"type": "t", "priority": "urgent"}])
    with pytest.raises(InvalidArgumentType, match="docs"):
        await jc.call("jobSaveMany", good)
    assert await all_docs(jc) == []


async def test_save_jobs_fires_events_once_per_call(jc: JobCollection) -> None:
    seen: list[str] = []

    def record(event: MethodEvent) -> None:
        seen.append(event.method)

    for name in ("call", "jobSave", "jobSaveMany"):
        jc.events.on(name, record)
    dep = jc.create_job("dep")
    await dep.save()
    seen.clear()
    jobs = [jc.create_job("t"), jc.create_job("t").depends([dep]), jc.create_job("t")]
    ids = await jc.save_jobs(jobs)
    assert None not in ids
    assert seen == ["jobSaveMany", "jobSaveMany"]  # once as "call", once by name


# --- get_work -------------------------------------------------------------------------------


async def test_get_work_commands_do_not_grow_with_max_jobs(jc: JobCollection) -> None:
    await jc.save_jobs([jc.create_job("t") for _ in range(100)])
    await jc.paused_types()  # the settings every claim reads, at most once a second
    costs = []
    for n in (1, 10, 50):
        before = jc.commands
        assert len(await jc.get_work("t", max_jobs=n)) == n
        costs.append(jc.commands - before)
    # one job: a single find-and-modify (through a mongos: a find, then one by _id)
    assert costs == [2 if SHARDED else 1, 3, 3]
    before = jc.commands
    assert len(await jc.get_work("t", max_jobs=100)) == 39  # fewer ready than asked
    assert jc.commands - before == 3
    before = jc.commands
    assert await jc.get_work("t", max_jobs=100) == []
    assert jc.commands - before == 1


# --- bundled completion ---------------------------------------------------------------------


async def test_concurrent_done_costs_constant_commands(jc: JobCollection) -> None:
    costs = {}
    for n in (1, 5, 40):
        jobs = await claim(jc, n, f"t{n}")
        before = jc.commands
        results = await asyncio.gather(*(job.done({"n": i}) for i, job in enumerate(jobs)))
        costs[n] = jc.commands - before
        assert results == [True] * n
        for i, job in enumerate(jobs):
            doc = await stored(jc, job.id)
            assert doc["status"] == "completed"
            assert doc["result"] == {"n": i}
            assert messages(doc).count("Job Completed") == 1
    assert costs[1] == costs[5] == costs[40]
    # read, bulk write, dependents lookup, clearing the follow-up marks
    assert costs[40] <= 4


async def test_stale_run_id_in_a_batch_gets_false_alone(
    jc: JobCollection, caplog: pytest.LogCaptureFixture
) -> None:
    a, b, c = await claim(jc, 3)
    stale = jc.make_job(a.doc.model_copy(update={"run_id": ObjectId()}))
    c_run = c.doc.run_id
    with caplog.at_level(logging.WARNING, logger="jobcollection"):
        results = await asyncio.gather(stale.done(), b.done(), c.fail("boom"))
    assert results == [False, True, True]
    assert (await stored(jc, a.id))["status"] == "running"
    assert (await stored(jc, b.id))["status"] == "completed"
    assert (await stored(jc, c.id))["failures"][-1]["runId"] == c_run
    assert f"job {a.id} is not running under run {stale.doc.run_id}" in caplog.text


async def test_done_and_fail_in_one_batch(jc: JobCollection) -> None:
    jobs = await claim(jc, 4)
    run_ids = [j.doc.run_id for j in jobs]
    before = jc.commands
    results = await asyncio.gather(
        jobs[0].done("ok"),
        jobs[1].fail("retry me"),
        jobs[2].fail("fatal", fatal=True),
        jobs[3].done(),
    )
    assert results == [True, True, True, True]
    assert jc.commands - before <= 4  # read, bulk write, dependents, clearing the marks
    docs = [await stored(jc, j.id) for j in jobs]
    assert docs[0]["status"] == "completed" and docs[0]["result"] == {"value": "ok"}
    assert docs[1]["status"] == "failed"  # its one attempt is used up
    assert docs[1]["failures"] == [{"value": "retry me", "runId": run_ids[1]}]
    assert docs[2]["status"] == "failed" and docs[2]["runId"] is None
    assert docs[3]["status"] == "completed"


async def test_failed_job_with_retries_left_goes_back_to_waiting(jc: JobCollection) -> None:
    await jc.save_jobs([jc.create_job("t").retry(2, wait=0), jc.create_job("t").retry(2)])
    a, b = await jc.get_work("t", max_jobs=2)
    assert await asyncio.gather(a.fail("x"), b.fail("y", fatal=True)) == [True, True]
    assert (await stored(jc, a.id))["status"] == "waiting"
    assert (await stored(jc, b.id))["status"] == "failed"


async def test_two_reports_for_one_job_in_a_batch(jc: JobCollection) -> None:
    [job] = await claim(jc, 1)
    twin = jc.make_job(job.doc)
    other_twin = jc.make_job(job.doc)
    results = await asyncio.gather(job.done("first"), twin.done("second"), other_twin.fail())
    assert results == [True, False, False]
    doc = await stored(jc, job.id)
    assert doc["status"] == "completed" and doc["result"] == {"value": "first"}
    assert messages(doc).count("Job Completed") == 1
    assert "failures" not in doc or doc["failures"] == []


async def test_repeat_ids_are_returned_per_caller(jc: JobCollection) -> None:
    await jc.save_jobs(
        [
            jc.create_job("t", {"k": "a"}).repeat(1, wait=0),
            jc.create_job("t", {"k": "b"}).repeat(1, wait=0),
            jc.create_job("t", {"k": "c"}),  # does not repeat
            jc.create_job("t", {"k": "d"}).repeat(1, wait=0),
        ]
    )
    jobs = sorted(await jc.get_work("t", max_jobs=4), key=lambda j: j.data["k"])
    results = await asyncio.gather(
        jobs[0].done(repeat_id=True),
        jobs[1].done(repeat_id=True),
        jobs[2].done(repeat_id=True),
        jobs[3].done(),  # repeats, but did not ask for the id
    )
    assert results[2] is True and results[3] is True
    new_a, new_b = results[0], results[1]
    assert isinstance(new_a, ObjectId) and isinstance(new_b, ObjectId) and new_a != new_b
    for original, new_id in ((jobs[0], new_a), (jobs[1], new_b)):
        clone = await stored(jc, new_id)
        assert clone["data"] == original.data
        assert clone["status"] == "ready" and clone["repeated"] == 1
        previous = clone["log"][0]["data"]["previousJob"]
        assert previous == {"id": original.id, "runId": original.doc.run_id}
    repeats = [d for d in await all_docs(jc) if d.get("repeated") == 1]
    assert len(repeats) == 3  # a, b and d


async def test_dependents_resolved_for_a_batch(jc: JobCollection, clock: ManualClock) -> None:
    a, b = jc.create_job("a"), jc.create_job("b")
    await jc.save_jobs([a, b])
    both = jc.create_job("x").depends([a, b])
    only_a = jc.create_job("x").depends([a])
    await jc.save_jobs([both, only_a])
    [ca] = await jc.get_work("a")
    [cb] = await jc.get_work("b")
    assert await asyncio.gather(ca.done(), cb.done(delay_deps=30)) == [True, True]
    doc_both = await stored(jc, both.id)
    assert doc_both["depends"] == [] and set(doc_both["resolved"]) == {a.id, b.id}
    assert doc_both["status"] == "waiting"  # b's delay_deps holds it back
    assert utc(doc_both["after"]) == START + timedelta(seconds=30)
    doc_a = await stored(jc, only_a.id)
    assert doc_a["status"] == "ready" and doc_a["resolved"] == [a.id]
    clock.advance(30)
    await jc.run_server_pass()
    assert (await stored(jc, both.id))["status"] == "ready"


async def test_fatal_fail_in_a_batch_cancels_dependents(jc: JobCollection) -> None:
    a, b = jc.create_job("a"), jc.create_job("b")
    await jc.save_jobs([a, b])
    child = jc.create_job("x").depends([a])
    grandchild = jc.create_job("x")
    await child.save()
    grandchild.depends([child])
    await grandchild.save()
    safe = jc.create_job("x").depends([b])
    await safe.save()
    [ca] = await jc.get_work("a")
    [cb] = await jc.get_work("b")
    assert await asyncio.gather(ca.fail("no", fatal=True), cb.done()) == [True, True]
    assert (await stored(jc, child.id))["status"] == "cancelled"
    assert (await stored(jc, grandchild.id))["status"] == "cancelled"
    assert (await stored(jc, safe.id))["status"] == "ready"


@pytest.mark.parametrize("victim_kind", ["done", "fail"])
async def test_partial_bulk_write_gives_each_caller_its_answer(
    jc: JobCollection, monkeypatch: pytest.MonkeyPatch, victim_kind: str
) -> None:
    """Another writer cancels one job between the batch's read and its bulk write."""
    jobs = await claim(jc, 4)
    victim = jobs[1]
    original = Store.update_each
    interfered: list[Any] = []

    async def interfering(self: Store, updates: Any) -> Any:
        if not interfered:
            interfered.append(victim.id)
            await self.collection.update_one(
                {"_id": victim.id}, {"$set": {"status": "cancelled", "runId": None}}
            )
        return await original(self, updates)

    monkeypatch.setattr(Store, "update_each", interfering)
    victim_report = victim.done() if victim_kind == "done" else victim.fail("x")
    results = await asyncio.gather(
        jobs[0].done(), victim_report, jobs[2].fail("y"), jobs[3].done(repeat_id=True)
    )
    assert interfered == [victim.id]
    assert results == [True, False, True, True]
    doc = await stored(jc, victim.id)
    assert doc["status"] == "cancelled"
    assert "Job Completed" not in messages(doc)
    assert not doc.get("failures")
    assert (await stored(jc, jobs[0].id))["status"] == "completed"
    assert (await stored(jc, jobs[2].id))["status"] == "failed"
    assert (await stored(jc, jobs[3].id))["status"] == "completed"


async def test_reports_after_a_flush_form_the_next_batch(make_jc: MakeJC) -> None:
    jc = await make_jc()
    first = await claim(jc, 3, "a")
    second = await claim(jc, 3, "b")
    early = [asyncio.ensure_future(j.done()) for j in first]
    await asyncio.sleep(0)  # the first batch is now being flushed
    late = [asyncio.ensure_future(j.done()) for j in second]
    assert await asyncio.gather(*early, *late) == [True] * 6
    for job in first + second:
        assert (await stored(jc, job.id))["status"] == "completed"


# --- the JobQueue's claims ------------------------------------------------------------------


async def test_queue_claims_batches_sized_by_free_capacity(jc: JobCollection) -> None:
    """A queue claims prefetch + payload * free slots at once, and while its workers have
    jobs to start it refills the prefetch only once half of it is used: a few big claims
    instead of one claim per finished job."""
    await jc.save_jobs([jc.create_job("t", {"i": i}) for i in range(60)])
    asked: list[int] = []
    got: list[int] = []

    def record(event: MethodEvent) -> None:
        asked.append(event.params[1]["maxJobs"])
        got.append(len(event.return_value))

    jc.events.on("getWork", record)
    seen: list[int] = []

    async def worker(job: Job) -> None:
        seen.append(job.data["i"])
        await asyncio.sleep(0)

    queue = jc.process_jobs(
        "t", worker, concurrency=2, prefetch=10, poll_interval=None, wakeup=False
    )
    async with asyncio.timeout(10):
        await queue.drain()
    await queue.shutdown("soft")
    assert sorted(seen) == list(range(60))
    assert all(d["status"] == "completed" for d in await all_docs(jc))
    assert asked[0] == 12  # prefetch + payload * concurrency
    fetching = [n for n, k in zip(asked, got, strict=True) if k]
    # A few big claims, not one per finished job: as many as claims of half the prefetch
    # would take at most. (A claim may be small when the workers have nothing to start and
    # more than a round of reports is in flight, which holds the claim back: then it takes
    # what those reports leave, as on the wire tier, where reports are slower.)
    assert len(fetching) <= 60 // 5 + 1, asked
    assert sum(n >= 5 for n in fetching) >= len(fetching) // 2, asked
