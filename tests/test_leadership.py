"""The elected job server (local/leadership.py): of the JobCollections whose job server runs on
one collection (as separate processes are), one runs the passes at a time, holding a lease
document in `<root>.servers`; the others stand by and take over when it stops or its lease
runs out. Passes are triggered explicitly (`run_server_pass`) on an injected clock."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import MakeJC
from helpers import stored
from jobcollection import InvalidArgument, JobCollection, ManualClock

LEASE = 10.0  # seconds: the default


@pytest.fixture
def make_jc(make_jc: MakeJC) -> MakeJC:
    """Started JobCollections whose background loops are stopped (it would take the lease
    at start, racing the test): the tests run every pass, and every hold, explicitly."""

    async def make(**options: Any) -> JobCollection:
        jc = await make_jc(**options)
        await jc._core.server._stop_loop()
        return jc

    return make  # type: ignore[return-value]


async def test_one_collection_runs_the_passes_and_the_others_stand_by(
    make_jc: MakeJC, clock: ManualClock
) -> None:
    first, second, third = [await make_jc() for _ in range(3)]
    job_id = await first.create_job("t").delay(5).save()
    clock.advance(5)
    passes = [await jc.run_server_pass() for jc in (first, second, third)]
    assert [p.leading for p in passes] == [True, False, False]
    assert passes[0].promoted and not passes[1].promoted and not passes[2].promoted
    assert (await stored(first, job_id))["status"] == "ready"
    for jc in (first, second, third):  # every one sees the same leader
        leader = await jc.job_server_leader()
        assert leader is not None and leader.epoch == 1
        assert leader.this_process is (jc is first)
    assert [(await jc.run_server_pass()).leading for jc in (second, first)] == [False, True]


async def test_a_dead_leader_is_replaced_once_its_lease_runs_out(
    make_jc: MakeJC, clock: ManualClock
) -> None:
    dead, standby = await make_jc(), await make_jc()
    assert (await dead.run_server_pass()).leading  # then it renews nothing: it died
    clock.advance(LEASE - 1)
    assert not (await standby.run_server_pass()).leading
    clock.advance(1)
    assert (await standby.run_server_pass()).leading
    leader = await standby.job_server_leader()
    assert leader is not None and leader.this_process and leader.epoch == 2


async def test_a_leader_that_lost_its_lease_changes_nothing(
    make_jc: MakeJC, clock: ManualClock
) -> None:
    stale, standby = await make_jc(), await make_jc()
    assert (await stale.run_server_pass()).leading
    job_id = await stale.create_job("t").retry(1, wait=0).save()
    [job] = await standby.get_work("t", work_timeout=1)
    clock.advance(LEASE)  # the leader was paused past its lease; the other took over
    assert (await standby.job_server_leader()) is None
    taken = await standby.run_server_pass()
    assert taken.leading and taken.expired == 1
    clock.advance(1)
    await stale.create_job("t").save()
    late = await stale.run_server_pass()  # its renewal names an epoch it no longer holds
    assert not late.leading and late.expired == 0 and not late.promoted
    assert len((await stored(stale, job_id))["failures"]) == 1
    leader = await standby.job_server_leader()
    assert leader is not None and leader.this_process and job.id == job_id


async def test_a_leader_that_shuts_down_hands_over_at_once(
    make_jc: MakeJC, clock: ManualClock
) -> None:
    leaving, staying = await make_jc(), await make_jc()
    assert (await leaving.run_server_pass()).leading
    await leaving.shutdown_job_server(0)
    assert await staying.job_server_leader() is None  # released, not left to expire
    assert (await staying.run_server_pass()).leading
    await leaving.start_job_server()
    assert not (await leaving.run_server_pass()).leading


async def test_two_standing_by_race_for_a_free_lease_and_one_wins(
    make_jc: MakeJC, clock: ManualClock
) -> None:
    import asyncio

    collections = [await make_jc() for _ in range(4)]
    passes = await asyncio.gather(*(jc.run_server_pass() for jc in collections))
    assert sorted(p.leading for p in passes) == [False, False, False, True]


def test_the_lease_is_checked(database: Any) -> None:
    with pytest.raises(InvalidArgument, match="server_lease"):
        JobCollection.from_database(database, server_lease=0)
    with pytest.raises(InvalidArgument, match="server_lease"):
        JobCollection.from_database(database, server_lease="ten")  # type: ignore[arg-type]


async def test_the_lease_lives_beside_the_jobs_in_the_servers_collection(
    make_jc: MakeJC, database: Any, clock: ManualClock
) -> None:
    jc = await make_jc()
    await jc.run_server_pass()
    [lease] = await database["queue.servers"].find({}).to_list(None)
    assert lease["_id"] == "jobServer" and lease["epoch"] == 1
    assert set(lease) == {"_id", "holder", "epoch", "expires", "since", "host", "pid"}
    assert await database["queue.jobs"].count_documents({"_id": "jobServer"}) == 0


async def test_a_process_does_not_race_itself_for_the_lease(
    make_jc: MakeJC, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop's hold and an explicit pass's, together on a free lease, their commands
    interleaved as over a network: both lead (one takes the lease, the other renews it)."""
    import asyncio

    jc = await make_jc(started=False)
    leadership = jc._core.server.leadership
    servers = leadership._servers
    take = servers.find_one_and_update

    async def over_a_network(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0)  # the other hold's command goes out meanwhile
        return await take(*args, **kwargs)

    monkeypatch.setattr(servers, "find_one_and_update", over_a_network)
    held = await asyncio.gather(leadership.hold(), leadership.hold())
    assert held == [True, True]
    leader = await jc.job_server_leader()
    assert leader is not None and leader.this_process and leader.epoch == 1
