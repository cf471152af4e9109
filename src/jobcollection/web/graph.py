"""A workflow as a picture: its jobs as boxes in columns (longest-path layers), the
dependencies between them as arrows, and the SVG the workflow page shows. Pure functions of
the jobs read and the URLs to link: no I/O, so each rule is tested on plain values.

Why a layout computed here and drawn as SVG by the server, rather than a JavaScript graph
library: the page must work under the dashboard's Content-Security-Policy (no inline script
or style; a library would be one more vendored file whose output, inline `style=` attributes
for most of them, the policy blocks), be testable without a browser (the tests read the
boxes and arrows in the HTML), and stay fast for workflows of thousands of jobs, which no
library lays out usefully anyway: what helps there is drawing less. A workflow is a DAG
whose dependencies run one way, so a layered drawing reads left to right without a
crossing-minimisation engine: each job goes one column right of its latest antecedent
(`layers`), and one barycenter pass orders each column by where its antecedents are.

What keeps a large workflow drawable (`draw`):

- a column's jobs of one type beyond MAX_SAME are one box, with their counts per status;
- a column of more than MAX_ROWS boxes draws one box per type, and beyond that the smallest
  types as one box;
- layers beyond MAX_COLUMNS are one box in the last column ("N jobs in K more steps");
- at most MAX_ARROWS arrows (the dependencies between two boxes are one arrow, counted).

The page lists every job anyway (paged), so nothing is lost by drawing less.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from ..model import graphs
from ..model.constants import JOB_STATUSES, Status
from ..model.document import JobDoc

MAX_SAME = 5
"""The most jobs of one type a column draws one by one (more: one box, counted)."""
MAX_ROWS = 12
"""The most boxes a column draws."""
MAX_COLUMNS = 25
"""The most columns drawn: later layers are one box in the last column."""
MAX_ARROWS = 1_000
"""The most arrows drawn."""

BOX_W = 180
BOX_H = 46
GAP_X = 70
GAP_Y = 14
PAD = 12
MAX_LABEL = 22
"""The most characters of a type a box shows (the box's title has the whole type)."""

ATTENTION = (
    Status.FAILED,
    Status.RUNNING,
    Status.READY,
    Status.WAITING,
    Status.PAUSED,
    Status.CANCELLED,
    Status.COMPLETED,
)
"""A box of several jobs takes the colour of the first of these statuses among them: what
needs looking at first."""


@dataclass(frozen=True, slots=True)
class Node:
    """What the drawing needs of one job: its antecedents (id, failure policy) in the order
    stored, and those whose edge is gone (they failed or were cancelled, and the policy
    dropped the edge: "ignore" or "remove")."""

    id: Any
    type: str
    status: str
    antecedents: tuple[tuple[Any, str], ...] = ()
    dropped: frozenset[Any] = frozenset()


def node_of(doc: JobDoc) -> Node:
    """A job's node: its antecedents are those it waits on (`depends`), those that completed
    (`resolved`), those it runs without (`failed_antecedents`) and those whose edge its
    policy removed (they stay in `on_failure`)."""
    policies = {edge.id: edge.policy for edge in doc.on_failure}
    ids = list(dict.fromkeys([*doc.depends, *doc.resolved, *doc.failed_antecedents, *policies]))
    live = {*doc.depends, *doc.resolved}
    return Node(
        id=doc.id,
        type=doc.type,
        status=str(doc.status),
        antecedents=tuple((i, policies.get(i, "cancel")) for i in ids),
        dropped=frozenset(i for i in ids if i not in live),
    )


def layers(nodes: Sequence[Node]) -> dict[Any, int]:
    """Each job's column: its layer in the graph of these jobs (model/graphs.py)."""
    return graphs.layers({n.id: [a for a, _ in n.antecedents] for n in nodes})


@dataclass(frozen=True, slots=True)
class Box:
    """One box of the drawing: a job (`job_id`), or jobs drawn as one."""

    key: int
    column: int
    jobs: int
    counts: tuple[tuple[str, int], ...]
    """Its jobs per status, in JOB_STATUSES' order, statuses with none left out."""
    job_type: str | None
    """Its jobs' type, when they share one."""
    types: int = 1
    """How many types its jobs are of."""
    job_id: Any | None = None
    steps: int = 1
    """How many layers its jobs come from (more than one: the folded last column)."""

    @property
    def status(self) -> str:
        """The status it is coloured by: its job's, or the first of ATTENTION among them."""
        present = dict(self.counts)
        return next(s for s in ATTENTION if present.get(s))

    @property
    def finished(self) -> int:
        """How many of its jobs finished (completed, failed or cancelled)."""
        return sum(n for s, n in self.counts if s in Status.FINAL)

    def label(self) -> str:
        """What the box says first: its type, or how many jobs of how many types."""
        if self.job_type is not None:
            return self.job_type
        return f"{self.types} types"

    def detail(self) -> str:
        """What it says second: its job's status, or how many finished."""
        if self.job_id is not None:
            return self.status
        steps = f" in {self.steps} steps" if self.steps > 1 else ""
        return f"{self.jobs:,} jobs{steps}, {self.finished:,} finished"

    def title(self) -> str:
        """Its tooltip: the whole type and the counts."""
        counts = ", ".join(f"{n:,} {s}" for s, n in self.counts)
        if self.job_id is not None:
            return f"{self.job_type} {self.job_id}: {self.status}"
        return f"{self.label()}: {self.jobs:,} jobs ({counts})"


@dataclass(frozen=True, slots=True)
class Arrow:
    """The dependencies between two boxes: how many, their failure policies other than
    "cancel", and how many of them are gone (`dropped`: the antecedent ended badly and the
    policy let the dependent go on without it)."""

    source: int
    target: int
    edges: int
    policies: tuple[str, ...] = ()
    dropped: int = 0


@dataclass(frozen=True, slots=True)
class Drawing:
    """A workflow laid out: its columns of boxes, top to bottom, and its arrows."""

    columns: tuple[tuple[Box, ...], ...]
    arrows: tuple[Arrow, ...]
    jobs: int
    edges: int
    """Every dependency between two of its jobs."""
    hidden_arrows: int = 0
    """Arrows not drawn (beyond MAX_ARROWS)."""
    folded_layers: int = 0
    """Layers drawn as the last column's one box (beyond MAX_COLUMNS)."""
    grouped: int = 0
    """Jobs drawn in boxes of several."""


def _box(key: int, column: int, jobs: Sequence[Node], steps: int = 1) -> Box:
    counts = Counter(n.status for n in jobs)
    types = {n.type for n in jobs}
    return Box(
        key=key,
        column=column,
        jobs=len(jobs),
        counts=tuple((s, counts[s]) for s in JOB_STATUSES if counts.get(s)),
        job_type=next(iter(types)) if len(types) == 1 else None,
        types=len(types),
        job_id=jobs[0].id if len(jobs) == 1 else None,
        steps=steps,
    )


def _groups(jobs: Sequence[Node]) -> list[list[Node]]:
    """A column's jobs as the boxes that draw them (see the module's docstring)."""
    by_type: dict[str, list[Node]] = {}
    for node in jobs:
        by_type.setdefault(node.type, []).append(node)
    kinds = [by_type[t] for t in sorted(by_type)]
    groups: list[list[Node]] = []
    for same in kinds:
        groups += [same] if len(same) > MAX_SAME else [[n] for n in same]
    if len(groups) <= MAX_ROWS:
        return groups
    if len(kinds) <= MAX_ROWS:
        return kinds
    largest = sorted(kinds, key=len, reverse=True)
    rest = [n for same in largest[MAX_ROWS - 1 :] for n in same]
    return [*largest[: MAX_ROWS - 1], rest]


def draw(nodes: Sequence[Node]) -> Drawing:
    """Lay out a workflow's jobs (see the module's docstring)."""
    layer_of = layers(nodes)
    deepest = max(layer_of.values(), default=-1)
    folded = max(0, deepest + 1 - (MAX_COLUMNS - 1)) if deepest + 1 > MAX_COLUMNS else 0
    by_layer: dict[int, list[Node]] = {}
    for node in nodes:
        by_layer.setdefault(min(layer_of[node.id], MAX_COLUMNS - 1), []).append(node)
    box_of: dict[Any, int] = {}
    boxes: dict[int, Box] = {}
    grouped = 0
    for column in sorted(by_layer):
        jobs = by_layer[column]
        groups = [jobs] if folded and column == MAX_COLUMNS - 1 else _groups(jobs)
        for group in groups:
            key = len(boxes)
            steps = len({layer_of[n.id] for n in group})
            boxes[key] = _box(key, column, group, steps)
            box_of.update((n.id, key) for n in group)
            if len(group) > 1:
                grouped += len(group)
    arrows, edges = _arrows(nodes, box_of)
    shown = arrows[:MAX_ARROWS]
    columns = _ordered(boxes, shown)
    return Drawing(
        columns=columns,
        arrows=tuple(shown),
        jobs=len(nodes),
        edges=edges,
        hidden_arrows=len(arrows) - len(shown),
        folded_layers=folded,
        grouped=grouped,
    )


def _arrows(nodes: Iterable[Node], box_of: dict[Any, int]) -> tuple[list[Arrow], int]:
    """The arrows between boxes (dependencies inside one box are not drawn), and how many
    dependencies there are between the jobs."""
    edges = 0
    count: dict[tuple[int, int], int] = {}
    policies: dict[tuple[int, int], set[str]] = {}
    dropped: dict[tuple[int, int], int] = {}
    for node in nodes:
        for antecedent, policy in node.antecedents:
            if antecedent not in box_of or antecedent == node.id:
                continue
            edges += 1
            pair = (box_of[antecedent], box_of[node.id])
            if pair[0] == pair[1]:
                continue
            count[pair] = count.get(pair, 0) + 1
            if policy != "cancel":
                policies.setdefault(pair, set()).add(policy)
            if antecedent in node.dropped:
                dropped[pair] = dropped.get(pair, 0) + 1
    arrows = [
        Arrow(s, t, n, tuple(sorted(policies.get((s, t), ()))), dropped.get((s, t), 0))
        for (s, t), n in count.items()
    ]
    return arrows, edges


def _ordered(boxes: dict[int, Box], arrows: Sequence[Arrow]) -> tuple[tuple[Box, ...], ...]:
    """The boxes in columns, each column ordered by the mean row of its boxes' antecedents
    in earlier columns (one barycenter pass, left to right), boxes without any last."""
    sources: dict[int, list[int]] = {}
    for arrow in arrows:
        sources.setdefault(arrow.target, []).append(arrow.source)
    width = max((b.column for b in boxes.values()), default=-1) + 1
    columns: list[list[Box]] = [[] for _ in range(width)]
    for box in boxes.values():
        columns[box.column].append(box)
    row: dict[int, int] = {}
    for column in columns:

        def barycenter(box: Box) -> tuple[int, float, int]:
            placed = [row[s] for s in sources.get(box.key, []) if s in row]
            if not placed:
                return (1, 0.0, box.key)
            return (0, sum(placed) / len(placed), box.key)

        column.sort(key=barycenter)
        row.update((box.key, i) for i, box in enumerate(column))
    return tuple(tuple(c) for c in columns)


# --- SVG ----------------------------------------------------------------------------------------


def _cut(text: str, most: int = MAX_LABEL) -> str:
    return text if len(text) <= most else text[: most - 1] + "\u2026"


def _e(value: Any) -> str:
    """A value as SVG text or an attribute's value."""
    return escape(str(value), quote=True)


def svg(drawing: Drawing, link: Callable[[Box], str | None]) -> str:
    """The drawing as an SVG element: each box a link (`link(box)`; None: not a link) coloured
    by its status (classes the stylesheet styles: no inline style), each arrow labelled with
    its failure policies other than "cancel" and, for several dependencies, their count."""
    rows = max((len(c) for c in drawing.columns), default=0)
    height = PAD * 2 + rows * BOX_H + max(rows - 1, 0) * GAP_Y
    width = PAD * 2 + len(drawing.columns) * BOX_W + max(len(drawing.columns) - 1, 0) * GAP_X
    where: dict[int, tuple[float, float]] = {}
    for c, column in enumerate(drawing.columns):
        top = PAD + (rows - len(column)) * (BOX_H + GAP_Y) / 2
        for r, box in enumerate(column):
            where[box.key] = (PAD + c * (BOX_W + GAP_X), top + r * (BOX_H + GAP_Y))
    arrows = [_arrow(a, where) for a in drawing.arrows]
    boxes = [
        _box_svg(box, where[box.key], link(box)) for column in drawing.columns for box in column
    ]
    label = f"workflow of {drawing.jobs:,} jobs and {drawing.edges:,} dependencies"
    return (
        f'<svg class="graph" role="group" aria-label="{_e(label)}" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}">'
        '<defs><marker id="arrowhead" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="8" '
        'markerHeight="8" orient="auto"><path d="M0,0 L8,4 L0,8 z"/></marker></defs>'
        f'<g class="arrows">{"".join(arrows)}</g><g class="boxes">{"".join(boxes)}</g></svg>'
    )


def _arrow(arrow: Arrow, where: dict[int, tuple[float, float]]) -> str:
    (sx, sy), (tx, ty) = where[arrow.source], where[arrow.target]
    x1, y1 = sx + BOX_W, sy + BOX_H / 2
    x2, y2 = tx, ty + BOX_H / 2
    bend = max(GAP_X / 2, abs(x2 - x1) / 3)
    path = f"M{x1:g},{y1:g} C{x1 + bend:g},{y1:g} {x2 - bend:g},{y2:g} {x2:g},{y2:g}"
    classes = ["edge", *(f"policy-{p}" for p in arrow.policies)]
    if arrow.dropped == arrow.edges:
        classes.append("dropped")
    policy = "/".join(arrow.policies)
    words = [f"{arrow.edges:,} dependencies" if arrow.edges > 1 else "1 dependency"]
    if policy:
        words.append(f"on failure: {policy}")
    if arrow.dropped:
        words.append(f"{arrow.dropped:,} dropped (the antecedent ended badly)")
    text = " ".join(filter(None, [policy, f"\u00d7{arrow.edges:,}" if arrow.edges > 1 else ""]))
    label = ""
    if text:
        mx, my = (x1 + x2) / 2, (y1 + y2) / 2 - 4
        label = f'<text class="edge-label" x="{mx:g}" y="{my:g}">{_e(text)}</text>'
    return (
        f'<g class="{" ".join(classes)}" data-source="{arrow.source}" '
        f'data-target="{arrow.target}"><title>{_e(", ".join(words))}</title>'
        f'<path d="{path}" marker-end="url(#arrowhead)"/>{label}</g>'
    )


def _box_svg(box: Box, at: tuple[float, float], href: str | None) -> str:
    x, y = at
    kind = "job" if box.job_id is not None else "group"
    stack = ""
    bar = ""
    if kind == "group":
        stack = (
            f'<rect class="stack" x="{x + 4:g}" y="{y - 4:g}" width="{BOX_W}" '
            f'height="{BOX_H}" rx="4"/>'
        )
        left = x + 8
        for status, n in box.counts:
            part = (BOX_W - 16) * n / box.jobs
            bar += (
                f'<rect class="bar {_e(status)}" x="{left:g}" y="{y + BOX_H - 9:g}" '
                f'width="{part:.1f}" height="5"/>'
            )
            left += part
    name = _cut(box.label())
    if box.job_id is None and box.job_type is not None:
        name = f"{_cut(box.job_type, MAX_LABEL - 6)} \u00d7{box.jobs:,}"
    body = (
        f"<title>{_e(box.title())}</title>{stack}"
        f'<rect class="box" x="{x:g}" y="{y:g}" width="{BOX_W}" height="{BOX_H}" rx="4"/>'
        f'<text class="type" x="{x + 8:g}" y="{y + 17:g}">{_e(name)}</text>'
        f'<text class="detail" x="{x + 8:g}" y="{y + 32:g}">{_e(box.detail())}</text>{bar}'
    )
    if href is not None:
        body = f'<a href="{_e(href)}">{body}</a>'
    data = f' data-job="{_e(box.job_id)}"' if box.job_id is not None else ""
    return (
        f'<g class="node {kind} {_e(box.status)}" data-box="{box.key}" '
        f'data-jobs="{box.jobs}"{data}>{body}</g>'
    )
