"""The `jobcollection` command (also `python -m jobcollection`).

    jobcollection serve  [--mongodb-uri URI] [--tokens FILE] [--host H] [--port P] ...
    jobcollection worker MODULE:FUNCTION --type T [--concurrency N] (--url URL | --mongodb-uri URI)
    jobcollection worker MODULE:OBJECT --tasks [--type T] [--concurrency N] (--url ... | ...)
    jobcollection token USER [ROLE ...]
    jobcollection ls [--type T ...] [--status S ...] [--user U] [--data PATH=VALUE ...] [--json]
    jobcollection show ID [--json]
    jobcollection retry|cancel|remove (ID ... | --type/--status/--user/--data ...) [--yes]
    jobcollection purge --completed-before MOMENT [--status S ...] [--yes]
    jobcollection stats [--json]
    jobcollection dashboard [--mongodb-uri URI] [--port P] [--read-only]

`serve` runs the remote API (remote.create_app) with uvicorn, and the job server, on a MongoDB
database or, without `--mongodb-uri`, on the in-memory backend (a demo). Users and their roles
(admin, manager, creator, worker) come from the tokens file; without one it makes a demo admin
token and serves on loopback only; with `--ddp` it also serves Meteor's DDP at `/websocket`,
for job-collection's own node.js workers (meteor-job), logging in with the same tokens.
It also serves the web dashboard (jobcollection.web) at `/dashboard/`: a browser logs in with
a token; users the tokens file makes neither admin nor manager may only look.
`dashboard` serves the dashboard alone, on loopback, without tokens: whoever can reach it
there acts as its admin user (`--read-only`: may only look).
`worker` runs a queue of an async function, against a remote API (`--url`, the token in
`--token` or JOBCOLLECTION_TOKEN) or a database; the first SIGTERM or Ctrl-C shuts it down
gracefully (running jobs finish, queued ones are handed back), a second one at once.
`worker MODULE:OBJECT --tasks` runs typed tasks (tasks.py) instead, in one queue: every task
registered on the job collection OBJECT names (`@jc.task(...)` in that module; the worker runs
them on the collection it opens), or a Task, or a list of Tasks; `--type` picks among them.
`token` prints a new token and its line for the tokens file.

The operator commands (`ls`, `show`, `retry`, `cancel`, `remove`, `purge`, `stats`) work on a
database as `serve` does. Each is an async function of a JobCollection, the parsed arguments
and a `Console` (where it writes, how it asks for a confirmation), so it runs in-process on any
collection. Exit codes: 0 done, 1 nothing found, declined or a database error, 2 bad
arguments (argparse's code).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import importlib
import ipaddress
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TextIO

from . import constants as c
from . import validation as v
from .constants import PERMISSION_LEVELS
from .errors import DatabaseError, InvalidArgument
from .servertime import refresh_clock

if TYPE_CHECKING:
    from .collection import JobCollection
    from .tasks import Task

TOKEN_ENV = "JOBCOLLECTION_TOKEN"
"""Where `worker --url` reads its token when `--token` is not given (a token on the command
line is visible to every user of the machine)."""


def say(line: str) -> None:
    print(line, flush=True)


@contextlib.asynccontextmanager
async def open_database(uri: str | None, name: str) -> AsyncIterator[Any]:
    """The database `name` on MongoDB at `uri`, or in memory without one."""
    if uri is None:
        from .testing import memory_database

        yield memory_database(name)
        return
    from pymongo import AsyncMongoClient

    client: Any = AsyncMongoClient(uri, tz_aware=True)
    try:
        yield client[name]
    finally:
        await client.close()


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- serve --------------------------------------------------------------------------------------


async def serve(args: argparse.Namespace) -> int:
    import uvicorn
    from starlette.routing import Mount

    from .collection import JobCollection
    from .remote import TokenAuth, create_app, hash_token, new_token

    if args.tokens is not None:
        auth = TokenAuth.from_file(args.tokens)
    elif _loopback(args.host):
        token = new_token()
        auth = TokenAuth({hash_token(token): "demo"}, roles={"demo": ["admin"]})
        say(f"no --tokens file: demo admin token {token}")
    else:
        say("refusing to serve beyond loopback without --tokens FILE")
        return 2
    async with open_database(args.mongodb_uri, args.database) as db:
        jc = JobCollection.from_database(db, args.root)
        for role in PERMISSION_LEVELS:
            jc.allow(**{role: auth.role_rule(role)})
        if not args.no_job_server:
            await jc.start_job_server()
        app = create_app(jc, auth=auth, max_wait=args.max_wait, ddp=args.ddp)
        dashboard = _dashboard(jc, auth)
        app.router.routes.append(Mount("/dashboard", app=dashboard))
        config = uvicorn.Config(
            app,
            host=args.host,
            port=args.port,
            log_level=args.log_level,
            ssl_certfile=args.ssl_certfile,
            ssl_keyfile=args.ssl_keyfile,
            timeout_graceful_shutdown=args.max_wait + 5,
        )
        server = _server_class(closing=[dashboard.state.close])(config)
        try:
            await server.serve()
        finally:
            if not args.no_job_server:
                await jc.shutdown_job_server(timeout=0)
            await jc.close()
    return 0


def _dashboard(jc: JobCollection, auth: Any) -> Any:
    """The dashboard `serve` mounts: users without the admin or manager role only look."""
    from .web import create_dashboard

    return create_dashboard(
        jc, auth=auth, read_only=lambda user: not {"admin", "manager"} & auth.roles_of(user)
    )


async def dashboard(args: argparse.Namespace) -> int:
    """The dashboard alone, on loopback, without tokens (it refuses other clients)."""
    import uvicorn

    from .collection import JobCollection
    from .web import create_dashboard

    if not _loopback(args.host):
        say("refusing: `dashboard` serves loopback only (use `serve --tokens FILE` beyond)")
        return 2
    async with open_database(args.mongodb_uri, args.database) as db:
        jc = JobCollection.from_database(db, args.root)
        app = create_dashboard(jc, read_only=args.read_only)
        config = uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level)
        server = _server_class(closing=[app.state.close])(config)
        try:
            await server.serve()
        finally:
            await jc.close()
    return 0


def _server_class(closing: Sequence[Callable[[], Awaitable[None]]] = ()) -> type[Any]:
    """uvicorn's server, as `Server` below says; `closing` is awaited as it starts to stop
    (the dashboard's event streams end, rather than holding the shutdown)."""
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, printing its address once it listens (the port it was given,
        when asked for port 0), and stopping on SIGINT/SIGTERM without raising the signal
        again once it has stopped (uvicorn's own handling does, which would end the process
        before the job server is shut down and the collection closed)."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self.handle_exit, sig, None)
            try:
                yield
            finally:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)

        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if self.started:
                host, port = self.servers[0].sockets[0].getsockname()[:2]
                scheme = "https" if self.config.ssl_certfile else "http"
                say(f"jobcollection serving on {scheme}://{host}:{port}")

        async def shutdown(self, sockets: Any = None) -> None:
            for close in closing:
                await close()
            await super().shutdown(sockets)

    return Server


