"""The `jobcollection` command (also `python -m jobcollection`).

    jobcollection serve  [--mongodb-uri URI | --demo] [--tokens FILE] [--host H] [--port P] ...
                         [--metrics-port P [--metrics-host H]]
    jobcollection worker MODULE:FUNCTION --type T [--concurrency N] WHERE [--burst] [--grace S]
                         [--metrics-port P [--metrics-host H]]
    jobcollection worker MODULE:OBJECT --tasks [--type T] [--concurrency N] WHERE ...
    jobcollection token USER [ROLE ...]
    jobcollection ls [--type T ...] [--status S ...] [--user U] [--data PATH=VALUE ...] [--json]
    jobcollection show ID [--json]
    jobcollection retry|cancel|remove (ID ... | --type/--status/--user/--data ...) [--yes]
    jobcollection purge --completed-before MOMENT [--status S ...] [--yes]
    jobcollection stats [--json]
    jobcollection dashboard (--mongodb-uri URI | --demo) [--port P] [--read-only]

WHERE says where the jobs are, and nothing is assumed: `--url URL` (a `jobcollection serve`;
the token in `--token` or JOBCOLLECTION_TOKEN, and the command runs under the token's roles),
`--mongodb-uri URI` (a database; JOBCOLLECTION_MONGODB_URI when none of the three is given,
which keeps a password out of the process list), or `--demo` (an empty in-memory database,
private to the process: for trying the command out, said so on stderr). `serve` without a
URI serves an in-memory database, and says so on stderr.

`serve` runs the remote API (remote.create_app) with uvicorn, and the job server. Users and
their roles (admin, manager, creator, worker) come from the tokens file; without one it makes a
demo admin token and serves on loopback only; with `--ddp` it also serves Meteor's DDP at
`/websocket`, for job-collection's own node.js workers (meteor-job), logging in with the same
tokens. It also serves the web dashboard (jobcollection.web) at `/dashboard/`: a browser logs
in with a token; users the tokens file makes neither admin nor manager may only look.
`dashboard` serves the dashboard alone, on loopback, without tokens: whoever can reach it
there acts as its admin user (`--read-only`: may only look).
`worker` runs a queue of an async function, through a remote API (`--url`) or on a database;
on a database it runs the job server too (a JobCollection hands out work only while its job
server runs; the job servers of several processes on one collection coexist, every pass
being idempotent conditional updates). It logs one line per job started and one per outcome
(`--log-level`, `--log-format text|json`, on stderr). The first SIGTERM or Ctrl-C shuts it
down normally (running jobs finish, within `--grace` seconds if given, queued ones are handed
back), a second one at once (running jobs are failed and retried); `--burst` stops it once
no job is ready. `worker MODULE:OBJECT --tasks` runs typed tasks (tasks.py) instead, in one
queue, on the collection it opens: every task of the TaskRegistry OBJECT names
(`tasks = TaskRegistry()` and `@tasks.task(...)` in that module), or every task registered on
the job collection it names (`@jc.task(...)`), or a Task, or a list of Tasks; `--type` picks
among them.
`token` prints a new token and its line for the tokens file.
`--metrics-port` (`serve`, and `worker` on a database) serves Prometheus metrics
(metrics.JobMetrics) at `/metrics` on a port of its own, without a token, on 127.0.0.1 unless
`--metrics-host` says otherwise (see `serving_metrics`). Each command needs the extras
EXTRAS_NEEDED lists (`jobcollection --help` shows them).

The operator commands (`ls`, `show`, `retry`, `cancel`, `remove`, `purge`, `stats`) work on a
database, or through a remote API under the token's roles: `ls`, `stats` and the filters of
`retry`/`cancel`/`remove`/`purge` call jobFind and jobStats (admin or manager), `show` and
the counting of changes getJob (admin or worker), the changes the manager's methods; a
manager's token changes jobs without counting them. `purge` removes what it found in pages,
each removal the conditional update `remove` makes (a job restarted meanwhile is kept). Each
is an async function of a collection, the parsed arguments and a `Console` (where it writes,
how it asks for a confirmation), so it runs in-process on any collection.

A mistake (a wrong URL, a bad token, an unreachable server, a bad MODULE:FUNCTION, an invalid
MongoDB URI, a missing extra) is one line on stderr, `jobcollection COMMAND: what is wrong;
how to fix it`, and an exit code; `--debug` adds the traceback. `serve` and `dashboard` log
the library's records on stderr too, at their `--log-level`.

Exit codes:
    0  done
    1  the operation failed: no job matched, declined, a database error while working
    2  usage: a bad or missing option or argument, a bad MODULE:FUNCTION, an invalid URI
    3  cannot connect or not allowed: server or database unreachable, not a jobcollection
       remote API at that URL, a token refused or lacking the role, a port `serve` or
       `dashboard` cannot listen on (uvicorn's own message)
    4  a missing extra: `pip install "jobcollection[EXTRA]"`
    130 interrupted (Ctrl-C) before the command could stop by itself
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import importlib
import inspect
import ipaddress
import json
import logging
import os
import re
import signal
import sys
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, TextIO, overload
from urllib.parse import urlsplit

from .model import constants as c
from .model import validation as v
from .model.constants import PERMISSION_LEVELS
from .model.errors import DatabaseError, InvalidArgument, PermissionDenied
from .mongo.servertime import refresh_clock

if TYPE_CHECKING:
    from .api.collection import JobCollection
    from .api.jobs import JobsAPI
    from .api.queue import JobQueue
    from .api.tasks import Task
    from .remote import RemoteJobCollection

TOKEN_ENV = "JOBCOLLECTION_TOKEN"
"""Where `--url` reads its token when `--token` is not given (a token on the command line is
visible to every user of the machine)."""
MONGODB_URI_ENV = "JOBCOLLECTION_MONGODB_URI"
"""Where a command reads its MongoDB URI when it is given none of `--url`, `--mongodb-uri` and
`--demo` (a password in a URI on the command line is visible in the process list)."""

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
  ls, show, retry, cancel, remove, purge, stats
              nothing more on --mongodb-uri; client with --url; memory with --demo
  remote = server + client; all = every extra"""
