"""The core: the local service, which runs every operation of a job collection (a JobService).

`Job`, `JobQueue` and `JobCollection` run operations (model/ops.py) on it with `run(op)`; the
method layer (`jc.call`, methods/layer.py) parses the original's wire format into the same
operations. Whoever calls, each operation goes through `run` once: the ServerClock re-reads
the server's time when due, the operation's applier (one method per operation, in `_table`)
checks the limits and applies its rules, and the method's events fire and its log line is
written (the wire-shaped parameters, `op.params()`, are built only when something reads
them). The queues of the same process are told of every job saved (LocalSaves) and of the ids
of every cancel and remove (LocalCancels, so a running job's worker is stopped at once). Below
the core, the parts apply the transitions: saving.py, claiming.py, managing.py, reporting.py
(with followups.py), dependents.py, limiter.py and server.py, all through one Store. A save or
a report given the caller's session runs on parts over that Store joined to the session, and
what follows its commit waits for it (transactions.py).
"""

from __future__ import annotations

import logging
import os
import socket
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import IO, Any, TypeVar

from bson import ObjectId

from ..model import validation as v
from ..model.clock import Clock
from ..model.concurrency import ConcurrencyLimit
from ..model.document import CLAIMER, JobDoc, JobWorker
from ..model.errors import InvalidArgument, InvalidArgumentType
from ..model.events import EventEmitter, MethodEvent
from ..model.limits import Limits
from ..model.ops import (
    OPERATIONS,
    AddDepends,
    BackfillSchedule,
    Cancel,
    CancelPendingOf,
    Checkpoints,
    ConcurrencyLimits,
    Done,
    Fail,
    FindJobs,
    ForgetWorker,
    GetJobs,
    GetLimitedWork,
    GetWork,
    Heartbeat,
    ListSchedules,
    ListWorkers,
    Log,
    Op,
    Outcome,
    Pause,
    PausedTypes,
    PauseSchedule,
    PauseTypes,
    Progress,
    RateLimited,
    Ready,
    ReadyDue,
    Release,
    Remove,
    RemoveSchedule,
    Rerun,
    Restart,
    Results,
    Resume,
    ResumeSchedule,
    ResumeTypes,
    Save,
    SaveMany,
    SeeWorker,
    SetConcurrencyLimit,
    ShutdownServer,
    StartServer,
    Stats,
    TriggerSchedule,
    UpsertSchedule,
)
from ..model.queries import DocPage, QueueStats
from ..model.ratelimit import LimitedWork
from ..model.schedules import Schedule
from ..model.types import Due, Id, Paused
from ..model.workers import MAX_TEXT, TTL_MS, WorkerInfo
from ..mongo.servertime import ServerClock
from ..mongo.store import Store
from ..mongo.wakeup import ChangeStreamSource, LocalCancels, LocalSaves, WakeupSource
from .claiming import Claimant, Claimer
from .dependents import Dependents
from .edges import Edges
from .followups import FollowUps
from .history import History
from .leadership import DEFAULT_LEASE_MS, Leadership
from .limiter import Limiter, counter_store
from .managing import Manager
from .pausing import Pauses
from .reading import Reader
from .reporting import Report, Reporter, claimed_by, claimer_of, refused
from .saving import Saver
from .schedules import Scheduler
from .server import JobServer, ServerPass
from .settings import Settings
from .slots import Slots
from .transactions import Transactions
from .workers import Registry

logger = logging.getLogger("jobcollection")

T = TypeVar("T")
MAX_HANDED = 20_000
"""Jobs claimed through the method layer whose claimed copies are kept for their reports."""


def _claimant(worker: JobWorker | None, origin: Origin | None) -> Claimant:
    """Who a claim is for, and the worker it records (JobDoc.worker): in process, the worker
    the caller named (a JobQueue names itself) or else this process; through the method
    layer, what the worker said of itself (getWork's `worker`, if anything) with the user
    the call was made as, marked remote."""
    if origin is None:
        return Claimant(
            None, worker or JobWorker(host=socket.gethostname()[:MAX_TEXT], pid=os.getpid())
        )
    said = worker or JobWorker()
    return Claimant(
        origin.user_id, said.model_copy(update={"user": origin.user_id, "remote": True})
    )


