"""The measured workloads. Each takes a backend and returns one Sample (or latencies).

jobcollection scenarios go through the public API only (`Job.save`, `jc.save_jobs`,
`jc.process_jobs`); the baseline is the same workload written naively with the raw driver:
one `insert_one` per job, one `find_one_and_update` per claim, one `update_one` per completion.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from backends import Backend
from bson import ObjectId
from pymongo import ReturnDocument

from jobcollection import Job, JobCollection, SystemClock
from jobcollection.rules import transitions

JOB_TYPE = "bench"


@dataclass(frozen=True)
class Sample:
    """One measured run: jobs processed, seconds, database commands issued, and of the
    seconds, those spent inside the in-memory backend (0 on a real server)."""

    jobs: int
    seconds: float
    commands: int
    backend_s: float = 0.0

    @property
    def jobs_per_s(self) -> float:
        return self.jobs / self.seconds

    @property
    def commands_per_job(self) -> float:
        return self.commands / self.jobs

    @property
    def client_us_per_job(self) -> float:
        """Microseconds per job outside the backend: jobcollection (or the naive loop), the
        driver layer and the event loop. Meaningful on the in-memory backend without a
        simulated round trip, where the backend never suspends."""
        return (self.seconds - self.backend_s) / self.jobs * 1e6


class Meter:
    """Measures one block of work on a backend."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.commands = backend.commands
        self.backend_s = backend.backend_s
        self.started = time.perf_counter()

    def stop(self, jobs: int) -> Sample:
        return Sample(
            jobs,
            time.perf_counter() - self.started,
            self.backend.commands - self.commands,
            self.backend.backend_s - self.backend_s,
        )


async def _started(backend: Backend) -> tuple[JobCollection, Any]:
    collection = await backend.collection()
    jc = JobCollection(collection, clock=SystemClock())
    await jc.start_job_server()  # creates the indexes: before the measurement starts
    return jc, collection


async def _finish(backend: Backend, jc: JobCollection, collection: Any) -> None:
    await jc.shutdown_job_server(timeout=0)
    await jc.close()
    await backend.drop(collection)


def _jobs(jc: JobCollection, n: int) -> list[Job]:
    return [jc.create_job(JOB_TYPE, {"i": i}) for i in range(n)]


# --- enqueue -------------------------------------------------------------------------------


async def enqueue_one_by_one(backend: Backend, n: int) -> Sample:
    jc, collection = await _started(backend)
    meter = Meter(backend)
    for job in _jobs(jc, n):
        await job.save()
    sample = meter.stop(n)
    await _finish(backend, jc, collection)
    return sample


async def enqueue_batched(backend: Backend, n: int) -> Sample:
    jc, collection = await _started(backend)
    meter = Meter(backend)
    ids = await jc.save_jobs(_jobs(jc, n))
    sample = meter.stop(n)
    assert None not in ids
    await _finish(backend, jc, collection)
    return sample


def naive_doc(i: int, job_type: str = JOB_TYPE) -> dict[str, Any]:
    """A ready job as the naive loop inserts it: the v1.x fields its claim sorts and filters on."""
    now = datetime.now(UTC)
    return {
        "type": job_type,
        "data": {"i": i},
        "status": "ready",
        "priority": 0,
        "retryUntil": now,
        "after": now,
        "created": now,
        "updated": now,
    }


async def enqueue_naive(backend: Backend, n: int) -> Sample:
    collection = await backend.collection()
    meter = Meter(backend)
    for i in range(n):
        await collection.insert_one(naive_doc(i))
    sample = meter.stop(n)
    await backend.drop(collection)
    return sample


# --- end to end ----------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueSettings:
    concurrency: int
    payload: int
    prefetch: int

    def __str__(self) -> str:
        return f"c={self.concurrency} p={self.payload} f={self.prefetch}"


async def end_to_end(backend: Backend, n: int, settings: QueueSettings) -> Sample:
    """Enqueue n jobs (save_jobs), process them with a JobQueue whose worker does nothing,
    and wait until every job is stored as completed."""
    jc, collection = await _started(backend)
    seen = 0
    all_seen = asyncio.Event()

    async def worker(job_or_jobs: Job | list[Job]) -> None:
        nonlocal seen
        seen += len(job_or_jobs) if isinstance(job_or_jobs, list) else 1
        if seen >= n:
            all_seen.set()

    meter = Meter(backend)
    await jc.save_jobs(_jobs(jc, n))
    queue = jc.process_jobs(
        JOB_TYPE,
        worker,
        concurrency=settings.concurrency,
        payload=settings.payload,
        prefetch=settings.prefetch,
        poll_interval=None,
        wakeup=False,
    )
    await asyncio.wait_for(all_seen.wait(), timeout=600)
    await queue.shutdown("soft", quiet=True)  # returns once every done() has been written
    sample = meter.stop(n)
    left = await collection.count_documents({"status": {"$ne": "completed"}})
    assert left == 0, f"{left} jobs not completed"
    await _finish(backend, jc, collection)
    return sample


