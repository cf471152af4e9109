"""Operations as values: one frozen dataclass per operation of a job collection.

An operation is typed by its result (`Op[R]`) and run by a service's one verb,
`await service.run(op) -> R` (api/seam.py): the local service applies it to MongoDB
(local/core.py), the remote client sends it over HTTP (remote/client.py). Each field says how
it travels in the original's method of the same operation (`method`): positionally, or under
a camelCase key of the trailing options object, with the validator that parses it when it
comes from outside.
From that one description the generic codec here maps an operation to the original's
parameters (`op.params()`, what events and the remote API carry) and back
(`parse(method, params)`, what the method layer runs), so no operation's parameter list is
written twice.

Values in an operation are typed Python, already validated by whoever built it (`Job`,
`JobsAPI`, tasks, or `parse` for calls from outside): ids are ObjectIds or strings, documents
JobDocs, datetimes aware, durations integer milliseconds. Building one does no I/O and no
validation, so the hot path pays for neither twice.

Adding an operation: its dataclass here, its rule (a filter and an update) in rules/transitions.py,
its applier in local/core.py's table (see the README's Development section).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Generic, Self, TypeVar

from . import queries
from . import validation as v
from .concurrency import ConcurrencyLimit, limit_from_wire
from .constants import (
    FOREVER,
    JOB_LOG_LEVELS,
    JOB_STATUSES,
    METHODS,
    ON_FAILURE_POLICIES,
    OnFailure,
)
from .document import JobDoc, JobWorker, parse_doc
from .errors import InvalidArgument, InvalidArgumentType
from .limits import MAX_BSON_BYTES
from .queries import DocPage, JobQuery, QueueStats
from .ratelimit import LimitedWork, RateLimit
from .schedules import Schedule, ScheduleSpec, schedule_id
from .types import Due, Id, Paused
from .workers import MAX_TEXT, WorkerInfo, registration, worker_id

R = TypeVar("R", covariant=True)
Validator = Callable[[Any, str], Any]
Outcome = bool | Id
"""What done() answers: whether it was applied, or the id of the repeat it scheduled."""

MAX_TYPES = 1_000
"""The most job types one claim, promotion or long poll may name."""
MAX_TYPE_LENGTH = 1_024
"""The longest job type one may name there (characters)."""
MAX_JOBS_PER_SAVE = 10_000
"""jobSaveMany takes at most this many documents per call; save_jobs splits larger lists."""
MAX_LOG_MESSAGE = MAX_BSON_BYTES
"""An absolute bound; the collection's Limits.max_message_length is the one that applies."""
NO_FAILURE = {"value": "No error information provided"}
"""The error of a jobFail that gave none (the original's words)."""


class Returns(enum.Enum):
    """The shape of an operation's result on the wire (how the remote client decodes it)."""

    VALUE = "value"
    """As JSON carries it: booleans, ids, lists of ids, counts."""
    DOCS = "docs"
    """A list of job documents."""
    PAGE = "page"
    """A page of jobFind."""
    STATS = "stats"
    """The counts of jobStats."""
    DUE = "due"
    """What a promotion found."""
    PAUSED = "paused"
    """Which types are paused on every process."""
    WORKERS = "workers"
    """Registrations of queues."""
    LIMITS = "limits"
    """Every type's concurrency limit."""
    SCHEDULES = "schedules"
    """A schedule object, or a list of them."""


@dataclass(frozen=True, slots=True)
class Wire:
    """How one field of an operation travels in the original's method."""

    name: str
    """Its option key, or (positional) the name errors give it."""
    check: Validator
    """Parses a value that came from outside (value, name) -> value; raises InvalidArgument."""
    option: bool
    """In the trailing options object (else positional, in field order)."""
    nullable: bool = False
    """None is a value of its own (else None means "not given": the default, or refused where
    the field has none). A None option is never sent."""


def positional(name: str, check: Validator, *, nullable: bool = False, **default: Any) -> Any:
    """A field passed positionally; `default=` or `default_factory=` makes it optional."""
    return field(metadata={"wire": Wire(name, check, False, nullable)}, **default)


def option(name: str, check: Validator, default: Any) -> Any:
    """A field passed under `name` in the options object (None allowed where the default is
    None)."""
    return field(default=default, metadata={"wire": Wire(name, check, True, default is None)})


def local(default: Any = None) -> Any:
    """A field that never travels: a hint for the local service (a claimed copy) or a name
    for its errors."""
    return field(default=default, compare=False, repr=False)


