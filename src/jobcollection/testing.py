"""The in-memory backend, and helpers for testing code that uses jobcollection (needs the
`memory` extra). README "Testing your code" shows them at work.

- `await memory_collection()`: a started JobCollection in memory on a `ManualClock`.
- `await drain(jc, {"type": worker, ...})`: run every ready job of those types to completion
  with those workers, as a queue would (a return completes the job, an exception fails it,
  retries as configured), until none is ready; the clock moves only when you move it. Typed
  tasks work the same: `drain(jc, tasks)` for a TaskRegistry, or a Task, or a list of Tasks,
  or a Task as the worker of its type in the mapping.
- `await perform_job(jc, job, worker)`: run one job through the real claim, validation and
  retry decision; the job as stored after. The worker may be a Task or a TaskRegistry
  (`perform_job(jc, send_email.on(jc).job(args), send_email)`).
- `await assert_enqueued(jc, type, data={...})`: the pending jobs of a type whose data holds
  these values (AssertionError listing what is there otherwise).
- A pytest plugin (`jobcollection.pytest_plugin`, loaded when jobcollection is installed) with
  the fixtures `jobcollection_clock` and `memory_jc` (needs pytest-asyncio).

`memory_database()` returns a mongomock-motor database with two shims applied, both to
mongomock only, never pymongo or Motor:

- current pymongo passes a `sort` keyword to the bulk builder that mongomock 4.x does not
  accept, which breaks `bulk_write`. jobcollection works on a plain mongomock-motor collection
  too (its driver seam then applies a bulk write one update at a time); the shim lets a bulk
  write stay one call, as on a server, which is what fault-injection tests that target
  `bulk_write` rely on. It drops the keyword when it is None and refuses a real sort loudly.
- the in-memory backend has no TTL monitor: mongomock would scan every document of a
  collection with a TTL index (retention's) on every call and delete by the wall clock, which
  the injected clocks of tests and simulations do not follow. MongoDB deletes expired
  documents in the background (every 60 s); here they stay.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeAlias

from .model.constants import Status
from .model.decisions import NO_RULES, RetryRules

if TYPE_CHECKING:
    from .api.collection import JobCollection
    from .api.job import Job
    from .api.tasks import Task, TaskRegistry
    from .model.clock import ManualClock

JobWorker = Callable[["Job"], Awaitable[Any]]
"""A worker of one job, as `process_jobs` takes it (payload 1)."""
Workers: TypeAlias = (
    "Mapping[str, JobWorker | Task[..., Any]] | Task[..., Any] | Iterable[Task[..., Any]]"
)
"""What `drain` runs: workers (or Tasks) by job type, which a TaskRegistry is; a Task; some
Tasks."""
TEST_START = datetime(2026, 1, 1, tzinfo=UTC)
"""Where a test's ManualClock starts unless told otherwise."""
PENDING = Status.PENDING


def _accept_unset_sort(method: Any) -> Any:
    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, sort: Any = None, **kwargs: Any) -> Any:
        if sort is not None:
            raise NotImplementedError("the in-memory backend cannot sort bulk updates")
        return method(self, *args, **kwargs)

    wrapper.__jobcollection_shim__ = True  # type: ignore[attr-defined]
    return wrapper


def _patch_mongomock_bulk() -> None:
    from mongomock.collection import BulkOperationBuilder

    for name in ("add_update", "add_replace"):
        method = getattr(BulkOperationBuilder, name)
        if not getattr(method, "__jobcollection_shim__", False):
            setattr(BulkOperationBuilder, name, _accept_unset_sort(method))


def _no_ttl_monitor(self: Any) -> None:
    """Expired documents stay (see the module docstring)."""


def _patch_mongomock_ttl() -> None:
    from mongomock.store import CollectionStore

    setattr(CollectionStore, "_remove_expired_documents", _no_ttl_monitor)  # noqa: B010


def memory_database(name: str = "jobcollection") -> Any:
    """A fresh in-memory database (Motor-style API) that supports everything jobcollection
    uses, bulk writes included."""
    from mongomock_motor import AsyncMongoMockClient

    _patch_mongomock_bulk()
    _patch_mongomock_ttl()
    return AsyncMongoMockClient()[name]


async def memory_collection(
    *, clock: ManualClock | None = None, root: str = "queue", start: bool = True
) -> JobCollection:
    """A JobCollection on a fresh in-memory database, on `clock` (a ManualClock at
    TEST_START by default), its job server started unless `start=False`. Close it with
    `await jc.close()` when the test is over."""
    from .api.collection import JobCollection
    from .model.clock import ManualClock

    jc = JobCollection.from_database(
        memory_database(), root, clock=clock if clock is not None else ManualClock(TEST_START)
    )
    if start:
        await jc.start_job_server()
    return jc


async def _run(job: Job, worker: JobWorker, rules: RetryRules) -> None:
    """Run one claimed job as a JobQueue does: the worker's return value completes it, its
    exception fails it (not fatally: its retries apply, as the job's `retry(on=...)` and a
    task's retry rules allow; a Snooze, Cancel or Fatal it raised decides instead), unless it
    reported itself."""
    from .api.queue import failure_info
    from .api.queue.failures import decision_for, report_failure

    try:
        outcome = worker(job)
        result = await outcome if inspect.isawaitable(outcome) else outcome
    except Exception as exc:
        if not job.reported:
            failure = failure_info(exc, job._service.limits.max_error_bytes)
            await report_failure(job, failure, decision_for(exc, job, rules))
        return
    if not job.reported:
        await job.done(result)


