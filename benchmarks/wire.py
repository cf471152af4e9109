"""Client CPU per job through pymongo's real driver: jobcollection beside a naive raw-driver
queue, against the wire stand-in (tests/wire_server.py) running in a process of its own.

    python benchmarks/wire.py                 # 400 jobs per run, 3 repeats after a warm-up
    python benchmarks/wire.py --quick         # a smoke run (a few seconds)
    python benchmarks/wire.py --uri mongodb://HOST:27017   # the same against a real server
    python benchmarks/wire.py --set processing   # processing only, jobs stored before timing
    python benchmarks/wire.py --set enqueue      # save() / save_jobs() beside insert_one
    python benchmarks/wire.py --set all          # the three tables

The server's work (mongomock's, much slower than MongoDB's) happens in the other process, so
this process's CPU time is what a worker process spends per job: jobcollection (or the naive
loop), pymongo's command building, BSON and socket handling, and the event loop. Commands are
counted with pymongo command monitoring (every command started, getMore included). Wall time
is mostly the stand-in's and says little: compare CPU and commands.

Each scenario enqueues N jobs and runs them to completion with a worker that does nothing:
- naive: `insert_one` per job, then c coroutines looping `find_one_and_update` (claim, sorted
  by priority) and `update_one` (complete), as benchmarks/scenarios.py's baseline;
- jobcollection: `save_jobs` (one batch), then `jc.process_jobs` with concurrency c, payload p,
  prefetch f (no polling, no wake-up) until every job is stored as completed.

`--set processing` measures the processing alone, like with like: both sides store their N
jobs in bulk before the measurement starts (the naive loop with `insert_many`, jobcollection
with `save_jobs`), then only the claims and completions are timed. Its ratios are against the
naive loop at c=1 in the same run. It also times one `bson.encode` + `bson.decode` of a stored
job document, the reference for the payload-100 CPU target.

`--set enqueue` times storing N jobs: `insert_one` per job (naive), `job.save()` per job and
one `jc.save_jobs()` (both include creating the Jobs), with ratios against `insert_one`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bson
from pymongo import AsyncMongoClient, monitoring

from jobcollection import Job, JobCollection, SystemClock

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from scenarios import (
    QueueSettings,
    insert_naive_bulk,
    naive_doc,
    naive_worker,
    process_saved,
    save_bulk,
)

from wire_server import running

JOB_TYPE = "bench"


class Counts(monitoring.CommandListener):
    """Commands started on one database, by name."""

    def __init__(self, database: str) -> None:
        self.database = database
        self.by_name: Counter[str] = Counter()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.database_name == self.database:
            self.by_name[event.command_name] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        """Counted when started."""

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        """Counted when started."""


@dataclass(frozen=True)
class Sample:
    jobs: int
    wall_s: float
    client_cpu_s: float
    server_cpu_s: float | None
    commands: Counter[str]

    @property
    def client_us(self) -> float:
        return self.client_cpu_s / self.jobs * 1e6

    @property
    def server_us(self) -> float | None:
        return None if self.server_cpu_s is None else self.server_cpu_s / self.jobs * 1e6

    @property
    def commands_per_job(self) -> float:
        return sum(self.commands.values()) / self.jobs


class Bench:
    """A client on the server, a fresh collection per run, and the meters."""

    def __init__(self, uri: str) -> None:
        self.db_name = f"wire_bench_{uuid.uuid4().hex[:8]}"
        self.counts = Counts(self.db_name)
        self.client: Any = AsyncMongoClient(uri, event_listeners=[self.counts], tz_aware=False)
        self.db = self.client[self.db_name]
        self.runs = 0

    async def server_cpu_s(self) -> float | None:
        """The server's CPU seconds so far (serverStatus.extra_info, mongod on Linux)."""
        status = await self.client.admin.command("serverStatus")
        info = status.get("extra_info") or {}
        if "user_time_us" not in info:
            return None
        return (int(info["user_time_us"]) + int(info.get("system_time_us", 0))) / 1e6

    async def measure(self, n: int, work: Callable[[], Awaitable[None]]) -> Sample:
        server_before = await self.server_cpu_s()
        before = Counter(self.counts.by_name)
        cpu, wall = time.process_time(), time.perf_counter()
        await work()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        commands = Counter(self.counts.by_name)
        commands.subtract(before)
        server_after = await self.server_cpu_s()
        server = (
            None if server_before is None or server_after is None else server_after - server_before
        )
        return Sample(n, wall, cpu, server, +commands)

    def collection(self) -> Any:
        self.runs += 1
        return self.db[f"run{self.runs}.jobs"]

    async def close(self) -> None:
        await self.client.drop_database(self.db_name)
        await self.client.close()


