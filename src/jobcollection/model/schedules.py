"""Schedules as objects (`jc.schedules`): what a schedule is, checked, and the pure rules that
turn it into runs, as functions of (schedule, now).

A schedule is stored in `<root>.schedules` (local/schedules.py); the elected job server's pass
materialises its occurrences as ordinary jobs. Everything here is free of I/O:

- `ScheduleSpec`: what `upsert` was given, checked (InvalidArgument naming the field);
- `occurrences_of`: a schedule's occurrences (cron read in its IANA zone, or `every` aligned
  to multiples of its period since the Unix epoch, as BullMQ aligns `every`);
- `due_runs`: the occurrences a pass runs, given the schedule's `next` and now (catch-up);
- `admit`: what the overlap policy makes of them, given the schedule's runs not final yet;
- `run_id`: the `_id` of an occurrence's run, the same in every process (an ObjectId whose
  time is the occurrence's and whose other 8 bytes hash the schedule id and the occurrence),
  which is what makes a doubled insert a duplicate key and so a no-op;
- `jitter_ms`: a run's delay, drawn from the schedule id and the occurrence (the same in
  every process and every retry of a pass).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from bson import ObjectId

from . import validation as v
from .clock import to_millis
from .constants import FOREVER
from .document import CronSchedule, Edge, JobDoc, ScheduledRun, is_text
from .errors import InvalidArgument, InvalidArgumentType
from .schedule import CATCH_UP_LIMIT, COUNT_LIMIT, check_cron, occurrences
from .types import Id

Overlap = Literal["allow", "skip", "buffer_one", "cancel_other"]
OVERLAP_POLICIES: Final[tuple[Overlap, ...]] = ("allow", "skip", "buffer_one", "cancel_other")
ScheduleCatchUp = Literal["latest", "none", "all"]
CATCH_UPS: Final[tuple[ScheduleCatchUp, ...]] = ("latest", "none", "all")
CATCH_UP_WINDOW: Final = timedelta(minutes=1)
"""catch_up="none": an occurrence a pass finds later than this is skipped."""
MIN_EVERY_MS: Final = 1000
"""The shortest `every` (a schedule materialised by a pass every few seconds)."""
MAX_ID_LENGTH: Final = 200
MAX_BACKFILL: Final = 1000
"""The most occurrences one backfill call runs."""
UPCOMING: Final = 3
"""How many next runs `list()` and `get()` show."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    """A schedule as `upsert` was given it, checked: one of `cron` (with `timezone`) or
    `every_ms`; each run is a job of `type` with `data`, delayed by up to `jitter_ms`."""

    id: str
    type: str
    data: dict[str, Any] = field(default_factory=dict)
    cron: str | None = None
    timezone: str | None = None
    every_ms: int | None = None
    jitter_ms: int = 0
    overlap: Overlap = "allow"
    catch_up: ScheduleCatchUp = "latest"

    def stored(self) -> dict[str, Any]:
        """The schedule's settings as `<root>.schedules` keeps them (durations in ms)."""
        out: dict[str, Any] = {
            "type": self.type,
            "data": self.data,
            "jitter": self.jitter_ms,
            "overlap": self.overlap,
            "catchUp": self.catch_up,
        }
        if self.cron is not None:
            out["cron"] = self.cron
            if self.timezone is not None:
                out["timezone"] = self.timezone
        else:
            out["every"] = self.every_ms
        return out

    def wire(self) -> dict[str, Any]:
        """The settings as jobScheduleUpsert takes them (its second parameter): as stored."""
        return self.stored()

    @classmethod
    def from_wire(cls, schedule: Any, settings: Any) -> ScheduleSpec:
        """jobScheduleUpsert's parameters, checked as `schedule_spec` checks them (durations
        in ms; InvalidArgument naming the setting as the wire spells it)."""
        if not isinstance(settings, dict):
            raise InvalidArgumentType("settings", "must be an object of settings")
        unknown = sorted(map(str, set(settings) - set(WIRE_SETTINGS)))
        if unknown:
            raise InvalidArgument("settings", f"unknown keys {unknown}")
        given = {"type": None, **{WIRE_SETTINGS[key]: value for key, value in settings.items()}}
        for name in ("every", "jitter"):
            if given.get(name) is not None:
                ms = v.integer(given[name], name, minimum=0, maximum=FOREVER)
                given[name] = timedelta(milliseconds=ms)
        try:
            return schedule_spec(schedule, **given)
        except InvalidArgument as exc:
            if exc.argument != "catch_up":
                raise
            raise type(exc)("catchUp", exc.problem) from None

    @classmethod
    def from_stored(cls, doc: dict[str, Any]) -> ScheduleSpec:
        """The spec of a stored schedule document."""
        return cls(
            id=doc["_id"],
            type=doc["type"],
            data=dict(doc.get("data") or {}),
            cron=doc.get("cron"),
            timezone=doc.get("timezone"),
            every_ms=doc.get("every"),
            jitter_ms=int(doc.get("jitter", 0)),
            overlap=doc.get("overlap", "allow"),
            catch_up=doc.get("catchUp", "latest"),
        )


