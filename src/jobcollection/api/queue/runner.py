"""The runner: starts worker calls on queued jobs while a worker slot is free, and sees each
call through. A call is given one job (or a list of up to `payload` jobs), bounded by its
`timeout` (the smallest of its jobs' own, `Job.timeout`, or else the queue's); when it ends,
its slot is freed and its outcome becomes its jobs' reports (reports.py): its return value
completes them, an exception fails them (not fatally), a timeout fails them with "timed out
after N s", and jobs whose claims were all lost are left as they are. Jobs the worker reported
itself (`job.reported`) are left as they are. A queued job past its deadline (`Job.expires`)
is released instead of started, for the next claim to cancel. An async worker runs on the
event loop, a plain function in the queue's threads (threads.py) or, with executor="process",
in its child processes (processes.py), which a stopped call kills."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeAlias

from ...model.clock import Clock
from ...model.errors import InvalidArgument, InvalidArgumentType
from ...rules import deadlines
from .. import tracing
from ..job import Job
from .background import Background
from .holdings import Holdings, State
from .log import fields, logger
from .options import QueueOptions
from .processes import JobView, Processes, ProcessWorker
from .reports import Reports
from .stops import Stops
from .threads import Threads, ThreadWorker, current_threads, is_async

Worker: TypeAlias = (
    Callable[[Job], Any]
    | Callable[[list[Job]], Any]
    | Callable[[JobView], Any]
    | Callable[[list[JobView]], Any]
)
"""A function given one Job (payload 1) or a list of Jobs (payload > 1): an async one runs on
the event loop, any other in the queue's threads (threads.py); with executor="process", a
plain function given a JobView (or a list of them) in its child processes (processes.py)."""


class Runner:
    """Runs the queue's worker on its queued jobs, up to `concurrency` calls at a time.
    `slot_freed` is called when a call is over (its reports still to write), `batch_ended`
    when its reports are written too (or its task ended otherwise)."""

    def __init__(
        self,
        worker: Worker,
        options: QueueOptions,
        held: Holdings,
        stops: Stops,
        reports: Reports,
        background: Background,
        *,
        clock: Clock,
        slot_freed: Callable[[], None],
        batch_ended: Callable[[], None],
    ) -> None:
        self._processes: Processes | None = None
        self._worker: Callable[[Any], Any]
        if options.executor == "process":
            if is_async(worker):
                raise InvalidArgument(
                    "executor",
                    '"process" runs a plain function in child processes; this worker is async '
                    "(it runs on the event loop)",
                )
            self._processes = Processes(
                worker,
                grace_s=options.cancel_grace_s,
                max_tasks=options.max_tasks_per_child,
                max_memory=options.max_memory_per_child,
            )
            self._worker = ProcessWorker(self._processes)
        else:
            self._worker = worker if is_async(worker) else ThreadWorker(worker)
        given = options.executor if isinstance(options.executor, Executor) else None
        self._threads = Threads(given, options.concurrency)
        self._payload = options.payload
        self._timeout_ms = options.timeout_ms
        self._held = held
        self._stops = stops
        self._reports = reports
        self._background = background
        self._clock = clock
        self._slot_freed = slot_freed
        self._batch_ended = batch_ended

    def start(self) -> None:
        """Start workers while there are queued jobs and free slots (unless paused)."""
        held = self._held
        started = False
        while held.queued and held.state.starts and not held.full():
            take = min(self._payload, len(held.queued))
            batch = self._in_time([held.queued.popleft() for _ in range(take)])
            if not batch:
                continue
            task = self._background.spawn(self._run(batch), "batch")
            held.calls[task] = batch
            task.add_done_callback(self._ended)
            started = True
        if started:
            held.notify()

    def _in_time(self, batch: list[Job]) -> list[Job]:
        """The jobs of a batch that are not past their deadlines (`Job.expires`). The others,
        claimed in time but held queued (prefetched) until after them, are not started but
        released: the claim that takes one next (this queue's, which the release's end
        triggers, or any other) cancels it, as the job server's pass does."""
        now = self._clock.now()
        late = [job for job in batch if deadlines.started_late(job.doc, now)]
        if not late:
            return batch
        task = self._background.spawn(self._hand_back(late), "release")
        self._held.reporting[task] = late
        task.add_done_callback(self._ended)
        return [job for job in batch if job not in late]

    async def _hand_back(self, jobs: list[Job]) -> None:
        await self._reports.release(jobs)

    async def _run(self, batch: list[Job]) -> None:
        """One batch's whole life: call the worker (within its timeout), free its slot, write
        its reports."""
        task = asyncio.current_task()
        assert task is not None
        current_threads.set(self._threads)  # (the task's own context: where sync code runs)
        error: BaseException | None = None
        result: Any = None
        deadline = self._deadline(task, batch)
        started = asyncio.get_running_loop().time()
        if logger.isEnabledFor(logging.INFO):
            for job in batch:
                logger.info("job %s %s started", job.type, job.id, extra=fields(job))
        try:
            with tracing.processing([job.doc for job in batch]):
                result = await self._call(batch)
        except BaseException as exc:
            error = exc
        if deadline is not None:
            deadline.cancel()
        stop = self._stops.end(task)
        cancelled = isinstance(error, asyncio.CancelledError)
        if stop is not None and not (cancelled and task.cancelling() > stop.cancels):
            # The queue cancelled the call (and no one else did): whatever the call did since,
            # its jobs are failed with the stop's error, or left alone (their claims are lost).
            for _ in range(stop.cancels):
                task.uncancel()
            result, error = None, stop.error
        elif cancelled:
            assert error is not None
            if self._held.state is not State.HARD:  # cancelled by someone else: leave
                await self._reports.finish(batch, error=error)  # nothing running
            raise error
        elif error is not None and not isinstance(error, Exception):
            # SystemExit, KeyboardInterrupt: fail the jobs, then let it go
            await self._reports.finish(batch, error=error)
            raise error
        # The call is over: its slot is free for the next batch while its reports are written
        # (reports of calls finishing close together share one bundled write).
        self._held.reporting[task] = self._held.calls.pop(task, batch)
        self._slot_freed()
        took = asyncio.get_running_loop().time() - started
        await self._reports.finish(batch, result=result, error=error, seconds=took)

    async def _call(self, batch: list[Job]) -> Any:
        outcome = self._worker(batch if self._payload > 1 else batch[0])
        if not inspect.isawaitable(outcome):  # an async-looking callable that is not
            raise InvalidArgumentType(
                "worker", f"must return an awaitable, not {type(outcome).__name__}"
            )
        return await outcome

    def _deadline(self, task: asyncio.Task[None], batch: list[Job]) -> asyncio.TimerHandle | None:
        """Time the worker call out after the smallest timeout of its jobs (the queue's for a
        job without one of its own); None: no limit."""
        limits = [self._timeout_ms if job.doc.timeout is None else job.doc.timeout for job in batch]
        known = [ms for ms in limits if ms is not None]
        if not known:
            return None
        limit_ms = min(known)
        why = f"timed out after {_seconds(limit_ms)} s"
        return asyncio.get_running_loop().call_later(
            limit_ms / 1000, self._stops.stop, task, why, TimeoutError(why)
        )

    def _ended(self, task: asyncio.Task[None]) -> None:
        if self._held.calls.pop(task, None) is None:
            self._held.reporting.pop(task, None)
        self._stops.end(task)  # a task cancelled before it started never ran _run
        if not task.cancelled() and task.exception() is not None:
            logger.error("batch task failed", exc_info=task.exception())
        self._batch_ended()

    async def release_executors(self) -> None:
        """At the queue's end, after its last call: let its own threads end once their calls
        return, and stop its child processes (it returns once none is left)."""
        self._threads.shutdown()
        if self._processes is not None:
            await self._processes.close()

    async def kill(self, error: dict[str, Any]) -> int:
        """Cancel every worker call and fail (with `error`) the jobs it had not finished and
        that have not lost their claims; the number failed."""
        tasks = list(self._held.calls)
        jobs = [
            job
            for batch in self._held.calls.values()
            for job in batch
            if not job.reported and not job.cancelled
        ]
        for task in tasks:
            task.cancel()
        failed = await self._reports.fail(jobs, error)
        await asyncio.wait(tasks)
        return failed


def _seconds(ms: int) -> str:
    """Milliseconds as seconds, compactly: 50 -> "0.05", 30000 -> "30"."""
    return f"{ms / 1000:.3f}".rstrip("0").rstrip(".")