@dataclass(frozen=True, slots=True)
class Origin:
    """A call that came through the method layer: its name, its user and its wire params
    (its events carry them as given)."""

    method: str
    user_id: Any
    params: tuple[Any, ...]
    admin: bool = False
    """The rules allow the user under the `admin` group: it may report on runs other users
    claimed (see `reporter`)."""
    worker_kind: str = "remote"
    """What the worker registry calls a worker this call registers (SeeWorker): "remote" for
    a queue that registers itself through the method layer, "ddp" for a DDP session that
    the server registers on its client's behalf (remote/ddp.py)."""

    @property
    def reporter(self) -> Any:
        """Who a report in this call must come from (reporting.Report.by): the user, unless
        it is an admin; None (anyone) for server code."""
        return None if self.user_id is None or self.admin else claimer_of(self.user_id)


def _user(origin: Origin | None) -> Any:
    """Who made a call: its user through the method layer, None for server code."""
    return None if origin is None else origin.user_id


def _by(origin: Origin | None) -> Any:
    return None if origin is None else origin.reporter


def summary(params: tuple[Any, ...]) -> str:
    """A call's parameters as a log line may show them: ids, names, numbers and options as
    given, documents and values (job data, results, errors, log lines) only as their kind, so
    that no secret a job carries reaches a log."""
    return ", ".join(_summarised(param) for param in params)


def _summarised(value: Any) -> str:
    if value is None or isinstance(value, bool | int | float | ObjectId):
        return repr(value)
    if isinstance(value, str):
        return repr(value) if len(value) <= 64 else f"<str of {len(value)} characters>"
    if isinstance(value, JobDoc):
        return f"<job {value.type} {value.id}>"
    if isinstance(value, list | tuple):
        if all(isinstance(v, ObjectId | str) for v in value) and len(value) <= 10:
            return repr(list(value))
        return f"<{len(value)} items>"
    if isinstance(value, dict):
        if "type" in value and "data" in value:
            return f"<job document {value.get('type')!r}>"
        scalars = all(v is None or isinstance(v, bool | int | float) for v in value.values())
        return repr(value) if scalars else f"<object with keys {sorted(map(str, value))}>"
    return f"<{type(value).__name__}>"


def _snapshot(result: Any) -> Any:
    """What an event carries of a result: job documents as copies, so that a handler keeps
    them as they were answered (the caller's handles change theirs as the jobs move on)."""
    if isinstance(result, JobDoc):
        return result.model_copy()
    if isinstance(result, list) and result and isinstance(result[0], JobDoc):
        return [doc.model_copy() for doc in result]
    if isinstance(result, LimitedWork):
        return LimitedWork(_snapshot(result.docs), result.next_window)
    return result


@dataclass(frozen=True, slots=True)
class _Parts:
    """The parts that save and report, over one Store (the core's, or one joined to a
    session)."""

    saver: Saver
    reporter: Reporter


