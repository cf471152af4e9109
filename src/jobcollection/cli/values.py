"""What the command line's values mean: the argparse types of the options (`moment`,
`data_item`, `seconds`, `page_size`, `max_running`) and the find_jobs filter the filter
options make.

A value that is JSON is read as JSON (`--user 7` is the number, `--user '"7"'` the string),
anything else as the text it is; a moment is an ISO date or datetime (UTC unless it says
otherwise) or a duration ago (`7d`), resolved against the collection's clock by `when`.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

DURATION_UNITS = {"s": 1, "m": 60, "h": 3_600, "d": 86_400, "w": 604_800}


def moment(text: str) -> datetime | timedelta:
    """An ISO 8601 date or datetime (UTC unless it names its offset), or a duration ago:
    a number and a unit, s, m, h, d or w (`90m`, `7d`)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhdw])", text.strip())
    if match:
        return timedelta(seconds=float(match[1]) * DURATION_UNITS[match[2]])
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither an ISO date/datetime (2026-11-01T00:00:00Z) nor a duration "
            "ago (30m, 12h, 7d)"
        ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def value_of(text: str) -> Any:
    """A value given on the command line: JSON when it is JSON (`7`, `true`, `"7"`), else
    the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def data_item(text: str) -> tuple[str, Any]:
    """PATH=VALUE, the VALUE as `value_of` reads it."""
    path, sep, value = text.partition("=")
    if not sep or not path:
        raise argparse.ArgumentTypeError(f"{text!r} is not PATH=VALUE (customer.id=7)")
    return path, value_of(value)


def seconds(text: str) -> float:
    """A number of seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (0 or more)")
    return value


def page_size(text: str) -> int:
    from ..model.queries import MAX_PAGE

    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_PAGE:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number from 1 to {MAX_PAGE}")
    return value


def max_running(text: str) -> int:
    """The most jobs running at once a concurrency limit allows: a whole number from 1 to
    model.concurrency.MAX_RUNNING."""
    from ..model.concurrency import MAX_RUNNING

    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_RUNNING:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a whole number from 1 to {MAX_RUNNING:,}"
        )
    return value


def when(value: datetime | timedelta, now: datetime) -> datetime:
    """A moment `moment` parsed: a datetime as given, a duration as that long before now."""
    return now - value if isinstance(value, timedelta) else value


def job_filters(args: argparse.Namespace, statuses: Sequence[str] | None = None) -> dict[str, Any]:
    """find_jobs' keyword arguments for the filter options given (`statuses` when no
    --status is)."""
    return {
        "type": args.type,
        "status": args.status or statuses,
        "user_id": None if args.user is None else value_of(args.user),
        "data": None if args.data is None else dict(args.data),
    }


def has_filter(args: argparse.Namespace) -> bool:
    """Whether any filter option (--type, --status, --user, --data) was given."""
    return any(x is not None for x in (args.type, args.status, args.user, args.data))


BYTE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}


def byte_size(text: str) -> int:
    """A number of bytes, 1 or more, maybe with a unit: K, M or G (powers of 1024: `512M`)."""
    match = re.fullmatch(r"(\d+)\s*([KMG]?)i?B?", text.strip(), re.IGNORECASE)
    value = 0 if match is None else int(match[1]) * BYTE_UNITS[match[2].upper()]
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size in bytes (1 or more: 512M, 2G)")
    return value
