"""A remote worker against a local queue: HTTP requests per job and the throughput ratio.

    python benchmarks/remote.py                     # dict store, 5,000 jobs, 5 repeats
    python benchmarks/remote.py --rtt-ms 1          # ... the database 1 ms away (simulated)
    python benchmarks/remote.py --backend mongomock --jobs 1000
    python benchmarks/remote.py --quick             # smoke run (CI)

Both sides process the same workload on the same kind of backend, in one run: `--jobs` jobs
saved first, then a queue (concurrency 1, payload 100, prefetch 100, a worker that does
nothing) until every job is stored as completed. The local queue runs in this process on its
own JobCollection; the remote one runs in this process through `RemoteJobCollection`,
against `jobcollection`'s remote API served by uvicorn in a second process (on 127.0.0.1)
over a JobCollection on the same kind of backend, as a worker machine would use it. Printed
per side: jobs per second (median and range over the repeats), database commands per job
(the server's, for the remote side), and, for the remote side, HTTP requests per job; then
the remote/local throughput ratio (target: >= 0.5x) and requests per job (target: <= 0.05).
The naive baseline of a remote worker is one request per claim and one per report: 2.0
requests per job, and it is printed beside them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from backends import MemoryBackend

from jobcollection import Job, JobCollection, SystemClock

JOB_TYPE = "bench"
SETTINGS = {"concurrency": 1, "payload": 100, "prefetch": 100}


async def save(jc: Any, n: int) -> int:
    """Save n jobs (before the measurement); the save_jobs calls made."""
    calls = 0
    for start in range(0, n, 5000):
        jobs = [jc.create_job(JOB_TYPE, {"i": i}) for i in range(start, min(n, start + 5000))]
        await jc.save_jobs(jobs)
        calls += 1
    return calls


async def process(jc: Any, n: int) -> float:
    """Process n saved jobs with a queue of SETTINGS; the seconds it took."""
    seen = 0
    all_seen = asyncio.Event()

    async def worker(jobs: list[Job]) -> None:
        nonlocal seen
        seen += len(jobs)
        if seen >= n:
            all_seen.set()

    started = time.perf_counter()
    queue = jc.process_jobs(JOB_TYPE, worker, poll_interval=None, wakeup=False, **SETTINGS)
    await asyncio.wait_for(all_seen.wait(), timeout=600)
    await queue.shutdown("soft", quiet=True)  # returns once every done() has been answered
    return time.perf_counter() - started


# --- the server process ---------------------------------------------------------------------


async def serve(store: str, rtt_ms: float) -> None:
    """Serve a JobCollection on a fresh backend; print its URL; answer `count` (commands and
    jobs not completed) and `reset` on stdin until it closes."""
    import socket

    import uvicorn

    from jobcollection.remote import TokenAuth, create_app

    backend = MemoryBackend(rtt_ms=rtt_ms, store=store)
    collection = await backend.collection()
    jc = JobCollection(collection, clock=SystemClock())
    await jc.start_job_server()
    jc.allow(admin=["bench"])
    app = create_app(jc, auth=TokenAuth.from_tokens({"bench-token": "bench"}))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    print(f"url http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).decode().strip():
        if line == "count":
            left = await collection.count_documents({"status": {"$ne": "completed"}})
            cpu = time.process_time()
            print(json.dumps({"commands": backend.commands, "left": left, "cpu": cpu}), flush=True)
        elif line == "reset":
            await collection.delete_many({})
            print("{}", flush=True)
    server.should_exit = True
    await serving


class Server:
    """The server process, driven through its stdin."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, store: str, rtt_ms: float) -> tuple[Server, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--serve",
            "--backend",
            store,
            "--rtt-ms",
            str(rtt_ms),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        server = cls(process)
        url = (await server.line()).split()[1]
        return server, url

    async def line(self) -> str:
        assert self.process.stdout is not None
        return (await asyncio.wait_for(self.process.stdout.readline(), 60)).decode().strip()

    async def ask(self, command: str) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(command.encode() + b"\n")
        await self.process.stdin.drain()
        answer: dict[str, Any] = json.loads(await self.line())
        return answer

    async def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        await self.process.wait()


