"""The operator commands `pause` and `resume`: stop and restart the claims of job types on
every process (cluster-wide pause: `pause_type`, `resume_type`), printing what is paused."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ..model.types import Paused
from .errors import Refused
from .operating import Console

if TYPE_CHECKING:
    from ..api.jobs import JobsAPI


async def pause(jc: JobsAPI, args: argparse.Namespace, console: Console) -> int:
    """`jobcollection pause TYPE... | --all`."""
    paused = await jc.pause_type(_types(args))
    print(said(paused), file=console.out)
    return 0


async def resume(jc: JobsAPI, args: argparse.Namespace, console: Console) -> int:
    """`jobcollection resume TYPE... | --all`."""
    paused = await jc.resume_type(_types(args))
    print(said(paused), file=console.out)
    return 0


def _types(args: argparse.Namespace) -> list[str] | None:
    if args.all and args.types:
        raise Refused("give job types or --all, not both")
    if not args.all and not args.types:
        raise Refused("give the job types (or --all for every type)")
    return None if args.all else list(args.types)


def said(paused: Paused) -> str:
    """What is paused, in a line."""
    if paused.every:
        return "paused: every type" + (f" (and {', '.join(paused.types)})" if paused.types else "")
    return f"paused: {', '.join(paused.types)}" if paused.types else "paused: nothing"
