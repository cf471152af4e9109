"""QueueOptions: how a queue claims and runs jobs, as one validated value.

`process_jobs`, `run_tasks` and the CLI's `worker` each build one from what their caller
wrote, and a `JobQueue` reads it; so each option is checked once, here, and an error names the
option as it is spelled here (the CLI turns `poll_interval` into `--poll-interval`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal, TypeAlias

from ...model import validation as v
from ...model.decisions import NO_RULES, RetryRules
from ...model.errors import InvalidArgument, InvalidArgumentType
from ...model.ratelimit import RateLimit
from ...mongo.wakeup import WakeupSource

ErrorCallback: TypeAlias = Callable[[Exception], Any]
"""Called with each error the queue cannot attach to a job (a failed claim, a failed report);
it may be a plain function or an async one."""

DEFAULT_WORK_TIMEOUT = 60.0
"""Seconds of lease on every claim a queue makes unless told otherwise; the heartbeat renews
it every third of that, so only a queue that stops (its process died or hangs) loses it."""
DEFAULT_CANCEL_GRACE = 5.0
"""Seconds a queue gives a worker call it cancelled to end before it cancels it again (a
process worker's child: between SIGTERM and SIGKILL)."""

ExecutorName: TypeAlias = Literal["thread", "process"]
EXECUTORS: tuple[ExecutorName, ...] = ("thread", "process")
"""The executors a queue makes of its own: a pool of threads (the default), or of child
processes (processes.py)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueOptions:
    """A queue's options, validated when the value is made (InvalidArgument naming the
    option). Durations are given in seconds or as a timedelta and kept as seconds (a float,
    to the millisecond); the `_ms` properties are what the claims send."""

    concurrency: int = 1
    """Worker calls in flight at most."""
    payload: int = 1
    """Jobs per worker call: 1 hands the worker a Job, more a list of up to that many."""
    prefetch: int = 0
    """Jobs claimed ahead, beyond those a free worker slot takes."""
    poll_interval: float | timedelta | None = 5.0
    """Seconds between two looks for work; None or 0: no polling (kept as None)."""
    work_timeout: float | timedelta | None = None
    """The lease of every claim, renewed every third of it while the queue holds the job;
    None: DEFAULT_WORK_TIMEOUT (kept as that)."""
    timeout: float | timedelta | None = None
    """The longest a worker call may run unless its jobs say otherwise (`Job.timeout`);
    None: no limit."""
    cancel_grace: float | timedelta = DEFAULT_CANCEL_GRACE
    """How long a worker call the queue cancelled has to end before it is cancelled again;
    a process worker's child, how long it has after SIGTERM before SIGKILL."""
    rate_limit: RateLimit | None = None
    """At most so many of its jobs start per window over every process (model/ratelimit.py; a
    local JobCollection only, for now)."""
    wakeup: WakeupSource | bool = True
    """True: start jobs as soon as they become ready where the server can say so (change
    streams; a remote collection's long poll); False: polling and trigger() only; or a
    WakeupSource of one's own (also a CancelSource: it tells of cancelled jobs too)."""
    error_callback: ErrorCallback | None = None
    """Called with each error the queue cannot attach to a job; None: it is logged."""
    executor: Executor | ExecutorName | None = None
    """Where a sync worker (a plain function, or a task declared on one) runs: None or
    "thread", a pool of `concurrency` threads of the queue's own (threads.py); an Executor of
    one's own (a ThreadPoolExecutor: its function is handed the Job itself); or "process",
    `concurrency` child processes of the queue's own, which a timeout or a cancel kills
    (processes.py: the function is handed a JobView, and must pickle). Async workers run on
    the event loop whatever this says, except that "process" refuses them."""
    max_tasks_per_child: int | None = None
    """executor="process": a child process is replaced after so many calls; None: never."""
    max_memory_per_child: int | None = None
    """executor="process": a child process whose resident memory is over so many bytes after
    a call is replaced (Linux: the current RSS; elsewhere the peak); None: never."""
    retry_rules: RetryRules = NO_RULES
    """Which of its worker's exceptions are retried, and after what wait (model/decisions.py;
    `process_jobs`' retry_on, non_retryable and retry_backoff); the default retries every
    exception after the job's own backoff, as the job's `retry(on=...)` allows."""
    retry_rules_by_type: Mapping[str, RetryRules] = field(default_factory=dict, hash=False)
    """The retry rules of some job types, in place of `retry_rules` for their jobs (a queue
    of tasks: those of the tasks that declare their own)."""

    def __post_init__(self) -> None:
        keep = object.__setattr__  # frozen: the validated values replace what was given
        ms = v.duration_ms
        keep(self, "concurrency", v.integer(self.concurrency, "concurrency", minimum=1))
        keep(self, "payload", v.integer(self.payload, "payload", minimum=1))
        keep(self, "prefetch", v.integer(self.prefetch, "prefetch", minimum=0))
        poll_ms = None if self.poll_interval is None else ms(self.poll_interval, "poll_interval")
        keep(self, "poll_interval", poll_ms / 1000 if poll_ms else None)
        lease = DEFAULT_WORK_TIMEOUT if self.work_timeout is None else self.work_timeout
        keep(self, "work_timeout", ms(lease, "work_timeout", minimum_ms=1) / 1000)
        if self.timeout is not None:
            keep(self, "timeout", ms(self.timeout, "timeout", minimum_ms=1) / 1000)
        keep(self, "cancel_grace", ms(self.cancel_grace, "cancel_grace", minimum_ms=1) / 1000)
        if self.rate_limit is not None and not isinstance(self.rate_limit, RateLimit):
            raise InvalidArgumentType("rate_limit", "must be None or a RateLimit")
        if self.error_callback is not None and not callable(self.error_callback):
            raise InvalidArgumentType("error_callback", "must be callable")
        if isinstance(self.executor, str):
            keep(self, "executor", v.choice(self.executor, "executor", EXECUTORS))
        elif self.executor is not None and not isinstance(self.executor, Executor):
            raise InvalidArgumentType(
                "executor", 'must be None, "thread", "process" or a concurrent.futures.Executor'
            )
        if isinstance(self.executor, ProcessPoolExecutor):
            raise InvalidArgumentType(
                "executor",
                "must not be a ProcessPoolExecutor, which cannot stop one call on a timeout or "
                'a cancel (and a Job does not pickle): use executor="process"',
            )
        for name in ("max_tasks_per_child", "max_memory_per_child"):
            value = getattr(self, name)
            if value is None:
                continue
            if self.executor != "process":
                raise InvalidArgument(name, 'applies to executor="process" only')
            keep(self, name, v.integer(value, name, minimum=1))
        if not isinstance(self.retry_rules, RetryRules):
            raise InvalidArgumentType("retry_rules", "must be a RetryRules")
        if not isinstance(self.retry_rules_by_type, Mapping) or not all(
            isinstance(k, str) and isinstance(r, RetryRules)
            for k, r in self.retry_rules_by_type.items()
        ):
            raise InvalidArgumentType("retry_rules_by_type", "must map job types to RetryRules")
        keep(self, "retry_rules_by_type", dict(self.retry_rules_by_type))
        if not isinstance(self.wakeup, bool | WakeupSource):
            raise InvalidArgumentType(
                "wakeup", "must be True, False or a WakeupSource (an object with signals())"
            )

    def retry_rules_for(self, job_type: str) -> RetryRules:
        """The retry rules of a job type's jobs."""
        return self.retry_rules_by_type.get(job_type, self.retry_rules)

    @property
    def poll_s(self) -> float | None:
        """Seconds between two polls; None: no polling."""
        return None if self.poll_interval is None else _seconds(self.poll_interval)

    @property
    def work_timeout_ms(self) -> int:
        """The lease of every claim."""
        assert self.work_timeout is not None  # set by __post_init__
        return round(_seconds(self.work_timeout) * 1000)

    @property
    def heartbeat_s(self) -> float:
        """Seconds between two renewals of the leases: a third of the lease."""
        return self.work_timeout_ms / 1000 / 3

    @property
    def timeout_ms(self) -> int | None:
        """The longest a worker call may run unless its jobs say otherwise; None: no limit."""
        return None if self.timeout is None else round(_seconds(self.timeout) * 1000)

    @property
    def cancel_grace_s(self) -> float:
        """Seconds between two cancellations of a worker call that goes on after cancel()."""
        return _seconds(self.cancel_grace)


def _seconds(value: float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)
