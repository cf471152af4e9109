"""How cost and memory grow with the size of the work, on the near-zero-cost dict store.

Run:    python benchmarks/scale.py            # ~3 min
        python benchmarks/scale.py --quick    # a smoke run (seconds)
Prints: three tables.
- memory: tracemalloc's peak while `save_jobs()` saves N jobs (beyond the caller's own list of
  Jobs) and what the client still holds after it, and how many Jobs, JobDocs and reports are
  alive after a JobQueue processed N jobs (what it keeps between jobs);
- queued: client CPU per job (us, outside the store) and commands per job to process 1,000 jobs
  while 0, 10,000 or 100,000 other ready jobs of another type wait in the collection;
- types: the same while the queue listens to 1, 10, 100 or 1,000 types.
The cost figures are the median of 3 runs after a warm-up run (the queue settings: concurrency
1, payload 100, prefetch 100).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

from backends import MemoryBackend

from jobcollection import Job, JobCollection, JobDoc, SystemClock
from jobcollection.local.reporting import Report

JOB_TYPE = "work"


async def _collection(backend: MemoryBackend) -> tuple[JobCollection, Any]:
    collection = await backend.collection()
    jc = JobCollection(collection, clock=SystemClock())
    await jc.start_job_server()
    return jc, collection


NOT_THE_STORE = [tracemalloc.Filter(False, "*dictstore.py")]
"""The store's documents are the database's memory, not the client's."""


def _client_bytes(snapshot: tracemalloc.Snapshot) -> int:
    return sum(stat.size for stat in snapshot.filter_traces(NOT_THE_STORE).statistics("filename"))


async def save_memory(n: int) -> tuple[float, float]:
    """KiB per job: the client's peak during save_jobs beyond the Jobs given (tracemalloc's
    peak less what the store kept: the database's memory), and what the client still holds
    afterwards beyond them (what the library kept)."""
    backend = MemoryBackend(store="dict")
    jc, _ = await _collection(backend)
    jobs = [jc.create_job(JOB_TYPE, {"i": i}) for i in range(n)]
    gc.collect()
    tracemalloc.start()
    base = _client_bytes(tracemalloc.take_snapshot())
    start, _ = tracemalloc.get_traced_memory()
    await jc.save_jobs(jobs)
    gc.collect()
    after, peak = tracemalloc.get_traced_memory()
    kept = _client_bytes(tracemalloc.take_snapshot()) - base
    tracemalloc.stop()
    store = (after - start) - kept
    await jc.close()
    return (peak - start - store) / n / 1024, max(0, kept) / n / 1024


def counting_worker(n: int) -> tuple[Callable[[list[Job]], Awaitable[None]], asyncio.Event]:
    """A worker that does nothing, and an event set once it has been given n jobs."""
    done = asyncio.Event()
    seen = 0

    async def worker(jobs: list[Job]) -> None:
        nonlocal seen
        seen += len(jobs)
        if seen >= n:
            done.set()

    return worker, done


def _alive(*types: type) -> int:
    """How many objects of these types are alive now."""
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, types))


async def queue_memory(n: int) -> int:
    """Jobs, job documents and reports still alive after a JobQueue processed n jobs (what it
    keeps between jobs; its memory is flat if this does not grow with n)."""
    backend = MemoryBackend(store="dict")
    jc, _ = await _collection(backend)
    await jc.save_jobs([jc.create_job(JOB_TYPE, {"i": i}) for i in range(n)])
    worker, done = counting_worker(n)
    queue = jc.process_jobs(
        JOB_TYPE, worker, payload=100, prefetch=100, poll_interval=None, wakeup=False
    )
    await done.wait()
    await queue.drain()
    alive = _alive(Job, JobDoc, Report)
    await queue.shutdown("soft", quiet=True)
    await jc.close()
    return alive


async def process(n: int, *, others: int = 0, types: int = 1) -> tuple[float, float]:
    """Client us per job and commands per job to process n jobs with `others` other ready
    jobs waiting and a queue listening to `types` types."""
    backend = MemoryBackend(store="dict")
    jc, _ = await _collection(backend)
    if others:
        await jc.save_jobs([jc.create_job("other", {"i": i}) for i in range(others)])
    listened = [JOB_TYPE, *(f"type{i}" for i in range(types - 1))]
    await jc.save_jobs([jc.create_job(JOB_TYPE, {"i": i}) for i in range(n)])
    worker, done = counting_worker(n)
    commands, inside = backend.commands, backend.backend_s
    started = time.perf_counter()
    queue = jc.process_jobs(
        listened, worker, payload=100, prefetch=100, poll_interval=None, wakeup=False
    )
    await done.wait()
    await queue.shutdown("soft", quiet=True)
    seconds = time.perf_counter() - started - (backend.backend_s - inside)
    used = backend.commands - commands
    await jc.close()
    return seconds / n * 1e6, used / n


async def median_of(
    runs: int, measure: Callable[[], Awaitable[tuple[float, float]]]
) -> tuple[float, float]:
    """The median of several runs' client us per job (the machine is shared: one run can
    be an outlier), with the commands per job (the same in every run)."""
    samples = [await measure() for _ in range(runs)]
    return statistics.median(us for us, _ in samples), samples[-1][1]


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join(
        [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)]
    )


async def main(quick: bool) -> None:
    sizes = [1_000, 10_000] if quick else [1_000, 10_000, 100_000]
    others = [0, 10_000] if quick else [0, 10_000, 100_000]
    types = [1, 10, 100] if quick else [1, 10, 100, 1_000]
    n = 200 if quick else 1_000
    await process(n)  # warm-up
    rows = []
    for size in sizes:
        peak, kept = await save_memory(size)
        held = await queue_memory(size)
        rows.append([f"{size:,}", f"{peak:.2f}", f"{kept:.3f}", f"{held:,}"])
    print("memory")
    print(
        table(
            [
                "jobs",
                "save_jobs: peak KiB per job",
                "KiB per job kept after",
                "queue: Jobs, JobDocs, reports alive after",
            ],
            rows,
        )
    )
    print("\nqueued: processing jobs while others wait")
    rows = []
    for count in others:
        us, commands = await median_of(3, lambda c=count: process(n, others=c))
        rows.append([f"{count:,}", f"{us:.0f}", f"{commands:.3f}"])
    print(table(["other ready jobs", "us/job", "commands/job"], rows))
    print("\ntypes: a queue listening to many types")
    rows = []
    for count in types:
        us, commands = await median_of(3, lambda c=count: process(n, types=c))
        rows.append([f"{count:,}", f"{us:.0f}", f"{commands:.3f}"])
    print(table(["types", "us/job", "commands/job"], rows))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    asyncio.run(main(parser.parse_args().quick))
