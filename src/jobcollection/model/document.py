"""The job document: a pydantic model with snake_case attributes stored under the original names.

Stored documents keep job-collection v1.x field names and units (milliseconds in `retryWait`,
`repeatWait` and `workTimeout`) and its closed schema, so a collection can be shared with a
v1.x application. A cron schedule is stored as the later.js schedule naming the same times in
`repeatWait` (later.py), with the expression and its zone in `_private` (SCHEDULE).

Everything this library keeps in a job's `_private` (its settings beyond v1.x's fields, and its
own bookkeeping) is listed in one table, EXTENSIONS, from which writing (`to_mongo`), reading
(`from_mongo`, `parse_doc`), a resave and the remote API's codec derive.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal
from uuid import UUID

from bson import Code, ObjectId
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from .clock import to_millis
from .constants import (
    DEFAULT_REPEAT_WAIT_MS,
    DEFAULT_RETRY_WAIT_MS,
    EPOCH,
    FOREVER_DATE,
    UNIQUE_ON_PENDING,
    LogLevel,
    OnConflict,
    OnFailure,
    RetryBackoff,
    Status,
)
from .errors import InvalidArgument, InvalidDocument
from .later import later_schedule

_LATEST_STORABLE = datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)
STORED: Final = {"stored": True}
"""Validation context for documents read from the database: naive datetimes there are UTC."""
STORED_AWARE: Final = {"stored": True, "aware": True}
"""As STORED, from a driver that returns every datetime aware already (no walk needed)."""


def normalize_datetime(value: datetime) -> datetime:
    """Require an aware datetime; return it in UTC at millisecond precision, clamped to FOREVER.
    (Runs for every date of every document validated: a value in UTC milliseconds already, as
    the clock and the driver give them, is returned without a copy.)"""
    if value.tzinfo is not UTC:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("must be a timezone-aware datetime")
        value = value.astimezone(UTC)
    if value >= _LATEST_STORABLE:
        return FOREVER_DATE
    return to_millis(value) if value.microsecond % 1000 else value


def _check_id(value: object) -> ObjectId | str:
    if isinstance(value, ObjectId):
        return value
    if isinstance(value, str) and value:
        return value
    raise ValueError("an id must be an ObjectId or a non-empty string")


AwareDatetime = Annotated[datetime, Field(strict=True), AfterValidator(normalize_datetime)]
"""Only datetime objects (no numbers or strings to guess from), aware, in UTC milliseconds."""


def jsonable(value: Any) -> Any:
    """A stored value as JSON can hold it: ObjectIds as their hex strings, binary as base64,
    other BSON types (Decimal128, Regex, ...) as their str(); dicts and lists walked; what
    JSON has a form of (and datetimes, which pydantic writes in ISO 8601) as it is."""
    if value is None or isinstance(value, str | int | float | bool | datetime):
        return value
    if isinstance(value, dict):
        return {key: jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return str(value)


def _id_json(value: ObjectId | str) -> str:
    return str(value)


JobId = Annotated[
    ObjectId | str,
    PlainValidator(_check_id),
    PlainSerializer(_id_json, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "description": "an ObjectId's 24 hex digits, or a string"}),
]
"""A job's id: an ObjectId (in JSON, its hex string, which `get_job` takes back) or a string."""
Free = Annotated[dict[str, Any], PlainSerializer(jsonable, when_used="json")]
"""A free-form stored value (data, result, an error, log data): in JSON, with its BSON values
as strings (`jsonable`)."""
INT64_MAX: Final = 2**63 - 1
Int64 = Annotated[int, Field(ge=-INT64_MAX - 1, le=INT64_MAX, strict=True)]
"""An integer MongoDB can store (a bigger one would fail only when encoded)."""
NonNegativeInt = Annotated[int, Field(ge=0, le=INT64_MAX, strict=True)]


def _stored_status(status: Status | str) -> str:
    """A status as the plain string stored (a copy made without validation, such as
    `model_copy(update=...)`, may hold the string itself)."""
    return str(status)


StoredStatus = Annotated[Status, PlainSerializer(_stored_status, return_type=str)]
"""A status: read from the string stored (a member of Status), dumped as that plain string."""
FinalStatus = Annotated[
    Literal[Status.COMPLETED, Status.FAILED, Status.CANCELLED],
    PlainSerializer(_stored_status, return_type=str),
]
"""One of Status.FINAL, dumped as its plain string."""

CatchUp = Literal["latest", "none", "all"]


class CronSchedule(BaseModel):
    """A cron expression (croniter syntax), the IANA zone it is read in (None: UTC), and what
    becomes of the runs missed while nothing ran the job (schedule.next_run)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    cron: str
    timezone: str | None = None
    catch_up: CatchUp = Field(default="latest", alias="catchUp")
    """"latest": one run for all the missed occurrences; "none": a run started more than
    `catch_up_window_ms` late is skipped, for the next occurrence; "all": one run per missed
    occurrence (the newest CATCH_UP_LIMIT)."""
    catch_up_window_ms: NonNegativeInt = Field(default=60_000, alias="catchUpWindow")

    def stored(self) -> dict[str, Any]:
        """As kept under SCHEDULE: what differs from the defaults, by its stored names."""
        return self.model_dump(by_alias=True, exclude_defaults=True)


class LaterSchedule(BaseModel):
    """A later.js schedule written by job-collection v1.x; kept as stored, never evaluated."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    schedules: list[dict[str, Any]]
    exceptions: list[dict[str, Any]] | None = None


RepeatWait = NonNegativeInt | CronSchedule | LaterSchedule


