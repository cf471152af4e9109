"""Where "now" comes from: one injectable clock per JobCollection.

Every filter and update that depends on time takes its "now" from the collection's clock, so
tests advance a `ManualClock` instead of sleeping. Times are truncated to whole milliseconds,
the precision MongoDB stores, so a value read back equals the value written.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable


def to_millis(moment: datetime) -> datetime:
    """Drop the sub-millisecond part MongoDB would drop on storage."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


@runtime_checkable
class Clock(Protocol):
    """A source of the current time as an aware UTC datetime."""

    def now(self) -> datetime:
        """The current time: aware, in UTC."""
        ...


class SystemClock:
    """The machine's clock in UTC."""

    def now(self) -> datetime:
        """This machine's time, in UTC, at millisecond precision."""
        return to_millis(datetime.now(UTC))


class ManualClock:
    """A clock that moves only when told to: for tests and simulations."""

    def __init__(self, start: datetime | None = None) -> None:
        if start is not None and start.tzinfo is None:
            raise ValueError("start: must be timezone-aware")
        self._now = to_millis((start or datetime.now(UTC)).astimezone(UTC))

    def now(self) -> datetime:
        """Where the clock was last set or advanced to."""
        return self._now

    def advance(self, seconds: float | timedelta) -> datetime:
        """Move the clock forward and return the new now."""
        delta = seconds if isinstance(seconds, timedelta) else timedelta(seconds=seconds)
        if delta < timedelta(0):
            raise ValueError("seconds: the clock cannot go backwards")
        self._now = to_millis(self._now + delta)
        return self._now

    def set(self, moment: datetime) -> None:
        """Jump to a given aware moment (forwards or backwards)."""
        if moment.tzinfo is None:
            raise ValueError("moment: must be timezone-aware")
        self._now = to_millis(moment.astimezone(UTC))