"""Which extra each command needs (scripts/check-extras runs each with only these)."""

WHERE = (
    f"--url URL (with --token or ${TOKEN_ENV}), --mongodb-uri URI (or ${MONGODB_URI_ENV}), or "
    "--demo"
)


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


_DEMO_DATABASES: dict[str, Any] = {}


def demo_database(name: str) -> Any:
    """The process's in-memory database `name` (what `--demo` opens): empty when the process
    starts, shared by the collections the process opens on it, gone when it ends."""
    if name not in _DEMO_DATABASES:
        from .testing import memory_database

        _DEMO_DATABASES[name] = memory_database(name)
    return _DEMO_DATABASES[name]


def uri_from_environment(args: argparse.Namespace) -> None:
    """`--mongodb-uri` from JOBCOLLECTION_MONGODB_URI, for a command that takes one and was
    given none of `--url`, `--mongodb-uri` and `--demo` (an empty variable is none);
    `args.uri_option` says where the URI came from, for the messages about it."""
    if getattr(args, "mongodb_uri", None) is not None or getattr(args, "demo", True):
        return
    uri = os.environ.get(MONGODB_URI_ENV)
    if getattr(args, "url", None) is None and uri:
        args.mongodb_uri = uri
        args.uri_option = MONGODB_URI_ENV


def uri_option(args: argparse.Namespace) -> str:
    """Where the command's MongoDB URI came from: `--mongodb-uri` or the environment."""
    option: str = getattr(args, "uri_option", "--mongodb-uri")
    return option


@contextlib.asynccontextmanager
async def open_database(
    uri: str | None, name: str, option: str = "--mongodb-uri"
) -> AsyncIterator[Any]:
    """The database `name` on MongoDB at `uri`, once its server answered a ping
    (CommandFailed otherwise: exit code 2 for a URI that is not one, 3 for a server that
    cannot be reached or refuses the credentials; the messages name `option`, where the URI
    came from), or the process's in-memory demo database without one."""
    if uri is None:
        yield demo_database(name)
        return
    example = "e.g. mongodb://HOST:27017 or mongodb+srv://USER:PASSWORD@CLUSTER"
    if not uri.startswith(("mongodb://", "mongodb+srv://")):
        raise Refused(f"{option}: not a MongoDB connection string ({example})")
    from pymongo import AsyncMongoClient
    from pymongo.errors import ConfigurationError, OperationFailure, PyMongoError

    try:
        client: Any = AsyncMongoClient(uri, tz_aware=True)
    except (ConfigurationError, ValueError, TypeError) as exc:
        raise CommandFailed(
            f"{option}: not a usable MongoDB connection string ({one_line(str(exc))}); {example}",
            EXIT_USAGE,
        ) from exc
    try:
        try:
            await client.admin.command("ping")
        except OperationFailure as exc:
            raise CommandFailed(
                f"MongoDB refused: {one_line(str(exc), 200)}; check the user and password in "
                f"{option}",
                EXIT_UNAVAILABLE,
            ) from exc
        except PyMongoError as exc:
            reason = re.split(r", Timeout:| \(configured timeouts", str(exc))[0]
            raise CommandFailed(
                f"cannot reach MongoDB ({one_line(reason, 200)}); check the host and port in "
                f"{option} and that the server runs",
                EXIT_UNAVAILABLE,
            ) from exc
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

    from .api.collection import JobCollection
    from .remote import TokenAuth, create_app, hash_token, new_token

    if args.tokens is not None:
        try:
            auth = TokenAuth.from_file(args.tokens)
        except InvalidArgument as exc:  # missing, unsafe mode, a bad line: named, one line
            raise Refused(f"--tokens: {exc}") from None
    elif _loopback(args.host):
        token = new_token()
        auth = TokenAuth({hash_token(token): "demo"}, roles={"demo": ["admin"]})
        say(f"no --tokens file: demo admin token {token}")
    else:
        raise Refused(
            "refusing to serve beyond loopback without --tokens FILE (its lines come from "
            "`jobcollection token USER ROLE`)"
        )
    if args.mongodb_uri is None:
        note(
            "serve",
            "no --mongodb-uri: serving an IN-MEMORY database (a demo: empty at start, "
            "lost when the server stops)",
        )
    if args.no_job_server:
        note(
            "serve",
            "--no-job-server: this server hands out no work (getWork answers nothing) and "
            "promotes no job; it creates, reads and manages jobs",
        )
    async with open_database(args.mongodb_uri, args.database, uri_option(args)) as db:
        jc = JobCollection.from_database(db, args.root)
        for role in PERMISSION_LEVELS:
            jc.allow(**{role: auth.role_rule(role)})
        if not args.no_job_server:
            await jc.start_job_server()
        app = create_app(jc, auth=auth, max_wait=args.max_wait, ddp=args.ddp)
        dashboard = _dashboard(jc, auth, args.allowed_hosts)
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
            async with serving_metrics(args, jc):
                await server.serve()
        finally:
            if not args.no_job_server:
                await jc.shutdown_job_server(timeout=0)
            await jc.close()
    return 0


