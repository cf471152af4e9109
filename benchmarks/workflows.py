"""What a fan-in costs (issue 23): a chord of N children and one callback, saved with
`save_workflow` and run end to end, beside the same N + 1 jobs saved with `save_jobs` and run
without any dependency, through pymongo's real driver against the wire stand-in
(tests/wire_server.py) in a process of its own (or a real server with --uri).

    python benchmarks/workflows.py               # N = 1,000 and 250, ~3.5 min on the stand-in
    python benchmarks/workflows.py --quick       # N = 60 and 20, a smoke run (~20 s)
    python benchmarks/workflows.py --concurrency 1 --n 250 --small 0 --array-n 0   # ~40 s
    python benchmarks/workflows.py --tree 100 --small 0 --array-n 0               # ~3 min
    python benchmarks/workflows.py --uri mongodb://HOST:27017 --n 10000 --small 1000

Each run, on a fresh collection (indexes made before the measurement, as wire.py does):

1. save (measured): create the N children and the callback and store them: the workflow
   variant with `jc.save_workflow(chord(children, callback))` (the callback's `depends`
   names every child), the baseline with `jc.save_jobs(children + [callback])`;
2. process (measured): a queue of the children (concurrency `--concurrency`, payload 1, no
   prefetch, no polling, a worker that does nothing) and a queue of the callback with the
   queue's defaults (polling every 5 s; wake-up by change stream where the server has them,
   which the stand-in has not), until the callback's completion is written.

Commands are counted with pymongo command monitoring and sorted by what they do (see KINDS),
each with its mean round trip; the reads of a dependent (the callback) are also weighed in
bytes, since they return its whole `depends` array. The latency of the fan-in is measured
from the stored documents: from the last child's completion (the latest "Job Completed" log
time among the children: the write that completes it, not the end of its worker) to the
callback's start (its "Job Running" log time: the claim that hands it to a worker), split at
the callback's promotion ("Promoted to ready", written by the last completion's follow-ups);
the same span is also timed in the process, from the end of the last child's worker call to
the start of the callback's.

`--tree B` adds a third variant: the same fan-in as two levels, `chain(group(chord(children
[i:i+B], join_i) for each i), callback)`, with one no-op "join" job (and a queue of them,
polling every second) per B children: each resolution rewrites an array of B ids, not N. It
shows what bounding the array would buy, with the library as it is.

The stand-in is mongomock: every command scans the whole collection in Python, so its cost
grows with N for the baseline too (10,000 children end to end would take over an hour), and
what the `depends` array costs is hidden under the scans. So the run ends with the array
alone, up to `--array-n` (default 10,000) antecedents: on a collection holding only the
dependent, `--array-times` reads of its dependents and resolutions of its edges as the
library sends them, beside the same number of writes of a counter-based fan-in (a count
decremented on a dependent without the array).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import bson
from bson import ObjectId
from pymongo import AsyncMongoClient, monitoring
from wire import machine, server, table

from jobcollection import Job, JobCollection, Limits, SystemClock, chain, chord, group
from jobcollection.model.document import DEPENDENTS, FLUSH, FOLLOW_UPS, RUN_IF
from jobcollection.model.limits import cap_pushes
from jobcollection.rules.transitions import entry, resolve_dependents

CHILD = "child"
CALLBACK = "callback"
JOIN = "join"
FOLLOW_UPS_RUN = f"{FOLLOW_UPS}.runId"

KINDS = [
    "insert",
    "claim",
    "completion write, blind",
    "completion write, blind, missed",
    "confirm (which blind writes held)",
    "read job before its completion",
    "completion write, read first",
    "read dependents",
    "resolve edge(s) (update dependent)",
    "promote dependent",
    "clear follow-up marks",
    "idle claim: promote due / next due",
    "job server pass",
    "change stream (refused by the stand-in)",
    "queue and server bookkeeping",
]
"""What each command does, in the order of a job's life (the tables' order)."""


def kind(name: str, command: Mapping[str, Any]) -> str:
    """What a command sent by the library does, from its name and shape."""
    target = command.get("collection" if name == "getMore" else name)
    where = str(target).rsplit(".", 1)[-1] if isinstance(target, str) else "-"
    if where != "jobs":
        return "queue and server bookkeeping"
    if name == "insert":
        return "insert"
    if name == "findAndModify":
        return "claim"
    if name == "find":
        query = command.get("filter") or {}
        if "runId" in query and ("type" in query or "_id" in query):
            return "claim"  # a claim of several: its candidates, and the claimed read back
        if "type" in query:
            return "idle claim: promote due / next due"
        if FLUSH in query:
            return "confirm (which blind writes held)"
        if isinstance(query.get("depends"), dict) and "$in" in query["depends"]:
            return "read dependents"
        if "depends" in query or "depends.0" in query or FOLLOW_UPS in query:
            return "job server pass"
        if "expiresAfter" in query:
            return "job server pass"
        if set(query) == {"_id"}:
            return "read job before its completion"
    if name == "update":
        statements = command.get("updates") or [{}]
        query, update = statements[0].get("q") or {}, statements[0].get("u") or {}
        if "type" in query and "runId" in query:
            return "claim"
        if "type" in query:
            return "idle claim: promote due / next due"
        if "$pull" in update and "depends" in query:
            return "resolve edge(s) (update dependent)"
        if "$nor" in query and "_id" in query:
            return "promote dependent"
        if FOLLOW_UPS_RUN in query:
            return "clear follow-up marks"
        if DEPENDENTS in query:
            return "completion write, blind"
        if "runId" in query:
            return "completion write, read first"
        if "$nor" in query:
            return "job server pass"
    if name == "aggregate" and "$changeStream" in (command.get("pipeline") or [{}])[0]:
        return "change stream (refused by the stand-in)"
    return f"{name} jobs (other)"


class Commands(monitoring.CommandListener):
    """Commands on one database, by kind: how many, their round trips (microseconds, as the
    driver measures them) and, for reads of dependents, the bytes of their replies."""

    def __init__(self, database: str) -> None:
        self.database = database
        self.count: Counter[str] = Counter()
        self.micros: Counter[str] = Counter()
        self.reply_bytes: Counter[str] = Counter()
        self.missed: Counter[str] = Counter()
        self._started: dict[int, tuple[str, int]] = {}

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.database_name != self.database:
            return
        label = kind(event.command_name, event.command)
        self.count[label] += 1
        self._started[event.request_id] = (label, len(event.command.get("updates") or ()))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        label, statements = self._started.pop(event.request_id, ("", 0))
        if not label:
            return
        self.micros[label] += event.duration_micros
        if label == "read dependents":
            self.reply_bytes[label] += len(bson.encode(event.reply))
        if label == "completion write, blind":  # its statements whose fence did not hold
            self.missed[label] += statements - int(event.reply.get("n", 0))

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self._started.pop(event.request_id, None)

    def snapshot(self) -> tuple[Counter[str], Counter[str], Counter[str], Counter[str]]:
        return (
            Counter(self.count),
            Counter(self.micros),
            Counter(self.reply_bytes),
            Counter(self.missed),
        )


@dataclass
class Phase:
    """One measured phase of a run."""

    wall_s: float
    client_cpu_s: float
    server_cpu_s: float | None
    count: Counter[str]
    micros: Counter[str]
    reply_bytes: Counter[str]
    missed: Counter[str]

    @property
    def commands(self) -> int:
        return sum(self.count.values())


@dataclass
class Run:
    """One run of a variant at one N: its two phases and the fan-in's latency."""

    variant: str
    n: int
    save: Phase
    process: Phase
    promoted_ms: float | None = None
    """Last child's completion to the callback's promotion (stored log times)."""
    started_ms: float | None = None
    """Last child's completion to the callback's start (stored log times)."""
    in_process_ms: float | None = None
    """End of the last child's worker call to the start of the callback's (perf_counter)."""
    depends_bytes: int = 0
    children_s: float = 0.0
    """From the start of processing to the end of the last child's worker call."""
    """The callback's `depends` array as stored at save, BSON-encoded."""
    joins: int = 0
    """The tree variant's join jobs."""


