"""The method layer: every operation as a named method of the original (jobSave, getWork, ...)
with the original's wire-shaped parameters, for `jc.call` and remote callers.

Parameters are positional arguments and an options dict with the original camelCase keys,
durations in milliseconds, aware datetimes. This layer parses them into typed values (a call
whose parameters do not have the method's shape is refused with InvalidArgument before any
allow/deny rule sees it), applies the allow/deny rules for calls made on behalf of a user,
and calls the core (core.py), which checks the limits, fires the events and writes the log
line as for any call.

A report on a running job (REPORTS) made on behalf of a user applies only to a run that user
claimed (the claim records its user, document.CLAIMER), unless the rules allow the user under
the `admin` group; on a run another user claimed it raises PermissionDenied. Server code (no
user) may report on any run.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from . import queries
from . import validation as v
from .constants import FOREVER, JOB_LOG_LEVELS, JOB_STATUSES, METHODS
from .core import Core, Origin
from .document import JobDoc, parse_doc
from .errors import InvalidArgument, InvalidArgumentType, PermissionDenied
from .limits import MAX_BSON_BYTES
from .permissions import Rules

Parsed = dict[str, Any]
Validator = Callable[[Any, str], Any]

REPORTS = frozenset({"jobLog", "jobProgress", "jobDone", "jobFail", "jobHeartbeat", "jobRelease"})
"""The methods by which a worker reports on a job it holds: from a user, only on runs that
user claimed (or from an admin)."""
MAX_TYPES = 1_000
"""The most job types one claim, promotion or long poll may name."""
MAX_TYPE_LENGTH = 1_024
"""The longest job type one may name there (characters)."""


def job_types(value: Any, name: str = "type") -> list[str]:
    """validation.job_types, bounded: at most MAX_TYPES types of at most MAX_TYPE_LENGTH
    characters each (what a claim or a long poll names goes into a query and into tables
    kept while it waits)."""
    if isinstance(value, list | tuple) and len(value) > MAX_TYPES:
        raise InvalidArgument(name, f"names more than {MAX_TYPES} types")
    types = v.job_types(value, name)
    for i, item in enumerate(types):
        if len(item) > MAX_TYPE_LENGTH:
            raise InvalidArgument(f"{name}[{i}]", f"is longer than {MAX_TYPE_LENGTH} characters")
    return types


def _options(
    params: tuple[Any, ...], index: int, allowed: Mapping[str, Validator], name: str = "options"
) -> Parsed:
    """The options dict at params[index] (absent or None: {}), each key validated; `name`
    names the dict in errors."""
    raw = params[index] if len(params) > index else None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidArgumentType(name, f"must be a dict, not {type(raw).__name__}")
    unknown = set(raw) - set(allowed)
    if unknown:
        raise InvalidArgument(name, f"unknown keys {sorted(map(str, unknown))}")
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


Run = Callable[[Core, Parsed, Origin], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Method:
    """How to parse one method's parameters, and the core operation that runs it."""

    parse: Callable[[tuple[Any, ...]], Parsed]
    run: Run


def _ids(params: tuple[Any, ...]) -> list[Any]:
    if not params:
        raise InvalidArgument("ids", "is required")
    return v.job_ids(params[0])


def _document(value: Any, name: str) -> JobDoc:
    """A job document as given on the wire: a dict in the stored shape (or a JobDoc); the
    core checks that it may be saved."""
    if isinstance(value, JobDoc):
        return value
    if not isinstance(value, dict):
        raise InvalidArgumentType(name, f"must be a job document, not {type(value).__name__}")
    return parse_doc(value)


