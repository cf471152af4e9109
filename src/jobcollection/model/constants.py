"""Constants shared with job-collection v1.x: statuses, priorities, methods and permissions.

The values match the original so that stored documents and permission rules stay
interchangeable; only the units of the Python API differ (seconds, aware datetimes).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import ClassVar, Final, Literal

FOREVER: Final = 2**53
"""Retries or repeats without end; larger values are clamped to it at save."""

FOREVER_DATE: Final = datetime.max.replace(tzinfo=UTC)
"""The latest datetime Python can hold; the original's later JavaScript date reads as this."""

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

JOB_PRIORITIES: Final[dict[str, int]] = {
    "low": 10,
    "normal": 0,
    "medium": -5,
    "high": -10,
    "critical": -15,
}


class Status(StrEnum):
    """A job's status. Members are the strings job-collection v1.x stores (`Status.READY ==
    "ready"`; BSON and JSON write them as those strings), so a stored string compares equal to
    its member and `Status(stored)` reads one. Which operations apply to a status is asked of
    it (`status.cancellable`), or of the groups (`Status.CANCELLABLE`, ...; the JOB_STATUS_*
    tuples are these)."""

    WAITING = "waiting"
    PAUSED = "paused"
    READY = "ready"
    RUNNING = "running"
    FAILED = "failed"
    CANCELLED = "cancelled"
    COMPLETED = "completed"

    PENDING: ClassVar[tuple[Status, ...]]
    """Not started yet: the jobs a unique key is held by (a claim or a cancel lets go of it)."""
    FINAL: ClassVar[tuple[Status, ...]]
    """Finished for good (until restarted or rerun): what retention and waiting look for."""
    CANCELLABLE: ClassVar[tuple[Status, ...]]
    PAUSABLE: ClassVar[tuple[Status, ...]]
    REMOVABLE: ClassVar[tuple[Status, ...]]
    RESTARTABLE: ClassVar[tuple[Status, ...]]

    def __repr__(self) -> str:
        """As the string it is (`'ready'`), so messages that list statuses read as before."""
        return repr(self.value)

    @property
    def is_pending(self) -> bool:
        """Not started yet (waiting, paused or ready)."""
        return self in Status.PENDING

    @property
    def is_final(self) -> bool:
        """Completed, failed or cancelled."""
        return self in Status.FINAL

    @property
    def cancellable(self) -> bool:
        """A cancel applies (JOB_STATUS_CANCELLABLE)."""
        return self in Status.CANCELLABLE

    @property
    def pausable(self) -> bool:
        """A pause applies (JOB_STATUS_PAUSABLE)."""
        return self in Status.PAUSABLE

    @property
    def removable(self) -> bool:
        """A remove applies (JOB_STATUS_REMOVABLE)."""
        return self in Status.REMOVABLE

    @property
    def restartable(self) -> bool:
        """A restart applies (JOB_STATUS_RESTARTABLE)."""
        return self in Status.RESTARTABLE


# The groups, in job-collection v1.x's order (its jobStatus* arrays).
Status.PENDING = (Status.WAITING, Status.PAUSED, Status.READY)
Status.FINAL = (Status.COMPLETED, Status.FAILED, Status.CANCELLED)
Status.CANCELLABLE = (Status.RUNNING, Status.READY, Status.WAITING, Status.PAUSED)
Status.PAUSABLE = (Status.READY, Status.WAITING)
Status.REMOVABLE = (Status.CANCELLED, Status.COMPLETED, Status.FAILED)
Status.RESTARTABLE = (Status.CANCELLED, Status.FAILED)

JOB_STATUSES: Final[tuple[Status, ...]] = tuple(Status)

LogLevel = Literal["info", "success", "warning", "danger"]
JOB_LOG_LEVELS: Final[tuple[LogLevel, ...]] = ("info", "success", "warning", "danger")
"""In rank order: an echo threshold prints its level and every later one."""

Backoff = Literal["constant", "exponential"]
JOB_RETRY_BACKOFF_METHODS: Final[tuple[Backoff, ...]] = ("constant", "exponential")
"""The backoff methods job-collection v1.x knows: what a stored `retryBackoff` holds."""
RetryBackoff = Literal["constant", "exponential", "linear"]
RETRY_BACKOFF_METHODS: Final[tuple[RetryBackoff, ...]] = ("constant", "exponential", "linear")
"""What `Job.retry(backoff=)` takes: v1.x's methods, and "linear" (kept in `_private`)."""

