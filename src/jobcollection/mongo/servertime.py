"""Time from one authority: a clock that reads the database server's time.

Leases (`expiresAfter`), promotion (`after <= now`) and repeat scheduling compare times
written by one process with times read by another. If every process used its own clock, a
worker whose clock runs an hour fast would write leases that expire an hour late, and a job
server an hour fast would expire every lease at once and promote delayed jobs early.

`ServerClock` makes every process read the same clock, the database server's:

- It measures the offset between the local clock and the server's time, taking the midpoint
  of the round trip as the local moment the server read its clock, so the error of one
  measurement is at most half its round trip (well under a millisecond to a few milliseconds
  on a LAN). Where the time comes from:

  - A replica set or a single server: `localTime` of the `hello` command (`isMaster` on
    servers older than 4.4), which pymongo sends to the primary. After a failover it is the
    new primary's clock; the members are NTP-synchronised, so the step is their disagreement.
  - A sharded cluster (the `hello` reply says `msg: "isdbgrid"`): `localTime` is then the
    clock of whichever mongos answered, and pymongo spreads commands over every mongos
    within `localThresholdMS`, so successive measurements would read different clocks. The
    clock reads instead the time a single data-bearing server writes: a `$currentDate`
    upsert of one document in a side collection, `<root>.clock` next to `<root>.jobs`
    (`<name>.clock` for another collection name, `jobcollection.clock` when given a
    database). `$currentDate` is evaluated by the mongod that applies the update (unlike
    `$$NOW`, which mongos sets), and an unsharded collection lives on the database's primary
    shard, so every measurement reads the clock of that shard's primary (after a failover,
    the new primary's, NTP-synchronised). The write uses w=1 so the round trip is not
    lengthened by replication. Nothing is ever written into the jobs collection: its
    documents stay valid job documents for job-collection v1.x applications.
    If that write is refused (no write permission), the clock falls back to the routers'
    `localTime`, says so once in a WARNING, and then agrees with other processes only to
    within the routers' clock disagreement on top of the bound below.

- `now()` is the local clock plus that offset: synchronous and free, so the rules stay pure.
  If the local clock has jumped since the last measurement (its change disagrees with the
  monotonic clock's by more than `jump_tolerance` seconds: an NTP step, an operator's
  `date`), the offset is wrong by the size of the jump, so `now()` is then the server time
  of the last measurement plus the time elapsed since on the monotonic clock, until the next
  measurement. (The monotonic clock is CLOCK_BOOTTIME where the system has it, so a suspend
  is not mistaken for a jump.)
- `refresh()` measures again; JobCollection calls it before each method-layer call and each
  job-server pass. It measures when `refresh_interval` seconds have passed, and at once when
  the local clock jumps.
- Until one measurement has succeeded there is no server time to fall back on: a refresh
  that fails with a driver error raises DatabaseError, and the call that needed the time
  fails instead of writing local times (a worker an hour behind would write leases that
  another job server expires a second later). The next refresh measures again.
- After a successful measurement, a failed refresh keeps the last offset (its error only
  grows by the local clock's drift), logs a WARNING and is tried again after
  `min(refresh_interval, RETRY_INTERVAL)` seconds on the monotonic clock.
- When the server does not report its time (the in-memory backend, which runs in this
  process and shares its clock, or a proxy that hides `localTime`), the clock keeps the
  local time and says so once in the log (INFO for the in-memory backend, WARNING otherwise).

The guarantee: with a ServerClock in every process, all times the library writes and
compares are the time of one server, to within half the round trip of the measurement plus
the local clock's drift since it (over `refresh_interval`: typically microseconds). Through
mongos that server is the primary of the database's primary shard and the round trip is the
clock write's. The local clocks may disagree by any amount.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ReturnDocument, WriteConcern
from pymongo.errors import DuplicateKeyError, OperationFailure, PyMongoError

from ..model.clock import Clock, SystemClock, to_millis
from ..model.errors import DatabaseError, InvalidArgument, InvalidArgumentType

logger = logging.getLogger("jobcollection")

DEFAULT_REFRESH_INTERVAL = 60.0
"""Seconds between offset measurements."""

DEFAULT_JUMP_TOLERANCE = 1.0
"""Seconds the local clock may move differently from the monotonic clock before a re-measure."""

RETRY_INTERVAL = 5.0
"""Seconds before a failed refresh is tried again (at most `refresh_interval`)."""

CLOCK_DOCUMENT_ID = "clock"
"""The `_id` of the one document the clock writes through mongos."""

_REFUSED_CODES = frozenset(
    {
        13,  # Unauthorized: the user may not write the clock collection
        166,  # CommandNotSupportedOnView: the clock collection's name is taken by a view
        8000,  # AtlasError: how Atlas refuses an action ("user is not allowed to do action")
    }
)
"""Error codes with which a server refuses the clock write for good (not a transient error)."""


def _default_monotonic() -> Callable[[], float]:
    """A monotonic clock that also counts suspended time where the system has one (Linux's
    CLOCK_BOOTTIME), so a suspend is not mistaken for a jump of the local clock."""
    boottime = getattr(time, "CLOCK_BOOTTIME", None)
    if boottime is None:
        return time.monotonic
    return functools.partial(time.clock_gettime, boottime)


def _database_of(target: Any) -> Any:
    """A database given a database or a collection (pymongo, Motor or a lookalike).

    Collections have a `database` attribute of their own (pymongo: a property; Motor: set on
    the instance); databases answer any attribute with a sub-collection, so the attribute's
    owner is what tells them apart.
    """
    owners = [*type(target).__mro__, target]
    if any("database" in getattr(owner, "__dict__", {}) for owner in owners):
        return target.database
    return target


def clock_collection_name(target: Any) -> str:
    """The side collection the clock writes through mongos, named after what it was given:
    `<root>.clock` for `<root>.jobs`, `<name>.clock` for another collection, and
    `jobcollection.clock` for a database."""
    if _database_of(target) is target:
        return "jobcollection.clock"
    name = str(target.name)
    root = name[: -len(".jobs")] if name.endswith(".jobs") else name
    return f"{root}.clock"


@dataclass(frozen=True)
class _Reading:
    """One reading of the server's clock and the local clocks around it."""

    server: datetime
    """The server's time (aware UTC)."""
    local_before: datetime
    local_after: datetime
    mono_before: float
    mono_after: float

    @property
    def local_midpoint(self) -> datetime:
        return self.local_before + (self.local_after - self.local_before) / 2

    @property
    def mono_midpoint(self) -> float:
        return (self.mono_before + self.mono_after) / 2


