"""The method layer: every operation as a named method (jobSave, getWork, ...) behind one
dispatch point that validates parameters, applies allow/deny rules for calls made on behalf
of a user, emits events and writes one line per call to the log stream.

Parameters have the original's wire shapes: positional arguments and an options dict with
the original camelCase keys, durations in milliseconds, aware datetimes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

from . import validation as v
from .clock import Clock
from .constants import FOREVER, JOB_LOG_LEVELS, METHODS
from .document import CronSchedule, JobDoc, parse_doc
from .errors import InvalidArgument, InvalidArgumentType, PermissionDenied
from .events import EventEmitter, MethodEvent
from .limits import DEFAULT_LIMITS, MAX_BSON_BYTES, Limits
from .operations import Operations
from .permissions import Rules
from .schedule import check_cron
from .servertime import refresh_clock
from .transitions import Id

logger = logging.getLogger("jobcollection")

Parsed = dict[str, Any]
Validator = Callable[[Any, str], Any]


def _options(params: tuple[Any, ...], index: int, allowed: Mapping[str, Validator]) -> Parsed:
    """The options dict at params[index] (absent or None: {}), each key validated."""
    raw = params[index] if len(params) > index else None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidArgumentType("options", f"must be a dict, not {type(raw).__name__}")
    unknown = set(raw) - set(allowed)
    if unknown:
        raise InvalidArgument("options", f"unknown keys {sorted(map(str, unknown))}")
    return {_snake(key): allowed[key](value, key) for key, value in raw.items()}


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


def _arity(params: tuple[Any, ...], required: int, total: int, method: str) -> None:
    if not required <= len(params) <= total:
        raise InvalidArgument(method, f"takes {required} to {total} parameters, got {len(params)}")


def _opt_ms(minimum: int) -> Validator:
    """A count or milliseconds: an integer from minimum up to FOREVER (2**53)."""
    return lambda value, name: v.integer(value, name, minimum=minimum, maximum=FOREVER)


def _opt_date(value: Any, name: str) -> Any:
    return v.aware_datetime(value, name)


def _opt_bool(value: Any, name: str) -> bool:
    return v.boolean(value, name)


def _optional(check: Validator) -> Validator:
    return lambda value, name: None if value is None else check(value, name)


def _job_doc(value: Any, name: str) -> JobDoc:
    if isinstance(value, JobDoc):
        # Saving never changes the given document and stores fresh dicts made from it, so a
        # shallow copy is enough (a deep copy was the largest CPU cost of save_jobs). What
        # can change in place since the model validated it is checked again.
        v.plain_object(value.data, f"{name}.data")
        for field in ("depends", "resolved"):
            for i, dep in enumerate(getattr(value, field)):
                v.job_id(dep, f"{name}.{field}[{i}]")
        return value.model_copy()
    if not isinstance(value, dict):
        raise InvalidArgumentType(name, f"must be a job document, not {type(value).__name__}")
    return parse_doc(value)


@dataclass(frozen=True, slots=True)
class Method:
    """How to parse one method's parameters and which operation runs it."""

    parse: Callable[[tuple[Any, ...]], Parsed]
    run: Callable[[Operations, Parsed], Awaitable[Any]]


def _ids(params: tuple[Any, ...]) -> list[Any]:
    if not params:
        raise InvalidArgument("ids", "is required")
    return v.job_ids(params[0])


def _parse_save(p: tuple[Any, ...]) -> Parsed:
    _arity(p, 1, 2, "jobSave")
    doc = _saveable(p[0], "doc")
    opts = _options(p, 1, {"cancelRepeats": _opt_bool, "jobId": _optional(v.job_id)})
    if opts.get("job_id") is not None and doc.id is not None:
        raise InvalidArgument("jobId", "is for a new job; this document has an _id already")
    check_own_ids([doc], [opts.get("job_id")], ["doc"], ["jobId"])
    return {
        "doc": doc,
        "cancel_repeats": opts.get("cancel_repeats", False),
        "new_id": opts.get("job_id"),
    }


MAX_JOBS_PER_SAVE = 10_000
"""jobSaveMany takes at most this many documents per call; save_jobs splits larger lists."""


