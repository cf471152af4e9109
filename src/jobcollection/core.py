"""The core: one typed door to every operation of a local job collection (a JobService).

`Job`, `JobQueue` and `JobCollection` call it with typed Python values; the method layer
(`jc.call`, wire.py) parses the original's wire format and calls it too. Whoever calls, each
operation goes through `_call` once: the ServerClock re-reads the server's time when due, the
limits are checked, and the method's events fire and its log line is written (the wire-shaped
parameters of a Python call are built only when something reads them). The queues of the
same process are told of every job saved (LocalSaves) and of the ids of every cancel and
remove (LocalCancels, so a running job's worker is stopped at once). Below the core, the
parts apply the transitions: saving.py, claiming.py, managing.py, reporting.py (with
followups.py) and server.py, all through one Store.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any, TypeVar

from bson import ObjectId

from . import validation as v
from .claiming import Claimer
from .clock import Clock
from .document import JobDoc
from .errors import InvalidArgument, InvalidArgumentType
from .events import EventEmitter, MethodEvent
from .followups import FollowUps
from .limits import Limits
from .managing import Manager
from .queries import DocPage, JobQuery, QueueStats
from .ratelimit import LimitedWork, Limiter, RateLimit, counter_store
from .reading import Reader
from .reporting import Report, Reporter, claimer_of
from .saving import Saver
from .seam import Outcome
from .server import JobServer, ServerPass
from .servertime import refresh_clock
from .store import Store
from .types import Due, Id
from .wakeup import ChangeStreamSource, LocalCancels, LocalSaves, WakeupSource

logger = logging.getLogger("jobcollection")

T = TypeVar("T")
MAX_HANDED = 20_000
"""Jobs claimed through the method layer whose claimed copies are kept for their reports."""
Params = Callable[[], tuple[Any, ...]]


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

    @property
    def reporter(self) -> Any:
        """Who a report in this call must come from (reporting.Report.by): the user, unless
        it is an admin; None (anyone) for server code."""
        return None if self.user_id is None or self.admin else claimer_of(self.user_id)


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


class Core:
    """The JobService of a JobCollection, and its job server."""

    def __init__(self, collection: Any, clock: Clock, limits: Limits) -> None:
        self.store = Store(collection, caps=limits.push_caps())
        self._clock = clock
        self._limits = limits
        self.reader = Reader(aware_dates=self.store.aware_dates)
        self.manager = Manager(self.store, clock, self.reader)
        self.follow_ups = FollowUps(self.store, self.manager, self.reader)
        self.reporter = Reporter(self.store, clock, self.follow_ups, self.reader)
        self.saver = Saver(self.store, clock, self.manager)
        self.claimer = Claimer(self.store, clock, self.reader, self.reporter)
        self.server = JobServer(
            self.store,
            clock,
            self.claimer,
            self.reporter,
            self.manager,
            self.follow_ups,
            on_closed=self.close_log_stream,
            on_pass=self._passed,
        )
        self.events = EventEmitter()
        self.local_saves = LocalSaves()
        self._handed: OrderedDict[tuple[Id | None, Id | None], JobDoc] = OrderedDict()
        self.local_cancels = LocalCancels()
        self._log_stream: IO[str] | None = None
        self._limiter: Limiter | None = None
        """Claims under rate limits: made at the first (its counters are another collection)."""

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def limits(self) -> Limits:
        return self._limits

    # --- the one door ------------------------------------------------------------------------

    async def _call(
        self, method: str, params: Params, origin: Origin | None, run: Callable[[], Awaitable[T]]
    ) -> T:
        """Run one operation: refresh the clock, run it, then fire its events."""
        error: BaseException | None = None
        result: T | None = None
        try:
            await refresh_clock(self._clock)  # a ServerClock re-reads the server's time when due
            result = await run()
            return result
        except Exception as exc:
            error = exc
            raise
        finally:
            await self.emit(method, params, origin, error, result)

    async def emit(
        self,
        method: str,
        params: Params,
        origin: Origin | None,
        error: BaseException | None,
        result: Any,
    ) -> None:
        """Fire a call's events and write its log line; the parameters are built only when an
        event handler, the log stream or the logger will read them."""
        name = origin.method if origin is not None else method
        level = logging.DEBUG if error is None else logging.INFO
        wanted = self.events.listens(("call" if error is None else "error", name))
        logged = self._log_stream is not None or logger.isEnabledFor(level)
        if not (wanted or logged):
            return
        user_id = origin.user_id if origin is not None else None
        given = origin.params if origin is not None else params()
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
            event = MethodEvent(name, given, user_id, error, result)
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

    async def start_server(self, *, origin: Origin | None = None) -> bool:
        """startJobServer: allow claiming and start the promotion loop."""
        return await self._call("startJobServer", tuple, origin, self.server.start)

    async def shutdown_server(self, timeout_ms: int, *, origin: Origin | None = None) -> bool:
        """shutdownJobServer: stop claiming and promotion; fail this instance's running jobs
        after the timeout."""
        return await self._call(
            "shutdownJobServer",
            lambda: ({"timeout": timeout_ms},),
            origin,
            lambda: self.server.shutdown(timeout_ms / 1000),
        )

    async def run_server_pass(self) -> ServerPass:
        return await self.server.run_pass()

    async def close(self) -> None:
        """Stop the job server's tasks and wait for reports in flight."""
        await self.server.close()
        await self.reporter.close()

    # --- saving ------------------------------------------------------------------------------

    async def save(
        self,
        doc: JobDoc,
        *,
        cancel_repeats: bool = False,
        job_id: Id | None = None,
        origin: Origin | None = None,
    ) -> Id | None:
        def params() -> tuple[Any, ...]:
            return doc, {"cancelRepeats": cancel_repeats, "jobId": job_id}

        async def run() -> Id | None:
            checked = self._saveable([doc], [job_id], "doc", "jobId")[0]
            saved = await self.saver.save(checked, cancel_repeats, job_id)
            self._published([checked], [saved])
            return saved

        return await self._call("jobSave", params, origin, run)

    async def save_many(
        self,
        docs: Sequence[JobDoc],
        *,
        cancel_repeats: bool = False,
        job_ids: Sequence[Id | None] | None = None,
        name: str = "docs",
        origin: Origin | None = None,
    ) -> list[Id | None]:
        """`name` names the documents in errors (`docs[i]`; save_jobs says `jobs[i]`)."""
        ids = list(job_ids) if job_ids is not None else [None] * len(docs)

        def params() -> tuple[Any, ...]:
            return list(docs), {"cancelRepeats": cancel_repeats, "jobIds": ids}

        async def run() -> list[Id | None]:
            id_name = "jobIds" if name == "docs" else name
            checked = self._saveable(docs, ids, name, id_name, many=True)
            saved = await self.saver.save_many(checked, cancel_repeats, ids, name=name)
            self._published(checked, saved)
            return saved

        return await self._call("jobSaveMany", params, origin, run)

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

    # --- reading and claiming ----------------------------------------------------------------

    async def get_jobs(
        self,
        ids: Sequence[Id],
        *,
        get_log: bool = False,
        get_failures: bool = False,
        origin: Origin | None = None,
    ) -> list[JobDoc]:
        def params() -> tuple[Any, ...]:
            return list(ids), {"getLog": get_log, "getFailures": get_failures}

        return await self._call(
            "getJob", params, origin, lambda: self.manager.get_jobs(ids, get_log, get_failures)
        )

    async def get_work(
        self,
        types: Sequence[str],
        *,
        max_jobs: int = 1,
        work_timeout_ms: int | None = None,
        origin: Origin | None = None,
    ) -> list[JobDoc]:
        def params() -> tuple[Any, ...]:
            options: dict[str, Any] = {"maxJobs": max_jobs}
            if work_timeout_ms is not None:
                options["workTimeout"] = work_timeout_ms
            return list(types), options

        wanted = min(max_jobs, self._limits.max_jobs)

        async def run() -> list[JobDoc]:
            user_id = None if origin is None else origin.user_id
            docs = await self.claimer.get_work(types, wanted, work_timeout_ms, user_id=user_id)
            if origin is not None:  # a remote worker: its reports will come without them
                self._remember_handed(docs)
            return docs

        return await self._call("getWork", params, origin, run)

    @property
    def rate_limits(self) -> bool:
        return True

    async def get_limited_work(
        self,
        types: Sequence[str],
        rate_limit: RateLimit,
        *,
        max_jobs: int = 1,
        work_timeout_ms: int | None = None,
    ) -> LimitedWork:
        """getWork under a rate limit (its events are getWork's)."""

        def params() -> tuple[Any, ...]:
            options: dict[str, Any] = {"maxJobs": max_jobs, "rateLimit": rate_limit}
            if work_timeout_ms is not None:
                options["workTimeout"] = work_timeout_ms
            return list(types), options

        wanted = min(max_jobs, self._limits.max_jobs)

        async def run() -> LimitedWork:
            if self._limiter is None:
                self._limiter = Limiter(counter_store(self.store), self.claimer)
            return await self._limiter.get_work(types, rate_limit, wanted, work_timeout_ms)

        return await self._call("getWork", params, None, run)

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

    def wakeup(self) -> WakeupSource | None:
        return ChangeStreamSource(self.store.collection)

    def saves(self) -> LocalSaves | None:
        return self.local_saves

    def cancels(self) -> LocalCancels | None:
        return self.local_cancels

    def _published(self, docs: Sequence[JobDoc], ids: Sequence[Id | None]) -> None:
        """Tell this process's queues of the jobs just saved, with when each is due."""
        if not self.local_saves.active:
            return
        now = self._clock.now()
        for doc, job_id in zip(docs, ids, strict=True):
            if job_id is not None:
                self.local_saves.publish(doc.type, max(doc.after, now))

    # --- what workers report -----------------------------------------------------------------

    async def log(
        self,
        job_id: Id,
        run_id: Id | None,
        message: str,
        *,
        level: str = "info",
        data: dict[str, Any] | None = None,
        origin: Origin | None = None,
    ) -> bool:
        def params() -> tuple[Any, ...]:
            options: dict[str, Any] = {"level": level}
            if data is not None:
                options["data"] = data
            return job_id, run_id, message, options

        async def run() -> bool:
            self._limits.check_log(message, data, self.store.codec_options)
            return await self.claimer.log(job_id, run_id, message, level, data, _by(origin))

        return await self._call("jobLog", params, origin, run)

    async def progress(
        self,
        job_id: Id,
        run_id: Id,
        completed: float,
        total: float,
        *,
        origin: Origin | None = None,
    ) -> bool | None:
        return await self._call(
            "jobProgress",
            lambda: (job_id, run_id, completed, total),
            origin,
            lambda: self.claimer.progress(job_id, run_id, completed, total, _by(origin)),
        )

    async def done(
        self,
        job_id: Id,
        run_id: Id,
        result: dict[str, Any],
        *,
        repeat_id: bool = False,
        delay_deps_ms: int | None = None,
        claimed: JobDoc | None = None,
        origin: Origin | None = None,
    ) -> Outcome:
        def params() -> tuple[Any, ...]:
            options: dict[str, Any] = {"repeatId": repeat_id}
            if delay_deps_ms is not None:
                options["delayDeps"] = delay_deps_ms
            return job_id, run_id, result, options

        async def run() -> Outcome:
            self._limits.check_result(result, self.store.codec_options)
            report = Report(
                "done",
                job_id,
                run_id,
                result,
                repeat_id=repeat_id,
                delay_deps_ms=delay_deps_ms,
                claimed=claimed or self._handed_copy(job_id, run_id, origin),
                by=_by(origin),
            )
            return await self.reporter.submit(report)

        return await self._call("jobDone", params, origin, run)

    async def fail(
        self,
        job_id: Id,
        run_id: Id,
        error: dict[str, Any],
        *,
        fatal: bool = False,
        claimed: JobDoc | None = None,
        origin: Origin | None = None,
    ) -> bool:
        async def run() -> bool:
            self._limits.check_error(error, self.store.codec_options)
            hint = claimed or self._handed_copy(job_id, run_id, origin)
            report = Report("fail", job_id, run_id, error, fatal, claimed=hint, by=_by(origin))
            return bool(await self.reporter.submit(report))

        return await self._call(
            "jobFail", lambda: (job_id, run_id, error, {"fatal": fatal}), origin, run
        )

    async def heartbeat(
        self, ids: Sequence[Id], run_id: Id, *, origin: Origin | None = None
    ) -> list[Id]:
        return await self._call(
            "jobHeartbeat",
            lambda: (list(ids), run_id),
            origin,
            lambda: self.claimer.heartbeat(ids, run_id, _by(origin)),
        )

    async def rate_limited(
        self, job_id: Id, run_id: Id, retry_after_ms: int, *, origin: Origin | None = None
    ) -> bool:
        return await self._call(
            "jobRateLimited",
            lambda: (job_id, run_id, {"retryAfter": retry_after_ms}),
            origin,
            lambda: self.claimer.rate_limited(job_id, run_id, retry_after_ms),
        )

    async def release(
        self, ids: Sequence[Id], run_id: Id, *, origin: Origin | None = None
    ) -> list[Id]:
        return await self._call(
            "jobRelease",
            lambda: (list(ids), run_id),
            origin,
            lambda: self.claimer.release(ids, run_id, _by(origin)),
        )

    # --- managing ----------------------------------------------------------------------------

    async def pause(self, ids: Sequence[Id], *, origin: Origin | None = None) -> bool:
        return await self._call(
            "jobPause", lambda: (list(ids),), origin, lambda: self.manager.pause(ids)
        )

    async def resume(self, ids: Sequence[Id], *, origin: Origin | None = None) -> bool:
        return await self._call(
            "jobResume", lambda: (list(ids),), origin, lambda: self.manager.resume(ids)
        )

    async def ready(
        self,
        ids: Sequence[Id] | None = None,
        *,
        time: datetime | None = None,
        force: bool = False,
        origin: Origin | None = None,
    ) -> bool:
        def params() -> tuple[Any, ...]:
            options: dict[str, Any] = {"force": force}
            if time is not None:
                options["time"] = time
            return (None if ids is None else list(ids)), options

        return await self._call(
            "jobReady", params, origin, lambda: self.manager.ready(ids, time, force)
        )

    async def results(self, ids: Sequence[Id], max_bytes: int) -> dict[Id, dict[str, Any]]:
        """Antecedents' results for a dependent: a read of this library's, no method events."""
        await refresh_clock(self._clock)
        return await self.manager.results(ids, max_bytes)

    async def stats(self, *, origin: Origin | None = None) -> QueueStats:
        """jobStats: counts per type and status, and each type's oldest ready job's due date
        (JobsAPI.stats). A read for dashboards and metrics: method events only when called
        through the method layer."""

        async def run() -> QueueStats:
            counts, oldest = await self.manager.stats()
            return QueueStats(counts, oldest, self._clock.now())

        return await self._quiet("jobStats", tuple, origin, run)

    async def find_jobs(
        self, query: JobQuery, after: str | None, *, origin: Origin | None = None
    ) -> DocPage:
        """jobFind: a page of jobs (JobsAPI.find_jobs). A read for dashboards and operators:
        method events only when called through the method layer."""

        async def run() -> DocPage:
            docs, following = await self.manager.find_page(query, after)
            return DocPage(docs, following)

        return await self._quiet("jobFind", lambda: query.wire(after), origin, run)

    async def cancel_pending_of(
        self, job_type: str, user_id: Any, *, origin: Origin | None = None
    ) -> int:
        """Scheduling's replacement of a user's pending jobs: part of `schedule_job`, so it
        fires method events (jobCancelPending) only when called through the method layer."""
        return await self._quiet(
            "jobCancelPending",
            lambda: (job_type, user_id),
            origin,
            lambda: self.manager.cancel_pending_of(job_type, user_id),
        )

    async def ready_due(self, types: Sequence[str], *, origin: Origin | None = None) -> Due:
        """The job server's promotion, for the types a queue found nothing ready of: method
        events (jobReadyDue) only when called through the method layer (a local queue's call
        is the server's own work, and the server's passes fire none)."""
        return await self._quiet(
            "jobReadyDue", lambda: (list(types),), origin, lambda: self.manager.ready_due(types)
        )

    async def _quiet(
        self, method: str, params: Params, origin: Origin | None, run: Callable[[], Awaitable[T]]
    ) -> T:
        """An operation that is part of another, or a read of this library's own (no events
        of its own), unless a remote or method-layer caller asked for it by name."""
        if origin is not None:
            return await self._call(method, params, origin, run)
        await refresh_clock(self._clock)
        return await run()

    async def cancel(
        self,
        ids: Sequence[Id],
        *,
        antecedents: bool = False,
        dependents: bool = True,
        origin: Origin | None = None,
    ) -> bool:
        async def run() -> bool:
            try:
                return await self.manager.cancel(ids, antecedents, dependents)
            finally:  # even after an error: some may have been cancelled
                self.local_cancels.publish(ids)

        return await self._call(
            "jobCancel",
            lambda: (list(ids), {"antecedents": antecedents, "dependents": dependents}),
            origin,
            run,
        )

    async def restart(
        self,
        ids: Sequence[Id],
        *,
        retries: int = 0,
        until: datetime | None = None,
        antecedents: bool = True,
        dependents: bool = False,
        origin: Origin | None = None,
    ) -> bool:
        def params() -> tuple[Any, ...]:
            options: dict[str, Any] = {
                "retries": retries,
                "antecedents": antecedents,
                "dependents": dependents,
            }
            if until is not None:
                options["until"] = until
            return list(ids), options

        return await self._call(
            "jobRestart",
            params,
            origin,
            lambda: self.manager.restart(ids, retries, until, antecedents, dependents),
        )

    async def rerun(
        self,
        job_id: Id,
        *,
        repeats: int = 0,
        until: datetime | None = None,
        wait_ms: int | None = None,
        origin: Origin | None = None,
    ) -> Id | None:
        def params() -> tuple[Any, ...]:
            options: dict[str, Any] = {"repeats": repeats}
            if until is not None:
                options["until"] = until
            if wait_ms is not None:
                options["wait"] = wait_ms
            return job_id, options

        return await self._call(
            "jobRerun",
            params,
            origin,
            lambda: self.manager.rerun(job_id, repeats, until, wait_ms),
        )

    async def remove(self, ids: Sequence[Id], *, origin: Origin | None = None) -> bool:
        async def run() -> bool:
            try:
                return await self.manager.remove(ids)
            finally:  # even after an error: some may have been removed
                self.local_cancels.publish(ids)

        return await self._call("jobRemove", lambda: (list(ids),), origin, run)