CATCH_UP_POLICIES: Final = ("latest", "none", "all")
"""What `repeat(catch_up=)` takes (see document.CronSchedule)."""

OnConflict = Literal["replace", "ignore", "error", "throttle", "debounce", "keep_latest"]
UNIQUE_ON_CONFLICT: Final[tuple[OnConflict, ...]] = (
    "replace",
    "ignore",
    "error",
    "throttle",
    "debounce",
    "keep_latest",
)
"""What saving a unique job does while another job holds its key (`Job.unique(mode=)`): cancel
that job and save this one ("replace"); keep that job, the save answering its id ("ignore", and
"throttle", which is "ignore" over a period); raise DuplicateJob ("error"); give that job this
one's data and push its start back by the period ("debounce"); give that job this one's data
("keep_latest")."""
UNIQUE_ON_PENDING: Final[tuple[OnConflict, ...]] = ("replace", "debounce", "keep_latest")
"""The modes that act on the job holding the key, which must not have started: a job saved
with one holds its key only while it is pending."""
OnFailure = Literal["cancel", "fail", "ignore", "remove"]
ON_FAILURE_POLICIES: Final[tuple[OnFailure, ...]] = ("cancel", "fail", "ignore", "remove")
"""What a dependent does when one of its antecedents fails for good or is cancelled (a policy
per edge): is cancelled (job-collection's behaviour, the default), fails, runs anyway once
the others complete (recording the antecedent in `failed_antecedents`), or drops the edge."""
JOB_STATUS_PENDING: Final = Status.PENDING
"""Not started yet: the jobs a unique key is held by (a claim or a cancel lets go of it)."""

JOB_STATUS_CANCELLABLE: Final = Status.CANCELLABLE
JOB_STATUS_PAUSABLE: Final = Status.PAUSABLE
JOB_STATUS_REMOVABLE: Final = Status.REMOVABLE
JOB_STATUS_RESTARTABLE: Final = Status.RESTARTABLE

METHODS: Final[tuple[str, ...]] = (
    "startJobs",
    "stopJobs",
    "startJobServer",
    "shutdownJobServer",
    "jobRemove",
    "jobPause",
    "jobResume",
    "jobReady",
    "jobCancel",
    "jobRestart",
    "jobSave",
    "jobRerun",
    "getWork",
    "getJob",
    "jobLog",
    "jobProgress",
    "jobDone",
    "jobFail",
    "jobSaveMany",
    "jobHeartbeat",
    "jobRelease",
    "jobReadyDue",
    "jobCancelPending",
    "jobFind",
    "jobStats",
    "jobPauseTypes",
    "jobResumeTypes",
    "jobPausedTypes",
    "jobWorkerSeen",
    "jobWorkerGone",
    "jobWorkers",
    "jobSetConcurrencyLimit",
    "jobConcurrencyLimits",
    "jobAddDepends",
    "jobScheduleUpsert",
    "jobSchedules",
    "jobSchedulePause",
    "jobScheduleResume",
    "jobScheduleRemove",
    "jobScheduleTrigger",
    "jobScheduleBackfill",
)
"""The original's methods, plus this project's extensions: jobSaveMany (batched jobSave),
jobHeartbeat (renew a held job's lease without logging or reporting progress), jobRelease
(hand held jobs back, ready, without counting an attempt; both store the checkpoints given
in their `checkpoints` option, as jobFail stores its `checkpoint`), jobReadyDue (promote the
due jobs of some types now, as a queue that found nothing ready does), jobCancelPending (cancel a
user's jobs of a type that have not started, as scheduling a job does), jobFind (a page of
the jobs matching a filter, as find_jobs), jobStats (jobs per type and status, as
stats), and jobPauseTypes, jobResumeTypes and jobPausedTypes (stop and restart the claims of
job types on every process, as pause_type and resume_type; which are paused), and
jobWorkerSeen, jobWorkerGone and jobWorkers (a queue registers itself, leaves, and the live
registrations: the worker registry, `workers()`), and jobSetConcurrencyLimit and
jobConcurrencyLimits (at most so many jobs of a type running at once on every process, as
set_concurrency_limit; every type's limit), jobAddDepends (more antecedents for jobs not
started yet, as adding jobs to an open batch does), and jobScheduleUpsert, jobSchedules,
jobSchedulePause, jobScheduleResume, jobScheduleRemove, jobScheduleTrigger and
jobScheduleBackfill (schedules as objects, `jc.schedules`)."""

