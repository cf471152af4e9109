"""Retention (`job.remove_after`): MongoDB deletes a finished job at its removal date.

The date lives in `_private.jobcollectionExpireAt`, under a TTL index (expireAfterSeconds 0),
and is set by the write that gives the job a final status its retention covers, or, when that
write leaves follow-ups pending (a repeat, dependents), by the write that clears them. The
in-memory backend has no TTL monitor: these tests check the index and each date.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from helpers import claim_one, stored, utc
from jobcollection import InvalidArgument, InvalidArgumentType, JobCollection, ManualClock
from jobcollection.mongo.indexes import INDEXES

pytestmark = pytest.mark.both_sides

EXPIRE = "jobcollectionExpireAt"


def removal(doc: dict[str, Any]) -> Any:
    value = doc.get("_private", {}).get(EXPIRE)
    return None if value is None else utc(value)


def test_the_ttl_index() -> None:
    [ttl] = [ix for ix in INDEXES if ix.options().get("expireAfterSeconds") is not None]
    assert ttl.keys == (("_private.jobcollectionExpireAt", 1),)
    assert ttl.options() == {
        "expireAfterSeconds": 0,
        "partialFilterExpression": {"_private.jobcollectionExpireAt": {"$exists": True}},
    }


async def test_the_index_is_created(jc: JobCollection) -> None:
    info = await jc.collection.index_information()
    [ttl] = [i for i in info.values() if i["key"] == [("_private.jobcollectionExpireAt", 1)]]
    assert ttl["expireAfterSeconds"] == 0


async def test_a_completed_job_gets_its_removal_date_as_it_completes(
    jc: JobCollection, clock: ManualClock
) -> None:
    job_id = await jc.create_job("t").remove_after(3600).save()
    raw = await stored(jc, job_id)
    assert raw["_private"]["jobcollectionRemoveAfter"] == {
        "delay": 3_600_000,
        "statuses": ["completed"],
    }
    assert removal(raw) is None
    worker = await claim_one(jc)
    assert worker.doc.remove_after is not None  # the claimed copy knows: one write suffices
    clock.advance(5)
    assert await worker.done() is True
    assert removal(await stored(jc, job_id)) == clock.now() + timedelta(hours=1)


async def test_a_status_not_covered_gets_no_date(jc: JobCollection) -> None:
    job_id = await jc.create_job("t").remove_after(60).save()
    assert await (await claim_one(jc)).fail("broken", fatal=True)
    assert removal(await stored(jc, job_id)) is None


async def test_failures_and_cancels_when_covered(jc: JobCollection, clock: ManualClock) -> None:
    statuses = ["failed", "cancelled"]
    failing = await jc.create_job("f").retry(1, wait=0).remove_after(10, statuses).save()
    worker = await claim_one(jc, "f")
    assert await worker.fail("once")  # retried: not final, no date
    assert removal(await stored(jc, failing)) is None
    await jc.ready_jobs()
    assert await (await claim_one(jc, "f")).fail("twice")
    assert removal(await stored(jc, failing)) == clock.now() + timedelta(seconds=10)

    kept = await jc.create_job("c").remove_after(20, statuses).save()
    other = await jc.create_job("c").remove_after(30, statuses).save()
    plain = await jc.create_job("c").save()
    assert await jc.cancel_jobs([kept, other, plain])
    assert removal(await stored(jc, kept)) == clock.now() + timedelta(seconds=20)
    assert removal(await stored(jc, other)) == clock.now() + timedelta(seconds=30)
    assert removal(await stored(jc, plain)) is None
    assert {(await stored(jc, i))["status"] for i in (kept, other, plain)} == {"cancelled"}


async def test_with_follow_ups_the_date_comes_once_they_are_done(
    jc: JobCollection, clock: ManualClock
) -> None:
    first = jc.create_job("a").remove_after(0)
    await first.save()
    dependent = await jc.create_job("b").depends([first]).save()
    worker = await claim_one(jc, "a")
    assert await worker.done() is True
    raw = await stored(jc, first.id)
    assert "jobcollectionFollowUps" not in raw["_private"]  # its dependent was seen to
    assert removal(raw) == clock.now()
    assert (await stored(jc, dependent))["status"] == "ready"


async def test_a_restart_clears_the_date_and_a_rerun_keeps_the_setting(
    jc: JobCollection, clock: ManualClock
) -> None:
    job = jc.create_job("t").retry(0, wait=0).remove_after(60, ["completed", "failed"])
    job_id = await job.save()
    assert await (await claim_one(jc)).fail("broken", fatal=True)
    assert removal(await stored(jc, job_id)) is not None
    assert await jc.restart_jobs([job_id])
    assert removal(await stored(jc, job_id)) is None
    await jc.ready_jobs()
    worker = await claim_one(jc)
    assert await worker.done() is True
    rerun_id = await worker.rerun()
    raw = await stored(jc, rerun_id)
    assert removal(raw) is None
    assert raw["_private"]["jobcollectionRemoveAfter"]["delay"] == 60_000


@pytest.mark.parametrize(
    ("args", "error", "name"),
    [
        ((-1,), InvalidArgument, "delay"),
        (("1h",), InvalidArgumentType, "delay"),
        ((60, "completed"), InvalidArgumentType, "statuses"),
        ((60, []), InvalidArgument, "statuses"),
        ((60, ["running"]), InvalidArgument, r"statuses\[0\]"),
    ],
)
def test_bad_retention_is_refused(
    jc: JobCollection, args: tuple[Any, ...], error: type[Exception], name: str
) -> None:
    job = jc.create_job("t")
    before = job.doc.to_mongo()
    with pytest.raises(error, match=name):
        job.remove_after(*args)
    assert job.doc.to_mongo() == before
