"""The operator commands `limit` and `limits`: set or remove a type's global concurrency limit
(at most MAX jobs of the type running at once over every process: `set_concurrency_limit`),
and list the limits (`concurrency_limits`), as `pause`/`resume` do for the cluster-wide pause.

`limit` checks its arguments before it calls (the messages name TYPE, MAX and --group-by, as
the command line spells them, where the library would name `type`, `max_running` and
`group_by`), and prints every type's limit afterwards, on one line (`said`), as `stats` does.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..model.concurrency import ConcurrencyLimit
from ..model.errors import InvalidArgument, PermissionDenied
from ..model.ops import one_type
from .errors import Refused
from .operating import Console, table, to_json

if TYPE_CHECKING:
    from ..api.jobs import JobsAPI


async def limit(jc: JobsAPI, args: argparse.Namespace, console: Console) -> int:
    """`jobcollection limit TYPE MAX [--group-by PATH]` sets the limit of TYPE;
    `jobcollection limit TYPE --remove` removes it (a note on stderr when it had none)."""
    job_type, wanted = _limit_of(args)
    if wanted is None:
        try:
            had = job_type in await jc.concurrency_limits()
        except PermissionDenied:  # a token that may set limits and not list them: no note
            had = True
        limits = await jc.set_concurrency_limit(job_type, None)
        if not had:
            print(f"{job_type} had no concurrency limit", file=console.err)
    else:
        limits = await jc.set_concurrency_limit(job_type, wanted)
    print(said(limits), file=console.out)
    return 0


async def limits(jc: JobsAPI, args: argparse.Namespace, console: Console) -> int:
    """`jobcollection limits [--json]`: every type's limit, a table (TYPE, MAX RUNNING, GROUP
    BY) or one JSON object by type; "no concurrency limits" on stderr when there are none."""
    found = await jc.concurrency_limits()
    if args.json:
        print(to_json(as_json(found)), file=console.out)
        return 0
    if not found:
        print("no concurrency limits", file=console.err)
        return 0
    rows = [["TYPE", "MAX RUNNING", "GROUP BY"]]
    rows += [[t, str(found[t].max_running), found[t].group_by or "-"] for t in sorted(found)]
    table(rows, console.out)
    return 0


def _limit_of(args: argparse.Namespace) -> tuple[str, ConcurrencyLimit | None]:
    """TYPE, and the limit the arguments ask for (None: --remove); Refused naming the
    argument that is wrong."""
    try:
        job_type = one_type(args.type, "TYPE")
    except InvalidArgument as exc:
        raise Refused(f"TYPE: {exc.problem}") from None
    if args.remove:
        if args.max is not None or args.group_by is not None:
            raise Refused("--remove takes TYPE alone (not MAX nor --group-by)")
        return job_type, None
    if args.max is None:
        raise Refused("give MAX, the most jobs of TYPE running at once, or --remove")
    try:
        return job_type, ConcurrencyLimit(args.max, group_by=args.group_by)
    except InvalidArgument as exc:
        option = {"max_running": "MAX", "group_by": "--group-by"}.get(exc.argument, exc.argument)
        raise Refused(f"{option}: {exc.problem}") from None


def described(found: ConcurrencyLimit) -> str:
    """A limit in words: `at most 5 running`, `at most 2 running per data.customer`."""
    per = f" per {found.group_by}" if found.group_by else ""
    return f"at most {found.max_running} running{per}"


def said(found: Mapping[str, ConcurrencyLimit]) -> str:
    """Every type's limit, in a line (`limits: none` without any)."""
    if not found:
        return "limits: none"
    return "limits: " + ", ".join(f"{t} {described(found[t])}" for t in sorted(found))


def as_json(found: Mapping[str, ConcurrencyLimit]) -> dict[str, Any]:
    """Every type's limit as `limits --json` and `stats --json` print it."""
    return {
        t: {"max_running": found[t].max_running, "group_by": found[t].group_by}
        for t in sorted(found)
    }