def _by_type(workers: Workers) -> dict[str, tuple[JobWorker, RetryRules]]:
    """The worker of each job type (a Task's is its `run`), with its retry rules (a Task's
    own, if it declares any); ValueError for a Task filed under another type than its
    name."""
    from .api.tasks import Task

    def of(task: Task[..., Any]) -> tuple[JobWorker, RetryRules]:
        return task.run, task.options.retry_rules() or NO_RULES

    if isinstance(workers, Task):
        return {workers.name: of(workers)}
    if not isinstance(workers, Mapping):
        tasks = list(workers)
        for i, task in enumerate(tasks):
            if not isinstance(task, Task):
                raise TypeError(f"workers[{i}]: a list holds Tasks, not {type(task).__name__}")
        return {task.name: of(task) for task in tasks}
    found: dict[str, tuple[JobWorker, RetryRules]] = {}
    for job_type, worker in workers.items():
        if isinstance(worker, Task):
            if worker.name != job_type:
                raise ValueError(f"workers[{job_type!r}] is the task of {worker.name!r} jobs")
            found[job_type] = of(worker)
        else:
            found[job_type] = (worker, NO_RULES)
    return found


async def drain(jc: JobCollection, workers: Workers, *, limit: int = 10_000) -> int:
    """Run the ready jobs of the workers' types, one at a time, until none is ready (a job
    that becomes ready meanwhile, such as a dependent or a retry without a wait, runs too);
    how many ran. `workers`: a worker (or a Task) by job type, a TaskRegistry, a Task, or a
    list of Tasks. Jobs waiting for a time run once the clock has passed it: move the clock
    (`clock.advance(...)`) and drain again. Raises RuntimeError after `limit` runs (a job
    that retries for ever without a wait)."""
    by_type = _by_type(workers)
    if not by_type:
        raise ValueError("workers: give at least one job type and its worker")
    ran = 0
    types = list(by_type)
    while True:
        await jc.ready_jobs()  # what the job server's next pass would promote now
        claimed = await jc.get_work(types, max_jobs=1)
        if not claimed:
            return ran
        if ran >= limit:
            raise RuntimeError(f"drain: more than {limit} jobs ran; is a job retrying for ever?")
        await _run(claimed[0], *by_type[claimed[0].type])
        ran += 1


async def perform_job(
    jc: JobCollection, job: Job, worker: JobWorker | Task[..., Any] | TaskRegistry
) -> Job:
    """Save `job` if it is new, make it ready now (whatever its delay), claim it and run
    `worker` on it as a queue would; the job as stored afterwards (completed, failed, or
    waiting for a retry). `worker` may be the job's Task, or a TaskRegistry holding it.
    Other ready jobs of its type are left as they were."""
    from .api.tasks import Task, TaskRegistry

    rules = NO_RULES
    if isinstance(worker, Task | TaskRegistry):
        found = _by_type(worker).get(job.type)
        if found is None:
            raise ValueError(f"perform_job: {worker!r} has no task for {job.type!r} jobs")
        worker, rules = found
    if job.id is None:
        await job.save()
    if job.id is None:
        raise RuntimeError("perform_job: the job was not saved (cancelled or replaced)")
    await jc.ready_jobs([job.id], time=jc.forever_date, force=True)
    claimed = await jc.get_work(job.type, max_jobs=jc.limits.max_jobs)
    mine = [c for c in claimed if c.id == job.id]
    for other in claimed:
        if other.id != job.id:
            await other.release()
    if not mine:
        raise RuntimeError(f"perform_job: job {job.id} could not be claimed (is it ready?)")
    await _run(mine[0], worker, rules)
    stored = await jc.get_job(job.id, get_log=True, get_failures=True)
    assert stored is not None
    return stored


def _holds(data: Any, expected: Any) -> bool:
    """Whether `data` holds `expected`: equal, or for dicts every expected key held."""
    if isinstance(expected, Mapping) and isinstance(data, Mapping):
        return all(k in data and _holds(data[k], v) for k, v in expected.items())
    return bool(data == expected)


async def assert_enqueued(
    jc: JobCollection,
    type: str,
    data: Mapping[str, Any] | None = None,
    *,
    count: int | None = None,
) -> list[Job]:
    """The pending jobs (waiting, paused or ready) of `type` whose data holds `data` (a
    partial match: nested dicts compare key by key); AssertionError, listing the pending jobs
    of that type, if there is none (or not exactly `count`)."""
    page = await jc.find_jobs(type=type, status=list(PENDING), limit=1000)
    matching = [job for job in page.jobs if data is None or _holds(job.data, data)]
    if (count is None and not matching) or (count is not None and len(matching) != count):
        seen = [job.data for job in page.jobs]
        wanted = "some" if count is None else str(count)
        raise AssertionError(
            f"expected {wanted} pending {type!r} job(s) with data holding {data!r}, found "
            f"{len(matching)}; the pending {type!r} jobs hold: {seen!r}"
        )
    return matching
