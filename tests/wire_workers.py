"""A plain Python worker process on a MongoDB database, for tests/test_processes_db.py: a
JobCollection with its job server (passes every 0.2 s) and one `process_jobs` queue, as an
application would write it, without the CLI.

    python tests/wire_workers.py URI DATABASE TYPES NAME [LEASE]
        [--concurrency N] [--worker-ttl SECONDS] [--watch-pause]

TYPES: one type, or several separated by commas. LEASE: seconds of the job server's lease
(JobCollection's `server_lease`, default 10); `--worker-ttl`: JobCollection's `worker_ttl`.
It prints "ready NAME" once working, "started NAME ID" when a job's work begins, "done NAME
ID" for each job it completed (flushed, so a test reading its output knows where it is),
and, after SIGTERM, "stopped NAME" and exits 0. With `--watch-pause` it asks what is paused
every WATCH_S seconds (as an application showing it would; the answer also renews this
process's copy, which its claims read) and prints "paused NAME" or "resumed NAME" whenever
its types become paused or claimable again.

A job's work is what its data says (`work`): hold `hold` seconds, then, with `gate`, wait
until that file exists; so a test decides when the jobs it gave end, and the limits and
pauses under test bind while they run. `held` does the same work for
`python -m jobcollection worker wire_workers:held` (printing "started ID" and "worked ID").
`stepped`, for `python -m jobcollection worker wire_workers:stepped`, does a job's items one
by one with a checkpointed position (`job.iterate`), printing "did ID I" for each.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient

from jobcollection import Job, JobCollection

GATE_S = 0.05
"""How often a job waiting for its gate looks for the file (the job's work, not a test's
wait)."""
WATCH_S = 0.1
"""How often `--watch-pause` asks what is paused."""


def say(line: str) -> None:
    print(line, flush=True)


async def work(data: Mapping[str, Any]) -> None:
    """A job's work: `hold` seconds, then until the file `gate` exists (each if given)."""
    hold = data.get("hold")
    if isinstance(hold, int | float):
        await asyncio.sleep(hold)
    gate = data.get("gate")
    if isinstance(gate, str):
        while True:
            if await asyncio.to_thread(os.path.exists, gate):
                return
            await asyncio.sleep(GATE_S)


async def held(job: Job) -> dict[str, Any]:
    """A worker function for the CLI: the job's work, said at its start and end; the CLI
    completes the job with the result."""
    say(f"started {job.id}")
    await work(job.data)
    say(f"worked {job.id}")
    return {"by": os.getpid()}


async def stepped(job: Job) -> dict[str, Any]:
    """A worker function for the CLI: items 0 to `count` - 1 of the job's data, after the
    position an earlier attempt checkpointed (stored at once after each item). An item's
    work is idempotent: it writes the file `item-ID-I` (again, if the item is done again);
    each time it is done, "did ID I" is printed. The job's first attempt stops after doing
    item `stop_at` until its process is killed."""
    first = job.doc.retried == 1
    async for i in job.iterate(range(job.data["count"]), flush=True):
        await asyncio.to_thread(Path(f"item-{job.id}-{i}").write_text, str(os.getpid()))
        say(f"did {job.id} {i}")
        if first and i == job.data["stop_at"]:
            await asyncio.Event().wait()  # until the process is killed
    return {"by": os.getpid()}


async def watch_pause(jc: JobCollection, types: Sequence[str], name: str) -> None:
    """Print "paused NAME" when one of `types` becomes paused, "resumed NAME" when none is."""
    was = False
    while True:
        paused = await jc.paused_types()
        now = any(paused.excludes(t) for t in types)
        if now != was:
            say(f"{'paused' if now else 'resumed'} {name}")
            was = now
        await asyncio.sleep(WATCH_S)


async def main(args: argparse.Namespace) -> None:
    client: Any = AsyncMongoClient(args.uri, tz_aware=False)
    jc = JobCollection.from_database(
        client[args.database],
        "queue",
        server_lease=args.lease,
        worker_ttl=args.worker_ttl,
    )
    jc.promote(0.2)
    await jc.start_job_server()
    name = args.name
    types = args.types.split(",")

    async def worker(job: Job) -> None:
        say(f"started {name} {job.id}")
        await work(job.data)
        await job.log(f"{name} ran it")
        if await job.done({"by": name}):  # the report was applied: say so
            say(f"done {name} {job.id}")

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    queue = jc.process_jobs(types, worker, concurrency=args.concurrency, poll_interval=0.2)
    watcher = asyncio.create_task(watch_pause(jc, types, name)) if args.watch_pause else None
    say(f"ready {name}")
    await stop.wait()
    if watcher is not None:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
    await queue.shutdown("soft", quiet=True)
    await jc.shutdown_job_server(timeout=0)
    await jc.close()
    await client.close()
    say(f"stopped {name}")


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="a worker process for the process tests")
    parser.add_argument("uri")
    parser.add_argument("database")
    parser.add_argument("types", help="a type, or types separated by commas")
    parser.add_argument("name")
    parser.add_argument("lease", nargs="?", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--worker-ttl", type=float, default=30.0)
    parser.add_argument("--watch-pause", action="store_true")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(arguments()))