def _parse_save(p: tuple[Any, ...]) -> Parsed:
    _arity(p, 1, 2, "jobSave")
    doc = _document(p[0], "doc")
    opts = _options(p, 1, {"cancelRepeats": _opt_bool, "jobId": _optional(v.job_id)})
    return {
        "doc": doc,
        "cancel_repeats": opts.get("cancel_repeats", False),
        "job_id": opts.get("job_id"),
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
    docs = [_document(item, f"docs[{i}]") for i, item in enumerate(p[0])]
    opts = _options(p, 1, {"cancelRepeats": _opt_bool, "jobIds": _optional(_new_ids)})
    new_ids = opts.get("job_ids")
    if new_ids is not None and len(new_ids) != len(docs):
        raise InvalidArgument("jobIds", "must give one id (or None) per document")
    return {
        "docs": docs,
        "cancel_repeats": opts.get("cancel_repeats", False),
        "job_ids": new_ids,
    }


def _new_ids(value: Any, name: str) -> list[Any]:
    if not isinstance(value, list | tuple):
        raise InvalidArgumentType(name, "must be a list of ids (None for a document with one)")
    return [None if x is None else v.job_id(x, f"{name}[{i}]") for i, x in enumerate(value)]


def _parse_get_work(p: tuple[Any, ...]) -> Parsed:
    _arity(p, 1, 2, "getWork")
    opts = _options(p, 1, {"maxJobs": _opt_ms(1), "workTimeout": _optional(_opt_ms(1))})
    return {
        "types": job_types(p[0]),
        "max_jobs": opts.get("max_jobs", 1),  # clamped to Limits.max_jobs by the core
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


async def _run_get_job(core: Core, args: Parsed, origin: Origin) -> JobDoc | list[JobDoc] | None:
    """One id gives one document or None; a list gives the documents found, in order."""
    docs = await core.get_jobs(
        args["ids"], get_log=args["get_log"], get_failures=args["get_failures"], origin=origin
    )
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


def _run_held(name: str) -> Run:
    """Run an operation on held jobs: one id gives whether it applied, a list the ids it
    applied to (jobHeartbeat: the ids still held; jobRelease: the ids released)."""

    async def run(core: Core, args: Parsed, origin: Origin) -> bool | list[Any]:
        done: list[Any] = await getattr(core, name)(args["ids"], args["run_id"], origin=origin)
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


def _parse_ready_due(p: tuple[Any, ...]) -> Parsed:
    _arity(p, 1, 2, "jobReadyDue")
    _options(p, 1, {})
    return {"types": job_types(p[0])}


def _parse_cancel_pending(p: tuple[Any, ...]) -> Parsed:
    _arity(p, 2, 3, "jobCancelPending")
    _options(p, 2, {})
    if not isinstance(p[0], str) or not p[0]:
        raise InvalidArgumentType("type", "must be a non-empty string")
    return {"job_type": p[0], "user_id": v.user_id(p[1], "userId")}


FIND_NAMES = {"user_id": "userId", "created_before": "createdBefore"}
"""find_jobs' argument names as jobFind's filter spells them (in errors)."""


def _parse_find(p: tuple[Any, ...]) -> Parsed:
    """jobFind(filter, options): the filter's conditions (`type`, `status`, `userId`,
    `createdBefore`, `data`; absent: any) and the page (`limit`, default 100, at most
    queries.MAX_PAGE; `after`, a page's `next` cursor)."""
    _arity(p, 0, 2, "jobFind")
    keep = _as_given  # queries.job_query checks them, naming each
    where = _options(
        p,
        0,
        {"type": keep, "status": keep, "userId": keep, "createdBefore": keep, "data": keep},
        "filter",
    )
    opts = _options(p, 1, {"limit": keep, "after": _optional(_cursor)})
    types = where.get("type")
    statuses = where.get("status")
    if isinstance(statuses, list | tuple) and len(statuses) > len(JOB_STATUSES):
        raise InvalidArgument("status", f"names more than the {len(JOB_STATUSES)} statuses")
    try:
        query = queries.job_query(
            None if types is None else job_types(types),
            statuses,
            where.get("user_id"),
            where.get("created_before"),
            where.get("data"),
            opts.get("limit", 100),
        )
    except InvalidArgument as exc:
        name = FIND_NAMES.get(exc.argument, exc.argument)
        if name == exc.argument:
            raise
        raise type(exc)(name, exc.problem) from None
    return {"query": query, "after": opts.get("after")}


def _as_given(value: Any, name: str) -> Any:
    return value


def _cursor(value: Any, name: str) -> str:
    """A page's cursor (InvalidArgument("after") if it is not one)."""
    queries.decode_cursor(value)
    return str(value)


def _parse_stats(p: tuple[Any, ...]) -> Parsed:
    _arity(p, 0, 1, "jobStats")
    _options(p, 0, {})
    return {}


def _run(name: str) -> Run:
    """Run the core operation `name` with the parsed arguments as keywords."""

    def run(core: Core, args: Parsed, origin: Origin) -> Awaitable[Any]:
        operation: Callable[..., Awaitable[Any]] = getattr(core, name)
        return operation(**args, origin=origin)

    return run


def _positional(name: str, *fields: str) -> Run:
    """Run a core operation whose leading parameters are positional (ids first)."""

    def run(core: Core, args: Parsed, origin: Origin) -> Awaitable[Any]:
        operation: Callable[..., Awaitable[Any]] = getattr(core, name)
        rest = {k: v for k, v in args.items() if k not in fields}
        return operation(*(args[f] for f in fields), **rest, origin=origin)

    return run


METHOD_TABLE: dict[str, Method] = {
    "startJobServer": Method(_parse_server_start, _run("start_server")),
    "startJobs": Method(_parse_server_start, _run("start_server")),
    "shutdownJobServer": Method(_parse_server_shutdown, _run("shutdown_server")),
    "stopJobs": Method(_parse_server_shutdown, _run("shutdown_server")),
    "jobSave": Method(_parse_save, _positional("save", "doc")),
    "jobSaveMany": Method(_parse_save_many, _positional("save_many", "docs")),
    "getWork": Method(_parse_get_work, _positional("get_work", "types")),
    "getJob": Method(_parse_get_job, _run_get_job),
    "jobRemove": Method(_parse_ids_only("jobRemove"), _positional("remove", "ids")),
    "jobPause": Method(_parse_ids_only("jobPause"), _positional("pause", "ids")),
    "jobResume": Method(_parse_ids_only("jobResume"), _positional("resume", "ids")),
    "jobReady": Method(_parse_ready, _positional("ready", "ids")),
    "jobCancel": Method(_parse_cancel, _positional("cancel", "ids")),
    "jobRestart": Method(_parse_restart, _positional("restart", "ids")),
    "jobRerun": Method(_parse_rerun, _positional("rerun", "job_id")),
    "jobLog": Method(_parse_log, _positional("log", "job_id", "run_id", "message")),
    "jobProgress": Method(
        _parse_progress, _positional("progress", "job_id", "run_id", "completed", "total")
    ),
    "jobDone": Method(_parse_done, _positional("done", "job_id", "run_id", "result")),
    "jobFail": Method(_parse_fail, _positional("fail", "job_id", "run_id", "error")),
    "jobHeartbeat": Method(_parse_held("jobHeartbeat"), _run_held("heartbeat")),
    "jobRelease": Method(_parse_held("jobRelease"), _run_held("release")),
    "jobReadyDue": Method(_parse_ready_due, _positional("ready_due", "types")),
    "jobCancelPending": Method(
        _parse_cancel_pending, _positional("cancel_pending_of", "job_type", "user_id")
    ),
    "jobFind": Method(_parse_find, _run("find_jobs")),
    "jobStats": Method(_parse_stats, _run("stats")),
}
"""Every method of the original (and this project's extensions), by name."""
assert set(METHOD_TABLE) == set(METHODS)


class MethodLayer:
    """`jc.call`: the original's methods by name, with wire-shaped parameters, on behalf of
    a user (checked against the allow/deny rules) or of trusted server code."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.rules = Rules()

    async def call(self, method: str, params: tuple[Any, ...], user_id: Any = None) -> Any:
        """Run a method; with a user_id the allow/deny rules decide, once the parameters
        have been parsed (InvalidArgument: no rule is asked about a malformed call); the
        core does the rest (limits, clock, events) as for any call. A rule that raises
        refuses the call (PermissionDenied; the rule's error is logged)."""
        spec = METHOD_TABLE.get(method) if type(method) is str else None
        if spec is None:
            raise InvalidArgument(
                "method", f"unknown method {method!r}; use one of {list(METHODS)}"
            )
        origin = Origin(method, user_id, params)
        try:
            args = spec.parse(params)
            if user_id is not None:
                if not self.rules.permits(user_id, method, params):
                    raise PermissionDenied(f"Method not authorized: {method}")
                if method in REPORTS and self.rules.is_admin(user_id, method, params):
                    origin = Origin(method, user_id, params, admin=True)
        except Exception as exc:
            await self.core.emit(method, lambda: params, origin, exc, None)
            raise
        return await spec.run(self.core, args, origin)
