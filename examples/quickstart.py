"""Quickstart: a queue running a retrying job, a dependent job and a cron-repeating job.

Needs: `pip install -e ".[memory]"` (the in-memory backend). With MONGODB_URI set it uses that
MongoDB server instead (a database named jobcollection_quickstart, dropped at the end).
Run:    python examples/quickstart.py
Prints: what happens to each job, step by step. Time is simulated with a ManualClock, so the
        retry waits and the cron schedule play out instantly.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from jobcollection import Job, JobCollection, ManualClock


def database() -> tuple[Any, Any]:
    """A database on MONGODB_URI if set, else in memory; and a cleanup coroutine function."""
    uri = os.environ.get("MONGODB_URI")
    if uri:
        from pymongo import AsyncMongoClient

        client: Any = AsyncMongoClient(uri)

        async def drop() -> None:
            await client.drop_database("jobcollection_quickstart")
            await client.close()

        return client["jobcollection_quickstart"], drop
    from jobcollection.testing import memory_database

    async def nothing() -> None:
        return None

    return memory_database("quickstart"), nothing


def worker(clock: ManualClock) -> Callable[[Job], Awaitable[dict[str, Any]]]:
    """The worker a queue runs for each job: returning completes the job with that result,
    raising fails it (and its retries apply). 'flaky' fails on its first attempt."""

    async def work(job: Job) -> dict[str, Any]:
        stamp = clock.now().strftime("%H:%M:%S")
        run, attempt = job.doc.repeated + 1, job.doc.retried
        if job.type == "flaky" and attempt == 1:
            print(f"{stamp}  {job.type:8} run {run}, attempt {attempt} failed; retrying in 30 s")
            raise ConnectionError("the mail server did not answer")
        print(f"{stamp}  {job.type:8} run {run}, attempt {attempt} done")
        return {"ok": True, "at": stamp}

    return work


async def show(jobs: list[Job]) -> None:
    for job in jobs:
        await job.refresh()
        print(f"          {job.type:8} is {job.doc.status}")


async def main() -> None:
    # A queue logs each failure with its traceback (WARNING); this one is part of the demo.
    logging.getLogger("jobcollection.queue").setLevel(logging.ERROR)
    db, cleanup = database()
    clock = ManualClock(datetime(2026, 1, 1, 9, 0, tzinfo=UTC))
    jc = JobCollection.from_database(db, "quickstart", clock=clock)
    await jc.start_job_server()
    try:
        flaky = jc.create_job("flaky", {"to": "ada@example.com"}).retry(2, wait=30)
        await flaky.save()
        report = jc.create_job("report", {"month": "2025-12"}).depends([flaky])
        await report.save()
        cleanup_job = jc.create_job("cleanup").repeat(3, schedule="*/15 * * * *")
        await cleanup_job.save()
        print("09:00:00  saved: flaky (2 retries, 30 s apart), report (after flaky),")
        print("          cleanup (cron */15 * * * *, 3 repeats)")
        await show([flaky, report, cleanup_job])
        # A queue claims ready jobs of these types and runs `work` on each (no polling here:
        # the simulated clock moves in steps, and trigger() asks the queue to look now).
        jobs = ["flaky", "report", "cleanup"]
        async with jc.process_jobs(
            jobs, worker(clock), concurrency=2, poll_interval=None, wakeup=False
        ) as queue:
            for _ in range(13):
                queue.trigger()
                await queue.drain()  # every job that could run has run and been reported
                clock.advance(60 * 5)
                await jc.run_server_pass()  # promotes what fell due (retries, repeats)
        print("10:05:00  after an hour of simulated time:")
        runs = await jc.collection.count_documents({"type": "cleanup", "status": "completed"})
        print(f"          cleanup ran {runs} times (the first run and its 3 repeats)")
        await show([flaky, report])
        await flaky.refresh(get_failures=True)
        print(f"          flaky's failure: {flaky.doc.failures[-1]['value']!r}")  # type: ignore[index]
        print(f"          report's result: {report.doc.result}")
    finally:
        await jc.shutdown_job_server(timeout=0)
        await jc.close()
        await cleanup()


if __name__ == "__main__":
    asyncio.run(main())
