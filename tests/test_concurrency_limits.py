"""Global concurrency limits (local/slots.py, rules/concurrency.py): `set_concurrency_limit`
caps the jobs of a type running at once over every JobCollection on the database (each
stands for a process), through every claim path (get_work, queues, rate-limited claims, the
remote API); per group with `group_by`, fairly between groups; a slot comes back when its
job leaves `running` or its lease runs out, never later; stored data stays as it was on bad
input. Processes and node.js workers: test_processes_db.py and test_ddp.py."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from conftest import MakeJC
from jobcollection import (
    ConcurrencyLimit,
    InvalidArgument,
    JobCollection,
    ManualClock,
    RateLimit,
)
from jobcollection.local import slots
from jobcollection.remote import RemoteJobCollection
from remote_helpers import serve_jc


async def running(jc: JobCollection, job_type: str = "t", **where: Any) -> int:
    return int(
        await jc.collection.count_documents({"type": job_type, "status": "running", **where})
    )


async def test_a_limit_caps_the_running_jobs_of_every_collection(
    make_jc: MakeJC, clock: ManualClock
) -> None:
    here, there = await make_jc(), await make_jc()
    for i in range(6):
        await here.create_job("t", {"i": i}).save()
    await here.create_job("free").save()
    limits = await here.set_concurrency_limit("t", ConcurrencyLimit(2))
    assert limits == {"t": ConcurrencyLimit(2)}
    first = await here.get_work("t", max_jobs=5)
    assert [j.data["i"] for j in first] == [0, 1]  # in the usual order, up to the limit
    assert await there.get_work("t", max_jobs=5) == []
    other = await there.get_work(["t", "free"], max_jobs=5)  # unlimited types as usual
    assert [j.type for j in other] == ["free"]
    assert await first[0].done() is True  # a finished job gives its slot back at once
    [next_one] = await there.get_work("t", max_jobs=5)
    assert next_one.data["i"] == 2
    assert await running(here) == 2
    assert await there.concurrency_limits() == {"t": ConcurrencyLimit(2)}


async def test_a_slot_comes_back_when_its_lease_runs_out_never_later(
    make_jc: MakeJC, clock: ManualClock
) -> None:
    jc = await make_jc()
    for i in range(3):
        await jc.create_job("t", {"i": i}).save()
    await jc.set_concurrency_limit("t", ConcurrencyLimit(1))
    [held] = await jc.get_work("t", work_timeout=10)  # its worker then dies: no report
    clock.advance(9.999)
    assert await jc.get_work("t") == []
    clock.advance(0.001)  # the lease ends: the slot is free, before the server expires it
    [taken] = await jc.get_work("t", work_timeout=10)
    assert taken.id != held.id
    assert await running(jc) == 2  # the dead one is still `running` until the expiry pass


async def test_a_lowered_limit_lets_running_jobs_finish(make_jc: MakeJC) -> None:
    jc = await make_jc()
    for _ in range(4):
        await jc.create_job("t").save()
    await jc.set_concurrency_limit("t", ConcurrencyLimit(3))
    claimed = await jc.get_work("t", max_jobs=4)
    assert len(claimed) == 3
    await jc.set_concurrency_limit("t", ConcurrencyLimit(1))
    assert await jc.get_work("t") == []
    for job in claimed:
        assert await job.done() is True
    assert len(await jc.get_work("t")) == 1
    assert await jc.set_concurrency_limit("t", None) == {}


async def test_group_limits_hold_per_key(make_jc: MakeJC) -> None:
    jc = await make_jc()
    for customer, count in (("a", 3), ("b", 2), ("c", 1)):
        for i in range(count):
            await jc.create_job("t", {"customer": customer, "i": i}).save()
    await jc.set_concurrency_limit("t", ConcurrencyLimit(1, group_by="data.customer"))
    claimed = await jc.get_work("t", max_jobs=10)
    assert sorted(j.data["customer"] for j in claimed) == ["a", "b", "c"]
    assert await jc.get_work("t", max_jobs=10) == []
    [a] = [j for j in claimed if j.data["customer"] == "a"]
    assert await a.done() is True
    [again] = await jc.get_work("t", max_jobs=10)
    assert again.data == {"customer": "a", "i": 1}


async def test_group_limits_by_user(make_jc: MakeJC) -> None:
    jc = await make_jc()
    for user in ("u1", "u1", "u2"):
        await jc.create_job("t").for_user(user).save()
    await jc.set_concurrency_limit("t", ConcurrencyLimit(1, group_by="user"))
    claimed = await jc.get_work("t", max_jobs=3)
    assert sorted(j.user_id for j in claimed) == ["u1", "u2"]


async def test_a_busy_group_does_not_starve_the_others(make_jc: MakeJC, clock: ManualClock) -> None:
    jc = await make_jc()
    for i in range(12):  # a backlog of "big", due first
        await jc.create_job("t", {"customer": "big", "i": i}).save()
    clock.advance(1)
    await jc.create_job("t", {"customer": "small"}).save()
    await jc.set_concurrency_limit("t", ConcurrencyLimit(100, group_by="data.customer"))
    [first] = await jc.get_work("t")
    assert first.data["customer"] == "big"
    # "big" runs one, "small" none: the next claim serves "small", though all the candidates
    # a claim of one reads (in the usual order) are big's.
    [second] = await jc.get_work("t")
    assert second.data["customer"] == "small"
    third = await jc.get_work("t", max_jobs=2)
    assert [j.data["customer"] for j in third] == ["big", "big"]


async def test_fewest_running_first_shares_a_claim_between_groups(make_jc: MakeJC) -> None:
    jc = await make_jc()
    for customer in ("a",) * 6 + ("b",) * 6:
        await jc.create_job("t", {"customer": customer}).save()
    await jc.set_concurrency_limit("t", ConcurrencyLimit(10, group_by="data.customer"))
    claimed = await jc.get_work("t", max_jobs=4)
    assert sorted(j.data["customer"] for j in claimed) == ["a", "a", "b", "b"]


async def test_a_queue_with_a_rate_limit_also_keeps_the_concurrency_limit(
    make_jc: MakeJC,
) -> None:
    jc = await make_jc()
    ids = [await jc.create_job("t", {"i": i}).save() for i in range(4)]
    await jc.set_concurrency_limit("t", ConcurrencyLimit(1))
    release = asyncio.Event()
    peak: list[int] = []

    async def worker(job: Any) -> None:
        peak.append(await running(jc))
        await release.wait()

    queue = jc.process_jobs(
        "t", worker, concurrency=4, rate_limit=RateLimit(100), poll_interval=None, wakeup=False
    )
    try:
        queue.trigger()
        await queue.settle()
        assert await running(jc) == 1 and peak == [1]
        release.set()
        for _ in ids:
            queue.trigger()
            await queue.settle()
        await jc.wait_for(ids, timeout=10)
        assert peak == [1, 1, 1, 1]
    finally:
        release.set()
        await queue.shutdown("soft", quiet=True)


async def test_a_remote_client_sets_limits_and_its_claims_keep_them(make_jc: MakeJC) -> None:
    jc = await make_jc()
    for _ in range(3):
        await jc.create_job("t").save()
    async with serve_jc(jc) as url, RemoteJobCollection(url, token="admin-token") as remote:
        limit = ConcurrencyLimit(2, group_by="data.customer")
        assert await remote.set_concurrency_limit("t", limit) == {"t": limit}
        assert await remote.concurrency_limits() == {"t": limit}
        await remote.set_concurrency_limit("t", ConcurrencyLimit(2))
        assert len(await remote.get_work("t", max_jobs=3)) == 2
        assert await remote.get_work("t") == []
        assert await jc.get_work("t") == []


async def test_a_dead_holders_claim_lock_is_free_after_its_time(
    make_jc: MakeJC, database: Any, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    jc = await make_jc()
    await jc.create_job("t").save()
    await jc.set_concurrency_limit("t", ConcurrencyLimit(1))
    await jc.get_work("other")  # (the settings are read)
    locks = database["queue.limits"]
    until = clock.now() + timedelta(seconds=5)
    await locks.insert_one({"_id": {"slotsOf": "t"}, "holder": "a dead process", "until": until})
    monkeypatch.setattr(slots, "LOCK_WAIT_S", 0.0)  # do not wait for it here
    assert await jc.get_work("t") == []
    assert await running(jc) == 0
    clock.advance(5)
    assert len(await jc.get_work("t")) == 1
    lock = await locks.find_one({"_id": {"slotsOf": "t"}})
    assert lock is not None and lock["holder"] is None  # given back after the claim


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: ConcurrencyLimit(0), "max_running"),
        (lambda: ConcurrencyLimit("5"), "max_running"),  # type: ignore[arg-type]
        (lambda: ConcurrencyLimit(True), "max_running"),
        (lambda: ConcurrencyLimit(10**7), "max_running"),
        (lambda: ConcurrencyLimit(1, group_by="customer"), "group_by"),
        (lambda: ConcurrencyLimit(1, group_by="data.$where"), "group_by"),
        (lambda: ConcurrencyLimit(1, group_by=5), "group_by"),  # type: ignore[arg-type]
    ],
)
def test_a_bad_limit_names_its_field(make: Any, field: str) -> None:
    with pytest.raises(InvalidArgument, match=field):
        make()


async def test_bad_calls_are_refused_and_nothing_changes(make_jc: MakeJC, database: Any) -> None:
    jc = await make_jc()
    await jc.set_concurrency_limit("t", ConcurrencyLimit(3))
    for bad_type in ("", 5, ["t"], None):
        with pytest.raises(InvalidArgument, match="type"):
            await jc.set_concurrency_limit(bad_type, ConcurrencyLimit(1))  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="limit"):
        await jc.set_concurrency_limit("t", 2)  # type: ignore[arg-type]
    jc.allow(admin=["root"])
    for params, field in (
        (["t", {"maxRunning": 0}], "limit.maxRunning"),
        (["t", {"maxRunning": 2, "groupBy": "nope"}], "limit.groupBy"),
        (["t", {"max": 2}], "limit"),
        (["t", {}], "limit.maxRunning"),
        (["t", [2]], "limit"),
    ):
        with pytest.raises(InvalidArgument, match=field.replace(".", r"\.")):
            await jc.call("jobSetConcurrencyLimit", *params, user_id="root")
    assert await jc.concurrency_limits() == {"t": ConcurrencyLimit(3)}
    stored = await database["queue.servers"].find_one({"_id": "concurrencyLimits"})
    assert stored == {
        "_id": "concurrencyLimits",
        "limits": [{"type": "t", "maxRunning": 3, "groupBy": None}],
        "v": 1,
    }


async def test_changes_of_different_types_at_once_both_land(make_jc: MakeJC) -> None:
    here, there = await make_jc(), await make_jc()
    await asyncio.gather(
        here.set_concurrency_limit("a", ConcurrencyLimit(1)),
        there.set_concurrency_limit("b", ConcurrencyLimit(2)),
    )
    assert await here.concurrency_limits() == {
        "a": ConcurrencyLimit(1),
        "b": ConcurrencyLimit(2),
    }


async def test_far_from_its_limit_a_type_is_claimed_into_a_quota_without_the_lock(
    make_jc: MakeJC, clock: ManualClock, database: Any
) -> None:
    jc = await make_jc()
    await jc.save_jobs([jc.create_job(t) for t in ("free",) * 2 + ("capped",) * 40])
    await jc.set_concurrency_limit("capped", ConcurrencyLimit(1000))
    await jc.get_work("capped")  # (the first also creates the locks' TTL index, once)
    await jc.concurrency_limits()  # (the settings are read now, and kept for a second)

    async def cost(job_type: str) -> int:
        before = jc.commands
        assert len(await jc.get_work(job_type)) == 1
        return jc.commands - before

    free = await cost("free")
    # The first claim took the lock, counted, and took a quota of 16 (far from the limit):
    # the next 15 claims are as cheap as any other type's.
    assert [await cost("capped") for _ in range(15)] == [free] * 15
    assert await cost("capped") == free + 2  # a new quota: the lock taken and given back
    lock = await database["queue.limits"].find_one({"_id": {"slotsOf": "capped"}})
    assert lock is not None and lock["holder"] is None and lock["bound"] == 32
    assert [q["n"] for q in lock["quotas"]] == [16]  # its first quota given up: counted
    clock.advance(1)  # a quota is claimed into for a second only
    assert await cost("capped") == free + 1 + 2  # (and once a second, the settings)


async def test_near_its_limit_every_claim_counts_under_the_lock(
    make_jc: MakeJC, clock: ManualClock
) -> None:
    jc = await make_jc()
    await jc.save_jobs([jc.create_job(t) for t in ("free",) * 2 + ("capped",) * 4])
    await jc.set_concurrency_limit("capped", ConcurrencyLimit(2))
    await jc.get_work("capped")
    await jc.concurrency_limits()
    before = jc.commands
    assert len(await jc.get_work("free")) == 1
    free = jc.commands - before
    before = jc.commands
    assert len(await jc.get_work("capped")) == 1
    assert jc.commands - before == free + 3  # the lock, the count, the lock given back
    assert await jc.get_work("capped") == []  # two running: the limit


async def test_quotas_of_several_processes_never_exceed_the_limit(make_jc: MakeJC) -> None:
    here, there = await make_jc(), await make_jc()
    await here.save_jobs([here.create_job("t") for _ in range(30)])
    await here.set_concurrency_limit("t", ConcurrencyLimit(8))
    claimed = []
    for _ in range(6):  # one at a time, each: into its quota while the limit is far
        claimed += await here.get_work("t")
        claimed += await there.get_work("t")
    assert len(claimed) == 8 and await running(here) == 8
    assert await here.get_work("t", max_jobs=5) == [] and await there.get_work("t") == []
    assert await claimed[0].done() is True
    assert len(await there.get_work("t", max_jobs=5)) == 1
