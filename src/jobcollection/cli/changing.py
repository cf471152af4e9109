"""The operator commands that change jobs: `retry`, `cancel` and `remove` (by ids, or every
job a filter matches, after counting and confirming) and `purge` (remove finished jobs).

A filter's matches are collected in pages first (at most MAX_MATCHED), their statuses read,
and only the jobs that exist are counted, confirmed and changed, each change the conditional
update of the bulk method (a job that changed meanwhile is left alone). A user who may not
read jobs (a remote API's manager) changes them without counting them (UNCOUNTED).
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, overload

from ..model import constants as c
from ..model import validation as v
from ..model.errors import PermissionDenied
from ..mongo.servertime import refresh_clock
from .errors import Refused
from .operating import Console, stamp
from .values import has_filter, job_filters, when

if TYPE_CHECKING:
    from ..api.jobs import JobsAPI

MAX_MATCHED = 100_000
"""The most jobs a filter of `retry`/`cancel`/`remove`/`purge` may select (narrow it beyond)."""
PAGE = 1_000
"""Jobs read per page while collecting a filter's matches (find_jobs' largest page)."""
FINISHED: tuple[str, ...] = c.Status.FINAL


async def _matching(
    jc: JobsAPI, filters: dict[str, Any], keep: Callable[[Any], bool] = lambda job: True
) -> list[Any]:
    """The ids of every job find_jobs finds with these filters (and `keep` accepts), newest
    first; Refused beyond MAX_MATCHED."""
    ids: list[Any] = []
    after = None
    while True:
        page = await jc.find_jobs(**filters, limit=PAGE, after=after)
        ids.extend(job.id for job in page.jobs if keep(job))
        if len(ids) > MAX_MATCHED:
            raise Refused(
                f"more than {MAX_MATCHED:,} jobs match: narrow the filter (--type, --status, "
                "--user, --data) or act in several runs"
            )
        if page.next is None:
            return ids
        after = page.next


async def _statuses(jc: JobsAPI, ids: Sequence[Any]) -> dict[Any, str]:
    """The status of each of these jobs that exists."""
    found: dict[Any, str] = {}
    for start in range(0, len(ids), PAGE):
        for job in await jc.get_jobs(list(ids[start : start + PAGE])):
            found[job.id] = job.doc.status
    return found


ACTIONS: dict[str, tuple[str, tuple[str, ...], Callable[[JobsAPI, list[Any]], Awaitable[int]]]] = {
    "retry": ("Retry", c.JOB_STATUS_RESTARTABLE, lambda jc, ids: _retry(jc, ids, count=True)),
    "cancel": (
        "Cancel",
        c.JOB_STATUS_CANCELLABLE,
        lambda jc, ids: jc.cancel_jobs(ids, count=True),
    ),
    "remove": ("Remove", c.JOB_STATUS_REMOVABLE, lambda jc, ids: jc.remove_jobs(ids, count=True)),
}
"""Each bulk command: its verb, the statuses its filter selects by default (those it can
change), and the bulk method it applies, answering how many jobs it changed."""
UNCOUNTED: dict[str, Callable[[JobsAPI, list[Any]], Awaitable[bool]]] = {
    "retry": lambda jc, ids: _retry(jc, ids, count=False),
    "cancel": lambda jc, ids: jc.cancel_jobs(ids),
    "remove": lambda jc, ids: jc.remove_jobs(ids),
}
"""Each bulk method, answering whether any job changed: for a user who may not read jobs (a
remote API's manager role), so cannot count them."""


@overload
async def _retry(jc: JobsAPI, ids: list[Any], *, count: Literal[True]) -> int: ...
@overload
async def _retry(jc: JobsAPI, ids: list[Any], *, count: Literal[False]) -> bool: ...
async def _retry(jc: JobsAPI, ids: list[Any], *, count: bool) -> int | bool:
    """Run failed or cancelled jobs again now: restart them (their status, with one more
    attempt), then ready them whatever their `after` (a restart keeps the `after` their last
    failure's retry wait set, as job-collection's does; an operator's retry means now: jobReady
    with ids and time FOREVER_DATE passes every `after` and sets it to now, SPEC B.2.5). Jobs
    still waiting for their dependencies stay waiting."""
    changed = await (jc.restart_jobs(ids, count=True) if count else jc.restart_jobs(ids))
    if changed:
        await jc.ready_jobs(ids, time=c.FOREVER_DATE)
    return changed


async def act(jc: JobsAPI, args: argparse.Namespace, console: Console) -> int:
    """retry/cancel/remove: by ids, or by a filter after counting and confirming."""
    verb, statuses, apply = ACTIONS[args.command]
    if args.ids and has_filter(args):
        raise Refused("give job ids or a filter (--type, --status, --user, --data), not both")
    if args.ids:
        ids = list(dict.fromkeys(v.job_id(i, "id") for i in args.ids))
    elif has_filter(args):
        ids = await _matching(jc, job_filters(args, statuses))
    else:
        raise Refused("give job ids or a filter (--type, --status, --user, --data)")
    uncounted = UNCOUNTED[args.command]
    if args.ids:
        return await _apply(jc, ids, verb, apply, console, confirm=False, uncounted=uncounted)
    return await _apply(
        jc, ids, verb, apply, console, confirm=not args.yes, uncounted=uncounted, found=True
    )


async def _apply(
    jc: JobsAPI,
    ids: list[Any],
    verb: str,
    apply: Callable[[JobsAPI, list[Any]], Awaitable[int]],
    console: Console,
    *,
    confirm: bool,
    what: str = "jobs",
    uncounted: Callable[[JobsAPI, list[Any]], Awaitable[bool]] | None = None,
    found: bool = False,
) -> int:
    """Apply a bulk method to the jobs of these ids that exist, after a confirmation if
    asked for; print how many matched and how many changed status (or went, for remove).
    A user who may not read jobs by id (a remote API's manager: getJob is a worker's) has
    them changed by `uncounted`, if given, without counting; `found`: the ids are those a
    filter found (that many matched), not given."""
    try:
        before = await _statuses(jc, ids)
    except PermissionDenied:
        if uncounted is None:
            raise
        if confirm and not console.confirm(f"{verb} {len(ids)} {what}?"):
            print(f"{verb.lower()}: nothing done", file=console.err)
            return 1
        some = await uncounted(jc, ids)
        print(
            f"{verb.lower()}: {len(ids)} {'matched' if found else 'given'}, "
            f"{'some' if some else 'none'} changed (not counted: the token's user may not "
            "read jobs)",
            file=console.out,
        )
        return 0
    matched = [i for i in ids if i in before]
    if not matched:
        print(f"{verb.lower()}: no {what} match", file=console.err)
        return 1
    if confirm and not console.confirm(f"{verb} {len(matched)} {what}?"):
        print(f"{verb.lower()}: nothing done", file=console.err)
        return 1
    changed = await apply(jc, matched)
    print(f"{verb.lower()}: {len(matched)} matched, {changed} changed", file=console.out)
    return 0


async def purge(jc: JobsAPI, args: argparse.Namespace, console: Console) -> int:
    """Remove finished jobs last updated (finished) before a moment."""
    await refresh_clock(jc.service.clock)
    before = when(args.completed_before, jc.service.clock.now())
    statuses = args.status or list(FINISHED)
    # A job finished before the moment was created before it too: find_jobs narrows by
    # creation, and the finishing time (`updated`) is checked on the jobs it returns.
    ids = await _matching(
        jc,
        {"status": statuses, "created_before": before},
        keep=lambda job: job.doc.updated is not None and job.doc.updated < before,
    )
    return await _apply(
        jc,
        ids,
        "Remove",
        ACTIONS["remove"][2],
        console,
        confirm=not args.yes,
        what=f"{'/'.join(statuses)} jobs finished before {stamp(before)}",
        uncounted=UNCOUNTED["remove"],
        found=True,
    )
