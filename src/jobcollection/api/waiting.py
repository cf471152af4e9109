"""Waiting for jobs to finish: what `job.wait()` and `jc.wait_for()` share.

Every coroutine of a process that waits on jobs of one collection (its service) is served by
one `Waiters`: one poll reads every job waited on together (a `getJob` of up to POLL_CHUNK
ids), so however many coroutines wait, the database sees one read per interval, and never
more than one per MIN_INTERVAL. The interval grows from MIN_INTERVAL to MAX_INTERVAL while
nothing finishes and starts again when something does. A poll comes at once when something
may have finished:

- a call through the same JobCollection that finishes jobs (done, fail, cancel, remove: its
  queues, the remote workers it serves), told by its method events;
- where the database has change streams, any process finishing a job (ChangeStreamSource.
  finishes()).

A job is final once completed, failed or cancelled (a failed attempt with retries left leaves
it waiting, so it is not), or once it is gone (removed). The poller runs only while someone
waits.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from ..model.constants import Status
from ..model.errors import WakeupUnavailable
from ..model.ops import GetJobs
from ..mongo.wakeup import follow

if TYPE_CHECKING:
    from ..model.document import JobDoc
    from ..model.types import Id
    from .seam import JobService

logger = logging.getLogger("jobcollection")

MIN_INTERVAL: Final = 0.05
MAX_INTERVAL: Final = 2.0
POLL_CHUNK: Final = 1000
FINISHING: Final = frozenset({"jobDone", "jobFail", "jobCancel", "jobRemove"})
"""The methods whose calls may finish a job (a poll follows at once)."""


class Waiters:
    """The jobs a process waits on in one collection, polled together."""

    def __init__(self, service: JobService) -> None:
        self._service = service
        self._waiting: dict[Id, list[asyncio.Future[JobDoc | None]]] = {}
        self._poller: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._poke = asyncio.Event()
        events = getattr(service, "events", None)  # a local collection's method events
        if events is not None:
            events.on("call", self._on_call)
        self.polls = 0
        """Polls made so far (each one read of the jobs waited on, per POLL_CHUNK ids)."""

    def _on_call(self, event: Any) -> None:
        if self._waiting and getattr(event, "method", None) in FINISHING:
            self._poke.set()

    async def wait(self, ids: Sequence[Id], timeout: float | None) -> list[JobDoc | None]:
        """Each job's document once it is final, in order (None: it is gone); TimeoutError
        after `timeout` seconds (None: no limit)."""
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in ids]
        for job_id, future in zip(ids, futures, strict=True):
            self._waiting.setdefault(job_id, []).append(future)
        self._start()
        self._poke.set()  # look at once: they may be final already
        try:
            async with asyncio.timeout(timeout):
                return list(await asyncio.gather(*futures))
        finally:
            for job_id, future in zip(ids, futures, strict=True):
                future.cancel()
                waiters = self._waiting.get(job_id, [])
                if future in waiters:
                    waiters.remove(future)
                if not waiters:
                    self._waiting.pop(job_id, None)

    def _start(self) -> None:
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll(), name="jobcollection-waiters")
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.create_task(self._watch(), name="jobcollection-finishes")

    async def _poll(self) -> None:
        interval = MIN_INTERVAL
        try:
            while self._waiting:
                self._poke.clear()
                finished = await self._look()
                interval = MIN_INTERVAL if finished else min(interval * 2, MAX_INTERVAL)
                if not self._waiting:
                    return
                # At most one poll per MIN_INTERVAL however many waits begin or calls finish
                # jobs meanwhile: their pokes are taken together by the next poll.
                await asyncio.sleep(MIN_INTERVAL)
                if self._poke.is_set():
                    continue
                try:
                    async with asyncio.timeout(interval - MIN_INTERVAL):
                        await self._poke.wait()
                except TimeoutError:
                    pass
        finally:
            if self._watcher is not None:
                self._watcher.cancel()

    async def _look(self) -> int:
        """One poll: resolve the waiters of every job that is final or gone; how many."""
        ids = list(self._waiting)
        found: dict[Any, JobDoc] = {}
        try:
            for start in range(0, len(ids), POLL_CHUNK):
                self.polls += 1
                docs = await self._service.run(GetJobs(ids[start : start + POLL_CHUNK]))
                found.update((doc.id, doc) for doc in docs)
        except Exception as exc:  # the next poll tries again
            logger.warning("waiting for jobs: a poll failed (%s); trying again", exc)
            return 0
        finished = 0
        for job_id in ids:
            doc = found.get(job_id)
            if doc is not None and doc.status not in Status.FINAL:
                continue
            finished += 1
            for future in self._waiting.pop(job_id, []):
                if not future.done():
                    future.set_result(doc)
        return finished

    async def _watch(self) -> None:
        """Poke the poller when a change stream says a job waited on finished."""
        source = self._service.wakeup()
        finishes = getattr(source, "finishes", None)
        if finishes is None:
            return  # polling (and this process's own calls) it is
        ended = await follow(finishes(), self._on_finish)
        if ended is not None and not isinstance(ended, WakeupUnavailable):
            logger.warning("waiting for jobs: the change stream failed (%r); polling", ended)

    def _on_finish(self, job_id: Any) -> None:
        if job_id is None or job_id in self._waiting:
            self._poke.set()


_WAITERS: weakref.WeakKeyDictionary[Any, Waiters] = weakref.WeakKeyDictionary()


def waiters(service: JobService) -> Waiters:
    """The Waiters of a service (one per service and process)."""
    found = _WAITERS.get(service)
    if found is None:
        found = _WAITERS[service] = Waiters(service)
    return found
