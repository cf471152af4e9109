"""What a global concurrency limit that never binds costs (issue 22): a queue processing jobs
of a type with a `ConcurrencyLimit` far above its concurrency, beside the same queue on the
same jobs with no limit, in the same run, through pymongo's real driver against the wire
stand-in (tests/wire_server.py) in a process of its own (or a real server with --uri).

    python benchmarks/concurrency.py              # 300 jobs per run, 3 repeats, ~2 min
    python benchmarks/concurrency.py --quick      # a smoke run (a few seconds)
    python benchmarks/concurrency.py --uri mongodb://HOST:27017
    python benchmarks/concurrency.py --profile    # cProfile the defaults case, both variants

Each case stores its N jobs in bulk (`save_jobs`) before the measurement, then times a queue
(`jc.process_jobs`, a worker that does nothing, no polling, no wake-up) until every job is
stored as completed: the claims and completions alone, as `wire.py --set processing` does.
The limited variant differs only in `set_concurrency_limit(type, ConcurrencyLimit(LIMIT))`
made before the measurement. The cases:

- the queue's defaults (concurrency 1, payload 1, no prefetch);
- concurrency 10 (payload 1, no prefetch);
- concurrency 10 with `group_by="data.tenant"` over GROUPS tenants (both variants store the
  same jobs, the tenant in their data);
- concurrency 10 with a prefetch of 100 (wire.py's batched setting: claims of many jobs).

The two variants of a case run alternately (none, limit, limit, none, ...) so that the
machine's drift hits both alike. A case's figures are medians over the repeats: jobs/s (wall
time: the stand-in's work included, so this is the throughput), client CPU per job (this
process: jobcollection, the driver, the event loop) and the stand-in's CPU per job, and the
commands per job by name and collection (pymongo command monitoring). The ratio limit/none
of jobs/s is the figure issue 22 asks for (target >= 0.9x). The naive raw-driver loop at
c=1 on bulk-inserted jobs (wire.py's baseline) is measured in the same run for reference.

`--profile` runs one case (`--case`, default the defaults) once per variant under cProfile
timed by CPU time (the measured part only) and prints where this process's CPU went per job:
the limits' own code (local/slots.py, rules/concurrency.py), the rest of jobcollection,
pymongo and bson, socket sends, asyncio, and the CPU inside the claim path's steps per claim.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pymongo import AsyncMongoClient
from scenarios import QueueSettings, process_saved
from wire import Bench, Counts, Sample, by_name, machine, naive_processing, server, table

from jobcollection import ConcurrencyLimit, JobCollection, SystemClock

JOB_TYPE = "bench"
LIMIT = 1_000
"""max_running of the limited variant: far above every case's concurrency, so it never binds."""
GROUPS = 5
"""The tenants of the group_by case."""


class ByCollection(Counts):
    """Commands started on one database, by `name collection` (the claim lock's commands go
    to `<root>.limits`, the claims and reports to the jobs)."""

    def started(self, event: Any) -> None:
        if event.database_name != self.database:
            return
        name = event.command_name
        target = event.command.get("collection" if name == "getMore" else name)
        where = str(target).rsplit(".", 1)[-1] if isinstance(target, str) else "-"
        self.by_name[f"{name} {where}"] += 1


class CountingBench(Bench):
    """wire.Bench, counting commands by collection too."""

    def __init__(self, uri: str) -> None:
        self.db_name = f"concurrency_bench_{uuid.uuid4().hex[:8]}"
        self.counts = ByCollection(self.db_name)
        self.client: Any = AsyncMongoClient(uri, event_listeners=[self.counts], tz_aware=False)
        self.db = self.client[self.db_name]
        self.runs = 0


@dataclass(frozen=True)
class Case:
    name: str
    settings: QueueSettings
    group_by: str | None = None

    def data(self, i: int) -> dict[str, Any]:
        return {"i": i, "tenant": f"t{i % GROUPS}"} if self.group_by else {"i": i}


CASES = [
    Case("defaults: c=1 p=1 f=0", QueueSettings(1, 1, 0)),
    Case("c=10 p=1 f=0", QueueSettings(10, 1, 0)),
    Case(f"c=10 p=1 f=0, group_by {GROUPS} tenants", QueueSettings(10, 1, 0), "data.tenant"),
    Case("c=10 p=1 f=100", QueueSettings(10, 1, 100)),
]