WIRE_SETTINGS: Final = {
    "type": "type",
    "data": "data",
    "cron": "cron",
    "timezone": "timezone",
    "every": "every",
    "jitter": "jitter",
    "overlap": "overlap",
    "catchUp": "catch_up",
}
"""jobScheduleUpsert's settings, by the names `upsert` gives them."""


def schedule_id(value: Any, name: str = "id") -> str:
    """A schedule's id: a non-empty string of at most MAX_ID_LENGTH characters."""
    if not isinstance(value, str):
        raise InvalidArgumentType(name, f"must be a string, not {type(value).__name__}")
    if not value or len(value) > MAX_ID_LENGTH or not value.isprintable():
        raise InvalidArgument(name, f"must be 1 to {MAX_ID_LENGTH} printable characters")
    return value


def schedule_spec(
    id: Any,
    *,
    type: Any,
    cron: Any = None,
    every: Any = None,
    data: Any = None,
    timezone: Any = None,
    jitter: Any = 0,
    overlap: Any = "allow",
    catch_up: Any = "latest",
) -> ScheduleSpec:
    """A schedule checked whole (InvalidArgument naming the first bad field), before
    anything is stored."""
    checked_id = schedule_id(id)
    if (cron is None) == (every is None):
        raise InvalidArgument("cron", "give exactly one of cron= and every=")
    if not isinstance(type, str) or not is_text(type) or not type:
        raise InvalidArgumentType("type", "must be one job type: a non-empty text string")
    job_type = type
    every_ms = None
    if every is not None:
        every_ms = v.duration_ms(every, "every", minimum_ms=MIN_EVERY_MS)
        if timezone is not None:
            raise InvalidArgument("timezone", "applies to cron= only")
    else:
        if not isinstance(cron, str):
            raise InvalidArgumentType("cron", f"must be a string, not {cron.__class__.__name__}")
        if timezone is not None and not isinstance(timezone, str):
            raise InvalidArgumentType("timezone", "must be an IANA zone name")
        try:
            check_cron(CronSchedule(cron=cron, timezone=timezone))
        except InvalidArgument as exc:
            name = "timezone" if exc.argument == "timezone" else "cron"
            raise InvalidArgument(name, exc.problem) from None
    return ScheduleSpec(
        id=checked_id,
        type=job_type,
        data={} if data is None else v.plain_object(data, "data"),
        cron=cron,
        timezone=timezone,
        every_ms=every_ms,
        jitter_ms=v.duration_ms(jitter, "jitter"),
        overlap=v.choice(overlap, "overlap", OVERLAP_POLICIES),
        catch_up=v.choice(catch_up, "catch_up", CATCH_UPS),
    )


