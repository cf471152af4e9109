"""The seam between jobs and where they are stored: what a `Job` and a `JobQueue` need.

`JobService` names the typed operations a job handle and a queue call. `JobCollection` provides
one over a MongoDB collection (`jc.service`, see core.py); a remote client provides one over the
network, and `Job` and `JobQueue` run unchanged on either. Everything here is typed Python:
ids are ObjectIds or strings, documents are JobDocs, datetimes are aware, durations are integer
milliseconds (`_ms`) as stored. Arguments are validated by the caller (the Python API of Job and
JobCollection, or the method layer for wire calls); a service checks them against its limits.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .clock import Clock
from .document import JobDoc
from .limits import Limits
from .queries import DocPage, JobQuery, QueueStats
from .ratelimit import LimitedWork, RateLimit
from .types import Due, Id

if TYPE_CHECKING:
    from .wakeup import LocalCancels, LocalSaves, WakeupSource

Outcome = bool | Id
"""What done() answers: whether it was applied, or the id of the repeat it scheduled."""


@runtime_checkable
class JobService(Protocol):
    """The typed operations of a job collection (the original's methods, in Python)."""

    @property
    def clock(self) -> Clock:
        """Where "now" comes from (the database server's time by default)."""
        ...

    @property
    def limits(self) -> Limits:
        """Bounds on what a job may hold and a call may ask for."""
        ...

    async def save(
        self, doc: JobDoc, *, cancel_repeats: bool = False, job_id: Id | None = None
    ) -> Id | None:
        """jobSave: insert a new job (under `job_id` if given) or resubmit a paused one."""
        ...

    async def save_many(
        self,
        docs: Sequence[JobDoc],
        *,
        cancel_repeats: bool = False,
        job_ids: Sequence[Id | None] | None = None,
        name: str = "docs",
    ) -> list[Id | None]:
        """jobSaveMany: save() of each document, as few round trips as their semantics allow.
        `name` is what errors call the documents (`docs[i]`; save_jobs says `jobs[i]`)."""
        ...

    async def get_jobs(
        self, ids: Sequence[Id], *, get_log: bool = False, get_failures: bool = False
    ) -> list[JobDoc]:
        """getJob: the stored jobs among these ids, in order."""
        ...

    async def get_work(
        self, types: Sequence[str], *, max_jobs: int = 1, work_timeout_ms: int | None = None
    ) -> list[JobDoc]:
        """getWork: claim up to max_jobs ready jobs under one fresh runId."""
        ...

    @property
    def rate_limits(self) -> bool:
        """Whether get_limited_work is available (False: a remote collection, for now)."""
        ...

    async def get_limited_work(
        self,
        types: Sequence[str],
        rate_limit: RateLimit,
        *,
        max_jobs: int = 1,
        work_timeout_ms: int | None = None,
    ) -> LimitedWork:
        """getWork under a RateLimit shared by every process on the database: at most as
        many jobs as the limit has left in the current window (see ratelimit.py), and when
        the next window starts if the limit held some back. InvalidArgument("rate_limit")
        where rate limits are not available."""
        ...

    async def log(
        self,
        job_id: Id,
        run_id: Id | None,
        message: str,
        *,
        level: str = "info",
        data: dict[str, Any] | None = None,
    ) -> bool:
        """jobLog: append to a job's log (a heartbeat, when given the holder's runId)."""
        ...

    async def progress(self, job_id: Id, run_id: Id, completed: float, total: float) -> bool | None:
        """jobProgress: record a held job's progress (a heartbeat too)."""
        ...

    async def done(
        self,
        job_id: Id,
        run_id: Id,
        result: dict[str, Any],
        *,
        repeat_id: bool = False,
        delay_deps_ms: int | None = None,
        claimed: JobDoc | None = None,
    ) -> Outcome:
        """jobDone: complete a held job; its repeat and dependents follow. `claimed` is the
        job as the caller claimed it, if it holds that copy: a hint that can save a read (a
        service may ignore it)."""
        ...

    async def fail(
        self,
        job_id: Id,
        run_id: Id,
        error: dict[str, Any],
        *,
        fatal: bool = False,
        claimed: JobDoc | None = None,
    ) -> bool:
        """jobFail: fail a held job (retried while its retries and time allow); `claimed` as
        for done()."""
        ...

    async def heartbeat(self, ids: Sequence[Id], run_id: Id) -> list[Id]:
        """jobHeartbeat: renew the leases of jobs held under one runId; the ids still held."""
        ...

    async def release(self, ids: Sequence[Id], run_id: Id) -> list[Id]:
        """jobRelease: hand held jobs back, ready, without using an attempt; those released."""
        ...

    async def rate_limited(self, job_id: Id, run_id: Id, retry_after_ms: int) -> bool:
        """Put a held job back to wait retry_after_ms, without using an attempt (its worker
        met a rate limit); False if the claim is lost. InvalidArgument("retry_after") where
        not available (a remote collection, for now)."""
        ...

    async def pause(self, ids: Sequence[Id]) -> bool:
        """jobPause."""
        ...

    async def resume(self, ids: Sequence[Id]) -> bool:
        """jobResume."""
        ...

    async def ready(
        self,
        ids: Sequence[Id] | None = None,
        *,
        time: datetime | None = None,
        force: bool = False,
    ) -> bool:
        """jobReady: promote waiting jobs now (no ids: every due job)."""
        ...

    async def results(self, ids: Sequence[Id], max_bytes: int) -> dict[Id, dict[str, Any]]:
        """The results of the completed jobs among these ids, by id, in the ids' order;
        InvalidArgument("max_bytes") if together they are larger (BSON-encoded)."""
        ...

    async def find_jobs(self, query: JobQuery, after: str | None) -> DocPage:
        """jobFind: the page after the cursor `after` (None: the first) of the jobs the query
        matches, newest first (queries.py)."""
        ...

    async def stats(self) -> QueueStats:
        """jobStats: the jobs of each type in each status, and each type's oldest ready job."""
        ...

    async def cancel_pending_of(self, job_type: str, user_id: Any) -> int:
        """Cancel a user's jobs of a type that have not started, or that started and are past
        their lease, with their dependents (what scheduling a job replaces); how many."""
        ...

    async def ready_due(self, types: Sequence[str]) -> Due:
        """Promote the due waiting jobs of these types now, as the job server's next pass
        would, so that a queue that found nothing ready starts them on time; when none was
        due, say when the next one is. The job server's own work: no method events."""
        ...

    async def cancel(
        self, ids: Sequence[Id], *, antecedents: bool = False, dependents: bool = True
    ) -> bool:
        """jobCancel."""
        ...

    async def restart(
        self,
        ids: Sequence[Id],
        *,
        retries: int = 0,
        until: datetime | None = None,
        antecedents: bool = True,
        dependents: bool = False,
    ) -> bool:
        """jobRestart."""
        ...

    async def rerun(
        self,
        job_id: Id,
        *,
        repeats: int = 0,
        until: datetime | None = None,
        wait_ms: int | None = None,
    ) -> Id | None:
        """jobRerun: clone a completed job to run again; the new id."""
        ...

    async def remove(self, ids: Sequence[Id]) -> bool:
        """jobRemove."""
        ...

    def wakeup(self) -> WakeupSource | None:
        """Where a queue learns promptly that jobs became ready, if anywhere (the queue polls
        regardless)."""
        ...

    def saves(self) -> LocalSaves | None:
        """The jobs saved through this service, as they are (for the queues of the same
        process); None where saves are not seen."""
        ...

    def cancels(self) -> LocalCancels | None:
        """The ids of the jobs cancelled or removed through this service (for the queues of
        the same process, which stop a worker whose jobs were cancelled at once); None where
        cancels are not seen (the queues' heartbeats find them)."""
        ...


@runtime_checkable
class ServedCollection(Protocol):
    """What `Job(jc, ...)` and `JobQueue(jc, ...)` are given: a job collection, local or
    remote, with its typed service."""

    @property
    def service(self) -> JobService:
        """The collection's typed operations."""
        ...
