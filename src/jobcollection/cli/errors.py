"""How a command ends: its exit codes, the extras its imports need, and the one line on stderr
that says what went wrong.

Every command reports a mistake the same way: it raises `CommandFailed` (or `Refused`, a bad
argument, exit code 2), or lets an error of the library or a missing optional dependency
through, and `main` turns it into `jobcollection COMMAND: message` and an exit code with
`explain`. The extras live here because `explain` names the one a missing import needs.
`say` and `note` are the command's two voices: a line on stdout, a note on stderr.
"""

from __future__ import annotations

import re
import sys

from ..model import constants as c
from ..model.errors import DatabaseError, InvalidArgument, PermissionDenied

EXIT_OK = 0
EXIT_FAILED = 1
"""The operation failed: no job matched, declined, a database error while working."""
EXIT_USAGE = 2
"""A bad or missing option or argument (argparse's code too)."""
EXIT_UNAVAILABLE = 3
"""Cannot connect, or not allowed: unreachable, not a jobcollection API, a token refused."""
EXIT_MISSING_EXTRA = 4
"""An optional dependency is not installed."""
EXIT_INTERRUPTED = 130
"""Ctrl-C before the command could stop by itself."""
EXIT_CODES = f"""exit codes:
  {EXIT_OK}    done
  {EXIT_FAILED}    the operation failed: no job matched, declined, a database error while working
  {EXIT_USAGE}    usage: a bad or missing option or argument, a bad MODULE:FUNCTION, an invalid URI
  {EXIT_UNAVAILABLE}    cannot connect or not allowed: server or database unreachable, not a
       jobcollection remote API at that URL, a token refused or lacking the role, a port
       `serve`/`dashboard` cannot listen on
  {EXIT_MISSING_EXTRA}    a missing extra: pip install "jobcollection[EXTRA]"
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C)
errors are one line on stderr; --debug adds the traceback"""

EXTRAS = {
    "starlette": "server",
    "uvicorn": "server",
    "websockets": "server",
    "httpx": "client",
    "prometheus_client": "metrics",
    "mongomock_motor": "memory",
    "mongomock": "memory",
    "motor": "memory",
    "opentelemetry": "otel",
}
"""The extra that installs each optional top-level package the commands import (COMMAND_EXTRAS
says otherwise for some commands)."""
COMMAND_EXTRAS: dict[str, dict[str, str]] = {
    "dashboard": {"starlette": "web", "uvicorn": "web"},
}
"""Where a command's extra is another than EXTRAS says: `dashboard` runs with `web` alone."""
EXTRAS_NEEDED = """extras (pip install "jobcollection[EXTRA,...]"):
  serve       server; memory without --mongodb-uri; metrics with --metrics-port
  dashboard   web; memory with --demo
  worker      nothing more on --mongodb-uri; client with --url; memory with --demo;
              metrics with --metrics-port
  token       server
  ls, show, retry, cancel, remove, purge, stats, pause, resume, limit, limits, workers,
  workflow, batch
              nothing more on --mongodb-uri; client with --url; memory with --demo
  remote = server + client; all = every extra"""
"""Which extra each command needs (scripts/check-extras runs each with only these)."""


class CommandFailed(Exception):
    """What a command reports on one line of stderr (`jobcollection COMMAND: message`), and
    the exit code it ends with."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


class Refused(CommandFailed):
    """An argument the command cannot use: its message names the option; exit code 2."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_USAGE)


def missing_extra(exc: ImportError, command: str | None = None) -> str | None:
    """The extra that installs the package an ImportError says is missing, if it is one of
    the optional dependencies (for `command`: COMMAND_EXTRAS)."""
    name = (exc.name or "").split(".")[0]
    return COMMAND_EXTRAS.get(command or "", {}).get(name) or EXTRAS.get(name)


def explain(exc: BaseException, command: str | None = None) -> tuple[int, str]:
    """The exit code and the one-line message for an error that ended a command."""
    if isinstance(exc, CommandFailed):
        return exc.code, str(exc)
    if isinstance(exc, ImportError):
        extra = missing_extra(exc, command)
        if extra is not None:
            package = (exc.name or "").split(".")[0]
            return EXIT_MISSING_EXTRA, (
                f'needs {package}, which is not installed: pip install "jobcollection[{extra}]"'
            )
        return EXIT_FAILED, f"cannot import {exc.name or 'a module'}: {exc}"
    if isinstance(exc, PermissionDenied):
        return EXIT_UNAVAILABLE, not_allowed(exc)
    if isinstance(exc, InvalidArgument):
        return EXIT_USAGE, str(exc)
    if isinstance(exc, DatabaseError):
        return EXIT_FAILED, f"database error: {exc}"
    return EXIT_FAILED, f"{type(exc).__name__}: {exc} (--debug shows the traceback)"


def not_allowed(exc: PermissionDenied) -> str:
    """What a refused call says, with the roles that may make it (as `serve` grants them)."""
    found = re.search(r"Method not authorized: (\w+)", str(exc))
    roles = c.METHOD_PERMISSIONS.get(found[1], ())[1:] if found else ()
    if found and roles:
        return (
            f"not allowed: the token's user may not call {found[1]} (a token with the role "
            f"{' or '.join(roles)} may)"
        )
    return f"not allowed: {exc} (the token's user lacks the role)"


def one_line(message: str, limit: int = 500) -> str:
    """A message on one line, at most `limit` characters."""
    text = " ".join(message.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def say(line: str) -> None:
    print(line, flush=True)


def note(command: str, line: str) -> None:
    """A line for the person running the command, on stderr."""
    print(f"jobcollection {command}: {line}", file=sys.stderr, flush=True)
