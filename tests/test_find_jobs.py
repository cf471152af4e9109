"""find_jobs and stats: filters, keyset pages newest first, cursors, collections holding both
kinds of ids, and bad arguments; on a local collection and through the remote API (jobFind,
jobStats)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from bson import ObjectId

from conftest import START
from jobcollection import InvalidArgument, InvalidArgumentType, JobCollection, ManualClock

pytestmark = pytest.mark.both_sides


async def pages(jc: JobCollection, **query: Any) -> list[list[Any]]:
    """Every page's ids, following the cursors."""
    out: list[list[Any]] = []
    after = None
    while True:
        page = await jc.find_jobs(**query, after=after)
        out.append([job.id for job in page.jobs])
        if page.next is None:
            return out
        after = page.next


async def test_pages_go_newest_first_and_cover_every_job_once(jc: JobCollection) -> None:
    ids = [await jc.create_job("t", {"n": n}).save() for n in range(7)]
    found = await pages(jc, limit=3)
    assert found == [ids[6:3:-1], ids[3:0:-1], ids[:1]]
    single = await jc.find_jobs(limit=7)
    assert single.next is None and [j.id for j in single.jobs] == ids[::-1]


async def test_filters_combine(jc: JobCollection, clock: ManualClock) -> None:
    old = await jc.create_job("mail", {"customer": {"id": 7}, "kind": "a"}).for_user("u").save()
    clock.advance(60)
    other_type = await jc.create_job("sms", {"customer": {"id": 7}}).save()
    paused = jc.create_job("mail", {"customer": {"id": 8}})
    await paused.save()
    await paused.pause()
    newest = await jc.create_job("mail", {"customer": {"id": 7}, "kind": "b"}).save()

    async def ids(**query: Any) -> list[Any]:
        return [j.id for j in (await jc.find_jobs(**query)).jobs]

    assert await ids(type="mail") == [newest, paused.id, old]
    assert await ids(type=["mail", "sms"], status="ready") == [newest, other_type, old]
    assert await ids(status=["paused", "completed"]) == [paused.id]
    assert await ids(user_id="u") == [old]
    assert await ids(data={"customer.id": 7}) == [newest, other_type, old]
    assert await ids(data={"customer.id": 7, "kind": "b"}) == [newest]
    assert await ids(created_before=START + timedelta(seconds=30)) == [old]
    assert await ids(data={"customer": {"id": 7}}) == [newest, other_type, old]


async def test_operators_in_data_values_are_matched_literally(jc: JobCollection) -> None:
    await jc.create_job("t", {"x": 1}).save()
    with pytest.raises(InvalidArgument, match="data"):
        await jc.find_jobs(data={"x": {"$gt": 0}})
    assert (await jc.find_jobs(data={"x": 2})).jobs == []


async def test_string_and_objectid_keyed_jobs_are_both_listed(jc: JobCollection) -> None:
    strings = [
        await jc.call("jobSave", jc.create_job("t").doc.to_mongo(), {"jobId": f"meteorId{n:09d}"})
        for n in range(3)
    ]
    oids = [await jc.create_job("t").save() for _ in range(3)]
    found = await pages(jc, limit=2)
    flat = [i for page in found for i in page]
    assert flat == [*oids[::-1], *sorted(strings, reverse=True)]
    assert all(len(page) == 2 for page in found)


async def test_oldest_first_pages_every_job_once_strings_then_objectids(
    jc: JobCollection,
) -> None:
    strings = [
        await jc.call("jobSave", jc.create_job("t").doc.to_mongo(), {"jobId": f"meteorId{n:09d}"})
        for n in range(3)
    ]
    oids = [await jc.create_job("t").save() for _ in range(3)]
    for limit in (1, 2, 4, 6):
        found = await pages(jc, limit=limit, oldest=True)
        assert [i for page in found for i in page] == [*sorted(strings), *oids], limit
    assert [j.id for j in (await jc.find_jobs(type="t", oldest=True, limit=2)).jobs] == sorted(
        strings
    )[:2]
    with pytest.raises(InvalidArgumentType):
        await jc.find_jobs(oldest="yes")  # type: ignore[arg-type]


async def test_bad_arguments_are_refused_by_name(jc: JobCollection) -> None:
    for kwargs, name in (
        ({"status": "nope"}, "status[0]"),
        ({"status": []}, "status"),
        ({"type": ""}, "type[0]"),
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"after": "x"}, "after"),
        ({"after": "o" + "z" * 24}, "after"),
        ({"data": {"$where": 1}}, "data['$where']"),
        ({"data": {"a..b": 1}}, "data['a..b']"),
        ({"data": {"a.$where": 1}}, "data['a.$where']"),
        ({"data": {"a.b\0": 1}}, "data['a.b\\x00']"),
    ):
        with pytest.raises(InvalidArgument) as raised:
            await jc.find_jobs(**kwargs)
        assert raised.value.argument == name, kwargs
    with pytest.raises(InvalidArgumentType):
        await jc.find_jobs(created_before="yesterday")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentType):
        await jc.find_jobs(data=[("a", 1)])  # type: ignore[arg-type]
    assert isinstance((await jc.find_jobs(after=f"o{ObjectId()}")).jobs, list)


async def test_stats_count_each_type_and_status(jc: JobCollection, clock: ManualClock) -> None:
    await jc.create_job("mail").save()
    clock.advance(60)
    await jc.create_job("mail").save()
    paused = jc.create_job("sms")
    await paused.save()
    await paused.pause()
    stats = await jc.stats()
    assert stats.counts == {("mail", "ready"): 2, ("sms", "paused"): 1}
    assert stats.oldest_ready == {"mail": START}
    assert stats.at == START + timedelta(seconds=60)
    assert stats.oldest_ready_age("mail") == 60.0 and stats.oldest_ready_age("sms") == 0.0


async def test_a_page_holds_jobs_with_their_settings(jc: JobCollection) -> None:
    """The jobs of a page are whole: their settings (retention, a user) come with them."""
    saved = await jc.create_job("t", {"n": 1}).for_user("u").remove_after(60).save()
    [job] = (await jc.find_jobs(user_id="u")).jobs
    assert (job.id, job.doc.data, job.user_id) == (saved, {"n": 1}, "u")
    assert job.doc.remove_after is not None and job.doc.remove_after.delay_ms == 60_000