class Op(Generic[R]):
    """One operation of a job collection, answering R (see the module docstring)."""

    __slots__ = ()
    method: ClassVar[str]
    """The original's method of this operation (what events and the remote API name)."""
    returns: ClassVar[Returns] = Returns.VALUE
    quiet: ClassVar[bool] = False
    """Part of another operation, or a read of this library's own: method events only when
    called through the method layer."""
    by_name: ClassVar[bool] = True
    """Callable by its method's name (jc.call, the remote API, DDP); False for the
    operations only the library's own code runs."""
    remote: ClassVar[tuple[str, str] | None] = None
    """Set where a remote collection cannot run it: (the argument, why) of its refusal."""
    one_id: ClassVar[bool] = False
    """Its method takes one id in place of the list (and answers for that one)."""

    def params(self) -> tuple[Any, ...]:
        """The original's parameters of this operation: its positional fields in order, then
        the options object if it has options (typed values: JobDocs, ObjectIds, datetimes)."""
        positions, options, _ = _wire_fields(type(self))
        given: list[Any] = [_plain(getattr(self, name)) for name, _ in positions]
        if options:
            sent: dict[str, Any] = {}
            for name, wire in options:
                value = getattr(self, name)
                if value is not None:
                    sent[wire.name] = _plain(value)
            given.append(sent)
        return tuple(given)

    @classmethod
    def from_params(cls, params: Sequence[Any]) -> Self:
        """The operation the original's parameters describe, each validated (InvalidArgument
        naming the parameter): positional ones in order (missing or None optional ones take
        their defaults), then an options object (absent or None: every option's default) of
        known keys only."""
        positions, options, required = _wire_fields(cls)
        if not len(required) <= len(params) <= len(positions) + 1:
            raise InvalidArgument(
                cls.method,
                f"takes {len(required)} to {len(positions) + 1} parameters, got {len(params)}",
            )
        values: dict[str, Any] = {}
        for (name, wire), value in zip(positions, params, strict=False):
            if value is not None:
                values[name] = wire.check(value, wire.name)
            elif wire.nullable:
                values[name] = None
            elif name in required:
                wire.check(value, wire.name)  # refuses None, naming the parameter
        raw = params[len(positions)] if len(params) > len(positions) else None
        values.update(parse_options(raw, options))
        return cls(**values)

    def checked(self) -> Self:
        """Checks across fields of an operation parsed from outside (after from_params)."""
        return self

    def for_one_id(self, result: Any) -> Any:
        """The answer when the method was given one id (see one_id), from the list's."""
        return result


Fields = list[tuple[str, Wire]]
_FIELDS: dict[type, tuple[Fields, Fields, frozenset[str]]] = {}


def in_session(op: Op[Any]) -> Any:
    """The session an operation joins, or None. Save, SaveMany, Done and Fail take the
    caller's (a pymongo AsyncClientSession or a Motor session) so that they happen inside its
    transaction: a job exists, or is finished, if and only if the caller's own writes commit
    (see docs/how-to/transactions.md). It never travels: a remote collection refuses it."""
    return getattr(op, "session", None)


def _wire_fields(cls: type) -> tuple[Fields, Fields, frozenset[str]]:
    """An operation class's positional fields, option fields, and the positional fields
    without a default (computed once per class)."""
    known = _FIELDS.get(cls)
    if known is None:
        fields = [f for f in dataclasses.fields(cls) if "wire" in f.metadata]
        wired = [(f.name, f.metadata["wire"]) for f in fields]
        required = frozenset(
            f.name
            for f in fields
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        )
        known = [w for w in wired if not w[1].option], [w for w in wired if w[1].option], required
        _FIELDS[cls] = known
    return known


def _plain(value: Any) -> Any:
    if isinstance(value, JobWorker):
        return value.stored()
    return list(value) if isinstance(value, tuple) else value


