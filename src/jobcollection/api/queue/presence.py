"""The queue in the worker registry: it registers itself when it starts, again every third of
its TTL with the jobs it holds, and leaves at its shutdown (model/workers.py), so
`jc.workers()` lists the live queues of every process, local and remote. The TTL is its
collection's: a local JobCollection's `worker_ttl`; the default (TTL_S) for a remote one.

Registering is bookkeeping, never the queue's work: a failed registration is logged (once a
refusal by the server's rules, after which the queue stops trying) and the queue carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Sequence

from bson import ObjectId

from ...model.document import JobWorker
from ...model.errors import PermissionDenied
from ...model.ops import ForgetWorker, SeeWorker
from ...model.workers import MAX_HELD, MAX_TEXT, WorkerInfo, announce_s
from ..seam import JobService
from .background import Background
from .holdings import Holdings
from .options import QueueOptions

logger = logging.getLogger("jobcollection.queue")

LEAVE_S = 5.0
"""The longest a shutdown waits for a registration in flight before cutting it off."""


class Presence:
    """One queue's registration."""

    def __init__(
        self,
        service: JobService,
        types: Sequence[str],
        options: QueueOptions,
        held: Holdings,
        background: Background,
    ) -> None:
        self.id = str(ObjectId())
        """The queue's id in the registry."""
        self._service = service
        self._types = tuple(types)
        self._options = options
        self._held = held
        self._background = background
        self._ttl_ms = service.worker_ttl_ms
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._refused = False

    def start(self) -> None:
        """Register now, then every third of the TTL."""
        self._task = self._background.spawn(self._loop(), "presence")

    async def _loop(self) -> None:
        """Announce until leave(); a registration in flight is finished, never cancelled (a
        command cut off mid-way leaves its connection to be cleaned up)."""
        while not self._stop.is_set():
            await self.announce()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), announce_s(self._ttl_ms))

    @property
    def claimant(self) -> JobWorker:
        """This queue as the jobs it claims record it (JobDoc.worker): its id in the
        registry, its host and its pid."""
        return JobWorker(id=self.id, host=socket.gethostname()[:MAX_TEXT], pid=os.getpid())

    def _worker(self) -> WorkerInfo:
        from ... import __version__

        jobs = [*self._held.queued, *self._held.in_hand()]
        ids = [job.id for job in jobs if job.id is not None]
        return WorkerInfo(
            id=self.id,
            host=socket.gethostname()[:MAX_TEXT],
            pid=os.getpid(),
            version=__version__,
            types=self._types,
            concurrency=self._options.concurrency,
            payload=self._options.payload,
            prefetch=self._options.prefetch,
            held=tuple(ids[:MAX_HELD]),
            holding=len(ids),
            ttl_ms=self._ttl_ms,
        )

    async def announce(self) -> bool:
        """Register (or renew) the queue with the jobs it holds now; whether it did."""
        if self._refused:
            return False
        try:
            return await self._service.run(SeeWorker(self._worker()))
        except PermissionDenied as exc:
            self._refused = True
            logger.warning("the worker registry refused this queue (%s); not registering", exc)
        except Exception as exc:  # the next announcement tries again
            logger.warning("registering this queue in the worker registry failed: %s", exc)
        return False

    async def leave(self) -> None:
        """Stop announcing and remove the registration (at the queue's shutdown)."""
        self._stop.set()
        if self._task is not None:  # a registration in flight ends, or is cut off after LEAVE_S
            await asyncio.wait({self._task}, timeout=LEAVE_S)
            self._background.retire(self._task)
        if self._refused:
            return
        try:
            await self._service.run(ForgetWorker(self.id))
        except Exception as exc:  # it expires on its own
            logger.warning("leaving the worker registry failed (%s); it will expire", exc)
