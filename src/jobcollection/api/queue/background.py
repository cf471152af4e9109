"""The queue's background tasks: each part spawns its own (the poll timer, the claim in flight,
the workers, the heartbeat, the listeners) here, and retires them here, so that the shutdown
can await every one it cancelled."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable
from typing import Any


class Background:
    """Spawns the queue's tasks, named `jobcollection-queue-<role>`, and keeps those it
    cancelled until they end."""

    def __init__(self) -> None:
        self._retired: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None], role: str) -> asyncio.Task[None]:
        return asyncio.create_task(coro, name=f"jobcollection-queue-{role}")

    def retire(self, task: asyncio.Task[Any] | None) -> None:
        """Cancel a background task; `wait` awaits it."""
        if task is None or task.done():
            return
        task.cancel()
        self._retired.add(task)
        task.add_done_callback(self._retired.discard)

    async def wait(self, others: Iterable[asyncio.Task[Any]] = ()) -> None:
        """Await every retired task that has not ended, and these others."""
        pending = [*self._retired, *others]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