def parse_options(raw: Any, options: Fields, name: str = "options") -> dict[str, Any]:
    """An options object (absent or None: {}), each key validated, by field name; `name`
    names the object in errors."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidArgumentType(name, f"must be a dict, not {type(raw).__name__}")
    by_key = {wire.name: (field_name, wire) for field_name, wire in options}
    unknown = set(raw) - set(by_key)
    if unknown:
        raise InvalidArgument(name, f"unknown keys {sorted(map(str, unknown))}")
    parsed: dict[str, Any] = {}
    for key, value in raw.items():
        field_name, wire = by_key[key]
        if value is None and wire.nullable:
            parsed[field_name] = None
        else:
            parsed[field_name] = wire.check(value, key)
    return parsed


# --- validators of values that come from outside --------------------------------------------


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


def _ms(minimum: int) -> Validator:
    """A count or milliseconds: an integer from minimum up to FOREVER (2**53)."""
    return lambda value, name: v.integer(value, name, minimum=minimum, maximum=FOREVER)


def _document(value: Any, name: str) -> JobDoc:
    """A job document as given on the wire: a dict in the stored shape (or a JobDoc); the
    service checks that it may be saved."""
    if isinstance(value, JobDoc):
        return value
    if not isinstance(value, dict):
        raise InvalidArgumentType(name, f"must be a job document, not {type(value).__name__}")
    return parse_doc(value)


def _documents(value: Any, name: str) -> list[JobDoc]:
    if not isinstance(value, list | tuple):
        raise InvalidArgumentType(
            name, f"must be a list of job documents, not {type(value).__name__}"
        )
    if len(value) > MAX_JOBS_PER_SAVE:
        raise InvalidArgument(name, f"holds more than {MAX_JOBS_PER_SAVE} documents")
    return [_document(item, f"{name}[{i}]") for i, item in enumerate(value)]


def _new_ids(value: Any, name: str) -> list[Id | None]:
    if not isinstance(value, list | tuple):
        raise InvalidArgumentType(name, "must be a list of ids (None for a document with one)")
    return [None if x is None else v.job_id(x, f"{name}[{i}]") for i, x in enumerate(value)]


def _claim_key(value: Any, name: str) -> str:
    if type(value) is not str or not 0 < len(value) <= 64:
        raise InvalidArgument(name, "must be a string of 1 to 64 characters")
    return value


def _trigger_key(value: Any, name: str) -> str:
    return schedule_id(value, name)


_WORKER_KEYS = frozenset(("id", "host", "pid"))


def _claiming_worker(value: Any, name: str) -> JobWorker:
    """The worker a claim is for, as it says of itself (getWork's `worker`, this library's:
    `{id?, host?, pid?}`, its id in the worker registry, its host and pid); the server adds
    the user and that it came through the method layer (local/core.py)."""
    if isinstance(value, JobWorker):
        return value
    if not isinstance(value, dict):
        raise InvalidArgumentType(name, f"must be an object, not {type(value).__name__}")
    unknown = sorted(str(k) for k in value if k not in _WORKER_KEYS)
    if unknown:
        raise InvalidArgument(name, f"unknown keys {unknown}")
    return JobWorker(
        id=None if value.get("id") is None else worker_id(value["id"], f"{name}.id"),
        host=None
        if value.get("host") is None
        else v.text(value["host"], f"{name}.host", max_length=MAX_TEXT),
        pid=None
        if value.get("pid") is None
        else v.integer(value["pid"], f"{name}.pid", minimum=0, maximum=2**31),
    )


def _level(value: Any, name: str) -> str:
    return v.choice(value, name, JOB_LOG_LEVELS)


def _message(value: Any, name: str) -> str:
    return v.text(value, name, max_length=MAX_LOG_MESSAGE)


def _run_id(value: Any, name: str) -> Id:
    return v.job_id(value, name)


def _count(value: Any, name: str) -> int:
    return v.count(value, name)


def _number(value: Any, name: str) -> float:
    return v.number(value, name)


def _user(value: Any, name: str) -> Any:
    return v.user_id(value, name)


def _job_type(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidArgumentType(name, "must be a non-empty string")
    return value


def one_type(value: Any, name: str) -> str:
    """One job type (a string), bounded as job_types bounds each."""
    if not isinstance(value, str):
        raise InvalidArgumentType(name, f"must be a string, not {type(value).__name__}")
    return job_types(value, name)[0]


def _on_failure(value: Any, name: str) -> OnFailure:
    return v.choice(value, name, ON_FAILURE_POLICIES)


def _any_ids(value: Any, name: str) -> list[Id] | None:
    """jobReady's ids: None or [] for every due job."""
    return None if value == [] else v.job_ids(value, name)


Checkpoints = Sequence[tuple[Id, Any]]
"""Checkpoints to store with a write on held jobs: (job id, state) pairs."""


def _checkpoints(value: Any, name: str) -> Checkpoints:
    """jobHeartbeat's and jobRelease's `checkpoints`: a list of [id, state] pairs, each
    state a JSON value (validation.checkpoint_state); the ids are checked against the
    call's (see _OnHeld.checked)."""
    if not isinstance(value, list | tuple):
        raise InvalidArgumentType(
            name, f"must be a list of [id, state] pairs, not {type(value).__name__}"
        )
    if len(value) > v.MAX_IDS:
        raise InvalidArgument(name, f"holds more than {v.MAX_IDS} checkpoints")
    pairs: list[tuple[Id, Any]] = []
    for i, pair in enumerate(value):
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise InvalidArgumentType(f"{name}[{i}]", "must be an [id, state] pair")
        pairs.append(
            (v.job_id(pair[0], f"{name}[{i}][0]"), v.checkpoint_state(pair[1], f"{name}[{i}][1]"))
        )
    return pairs


def _cursor(value: Any, name: str) -> str:
    """A page's cursor (InvalidArgument("after") if it is not one)."""
    queries.decode_cursor(value)
    return str(value)


# --- the operations -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartServer(Op[bool]):
    """startJobServer: allow claiming and start the promotion loop."""

    method = "startJobServer"