# --- worker -------------------------------------------------------------------------------------


def load_object(spec: str, what: str = "FUNCTION") -> Any:
    """MODULE:NAME, imported as Python would (the current directory first)."""
    module_name, _, name = spec.partition(":")
    if not module_name or not name:
        raise SystemExit(f"worker: {spec!r} must be MODULE:{what}")
    if "" not in sys.path:
        sys.path.insert(0, "")
    found: Any = importlib.import_module(module_name)
    for part in name.split("."):
        found = getattr(found, part)
    return found


def load_function(spec: str) -> Callable[..., Any]:
    """MODULE:FUNCTION, imported as Python would (the current directory first)."""
    function: Callable[..., Any] = load_object(spec)
    if not callable(function):
        raise SystemExit(f"worker: {spec} is not a function")
    return function


def load_tasks(spec: str, types: Sequence[str] | None = None) -> list[Task[..., Any]]:
    """`worker --tasks`: MODULE:OBJECT names a collection whose tasks are registered with
    `jc.task` (all of them run), a Task, or a list of Tasks; with `types`, only the tasks of
    these job types."""
    from .api import JobsAPI
    from .tasks import Task, registered

    found = load_object(spec, "OBJECT")
    if isinstance(found, Task):
        chosen = [found]
    elif isinstance(found, list | tuple) and all(isinstance(t, Task) for t in found):
        chosen = list(found)
    elif isinstance(found, JobsAPI):
        chosen = list(registered(found).values())
    else:
        raise SystemExit(f"worker: {spec} is not a job collection, a Task or a list of Tasks")
    if types:
        missing = set(types) - {t.name for t in chosen}
        if missing:
            raise SystemExit(f"worker: {spec} has no task of type {', '.join(sorted(missing))}")
        chosen = [t for t in chosen if t.name in types]
    if not chosen:
        raise SystemExit(f"worker: {spec} has no registered task")
    return chosen


