"""A remote worker: a queue on a machine with no database credentials, only a URL and a token.

Needs: `pip install -e ".[memory,remote]"`.
Run:    python examples/remote_worker.py --demo
            serves a JobCollection (in memory) on 127.0.0.1 with uvicorn, connects a worker to
            it over HTTP as another machine would, submits 3 jobs, exits once they are done
        JOBCOLLECTION_TOKEN=... python examples/remote_worker.py --url http://host:8000
            works on `sendEmail` jobs of a running `jobcollection serve` until Ctrl-C
Prints: for --demo, the server's address, one line per email "sent", then the jobs' statuses
        as the server stored them and how many HTTP requests the worker made.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
from typing import Any

from jobcollection import Job, JobCollection
from jobcollection.remote import RemoteJobCollection, TokenAuth, create_app, new_token


def say(line: str) -> None:
    print(line, flush=True)


async def send_email(job: Job) -> dict[str, str]:
    """The worker, exactly as it would be for a local queue."""
    await job.log(f"sending to {job.data['to']}")
    say(f"sent welcome email to {job.data['to']}")
    return {"status": "sent"}


async def work(url: str, token: str, stop: asyncio.Event) -> int:
    """The worker machine's whole program: connect, process jobs until told to stop."""
    async with RemoteJobCollection(url, token=token) as jc:
        async with jc.process_jobs("sendEmail", send_email, concurrency=2, payload=1):
            say(f"worker connected to {url}: sendEmail jobs, concurrency 2")
            await stop.wait()
        return jc.service.requests


async def demo() -> None:
    """The server side and a worker in one process, talking HTTP over loopback."""
    import uvicorn

    from jobcollection.testing import memory_database

    jc = JobCollection.from_database(memory_database("remote_example"))
    await jc.start_job_server()
    token = new_token()
    auth = TokenAuth.from_tokens({token: "worker-1"})
    jc.allow(worker=["worker-1"])  # a worker may claim and report, not create or cancel

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(jc, auth=auth), log_level="warning"))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    say(f"serving the remote API on {url}")

    ids = [
        await jc.create_job("sendEmail", {"to": f"user{n}@example.com"}).save() for n in range(1, 4)
    ]
    finished = asyncio.Event()

    async def check(_event: Any) -> None:
        done = await jc.collection.count_documents({"_id": {"$in": ids}, "status": "completed"})
        if done == len(ids):
            finished.set()

    jc.events.on("jobDone", check)
    requests = await asyncio.gather(work(url, token, finished), finished.wait())
    for job in await jc.get_jobs(ids):
        say(f"{job.data['to']}: {job.doc.status}, result {job.doc.result}")
    say(f"the worker made {requests[0]} HTTP requests")
    server.should_exit = True
    await serving
    await jc.shutdown_job_server(timeout=0)
    await jc.close()


async def remote(url: str) -> None:
    token = os.environ.get("JOBCOLLECTION_TOKEN")
    if not token:
        raise SystemExit("set JOBCOLLECTION_TOKEN to the worker's token")
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await work(url, token, stop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", action="store_true", help="serve, work and exit")
    parser.add_argument("--url", help="the remote API of a running `jobcollection serve`")
    args = parser.parse_args()
    if args.demo:
        asyncio.run(demo())
    elif args.url:
        asyncio.run(remote(args.url))
    else:
        parser.error("give --demo or --url")


if __name__ == "__main__":
    main()
