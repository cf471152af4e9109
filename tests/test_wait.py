"""Awaiting a job's outcome (`job.wait`, `jc.wait_for`, waiting.py): final states only, one
shared poll for every waiter, woken by the process's own calls, and timeouts."""

from __future__ import annotations

import asyncio

import pytest

from jobcollection import Job, JobCollection, JobNotSaved, ManualClock
from jobcollection.api.waiting import waiters
from jobcollection.mongo.wakeup import finish_pipeline

pytestmark = pytest.mark.both_sides


async def work_all(jc: JobCollection, job_type: str, fail: bool = False) -> None:
    """Claim and finish every ready job of a type, as a worker elsewhere would."""
    for job in await jc.get_work(job_type, max_jobs=1000):
        if fail:
            await job.fail("broken")
        else:
            await job.done({"ok": job.data.get("n")})


async def test_wait_returns_the_job_once_it_completes(jc: JobCollection) -> None:
    job = jc.create_job("t", {"n": 1})
    await job.save()
    waiting = asyncio.create_task(job.wait(timeout=30))
    await asyncio.sleep(0)
    assert not waiting.done()
    await work_all(jc, "t")
    assert await asyncio.wait_for(waiting, 30) is job
    assert (job.doc.status, job.doc.result) == ("completed", {"ok": 1})


async def test_a_job_that_will_retry_is_not_final(jc: JobCollection, clock: ManualClock) -> None:
    job = jc.create_job("t").retry(1, wait=60)
    await job.save()
    await work_all(jc, "t", fail=True)  # waiting for its retry: not final
    with pytest.raises(TimeoutError):
        await job.wait(timeout=0.2)
    clock.advance(61)
    await jc.run_server_pass()
    await work_all(jc, "t", fail=True)  # no attempt left: failed for good
    assert (await job.wait(timeout=30)).doc.status == "failed"


async def test_cancelled_is_final_and_a_removed_job_raises(jc: JobCollection) -> None:
    job = jc.create_job("t")
    await job.save()
    await job.cancel()
    assert (await job.wait(timeout=30)).doc.status == "cancelled"
    other = jc.create_job("t")
    await other.save()
    await other.cancel()
    await other.remove()
    with pytest.raises(JobNotSaved, match="removed"):
        await other.wait(timeout=30)


async def test_wait_for_many_shares_one_poll(jc: JobCollection) -> None:
    ids = await jc.save_jobs([jc.create_job("many", {"n": n}) for n in range(50)])
    shared = waiters(jc.service)
    before = shared.polls
    waiting = [asyncio.create_task(jc.wait_for([job_id], timeout=30)) for job_id in ids]
    together = asyncio.create_task(jc.wait_for(ids, timeout=30))
    await asyncio.sleep(0)
    await work_all(jc, "many")
    results = await asyncio.wait_for(asyncio.gather(*waiting), 30)
    assert [r[0].id for r in results] == ids
    assert [j.doc.result for j in await together] == [{"ok": n} for n in range(50)]
    # 51 waiters, one poll per interval between them: a handful of reads in all
    assert shared.polls - before <= 10


async def test_a_timeout_leaves_no_waiter_behind(jc: JobCollection) -> None:
    job_id = await jc.create_job("slow").save()
    with pytest.raises(TimeoutError):
        await jc.wait_for([job_id], timeout=0.1)
    assert not waiters(jc.service)._waiting


async def test_a_worker_of_the_same_process_wakes_the_wait_at_once(jc: JobCollection) -> None:
    async def worker(job: Job) -> str:
        return "done"

    job = jc.create_job("now")
    await job.save()
    waiting = asyncio.create_task(job.wait(timeout=30))
    queue = jc.process_jobs("now", worker, poll_interval=None, wakeup=False)
    await queue.drain()
    assert (await asyncio.wait_for(waiting, 30)).doc.result == {"value": "done"}
    await queue.shutdown("soft", quiet=True)


def test_the_finish_pipeline_matches_final_statuses_and_deletes() -> None:
    [match, project] = finish_pipeline()
    kinds = match["$match"]["$or"]
    assert kinds[0]["updateDescription.updatedFields.status"] == {
        "$in": ["completed", "failed", "cancelled"]
    }
    assert kinds[1] == {"operationType": "delete"}
    assert project == {"$project": {"_id": 1, "documentKey": 1}}
