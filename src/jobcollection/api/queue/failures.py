"""What goes wrong, as the queue records it: a job's failure (`failure_info`, what a worker's
exception is stored as; `decision_for` and `report_failure`, what the exception decides for
its job: model/decisions.py) and the errors it cannot attach to a job (`ErrorSink`: a failed
claim, heartbeat or report goes to the queue's error_callback, or to the log)."""

from __future__ import annotations

import inspect
import traceback
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import bson

from ...model.decisions import Decision, RetryRules, decide
from .log import logger
from .options import ErrorCallback

if TYPE_CHECKING:
    from ..job import Job

TRACEBACK_LIMIT = 10_000
"""Characters of traceback kept in a failure (the end, where the error is, is kept)."""
MESSAGE_LIMIT = 2_000
"""Characters of the exception's message kept in a failure, so that the failure always fits
in Limits.max_error_bytes (64 KiB by default) and can be recorded."""


def failure_info(exc: BaseException, max_bytes: int | None = None) -> dict[str, Any]:
    """A storable failure for a job whose worker raised: value, type, message and traceback.

    Never raises: an exception whose str() raises is described by its type. With max_bytes
    the traceback, then the message, are shortened until the failure fits.
    """
    name = type(exc).__name__
    message = text(lambda: str(exc), f"<{name} whose str() raised>")
    if len(message) > MESSAGE_LIMIT:
        message = message[:MESSAGE_LIMIT] + "..."
    trace = text(lambda: "".join(traceback.format_exception(exc)), "")
    if len(trace) > TRACEBACK_LIMIT:
        trace = "...\n" + trace[-TRACEBACK_LIMIT:]
    info = {"value": message or name, "type": name, "message": message, "traceback": trace}
    while max_bytes is not None and len(bson.encode(info)) > max_bytes:
        if info["traceback"]:
            info["traceback"] = info["traceback"][len(info["traceback"]) // 2 + 1 :]
        elif len(info["message"]) > 1:
            info["message"] = info["value"] = info["message"][: len(info["message"]) // 2]
        else:
            return {"value": name[: max(1, max_bytes // 4)]}
    return info


def decision_for(exc: BaseException, job: Job, rules: RetryRules) -> Decision:
    """What a worker's exception decides for its job (model/decisions.py `decide`); rules
    whose predicate or backoff raise, or a wait that is not a duration (the backoff's, a
    `retry_after`, a Snooze's), are logged and the job is retried after its own backoff."""
    try:
        return decide(exc, job.doc, rules)
    except Exception as problem:
        logger.error(
            "job %s %s: deciding on its %s failed (%s); it is retried after its own backoff",
            job.type,
            job.id,
            type(exc).__name__,
            problem,
            exc_info=problem,
        )
        return Decision("retry")


async def report_failure(job: Job, failure: dict[str, Any], decision: Decision) -> bool:
    """Report a failed worker call on its job as decided; whether it applied. A retry or a
    fatal failure is jobFail (with `retryIn` for a chosen wait, or `fatal`); a snooze is
    jobFail's `snooze`; a cancel is jobFail's `cancel` (the reason logged, the dependents
    following their policies), fenced by the claim as every report."""
    wait = None if decision.wait_ms is None else timedelta(milliseconds=decision.wait_ms)
    if decision.kind == "snooze":
        assert wait is not None  # (a snooze has its wait)
        return await job.snooze(wait, decision.reason)
    if decision.kind == "cancel":
        return await job.cancel_run(decision.reason or "cancelled")
    return await job.fail(failure, fatal=decision.kind == "fatal", retry_in=wait)


def text(make: Callable[[], str], fallback: str) -> str:
    """What `make` returns (an exception's str(), its traceback), or `fallback` if it raises."""
    try:
        return make()
    except Exception:
        return fallback


class ErrorSink:
    """Where the errors the queue cannot attach to a job go: the error_callback (a plain
    function or an async one), or else the log."""

    def __init__(self, callback: ErrorCallback | None) -> None:
        self._callback = callback

    async def __call__(self, exc: Exception, what: str) -> None:
        if self._callback is None:
            logger.error("%s failed: %s", what, exc, exc_info=exc)
            return
        try:
            outcome = self._callback(exc)
            if inspect.isawaitable(outcome):
                await outcome
        except Exception:
            logger.exception("error_callback raised while reporting: %s failed", what)