@dataclass(frozen=True, slots=True)
class ShutdownServer(Op[bool]):
    """shutdownJobServer: stop claiming and promotion; fail this instance's running jobs
    after the timeout."""

    method = "shutdownJobServer"
    timeout_ms: int = option("timeout", _ms(0), 60_000)


@dataclass(frozen=True, slots=True)
class Save(Op[Id | None]):
    """jobSave: insert a new job (under `job_id` if given) or resubmit a paused one."""

    method = "jobSave"
    doc: JobDoc = positional("doc", _document)
    cancel_repeats: bool = option("cancelRepeats", v.boolean, False)
    job_id: Id | None = option("jobId", v.job_id, None)
    session: Any = local()
    """The caller's session, inside its transaction (see `in_session`), or None."""


@dataclass(frozen=True, slots=True)
class SaveMany(Op[list[Id | None]]):
    """jobSaveMany: save() of each document, as few round trips as their semantics allow.
    `name` is what errors call the documents (`docs[i]`; save_jobs says `jobs[i]`)."""

    method = "jobSaveMany"
    docs: Sequence[JobDoc] = positional("docs", _documents)
    cancel_repeats: bool = option("cancelRepeats", v.boolean, False)
    job_ids: Sequence[Id | None] | None = option("jobIds", _new_ids, None)
    name: str = local("docs")
    session: Any = local()
    """As for Save."""

    def checked(self) -> Self:
        if self.job_ids is not None and len(self.job_ids) != len(self.docs):
            raise InvalidArgument("jobIds", "must give one id (or None) per document")
        return self


@dataclass(frozen=True, slots=True)
class GetJobs(Op[list[JobDoc]]):
    """getJob: the stored jobs among these ids, in order."""

    method = "getJob"
    returns = Returns.DOCS
    one_id = True
    ids: Sequence[Id] = positional("ids", v.job_ids)
    get_log: bool = option("getLog", v.boolean, False)
    get_failures: bool = option("getFailures", v.boolean, False)

    def for_one_id(self, result: Any) -> JobDoc | None:
        """The document, or None."""
        return result[0] if result else None


@dataclass(frozen=True, slots=True)
class GetWork(Op[list[JobDoc]]):
    """getWork: claim up to max_jobs ready jobs under one fresh runId. `claim_key` (the
    remote API's): a key sent again after a claim whose answer was lost is answered with the
    jobs claimed under it. `worker` (this library's): the claiming worker, recorded on the
    jobs claimed (JobDoc.worker; None: this process, or for a call through the method layer
    only its user)."""

    method = "getWork"
    returns = Returns.DOCS
    types: Sequence[str] = positional("type", job_types)
    max_jobs: int = option("maxJobs", _ms(1), 1)
    work_timeout_ms: int | None = option("workTimeout", _ms(1), None)
    claim_key: str | None = option("claimKey", _claim_key, None)
    worker: JobWorker | None = option("worker", _claiming_worker, None)


NO_RATE_LIMITS = (
    "rate limits need a local JobCollection for now (a RemoteJobCollection cannot claim "
    "under a RateLimit nor put a job back with rate_limited())"
)


@dataclass(frozen=True, slots=True)
class GetLimitedWork(Op[LimitedWork]):
    """getWork under a RateLimit shared by every process on the database: at most as many
    jobs as the limit has left in the current window (see ratelimit.py), and when the next
    window starts if the limit held some back."""

    by_name = False
    method = "getWork"
    remote = ("rate_limit", NO_RATE_LIMITS)
    types: Sequence[str] = positional("type", job_types)
    max_jobs: int = option("maxJobs", _ms(1), 1)
    work_timeout_ms: int | None = option("workTimeout", _ms(1), None)
    rate_limit: RateLimit | None = option("rateLimit", lambda value, name: value, None)
    worker: JobWorker | None = option("worker", _claiming_worker, None)


@dataclass(frozen=True, slots=True)
class Log(Op[bool]):
    """jobLog: append to a job's log (a heartbeat, when given the holder's runId)."""

    method = "jobLog"
    job_id: Id = positional("id", v.job_id)
    run_id: Id | None = positional("runId", _run_id, nullable=True)
    message: str = positional("message", _message)
    level: str = option("level", _level, "info")
    data: dict[str, Any] | None = option("data", v.plain_object, None)


@dataclass(frozen=True, slots=True)
class Progress(Op[bool | None]):
    """jobProgress: record a held job's progress (a heartbeat too)."""

    method = "jobProgress"
    job_id: Id = positional("id", v.job_id)
    run_id: Id = positional("runId", _run_id)
    completed: float = positional("completed", lambda x, n: v.number(x, n, minimum=0))
    total: float = positional("total", _number)

    def checked(self) -> Self:
        if self.total <= 0:
            raise InvalidArgument("total", f"must be > 0, got {self.total}")
        if self.completed > self.total:
            raise InvalidArgument(
                "completed", f"must not exceed total ({self.completed} > {self.total})"
            )
        return self