class Meter:
    """A client on the server, a fresh collection per run, and the meters."""

    def __init__(self, uri: str) -> None:
        self.db_name = f"workflow_bench_{uuid.uuid4().hex[:8]}"
        self.commands = Commands(self.db_name)
        self.client: Any = AsyncMongoClient(uri, event_listeners=[self.commands], tz_aware=False)
        self.db = self.client[self.db_name]
        self.runs = 0

    def collection(self) -> Any:
        self.runs += 1
        return self.db[f"run{self.runs}.jobs"]

    async def server_cpu_s(self) -> float | None:
        """The server's CPU seconds so far (serverStatus.extra_info: mongod on Linux, and the
        stand-in)."""
        status = await self.client.admin.command("serverStatus")
        info = status.get("extra_info") or {}
        if "user_time_us" not in info:
            return None
        return (int(info["user_time_us"]) + int(info.get("system_time_us", 0))) / 1e6

    async def measure(self, work: Callable[[], Awaitable[None]]) -> Phase:
        server_before = await self.server_cpu_s()
        before = self.commands.snapshot()
        cpu, wall = time.process_time(), time.perf_counter()
        await work()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        after = self.commands.snapshot()
        server_after = await self.server_cpu_s()
        server = (
            None if server_before is None or server_after is None else server_after - server_before
        )
        deltas = []
        for a, b in zip(after, before, strict=True):
            a.subtract(b)
            deltas.append(+a)
        return Phase(wall, cpu, server, *deltas)

    async def close(self) -> None:
        await self.client.drop_database(self.db_name)
        await self.client.close()


