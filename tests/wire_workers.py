"""A plain Python worker process on a MongoDB database, for tests/test_processes_db.py: a
JobCollection with its job server (passes every 0.2 s) and one `process_jobs` queue, as an
application would write it, without the CLI.

    python tests/wire_workers.py URI DATABASE TYPE NAME [LEASE]

It prints "ready NAME" once working, "done NAME ID" for each job it completed (flushed, so a
test reading its output knows where it is), and, after SIGTERM, "stopped NAME" and exits 0.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

from pymongo import AsyncMongoClient

from jobcollection import Job, JobCollection


async def main(uri: str, database: str, job_type: str, name: str, lease: str = "10") -> None:
    """LEASE: seconds of the job server's lease (see JobCollection's server_lease)."""
    client: Any = AsyncMongoClient(uri, tz_aware=False)
    jc = JobCollection.from_database(client[database], "queue", server_lease=float(lease))
    jc.promote(0.2)
    await jc.start_job_server()

    async def worker(job: Job) -> None:
        await job.log(f"{name} ran it")
        if await job.done({"by": name}):  # the report was applied: say so
            print(f"done {name} {job.id}", flush=True)

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    queue = jc.process_jobs(job_type, worker, concurrency=2, poll_interval=0.2)
    print(f"ready {name}", flush=True)
    await stop.wait()
    await queue.shutdown("soft", quiet=True)
    await jc.shutdown_job_server(timeout=0)
    await jc.close()
    await client.close()
    print(f"stopped {name}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
