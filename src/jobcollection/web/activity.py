"""Completed and failed jobs per minute, and their chart, as pure functions of the finished
jobs read and the time now."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape

from ..model.constants import Status


@dataclass(frozen=True, slots=True)
class Minute:
    """The jobs that finished in one minute."""

    start: datetime
    completed: int = 0
    failed: int = 0


def per_minute(
    finished: Iterable[tuple[datetime, str]], now: datetime, minutes: int = 60
) -> list[Minute]:
    """The `minutes` whole minutes up to `now` (the current one last), with how many of the
    `(finished at, status)` pairs fall in each; other statuses and other times are left out."""
    current = now.replace(second=0, microsecond=0)
    first = current - timedelta(minutes=minutes - 1)
    completed = [0] * minutes
    failed = [0] * minutes
    for at, status in finished:
        if at < first or at > now:
            continue
        index = int((at - first).total_seconds() // 60)
        if status == Status.COMPLETED:
            completed[index] += 1
        elif status == Status.FAILED:
            failed[index] += 1
    return [Minute(first + timedelta(minutes=i), completed[i], failed[i]) for i in range(minutes)]


BAR_WIDTH = 10
HEIGHT = 80


def chart_svg(minutes: list[Minute]) -> str:
    """Stacked bars, one a minute (completed below, failed above), with a title per bar."""
    top = max([m.completed + m.failed for m in minutes] + [1])
    scale = HEIGHT / top
    bars = []
    for i, m in enumerate(minutes):
        x = i * BAR_WIDTH
        done_h = m.completed * scale
        fail_h = m.failed * scale
        title = escape(f"{m.start:%H:%M} UTC: {m.completed} completed, {m.failed} failed")
        bars.append(
            f"<g><title>{title}</title>"
            f'<rect class="completed" x="{x}" y="{HEIGHT - done_h:.1f}" width="{BAR_WIDTH - 1}" '
            f'height="{done_h:.1f}"/>'
            f'<rect class="failed" x="{x}" y="{HEIGHT - done_h - fail_h:.1f}" '
            f'width="{BAR_WIDTH - 1}" height="{fail_h:.1f}"/></g>'
        )
    width = BAR_WIDTH * len(minutes)
    total_done = sum(m.completed for m in minutes)
    total_failed = sum(m.failed for m in minutes)
    label = escape(f"{total_done} completed and {total_failed} failed in the last hour")
    return (
        f'<svg class="chart" role="img" aria-label="{label}" viewBox="0 0 {width} {HEIGHT}" '
        f'width="{width}" height="{HEIGHT}" preserveAspectRatio="none">'
        f'{"".join(bars)}<line x1="0" y1="{HEIGHT}" x2="{width}" y2="{HEIGHT}"/></svg>'
    )
