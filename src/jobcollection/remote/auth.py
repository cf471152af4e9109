"""Who a remote call is made for: the `auth` of the remote API.

An `Auth` is any callable given the request's connection (a Starlette `HTTPConnection`: its
headers, client address, ...) that answers the user id the call is made for (a hashable value:
a string, a number, an ObjectId), or None to refuse it (401). It may be a plain function or
an async one. Every call then runs through `jc.call(..., user_id=that id)`, so the
collection's allow/deny rules decide what the user may do. The id is never None for a
remote call: None would mean trusted server code.

`TokenAuth` is the one shipped: bearer tokens (`Authorization: Bearer <token>`), each mapped to
a user id, kept only as SHA-256 hashes and compared in constant time. A tokens file holds one
`<user id> <sha256 hex of the token> [role ...]` per line (`#` starts a comment); it is read
again when its content changes, so a token is added or revoked without a restart
(`jobcollection token USER ROLE` prints a new token and its line). The roles (admin, manager,
creator, worker) are for the application to grant: `jc.allow(worker=auth.role_rule("worker"))`
lets every user the file names as a worker make the worker group's calls, as the file says at
the time of the call; `jobcollection serve` grants every role that way.

The file is trusted only as ssh trusts a key file: it must be a regular file that neither its
group nor others may write (`chmod 600 FILE`). A file that is missing, unreadable, writable by
others or malformed (a line without a hash, a hash that is not 64 hex digits, an unknown role,
one token given to two users) is refused: `TokenAuth.from_file` raises InvalidArgument naming
the file (and line), and a later version that is refused leaves the last good tokens in force,
with one error logged (`jobcollection.remote.auth`) per refused version.

Revocation reaches what is already open: a DDP session and a long poll (`/wait`) subscribe to
the tokens (`subscribe`), the file is checked every `check_interval_s` while they do, and
each one whose token no longer stands for its user ends (ddp.py, app.py). The file is also
checked at each use (`user_for`), so a request made after a change sees it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import inspect
import logging
import os
import secrets
import stat
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol, TypeAlias

from starlette.requests import HTTPConnection

from ..model.constants import PERMISSION_LEVELS
from ..model.errors import InvalidArgument, InvalidArgumentType

logger = logging.getLogger("jobcollection.remote.auth")

Auth: TypeAlias = Callable[[HTTPConnection], Any | Awaitable[Any]]
"""The request's connection -> the user id of the call, or None to refuse it."""

DEFAULT_CHECK_INTERVAL_S: Final = 0.5
"""How often a tokens file is read again while sessions or long polls are open: a revoked
token ends them within about this long."""
MAX_FILE_BYTES: Final = 16 * 1024 * 1024
"""The largest tokens file read (some 100,000 tokens)."""


def hash_token(token: str) -> str:
    """The SHA-256 hex digest a token is kept as."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh random bearer token (256 bits, URL-safe).

    Never one that starts with `-`: a command line reads such a token in `--token TOKEN` as an
    option of its own and refuses it, so one token in 64 would fail for no reason a user could see.
    """
    token = secrets.token_urlsafe(32)
    while token.startswith("-"):
        token = secrets.token_urlsafe(32)
    return token


def _digest(value: str, name: str) -> bytes:
    if not isinstance(value, str) or len(value) != 64:
        raise InvalidArgument(name, "must be the 64-character SHA-256 hex digest of a token")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise InvalidArgument(name, "must be a SHA-256 hex digest") from None


def _checked_roles(roles: Mapping[Any, Iterable[str]], name: str) -> dict[Any, frozenset[str]]:
    checked = {}
    for user_id, names in roles.items():
        given = frozenset([names] if isinstance(names, str) else names)
        unknown = sorted(given - set(PERMISSION_LEVELS))
        if unknown:
            raise InvalidArgument(
                name.format(user_id), f"unknown roles {unknown}; use {list(PERMISSION_LEVELS)}"
            )
        checked[user_id] = given
    return checked


@dataclass(frozen=True)
class _Tokens:
    """One version of the tokens: (digest, user id) pairs and each user's roles."""

    entries: tuple[tuple[bytes, Any], ...]
    roles: Mapping[Any, frozenset[str]]

    def user_for(self, presented: bytes) -> Any:
        """The user a digest stands for: every kept digest is compared, in constant time, so
        the time taken says nothing of which one (nearly) matched."""
        found = None
        for digest, user_id in self.entries:
            if hmac.compare_digest(presented, digest):
                found = user_id
        return found


class Revocable(Protocol):
    """An auth whose tokens can change under open sessions (TokenAuth): a session keeps its
    token's hash, asks again whom it stands for when told of a change, and ends if no
    longer its user."""

    def user_for_hash(self, token_hash: str) -> Any: ...

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]: ...