async def processing(
    bench: Bench, n: int, case: Case, limited: bool, profiler: cProfile.Profile | None = None
) -> Sample:
    """A queue with the case's settings processing n stored jobs, with or without a limit
    that never binds (the processing under the profiler, if one is given)."""
    collection = bench.collection()
    jc = JobCollection(collection, clock=SystemClock())
    await jc.start_job_server()  # creates the indexes, outside the measurement
    if limited:
        limit = ConcurrencyLimit(LIMIT, group_by=case.group_by)
        await jc.set_concurrency_limit(JOB_TYPE, limit)
    ids = await jc.save_jobs([jc.create_job(JOB_TYPE, case.data(i)) for i in range(n)])
    assert None not in ids

    async def work() -> None:
        if profiler is not None:
            profiler.enable()
        try:
            await process_saved(jc, n, case.settings, JOB_TYPE)
        finally:
            if profiler is not None:
                profiler.disable()

    sample = await bench.measure(n, work)
    left = await collection.count_documents({"status": {"$ne": "completed"}})
    assert left == 0, f"{left} jobs not completed"
    await jc.shutdown_job_server(timeout=0)
    await jc.close()
    await collection.drop()
    return sample


@dataclass(frozen=True)
class Figures:
    """The medians of one variant's samples."""

    samples: list[Sample]

    @property
    def jobs_per_s(self) -> float:
        return statistics.median(s.jobs / s.wall_s for s in self.samples)

    @property
    def client_us(self) -> float:
        return statistics.median(s.client_us for s in self.samples)

    @property
    def server_us(self) -> float | None:
        values = [s.server_us for s in self.samples if s.server_us is not None]
        return statistics.median(values) if values else None

    @property
    def typical(self) -> Sample:
        """The sample of median wall time (its commands are shown)."""
        return sorted(self.samples, key=lambda s: s.wall_s)[len(self.samples) // 2]

    def spread(self) -> str:
        rates = [s.jobs / s.wall_s for s in self.samples]
        return f"{min(rates):,.0f}-{max(rates):,.0f}"


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def alternate(
    jobs: int, repeats: int, run: Callable[[int, bool], Awaitable[Sample]]
) -> tuple[Figures, Figures]:
    """Both variants, after a warm-up, alternately (none, limit, limit, none, ...): their
    figures (none, limit)."""
    await run(max(20, jobs // 10), False)
    await run(max(20, jobs // 10), True)
    found: dict[bool, list[Sample]] = {False: [], True: []}
    for r in range(repeats):
        for limited in (False, True) if r % 2 == 0 else (True, False):
            found[limited].append(await run(jobs, limited))
    return Figures(found[False]), Figures(found[True])


def server_cell(figures: Figures) -> str:
    return "-" if figures.server_us is None else f"{figures.server_us:,.0f}"


async def run(uri: str, jobs: int, repeats: int) -> None:
    bench = CountingBench(uri)
    rows: list[list[str]] = []
    ratios: list[tuple[str, float, float]] = []
    try:
        naive = [await naive_processing(bench, jobs, 1) for _ in range(max(1, repeats // 2))]
        base = Figures(naive)
        log(f"  naive c=1 bulk-inserted: {base.jobs_per_s:,.1f} jobs/s")
        commands = base.typical
        rows.append(
            [
                "naive c=1 bulk-inserted",
                "-",
                f"{base.jobs_per_s:,.1f} ({base.spread()})",
                "",
                f"{base.client_us:,.0f}",
                server_cell(base),
                f"{commands.commands_per_job:.3f}",
                by_name(commands.commands, commands.jobs),
            ]
        )
        for case in CASES:

            def one(n: int, limited: bool, case: Case = case) -> Awaitable[Sample]:
                return processing(bench, n, case, limited)

            none, limit = await alternate(jobs, repeats, one)
            ratio = limit.jobs_per_s / none.jobs_per_s
            cpu_ratio = limit.client_us / none.client_us
            ratios.append((case.name, ratio, cpu_ratio))
            log(
                f"  {case.name}: none {none.jobs_per_s:,.1f} jobs/s, "
                f"limit {limit.jobs_per_s:,.1f} jobs/s, {ratio:.2f}x"
            )
            for variant, figures in (("none", none), (f"ConcurrencyLimit({LIMIT})", limit)):
                typical = figures.typical
                rows.append(
                    [
                        case.name,
                        variant,
                        f"{figures.jobs_per_s:,.1f} ({figures.spread()})",
                        "" if figures is none else f"**{ratio:.2f}x**",
                        f"{figures.client_us:,.0f}",
                        server_cell(figures),
                        f"{typical.commands_per_job:.3f}",
                        by_name(typical.commands, typical.jobs),
                    ]
                )
    finally:
        await bench.close()
    header = [
        "case",
        "limit",
        "jobs/s (range)",
        "limit/none",
        "client CPU us/job",
        "stand-in CPU us/job",
        "commands/job",
        "commands per job, by name and collection",
    ]
    print(table(rows, header))
    print()
    for name, ratio, cpu_ratio in ratios:
        met = "met" if ratio >= 0.9 else "NOT met"
        print(
            f"{name}: throughput {ratio:.2f}x without the limit (target >= 0.9x: {met}); "
            f"client CPU per job {cpu_ratio:.2f}x"
        )


BUCKETS = [
    ("the limits' code (slots, rules/concurrency)", ("local/slots.py", "rules/concurrency.py")),
    ("the rest of jobcollection", ("jobcollection/",)),
    ("pymongo, bson", ("pymongo/", "bson/", "_cmessage", "_cbson")),
    ("asyncio, selectors", ("asyncio/", "selectors.py", "_contextvars", "_asyncio")),
]
IDLE = "<method 'poll' of 'select.epoll' objects>"
"""Waiting for the server (the event loop's select): not this process's work."""
SEND = "<method 'send' of '_socket.socket' objects>"
STEPS = [
    ("local/slots.py", "_acquire", "take the claim lock"),
    ("local/slots.py", "_choose", "count the running jobs (and choose, with group_by)"),
    ("local/claiming.py", "get_work", "the claim itself"),
    ("local/slots.py", "_release", "give the lock back"),
]


def where(key: tuple[str, int, str]) -> str:
    file, _, function = key
    label = function if file == "~" else file
    if label in (IDLE, SEND):
        return label
    for bucket, marks in BUCKETS:
        if any(mark in label for mark in marks):
            return bucket
    return "other"


async def profile(uri: str, jobs: int, case: Case) -> None:
    bench = CountingBench(uri)
    try:
        for limited in (False, True):
            await processing(bench, max(20, jobs // 10), case, limited)  # warm-up
            profiler = cProfile.Profile(time.process_time)  # CPU, not waits or preemption
            sample = await processing(bench, jobs, case, limited, profiler)
            stats: dict[Any, Any] = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
            spent: dict[str, float] = {}
            for key, (_, _, own, _, _) in stats.items():
                spent[where(key)] = spent.get(where(key), 0.0) + own
            total = sum(spent.values())
            busy = total - spent.get(IDLE, 0.0)
            claims = sample.commands.get("findAndModify jobs", 0) + sample.commands.get(
                "find jobs", 0
            )
            variant = f"ConcurrencyLimit({LIMIT})" if limited else "no limit"
            print(
                f"{case.name}, {variant}: {jobs} jobs, {sample.commands_per_job:.3f} commands/job;"
                f" under cProfile {busy / jobs * 1e6:,.0f} us CPU/job"
                f" ({sample.client_us:,.0f} us CPU/job by process_time)"
            )
            for bucket, seconds in sorted(spent.items(), key=lambda item: -item[1]):
                share = "" if bucket == IDLE else f" ({seconds / busy:.1%})"
                name = {IDLE: "epoll (waiting for the server)", SEND: "socket sends"}.get(
                    bucket, bucket
                )
                print(f"  {name}: {seconds / jobs * 1e6:,.0f} us/job{share}")
            for file, function, label in STEPS:
                inside = sum(
                    cumulative
                    for (f, _, name), (_, _, _, cumulative, _) in stats.items()
                    if name == function and f.endswith(file)
                )
                if inside and claims:
                    print(f"  per claim, {label}: {inside / claims * 1e6:,.0f} us")
    finally:
        await bench.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uri", help="a real MongoDB instead of the wire stand-in")
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="50 jobs, 1 repeat")
    parser.add_argument("--profile", action="store_true", help="cProfile one case and exit")
    parser.add_argument(
        "--case", type=int, default=0, help=f"--profile's case, 0-{len(CASES) - 1} (see above)"
    )
    args = parser.parse_args(argv)
    jobs, repeats = (50, 1) if args.quick else (args.jobs, args.repeats)
    with server(args.uri) as uri:
        if args.profile:
            asyncio.run(profile(uri, jobs, CASES[args.case]))
            return 0
        where = args.uri or "the wire stand-in (tests/wire_server.py), its own process"
        print(f"{jobs} jobs per run, medians of {repeats} runs of each variant after a warm-up")
        print(f"server: {where}; client: {machine()}")
        asyncio.run(run(uri, jobs, repeats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