async def naive_worker(collection: Any, job_type: str) -> None:
    """The naive loop's worker, with the raw driver: claim the next ready job of the type with
    find_one_and_update, complete it with update_one, until none is ready (two commands a
    job, what the library's defaults send too)."""
    while True:
        run_id = ObjectId()
        job = await collection.find_one_and_update(
            {"type": job_type, "status": "ready"},
            {"$set": {"status": "running", "runId": run_id, "updated": datetime.now(UTC)}},
            sort=[("priority", 1), ("retryUntil", 1), ("after", 1)],
            projection={"data": 1},
            return_document=ReturnDocument.AFTER,
        )
        if job is None:
            return
        await collection.update_one(
            {"_id": job["_id"], "runId": run_id, "status": "running"},
            {"$set": {"status": "completed", "result": {}, "updated": datetime.now(UTC)}},
        )


async def end_to_end_naive(backend: Backend, n: int, concurrency: int) -> Sample:
    """The same workload with the raw driver: insert_one per job, then `concurrency` workers
    each looping find_one_and_update (claim) and update_one (complete)."""
    collection = await backend.collection()
    await collection.create_index([("type", 1), ("status", 1), ("priority", 1)])

    meter = Meter(backend)
    for i in range(n):
        await collection.insert_one(naive_doc(i))
    await asyncio.gather(*(naive_worker(collection, JOB_TYPE) for _ in range(concurrency)))
    sample = meter.stop(n)
    left = await collection.count_documents({"status": {"$ne": "completed"}})
    assert left == 0, f"{left} jobs not completed"
    await backend.drop(collection)
    return sample


# --- latency -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Latency:
    samples: list[float]

    def percentile(self, q: float) -> float:
        ordered = sorted(self.samples)
        if len(ordered) == 1:
            return ordered[0]
        return statistics.quantiles(ordered, n=100, method="inclusive")[round(q) - 1]


async def enqueue_to_start(
    backend: Backend, jobs: int, *, mode: str, poll_interval: float, seed: int = 1
) -> Latency:
    """Seconds from just before `save()` to the worker starting the job, one job at a time at
    random moments. mode: "poll" (polling only), "trigger" (save then queue.trigger(), the
    in-process wake-up) or "change-stream" (the queue's change-stream wake-up)."""
    jc, collection = await _started(backend)
    rng = random.Random(seed)
    saved_at: dict[Any, float] = {}
    latencies: list[float] = []
    got_one = asyncio.Event()

    async def worker(job: Job) -> None:
        latencies.append(time.perf_counter() - saved_at[job.data["key"]])
        got_one.set()

    queue = jc.process_jobs(
        JOB_TYPE,
        worker,
        poll_interval=poll_interval if mode != "change-stream" else 60.0,
        wakeup=mode == "change-stream",
    )
    # Saved through another JobCollection, as another process would: the queue's own
    # collection would tell it of each save at once (LocalSaves), whatever the mode.
    saver = JobCollection(collection, clock=SystemClock())
    if mode == "change-stream":
        await asyncio.sleep(0.5)  # let the stream open before the first job
    for key in range(jobs):
        await asyncio.sleep(rng.uniform(0, poll_interval))
        got_one.clear()
        saved_at[key] = time.perf_counter()
        await saver.create_job(JOB_TYPE, {"key": key}).save()
        if mode == "trigger":
            queue.trigger()
        await asyncio.wait_for(got_one.wait(), timeout=max(10 * poll_interval, 10))
    await queue.shutdown("soft", quiet=True)
    await saver.close()
    await _finish(backend, jc, collection)
    return Latency(latencies)


# --- explain (real server only) ------------------------------------------------------------


@dataclass(frozen=True)
class Explained:
    queued: int
    stages: list[str]
    index: str | None
    keys_examined: int
    docs_examined: int
    millis: int

    @property
    def uses_index(self) -> bool:
        return "COLLSCAN" not in self.stages and self.index is not None


def _stages(plan: dict[str, Any]) -> list[str]:
    out = [plan.get("stage", "?")]
    for key in ("inputStage", "queryPlan"):
        if isinstance(plan.get(key), dict):
            out += _stages(plan[key])
    for child in plan.get("inputStages", []):
        out += _stages(child)
    return out


def _index_name(plan: dict[str, Any]) -> str | None:
    if plan.get("indexName"):
        return str(plan["indexName"])
    for key in ("inputStage", "queryPlan"):
        if isinstance(plan.get(key), dict) and (name := _index_name(plan[key])):
            return name
    for child in plan.get("inputStages", []):
        if name := _index_name(child):
            return name
    return None