@dataclass(frozen=True, slots=True)
class Done(Op[Outcome]):
    """jobDone: complete a held job; its repeat and dependents follow. `claimed` is the job
    as the caller claimed it, if it holds that copy: a hint that can save a read."""

    method = "jobDone"
    job_id: Id = positional("id", v.job_id)
    run_id: Id = positional("runId", _run_id)
    result: dict[str, Any] = positional("result", v.wrap_value, default_factory=dict)
    repeat_id: bool = option("repeatId", v.boolean, False)
    delay_deps_ms: int | None = option("delayDeps", _ms(0), None)
    claimed: JobDoc | None = local()
    session: Any = local()
    """As for Save."""


@dataclass(frozen=True, slots=True)
class Fail(Op[bool]):
    """jobFail: fail a held job (retried while its retries and time allow); `claimed` as for
    Done. The worker may decide more than v1.x's `fatal` (no retry): `retryIn` (ms) is the
    wait before the retry in place of the job's backoff (the attempt counts, and the job's
    retries and `until` still bound it); `snooze` (ms) is no failure at all: the job waits
    that long without using an attempt, `error` logged, not added to its failures; `cancel`
    (true) gives the job up: it is cancelled, `error`'s value logged as the reason, and its
    dependents follow their failure policies, the write fenced by this run like any other
    report. At most one of the four."""

    method = "jobFail"
    job_id: Id = positional("id", v.job_id)
    run_id: Id = positional("runId", _run_id)
    error: dict[str, Any] = positional(
        "error", v.wrap_value, default_factory=lambda: dict(NO_FAILURE)
    )
    fatal: bool = option("fatal", v.boolean, False)
    retry_in_ms: int | None = option("retryIn", _ms(0), None)
    snooze_ms: int | None = option("snooze", _ms(0), None)
    cancel: bool = option("cancel", v.boolean, False)
    checkpoint: Any = option("checkpoint", v.checkpoint_state, None)
    """A checkpoint not yet stored, written with the failure (None: none)."""
    claimed: JobDoc | None = local()
    session: Any = local()
    """As for Save."""

    def checked(self) -> Self:
        given = [
            name
            for name, value in (
                ("fatal", self.fatal),
                ("retryIn", self.retry_in_ms is not None),
                ("snooze", self.snooze_ms is not None),
                ("cancel", self.cancel),
            )
            if value
        ]
        if len(given) > 1:
            raise InvalidArgument(given[-1], f"cannot be given with {given[0]}")
        return self


@dataclass(frozen=True, slots=True)
class _OnHeld(Op[list[Id]]):
    """An operation on jobs held under one runId: the ids it applied to (one id given to
    its method: whether it applied). `checkpoints` are stored with it, each on its job."""

    method = ""
    one_id = True
    ids: Sequence[Id] = positional("ids", v.job_ids)
    run_id: Id = positional("runId", _run_id)
    checkpoints: Checkpoints | None = option("checkpoints", _checkpoints, None)

    def checked(self) -> Self:
        given, named = set(self.ids), set[Id]()
        for i, (job_id, _) in enumerate(self.checkpoints or ()):
            if job_id not in given or job_id in named:
                raise InvalidArgument(
                    f"checkpoints[{i}][0]", "must name one of the jobs given, each at most once"
                )
            named.add(job_id)
        return self

    def for_one_id(self, result: Any) -> bool:
        """Whether it applied."""
        return bool(result)


@dataclass(frozen=True, slots=True)
class Heartbeat(_OnHeld):
    """jobHeartbeat: renew the leases of jobs held under one runId; the ids still held."""

    method = "jobHeartbeat"


@dataclass(frozen=True, slots=True)
class Release(_OnHeld):
    """jobRelease: hand held jobs back, ready, without using an attempt; those released."""

    method = "jobRelease"


@dataclass(frozen=True, slots=True)
class RateLimited(Op[bool]):
    """Put a held job back to wait retry_after_ms, without using an attempt (its worker met
    a rate limit); False if the claim is lost."""

    by_name = False
    method = "jobRateLimited"
    remote = ("retry_after", NO_RATE_LIMITS)
    job_id: Id = positional("id", v.job_id)
    run_id: Id = positional("runId", _run_id)
    retry_after_ms: int = option("retryAfter", _ms(0), 0)


@dataclass(frozen=True, slots=True)
class _OnIds(Op[bool]):
    """An operation on the jobs with these ids: whether any changed."""

    method = ""
    ids: Sequence[Id] = positional("ids", v.job_ids)


@dataclass(frozen=True, slots=True)
class Pause(_OnIds):
    """jobPause."""

    method = "jobPause"


@dataclass(frozen=True, slots=True)
class Resume(_OnIds):
    """jobResume."""

    method = "jobResume"


