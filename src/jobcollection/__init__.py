"""jobcollection: a persistent, asyncio-native job queue stored in MongoDB.

Jobs are documents; every state change is one atomic conditional update, so workers can run
anywhere. Documents keep job-collection v1.x field names and units.
"""

from .api.collection import JobCollection
from .api.job import Job, UniqueOptions
from .api.jobs import JobPage
from .api.queue import JobQueue, QueueOptions
from .api.queue.processes import JobView, WorkerProcessError
from .api.schedules import Schedules
from .api.seam import JobService, ServedCollection
from .api.tasks import BoundTask, Task, TaskOptions, TaskRegistry, current_job
from .api.workflows import Batch, Flow, Workflow, WorkflowStatus, batch, chain, chord, group
from .local.leadership import Leader
from .local.server import ServerPass
from .model.clock import Clock, ManualClock, SystemClock
from .model.concurrency import ConcurrencyLimit
from .model.constants import (
    FOREVER,
    FOREVER_DATE,
    JOB_LOG_LEVELS,
    JOB_PRIORITIES,
    JOB_RETRY_BACKOFF_METHODS,
    JOB_STATUS_CANCELLABLE,
    JOB_STATUS_PAUSABLE,
    JOB_STATUS_REMOVABLE,
    JOB_STATUS_RESTARTABLE,
    JOB_STATUSES,
    METHOD_PERMISSIONS,
    METHODS,
    ON_FAILURE_POLICIES,
    PERMISSION_LEVELS,
    Status,
)
from .model.decisions import RetryRules
from .model.document import (
    CronSchedule,
    JobDoc,
    JobWorker,
    LaterSchedule,
    LogEntry,
    Progress,
    ScheduledRun,
)
from .model.errors import (
    Cancel,
    DatabaseError,
    DuplicateJob,
    Fatal,
    InvalidArgument,
    InvalidArgumentType,
    InvalidDocument,
    JobCollectionError,
    JobDecision,
    JobNotSaved,
    PermissionDenied,
    Snooze,
    WakeupUnavailable,
    WriteRefused,
)
from .model.events import MethodEvent
from .model.limits import Limits
from .model.queries import QueueStats
from .model.ratelimit import RateLimit
from .model.schedules import LastRun, Schedule
from .model.types import Paused
from .model.workers import WorkerInfo
from .mongo.servertime import ServerClock
from .mongo.wakeup import ChangeStreamSource, WakeupSource

__version__ = "0.1.0"

__all__ = [
    "FOREVER",
    "FOREVER_DATE",
    "JOB_LOG_LEVELS",
    "JOB_PRIORITIES",
    "JOB_RETRY_BACKOFF_METHODS",
    "JOB_STATUSES",
    "JOB_STATUS_CANCELLABLE",
    "JOB_STATUS_PAUSABLE",
    "JOB_STATUS_REMOVABLE",
    "JOB_STATUS_RESTARTABLE",
    "METHODS",
    "METHOD_PERMISSIONS",
    "ON_FAILURE_POLICIES",
    "Batch",
    "Flow",
    "JobView",
    "WorkerProcessError",
    "Workflow",
    "batch",
    "WorkflowStatus",
    "chain",
    "chord",
    "group",
    "PERMISSION_LEVELS",
    "BoundTask",
    "Cancel",
    "ChangeStreamSource",
    "Clock",
    "CronSchedule",
    "DatabaseError",
    "DuplicateJob",
    "Fatal",
    "InvalidArgument",
    "InvalidArgumentType",
    "InvalidDocument",
    "Job",
    "JobCollection",
    "JobCollectionError",
    "JobDecision",
    "JobDoc",
    "JobNotSaved",
    "JobPage",
    "JobQueue",
    "JobService",
    "JobWorker",
    "LaterSchedule",
    "Limits",
    "LogEntry",
    "ManualClock",
    "MethodEvent",
    "PermissionDenied",
    "QueueStats",
    "Paused",
    "WorkerInfo",
    "Progress",
    "QueueOptions",
    "RateLimit",
    "RetryRules",
    "Snooze",
    "ConcurrencyLimit",
    "ServerClock",
    "ServedCollection",
    "ServerPass",
    "Schedule",
    "ScheduledRun",
    "Schedules",
    "LastRun",
    "Leader",
    "SystemClock",
    "Task",
    "TaskOptions",
    "TaskRegistry",
    "UniqueOptions",
    "WakeupSource",
    "Status",
    "WakeupUnavailable",
    "WriteRefused",
    "__version__",
    "current_job",
]