# --- the measurement ------------------------------------------------------------------------


async def local_run(store: str, rtt_ms: float, n: int) -> dict[str, float]:
    backend = MemoryBackend(rtt_ms=rtt_ms, store=store)
    collection = await backend.collection()
    jc = JobCollection(collection, clock=SystemClock())
    await jc.start_job_server()
    await save(jc, n)
    before = backend.commands
    seconds = await process(jc, n)
    left = await collection.count_documents({"status": {"$ne": "completed"}})
    assert left == 0, f"{left} jobs not completed"
    await jc.shutdown_job_server(timeout=0)
    await jc.close()
    return {"jobs_per_s": n / seconds, "commands_per_job": (backend.commands - before) / n}


async def remote_run(server: Server, url: str, n: int) -> dict[str, float]:
    from jobcollection.remote import RemoteJobCollection

    await server.ask("reset")
    async with RemoteJobCollection(url, token="bench-token") as jc:
        await save(jc, n)
        before = await server.ask("count")
        requests = jc.service.requests
        cpu = time.process_time()
        seconds = await process(jc, n)
        cpu = time.process_time() - cpu
        requests = jc.service.requests - requests
    counted = await server.ask("count")
    assert counted["left"] == 0, f"{counted['left']} jobs not completed"
    return {
        "jobs_per_s": n / seconds,
        "commands_per_job": (counted["commands"] - before["commands"]) / n,
        "requests_per_job": requests / n,
        "worker_cpu_us_per_job": cpu / n * 1e6,
        "server_cpu_us_per_job": (counted["cpu"] - before["cpu"]) / n * 1e6,
    }


def summary(samples: list[dict[str, float]], key: str) -> str:
    values = [s[key] for s in samples]
    return f"{statistics.median(values):,.3f} ({min(values):,.3f}-{max(values):,.3f})"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["dict", "mongomock"], default="dict")
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--rtt-ms", type=float, default=0.0, help="simulated database round trip")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="500 jobs, 1 repeat")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        await serve(args.backend, args.rtt_ms)
        return
    n, repeats = (500, 1) if args.quick else (args.jobs, args.repeats)
    rtt = f", database round trip {args.rtt_ms:g} ms" if args.rtt_ms else ""
    print(
        f"{n} jobs, queue {SETTINGS}, backend {args.backend}{rtt}, {repeats} repeats (+1 warm-up)"
    )
    server, url = await Server.start(args.backend, args.rtt_ms)
    try:
        local: list[dict[str, float]] = []
        remote: list[dict[str, float]] = []
        for repeat in range(repeats + 1):
            one_local = await local_run(args.backend, args.rtt_ms, n)
            one_remote = await remote_run(server, url, n)
            if repeat:  # the first round warms both sides up
                local.append(one_local)
                remote.append(one_remote)
    finally:
        await server.stop()
    print(f"local queue:  jobs/s {summary(local, 'jobs_per_s')}")
    print(f"              commands/job {summary(local, 'commands_per_job')}")
    print(f"remote queue: jobs/s {summary(remote, 'jobs_per_s')}")
    print(f"              commands/job (server) {summary(remote, 'commands_per_job')}")
    print(f"              HTTP requests/job {summary(remote, 'requests_per_job')}")
    print(f"              worker CPU us/job {summary(remote, 'worker_cpu_us_per_job')}")
    print(f"              server CPU us/job {summary(remote, 'server_cpu_us_per_job')}")
    print("naive remote worker (one request per claim and per report): 2.000 requests/job")
    ratio = statistics.median(r["jobs_per_s"] for r in remote) / statistics.median(
        r["jobs_per_s"] for r in local
    )
    print(f"remote/local throughput: {ratio:.2f}x (target >= 0.5x); requests/job target <= 0.05")


if __name__ == "__main__":
    asyncio.run(main())
