"""JobCollection: a job queue over one MongoDB collection.

Every public method goes through the method layer (methods.Dispatcher) under its original
method name, so events fire and the log stream sees it; calls made with `call(..., user_id=)`
are also checked against the allow/deny rules.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import IO, TYPE_CHECKING, Any

from . import constants as c
from . import validation as v
from .clock import Clock
from .document import JobDoc
from .errors import InvalidArgument, InvalidArgumentType
from .events import EventEmitter
from .indexes import INDEXES
from .limits import DEFAULT_LIMITS, Limits
from .methods import MAX_JOBS_PER_SAVE, Dispatcher, Parsed
from .operations import Operations
from .server import JobServer, ServerPass
from .servertime import ServerClock
from .store import Store
from .transitions import Id

if TYPE_CHECKING:
    from .job import Job
    from .queue import ErrorCallback, JobQueue, Worker
    from .wakeup import WakeupSource

BULK_CHUNK = 256
"""Ids per call for the bulk helpers, as in the original client."""


def _seconds_ms(value: float | timedelta | None, name: str, minimum_ms: int = 0) -> int | None:
    return None if value is None else v.duration_ms(value, name, minimum_ms=minimum_ms)


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
        self.limits: Limits = limits or DEFAULT_LIMITS
        self._store = Store(collection, caps=self.limits.push_caps())
        self.clock: Clock = clock or ServerClock(collection)
        name = str(getattr(collection, "name", "queue.jobs"))
        self.root = name[: -len(".jobs")] if name.endswith(".jobs") else name
        self._ops = Operations(self._store, self.clock)
        self._server = JobServer(self._ops, on_closed=self._server_closed)
        self._dispatch = Dispatcher(
            self._ops, self.clock, {"start": self._start, "shutdown": self._shutdown}
        )
        self._dispatch.limits = self.limits

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
    def collection(self) -> Any:
        """The wrapped driver collection, for your own read queries."""
        return self._store.collection

    @property
    def scrub(self) -> Callable[[dict[str, Any]], dict[str, Any]]:
        """A function applied to every stored document get_job/get_work return, before it is
        validated: for example to drop application fields a shared collection carries.
        Identity by default."""
        return self._ops.scrub

    @scrub.setter
    def scrub(self, function: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        if not callable(function):
            raise InvalidArgumentType("scrub", "must be a function of a document")
        self._ops.scrub = function

    @property
    def events(self) -> EventEmitter:
        return self._dispatch.events

    @property
    def commands(self) -> int:
        """Database commands issued so far by this instance (for benchmarks)."""
        return self._store.commands

    # --- method layer ------------------------------------------------------------------------

    async def call(self, method: str, *params: Any, user_id: Any = None) -> Any:
        """Run a method by its original name with wire-shaped params (options in camelCase,
        durations in ms). With a user_id the allow/deny rules must permit the call."""
        return await self._dispatch.call(method, params, user_id)

    def allow(self, **rules: Any) -> None:
        """Rules by group (admin, manager, creator, worker) or method name that may allow."""
        self._dispatch.rules.allow(rules)

    def deny(self, **rules: Any) -> None:
        """Rules that refuse a call even when an allow rule matches."""
        self._dispatch.rules.deny(rules)

    def set_log_stream(self, stream: IO[str] | None = None) -> None:
        self._dispatch.set_log_stream(stream)

    # --- job server --------------------------------------------------------------------------

    async def _start(self, _args: Parsed) -> bool:
        return await self._server.start()

    async def _shutdown(self, args: Parsed) -> bool:
        return await self._server.shutdown(args["timeout_ms"] / 1000)

    def _server_closed(self) -> None:
        self._dispatch.close_log_stream()

    async def start_job_server(self) -> bool:
        """Create the indexes, allow claiming and start the promotion loop."""
        await self.ensure_indexes()
        return bool(await self.call("startJobServer"))

    async def shutdown_job_server(self, timeout: float | timedelta = 60.0) -> bool:
        """Stop claiming and promotion; after timeout fail the jobs this instance handed out
        that are still running (non-fatally, so their retries apply)."""
        ms = v.duration_ms(timeout, "timeout")
        return bool(await self.call("shutdownJobServer", {"timeout": ms}))

    def promote(self, interval: float | timedelta = 15.0) -> None:
        """Set the seconds between promotion/expiry passes; a pass runs soon."""
        ms = v.duration_ms(interval, "interval", minimum_ms=1)
        self._server.promote(ms / 1000)

    async def run_server_pass(self) -> ServerPass:
        """One promotion/expiry pass now (what the background loop does each interval)."""
        return await self._server.run_pass()

    async def ensure_indexes(self) -> None:
        """The indexes of job-collection plus those the claim and expiry queries use."""
        for index in INDEXES:
            await self._store.create_index(index.keys, **index.options())

    async def close(self) -> None:
        """Cancel background tasks (the job server stops promoting) and wait for reports in
        flight to be written."""
        await self._server.close()
        await self._ops.completer.close()

    # --- reading and claiming ----------------------------------------------------------------

    async def get_job(
        self, id: Id, get_log: bool = False, get_failures: bool = False
    ) -> Job | None:
        v.job_id(id)
        found = await self.call("getJob", id, {"getLog": get_log, "getFailures": get_failures})
        return None if found is None else self.make_job(found)

    async def get_jobs(
        self, ids: Sequence[Id], get_log: bool = False, get_failures: bool = False
    ) -> list[Job]:
        ids = v.job_ids(ids)
        if not ids:
            return []
        found = await self.call(
            "getJob", list(ids), {"getLog": get_log, "getFailures": get_failures}
        )
        return [self.make_job(doc) for doc in found]

    async def get_work(
        self,
        type_or_types: str | Sequence[str],
        max_jobs: int = 1,
        work_timeout: float | timedelta | None = None,
    ) -> list[Job]:
        """Claim up to max_jobs ready jobs of the given type(s); [] while the server is stopped."""
        options: dict[str, Any] = {"maxJobs": max_jobs}
        if work_timeout is not None:
            options["workTimeout"] = _seconds_ms(work_timeout, "work_timeout", minimum_ms=1)
        docs = await self.call("getWork", type_or_types, options)
        from .job import Job

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
        from .queue import JobQueue

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

        Every job is checked as jobSaveMany would check it before any is written, so an
        invalid job refuses the whole list (InvalidArgument naming `jobs[i]`, its index in
        this list), wherever it falls among the calls of MAX_JOBS_PER_SAVE jobs the list
        is split into."""
        from .job import Job
        from .methods import _saveable, check_own_ids

        jobs = list(jobs)
        for i, job in enumerate(jobs):
            if not isinstance(job, Job):
                raise InvalidArgumentType(f"jobs[{i}]", "must be a Job")
        new_ids = [job._insert_id() for job in jobs]
        names = [f"jobs[{i}]" for i in range(len(jobs))]
        docs = [_saveable(job.doc, name) for job, name in zip(jobs, names, strict=True)]
        for doc, name in zip(docs, names, strict=True):
            self.limits.check_doc(doc, name, self._store.codec_options)
        check_own_ids(docs, new_ids, names, names)
        ids: list[Id | None] = []
        for start in range(0, len(jobs), MAX_JOBS_PER_SAVE):
            chunk = jobs[start : start + MAX_JOBS_PER_SAVE]
            options = {
                "cancelRepeats": cancel_repeats,
                "jobIds": new_ids[start : start + MAX_JOBS_PER_SAVE],
            }
            ids += await self.call("jobSaveMany", [job.doc for job in chunk], options)
        for job, job_id in zip(jobs, ids, strict=True):
            job._saved_as(job_id)
        return ids

    # --- bulk management ---------------------------------------------------------------------

    async def _bulk(self, method: str, ids: Any, options: dict[str, Any] | None = None) -> bool:
        ids = v.job_ids(ids)
        changed = False
        for start in range(0, len(ids), BULK_CHUNK):
            chunk = ids[start : start + BULK_CHUNK]
            changed = bool(await self.call(method, chunk, options or {})) or changed
        return changed

    async def ready_jobs(
        self,
        ids: Sequence[Id] | None = None,
        time: datetime | None = None,
        force: bool = False,
    ) -> bool:
        """Promote waiting jobs now; with no ids, every due job without dependencies."""
        options: dict[str, Any] = {"force": force}
        if time is not None:
            options["time"] = time
        if ids is None:
            return bool(await self.call("jobReady", None, options))
        return await self._bulk("jobReady", ids, options)

    async def pause_jobs(self, ids: Sequence[Id]) -> bool:
        return await self._bulk("jobPause", ids)

    async def resume_jobs(self, ids: Sequence[Id]) -> bool:
        return await self._bulk("jobResume", ids)

    async def cancel_jobs(
        self, ids: Sequence[Id], antecedents: bool = False, dependents: bool = True
    ) -> bool:
        return await self._bulk(
            "jobCancel", ids, {"antecedents": antecedents, "dependents": dependents}
        )

    async def restart_jobs(
        self,
        ids: Sequence[Id],
        retries: int = 0,
        until: datetime | None = None,
        antecedents: bool = True,
        dependents: bool = False,
    ) -> bool:
        options: dict[str, Any] = {
            "retries": retries,
            "antecedents": antecedents,
            "dependents": dependents,
        }
        if until is not None:
            options["until"] = until
        return await self._bulk("jobRestart", ids, options)

    async def remove_jobs(self, ids: Sequence[Id]) -> bool:
        return await self._bulk("jobRemove", ids)

    # --- jobs --------------------------------------------------------------------------------

    def create_job(self, type: str, data: dict[str, Any] | None = None) -> Job:
        from .job import Job

        return Job(self, type, data)

    def make_job(self, doc: dict[str, Any] | JobDoc) -> Job:
        from .job import Job

        return Job(self, doc)
