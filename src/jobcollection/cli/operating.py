"""What every operator command (`ls`, `show`, `stats`, `retry`, `cancel`, `remove`, `purge`,
`workflow`, `batch`, ...) shares: the `Console` it writes to and asks on, how its values
print, and `operate`, which runs one on a collection and turns its errors into a line and an
exit code.

An operator command is an async function of a collection, the parsed arguments and a Console
(`Operation`), so it runs in-process on any collection; the commands themselves are in
reading.py (`ls`, `show`, `stats`, `workers`), workflows.py (`workflow`, `batch`), pausing.py,
limits.py and changing.py (the rest). `jobcollection.cli` exports
`operate` and `Console`, for running a command in-process.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

from ..model.errors import DatabaseError, InvalidArgument, PermissionDenied
from .connect import open_collection
from .errors import (
    EXIT_FAILED,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    CommandFailed,
    not_allowed,
    one_line,
)

if TYPE_CHECKING:
    from ..api.jobs import JobsAPI

OPTION_OF = {
    "type": "--type",
    "status": "--status",
    "user_id": "--user",
    "data": "--data",
    "created_before": "--created-before",
    "limit": "--limit",
    "after": "--after",
    "id": "ID",
    "ids": "ID",
}
"""The option that gave each find_jobs/get_job argument, for error messages."""


@dataclasses.dataclass
class Console:
    """Where an operator command writes its output (`out`) and its notes (`err`), and how it
    asks a yes/no question (`ask(prompt)` returns the answer; "" at end of input)."""

    out: TextIO
    err: TextIO
    ask: Callable[[str], str]

    @classmethod
    def standard(cls) -> Console:
        """stdout, stderr, and questions asked on stderr and answered on stdin."""

        def ask(prompt: str) -> str:
            print(prompt, end=" ", file=sys.stderr, flush=True)
            return sys.stdin.readline()

        return cls(sys.stdout, sys.stderr, ask)

    def confirm(self, question: str) -> bool:
        """Ask `question` with `[y/N]`: whether the answer was yes."""
        return self.ask(f"{question} [y/N]").strip().lower() in ("y", "yes")


def stamp(value: datetime | None) -> str:
    """A moment as the tables print it (`2026-01-01T12:00:00Z`, in UTC), or `-`."""
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def table(rows: list[list[str]], out: TextIO) -> None:
    """Print rows (the first a heading) in columns as wide as their widest cell."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip(), file=out
        )


def to_json(value: Any) -> str:
    """A value as one line of JSON (`--json`), non-ASCII text as it is."""
    return json.dumps(value, ensure_ascii=False)


Operation = Callable[["JobsAPI", argparse.Namespace, Console], Awaitable[int]]
"""An operator command: a collection, the parsed arguments and a Console to its exit code."""


async def operate(jc: JobsAPI, args: argparse.Namespace, console: Console | None = None) -> int:
    """Run the operator command `args` names on a collection: its exit code. A bad argument
    (a Refused or an InvalidArgument) is reported naming its option, with code 2; a call
    the server's rules refuse with code 3; a database error with code 1."""
    console = console or Console.standard()
    operation: Operation = args.operation
    try:
        return await operation(jc, args, console)
    except CommandFailed as exc:
        print(f"jobcollection {args.command}: {exc}", file=console.err)
        return exc.code
    except InvalidArgument as exc:
        name = exc.argument.split("[")[0]
        option = OPTION_OF.get(name, name)
        print(f"jobcollection {args.command}: {option}: {exc.problem}", file=console.err)
        return EXIT_USAGE
    except PermissionDenied as exc:
        print(f"jobcollection {args.command}: {not_allowed(exc)}", file=console.err)
        return EXIT_UNAVAILABLE
    except DatabaseError as exc:
        print(f"jobcollection {args.command}: {one_line(str(exc))}", file=console.err)
        return EXIT_FAILED


async def run_operator(args: argparse.Namespace) -> int:
    """An operator command on the collection the options name."""
    async with open_collection(args) as jc:
        return await operate(jc, args)
