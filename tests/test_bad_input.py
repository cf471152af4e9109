"""Bad input found by an adversarial review: each is refused with InvalidArgument naming the
field and the problem, before anything is written, and the stored data stays as it was.

Duplicate ids in one save, a job that depends on itself, an unbounded `resolved`, restart
counts past FOREVER, and save_jobs writing the valid part of a list before refusing the rest.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from bson import Code, ObjectId

from helpers import claim_one, stored
from jobcollection import (
    FOREVER,
    InvalidArgument,
    InvalidArgumentType,
    InvalidDocument,
    Job,
    JobCollection,
)

Doc = dict[str, Any]


async def snapshot(jc: JobCollection) -> list[Doc]:
    """Every stored document, in _id order."""
    return [dict(d) for d in await jc.collection.find({}).sort([("_id", 1)]).to_list(None)]


def wire(jc: JobCollection, job_type: str = "t", **fields: Any) -> Doc:
    """A new job's document as jobSave takes it, with some fields replaced."""
    return {**jc.create_job(job_type).doc.to_mongo(), **fields}


async def saved_paused(jc: JobCollection, depends: list[Job] | None = None) -> Job:
    """A job saved paused (so it can be resaved), depending on `depends`."""
    job = jc.create_job("t").depends(depends)
    await job.pause()
    assert await job.save() is not None
    return job


async def completed(jc: JobCollection, job_type: str = "a") -> Job:
    job = jc.create_job(job_type)
    await job.save()
    await (await claim_one(jc, job_type)).done()
    return job


async def refused(jc: JobCollection, match: str, action: Any) -> None:
    """`action()` raises InvalidArgument matching `match` and changes nothing stored."""
    before = await snapshot(jc)
    with pytest.raises(InvalidArgument, match=match):
        await action()
    assert await snapshot(jc) == before


# --- 14. one save, one job per id ----------------------------------------------------------


async def test_save_many_refuses_a_job_id_given_twice(jc: JobCollection) -> None:
    x = ObjectId()
    await refused(
        jc,
        r"^jobIds\[1\]: duplicates jobIds\[0\]$",
        lambda: jc.call("jobSaveMany", [wire(jc), wire(jc)], {"jobIds": [x, x]}),
    )
    assert await jc.collection.count_documents({}) == 0


async def test_save_many_refuses_resaving_one_job_twice(jc: JobCollection) -> None:
    job = await saved_paused(jc)
    doc = job.doc.to_mongo()
    await refused(
        jc,
        r"^docs\[2\]\._id: duplicates docs\[0\]\._id$",
        lambda: jc.call("jobSaveMany", [doc, wire(jc), doc]),
    )
    assert (await stored(jc, job.id))["status"] == "paused"


async def test_save_many_refuses_a_new_id_that_a_resaved_job_of_the_batch_has(
    jc: JobCollection,
) -> None:
    job = await saved_paused(jc)
    await refused(
        jc,
        r"^docs\[1\]\._id: duplicates jobIds\[0\]$",
        lambda: jc.call("jobSaveMany", [wire(jc), job.doc.to_mongo()], {"jobIds": [job.id, None]}),
    )


async def test_save_jobs_refuses_the_same_job_twice(jc: JobCollection) -> None:
    a, b = jc.create_job("t"), jc.create_job("t")
    await refused(jc, r"^jobs\[2\]: duplicates jobs\[0\]$", lambda: jc.save_jobs([a, b, a]))
    assert await jc.collection.count_documents({}) == 0
    assert (a.id, b.id) == (None, None)


# --- 16. no job depends on itself ---------------------------------------------------------


async def test_save_refuses_a_new_job_depending_on_its_own_id(jc: JobCollection) -> None:
    x = ObjectId()
    await refused(
        jc,
        r"^doc\.depends: a job cannot depend on itself$",
        lambda: jc.call("jobSave", wire(jc, depends=[x]), {"jobId": x}),
    )
    assert await jc.collection.count_documents({}) == 0


