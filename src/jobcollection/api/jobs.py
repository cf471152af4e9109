"""The Python API of a job collection, over any JobService: local or remote alike.

`JobsAPI` holds what a program does with jobs (create, find, claim and process them, manage
them in bulk, schedule them), validating each argument and calling the collection's typed
service (seam.py). `JobCollection` (collection.py) provides the service over a MongoDB
collection and adds what only the database's side has (the job server, indexes, the method
layer and its rules); `RemoteJobCollection` (remote/client.py) provides it over the remote
API.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Unpack, overload

from bson import ObjectId

from ..model import constants as c
from ..model import ops, queries
from ..model import validation as v
from ..model.concurrency import ConcurrencyLimit
from ..model.decisions import Backoff, ExceptionTypes, RetryOn, RetryRules
from ..model.document import JobDoc
from ..model.errors import InvalidArgument, InvalidArgumentType
from ..model.queries import QueueStats
from ..model.ratelimit import RateLimit
from ..model.types import Id, Paused
from ..model.workers import WorkerInfo
from ..mongo.wakeup import WakeupSource
from . import waiting
from .job import Job, save_all
from .queue import DEFAULT_CANCEL_GRACE, ErrorCallback, JobQueue, QueueOptions, Worker
from .queue.options import ExecutorName
from .schedules import Schedules
from .seam import JobService
from .tasks import BoundDeclaration, TaskKeywords, TaskSource, dispatcher, registered
from .workflows import Batch, Flow, Workflow, as_flow, save_flow

BULK_CHUNK = 256
"""Ids per call for the bulk helpers, as in the original client."""


@dataclass(frozen=True, slots=True)
class JobPage:
    """A page of `find_jobs`: its jobs, newest first, and the cursor of the next page."""

    jobs: list[Job]
    next: str | None
    """Give it as `after=` for the next page; None: this is the last page."""


class JobsAPI:
    """Creating, finding, claiming and managing jobs through `self.service`."""

    forever = c.FOREVER
    forever_date = c.FOREVER_DATE
    job_priorities = c.JOB_PRIORITIES
    job_statuses = c.JOB_STATUSES
    job_log_levels = c.JOB_LOG_LEVELS
    job_retry_backoff_methods = c.JOB_RETRY_BACKOFF_METHODS
    job_status_cancellable = c.JOB_STATUS_CANCELLABLE
    job_status_pausable = c.JOB_STATUS_PAUSABLE
    job_status_removable = c.JOB_STATUS_REMOVABLE
    job_status_restartable = c.JOB_STATUS_RESTARTABLE
    methods = c.METHODS
    permission_levels = c.PERMISSION_LEVELS
    method_permissions = c.METHOD_PERMISSIONS

    @property
    def service(self) -> JobService:
        """The typed operations `Job` and `JobQueue` call (a JobService, see seam.py)."""
        raise NotImplementedError

    # --- reading and claiming ----------------------------------------------------------------

    async def get_job(
        self, id: Id, get_log: bool = False, get_failures: bool = False
    ) -> Job | None:
        """The stored job with this id (a 24-hex string is the ObjectId it spells), or
        None; with its log and failures if asked."""
        found = await self.service.run(
            ops.GetJobs(
                [v.job_id(id)],
                get_log=v.boolean(get_log, "get_log"),
                get_failures=v.boolean(get_failures, "get_failures"),
            )
        )
        return Job(self, found[0]) if found else None

    async def get_jobs(
        self, ids: Sequence[Id], get_log: bool = False, get_failures: bool = False
    ) -> list[Job]:
        """The stored jobs among these ids, in their order (missing ones left out)."""
        ids = v.job_ids(ids)
        if not ids:
            return []
        found = await self.service.run(
            ops.GetJobs(
                ids,
                get_log=v.boolean(get_log, "get_log"),
                get_failures=v.boolean(get_failures, "get_failures"),
            )
        )
        return [Job(self, doc) for doc in found]

    async def find_jobs(
        self,
        type: str | Sequence[str] | None = None,
        status: str | Sequence[str] | None = None,
        user_id: int | str | ObjectId | None = None,
        created_before: datetime | None = None,
        data: dict[str, Any] | None = None,
        limit: int = 100,
        after: str | None = None,
        workflow: Id | None = None,
        batch: Id | None = None,
        callback_of: Id | None = None,
        schedule: str | None = None,
        oldest: bool = False,
    ) -> JobPage:
        """A page of the jobs that match every condition given, newest first: of a type (or
        types) and status (or statuses), for a user, created before a moment, whose data
        holds these values at these paths (`{"customer.id": 7}`, at most 100 paths), at most
        `limit` (1 to 1,000), saved in a workflow, belonging to a batch, or callbacks of a
        batch (`workflow`, `batch`, `callback_of`: its id), or runs of a schedule object
        (`schedule`: its id, see `jc.schedules`); `oldest`: oldest first instead (the dashboard's
        sort; the `_id` index serves both orders). Pages by keyset, not
        by skipping: give the page's `next` as `after` for the following one (see
        model/queries.py). Remotely: the method jobFind."""
        query = queries.job_query(
            type,
            status,
            user_id,
            created_before,
            data,
            limit,
            workflow,
            batch,
            callback_of,
            schedule,
            oldest,
        )
        if after is not None:
            queries.decode_cursor(after)
        found = await self.service.run(ops.FindJobs(query, after))
        return JobPage([Job(self, doc) for doc in found.docs], found.next)

    @property
    def schedules(self) -> Schedules:
        """Schedules as objects (api/schedules.py): `await jc.schedules.upsert("nightly",
        cron="0 3 * * *", type="report")`, then list, pause, resume, trigger, backfill and
        remove them by id; the elected job server makes their runs, one per occurrence."""
        return Schedules(self.service)

    async def stats(self) -> QueueStats:
        """How many jobs each type has in each status, and the oldest ready job of each type
        (for dashboards, metrics and alerts: a growing oldest-ready age means workers do not
        keep up). One count per type and status, served by an index. Remotely: the method
        jobStats."""
        return await self.service.run(ops.Stats())

    # --- cluster-wide pause ------------------------------------------------------------------

    async def pause_type(self, type: str | Sequence[str] | None) -> Paused:
        """Stop every process from claiming jobs of this type (or types; None: of every
        type) until resume_type: local queues, `get_work`, remote and node.js workers alike,
        on this process at once and on the others within a second. Running jobs finish;
        ready jobs stay ready. What is paused now. Remotely: the method jobPauseTypes."""
        return await self.service.run(ops.PauseTypes(_types_or_every(type)))

    async def resume_type(self, type: str | Sequence[str] | None) -> Paused:
        """Let every process claim jobs of this type (or types) again; None resumes every
        type and lifts the pause of every type (resuming some types while every type is
        paused leaves every type paused). What is paused now. Remotely: jobResumeTypes."""
        return await self.service.run(ops.ResumeTypes(_types_or_every(type)))

    async def paused_types(self) -> Paused:
        """Which types no process claims now. Remotely: the method jobPausedTypes."""
        return await self.service.run(ops.PausedTypes())

    # --- concurrency limits ------------------------------------------------------------------

    async def set_concurrency_limit(
        self, type: str, limit: ConcurrencyLimit | None
    ) -> dict[str, ConcurrencyLimit]:
        """At most `limit.max_running` jobs of this type running at once (per group, with
        `group_by`) over every process, remote and node.js worker; None removes the type's
        limit. Applies on this process at once and on the others within a second; jobs
        running beyond a lowered limit finish. Every type's limit now. See README
        "Concurrency limits". Remotely: the method jobSetConcurrencyLimit."""
        if limit is not None and not isinstance(limit, ConcurrencyLimit):
            raise InvalidArgumentType("limit", "must be a ConcurrencyLimit or None")
        return await self.service.run(ops.SetConcurrencyLimit(ops.one_type(type, "type"), limit))

    async def concurrency_limits(self) -> dict[str, ConcurrencyLimit]:
        """Every type's concurrency limit, by type. Remotely: jobConcurrencyLimits."""
        return await self.service.run(ops.ConcurrencyLimits())

    # --- the worker registry -----------------------------------------------------------------

    async def workers(self) -> list[WorkerInfo]:
        """The live queues of every process working on this collection, local, remote and
        DDP (kind): host, pid, library version, types, concurrency, payload, prefetch, the
        jobs each holds, who registered it, when it started and was last seen. A queue
        registers every third of its TTL (`worker_ttl`, 30 s by default) and leaves at its
        shutdown; one not seen within its TTL (a killed process) is gone. Remotely: the
        method jobWorkers."""
        return await self.service.run(ops.ListWorkers())

    async def get_work(
        self,
        type_or_types: str | Sequence[str],
        max_jobs: int = 1,
        work_timeout: float | timedelta | None = None,
    ) -> list[Job]:
        """Claim up to max_jobs ready jobs of the given type(s); [] while the server is stopped."""
        docs = await self.service.run(
            ops.GetWork(
                v.job_types(type_or_types),
                max_jobs=v.integer(max_jobs, "max_jobs", minimum=1, maximum=c.FOREVER),
                work_timeout_ms=None
                if work_timeout is None
                else v.duration_ms(work_timeout, "work_timeout", minimum_ms=1),
            )
        )
        return [Job._claimed(self, doc) for doc in docs]

    def process_jobs(
        self,
        type_or_types: str | Sequence[str],
        worker: Worker,
        *,
        concurrency: int = 1,
        payload: int = 1,
        poll_interval: float | timedelta | None = 5.0,
        prefetch: int = 0,
        work_timeout: float | timedelta | None = None,
        timeout: float | timedelta | None = None,
        cancel_grace: float | timedelta = DEFAULT_CANCEL_GRACE,
        error_callback: ErrorCallback | None = None,
        wakeup: WakeupSource | bool = True,
        rate_limit: RateLimit | None = None,
        cargo: int | None = None,
        executor: Executor | ExecutorName | None = None,
        max_tasks_per_child: int | None = None,
        max_memory_per_child: int | None = None,
        retry_on: RetryOn | None = None,
        non_retryable: ExceptionTypes = (),
        retry_backoff: Backoff | None = None,
    ) -> JobQueue:
        """A queue that claims jobs and hands them to a worker (call it inside a running
        event loop; it starts at once): an async function runs on the event loop; a plain
        function runs in a thread (the queue's own pool of `concurrency` threads, or
        `executor`), and uses `job.sync` for the job's actions (see api/queue/threads.py).
        `executor="process"` runs a plain function in up to `concurrency` child processes
        instead, handed a picklable `JobView` (id, type, data, attempt) for CPU-bound code; a
        timeout or a cancel kills the child (SIGTERM, SIGKILL after `cancel_grace`), and
        `max_tasks_per_child` (calls) and `max_memory_per_child` (resident bytes) recycle
        children (see api/queue/processes.py). `poll_interval` None or 0 disables polling;
        `work_timeout` is the lease of every claim (None: 60 s), renewed every third of it
        while the queue holds the job; `wakeup` True starts jobs as soon as they become ready
        where the server has change streams (a remote collection: through a long poll),
        False relies on polling and trigger(), or give your own WakeupSource; `timeout` (the
        longest a worker call may run) and `cancel_grace`: see QueueOptions, the one value
        these options become; `rate_limit`: see README "Rate limits"; `cargo`: the seeds'
        early name of `payload` (not both). `retry_on` (exception types, or a predicate of
        the exception), `non_retryable` (exception types) and `retry_backoff` (a function
        (exc, attempt) -> seconds or None) decide which of the worker's exceptions are
        retried and after what wait: others fail the job fatally (RetryRules,
        model/decisions.py; the worker may also raise Snooze, Cancel or Fatal)."""
        if cargo is not None:
            if payload != 1:
                raise InvalidArgument("cargo", "is the early name of payload: give one of them")
            payload = v.integer(cargo, "cargo", minimum=1)  # its errors name what was written
        options = QueueOptions(
            concurrency=concurrency,
            payload=payload,
            prefetch=prefetch,
            poll_interval=poll_interval,
            work_timeout=work_timeout,
            timeout=timeout,
            cancel_grace=cancel_grace,
            rate_limit=rate_limit,
            wakeup=wakeup,
            error_callback=error_callback,
            executor=executor,
            max_tasks_per_child=max_tasks_per_child,
            max_memory_per_child=max_memory_per_child,
            retry_rules=RetryRules(
                retry_on=retry_on, non_retryable=non_retryable, retry_backoff=retry_backoff
            ),
        )
        return JobQueue(self, type_or_types, worker, options)

    async def wait_for(
        self, ids: Sequence[Id], timeout: float | timedelta | None = None
    ) -> list[Job]:
        """Wait until every one of these jobs is final (see `Job.wait`); the jobs, in order
        (removed ones left out); TimeoutError after `timeout` seconds."""
        wanted = v.job_ids(ids)
        limit = None if timeout is None else v.duration_ms(timeout, "timeout") / 1000
        docs = await waiting.waiters(self.service).wait(wanted, limit)
        return [Job(self, doc) for doc in docs if doc is not None]

    async def save_jobs(
        self, jobs: Sequence[Job], cancel_repeats: bool = False, *, session: Any = None
    ) -> list[Id | None]:
        """Save many new jobs in as few round trips as their semantics allow (one for jobs
        without dependencies); each job's id is set as save() would. The ids, in order.
        Safe to call again after a DatabaseError: each job is inserted at most once.
        `session`: all of them inside your transaction, as for `Job.save`.

        Every job is checked before any is written, so an invalid job refuses the whole list
        (InvalidArgument naming `jobs[i]`, its index in this list)."""
        jobs = list(jobs)
        for i, job in enumerate(jobs):
            if not isinstance(job, Job):
                raise InvalidArgumentType(f"jobs[{i}]", "must be a Job")
        repeats = v.boolean(cancel_repeats, "cancel_repeats")
        return await save_all(self.service, jobs, cancel_repeats=repeats, session=session)

    async def save_workflow(self, flow: Flow | Job, *, session: Any = None) -> Workflow:
        """Save the new jobs of a flow (`chain`, `group`, `chord`; see api/workflows.py) with
        the dependencies between them, in as few commands as save_jobs of the same jobs, each
        marked with the workflow's id: nothing runs before everything that depends on it is
        stored. Safe to call again with the same flow after a DatabaseError. `session`: the
        whole flow inside your transaction, as for `save_jobs`. The workflow."""
        checked = as_flow(flow)
        ids = await save_flow(self.service, checked, session=session)
        return Workflow(self, checked.id, ids)

    def workflow(self, workflow_id: Id) -> Workflow:
        """The workflow saved under this id (its jobs, status, cancel, retry)."""
        return Workflow(self, v.job_id(workflow_id, "workflow_id"), [])

    def batch(self, batch_id: Id) -> Batch:
        """The batch of this id (`batch(...)`'s flow id): its members, status, cancel,
        retry."""
        return Batch(self, v.job_id(batch_id, "batch_id"), [])

    # --- bulk management ---------------------------------------------------------------------

    async def _bulk(
        self, ids: Any, op: Callable[[list[Id]], ops.Op[bool]], count: bool = False
    ) -> bool | int:
        """Run an operation on ids in chunks of BULK_CHUNK (`op` makes it for a chunk):
        whether any changed, or with `count` how many of these jobs it changed (their
        statuses are read before and after each chunk: two reads more per chunk)."""
        ids = v.job_ids(ids)
        if not v.boolean(count, "count"):
            changed = False
            for start in range(0, len(ids), BULK_CHUNK):
                chunk = ids[start : start + BULK_CHUNK]
                changed = bool(await self.service.run(op(chunk))) or changed
            return changed
        total = 0
        for start in range(0, len(ids), BULK_CHUNK):
            chunk = ids[start : start + BULK_CHUNK]
            before = await self._statuses(chunk)
            await self.service.run(op(chunk))
            after = await self._statuses(chunk)
            total += sum(1 for job_id, status in before.items() if after.get(job_id) != status)
        return total

    async def _statuses(self, ids: list[Id]) -> dict[Id | None, str]:
        return {doc.id: doc.status for doc in await self.service.run(ops.GetJobs(ids))}

    @overload
    async def ready_jobs(
        self,
        ids: Sequence[Id] | None = None,
        time: datetime | None = None,
        force: bool = False,
        *,
        count: Literal[False] = False,
    ) -> bool: ...
    @overload
    async def ready_jobs(
        self,
        ids: Sequence[Id] | None = None,
        time: datetime | None = None,
        force: bool = False,
        *,
        count: Literal[True],
    ) -> int: ...
    async def ready_jobs(
        self,
        ids: Sequence[Id] | None = None,
        time: datetime | None = None,
        force: bool = False,
        *,
        count: bool = False,
    ) -> bool | int:
        """Promote waiting jobs now; with no ids, every due job without dependencies.
        Whether any changed; with `count=True` (and ids), how many of them."""
        when = None if time is None else v.aware_datetime(time, "time")
        forced = v.boolean(force, "force")
        if ids is None:
            if count:
                raise InvalidArgument("count", "needs the ids of the jobs to count")
            return await self.service.run(ops.Ready(None, time=when, force=forced))
        return await self._bulk(ids, lambda chunk: ops.Ready(chunk, time=when, force=forced), count)

    @overload
    async def pause_jobs(self, ids: Sequence[Id], *, count: Literal[False] = False) -> bool: ...
    @overload
    async def pause_jobs(self, ids: Sequence[Id], *, count: Literal[True]) -> int: ...
    async def pause_jobs(self, ids: Sequence[Id], *, count: bool = False) -> bool | int:
        """Pause these jobs (256 per call); whether any changed, or with `count=True` how
        many."""
        return await self._bulk(ids, ops.Pause, count)

    @overload
    async def resume_jobs(self, ids: Sequence[Id], *, count: Literal[False] = False) -> bool: ...
    @overload
    async def resume_jobs(self, ids: Sequence[Id], *, count: Literal[True]) -> int: ...
    async def resume_jobs(self, ids: Sequence[Id], *, count: bool = False) -> bool | int:
        """Resume these paused jobs; whether any changed, or with `count=True` how many."""
        return await self._bulk(ids, ops.Resume, count)

    @overload
    async def cancel_jobs(
        self,
        ids: Sequence[Id],
        antecedents: bool = False,
        dependents: bool = True,
        *,
        count: Literal[False] = False,
    ) -> bool: ...
    @overload
    async def cancel_jobs(
        self,
        ids: Sequence[Id],
        antecedents: bool = False,
        dependents: bool = True,
        *,
        count: Literal[True],
    ) -> int: ...
    async def cancel_jobs(
        self,
        ids: Sequence[Id],
        antecedents: bool = False,
        dependents: bool = True,
        *,
        count: bool = False,
    ) -> bool | int:
        """Cancel these jobs (their dependents too, by default); whether any changed, or
        with `count=True` how many of these (dependents are not counted)."""
        up, down = v.boolean(antecedents, "antecedents"), v.boolean(dependents, "dependents")
        return await self._bulk(
            ids, lambda chunk: ops.Cancel(chunk, antecedents=up, dependents=down), count
        )

    @overload
    async def restart_jobs(
        self,
        ids: Sequence[Id],
        retries: int = 0,
        until: datetime | None = None,
        antecedents: bool = True,
        dependents: bool = False,
        *,
        count: Literal[False] = False,
    ) -> bool: ...
    @overload
    async def restart_jobs(
        self,
        ids: Sequence[Id],
        retries: int = 0,
        until: datetime | None = None,
        antecedents: bool = True,
        dependents: bool = False,
        *,
        count: Literal[True],
    ) -> int: ...
    async def restart_jobs(
        self,
        ids: Sequence[Id],
        retries: int = 0,
        until: datetime | None = None,
        antecedents: bool = True,
        dependents: bool = False,
        *,
        count: bool = False,
    ) -> bool | int:
        """Restart these cancelled or failed jobs with `retries` more attempts; whether any
        changed, or with `count=True` how many of these."""
        more = v.count(retries, "retries")
        deadline = None if until is None else v.aware_datetime(until, "until")
        up, down = v.boolean(antecedents, "antecedents"), v.boolean(dependents, "dependents")
        return await self._bulk(
            ids,
            lambda chunk: ops.Restart(
                chunk, retries=more, until=deadline, antecedents=up, dependents=down
            ),
            count,
        )

    @overload
    async def remove_jobs(self, ids: Sequence[Id], *, count: Literal[False] = False) -> bool: ...
    @overload
    async def remove_jobs(self, ids: Sequence[Id], *, count: Literal[True]) -> int: ...
    async def remove_jobs(self, ids: Sequence[Id], *, count: bool = False) -> bool | int:
        """Delete these finished jobs; whether any was removed, or with `count=True` how
        many."""
        return await self._bulk(ids, ops.Remove, count)

    # --- jobs --------------------------------------------------------------------------------

    def create_job(self, type: str, data: dict[str, Any] | None = None) -> Job:
        """A new job of a type with its data, to configure with the builders and save()."""
        return Job(self, type, data)

    # --- scheduling (seed 003) ----------------------------------------------------------------

    async def schedule_job(
        self,
        type: str,
        data: dict[str, Any] | None = None,
        *,
        user_id: int | str | ObjectId = 0,
        due: datetime | None = None,
        retry_on_failure: bool = False,
        retry_delay: float | timedelta | None = None,
        remove_after: float | timedelta | None = None,
    ) -> Id | None:
        """Schedule a one-off job for a user (0: the system) at `due` (default now), first
        cancelling that user's jobs of this type that have not started, or started but are
        past their lease; a running job within its lease is left alone. At most one such job
        is ever pending, however many calls race (a unique job, see Job.unique). The new id;
        None if a concurrent call's job replaced this one as it was saved.

        `retry_on_failure` retries a failed run without end, `retry_delay` seconds apart (5
        minutes by default); `remove_after` deletes the job that long after it completed."""
        job = self._scheduled(type, data, user_id, retry_on_failure, retry_delay, remove_after)
        if due is not None:
            job.after(v.aware_datetime(due, "due"))
        return await self._schedule(job)

    async def schedule_cron_job(
        self,
        crontab: str,
        type: str,
        data: dict[str, Any] | None = None,
        *,
        timezone: str = "UTC",
        user_id: int | str | ObjectId = 0,
        retry_on_failure: bool = False,
        retry_delay: float | timedelta | None = None,
        remove_after: float | timedelta | None = None,
    ) -> Id | None:
        """As schedule_job, for a job that runs at every occurrence of `crontab` (croniter
        syntax, read in `timezone`), from the first one after now; its next run is saved
        each time it completes. Scheduling it again replaces it, pending runs included."""
        if not isinstance(crontab, str):
            raise InvalidArgumentType("crontab", "must be a cron expression string")
        job = self._scheduled(type, data, user_id, retry_on_failure, retry_delay, remove_after)
        try:
            job.repeat(schedule=crontab, timezone=timezone)
        except InvalidArgument as exc:
            if exc.argument != "schedule":
                raise
            raise InvalidArgument("crontab", exc.problem) from None
        return await self._schedule(job)

    def _scheduled(
        self,
        job_type: str,
        data: dict[str, Any] | None,
        user_id: Any,
        retry_on_failure: bool,
        retry_delay: float | timedelta | None,
        remove_after: float | timedelta | None,
    ) -> Job:
        """A scheduled job as seed 003's WorkerJobConfig describes it (README: Scheduling)."""
        job = self.create_job(job_type, data).for_user(user_id).unique()
        if v.boolean(retry_on_failure, "retry_on_failure"):
            wait = c.DEFAULT_RETRY_WAIT_MS / 1000 if retry_delay is None else retry_delay
            job.retry(c.FOREVER, wait=v.duration_ms(wait, "retry_delay") / 1000)
        elif retry_delay is not None:
            raise InvalidArgument("retry_delay", "only applies with retry_on_failure=True")
        if remove_after is not None:
            job.remove_after(v.duration_ms(remove_after, "remove_after") / 1000)
        return job

    async def _schedule(self, job: Job) -> Id | None:
        await self.service.run(ops.CancelPendingOf(job.type, job.user_id))
        return await job.save()

    # --- typed tasks (tasks.py) ---------------------------------------------------------------

    def task(self, name: str, **options: Unpack[TaskKeywords]) -> BoundDeclaration:
        """Declare a function (async, or plain: run in the queue's threads) as the worker
        of job type `name`, on this collection's own registry and bound to it:
        `TaskRegistry.task` for a collection (the same `options`: TaskOptions' fields).
        `await f.enqueue(...)` saves a job here; see tasks.py."""
        return BoundDeclaration(registered(self).task(name, **options), self)

    def run_tasks(
        self,
        tasks: TaskSource | None = None,
        *,
        concurrency: int = 1,
        poll_interval: float | timedelta | None = 5.0,
        prefetch: int = 0,
        work_timeout: float | timedelta | None = None,
        timeout: float | timedelta | None = None,
        cancel_grace: float | timedelta = DEFAULT_CANCEL_GRACE,
        error_callback: ErrorCallback | None = None,
        wakeup: WakeupSource | bool = True,
        executor: Executor | ExecutorName | None = None,
        max_tasks_per_child: int | None = None,
        max_memory_per_child: int | None = None,
        retry_on: RetryOn | None = None,
        non_retryable: ExceptionTypes = (),
        retry_backoff: Backoff | None = None,
    ) -> JobQueue:
        """One queue (started at once, as process_jobs) that works the jobs of these tasks
        (a TaskRegistry or a list of Tasks; default: every task declared with `jc.task`),
        handing each to its task's function; `timeout` bounds the calls of tasks defined
        without one. Async task functions run on the event loop, plain ones in the queue's
        threads (or `executor`); `executor="process"` runs the (plain) task functions in
        child processes, killed on a timeout or a cancel. Options: see process_jobs (its
        retry rules apply to the jobs of every task that declares none of its own)."""
        chosen = registered(self) if tasks is None else tasks
        types, worker, by_type = dispatcher(chosen, executor)
        options = QueueOptions(
            concurrency=concurrency,
            prefetch=prefetch,
            poll_interval=poll_interval,
            work_timeout=work_timeout,
            timeout=timeout,
            cancel_grace=cancel_grace,
            wakeup=wakeup,
            error_callback=error_callback,
            executor=executor,
            max_tasks_per_child=max_tasks_per_child,
            max_memory_per_child=max_memory_per_child,
            retry_rules=RetryRules(
                retry_on=retry_on, non_retryable=non_retryable, retry_backoff=retry_backoff
            ),
            retry_rules_by_type=by_type,
        )
        return JobQueue(self, types, worker, options)

    def make_job(self, doc: dict[str, Any] | JobDoc) -> Job:
        """A handle on a job document (a stored dict or a JobDoc), such as one read from the
        collection."""
        return Job(self, doc)


def _types_or_every(value: Any) -> list[str] | None:
    """pause_type's `type`: a type or types, or None for every type (given explicitly)."""
    return None if value is None else v.job_types(value, "type")
