"""The DDP endpoint: Meteor's protocol at `/websocket`, so job-collection's own workers (the
meteor-job npm package over the ddp npm client, or any DDP client) run against a JobCollection.

`create_app(jc, auth=..., ddp=True)` adds it to the remote API's ASGI application. One session
per WebSocket connection, speaking EJSON (ejson.py):

    connect {version, support}   -> connected {session}   (versions "1", "pre2", "pre1";
                                    otherwise failed {version} and the socket closes)
    ping {id?}                   -> pong {id?}
    method login [{resume: tok}] -> result {id, token, tokenExpires}, then updated
    method logout []             -> result, then updated
    method <root>_<name> params  -> result {result} | result {error}, then updated
    sub {id, name}               -> nosub {id, error 404}   (no publications here)

A method `<root>_<name>` (root: `jc.root`) runs as `jc.call(name, *params, user_id=...)`, so
the allow/deny rules, the method events and the log stream apply as to any call; the session's
methods run one at a time, in order, as a Meteor server runs them. Before a login the session
has no user and every method is refused (403), as job-collection refuses an unauthenticated
call: a DDP call never runs as trusted server code. Errors have Meteor's shape
(`{error, reason, message: "<reason> [<error>]", errorType: "Meteor.Error"}`): 404 for an
unknown method, 403 "Method not authorized" for a call the rules refuse (job-collection's
words), 400 for an invalid argument, 409 for a duplicate, 503 for a database error, 500
otherwise. Job documents go out as job-collection v1.x sends them: ids as Meteor ObjectIDs,
never `_private` nor this library's settings.

Login is by resume token only (ddp-login's `method: 'token'`): the token goes to the same
`auth` as the HTTP API's bearer tokens, which must have a `user_for(token)` method (TokenAuth
does; a plain callable of the request cannot serve DDP, and create_app refuses it). A bad
token gets Meteor's 403 "You've been logged out by the server..." and leaves the session
logged out.

Bounds: a message longer than `max_message_bytes` or a malformed frame (not JSON, not an
object, no `msg`, or anything before `connect`) closes the session with `error {reason}` and
runs nothing; beyond `max_messages_per_s` (a bucket of one second's worth) a method is
answered with Meteor's "too-many-requests" error without running and other messages are
dropped. A session holds nothing but its user: a dropped connection leaves the jobs it claimed
to their leases.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final, NoReturn, Protocol

from starlette.websockets import WebSocket, WebSocketDisconnect

from ..constants import METHODS
from ..document import JobDoc
from ..errors import InvalidArgumentType, PermissionDenied
from . import codec, ejson

if TYPE_CHECKING:
    from ..collection import JobCollection

logger = logging.getLogger("jobcollection.remote.ddp")

VERSIONS: Final = ("1", "pre2", "pre1")
"""The DDP versions served, preferred first."""
DEFAULT_MAX_MESSAGE_BYTES: Final = 16 * 1024 * 1024
"""The longest message a session accepts (uvicorn's own `ws_max_size` is 16 MiB too)."""
DEFAULT_MAX_MESSAGES_PER_S: Final = 100.0
"""Messages a session may send per second, on average (bursts of a second's worth)."""
TOKEN_EXPIRES: Final = timedelta(days=90)
"""What a login answers as `tokenExpires` (Meteor's default): tokens of TokenAuth do not expire
by date, they are revoked by removing them."""
NOT_AUTHORIZED: Final = (
    "Method not authorized",
    "Authenticated user is not permitted to invoke this method.",
)
"""job-collection's reason and details for a call its allow/deny rules refuse."""
LOGGED_OUT: Final = "You've been logged out by the server. Please log in again."
_ID_CHARS: Final = "23456789ABCDEFGHJKLMNPQRSTWXYZabcdefghijkmnopqrstuvwxyz"


class TokenUsers(Protocol):
    """What DDP login needs of `auth`: the user id a token stands for, None if none (may be
    awaitable). TokenAuth is one."""

    def user_for(self, token: str) -> Any: ...


class MeteorError(Exception):
    """An error answered to a method call, in Meteor.Error's shape."""

    def __init__(self, error: int | str, reason: str, details: str | None = None) -> None:
        super().__init__(reason)
        self.error = error
        self.reason = reason
        self.details = details

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "isClientSafe": True,
            "error": self.error,
            "reason": self.reason,
            "message": f"{self.reason} [{self.error}]",
            "errorType": "Meteor.Error",
        }
        if self.details is not None:
            body["details"] = self.details
        return body


