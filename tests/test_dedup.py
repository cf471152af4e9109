"""Deduplication over time: `job.unique(key, mode=, period=, states=)`.

Each mode against saves one after the other (on both sides: local and through the remote API)
and against concurrent saves from three JobCollections over one collection whose calls
interleave at random (exactly the promised number of jobs exist), checked over time with the
manual clock: past a holder's period, a new job is let in. The pure rules (rules/dedup.py) are
tested on plain documents.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from datetime import timedelta
from typing import Any

import pytest

from conftest import SHARDED, START, MakeJC, WrapJC
from helpers import Jittery, claim_one, stored
from jobcollection import (
    DuplicateJob,
    InvalidArgument,
    InvalidArgumentType,
    InvalidDocument,
    JobCollection,
    ManualClock,
)
from jobcollection.model.document import (
    UNIQUE,
    UNIQUE_HELD,
    UNIQUE_POLICY,
    JobDoc,
    Unique,
    assume_utc,
)
from jobcollection.rules import dedup

needs_index = pytest.mark.skipif(SHARDED, reason="a sharded collection has no unique jobs")

PENDING = ["waiting", "paused", "ready"]
KEY = {"type": "t", "key": "k"}


async def jobs_by_status(jc: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for doc in await jc.collection.find({}, {"status": 1}).to_list(None):
        counts[doc["status"]] = counts.get(doc["status"], 0) + 1
    return counts


# --- the rules, on plain documents ----------------------------------------------------------


def holder(**fields: Any) -> dict[str, Any]:
    return {"_id": "h", "status": "ready", "created": START, **fields}


@pytest.mark.parametrize(
    ("found", "seconds", "expected"),
    [
        (holder(_private={"jobcollectionUnique": KEY}), 10**6, True),  # pending, no period
        (holder(_private={}), 0, False),  # started and retried: UNIQUE gone, pending only
        (
            holder(
                _private={"jobcollectionUnique": KEY, "jobcollectionUniquePolicy": {"period": 60}}
            ),
            0.059,
            True,
        ),
        (
            holder(
                _private={"jobcollectionUnique": KEY, "jobcollectionUniquePolicy": {"period": 60}}
            ),
            0.06,
            False,
        ),
        (
            holder(
                status="running",
                _private={"jobcollectionUniquePolicy": {"states": [*PENDING, "running"]}},
            ),
            10**6,
            True,
        ),
        (
            holder(
                status="completed",
                _private={"jobcollectionUniquePolicy": {"states": [*PENDING, "running"]}},
            ),
            0,
            False,
        ),
        (
            holder(
                status="waiting",  # retried: in its states again, though it has started
                _private={"jobcollectionUniquePolicy": {"states": [*PENDING, "running"]}},
            ),
            0,
            True,
        ),
    ],
)
def test_whether_a_found_job_still_holds_its_key(
    found: dict[str, Any], seconds: float, expected: bool
) -> None:
    # a stored period is in ms: 60 ms
    assert dedup.holds(found, START + timedelta(seconds=seconds)) is expected


def test_what_a_new_unique_job_stores_beside_its_key() -> None:
    def doc(**unique: Any) -> JobDoc:
        return JobDoc(type="t", unique=Unique(key="k", **unique))

    assert dedup.bookkeeping(doc()) == {}  # the default: UNIQUE alone
    assert dedup.bookkeeping(doc(on_conflict="throttle", period_ms=5)) == {
        "jobcollectionUniquePolicy": {"period": 5}
    }
    assert dedup.bookkeeping(doc(on_conflict="error", states=[*PENDING, "failed"])) == {
        "jobcollectionUniqueHeld": KEY,
        "jobcollectionUniquePolicy": {"states": [*PENDING, "failed"]},
    }
    debounced = doc(on_conflict="debounce", period_ms=5_000)
    assert dedup.bookkeeping(debounced) == {}  # its period is a delay, not a hold
    assert dedup.earliest_start(debounced, START) == START + timedelta(seconds=5)
    assert dedup.earliest_start(doc(), START) is None


def test_a_release_is_fenced_on_the_status_read() -> None:
    query, update = dedup.release(holder(status="completed"))
    assert query == {"_id": "h", "status": "completed"}
    assert update == {"$unset": {UNIQUE: "", UNIQUE_HELD: ""}}


def test_keep_latest_and_debounce_writes() -> None:
    later = START + timedelta(seconds=5)
    [(query, update)] = dedup.refresh("h", KEY, {"n": 2}, None, START)
    assert query == {"_id": "h", UNIQUE: KEY, "status": {"$in": PENDING}}
    assert update == {"$set": {"data": {"n": 2}, "updated": START}}
    (queued, pushed), (paused, kept_paused) = dedup.refresh("h", KEY, {"n": 2}, later, START)
    assert queued["status"] == {"$in": ["waiting", "ready"]}
    assert pushed["$set"]["status"] == "waiting" and pushed["$max"] == {"after": later}
    assert paused["status"] == "paused" and "status" not in kept_paused["$set"]


# --- one save after another, on both sides -------------------------------------------------


@needs_index
@pytest.mark.both_sides
async def test_throttle_lets_one_in_per_period(jc: JobCollection, clock: ManualClock) -> None:
    def save(n: int) -> Any:
        return jc.create_job("t", {"n": n}).unique("k", mode="throttle", period=60).save()

    first = await save(1)
    clock.advance(59)
    assert await save(2) == first
    clock.advance(1)  # 60 s after the first's creation: its hold is over
    second = await save(3)
    assert second not in (None, first)
    assert await save(4) == second
    assert await jobs_by_status(jc) == {"ready": 2}  # the first was throttled, not cancelled
    raw = await stored(jc, first)
    assert UNIQUE.split(".")[1] not in raw["_private"]
    assert raw["_private"][UNIQUE_POLICY.split(".")[1]] == {"period": 60_000}


@needs_index
@pytest.mark.both_sides
async def test_states_past_pending_hold_the_key_while_running_and_finished(
    jc: JobCollection, clock: ManualClock
) -> None:
    states = [*PENDING, "running", "completed"]

    def save() -> Any:
        return jc.create_job("t").unique(mode="ignore", period=timedelta(hours=1), states=states)

    first = await save().save()
    worker = await claim_one(jc)
    assert await save().save() == first  # running
    assert await worker.done() is True
    clock.advance(60)
    assert await save().save() == first  # completed, within the hour
    clock.advance(3600)
    second = await save().save()
    assert second not in (None, first)
    assert await jobs_by_status(jc) == {"completed": 1, "ready": 1}
    assert UNIQUE_HELD.split(".")[1] not in (await stored(jc, first))["_private"]


@needs_index
@pytest.mark.both_sides
async def test_a_rerun_of_a_job_holding_its_key_holds_none(jc: JobCollection) -> None:
    def save() -> Any:
        states = [*PENDING, "running", "completed"]
        return jc.create_job("t").unique(mode="error", states=states).save()

    first = await save()
    worker = await claim_one(jc)
    assert await worker.done() is True
    rerun = await worker.rerun()
    assert rerun and rerun is not True
    private = (await stored(jc, rerun)).get("_private", {})
    assert not {"jobcollectionUnique", "jobcollectionUniqueHeld"} & set(private)
    with pytest.raises(DuplicateJob) as raised:  # the completed job holds it still
        await save()
    assert raised.value.holder == first


@needs_index
@pytest.mark.both_sides
async def test_a_hold_ends_when_the_job_leaves_its_states(jc: JobCollection) -> None:
    # BullMQ's simple mode: deduplicated until the job completes or fails
    def save() -> Any:
        return jc.create_job("t").unique(mode="error", states=[*PENDING, "running"]).save()

    first = await save()
    worker = await claim_one(jc)
    with pytest.raises(DuplicateJob) as raised:
        await save()
    assert raised.value.holder == first
    assert await worker.fail("boom", fatal=True) is True
    assert await save() not in (None, first)


@needs_index
@pytest.mark.both_sides
async def test_debounce_replaces_the_data_and_pushes_the_start_back(
    jc: JobCollection, clock: ManualClock
) -> None:
    def save(n: int) -> Any:
        return jc.create_job("t", {"n": n}).unique(mode="debounce", period=10).save()

    first = await save(1)
    raw = await stored(jc, first)
    assert raw["status"] == "waiting" and assume_utc(raw["after"]) == START + timedelta(seconds=10)
    clock.advance(8)
    assert await save(2) == first
    raw = await stored(jc, first)
    assert raw["data"] == {"n": 2} and assume_utc(raw["after"]) == START + timedelta(seconds=18)
    clock.advance(9)  # 17 s: due at 18 s
    await jc.ready_jobs()
    assert await jc.get_work("t") == []
    clock.advance(1)
    await jc.ready_jobs()
    worker = await claim_one(jc)
    assert worker.id == first and worker.data == {"n": 2}
    second = await save(3)  # the first has started: a new job, which waits its period
    assert second not in (None, first)
    assert await jobs_by_status(jc) == {"running": 1, "waiting": 1}


@needs_index
@pytest.mark.both_sides
async def test_debounce_takes_a_ready_job_back_to_waiting_and_keeps_a_paused_one_paused(
    jc: JobCollection, clock: ManualClock
) -> None:
    def save(n: int) -> Any:
        return jc.create_job("t", {"n": n}).unique(mode="debounce", period=10).save()

    first = await save(1)
    clock.advance(10)
    await jc.ready_jobs()
    assert (await stored(jc, first))["status"] == "ready"
    assert await save(2) == first
    assert (await stored(jc, first))["status"] == "waiting"
    assert await jc.pause_jobs([first])
    assert await save(3) == first
    raw = await stored(jc, first)
    assert raw["status"] == "paused" and raw["data"] == {"n": 3}


@needs_index
@pytest.mark.both_sides
async def test_keep_latest_keeps_one_running_and_the_latest_queued(jc: JobCollection) -> None:
    def save(n: int) -> Any:
        return jc.create_job("t", {"n": n}).unique("k", mode="keep_latest").save()

    first = await save(1)
    assert await save(2) == first
    assert (await stored(jc, first))["data"] == {"n": 2}
    worker = await claim_one(jc)
    queued = await save(3)  # a running job does not block a queued one
    assert queued not in (None, first)
    assert await save(4) == queued
    assert (await stored(jc, queued))["data"] == {"n": 4}
    assert await jobs_by_status(jc) == {"running": 1, "ready": 1}
    assert await worker.done() is True


@needs_index
@pytest.mark.both_sides
async def test_on_conflict_is_the_older_name_of_mode(jc: JobCollection) -> None:
    first = await jc.create_job("t").unique("k", "ignore").save()
    assert await jc.create_job("t").unique("k", on_conflict="ignore").save() == first
    assert await jc.create_job("t").unique("k", mode="ignore").save() == first


@pytest.mark.parametrize(
    ("options", "error", "name"),
    [
        ({"mode": "throttle", "period": 0}, InvalidArgument, "period"),
        ({"mode": "throttle", "period": -1}, InvalidArgument, "period"),
        ({"mode": "throttle", "period": "soon"}, InvalidArgumentType, "period"),
        ({"mode": "throttle"}, InvalidArgument, "period"),
        ({"mode": "debounce"}, InvalidArgument, "period"),
        ({"mode": "keep_latest", "period": 5}, InvalidArgument, "period"),
        ({"mode": "replace", "period": 5}, InvalidArgument, "period"),
        ({"states": "running"}, InvalidArgumentType, "states"),
        ({"mode": "ignore", "states": ["running"]}, InvalidArgument, "states"),
        ({"mode": "ignore", "states": [*PENDING, "lost"]}, InvalidArgument, r"states\[3\]"),
        ({"mode": "ignore", "states": [*PENDING, "ready"]}, InvalidArgument, "states"),
        ({"mode": "replace", "states": [*PENDING, "running"]}, InvalidArgument, "states"),
        ({"mode": "debounce", "period": 1, "states": [*PENDING, "failed"]}, InvalidArgument, "st"),
        ({"mode": "merge"}, InvalidArgument, "mode"),
        ({"mode": "ignore", "on_conflict": "ignore"}, InvalidArgument, "mode"),
    ],
)
async def test_settings_that_make_no_sense_are_refused(
    make_jc: MakeJC, options: dict[str, Any], error: type[Exception], name: str
) -> None:
    job = (await make_jc(started=False)).create_job("t")
    before = job.doc.to_mongo()
    with pytest.raises(error, match=name):
        job.unique("k", **options)
    assert job.doc.to_mongo() == before


@needs_index
async def test_the_method_layer_takes_the_settings_with_the_key(make_jc: MakeJC) -> None:
    # as a v1.x-style caller (jc.call, the HTTP API, DDP) gives them
    jc = await make_jc()
    doc = {
        **jc.create_job("t").doc.to_mongo(),
        "_private": {
            "jobcollectionUnique": {"key": "k", "onConflict": "throttle", "period": 60_000},
            "jobcollectionUniqueHeld": {"type": "t", "key": "forged"},  # bookkeeping: dropped
        },
    }
    first = await jc.call("jobSave", doc)
    assert await jc.call("jobSave", {**doc}) == first
    private = (await stored(jc, first))["_private"]
    assert private == {
        "jobcollectionUnique": {"type": "t", "key": "k"},
        "jobcollectionUniquePolicy": {"period": 60_000},
    }
    doc["_private"] = {"jobcollectionUnique": {"key": "k", "onConflict": "throttle"}}
    with pytest.raises(InvalidDocument, match="period"):
        await jc.call("jobSave", doc)


# --- concurrent saves from three JobCollections ----------------------------------------------

SAVES = 30
"""Concurrent saves per JobCollection in each round."""


async def three(make_wrapped_jc: WrapJC, seed: int) -> list[JobCollection]:
    """Three started JobCollections over the test collection, their calls interleaved at
    random (the same way for the same seed)."""
    rng = random.Random(seed)
    return [await make_wrapped_jc(lambda c: Jittery(c, rng)) for _ in range(3)]


async def save_round(collections: list[JobCollection], round_: int, **unique: Any) -> list[Any]:
    """SAVES concurrent saves of key "k" from each collection: what each answered (a
    DuplicateJob as ("duplicate", holder))."""

    async def save(n: int) -> Any:
        job = collections[n % 3].create_job("t", {"round": round_, "n": n}).unique("k", **unique)
        try:
            return await job.save()
        except DuplicateJob as exc:
            return ("duplicate", exc.holder)

    return await asyncio.gather(*(save(n) for n in range(3 * SAVES)))


def holders(outcomes: list[Any]) -> set[Any]:
    return {o[1] if isinstance(o, tuple) else o for o in outcomes}


@needs_index
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("mode", ["throttle", "error"])
async def test_concurrent_saves_let_one_in_per_period(
    make_wrapped_jc: WrapJC, clock: ManualClock, seed: int, mode: str
) -> None:
    collections = await three(make_wrapped_jc, seed)
    jc = collections[0]
    first = holders(await save_round(collections, 1, mode=mode, period=60))
    assert len(first) == 1 and await jc.collection.count_documents({}) == 1
    clock.advance(30)
    assert holders(await save_round(collections, 2, mode=mode, period=60)) == first
    assert await jc.collection.count_documents({}) == 1
    clock.advance(30)
    second = holders(await save_round(collections, 3, mode=mode, period=60))
    assert len(second) == 1 and second != first
    assert await jobs_by_status(jc) == {"ready": 2}


@needs_index
@pytest.mark.parametrize("seed", range(3))
async def test_concurrent_saves_held_past_pending_until_the_period_ends(
    make_wrapped_jc: WrapJC, clock: ManualClock, seed: int
) -> None:
    collections = await three(make_wrapped_jc, seed)
    jc = collections[0]
    options = {"mode": "ignore", "period": 600, "states": [*PENDING, "running", "completed"]}
    [first] = holders(await save_round(collections, 1, **options))
    worker = await claim_one(jc)
    assert holders(await save_round(collections, 2, **options)) == {first}
    assert await worker.done() is True
    clock.advance(300)
    assert holders(await save_round(collections, 3, **options)) == {first}
    assert await jc.collection.count_documents({}) == 1
    clock.advance(300)
    [second] = holders(await save_round(collections, 4, **options))
    assert second != first
    assert await jobs_by_status(jc) == {"completed": 1, "ready": 1}


@needs_index
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize(("mode", "period"), [("debounce", 10), ("keep_latest", None)])
async def test_concurrent_saves_keep_one_queued_job_with_one_of_their_data(
    make_wrapped_jc: WrapJC, clock: ManualClock, seed: int, mode: str, period: int | None
) -> None:
    collections = await three(make_wrapped_jc, seed)
    jc = collections[0]
    [first] = holders(await save_round(collections, 1, mode=mode, period=period))
    assert await jc.collection.count_documents({}) == 1
    assert (await stored(jc, first))["data"]["round"] == 1
    clock.advance(5)
    assert holders(await save_round(collections, 2, mode=mode, period=period)) == {first}
    raw = await stored(jc, first)
    assert raw["data"]["round"] == 2
    if mode == "debounce":
        assert raw["status"] == "waiting" and assume_utc(raw["after"]) == START + timedelta(
            seconds=15
        )
        clock.advance(10)
        await jc.ready_jobs()
    worker = await claim_one(jc)
    assert worker.id == first
    [second] = holders(await save_round(collections, 3, mode=mode, period=period))
    assert second != first  # a running job does not block a queued one
    running, queued = "running", "waiting" if mode == "debounce" else "ready"
    assert await jobs_by_status(jc) == {running: 1, queued: 1}


@needs_index
async def test_concurrent_saves_through_the_remote_api(make_jc: Any, clock: ManualClock) -> None:
    from jobcollection.remote import RemoteJobCollection
    from remote_helpers import serve_jc

    local = await make_jc()
    async with serve_jc(local) as url, contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                RemoteJobCollection(url, token="admin-token", clock=clock)
            )
            for _ in range(3)
        ]

        async def save(n: int) -> Any:
            job = clients[n % 3].create_job("t", {"n": n})
            return await job.unique("k", mode="throttle", period=60).save()

        first = set(await asyncio.gather(*(save(n) for n in range(30))))
        clock.advance(60)
        second = set(await asyncio.gather(*(save(n) for n in range(30))))
    assert len(first) == 1 and len(second) == 1 and first != second
    assert await local.collection.count_documents({}) == 2