class Core:
    """The JobService of a JobCollection, and its job server."""

    def __init__(
        self,
        collection: Any,
        clock: Clock,
        limits: Limits,
        lease_ms: int = DEFAULT_LEASE_MS,
        worker_ttl_ms: int = TTL_MS,
    ) -> None:
        """`lease_ms`: how long the job server's lease lasts unless renewed (leadership.py);
        `worker_ttl_ms`: how long this process's queues' registrations last (workers.py)."""
        self.store = Store(collection, caps=limits.push_caps())
        self._clock = clock
        self._limits = limits
        self.reader = Reader(aware_dates=self.store.aware_dates)
        self.manager = Manager(self.store, clock, self.reader)
        self.dependents = Dependents(self.store, self.manager)
        self.follow_ups = FollowUps(self.store, self.reader, self.dependents)
        self.reporter = Reporter(self.store, clock, self.follow_ups, self.reader)
        self.saver = Saver(self.store, clock, self.manager, self.dependents)
        self.claimer = Claimer(self.store, clock, self.reader, self.reporter, self.manager)
        self.scheduler = Scheduler(self.store, clock, self.apply)
        self.server = JobServer(
            self.store,
            clock,
            self.claimer,
            self.reporter,
            self.manager,
            self.follow_ups,
            self.dependents,
            Leadership(self.store, clock, lease_ms),
            self.scheduler,
            on_closed=self.close_log_stream,
            on_pass=self._passed,
            history=History(self.store, clock),
        )
        settings = Settings(self.store, clock)
        self.pauses = Pauses(settings)
        self.slots = Slots(self.store, settings, self.claimer)
        self.edges = Edges(self.store, clock, self.manager, limits)
        self.registry = Registry(self.store, clock, worker_ttl_ms)
        self.events = EventEmitter()
        self.local_saves = LocalSaves()
        self._handed: OrderedDict[tuple[Id | None, Id | None], JobDoc] = OrderedDict()
        self.local_cancels = LocalCancels()
        self.transactions = Transactions(self.store, clock, self.local_saves, self.follow_ups)
        self._log_stream: IO[str] | None = None
        self._limiter: Limiter | None = None
        """Claims under rate limits: made at the first (its counters are another collection)."""
        self._server_clock = clock if isinstance(clock, ServerClock) else None
        self._appliers = self._table()
        assert set(self._appliers) == set(OPERATIONS), "every operation has its applier"

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def limits(self) -> Limits:
        return self._limits

    @property
    def worker_ttl_ms(self) -> int:
        return self.registry.ttl_ms

    @property
    def rate_limits(self) -> bool:
        return True

    # --- the one door ------------------------------------------------------------------------

    async def run(self, op: Op[T], origin: Origin | None = None) -> T:
        """Run one operation: refresh the clock, apply it, then fire its events (a quiet
        operation fires none unless the method layer called it by name). The hot path pays
        for neither when nothing is due: the clock is refreshed only when stale, and events
        are built only when a handler, the log stream or the logger will read them."""
        apply: Callable[[Any, Origin | None], Awaitable[T]] = self._appliers[type(op)]
        if self._server_clock is not None and self._server_clock.stale():
            await self._server_clock.refresh()  # the server's time, re-read when due
        if op.quiet and origin is None:
            return await apply(op, origin)
        try:
            result = await apply(op, origin)
        except Exception as exc:
            await self.emit(op, origin, exc, None)
            raise
        if self._log_stream is not None or self._observed(op, origin):
            await self.emit(op, origin, None, result)
        return result

    async def apply(self, op: Op[T]) -> T:
        """Apply an operation that is part of another (the saves and cancels of a schedule's
        runs): no events of its own, no log line."""
        result: T = await self._appliers[type(op)](op, None)
        return result

    def _observed(self, op: Op[Any], origin: Origin | None) -> bool:
        """Whether a handler or the logger would see a successful call of op."""
        name = origin.method if origin is not None else op.method
        return self.events.listens(("call", name)) or logger.isEnabledFor(logging.DEBUG)

    async def emit(
        self, op: Op[Any] | None, origin: Origin | None, error: BaseException | None, result: Any
    ) -> None:
        """Fire a call's events and write its log line; the parameters are built only when an
        event handler, the log stream or the logger will read them. `op` is None for a call
        refused before its operation was known (its origin says what was called)."""
        assert op is not None or origin is not None
        name = origin.method if origin is not None else op.method  # type: ignore[union-attr]
        level = logging.DEBUG if error is None else logging.INFO
        wanted = self.events.listens(("call" if error is None else "error", name))
        logged = self._log_stream is not None or logger.isEnabledFor(level)
        if not (wanted or logged):
            return
        user_id = origin.user_id if origin is not None else None
        given = origin.params if origin is not None else op.params()  # type: ignore[union-attr]
        if logger.isEnabledFor(level):  # ids and options, never job data nor results
            extra = {"method": name, "user_id": user_id}
            if error is None:
                logger.debug("call %s by %s: %s", name, user_id, summary(given), extra=extra)
            else:
                logger.info(
                    "call %s by %s failed: %s (%s)",
                    name,
                    user_id,
                    error,
                    summary(given),
                    extra={**extra, "error": str(error)},
                )
        if self._log_stream is not None:  # the original's line: repr(params), data included
            line = f"{self._clock.now().isoformat()}, {user_id}, {name}, {given!r}"
            self._log_stream.write(line + "\n")
        if wanted:
            event = MethodEvent(name, given, user_id, error, _snapshot(result))
            await self.events.emit("call" if error is None else "error", event)
            await self.events.emit(name, event)

    async def _passed(self, done: ServerPass) -> None:
        """Tell the handlers of "jobServerPass" what a job-server pass did (its ServerPass is
        the event's return_value): metrics count expired leases from it."""
        if self.events.listens(("jobServerPass",)):
            event = MethodEvent("jobServerPass", (), None, None, done)
            await self.events.emit("jobServerPass", event)

    def set_log_stream(self, stream: IO[str] | None) -> None:
        """Write one line per call to stream; once per job-server start/shutdown cycle."""
        if stream is not None and not callable(getattr(stream, "write", None)):
            raise InvalidArgumentType("stream", "must have a write(str) method")
        if self._log_stream is not None and stream is not None:
            raise InvalidArgument("stream", "a log stream is already set for this server cycle")
        self._log_stream = stream

    def close_log_stream(self) -> None:
        stream, self._log_stream = self._log_stream, None
        if stream is not None and callable(getattr(stream, "close", None)):
            stream.close()

    # --- the job server ----------------------------------------------------------------------

    async def _start_server(self, op: StartServer, origin: Origin | None) -> bool:
        return await self.server.start()

    async def _shutdown_server(self, op: ShutdownServer, origin: Origin | None) -> bool:
        return await self.server.shutdown(op.timeout_ms / 1000)

    async def run_server_pass(self) -> ServerPass:
        return await self.server.run_pass()

    async def close(self) -> None:
        """Stop the job server's tasks and wait for reports in flight."""
        await self.server.close()
        await self.reporter.close()

    # --- saving ------------------------------------------------------------------------------

    async def _save(self, op: Save, origin: Origin | None) -> Id | None:
        checked = self._saveable([op.doc], [op.job_id], "doc", "jobId")[0]
        saver = self._joined(op.session, checked).saver
        saved = await saver.save(checked, op.cancel_repeats, op.job_id)
        self._published([checked], [saved], op.session)
        return saved

    async def _save_many(self, op: SaveMany, origin: Origin | None) -> list[Id | None]:
        ids = list(op.job_ids) if op.job_ids is not None else [None] * len(op.docs)
        id_name = "jobIds" if op.name == "docs" else op.name
        checked = self._saveable(op.docs, ids, op.name, id_name, many=True)
        saver = self._joined(op.session, *checked).saver
        saved = await saver.save_many(checked, op.cancel_repeats, ids, name=op.name)
        self._published(checked, saved, op.session)
        return saved

    def _joined(self, session: Any, *saving: JobDoc) -> _Parts:
        """The parts an operation applies its transitions with: this core's own, or, with a
        session, ones whose every command is sent in it (the caller's transaction; checked:
        see Transactions.checked). A unique job cannot join one: its save resolves a
        conflict from the duplicate-key error, which aborts a transaction."""
        if session is None:
            return _Parts(self.saver, self.reporter)
        self.transactions.checked(session)
        for doc in saving:
            if doc.unique is not None:
                raise InvalidArgument(
                    "session",
                    "a unique job cannot be saved inside a transaction (its key conflicts are "
                    "resolved from a duplicate-key error, which aborts the transaction)",
                )
        store = self.store.joined(session)
        manager = Manager(store, self._clock, self.reader)
        dependents = Dependents(store, manager)
        follow_ups = FollowUps(store, self.reader, dependents)
        return _Parts(
            Saver(store, self._clock, manager, dependents),
            Reporter(store, self._clock, follow_ups, self.reader),
        )

    async def after_commit(self, session: Any) -> None:
        """What follows the commit of a session's transaction (see local/transactions.py)."""
        await self.transactions.after_commit(session)

    def _saveable(
        self,
        docs: Sequence[JobDoc],
        ids: Sequence[Id | None],
        name: str,
        id_name: str,
        *,
        many: bool = False,
    ) -> list[JobDoc]:
        """The documents a save may store, checked against the limits, each naming a job of
        its own (raises InvalidArgument naming the document)."""
        doc_names = [f"{name}[{i}]" for i in range(len(docs))] if many else [name]
        id_names = [f"{id_name}[{i}]" for i in range(len(docs))] if many else [id_name]
        checked = [v.saveable(doc, n) for doc, n in zip(docs, doc_names, strict=True)]
        for doc, new_id, doc_name, id_label in zip(checked, ids, doc_names, id_names, strict=True):
            if new_id is not None and doc.id is not None:
                raise InvalidArgument(id_label, f"is for a new job; {doc_name} has an _id already")
            self._limits.check_doc(doc, doc_name, self.store.codec_options)
        v.check_own_ids(checked, ids, doc_names, id_names)
        return checked

    def _published(
        self, docs: Sequence[JobDoc], ids: Sequence[Id | None], session: Any = None
    ) -> None:
        """Tell this process's queues of the jobs just saved, with when each is due; jobs
        saved in a session's transaction, once it commits (Transactions.after_commit)."""
        if not self.local_saves.active:
            return
        if session is not None:
            self.transactions.saved(session, [job_id for job_id in ids if job_id is not None])
            return
        now = self._clock.now()
        for doc, job_id in zip(docs, ids, strict=True):
            if job_id is not None:
                self.local_saves.publish(doc.type, max(doc.after, now))

    # --- reading and claiming ----------------------------------------------------------------

    async def _get_jobs(self, op: GetJobs, origin: Origin | None) -> list[JobDoc]:
        return await self.manager.get_jobs(op.ids, op.get_log, op.get_failures)

    async def _get_work(self, op: GetWork, origin: Origin | None) -> list[JobDoc]:
        types = await self.pauses.claimable(op.types)
        if not types:  # every type asked for is paused on every process
            return []
        wanted = min(op.max_jobs, self._limits.max_jobs)
        claimant = _claimant(op.worker, origin)
        docs = await self.slots.get_work(types, wanted, op.work_timeout_ms, claimant=claimant)
        if origin is not None:  # a remote worker: its reports will come without them
            self._remember_handed(docs)
        return docs

    async def _get_limited_work(self, op: GetLimitedWork, origin: Origin | None) -> LimitedWork:
        """getWork under a rate limit (its events are getWork's)."""
        if op.rate_limit is None:
            raise InvalidArgument("rate_limit", "is required")
        types = await self.pauses.claimable(op.types)
        if not types:
            return LimitedWork([])
        if self._limiter is None:
            self._limiter = Limiter(counter_store(self.store), self.claimer, self.slots)
        wanted = min(op.max_jobs, self._limits.max_jobs)
        return await self._limiter.get_work(
            types, op.rate_limit, wanted, op.work_timeout_ms, _claimant(op.worker, origin)
        )

    def _remember_handed(self, docs: Sequence[JobDoc]) -> None:
        """Keep the jobs a method-layer claim handed out, as claimed, for their reports (a
        remote worker's done/fail cannot send its copy back): the `claimed` hint that lets a
        report be written without reading the job first. The newest MAX_HANDED are kept."""
        for doc in docs:
            self._handed[(doc.id, doc.run_id)] = doc
        while len(self._handed) > MAX_HANDED:
            self._handed.popitem(last=False)

    def _handed_copy(self, job_id: Id, run_id: Id, origin: Origin | None) -> JobDoc | None:
        return None if origin is None else self._handed.pop((job_id, run_id), None)

    async def _results(self, op: Results, origin: Origin | None) -> dict[Id, dict[str, Any]]:
        return await self.manager.results(op.ids, op.max_bytes)

    async def _stats(self, op: Stats, origin: Origin | None) -> QueueStats:
        counts, oldest = await self.manager.stats()
        return QueueStats(counts, oldest, self._clock.now())

    async def _find_jobs(self, op: FindJobs, origin: Origin | None) -> DocPage:
        docs, following = await self.manager.find_page(op.query, op.after)
        return DocPage(docs, following)

    def wakeup(self) -> WakeupSource | None:
        return ChangeStreamSource(self.store.collection)

    def saves(self) -> LocalSaves | None:
        return self.local_saves

    def cancels(self) -> LocalCancels | None:
        return self.local_cancels

    # --- what workers report -----------------------------------------------------------------

    async def _log(self, op: Log, origin: Origin | None) -> bool:
        self._limits.check_log(op.message, op.data, self.store.codec_options)
        return await self.claimer.log(
            op.job_id, op.run_id, op.message, op.level, op.data, _by(origin)
        )

    async def _progress(self, op: Progress, origin: Origin | None) -> bool | None:
        return await self.claimer.progress(
            op.job_id, op.run_id, op.completed, op.total, _by(origin)
        )

    async def _done(self, op: Done, origin: Origin | None) -> Outcome:
        self._limits.check_result(op.result, self.store.codec_options)
        report = Report(
            "done",
            op.job_id,
            op.run_id,
            op.result,
            repeat_id=op.repeat_id,
            delay_deps_ms=op.delay_deps_ms,
            claimed=op.claimed or self._handed_copy(op.job_id, op.run_id, origin),
            by=_by(origin),
        )
        if op.session is not None and op.repeat_id:
            raise InvalidArgument(
                "repeat_id",
                "cannot be answered inside a transaction: the repeat is scheduled after the "
                "commit (jc.after_commit, or the next job-server pass)",
            )
        return await self._reported(report, op.session)

    async def _reported(self, report: Report, session: Any) -> Outcome:
        """A report applied: in a batch with others, or, in a session's transaction, alone
        (its follow-ups after the commit)."""
        if session is None:
            return await self.reporter.submit(report)
        outcome = await self._joined(session).reporter.apply_alone(report)
        if outcome:
            self.transactions.finished(session, report.job_id)
        return outcome

    async def _fail(self, op: Fail, origin: Origin | None) -> bool:
        self._limits.check_error(op.error, self.store.codec_options)
        if op.checkpoint is not None:
            self._limits.check_checkpoint(op.checkpoint, self.store.codec_options)
        if op.cancel:
            return await self._cancel_run(op, _by(origin))
        hint = op.claimed or self._handed_copy(op.job_id, op.run_id, origin)
        report = Report(
            "fail",
            op.job_id,
            op.run_id,
            op.error,
            op.fatal,
            op.retry_in_ms,
            op.snooze_ms,
            checkpoint=op.checkpoint,
            claimed=hint,
            by=_by(origin),
        )
        return bool(await self._reported(report, op.session))

    async def _cancel_run(self, op: Fail, by: Any) -> bool:
        """jobFail's `cancel`: the worker gives its job up (Manager.cancel_run). As any report
        on a run, PermissionDenied if another user claimed it."""
        reason = op.error.get("value")
        why = reason if isinstance(reason, str) else "cancelled"
        if await self.manager.cancel_run(op.job_id, op.run_id, why, by):
            return True
        if by is not None:
            raw = await self.store.find_one(
                {"_id": op.job_id}, {"status": 1, "runId": 1, CLAIMER: 1}
            )
            if raw is not None and not claimed_by(raw, op.run_id, by):
                raise refused(op.job_id, "jobFail")
        return False

    async def _heartbeat(self, op: Heartbeat, origin: Origin | None) -> list[Id]:
        return await self.claimer.heartbeat(
            op.ids, op.run_id, _by(origin), self._checkpoints(op.checkpoints)
        )

    def _checkpoints(self, checkpoints: Checkpoints | None) -> Checkpoints:
        """Checkpoints given with a heartbeat or a release, each within the limits."""
        for _, state in checkpoints or ():
            self._limits.check_checkpoint(state, self.store.codec_options)
        return checkpoints or ()

    async def _rate_limited(self, op: RateLimited, origin: Origin | None) -> bool:
        return await self.claimer.rate_limited(op.job_id, op.run_id, op.retry_after_ms)

    async def _release(self, op: Release, origin: Origin | None) -> list[Id]:
        return await self.claimer.release(
            op.ids, op.run_id, _by(origin), self._checkpoints(op.checkpoints)
        )

    # --- managing ----------------------------------------------------------------------------

    async def _pause(self, op: Pause, origin: Origin | None) -> bool:
        return await self.manager.pause(op.ids)

    async def _resume(self, op: Resume, origin: Origin | None) -> bool:
        return await self.manager.resume(op.ids)

    async def _ready(self, op: Ready, origin: Origin | None) -> bool:
        return await self.manager.ready(op.ids, op.time, op.force)

    async def _cancel_pending_of(self, op: CancelPendingOf, origin: Origin | None) -> int:
        return await self.manager.cancel_pending_of(op.job_type, op.user_id)

    async def _ready_due(self, op: ReadyDue, origin: Origin | None) -> Due:
        return await self.manager.ready_due(op.types)

    async def _cancel(self, op: Cancel, origin: Origin | None) -> bool:
        try:
            return await self.manager.cancel(op.ids, op.antecedents, op.dependents)
        finally:  # even after an error: some may have been cancelled
            self.local_cancels.publish(op.ids)

    async def _restart(self, op: Restart, origin: Origin | None) -> bool:
        return await self.manager.restart(op)

    async def _rerun(self, op: Rerun, origin: Origin | None) -> Id | None:
        return await self.manager.rerun(op.job_id, op.repeats, op.until, op.wait_ms)

    async def _remove(self, op: Remove, origin: Origin | None) -> bool:
        try:
            return await self.manager.remove(op.ids)
        finally:  # even after an error: some may have been removed
            self.local_cancels.publish(op.ids)

    async def _pause_types(self, op: PauseTypes, origin: Origin | None) -> Paused:
        return await self.pauses.pause(op.types)

    async def _resume_types(self, op: ResumeTypes, origin: Origin | None) -> Paused:
        return await self.pauses.resume(op.types)

    async def _paused_types(self, op: PausedTypes, origin: Origin | None) -> Paused:
        return await self.pauses.paused()

    async def _set_concurrency_limit(
        self, op: SetConcurrencyLimit, origin: Origin | None
    ) -> dict[str, ConcurrencyLimit]:
        return await self.slots.set(op.job_type, op.limit)

    async def _concurrency_limits(
        self, op: ConcurrencyLimits, origin: Origin | None
    ) -> dict[str, ConcurrencyLimit]:
        return await self.slots.read()

    async def _add_depends(self, op: AddDepends, origin: Origin | None) -> int:
        return await self.edges.add(op.ids, op.antecedents, op.on_failure)

    async def _see_worker(self, op: SeeWorker, origin: Origin | None) -> bool:
        kind = "local" if origin is None else origin.worker_kind
        return await self.registry.see(op.worker, _user(origin), kind)

    async def _forget_worker(self, op: ForgetWorker, origin: Origin | None) -> bool:
        return await self.registry.forget(op.worker_id, _user(origin))

    async def _list_workers(self, op: ListWorkers, origin: Origin | None) -> list[WorkerInfo]:
        return await self.registry.list()

    # --- schedules as objects ----------------------------------------------------------------

    async def _upsert_schedule(self, op: UpsertSchedule, origin: Origin | None) -> Schedule:
        return await self.scheduler.upsert(op.spec)

    async def _list_schedules(self, op: ListSchedules, origin: Origin | None) -> list[Schedule]:
        if op.schedule is None:
            return await self.scheduler.list_all()
        found = await self.scheduler.get(op.schedule)
        return [] if found is None else [found]

    async def _pause_schedule(self, op: PauseSchedule, origin: Origin | None) -> bool:
        return await self.scheduler.pause(op.schedule)

    async def _resume_schedule(self, op: ResumeSchedule, origin: Origin | None) -> bool:
        return await self.scheduler.resume(op.schedule)

    async def _remove_schedule(self, op: RemoveSchedule, origin: Origin | None) -> bool:
        return await self.scheduler.remove(op.schedule)

    async def _trigger_schedule(self, op: TriggerSchedule, origin: Origin | None) -> Id:
        return await self.scheduler.trigger(op.schedule, op.key)

    async def _backfill_schedule(self, op: BackfillSchedule, origin: Origin | None) -> list[Id]:
        return await self.scheduler.backfill(op.schedule, op.start, op.end)

    def _table(self) -> dict[type[Op[Any]], Callable[[Any, Origin | None], Awaitable[Any]]]:
        """The applier of each operation."""
        return {
            StartServer: self._start_server,
            ShutdownServer: self._shutdown_server,
            Save: self._save,
            SaveMany: self._save_many,
            GetJobs: self._get_jobs,
            GetWork: self._get_work,
            GetLimitedWork: self._get_limited_work,
            Log: self._log,
            Progress: self._progress,
            Done: self._done,
            Fail: self._fail,
            Heartbeat: self._heartbeat,
            Release: self._release,
            RateLimited: self._rate_limited,
            Pause: self._pause,
            Resume: self._resume,
            Remove: self._remove,
            Ready: self._ready,
            Cancel: self._cancel,
            Restart: self._restart,
            Rerun: self._rerun,
            Results: self._results,
            CancelPendingOf: self._cancel_pending_of,
            ReadyDue: self._ready_due,
            Stats: self._stats,
            FindJobs: self._find_jobs,
            PauseTypes: self._pause_types,
            ResumeTypes: self._resume_types,
            PausedTypes: self._paused_types,
            SeeWorker: self._see_worker,
            ForgetWorker: self._forget_worker,
            ListWorkers: self._list_workers,
            SetConcurrencyLimit: self._set_concurrency_limit,
            ConcurrencyLimits: self._concurrency_limits,
            AddDepends: self._add_depends,
            UpsertSchedule: self._upsert_schedule,
            ListSchedules: self._list_schedules,
            PauseSchedule: self._pause_schedule,
            ResumeSchedule: self._resume_schedule,
            RemoveSchedule: self._remove_schedule,
            TriggerSchedule: self._trigger_schedule,
            BackfillSchedule: self._backfill_schedule,
        }