class LogEntry(BaseModel):
    """One line of a job's log."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    time: AwareDatetime
    run_id: JobId | None = Field(default=None, alias="runId")
    level: LogLevel = "info"
    message: str
    data: Free | None = None


Finite = Annotated[float, Field(allow_inf_nan=False)]


class Progress(BaseModel):
    """How far a running job says it is."""

    model_config = ConfigDict(extra="forbid")
    completed: Annotated[Finite, Field(ge=0)] = 0
    total: Annotated[Finite, Field(ge=0)] = 1
    percent: Annotated[Finite, Field(ge=0)] = 0


def is_text(value: object) -> bool:
    """Whether a value is text as MongoDB stores a string: a `str` (or a subclass such as a
    StrEnum) that is not bson's Code, holding no lone surrogate (JSON's escapes can spell one,
    and BSON cannot encode it)."""
    if not isinstance(value, str) or isinstance(value, Code):
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _check_user(value: object) -> int | str | ObjectId:
    if isinstance(value, ObjectId) or (is_text(value) and value):
        return value  # type: ignore[return-value]
    if isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63:
        return value
    raise ValueError("a user id must be an integer, a non-empty text string or an ObjectId")


UserId = Annotated[
    int | str | ObjectId,
    PlainValidator(_check_user),
    PlainSerializer(jsonable, when_used="json"),
    WithJsonSchema({"anyOf": [{"type": "integer"}, {"type": "string"}]}),
]
"""Who a job is for (seed 003's `userId`, 0 for the system's own jobs)."""


class Unique(BaseModel):
    """A unique job: at most one job at a time holds its key (its type, user and key); by
    default a job holds it while it is pending (not started yet), see `Job.unique`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    key: str | None = None
    """None: one job per type and user."""
    on_conflict: OnConflict = "replace"
    """What saving it does while another job holds the key (UNIQUE_ON_CONFLICT; `mode`)."""
    period_ms: Annotated[int, Field(ge=1, le=INT64_MAX, strict=True)] | None = None
    """"debounce": how far each save pushes the held job's start back. Otherwise how long
    after its creation the job holds the key at most (None: as long as it is in `states`)."""
    states: tuple[Status, ...] = Status.PENDING
    """The statuses in which the job holds its key: every pending one, and any others."""

    @field_validator("states")
    @classmethod
    def _in_order(cls, states: tuple[Status, ...]) -> tuple[Status, ...]:
        return tuple(status for status in Status if status in states)

    @model_validator(mode="after")
    def _consistent(self) -> Unique:
        check_unique_policy(self.on_conflict, self.period_ms, self.states)
        return self

    @property
    def held_beyond_pending(self) -> bool:
        """Whether the job holds its key in a status past pending (kept under UNIQUE_HELD)."""
        return any(not status.is_pending for status in self.states)

    def policy(self) -> dict[str, Any] | None:
        """What a conflicting save needs to know of how long the job holds its key (kept
        under UNIQUE_POLICY): `{period: ms?, states: [...]?}`, each only when not the
        default; None when both are."""
        policy: dict[str, Any] = {}
        if self.period_ms is not None and self.on_conflict != "debounce":
            policy["period"] = self.period_ms
        if self.held_beyond_pending:
            policy["states"] = [str(status) for status in self.states]
        return policy or None


def check_unique_policy(
    mode: OnConflict, period_ms: int | None, states: tuple[Status, ...]
) -> None:
    """Refuse (InvalidArgument naming `states` or `period`) the combinations of a unique
    job's settings that make no sense: states without every pending status (a job holds its
    key from its save), states past pending for a mode that acts on a job not started
    ("replace", "debounce", "keep_latest"), "throttle" or "debounce" without a period,
    "keep_latest" or "replace" with one."""
    missing = [str(s) for s in Status.PENDING if s not in states]
    if missing:
        raise InvalidArgument("states", f"must include every pending status, missing {missing}")
    if mode in UNIQUE_ON_PENDING and any(not s.is_pending for s in states):
        raise InvalidArgument(
            "states", f"mode {mode!r} acts on a job not started yet: only pending statuses"
        )
    if mode in ("throttle", "debounce") and period_ms is None:
        raise InvalidArgument("period", f"mode {mode!r} needs a period")
    if mode in ("keep_latest", "replace") and period_ms is not None:
        raise InvalidArgument("period", f"mode {mode!r} takes no period")


class RemoveAfter(BaseModel):
    """Retention: delete the job this long after it reaches one of these final statuses."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    delay_ms: NonNegativeInt
    statuses: tuple[FinalStatus, ...] = (Status.COMPLETED,)


class Edge(BaseModel):
    """The failure policy of one dependency: what the job does when antecedent `id` fails for
    good or is cancelled (constants.ON_FAILURE_POLICIES; "cancel" is never stored)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: JobId
    policy: OnFailure