def _dashboard(jc: JobCollection, auth: Any, allowed_hosts: list[str] | None) -> Any:
    """The dashboard `serve` mounts: users without the admin or manager role only look."""
    from .web import create_dashboard

    return create_dashboard(
        jc,
        auth=auth,
        read_only=lambda user: not {"admin", "manager"} & auth.roles_of(user),
        allowed_hosts=allowed_hosts,
    )


async def dashboard(args: argparse.Namespace) -> int:
    """The dashboard alone, on loopback, without tokens (it refuses other clients)."""
    import uvicorn

    from .api.collection import JobCollection
    from .web import create_dashboard

    if not _loopback(args.host):
        raise Refused(
            "refusing: `dashboard` serves loopback only (use `serve --tokens FILE` beyond)"
        )
    if args.url is not None:
        raise Refused(
            f"a jobcollection server serves its own dashboard: open {args.url.rstrip('/')}"
            "/dashboard/ and log in with a token (`dashboard` serves a database's jobs: "
            "--mongodb-uri URI)"
        )
    _where(args, remote=False)
    async with open_database(args.mongodb_uri, args.database, uri_option(args)) as db:
        jc = JobCollection.from_database(db, args.root)
        app = create_dashboard(jc, read_only=args.read_only, allowed_hosts=args.allowed_hosts)
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


# --- metrics ------------------------------------------------------------------------------------

METRICS_REFRESH_S = 15.0
"""How often `--metrics-port` reads the queue depths (JobMetrics.refresh: one aggregation)."""


@contextlib.asynccontextmanager
async def serving_metrics(args: argparse.Namespace, jc: JobsAPI) -> AsyncIterator[None]:
    """With `--metrics-port`, while the block runs: the collection's Prometheus metrics
    (metrics.JobMetrics, and the process's own) at `/metrics` on prometheus_client's HTTP
    server, on `--metrics-host` (loopback unless given); the queue depths read every
    METRICS_REFRESH_S seconds. It answers without a token, so it listens on a port of its own
    (the API's port only ever answers authenticated calls): scrape it from the machine, or
    give `--metrics-host` where a private network reaches it. Its labels hold job types and
    statuses only, never ids, users or data."""
    port: int | None = getattr(args, "metrics_port", None)
    if port is None:
        yield
        return
    from prometheus_client import start_http_server

    from .api.collection import JobCollection
    from .metrics import JobMetrics

    if not isinstance(jc, JobCollection):  # refused before connecting: see `work`
        raise Refused(REMOTE_METRICS)
    metrics = JobMetrics(jc)
    try:
        server, thread = start_http_server(port, addr=args.metrics_host)
    except OSError as exc:
        raise CommandFailed(
            f"--metrics-port: cannot listen on {args.metrics_host}:{port} "
            f"({exc.strerror or exc}); give another port, or 0 for any free one",
            EXIT_UNAVAILABLE,
        ) from exc
    host, bound = server.server_address[:2]
    say(f"metrics on http://{_url_host(str(host))}:{bound}/metrics")
    refresh = asyncio.create_task(metrics.run(METRICS_REFRESH_S))
    try:
        yield
    finally:
        refresh.cancel()
        await asyncio.gather(refresh, return_exceptions=True)
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