def _parse_save_many(p: tuple[Any, ...]) -> Parsed:
    _arity(p, 1, 2, "jobSaveMany")
    if not isinstance(p[0], list | tuple):
        raise InvalidArgumentType(
            "docs", f"must be a list of job documents, not {type(p[0]).__name__}"
        )
    if len(p[0]) > MAX_JOBS_PER_SAVE:
        raise InvalidArgument("docs", f"holds more than {MAX_JOBS_PER_SAVE} documents")
    docs = [_saveable(item, f"docs[{i}]") for i, item in enumerate(p[0])]
    opts = _options(p, 1, {"cancelRepeats": _opt_bool, "jobIds": _optional(_new_ids)})
    new_ids = opts.get("job_ids")
    if new_ids is not None:
        if len(new_ids) != len(docs):
            raise InvalidArgument("jobIds", "must give one id (or None) per document")
        for i, (doc, new_id) in enumerate(zip(docs, new_ids, strict=True)):
            if new_id is not None and doc.id is not None:
                raise InvalidArgument(f"jobIds[{i}]", f"is for a new job; docs[{i}] has an _id")
    check_own_ids(
        docs,
        new_ids or [None] * len(docs),
        [f"docs[{i}]" for i in range(len(docs))],
        [f"jobIds[{i}]" for i in range(len(docs))],
    )
    return {
        "docs": docs,
        "cancel_repeats": opts.get("cancel_repeats", False),
        "new_ids": new_ids,
    }


def check_own_ids(
    docs: Sequence[JobDoc],
    new_ids: Sequence[Id | None],
    doc_names: Sequence[str],
    id_names: Sequence[str],
) -> None:
    """Each job of one save names a job of its own: no two save under the same id (both
    would be reported saved while one job is stored), and none depends on itself (it would
    wait forever). A job's own id is its `_id` (a resave) or the id it is inserted under
    (`jobId`/`jobIds[i]`); a new job without one is unique. InvalidArgument names the later
    of two duplicates and the earlier one."""
    seen: dict[Id, str] = {}
    for doc, new_id, doc_name, id_name in zip(docs, new_ids, doc_names, id_names, strict=True):
        own, where = (doc.id, f"{doc_name}._id") if doc.id is not None else (new_id, id_name)
        if own is None:
            continue
        if own in doc.depends:
            raise InvalidArgument(f"{doc_name}.depends", "a job cannot depend on itself")
        if own in seen:
            raise InvalidArgument(where, f"duplicates {seen[own]}")
        seen[own] = where


def _new_ids(value: Any, name: str) -> list[Any]:
    if not isinstance(value, list | tuple):
        raise InvalidArgumentType(name, "must be a list of ids (None for a document with one)")
    return [None if x is None else v.job_id(x, f"{name}[{i}]") for i, x in enumerate(value)]


def _saveable(value: Any, name: str) -> JobDoc:
    doc = _job_doc(value, name)
    if doc.status not in ("waiting", "paused"):
        raise InvalidArgument(
            f"{name}.status", f"a saved job must be waiting or paused, not {doc.status}"
        )
    if isinstance(doc.repeat_wait, CronSchedule):
        check_cron(doc.repeat_wait)
    return doc


def _parse_get_work(p: tuple[Any, ...]) -> Parsed:
    _arity(p, 1, 2, "getWork")
    opts = _options(p, 1, {"maxJobs": _opt_ms(1), "workTimeout": _optional(_opt_ms(1))})
    return {
        "types": v.job_types(p[0]),
        "max_jobs": opts.get("max_jobs", 1),  # clamped to Limits.max_jobs by the dispatcher
        "work_timeout_ms": opts.get("work_timeout"),
    }


def _parse_get_job(p: tuple[Any, ...]) -> Parsed:
    _arity(p, 1, 2, "getJob")
    opts = _options(p, 1, {"getLog": _opt_bool, "getFailures": _opt_bool})
    return {
        "ids": _ids(p),
        "single": not isinstance(p[0], list | tuple),
        "get_log": opts.get("get_log", False),
        "get_failures": opts.get("get_failures", False),
    }


async def _run_get_job(ops: Operations, args: Parsed) -> JobDoc | list[JobDoc] | None:
    """One id gives one document or None; a list gives the documents found, in order."""
    docs = await ops.get_job(args["ids"], args["get_log"], args["get_failures"])
    if args["single"]:
        return docs[0] if docs else None
    return docs


def _parse_ids_only(name: str) -> Callable[[tuple[Any, ...]], Parsed]:
    def parse(p: tuple[Any, ...]) -> Parsed:
        _arity(p, 1, 2, name)
        _options(p, 1, {})
        return {"ids": _ids(p)}

    return parse


def _parse_ready(p: tuple[Any, ...]) -> Parsed:
    _arity(p, 0, 2, "jobReady")
    ids = None if not p or p[0] is None or p[0] == [] else v.job_ids(p[0])
    opts = _options(p, 1, {"time": _opt_date, "force": _opt_bool})
    return {"ids": ids, **opts}


