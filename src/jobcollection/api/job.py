"""Job: a chainable builder for a new job and a handle on a stored one.

Builders (priority, retry, repeat, depends, delay, after, timeout, ...) validate their input
and change the local document only; actions (save, done, fail, cancel, ...) validate theirs
and call the collection's typed service (seam.py), local or remote alike.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypedDict

from bson import ObjectId

from ..model import ops
from ..model import validation as v
from ..model.constants import (
    CATCH_UP_POLICIES,
    DEFAULT_REPEAT_WAIT_MS,
    DEFAULT_RETRY_WAIT_MS,
    FOREVER,
    FOREVER_DATE,
    JOB_LOG_LEVELS,
    JOB_STATUS_REMOVABLE,
    OnFailure,
    Status,
)
from ..model.decisions import NamedTypes, type_names
from ..model.document import (
    CronSchedule,
    JobDoc,
    JobWorker,
    LogEntry,
    Progress,
    RemoveAfter,
    Unique,
    assign,
    check_unique_policy,
    new_job_doc,
    parse_doc,
)
from ..model.errors import InvalidArgument, InvalidArgumentType, JobNotSaved
from ..model.schedule import add_ms, check_cron
from ..model.types import Id
from ..rules.transitions import NO_ERROR
from . import tracing, waiting

if TYPE_CHECKING:
    from .seam import JobService, ServedCollection

echo_logger = logging.getLogger("jobcollection.job")
MAX_RESULTS_BYTES = 16 * 1024 * 1024
"""antecedent_results(): the most bytes of results read at once, by default."""
_ECHO_LEVELS = {
    "info": logging.INFO,
    "success": logging.INFO,
    "warning": logging.WARNING,
    "danger": logging.ERROR,
}


def unique_setting(
    key: str | None = None,
    on_conflict: str | None = None,
    *,
    mode: str | None = None,
    period: float | timedelta | None = None,
    states: Sequence[str] | None = None,
) -> Unique:
    """The deduplication setting `Job.unique` stores, from its arguments (see there); raises
    InvalidArgument naming a bad one."""
    if on_conflict is not None and mode is not None:
        raise InvalidArgument("mode", "give mode or on_conflict (its older name), not both")
    chosen = "replace" if mode is None and on_conflict is None else mode or on_conflict
    name = "on_conflict" if on_conflict is not None else "mode"
    checked = v.unique_key(key)
    chosen_mode = v.on_conflict(chosen, name)
    period_ms = None if period is None else v.duration_ms(period, "period", minimum_ms=1)
    held = Status.PENDING if states is None else v.unique_states(states)
    check_unique_policy(chosen_mode, period_ms, held)
    return Unique(key=checked, on_conflict=chosen_mode, period_ms=period_ms, states=held)


class UniqueOptions(TypedDict, total=False):
    """`Job.unique`'s arguments by name, as a task's `unique=` option takes them (e.g.
    `{"key": "sync", "mode": "debounce", "period": 30}`); each as Job.unique says."""

    key: str | None
    on_conflict: str | None
    mode: str | None
    period: float | timedelta | None
    states: Sequence[str] | None


class Job:
    """A job: build it, save it, and act on it once claimed."""

    def __init__(
        self,
        jc: ServedCollection,
        type_or_doc: str | dict[str, Any] | JobDoc,
        data: dict[str, Any] | None = None,
    ) -> None:
        # Job._claimed builds handles without __init__: keep the two in step.
        self._service: JobService = jc.service
        self.reported = False
        """True once done() or fail() was answered for this handle (the queue leaves it
        alone); a call that raised, e.g. on an invalid result, does not count."""
        self._cancelled = False
        self._report_in_flight = False
        """A done() or fail() of this handle awaits its answer (the queue does not take the
        job's claim for lost meanwhile: the report may have just been stored)."""
        self._new_id: Id | None = None
        self._unconfirmed = False
        """Saved as a new job inside a transaction, whose commit this handle cannot know of:
        a save again is the same insert (see `_to_save`)."""
        self._claimed_copy = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._checkpoint: Any = None
        self._heartbeats = False
        if isinstance(type_or_doc, JobDoc | dict):
            if data is not None:
                raise InvalidArgument("data", "give either a document or a type and data")
            self._doc = parse_doc(type_or_doc)
            return
        if not isinstance(type_or_doc, str) or not type_or_doc:
            raise InvalidArgumentType("type", "must be a non-empty string or a job document")
        payload = v.plain_object({} if data is None else data, "data")
        self._doc = new_job_doc(type_or_doc, payload, self._service.clock.now())

    @classmethod
    def _claimed(cls, jc: ServedCollection, doc: JobDoc) -> Job:
        """A handle on a document get_work just read, taken as it is: no one else holds it
        (the core gives method events copies of what they carry), and the deep copy
        __init__ makes of a caller's document was most of the CPU cost of a claim. (Sets
        what __init__ sets.)"""
        job = cls.__new__(cls)
        job._service = jc.service
        job.reported = False
        job._cancelled = False
        job._report_in_flight = False
        job._new_id = None
        job._unconfirmed = False
        job._claimed_copy = True  # the document as claimed: done/fail may skip reading it
        job._loop = None
        job._checkpoint = None
        job._heartbeats = False
        job._doc = doc
        return job

    def _bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """The event loop `sync` actions run on (a sync worker's thread is not its)."""
        self._loop = loop

    @property
    def sync(self) -> SyncActions:
        """The job's actions for a sync worker, which runs in a thread: each (`progress`,
        `log`, `done`, `fail`, `antecedent_results`, `add_children`, ...) runs on the
        queue's event loop and blocks the thread until it is answered. RuntimeError for a
        job no sync worker was handed (an async worker awaits the job's own actions)."""
        if self._loop is None:
            raise RuntimeError(
                "job.sync is for a sync worker running in a thread; an async worker awaits "
                "the job's own actions"
            )
        return SyncActions(self, self._loop)

    def __repr__(self) -> str:
        return f"<Job {self._doc.type} {self._doc.id} {self._doc.status}>"

    @property
    def id(self) -> Id | None:
        """The stored id (None until saved): an ObjectId, or a string for a job saved under one."""
        return self._doc.id

    @property
    def type(self) -> str:
        """The job type: what a queue claims it by."""
        return self._doc.type

    @property
    def data(self) -> dict[str, Any]:
        """The job's data, as saved (a dict)."""
        return self._doc.data

    @property
    def doc(self) -> JobDoc:
        """The job document as this handle knows it (`refresh()` reads it again)."""
        return self._doc

    @property
    def rescheduled_from(self) -> Id | None:
        """The job this one was made from, as a repeat, a rerun or a cron schedule's next run
        (None for a job saved as such)."""
        return self._doc.lineage[-1] if self._doc.lineage else None

    @property
    def user_id(self) -> int | str | ObjectId | None:
        """Who the job is for (`for_user`), None if nobody in particular."""
        return self._doc.user_id

    @property
    def worker(self) -> JobWorker | None:
        """The worker that claimed the job's current or last run, as the claim recorded it
        (host, pid, its id in the worker registry; for a remote or DDP worker, the user it
        claimed as), kept once the job has finished and replaced by its next claim. None:
        never claimed, or claimed by job-collection v1.x or an earlier version of this
        library; always None through a RemoteJobCollection (the server keeps it, as only
        admins and managers may read the worker registry). `jc.workers()` says whether that
        worker is still live."""
        return self._doc.worker

    @property
    def cancelled(self) -> bool:
        """True once the queue running this job found its claim lost: the job was cancelled
        or removed, or its lease ran out (the job server then failed it). Its reports would
        be refused, and the queue sends none. When every job of a worker call is lost the
        queue cancels the call; a payload batch of which only some were cancelled keeps
        running, and its worker can check this to skip them."""
        return self._cancelled

    def _lose_claim(self) -> None:
        """The queue found this job's claim lost (see `cancelled`)."""
        self._cancelled = True

    # --- checkpoints (see docs/reference/queues.md "Checkpoints") ------------------------------

    @property
    def checkpoint_state(self) -> Any:
        """Where the job is to resume from: the state this attempt last checkpointed, or else
        the checkpoint stored by an earlier attempt that failed, timed out, lost its lease
        or was released (the job as claimed carries it); None: none (a new job, a rerun or
        a repeat starts without one)."""
        return self._doc.checkpoint

    async def checkpoint(self, state: Any, *, flush: bool = False) -> bool:
        """Record where the claimed job has got to (`state`: a JSON value of at most
        `limits.max_checkpoint_bytes` BSON-encoded; InvalidArgument naming `state`
        otherwise), for the next attempt to resume from (`checkpoint_state`). Held by a
        JobQueue, the state is stored with the next lease renewal, or with the failure or
        release that ends the attempt first, and this returns at once; `flush=True`
        stores it now. A job no queue holds stores it now. Whether it was recorded (False:
        stored now, but the claim was lost)."""
        job_id, run_id = self._claim("checkpoint")
        value = copy.deepcopy(v.checkpoint_state(state, "state"))
        self._service.limits.check_checkpoint(value)
        now = v.boolean(flush, "flush")
        if self._cancelled:  # the queue found the claim lost: nothing can be stored
            return False
        self._checkpoint = value
        assign(self._doc, checkpoint=value)
        if self._heartbeats and not now:
            return True
        still_held = await self._service.run(
            ops.Heartbeat([job_id], run_id, checkpoints=[(job_id, value)])
        )
        if not self._heartbeats:
            self._checkpoint_stored(value)
        # In a queue, a flushed state stays pending: the next renewal writes it again, so
        # that a renewal in flight meanwhile with an older state cannot leave that one stored.
        return bool(still_held)

    def _pending_checkpoint(self) -> Any:
        """The state checkpointed and not stored yet (None: none)."""
        return self._checkpoint

    def _checkpoint_stored(self, state: Any) -> None:
        """`state` was stored (or its claim lost): it is pending no more, unless a newer one
        was recorded meanwhile."""
        if self._checkpoint is state:
            self._checkpoint = None

    def iterate(self, items: Any, *, every: int = 1, flush: bool = False) -> AsyncIterator[Any]:
        """Iterate over `items` (an iterable, or an async iterable such as a cursor),
        skipping those an earlier attempt of the job got past, and checkpointing the
        position every `every` items (`flush`: stored at once rather than with the next
        lease renewal); see api/checkpoints.py for what it guarantees."""
        from .checkpoints import iterate  # (checkpoints builds on Job)

        return iterate(self, items, every=every, flush=flush)

    # --- builders ----------------------------------------------------------------------------

    def for_user(self, user_id: int | str | ObjectId) -> Job:
        """Mark the job as a user's (seed 003's userId: 0 for the system's own jobs); a unique
        job is unique per type and user. Kept in `_private` (v1.x has no such field)."""
        assign(self._doc, user_id=v.user_id(user_id))
        return self

    def remove_after(
        self, delay: float | timedelta, statuses: Sequence[str] = (Status.COMPLETED,)
    ) -> Job:
        """Have MongoDB delete the job `delay` seconds after it reaches one of `statuses`
        ("completed", "failed", "cancelled"): a TTL index on a removal date set as it gets
        there (or once its repeat and dependents are seen to), not a sweeping loop. A restart
        clears the date; a rerun or repeat keeps the setting. Kept in `_private`."""
        delay_ms = v.duration_ms(delay, "delay")
        if isinstance(statuses, str) or not isinstance(statuses, Sequence):
            raise InvalidArgumentType("statuses", "must be a list of statuses")
        if not statuses:
            raise InvalidArgument("statuses", "must name at least one status")
        chosen = tuple(
            v.choice(status, f"statuses[{i}]", JOB_STATUS_REMOVABLE)
            for i, status in enumerate(statuses)
        )
        assign(self._doc, remove_after=RemoveAfter(delay_ms=delay_ms, statuses=chosen))
        return self

    def unique(
        self,
        key: str | None = None,
        on_conflict: str | None = None,
        *,
        mode: str | None = None,
        period: float | timedelta | None = None,
        states: Sequence[str] | None = None,
    ) -> Job:
        """Allow one job at a time to hold this type, user and `key` (None: per type and
        user): deduplication. By default a job holds its key while it is pending (not started
        yet); `states` adds statuses past pending it holds it in too ("running", "completed",
        ...: it must list every pending status), and `period` (seconds or a timedelta) ends
        the hold that long after the job's creation (a sliding window: each holder's own).

        `mode` (`on_conflict` is its older name; give one) says what saving it does while
        another job holds the key: "replace" (default) cancels that one and saves this one;
        "ignore" keeps it and save() answers its id; "throttle" is "ignore" over a `period`;
        "error" raises DuplicateJob; "debounce" gives that job this one's data and pushes its
        start back to `period` from now (a new job starts `period` from now at the earliest);
        "keep_latest" gives that job this one's data. "replace", "debounce" and "keep_latest"
        act on a job not started: its hold is pending only, and a running job does not stop
        a new one being queued. A MongoDB unique index enforces it, so concurrent saves from
        any process settle on one holder. A repeat or rerun of this job holds no key."""
        unique = unique_setting(key, on_conflict, mode=mode, period=period, states=states)
        assign(self._doc, unique=unique)
        return self

    def depends(self, jobs: Job | list[Job] | tuple[Job, ...] | None = None) -> Job:
        """Run after these saved jobs complete; None or [] clears the dependencies. A saved
        job cannot depend on itself: it would wait for its own completion forever."""
        if not jobs:
            assign(self._doc, depends=[], resolved=[])
            return self
        items = [jobs] if isinstance(jobs, Job) else list(jobs)
        ids: list[Id] = []
        for i, job in enumerate(items):
            if not isinstance(job, Job):
                raise InvalidArgumentType(f"jobs[{i}]", "must be a Job")
            if job.id is None:
                raise InvalidArgument(f"jobs[{i}]", "must be saved before it can be depended on")
            if job.id == self.id:
                raise InvalidArgument(f"jobs[{i}]", "a job cannot depend on itself")
            ids.append(job.id)
        assign(self._doc, depends=[*self._doc.depends, *ids], resolved=[])
        return self

    def priority(self, level: int | str = 0) -> Job:
        """Lower runs first: an integer or one of JOB_PRIORITIES ("high", "low", ...)."""
        assign(self._doc, priority=v.priority(level, "level"))
        return self

    def retry(
        self,
        retries: int = FOREVER,
        *,
        until: datetime | None = None,
        wait: float | timedelta = DEFAULT_RETRY_WAIT_MS / 1000,
        backoff: str = "constant",
        jitter: float = 0.0,
        max_wait: float | timedelta | None = None,
        on: NamedTypes | None = None,
    ) -> Job:
        """Allow `retries` more attempts after the first, never starting after `until`.

        The n-th retry waits `wait` seconds ("constant"), `n * wait` ("linear") or
        `2^(n-1) * wait` ("exponential"), at most `max_wait`; `jitter` (0 to 1) shortens each
        wait by up to that fraction of it, at random, so that jobs failing together do not
        retry together. A v1.x server that fails the job uses the plain wait: "linear", the
        jitter and `max_wait` are this library's (kept in `_private`).

        `on`: only failures of these exception types (or subclasses) are retried; a Python
        worker fails the job fatally for any other. Stored by qualified name
        ("builtins.TimeoutError"; a name may be given as such), so any Python worker that
        runs the job honours it; a predicate cannot be stored: give it to the queue
        (`process_jobs(..., retry_on=...)`). Kept in `_private`."""
        stored = min(v.count(retries, "retries") + 1, FOREVER)
        wait_ms = v.duration_ms(wait, "wait")
        method = v.backoff(backoff)
        spread = v.fraction(jitter, "jitter")
        cap = None if max_wait is None else v.duration_ms(max_wait, "max_wait")
        deadline = FOREVER_DATE if until is None else v.aware_datetime(until, "until")
        names = None if on is None else type_names(on)
        # Assigned only once every argument passed, so a bad one leaves the job unchanged.
        assign(
            self._doc,
            retries=stored,
            repeat_retries=stored,
            retry_wait=wait_ms,
            retry_backoff=method,
            retry_jitter=spread,
            retry_max_wait=cap,
            retry_on=names,
            retry_until=deadline,
        )
        return self

    def repeat(
        self,
        repeats: int = FOREVER,
        *,
        until: datetime | None = None,
        wait: float | timedelta | None = None,
        schedule: str | None = None,
        timezone: str | None = None,
        catch_up: str = "latest",
        catch_up_window: float | timedelta = 60,
    ) -> Job:
        """Run again after each completion: every `wait` seconds (default 300) or on a cron
        `schedule` read in `timezone`, `repeats` more times, never starting after `until`.

        `catch_up` says what becomes of the occurrences of a schedule missed while nothing
        ran the job (a worker outage): "latest" runs once for all of them; "none" skips a run
        that would start more than `catch_up_window` seconds late and waits for the next
        occurrence; "all" runs once per missed occurrence (the newest 100). Every occurrence
        given no run is logged on the next run and counted (`doc.skipped_runs`)."""
        if wait is not None and schedule is not None:
            raise InvalidArgument("schedule", "give either wait or schedule, not both")
        if timezone is not None and schedule is None:
            raise InvalidArgument("timezone", "only applies to a schedule")
        policy = v.choice(catch_up, "catch_up", CATCH_UP_POLICIES)
        window_ms = v.duration_ms(catch_up_window, "catch_up_window")
        if schedule is None and (policy != "latest" or window_ms != 60_000):
            raise InvalidArgument("catch_up", "only applies to a schedule")
        count = v.count(repeats, "repeats")
        deadline = FOREVER_DATE if until is None else v.aware_datetime(until, "until")
        repeat_wait: int | CronSchedule
        if schedule is not None:
            if not isinstance(schedule, str):
                raise InvalidArgumentType("schedule", "must be a cron expression string")
            if timezone is not None and not isinstance(timezone, str):
                raise InvalidArgumentType("timezone", "must be an IANA zone name")
            repeat_wait = CronSchedule(
                cron=schedule, timezone=timezone, catch_up=policy, catch_up_window_ms=window_ms
            )
            check_cron(repeat_wait)
        else:
            repeat_wait = DEFAULT_REPEAT_WAIT_MS if wait is None else v.duration_ms(wait, "wait")
        # Assigned only once every argument passed, so a bad one leaves the job unchanged.
        assign(self._doc, repeats=count, repeat_until=deadline, repeat_wait=repeat_wait)
        return self

    def timeout(self, seconds: float | timedelta | None) -> Job:
        """Let a worker call on this job run at most `seconds` (at least 1 ms); None clears it,
        leaving the queue's `timeout`, if any. A queue cancels a call that runs longer and
        fails the job, not fatally (it is retried if it has retries left), with "timed out
        after N s"; it overrides the queue's timeout, and a payload batch is bounded by the
        smallest of its jobs'. Unrelated to the lease (`work_timeout`). A repeat or rerun
        keeps it. Kept in `_private`."""
        limit_ms = None if seconds is None else v.duration_ms(seconds, "seconds", minimum_ms=1)
        assign(self._doc, timeout=limit_ms)
        return self

    def expires(self, at: datetime | timedelta | float | None) -> Job:
        """Give the job a deadline: if no worker has started it by `at` (an aware datetime,
        or a timedelta or seconds after it is saved, by the collection's clock), it is
        cancelled, with "Expired: not started by <time>" in its log, instead of running late
        (Celery's `expires`, Dramatiq's `max_age`). Every start counts, a retry's included:
        a job waiting for a retry at its deadline is cancelled too. Its dependents then
        follow their failure policies, as after any cancel. A repeat or a rerun does not
        keep it; a restart clears it. None clears it. Kept in `_private`."""
        if at is None:
            assign(self._doc, expires=None, expires_in_ms=None, expired=False)
        elif isinstance(at, datetime):
            deadline = v.aware_datetime(at, "at")
            assign(self._doc, expires=deadline, expires_in_ms=None, expired=False)
        else:
            after_ms = v.duration_ms(at, "at", minimum_ms=1)
            assign(self._doc, expires=None, expires_in_ms=after_ms, expired=False)
        return self

    def delay(self, seconds: float | timedelta = 0) -> Job:
        """Not before `seconds` from now."""
        delay_ms = v.duration_ms(seconds, "seconds")
        assign(self._doc, after=add_ms(self._service.clock.now(), delay_ms))
        return self

    def after(self, when: datetime) -> Job:
        """Not before an aware datetime."""
        assign(self._doc, after=v.aware_datetime(when, "when"))
        return self

    # --- actions -----------------------------------------------------------------------------

    def _saved_id(self, action: str) -> Id:
        if self._doc.id is None:
            raise JobNotSaved(f"{action}: the job has not been saved")
        return self._doc.id

    def _claim(self, action: str) -> tuple[Id, Id]:
        job_id = self._saved_id(action)
        if self._doc.run_id is None:
            raise JobNotSaved(f"{action}: the job is not claimed by a worker (no runId)")
        return job_id, self._doc.run_id

    def _insert_id(self) -> Id | None:
        """The id a new job is inserted under, chosen once, so that saving again after a
        lost reply finds the job instead of inserting it twice; None for a saved job."""
        if self._doc.id is not None:
            return None
        if self._new_id is None:
            self._new_id = ObjectId()
        return self._new_id

    def _to_save(self) -> tuple[JobDoc, Id | None]:
        """The document a save sends, and the id a new job is inserted under. A new job
        saved inside a transaction is saved again as the same insert under the same id: if
        that transaction aborted (or is being retried, as `with_transaction` does), the job
        is inserted now; if it committed, the insert finds it, as after a lost reply."""
        if not self._unconfirmed:
            return self._doc, self._insert_id()
        doc = self._doc.model_copy()
        assign(doc, id=None)
        return doc, self._new_id

    def _is_new(self) -> bool:
        """Not saved yet, or saved only inside a transaction this handle cannot know
        committed (saved again, it is the same insert: `_to_save`)."""
        return self._doc.id is None or self._unconfirmed

    def _saved_as(self, job_id: Id | None, session: Any = None) -> None:
        if job_id is not None:
            assign(self._doc, id=job_id)
            self._unconfirmed = session is not None and job_id == self._new_id

    async def save(self, cancel_repeats: bool = False, *, session: Any = None) -> Id | None:
        """Insert (or resubmit a paused) job; its id, or None if it was not saved/cancelled.
        Safe to call again after a DatabaseError: the job is inserted at most once.

        `session`: a pymongo AsyncClientSession (or Motor session) in a transaction of the
        collection's client: the job is saved inside it, so it exists if and only if your
        own writes in that transaction commit (the outbox pattern); this process's queues
        are woken after the commit (`jc.transaction()`, `jc.after_commit`). See
        docs/how-to/transactions.md."""
        cancel = v.boolean(cancel_repeats, "cancel_repeats")
        doc, new_id = self._to_save()
        with tracing.enqueuing([self._doc]):
            job_id = await self._service.run(
                ops.Save(doc, cancel_repeats=cancel, job_id=new_id, session=session)
            )
        self._saved_as(job_id, session)
        return job_id

    async def refresh(self, get_log: bool = False, get_failures: bool = False) -> bool:
        """Reload the stored document; False if it is gone."""
        found = await self._service.run(
            ops.GetJobs(
                [self._saved_id("refresh")],
                get_log=v.boolean(get_log, "get_log"),
                get_failures=v.boolean(get_failures, "get_failures"),
            )
        )
        if not found:
            return False
        self._doc = found[0]
        return True

    async def log(
        self,
        message: str,
        level: str = "info",
        data: dict[str, Any] | None = None,
        echo: bool | str = False,
    ) -> bool:
        """Append to the job's log (stored at once for a saved job). echo=True also logs it to
        the "jobcollection.job" logger; echo="warning" does so for that level and above."""
        v.text(message, "message", max_length=self._service.limits.max_message_length)
        checked_level = v.log_level(level)
        if data is not None:
            v.plain_object(data, "data")
        self._echo(message, checked_level, echo)
        if self._doc.id is None:
            entries = self._doc.log or []
            entry = LogEntry(
                time=self._service.clock.now(), level=checked_level, message=message, data=data
            )
            assign(self._doc, log=[*entries, entry])
            return True
        return await self._service.run(
            ops.Log(self._doc.id, self._doc.run_id, message, level=checked_level, data=data)
        )

    def _echo(self, message: str, level: str, echo: bool | str) -> None:
        if echo is False:
            return
        threshold = "info" if echo is True else v.log_level(echo, "echo")
        if JOB_LOG_LEVELS.index(level) >= JOB_LOG_LEVELS.index(threshold):
            echo_logger.log(_ECHO_LEVELS[level], "%s: %s", self, message)

    async def progress(
        self, completed: float = 0, total: float = 1, echo: bool = False
    ) -> bool | None:
        """Report progress; None for a saved job that is not running under this handle."""
        done_ = v.number(completed, "completed", minimum=0)
        total_ = v.number(total, "total")
        if total_ <= 0:
            raise InvalidArgument("total", f"must be > 0, got {total}")
        if done_ > total_:
            raise InvalidArgument("completed", f"must not exceed total ({completed} > {total})")
        local = Progress(completed=done_, total=total_, percent=100 * done_ / total_)
        if echo:
            echo_logger.info("%s: progress %.1f%%", self, local.percent)
        if self._doc.id is None:
            assign(self._doc, progress=local)
            return True
        if self._doc.run_id is None:
            return None
        ok = await self._service.run(ops.Progress(self._doc.id, self._doc.run_id, done_, total_))
        if ok:
            assign(self._doc, progress=local)
        return ok

    async def done(
        self,
        result: Any = None,
        repeat_id: bool = False,
        delay_deps: float | timedelta | None = None,
        *,
        session: Any = None,
    ) -> bool | Id:
        """Complete the claimed job; with repeat_id the id of the repeat it scheduled, if any.

        `session` (as for save): the job is completed inside your transaction, so it is
        completed if and only if your own writes commit; its repeat and dependents follow
        after the commit (repeat_id cannot be answered then). If the transaction aborts, the
        job is still running under this claim: report it again, or its lease expires and it
        is retried."""
        job_id, run_id = self._claim("done")
        value = v.wrap_value({} if result is None else result, "result")
        with_repeat_id = v.boolean(repeat_id, "repeat_id")
        delay_deps_ms = None if delay_deps is None else v.duration_ms(delay_deps, "delay_deps")
        self._report_in_flight = True
        try:
            outcome = await self._service.run(
                ops.Done(
                    job_id,
                    run_id,
                    value,
                    repeat_id=with_repeat_id,
                    delay_deps_ms=delay_deps_ms,
                    claimed=self._doc if self._claimed_copy else None,
                    session=session,
                )
            )
        finally:
            self._report_in_flight = False
        self.reported = True
        if session is None:  # (in a transaction that may abort: not yet)
            self._checkpoint = None  # a completion clears the checkpoint
            if outcome:
                assign(self._doc, status=Status.COMPLETED, checkpoint=None)
        return outcome

    async def fail(
        self,
        error: Any = None,
        fatal: bool = False,
        *,
        retry_in: float | timedelta | None = None,
        session: Any = None,
    ) -> bool:
        """Fail the claimed job; it is retried unless fatal or out of retries. `retry_in`
        (seconds or a timedelta) is the wait before that retry, in place of the job's
        backoff (jobFail's `retryIn`: an HTTP 429's Retry-After, say); not with `fatal`.
        `session`: inside your transaction, as for done."""
        wait_ms = None if retry_in is None else v.duration_ms(retry_in, "retry_in")
        is_fatal = v.boolean(fatal, "fatal")
        if is_fatal and wait_ms is not None:
            raise InvalidArgument("retry_in", "a fatal failure is not retried")
        return await self._report_failure(
            "fail", error, fatal=is_fatal, retry_in_ms=wait_ms, session=session
        )

    async def snooze(self, seconds: float | timedelta, reason: Any = None) -> bool:
        """Put the claimed job back to wait `seconds` without using an attempt: not a
        failure (nothing is added to its failures; `reason` is logged on it). What a worker
        raising Snooze(seconds) does (Oban's snooze); it travels as jobFail's `snooze`
        option, so it works on a remote collection too. False if the claim is lost."""
        wait_ms = v.duration_ms(seconds, "seconds")
        return await self._report_failure("snooze", reason, snooze_ms=wait_ms)

    async def cancel_run(self, reason: Any = None) -> bool:
        """Give the claimed job up: it is cancelled, `reason` logged on it, and its dependents
        follow their failure policies, as after any cancel. Unlike `cancel()`, which anyone
        allowed to manage jobs may call on any job, this is a report on this claim: fenced by
        it, made by the worker that holds it (jobFail's `cancel` option, so it works on a
        remote collection and from node.js too). What a worker raising Cancel(reason) does.
        False if the claim is lost."""
        return await self._report_failure("cancel_run", reason, cancel=True)

    async def _report_failure(
        self,
        action: str,
        error: Any,
        *,
        fatal: bool = False,
        retry_in_ms: int | None = None,
        snooze_ms: int | None = None,
        cancel: bool = False,
        session: Any = None,
    ) -> bool:
        """jobFail with these options (validated by the caller); `action` names the caller
        in errors."""
        job_id, run_id = self._claim(action)
        value = v.wrap_value(dict(NO_ERROR) if error is None else error, "error")
        pending = self._checkpoint
        self._report_in_flight = True
        try:
            ok = await self._service.run(
                ops.Fail(
                    job_id,
                    run_id,
                    value,
                    fatal=fatal,
                    retry_in_ms=retry_in_ms,
                    snooze_ms=snooze_ms,
                    cancel=cancel,
                    checkpoint=None if cancel else pending,
                    claimed=self._doc if self._claimed_copy else None,
                    session=session,
                )
            )
        finally:
            self._report_in_flight = False
        if session is None:  # (in a transaction that may abort, the checkpoint stays pending)
            self._checkpoint_stored(pending)
        self.reported = True
        if ok and session is None:  # (in a transaction that may abort, the claim stays known)
            assign(self._doc, run_id=None)
        return ok

    async def release(self) -> bool:
        """Hand the claimed job back, ready for any worker, as if it had not been claimed:
        the attempt is not counted and the lease is dropped (a worker that will not start it,
        at shutdown for example). False if the claim is lost."""
        job_id, run_id = self._claim("release")
        pending = self._checkpoint
        checkpoints = None if pending is None else [(job_id, pending)]
        released = bool(
            await self._service.run(ops.Release([job_id], run_id, checkpoints=checkpoints))
        )
        self._checkpoint_stored(pending)
        if released:
            self.reported = True
            assign(self._doc, run_id=None)
        return released

    async def heartbeat(self) -> bool:
        """Extend the claimed job's lease by its work timeout; False if the claim is lost."""
        job_id, run_id = self._claim("heartbeat")
        return bool(await self._service.run(ops.Heartbeat([job_id], run_id)))

    async def pause(self) -> bool:
        """Pause the job (ready or waiting) so that no worker claims it; a new job is saved paused.
        Whether it changed."""
        if self._doc.id is None:
            assign(self._doc, status=Status.PAUSED)
            return True
        return await self._service.run(ops.Pause([self._doc.id]))

    async def resume(self) -> bool:
        """Resume a paused job (waiting again, ready when due); a new job is saved waiting. Whether
        it changed."""
        if self._doc.id is None:
            assign(self._doc, status=Status.WAITING)
            return True
        return await self._service.run(ops.Resume([self._doc.id]))

    async def ready(self, time: datetime | None = None, force: bool = False) -> bool:
        """Promote the waiting job now, or when `time` comes; `force` ignores its antecedents.
        Whether it changed."""
        return await self._service.run(
            ops.Ready(
                [self._saved_id("ready")],
                time=None if time is None else v.aware_datetime(time, "time"),
                force=v.boolean(force, "force"),
            )
        )

    async def cancel(self, antecedents: bool = False, dependents: bool = True) -> bool:
        """Cancel the job (and by default its dependents; `antecedents` too if asked). A running
        job's worker is stopped (README "Cancelling a running job"). Whether it changed."""
        return await self._service.run(
            ops.Cancel(
                [self._saved_id("cancel")],
                antecedents=v.boolean(antecedents, "antecedents"),
                dependents=v.boolean(dependents, "dependents"),
            )
        )

    async def restart(
        self,
        retries: int = 0,
        until: datetime | None = None,
        antecedents: bool = True,
        dependents: bool = False,
    ) -> bool:
        """Restart a cancelled or failed job with `retries` more attempts (its antecedents
        too, by default). Whether it changed."""
        return await self._service.run(
            ops.Restart(
                [self._saved_id("restart")],
                retries=v.count(retries, "retries"),
                until=None if until is None else v.aware_datetime(until, "until"),
                antecedents=v.boolean(antecedents, "antecedents"),
                dependents=v.boolean(dependents, "dependents"),
            )
        )

    async def rerun(
        self,
        repeats: int = 0,
        until: datetime | None = None,
        wait: float | timedelta | None = None,
    ) -> Id | bool:
        """Clone a completed job to run again; the new id, or False."""
        new_id = await self._service.run(
            ops.Rerun(
                self._saved_id("rerun"),
                repeats=v.count(repeats, "repeats"),
                until=None if until is None else v.aware_datetime(until, "until"),
                wait_ms=None if wait is None else v.duration_ms(wait, "wait"),
            )
        )
        return False if new_id is None else new_id

    async def wait(self, timeout: float | timedelta | None = None) -> Job:
        """Wait until the job is final (completed, failed or cancelled: a failed attempt with
        retries left is not final) and return this handle, its document read again;
        TimeoutError after `timeout` seconds. Every wait of a process on one collection
        shares one poll (waiting.py), woken at once by this process's calls and, where the
        database has them, by change streams. JobNotSaved if the job was removed."""
        limit = None if timeout is None else v.duration_ms(timeout, "timeout") / 1000
        [doc] = await waiting.waiters(self._service).wait([self._saved_id("wait")], limit)
        if doc is None:
            raise JobNotSaved(f"wait: job {self._doc.id} was removed")
        self._doc = doc
        return self

    async def add_children(
        self, children: Any, then: Job | None = None, on_failure: OnFailure = "ignore"
    ) -> list[Id | None]:
        """While this job is held by its worker: save new jobs (`children`: jobs, chains,
        groups), and a continuation `then` that runs once they have all finished, whatever
        their outcomes by default (`on_failure="ignore"`; see api/workflows.py): it receives
        their results (`antecedent_results()`) and the ids of those that failed or were
        cancelled (`failed_antecedents`). They join this job's workflow (this job's id is
        the workflow of a job that has none: `jc.workflow(job.id)` finds them). This job
        completes as usual; a child may add children of its own. Their ids, the
        continuation's last."""
        from . import workflows  # (workflows builds on Job)

        job_id, _ = self._claim("add_children")
        flow = workflows.group(children)
        if then is not None:
            flow = workflows.chain(flow, then, on_failure=on_failure)
        workflow_id = self._doc.workflow if self._doc.workflow is not None else job_id
        return await workflows.save_flow(self._service, replace(flow, id=workflow_id))

    async def antecedent_results(self, max_bytes: int = MAX_RESULTS_BYTES) -> dict[Id, Any]:
        """`{antecedent_id: result}` for this job's antecedents that completed (all of them,
        once it may run), in the order of its `resolved` then `depends`; one read. Each
        result is at most `limits.max_data_bytes`; together they may be at most `max_bytes`
        (16 MiB by default, a MongoDB document's limit), else InvalidArgument("max_bytes").
        A removed antecedent is not included."""
        limit = v.integer(max_bytes, "max_bytes", minimum=0)
        ids = [*self._doc.resolved, *self._doc.depends]
        if not ids:
            return {}
        return await self._service.run(ops.Results(ids, limit))

    async def lineage(self) -> list[Id]:
        """The ids of the jobs this one was made from, oldest first, ending with
        `rescheduled_from`: the newest LINEAGE_LIMIT (100) of them. A job's lineage is fixed
        when it is stored, so the handle's copy is the stored one."""
        return list(self._doc.lineage)

    async def remove(self) -> bool:
        """Delete the job once finished (cancelled, completed or failed); whether it was."""
        return await self._service.run(ops.Remove([self._saved_id("remove")]))

    async def rate_limited(self, retry_after: float | timedelta) -> bool:
        """The worker met a rate limit (an HTTP 429, say): put the claimed job back to wait
        `retry_after` (seconds or a timedelta) without using an attempt; the worker's return
        then reports nothing for it. False if the claim is lost. A local JobCollection only,
        for now (README "Rate limits")."""
        job_id, run_id = self._claim("rate_limited")
        wait_ms = v.duration_ms(retry_after, "retry_after")
        put_back = await self._service.run(ops.RateLimited(job_id, run_id, wait_ms))
        if put_back:
            self.reported = True
            assign(self._doc, run_id=None, status=Status.WAITING)
        return put_back


async def save_all(
    service: JobService, jobs: Sequence[Job], *, cancel_repeats: bool = False, session: Any = None
) -> list[Id | None]:
    """Save these jobs (checked Jobs: new ones, or paused ones resaved) in one SaveMany, as
    `save_jobs` and a workflow's save do; each job learns its id as save() would teach it.
    The ids, in order."""
    docs, new_ids = zip(*(job._to_save() for job in jobs), strict=True) if jobs else ((), ())
    with tracing.enqueuing(list(docs)):
        ids = await service.run(
            ops.SaveMany(
                list(docs),
                cancel_repeats=cancel_repeats,
                job_ids=list(new_ids),
                name="jobs",
                session=session,
            )
        )
    for job, job_id in zip(jobs, ids, strict=True):
        job._saved_as(job_id, session)
    return ids


class SyncActions:
    """A job's async actions as blocking calls, for a sync worker in a thread (`job.sync`):
    each runs on the event loop the job was handed out on; attributes that are not actions
    (`data`, `id`, `doc`) are the job's."""

    def __init__(self, job: Job, loop: asyncio.AbstractEventLoop) -> None:
        self._job = job
        self._loop = loop

    def iterate(self, items: Any, *, every: int = 1, flush: bool = False) -> Iterator[Any]:
        """`job.iterate` for a sync worker: a plain iterator over `items` (an iterable)
        that skips those an earlier attempt got past and checkpoints the position every
        `every` items (see api/checkpoints.py)."""
        from .checkpoints import iterate_blocking  # (checkpoints builds on Job)

        return iterate_blocking(
            self.checkpoint, self._job.checkpoint_state, items, every=every, flush=flush
        )

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._job, name)
        if not inspect.iscoroutinefunction(attribute):
            return attribute

        def blocking(*args: Any, **kwargs: Any) -> Any:
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is self._loop:
                raise RuntimeError(
                    f"job.sync.{name}() waits for the event loop it is called from; "
                    f"await job.{name}() there"
                )
            future = asyncio.run_coroutine_threadsafe(attribute(*args, **kwargs), self._loop)
            return future.result()

        return blocking