async def until_revoked(auth: Any, connection: HTTPConnection, user_id: Any) -> None:
    """Return once `auth` no longer gives `connection` the user `user_id` (its token was
    revoked), asking again whenever its tokens change; never, for an auth that cannot say
    when they do (one without `subscribe`). What a long poll races its wait against."""
    subscribe = getattr(auth, "subscribe", None)
    changed = asyncio.Event()
    unsubscribe = subscribe(changed.set) if callable(subscribe) else None
    if unsubscribe is not None:
        changed.set()  # a change between the request's check and this subscription counts
    try:
        while True:
            await changed.wait()
            changed.clear()
            now = auth(connection)
            if inspect.isawaitable(now):
                now = await now
            if now != user_id:
                return
    finally:
        if unsubscribe is not None:
            unsubscribe()


class TokenAuth:
    """Bearer tokens, each mapped to a user id, kept as SHA-256 hashes.

    `TokenAuth({sha256_hex: user_id, ...})`, `TokenAuth.from_tokens({token: user_id})` (hashes
    them at once), or `TokenAuth.from_file(path)` (read again when its content changes; see
    the module docstring for what is refused)."""

    def __init__(
        self, hashes: Mapping[str, Any], *, roles: Mapping[Any, Iterable[str]] | None = None
    ) -> None:
        if not isinstance(hashes, Mapping):
            raise InvalidArgumentType("hashes", "must map SHA-256 hex digests to user ids")
        entries = []
        for digest, user_id in hashes.items():
            if user_id is None:
                raise InvalidArgument(f"hashes[{digest!r}]", "a user id cannot be None")
            entries.append((_digest(digest, f"hashes[{digest!r}]"), user_id))
        self._tokens = _Tokens(tuple(entries), _checked_roles(roles or {}, "roles[{!r}]"))
        self._path: Path | None = None
        self._seen: bytes | str | None = None
        """The file's last version read (its content), or why it could not be used."""
        self._check_interval_s = DEFAULT_CHECK_INTERVAL_S
        self._subscribers: dict[object, Callable[[], None]] = {}
        self._watcher: asyncio.Task[None] | None = None
        self._notifying = False

    @classmethod
    def from_tokens(cls, tokens: Mapping[str, Any]) -> TokenAuth:
        """From plain tokens (hashed here; only the hashes are kept)."""
        return cls({hash_token(token): user_id for token, user_id in tokens.items()})

    @classmethod
    def from_file(
        cls, path: str | os.PathLike[str], *, check_interval_s: float = DEFAULT_CHECK_INTERVAL_S
    ) -> TokenAuth:
        """From a tokens file (see the module docstring), read again whenever its content
        changes, and every `check_interval_s` while sessions are subscribed. InvalidArgument
        naming the file (and line) if it cannot be used."""
        if isinstance(check_interval_s, bool) or not isinstance(check_interval_s, int | float):
            raise InvalidArgumentType("check_interval_s", "must be a number of seconds")
        if not 0 < check_interval_s <= 3600:
            raise InvalidArgument("check_interval_s", "must be above 0, at most 3600 seconds")
        auth = cls({})
        auth._path = Path(path)
        auth._check_interval_s = float(check_interval_s)
        content = auth._read()
        auth._tokens = auth._parse(content)
        auth._seen = content
        return auth

    # --- looking up ----------------------------------------------------------------------

    def user_for(self, token: str) -> Any:
        """The user id a token stands for, None if none (or if it is not a string of
        Unicode text)."""
        try:
            presented = hashlib.sha256(token.encode()).digest()
        except (AttributeError, UnicodeEncodeError):
            return None
        return self._current().user_for(presented)

    def user_for_hash(self, token_hash: str) -> Any:
        """The user id the token of this SHA-256 hex digest stands for, None if none: what a
        session that keeps only its token's hash asks again."""
        try:
            presented = bytes.fromhex(token_hash)
        except (TypeError, ValueError):
            return None
        return self._current().user_for(presented) if len(presented) == 32 else None

    def roles_of(self, user_id: Any) -> frozenset[str]:
        """The roles the tokens file (or `roles`) gives a user."""
        return self._current().roles.get(user_id, frozenset())

    def role_rule(self, role: str) -> Callable[[Any, str, tuple[Any, ...]], bool]:
        """An allow rule for `jc.allow(<role>=...)`: the users given that role, now."""
        if role not in PERMISSION_LEVELS:
            raise InvalidArgument("role", f"must be one of {list(PERMISSION_LEVELS)}")
        return lambda user_id, method, params: role in self.roles_of(user_id)

    def __call__(self, connection: HTTPConnection) -> Any:
        scheme, _, token = connection.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        return self.user_for(token.strip())

    def _current(self) -> _Tokens:
        if self._path is not None and not self._notifying:
            self.check()
        return self._tokens

    # --- the file ------------------------------------------------------------------------

    def check(self) -> bool:
        """Read the tokens file again now (it is also read at each use and, while there are
        subscribers, every `check_interval_s`): whether its tokens changed. A version that
        cannot be used is logged once and changes nothing; a new good one is put in force
        and every subscriber is told."""
        if self._path is None:
            return False
        try:
            content = self._read()
        except InvalidArgument as exc:
            if str(exc) != self._seen:
                self._seen = str(exc)
                self._refused(exc)
            return False
        if content == self._seen:
            return False
        self._seen = content
        try:
            tokens = self._parse(content)
        except InvalidArgument as exc:
            self._refused(exc)
            return False
        if tokens == self._tokens:
            return False  # comments, order, spacing
        self._tokens = tokens
        logger.info("tokens file %s read again: %d tokens", self._path, len(tokens.entries))
        self._notify()
        return True

    def _refused(self, exc: InvalidArgument) -> None:
        logger.error("tokens file refused, the last good tokens stay in force: %s", exc)

    def _read(self) -> bytes:
        """The file's content (read whole, each time: a few microseconds for a small file);
        InvalidArgument naming it if it cannot be used."""
        assert self._path is not None
        path = self._path
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(path, flags)  # non-blocking: a FIFO in its place does not hang us
            try:
                status = os.fstat(fd)
                if not stat.S_ISREG(status.st_mode):
                    raise InvalidArgument(str(path), "is not a regular file")
                chunks, size = [], 0
                while chunk := os.read(fd, max(status.st_size + 1, 4096)):
                    size += len(chunk)
                    if size > MAX_FILE_BYTES:
                        raise InvalidArgument(str(path), f"is larger than {MAX_FILE_BYTES} bytes")
                    chunks.append(chunk)
            finally:
                os.close(fd)
        except OSError as exc:
            raise InvalidArgument(str(path), f"cannot be read: {exc.strerror or exc}") from None
        if os.name == "posix" and status.st_mode & 0o022:
            mode = stat.S_IMODE(status.st_mode)
            raise InvalidArgument(
                str(path),
                f"is writable by {'others' if mode & 0o002 else 'its group'} (mode {mode:o}), "
                f"so whoever can write it can add a token: run `chmod go-w {path}` "
                f"(or `chmod 600 {path}`)",
            )
        return b"".join(chunks)

    def _parse(self, content: bytes) -> _Tokens:
        """The tokens of a file's content (InvalidArgument naming the file and line)."""
        entries: dict[bytes, tuple[Any, int]] = {}
        roles: dict[Any, list[str]] = {}
        for number, raw in enumerate(content.splitlines(), 1):
            where = f"{self._path}:{number}"
            try:
                line = raw.decode()
            except UnicodeDecodeError:
                raise InvalidArgument(where, "is not UTF-8 text") from None
            words = line.split("#", 1)[0].split()
            if not words:
                continue
            if len(words) < 2:
                raise InvalidArgument(
                    where, "must be `<user id> <sha256 hex of the token> [role ...]`"
                )
            user_id, digest = words[0], _digest(words[1], where)
            if digest in entries and entries[digest][0] != user_id:
                raise InvalidArgument(
                    where, f"gives the token of line {entries[digest][1]} to another user"
                )
            entries.setdefault(digest, (user_id, number))
            named = roles.setdefault(user_id, [])
            for role in words[2:]:
                if role not in PERMISSION_LEVELS:
                    raise InvalidArgument(
                        where, f"unknown role {role!r}; use {list(PERMISSION_LEVELS)}"
                    )
                named.append(role)
        pairs = tuple((digest, user) for digest, (user, _) in entries.items())
        return _Tokens(pairs, {user: frozenset(names) for user, names in roles.items()})

    # --- telling open sessions -------------------------------------------------------------

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` whenever a new version of the tokens is put in force; the function
        returned unsubscribes. Subscribed from a running event loop, the tokens file (if any)
        is checked every `check_interval_s` for as long as anyone is subscribed."""
        key = object()
        self._subscribers[key] = callback
        if self._path is not None and (self._watcher is None or self._watcher.done()):
            with contextlib.suppress(RuntimeError):  # no running loop: checked at each use
                self._watcher = asyncio.get_running_loop().create_task(
                    self._watch(), name="jobcollection-tokens-file"
                )

        def unsubscribe() -> None:
            self._subscribers.pop(key, None)
            if not self._subscribers and self._watcher is not None:
                self._watcher.cancel()
                self._watcher = None

        return unsubscribe

    async def _watch(self) -> None:
        while self._subscribers:
            await asyncio.sleep(self._check_interval_s)
            try:
                self.check()
            except Exception:  # a watcher that dies would leave revoked sessions open
                logger.exception("checking the tokens file %s failed", self._path)

    def _notify(self) -> None:
        self._notifying = True  # a subscriber asking again reads this version, not the file
        try:
            for callback in list(self._subscribers.values()):
                try:
                    callback()
                except Exception:
                    logger.exception("a subscriber to the tokens failed")
        finally:
            self._notifying = False