def _log_time(doc: dict[str, Any], message: str) -> datetime | None:
    times = [e["time"] for e in doc.get("log") or [] if e.get("message") == message]
    return max(times) if times else None


def _ms(later: datetime | None, earlier: datetime | None) -> float | None:
    if later is None or earlier is None:
        return None
    return (later - earlier).total_seconds() * 1000


async def one_run(meter: Meter, variant: str, n: int, concurrency: int, tree: int) -> Run:
    """One run of a variant ("baseline", "chord" or "tree") with n children."""
    collection = meter.collection()
    limits = Limits(max_depends=max(Limits().max_depends, n))
    jc = JobCollection(collection, clock=SystemClock(), limits=limits)
    await jc.start_job_server()  # creates the indexes, outside the measurement
    callback_id: Any = None

    async def save() -> None:
        nonlocal callback_id
        children = [jc.create_job(CHILD, {"i": i}) for i in range(n)]
        callback = jc.create_job(CALLBACK)
        if variant == "baseline":
            ids = await jc.save_jobs([*children, callback])
            assert None not in ids
        elif variant == "chord":
            await jc.save_workflow(chord(children, callback))
        else:
            joins = [chord(children[i : i + tree], jc.create_job(JOIN)) for i in range(0, n, tree)]
            await jc.save_workflow(chain(group(joins), callback))
        callback_id = callback.id

    save_phase = await meter.measure(save)
    stored = await collection.find_one({"_id": callback_id}, {"depends": 1})
    depends_bytes = len(bson.encode({"depends": stored["depends"]})) if stored else 0

    last_child_end = 0.0
    callback_start = 0.0
    children_seen = 0
    all_seen = asyncio.Event()
    started = asyncio.Event()

    async def child(job: Job) -> None:
        nonlocal last_child_end, children_seen
        last_child_end = time.perf_counter()
        children_seen += 1
        if children_seen >= n:
            all_seen.set()

    async def join(job: Job) -> None:
        pass

    async def callback(job: Job) -> None:
        nonlocal callback_start
        callback_start = time.perf_counter()
        started.set()

    process_start = 0.0

    async def process() -> None:
        nonlocal process_start
        process_start = time.perf_counter()
        queues = [
            jc.process_jobs(
                CHILD,
                child,
                concurrency=concurrency,
                poll_interval=None,
                wakeup=False,
            ),
            jc.process_jobs(CALLBACK, callback),  # the defaults: what a user gets
        ]
        if variant == "tree":
            queues.append(jc.process_jobs(JOIN, join, concurrency=10, poll_interval=1))
        await asyncio.wait_for(asyncio.gather(all_seen.wait(), started.wait()), timeout=3600)
        for queue in queues:
            await queue.shutdown("soft", quiet=True)  # every done() written

    process_phase = await meter.measure(process)
    left = await collection.count_documents({"status": {"$ne": "completed"}})
    assert left == 0, f"{left} jobs not completed"
    run = Run(variant, n, save_phase, process_phase, depends_bytes=depends_bytes)
    run.children_s = last_child_end - process_start
    run.joins = len(range(0, n, tree)) if variant == "tree" else 0
    if variant != "baseline":
        completed = None
        async for doc in collection.find({"type": CHILD}, {"log": {"$slice": -3}}):
            at = _log_time(doc, "Job Completed")
            if at is not None and (completed is None or at > completed):
                completed = at
        last = await collection.find_one({"_id": callback_id}, {"log": {"$slice": -5}})
        assert last is not None
        run.promoted_ms = _ms(_log_time(last, "Promoted to ready"), completed)
        run.started_ms = _ms(_log_time(last, "Job Running"), completed)
        run.in_process_ms = (callback_start - last_child_end) * 1000
    await jc.shutdown_job_server(timeout=0)
    await jc.close()
    await collection.drop()
    return run


