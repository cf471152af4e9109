"""The overview's trends: per type, jobs finished and failed, and the wait (ready to claimed)
and run times' p50/p95/p99, over the last hour (a point a minute) and the last day (a point an
hour), read from the history the job server keeps (rules/history.py). Each window is a table
(readable without script) and charts: their data rides in a `data-chart` attribute (JSON) that
charts.js draws with uPlot; nothing inline."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from ..rules.history import PERCENTILES, Point
from .html import e

Series = Mapping[str, tuple[Sequence[Point], Point]]
"""Per type: its points (oldest first) and the window's totals."""


@dataclass(frozen=True, slots=True)
class Window:
    """A window of the overview: its name, the history span of its points and how many."""

    name: str
    span: str
    count: int
    unit: str


WINDOWS: Final = (Window("hour", "m", 60, "minute"), Window("day", "h", 24, "hour"))
"""The last hour, a point a minute, and the last day, a point an hour."""
NAMES: Final = tuple(f"p{round(p * 100)}" for p in PERCENTILES)


def duration(ms: float | None) -> str:
    """A duration for a table cell: 12 ms, 3.4 s, 5.2 min, 1.5 h ("-": no job)."""
    if ms is None:
        return "-"
    if ms < 1_000:
        return f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1_000:.1f} s"
    if ms < 3_600_000:
        return f"{ms / 60_000:.1f} min"
    return f"{ms / 3_600_000:.1f} h"


def _epoch(moment: datetime) -> float:
    return moment.timestamp()


def _chart(title: str, kind: str, points: Sequence[Point], series: list[dict[str, Any]]) -> str:
    """A chart's container: its title as a caption, its data as JSON in `data-chart`."""
    data = {
        "title": title,
        "kind": kind,
        "x": [_epoch(p.start) for p in points],
        "series": series,
    }
    return (
        f'<figure class="chart-box"><figcaption>{e(title)}</figcaption>'
        f'<div class="chart" role="img" aria-label="{e(title)}" '
        f'data-chart="{e(json.dumps(data, separators=(",", ":")))}"></div></figure>'
    )


def type_charts(job_type: str, window: Window, points: Sequence[Point]) -> str:
    """A type's two charts in a window: finished per span, and the times' percentiles."""
    counts = [
        {"label": "completed", "values": [p.completed for p in points]},
        {"label": "failed", "values": [p.failed for p in points]},
    ]
    times = [
        {"label": f"{what} {name}", "values": [getattr(p, what)[i] for p in points]}
        for what in ("wait", "run")
        for i, name in enumerate(NAMES)
    ]
    return (
        f'<div class="charts" data-type="{e(job_type)}">'
        + _chart(f"{job_type}: finished per {window.unit}", "count", points, counts)
        + _chart(f"{job_type}: wait and run time (ms)", "ms", points, times)
        + "</div>"
    )


def window_table(window: Window, series: Series) -> str:
    """The window's totals per type: finished, failed, and the times' percentiles."""
    head = "".join(f"<th>wait {n}</th>" for n in NAMES) + "".join(
        f"<th>run {n}</th>" for n in NAMES
    )
    rows = []
    for job_type, (_, whole) in series.items():
        cells = "".join(
            f'<td class="n" data-label="{e(what)} {n}">{e(duration(getattr(whole, what)[i]))}</td>'
            for what in ("wait", "run")
            for i, n in enumerate(NAMES)
        )
        rows.append(
            f'<tr data-type="{e(job_type)}"><th scope="row">{e(job_type)}</th>'
            f'<td class="n completed" data-label="completed">{whole.completed}</td>'
            f'<td class="n failed" data-label="failed">{whole.failed}</td>{cells}</tr>'
        )
    return (
        f'<div class="table-wrap"><table class="trends" id="trends-{e(window.name)}">'
        f'<thead><tr><th scope="col">type</th><th scope="col">completed</th>'
        f'<th scope="col">failed</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody>'
        "</table></div>"
    )


def trends(windows: Sequence[tuple[Window, Series]]) -> str:
    """The trends section: per window, its table and each type's charts."""
    parts = []
    for window, series in windows:
        body = (
            window_table(window, series)
            + "".join(type_charts(t, window, points) for t, (points, _) in series.items())
            if series
            else '<p class="note">No job finished in it (or the job server has not counted '
            "them yet: it does at each pass).</p>"
        )
        parts.append(
            f'<section class="window" id="window-{e(window.name)}" aria-labelledby='
            f'"title-{e(window.name)}"><h2 id="title-{e(window.name)}">Last {e(window.name)} '
            f"(a point a {e(window.unit)})</h2>{body}</section>"
        )
    note = (
        '<p class="note">Wait: from ready (saved, promoted or released) to the claim that ran '
        "it; run: from that claim to its end. Counted by the job server's pass from the jobs "
        "that completed or failed for good, kept 8 days; percentiles are exact to their "
        "histogram bucket.</p>"
    )
    return f'<div id="trends">{"".join(parts)}{note}</div>'