class _Closed(Exception):
    """The session is over (closed by us or gone)."""


_NO_RESULT: Final = object()
"""A method answered without a `result` (JavaScript's undefined)."""


def meteor_error(exc: Exception) -> MeteorError:
    """A method layer's error as Meteor.Error: the HTTP API's status as the code."""
    status = codec.error_status(exc)
    if isinstance(exc, PermissionDenied):
        return MeteorError(403, *NOT_AUTHORIZED)
    if status == 500:
        return MeteorError(500, "Internal server error")
    return MeteorError(status, str(codec.error_body(exc)["message"]))


def outbound(value: Any) -> Any:
    """A method's result as a DDP client gets it: job documents as job-collection v1.x sends
    them (this library's settings stay on the server, as `_private` does)."""
    if isinstance(value, JobDoc):
        doc = codec.encode_doc(value)
        doc.pop(codec.SETTINGS, None)
        return doc
    if isinstance(value, list | tuple):
        return [outbound(item) for item in value]
    return codec.encode(value)


@dataclass
class Session:
    """One connection's state: its id, user and rate bucket."""

    id: str
    allowance: float
    stamp: float
    user_id: Any = None
    connected: bool = False
    version: str = field(default=VERSIONS[0])


class DDPEndpoint:
    """The `/websocket` route: one `serve` per connection."""

    def __init__(
        self,
        jc: JobCollection,
        auth: Any,
        *,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_messages_per_s: float = DEFAULT_MAX_MESSAGES_PER_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        user_for = getattr(auth, "user_for", None)
        if not callable(user_for):
            raise InvalidArgumentType(
                "auth",
                "DDP login needs an auth with a user_for(token) method, such as TokenAuth",
            )
        self.jc = jc
        self.user_for: Callable[[str], Any] = user_for
        self.max_message_bytes = max_message_bytes
        self.max_messages_per_s = max_messages_per_s
        self.monotonic = monotonic
        self.prefix = f"{jc.root}_"

    async def serve(self, websocket: WebSocket) -> None:
        """A session, from the handshake until either side closes it."""
        await websocket.accept()
        session = Session(
            id="".join(secrets.choice(_ID_CHARS) for _ in range(17)),
            allowance=self.max_messages_per_s,
            stamp=self.monotonic(),
        )
        logger.debug("DDP session %s opened", session.id)
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                await self._handle(websocket, session, message)
        except (_Closed, WebSocketDisconnect):
            pass
        finally:
            logger.debug("DDP session %s ended (user %r)", session.id, session.user_id)

    async def _handle(self, ws: WebSocket, session: Session, message: Any) -> None:
        raw = message.get("text")
        if raw is None:
            raw = message.get("bytes") or b""
        if len(raw) > self.max_message_bytes:
            reason = f"message too large (limit {self.max_message_bytes} bytes)"
            await self._close(ws, reason, 1009)
        try:
            msg = ejson.loads(raw)
        except ValueError as exc:
            await self._close(ws, f"Malformed message: {exc}")
        if not isinstance(msg, dict) or not isinstance(msg.get("msg"), str):
            await self._close(ws, "Malformed message: not an object with a msg")
        kind = msg["msg"]
        if not session.connected:
            await self._connect(ws, session, msg)
            return
        if not self._take(session):
            if kind == "method" and isinstance(msg.get("id"), str):
                error = MeteorError(
                    "too-many-requests",
                    "Error, too many requests. Please slow down. You must wait 1 seconds "
                    "before trying again.",
                )
                await self._send(ws, {"msg": "result", "id": msg["id"], "error": error.body()})
                await self._send(ws, {"msg": "updated", "methods": [msg["id"]]})
            return
        if kind == "ping":
            await self._send(ws, {"msg": "pong", **({"id": msg["id"]} if "id" in msg else {})})
        elif kind == "pong":
            pass
        elif kind == "method":
            await self._method(ws, session, msg)
        elif kind == "sub" and isinstance(msg.get("id"), str):
            name = msg.get("name")
            error = MeteorError(404, f"Subscription '{name}' not found")
            await self._send(ws, {"msg": "nosub", "id": msg["id"], "error": error.body()})
        elif kind == "unsub" and isinstance(msg.get("id"), str):
            await self._send(ws, {"msg": "nosub", "id": msg["id"]})
        else:
            await self._send(ws, {"msg": "error", "reason": "Bad request"})

    def _take(self, session: Session) -> bool:
        """Whether the session's rate allows one more message (and count it)."""
        now = self.monotonic()
        rate = self.max_messages_per_s
        session.allowance = min(rate, session.allowance + (now - session.stamp) * rate)
        session.stamp = now
        if session.allowance < 1:
            return False
        session.allowance -= 1
        return True

    async def _connect(self, ws: WebSocket, session: Session, msg: dict[str, Any]) -> None:
        if msg["msg"] != "connect":
            await self._close(ws, "Must connect first")
        version = msg.get("version")
        if version in VERSIONS:
            session.connected = True
            session.version = version
            await self._send(ws, {"msg": "connected", "session": session.id})
            return
        support = msg.get("support")
        offered = support if isinstance(support, list) else []
        common = [v for v in offered if v in VERSIONS]
        await self._send(ws, {"msg": "failed", "version": common[0] if common else VERSIONS[0]})
        await ws.close()
        raise _Closed

    async def _method(self, ws: WebSocket, session: Session, msg: dict[str, Any]) -> None:
        call_id, name, params = msg.get("id"), msg.get("method"), msg.get("params", [])
        if (
            not isinstance(call_id, str)
            or not isinstance(name, str)
            or not isinstance(params, list)
        ):
            await self._send(ws, {"msg": "error", "reason": "Malformed method invocation"})
            return
        answer: dict[str, Any] = {"msg": "result", "id": call_id}
        try:
            result = await self._call(session, name, params)
            if result is not _NO_RESULT:
                answer["result"] = result
        except MeteorError as exc:
            answer["error"] = exc.body()
        await self._send(ws, answer)
        await self._send(ws, {"msg": "updated", "methods": [call_id]})

    async def _call(self, session: Session, name: str, params: list[Any]) -> Any:
        if name == "login":
            return await self._login(session, params)
        if name == "logout":
            session.user_id = None
            return _NO_RESULT
        method = name[len(self.prefix) :] if name.startswith(self.prefix) else None
        if method not in METHODS:
            raise MeteorError(404, f"Method '{name}' not found")
        if session.user_id is None:
            raise MeteorError(403, *NOT_AUTHORIZED)
        try:
            given = codec.inbound_params(method, params)
            result = await self.jc.call(method, *given, user_id=session.user_id)
        except Exception as exc:
            error = meteor_error(exc)
            if error.error == 500:
                logger.exception("DDP call %s failed", name)
            raise error from None
        return outbound(result)

    async def _login(self, session: Session, params: list[Any]) -> Any:
        options = params[0] if len(params) == 1 else None
        token = options.get("resume") if isinstance(options, dict) else None
        if not isinstance(token, str) or len(options or {}) != 1:
            raise MeteorError(400, "Unrecognized options for login request")
        session.user_id = None
        user_id = self.user_for(token)
        if inspect.isawaitable(user_id):
            user_id = await user_id
        if user_id is None:
            raise MeteorError(403, LOGGED_OUT)
        session.user_id = user_id
        logger.debug("DDP session %s logged in as %r", session.id, user_id)
        expires = self.jc.clock.now() + TOKEN_EXPIRES
        return {"id": user_id, "token": token, "tokenExpires": expires}

    async def _send(self, ws: WebSocket, msg: dict[str, Any]) -> None:
        try:
            await ws.send_text(ejson.dumps(msg))
        except Exception:  # the client is gone (the ASGI server's error type varies)
            raise _Closed from None

    async def _close(self, ws: WebSocket, reason: str, code: int = 1002) -> NoReturn:
        """Tell the client why and close the session (1002: protocol error)."""
        logger.info("DDP session closed: %s", reason)
        with contextlib.suppress(Exception):  # the client may be gone already
            await ws.send_text(ejson.dumps({"msg": "error", "reason": reason}))
            await ws.close(code)
        raise _Closed
