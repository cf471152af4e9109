"""Retries that read the error: what a worker's exception decides for its job.

A worker that raises has its job failed, retried while its retries and time allow. Which
exceptions are retried, and after what wait, is decided where the exception exists, on the
worker's side, and travels as the options of the failure it reports (jobFail's `fatal`,
`retryIn` and `snooze`), so a server running any worker (Python, remote, node.js) applies
the same decision. `decide(exc, doc, rules)` is that decision, pure:

1. a JobDecision the worker raised: Snooze (wait, no attempt used), Cancel, Fatal (or an
   exception of a subclass of Fatal);
2. an exception of one of the rules' `non_retryable` types: fatal;
3. one the rules' `retry_on` (exception types, or a predicate) does not retry: fatal;
4. one the job's own `Job.retry(on=...)` types (stored by qualified name) do not name: fatal;
5. else a retry: after the wait the rules' `retry_backoff(exc, attempt)` answers, or else the
   exception's own `retry_after` attribute (seconds or a timedelta; an HTTP 429's, say), or
   else (None) the job's own backoff.

The rules are a queue's (`process_jobs(..., retry_on=, non_retryable=, retry_backoff=)`,
kept as one RetryRules in its QueueOptions); a callable cannot be stored in a job, so only
exception types are ever kept with a job.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, TypeAlias

from . import validation as v
from .document import JobDoc
from .errors import Cancel, Fatal, InvalidArgument, InvalidArgumentType, Snooze

ExceptionTypes: TypeAlias = type[BaseException] | tuple[type[BaseException], ...]
RetryOn: TypeAlias = ExceptionTypes | Callable[[BaseException], bool]
"""Which failures are retried: exception types, or a predicate of the exception."""
NamedTypes: TypeAlias = type[BaseException] | str | Sequence[type[BaseException] | str]
"""What `Job.retry(on=...)` takes: exception types, or their qualified names."""
Backoff: TypeAlias = Callable[[BaseException, int], float | timedelta | None]
"""The wait before the retry of a failure, from the exception and the attempt that failed (1,
2, ...): seconds, a timedelta, or None for the job's own backoff."""
DecisionKind: TypeAlias = Literal["retry", "fatal", "snooze", "cancel"]
MAX_RETRY_ON = 32
"""The most exception types a job's `retry(on=...)` may name."""
MAX_TYPE_NAME = 256
"""The longest qualified name of one of them."""


def exception_types(value: Any, name: str) -> tuple[type[BaseException], ...]:
    """One exception type or a tuple/list of them, as a tuple (InvalidArgumentType naming
    `name` for anything else)."""
    items = value if isinstance(value, tuple | list) else (value,)
    for i, item in enumerate(items):
        if not (isinstance(item, type) and issubclass(item, BaseException)):
            where = name if items is not value else f"{name}[{i}]"
            raise InvalidArgumentType(where, f"must be an exception type, not {item!r}")
    return tuple(items)


def qualified_name(cls: type) -> str:
    """How a job stores an exception type: `module.QualName` ("builtins.TimeoutError")."""
    return f"{cls.__module__}.{cls.__qualname__}"


def type_names(value: Any, name: str = "on") -> tuple[str, ...]:
    """Exception types (or their qualified names, for an enqueuer that cannot import them)
    as the names a job stores: at most MAX_RETRY_ON, each at most MAX_TYPE_NAME long."""
    items = value if isinstance(value, tuple | list) else (value,)
    if not items:
        raise InvalidArgument(name, "must name at least one exception type")
    if len(items) > MAX_RETRY_ON:
        raise InvalidArgument(name, f"names more than {MAX_RETRY_ON} exception types")
    names: list[str] = []
    for i, item in enumerate(items):
        where = name if items is not value else f"{name}[{i}]"
        if isinstance(item, str):
            text = item
        elif isinstance(item, type) and issubclass(item, BaseException):
            text = qualified_name(item)
        elif callable(item):
            raise InvalidArgumentType(
                where,
                "a callable cannot be stored with a job: give it to the queue "
                "(process_jobs(..., retry_on=...))",
            )
        else:
            raise InvalidArgumentType(where, f"must be an exception type, not {item!r}")
        if not 0 < len(text) <= MAX_TYPE_NAME or "." not in text:
            raise InvalidArgument(where, "must be a qualified name such as builtins.KeyError")
        names.append(text)
    return tuple(names)


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryRules:
    """Which failures of a queue's or a task's jobs are retried, and after what wait (see
    the module docstring); validated when made (InvalidArgument naming the field)."""

    retry_on: RetryOn | None = None
    """Exception types retried (others fail fatally), or a predicate of the exception;
    None: every exception (but the non-retryable ones)."""
    non_retryable: ExceptionTypes = ()
    """Exception types that fail the job fatally, whatever `retry_on` says."""
    retry_backoff: Backoff | None = None
    """The wait before a retry, from the exception and the attempt that failed."""

    def __post_init__(self) -> None:
        keep = object.__setattr__  # frozen: the validated values replace what was given
        if self.retry_on is not None and not (
            callable(self.retry_on) and not isinstance(self.retry_on, type)
        ):
            keep(self, "retry_on", exception_types(self.retry_on, "retry_on"))
        keep(self, "non_retryable", exception_types(self.non_retryable, "non_retryable"))
        if self.retry_backoff is not None and not callable(self.retry_backoff):
            raise InvalidArgumentType(
                "retry_backoff", "must be a function (exc, attempt) -> seconds or None"
            )


NO_RULES = RetryRules()
"""Every failure retried after the job's own backoff (unless the job says otherwise)."""


@dataclass(frozen=True, slots=True)
class Decision:
    """What a worker's exception decides for its job: `kind`, with `wait_ms` (the retry's or
    the snooze's wait; None for a retry: the job's own backoff) and `reason` (the Cancel's or
    the Snooze's, else None)."""

    kind: DecisionKind
    wait_ms: int | None = None
    reason: str | None = None


def decide(exc: BaseException, doc: JobDoc, rules: RetryRules = NO_RULES) -> Decision:
    """The decision for a job whose worker raised `exc` (see the module docstring). It may
    call the rules' predicate and backoff, and raises what they raise, or InvalidArgument for
    a wait that is not a duration."""
    if isinstance(exc, Snooze):
        return Decision("snooze", v.duration_ms(exc.seconds, "seconds"), exc.reason)
    if isinstance(exc, Cancel):
        return Decision("cancel", reason=exc.reason)
    if isinstance(exc, Fatal) or not _retried(exc, doc, rules):
        return Decision("fatal")
    backoff = rules.retry_backoff
    wait = None if backoff is None else backoff(exc, max(doc.retried, 1))
    if wait is None:
        wait = getattr(exc, "retry_after", None)
        name = "retry_after"
    else:
        name = "retry_backoff"
    return Decision("retry", None if wait is None else v.duration_ms(wait, name))


def _retried(exc: BaseException, doc: JobDoc, rules: RetryRules) -> bool:
    """Whether the rules and the job's own `retry(on=...)` let this exception be retried."""
    non_retryable = rules.non_retryable
    assert isinstance(non_retryable, tuple)  # (validated)
    if isinstance(exc, non_retryable):
        return False
    retry_on = rules.retry_on
    if isinstance(retry_on, tuple):
        if not isinstance(exc, retry_on):
            return False
    elif retry_on is not None and not retry_on(exc):
        return False
    if doc.retry_on is not None:
        named = set(doc.retry_on)
        return any(qualified_name(cls) in named for cls in type(exc).__mro__)
    return True