@dataclass
class ArrayCost:
    """The dependent's array alone, at one N: mean round trip (ms) and server CPU (us) of
    each write and read, and the bytes a read returns."""

    n: int
    resolve_ms: float
    resolve_server_us: float | None
    read_ms: float
    read_server_us: float | None
    read_bytes: float
    counter_ms: float
    counter_server_us: float | None


async def array_cost(meter: Meter, n: int, times: int) -> ArrayCost:
    """On a collection holding only a dependent waiting on n antecedents: `times` of its
    reads of the dependents of an antecedent as the library reads them (its filter and
    projection: the whole `depends`), then `times` resolutions as it writes them
    (transitions.resolve_dependents, one completed antecedent each, the log push capped);
    then, on a dependent that keeps a count instead of the array (alone in the collection),
    `times` writes of what a counter-based fan-in would send instead: the count decremented,
    with the same log entry."""
    collection = meter.collection()
    caps = Limits().push_caps()
    antecedents = [ObjectId() for _ in range(n)]
    dependent = ObjectId()
    await collection.insert_one(
        {
            "_id": dependent,
            "type": CALLBACK,
            "status": "waiting",
            "depends": antecedents,
            "resolved": [],
            "log": [],
        }
    )
    await collection.create_index([("depends", 1)])
    read_s = resolve_s = counter_s = 0.0
    read_bytes = 0
    projection = {"depends": 1, "status": 1, RUN_IF: 1}
    server_start = await meter.server_cpu_s()
    for antecedent in antecedents[:times]:
        start = time.perf_counter()
        found = await collection.find({"depends": {"$in": [antecedent]}}, projection).to_list()
        read_s += time.perf_counter() - start
        read_bytes += sum(len(bson.encode(d)) for d in found)
    server_before = await meter.server_cpu_s()
    for antecedent in antecedents[:times]:
        now = datetime.now()
        query, update = resolve_dependents(dependent, [(antecedent, ObjectId())], now, None)
        start = time.perf_counter()
        result = await collection.update_one(query, cap_pushes(update, caps))
        resolve_s += time.perf_counter() - start
        assert result.modified_count == 1
    await collection.delete_one({"_id": dependent})
    server_mid = await meter.server_cpu_s()
    counter = ObjectId()  # the same dependent, as a counter-based fan-in would store it
    await collection.insert_one(
        {
            "_id": counter,
            "type": CALLBACK,
            "status": "waiting",
            "depends": [],
            "resolved": [],
            "log": [],
            "_private": {"fanIn": n},
        }
    )
    for _ in range(times):
        now = datetime.now()
        log_entry = entry(now, "Dependency resolved", data={"dependency": {"id": ObjectId()}})
        start = time.perf_counter()
        result = await collection.update_one(
            {"_id": counter, "_private.fanIn": {"$gt": 0}},
            cap_pushes(
                {
                    "$inc": {"_private.fanIn": -1},
                    "$push": {"log": log_entry},
                    "$set": {"updated": now},
                },
                caps,
            ),
        )
        counter_s += time.perf_counter() - start
        assert result.modified_count == 1
    server_after = await meter.server_cpu_s()
    await collection.drop()

    def server_us(after: float | None, before: float | None) -> float | None:
        return None if after is None or before is None else (after - before) / times * 1e6

    return ArrayCost(
        n,
        resolve_s / times * 1000,
        server_us(server_mid, server_before),
        read_s / times * 1000,
        server_us(server_before, server_start),
        read_bytes / times,
        counter_s / times * 1000,
        server_us(server_after, server_mid),
    )


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def per_job(value: float, jobs: int) -> str:
    return f"{value / jobs:.3f}"


def cpu_us(seconds: float | None, jobs: int) -> str:
    return "-" if seconds is None else f"{seconds / jobs * 1e6:,.0f}"


