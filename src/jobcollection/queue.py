"""JobQueue: claim jobs and hand them to an async worker (job-collection's processJobs).

A queue keeps a FIFO of claimed jobs that have not started and up to `concurrency` worker calls
in flight, each given one job (or a list of up to `payload` jobs). It claims

    prefetch + payload * (concurrency - running) - queued

jobs at a time, one claim at a time: when it starts or resumes, every `poll_interval` seconds,
on `trigger()`, after each worker call finishes, and when its wake-up source (a change stream,
where the server has them) says that jobs may have become ready. While every free worker slot
has a queued job to start, it waits until the prefetched jobs are half used before claiming
more, so that each claim's round trips bring a batch rather than one job. A claim that finds
nothing ready promotes the queue's due jobs itself (the job server promotes only every 15 s by
default) and claims again, or sets a wake-up for when the next of them falls due, so a delay
or a retry wait that has passed starts the job on time. Under a `rate_limit` a claim takes
at most what the limit has left in the current window (ratelimit.py); when the limit held
jobs back, the queue looks again when the next window starts.

The worker's coroutine finishing is the original's callback: if it raises, the jobs it was given
that are still running are failed (not fatally) with the exception's type, message and
traceback; if it returns, they are completed with the returned value as their result. Jobs the
worker finished itself (`job.reported`) are left as they are.

The queue cancels a worker call (asyncio cancellation, raised inside the worker's coroutine,
which may clean up in try/finally) in two cases, and cancels it again every `cancel_grace`
seconds, with a warning, for as long as it swallows the cancellation:
- it runs longer than its `timeout` (the smallest of its jobs' own, `Job.timeout`, or else the
  queue's): its unreported jobs are failed, not fatally, with "timed out after N s";
- every job it has not reported lost its claim (cancelled, removed, or its lease ran out):
  those jobs are left as they are (`job.cancelled`), not reported, not retried. A payload
  batch of which only some jobs lost their claims runs on; its worker can check
  `job.cancelled`, and the queue reports only the others.
The queue finds lost claims at every heartbeat (every third of `work_timeout`), at once when
the job is cancelled or removed through a JobCollection of the same process (LocalCancels),
and at once from a change stream where the server has them (CancelSource).

Every job a queue is handed ends completed, failed, retried or released. Every claim carries a
lease (`work_timeout`, DEFAULT_WORK_TIMEOUT by default), renewed by the heartbeat while the
queue holds the job, so the jobs of a process that dies are recovered by the job server. A
report whose write fails with a DatabaseError is retried, with backoff, for as long as the
lease holds (after that the job server fails the job, and it is retried by its retries); a
report that retrying cannot cure (a result too large or that cannot be encoded, a write the
server refuses) fails the job instead, with the reason.

The queue owns its background tasks (the poll timer, the due-job wake-up, the claim in flight,
the workers, the heartbeat, the claim checks and the wake-up and cancel listeners);
`shutdown()` stops them all and awaits them.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import logging
import traceback
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self, TypeAlias

import bson

from . import tracing
from . import validation as v
from .errors import DatabaseError, InvalidArgument, InvalidArgumentType, WakeupUnavailable
from .job import Job
from .ratelimit import RateLimit
from .store import refused
from .wakeup import CancelSource, WakeupSource, follow

if TYPE_CHECKING:
    from .seam import ServedCollection

logger = logging.getLogger("jobcollection.queue")

Worker: TypeAlias = Callable[[Job], Awaitable[Any]] | Callable[[list[Job]], Awaitable[Any]]
"""An async function given one Job (payload 1) or a list of Jobs (payload > 1)."""

ErrorCallback: TypeAlias = Callable[[Exception], Any]
"""Called with each error the queue cannot attach to a job (a failed claim, a failed report);
it may be a plain function or an async one."""

ShutdownLevel: TypeAlias = Literal["soft", "normal", "hard"]


class State(enum.Enum):
    """Where a queue is in its life; what it does follows from this one value."""

    ACTIVE = "active"
    """Claims jobs and starts them."""
    PAUSED = "paused"
    """Claims and starts nothing; running workers carry on, queued jobs wait."""
    SOFT = "shutdown soft"
    """Claims nothing; queued jobs still start; ends when nothing is queued or running."""
    NORMAL = "shutdown normal"
    """Claims and starts nothing; queued jobs are released; running ones finish."""
    HARD = "shutdown hard"
    """As NORMAL, and running workers are cancelled, their jobs failed."""

    @property
    def claims(self) -> bool:
        return self is State.ACTIVE

    @property
    def starts(self) -> bool:
        return self in (State.ACTIVE, State.SOFT)

    @property
    def level(self) -> int:
        """How urgent a shutdown this is: -1 for none."""
        return _LEVELS.get(self, -1)


_LEVELS = {State.SOFT: 0, State.NORMAL: 1, State.HARD: 2}
_SHUTDOWN_STATES = {"soft": State.SOFT, "normal": State.NORMAL, "hard": State.HARD}

SHUTDOWN_LEVELS: tuple[ShutdownLevel, ...] = ("soft", "normal", "hard")
"""From least to most urgent; a later shutdown() call may only raise the level."""

WORKER_SHUTDOWN_ERROR = {"value": "Worker shutdown"}
"""The failure given to running jobs a hard shutdown takes away from the queue (as in the
original)."""

MIN_WAKEUP_DELAY = 0.05
"""Seconds a queue waits at least before looking for a job that falls due (one just due is
claimed at the next look, never in a tight loop)."""
DEFAULT_WORK_TIMEOUT = 60.0
"""Seconds of lease on every claim a queue makes unless told otherwise; the heartbeat renews
it every third of that, so only a queue that stops (its process died or hangs) loses it."""
DEFAULT_CANCEL_GRACE = 5.0
"""Seconds a queue gives a worker call it cancelled to end before it cancels it again."""

NO_RATE_LIMITS = (
    "rate limits need a local JobCollection for now: a RemoteJobCollection cannot claim "
    "under a RateLimit"
)

MAX_RETRY_DELAY = 5.0
"""The longest wait, in seconds, between two attempts to write a report."""


def retry_delay(attempt: int) -> float:
    """Seconds to wait before attempt `attempt` (2, 3, ...) of a report: none before the first
    retry, then 50 ms doubling up to MAX_RETRY_DELAY."""
    if attempt <= 2:
        return 0.0
    return float(min(0.05 * 2 ** (attempt - 3), MAX_RETRY_DELAY))


TRACEBACK_LIMIT = 10_000
"""Characters of traceback kept in a failure (the end, where the error is, is kept)."""
MESSAGE_LIMIT = 2_000
"""Characters of the exception's message kept in a failure, so that the failure always fits
in Limits.max_error_bytes (64 KiB by default) and can be recorded."""


def failure_info(exc: BaseException, max_bytes: int | None = None) -> dict[str, Any]:
    """A storable failure for a job whose worker raised: value, type, message and traceback.

    Never raises: an exception whose str() raises is described by its type. With max_bytes
    the traceback, then the message, are shortened until the failure fits.
    """
    name = type(exc).__name__
    message = _text(lambda: str(exc), f"<{name} whose str() raised>")
    if len(message) > MESSAGE_LIMIT:
        message = message[:MESSAGE_LIMIT] + "..."
    trace = _text(lambda: "".join(traceback.format_exception(exc)), "")
    if len(trace) > TRACEBACK_LIMIT:
        trace = "...\n" + trace[-TRACEBACK_LIMIT:]
    info = {"value": message or name, "type": name, "message": message, "traceback": trace}
    while max_bytes is not None and len(bson.encode(info)) > max_bytes:
        if info["traceback"]:
            info["traceback"] = info["traceback"][len(info["traceback"]) // 2 + 1 :]
        elif len(info["message"]) > 1:
            info["message"] = info["value"] = info["message"][: len(info["message"]) // 2]
        else:
            return {"value": name[: max(1, max_bytes // 4)]}
    return info


def _fields(job: Job) -> dict[str, Any]:
    """A job's structured log fields (`extra=`): its type, id and attempt; never its data."""
    return {"job_type": job.type, "job_id": str(job.id), "attempt": job.doc.retried}


