"""Where a command's jobs are: `--url` (a `jobcollection serve`, with a token), `--mongodb-uri`
(a database; JOBCOLLECTION_MONGODB_URI when none of the three is given) or `--demo` (the
process's in-memory database).

Nothing is assumed: `check_where` refuses a command given none of them, and each opener checks
what it was given before it is used (a URL that is not one, a token that cannot be one, a
MongoDB URI that is not a connection string) and turns a server that does not answer, or
refuses, into a `CommandFailed` naming the option to fix. `open_collection` is what the worker
and the operator commands open; `serve` and `dashboard` open a database with `open_database`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..model.errors import DatabaseError, PermissionDenied
from .errors import EXIT_UNAVAILABLE, EXIT_USAGE, CommandFailed, Refused, note, one_line

if TYPE_CHECKING:
    from ..api.jobs import JobsAPI
    from ..remote import RemoteJobCollection

TOKEN_ENV = "JOBCOLLECTION_TOKEN"
"""Where `--url` reads its token when `--token` is not given (a token on the command line is
visible to every user of the machine)."""
MONGODB_URI_ENV = "JOBCOLLECTION_MONGODB_URI"
"""Where a command reads its MongoDB URI when it is given none of `--url`, `--mongodb-uri` and
`--demo` (a password in a URI on the command line is visible in the process list)."""

WHERE = (
    f"--url URL (with --token or ${TOKEN_ENV}), --mongodb-uri URI (or ${MONGODB_URI_ENV}), or "
    "--demo"
)


_DEMO_DATABASES: dict[str, Any] = {}


def demo_database(name: str) -> Any:
    """The process's in-memory database `name` (what `--demo` opens): empty when the process
    starts, shared by the collections the process opens on it, gone when it ends."""
    if name not in _DEMO_DATABASES:
        from ..testing import memory_database

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


def check_where(args: argparse.Namespace, *, remote: bool = True) -> None:
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

    from ..remote import RemoteJobCollection

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
    check_where(args)
    if args.url is not None:
        async with open_remote(args) as remote:
            yield remote
        return
    from ..api.collection import JobCollection

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
