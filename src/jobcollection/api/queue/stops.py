"""Stopping a worker call in flight: the queue cancels it (asyncio cancellation, raised inside
the worker's coroutine, which may clean up in try/finally) when it runs past its timeout or
when every job it has not reported lost its claim, and cancels it again every `cancel_grace`
seconds, with a warning, for as long as it swallows the cancellation. What the call's jobs
then become (failed with the stop's error, or left alone) is the runner's to apply."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from .holdings import Holdings
from .log import ids, logger


@dataclass(slots=True)
class Stop:
    """A worker call the queue cancelled: why, what its unreported jobs are failed with (None:
    their claims are lost, nothing is reported), how many times it was cancelled (each is
    undone once the call is over) and the timer of the next cancel."""

    why: str
    error: BaseException | None
    cancels: int = 0
    again: asyncio.TimerHandle | None = None


class Stops:
    """The worker calls the queue cancelled and that have not ended yet, by their task."""

    def __init__(self, held: Holdings, cancel_grace_s: float) -> None:
        self._held = held
        self._grace = cancel_grace_s
        self._stopped: dict[asyncio.Task[None], Stop] = {}

    def stop(self, task: asyncio.Task[None], why: str, error: BaseException | None) -> None:
        """Cancel a worker call in flight; its jobs are failed with `error` once it ends (None:
        left alone). It is cancelled again every cancel_grace seconds until it ends."""
        if task in self._stopped:  # cancelled already: for the other reason, or by another check
            return
        logger.info("cancelling the worker call on job(s) %s: %s", ids(self._held.calls[task]), why)
        stop = Stop(why, error)
        self._stopped[task] = stop
        self._cancel(task, stop)

    def end(self, task: asyncio.Task[None]) -> Stop | None:
        """The worker call of `task` is over (or the task was cancelled before it started):
        cancel it no more; the stop, if the queue had cancelled it."""
        stop = self._stopped.pop(task, None)
        if stop is not None and stop.again is not None:
            stop.again.cancel()
        return stop

    def _cancel(self, task: asyncio.Task[None], stop: Stop) -> None:
        stop.cancels += 1
        task.cancel()
        stop.again = asyncio.get_running_loop().call_later(
            self._grace, self._still_running, task, stop
        )

    def _still_running(self, task: asyncio.Task[None], stop: Stop) -> None:
        """A worker call the queue cancelled cancel_grace seconds ago has not ended (it
        swallowed the cancellation): cancel it again."""
        logger.warning(
            "the worker call on job(s) %s is still running %g s after it was cancelled (%s); "
            "cancelling it again",
            ids(self._held.calls[task]),
            self._grace,
            stop.why,
        )
        self._cancel(task, stop)