def _text(make: Callable[[], str], fallback: str) -> str:
    try:
        return make()
    except Exception:
        return fallback


def _seconds(ms: int) -> str:
    """Milliseconds as seconds, compactly: 50 -> "0.05", 30000 -> "30"."""
    return f"{ms / 1000:.3f}".rstrip("0").rstrip(".")


@dataclass(slots=True)
class _Stop:
    """A worker call the queue cancelled: why, what its unreported jobs are failed with (None:
    their claims are lost, nothing is reported), how many times it was cancelled (each is
    undone once the call is over) and the timer of the next cancel."""

    why: str
    error: BaseException | None
    cancels: int = 0
    again: asyncio.TimerHandle | None = None


def _poll_seconds(value: Any) -> float | None:
    """None or 0 disables polling; otherwise seconds (or a timedelta) > 0."""
    if value is None:
        return None
    ms = v.duration_ms(value, "poll_interval")
    return ms / 1000 if ms else None


class JobQueue:
    """Claims jobs of some types and runs them through an async worker.

    Create it with `jc.process_jobs(...)` inside a running event loop; it starts at once (as
    the original, by resuming). `pause()` it right away to create it paused.
    """

    def __init__(
        self,
        jc: ServedCollection,
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
    ) -> None:
        """`timeout`: the longest a worker call may run (None: no limit) unless its jobs say
        otherwise (`Job.timeout`); `cancel_grace`: how long a cancelled worker call has to
        end before it is cancelled again (see the module's docstring for both). A wake-up
        source that is also a CancelSource (the default change streams) tells the queue of
        cancelled jobs too; cancels made through this process's JobCollection are seen
        whatever `wakeup` says. `rate_limit`: at most so many of its jobs start per window
        over every process (ratelimit.py; a local JobCollection only, for now)."""
        self._types = v.job_types(type_or_types, "type_or_types")
        if not callable(worker):
            raise InvalidArgumentType("worker", "must be an async function")
        self._concurrency = v.integer(concurrency, "concurrency", minimum=1)
        self._payload = v.integer(payload, "payload", minimum=1)
        self._prefetch = v.integer(prefetch, "prefetch", minimum=0)
        self._poll_interval = _poll_seconds(poll_interval)
        lease = DEFAULT_WORK_TIMEOUT if work_timeout is None else work_timeout
        self._work_timeout_ms = v.duration_ms(lease, "work_timeout", minimum_ms=1)
        self._heartbeat_interval = self._work_timeout_ms / 1000 / 3
        self._timeout_ms = (
            None if timeout is None else v.duration_ms(timeout, "timeout", minimum_ms=1)
        )
        self._cancel_grace = v.duration_ms(cancel_grace, "cancel_grace", minimum_ms=1) / 1000
        if rate_limit is not None and not isinstance(rate_limit, RateLimit):
            raise InvalidArgumentType("rate_limit", "must be None or a RateLimit")
        self._rate_limit = rate_limit
        if rate_limit is not None and not jc.service.rate_limits:
            raise InvalidArgument("rate_limit", NO_RATE_LIMITS)
        if error_callback is not None and not callable(error_callback):
            raise InvalidArgumentType("error_callback", "must be callable")
        if not isinstance(wakeup, bool) and not isinstance(wakeup, WakeupSource):
            raise InvalidArgumentType(
                "wakeup", "must be True, False or a WakeupSource (an object with signals())"
            )
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "a JobQueue must be created inside a running event loop "
                "(call process_jobs() from async code)"
            ) from None

        self._jc = jc
        self._service = jc.service
        self._worker: Callable[[Any], Any] = worker
        self._error_callback = error_callback
        self._queued: deque[Job] = deque()
        self._workers: dict[asyncio.Task[None], list[Job]] = {}
        """Batches whose worker call is in flight (each holds a slot), by their task."""
        self._reporting: dict[asyncio.Task[None], list[Job]] = {}
        """Batches whose worker call is over and whose reports (done/fail) are being written;
        their slots are free."""
        self._stopped: dict[asyncio.Task[None], _Stop] = {}
        """Worker calls the queue cancelled and that have not ended yet, by their task."""
        self._checks: set[asyncio.Task[None]] = set()
        """Claim checks in flight, started by a cancel (see _on_cancelled)."""
        self._leases: dict[Any, datetime] = {}
        """When the lease of each claim held (by runId) runs out, as last renewed; an entry
        goes when the queue holds no job of its claim any more (_forget_leases)."""
        self._releasing: set[Any] = set()
        """RunIds of claims whose jobs are being released (no longer queued, still held)."""
        self._fetch_task: asyncio.Task[None] | None = None
        self._refetch = False
        self._state = State.PAUSED
        self._shutdown_task: asyncio.Task[None] | None = None
        self._poll_task: asyncio.Task[None] | None = None
        self._listen_task: asyncio.Task[None] | None = None
        self._cancels_task: asyncio.Task[None] | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._wakeup_task: asyncio.Task[None] | None = None
        self.next_wakeup: datetime | None = None
        """When the queue will look for work on its own because a job of its types falls due
        then (sooner than its next poll); None: at its next poll or trigger."""
        self._retired: set[asyncio.Task[Any]] = set()
        self._changed = asyncio.Event()

        source: WakeupSource | None = wakeup if not isinstance(wakeup, bool) else None
        if wakeup is True:
            source = self._service.wakeup()
        if source is not None:
            self._listen_task = self._spawn(self._listen(source), "wakeup")
        if isinstance(source, CancelSource):
            self._cancels_task = self._spawn(self._listen_cancels(source), "cancels")
        self._unsubscribe: Callable[[], None] | None = None
        saves = self._service.saves() if wakeup is not False else None
        if saves is not None:
            self._unsubscribe = saves.subscribe(self._types, self._on_saved)
        cancels = self._service.cancels()
        self._unsubscribe_cancels = (
            None if cancels is None else cancels.subscribe(self._on_cancelled)
        )
        self._heartbeat_task = self._spawn(
            self._heartbeat_loop(self._heartbeat_interval), "heartbeat"
        )
        self.resume()

    def __repr__(self) -> str:
        counts = f"queued={self.length()} running={self.running()}"
        return f"<JobQueue {self._types} {self._state.value} {counts}>"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown("soft")

    # --- state -------------------------------------------------------------------------------

    def length(self) -> int:
        """Jobs claimed and waiting for a worker."""
        return len(self._queued)

    def running(self) -> int:
        """Worker calls in flight (a payload batch counts once)."""
        return len(self._workers)

    def full(self) -> bool:
        """True when `concurrency` worker calls are in flight."""
        return len(self._workers) >= self._concurrency

    def idle(self) -> bool:
        """True when nothing is queued, running, or being reported."""
        return not self._queued and not self._workers and not self._reporting

    def claims_held(self) -> int:
        """Claims (runIds) whose lease the queue keeps track of: those it holds jobs of,
        queued, running, being reported or being released. 0 once it holds nothing."""
        return len(self._leases)

    # --- control -----------------------------------------------------------------------------

    def pause(self) -> None:
        """Stop claiming and starting jobs; running workers carry on, queued jobs wait."""
        if self._state.level >= 0:
            return  # the shutdown decides what runs now
        self._state = State.PAUSED
        self._stop_polling()
        self._notify()

    def resume(self) -> None:
        """Claim at once, restart the poll timer and start queued jobs."""
        if self._state.level >= 0:
            logger.warning("resume() ignored: %r is shutting down", self)
            return
        self._state = State.ACTIVE
        self._stop_polling()
        if self._poll_interval is not None:
            self._poll_task = self._spawn(self._poll(self._poll_interval), "poll")
        self._process()
        self.trigger()
        self._notify()

    def trigger(self) -> None:
        """Look for work now, as each poll does; ignored while paused or shutting down."""
        if not self._state.claims:
            return
        if self._fetch_task is not None:
            self._refetch = True  # claim again once the claim in flight has answered
            return
        task = self._spawn(self._fetch(), "fetch")
        self._fetch_task = task
        task.add_done_callback(self._fetch_finished)
        self._notify()

    async def drain(self) -> None:
        """Wait until the queue has nothing left to do for now: no claim in flight, no worker
        running, and no queued job that could start (a paused queue may still hold some).
        For tests and batch scripts; bound it with asyncio.timeout."""
        await self._wait_until(
            lambda: not self._workers and not self._reporting and self._settled()
        )

    async def settle(self) -> None:
        """Wait until no claim is in flight and no queued job could start now (every worker
        slot busy, or paused, or nothing queued); running workers may carry on."""
        await self._wait_until(self._settled)

    def _settled(self) -> bool:
        startable = self._queued and self._state.starts and not self.full()
        return self._fetch_task is None and not startable

    async def heartbeat_now(self) -> int:
        """Renew the lease of every job the queue holds (queued, running or being reported)
        now; the number renewed. The queue does this every work_timeout / 3 seconds by
        itself. A job whose claim is found lost (`job.cancelled`) is dropped if it has not
        started; a worker call whose unreported jobs all lost their claims is cancelled."""
        claims = self._claims()
        self._forget_leases()
        if not claims:
            return 0
        return await self._renew(claims)

    def _forget_leases(self) -> None:
        """Drop the leases of claims the queue holds no job of any more (every way a claim
        ends passes here: its batch's task ended, its queued jobs were dropped or released),
        so that the table stays as small as what the queue holds, however long it idles."""
        held = {job.doc.run_id for job in (*self._queued, *self._in_hand())}
        for run_id in set(self._leases) - held - self._releasing:
            del self._leases[run_id]

    def _claims(self) -> dict[Any, list[Job]]:
        """The jobs the queue holds (queued, running or being reported) whose claim it has not
        found lost and that are not reported, by claim (runId)."""
        claims: dict[Any, list[Job]] = {}
        for job in (*self._queued, *self._in_hand()):
            if not job.reported and not job.cancelled:
                claims.setdefault(job.doc.run_id, []).append(job)
        return claims

    async def _renew(self, claims: dict[Any, list[Job]]) -> int:
        """Renew the lease of these claims, finding the jobs whose claim is lost; the number
        of jobs renewed."""
        renewed = 0
        for run_id, jobs in claims.items():  # one renewal per claim: its jobs share a lease
            asked_at = self._service.clock.now()
            try:
                still_held = set(
                    await self._service.heartbeat(
                        [job._saved_id("heartbeat") for job in jobs], run_id
                    )
                )
            except Exception as exc:
                await self._on_error(exc, f"heartbeat of claim {run_id}")
                continue
            self._leases[run_id] = asked_at + timedelta(milliseconds=self._work_timeout_ms)
            reporting = {id(job) for batch in self._reporting.values() for job in batch}
            for job in jobs:
                if job.id in still_held:
                    renewed += 1
                elif not (job.reported or job._report_in_flight or id(job) in reporting):
                    self._claim_lost(job)  # (a job reported since it was asked is not lost)
        return renewed

    def _claim_lost(self, job: Job) -> None:
        """Drop a queued job whose claim is lost; cancel the worker call holding a running one
        once every job the call has not reported is lost."""
        queued = job in self._queued
        logger.warning(
            "job %s lost its claim (lease expired, cancelled or removed); %s",
            job.id,
            "not starting it" if queued else "its result will not be stored",
        )
        job._lose_claim()
        if queued:
            self._queued.remove(job)
            self._forget_leases()
            self._notify()
            return
        for task, batch in self._workers.items():
            if job in batch:
                if all(other.cancelled for other in batch if not other.reported):
                    self._stop(task, "its jobs lost their claims", None)
                return

    def _on_cancelled(self, ids: Sequence[Any]) -> None:
        """Jobs were cancelled or removed: check the claims of those the queue holds now (so
        their worker call is cancelled at once, not at the next heartbeat)."""
        named = set(ids)
        claims = {
            run_id: jobs
            for run_id, jobs in self._claims().items()
            if any(job.id in named for job in jobs)
        }
        if claims:
            self._check(claims)

    def _check(self, claims: dict[Any, list[Job]]) -> None:
        """Renew (and so check) these claims in a task of their own; shutdown awaits it."""
        task = self._spawn(self._check_claims(claims), "claim-check")
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)

    async def _check_claims(self, claims: dict[Any, list[Job]]) -> None:
        await self._renew(claims)

    async def shutdown(self, level: ShutdownLevel = "normal", quiet: bool = False) -> None:
        """Stop the queue; returns when the level's conditions hold and every task ended.

        Every level claims nothing more (a claim in flight is awaited, its jobs queued).
        - "soft": queued jobs still start; returns when nothing is queued or running.
        - "normal": queued jobs are released (ready again for any worker, no attempt used);
          running ones finish.
        - "hard": queued jobs are released; running ones are failed (not fatally) with
          "Worker shutdown" at once and their worker tasks are cancelled.
        A second call may raise the level (a second Ctrl-C turning "normal" into "hard").
        """
        target = _SHUTDOWN_STATES[v.choice(level, "level", SHUTDOWN_LEVELS)]
        quiet = v.boolean(quiet, "quiet")
        if asyncio.current_task() in self._workers:
            raise RuntimeError(
                "shutdown() awaited inside a worker would wait for itself; "
                "run it in its own task: asyncio.create_task(queue.shutdown())"
            )
        if target.level > self._state.level:
            if not quiet:
                logger.info("%r: shutting down (%s)", self, level)
            self._state = target
            self._notify()
        if self._shutdown_task is None:
            self._shutdown_task = asyncio.create_task(
                self._run_shutdown(quiet), name="jobcollection-queue-shutdown"
            )
        await asyncio.shield(self._shutdown_task)

    # --- claiming ----------------------------------------------------------------------------

    async def _poll(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.trigger()

    async def _fetch(self) -> None:
        while True:
            self._refetch = False
            await self._fetch_once()
            if not (self._refetch and self._state.claims):
                return

    async def _fetch_once(self) -> None:
        if not self._state.claims:  # paused or stopped before this claim could start
            return
        free = self._payload * (self._concurrency - self.running())
        # Reports in flight do not hold the next claim back, up to one round of them (a
        # worker slot's worth each): at most prefetch + 2 x payload x concurrency jobs are
        # in hand, queued, running or being reported.
        capacity = self._payload * self._concurrency
        backlog = max(0, self._reports_in_flight() - capacity)
        wanted = self._prefetch + free - self.length() - backlog
        if wanted <= 0:
            return
        if self.length() >= free and wanted < max(1, self._prefetch // 2):
            return  # every free slot has a job: refill the prefetch once it is half empty
        next_window = None
        try:
            if self._rate_limit is None:
                docs = await self._service.get_work(
                    self._types, max_jobs=wanted, work_timeout_ms=self._work_timeout_ms
                )
            else:
                work = await self._service.get_limited_work(
                    self._types,
                    self._rate_limit,
                    max_jobs=wanted,
                    work_timeout_ms=self._work_timeout_ms,
                )
                docs, next_window = work.docs, work.next_window
        except Exception as exc:
            await self._on_error(exc, "claiming work")
            return
        if self.next_wakeup is not None and self.next_wakeup <= self._service.clock.now():
            self._cancel_wakeup()  # this claim looked for what it would have looked for
        if next_window is not None:  # the rate limit held jobs back: look again then
            self._wake_at(next_window)
        if not docs:
            if next_window is None:  # nothing ready (rather than held back by the limit)
                await self._ready_due()
            return
        jobs = [Job._claimed(self._jc, doc) for doc in docs]
        for job in jobs:
            if job.doc.expires_after is not None:
                self._leases.setdefault(job.doc.run_id, job.doc.expires_after)
        self._queued.extend(jobs)
        self._process()

    async def _ready_due(self) -> None:
        """Nothing was ready: promote this queue's due jobs itself instead of waiting for the
        job server's next pass (and claim again at once if any was), or wake up when the next
        one falls due. So a delay, an `after` or a retry wait that has passed starts the job
        within moments, for the cost of one or two commands per empty claim."""
        try:
            due = await self._service.ready_due(self._types)
        except Exception as exc:
            await self._on_error(exc, "promoting due jobs")
            return
        if due.promoted:
            self._refetch = True
        elif due.next_due is not None:
            self._wake_at(due.next_due)

    def _wake_at(self, when: datetime) -> None:
        """Look for work at `when` (a job falls due then), unless the poll comes first or a
        wake-up is set sooner. Without polling the queue claims only when triggered."""
        if self._poll_interval is None or not self._state.claims:
            return
        if self._wakeup_task is not None and not self._wakeup_task.done():
            if self.next_wakeup is not None and self.next_wakeup <= when:
                return
            self._retire(self._wakeup_task)
        delay = (when - self._service.clock.now()).total_seconds()
        if delay >= self._poll_interval:
            return
        self.next_wakeup = when
        self._wakeup_task = self._spawn(self._wake(max(delay, MIN_WAKEUP_DELAY)), "due")

    async def _wake(self, delay: float) -> None:
        await asyncio.sleep(delay)
        self.next_wakeup = None
        self.trigger()

    def _fetch_finished(self, task: asyncio.Task[None]) -> None:
        if self._fetch_task is task:
            self._fetch_task = None
        if not task.cancelled() and task.exception() is not None:
            logger.error("claim task failed", exc_info=task.exception())
        self._notify()

    # --- working -----------------------------------------------------------------------------

    def _process(self) -> None:
        """Start workers while there are queued jobs and free slots (unless paused)."""
        started = False
        while self._queued and self._state.starts and not self.full():
            take = min(self._payload, len(self._queued))
            batch = [self._queued.popleft() for _ in range(take)]
            task = self._spawn(self._run_batch(batch), "batch")
            self._workers[task] = batch
            task.add_done_callback(self._batch_finished)
            started = True
        if started:
            self._notify()

    async def _run_batch(self, batch: list[Job]) -> None:
        """One batch's whole life: call the worker (within its timeout), free its slot, write
        its reports."""
        task = asyncio.current_task()
        assert task is not None
        error: BaseException | None = None
        result: Any = None
        deadline = self._deadline(task, batch)
        started = asyncio.get_running_loop().time()
        if logger.isEnabledFor(logging.INFO):
            for job in batch:
                logger.info("job %s %s started", job.type, job.id, extra=_fields(job))
        try:
            with tracing.processing([job.doc for job in batch]):
                result = await self._call_worker(batch)
        except BaseException as exc:
            error = exc
        if deadline is not None:
            deadline.cancel()
        stop = self._end_stop(task)
        cancelled = isinstance(error, asyncio.CancelledError)
        if stop is not None and not (cancelled and task.cancelling() > stop.cancels):
            # The queue cancelled the call (and no one else did): whatever the call did since,
            # its jobs are failed with the stop's error, or left alone (their claims are lost).
            for _ in range(stop.cancels):
                task.uncancel()
            result, error = None, stop.error
        elif cancelled:
            assert error is not None
            if self._state is not State.HARD:  # cancelled by someone else: leave nothing running
                await self._finish(batch, error=error)
            raise error
        elif error is not None and not isinstance(error, Exception):
            await self._finish(batch, error=error)  # SystemExit, KeyboardInterrupt: fail, then
            raise error  # let it go
        # The call is over: its slot is free for the next batch while its reports are written
        # (reports of calls finishing close together share one bundled write).
        self._reporting[task] = self._workers.pop(task, batch)
        self._process()
        self.trigger()
        self._notify()
        await self._finish(
            batch, result=result, error=error, seconds=asyncio.get_running_loop().time() - started
        )

    def _deadline(self, task: asyncio.Task[None], batch: list[Job]) -> asyncio.TimerHandle | None:
        """Time the worker call out after the smallest timeout of its jobs (the queue's for a
        job without one of its own); None: no limit."""
        limits = [self._timeout_ms if job.doc.timeout is None else job.doc.timeout for job in batch]
        known = [ms for ms in limits if ms is not None]
        if not known:
            return None
        limit_ms = min(known)
        why = f"timed out after {_seconds(limit_ms)} s"
        return asyncio.get_running_loop().call_later(
            limit_ms / 1000, self._stop, task, why, TimeoutError(why)
        )

    def _stop(self, task: asyncio.Task[None], why: str, error: BaseException | None) -> None:
        """Cancel a worker call in flight; its jobs are failed with `error` once it ends (None:
        left alone). It is cancelled again every cancel_grace seconds until it ends."""
        if task in self._stopped:  # cancelled already: for the other reason, or by another check
            return
        logger.info(
            "cancelling the worker call on job(s) %s: %s", self._ids(self._workers[task]), why
        )
        stop = _Stop(why, error)
        self._stopped[task] = stop
        self._cancel_call(task, stop)

    def _cancel_call(self, task: asyncio.Task[None], stop: _Stop) -> None:
        stop.cancels += 1
        task.cancel()
        stop.again = asyncio.get_running_loop().call_later(
            self._cancel_grace, self._still_running, task, stop
        )

    def _end_stop(self, task: asyncio.Task[None]) -> _Stop | None:
        """The worker call of `task` is over (or the task was cancelled before it started):
        cancel it no more; the stop, if the queue had cancelled it."""
        stop = self._stopped.pop(task, None)
        if stop is not None and stop.again is not None:
            stop.again.cancel()
        return stop

    def _still_running(self, task: asyncio.Task[None], stop: _Stop) -> None:
        """A worker call the queue cancelled cancel_grace seconds ago has not ended (it
        swallowed the cancellation): cancel it again."""
        logger.warning(
            "the worker call on job(s) %s is still running %g s after it was cancelled (%s); "
            "cancelling it again",
            self._ids(self._workers[task]),
            self._cancel_grace,
            stop.why,
        )
        self._cancel_call(task, stop)

    @staticmethod
    def _ids(jobs: list[Job]) -> str:
        return ", ".join(str(job.id) for job in jobs)

    async def _call_worker(self, batch: list[Job]) -> Any:
        outcome = self._worker(batch if self._payload > 1 else batch[0])
        if not inspect.isawaitable(outcome):
            raise InvalidArgumentType(
                "worker", f"must return an awaitable, not {type(outcome).__name__}"
            )
        return await outcome

    def _batch_finished(self, task: asyncio.Task[None]) -> None:
        if self._workers.pop(task, None) is None:
            self._reporting.pop(task, None)
        self._end_stop(task)  # a task cancelled before it started never ran _run_batch
        self._forget_leases()  # its claims end here, unless the queue holds more of their jobs
        if not task.cancelled() and task.exception() is not None:
            logger.error("batch task failed", exc_info=task.exception())
        self._process()
        self.trigger()
        self._notify()

    def _in_hand(self) -> list[Job]:
        """Jobs a worker call holds or whose report is being written."""
        batches = (*self._workers.values(), *self._reporting.values())
        return [job for batch in batches for job in batch]

    def _reports_in_flight(self) -> int:
        return sum(len(batch) for batch in self._reporting.values())

    async def _finish(
        self,
        batch: list[Job],
        *,
        result: Any = None,
        error: BaseException | None = None,
        seconds: float | None = None,
    ) -> None:
        """Report the outcome of a worker call on the jobs it left unreported, and log one
        line per job: INFO for a completion, WARNING (with the traceback) for a failure,
        saying whether the job will be retried. Job data and results are never logged."""
        pending = [job for job in batch if not job.reported and not job.cancelled]
        if not pending:
            return
        took = "" if seconds is None else f" in {seconds:.3f} s"
        if error is None:
            await self._settle_all(pending, "done", lambda: result)
            if logger.isEnabledFor(logging.INFO):
                for job in pending:
                    fields = {**_fields(job), "outcome": "completed", "seconds": seconds}
                    logger.info("job %s %s completed%s", job.type, job.id, took, extra=fields)
            return
        message = _text(lambda: str(error), "<str() raised>")
        now = self._service.clock.now()
        for job in pending:
            retry = job.doc.retries > 0 and job.doc.retry_until > now
            logger.warning(
                "job %s %s failed%s: %s: %s; %s",
                job.type,
                job.id,
                took,
                type(error).__name__,
                message,
                "it will be retried" if retry else "it will not be retried",
                exc_info=error,
                extra={**_fields(job), "outcome": "failed", "retry": retry, "seconds": seconds},
            )
        failure = failure_info(error, self._service.limits.max_error_bytes)
        await self._settle_all(pending, "fail", lambda: failure)

    async def _settle(self, job: Job, kind: Literal["done", "fail"], value: Any) -> bool:
        """Write one job's report; whether it was applied. A DatabaseError is retried (see
        retry_delay) while the claim's lease lasts; a report that cannot be stored, or that
        the server refuses, becomes a failure with the reason."""
        attempt = 1
        while True:
            try:
                if kind == "done":
                    return bool(await job.done(value))
                return await job.fail(value)
            except InvalidArgument as exc:  # the value cannot be stored: retrying cannot help
                if kind == "fail":
                    await self._on_error(exc, f"failing job {job.id}")
                    return False
                kind, value = "fail", failure_info(exc, self._service.limits.max_error_bytes)
            except DatabaseError as exc:
                if refused(exc) and kind == "done":
                    kind, value = "fail", failure_info(exc, self._service.limits.max_error_bytes)
                    continue
                if refused(exc) or not await self._may_retry(job, attempt, exc):
                    await self._on_error(exc, f"reporting on job {job.id}")
                    return False
            attempt += 1

    async def _may_retry(self, job: Job, attempt: int, exc: Exception) -> bool:
        """Wait before the next attempt at writing a report; False once the claim's lease
        has run out (the job server fails the job from then on, so it is not lost)."""
        now = self._service.clock.now()
        lease = timedelta(milliseconds=self._work_timeout_ms)
        expires = self._leases.setdefault(job.doc.run_id, now + lease)
        if now >= expires:
            logger.error(
                "giving up reporting on job %s: its lease ran out (%s); the job server fails "
                "it and it is retried if it has retries left",
                job.id,
                exc,
            )
            return False
        delay = retry_delay(attempt + 1)
        logger.warning("report on job %s failed (%s); retrying in %.2f s", job.id, exc, delay)
        await asyncio.sleep(delay)
        return True

    async def _release(self, jobs: list[Job]) -> int:
        """Hand queued jobs back, ready for any worker, without using an attempt; the number
        released. A failed write is retried while the lease lasts."""
        claims: dict[Any, list[Job]] = {}
        for job in jobs:
            claims.setdefault(job.doc.run_id, []).append(job)
        released = 0
        self._releasing.update(claims)
        try:
            for run_id, held in claims.items():
                attempt = 1
                while True:
                    try:
                        ids = await self._service.release(
                            [job._saved_id("release") for job in held], run_id
                        )
                    except DatabaseError as exc:
                        if refused(exc) or not await self._may_retry(held[0], attempt, exc):
                            await self._on_error(exc, f"releasing the jobs of claim {run_id}")
                            break
                        attempt += 1
                        continue
                    released += len(ids)
                    break
        finally:
            self._releasing.difference_update(claims)
            self._forget_leases()
        return released

    async def _fail_jobs(self, jobs: list[Job], error: dict[str, Any]) -> int:
        """Fail jobs (not fatally) concurrently; the number failed."""
        return await self._settle_all(jobs, "fail", lambda: dict(error))

    async def _settle_all(
        self, jobs: list[Job], kind: Literal["done", "fail"], value: Callable[[], Any]
    ) -> int:
        """Write the reports of several jobs concurrently (so they share one bundled write);
        the number applied. A lone report is awaited directly: no task to create."""
        if len(jobs) == 1:
            return int(await self._settle(jobs[0], kind, value()))
        outcomes = await asyncio.gather(*(self._settle(job, kind, value()) for job in jobs))
        return sum(outcomes)

    # --- background --------------------------------------------------------------------------

    async def _heartbeat_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.heartbeat_now()
            except Exception as exc:
                await self._on_error(exc, "heartbeat")

    async def _listen(self, source: WakeupSource) -> None:
        ended = await follow(source.signals(self._types), lambda _: self.trigger())
        if isinstance(ended, WakeupUnavailable):
            self._fall_back(f"prompt wake-up unavailable ({ended})", logging.INFO)
        elif ended is not None:
            self._fall_back(f"wake-up source failed ({ended!r}); rescanning", logging.WARNING)
            self.trigger()

    async def _listen_cancels(self, source: CancelSource) -> None:
        ended = await follow(source.cancellations(), self._on_cancel_signal)
        if isinstance(ended, WakeupUnavailable):
            logger.debug("cancel stream unavailable; the heartbeat finds cancelled jobs")
        elif ended is not None:
            logger.warning(
                "cancel stream failed (%r); the heartbeat finds cancelled jobs every %g s",
                ended,
                self._heartbeat_interval,
            )

    def _on_cancel_signal(self, job_id: Any) -> None:
        if job_id is not None:
            self._on_cancelled([job_id])
        elif claims := self._claims():  # cancels may have been missed: check them all
            self._check(claims)

    def _on_saved(self, due: datetime) -> None:
        """A job of this queue's types was saved in this process: look now if it is due, or
        wake up when it is (see _wake_at)."""
        if not self._state.claims:
            return
        if due <= self._service.clock.now():
            self.trigger()
        else:
            self._wake_at(due)

    def _fall_back(self, why: str, level: int) -> None:
        if self._poll_interval is not None:
            logger.log(level, "%s; polling every %g s", why, self._poll_interval)
        else:
            logger.warning("%s; polling is disabled, so only trigger() will find new jobs", why)

    def _spawn(self, coro: Coroutine[Any, Any, None], role: str) -> asyncio.Task[None]:
        return asyncio.create_task(coro, name=f"jobcollection-queue-{role}")

    def _retire(self, task: asyncio.Task[Any] | None) -> None:
        """Cancel a background task; shutdown awaits it."""
        if task is None or task.done():
            return
        task.cancel()
        self._retired.add(task)
        task.add_done_callback(self._retired.discard)

    def _stop_polling(self) -> None:
        self._retire(self._poll_task)
        self._poll_task = None
        self._cancel_wakeup()

    def _cancel_wakeup(self) -> None:
        self._retire(self._wakeup_task)
        self._wakeup_task = None
        self.next_wakeup = None

    def _notify(self) -> None:
        """Wake everything waiting for the queue's state to change."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait_until(self, condition: Callable[[], bool]) -> None:
        while not condition():
            await self._changed.wait()

    async def _on_error(self, exc: Exception, what: str) -> None:
        if self._error_callback is None:
            logger.error("%s failed: %s", what, exc, exc_info=exc)
            return
        try:
            outcome = self._error_callback(exc)
            if inspect.isawaitable(outcome):
                await outcome
        except Exception:
            logger.exception("error_callback raised while reporting: %s failed", what)

    # --- shutdown ----------------------------------------------------------------------------

    async def _run_shutdown(self, quiet: bool) -> None:
        self._stop_polling()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._retire(self._listen_task)
        self._listen_task = None
        if self._fetch_task is not None:
            await asyncio.wait([self._fetch_task])
        released = failed_running = 0
        while True:
            changed = self._changed
            if self._state is State.SOFT:
                self._process()
                if self.idle():
                    break
            elif self._queued:
                jobs = list(self._queued)
                self._queued.clear()
                self._notify()
                released += await self._release(jobs)
                continue
            elif self._state is State.HARD and self._workers:
                failed_running += await self._kill_workers()
                continue
            elif not self._workers and not self._reporting:
                break
            await changed.wait()
        self._retire(self._heartbeat_task)
        self._heartbeat_task = None
        self._retire(self._cancels_task)
        self._cancels_task = None
        if self._unsubscribe_cancels is not None:
            self._unsubscribe_cancels()
            self._unsubscribe_cancels = None
        if self._retired or self._checks:
            await asyncio.gather(*self._retired, *self._checks, return_exceptions=True)
        if not quiet:
            logger.info(
                "%r: shut down; released %d queued and failed %d running job(s)",
                self,
                released,
                failed_running,
            )

    async def _kill_workers(self) -> int:
        """Hard shutdown: cancel every worker call and fail the jobs it had not finished (and
        that have not lost their claims)."""
        tasks = list(self._workers)
        jobs = [
            job
            for batch in self._workers.values()
            for job in batch
            if not job.reported and not job.cancelled
        ]
        for task in tasks:
            task.cancel()
        failed = await self._fail_jobs(jobs, WORKER_SHUTDOWN_ERROR)
        await asyncio.wait(tasks)
        return failed