class Stopper:
    """SIGINT/SIGTERM: the first asks for a normal shutdown, the second for a hard one."""

    def __init__(self) -> None:
        self.requested = asyncio.Event()
        self.hard = asyncio.Event()
        self.count = 0

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.on_signal, sig)

    def on_signal(self, sig: int) -> None:
        self.count += 1
        name = signal.Signals(sig).name
        if self.count == 1:
            say(f"received {name}; shutting down (normal): running jobs finish")
            self.requested.set()
        else:
            say(f"received {name} again; shutting down (hard)")
            self.hard.set()


@contextlib.asynccontextmanager
async def open_collection(args: argparse.Namespace) -> AsyncIterator[Any]:
    """The job collection a worker works on: remote (--url) or a database's."""
    if args.url is not None:
        from .remote import RemoteJobCollection

        token = args.token or os.environ.get(TOKEN_ENV)
        if not token:
            raise SystemExit(f"worker: --url needs --token or {TOKEN_ENV}")
        async with RemoteJobCollection(args.url, token=token) as remote:
            yield remote
        return
    from .collection import JobCollection

    async with open_database(args.mongodb_uri, args.database) as db:
        jc = JobCollection.from_database(db, args.root)
        try:
            yield jc
        finally:
            await jc.close()


async def work(args: argparse.Namespace) -> int:
    tasks = load_tasks(args.function, args.type) if args.tasks else None
    function = None if args.tasks else load_function(args.function)
    if tasks is not None and args.payload != 1:
        raise SystemExit("worker: --tasks runs one job per call (no --payload)")
    if tasks is None and not args.type:
        raise SystemExit("worker: --type is required (or --tasks)")
    types = args.type if tasks is None else [task.name for task in tasks]
    stopper = Stopper()
    stopper.install()
    async with open_collection(args) as jc:
        options = {
            "concurrency": args.concurrency,
            "prefetch": args.prefetch,
            "poll_interval": args.poll_interval,
            "work_timeout": args.work_timeout,
            "timeout": args.timeout,
        }
        if tasks is not None:
            queue = jc.run_tasks(tasks, **options)
        else:
            queue = jc.process_jobs(args.type, function, payload=args.payload, **options)
        say(f"worker started: {', '.join(types)} jobs, concurrency {args.concurrency}")
        await stopper.requested.wait()
        shutdown = asyncio.create_task(queue.shutdown("normal"))
        hard = asyncio.create_task(stopper.hard.wait())
        await asyncio.wait([shutdown, hard], return_when=asyncio.FIRST_COMPLETED)
        if hard.done():
            await queue.shutdown("hard")
        await shutdown
        hard.cancel()
    say("worker stopped")
    return 0


# --- token --------------------------------------------------------------------------------------


def token(args: argparse.Namespace) -> int:
    from .remote import hash_token, new_token

    unknown = sorted(set(args.roles) - set(PERMISSION_LEVELS))
    if unknown:
        raise SystemExit(f"token: unknown roles {unknown}; use {list(PERMISSION_LEVELS)}")
    value = new_token()
    say(f"token: {value}")
    say(f"tokens file line: {' '.join([args.user, hash_token(value), *args.roles])}")
    return 0


# --- operating on jobs --------------------------------------------------------------------------

