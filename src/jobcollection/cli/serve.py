"""The commands that serve: `serve` (the remote API, the dashboard and the job server, with
uvicorn), `dashboard` (the dashboard alone, on loopback, without tokens), and `token`, which
makes a token and its line for `serve`'s tokens file.

`serve` refuses to listen beyond loopback without a tokens file; `dashboard` refuses to
listen beyond loopback at all. Both run uvicorn's server as `_server_class` changes it: it
prints its address once it listens and lets the command close the collection after a
signal, rather than raising the signal again.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import signal
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ..model.constants import PERMISSION_LEVELS
from ..model.errors import InvalidArgument
from .connect import check_where, open_database, uri_option
from .errors import EXIT_OK, Refused, note, say
from .metrics_port import serving_metrics

if TYPE_CHECKING:
    from ..api.collection import JobCollection


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def serve(args: argparse.Namespace) -> int:
    import uvicorn
    from starlette.routing import Mount

    from ..api.collection import JobCollection
    from ..remote import TokenAuth, create_app, hash_token, new_token

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
    from ..web import create_dashboard

    return create_dashboard(
        jc,
        auth=auth,
        read_only=lambda user: not {"admin", "manager"} & auth.roles_of(user),
        allowed_hosts=allowed_hosts,
    )


async def dashboard(args: argparse.Namespace) -> int:
    """The dashboard alone, on loopback, without tokens (it refuses other clients)."""
    import uvicorn

    from ..api.collection import JobCollection
    from ..web import create_dashboard

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
    check_where(args, remote=False)
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


def token(args: argparse.Namespace) -> int:
    from ..remote import hash_token, new_token

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