REMOTE_METRICS = (
    "--metrics-port needs --mongodb-uri or --demo: the jobs of workers on --url are counted "
    "by the server they work through (`serve --metrics-port PORT`)"
)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _metrics_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("metrics (the metrics extra)")
    group.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics, without a token, on a "
        "port of their own (0: any free port)",
    )
    group.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        metavar="HOST",
        help="where --metrics-port listens (default: 127.0.0.1; metrics hold job types and "
        "counts, no ids, users or data)",
    )


# --- worker -------------------------------------------------------------------------------------


def load_object(spec: str, what: str = "FUNCTION") -> Any:
    """MODULE:NAME, imported as Python would (the current directory first); Refused, naming
    what is wrong, for a spec that is not one, a module that cannot be imported or a name it
    does not have (a missing optional dependency is left to `explain`)."""
    module_name, _, name = spec.partition(":")
    example = "myapp.tasks:send_email" if what == "FUNCTION" else "myapp.tasks:tasks"
    if not module_name or not name:
        raise Refused(f"{spec!r} must be MODULE:{what} (e.g. {example})")
    if "" not in sys.path:
        sys.path.insert(0, "")
    try:
        found: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if missing_extra(exc) is not None:
            raise
        if exc.name is not None and f"{module_name}.".startswith(f"{exc.name}."):
            raise Refused(
                f"{spec}: no module {exc.name!r}; run from the folder that holds it, or add "
                "that folder to PYTHONPATH"
            ) from exc
        raise Refused(f"{spec}: importing {module_name} failed: {exc}") from exc
    except Exception as exc:
        raise Refused(
            f"{spec}: importing {module_name} raised {type(exc).__name__}: {exc} "
            "(--debug shows the traceback)"
        ) from exc
    for part in name.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise Refused(f"{spec}: {module_name} has no {name!r}") from None
    return found


def load_function(spec: str) -> Callable[..., Any]:
    """MODULE:FUNCTION, imported as Python would (the current directory first): an async
    function (or a callable that returns an awaitable)."""
    function: Any = load_object(spec)
    if not callable(function):
        raise Refused(f"{spec} is a {type(function).__name__}, not a function")
    if inspect.isfunction(function) and not inspect.iscoroutinefunction(function):
        raise Refused(f"{spec} is not an async function: define it with `async def`")
    loaded: Callable[..., Any] = function
    return loaded


def load_tasks(spec: str, types: Sequence[str] | None = None) -> list[Task[..., Any]]:
    """`worker --tasks`: MODULE:OBJECT names a TaskRegistry (all its tasks run), a collection
    whose tasks are registered with `jc.task` (all of them run), a Task, or a list of Tasks;
    with `types`, only the tasks of these job types."""
    from .api.jobs import JobsAPI
    from .api.tasks import Task, TaskRegistry, registered

    found = load_object(spec, "OBJECT")
    if isinstance(found, Task):
        chosen = [found]
    elif isinstance(found, list | tuple) and all(isinstance(t, Task) for t in found):
        chosen = list(found)
    elif isinstance(found, TaskRegistry):
        chosen = list(found.values())
    elif isinstance(found, JobsAPI):
        chosen = list(registered(found).values())
    else:
        raise Refused(f"{spec} is not a TaskRegistry, a job collection, a Task or a list of Tasks")
    if types:
        missing = set(types) - {t.name for t in chosen}
        if missing:
            raise Refused(f"{spec} has no task of type {', '.join(sorted(missing))}")
        chosen = [t for t in chosen if t.name in types]
    if not chosen:
        raise Refused(f"{spec} has no registered task")
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

    def uninstall(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)

    def on_signal(self, sig: int) -> None:
        self.count += 1
        name = signal.Signals(sig).name
        if self.count == 1:
            say(f"received {name}; shutting down (normal): running jobs finish")
            self.requested.set()
        else:
            say(f"received {name} again; shutting down (hard)")
            self.hard.set()


def _where(args: argparse.Namespace, *, remote: bool = True) -> None:
    """Refuse a command that says neither where its jobs are nor `--demo`; say loudly that
    `--demo` is in memory."""
    if getattr(args, "url", None) is None and args.mongodb_uri is None and not args.demo:
        where = WHERE if remote else f"--mongodb-uri URI (or ${MONGODB_URI_ENV}), or --demo"
        raise Refused(f"say where the jobs are: {where} (an empty in-memory database)")
    if args.demo:
        note(
            args.command,
            "--demo: an IN-MEMORY database, empty at start and private to this process; "
            "nothing is kept (--mongodb-uri URI or --url URL for real jobs)",
        )