MAX_MATCHED = 100_000
"""The most jobs a filter of `retry`/`cancel`/`remove`/`purge` may select (narrow it beyond)."""
PAGE = 1_000
"""Jobs read per page while collecting a filter's matches (find_jobs' largest page)."""
FINISHED: tuple[str, ...] = ("completed", "failed", "cancelled")
DURATION_UNITS = {"s": 1, "m": 60, "h": 3_600, "d": 86_400, "w": 604_800}
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
        return self.ask(f"{question} [y/N]").strip().lower() in ("y", "yes")


class Refused(Exception):
    """An argument the command cannot use: its message names the option; exit code 2."""


def moment(text: str) -> datetime | timedelta:
    """An ISO 8601 date or datetime (UTC unless it names its offset), or a duration ago:
    a number and a unit, s, m, h, d or w (`90m`, `7d`)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhdw])", text.strip())
    if match:
        return timedelta(seconds=float(match[1]) * DURATION_UNITS[match[2]])
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither an ISO date/datetime (2026-11-01T00:00:00Z) nor a duration "
            "ago (30m, 12h, 7d)"
        ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def value_of(text: str) -> Any:
    """A value given on the command line: JSON when it is JSON (`7`, `true`, `"7"`), else
    the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def data_item(text: str) -> tuple[str, Any]:
    """PATH=VALUE, the VALUE as `value_of` reads it."""
    path, sep, value = text.partition("=")
    if not sep or not path:
        raise argparse.ArgumentTypeError(f"{text!r} is not PATH=VALUE (customer.id=7)")
    return path, value_of(value)


def page_size(text: str) -> int:
    from .queries import MAX_PAGE

    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_PAGE:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number from 1 to {MAX_PAGE}")
    return value


def _when(value: datetime | timedelta, now: datetime) -> datetime:
    """A moment `moment` parsed: a datetime as given, a duration as that long before now."""
    return now - value if isinstance(value, timedelta) else value


def _filters(args: argparse.Namespace, statuses: Sequence[str] | None = None) -> dict[str, Any]:
    """find_jobs' keyword arguments for the filter options given (`statuses` when no
    --status is)."""
    return {
        "type": args.type,
        "status": args.status or statuses,
        "user_id": None if args.user is None else value_of(args.user),
        "data": None if args.data is None else dict(args.data),
    }


def _has_filter(args: argparse.Namespace) -> bool:
    return any(x is not None for x in (args.type, args.status, args.user, args.data))