@dataclass(frozen=True, slots=True)
class Remove(_OnIds):
    """jobRemove."""

    method = "jobRemove"


@dataclass(frozen=True, slots=True)
class Ready(Op[bool]):
    """jobReady: promote waiting jobs now (no ids: every due job)."""

    method = "jobReady"
    ids: Sequence[Id] | None = positional("ids", _any_ids, default=None)
    time: datetime | None = option("time", v.aware_datetime, None)
    force: bool = option("force", v.boolean, False)


@dataclass(frozen=True, slots=True)
class Cancel(Op[bool]):
    """jobCancel."""

    method = "jobCancel"
    ids: Sequence[Id] = positional("ids", v.job_ids)
    antecedents: bool = option("antecedents", v.boolean, False)
    dependents: bool = option("dependents", v.boolean, True)


@dataclass(frozen=True, slots=True)
class Restart(Op[bool]):
    """jobRestart."""

    method = "jobRestart"
    ids: Sequence[Id] = positional("ids", v.job_ids)
    retries: int = option("retries", _count, 0)
    until: datetime | None = option("until", v.aware_datetime, None)
    antecedents: bool = option("antecedents", v.boolean, True)
    dependents: bool = option("dependents", v.boolean, False)


@dataclass(frozen=True, slots=True)
class Rerun(Op[Id | None]):
    """jobRerun: clone a completed job to run again; the new id."""

    method = "jobRerun"
    job_id: Id = positional("id", v.job_id)
    repeats: int = option("repeats", _count, 0)
    until: datetime | None = option("until", v.aware_datetime, None)
    wait_ms: int | None = option("wait", _ms(0), None)


@dataclass(frozen=True, slots=True)
class Results(Op[dict[Id, dict[str, Any]]]):
    """The results of the completed jobs among these ids, by id, in the ids' order;
    InvalidArgument("max_bytes") if together they are larger (BSON-encoded). A read of this
    library's for a dependent; a remote collection reads it through getJob."""

    by_name = False
    method = "jobResults"
    quiet = True
    ids: Sequence[Id] = positional("ids", v.job_ids)
    max_bytes: int = option("maxBytes", _ms(0), MAX_BSON_BYTES)


@dataclass(frozen=True, slots=True)
class CancelPendingOf(Op[int]):
    """Cancel a user's jobs of a type that have not started, or that started and are past
    their lease, with their dependents (what scheduling a job replaces); how many."""

    method = "jobCancelPending"
    quiet = True
    job_type: str = positional("type", _job_type)
    user_id: Any = positional("userId", _user)


@dataclass(frozen=True, slots=True)
class ReadyDue(Op[Due]):
    """Promote the due waiting jobs of these types now, as the job server's next pass would,
    so that a queue that found nothing ready starts them on time; when none was due, say
    when the next one is. The job server's own work: no method events from a local queue."""

    method = "jobReadyDue"
    returns = Returns.DUE
    quiet = True
    types: Sequence[str] = positional("type", job_types)


@dataclass(frozen=True, slots=True)
class Stats(Op[QueueStats]):
    """jobStats: the jobs of each type in each status, and each type's oldest ready job."""

    method = "jobStats"
    returns = Returns.STATS
    quiet = True


@dataclass(frozen=True, slots=True)
class _OnTypes(Op[Paused]):
    """A change of the cluster-wide pause of these types (None: of every type): what is
    paused now."""

    method = ""
    returns = Returns.PAUSED
    types: Sequence[str] | None = positional("types", job_types, nullable=True)


@dataclass(frozen=True, slots=True)
class PauseTypes(_OnTypes):
    """jobPauseTypes: no process claims jobs of these types (None: of any type) until they
    are resumed; running jobs finish."""

    method = "jobPauseTypes"


@dataclass(frozen=True, slots=True)
class ResumeTypes(_OnTypes):
    """jobResumeTypes: claims of these types (None: of every type, and the pause of every
    type) resume on every process."""

    method = "jobResumeTypes"


@dataclass(frozen=True, slots=True)
class PausedTypes(Op[Paused]):
    """jobPausedTypes: which types are paused on every process."""

    method = "jobPausedTypes"
    returns = Returns.PAUSED
    quiet = True


@dataclass(frozen=True, slots=True)
class SeeWorker(Op[bool]):
    """jobWorkerSeen: register (or renew) a queue in the worker registry, with the jobs it
    holds now; as its user, who alone may renew or remove it."""

    method = "jobWorkerSeen"
    quiet = True
    worker: WorkerInfo = positional("worker", registration)

    def params(self) -> tuple[Any, ...]:
        return (self.worker.wire(),)


@dataclass(frozen=True, slots=True)
class ForgetWorker(Op[bool]):
    """jobWorkerGone: remove a queue's registration (at its shutdown)."""

    method = "jobWorkerGone"
    quiet = True
    worker_id: str = positional("id", worker_id)


