"""What goes wrong, as the queue records it: a job's failure (`failure_info`, what a worker's
exception is stored as) and the errors it cannot attach to a job (`ErrorSink`: a failed claim,
heartbeat or report goes to the queue's error_callback, or to the log)."""

from __future__ import annotations

import inspect
import traceback
from collections.abc import Callable
from typing import Any

import bson

from .log import logger
from .options import ErrorCallback

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