class ScheduledRun(BaseModel):
    """On a run of a schedule object (`jc.schedules`): the schedule's id, the occurrence it
    runs (for a triggered run: when it was triggered), and whether it was triggered."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    schedule: Annotated[str, Field(min_length=1, strict=True)]
    at: AwareDatetime
    triggered: bool = False


class JobWorker(BaseModel):
    """The worker that claimed a job's current or last run, as the claim recorded it (kept
    under WORKER, `Job.worker`). A queue of a local JobCollection records its id in the
    worker registry (`jc.workers()`), its host and its pid; `get_work` called directly, no id.
    A claim made through the method layer (a remote worker, a DDP worker) is `remote`, with
    the user it was made as (the server's to know) and what the worker said of itself: a
    RemoteJobCollection's queue its registry id, host and pid; a DDP session its id in the
    registry and its peer's address (no pid); a client that says nothing, nothing more."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str | None = None
    """Its id in the worker registry (None: not a registered queue)."""
    host: str | None = None
    pid: int | None = None
    user: Any = None
    """The user a claim through the method layer was made as (None: server code)."""
    remote: bool = False
    """Claimed through the method layer (the remote API or DDP), not in process."""

    def stored(self) -> dict[str, Any]:
        """As kept under WORKER: the fields that are set."""
        return self.model_dump(exclude_defaults=True)


class JobDoc(BaseModel):
    """A job as stored. Attribute names are snake_case; aliases are the stored field names."""

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        arbitrary_types_allowed=True,
        validate_assignment=True,
        ser_json_inf_nan="strings",
    )

    id: JobId | None = Field(default=None, alias="_id")
    run_id: JobId | None = Field(default=None, alias="runId")
    type: Annotated[str, Field(min_length=1, strict=True)]
    data: Free = Field(default_factory=dict)
    status: StoredStatus = Status.WAITING
    result: Free | None = None
    failures: list[Free] | None = None
    priority: Int64 = 0
    depends: list[JobId] = Field(default_factory=list)
    resolved: list[JobId] = Field(default_factory=list)
    after: AwareDatetime = EPOCH
    updated: AwareDatetime | None = None
    created: AwareDatetime | None = None
    work_timeout: Annotated[int, Field(ge=1, le=INT64_MAX, strict=True)] | None = Field(
        default=None, alias="workTimeout"
    )
    expires_after: AwareDatetime | None = Field(default=None, alias="expiresAfter")
    log: list[LogEntry] | None = None
    progress: Progress = Field(default_factory=Progress)
    retries: NonNegativeInt = 1
    retried: NonNegativeInt = 0
    repeat_retries: NonNegativeInt | None = Field(default=None, alias="repeatRetries")
    retry_until: AwareDatetime = Field(default=FOREVER_DATE, alias="retryUntil")
    retry_wait: NonNegativeInt = Field(default=DEFAULT_RETRY_WAIT_MS, alias="retryWait")
    retry_backoff: RetryBackoff = Field(default="constant", alias="retryBackoff")
    retry_jitter: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = Field(
        default=0.0, exclude=True
    )
    """Each retry wait is shortened by up to this fraction, at random (kept under RETRY)."""
    retry_max_wait: NonNegativeInt | None = Field(default=None, exclude=True)
    """The longest retry wait, in ms, whatever the backoff (kept under RETRY)."""
    retry_on: tuple[str, ...] | None = Field(default=None, exclude=True)
    """The exception types (qualified names, `module.QualName`) a failure is retried for;
    a Python worker fails the job fatally for any other (kept under RETRY). None: any."""
    user_id: UserId | None = Field(default=None, exclude=True)
    """Who the job is for (kept under USER); None: nobody in particular."""
    unique: Unique | None = Field(default=None, exclude=True)
    """Set on a unique job until it starts (its key is kept under UNIQUE while it is
    pending; a claim or a cancel lets go of it)."""
    remove_after: RemoveAfter | None = Field(default=None, exclude=True)
    """Retention (kept under REMOVE_AFTER); None: kept until removed."""
    timeout: Annotated[int, Field(ge=1, le=INT64_MAX, strict=True)] | None = Field(
        default=None, exclude=True
    )
    """How long, in ms, a queue lets a worker call on the job run before it cancels the call
    and fails the job (kept under TIMEOUT); None: the queue's own timeout, if any. Unrelated
    to `work_timeout`, the lease the queue's heartbeat renews."""
    trace: dict[str, str] | None = Field(default=None, exclude=True)
    """The trace context of the code that saved the job (W3C `traceparent`, `tracestate`;
    kept under TRACE), which the spans of its attempts are a child of or linked to
    (tracing.py); None: it was saved outside any trace."""
    skipped_runs: NonNegativeInt = Field(default=0, exclude=True)
    """Occurrences of its cron schedule that were given no run of their own, counted on the
    run after them (kept under SKIPPED)."""
    on_failure: list[Edge] = Field(default_factory=list, exclude=True)
    """The failure policies of its dependencies other than "cancel", the default (kept under
    ON_FAILURE)."""
    failed_antecedents: list[JobId] = Field(default_factory=list, exclude=True)
    """Antecedents that failed or were cancelled and that it runs without (policy "ignore";
    kept under FAILED_ANTECEDENTS)."""
    workflow: JobId | None = Field(default=None, exclude=True)
    """The workflow it was saved in (kept under WORKFLOW); None: none."""
    batches: list[JobId] = Field(default_factory=list, exclude=True)
    """The batches it belongs to, outermost first (kept under BATCHES)."""
    callback_of: JobId | None = Field(default=None, exclude=True)
    """The batch it is a callback of (kept under CALLBACK_OF); None: none."""
    run_if: Literal["failed"] | None = Field(default=None, exclude=True)
    """"failed": it runs only if one of its antecedents failed or was cancelled, and is
    cancelled otherwise (kept under RUN_IF); None: it runs when its antecedents let it."""
    expires: AwareDatetime | None = Field(default=None, exclude=True)
    """The job's deadline (kept under EXPIRES): one not started by then is cancelled instead
    of running late, a retry's start included; None: none (or one given relative, not saved
    yet: `expires_in_ms`)."""
    expires_in_ms: Annotated[int, Field(ge=1, le=INT64_MAX, strict=True)] | None = Field(
        default=None, exclude=True
    )
    """A deadline given relative to the save (`Job.expires(timedelta)`), in ms: the save
    resolves it against the collection's clock into `expires`, so a stored job never has it."""
    expired: bool = Field(default=False, exclude=True)
    """True on a job cancelled because it was not started by its deadline (`expires`); a
    restart clears it with the deadline."""
    scheduled: ScheduledRun | None = Field(default=None, exclude=True)
    """On a run of a schedule object: which schedule and occurrence (kept under SCHEDULED);
    None: not made by a schedule."""
    worker: JobWorker | None = Field(default=None, exclude=True)
    """The worker that claimed its current or last run (kept under WORKER, set by each claim
    and kept once the job has finished); None: never claimed, or claimed by job-collection
    v1.x or by an earlier version of this library (a repeat or a rerun starts without one)."""
    lineage: list[JobId] = Field(default_factory=list, exclude=True)
    """The jobs this one was made from (as a repeat or a rerun), oldest first: the newest
    LINEAGE_LIMIT of them (kept under LINEAGE)."""
    checkpoint: Any = Field(default=None, exclude=True)
    """The last checkpoint its worker stored (`job.checkpoint(state)`: a JSON value, kept
    under CHECKPOINT), handed to the next attempt; None: none. A completion clears it, and a
    repeat or a rerun starts without one."""
    repeats: NonNegativeInt = 0
    repeated: NonNegativeInt = 0
    repeat_until: AwareDatetime = Field(default=FOREVER_DATE, alias="repeatUntil")
    repeat_wait: RepeatWait = Field(default=DEFAULT_REPEAT_WAIT_MS, alias="repeatWait")
    private: dict[str, Any] | None = Field(default=None, alias="_private", exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _stored_datetimes_are_utc(cls, value: Any, info: ValidationInfo) -> Any:
        """pymongo decodes BSON dates as naive UTC unless told otherwise, and v1.x writes
        JavaScript Dates anywhere in a job: in a stored document every naive datetime, at any
        depth (data, result, log, failures), is UTC."""
        context = info.context or {}
        if not context.get("stored") or not isinstance(value, dict):
            return value
        return _stored_ints(value if context.get("aware") else assume_utc(value))

    @field_validator("data", "result")
    @classmethod
    def _plain_object(
        cls, value: dict[str, Any] | None, info: ValidationInfo
    ) -> dict[str, Any] | None:
        """Given values must be storable as given; stored ones are read as they are."""
        if value is not None and not (info.context or {}).get("stored"):
            check_storable(value, info.field_name or "value")
        return value

    @model_validator(mode="after")
    def _storable_extras(self, info: ValidationInfo) -> JobDoc:
        """The other free-form values of a given document must be storable as given too."""
        if (info.context or {}).get("stored"):
            return self
        check_storable(self.private, "_private")
        check_storable(self.failures, "failures")
        check_json(self.checkpoint, "checkpoint")
        for entry in self.log or []:
            check_storable(entry.data, "log.data")
        if isinstance(self.repeat_wait, LaterSchedule):
            check_storable(self.repeat_wait.model_dump(exclude_none=True), "repeatWait")
        return self

    def to_mongo(self) -> dict[str, Any]:
        """The document as stored, `_private` included (callers decide whether to persist it).
        A cron schedule is stored as v1.x can read it: `repeatWait` holds the later.js
        schedule of the same times and `_private` the expression itself (SCHEDULE)."""
        out = self.model_dump(by_alias=True, exclude_none=True)
        out["runId"] = self.run_id
        if "log" in out:  # every entry names its runId, null included, as v1.x writes them
            out["log"] = [{"runId": None, **e} for e in out["log"]]
        if self.private is not None:
            out["_private"] = self.private
        if isinstance(self.repeat_wait, CronSchedule):  # the expression goes under SCHEDULE
            out["repeatWait"] = later_schedule(self.repeat_wait.cron)
        if self.retry_backoff == "linear":  # v1.x knows constant and exponential only (RETRY)
            out["retryBackoff"] = "constant"
        extensions = {
            ext.key: value for ext in SETTING_EXTENSIONS if (value := ext.stored(self)) is not None
        }
        if extensions:
            out["_private"] = {**out.get("_private", {}), **extensions}
        if self.id is None:
            out.pop("_id", None)
        return out

    def unique_key(self) -> dict[str, Any]:
        """The value a unique job holds under UNIQUE while it is pending: its type, its user
        and its key (the last two where set), in this order."""
        value: dict[str, Any] = {"type": self.type}
        if self.user_id is not None:
            value["user"] = self.user_id
        if self.unique is not None and self.unique.key is not None:
            value["key"] = self.unique.key
        return value

    @classmethod
    def from_mongo(
        cls, raw: dict[str, Any], *, with_private: bool = False, aware_dates: bool = False
    ) -> JobDoc:
        """Validate a document read from the database. `_private` is dropped, or kept (for
        the server's own use, such as cloning a job) without this library's bookkeeping.
        `aware_dates`: the driver returned every datetime aware (else naive ones are UTC)."""
        fields = raw
        if "_private" in raw:
            fields = dict(raw)
            del fields["_private"]
            if isinstance(raw["_private"], dict):
                _read_extensions(raw["_private"], fields)
        try:
            doc = JobDoc.model_validate(fields, context=STORED_AWARE if aware_dates else STORED)
        except ValidationError as exc:
            if aware_dates:  # a backend that took the codec options but did not apply them
                return cls.from_mongo(raw, with_private=with_private)
            raise InvalidDocument(f"invalid job document: {_describe(exc)}") from exc
        private = raw.get("_private") if aware_dates else assume_utc(raw.get("_private"))
        if with_private and isinstance(private, dict):
            kept = {k: v for k, v in private.items() if k not in INTERNAL_PRIVATE_KEYS}
            doc.private = kept or None
        return doc


_FIELD_DEFAULTS: Final = {
    name: field.get_default(call_default_factory=True)
    for name, field in JobDoc.model_fields.items()
}
"""Each JobDoc field's default (a setting at its default is not stored: Extension.stored)."""


def assign(doc: JobDoc, **fields: Any) -> None:
    """Set fields of a JobDoc to values the caller has validated already. Assigning an
    attribute directly validates it, and runs the model's own checks over the whole
    document, on every assignment; the library's own assignments need neither."""
    doc.__dict__.update(fields)


FLUSH: Final = "_private.jobcollectionFlush"
"""Where each done/fail write records the flush that made it (reporting.FLUSH_MARK): in
`_private`, which v1.x's schema allows and which is never returned."""

FOLLOW_UPS: Final = "_private.jobcollectionFollowUps"
"""Where the write that completes a job, or fails it for good, records that its follow-ups
(the repeat, the dependents) are pending; cleared once they are done (see local/followups.py)."""

REPEAT_OF: Final = "_private.jobcollectionRepeatOf"
"""In a repeat: the completion (`{id, runId}`) that scheduled it. While that completion's
follow-ups are pending, the repeat cannot be removed (they would insert it again)."""

DEPENDENTS: Final = "_private.jobcollectionDependents"
"""On a job: a dependent of it was saved (set before the dependent is stored), so its
completion or final failure looks its dependents up. A job without it has none this library
knows of, and finishes in one write (local/reporting.py)."""

SCHEDULE: Final = "_private.jobcollectionSchedule"
"""On a job repeating on a cron schedule: the schedule (`{cron, timezone}`), which is what this
library evaluates; `repeatWait` holds the later.js schedule of the same times for v1.x."""

RETRY: Final = "_private.jobcollectionRetry"
"""On a job retried with settings v1.x does not have: `{backoff: "linear", jitter, maxWait}`
(each only when set); a linear backoff is stored as "constant" in `retryBackoff`."""

LINEAGE: Final = "_private.jobcollectionLineage"
"""On a repeat or a rerun: the ids of the jobs it was made from, oldest first (JobDoc.lineage)."""
LINEAGE_LIMIT: Final = 100
"""How many of a job's forebears its lineage keeps (the newest)."""

SKIPPED: Final = "_private.jobcollectionSkipped"
"""On a run of a cron schedule: how many occurrences before it were given no run (JobDoc.
skipped_runs), each also logged."""

USER: Final = "_private.jobcollectionUser"
"""On a job for a user (seed 003's userId): the user's id (JobDoc.user_id)."""

UNIQUE: Final = "_private.jobcollectionUnique"
"""On a unique job not started yet: `{type, user?, key?}` (JobDoc.unique_key), under a partial
unique index, so that two pending jobs never hold the same; a claim or a cancel unsets it, and
so does a conflicting save once the job's period (UNIQUE_POLICY) is over."""

UNIQUE_HELD: Final = "_private.jobcollectionUniqueHeld"
"""On a unique job that holds its key past pending (`Unique.states`): the same key, under a
partial unique index of its own, kept through its claim and finish. A conflicting save lets
go of it (rules/dedup.py) once the job is in none of its states or past its period."""

UNIQUE_POLICY: Final = "_private.jobcollectionUniquePolicy"
"""On a unique job whose hold is not the default (pending only, no period): `{period: ms?,
states: [...]?}` (Unique.policy), which a conflicting save reads to judge whether it holds."""

REMOVE_AFTER: Final = "_private.jobcollectionRemoveAfter"
"""On a job with retention: `{delay: ms, statuses: [...]}` (JobDoc.remove_after)."""

TIMEOUT: Final = "_private.jobcollectionTimeout"
"""On a job with a time limit of its own: the ms a worker call on it may take (JobDoc.timeout)."""

TRACE: Final = "_private.jobcollectionTrace"
"""On a job saved within a trace: the trace context it was saved in (JobDoc.trace)."""

EXPIRE_AT: Final = "_private.jobcollectionExpireAt"
"""On a finished job with retention: when MongoDB deletes it (a TTL index). Set by the write
that finishes it, or, when that write leaves follow-ups pending, by the write that clears
them (so the job is never deleted before its repeat and dependents are seen to); unset by a
restart."""

QUOTA: Final = "_private.jobcollectionQuota"
"""On a job claimed into a process's quota of a type's concurrency limit (rules/concurrency.py):
the quota's token, so that a count of the running jobs leaves out those its live quotas
account for already; unset by any other claim."""

ON_FAILURE: Final = "_private.jobcollectionOnFailure"
"""On a dependent: the failure policies of its dependencies that are not "cancel" (`[{id,
policy}]`, JobDoc.on_failure)."""

FAILED_ANTECEDENTS: Final = "_private.jobcollectionFailedAntecedents"
"""On a dependent that runs without antecedents that failed or were cancelled (policy
"ignore"): their ids (JobDoc.failed_antecedents)."""

WORKFLOW: Final = "_private.jobcollectionWorkflow"
"""On a member of a workflow: the workflow's id (JobDoc.workflow), under a partial index."""

BATCHES: Final = "_private.jobcollectionBatches"
"""On a member of a batch: the ids of the batches it belongs to, outermost first
(JobDoc.batches), under a partial index."""

CASCADE: Final = "_private.jobcollectionCascade"
"""On a job with dependents being cancelled: when its cancel began, set before the cancel
and cleared once its dependents' failure policies are applied, so that a cancel cut short
by a fault is carried on by the next job-server pass (under a partial index)."""

CALLBACK_OF: Final = "_private.jobcollectionCallbackOf"
"""On a callback of a batch: the batch's id (JobDoc.callback_of), under a partial index, so
that jobs added to the batch later are added to its callbacks' antecedents too."""

RUN_IF: Final = "_private.jobcollectionRunIf"
"""On a job that runs only on a condition of its antecedents (JobDoc.run_if): "failed", run
only if one of them failed or was cancelled (a batch's on_failure callback); otherwise it is
cancelled once it has nothing left to wait for."""

EXPIRES: Final = "_private.jobcollectionExpires"
"""On a job with a deadline: `{at: date}`, and `expired: true` once it was cancelled for not
starting by then (JobDoc.expires, JobDoc.expired); under a partial index on `at`, so that the
job server finds the pending jobs past theirs. Before a save, a deadline given relative to it
is `{in: ms}` (JobDoc.expires_in_ms), which the save resolves into `at`."""

CLAIMER: Final = "_private.jobcollectionClaimer"
"""On a running job claimed through the method layer on behalf of a user (`jc.call(...,
user_id=)`: the remote API, DDP): that user (reporting.claimer_of), set by the claim with its
runId and unset by a claim made by server code. Only that user, or an admin, may report on
the run (methods/layer.py); never returned."""

CHECKPOINT: Final = "_private.jobcollectionCheckpoint"
"""On a job whose worker checkpointed: the last state stored (JobDoc.checkpoint), written with
a lease renewal (or a failure, or a release) under the holder's runId; unset by a completion."""

ANNOUNCED: Final = "_private.jobcollectionAnnounced"
"""On a dependent this library saved: its antecedents carry DEPENDENTS. Dependents saved by
another application (job-collection v1.x) lack it; the job server resolves those itself."""

SCHEDULED: Final = "_private.jobcollectionScheduled"
"""On a run of a schedule object: `{id, at}` (and `trigger: true` for a triggered run),
JobDoc.scheduled, under a partial index (find_jobs(schedule=), the overlap policies)."""
SCHEDULED_ID: Final = f"{SCHEDULED}.id"

WORKER: Final = "_private.jobcollectionWorker"
"""On a job claimed at least once: the worker that claimed its current or last run
(JobWorker.stored: `{id?, host?, pid?, user?, remote?}`), set by the claim (the same update
that sets its status and runId), kept once it has finished and replaced by the next claim
(JobDoc.worker). A save never stores a given one, and a repeat or a rerun starts without.
The remote API never sends it (who claimed what is the worker registry's kind of news, which
only admins and managers may read: `jobWorkers`); the dashboard and a local JobCollection
read it."""

ExtensionKind = Literal["setting", "bookkeeping"]


@dataclass(frozen=True, slots=True)
class Extension:
    """One key this library keeps in a job's `_private` (see EXTENSIONS)."""

    path: str
    """Where it is stored (`_private.jobcollection...`: the constant naming it)."""
    kind: ExtensionKind
    """"setting": a setting of the job, held by JobDoc fields; it travels to clients under
    `jobcollection` (remote/codec.py) and a given document may carry it (parse_doc).
    "bookkeeping": the library's own record, never returned nor accepted from a caller."""
    fields: tuple[str, ...] = ()
    """The JobDoc attributes a setting is read into and written from."""
    resaved: bool = False
    """A resave of a paused job replaces it: written or cleared together with the v1.x
    fields it extends (PRIVATE_SETTINGS)."""
    write: Callable[[JobDoc], Any] | None = None
    """A setting's stored value for a job (None: nothing is stored). Unset: its one field's
    value, unless that is None or the field's default."""
    read: Callable[[Any], dict[str, Any]] | None = None
    """The fields (by attribute or stored name) a stored value gives, to validate with the
    rest of the document; InvalidDocument if it cannot be one. Unset: the value into its one
    field (a stored null: the field's default)."""
    sent: bool = True
    """A setting the remote API sends its clients and takes from them (False: the server's
    own to read, as the worker registry is: WORKER)."""

    @property
    def key(self) -> str:
        """Its key in `_private` (`jobcollectionSchedule`)."""
        return self.path.split(".", 1)[1]

    @property
    def short(self) -> str:
        """A setting's name under `jobcollection` on the wire (`schedule`, `removeAfter`)."""
        rest = self.key.removeprefix("jobcollection")
        return rest[:1].lower() + rest[1:]

    def stored(self, doc: JobDoc) -> Any:
        """What a job keeps under this key (None: nothing)."""
        if self.write is not None:
            return self.write(doc)
        if len(self.fields) != 1:
            return None
        value = getattr(doc, self.fields[0])
        return None if value == _FIELD_DEFAULTS[self.fields[0]] else value

    def loaded(self, value: Any) -> dict[str, Any]:
        """The fields a stored value gives (see `read`)."""
        if self.read is not None:
            return self.read(value)
        if len(self.fields) != 1 or value is None:
            return {}
        return {self.fields[0]: value}


def _malformed(path: str, value: Any, problem: str = "") -> InvalidDocument:
    return InvalidDocument(f"invalid job document: {path}: {value!r}{problem}")


def _schedule_out(doc: JobDoc) -> dict[str, Any] | None:
    return doc.repeat_wait.stored() if isinstance(doc.repeat_wait, CronSchedule) else None


def _schedule_in(schedule: Any) -> dict[str, Any]:
    """The cron schedule the stored later.js one (in `repeatWait`) stands for."""
    return {} if schedule is None else {"repeatWait": schedule}


def _retry_out(doc: JobDoc) -> dict[str, Any] | None:
    """The retry settings beyond v1.x's: `{backoff: "linear", jitter, maxWait}`, each only
    when set (None: none)."""
    retry: dict[str, Any] = {}
    if doc.retry_backoff == "linear":
        retry["backoff"] = "linear"
    if doc.retry_jitter:
        retry["jitter"] = doc.retry_jitter
    if doc.retry_max_wait is not None:
        retry["maxWait"] = doc.retry_max_wait
    if doc.retry_on is not None:
        retry["on"] = list(doc.retry_on)
    return retry or None


def _retry_in(retry: Any) -> dict[str, Any]:
    if retry is None:
        return {}
    if not isinstance(retry, dict) or set(retry) - {"backoff", "jitter", "maxWait", "on"}:
        raise _malformed(RETRY, retry, " is not retry settings")
    fields = {"retryBackoff": retry["backoff"]} if "backoff" in retry else {}
    return fields | {
        "retry_jitter": retry.get("jitter", 0.0),
        "retry_max_wait": retry.get("maxWait"),
        "retry_on": retry.get("on"),
    }


def _retention_out(doc: JobDoc) -> dict[str, Any] | None:
    retention = doc.remove_after
    if retention is None:
        return None
    return {"delay": retention.delay_ms, "statuses": [str(s) for s in retention.statuses]}


def _retention_in(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or set(value) != {"delay", "statuses"}:
        raise _malformed(REMOVE_AFTER, value)
    return {"remove_after": {"delay_ms": value["delay"], "statuses": value["statuses"]}}


def _unique_out(doc: JobDoc) -> dict[str, Any] | None:
    return None if doc.unique is None else doc.unique_key()


def _unique_in(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _malformed(UNIQUE, value, " is not a key")
    unique = {"key": value.get("key")}
    # a given document's (codec.encode_doc), never stored: what the save does on a conflict
    for name, field in (("onConflict", "on_conflict"), ("period", "period_ms")):
        if name in value:
            unique[field] = value[name]
    if "states" in value:
        unique["states"] = tuple(value["states"]) if isinstance(value["states"], list) else None
    return {"unique": unique}


def _deadline_out(doc: JobDoc) -> dict[str, Any] | None:
    """`{at, expired?}` for a deadline, `{in}` for one relative to a save not made yet."""
    if doc.expires_in_ms is not None:
        return {"in": doc.expires_in_ms}
    if doc.expires is None:
        return None
    return {"at": doc.expires, "expired": True} if doc.expired else {"at": doc.expires}


def _deadline_in(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or set(value) - {"at", "in", "expired"}:
        raise _malformed(EXPIRES, value, " is not a deadline")
    if ("at" in value) == ("in" in value):
        raise _malformed(EXPIRES, value, ": give either at or in")
    return {
        "expires": value.get("at"),
        "expires_in_ms": value.get("in"),
        "expired": value.get("expired", False),
    }


def _scheduled_out(doc: JobDoc) -> dict[str, Any] | None:
    run = doc.scheduled
    if run is None:
        return None
    return {"id": run.schedule, "at": run.at, **({"trigger": True} if run.triggered else {})}


def _scheduled_in(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not {"id", "at"} <= set(value) <= {"id", "at", "trigger"}:
        raise _malformed(SCHEDULED, value, " is not a schedule's run")
    at = value["at"]
    if isinstance(at, datetime) and at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return {
        "scheduled": {"schedule": value["id"], "at": at, "triggered": bool(value.get("trigger"))}
    }


def _worker_out(doc: JobDoc) -> dict[str, Any] | None:
    return None if doc.worker is None else doc.worker.stored()


def _worker_in(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or set(value) - set(JobWorker.model_fields):
        raise _malformed(WORKER, value, " is not a worker")
    return {"worker": value}


def _edges_out(doc: JobDoc) -> list[dict[str, Any]] | None:
    return [edge.model_dump() for edge in doc.on_failure] or None


_RETRY_FIELDS: Final = ("retry_backoff", "retry_jitter", "retry_max_wait", "retry_on")
_DEADLINE_FIELDS: Final = ("expires", "expires_in_ms", "expired")

# fmt: off
EXTENSIONS: Final[tuple[Extension, ...]] = (
    # The settings, in the order they are written.
    Extension(SCHEDULE, "setting", ("repeat_wait",), True, _schedule_out, _schedule_in),
    Extension(RETRY, "setting", _RETRY_FIELDS, True, _retry_out, _retry_in),
    Extension(REMOVE_AFTER, "setting", ("remove_after",), True, _retention_out, _retention_in),
    Extension(SKIPPED, "setting", ("skipped_runs",)),
    Extension(LINEAGE, "setting", ("lineage",)),
    Extension(USER, "setting", ("user_id",)),
    Extension(TIMEOUT, "setting", ("timeout",), resaved=True),
    Extension(TRACE, "setting", ("trace",)),
    Extension(ON_FAILURE, "setting", ("on_failure",), False, _edges_out),
    Extension(FAILED_ANTECEDENTS, "setting", ("failed_antecedents",)),
    Extension(WORKFLOW, "setting", ("workflow",)),
    Extension(BATCHES, "setting", ("batches",)),
    Extension(CALLBACK_OF, "setting", ("callback_of",)),
    Extension(RUN_IF, "setting", ("run_if",)),
    Extension(UNIQUE, "setting", ("unique",), False, _unique_out, _unique_in),
    Extension(EXPIRES, "setting", _DEADLINE_FIELDS, True, _deadline_out, _deadline_in),
    Extension(CHECKPOINT, "setting", ("checkpoint",)),
    Extension(SCHEDULED, "setting", ("scheduled",), False, _scheduled_out, _scheduled_in),
    Extension(WORKER, "setting", ("worker",), False, _worker_out, _worker_in, sent=False),
    # The bookkeeping.
    Extension(FLUSH, "bookkeeping"),
    Extension(FOLLOW_UPS, "bookkeeping"),
    Extension(REPEAT_OF, "bookkeeping"),
    Extension(DEPENDENTS, "bookkeeping"),
    Extension(ANNOUNCED, "bookkeeping"),
    Extension(EXPIRE_AT, "bookkeeping"),
    Extension(CLAIMER, "bookkeeping"),
    Extension(QUOTA, "bookkeeping"),
    Extension(CASCADE, "bookkeeping"),
    Extension(UNIQUE_HELD, "bookkeeping"),
    Extension(UNIQUE_POLICY, "bookkeeping"),
)
# fmt: on
"""Every key this library keeps in a job's `_private`, which storing (JobDoc.to_mongo), reading
(JobDoc.from_mongo, parse_doc), a resave (transitions.resave) and the remote API's codec
(remote/codec.py) derive from: a new key is one line here, after the constant naming its path."""

SETTING_EXTENSIONS: Final = tuple(ext for ext in EXTENSIONS if ext.kind == "setting")
"""The extensions that hold a job's settings (the Python API exposes them as JobDoc fields)."""
SENT_SETTINGS: Final = tuple(ext for ext in SETTING_EXTENSIONS if ext.sent)
"""The settings the remote API's codec sends and takes (remote/codec.py)."""

RESAVED_SETTINGS: Final = tuple(ext for ext in SETTING_EXTENSIONS if ext.resaved)
PRIVATE_SETTINGS: Final = tuple(ext.path for ext in RESAVED_SETTINGS)
"""The per-job settings kept in `_private` that a resave of a paused job replaces: written
and cleared together with the v1.x fields they extend (a resave sets or unsets each)."""

INTERNAL_PRIVATE_KEYS: Final = frozenset(ext.key for ext in EXTENSIONS)
"""Keys this library keeps in `_private` for itself (EXTENSIONS); they are never returned nor
copied into a rerun as they are (a rerun's settings are written again from its fields)."""


def _read_extensions(private: dict[str, Any], fields: dict[str, Any]) -> None:
    """Put the settings a stored job keeps in `_private` into the fields they are for, to
    validate."""
    for ext in SETTING_EXTENSIONS:
        if ext.key in private:
            fields.update(ext.loaded(private[ext.key]))


_INT_FIELDS: Final = frozenset(
    {
        "priority",
        "workTimeout",
        "retries",
        "retried",
        "repeatRetries",
        "retryWait",
        "repeats",
        "repeated",
        "repeatWait",
    }
)


def _stored_ints(doc: dict[str, Any]) -> dict[str, Any]:
    """JavaScript drivers store integers beyond 32 bits (such as forever, 2**53) as doubles:
    the document with those read back as integers (itself when it has none)."""
    floats = {
        key: int(value)
        for key in _INT_FIELDS
        if isinstance(value := doc.get(key), float) and value.is_integer()
    }
    return {**doc, **floats} if floats else doc


def assume_utc(value: Any) -> Any:
    """A stored value with every naive datetime in it (at any depth) made aware UTC. Containers
    are copied only where something changed, so an already-aware document costs one walk."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value
    if isinstance(value, dict):
        changed = None
        for key, item in value.items():
            fixed = assume_utc(item)
            if fixed is not item:
                if changed is None:
                    changed = dict(value)
                changed[key] = fixed
        return value if changed is None else changed
    if isinstance(value, list):
        items = [assume_utc(item) for item in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    return value


def parse_doc(raw: dict[str, Any] | JobDoc, *, stored: bool = False) -> JobDoc:
    """Validate a job document, raising InvalidDocument that names every bad field.

    A given document's `_private` is read as a stored one's: the settings this library keeps
    there (a cron schedule, retry extras, retention, user, unique key, lineage, timeout)
    become their fields, its bookkeeping (pending follow-ups, removal dates, ...) is dropped,
    so that no caller can forge it, and every other key is the caller's and kept."""
    if isinstance(raw, JobDoc):
        return raw.model_copy(deep=True)
    private = raw.get("_private") if isinstance(raw, dict) else None
    if isinstance(private, dict):
        raw = dict(raw)
        _read_extensions(private, raw)
        own = {k: v for k, v in private.items() if k not in INTERNAL_PRIVATE_KEYS}
        raw["_private"] = own or None
    try:
        return JobDoc.model_validate(raw, context=STORED if stored else None)
    except ValidationError as exc:
        raise InvalidDocument(f"invalid job document: {_describe(exc)}") from exc


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "document"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


MAX_NESTING = 100
STORABLE_KINDS: Final = (
    "None, booleans, numbers, strings, datetimes, ObjectIds, bytes, UUIDs, lists or dicts"
)
"""What a job's free-form values (data, results, errors, log data) may hold: what MongoDB
stores and every kind of worker can be sent, EJSON's DDP workers included."""


class _Refused(Exception):
    """What _check found wrong, and where: the path is gathered on the way out."""

    def __init__(self, problem: str, *, located: bool = True) -> None:
        super().__init__(problem)
        self.problem = problem
        self.located = located
        self.path: list[str] = []


def check_storable(value: Any, name: str, depth: int = 0) -> None:
    """Reject what MongoDB cannot store faithfully or a worker cannot be sent: `$`/`.` keys,
    NaN, huge ints, naive datetimes, deep nesting, and any type but STORABLE_KINDS (BSON's
    regex, MinKey, MaxKey, Timestamp, Decimal128, DBRef, code, ...: EJSON, which
    job-collection's DDP workers speak, has no form of them). ValueError names the path
    under `name` (`data.items[2].price is of type Decimal128, which cannot be stored ...`)."""
    try:
        _check(value, depth)
    except _Refused as exc:
        where = name + "".join(reversed(exc.path)) if exc.located else name
        raise ValueError(f"{where} {exc.problem}") from None


JSON_KINDS: Final = "None, booleans, numbers, strings, lists or dicts"
"""What a checkpoint may hold: JSON's types, which every worker (a remote one included) reads
back as they were given."""


def check_json(value: Any, name: str) -> None:
    """check_storable, for a value of JSON's types only (JSON_KINDS): no datetimes, ObjectIds,
    bytes or UUIDs. ValueError names the path under `name`."""
    check_storable(value, name)
    try:
        _check_json(value)
    except _Refused as exc:
        raise ValueError(f"{name}{''.join(reversed(exc.path))} {exc.problem}") from None


def _check_json(value: Any) -> None:
    if isinstance(value, dict):
        items: Any = ((f".{key}", item) for key, item in value.items())
    elif isinstance(value, list | tuple):
        items = ((f"[{i}]", item) for i, item in enumerate(value))
    elif value is None or isinstance(value, bool | int | float | str):
        return
    else:
        raise _Refused(f"is of type {type(value).__name__}; a checkpoint holds {JSON_KINDS}")
    for where, item in items:
        try:
            _check_json(item)
        except _Refused as exc:
            exc.path.append(where)
            raise


def _check(value: Any, depth: int) -> None:
    if value is None:
        return
    if type(value) is str:
        if not value.isascii():
            _check_text(value)
        return
    if depth > MAX_NESTING:
        raise _Refused(f"is nested deeper than {MAX_NESTING} levels", located=False)
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise _Refused(f"has a non-string key {key!r}")
            if key.startswith("$") or "." in key or "\x00" in key:
                raise _Refused(f"has a key {key!r} with '$', '.' or NUL")
            if not key.isascii():
                _check_text(key)
            try:
                _check(item, depth + 1)
            except _Refused as exc:
                exc.path.append(f".{key}")
                raise
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            try:
                _check(item, depth + 1)
            except _Refused as exc:
                exc.path.append(f"[{i}]")
                raise
    elif isinstance(value, bool):
        return
    elif isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            raise _Refused("has an integer beyond 64 bits")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise _Refused("has a non-finite number")
    elif isinstance(value, datetime):
        if value.tzinfo is None:
            raise _Refused("has a naive datetime")
    elif isinstance(value, Code) or not isinstance(value, str | ObjectId | bytes | UUID):
        raise _Refused(
            f"is of type {type(value).__name__}, which cannot be stored: job values must be "
            f"{STORABLE_KINDS}"
        )
    elif isinstance(value, str):
        _check_text(value)


def _check_text(text: str) -> None:
    """A string BSON can hold: Unicode text (JSON's escapes can spell a lone surrogate)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        raise _Refused("has a string that is not Unicode text (a lone surrogate)") from None


_NEW_JOB: Final = JobDoc(type="new", repeat_retries=1)
"""The defaults of a job just constructed, validated once (see new_job_doc)."""


def new_job_doc(type_: str, data: dict[str, Any], now: datetime) -> JobDoc:
    """The document of a job just constructed: `type_` (a non-empty string) and `data` (a
    storable dict) checked by the caller, `now` from the clock. A copy of a validated
    template with these set costs half of validating all thirty fields again, the larger
    part of creating a job."""
    now = normalize_datetime(now)
    return _NEW_JOB.model_copy(
        update={
            "type": type_,
            "data": data,
            "created": now,
            "updated": now,
            "log": [LogEntry(time=now, message="Constructed")],
            "depends": [],  # the template's own lists are not shared
            "resolved": [],
            "progress": Progress(),
        }
    )