PERMISSION_LEVELS: Final[tuple[str, ...]] = ("admin", "manager", "creator", "worker")

METHOD_PERMISSIONS: Final[dict[str, tuple[str, ...]]] = {
    "startJobs": ("startJobs", "admin"),
    "stopJobs": ("stopJobs", "admin"),
    "startJobServer": ("startJobServer", "admin"),
    "shutdownJobServer": ("shutdownJobServer", "admin"),
    "jobRemove": ("jobRemove", "admin", "manager"),
    "jobPause": ("jobPause", "admin", "manager"),
    "jobResume": ("jobResume", "admin", "manager"),
    "jobReady": ("jobReady", "admin", "manager"),
    "jobCancel": ("jobCancel", "admin", "manager"),
    "jobRestart": ("jobRestart", "admin", "manager"),
    "jobSave": ("jobSave", "admin", "creator"),
    "jobRerun": ("jobRerun", "admin", "creator"),
    "jobSaveMany": ("jobSaveMany", "admin", "creator"),
    "getWork": ("getWork", "admin", "worker"),
    "getJob": ("getJob", "admin", "worker"),
    "jobLog": ("jobLog", "admin", "worker"),
    "jobProgress": ("jobProgress", "admin", "worker"),
    "jobDone": ("jobDone", "admin", "worker"),
    "jobFail": ("jobFail", "admin", "worker"),
    "jobHeartbeat": ("jobHeartbeat", "admin", "worker"),
    "jobRelease": ("jobRelease", "admin", "worker"),
    "jobReadyDue": ("jobReadyDue", "admin", "worker"),
    "jobCancelPending": ("jobCancelPending", "admin", "manager"),
    "jobFind": ("jobFind", "admin", "manager"),
    "jobStats": ("jobStats", "admin", "manager"),
    "jobPauseTypes": ("jobPauseTypes", "admin", "manager"),
    "jobResumeTypes": ("jobResumeTypes", "admin", "manager"),
    "jobPausedTypes": ("jobPausedTypes", "admin", "manager"),
    "jobWorkerSeen": ("jobWorkerSeen", "admin", "worker"),
    "jobWorkerGone": ("jobWorkerGone", "admin", "worker"),
    "jobWorkers": ("jobWorkers", "admin", "manager"),
    "jobSetConcurrencyLimit": ("jobSetConcurrencyLimit", "admin", "manager"),
    "jobConcurrencyLimits": ("jobConcurrencyLimits", "admin", "manager"),
    "jobAddDepends": ("jobAddDepends", "admin", "creator"),
    "jobScheduleUpsert": ("jobScheduleUpsert", "admin", "manager"),
    "jobSchedules": ("jobSchedules", "admin", "manager"),
    "jobSchedulePause": ("jobSchedulePause", "admin", "manager"),
    "jobScheduleResume": ("jobScheduleResume", "admin", "manager"),
    "jobScheduleRemove": ("jobScheduleRemove", "admin", "manager"),
    "jobScheduleTrigger": ("jobScheduleTrigger", "admin", "manager"),
    "jobScheduleBackfill": ("jobScheduleBackfill", "admin", "manager"),
}
"""For each method, the rule names that may allow or deny it: its own name and its groups.
jobFind and jobStats read every job (jobFind: their data too), which a worker's getJob by id
does not: they are an operator's, so `manager` (who acts on jobs in bulk, and must find them
first) and `admin`; grant them to another user by name (`jc.allow(jobStats=[...])`). The
schedule methods (jobSchedule*, jobSchedules) make and list jobs of any type on a timetable:
an operator's too."""

DEFAULT_RETRY_WAIT_MS: Final = 300_000
DEFAULT_REPEAT_WAIT_MS: Final = 300_000
SCHEDULE_MIN_LEAD_MS: Final = 500
"""A scheduled repeat closer than this to now is skipped for the following occurrence."""