async def _matching(
    jc: JobCollection, filters: dict[str, Any], keep: Callable[[Any], bool] = lambda job: True
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


async def _statuses(jc: JobCollection, ids: Sequence[Any]) -> dict[Any, str]:
    """The status of each of these jobs that exists."""
    found: dict[Any, str] = {}
    for start in range(0, len(ids), PAGE):
        for job in await jc.get_jobs(list(ids[start : start + PAGE])):
            found[job.id] = job.doc.status
    return found


def _stamp(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _age(seconds: float) -> str:
    """A duration for people: `3d 4h`, `12m 5s`, `40s`."""
    whole = int(seconds)
    parts: list[str] = []
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        if whole >= size or (unit == "s" and not parts):
            parts.append(f"{whole // size}{unit}")
            whole %= size
    return " ".join(parts[:2])


def _table(rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip(), file=out
        )


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


async def ls(jc: JobCollection, args: argparse.Namespace, console: Console) -> int:
    """A page of jobs, newest first; the next page's cursor on stderr."""
    await refresh_clock(jc.clock)
    now = jc.clock.now()
    page = await jc.find_jobs(
        **_filters(args),
        created_before=None if args.created_before is None else _when(args.created_before, now),
        limit=args.limit,
        after=args.after,
    )
    if args.json:
        for job in page.jobs:
            print(_json(job.doc.model_dump(mode="json", by_alias=True)), file=console.out)
    elif page.jobs:
        rows = [["ID", "TYPE", "STATUS", "CREATED", "UPDATED", "RETRIED"]]
        rows += [
            [
                str(job.id),
                job.doc.type,
                job.doc.status,
                _stamp(job.doc.created),
                _stamp(job.doc.updated),
                f"{job.doc.retried}/{job.doc.retries}",
            ]
            for job in page.jobs
        ]
        _table(rows, console.out)
    if page.next is not None:
        print(f"next page: --after {page.next}", file=console.err)
    if not page.jobs:
        print("no jobs match", file=console.err)
        return 1
    return 0


async def show(jc: JobCollection, args: argparse.Namespace, console: Console) -> int:
    """One job with its log and failures."""
    job = await jc.get_job(v.job_id(args.id, "id"), get_log=True, get_failures=True)
    if job is None:
        print(f"no job {args.id}", file=console.err)
        return 1
    doc = job.doc.model_dump(mode="json", by_alias=True)
    if args.json:
        print(_json(doc), file=console.out)
        return 0
    d = job.doc
    lines = [
        ("id", str(job.id)),
        ("type", d.type),
        ("status", d.status),
        ("priority", str(d.priority)),
        ("created", _stamp(d.created)),
        ("updated", _stamp(d.updated)),
        ("after", _stamp(d.after)),
        ("retried", f"{d.retried}/{d.retries}"),
        ("progress", f"{d.progress.percent:g}%"),
        ("depends", ", ".join(str(i) for i in d.depends) or "-"),
        ("data", _json(doc["data"])),
        ("result", "-" if d.result is None else _json(doc["result"])),
    ]
    for name, value in lines:
        print(f"{name + ':':<10}{value}", file=console.out)
    failures = doc.get("failures") or []
    print(f"failures: {len(failures)}", file=console.out)
    for failure in failures:
        print(f"  {_json(failure)}", file=console.out)
    log = d.log or []
    print(f"log: {len(log)} lines", file=console.out)
    for entry in log:
        print(f"  {_stamp(entry.time)} {entry.level:<8}{entry.message}", file=console.out)
    return 0


ACTIONS: dict[
    str, tuple[str, tuple[str, ...], Callable[[JobCollection, list[Any]], Awaitable[int]]]
] = {
    "retry": (
        "Retry",
        c.JOB_STATUS_RESTARTABLE,
        lambda jc, ids: jc.restart_jobs(ids, count=True),
    ),
    "cancel": (
        "Cancel",
        c.JOB_STATUS_CANCELLABLE,
        lambda jc, ids: jc.cancel_jobs(ids, count=True),
    ),
    "remove": ("Remove", c.JOB_STATUS_REMOVABLE, lambda jc, ids: jc.remove_jobs(ids, count=True)),
}
"""Each bulk command: its verb, the statuses its filter selects by default (those it can
change), and the bulk method it applies, answering how many jobs it changed."""


async def act(jc: JobCollection, args: argparse.Namespace, console: Console) -> int:
    """retry/cancel/remove: by ids, or by a filter after counting and confirming."""
    verb, statuses, apply = ACTIONS[args.command]
    if args.ids and _has_filter(args):
        raise Refused("give job ids or a filter (--type, --status, --user, --data), not both")
    if args.ids:
        ids = list(dict.fromkeys(v.job_id(i, "id") for i in args.ids))
    elif _has_filter(args):
        ids = await _matching(jc, _filters(args, statuses))
    else:
        raise Refused("give job ids or a filter (--type, --status, --user, --data)")
    return await _apply(jc, ids, verb, apply, console, confirm=not args.ids and not args.yes)


async def _apply(
    jc: JobCollection,
    ids: list[Any],
    verb: str,
    apply: Callable[[JobCollection, list[Any]], Awaitable[int]],
    console: Console,
    *,
    confirm: bool,
    what: str = "jobs",
) -> int:
    """Apply a bulk method to the jobs of these ids that exist, after a confirmation if
    asked for; print how many matched and how many changed status (or went, for remove)."""
    before = await _statuses(jc, ids)
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


async def purge(jc: JobCollection, args: argparse.Namespace, console: Console) -> int:
    """Remove finished jobs last updated (finished) before a moment."""
    await refresh_clock(jc.clock)
    before = _when(args.completed_before, jc.clock.now())
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
        what=f"{'/'.join(statuses)} jobs finished before {_stamp(before)}",
    )


async def stats(jc: JobCollection, args: argparse.Namespace, console: Console) -> int:
    """Jobs per type and status, and how long the longest-waiting ready job of each type
    has been due (now - its `after`): `jc.stats()`."""
    read = await jc.stats()
    counts: dict[str, dict[str, int]] = {}
    for (job_type, status), n in read.counts.items():
        counts.setdefault(job_type, {})[status] = n
    waiting = {t: read.oldest_ready_age(t) for t in read.oldest_ready}
    types = sorted(counts)
    if args.json:
        report = {
            "types": {
                t: {
                    "counts": {s: counts[t].get(s, 0) for s in c.JOB_STATUSES},
                    "total": sum(counts[t].values()),
                    "oldest_ready_s": waiting.get(t),
                }
                for t in types
            },
            "total": sum(sum(n.values()) for n in counts.values()),
        }
        print(_json(report), file=console.out)
        return 0
    rows = [["TYPE", *(s.upper() for s in c.JOB_STATUSES), "TOTAL", "OLDEST READY"]]
    for t in types:
        oldest = waiting.get(t)
        rows.append(
            [
                t,
                *(str(counts[t].get(s, 0)) for s in c.JOB_STATUSES),
                str(sum(counts[t].values())),
                "-" if oldest is None else _age(oldest),
            ]
        )
    total = [sum(counts[t].get(s, 0) for t in types) for s in c.JOB_STATUSES]
    rows.append(["(all)", *(str(n) for n in total), str(sum(total)), ""])
    _table(rows, console.out)
    return 0


Operation = Callable[["JobCollection", argparse.Namespace, Console], Awaitable[int]]


async def operate(
    jc: JobCollection, args: argparse.Namespace, console: Console | None = None
) -> int:
    """Run the operator command `args` names on a collection: its exit code. A bad argument
    (a Refused or an InvalidArgument) is reported naming its option, with code 2; a
    database error with code 1."""
    console = console or Console.standard()
    operation: Operation = args.operation
    try:
        return await operation(jc, args, console)
    except Refused as exc:
        print(f"jobcollection {args.command}: {exc}", file=console.err)
        return 2
    except InvalidArgument as exc:
        name = exc.argument.split("[")[0]
        option = OPTION_OF.get(name, name)
        print(f"jobcollection {args.command}: {option}: {exc.problem}", file=console.err)
        return 2
    except DatabaseError as exc:
        print(f"jobcollection {args.command}: {exc}", file=console.err)
        return 1


async def run_operator(args: argparse.Namespace) -> int:
    """An operator command on the database the options name."""
    from .collection import JobCollection

    async with open_database(args.mongodb_uri, args.database) as db:
        jc = JobCollection.from_database(db, args.root)
        try:
            return await operate(jc, args)
        finally:
            await jc.close()


# --- the command --------------------------------------------------------------------------------


def _database_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mongodb-uri", help="MongoDB connection string (default: in memory)")
    parser.add_argument("--database", default="jobcollection", help="database name")
    parser.add_argument("--root", default="queue", help="the collection is ROOT.jobs")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="jobcollection", description=__doc__.splitlines()[0])
    commands = top.add_subparsers(dest="command", required=True)

    s = commands.add_parser("serve", help="run the remote API and the job server")
    _database_options(s)
    s.add_argument("--tokens", help="tokens file: lines `<user id> <sha256 of token> [roles]`")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000, help="0: any free port")
    s.add_argument("--ssl-certfile", help="serve HTTPS with this certificate (PEM)")
    s.add_argument("--ssl-keyfile", help="the certificate's private key (PEM)")
    s.add_argument("--max-wait", type=float, default=30.0, help="longest long poll, seconds")
    s.add_argument("--no-job-server", action="store_true", help="another process runs it")
    s.add_argument(
        "--ddp", action="store_true", help="also serve DDP at /websocket (meteor-job workers)"
    )
    s.add_argument("--log-level", default="info")
    s.set_defaults(run=serve)

    w = commands.add_parser("worker", help="run a queue of an async function, or of tasks")
    w.add_argument(
        "function",
        help="MODULE:FUNCTION, an async function of a job; with --tasks MODULE:OBJECT, a "
        "job collection whose registered tasks (jc.task) run, a Task or a list of Tasks",
    )
    w.add_argument(
        "--type", action="append", help="job type (repeatable; with --tasks: only these)"
    )
    w.add_argument("--tasks", action="store_true", help="run typed tasks (see function)")
    w.add_argument("--url", help="the remote API's URL")
    w.add_argument("--token", help=f"bearer token (default: ${TOKEN_ENV})")
    _database_options(w)
    w.add_argument("--concurrency", type=int, default=1)
    w.add_argument("--payload", type=int, default=1)
    w.add_argument("--prefetch", type=int, default=0)
    w.add_argument("--poll-interval", type=float, default=5.0)
    w.add_argument("--work-timeout", type=float, default=None, help="lease, seconds")
    w.add_argument("--timeout", type=float, default=None, help="seconds a job may run")
    w.set_defaults(run=work)

    t = commands.add_parser("token", help="make a token and its tokens-file line")
    t.add_argument("user")
    t.add_argument("roles", nargs="*", help=f"any of {', '.join(PERMISSION_LEVELS)}")
    t.set_defaults(run=token)

    d = commands.add_parser("dashboard", help="serve the web dashboard alone, on loopback")
    _database_options(d)
    d.add_argument("--host", default="127.0.0.1", help="a loopback address")
    d.add_argument("--port", type=int, default=8000, help="0: any free port")
    d.add_argument("--read-only", action="store_true", help="no actions, only looking")
    d.add_argument("--log-level", default="info")
    d.set_defaults(run=dashboard)

    _operator_commands(commands)
    return top


