"""What only a real replica set can show: read concerns and preferences that lag the writes, a
primary stepping down during a bundled completion, a write concern that is not met in time, and
the server's own clock. Skipped unless MONGODB_URI names a replica set;
`scripts/test-replica-set` starts one where `mongod` exists and runs the whole suite on it.

The step-down and write-concern cases use the server's `failCommand` fail point, which needs
`--setParameter enableTestCommands=1` (the script sets it); without it they are skipped.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pymongo import ReadPreference, WriteConcern
from pymongo.errors import OperationFailure
from pymongo.read_concern import ReadConcern

from conftest import MONGODB_URI
from jobcollection import DatabaseError, JobCollection, ServerClock

pytestmark = pytest.mark.skipif(not MONGODB_URI, reason="needs MONGODB_URI (a replica set)")


@pytest.fixture
async def replica_set(database: Any) -> Any:
    """The test database, if it lives on a replica set."""
    hello = await database.client.admin.command("hello")
    if "setName" not in hello:
        pytest.skip("needs a replica set, not a standalone server")
    return database


async def fail_next(database: Any, command: str, **data: Any) -> None:
    """Make the server fail the next `command` as described (failCommand fail point)."""
    try:
        await database.client.admin.command(
            {
                "configureFailPoint": "failCommand",
                "mode": {"times": 1},
                "data": {"failCommands": [command], **data},
            }
        )
    except OperationFailure as exc:
        pytest.skip(f"needs enableTestCommands=1: {exc}")


async def started(collection: Any) -> JobCollection:
    jc = JobCollection(collection)
    await jc.start_job_server()
    return jc


async def test_claims_see_their_own_writes_under_lagging_reads(replica_set: Any) -> None:
    """w: 1 writes with "majority" reads from secondaries would miss a claim just made; the
    library reads its own writes from the primary with read concern "local"."""
    collection = replica_set["queue.jobs"].with_options(
        write_concern=WriteConcern(w=1),
        read_concern=ReadConcern("majority"),
        read_preference=ReadPreference.SECONDARY_PREFERRED,
    )
    jc = await started(collection)
    try:
        await jc.save_jobs([jc.create_job("t", {"n": n}) for n in range(5)])
        jobs = await jc.get_work("t", max_jobs=5)
        assert len(jobs) == 5
        assert await asyncio.gather(*(job.done() for job in jobs)) == [True] * 5
    finally:
        await jc.close()


async def test_majority_writes_with_a_timeout_run_a_whole_lifecycle(replica_set: Any) -> None:
    collection = replica_set["queue.jobs"].with_options(
        write_concern=WriteConcern("majority", wtimeout=5000)
    )
    jc = await started(collection)
    try:
        first = jc.create_job("t").repeat(1, wait=0)
        await first.save()
        dependent_id = await jc.create_job("d").depends([first]).save()
        [job] = await jc.get_work("t")
        assert await job.done() is True
        assert (await collection.find_one({"_id": dependent_id}))["status"] == "ready"
        assert await collection.count_documents({"type": "t"}) == 2
    finally:
        await jc.close()


async def test_a_step_down_during_a_bundled_completion_is_retried_by_the_driver(
    replica_set: Any,
) -> None:
    """The report path writes single-document updates only, so pymongo retries the bundle
    after a "not writable primary" error instead of failing every report in it."""
    jc = await started(replica_set["queue.jobs"])
    try:
        await jc.save_jobs([jc.create_job("t", {"n": n}) for n in range(3)])
        jobs = await jc.get_work("t", max_jobs=3)
        await fail_next(replica_set, "update", errorCode=10107, errorLabels=["RetryableWriteError"])
        assert await asyncio.gather(*(job.done() for job in jobs)) == [True] * 3
        assert await replica_set["queue.jobs"].count_documents({"status": "completed"}) == 3
    finally:
        await jc.close()


async def test_a_write_concern_error_leaves_the_follow_ups_to_the_next_pass(
    replica_set: Any,
) -> None:
    jc = await started(replica_set["queue.jobs"])
    try:
        first = jc.create_job("t")
        await first.save()
        dependent_id = await jc.create_job("d").depends([first]).save()
        [job] = await jc.get_work("t")
        await fail_next(
            replica_set,
            "update",
            writeConcernError={"code": 64, "codeName": "WriteConcernFailed", "errmsg": "slow"},
        )
        with pytest.raises(DatabaseError):
            await job.done()
        assert (await jc.run_server_pass()).followed_up == 1
        dependent = await replica_set["queue.jobs"].find_one({"_id": dependent_id})
        assert dependent["status"] == "ready"
    finally:
        await jc.close()


async def test_the_server_clock_reads_the_primary(replica_set: Any) -> None:
    clock = ServerClock(replica_set["queue.jobs"])
    assert await clock.refresh(force=True) is True
    assert clock.reports_time is True
    assert clock.round_trip is not None and clock.round_trip.total_seconds() < 1


async def test_the_claim_query_uses_its_index(replica_set: Any) -> None:
    jc = await started(replica_set["queue.jobs"])
    try:
        await jc.save_jobs([jc.create_job("t") for _ in range(3)])
        plan = await replica_set.command(
            {
                "explain": {
                    "find": "queue.jobs",
                    "filter": {"type": {"$in": ["t"]}, "status": "ready", "runId": None},
                    "sort": {"priority": 1, "retryUntil": 1, "after": 1},
                    "limit": 1,
                },
                "verbosity": "queryPlanner",
            }
        )
        assert "COLLSCAN" not in str(plan["queryPlanner"]["winningPlan"])
    finally:
        await jc.close()
