"""The per-minute history (rules/history.py, local/history.py): the elected job server's pass
counts the jobs finished since the last pass into `<root>.history`, once, however the passes of
several processes interleave; the counts and percentiles read back. Passes are run explicitly
on an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import bson
import pytest

from conftest import MakeJC
from jobcollection import JobCollection, ManualClock
from jobcollection.mongo.indexes import HISTORY_INDEXES
from jobcollection.rules import history as rules

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def make_jc(make_jc: MakeJC) -> MakeJC:
    """Started JobCollections whose background loops are stopped: passes run explicitly."""

    async def make(**options: Any) -> JobCollection:
        jc = await make_jc(**options)
        await jc._core.server._stop_loop()
        return jc

    return make


async def finish(
    jc: JobCollection, clock: ManualClock, job_type: str, *, wait: float, run: float, ok: bool
) -> None:
    """Save a job, let it wait `wait` s, run it for `run` s, and complete or fail it."""
    await jc.create_job(job_type).retry(0).save()
    clock.advance(wait)
    [job] = await jc.get_work(job_type)
    clock.advance(run)
    assert await (job.done() if ok else job.fail("boom", fatal=True))


async def buckets(jc: JobCollection, span: str = "m") -> list[dict[str, Any]]:
    history = jc._core.server.history
    assert history is not None
    return await history.read(span, datetime(2000, 1, 1, tzinfo=UTC))


# --- pure rules -------------------------------------------------------------------------------


def test_a_duration_falls_in_the_bucket_of_its_upper_bound() -> None:
    assert rules.bucket_of(0) == 0
    assert rules.bucket_of(5) == 0
    assert rules.bucket_of(6) == 1
    assert rules.bucket_of(10**9) == len(rules.BOUNDS_MS)


def test_percentiles_are_interpolated_within_their_bucket() -> None:
    # 100 jobs: 50 at <= 5 ms, 45 in (50, 100], 5 in (1 s, 2.5 s]
    histogram = {0: 50, rules.bucket_of(80): 45, rules.bucket_of(2_000): 5}
    assert rules.percentile(histogram, 0.5) == pytest.approx(5.0)
    assert rules.percentile(histogram, 0.95) == pytest.approx(100.0)
    assert 1_000 < rules.percentile(histogram, 0.99) <= 2_500  # type: ignore[operator]
    assert rules.percentile({}, 0.5) is None
    assert rules.percentile({len(rules.BOUNDS_MS): 1}, 0.5) == rules.BOUNDS_MS[-1]


def test_a_finished_job_reads_its_times_from_its_log() -> None:
    def at(s: float) -> datetime:
        return T0 + timedelta(seconds=s)

    raw = {
        "type": "t",
        "status": "completed",
        "created": at(0),
        "updated": at(100),  # a later log line moved `updated`: the finish is the log's
        "log": [
            {"time": at(0), "message": "Job Submitted"},
            {"time": at(5), "message": "Job Running"},
            {"time": at(6), "message": "Job Failed with Error: x."},
            {"time": at(20), "message": "Promoted to ready"},
            {"time": at(23), "message": "Job Running"},
            {"time": at(30), "message": "Job Completed"},
            {"time": at(100), "message": "a note"},
        ],
    }
    job = rules.finished(raw)
    assert job == rules.Finished("t", "completed", at(30), 3_000.0, 7_000.0)
    assert not rules.within(job, at(30), at(100))  # counted in the range holding its finish
    assert rules.finished({**raw, "status": "running"}) is None
    bare = rules.finished({"type": "t", "status": "failed", "updated": at(9)})
    assert bare == rules.Finished("t", "failed", at(9))


def test_a_bucket_document_stays_small() -> None:
    counts = rules.Tally(10**9, 10**9)
    for number in range(len(rules.BOUNDS_MS) + 1):
        counts.wait[number] = counts.run[number] = 10**9
    key = ("m", "x" * 100, T0)
    _, update = rules.add(key, counts, T0)
    doc = {
        "_id": rules.doc_id(key),
        **update["$setOnInsert"],
        "wait": {str(n): 10**9 for n in counts.wait},
        "run": {str(n): 10**9 for n in counts.run},
        "completed": 10**9,
        "failed": 10**9,
        "applied": [T0] * rules.APPLIED_KEPT,
    }
    assert len(bson.encode(doc)) < 1_536  # the module docstring's "under 1.5 KB"


def test_the_ttl_index_keeps_the_documented_retention() -> None:
    [ttl] = [i for i in HISTORY_INDEXES if i.expire_after_seconds is not None]
    assert ttl.keys == (("start", 1),)
    assert ttl.expire_after_seconds == rules.RETENTION.total_seconds()


# --- passes -----------------------------------------------------------------------------------


async def test_a_pass_counts_finished_jobs_per_type_and_minute(
    make_jc: MakeJC, clock: ManualClock, database: Any
) -> None:
    jc = await make_jc()
    await jc.run_server_pass()  # the first pass starts the count
    await finish(jc, clock, "a", wait=2, run=3, ok=True)
    await finish(jc, clock, "a", wait=0.01, run=0.2, ok=True)
    await finish(jc, clock, "b", wait=1, run=1, ok=False)
    clock.advance(rules.LAG.total_seconds() + 1)
    await jc.run_server_pass()
    found = {(d["type"], d["span"]): d for d in await buckets(jc)}
    found |= {(d["type"], d["span"]): d for d in await buckets(jc, "h")}
    a, b = found["a", "m"], found["b", "m"]
    assert (a["completed"], a.get("failed", 0), b["completed"], b["failed"]) == (2, 0, 0, 1)
    assert a["wait"] == {str(rules.bucket_of(2_000)): 1, str(rules.bucket_of(10)): 1}
    assert a["run"] == {str(rules.bucket_of(3_000)): 1, str(rules.bucket_of(200)): 1}
    assert found["a", "h"]["completed"] == 2 and found["b", "h"]["failed"] == 1
    indexes = await database["queue.history"].index_information()
    ttl = [i for i in indexes.values() if "expireAfterSeconds" in i]
    assert ttl == [{**ttl[0], "key": [("start", 1)], "expireAfterSeconds": 8 * 86_400}]
    series = rules.series(await buckets(jc), "m", clock.now(), 60)
    points, whole = series["a"]
    assert len(points) == 60 and whole.completed == 2 and whole.wait[0] is not None


async def test_no_job_is_counted_twice_by_collections_taking_turns(
    make_jc: MakeJC, clock: ManualClock
) -> None:
    first, second = await make_jc(), await make_jc()
    await first.run_server_pass()
    for round_number in range(4):
        await finish(first, clock, "t", wait=1, run=1, ok=True)
        clock.advance(rules.LAG.total_seconds() + 1)
        leader = (first, second)[round_number % 2]
        # the other one's lease runs out, so they take turns leading
        clock.advance(11)
        for jc in (second, first) if leader is second else (first, second):
            await jc.run_server_pass()
    total = sum(d["completed"] for d in await buckets(first))
    assert total == 4


async def test_a_range_taken_but_not_marked_is_finished_once_by_the_next_pass(
    make_jc: MakeJC, clock: ManualClock
) -> None:
    jc = await make_jc()
    history = jc._core.server.history
    assert history is not None
    await history.record()
    await finish(jc, clock, "t", wait=1, run=1, ok=True)
    clock.advance(rules.LAG.total_seconds() + 1)
    store = await history._history()
    assert store is not None
    mark = await store.find_one({"_id": rules.MARK_ID})
    assert mark is not None
    begin, end = rules.next_range(mark["upto"].replace(tzinfo=UTC), clock.now())  # type: ignore[misc]
    # a pass took the range and counted it, then died before marking it counted
    await store.update_one(*rules.take(mark["upto"], begin, end))
    await history._count(store, begin, end)
    assert await history.record() == 1  # applied again: the buckets already have it
    assert await history.record() == 0
    assert sum(d["completed"] for d in await buckets(jc)) == 1


async def test_a_later_write_on_a_finished_job_does_not_count_it_again(
    make_jc: MakeJC, clock: ManualClock
) -> None:
    jc = await make_jc()
    await jc.run_server_pass()
    await jc.create_job("t").save()
    [job] = await jc.get_work("t")
    await job.done()
    clock.advance(rules.LAG.total_seconds() + 1)
    await jc.run_server_pass()
    clock.advance(30)
    await job.log("after the end")
    clock.advance(rules.LAG.total_seconds() + 1)
    await jc.run_server_pass()
    assert sum(d["completed"] for d in await buckets(jc)) == 1


async def test_the_first_pass_counts_the_last_hour_and_a_stale_mark_skips_ahead(
    make_jc: MakeJC, clock: ManualClock
) -> None:
    jc = await make_jc()
    await finish(jc, clock, "t", wait=1, run=1, ok=True)  # before the first pass
    clock.advance(rules.CATCH_UP.total_seconds())
    await finish(jc, clock, "t", wait=1, run=1, ok=True)  # an hour later
    clock.advance(rules.LAG.total_seconds() + 1)
    await jc.run_server_pass()
    assert sum(d["completed"] for d in await buckets(jc)) == 1  # the last hour's only
    clock.advance(20 * 86_400)  # a long time without a job server
    await finish(jc, clock, "t", wait=1, run=1, ok=True)
    clock.advance(rules.LAG.total_seconds() + 1)
    await jc.run_server_pass()  # counts from CATCH_UP back, not 20 days of ranges
    assert sum(d["completed"] for d in await buckets(jc)) == 2


async def twenty_jobs_counted(
    jc: JobCollection, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[Any], list[int]]:
    """Finish 20 jobs in one minute (8 in one millisecond, as a bulk write stamps them), count
    them with a pass; the buckets' figures, and how many jobs each read of the pass returned."""
    await jc.run_server_pass()  # the first pass starts the count
    for n in range(12):
        await finish(jc, clock, f"t{n % 2}", wait=n * 0.3, run=n * 0.7, ok=n % 3 != 0)
    await jc.save_jobs([jc.create_job("t0").retry(0) for _ in range(8)])
    clock.advance(2)
    claimed = await jc.get_work("t0", max_jobs=8)
    clock.advance(0.5)
    for job in claimed:
        assert await job.done()  # all at one instant on the manual clock
    history = jc._core.server.history
    assert history is not None
    read = history._jobs.find
    returned: list[int] = []

    async def counted_find(*args: Any, **options: Any) -> Any:
        found = await read(*args, **options)
        returned.append(len(found))
        return found

    monkeypatch.setattr(history._jobs, "find", counted_find)
    clock.advance(rules.LAG.total_seconds() + 1)
    assert await history.record() == 20
    docs = [*await buckets(jc), *await buckets(jc, "h")]
    figures = sorted(
        (
            d["span"],
            d["type"],
            d["start"],
            d["completed"],
            d.get("failed", 0),
            d.get("wait"),
            d.get("run"),
        )
        for d in docs
    )
    return figures, returned


async def test_a_minute_of_more_jobs_than_a_read_is_read_in_batches_with_the_same_figures(
    make_jc: MakeJC, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With reads of 3 jobs, a minute of 20 is counted as one read counts it: each job once,
    the same histograms, no read returning more than 3 jobs."""
    clock.set(T0)
    whole, reads = await twenty_jobs_counted(await make_jc(root="whole"), clock, monkeypatch)
    assert len(reads) == 1
    monkeypatch.setattr(rules, "BATCH", 3)
    clock.set(T0)
    batched, reads = await twenty_jobs_counted(await make_jc(root="batched"), clock, monkeypatch)
    assert max(reads) <= 3 and len(reads) > 20 // 3
    assert batched == whole
    assert sum(f[3] + f[4] for f in whole if f[0] == "m") == 20
