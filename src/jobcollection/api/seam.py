"""The seam between jobs and where they are stored: what a `Job` and a `JobQueue` need.

`JobService` runs operations (model/ops.py) by one verb, `run(op)`. `JobCollection` provides one
over a MongoDB collection (`jc.service`, see local/core.py); a remote client provides one over the
network (remote/client.py), and `Job` and `JobQueue` run unchanged on either. Operations hold
typed Python: ids are ObjectIds or strings, documents are JobDocs, datetimes are aware,
durations are integer milliseconds (`_ms`) as stored. They are validated by whoever builds
them (the Python API of Job and JobCollection, or the method layer for wire calls); a service
checks them against its limits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, TypeVar, runtime_checkable

from ..model.clock import Clock
from ..model.limits import Limits
from ..model.ops import Op, Outcome

__all__ = ["JobService", "Outcome", "ServedCollection"]

R = TypeVar("R")

if TYPE_CHECKING:
    from ..mongo.wakeup import LocalCancels, LocalSaves, WakeupSource


@runtime_checkable
class JobService(Protocol):
    """The operations of a job collection, run by one verb: `await service.run(op)`."""

    @property
    def clock(self) -> Clock:
        """Where "now" comes from (the database server's time by default)."""
        ...

    @property
    def limits(self) -> Limits:
        """Bounds on what a job may hold and a call may ask for."""
        ...

    @property
    def worker_ttl_ms(self) -> int:
        """How long the worker-registry entries of this service's queues last unless renewed
        (they renew them every third of it)."""
        ...

    @property
    def rate_limits(self) -> bool:
        """Whether GetLimitedWork and RateLimited can run here (False: a remote collection,
        for now, which refuses them with InvalidArgument)."""
        ...

    async def run(self, op: Op[R]) -> R:
        """Run one operation (model/ops.py) and answer its result."""
        ...

    def wakeup(self) -> WakeupSource | None:
        """Where a queue learns promptly that jobs became ready, if anywhere (the queue polls
        regardless)."""
        ...

    def saves(self) -> LocalSaves | None:
        """The jobs saved through this service, as they are (for the queues of the same
        process); None where saves are not seen."""
        ...

    def cancels(self) -> LocalCancels | None:
        """The ids of the jobs cancelled or removed through this service (for the queues of
        the same process, which stop a worker whose jobs were cancelled at once); None where
        cancels are not seen (the queues' heartbeats find them)."""
        ...


@runtime_checkable
class ServedCollection(Protocol):
    """What `Job(jc, ...)` and `JobQueue(jc, ...)` are given: a job collection, local or
    remote, with its typed service."""

    @property
    def service(self) -> JobService:
        """The collection's typed operations."""
        ...
