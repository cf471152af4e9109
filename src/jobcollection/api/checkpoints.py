"""Iterating with a checkpointed position (`async for item in job.iterate(items, every=N)`),
as Sidekiq's iterable jobs do: the position (how many items the loop body finished) is
checkpointed every `every` items and at the end, and the next attempt of the job, after a
failure, a timeout, a lost lease or a release, skips the items before the last position
stored. A sync worker iterates with `job.sync.iterate(...)`, a process worker with its
JobView's `iterate(...)` (plain `for` loops, the same positions).

An item is done again only if the attempt that did it ended before its position was stored:
at most the items since the last checkpoint that was written (with a lease renewal, or at
once with `flush=True`). So every item is done at least once, and exactly once in effect
where the work on one item is idempotent (doing it twice leaves what doing it once does).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from ..model import validation as v
from ..model.errors import InvalidArgument, InvalidArgumentType

if TYPE_CHECKING:
    from .job import Job

T = TypeVar("T")

POSITION = "position"
"""The key of the checkpoint an iteration stores: `{"position": n}`, the items finished."""


class Positions:
    """Where an iteration is: the items to skip (those before the position an earlier
    attempt stored) and when to checkpoint the position (every `every` items, and at the
    end). Pure: the iterations below do the checkpointing."""

    def __init__(self, state: Any, every: int) -> None:
        self._every = v.integer(every, "every", minimum=1)
        self._start = resume_position(state)
        self._position = 0
        self._last = self._start
        """The position last checkpointed (or resumed from)."""

    def skips(self) -> bool:
        """One more item: whether to skip it (an earlier attempt finished it)."""
        self._position += 1
        return self._position <= self._start

    def due(self) -> dict[str, int] | None:
        """The item given last was finished: the checkpoint to record now, if one is due."""
        if self._position - self._last < self._every:
            return None
        return self._checkpointed()

    def end(self) -> dict[str, int] | None:
        """The items ran out: the checkpoint to record, if the last one is behind."""
        return self._checkpointed() if self._position > self._last else None

    def _checkpointed(self) -> dict[str, int]:
        self._last = self._position
        return {POSITION: self._position}


def resume_position(state: Any) -> int:
    """The position an iteration's checkpoint says to resume after (0: none stored);
    InvalidArgument if the job's checkpoint is not an iteration's."""
    if state is None:
        return 0
    position = state.get(POSITION) if isinstance(state, dict) else None
    if type(position) is not int or position < 0:
        raise InvalidArgument(
            "checkpoint_state",
            f"is not a position of job.iterate() ({{'position': n}}): {state!r:.200}",
        )
    return position


async def iterate(
    job: Job, items: Iterable[T] | AsyncIterable[T], *, every: int = 1, flush: bool = False
) -> AsyncIterator[T]:
    """The items after the position the job last checkpointed (see the module docstring);
    the position of an item is checkpointed once the loop body asks for the next item, every
    `every` items (`flush`: stored at once, not with the next lease renewal), and once the
    items run out. The iteration owns the job's checkpoint: its state is `{"position": n}`."""
    positions = Positions(job.checkpoint_state, every)
    now = v.boolean(flush, "flush")
    async for item in _each(items):
        if positions.skips():
            continue
        yield item
        if (state := positions.due()) is not None:
            await job.checkpoint(state, flush=now)
    if (state := positions.end()) is not None:
        await job.checkpoint(state, flush=now)


def iterate_blocking(
    checkpoint: Callable[..., Any],
    state: Any,
    items: Iterable[T],
    *,
    every: int = 1,
    flush: bool = False,
) -> Iterator[T]:
    """`iterate` for a sync or process worker: `checkpoint(state, flush=...)` blocks until
    recorded; `state` is the job's checkpoint_state."""
    positions = Positions(state, every)
    now = v.boolean(flush, "flush")
    if not isinstance(items, Iterable):
        raise InvalidArgumentType("items", f"must be an iterable, not {type(items).__name__}")
    for item in items:
        if positions.skips():
            continue
        yield item
        if (due := positions.due()) is not None:
            checkpoint(due, flush=now)
    if (due := positions.end()) is not None:
        checkpoint(due, flush=now)


async def _each(items: Iterable[T] | AsyncIterable[T]) -> AsyncIterator[T]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    elif isinstance(items, Iterable):
        for item in items:
            yield item
    else:
        raise InvalidArgumentType(
            "items", f"must be an iterable or an async iterable, not {type(items).__name__}"
        )