async def explain_claim(backend: Backend, sizes: list[int], limit: int = 100) -> list[Explained]:
    """Store `size` jobs (nine in ten ready, the rest completed), then explain the claim
    query get_work sends, at each size."""
    jc, collection = await _started(backend)
    template = transitions.insert_document(jc.create_job(JOB_TYPE).doc, datetime.now(UTC))
    assert template is not None
    out: list[Explained] = []
    queued = 0
    for size in sizes:
        while queued < size:
            chunk = min(10_000, size - queued)
            docs = [{**template, "data": {"i": queued + i}} for i in range(chunk)]
            for i in range(0, chunk, 10):  # some finished jobs too, as a live queue has
                docs[i]["status"] = "completed"
            await collection.insert_many(docs)
            queued += chunk
        cursor = (
            collection.find(transitions.claimable([JOB_TYPE]), {"_id": 1})
            .sort(transitions.CLAIM_SORT)
            .limit(limit)
        )
        plan = await cursor.explain()
        winning = plan["queryPlanner"]["winningPlan"]
        stats = plan.get("executionStats", {})
        out.append(
            Explained(
                queued=size,
                stages=_stages(winning),
                index=_index_name(winning),
                keys_examined=int(stats.get("totalKeysExamined", -1)),
                docs_examined=int(stats.get("totalDocsExamined", -1)),
                millis=int(stats.get("executionTimeMillis", -1)),
            )
        )
    await _finish(backend, jc, collection)
    return out


# --- processing only (jobs stored before the measurement) ----------------------------------


async def insert_naive_bulk(collection: Any, n: int, job_type: str = JOB_TYPE) -> None:
    """Store n ready jobs as the naive loop writes them (naive_doc), in insert_many batches of
    1,000: the naive side of a processing-only measurement, done before it starts."""
    for start in range(0, n, 1000):
        await collection.insert_many(
            [naive_doc(i, job_type) for i in range(start, min(n, start + 1000))]
        )


async def save_bulk(jc: JobCollection, n: int, job_type: str = JOB_TYPE) -> None:
    """Store n ready jobs with save_jobs (one call): jobcollection's side of a processing-only
    measurement, done before it starts."""
    ids = await jc.save_jobs([jc.create_job(job_type, {"i": i}) for i in range(n)])
    assert None not in ids


async def process_saved(
    jc: JobCollection, n: int, settings: QueueSettings, job_type: str = JOB_TYPE
) -> None:
    """Process n stored jobs of job_type with a JobQueue whose worker does nothing (no polling,
    no wake-up) until every one has been handed to the worker and every report is written:
    the claims and completions alone."""
    seen = 0
    all_seen = asyncio.Event()

    async def worker(job_or_jobs: Job | list[Job]) -> None:
        nonlocal seen
        seen += len(job_or_jobs) if isinstance(job_or_jobs, list) else 1
        if seen >= n:
            all_seen.set()

    queue = jc.process_jobs(
        job_type,
        worker,
        concurrency=settings.concurrency,
        payload=settings.payload,
        prefetch=settings.prefetch,
        poll_interval=None,
        wakeup=False,
    )
    await asyncio.wait_for(all_seen.wait(), timeout=900)
    await queue.shutdown("soft", quiet=True)  # returns once every done() has been written


async def process_only(backend: Backend, n: int, settings: QueueSettings) -> Sample:
    """end_to_end without the enqueue in the measurement: save_jobs first, then measure the
    queue processing the n jobs (claims and completions only)."""
    jc, collection = await _started(backend)
    await save_bulk(jc, n)
    meter = Meter(backend)
    await process_saved(jc, n, settings)
    sample = meter.stop(n)
    left = await collection.count_documents({"status": {"$ne": "completed"}})
    assert left == 0, f"{left} jobs not completed"
    await _finish(backend, jc, collection)
    return sample


async def process_only_naive(backend: Backend, n: int, concurrency: int) -> Sample:
    """end_to_end_naive without the enqueue in the measurement: insert_many first, then
    measure the naive workers (find_one_and_update + update_one per job)."""
    collection = await backend.collection()
    await collection.create_index([("type", 1), ("status", 1), ("priority", 1)])
    await insert_naive_bulk(collection, n)
    meter = Meter(backend)
    await asyncio.gather(*(naive_worker(collection, JOB_TYPE) for _ in range(concurrency)))
    sample = meter.stop(n)
    left = await collection.count_documents({"status": {"$ne": "completed"}})
    assert left == 0, f"{left} jobs not completed"
    await backend.drop(collection)
    return sample
