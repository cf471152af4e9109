"""Async, thread and process workers on the same jobs (issue 25): a no-op workload and a
CPU-bound one, in one run, through pymongo's real driver against the wire stand-in
(tests/wire_server.py) in a process of its own (or a real server with --uri).

    python benchmarks/executors.py              # 300 no-op and 40 CPU-bound jobs a run, ~5 min
    python benchmarks/executors.py --quick      # a smoke run (under a minute)
    python benchmarks/executors.py --workload cpu   # the CPU-bound cases only (~2 min)
    python benchmarks/executors.py --uri mongodb://HOST:27017

The three workers of a workload do the same thing: an `async def` on the event loop, a plain
function in the queue's threads (`process_jobs(worker)`), and the same plain function in the
queue's child processes (`process_jobs(worker, executor="process")`). The no-op worker
returns None; the CPU-bound one runs a pure-Python loop of SPIN iterations (its CPU time is
printed first) and returns a number.

Each run, on a fresh collection (indexes made before the measurement): the queue is made and
warmed up with one job per worker slot at once (a process pool starts its children then, as
it would once in a worker's life), then N jobs are stored with `save_jobs`, and the
measurement covers the queue claiming, running and completing them all (`trigger()`, then
`drain()` until none is left). The queue has no polling and no wake-up, concurrency c,
payload 1, no prefetch. Figures are medians over the repeats, the executors of a case run in
rotating order so that the machine's drift hits them alike:

- jobs/s: wall time, the stand-in's work included (so this is the throughput here);
- CPU per job in this process (the queue, the driver, the event loop, the threads) and in the
  pool's children (read from /proc/<pid>/stat while they live: Linux), and the stand-in's;
- commands per job (pymongo command monitoring).

The targets: a thread worker within 1.5x of an async one on no-op jobs (jobs/s), and a
process pool scaling CPU-bound jobs with the cores (jobs/s at c=cores against c=1). As that
depends on cores nothing else uses, the run starts and ends by measuring how many there are
("free cores": CORES processes running the loop at once against one alone).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from wire import Bench, Sample, by_name, machine, server, table

from jobcollection import Job, JobCollection, SystemClock

JOB_TYPE = "bench"
SPIN = 1_500_000
"""Iterations of the CPU-bound worker's loop (about 0.1 s of CPU on a laptop of 2024)."""
EXECUTORS = ("async", "thread", "process")
CORES = os.cpu_count() or 1


def spin(n: int) -> int:
    """A pure-Python loop: CPU-bound, holding the GIL throughout."""
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


# The workers, at the top level of the module so that a child process can load them.


async def noop_async(job: Job) -> None:
    return None


def noop(job: Any) -> None:
    return None


async def cpu_async(job: Job) -> int:
    return spin(SPIN)  # blocks the event loop for the whole call


def cpu(job: Any) -> int:
    return spin(SPIN)


WORKERS: dict[str, dict[str, Callable[[Any], Any]]] = {
    "no-op": {"async": noop_async, "thread": noop, "process": noop},
    "cpu": {"async": cpu_async, "thread": cpu, "process": cpu},
}


@dataclass(frozen=True)
class Case:
    workload: str
    concurrency: int

    def __str__(self) -> str:
        return f"{self.workload} c={self.concurrency}"


CASES = [
    Case("no-op", 1),
    Case("no-op", 8),
    Case("cpu", 1),
    Case("cpu", CORES),
]