def latency(run: Run) -> str:
    if run.variant == "baseline":
        return "-"
    parts = [
        "-" if run.started_ms is None else f"{run.started_ms:,.0f}",
        "-" if run.promoted_ms is None else f"{run.promoted_ms:,.0f}",
        "-" if run.in_process_ms is None else f"{run.in_process_ms:,.0f}",
    ]
    return " / ".join(parts)


def summary_rows(runs: list[Run], baselines: dict[int, Run]) -> list[list[str]]:
    rows = []
    for run in runs:
        n, save, process = run.n, run.save, run.process
        jobs = n + 1 + run.joins
        base = baselines[n]
        ratio = (save.commands + process.commands) / (base.save.commands + base.process.commands)
        cpu_ratio = ""
        if process.server_cpu_s and base.process.server_cpu_s:
            cpu_ratio = f" ({process.server_cpu_s / base.process.server_cpu_s:.2f}x)"
        rows.append(
            [
                f"{n:,}",
                run.variant,
                f"{save.wall_s * 1000:,.0f}",
                f"{save.commands} ({save.commands / jobs:.4f})",
                cpu_us(save.client_cpu_s, jobs),
                f"{run.children_s:,.1f}",
                per_job(process.commands, n),
                per_job(save.commands + process.commands, jobs),
                "" if run is base else f"**{ratio:.2f}x**",
                f"{cpu_us(process.client_cpu_s, n)}",
                f"{cpu_us(process.server_cpu_s, n)}{cpu_ratio}",
                latency(run),
            ]
        )
    return rows


SUMMARY_HEADER = [
    "N",
    "variant",
    "save ms",
    "save commands (per job)",
    "save client CPU us/job",
    "children s",
    "commands/child",
    "total commands/job",
    "vs baseline",
    "client CPU us/child",
    "server CPU us/child",
    "latency ms: start / promotion / in process",
]


def kinds_rows(runs: list[Run]) -> list[list[str]]:
    """Per child: commands of each kind, and each kind's mean round trip."""
    rows = []
    for label in KINDS + sorted({k for r in runs for k in r.process.count} - set(KINDS)):
        cells = []
        for run in runs:
            count = run.process.count.get(label, 0)
            if label == "completion write, blind, missed":
                count = run.process.missed.get("completion write, blind", 0)
                cells.append(per_job(count, run.n) if count else "")
                continue
            if not count:
                cells.append("")
                continue
            mean_ms = run.process.micros[label] / count / 1000
            cells.append(f"{count / run.n:.3f} x {mean_ms:,.1f} ms")
        if any(cells):
            rows.append([label, *cells])
    return rows


def bytes_rows(runs: list[Run]) -> list[str]:
    out = []
    for run in runs:
        reads = run.process.count.get("read dependents", 0)
        if not reads:
            continue
        read = run.process.reply_bytes["read dependents"]
        out.append(
            f"{run.variant} N={run.n:,}: the callback's depends was {run.depends_bytes:,} bytes "
            f"at save; {reads} reads of dependents returned {read:,} bytes "
            f"({read / reads:,.0f} per read, {read / run.n:,.0f} per child)"
        )
    return out