@contextlib.asynccontextmanager
async def open_remote(args: argparse.Namespace) -> AsyncIterator[RemoteJobCollection]:
    """The remote collection at `--url`, connected with the token of `--token` or
    JOBCOLLECTION_TOKEN (CommandFailed, naming what is wrong, when it cannot be)."""
    url: str = args.url
    parts = urlsplit(url)
    address = "give the address `jobcollection serve` prints (http://HOST:PORT)"
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise Refused(f"--url: {url!r} is not an http(s) URL; {address}")
    import httpx

    try:
        httpx.URL(url).copy_with(port=parts.port)  # parts.port: ValueError beyond 0-65535
    except (ValueError, httpx.InvalidURL) as exc:
        raise Refused(f"--url: {url!r} is not a usable URL ({exc}); {address}") from None
    token = args.token or os.environ.get(TOKEN_ENV)
    given = "--token" if args.token else TOKEN_ENV
    if not token:
        raise Refused(
            f"--url needs a token: --token TOKEN or {TOKEN_ENV} (the server's admin makes one "
            "with `jobcollection token USER ROLE`)"
        )
    if not (token.isascii() and token.isprintable()) or " " in token:
        raise Refused(
            f"{given}: not a token (a token is printable ASCII without spaces, as "
            "`jobcollection token USER ROLE` prints it)"
        )

    from .remote import RemoteJobCollection

    remote = RemoteJobCollection(url, token=token)
    not_api = (
        f"{url} does not answer as a jobcollection remote API ({{}}); give its base URL: "
        "the address `jobcollection serve` prints, or where an application mounts it"
    )
    try:
        await remote.connect()
    except PermissionDenied as exc:
        raise CommandFailed(
            f"the server at {url} refused the token ({exc}); check --token or {TOKEN_ENV}",
            EXIT_UNAVAILABLE,
        ) from exc
    except DatabaseError as exc:
        cause = exc.__cause__
        if isinstance(cause, httpx.HTTPError):
            raise CommandFailed(
                f"cannot reach {url} ({type(cause).__name__}: {one_line(str(cause), 200)}); "
                "is `jobcollection serve` running there?",
                EXIT_UNAVAILABLE,
            ) from exc
        raise CommandFailed(not_api.format(exc), EXIT_UNAVAILABLE) from exc
    try:
        yield remote
    finally:
        await remote.close()


@contextlib.asynccontextmanager
async def open_collection(
    args: argparse.Namespace, *, job_server: bool = False
) -> AsyncIterator[JobsAPI]:
    """The job collection a command works on: remote (`--url`), a database's
    (`--mongodb-uri`) or the in-memory demo's (`--demo`); Refused with none of them. With
    `job_server`, a database's collection runs its job server while the block runs (a
    JobCollection hands out work only then; a remote one's server runs its own)."""
    _where(args)
    if args.url is not None:
        async with open_remote(args) as remote:
            yield remote
        return
    from .api.collection import JobCollection

    async with open_database(args.mongodb_uri, args.database, uri_option(args)) as db:
        jc = JobCollection.from_database(db, args.root)
        try:
            if job_server:
                await jc.start_job_server()
            yield jc
        finally:
            if job_server:
                await jc.shutdown_job_server(timeout=0)
            await jc.close()


async def work(args: argparse.Namespace) -> int:
    from .api.queue import JobQueue, QueueOptions
    from .api.tasks import dispatcher

    tasks = load_tasks(args.function, args.type) if args.tasks else None
    function = None if args.tasks else load_function(args.function)
    if tasks is not None and args.payload != 1:
        raise Refused("--tasks runs one job per call (no --payload)")
    if tasks is None and not args.type:
        raise Refused("--type is required (or --tasks)")
    types = args.type if tasks is None else [task.name for task in tasks]
    if args.metrics_port is not None and args.url is not None:
        raise Refused(REMOTE_METRICS)
    stopper = Stopper()
    stopper.install()
    try:
        async with (
            open_collection(args, job_server=True) as jc,
            serving_metrics(args, jc),  # before the queue's first claim
        ):
            if args.url is not None:
                await _may_claim(jc, types)
            try:
                options = QueueOptions(
                    concurrency=args.concurrency,
                    payload=args.payload,
                    prefetch=args.prefetch,
                    poll_interval=args.poll_interval,
                    work_timeout=args.work_timeout,
                    timeout=args.timeout,
                )
                if tasks is not None:
                    types, worker = dispatcher(tasks)
                    queue = JobQueue(jc, types, worker, options)
                else:
                    assert function is not None
                    queue = JobQueue(jc, args.type, function, options)
            except InvalidArgument as exc:  # named as the option that gave it
                name = exc.argument.split("[")[0]
                options_named = {field.name for field in dataclasses.fields(QueueOptions)}
                if name not in {*options_named, "type_or_types", "types"}:
                    raise
                option = "--type" if "type" in name else f"--{name.replace('_', '-')}"
                raise Refused(f"{option}: {exc.problem}") from None
            say(f"worker started: {', '.join(types)} jobs, concurrency {args.concurrency}")
            await run_until_stopped(queue, stopper, burst=args.burst, grace=args.grace)
    finally:
        stopper.uninstall()
    say("worker stopped")
    return EXIT_OK


