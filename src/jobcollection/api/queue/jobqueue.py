"""JobQueue: claim jobs and hand them to an async worker (job-collection's processJobs).

A queue keeps a FIFO of claimed jobs that have not started and up to `concurrency` worker calls
in flight, each given one job (or a list of up to `payload` jobs). `JobQueue` is the facade;
a job's life through it is, in order:

1. claimed (claims.py), with a lease (leases.py) the heartbeat renews while the queue holds it;
2. queued, until a worker slot is free, then run by a worker call (runner.py: on the event
   loop, in threads, threads.py, or in child processes, processes.py), which the queue
   cancels (stops.py; a child process is killed) if it runs past its timeout or all its jobs
   lost their claims;
3. reported (reports.py): completed, failed or, at a shutdown (shutdown.py), released.

Every job a queue is handed ends completed, failed, retried or released. The queue owns its
background tasks (background.py); `shutdown()` stops them all and awaits them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Self

from ...model import validation as v
from ...model.errors import InvalidArgument, InvalidArgumentType
from ...mongo.wakeup import WakeupSource
from .background import Background
from .claims import Claims
from .failures import ErrorSink
from .holdings import Holdings, State
from .leases import Leases
from .log import logger
from .options import QueueOptions
from .presence import Presence
from .reports import Reports
from .runner import Runner, Worker
from .shutdown import Shutdown, ShutdownLevel
from .stops import Stops

if TYPE_CHECKING:
    from datetime import datetime

    from ..seam import ServedCollection

NO_RATE_LIMITS = (
    "rate limits need a local JobCollection for now: a RemoteJobCollection cannot claim "
    "under a RateLimit"
)


class JobQueue:
    """Claims jobs of some types and runs them through an async worker.

    Create it with `jc.process_jobs(...)` inside a running event loop; it starts at once (as
    the original, by resuming). `pause()` it right away to create it paused.
    """

    def __init__(
        self,
        jc: ServedCollection,
        type_or_types: str | Sequence[str],
        worker: Worker,
        options: QueueOptions | None = None,
    ) -> None:
        """`options`: how it claims and runs jobs (QueueOptions; None: the defaults). A
        wake-up source that is also a CancelSource (the default change streams) tells the
        queue of cancelled jobs too; cancels made through this process's JobCollection are
        seen whatever `options.wakeup` says."""
        options = QueueOptions() if options is None else options
        if not isinstance(options, QueueOptions):
            raise InvalidArgumentType("options", "must be None or a QueueOptions")
        self._types = v.job_types(type_or_types, "type_or_types")
        if not callable(worker):
            raise InvalidArgumentType("worker", "must be a function (async, or run in a thread)")
        if options.rate_limit is not None and not jc.service.rate_limits:
            raise InvalidArgument("rate_limit", NO_RATE_LIMITS)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "a JobQueue must be created inside a running event loop "
                "(call process_jobs() from async code)"
            ) from None

        self._options = options
        # The parts, each given what it uses; the hooks below are how they hand a job on.
        self._held = held = Holdings(options.concurrency)
        background = Background()
        on_error = ErrorSink(options.error_callback)
        stops = Stops(held, options.cancel_grace_s)
        self._leases = Leases(jc.service, options, held, stops, background, on_error)
        reports = Reports(jc.service, self._leases, on_error, options.retry_rules_for)
        self._runner = Runner(
            worker,
            options,
            held,
            stops,
            reports,
            background,
            clock=jc.service.clock,
            slot_freed=self._slot_freed,
            batch_ended=self._batch_ended,
        )
        self._presence = Presence(jc.service, self._types, options, held, background)
        self._claims = Claims(
            jc,
            self._types,
            options,
            held,
            self._leases,
            background,
            on_error,
            claimed=self._runner.start,
            worker=self._presence.claimant,
        )
        self._shutdown = Shutdown(
            self,
            held,
            self._claims,
            self._runner,
            reports,
            self._leases,
            background,
            self._presence,
        )

        source: WakeupSource | None = None
        if options.wakeup is True:
            source = jc.service.wakeup()
        elif options.wakeup is not False:
            source = options.wakeup
        self._claims.listen(source, saves=options.wakeup is not False)
        self._leases.start(source)
        self._presence.start()
        self.resume()

    # --- a job's life: claimed -> queued -> run -> reported ----------------------------------
    # Claims queues what it claimed and calls runner.start (`claimed`); the runner calls these
    # two as each worker call ends; Leases drops jobs whose claim is lost and stops their calls.

    def _slot_freed(self) -> None:
        """A worker call is over (its reports are being written): start the next, claim more."""
        self._runner.start()
        self._claims.trigger()
        self._held.notify()

    def _batch_ended(self) -> None:
        """A batch is done with: its claims end here, unless the queue holds more of their
        jobs."""
        self._leases.forget()
        self._slot_freed()

    def __repr__(self) -> str:
        counts = f"queued={self.length()} running={self.running()}"
        return f"<JobQueue {self._types} {self._held.state.value} {counts}>"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown("soft")

    # --- state -------------------------------------------------------------------------------

    def length(self) -> int:
        """Jobs claimed and waiting for a worker."""
        return len(self._held.queued)

    def running(self) -> int:
        """Worker calls in flight (a payload batch counts once)."""
        return len(self._held.calls)

    def full(self) -> bool:
        """True when `concurrency` worker calls are in flight."""
        return self._held.full()

    def idle(self) -> bool:
        """True when nothing is queued, running, or being reported."""
        return self._held.idle()

    def claims_held(self) -> int:
        """Claims (runIds) whose lease the queue keeps track of: those it holds jobs of,
        queued, running, being reported or being released. 0 once it holds nothing."""
        return self._leases.count()

    @property
    def worker_id(self) -> str:
        """The queue's id in the worker registry (`jc.workers()`)."""
        return self._presence.id

    async def announce(self) -> bool:
        """Register the queue in the worker registry now, with the jobs it holds (it does so
        every third of its collection's `worker_ttl` by itself); whether it did."""
        return await self._presence.announce()

    @property
    def options(self) -> QueueOptions:
        """The options the queue runs with."""
        return self._options

    @property
    def next_wakeup(self) -> datetime | None:
        """When the queue will look for work on its own because a job of its types falls due
        then (sooner than its next poll); None: at its next poll or trigger."""
        return self._claims.next_wakeup

    # --- control -----------------------------------------------------------------------------

    def pause(self) -> None:
        """Stop claiming and starting jobs; running workers carry on, queued jobs wait."""
        if self._held.state.level >= 0:
            return  # the shutdown decides what runs now
        self._held.state = State.PAUSED
        self._claims.stop_polling()
        self._held.notify()

    def resume(self) -> None:
        """Claim at once, restart the poll timer and start queued jobs."""
        if self._held.state.level >= 0:
            logger.warning("resume() ignored: %r is shutting down", self)
            return
        self._held.state = State.ACTIVE
        self._claims.poll()
        self._runner.start()
        self._claims.trigger()
        self._held.notify()

    def trigger(self) -> None:
        """Look for work now, as each poll does; ignored while paused or shutting down."""
        self._claims.trigger()

    async def drain(self) -> None:
        """Wait until the queue has nothing left to do for now: no claim in flight, no worker
        running, and no queued job that could start (a paused queue may still hold some).
        For tests and batch scripts; bound it with asyncio.timeout."""
        held = self._held
        await held.wait_until(lambda: not held.calls and not held.reporting and self._settled())

    async def settle(self) -> None:
        """Wait until no claim is in flight and no queued job could start now (every worker
        slot busy, or paused, or nothing queued); running workers may carry on."""
        await self._held.wait_until(self._settled)

    def _settled(self) -> bool:
        held = self._held
        startable = held.queued and held.state.starts and not held.full()
        return not self._claims.in_flight and not startable

    async def heartbeat_now(self) -> int:
        """Renew the lease of every job the queue holds (queued, running or being reported)
        now; the number renewed. The queue does this every work_timeout / 3 seconds by
        itself. A job whose claim is found lost (`job.cancelled`) is dropped if it has not
        started; a worker call whose unreported jobs all lost their claims is cancelled."""
        return await self._leases.heartbeat_now()

    async def shutdown(self, level: ShutdownLevel = "normal", quiet: bool = False) -> None:
        """Stop the queue; returns when the level's conditions hold and every task ended.

        Every level claims nothing more (a claim in flight is awaited, its jobs queued).
        - "soft": queued jobs still start; returns when nothing is queued or running.
        - "normal": queued jobs are released (ready again for any worker, no attempt used);
          running ones finish.
        - "hard": queued jobs are released; running ones are failed (not fatally) with
          "Worker shutdown" at once and their worker tasks are cancelled.
        A second call may raise the level (a second Ctrl-C turning "normal" into "hard").
        """
        await self._shutdown(level, quiet)