async def naive(bench: Bench, n: int, concurrency: int) -> Sample:
    collection = bench.collection()
    await collection.create_index([("type", 1), ("status", 1), ("priority", 1)])

    async def work() -> None:
        for i in range(n):
            await collection.insert_one(naive_doc(i, JOB_TYPE))
        await asyncio.gather(*(naive_worker(collection, JOB_TYPE) for _ in range(concurrency)))

    sample = await bench.measure(n, work)
    assert await collection.count_documents({"status": {"$ne": "completed"}}) == 0
    await collection.drop()
    return sample


async def library(bench: Bench, n: int, concurrency: int, payload: int, prefetch: int) -> Sample:
    collection = bench.collection()
    jc = JobCollection(collection, clock=SystemClock())
    await jc.start_job_server()  # creates the indexes, outside the measurement
    seen = 0
    all_seen = asyncio.Event()

    async def worker(job_or_jobs: Job | list[Job]) -> None:
        nonlocal seen
        seen += len(job_or_jobs) if isinstance(job_or_jobs, list) else 1
        if seen >= n:
            all_seen.set()

    async def work() -> None:
        await jc.save_jobs([jc.create_job(JOB_TYPE, {"i": i}) for i in range(n)])
        queue = jc.process_jobs(
            JOB_TYPE,
            worker,
            concurrency=concurrency,
            payload=payload,
            prefetch=prefetch,
            poll_interval=None,
            wakeup=False,
        )
        await asyncio.wait_for(all_seen.wait(), timeout=900)
        await queue.shutdown("soft", quiet=True)  # every done() written

    sample = await bench.measure(n, work)
    assert await collection.count_documents({"status": {"$ne": "completed"}}) == 0
    await jc.shutdown_job_server(timeout=0)
    await jc.close()
    await collection.drop()
    return sample


async def naive_processing(bench: Bench, n: int, concurrency: int) -> Sample:
    """The naive workers alone: the n jobs are inserted in bulk before the measurement."""
    collection = bench.collection()
    await collection.create_index([("type", 1), ("status", 1), ("priority", 1)])
    await insert_naive_bulk(collection, n, JOB_TYPE)

    async def work() -> None:
        await asyncio.gather(*(naive_worker(collection, JOB_TYPE) for _ in range(concurrency)))

    sample = await bench.measure(n, work)
    assert await collection.count_documents({"status": {"$ne": "completed"}}) == 0
    await collection.drop()
    return sample


STORED_JOB: dict[str, Any] = {}  # one job document as save_jobs stored it, for the bson reference


async def library_processing(bench: Bench, n: int, settings: QueueSettings) -> Sample:
    """jobcollection's queue alone: the n jobs are saved in bulk before the measurement."""
    collection = bench.collection()
    jc = JobCollection(collection, clock=SystemClock())
    await jc.start_job_server()  # creates the indexes, outside the measurement
    await save_bulk(jc, n, JOB_TYPE)
    if not STORED_JOB:
        STORED_JOB.update(await collection.find_one({"type": JOB_TYPE}) or {})

    sample = await bench.measure(n, lambda: process_saved(jc, n, settings, JOB_TYPE))
    assert await collection.count_documents({"status": {"$ne": "completed"}}) == 0
    await jc.shutdown_job_server(timeout=0)
    await jc.close()
    await collection.drop()
    return sample