async def _may_claim(jc: JobsAPI, types: Sequence[str]) -> None:
    """PermissionDenied now, rather than at every poll, when a remote API's rules would refuse
    this worker's claims (an empty long poll asks the same question, claiming nothing)."""
    from .remote import RemoteJobCollection

    if isinstance(jc, RemoteJobCollection):
        await jc.service.wait(types, 0)


async def run_until_stopped(
    queue: JobQueue, stopper: Stopper, *, burst: bool = False, grace: float | None = None
) -> None:
    """Run a worker's queue until a signal asks it to stop (or, with `burst`, until no job is
    ready), then shut it down: normally (running jobs finish, within `grace` seconds if
    given), or hard at a second signal or once the grace period is over."""
    waits: list[asyncio.Task[Any]] = [asyncio.create_task(stopper.requested.wait())]
    if burst:
        waits.append(asyncio.create_task(queue.drain()))
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for waiting in waits:
        waiting.cancel()
    await asyncio.gather(*waits, return_exceptions=True)
    if not stopper.requested.is_set():
        say("no job is ready (--burst); shutting down (normal)")
    shutdown = asyncio.create_task(queue.shutdown("normal"))
    hard = asyncio.create_task(stopper.hard.wait())
    await asyncio.wait([shutdown, hard], timeout=grace, return_when=asyncio.FIRST_COMPLETED)
    if not shutdown.done():
        if not hard.done():
            say(f"running jobs did not finish within --grace {grace:g} s; shutting down (hard)")
        await queue.shutdown("hard")
    await shutdown
    hard.cancel()
    await asyncio.gather(hard, return_exceptions=True)


# --- token --------------------------------------------------------------------------------------


def token(args: argparse.Namespace) -> int:
    from .remote import hash_token, new_token

    unknown = sorted(set(args.roles) - set(PERMISSION_LEVELS))
    if unknown:
        raise Refused(f"unknown roles {unknown}; use {list(PERMISSION_LEVELS)}")
    if not args.user or any(ch.isspace() for ch in args.user) or args.user.startswith("#"):
        raise Refused(
            f"USER {args.user!r} cannot be a tokens file's first field (no spaces, not "
            "starting with #)"
        )
    value = new_token()
    say(f"token: {value}")
    say(f"tokens file line: {' '.join([args.user, hash_token(value), *args.roles])}")
    return EXIT_OK


# --- operating on jobs --------------------------------------------------------------------------

MAX_MATCHED = 100_000
"""The most jobs a filter of `retry`/`cancel`/`remove`/`purge` may select (narrow it beyond)."""
PAGE = 1_000
"""Jobs read per page while collecting a filter's matches (find_jobs' largest page)."""
FINISHED: tuple[str, ...] = c.Status.FINAL
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


