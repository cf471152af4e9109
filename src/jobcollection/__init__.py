"""jobcollection: a persistent, asyncio-native job queue stored in MongoDB.

Jobs are documents; every state change is one atomic conditional update, so workers can run
anywhere. Documents keep job-collection v1.x field names and units.
"""

from .api import JobPage
from .clock import Clock, ManualClock, SystemClock
from .collection import JobCollection
from .constants import (
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
    PERMISSION_LEVELS,
    Status,
)
from .document import CronSchedule, JobDoc, LaterSchedule, LogEntry, Progress
from .errors import (
    DatabaseError,
    DuplicateJob,
    InvalidArgument,
    InvalidArgumentType,
    InvalidDocument,
    JobCollectionError,
    JobNotSaved,
    PermissionDenied,
    WakeupUnavailable,
    WriteRefused,
)
from .events import MethodEvent
from .job import Job
from .limits import Limits
from .queries import QueueStats
from .queue import JobQueue, QueueOptions
from .ratelimit import RateLimit
from .seam import JobService, ServedCollection
from .server import ServerPass
from .servertime import ServerClock
from .tasks import BoundTask, Task, TaskOptions, TaskRegistry, current_job
from .wakeup import ChangeStreamSource, WakeupSource

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
    "PERMISSION_LEVELS",
    "BoundTask",
    "ChangeStreamSource",
    "Clock",
    "CronSchedule",
    "DatabaseError",
    "DuplicateJob",
    "InvalidArgument",
    "InvalidArgumentType",
    "InvalidDocument",
    "Job",
    "JobCollection",
    "JobCollectionError",
    "JobDoc",
    "JobNotSaved",
    "JobPage",
    "JobQueue",
    "JobService",
    "LaterSchedule",
    "Limits",
    "LogEntry",
    "ManualClock",
    "MethodEvent",
    "PermissionDenied",
    "QueueStats",
    "Progress",
    "QueueOptions",
    "RateLimit",
    "ServerClock",
    "ServedCollection",
    "ServerPass",
    "SystemClock",
    "Task",
    "TaskOptions",
    "TaskRegistry",
    "WakeupSource",
    "Status",
    "WakeupUnavailable",
    "WriteRefused",
    "__version__",
    "current_job",
]
