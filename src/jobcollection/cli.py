"""The `jobcollection` command (also `python -m jobcollection`).

    jobcollection serve  [--mongodb-uri URI] [--tokens FILE] [--host H] [--port P] ...
    jobcollection worker MODULE:FUNCTION --type T [--concurrency N] (--url URL | --mongodb-uri URI)
    jobcollection token USER [ROLE ...]

`serve` runs the remote API (remote.create_app) with uvicorn, and the job server, on a MongoDB
database or, without `--mongodb-uri`, on the in-memory backend (a demo). Users and their roles
(admin, manager, creator, worker) come from the tokens file; without one it makes a demo admin
token and serves on loopback only; with `--ddp` it also serves Meteor's DDP at `/websocket`,
for job-collection's own node.js workers (meteor-job), logging in with the same tokens.
`worker` runs a queue of an async function, against a remote API (`--url`, the token in
`--token` or JOBCOLLECTION_TOKEN) or a database; the first SIGTERM or Ctrl-C shuts it down
gracefully (running jobs finish, queued ones are handed back), a second one at once.
`token` prints a new token and its line for the tokens file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import ipaddress
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

from .constants import PERMISSION_LEVELS

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
        config = uvicorn.Config(
            app,
            host=args.host,
            port=args.port,
            log_level=args.log_level,
            ssl_certfile=args.ssl_certfile,
            ssl_keyfile=args.ssl_keyfile,
            timeout_graceful_shutdown=args.max_wait + 5,
        )
        server = _server_class()(config)
        try:
            await server.serve()
        finally:
            if not args.no_job_server:
                await jc.shutdown_job_server(timeout=0)
            await jc.close()
    return 0


def _server_class() -> type[Any]:
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

    return Server


# --- worker -------------------------------------------------------------------------------------


def load_function(spec: str) -> Callable[..., Any]:
    """MODULE:FUNCTION, imported as Python would (the current directory first)."""
    module_name, _, name = spec.partition(":")
    if not module_name or not name:
        raise SystemExit(f"worker: {spec!r} must be MODULE:FUNCTION")
    if "" not in sys.path:
        sys.path.insert(0, "")
    function = importlib.import_module(module_name)
    for part in name.split("."):
        function = getattr(function, part)
    if not callable(function):
        raise SystemExit(f"worker: {spec} is not a function")
    return function


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
    function = load_function(args.function)
    stopper = Stopper()
    stopper.install()
    async with open_collection(args) as jc:
        queue = jc.process_jobs(
            args.type,
            function,
            concurrency=args.concurrency,
            payload=args.payload,
            prefetch=args.prefetch,
            poll_interval=args.poll_interval,
            work_timeout=args.work_timeout,
            timeout=args.timeout,
        )
        say(f"worker started: {', '.join(args.type)} jobs, concurrency {args.concurrency}")
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

    w = commands.add_parser("worker", help="run a queue of an async function")
    w.add_argument("function", help="MODULE:FUNCTION, an async function of a job")
    w.add_argument("--type", action="append", required=True, help="job type (repeatable)")
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
    return top


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
