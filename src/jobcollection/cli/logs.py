"""Logging for the commands that log: `worker` (`--log-level`, `--log-format text|json`) and
`serve`/`dashboard` (the library's records at `--log-level`), on stderr.

`logging_to_stderr` installs a handler for the block's duration and takes it away again, so
calling `main` in-process (the tests do) leaves the root logger as it found it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
SERVER_LOG_LEVELS = (*LOG_LEVELS, "trace")
"""uvicorn's levels (`trace`: every ASGI message; the library logs at debug then)."""
QUIET_LOGGERS = ("httpx", "httpcore")
"""Loggers a worker's log shows from WARNING up (httpx logs every request at INFO)."""
LOG_FIELDS = ("job_type", "job_id", "attempt", "outcome", "retry", "seconds")
"""The structured fields of the queue's log records (`extra=`) a log line carries."""


class TextFormatter(logging.Formatter):
    """`2026-01-01T12:00:00.000Z INFO jobcollection.queue: job t 6b0e... completed in 0.010 s
    (attempt 1)`: the time in UTC, and the attempt of a job's record."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _log_time(record)

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        attempt = getattr(record, "attempt", None)
        return line if attempt is None else f"{line} (attempt {attempt})"


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC), level, logger, message, the job's fields
    (LOG_FIELDS) when the record has them, and the traceback as `exception`."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _log_time(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in LOG_FIELDS:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def _log_time(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@contextlib.contextmanager
def logging_to_stderr(level: str, form: str) -> Iterator[None]:
    """Log records of `level` and above (the library's and the worker's own) on stderr, as
    text or JSON lines, while the block runs."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if form == "json" else TextFormatter())
    root = logging.getLogger()
    quieter = [logging.getLogger(name) for name in QUIET_LOGGERS]
    before = root.level, [logger.level for logger in quieter]
    root.addHandler(handler)
    root.setLevel(level.upper())
    for logger in quieter:  # a line per HTTP request only when debugging
        logger.setLevel(logging.NOTSET if root.level <= logging.DEBUG else logging.WARNING)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(before[0])
        for logger, was in zip(quieter, before[1], strict=True):
            logger.setLevel(was)