def _parse_cancel(p: tuple[Any, ...]) -> Parsed:
    _arity(p, 1, 2, "jobCancel")
    opts = _options(p, 1, {"antecedents": _opt_bool, "dependents": _opt_bool})
    return {"ids": _ids(p), **opts}


def _parse_restart(p: tuple[Any, ...]) -> Parsed:
    _arity(p, 1, 2, "jobRestart")
    opts = _options(
        p,
        1,
        {
            "retries": lambda x, n: v.count(x, n),
            "until": _optional(_opt_date),
            "antecedents": _opt_bool,
            "dependents": _opt_bool,
        },
    )
    return {"ids": _ids(p), **opts}


def _parse_rerun(p: tuple[Any, ...]) -> Parsed:
    _arity(p, 1, 2, "jobRerun")
    opts = _options(
        p,
        1,
        {
            "repeats": lambda x, n: v.count(x, n),
            "until": _optional(_opt_date),
            "wait": _optional(_opt_ms(0)),
        },
    )
    return {
        "job_id": v.job_id(p[0]),
        "repeats": opts.get("repeats", 0),
        "until": opts.get("until"),
        "wait_ms": opts.get("wait"),
    }


MAX_LOG_MESSAGE = MAX_BSON_BYTES
"""An absolute bound; the collection's Limits.max_message_length is the one that applies."""


def _parse_log(p: tuple[Any, ...]) -> Parsed:
    _arity(p, 3, 4, "jobLog")
    opts = _options(
        p,
        3,
        {
            "level": lambda x, n: v.choice(x, n, JOB_LOG_LEVELS),
            "data": _optional(v.plain_object),
        },
    )
    return {
        "job_id": v.job_id(p[0]),
        "run_id": None if p[1] is None else v.job_id(p[1], "runId"),
        "message": v.text(p[2], "message", max_length=MAX_LOG_MESSAGE),
        **opts,
    }


def _parse_progress(p: tuple[Any, ...]) -> Parsed:
    _arity(p, 4, 5, "jobProgress")
    _options(p, 4, {})
    completed = v.number(p[2], "completed", minimum=0)
    total = v.number(p[3], "total")
    if total <= 0:
        raise InvalidArgument("total", f"must be > 0, got {total}")
    if completed > total:
        raise InvalidArgument("completed", f"must not exceed total ({completed} > {total})")
    return {
        "job_id": v.job_id(p[0]),
        "run_id": v.job_id(p[1], "runId"),
        "completed": completed,
        "total": total,
    }


def _parse_held(name: str) -> Callable[[tuple[Any, ...]], Parsed]:
    """Parameters `(id or ids, runId)` of a method on jobs held under one claim."""

    def parse(p: tuple[Any, ...]) -> Parsed:
        _arity(p, 2, 3, name)
        _options(p, 2, {})
        return {
            "ids": _ids(p),
            "single": not isinstance(p[0], list | tuple),
            "run_id": v.job_id(p[1], "runId"),
        }

    return parse


def _run_held(name: str) -> Callable[[Operations, Parsed], Awaitable[bool | list[Any]]]:
    """Run an operation on held jobs: one id gives whether it applied, a list the ids it
    applied to (jobHeartbeat: the ids still held; jobRelease: the ids released)."""

    async def run(ops: Operations, args: Parsed) -> bool | list[Any]:
        done: list[Any] = await getattr(ops, name)(args["ids"], args["run_id"])
        return bool(done) if args["single"] else done

    return run


def _parse_done(p: tuple[Any, ...]) -> Parsed:
    _arity(p, 2, 4, "jobDone")
    opts = _options(p, 3, {"repeatId": _opt_bool, "delayDeps": _optional(_opt_ms(0))})
    return {
        "job_id": v.job_id(p[0]),
        "run_id": v.job_id(p[1], "runId"),
        "result": v.wrap_value(p[2] if len(p) > 2 and p[2] is not None else {}, "result"),
        "repeat_id": opts.get("repeat_id", False),
        "delay_deps_ms": opts.get("delay_deps"),
    }


def _parse_fail(p: tuple[Any, ...]) -> Parsed:
    _arity(p, 2, 4, "jobFail")
    opts = _options(p, 3, {"fatal": _opt_bool})
    err = p[2] if len(p) > 2 and p[2] is not None else {"value": "No error information provided"}
    return {
        "job_id": v.job_id(p[0]),
        "run_id": v.job_id(p[1], "runId"),
        "error": v.wrap_value(err, "error"),
        **opts,
    }