async def naive_insert_one(bench: Bench, n: int) -> Sample:
    collection = bench.collection()

    async def work() -> None:
        for i in range(n):
            await collection.insert_one(naive_doc(i, JOB_TYPE))

    sample = await bench.measure(n, work)
    await collection.drop()
    return sample


async def library_enqueue(bench: Bench, n: int, batched: bool) -> Sample:
    """save() per job, or one save_jobs(); creating the Jobs is measured too."""
    collection = bench.collection()
    jc = JobCollection(collection, clock=SystemClock())
    await jc.start_job_server()

    async def work() -> None:
        jobs = [jc.create_job(JOB_TYPE, {"i": i}) for i in range(n)]
        if batched:
            await jc.save_jobs(jobs)
        else:
            for job in jobs:
                await job.save()

    sample = await bench.measure(n, work)
    assert await collection.count_documents({}) == n
    await jc.shutdown_job_server(timeout=0)
    await jc.close()
    await collection.drop()
    return sample


def bson_round_trip_us(document: dict[str, Any], times: int = 20_000) -> float:
    """CPU microseconds of one bson.encode + bson.decode of the document."""
    encode, decode = bson.encode, bson.decode
    start = time.process_time()
    for _ in range(times):
        decode(encode(document))
    return (time.process_time() - start) / times * 1e6


SCENARIOS: list[tuple[str, str, Callable[[Bench, int], Awaitable[Sample]]]] = [
    ("naive", "c=1", lambda b, n: naive(b, n, 1)),
    ("naive", "c=10", lambda b, n: naive(b, n, 10)),
    ("jobcollection", "c=1 p=1 f=0", lambda b, n: library(b, n, 1, 1, 0)),
    ("jobcollection", "c=10 p=1 f=100", lambda b, n: library(b, n, 10, 1, 100)),
    ("jobcollection", "c=1 p=100 f=100", lambda b, n: library(b, n, 1, 100, 100)),
]

BULK = "bulk-inserted"
PROCESSING: list[tuple[str, str, Callable[[Bench, int], Awaitable[Sample]]]] = [
    ("naive", f"c=1 {BULK}", lambda b, n: naive_processing(b, n, 1)),
    (
        "jobcollection",
        f"c=1 p=1 f=0 {BULK}",
        lambda b, n: library_processing(b, n, QueueSettings(1, 1, 0)),
    ),
    ("naive", f"c=10 {BULK}", lambda b, n: naive_processing(b, n, 10)),
    (
        "jobcollection",
        f"c=10 p=1 f=100 {BULK}",
        lambda b, n: library_processing(b, n, QueueSettings(10, 1, 100)),
    ),
    (
        "jobcollection",
        f"c=1 p=100 f=100 {BULK}",
        lambda b, n: library_processing(b, n, QueueSettings(1, 100, 100)),
    ),
]

ENQUEUE: list[tuple[str, str, Callable[[Bench, int], Awaitable[Sample]]]] = [
    ("naive", "insert_one", naive_insert_one),
    ("jobcollection", "save() one by one", lambda b, n: library_enqueue(b, n, False)),
    ("jobcollection", "save_jobs()", lambda b, n: library_enqueue(b, n, True)),
]

SETS = {
    "end-to-end": [("vs naive c=1", SCENARIOS)],
    "processing": [(f"vs naive c=1 {BULK}", PROCESSING)],
    "enqueue": [("vs naive insert_one", ENQUEUE)],
}
SETS["all"] = [*SETS["end-to-end"], *SETS["processing"], *SETS["enqueue"]]


