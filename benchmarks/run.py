"""Benchmarks: throughput, database commands per job and enqueue-to-start latency of
jobcollection, against a naive raw-driver queue on the same backend.

    python benchmarks/run.py                      # in-memory backend (ratios and commands only)
    python benchmarks/run.py --rtt-ms 1           # ... with a simulated 1 ms round trip
    python benchmarks/run.py --uri mongodb://...  # a real MongoDB, plus explain() of the claim
    python benchmarks/run.py --quick              # a smoke run for CI (a few seconds)

Every scenario runs once to warm up, then `--repeats` times on a fresh collection; the table
shows the median (and the range). Commands are counted by a wrapper on the in-memory backend
and by pymongo command monitoring on a real server. See benchmarks/README.md for results.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import functools
import gc
import importlib.metadata
import json
import logging
import os
import platform
import pstats
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from backends import Backend, MemoryBackend, MongoBackend
from scenarios import (
    QueueSettings,
    Sample,
    end_to_end,
    end_to_end_naive,
    enqueue_batched,
    enqueue_naive,
    enqueue_one_by_one,
    enqueue_to_start,
    explain_claim,
)

SETTINGS = [
    QueueSettings(concurrency=1, payload=1, prefetch=0),
    QueueSettings(concurrency=10, payload=1, prefetch=0),
    QueueSettings(concurrency=10, payload=1, prefetch=100),
    QueueSettings(concurrency=100, payload=1, prefetch=100),
    QueueSettings(concurrency=1, payload=100, prefetch=100),
    QueueSettings(concurrency=4, payload=100, prefetch=200),
]
QUICK_SETTINGS = [SETTINGS[0], SETTINGS[3], SETTINGS[4]]
GC_TUNED = (10_000, 10, 10)
"""--gc-tuned: the collector's thresholds (Python's defaults are 700, 10, 10)."""
EXPLAIN_SIZES = [10_000, 100_000, 1_000_000]

TARGET_COMMANDS_PER_JOB = 0.2
TARGET_RATIO = 3.0
TARGET_REAL_JOBS_PER_S = 10_000


# --- measuring -----------------------------------------------------------------------------


class Row:
    """The repeats of one scenario."""

    def __init__(self, name: str, settings: str, samples: list[Sample]) -> None:
        self.name = name
        self.settings = settings
        self.samples = samples

    @property
    def jobs_per_s(self) -> float:
        return statistics.median(s.jobs_per_s for s in self.samples)

    @property
    def spread(self) -> tuple[float, float]:
        rates = [s.jobs_per_s for s in self.samples]
        return min(rates), max(rates)

    @property
    def commands_per_job(self) -> float:
        return statistics.median(s.commands_per_job for s in self.samples)

    @property
    def client_us_per_job(self) -> float:
        return statistics.median(s.client_us_per_job for s in self.samples)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "settings": self.settings,
            "jobs_per_s": self.jobs_per_s,
            "commands_per_job": self.commands_per_job,
            "client_us_per_job": self.client_us_per_job,
            "samples": [vars(s) for s in self.samples],
        }


async def measure(
    name: str,
    settings: str,
    run: Callable[[int], Awaitable[Sample]],
    n: int,
    repeats: int,
    warmup_n: int,
) -> Row:
    await run(warmup_n)
    samples = [await run(n) for _ in range(repeats)]
    row = Row(name, settings, samples)
    low, high = row.spread
    client = f"  {row.client_us_per_job:>6.0f} us/job outside the backend" if SPLIT else ""
    print(
        f"  {name:<24} {settings:<16} {row.jobs_per_s:>8,.0f} jobs/s "
        f"({low:,.0f}-{high:,.0f})  {row.commands_per_job:>6.3f} commands/job{client}",
        flush=True,
    )
    return row


SPLIT = False
"""Whether time outside the backend can be told apart (in memory, no simulated round trip)."""


# --- the report ----------------------------------------------------------------------------


def machine() -> dict[str, str]:
    def version(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "-"

    cpu = platform.processor() or platform.machine()
    memory = "?"
    try:
        info = Path("/proc/cpuinfo").read_text()
        cpu = next(
            line.split(":", 1)[1].strip() for line in info.splitlines() if "model name" in line
        )
        kb = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
        memory = f"{kb / 1024 / 1024:.0f} GiB"
    except (OSError, StopIteration):
        pass
    return {
        "os": platform.platform(),
        "cpu": f"{cpu}, {os.cpu_count()} logical CPUs",
        "memory": memory,
        "python": platform.python_version(),
        "packages": ", ".join(
            f"{d} {version(d)}"
            for d in ("jobcollection", "pymongo", "motor", "mongomock", "mongomock-motor")
        ),
    }


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


# --- main ----------------------------------------------------------------------------------


async def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    backend: Backend = (
        MongoBackend(args.uri) if args.uri else MemoryBackend(args.rtt_ms, store=args.backend)
    )
    real = backend.real
    global SPLIT
    SPLIT = not real and not args.rtt_ms
    n = args.jobs or (200 if args.quick else (10_000 if real else 500))
    repeats = args.repeats or (2 if args.quick else 5)
    warmup_n = max(n // 10, 10)
    settings = QUICK_SETTINGS if args.quick else SETTINGS
    started = time.perf_counter()
    try:
        described = await backend.describe()
        info = machine()
        print(f"backend: {described}")
        for key, value in info.items():
            print(f"{key}: {value}")
        print(f"garbage collector: thresholds {gc.get_threshold()}, frozen {gc.get_freeze_count()}")
        print(f"jobs per run: {n}; warm-up run, then median of {repeats} runs\n")
        if not real:
            print(
                "NOTE: in-memory figures: each command costs Python work over the whole\n"
                "collection instead of a network round trip. Only the ratios and the\n"
                "commands per job carry over to a real server.\n"
            )

        if args.profile:
            return await profile(backend, n)

        print("enqueue")
        enqueue = [
            await measure(
                "save() one by one",
                "",
                lambda k: enqueue_one_by_one(backend, k),
                n,
                repeats,
                warmup_n,
            ),
            await measure(
                "save_jobs() batched",
                "",
                lambda k: enqueue_batched(backend, k),
                n,
                repeats,
                warmup_n,
            ),
            await measure(
                "naive insert_one", "", lambda k: enqueue_naive(backend, k), n, repeats, warmup_n
            ),
        ]

        print("\nend to end: enqueue, claim, no-op worker, done")
        e2e: list[tuple[QueueSettings, Row]] = []
        for s in settings:
            row = await measure(
                "jobcollection JobQueue",
                str(s),
                functools.partial(end_to_end, backend, settings=s),
                n,
                repeats,
                warmup_n,
            )
            e2e.append((s, row))
        naive: dict[int, Row] = {}
        for c in sorted({s.concurrency for s in settings}):
            naive[c] = await measure(
                "naive raw driver",
                f"c={c}",
                functools.partial(end_to_end_naive, backend, concurrency=c),
                n,
                repeats,
                warmup_n,
            )

        print("\nenqueue-to-start latency")
        latency = await latencies(backend, quick=args.quick)

        explained = []
        if real and not args.skip_explain:
            print("\nexplain() of the claim query")
            sizes = EXPLAIN_SIZES[:1] if args.quick else EXPLAIN_SIZES
            explained = await explain_claim(backend, sizes)
        elif not real:
            print("\nexplain(): skipped, the in-memory backend has no query planner (use --uri)")

        report = render(described, info, n, repeats, enqueue, e2e, naive, latency, explained, real)
        print("\n" + report)
        print(f"\ntotal time: {time.perf_counter() - started:.1f} s")
        if args.json:
            Path(args.json).write_text(  # noqa: ASYNC240 (once, after the measurements)
                json.dumps(
                    {
                        "backend": described,
                        "machine": info,
                        "jobs": n,
                        "repeats": repeats,
                        "enqueue": [r.as_dict() for r in enqueue],
                        "end_to_end": [r.as_dict() for _, r in e2e],
                        "naive": [r.as_dict() for r in naive.values()],
                        "latency": latency,
                        "explain": [vars(e) for e in explained],
                    },
                    indent=2,
                )
            )
        return 0
    finally:
        await backend.close()


async def latencies(backend: Backend, *, quick: bool) -> list[dict[str, Any]]:
    jobs = 10 if quick else 50
    interval = 0.05 if quick else 0.2
    modes = ["poll", "trigger"]
    if isinstance(backend, MongoBackend) and await backend.change_streams():
        modes.append("change-stream")
    else:
        print("  change streams: unavailable on this backend (need a replica set); skipped")
    out = []
    for mode in modes:
        result = await enqueue_to_start(backend, jobs, mode=mode, poll_interval=interval)
        p50, p99 = result.percentile(50) * 1000, result.percentile(99) * 1000
        label = f"poll_interval={interval:g}s" if mode == "poll" else ""
        print(f"  {mode:<14} {label:<20} p50 {p50:8.2f} ms   p99 {p99:8.2f} ms  ({jobs} jobs)")
        out.append(
            {"mode": mode, "poll_interval_s": interval, "jobs": jobs, "p50_ms": p50, "p99_ms": p99}
        )
    return out


def render(
    described: str,
    info: dict[str, str],
    n: int,
    repeats: int,
    enqueue: list[Row],
    e2e: list[tuple[QueueSettings, Row]],
    naive: dict[int, Row],
    latency: list[dict[str, Any]],
    explained: list[Any],
    real: bool,
) -> str:
    label = "" if real else " (in-memory: compare ratios and commands, not jobs/s)"
    out = [f"### Results on {described}{label}", ""]
    out += [f"{n} jobs per run, median of {repeats} runs after a warm-up run.", ""]
    base = enqueue[2]

    def client(r: Row) -> list[str]:
        return [f"{r.client_us_per_job:.0f}"] if SPLIT else []

    client_header = ["us/job outside backend"] if SPLIT else []
    out.append(
        table(
            [
                [
                    r.name,
                    f"{r.jobs_per_s:,.0f}",
                    f"{r.commands_per_job:.3f}",
                    *client(r),
                    f"{r.jobs_per_s / base.jobs_per_s:.1f}x",
                ]
                for r in enqueue
            ],
            ["enqueue", "jobs/s", "commands/job", *client_header, "vs naive"],
        )
    )
    out.append("")
    rows = []
    for s, r in e2e:
        b = naive[s.concurrency]
        rows.append(
            [
                str(s),
                f"{r.jobs_per_s:,.0f}",
                f"{r.commands_per_job:.3f}",
                *client(r),
                f"{b.jobs_per_s:,.0f}",
                f"{b.commands_per_job:.2f}",
                *client(b),
                f"{r.jobs_per_s / b.jobs_per_s:.1f}x",
            ]
        )
    naive_client = ["naive " + h for h in client_header]
    out.append(
        table(
            rows,
            [
                "end to end: c, p, f",
                "jobs/s",
                "commands/job",
                *client_header,
                "naive jobs/s (same c)",
                "naive commands/job",
                *naive_client,
                "ratio",
            ],
        )
    )
    out.append("")
    out.append(
        table(
            [
                [
                    lat["mode"]
                    + (
                        f" (poll_interval {lat['poll_interval_s']:g} s)"
                        if lat["mode"] == "poll"
                        else ""
                    ),
                    f"{lat['p50_ms']:.2f}",
                    f"{lat['p99_ms']:.2f}",
                ]
                for lat in latency
            ],
            ["enqueue-to-start latency", "p50 ms", "p99 ms"],
        )
    )
    if explained:
        out.append("")
        out.append(
            table(
                [
                    [
                        f"{e.queued:,}",
                        " > ".join(e.stages),
                        str(e.index),
                        str(e.keys_examined),
                        str(e.docs_examined),
                        str(e.millis),
                        "yes" if e.uses_index else "NO",
                    ]
                    for e in explained
                ],
                ["jobs stored", "plan", "index", "keys", "docs", "ms", "index, no COLLSCAN"],
            )
        )
    out += ["", "Targets:"]
    batched = [(s, r) for s, r in e2e if max(s.payload, s.prefetch) >= 100]
    missed = [f"{s} ({r.commands_per_job:.3f})" for s, r in batched if not meets_commands(r)]
    verdict = "met" if not missed else "MISSED at " + ", ".join(missed)
    out.append(
        f"- commands/job <= {TARGET_COMMANDS_PER_JOB} at payload or prefetch >= 100: "
        f"{len(batched) - len(missed)} of {len(batched)} settings; {verdict}"
    )
    ratios = [(s, r.jobs_per_s / naive[s.concurrency].jobs_per_s) for s, r in batched]
    if ratios:
        low = min(ratios, key=lambda x: x[1])
        high = max(ratios, key=lambda x: x[1])
        verdict = "met" if low[1] >= TARGET_RATIO else "MISSED"
        out.append(
            f"- throughput >= {TARGET_RATIO:g}x naive at payload or prefetch >= 100: "
            f"{low[1]:.1f}x ({low[0]}) to {high[1]:.1f}x ({high[0]}); {verdict}"
        )
    best = max(e2e, key=lambda sr: sr[1].jobs_per_s)
    target = f"{TARGET_REAL_JOBS_PER_S:,} jobs/s per worker process on a real MongoDB"
    if real:
        verdict = "met" if best[1].jobs_per_s >= TARGET_REAL_JOBS_PER_S else "MISSED"
        out.append(f"- {target}: {best[1].jobs_per_s:,.0f} ({best[0]}); {verdict}")
    else:
        out.append(f"- {target}: not measurable here; run with --uri")
    if SPLIT:
        client_us = min(r.client_us_per_job for _, r in batched)
        out.append(
            f"- client CPU outside the backend, best batched setting: {client_us:.0f} us/job, "
            f"so at most {1e6 / client_us:,.0f} jobs/s per process before any server time"
        )
    return "\n".join(out)


def meets_commands(row: Row) -> bool:
    return row.commands_per_job <= TARGET_COMMANDS_PER_JOB


async def profile(backend: Backend, n: int) -> int:
    """cProfile one end-to-end run at c=1 p=100 f=100 (the batched hot path)."""
    settings = QueueSettings(concurrency=1, payload=100, prefetch=100)
    await end_to_end(backend, max(n // 10, 10), settings)
    profiler = cProfile.Profile()
    profiler.enable()
    sample = await end_to_end(backend, n, settings)
    profiler.disable()
    print(
        f"profiled {settings}: {sample.jobs_per_s:,.0f} jobs/s, "
        f"{sample.commands_per_job:.3f} commands/job"
    )
    stats = pstats.Stats(profiler)
    by_area: dict[str, float] = {}
    for (filename, _, _), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        area = next((a for key, a in AREAS if key in filename), "other (stdlib, builtins)")
        by_area[area] = by_area.get(area, 0.0) + tottime
    total = sum(by_area.values())
    print("\nwhere the time goes (own time by area):")
    for area, seconds in sorted(by_area.items(), key=lambda kv: -kv[1]):
        print(f"  {area:<36} {seconds:7.3f} s  {100 * seconds / total:5.1f} %")
    print()
    stats.sort_stats("tottime").print_stats(25)
    return 0


AREAS = [
    ("mongomock_motor", "in-memory backend (mongomock)"),
    ("mongomock", "in-memory backend (mongomock)"),
    ("dictstore.py", "in-process dict store"),
    ("pydantic_core", "pydantic (job document model)"),
    ("/jobcollection/", "jobcollection"),
    ("pydantic", "pydantic (job document model)"),
    ("/bson/", "bson (ObjectId, codecs)"),
    ("/pymongo/", "pymongo"),
    ("/asyncio/", "asyncio event loop"),
    ("copy.py", "copy.deepcopy"),
]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--uri", help="a real MongoDB (a throwaway database is created and dropped)"
    )
    parser.add_argument("--quick", action="store_true", help="a small smoke run (CI)")
    parser.add_argument(
        "--jobs", type=int, help="jobs per run (default 500 in memory, 10,000 real)"
    )
    parser.add_argument("--repeats", type=int, help="measured runs per scenario (default 5)")
    parser.add_argument(
        "--rtt-ms", type=float, default=0.0, help="in-memory only: simulated round trip per command"
    )
    parser.add_argument("--skip-explain", action="store_true", help="with --uri: no explain() runs")
    parser.add_argument(
        "--backend",
        choices=["memory", "dict"],
        default="memory",
        help="without --uri: mongomock-motor (default), or the near-zero-cost dict store, "
        "on which the time is jobcollection's own",
    )
    parser.add_argument(
        "--gc-tuned",
        action="store_true",
        help="run as a worker entry point may: gc.freeze() after start-up and a gen-0 "
        f"threshold of {GC_TUNED[0]:,} allocations (README: Running workers)",
    )
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument(
        "--profile", action="store_true", help="cProfile one batched end-to-end run and exit"
    )
    args = parser.parse_args(argv)
    if args.rtt_ms and args.uri:
        parser.error("--rtt-ms simulates a network on the in-memory backend; not with --uri")
    return args


if __name__ == "__main__":
    arguments = parse()
    if arguments.gc_tuned:
        gc.freeze()  # what start-up allocated is never scanned again
        gc.set_threshold(*GC_TUNED)
    sys.exit(asyncio.run(main(arguments)))
