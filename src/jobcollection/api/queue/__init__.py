"""The job queue (`JobQueue`, made by `jc.process_jobs` and `jc.run_tasks`), in parts:

- options.py: `QueueOptions`, the queue's options as one validated value;
- jobqueue.py: `JobQueue`, the facade, where a job's life through the queue reads in order;
- claims.py: claiming jobs (polls, triggers, wake-ups, prefetch, rate limits);
- leases.py: the lease of every claim, the heartbeat, and finding lost claims (cancels);
- runner.py: worker calls on queued jobs, each within its timeout;
- stops.py: cancelling a worker call in flight, again until it ends;
- reports.py: completing, failing and releasing jobs, with retries while the lease holds;
- shutdown.py: the three shutdown levels;
- holdings.py, background.py, failures.py, log.py: what the parts share (the jobs held and
  the queue's state, its tasks, its errors, its logger).
"""

from .claims import MIN_WAKEUP_DELAY
from .failures import MESSAGE_LIMIT, TRACEBACK_LIMIT, failure_info
from .holdings import State
from .jobqueue import NO_RATE_LIMITS, JobQueue
from .log import logger
from .options import DEFAULT_CANCEL_GRACE, DEFAULT_WORK_TIMEOUT, ErrorCallback, QueueOptions
from .reports import MAX_RETRY_DELAY, retry_delay
from .runner import Worker
from .shutdown import SHUTDOWN_LEVELS, WORKER_SHUTDOWN_ERROR, ShutdownLevel

__all__ = [
    "DEFAULT_CANCEL_GRACE",
    "DEFAULT_WORK_TIMEOUT",
    "MAX_RETRY_DELAY",
    "MESSAGE_LIMIT",
    "MIN_WAKEUP_DELAY",
    "NO_RATE_LIMITS",
    "SHUTDOWN_LEVELS",
    "TRACEBACK_LIMIT",
    "WORKER_SHUTDOWN_ERROR",
    "ErrorCallback",
    "JobQueue",
    "QueueOptions",
    "ShutdownLevel",
    "State",
    "Worker",
    "failure_info",
    "logger",
    "retry_delay",
]