def _as_utc(value: Any) -> datetime | None:
    """A BSON date as an aware UTC datetime (pymongo decodes naive UTC by default)."""
    if not isinstance(value, datetime):
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class ServerClock:
    """A Clock that reads the database server's time through a measured offset."""

    def __init__(
        self,
        database: Any,
        *,
        refresh_interval: float = DEFAULT_REFRESH_INTERVAL,
        jump_tolerance: float = DEFAULT_JUMP_TOLERANCE,
        local: Clock | None = None,
        monotonic: Callable[[], float] | None = None,
    ) -> None:
        """`database`: a pymongo/Motor database or collection (a collection also names the
        side collection used through mongos). `local` and `monotonic` are the local clocks
        to correct (injectable for tests)."""
        for name, value in (
            ("refresh_interval", refresh_interval),
            ("jump_tolerance", jump_tolerance),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidArgumentType(name, f"must be a number, not {type(value).__name__}")
            if not value > 0:
                raise InvalidArgument(name, f"must be > 0, got {value}")
        if local is not None and not isinstance(local, Clock):
            raise InvalidArgumentType("local", "must have a now() method")
        if monotonic is not None and not callable(monotonic):
            raise InvalidArgumentType("monotonic", "must be a function returning seconds")
        self._db = _database_of(database)
        self.clock_collection = clock_collection_name(database)
        """The side collection written to read the time through mongos."""
        self.refresh_interval = float(refresh_interval)
        self.jump_tolerance = float(jump_tolerance)
        self.local: Clock = local or SystemClock()
        self._monotonic = monotonic or _default_monotonic()
        self.offset = timedelta(0)
        """Server time minus local time, as last measured."""
        self.round_trip: timedelta | None = None
        """The round trip of the last successful measurement."""
        self.reports_time: bool | None = None
        """Whether the server reported its time (None until a refresh found out)."""
        self.router: bool | None = None
        """Whether the server is a mongos router (None until a `hello` answered)."""
        self.failures = 0
        """Refreshes failed in a row since the last successful one."""
        self._synced_at: tuple[float, datetime] | None = None
        """(monotonic, local) at the last measurement, or when the local clock was chosen."""
        self._server_at_sync: datetime | None = None
        """The server's time at `_synced_at`, when that was a successful measurement."""
        self._retry_at: float | None = None
        """Monotonic time of the next attempt after a failed refresh."""
        self._clock_write_refused = False
        self._warned = False

    def now(self) -> datetime:
        """The server's time: the local clock corrected by the last measured offset, or, if
        the local clock jumped since that measurement, the server time measured then plus
        the monotonic time elapsed since."""
        local_now = self.local.now()
        if self._server_at_sync is None or self._synced_at is None:
            return to_millis(local_now + self.offset)
        mono_then, local_then = self._synced_at
        mono_elapsed = self._monotonic() - mono_then
        if self._jumped(local_now - local_then, mono_elapsed):
            return to_millis(self._server_at_sync + timedelta(seconds=mono_elapsed))
        return to_millis(local_now + self.offset)

    @property
    def extrapolating(self) -> bool:
        """Whether now() currently counts on the monotonic clock because the local clock
        jumped since the last successful measurement."""
        if self._server_at_sync is None or self._synced_at is None:
            return False
        mono_then, local_then = self._synced_at
        return self._jumped(self.local.now() - local_then, self._monotonic() - mono_then)

    def _jumped(self, local_elapsed: timedelta, mono_elapsed: float) -> bool:
        return abs(local_elapsed.total_seconds() - mono_elapsed) > self.jump_tolerance

    def stale(self) -> bool:
        """Whether the offset should be measured again: never measured (or every attempt
        so far failed), the retry after a failed refresh is due, the local clock jumped, or
        `refresh_interval` has passed."""
        if self._synced_at is None:
            return True
        mono_now = self._monotonic()
        if self._retry_at is not None:  # now() already copes with a jump meanwhile
            return mono_now >= self._retry_at
        mono_then, local_then = self._synced_at
        mono_elapsed = mono_now - mono_then
        if self._jumped(self.local.now() - local_then, mono_elapsed):
            return True
        return mono_elapsed >= self.refresh_interval

    async def refresh(self, force: bool = False) -> bool:
        """Measure the offset if it is stale (or always, with force); True if measured now.

        Raises DatabaseError when the measurement fails with a driver error before any has
        succeeded: there is no server time yet, and the local clock may be any amount off.
        """
        if not force and not self.stale():
            return False
        try:
            reading = await self._measure()
        except NotImplementedError:
            self._fall_back(logging.INFO, "the in-memory backend shares this process's clock")
            return False
        except PyMongoError as exc:
            self._failed(exc)
            return False
        if reading is None:
            if self._server_at_sync is not None:  # it did before: keep the measured offset
                self._failed("the server did not report localTime")
            else:
                self._fall_back(logging.WARNING, "the server did not report localTime")
            return False
        midpoint = reading.local_midpoint
        self.offset = reading.server - midpoint
        self.round_trip = reading.local_after - reading.local_before
        self.reports_time = True
        self._synced_at = (reading.mono_midpoint, midpoint)
        self._server_at_sync = reading.server
        self._retry_at = None
        if self.failures:
            logger.info("server time: measured again after %d failed refreshes", self.failures)
            self.failures = 0
        return True

    async def _measure(self) -> _Reading | None:
        """One reading of the server's clock; None if the server does not report its time."""
        routed = self.router and not self._clock_write_refused
        if routed and (reading := await self._read_clock_document_unless_refused()):
            return reading
        reply, hello = await self._read_hello()
        if self.router is None and isinstance(reply, Mapping):
            self.router = reply.get("msg") == "isdbgrid"
            if self.router and (reading := await self._read_clock_document_unless_refused()):
                return reading
        return hello

    async def _read_clock_document_unless_refused(self) -> _Reading | None:
        """A reading from the clock document; None (and the routers' time from now on) if
        the write is refused."""
        try:
            return await self._read_clock_document()
        except OperationFailure as exc:
            if exc.code not in _REFUSED_CODES:
                raise
            self._refused(exc)
            return None

    async def _timed(self, call: Callable[[], Awaitable[Any]]) -> tuple[Any, datetime, float]:
        """Run call; its result, and the local and monotonic times it was sent."""
        local, mono = self.local.now(), self._monotonic()
        return await call(), local, mono

    def _reading(self, server: Any, local_before: datetime, mono_before: float) -> _Reading | None:
        when = _as_utc(server)
        if when is None:
            return None
        return _Reading(when, local_before, self.local.now(), mono_before, self._monotonic())

    async def _read_hello(self) -> tuple[Any, _Reading | None]:
        reply, local, mono = await self._timed(lambda: _hello(self._db))
        server = reply.get("localTime") if isinstance(reply, Mapping) else None
        return reply, self._reading(server, local, mono)

    async def _read_clock_document(self) -> _Reading | None:
        """The time one data-bearing server writes into the clock document (through mongos:
        the primary of the database's primary shard)."""
        clock = self._db.get_collection(self.clock_collection, write_concern=WriteConcern(w=1))

        async def write() -> Any:
            return await clock.find_one_and_update(
                {"_id": CLOCK_DOCUMENT_ID},
                {"$currentDate": {"now": True}},
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )

        try:
            doc, local, mono = await self._timed(write)
        except DuplicateKeyError:  # two first upserts raced (servers before 4.2): it exists now
            doc, local, mono = await self._timed(write)
        return self._reading(doc.get("now") if isinstance(doc, Mapping) else None, local, mono)

    def _refused(self, exc: OperationFailure) -> None:
        self._clock_write_refused = True
        logger.warning(
            "server time: this is a sharded cluster and writing the clock document to %s was "
            "refused (%s); reading the time of whichever mongos answers instead, so processes "
            "agree only to within the routers' clock disagreement plus half a round trip. "
            "Allow this user to write %s for one clock, the primary shard's.",
            self.clock_collection,
            exc,
            self.clock_collection,
        )

    def _failed(self, error: PyMongoError | str) -> None:
        """A measurement failed. Without a server time yet (and without having found that
        the server does not report one), raise: the caller must not run on the local clock.
        Otherwise keep what there is and try again soon."""
        if self.reports_time is None:
            message = f"server time: could not read the server's clock: {error}"
            if isinstance(error, PyMongoError):
                raise DatabaseError(message) from error
            raise DatabaseError(message)
        self.failures += 1
        retry = min(self.refresh_interval, RETRY_INTERVAL)
        self._retry_at = self._monotonic() + retry
        level = logging.WARNING if self.failures == 1 else logging.DEBUG
        kept = "the local clock" if self._server_at_sync is None else "the last measured offset"
        logger.log(
            level,
            "server time: could not read the server's clock (%s); keeping %s%s, "
            "trying again in %g s",
            error,
            kept,
            " (counting on the monotonic clock: the local clock jumped)"
            if self.extrapolating
            else "",
            retry,
        )

    def _fall_back(self, level: int, why: str) -> None:
        self.offset = timedelta(0)
        self.reports_time = False
        self._server_at_sync = None
        self._retry_at = None
        self._synced_at = (self._monotonic(), self.local.now())
        if not self._warned:
            self._warned = True
            logger.log(level, "server time: %s; using the local clock", why)


async def _hello(db: Any) -> Any:
    try:
        return await db.command("hello")
    except PyMongoError as exc:
        if getattr(exc, "code", None) != 59:  # CommandNotFound: a server older than 4.4
            raise
        return await db.command("isMaster")


async def refresh_clock(clock: Clock) -> None:
    """Re-measure a ServerClock's offset when due; other clocks need nothing."""
    if isinstance(clock, ServerClock):
        await clock.refresh()