def occurrences_of(
    spec: ScheduleSpec, after: datetime, n: int, until: datetime | None = None
) -> list[datetime]:
    """The next n occurrences strictly after `after` (none after `until`, if given)."""
    if spec.cron is not None:
        return occurrences(CronSchedule(cron=spec.cron, timezone=spec.timezone), after, n, until)
    assert spec.every_ms is not None
    elapsed = (to_millis(after) - _EPOCH) // _MS
    first = (elapsed // spec.every_ms + 1) * spec.every_ms
    out: list[datetime] = []
    for k in range(n):
        try:
            moment = _EPOCH + (first + k * spec.every_ms) * _MS
        except OverflowError:
            break
        if until is not None and moment > until:
            break
        out.append(moment)
    return out


def first_after(spec: ScheduleSpec, moment: datetime) -> datetime | None:
    """The first occurrence strictly after `moment` (None: the schedule has no more)."""
    found = occurrences_of(spec, moment, 1)
    return found[0] if found else None


def in_range(spec: ScheduleSpec, start: datetime, end: datetime) -> list[datetime]:
    """The occurrences in [start, end] (InvalidArgument("end") past MAX_BACKFILL of them)."""
    found = occurrences_of(spec, start - _MS, MAX_BACKFILL + 1, until=end)
    if len(found) > MAX_BACKFILL:
        raise InvalidArgument("end", f"the range holds more than {MAX_BACKFILL} occurrences")
    return found


@dataclass(frozen=True, slots=True)
class Due:
    """The occurrences a pass runs (`runs`), how many due ones it skips, and the schedule's
    next occurrence after them (None: no more)."""

    runs: list[datetime]
    skipped: int
    following: datetime | None


def due_runs(spec: ScheduleSpec, next_at: datetime, now: datetime) -> Due:
    """What a pass makes of the occurrences from `next_at` (due: at or before now) up to now,
    by the catch-up policy: "all" runs each (the newest CATCH_UP_LIMIT), "latest" the newest
    one only, "none" the newest one only if it is at most CATCH_UP_WINDOW old (an outage's
    occurrences are skipped). Normally one occurrence is due, and all three run it."""
    missed = [next_at, *occurrences_of(spec, next_at, COUNT_LIMIT, until=now)]
    following = first_after(spec, max(missed[-1], now))
    if spec.catch_up == "all":
        runs = missed[-CATCH_UP_LIMIT:]
    elif spec.catch_up == "latest" or now - missed[-1] <= CATCH_UP_WINDOW:
        runs = missed[-1:]
    else:
        runs = []
    return Due(runs, len(missed) - len(runs), following)


@dataclass(frozen=True, slots=True)
class Admission:
    """What the overlap policy lets a pass do: the occurrences to run, each with the run it
    waits for (None: none), and the runs to cancel first."""

    runs: list[tuple[datetime, Id | None]]
    cancel: list[Id]


def admit(spec: ScheduleSpec, runs: Sequence[datetime], unfinished: Sequence[Id]) -> Admission:
    """The overlap policy (Temporal's terms), given the schedule's runs not final yet
    (`unfinished`, oldest first): "allow" runs every occurrence; "skip" runs the first only
    if none is unfinished; "buffer_one" keeps at most one run waiting behind the one
    running (it depends on it, and runs once it is final, whatever its outcome);
    "cancel_other" cancels the unfinished runs and runs the newest occurrence."""
    if spec.overlap == "allow":
        return Admission([(at, None) for at in runs], [])
    if spec.overlap == "cancel_other":
        return Admission([(at, None) for at in runs[-1:]], list(unfinished))
    if spec.overlap == "skip":
        return Admission([] if unfinished else [(at, None) for at in runs[:1]], [])
    admitted: list[tuple[datetime, Id | None]] = []
    before = unfinished[-1] if unfinished else None
    for at in runs[: max(0, 2 - len(unfinished))]:
        admitted.append((at, before))
        before = run_id(spec.id, at)
    return Admission(admitted, [])


def run_id(schedule: str, at: datetime) -> ObjectId:
    """The `_id` of the run of a schedule's occurrence: the same in every process."""
    seconds = min(max(int((at - _EPOCH).total_seconds()), 0), 2**32 - 1)
    digest = hashlib.sha256(f"{schedule}\0{_millis(at)}".encode()).digest()
    return ObjectId(seconds.to_bytes(4, "big") + digest[:8])


def trigger_id(schedule: str, key: str) -> ObjectId:
    """The `_id` of a schedule's run triggered with an idempotency key: the same for every
    call with that key, in every process (all twelve bytes from a hash: no time in it)."""
    return ObjectId(hashlib.sha256(f"trigger\0{schedule}\0{key}".encode()).digest()[:12])


def jitter_ms(schedule: str, at: datetime, jitter: int) -> int:
    """The delay, in [0, jitter] ms, of the run of an occurrence (drawn from a hash of the
    schedule id and the occurrence: the same in every process)."""
    if jitter <= 0:
        return 0
    digest = hashlib.sha256(f"jitter\0{schedule}\0{_millis(at)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % (jitter + 1)


def _millis(at: datetime) -> int:
    return (to_millis(at) - _EPOCH) // _MS


def run_doc(
    spec_id: str,
    job_type: str,
    data: dict[str, Any],
    at: datetime,
    after: datetime,
    before: Id | None = None,
    *,
    triggered: bool = False,
) -> JobDoc:
    """The job that runs an occurrence (`at`), due at `after`; waiting for run `before`
    to be final (any outcome) if given. A triggered run is marked as such."""
    return JobDoc(
        type=job_type,
        data=dict(data),
        after=after,
        scheduled=ScheduledRun(schedule=spec_id, at=at, triggered=triggered),
        depends=[] if before is None else [before],
        on_failure=[] if before is None else [Edge(id=before, policy="ignore")],
    )


@dataclass(frozen=True, slots=True)
class LastRun:
    """The newest run a schedule made: its job, the occurrence (or trigger time) it runs, and
    the job's status when read (None: the job is gone, removed or deleted by retention)."""

    job_id: Id
    at: datetime
    status: str | None
    triggered: bool = False


@dataclass(frozen=True, slots=True)
class Schedule:
    """A stored schedule as `jc.schedules.get()` and `list()` show it."""

    id: str
    type: str
    data: dict[str, Any]
    cron: str | None
    timezone: str | None
    every: timedelta | None
    jitter: timedelta
    overlap: Overlap
    catch_up: ScheduleCatchUp
    paused: bool
    next_runs: list[datetime]
    """The next UPCOMING occurrences (empty while paused, or when there are no more): the
    first is due already if the job server has not materialised it yet."""
    last_run: LastRun | None
    created: datetime | None
    updated: datetime | None
    skipped: int = 0
    """The occurrences the job server skipped, in all (the overlap policy "skip" or
    "buffer_one" while runs were unfinished; catch_up "latest" or "none" after an outage)."""
    last_skipped: datetime | None = None
    """When it last skipped one (None: never)."""

    def wire(self) -> dict[str, Any]:
        """As the method layer answers it (jobSchedules): durations in ms, camelCase keys."""
        last = self.last_run
        return {
            "id": self.id,
            "type": self.type,
            "data": self.data,
            "cron": self.cron,
            "timezone": self.timezone,
            "every": None if self.every is None else self.every // _MS,
            "jitter": self.jitter // _MS,
            "overlap": self.overlap,
            "catchUp": self.catch_up,
            "paused": self.paused,
            "nextRuns": list(self.next_runs),
            "lastRun": None
            if last is None
            else {
                "jobId": last.job_id,
                "at": last.at,
                "status": last.status,
                "triggered": last.triggered,
            },
            "created": self.created,
            "updated": self.updated,
            "skipped": self.skipped,
            "lastSkipped": self.last_skipped,
        }

    @classmethod
    def from_wire(cls, raw: dict[str, Any]) -> Schedule:
        """A schedule as the method layer answered it (trusted: the server wrote it)."""
        last = raw.get("lastRun")
        return cls(
            id=raw["id"],
            type=raw["type"],
            data=dict(raw.get("data") or {}),
            cron=raw.get("cron"),
            timezone=raw.get("timezone"),
            every=None if raw.get("every") is None else raw["every"] * _MS,
            jitter=raw.get("jitter", 0) * _MS,
            overlap=raw["overlap"],
            catch_up=raw["catchUp"],
            paused=bool(raw.get("paused")),
            next_runs=[_aware(at) or _EPOCH for at in raw.get("nextRuns") or []],
            last_run=None
            if last is None
            else LastRun(
                last["jobId"], _aware(last["at"]) or _EPOCH, last.get("status"), last["triggered"]
            ),
            created=_aware(raw.get("created")),
            updated=_aware(raw.get("updated")),
            skipped=int(raw.get("skipped") or 0),
            last_skipped=_aware(raw.get("lastSkipped")),
        )


def shown(doc: dict[str, Any], statuses: dict[Any, str]) -> Schedule:
    """A stored schedule document as a Schedule; `statuses`: the status of each job read."""
    spec = ScheduleSpec.from_stored(doc)
    next_at = _aware(doc.get("next"))
    upcoming = [] if next_at is None else [next_at, *occurrences_of(spec, next_at, UPCOMING - 1)]
    last = doc.get("last")
    last_run = None
    if isinstance(last, dict):
        at = _aware(last["at"]) or _EPOCH
        last_run = LastRun(last["id"], at, statuses.get(last["id"]), bool(last.get("trigger")))
    return Schedule(
        id=spec.id,
        type=spec.type,
        data=spec.data,
        cron=spec.cron,
        timezone=spec.timezone,
        every=None if spec.every_ms is None else timedelta(milliseconds=spec.every_ms),
        jitter=timedelta(milliseconds=spec.jitter_ms),
        overlap=spec.overlap,
        catch_up=spec.catch_up,
        paused=bool(doc.get("paused")),
        next_runs=upcoming,
        last_run=last_run,
        created=_aware(doc.get("created")),
        updated=_aware(doc.get("updated")),
        skipped=int(doc.get("skipped") or 0),
        last_skipped=_aware(doc.get("skippedAt")),
    )


def _aware(value: Any) -> datetime | None:
    """A stored date, aware in UTC (the in-memory backend returns naive ones)."""
    if not isinstance(value, datetime):
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def timing(spec: ScheduleSpec) -> dict[str, Any]:
    """The stored fields that decide a schedule's occurrences (a filter of equalities: a
    change of any of them recomputes its next run)."""
    return {"cron": spec.cron, "timezone": spec.timezone, "every": spec.every_ms}
