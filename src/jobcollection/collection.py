"""JobCollection: a job queue over one MongoDB collection.

Its Python methods validate their arguments and call the typed core (`jc.service`, core.py),
which checks the limits, fires each method's events and writes its log line; `jc.call(method,
*params, user_id=)` runs the same operations from the original's wire format, checked against
the allow/deny rules when made on behalf of a user (wire.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import IO, Any

from bson import ObjectId

from . import constants as c
from . import validation as v
from .clock import Clock
from .core import Core
from .document import JobDoc
from .errors import DatabaseError, InvalidArgument, InvalidArgumentType
from .events import EventEmitter
from .indexes import INDEXES, UNIQUE_JOBS
from .job import Job
from .limits import DEFAULT_LIMITS, Limits
from .queue import ErrorCallback, JobQueue, Worker
from .server import ServerPass
from .servertime import ServerClock
from .transitions import Id
from .wakeup import WakeupSource
from .wire import MethodLayer

logger = logging.getLogger("jobcollection")

BULK_CHUNK = 256
"""Ids per call for the bulk helpers, as in the original client."""


class JobCollection:
    """A persistent job queue stored in a MongoDB collection."""

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

    def __init__(
        self, collection: Any, *, clock: Clock | None = None, limits: Limits | None = None
    ) -> None:
        """`clock`: where "now" comes from; by default the database server's time
        (`ServerClock`), so processes whose clocks disagree still agree on leases and
        schedules. `limits`: bounds on job size and batch sizes (`Limits()` by default)."""
        if clock is not None and not isinstance(clock, Clock):
            raise InvalidArgumentType("clock", "must have a now() method")
        if limits is not None and not isinstance(limits, Limits):
            raise InvalidArgumentType("limits", "must be a jobcollection.Limits")
        core = Core(collection, clock or ServerClock(collection), limits or DEFAULT_LIMITS)
        self._core = core
        self._methods = MethodLayer(core)
        name = str(getattr(collection, "name", "queue.jobs"))
        self.root = name[: -len(".jobs")] if name.endswith(".jobs") else name

    @classmethod
    def from_database(
        cls,
        db: Any,
        root: str = "queue",
        *,
        clock: Clock | None = None,
        limits: Limits | None = None,
    ) -> JobCollection:
        """The JobCollection stored in `<root>.jobs` of a database."""
        if not isinstance(root, str) or not root:
            raise InvalidArgument("root", "must be a non-empty string")
        return cls(db[f"{root}.jobs"], clock=clock, limits=limits)

    @property
    def service(self) -> Core:
        """The typed operations `Job` and `JobQueue` call (a JobService, see seam.py)."""
        return self._core

    @property
    def clock(self) -> Clock:
        """Where "now" comes from."""
        return self._core.clock

    @property
    def limits(self) -> Limits:
        """Bounds on what a job may hold and a call may ask for."""
        return self._core.limits

    @property
    def collection(self) -> Any:
        """The wrapped driver collection, for your own read queries."""
        return self._core.store.collection

    @property
    def scrub(self) -> Callable[[dict[str, Any]], dict[str, Any]]:
        """A function applied to every stored document the library reads as a job (claims,
        reports, expiry, get_job...), before it is validated: for example to drop application
        fields a shared collection carries. Identity by default."""
        return self._core.reader.scrub

    @scrub.setter
    def scrub(self, function: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        if not callable(function):
            raise InvalidArgumentType("scrub", "must be a function of a document")
        self._core.reader.scrub = function

    @property
    def events(self) -> EventEmitter:
        return self._core.events

    @property
    def commands(self) -> int:
        """Database commands issued so far by this instance (for benchmarks)."""
        return self._core.store.commands

    # --- method layer ------------------------------------------------------------------------

    async def call(self, method: str, *params: Any, user_id: Any = None) -> Any:
        """Run a method by its original name with wire-shaped params (options in camelCase,
        durations in ms). With a user_id the allow/deny rules must permit the call."""
        return await self._methods.call(method, params, user_id)

    def allow(self, **rules: Any) -> None:
        """Rules by group (admin, manager, creator, worker) or method name that may allow."""
        self._methods.rules.allow(rules)

    def deny(self, **rules: Any) -> None:
        """Rules that refuse a call even when an allow rule matches."""
        self._methods.rules.deny(rules)

    def set_log_stream(self, stream: IO[str] | None = None) -> None:
        self._core.set_log_stream(stream)

    # --- job server --------------------------------------------------------------------------

    async def start_job_server(self) -> bool:
        """Create the indexes, allow claiming and start the promotion loop."""
        await self.ensure_indexes()
        return await self._core.start_server()

    async def shutdown_job_server(self, timeout: float | timedelta = 60.0) -> bool:
        """Stop claiming and promotion; after timeout fail the jobs this instance handed out
        that are still running (non-fatally, so their retries apply)."""
        return await self._core.shutdown_server(v.duration_ms(timeout, "timeout"))

    def promote(self, interval: float | timedelta = 15.0) -> None:
        """Set the seconds between promotion/expiry passes; a pass runs soon."""
        ms = v.duration_ms(interval, "interval", minimum_ms=1)
        self._core.server.promote(ms / 1000)

    async def run_server_pass(self) -> ServerPass:
        """One pass now (what the background loop does each interval): fail expired leases,
        finish pending follow-ups, promote due jobs."""
        return await self._core.run_server_pass()

    async def ensure_indexes(self) -> None:
        """The indexes of job-collection plus those the library's queries use (indexes.py).
        A sharded collection cannot have the unique jobs' index: that is logged, and saving
        a unique job then raises DatabaseError."""
        store = self._core.store
        for index in INDEXES:
            try:
                await store.create_index(index.keys, **index.options())
            except DatabaseError as exc:
                if index is not UNIQUE_JOBS:
                    raise
                store.unique_jobs = False
                logger.warning("unique jobs are not available on this collection: %s", exc)
            else:
                if index is UNIQUE_JOBS:
                    store.unique_jobs = True

    async def close(self) -> None:
        """Cancel background tasks (the job server stops promoting; a shutdown still in its
        grace period is finished now) and wait for reports in flight to be written."""
        await self._core.close()

    # --- reading and claiming ----------------------------------------------------------------

    async def get_job(
        self, id: Id, get_log: bool = False, get_failures: bool = False
    ) -> Job | None:
        found = await self._core.get_jobs(
            [v.job_id(id)],
            get_log=v.boolean(get_log, "get_log"),
            get_failures=v.boolean(get_failures, "get_failures"),
        )
        return Job(self, found[0]) if found else None

    async def get_jobs(
        self, ids: Sequence[Id], get_log: bool = False, get_failures: bool = False
    ) -> list[Job]:
        ids = v.job_ids(ids)
        if not ids:
            return []
        found = await self._core.get_jobs(
            ids,
            get_log=v.boolean(get_log, "get_log"),
            get_failures=v.boolean(get_failures, "get_failures"),
        )
        return [Job(self, doc) for doc in found]

    async def get_work(
        self,
        type_or_types: str | Sequence[str],
        max_jobs: int = 1,
        work_timeout: float | timedelta | None = None,
    ) -> list[Job]:
        """Claim up to max_jobs ready jobs of the given type(s); [] while the server is stopped."""
        docs = await self._core.get_work(
            v.job_types(type_or_types),
            max_jobs=v.integer(max_jobs, "max_jobs", minimum=1, maximum=c.FOREVER),
            work_timeout_ms=None
            if work_timeout is None
            else v.duration_ms(work_timeout, "work_timeout", minimum_ms=1),
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
        error_callback: ErrorCallback | None = None,
        wakeup: WakeupSource | bool = True,
    ) -> JobQueue:
        """A queue that claims jobs and hands them to an async worker (call it inside a
        running event loop; it starts at once). `poll_interval` None or 0 disables polling;
        `work_timeout` is the lease of every claim (None: 60 s), renewed every third of it
        while the queue holds the job; `wakeup` True starts jobs as soon as they become ready
        where the server has change streams, False relies on polling and trigger(), or give
        your own WakeupSource."""
        return JobQueue(
            self,
            type_or_types,
            worker,
            concurrency=concurrency,
            payload=payload,
            poll_interval=poll_interval,
            prefetch=prefetch,
            work_timeout=work_timeout,
            error_callback=error_callback,
            wakeup=wakeup,
        )

    async def save_jobs(self, jobs: Sequence[Job], cancel_repeats: bool = False) -> list[Id | None]:
        """Save many new jobs in as few round trips as their semantics allow (one for jobs
        without dependencies); each job's id is set as save() would. The ids, in order.
        Safe to call again after a DatabaseError: each job is inserted at most once.

        Every job is checked before any is written, so an invalid job refuses the whole list
        (InvalidArgument naming `jobs[i]`, its index in this list)."""
        jobs = list(jobs)
        for i, job in enumerate(jobs):
            if not isinstance(job, Job):
                raise InvalidArgumentType(f"jobs[{i}]", "must be a Job")
        ids = await self._core.save_many(
            [job.doc for job in jobs],
            cancel_repeats=v.boolean(cancel_repeats, "cancel_repeats"),
            job_ids=[job._insert_id() for job in jobs],
            name="jobs",
        )
        for job, job_id in zip(jobs, ids, strict=True):
            job._saved_as(job_id)
        return ids

    # --- bulk management ---------------------------------------------------------------------

    async def _bulk(self, ids: Any, apply: Callable[[list[Id]], Any]) -> bool:
        """Apply an operation to ids in chunks of BULK_CHUNK; whether any changed."""
        ids = v.job_ids(ids)
        changed = False
        for start in range(0, len(ids), BULK_CHUNK):
            changed = bool(await apply(ids[start : start + BULK_CHUNK])) or changed
        return changed

    async def ready_jobs(
        self,
        ids: Sequence[Id] | None = None,
        time: datetime | None = None,
        force: bool = False,
    ) -> bool:
        """Promote waiting jobs now; with no ids, every due job without dependencies."""
        when = None if time is None else v.aware_datetime(time, "time")
        forced = v.boolean(force, "force")
        if ids is None:
            return await self._core.ready(None, time=when, force=forced)
        return await self._bulk(ids, lambda chunk: self._core.ready(chunk, time=when, force=forced))

    async def pause_jobs(self, ids: Sequence[Id]) -> bool:
        return await self._bulk(ids, self._core.pause)

    async def resume_jobs(self, ids: Sequence[Id]) -> bool:
        return await self._bulk(ids, self._core.resume)

    async def cancel_jobs(
        self, ids: Sequence[Id], antecedents: bool = False, dependents: bool = True
    ) -> bool:
        up, down = v.boolean(antecedents, "antecedents"), v.boolean(dependents, "dependents")
        return await self._bulk(
            ids, lambda chunk: self._core.cancel(chunk, antecedents=up, dependents=down)
        )

    async def restart_jobs(
        self,
        ids: Sequence[Id],
        retries: int = 0,
        until: datetime | None = None,
        antecedents: bool = True,
        dependents: bool = False,
    ) -> bool:
        more = v.count(retries, "retries")
        deadline = None if until is None else v.aware_datetime(until, "until")
        up, down = v.boolean(antecedents, "antecedents"), v.boolean(dependents, "dependents")
        return await self._bulk(
            ids,
            lambda chunk: self._core.restart(
                chunk, retries=more, until=deadline, antecedents=up, dependents=down
            ),
        )

    async def remove_jobs(self, ids: Sequence[Id]) -> bool:
        return await self._bulk(ids, self._core.remove)

    # --- jobs --------------------------------------------------------------------------------

    def create_job(self, type: str, data: dict[str, Any] | None = None) -> Job:
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
        await self._core.cancel_pending_of(job.type, job.user_id)
        return await job.save()

    def make_job(self, doc: dict[str, Any] | JobDoc) -> Job:
        return Job(self, doc)