def _filter_options(parser: argparse.ArgumentParser, what: str = "jobs") -> None:
    parser.add_argument("--type", action="append", help=f"{what} of this type (repeatable)")
    parser.add_argument(
        "--status",
        action="append",
        choices=c.JOB_STATUSES,
        help=f"{what} in this status (repeatable)",
    )
    parser.add_argument("--user", help=f'{what} for this user id (JSON when it parses: 7, "7")')
    parser.add_argument(
        "--data",
        action="append",
        type=data_item,
        metavar="PATH=VALUE",
        help=f"{what} whose data holds VALUE (JSON when it parses) at PATH (repeatable)",
    )


def _operator_commands(commands: Any) -> None:
    def add(name: str, operation: Operation, help: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = commands.add_parser(name, help=help, description=help)
        _database_options(p)
        p.set_defaults(run=run_operator, operation=operation)
        return p

    ls_ = add("ls", ls, "list jobs, newest first (the next page's cursor goes to stderr)")
    _filter_options(ls_)
    ls_.add_argument(
        "--created-before",
        type=moment,
        metavar="MOMENT",
        help="jobs created before an ISO date/datetime (UTC unless given) or a duration ago "
        "(30m, 12h, 7d)",
    )
    ls_.add_argument("--limit", type=page_size, default=50, help="jobs per page (1-1000)")
    ls_.add_argument("--after", metavar="CURSOR", help="the page after this cursor")
    ls_.add_argument("--json", action="store_true", help="one job document per line")

    sh = add("show", show, "one job, with its log and failures")
    sh.add_argument("id", help="the job's id (24 hex digits: the ObjectId they spell)")
    sh.add_argument("--json", action="store_true", help="the job document as JSON")

    for name, (verb, statuses, _) in ACTIONS.items():
        a = add(
            name,
            act,
            f"{verb.lower()} jobs by id, or every job matching a filter (by default the "
            f"{'/'.join(statuses)} ones) after a confirmation",
        )
        a.add_argument("ids", nargs="*", metavar="ID", help="job ids")
        _filter_options(a)
        a.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    pu = add("purge", purge, "remove finished jobs last updated before a moment")
    pu.add_argument(
        "--completed-before",
        type=moment,
        required=True,
        metavar="MOMENT",
        help="an ISO date/datetime (UTC unless given) or a duration ago (30m, 12h, 7d)",
    )
    pu.add_argument(
        "--status",
        action="append",
        choices=FINISHED,
        help="only jobs in this status (repeatable; default: all three)",
    )
    pu.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    st = add("stats", stats, "jobs per type and status, and the oldest ready job per type")
    st.add_argument("--json", action="store_true", help="one JSON object")


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "token":
        return token(args)
    try:
        code: int = asyncio.run(args.run(args))
        return code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
