"""Cluster-wide pause (local/pausing.py): `pause_type` stops every process from claiming jobs
of a type, through every claim path (get_work, queues, rate-limited claims, the remote API),
on the process that paused at once and on the others within a second (the age of their copy
of the pause document, on the injected clock); running jobs finish; `resume_type` restarts."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import MakeJC
from jobcollection import InvalidArgument, ManualClock, Paused, RateLimit
from jobcollection.remote import RemoteJobCollection
from remote_helpers import serve_jc


async def test_a_paused_type_is_claimed_nowhere_and_running_jobs_finish(
    make_jc: MakeJC, clock: ManualClock
) -> None:
    here, there = await make_jc(), await make_jc()
    ids = [await here.create_job("t", {"i": i}).save() for i in range(4)]
    await here.create_job("other").save()
    [running] = await there.get_work("t")  # `there` read the pause document: nothing paused
    assert await here.pause_type("t") == Paused(("t",))
    assert await here.get_work("t") == []  # at once where it was paused
    [late] = await there.get_work("t")  # its copy is under a second old
    clock.advance(1)
    assert await there.get_work(["t", "other"], max_jobs=5) != []  # the other type only
    assert await there.get_work("t") == []
    assert await running.done() is True and await late.done() is True  # running jobs finish
    assert await there.paused_types() == Paused(("t",))
    assert await there.resume_type("t") == Paused()
    [job] = await there.get_work("t")
    assert job.id == ids[2]
    [last] = await here.get_work("t")  # its copy (from its pause) is a second old: read again

    assert last.id == ids[3]


async def test_pausing_every_type_and_resuming(make_jc: MakeJC, clock: ManualClock) -> None:
    jc = await make_jc()
    await jc.create_job("a").save()
    await jc.create_job("b").save()
    await jc.pause_type("a")
    assert await jc.pause_type(None) == Paused(("a",), every=True)
    assert await jc.get_work(["a", "b"]) == []
    assert await jc.resume_type("a") == Paused((), every=True)  # every type stays paused
    assert await jc.get_work(["a", "b"]) == []
    assert await jc.resume_type(None) == Paused()
    assert len(await jc.get_work(["a", "b"], max_jobs=2)) == 2


async def test_rate_limited_claims_honour_the_pause(make_jc: MakeJC, clock: ManualClock) -> None:
    jc = await make_jc()
    await jc.create_job("t").save()
    await jc.pause_type(["t", "u"])
    claimed: list[Any] = []
    queue = jc.process_jobs(
        "t", _collect(claimed), rate_limit=RateLimit(5), poll_interval=None, wakeup=False
    )
    try:
        queue.trigger()
        await queue.settle()
        assert claimed == []
        await jc.resume_type(["t", "u"])
        queue.trigger()
        await jc.wait_for([j.id for j in (await jc.find_jobs(type="t")).jobs], timeout=10)
        assert len(claimed) == 1
    finally:
        await queue.shutdown("soft", quiet=True)


def _collect(into: list[Any]) -> Any:
    async def worker(job: Any) -> None:
        into.append(job.id)

    return worker


async def test_a_remote_client_pauses_for_every_process(
    make_jc: MakeJC, clock: ManualClock
) -> None:
    jc = await make_jc()
    await jc.create_job("t").save()
    async with serve_jc(jc) as url, RemoteJobCollection(url, token="admin-token") as remote:
        assert await remote.pause_type("t") == Paused(("t",))
        assert await remote.paused_types() == Paused(("t",))
        assert await remote.get_work("t") == []
        assert await jc.get_work("t") == []
        assert await remote.resume_type(None) == Paused()
        assert len(await remote.get_work("t")) == 1


async def test_bad_types_are_refused_and_nothing_changes(make_jc: MakeJC) -> None:
    jc = await make_jc()
    for bad in ("", [], [""], 5, [None]):
        with pytest.raises(InvalidArgument, match="type"):
            await jc.pause_type(bad)
    assert await jc.paused_types() == Paused()


async def test_the_pause_lives_beside_the_jobs(make_jc: MakeJC, database: Any) -> None:
    jc = await make_jc()
    await jc.pause_type("t")
    stored = await database["queue.servers"].find_one({"_id": "pausedTypes"})
    assert stored == {"_id": "pausedTypes", "types": ["t"]}
    assert await database["queue.jobs"].count_documents({}) == 0