def median_sample(samples: list[Sample]) -> Sample:
    """The sample of median client CPU."""
    return sorted(samples, key=lambda s: s.client_cpu_s)[len(samples) // 2]


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def by_name(commands: Counter[str], jobs: int) -> str:
    return ", ".join(f"{k} {v / jobs:.3g}" for k, v in commands.most_common())


async def run_set(
    bench: Bench,
    jobs: int,
    repeats: int,
    baseline: str,
    scenarios: list[tuple[str, str, Callable[[Bench, int], Awaitable[Sample]]]],
) -> None:
    """Run each scenario (warm-up, then `repeats` times) and print a table, with ratios to
    the first scenario's median."""
    results: list[tuple[str, str, Sample, list[float]]] = []
    for name, settings, scenario in scenarios:
        await scenario(bench, max(20, jobs // 10))  # warm-up
        samples = [await scenario(bench, jobs) for _ in range(repeats)]
        best = median_sample(samples)
        spread = [s.client_us for s in samples]
        results.append((name, settings, best, spread))
        print(
            f"  {name} {settings}: {best.client_us:,.0f} us CPU/job "
            f"(range {min(spread):,.0f}-{max(spread):,.0f}), "
            f"{best.commands_per_job:.3f} commands/job",
            file=sys.stderr,
            flush=True,
        )
    first = results[0][2]
    rows = []
    for name, settings, s, _ in results:
        rows.append(
            [
                f"{name} {settings}",
                f"{s.client_us:,.0f}",
                f"{s.client_us / first.client_us:.2f}x",
                f"{s.commands_per_job:.3f}",
                f"{s.client_cpu_s / max(1, sum(s.commands.values())) * 1e6:,.0f}",
                "-" if s.server_us is None else f"{s.server_us:,.0f}",
                f"{s.jobs / s.wall_s:,.0f}",
                by_name(s.commands, s.jobs),
            ]
        )
    header = [
        "scenario",
        "client CPU us/job",
        baseline,
        "commands/job",
        "client CPU us/command",
        "server CPU us/job",
        "jobs/s",
        "commands per job, by name",
    ]
    print(table(rows, header))
    if scenarios is PROCESSING and STORED_JOB:
        reference = bson_round_trip_us(STORED_JOB)
        batched = results[-1][2]
        print(
            f"bson.encode + bson.decode of one stored job document ({len(bson.encode(STORED_JOB))}"
            f" bytes): {reference:.1f} us; {results[-1][0]} {results[-1][1]} client CPU "
            f"(library + driver + event loop) = {batched.client_us / reference:.1f}x that"
        )


async def run(uri: str, jobs: int, repeats: int, which: str = "end-to-end") -> None:
    bench = Bench(uri)
    try:
        for i, (baseline, scenarios) in enumerate(SETS[which]):
            if i:
                print()
            await run_set(bench, jobs, repeats, baseline, scenarios)
    finally:
        await bench.close()


def machine() -> str:
    import importlib.metadata as md

    return (
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"pymongo {md.version('pymongo')}, {platform.machine()}, {os.cpu_count()} CPUs"
    )


@contextmanager
def server(uri: str | None) -> Iterator[str]:
    if uri is not None:
        yield uri
        return
    with open(os.devnull, "w") as quiet, running(stderr=quiet) as started:
        yield started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uri", help="a real MongoDB instead of the wire stand-in")
    parser.add_argument("--jobs", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="100 jobs, 1 repeat")
    parser.add_argument(
        "--set",
        choices=sorted(SETS),
        default="end-to-end",
        help="end-to-end (default: enqueue + processing), processing (jobs stored in bulk "
        "before timing, both sides), enqueue, or all",
    )
    args = parser.parse_args(argv)
    jobs, repeats = (100, 1) if args.quick else (args.jobs, args.repeats)
    with server(args.uri) as uri:
        where = args.uri or "the wire stand-in (tests/wire_server.py), its own process"
        print(f"{jobs} jobs per run, median client CPU of {repeats} runs after a warm-up")
        print(f"server: {where}; client: {machine()}")
        asyncio.run(run(uri, jobs, repeats, args.set))
    return 0


if __name__ == "__main__":
    sys.exit(main())