async def run_all(
    uri: str,
    sizes: list[int],
    concurrency: int,
    tree: int | None,
    repeats: int,
    array_sizes: list[int],
    array_times: int,
) -> None:
    meter = Meter(uri)
    variants = ["baseline", "chord"] + (["tree"] if tree else [])
    runs: list[Run] = []
    try:
        for variant in variants:  # warm-up: imports, connections, the stand-in's caches
            await one_run(meter, variant, 20, concurrency, tree or 10)
        for n in sizes:
            for r in range(repeats):
                order = variants if r % 2 == 0 else list(reversed(variants))
                for variant in order:
                    run = await one_run(meter, variant, n, concurrency, tree or n)
                    runs.append(run)
                    log(
                        f"  N={n:,} {variant}: save {run.save.wall_s * 1000:,.0f} ms, "
                        f"children {run.children_s:,.1f} s, "
                        f"{run.process.commands / n:.3f} commands/child, "
                        f"latency {latency(run)} ms"
                    )
        costs = []
        for n in array_sizes:
            costs.append(await array_cost(meter, n, min(array_times, n)))
            log(f"  array N={n:,}: resolve {costs[-1].resolve_ms:,.2f} ms")
    finally:
        await meter.close()
    chosen = median_runs(runs)
    baselines = {r.n: r for r in chosen if r.variant == "baseline"}
    print(table(summary_rows(chosen, baselines), SUMMARY_HEADER))
    print()
    header = ["per child (processing)", *(f"{r.variant} N={r.n:,}" for r in chosen)]
    print(table(kinds_rows(chosen), header))
    print()
    for line in bytes_rows(chosen):
        print(line)
    if costs:
        print()
        print(f"The dependent's array alone ({array_times} of each, mean round trip):")
        print(table(array_rows(costs), ARRAY_HEADER))
    if repeats > 1:
        print()
        for n in sizes:
            for variant in variants:
                mine = [r for r in runs if r.n == n and r.variant == variant]
                walls = [r.children_s for r in mine]
                starts = [r.started_ms for r in mine if r.started_ms is not None]
                print(
                    f"N={n:,} {variant}: process {min(walls):,.1f}-{max(walls):,.1f} s"
                    + (
                        f"; latency to start {min(starts):,.0f}-{max(starts):,.0f} ms"
                        if starts
                        else ""
                    )
                )


def array_rows(costs: list[ArrayCost]) -> list[list[str]]:
    def us(value: float | None) -> str:
        return "-" if value is None else f"{value:,.0f}"

    return [
        [
            f"{c.n:,}",
            f"{c.read_ms:,.2f} ({us(c.read_server_us)})",
            f"{c.read_bytes:,.0f}",
            f"{c.resolve_ms:,.2f} ({us(c.resolve_server_us)})",
            f"{c.counter_ms:,.2f} ({us(c.counter_server_us)})",
            f"{c.resolve_ms / c.counter_ms:,.1f}x",
        ]
        for c in costs
    ]


ARRAY_HEADER = [
    "N (antecedents)",
    "read dependents ms (server us)",
    "bytes read",
    "resolve one edge ms (server us)",
    "counter decrement ms (server us)",
    "resolve / counter",
]


def median_runs(runs: list[Run]) -> list[Run]:
    """For each (N, variant), the run of median processing wall time, in the order met."""
    chosen: list[Run] = []
    seen: dict[tuple[int, str], list[Run]] = {}
    for run in runs:
        seen.setdefault((run.n, run.variant), []).append(run)
    for mine in seen.values():
        ordered = sorted(mine, key=lambda r: r.children_s)
        chosen.append(ordered[len(ordered) // 2])
    chosen.sort(key=lambda r: (-r.n, ["baseline", "chord", "tree"].index(r.variant)))
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uri", help="a real MongoDB instead of the wire stand-in")
    parser.add_argument(
        "--n", type=int, help="children of the fan-in (default 1,000; 10,000 with --uri)"
    )
    parser.add_argument(
        "--small", type=int, help="the smaller N, 0: none (default 250; 1,000 with --uri)"
    )
    parser.add_argument("--concurrency", type=int, default=10, help="of the children's queue")
    parser.add_argument("--tree", type=int, default=0, help="add the two-level variant")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--array-n", type=int, default=10_000, help="the largest N of the array alone (0: none)"
    )
    parser.add_argument("--array-times", type=int, default=100, help="writes per N, array alone")
    parser.add_argument("--quick", action="store_true", help="N = 60 and 20, once")
    args = parser.parse_args(argv)
    real = args.uri is not None
    n = args.n if args.n is not None else (10_000 if real else 1_000)
    small = args.small if args.small is not None else (1_000 if real else 250)
    sizes = [60, 20] if args.quick else [size for size in (n, small) if size]
    array_top = 200 if args.quick else args.array_n
    array_sizes = sorted({*sizes, array_top}) if array_top else []
    array_times = 20 if args.quick else args.array_times
    with server(args.uri) as uri:
        where = args.uri or "the wire stand-in (tests/wire_server.py), its own process"
        print(
            f"fan-in of N children and one callback, children's queue c={args.concurrency}; "
            f"N = {', '.join(f'{n:,}' for n in sizes)}; {args.repeats} run(s) each"
        )
        print(f"server: {where}; client: {machine()}")
        asyncio.run(
            run_all(
                uri,
                sizes,
                args.concurrency,
                args.tree or None,
                args.repeats,
                array_sizes,
                array_times,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
