"""The exceptions jobcollection raises.

    JobCollectionError
    ├── InvalidArgument (ValueError)        a bad argument, named with the problem
    │   └── InvalidArgumentType (TypeError) an argument of the wrong type
    ├── InvalidDocument (ValueError)        a stored or given job document that fails the schema
    ├── JobNotSaved (RuntimeError)          an action that needs a saved (or claimed) job
    ├── PermissionDenied (PermissionError)  a method-layer call refused by allow/deny rules
    ├── DatabaseError                       the driver failed; the original is the __cause__
    │   └── WriteRefused                    the server refused this write: retrying cannot cure it
    └── WakeupUnavailable                   no change streams here: a queue polls instead

    JobDecision                             raised by a worker: how its job ends (not an
    │                                       error of the library's: not a JobCollectionError)
    ├── Snooze                              back to wait N s, no attempt used
    ├── Cancel                              cancelled, the reason logged
    └── Fatal                               failed, no retry (also a marker base class)

A transition that does not apply to a job's current state is not an error: the operation
returns False or None and logs why, as job-collection does.
"""

from __future__ import annotations

from datetime import timedelta
from typing import ClassVar


class JobCollectionError(Exception):
    """A jobcollection operation failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (type(self).__doc__ or "").strip())


class InvalidArgument(JobCollectionError, ValueError):
    """An argument was invalid."""

    def __init__(self, argument: str, problem: str) -> None:
        self.argument = argument
        self.problem = problem
        super().__init__(f"{argument}: {problem}")

    def __reduce__(self) -> tuple[type[InvalidArgument], tuple[str, str]]:
        """Pickled with its two arguments, so that it crosses between processes as itself (a
        process worker's checkpoint refused in the parent is raised in the child)."""
        return type(self), (self.argument, self.problem)


class InvalidArgumentType(InvalidArgument, TypeError):
    """An argument had the wrong type."""


class InvalidDocument(JobCollectionError, ValueError):
    """A job document does not match the job schema."""


class JobNotSaved(JobCollectionError, RuntimeError):
    """The job must be saved (and, for done/fail, claimed) first."""


class PermissionDenied(JobCollectionError, PermissionError):
    """Method not authorized."""


class DatabaseError(JobCollectionError):
    """The database driver reported an error."""


class WriteRefused(DatabaseError):
    """The server refused this write: retrying cannot cure it.

    Raised where the server (or the remote API's server for it) answered a write with an
    error of the write itself (a document that fails validation or grows too large, a
    duplicate key, ...), as opposed to a DatabaseError whose outcome is unknown (a lost reply,
    a failover), which a retry may cure. The driver's error, when there was one here, is the
    `__cause__`; `code` is the server's error code (None when it named none)."""

    def __init__(self, message: str | None = None, code: int | None = None) -> None:
        self.code = code
        super().__init__(message)


class DuplicateJob(JobCollectionError):
    """A unique job was saved with on_conflict="error" while a pending job holds its key."""

    def __init__(self, key: dict[str, object], holder: object) -> None:
        self.key = key
        self.holder = holder
        """The id of the pending job that holds the key."""
        super().__init__(f"job {holder!r} is pending with the same unique key {key!r}")


class WakeupUnavailable(JobCollectionError):
    """Prompt wake-up is not available on this deployment; the queue relies on polling."""


class JobDecision(Exception):
    """Raised by a worker to decide how its job ends, in place of an ordinary failure (which
    is retried while the job's retries and time allow). The queue that runs the worker, and
    `jobcollection.testing.drain`, turn it into the matching report; `reason` is logged on
    the job (a Fatal's is its failure)."""

    default_reason: ClassVar[str] = "decided by its worker"

    def __init__(self, reason: str | None = None) -> None:
        self.reason = reason or self.default_reason
        super().__init__(self.reason)


class Snooze(JobDecision):
    """Put the job back to wait `seconds` without using an attempt: it is not a failure
    (nothing is added to its failures; the reason is logged). Oban's `{:snooze, seconds}`."""

    def __init__(self, seconds: float | timedelta, reason: str | None = None) -> None:
        self.seconds = seconds
        super().__init__(reason or f"snoozed for {seconds} s")


class Cancel(JobDecision):
    """Cancel the job (and, as `job.cancel()` does, its dependents), with the reason logged
    on it. Oban's `{:cancel, reason}`."""

    default_reason = "cancelled by its worker"


class Fatal(JobDecision):
    """Fail the job with no retry, whatever retries it has left. Subclass it to mark an
    exception type that retrying cannot cure. Oban's `{:discard, reason}`."""

    default_reason = "failed by its worker, not to be retried"