def _parse_server_start(p: tuple[Any, ...]) -> Parsed:
    _arity(p, 0, 1, "startJobServer")
    _options(p, 0, {})
    return {}


def _parse_server_shutdown(p: tuple[Any, ...]) -> Parsed:
    _arity(p, 0, 1, "shutdownJobServer")
    opts = _options(p, 0, {"timeout": _opt_ms(0)})
    return {"timeout_ms": opts.get("timeout", 60_000)}


def _run(name: str) -> Callable[[Operations, Parsed], Awaitable[Any]]:
    return lambda ops, args: getattr(ops, name)(**args)


ServerHooks = dict[str, Callable[[Parsed], Awaitable[bool]]]


class Dispatcher:
    """The one door every operation goes through, whether called from Python or by a user."""

    def __init__(self, ops: Operations, clock: Clock, server: ServerHooks) -> None:
        self.ops = ops
        self.clock = clock
        self.events = EventEmitter()
        self.rules = Rules()
        self.limits: Limits = DEFAULT_LIMITS
        self._log_stream: IO[str] | None = None

        def server_call(name: str) -> Callable[[Operations, Parsed], Awaitable[Any]]:
            return lambda _ops, args: server[name](args)

        self.methods: dict[str, Method] = {
            "startJobServer": Method(_parse_server_start, server_call("start")),
            "startJobs": Method(_parse_server_start, server_call("start")),
            "shutdownJobServer": Method(_parse_server_shutdown, server_call("shutdown")),
            "stopJobs": Method(_parse_server_shutdown, server_call("shutdown")),
            "jobSave": Method(_parse_save, _run("job_save")),
            "jobSaveMany": Method(_parse_save_many, _run("job_save_many")),
            "getWork": Method(_parse_get_work, _run("get_work")),
            "getJob": Method(_parse_get_job, _run_get_job),
            "jobRemove": Method(_parse_ids_only("jobRemove"), _run("job_remove")),
            "jobPause": Method(_parse_ids_only("jobPause"), _run("job_pause")),
            "jobResume": Method(_parse_ids_only("jobResume"), _run("job_resume")),
            "jobReady": Method(_parse_ready, _run("job_ready_requested")),
            "jobCancel": Method(_parse_cancel, _run("job_cancel")),
            "jobRestart": Method(_parse_restart, _run("job_restart")),
            "jobRerun": Method(_parse_rerun, _run("job_rerun")),
            "jobLog": Method(_parse_log, _run("job_log")),
            "jobProgress": Method(_parse_progress, _run("job_progress")),
            "jobDone": Method(_parse_done, _run("job_done")),
            "jobFail": Method(_parse_fail, _run("job_fail")),
            "jobHeartbeat": Method(_parse_held("jobHeartbeat"), _run_held("renew_leases")),
            "jobRelease": Method(_parse_held("jobRelease"), _run_held("job_release")),
        }
        assert set(self.methods) == set(METHODS)

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

    async def call(self, method: str, params: tuple[Any, ...], user_id: Any = None) -> Any:
        """Run a method; with a user_id the allow/deny rules decide first."""
        spec = self.methods.get(method) if isinstance(method, str) else None
        if spec is None:
            raise InvalidArgument(
                "method", f"unknown method {method!r}; use one of {list(METHODS)}"
            )
        result: Any = None
        error: BaseException | None = None
        try:
            if user_id is not None and not self.rules.permits(user_id, method, params):
                raise PermissionDenied(f"Method not authorized: {method}")
            args = self.limits.enforce(method, spec.parse(params), self.ops.store.codec_options)
            await refresh_clock(self.clock)  # a ServerClock re-reads the server's time when due
            result = await spec.run(self.ops, args)
        except Exception as exc:
            error = exc
            raise
        finally:
            await self._report(method, params, user_id, error, result)
        return result

    async def _report(
        self,
        method: str,
        params: tuple[Any, ...],
        user_id: Any,
        error: BaseException | None,
        result: Any,
    ) -> None:
        event = MethodEvent(method, params, user_id, error, result)
        level = logging.DEBUG if error is None else logging.INFO
        # The line holds repr(params) (a whole batch for jobSaveMany): built only when read.
        if self._log_stream is not None or logger.isEnabledFor(level):
            line = f"{self.clock.now().isoformat()}, {user_id}, {method}, {params!r}"
            if error is None:
                logger.debug("call %s", line)
            else:
                logger.info("call %s failed: %s", line, error)
            if self._log_stream is not None:
                self._log_stream.write(line + "\n")
        await self.events.emit("call" if error is None else "error", event)
        await self.events.emit(method, event)