def seconds(text: str) -> float:
    """A number of seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (0 or more)")
    return value


def page_size(text: str) -> int:
    from .model.queries import MAX_PAGE

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


async def ls(jc: JobsAPI, args: argparse.Namespace, console: Console) -> int:
    """A page of jobs, newest first; the next page's cursor on stderr. The table's ATTEMPTS
    are those made of those allowed, in the API's words (`1 of 6`: `.retry(5)`)."""
    from .model import describe

    await refresh_clock(jc.service.clock)
    now = jc.service.clock.now()
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
        rows = [["ID", "TYPE", "STATUS", "CREATED", "UPDATED", "ATTEMPTS"]]
        rows += [
            [
                str(job.id),
                job.doc.type,
                job.doc.status,
                _stamp(job.doc.created),
                _stamp(job.doc.updated),
                describe.attempts_made(job.doc),
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


async def show(jc: JobsAPI, args: argparse.Namespace, console: Console) -> int:
    """One job with its log and failures."""
    job = await jc.get_job(v.job_id(args.id, "id"), get_log=True, get_failures=True)
    if job is None:
        print(f"no job {args.id}", file=console.err)
        return 1
    doc = job.doc.model_dump(mode="json", by_alias=True)
    if args.json:
        print(_json(doc), file=console.out)
        return 0
    for line in describe_job(job, doc, jc.service.clock.now()):
        print(line, file=console.out)
    return 0


def describe_job(job: Any, doc: dict[str, Any], now: datetime) -> list[str]:
    """`show`'s lines: the job's fields, its attempts and repeats in the API's words (describe.py:
    "5 retries, 6 attempts", "failed: no retries left", "repeats forever"), a cron schedule
    with its next runs, each failure with its time and its traceback as lines, and its log."""
    from .model import describe
    from .model.document import jsonable

    d = job.doc
    why = describe.outcome(d)
    plan = describe.schedule(d)
    upcoming = describe.next_runs(d, now)
    fields = [
        ("id", str(job.id)),
        ("type", d.type),
        ("status", d.status),
        *([("outcome", why)] if why else []),
        ("priority", str(d.priority)),
        ("created", _stamp(d.created)),
        ("updated", _stamp(d.updated)),
        ("after", _stamp(d.after)),
        ("attempts", describe.attempts(d)),
        ("repeats", describe.repeats(d)),
        *([("schedule", plan)] if plan else []),
        *(
            [("next runs", ", ".join(describe.run_time(t, d) for t in upcoming))]
            if upcoming
            else []
        ),
        ("progress", f"{d.progress.percent:g}%"),
        ("depends", ", ".join(str(i) for i in d.depends) or "-"),
        ("data", _json(doc["data"])),
        ("result", "-" if d.result is None else _json(doc["result"])),
    ]
    lines = [f"{name + ':':<10}{' ' if len(name) >= 9 else ''}{value}" for name, value in fields]
    failures = describe.failures(d)
    lines.append(f"failures: {len(failures)}")
    for n, failure in enumerate(failures, 1):
        lines.append(f"  {n}. {_stamp(failure.time)}  {failure.head}")
        lines += [f"       {text}" for text in failure.traceback]
        if failure.details:
            lines.append(f"       {_json(jsonable(failure.details))}")
    log = d.log or []
    lines.append(f"log: {len(log)} lines")
    lines += [f"  {_stamp(entry.time)} {entry.level:<8}{entry.message}" for entry in log]
    return lines


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
    if args.ids and _has_filter(args):
        raise Refused("give job ids or a filter (--type, --status, --user, --data), not both")
    if args.ids:
        ids = list(dict.fromkeys(v.job_id(i, "id") for i in args.ids))
    elif _has_filter(args):
        ids = await _matching(jc, _filters(args, statuses))
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
    before = _when(args.completed_before, jc.service.clock.now())
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
        uncounted=UNCOUNTED["remove"],
        found=True,
    )


async def stats(jc: JobsAPI, args: argparse.Namespace, console: Console) -> int:
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


Operation = Callable[["JobsAPI", argparse.Namespace, Console], Awaitable[int]]


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


# --- the command --------------------------------------------------------------------------------


def _database_options(
    parser: argparse.ArgumentParser, *, remote: bool = False, demo: str = "--demo"
) -> None:
    """Where the jobs are: `--url` (with `remote`), `--mongodb-uri` or `--demo`, one of them;
    the database and root names."""
    where = parser.add_argument_group("where the jobs are (one of)")
    exclusive = where.add_mutually_exclusive_group()
    if remote:
        exclusive.add_argument(
            "--url", help="a `jobcollection serve`: the address it prints (http://HOST:PORT)"
        )
    exclusive.add_argument(
        "--mongodb-uri",
        metavar="URI",
        help=f"a MongoDB connection string (default: ${MONGODB_URI_ENV} when "
        f"{'neither --url nor --demo is' if remote else '--demo is not'} given; safer: a "
        "password on the command line is visible in the process list)",
    )
    exclusive.add_argument(
        "--demo",
        action="store_true",
        help=f"an empty in-memory database, private to this process ({demo})",
    )
    if remote:
        where.add_argument(
            "--token", help=f"the bearer token for --url (default: ${TOKEN_ENV}, safer)"
        )
    where.add_argument("--database", default="jobcollection", help="database name")
    where.add_argument("--root", default="queue", help="the collection is ROOT.jobs")


def _command(commands: Any, name: str, help: str, **options: Any) -> argparse.ArgumentParser:
    """A subcommand's parser, with `--debug` and the exit codes in its help."""
    p: argparse.ArgumentParser = commands.add_parser(
        name,
        help=help,
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        **options,
    )
    p.add_argument("--debug", action="store_true", help="print the traceback of an error")
    return p


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="jobcollection",
        description=__doc__.splitlines()[0],
        epilog=f"{EXTRAS_NEEDED}\n\n{EXIT_CODES}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    top.add_argument(
        "--debug", dest="debug_first", action="store_true", help="print the traceback of an error"
    )
    commands = top.add_subparsers(dest="command", required=True)

    s = _command(commands, "serve", help="run the remote API and the job server")
    _database_options(s, demo="the default without --mongodb-uri")
    s.add_argument("--tokens", help="tokens file: lines `<user id> <sha256 of token> [roles]`")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000, help="0: any free port")
    s.add_argument("--ssl-certfile", help="serve HTTPS with this certificate (PEM)")
    s.add_argument("--ssl-keyfile", help="the certificate's private key (PEM)")
    s.add_argument("--max-wait", type=float, default=30.0, help="longest long poll, seconds")
    s.add_argument(
        "--no-job-server",
        action="store_true",
        help="hand out no work (getWork answers nothing): a server for creating and managing "
        "jobs only",
    )
    s.add_argument(
        "--ddp", action="store_true", help="also serve DDP at /websocket (meteor-job workers)"
    )
    s.add_argument(
        "--allowed-host",
        action="append",
        dest="allowed_hosts",
        metavar="NAME",
        help="a host name /dashboard/ is reached by (repeatable; `.example.com`: the domain "
        "and its subdomains); given, the dashboard refuses requests for other names (403)",
    )
    s.add_argument("--log-level", default="info", choices=SERVER_LOG_LEVELS, help="default: info")
    _metrics_options(s)
    s.set_defaults(run=serve)

    w = _command(commands, "worker", help="run a queue of an async function, or of tasks")
    w.add_argument(
        "function",
        help="MODULE:FUNCTION, an async function of a job; with --tasks MODULE:OBJECT, a "
        "TaskRegistry or a job collection whose tasks run (all of them), a Task or a list of "
        "Tasks",
    )
    w.add_argument(
        "--type", action="append", help="job type (repeatable; with --tasks: only these)"
    )
    w.add_argument("--tasks", action="store_true", help="run typed tasks (see function)")
    _database_options(w, remote=True, demo="for trying a worker out")
    w.add_argument("--concurrency", type=int, default=1)
    w.add_argument("--payload", type=int, default=1)
    w.add_argument("--prefetch", type=int, default=0)
    w.add_argument("--poll-interval", type=float, default=5.0)
    w.add_argument("--work-timeout", type=float, default=None, help="lease, seconds")
    w.add_argument("--timeout", type=float, default=None, help="seconds a job may run")
    w.add_argument("--burst", action="store_true", help="stop once no job is ready")
    w.add_argument(
        "--grace",
        type=seconds,
        default=None,
        metavar="SECONDS",
        help="at the first SIGTERM/Ctrl-C, running jobs have this long to finish before they "
        "are failed (and retried); default: as long as they take",
    )
    w.add_argument("--log-level", default="info", choices=LOG_LEVELS, help="default: info")
    w.add_argument(
        "--log-format",
        default="text",
        choices=("text", "json"),
        help="log lines on stderr as text, or one JSON object each",
    )
    _metrics_options(w)
    w.set_defaults(run=work)

    t = _command(commands, "token", help="make a token and its tokens-file line")
    t.add_argument("user")
    t.add_argument("roles", nargs="*", help=f"any of {', '.join(PERMISSION_LEVELS)}")
    t.set_defaults(run=token)

    d = _command(commands, "dashboard", help="serve the web dashboard alone, on loopback")
    _database_options(d, remote=True, demo="for trying the dashboard out")
    d.add_argument("--host", default="127.0.0.1", help="a loopback address")
    d.add_argument("--port", type=int, default=8000, help="0: any free port")
    d.add_argument("--read-only", action="store_true", help="no actions, only looking")
    d.add_argument(
        "--allowed-host",
        action="append",
        dest="allowed_hosts",
        metavar="NAME",
        help="a host name besides localhost and loopback addresses that the dashboard is "
        "reached by (repeatable; `.example.com`: the domain and its subdomains); requests "
        "for any other name are refused (403), against DNS rebinding",
    )
    d.add_argument("--log-level", default="info", choices=SERVER_LOG_LEVELS, help="default: info")
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
        p = _command(commands, name, help=help, description=help)
        _database_options(p, remote=True)
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command: its exit code (see EXIT_CODES). An error is one line on stderr
    (with its traceback too under `--debug`)."""
    args = parser().parse_args(argv)
    uri_from_environment(args)
    try:
        with contextlib.ExitStack() as stack:
            if args.command == "worker":
                stack.enter_context(logging_to_stderr(args.log_level, args.log_format))
            elif args.command in ("serve", "dashboard"):  # the job server's, the API's
                level = "debug" if args.log_level == "trace" else args.log_level
                stack.enter_context(logging_to_stderr(level, "text"))
            if args.command == "token":
                return token(args)
            code: int = asyncio.run(args.run(args))
            return code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:
        if args.debug or args.debug_first:
            traceback.print_exception(exc, file=sys.stderr)
        code, message = explain(exc, args.command)
        note(args.command, one_line(message))
        return code


if __name__ == "__main__":
    sys.exit(main())
