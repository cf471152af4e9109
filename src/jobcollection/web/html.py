"""The dashboard's small HTML helpers: escaping, and values as pages show them."""

from __future__ import annotations

import json
from datetime import datetime
from html import escape
from typing import Any


def e(value: Any) -> str:
    """A value as HTML text (quotes escaped too, so it is safe in attributes)."""
    return escape(str(value), quote=True)


def pretty(value: Any) -> str:
    """A stored value as indented JSON (ids and dates as their text)."""
    return json.dumps(value, indent=2, default=str, ensure_ascii=False, sort_keys=True)


def stamp(moment: datetime | None) -> str:
    return "-" if moment is None else f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def age(seconds: float) -> str:
    """A duration, short: 42s, 5m 3s, 2h 10m, 3d 4h."""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3_600:
        return f"{s // 60}m {s % 60}s"
    if s < 86_400:
        return f"{s // 3_600}h {s % 3_600 // 60}m"
    return f"{s // 86_400}d {s % 86_400 // 3_600}h"