async def test_resave_refuses_a_paused_job_depending_on_itself(jc: JobCollection) -> None:
    job = await saved_paused(jc)
    job.doc.depends = [job.id]
    await refused(jc, r"^doc\.depends: a job cannot depend on itself$", job.save)
    assert (await stored(jc, job.id))["depends"] == []


async def test_save_many_refuses_a_job_depending_on_itself(jc: JobCollection) -> None:
    job = await saved_paused(jc)
    x = ObjectId()
    mine = job.doc.to_mongo()
    await refused(
        jc,
        r"^docs\[1\]\.depends: a job cannot depend on itself$",
        lambda: jc.call("jobSaveMany", [wire(jc), wire(jc, depends=[x])], {"jobIds": [None, x]}),
    )
    await refused(
        jc,
        r"^docs\[0\]\.depends: a job cannot depend on itself$",
        lambda: jc.call("jobSaveMany", [{**mine, "depends": [job.id]}]),
    )


async def test_depends_builder_refuses_a_saved_job_depending_on_itself(
    jc: JobCollection,
) -> None:
    other = await completed(jc)
    job = await saved_paused(jc, [other])
    same = await jc.get_job(job.id)
    assert same is not None
    for target in ([job], [other, same]):
        with pytest.raises(InvalidArgument, match=r"^jobs\[\d\]: a job cannot depend on itself$"):
            job.depends(target)
        assert job.doc.depends == [other.id]  # unchanged


# --- 17. `resolved` is bounded and never holds an id twice ---------------------------------


async def test_save_refuses_more_resolved_ids_than_max_depends(jc: JobCollection) -> None:
    assert jc.limits.max_depends == 1_000
    ids = [ObjectId() for _ in range(1_001)]
    await refused(
        jc,
        r"^doc\.resolved: names more than 1000 antecedents$",
        lambda: jc.call("jobSave", wire(jc, resolved=ids)),
    )
    await refused(
        jc,
        r"^docs\[1\]\.resolved: ",
        lambda: jc.call("jobSaveMany", [wire(jc), wire(jc, resolved=ids)]),
    )
    assert await jc.collection.count_documents({}) == 0


async def test_save_refuses_a_resolved_id_that_is_not_an_id(jc: JobCollection) -> None:
    job = jc.create_job("t")
    job.doc.resolved.append({"$ne": None})  # in place, past the model's validation
    await refused(jc, r"^doc\.resolved\[0\]: must be an ObjectId or a string", job.save)
    assert await jc.collection.count_documents({}) == 0


async def test_resaving_a_paused_job_keeps_each_resolved_id_once(jc: JobCollection) -> None:
    a = await completed(jc)
    job = await saved_paused(jc, [a])
    for _ in range(5):
        assert await job.save() == job.id  # the local document still depends on `a`
        assert await job.pause()
    doc = await stored(jc, job.id)
    assert (doc["depends"], doc["resolved"]) == ([], [a.id])


async def test_resolving_an_id_a_save_already_put_in_resolved_adds_it_once(
    jc: JobCollection,
) -> None:
    a = jc.create_job("a")
    await a.save()
    job = jc.create_job("t").depends([a])
    job.doc.resolved = [a.id]
    await job.save()
    await (await claim_one(jc, "a")).done()
    doc = await stored(jc, job.id)
    assert (doc["status"], doc["depends"], doc["resolved"]) == ("ready", [], [a.id])


# --- 18. restart never counts past FOREVER -------------------------------------------------


async def test_restarting_a_job_that_retries_forever_keeps_forever(jc: JobCollection) -> None:
    job = jc.create_job("t").retry(FOREVER)
    await job.save()
    await job.cancel()
    assert (await stored(jc, job.id))["retries"] == FOREVER
    for more in (FOREVER, 5):
        assert await job.restart(retries=more)
        assert await job.cancel()
        assert (await stored(jc, job.id))["retries"] == FOREVER


