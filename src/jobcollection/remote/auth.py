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
again when it changes, so a token is added or revoked without a restart (`jobcollection token
USER ROLE` prints a new token and its line). The roles (admin, manager, creator, worker) are
for the application to grant: `jc.allow(worker=auth.role_rule("worker"))` lets every user the
file names as a worker make the worker group's calls, as the file says at the time of the
call; `jobcollection serve` grants every role that way.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeAlias

from starlette.requests import HTTPConnection

from ..constants import PERMISSION_LEVELS
from ..errors import InvalidArgument, InvalidArgumentType

Auth: TypeAlias = Callable[[HTTPConnection], Any | Awaitable[Any]]
"""The request's connection -> the user id of the call, or None to refuse it."""


def hash_token(token: str) -> str:
    """The SHA-256 hex digest a token is kept as."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh random bearer token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def _digest(value: str, name: str) -> bytes:
    if not isinstance(value, str) or len(value) != 64:
        raise InvalidArgument(name, "must be the 64-character SHA-256 hex digest of a token")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise InvalidArgument(name, "must be a SHA-256 hex digest") from None


class TokenAuth:
    """Bearer tokens, each mapped to a user id, kept as SHA-256 hashes.

    `TokenAuth({sha256_hex: user_id, ...})`, `TokenAuth.from_tokens({token: user_id})` (hashes
    them at once), or `TokenAuth.from_file(path)` (re-read when the file changes)."""

    def __init__(
        self, hashes: Mapping[str, Any], *, roles: Mapping[Any, Iterable[str]] | None = None
    ) -> None:
        if not isinstance(hashes, Mapping):
            raise InvalidArgumentType("hashes", "must map SHA-256 hex digests to user ids")
        self._entries = self._checked(hashes)
        self._roles = self._checked_roles(roles or {})
        self._path: Path | None = None
        self._stamp: tuple[int, int] | None = None

    @staticmethod
    def _checked_roles(roles: Mapping[Any, Iterable[str]]) -> dict[Any, frozenset[str]]:
        checked = {}
        for user_id, names in roles.items():
            given = frozenset([names] if isinstance(names, str) else names)
            unknown = sorted(given - set(PERMISSION_LEVELS))
            if unknown:
                raise InvalidArgument(
                    f"roles[{user_id!r}]", f"unknown roles {unknown}; use {list(PERMISSION_LEVELS)}"
                )
            checked[user_id] = given
        return checked

    def roles_of(self, user_id: Any) -> frozenset[str]:
        """The roles the tokens file (or `roles`) gives a user."""
        if self._path is not None:
            self._reload()
        return self._roles.get(user_id, frozenset())

    def role_rule(self, role: str) -> Callable[[Any, str, tuple[Any, ...]], bool]:
        """An allow rule for `jc.allow(<role>=...)`: the users given that role, now."""
        if role not in PERMISSION_LEVELS:
            raise InvalidArgument("role", f"must be one of {list(PERMISSION_LEVELS)}")
        return lambda user_id, method, params: role in self.roles_of(user_id)

    @staticmethod
    def _checked(hashes: Mapping[str, Any]) -> list[tuple[bytes, Any]]:
        entries = []
        for digest, user_id in hashes.items():
            if user_id is None:
                raise InvalidArgument(f"hashes[{digest!r}]", "a user id cannot be None")
            entries.append((_digest(digest, f"hashes[{digest!r}]"), user_id))
        return entries

    @classmethod
    def from_tokens(cls, tokens: Mapping[str, Any]) -> TokenAuth:
        """From plain tokens (hashed here; only the hashes are kept)."""
        return cls({hash_token(token): user_id for token, user_id in tokens.items()})

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> TokenAuth:
        """From a tokens file (see the module docstring), read again whenever it changes."""
        auth = cls({})
        auth._path = Path(path)
        auth._reload()
        return auth

    def _reload(self) -> None:
        assert self._path is not None
        stat = self._path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._stamp:
            return
        hashes: dict[str, Any] = {}
        roles: dict[Any, list[str]] = {}
        for number, line in enumerate(self._path.read_text().splitlines(), 1):
            words = line.split("#", 1)[0].split()
            if not words:
                continue
            if len(words) < 2:
                raise InvalidArgument(
                    f"{self._path}:{number}",
                    "must be `<user id> <sha256 hex of the token> [role ...]`",
                )
            hashes[words[1]] = words[0]
            roles.setdefault(words[0], []).extend(words[2:])
        self._entries = self._checked(hashes)  # all or nothing: a bad file changes nothing
        self._roles = self._checked_roles(roles)
        self._stamp = stamp

    def user_for(self, token: str) -> Any:
        """The user id a token stands for, None if none: every kept hash is compared, in
        constant time, so the time taken says nothing of which one (nearly) matched."""
        if self._path is not None:
            self._reload()
        presented = hashlib.sha256(token.encode()).digest()
        found = None
        for digest, user_id in self._entries:
            if hmac.compare_digest(presented, digest):
                found = user_id
        return found

    def __call__(self, connection: HTTPConnection) -> Any:
        scheme, _, token = connection.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        return self.user_for(token.strip())
