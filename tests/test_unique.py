"""Unique jobs and jobs for a user (`job.unique`, `job.for_user`).

A unique job holds its key (`{type, user?, key?}` under `_private.jobcollectionUnique`) while it
is pending, under a partial unique index, so no two pending jobs ever hold the same key, from
however many processes they are saved; a claim or a cancel lets go of it. A sharded collection
cannot have the index: there saving a unique job raises DatabaseError.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from conftest import SHARDED, MakeJC, WrapJC
from faults import FaultyCollection
from helpers import claim_one, stored
from jobcollection import (
    DatabaseError,
    DuplicateJob,
    InvalidArgument,
    InvalidArgumentType,
    JobCollection,
)
from jobcollection.model.document import Unique

pytestmark = pytest.mark.both_sides

needs_index = pytest.mark.skipif(SHARDED, reason="a sharded collection has no unique jobs")


async def pending(jc: JobCollection, job_type: str = "t") -> list[Any]:
    docs = await jc.collection.find(
        {"type": job_type, "status": {"$in": ["waiting", "paused", "ready"]}}, {"_id": 1}
    ).to_list(None)
    return [d["_id"] for d in docs]


@needs_index
async def test_a_unique_job_is_stored_with_its_key_and_user(jc: JobCollection) -> None:
    job_id = await jc.create_job("t").for_user(7).unique("nightly").save()
    raw = await stored(jc, job_id)
    assert raw["_private"]["jobcollectionUnique"] == {"type": "t", "user": 7, "key": "nightly"}
    assert raw["_private"]["jobcollectionUser"] == 7
    loaded = await jc.get_job(job_id)
    assert loaded is not None
    assert loaded.user_id == 7 and loaded.doc.unique == Unique(key="nightly")
    assert loaded.doc.private is None


@needs_index
async def test_replace_cancels_the_pending_job_holding_the_key(jc: JobCollection) -> None:
    first = await jc.create_job("t", {"n": 1}).unique().save()
    second = await jc.create_job("t", {"n": 2}).unique().save()
    assert second != first
    assert await pending(jc) == [second]
    assert (await stored(jc, first))["status"] == "cancelled"
    assert "jobcollectionUnique" not in (await stored(jc, first)).get("_private", {})


@needs_index
async def test_ignore_keeps_the_pending_job(jc: JobCollection) -> None:
    first = await jc.create_job("t", {"n": 1}).unique(on_conflict="ignore").save()
    again = await jc.create_job("t", {"n": 2}).unique(on_conflict="ignore").save()
    assert again == first
    assert await jc.collection.count_documents({}) == 1


@needs_index
async def test_error_raises_and_stores_nothing(jc: JobCollection) -> None:
    first = await jc.create_job("t").unique("k", on_conflict="error").save()
    with pytest.raises(DuplicateJob) as raised:
        await jc.create_job("t").unique("k", on_conflict="error").save()
    assert raised.value.holder == first
    assert raised.value.key == {"type": "t", "key": "k"}
    assert await jc.collection.count_documents({}) == 1


@needs_index
async def test_a_started_job_holds_no_key_and_is_never_replaced(jc: JobCollection) -> None:
    first = await jc.create_job("t").unique().save()
    running = await claim_one(jc)
    assert running.id == first
    assert "jobcollectionUnique" not in (await stored(jc, first)).get("_private", {})
    second = await jc.create_job("t").unique().save()
    assert await pending(jc) == [second]
    assert (await stored(jc, first))["status"] == "running"
    assert await running.done() is True


@needs_index
async def test_a_cancelled_job_lets_go_of_its_key(jc: JobCollection) -> None:
    first = jc.create_job("t").unique(on_conflict="error")
    await first.save()
    assert await first.cancel()
    assert await jc.create_job("t").unique(on_conflict="error").save()


@needs_index
async def test_keys_are_per_type_user_and_key(jc: JobCollection) -> None:
    ids = [
        await jc.create_job("t").unique(on_conflict="error").save(),
        await jc.create_job("u").unique(on_conflict="error").save(),
        await jc.create_job("t").for_user(1).unique(on_conflict="error").save(),
        await jc.create_job("t").for_user("1").unique(on_conflict="error").save(),
        await jc.create_job("t").unique("a", on_conflict="error").save(),
        await jc.create_job("t").for_user(1).unique("a", on_conflict="error").save(),
        await jc.create_job("t").save(),  # not unique: never in the way
    ]
    assert len(set(ids)) == 7


@needs_index
async def test_repeats_and_reruns_hold_no_key(jc: JobCollection) -> None:
    first = await jc.create_job("t").repeat(1, wait=0).unique().save()
    worker = await claim_one(jc)
    repeat_id = await worker.done(repeat_id=True)
    assert repeat_id and repeat_id is not True
    assert "jobcollectionUnique" not in (await stored(jc, repeat_id)).get("_private", {})
    # so a new unique save does not replace it
    fresh = await jc.create_job("t").unique(on_conflict="error").save()
    assert set(await pending(jc)) == {repeat_id, fresh}
    assert first != fresh


@needs_index
async def test_a_replaced_jobs_dependents_are_cancelled(jc: JobCollection) -> None:
    first = jc.create_job("t").unique()
    await first.save()
    dependent = await jc.create_job("after").depends([first]).save()
    await jc.create_job("t").unique().save()
    assert (await stored(jc, dependent))["status"] == "cancelled"


@needs_index
async def test_save_jobs_saves_unique_jobs_one_by_one(jc: JobCollection) -> None:
    ids = await jc.save_jobs([jc.create_job("t", {"n": n}).unique() for n in range(3)])
    assert await pending(jc) == [ids[-1]]
    assert [(await stored(jc, i))["status"] for i in ids[:2]] == ["cancelled", "cancelled"]


@needs_index
@pytest.mark.parametrize("on_conflict", ["replace", "ignore", "error"])
async def test_concurrent_saves_from_many_processes_leave_one_pending_job(
    make_racy_jc: Any, on_conflict: str
) -> None:
    # 100 saves of one key from 4 "processes" whose database calls interleave
    collections = [await make_racy_jc() for _ in range(4)]

    async def save(n: int) -> Any:
        jc = collections[n % 4]
        job = jc.create_job("t", {"n": n}).for_user(0).unique(on_conflict=on_conflict)
        try:
            return await job.save()
        except DuplicateJob as exc:
            return ("duplicate", exc.holder)

    outcomes = await asyncio.gather(*(save(n) for n in range(100)))
    jc = collections[0]
    [holder] = await pending(jc)
    if on_conflict == "replace":
        # each stored once; a save that found a later one holding the key answers None
        assert await jc.collection.count_documents({}) == 100
        assert await jc.collection.count_documents({"status": "cancelled"}) == 99
        saved = [o for o in outcomes if o is not None]
        assert holder in saved and len(set(saved)) == len(saved)
    else:
        assert await jc.collection.count_documents({}) == 1
        ids = {o[1] if isinstance(o, tuple) else o for o in outcomes}
        assert ids == {holder}


@needs_index
async def test_a_save_repeated_after_a_lost_reply_is_stored_once(make_wrapped_jc: WrapJC) -> None:
    jc = await make_wrapped_jc(FaultyCollection)
    job = jc.create_job("t").unique(on_conflict="error")
    jc.collection.faults.fail_after("insert_one")
    with pytest.raises(DatabaseError):
        await job.save()
    job_id = await job.save()  # its own key: found, not a duplicate
    assert job_id is not None
    assert await jc.collection.count_documents({}) == 1
    assert (await stored(jc, job_id))["status"] == "ready"


@pytest.mark.skipif(not SHARDED, reason="only a sharded collection refuses the index")
async def test_a_sharded_collection_refuses_unique_jobs(jc: JobCollection) -> None:
    with pytest.raises(DatabaseError, match="unique index"):
        await jc.create_job("t").unique().save()
    assert await jc.create_job("t").for_user(3).save()  # users need no index


@pytest.mark.parametrize(
    ("build", "error", "name"),
    [
        (lambda j: j.for_user(True), InvalidArgumentType, "user_id"),
        (lambda j: j.for_user(1.5), InvalidArgumentType, "user_id"),
        (lambda j: j.for_user(""), InvalidArgument, "user_id"),
        (lambda j: j.for_user(2**63), InvalidArgument, "user_id"),
        (lambda j: j.unique(""), InvalidArgument, "key"),
        (lambda j: j.unique(5), InvalidArgumentType, "key"),
        (lambda j: j.unique("x" * 1025), InvalidArgument, "key"),
        (lambda j: j.unique(on_conflict="merge"), InvalidArgument, "on_conflict"),
    ],
)
def test_bad_users_and_keys_are_refused(
    jc: JobCollection, build: Any, error: type[Exception], name: str
) -> None:
    job = jc.create_job("t")
    before = job.doc.to_mongo()
    with pytest.raises(error, match=name):
        build(job)
    assert job.doc.to_mongo() == before


async def test_jobs_for_users_without_uniqueness(make_jc: MakeJC) -> None:
    jc = await make_jc()
    job_id = await jc.create_job("t").for_user("ada").save()
    [claimed] = await jc.get_work("t")
    assert claimed.id == job_id and claimed.user_id == "ada"