@pytest.mark.parametrize(
    ("before", "more", "after"),
    [
        (FOREVER, FOREVER, FOREVER),
        (FOREVER - 1, 5, FOREVER),
        (FOREVER - 5, 5, FOREVER),
        (FOREVER - 6, 5, FOREVER - 1),
        (FOREVER + 3, 0, FOREVER),  # written by another client: clamped, never grown
        (0, FOREVER, FOREVER),
        (0, FOREVER - 1, FOREVER),
        (0, 5, 6),
        (3, 2, 5),
        (3, 0, 3),
    ],
)
async def test_restart_stores_at_most_forever_retries(
    jc: JobCollection, before: int, more: int, after: int
) -> None:
    job = jc.create_job("t")
    await job.save()
    await job.cancel()
    await jc.collection.update_one({"_id": job.id}, {"$set": {"retries": before}})
    assert await jc.restart_jobs([job.id], retries=more)
    doc = await stored(jc, job.id)
    assert (doc["status"], doc["retries"]) == ("ready", after)


# --- 19. save_jobs checks every job before writing any ---------------------------------------


def spoil_nan(jc: JobCollection, job: Job) -> None:
    job.doc.data["x"] = math.nan  # in place, past the model's validation


def spoil_status(jc: JobCollection, job: Job) -> None:
    job.doc.status = "completed"


def spoil_size(jc: JobCollection, job: Job) -> None:
    job.doc.data["x"] = "y" * jc.limits.max_data_bytes


def spoil_resolved(jc: JobCollection, job: Job) -> None:
    job.doc.resolved = [ObjectId() for _ in range(jc.limits.max_depends + 1)]


@pytest.mark.parametrize(
    ("spoil", "problem"),
    [
        (spoil_nan, r"\.data: .*non-finite"),
        (spoil_status, r"\.status: a saved job must be waiting or paused"),
        (spoil_size, r"\.data: is \d+ bytes"),
        (spoil_resolved, r"\.resolved: names more than"),
    ],
)
async def test_save_jobs_refuses_a_list_with_an_invalid_job_anywhere(
    jc: JobCollection, spoil: Any, problem: str
) -> None:
    jobs = [jc.create_job("t", {"i": i}) for i in range(5)]
    spoil(jc, jobs[4])
    await refused(jc, rf"^jobs\[4\]{problem}", lambda: jc.save_jobs(jobs))
    assert await jc.collection.count_documents({}) == 0
    assert [job.id for job in jobs] == [None] * 5
    del jobs[4]
    assert len(await jc.save_jobs(jobs)) == 4
    assert await jc.collection.count_documents({}) == 4


async def test_save_jobs_of_10001_jobs_with_the_last_invalid_stores_none(
    jc: JobCollection,
) -> None:
    jobs = [jc.create_job("t") for _ in range(10_001)]
    spoil_status(jc, jobs[-1])
    await refused(jc, r"^jobs\[10000\]\.status: ", lambda: jc.save_jobs(jobs))
    assert await jc.collection.count_documents({}) == 0


@pytest.mark.parametrize("value", [Code("x"), "a\ud800"], ids=["bson Code", "a lone surrogate"])
async def test_ids_types_and_users_that_are_not_text_are_refused_by_name(
    jc: JobCollection, value: Any
) -> None:
    """bson's Code is a str, and JSON's escapes can spell a lone surrogate: neither is text
    MongoDB stores as a string, so neither passes for an id, a type or a user id (before,
    Code went into queries as code, and a surrogate came back as a DatabaseError)."""
    job_id = await jc.create_job("t").save()
    before = await snapshot(jc)
    with pytest.raises(InvalidArgumentType) as raised:
        await jc.get_job(value)
    assert raised.value.argument == "id"
    with pytest.raises(InvalidArgumentType) as raised:
        await jc.get_work([value])
    assert raised.value.argument == "type[0]"
    with pytest.raises(InvalidDocument, match=r"user_id: .* a non-empty text string"):
        await jc.call("jobSave", wire(jc, _private={"jobcollectionUser": value}))
    with pytest.raises(InvalidArgumentType) as raised:
        await jc.call("jobRemove", [job_id, value])
    assert raised.value.argument == "ids[1]"
    assert await snapshot(jc) == before