def children_cpu_s() -> float:
    """CPU seconds used so far by this process's live child processes (the pool's; the
    stand-in is a subprocess, not listed), from /proc/<pid>/stat."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for child in multiprocessing.active_children():
        try:
            with open(f"/proc/{child.pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


@dataclass(frozen=True)
class Run:
    sample: Sample
    children_cpu_s: float

    @property
    def jobs_per_s(self) -> float:
        return self.sample.jobs / self.sample.wall_s

    @property
    def children_us(self) -> float:
        return self.children_cpu_s / self.sample.jobs * 1e6


async def processing(bench: Bench, case: Case, executor: str, n: int) -> Run:
    """A queue of this executor on n stored jobs of the case's workload, after a warm-up."""
    collection = bench.collection()
    jc = JobCollection(collection, clock=SystemClock())
    await jc.start_job_server()  # creates the indexes, outside the measurement
    queue = jc.process_jobs(
        JOB_TYPE,
        WORKERS[case.workload][executor],
        concurrency=case.concurrency,
        poll_interval=None,
        wakeup=False,
        executor="process" if executor == "process" else None,
    )

    async def run_all() -> None:
        """Claim, run and complete every stored job. (settle() first: a trigger() that comes
        as a claim ends can be lost, claims.py.)"""
        while True:
            await queue.settle()
            queue.trigger()
            await queue.drain()
            if not await collection.count_documents({"status": {"$ne": "completed"}}):
                return

    try:
        make = jc.create_job
        await jc.save_jobs([make(JOB_TYPE, {"warm": i}) for i in range(case.concurrency)])
        await asyncio.wait_for(run_all(), timeout=300)  # one call per slot at once
        await jc.save_jobs([make(JOB_TYPE, {"i": i}) for i in range(n)])
        before = children_cpu_s()
        sample = await bench.measure(n, lambda: asyncio.wait_for(run_all(), timeout=900))
        children = children_cpu_s() - before
    finally:
        await queue.shutdown("soft", quiet=True)
    left = await collection.count_documents({"status": {"$ne": "completed"}})
    assert left == 0, f"{left} jobs not completed"
    await jc.shutdown_job_server(timeout=0)
    await jc.close()
    await collection.drop()
    return Run(sample, children)


