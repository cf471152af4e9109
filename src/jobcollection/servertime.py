"""Time from one authority: a clock that reads the database server's time.

Leases (`expiresAfter`), promotion (`after <= now`) and repeat scheduling compare times
written by one process with times read by another. If every process used its own clock, a
worker whose clock runs an hour fast would write leases that expire an hour late, and a job
server an hour fast would expire every lease at once and promote delayed jobs early.

`ServerClock` makes every process read the same clock, the database server's:

- It measures the offset between the local clock and the server's `localTime` (reported by
  the `hello` command; `isMaster` on servers older than 4.4), taking the midpoint of the
  round trip as the local moment the server read its clock. The error is at most half the
  round trip (well under a millisecond to a few milliseconds on a LAN).
- `now()` is the local clock plus that offset: synchronous and free, so the rules stay pure.
  Until the first measurement (a JobCollection's first method call or job-server pass) it is
  the local time.
- The offset is re-measured by `refresh()`, which JobCollection calls before each method-layer
  call and each job-server pass once `refresh_interval` seconds have passed, and at once when
  the local clock jumps (its change disagrees with the monotonic clock by more than
  `jump_tolerance` seconds): an NTP step on a worker does not skew its leases.
- When the server does not report its time (the in-memory backend, which runs in this
  process and shares its clock, or a proxy that hides `localTime`), the clock keeps the
  local time and says so once in the log (INFO for the in-memory backend, WARNING otherwise).
  A refresh that fails with a driver error keeps the last offset, logs a WARNING and is
  tried again after `refresh_interval`; the operation that follows reports its own error.

The guarantee: with a ServerClock in every process, all times the library writes and
compares are server times, to within half a round trip plus the local clock's drift over
`refresh_interval` (typically microseconds). The local clocks may disagree by any amount.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.errors import PyMongoError

from .clock import Clock, SystemClock, to_millis
from .errors import InvalidArgument, InvalidArgumentType

logger = logging.getLogger("jobcollection")

DEFAULT_REFRESH_INTERVAL = 60.0
"""Seconds between offset measurements."""

DEFAULT_JUMP_TOLERANCE = 1.0
"""Seconds the local clock may move differently from the monotonic clock before a re-measure."""


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


class ServerClock:
    """A Clock that reads the database server's time through a measured offset."""

    def __init__(
        self,
        database: Any,
        *,
        refresh_interval: float = DEFAULT_REFRESH_INTERVAL,
        jump_tolerance: float = DEFAULT_JUMP_TOLERANCE,
        local: Clock | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """`database`: a pymongo/Motor database or collection. `local` and `monotonic` are
        the local clocks to correct (injectable for tests)."""
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
        self._db = _database_of(database)
        self.refresh_interval = float(refresh_interval)
        self.jump_tolerance = float(jump_tolerance)
        self.local: Clock = local or SystemClock()
        self._monotonic = monotonic
        self.offset = timedelta(0)
        """Server time minus local time, as last measured."""
        self.round_trip: timedelta | None = None
        """The round trip of the last successful measurement."""
        self.reports_time: bool | None = None
        """Whether the server reported its time (None until the first refresh)."""
        self._synced_at: tuple[float, datetime] | None = None
        self._warned = False

    def now(self) -> datetime:
        """The server's time: the local clock corrected by the last measured offset."""
        return to_millis(self.local.now() + self.offset)

    def stale(self) -> bool:
        """Whether the offset should be measured again."""
        if self._synced_at is None:
            return True
        mono_then, local_then = self._synced_at
        mono_elapsed = self._monotonic() - mono_then
        local_elapsed = (self.local.now() - local_then).total_seconds()
        if abs(local_elapsed - mono_elapsed) > self.jump_tolerance:
            return True
        return mono_elapsed >= self.refresh_interval

    async def refresh(self, force: bool = False) -> bool:
        """Measure the offset if it is stale (or always, with force); True if measured now."""
        if not force and not self.stale():
            return False
        before = self.local.now()
        try:
            reply = await _hello(self._db)
        except NotImplementedError:
            self._fall_back(logging.INFO, "the in-memory backend shares this process's clock")
            return False
        except PyMongoError as exc:
            self._mark_synced()  # try again after refresh_interval, not on every call
            logger.warning(
                "server time: could not read the server's clock (%s); keeping the last offset", exc
            )
            return False
        after = self.local.now()
        server = reply.get("localTime") if isinstance(reply, Mapping) else None
        if not isinstance(server, datetime):
            self._fall_back(logging.WARNING, "the server did not report localTime")
            return False
        if server.tzinfo is None:  # pymongo decodes BSON dates as naive UTC by default
            server = server.replace(tzinfo=UTC)
        midpoint = before + (after - before) / 2
        self.offset = server.astimezone(UTC) - midpoint
        self.round_trip = after - before
        self.reports_time = True
        self._mark_synced()
        return True

    def _fall_back(self, level: int, why: str) -> None:
        self.offset = timedelta(0)
        self.reports_time = False
        self._mark_synced()
        if not self._warned:
            self._warned = True
            logger.log(level, "server time: %s; using the local clock", why)

    def _mark_synced(self) -> None:
        self._synced_at = (self._monotonic(), self.local.now())


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
