"""Sync workers: a plain (not async) function given to a queue, or a task declared on one, runs
in a thread, so the event loop goes on renewing leases, writing reports and claiming while it
blocks (a coroutine that blocks stops all of that: its lease runs out and the job runs twice).

The threads are the queue's own pool of `concurrency` threads, or the executor the queue was
given (`process_jobs(..., executor=)`). The function runs with a copy of the caller's context
(`current_job()`, tracing). It may use the job's actions through `job.sync` (`job.sync.progress(
1, 10)`, `job.sync.log(...)`): each runs on the event loop and blocks the thread until it
is answered.

A thread cannot be stopped: a timeout or a cancel ends the call as for an async worker (the
job is failed or left cancelled, its slot freed), but the function runs on in its thread
until it returns on its own, and its result is then dropped.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from contextvars import ContextVar
from typing import Any

from ..job import Job

current_threads: ContextVar[Threads | None] = ContextVar("jobcollection_threads", default=None)
"""The threads of the queue whose worker call is running (None: asyncio's default executor):
where a sync function runs."""


def is_async(worker: Any) -> bool:
    """Whether a worker is an async function (or an object whose __call__ is one): it runs on
    the event loop; anything else callable runs in a thread."""
    return inspect.iscoroutinefunction(worker) or inspect.iscoroutinefunction(
        getattr(worker, "__call__", None)  # noqa: B004 (a class instance's async __call__)
    )


async def in_thread(function: Callable[[], Any], jobs: list[Job]) -> Any:
    """Run a call in the current queue's executor, these jobs' `sync` actions bound to this
    loop; its result (awaited on the loop, should it be awaitable)."""
    loop = asyncio.get_running_loop()
    for job in jobs:
        job._bind_loop(loop)
    run = contextvars.copy_context().run
    threads = current_threads.get()
    executor = None if threads is None else threads.executor()
    result = await loop.run_in_executor(executor, run, function)
    if inspect.isawaitable(result):
        result = await result
    return result


class ThreadWorker:
    """A sync function as a queue's worker: an async callable that runs each call of it in
    the queue's threads (see the module docstring)."""

    def __init__(self, function: Callable[[Any], Any]) -> None:
        self.function = function

    async def __call__(self, given: Job | list[Job]) -> Any:
        jobs = given if isinstance(given, list) else [given]
        return await in_thread(functools.partial(self.function, given), jobs)


class Threads:
    """The executor a queue's sync calls run in: the one given, or a pool of `size` threads
    of its own, made at the first call and shut down with the queue."""

    def __init__(self, given: Executor | None, size: int) -> None:
        self._given = given
        self._size = size
        self._own: ThreadPoolExecutor | None = None

    def executor(self) -> Executor:
        if self._given is not None:
            return self._given
        if self._own is None:
            self._own = ThreadPoolExecutor(self._size, thread_name_prefix="jobcollection")
        return self._own

    def shutdown(self) -> None:
        """Let the pool's threads end once their calls return (they cannot be stopped)."""
        if self._own is not None:
            self._own.shutdown(wait=False, cancel_futures=True)
            self._own = None