@dataclass(frozen=True)
class Figures:
    """The medians of one executor's runs of a case."""

    runs: list[Run]

    @property
    def jobs_per_s(self) -> float:
        return statistics.median(r.jobs_per_s for r in self.runs)

    @property
    def parent_us(self) -> float:
        return statistics.median(r.sample.client_us for r in self.runs)

    @property
    def children_us(self) -> float:
        return statistics.median(r.children_us for r in self.runs)

    @property
    def server_us(self) -> float | None:
        values = [r.sample.server_us for r in self.runs if r.sample.server_us is not None]
        return statistics.median(values) if values else None

    @property
    def typical(self) -> Sample:
        """The sample of median wall time (its commands are shown)."""
        return sorted((r.sample for r in self.runs), key=lambda s: s.wall_s)[len(self.runs) // 2]

    def spread(self) -> str:
        rates = [r.jobs_per_s for r in self.runs]
        return f"{min(rates):,.1f}-{max(rates):,.1f}"


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def measure_case(bench: Bench, case: Case, n: int, repeats: int) -> dict[str, Figures]:
    """Every executor on the case, after a warm-up run each, in rotating order."""
    for executor in EXECUTORS:
        await processing(bench, case, executor, max(4, n // 10))
    found: dict[str, list[Run]] = {e: [] for e in EXECUTORS}
    for r in range(repeats):
        order = EXECUTORS[r % len(EXECUTORS) :] + EXECUTORS[: r % len(EXECUTORS)]
        for executor in order:
            found[executor].append(await processing(bench, case, executor, n))
    figures = {e: Figures(runs) for e, runs in found.items()}
    log(f"  {case}: " + ", ".join(f"{e} {f.jobs_per_s:,.1f} jobs/s" for e, f in figures.items()))
    return figures


async def run(uri: str, jobs: int, cpu_jobs: int, repeats: int, workload: str) -> None:
    bench = Bench(uri)
    results: dict[Case, dict[str, Figures]] = {}
    try:
        for case in CASES:
            if workload not in ("all", case.workload):
                continue
            n = jobs if case.workload == "no-op" else cpu_jobs
            results[case] = await measure_case(bench, case, n, repeats)
    finally:
        await bench.close()
    rows = []
    for case, figures in results.items():
        base = figures["async"].jobs_per_s
        for executor, f in figures.items():
            server_us = f.server_us
            rows.append(
                [
                    str(case),
                    executor,
                    f"{f.jobs_per_s:,.1f} ({f.spread()})",
                    f"{f.jobs_per_s / base:.2f}x",
                    f"{f.parent_us:,.0f}",
                    f"{f.children_us:,.0f}",
                    "-" if server_us is None else f"{server_us:,.0f}",
                    f"{f.typical.commands_per_job:.3f}",
                    by_name(f.typical.commands, f.typical.jobs),
                ]
            )
    header = [
        "workload",
        "executor",
        "jobs/s (range)",
        "vs async",
        "this process CPU us/job",
        "children CPU us/job",
        "stand-in CPU us/job",
        "commands/job",
        "commands per job, by name",
    ]
    print(table(rows, header))
    print()
    for case, figures in results.items():
        if case.workload != "no-op":
            continue
        ratio = figures["async"].jobs_per_s / figures["thread"].jobs_per_s
        met = "met" if ratio <= 1.5 else "NOT met"
        print(f"{case}: async/thread jobs/s {ratio:.2f}x (target <= 1.5x: {met})")
    one, many = Case("cpu", 1), Case("cpu", CORES)
    if many != one and one in results:
        scale = results[many]["process"].jobs_per_s / results[one]["process"].jobs_per_s
        thread = results[many]["thread"].jobs_per_s / results[one]["thread"].jobs_per_s
        print(
            f"cpu: process c={CORES} / c=1 jobs/s {scale:.2f}x on {CORES} cores (threads "
            f"{thread:.2f}x; target: about {CORES}x)"
        )


def free_cores() -> float:
    """How many cores this machine gives to CPU-bound processes now: CORES processes each
    running the CPU-bound loop at once, against one alone (CORES if nothing else runs)."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(CORES, mp_context=context) as pool:
        list(pool.map(spin, [1] * CORES))  # started and warm
        start = time.perf_counter()
        pool.submit(spin, SPIN * 2).result()
        alone = time.perf_counter() - start
        start = time.perf_counter()
        list(pool.map(spin, [SPIN * 2] * CORES))
        together = time.perf_counter() - start
    return CORES * alone / together


def spin_ms() -> float:
    """The CPU-bound worker's CPU time, in milliseconds (the best of three)."""
    times = []
    for _ in range(3):
        start = time.process_time()
        spin(SPIN)
        times.append(time.process_time() - start)
    return min(times) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uri", help="a real MongoDB instead of the wire stand-in")
    parser.add_argument("--jobs", type=int, default=300, help="no-op jobs per run")
    parser.add_argument("--cpu-jobs", type=int, default=40, help="CPU-bound jobs per run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="60 and 8 jobs, 1 repeat")
    parser.add_argument("--workload", choices=["all", "no-op", "cpu"], default="all")
    args = parser.parse_args(argv)
    jobs, cpu_jobs, repeats = (60, 8, 1) if args.quick else (args.jobs, args.cpu_jobs, args.repeats)
    with server(args.uri) as uri:
        where = args.uri or "the wire stand-in (tests/wire_server.py), its own process"
        print(
            f"{jobs} no-op and {cpu_jobs} CPU-bound jobs per run, medians of {repeats} runs of "
            f"each executor after a warm-up; a CPU-bound job: {spin_ms():.0f} ms of CPU "
            f"({SPIN:,} iterations)"
        )
        print(f"server: {where}; client: {machine()}")
        print(f"at the start: load average {os.getloadavg()[0]:.1f}, {free_cores():.1f} free cores")
        asyncio.run(run(uri, jobs, cpu_jobs, repeats, args.workload))
        print(f"at the end: load average {os.getloadavg()[0]:.1f}, {free_cores():.1f} free cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
