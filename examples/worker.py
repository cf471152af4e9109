"""A worker process: run a JobQueue until SIGINT/SIGTERM, then shut down gracefully.

Needs: `pip install -e ".[memory]"` (the in-memory backend). With MONGODB_URI set it works on
that MongoDB server instead (the collection "worker.jobs" of the database
jobcollection_examples); on a replica set new jobs start at once through a change stream,
elsewhere the queue polls.
Run:    python examples/worker.py --demo      # submits 3 demo jobs, exits once they are done
        python examples/worker.py             # submits 3 demo jobs, then runs until Ctrl-C
        python examples/worker.py --jobs 0    # only works on jobs others submit (MONGODB_URI)
Prints: one line per email "sent", then how the queue shut down and how many jobs completed
        or failed. The first Ctrl-C (or SIGTERM) lets running jobs finish and hands queued ones
        back ("normal"); a second Ctrl-C stops at once ("hard").
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
from collections import Counter
from typing import Any

from jobcollection import Job, JobCollection, JobQueue


def say(line: str) -> None:
    print(line, flush=True)


def database() -> tuple[Any, Any]:
    """A database on MONGODB_URI if set, else in memory; and a close coroutine function."""
    uri = os.environ.get("MONGODB_URI")
    if uri:
        from pymongo import AsyncMongoClient

        client: Any = AsyncMongoClient(uri)

        async def close() -> None:
            await client.close()

        return client["jobcollection_examples"], close
    from jobcollection.testing import memory_database

    async def nothing() -> None:
        return None

    return memory_database("worker_example"), nothing


async def send_email(job: Job) -> dict[str, str]:
    """The worker: its return value becomes the job's result; raising would fail the job."""
    await job.log(f"sending to {job.data['to']}")
    await asyncio.sleep(0.05)  # stands in for talking to a mail server
    say(f"sent welcome email to {job.data['to']}")
    return {"status": "sent"}


class Stopper:
    """SIGINT/SIGTERM handling: the first signal asks for a normal shutdown, the second for
    a hard one."""

    def __init__(self) -> None:
        self.requested = asyncio.Event()
        self.signals: list[str] = []
        self.queue: JobQueue | None = None
        self._hard: asyncio.Task[None] | None = None

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self.on_signal, sig)
            except NotImplementedError:  # Windows: no loop signal handlers
                signal.signal(sig, lambda s, _f: loop.call_soon_threadsafe(self.on_signal, s))

    def on_signal(self, sig: int) -> None:
        self.signals.append(signal.Signals(sig).name)
        if len(self.signals) == 1:
            self.requested.set()
        elif self.queue is not None and self._hard is None:
            say(f"received {self.signals[-1]} again; shutting down (hard)")
            self._hard = asyncio.create_task(self.queue.shutdown("hard"))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", action="store_true", help="exit once the demo jobs are done")
    parser.add_argument("--jobs", type=int, default=3, help="demo jobs to submit first")
    args = parser.parse_args()

    stopper = Stopper()
    stopper.install()
    db, close = database()
    jc = JobCollection.from_database(db, "worker")
    await jc.start_job_server()
    try:
        ids: list[Any] = []
        for n in range(1, args.jobs + 1):
            job = jc.create_job("sendEmail", {"to": f"user{n}@example.com"}).retry(2, wait=5)
            ids.append(await job.save())
        say(f"submitted {len(ids)} demo jobs")

        queue = jc.process_jobs("sendEmail", send_email, concurrency=2, work_timeout=30)
        stopper.queue = queue
        say("worker started: sendEmail jobs, concurrency 2")
        if args.demo:
            await wait_for_completion(jc, ids, stopper.requested)
            if not stopper.requested.is_set():
                say(f"all {len(ids)} demo jobs done; shutting down (normal)")
        else:
            say("waiting for jobs; press Ctrl-C (or send SIGTERM) to stop")
            await stopper.requested.wait()
        if stopper.signals:
            say(f"received {stopper.signals[0]}; shutting down (normal)")
        await queue.shutdown("normal")

        counts = Counter(
            doc["status"]
            for doc in await jc.collection.find({"_id": {"$in": ids}}, {"status": 1}).to_list(None)
        )
        say(f"stopped: {counts['completed']} completed, {counts['failed']} failed")
        if args.demo:
            await jc.remove_jobs(ids)
    finally:
        await jc.shutdown_job_server(timeout=0)
        await jc.close()
        await close()


async def wait_for_completion(jc: JobCollection, ids: list[Any], stop: asyncio.Event) -> None:
    """Until every id is completed or failed (checked whenever a job finishes), or a signal."""
    finished = asyncio.Event()

    async def check(_event: Any) -> None:
        done = await jc.collection.count_documents(
            {"_id": {"$in": ids}, "status": {"$in": ["completed", "failed"]}}
        )
        if done == len(ids):
            finished.set()

    jc.events.on("jobDone", check)
    jc.events.on("jobFail", check)
    await check(None)
    waiters = [asyncio.create_task(finished.wait()), asyncio.create_task(stop.wait())]
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    for waiter in waiters:
        waiter.cancel()


if __name__ == "__main__":
    # A worker process's entry point tunes the garbage collector (README, "Running workers"):
    # what start-up allocated is never scanned again, and young objects are collected less
    # often (up to a quarter of the client CPU at large batches; never done by the library).
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    asyncio.run(main())