@dataclass(frozen=True, slots=True)
class ListWorkers(Op[list[WorkerInfo]]):
    """jobWorkers: the queues registered and renewed within their TTL, oldest first."""

    method = "jobWorkers"
    returns = Returns.WORKERS
    quiet = True


@dataclass(frozen=True, slots=True)
class AddDepends(Op[int]):
    """jobAddDepends: more antecedents for jobs that have not started (waiting or paused),
    with the failure policy of the new edges ("cancel" by default): an antecedent that
    completed already is resolved at once, one that failed or was cancelled applies the
    policy. How many of the jobs took them (one that started, or finished, takes none)."""

    method = "jobAddDepends"
    ids: Sequence[Id] = positional("ids", v.job_ids)
    antecedents: Sequence[Id] = positional("antecedents", v.job_ids)
    on_failure: OnFailure = option("onFailure", _on_failure, "cancel")

    def checked(self) -> Self:
        if set(self.ids) & set(self.antecedents):
            raise InvalidArgument("antecedents", "a job cannot depend on itself")
        return self


@dataclass(frozen=True, slots=True)
class SetConcurrencyLimit(Op[dict[str, ConcurrencyLimit]]):
    """jobSetConcurrencyLimit: at most so many jobs of a type running at once on every
    process (None: no limit); every type's limit now."""

    method = "jobSetConcurrencyLimit"
    returns = Returns.LIMITS
    job_type: str = positional("type", one_type)
    limit: ConcurrencyLimit | None = positional("limit", limit_from_wire, nullable=True)

    def params(self) -> tuple[Any, ...]:
        return (self.job_type, None if self.limit is None else self.limit.wire())


@dataclass(frozen=True, slots=True)
class ConcurrencyLimits(Op[dict[str, ConcurrencyLimit]]):
    """jobConcurrencyLimits: every type's concurrency limit."""

    method = "jobConcurrencyLimits"
    returns = Returns.LIMITS
    quiet = True


# --- schedules as objects (model/schedules.py) -------------------------------------------------


@dataclass(frozen=True, slots=True)
class UpsertSchedule(Op[Schedule]):
    """jobScheduleUpsert(id, settings): create a schedule or replace its settings (`type`,
    `data`, `cron` and `timezone` or `every` in ms, `jitter` in ms, `overlap`, `catchUp`); the
    schedule as stored."""

    method = "jobScheduleUpsert"
    returns = Returns.SCHEDULES
    spec: ScheduleSpec

    def params(self) -> tuple[Any, ...]:
        return (self.spec.id, self.spec.wire())

    @classmethod
    def from_params(cls, params: Sequence[Any]) -> Self:
        if len(params) != 2:
            raise InvalidArgument(cls.method, f"takes 2 parameters, got {len(params)}")
        return cls(ScheduleSpec.from_wire(params[0], params[1]))


@dataclass(frozen=True, slots=True)
class ListSchedules(Op[list[Schedule]]):
    """jobSchedules({id}): every schedule, by id (or the one with this id, if any), with its
    next runs and its last run."""

    method = "jobSchedules"
    returns = Returns.SCHEDULES
    quiet = True
    schedule: str | None = option("id", schedule_id, None)


@dataclass(frozen=True, slots=True)
class PauseSchedule(Op[bool]):
    """jobSchedulePause(id): no runs of the schedule until resumed; whether it was active."""

    method = "jobSchedulePause"
    schedule: str = positional("id", schedule_id)


@dataclass(frozen=True, slots=True)
class ResumeSchedule(Op[bool]):
    """jobScheduleResume(id): runs again, from the next occurrence; whether it was paused."""

    method = "jobScheduleResume"
    schedule: str = positional("id", schedule_id)


@dataclass(frozen=True, slots=True)
class RemoveSchedule(Op[bool]):
    """jobScheduleRemove(id): delete the schedule (its runs stay); whether there was one."""

    method = "jobScheduleRemove"
    schedule: str = positional("id", schedule_id)


@dataclass(frozen=True, slots=True)
class TriggerSchedule(Op[Id]):
    """jobScheduleTrigger(id, {key}): one run of the schedule now; its job's id. With a `key`
    (an idempotency key), the run's id derives from (schedule, key): a call repeated after a
    lost reply answers the same run and makes no second one."""

    method = "jobScheduleTrigger"
    schedule: str = positional("id", schedule_id)
    key: str | None = option("key", _trigger_key, None)


@dataclass(frozen=True, slots=True)
class BackfillSchedule(Op[list[Id]]):
    """jobScheduleBackfill(id, start, end): a run for each occurrence in [start, end] that has
    none yet; the ids of the runs made."""

    method = "jobScheduleBackfill"
    schedule: str = positional("id", schedule_id)
    start: datetime = positional("start", v.aware_datetime)
    end: datetime = positional("end", v.aware_datetime)

    def checked(self) -> Self:
        if self.end < self.start:
            raise InvalidArgument("end", "must not be before start")
        return self


