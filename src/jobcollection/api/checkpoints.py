"""Iterating with a checkpointed position (`async for item in job.iterate(items, every=N)`),
as Sidekiq's iterable jobs do: the position (how many items the loop body finished) is
checkpointed every `every` items and at the end, and the next attempt of the job, after a
failure, a timeout, a lost lease or a release, skips the items before the last position
stored.

An item is done again only if the attempt that did it ended before its position was stored:
at most the items since the last checkpoint that was written (with a lease renewal, or at
once with `flush=True`). So every item is done at least once, and exactly once in effect
where the work on one item is idempotent (doing it twice leaves what doing it once does).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from ..model import validation as v
from ..model.errors import InvalidArgument, InvalidArgumentType

if TYPE_CHECKING:
    from .job import Job

T = TypeVar("T")

POSITION = "position"
"""The key of the checkpoint `iterate` stores: `{"position": n}`, the items finished."""


async def iterate(
    job: Job, items: Iterable[T] | AsyncIterable[T], *, every: int = 1, flush: bool = False
) -> AsyncIterator[T]:
    """The items after the position the job last checkpointed (see the module docstring);
    the position of an item is checkpointed once the loop body asks for the next item, every
    `every` items (`flush`: stored at once, not with the next lease renewal), and once the
    items run out. The iteration owns the job's checkpoint: its state is `{"position": n}`."""
    step = v.integer(every, "every", minimum=1)
    now = v.boolean(flush, "flush")
    start = resume_position(job.checkpoint_state)
    position = 0
    last = start  # the position last checkpointed
    async for item in _each(items):
        position += 1
        if position <= start:
            continue
        yield item
        if position - last >= step:
            last = position
            await job.checkpoint({POSITION: position}, flush=now)
    if position > last:
        await job.checkpoint({POSITION: position}, flush=now)


def resume_position(state: Any) -> int:
    """The position a checkpoint of `iterate` says to resume after (0: none stored);
    InvalidArgument if the job's checkpoint is not one of iterate's."""
    if state is None:
        return 0
    position = state.get(POSITION) if isinstance(state, dict) else None
    if type(position) is not int or position < 0:
        raise InvalidArgument(
            "checkpoint_state", f"is not a position of job.iterate() ({{'position': n}}): {state!r}"
        )
    return position


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
