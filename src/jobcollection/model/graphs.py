"""Dependency graphs of jobs, laid out in layers: each job one layer after its latest
antecedent (the longest path to it), so that a workflow reads left to right. Pure: the
dashboard draws its columns with it (web/graph.py) and the CLI numbers its steps
(cli/workflows.py)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any


def layers(antecedents: Mapping[Any, Iterable[Any]]) -> dict[Any, int]:
    """Each job's layer (jobs by id, with the ids of their antecedents): 0 for a job none of
    whose antecedents is among them, else one more than its latest antecedent's, by Kahn's
    algorithm. Jobs on a cycle (a document edited by hand: saving refuses cycles) go one
    layer after the rest."""
    before = {
        job_id: list(dict.fromkeys(a for a in given if a in antecedents and a != job_id))
        for job_id, given in antecedents.items()
    }
    after: dict[Any, list[Any]] = {i: [] for i in before}
    for job_id, earlier in before.items():
        for antecedent in earlier:
            after[antecedent].append(job_id)
    left = {i: len(earlier) for i, earlier in before.items()}
    layer = dict.fromkeys(before, 0)
    placed: dict[Any, int] = {}
    ready = deque(i for i, n in left.items() if n == 0)
    while ready:
        job_id = ready.popleft()
        placed[job_id] = layer[job_id]
        for dependent in after[job_id]:
            layer[dependent] = max(layer[dependent], layer[job_id] + 1)
            left[dependent] -= 1
            if left[dependent] == 0:
                ready.append(dependent)
    last = max(placed.values(), default=-1) + 1
    return {i: placed.get(i, last) for i in before}