FIND_NAMES = {"callback_of": "callbackOf", "user_id": "userId", "created_before": "createdBefore"}
"""find_jobs' argument names as jobFind's filter spells them (in errors)."""


def _as_given(value: Any, name: str) -> Any:
    return value  # queries.job_query checks the conditions, naming each


FIND_FILTER: Fields = [
    (name, Wire(key, _as_given, True, True))
    for name, key in [
        ("type", "type"),
        ("status", "status"),
        ("user_id", "userId"),
        ("created_before", "createdBefore"),
        ("data", "data"),
        ("workflow", "workflow"),
        ("batch", "batch"),
        ("callback_of", "callbackOf"),
        ("schedule", "schedule"),
    ]
]
FIND_OPTIONS: Fields = [
    ("limit", Wire("limit", _as_given, True, True)),
    ("after", Wire("after", _cursor, True, True)),
    ("oldest", Wire("oldest", _as_given, True, True)),
]


@dataclass(frozen=True, slots=True)
class FindJobs(Op[DocPage]):
    """jobFind(filter, options): the page after the cursor `after` (None: the first) of the
    jobs the query matches, newest first (queries.py). The filter's conditions are `type`,
    `status`, `userId`, `createdBefore`, `data`, `workflow`, `batch`, `callbackOf` and `schedule`
    (absent: any); the options `limit` (default 100, at most queries.MAX_PAGE), `after` and
    `oldest` (true: oldest first)."""

    method = "jobFind"
    returns = Returns.PAGE
    quiet = True
    query: JobQuery
    after: str | None = None

    def params(self) -> tuple[Any, ...]:
        return self.query.wire(self.after)

    @classmethod
    def from_params(cls, params: Sequence[Any]) -> Self:
        if len(params) > 2:
            raise InvalidArgument(cls.method, f"takes 0 to 2 parameters, got {len(params)}")
        where = parse_options(params[0] if params else None, FIND_FILTER, "filter")
        opts = parse_options(params[1] if len(params) > 1 else None, FIND_OPTIONS)
        statuses = where.get("status")
        if isinstance(statuses, list | tuple) and len(statuses) > len(JOB_STATUSES):
            raise InvalidArgument("status", f"names more than the {len(JOB_STATUSES)} statuses")
        types = where.get("type")
        try:
            query = queries.job_query(
                None if types is None else job_types(types),
                statuses,
                where.get("user_id"),
                where.get("created_before"),
                where.get("data"),
                opts.get("limit", 100),
                where.get("workflow"),
                where.get("batch"),
                where.get("callback_of"),
                where.get("schedule"),
                opts.get("oldest", False),
            )
        except InvalidArgument as exc:
            name = FIND_NAMES.get(exc.argument, exc.argument)
            if name == exc.argument:
                raise
            raise type(exc)(name, exc.problem) from None
        return cls(query, opts.get("after"))


OPERATIONS: tuple[type[Op[Any]], ...] = (
    StartServer,
    ShutdownServer,
    Save,
    SaveMany,
    GetJobs,
    GetWork,
    GetLimitedWork,
    Log,
    Progress,
    Done,
    Fail,
    Heartbeat,
    Release,
    RateLimited,
    Pause,
    Resume,
    Remove,
    Ready,
    Cancel,
    Restart,
    Rerun,
    Results,
    CancelPendingOf,
    ReadyDue,
    Stats,
    FindJobs,
    PauseTypes,
    ResumeTypes,
    PausedTypes,
    SeeWorker,
    ForgetWorker,
    ListWorkers,
    SetConcurrencyLimit,
    ConcurrencyLimits,
    AddDepends,
    UpsertSchedule,
    ListSchedules,
    PauseSchedule,
    ResumeSchedule,
    RemoveSchedule,
    TriggerSchedule,
    BackfillSchedule,
)
"""Every operation."""

ALIASES = {"startJobs": StartServer, "stopJobs": ShutdownServer}
"""The original's deprecated names of two methods."""

BY_METHOD: dict[str, type[Op[Any]]] = {
    **{op.method: op for op in OPERATIONS if op.by_name},
    **ALIASES,
}
"""The operation of each method callable by name (jc.call, the remote API, DDP)."""


def parse(method: str, params: Sequence[Any]) -> Op[Any]:
    """The operation a call of the original's `method` with these parameters describes,
    validated (InvalidArgument naming the parameter; the method must be in BY_METHOD)."""
    return BY_METHOD[method].from_params(params).checked()


assert set(BY_METHOD) == set(METHODS), "every method of constants.METHODS is an operation"
