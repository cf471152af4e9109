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
logged out. A session keeps only its token's hash: with an auth that can say when tokens
change (TokenAuth, see auth.Revocable) each call asks again whom it stands for, and a
session whose token is revoked is logged out and closed as Meteor closes the connections
of a removed login token, within `check_interval_s` of the tokens file changing, even idle:
calls it sent that had not started are never run.

A job a worker claims whose document EJSON cannot carry (BSON values of another kind stored
by other means: a regex, a Decimal128, ...; saves refuse them) is failed, fatally, with the
reason, rather than sent: one such job must not end the session and come back after every
lease. Any other result that cannot be sent is answered with a 500 error.

Bounds: a message longer than `max_message_bytes` (UTF-8 bytes) or a malformed frame (not
JSON, not an object, no `msg`, or anything before `connect`) closes the session with `error
{reason}` and runs nothing; beyond `max_messages_per_s` (a bucket of one second's worth) a
method is answered with Meteor's "too-many-requests" error without running and other
messages are dropped. A session holds its user, its token's hash and, once it claims work,
what the worker registry lists of it (below), nothing of the jobs themselves: a dropped
connection leaves the jobs it claimed to their leases.

A session that claims work is a worker, and the worker registry lists it (`jc.workers()`,
kind "ddp"; SessionWorker): the server registers it at its first getWork, as its user, with
its peer's address as host, the User-Agent its client sent (if any) as version, the types it
asked for and the jobs handed to it that it has not reported done, failed or released (at
most MAX_TRACKED ids kept); pid, concurrency, payload and prefetch are unknown to the server
(0). The registration lasts the server's `worker_ttl` and is renewed every third of it while
the session lives, whatever
it does meanwhile, and removed when the session ends (if the server dies, its TTL ends it):
one write per third of the TTL per worker, none per call. The client needs no permission for it,
nor any method of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import logging
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final, NoReturn, Protocol

from starlette.websockets import WebSocket, WebSocketDisconnect

from ..local.core import Origin
from ..model.constants import METHODS
from ..model.document import JobDoc
from ..model.errors import InvalidArgumentType, PermissionDenied
from ..model.ops import ForgetWorker, SeeWorker, job_types
from ..model.queries import DocPage
from ..model.types import Id
from ..model.workers import MAX_HELD, MAX_TEXT, MAX_TYPES, WorkerInfo, announce_s
from . import codec, ejson
from .auth import Revocable

if TYPE_CHECKING:
    from ..api.collection import JobCollection

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
KIND: Final = "ddp"
"""What the worker registry calls a DDP session that claims work."""
LETTING_GO: Final = frozenset({"jobDone", "jobFail", "jobRelease"})
"""The reports after which a session no longer holds the job they name (whatever the answer:
a report refused because the run was lost leaves the job held by no one here either)."""
MAX_TRACKED: Final = 10_000
"""The most held jobs a session keeps track of (the oldest are forgotten beyond), so that a
session that claims and never reports does not grow without bound; MAX_HELD of them are
listed."""
LEAVE_S: Final = 5.0
"""The longest a closing session waits for a registration in flight before cutting it off."""
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


def _lone_surrogate(value: Any) -> bool:
    """Whether a decoded value holds a string (or key) that is not Unicode text: BSON cannot
    store it, and the database would be blamed (503) for what is the caller's mistake."""
    if isinstance(value, str):
        return not value.isascii() and _not_text(value)
    if isinstance(value, dict):
        return any(_lone_surrogate(k) or _lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_lone_surrogate(item) for item in value)
    return False


def _not_text(value: str) -> bool:
    try:
        value.encode()
    except UnicodeEncodeError:
        return True
    return False


class _Closed(Exception):
    """The session is over (closed by us or gone)."""


_SURROGATE_ESCAPE: Final = re.compile(r"\\u[dD][89a-fA-F]")
"""A JSON escape of a surrogate: what may spell a lone one (a frame's text is UTF-8)."""
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
    if isinstance(value, DocPage):  # jobFind's page: its jobs as getJob's
        return {"jobs": outbound(value.docs), "next": value.next}
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
    token_hash: str | None = None
    """The SHA-256 hex digest of the token the session logged in with (never the token)."""
    unsubscribe: Callable[[], None] | None = None
    revoked: bool = False
    """Its token was revoked: it is closed once the message in hand is answered."""
    busy: bool = False
    closing: asyncio.Task[None] | None = None
    worker: SessionWorker | None = None
    """Its registration in the worker registry, from its first getWork."""


class SessionWorker:
    """A DDP session that claims work, as the worker registry lists it (kind "ddp"): the
    types it asked for and the jobs handed to it that it has not reported on. A timer
    registers it, then renews it every third of its TTL as the session's user, whatever the
    session does meanwhile (a job may run longer than the registration's TTL without a call);
    `leave` removes it when the session ends. Registering is bookkeeping: a failure is
    logged and tried again at the next renewal, never answered to the client."""

    def __init__(self, jc: JobCollection, session: Session, host: str, version: str) -> None:
        self._jc = jc
        self._session = session
        self._host = host
        self._version = version
        self._types: dict[str, None] = {}
        """The types asked for, in the order first asked (a dict as an ordered set)."""
        self._held: OrderedDict[Id, None] = OrderedDict()
        self._registered_as: Any = None
        """The user the stored registration names (None: nothing stored; a session with no
        user registers nothing)."""
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def id(self) -> str:
        """Its id in the registry: the session's."""
        return self._session.id

    def claimed(self, types: Sequence[str], docs: Sequence[JobDoc]) -> None:
        """A getWork of these types handed it these jobs; the first starts the timer."""
        for job_type in types:
            if len(self._types) < MAX_TYPES and len(job_type) <= MAX_TEXT:
                self._types.setdefault(job_type, None)
        for doc in docs:
            if doc.id is not None:
                self._held[doc.id] = None
        while len(self._held) > MAX_TRACKED:
            self._held.popitem(last=False)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._renew())

    def claiming(self, params: list[Any]) -> list[Any]:
        """getWork's parameters with this session as the claiming worker (option `worker`:
        its id in the registry and its peer's address), replacing any the client sent, so
        that the jobs it claims record it (JobDoc.worker). Malformed options are left to
        getWork to refuse."""
        if not params or len(params) > 2:
            return params
        options = params[1] if len(params) == 2 else {}
        if not isinstance(options, dict):
            return params
        worker = {"id": self.id, **({"host": self._host} if self._host else {})}
        return [params[0], {**options, "worker": worker}]

    def let_go(self, ids: Any) -> None:
        """It reported on these jobs (one id or a list of them, as the report named them)."""
        for job_id in ids if isinstance(ids, list | tuple) else [ids]:
            if isinstance(job_id, Id):
                self._held.pop(job_id, None)

    def info(self) -> WorkerInfo:
        """The registration as it stands now."""
        held = list(self._held)
        return WorkerInfo(
            id=self.id,
            host=self._host,
            pid=0,
            version=self._version,
            types=tuple(self._types),
            concurrency=0,
            payload=0,
            prefetch=0,
            held=tuple(held[:MAX_HELD]),
            holding=len(held),
            ttl_ms=self._jc.service.worker_ttl_ms,
        )

    async def _renew(self) -> None:
        """Register now, then every third of the TTL until `leave`."""
        while not self._stop.is_set():
            await self._announce()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._stop.wait(), announce_s(self._jc.service.worker_ttl_ms)
                )

    async def _announce(self) -> None:
        """Register (or renew) as the session's user now; a session that has logged out, or
        in as another user, drops the registration its former user made first."""
        user = self._session.user_id
        try:
            if self._registered_as is not None and self._registered_as != user:
                await self._forget()
            if user is None:
                return
            info = self.info()
            origin = Origin(SeeWorker.method, user, (info.wire(),), worker_kind=KIND)
            if await self._jc.service.run(SeeWorker(info), origin):
                self._registered_as = user
        except Exception as exc:  # the next renewal tries again
            logger.warning("registering DDP session %s as a worker failed: %s", self.id, exc)

    async def _forget(self) -> None:
        user = self._registered_as
        origin = Origin(ForgetWorker.method, user, (self.id,), worker_kind=KIND)
        await self._jc.service.run(ForgetWorker(self.id), origin)
        self._registered_as = None

    async def leave(self) -> None:
        """Stop renewing and remove the registration (at the session's end). A registration
        in flight is finished first, or cut off after LEAVE_S."""
        self._stop.set()
        if self._task is not None:
            await asyncio.wait({self._task}, timeout=LEAVE_S)
            if not self._task.done():
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        if self._registered_as is None:
            return
        try:
            await self._forget()
        except Exception as exc:  # it expires on its own
            logger.warning(
                "DDP session %s left the worker registry only by its TTL: %s", self.id, exc
            )


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
        revocable = callable(getattr(auth, "user_for_hash", None)) and callable(
            getattr(auth, "subscribe", None)
        )
        self.revocable: Revocable | None = auth if revocable else None
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
                session.busy = True
                try:
                    await self._handle(websocket, session, message)
                finally:
                    session.busy = False
                if session.revoked:
                    await self._close(websocket, LOGGED_OUT, 1008)
        except (_Closed, WebSocketDisconnect):
            pass
        finally:
            self._forget_token(session)
            if session.closing is not None:
                await session.closing
            if session.worker is not None:
                await session.worker.leave()
            logger.debug("DDP session %s ended (user %r)", session.id, session.user_id)

    async def _handle(self, ws: WebSocket, session: Session, message: Any) -> None:
        raw = message.get("text")
        if raw is None:
            raw = message.get("bytes") or b""
        if len(raw) > self.max_message_bytes or (
            isinstance(raw, str)
            and len(raw) * 4 > self.max_message_bytes  # else it fits, whatever its characters
            and len(raw.encode("utf-8", "surrogatepass")) > self.max_message_bytes
        ):
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
            text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
            await self._method(ws, session, msg, _SURROGATE_ESCAPE.search(text) is not None)
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
        with contextlib.suppress(Exception):  # the client may be gone already
            await ws.close()
        raise _Closed

    async def _method(
        self, ws: WebSocket, session: Session, msg: dict[str, Any], escapes: bool = False
    ) -> None:
        """A method call; `escapes`: its text has escapes that may spell lone surrogates."""
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
            if escapes and name != "login" and _lone_surrogate(params):
                raise MeteorError(400, "params: a string is not Unicode text (a lone surrogate)")
            result = await self._call(ws, session, name, params)
            if result is not _NO_RESULT:
                answer["result"] = result
            text = await self._encoded(name, answer)
        except MeteorError as exc:
            text = ejson.dumps({"msg": "result", "id": call_id, "error": exc.body()})
        except Exception:
            logger.exception("DDP call %s failed", name)
            error = MeteorError(500, "Internal server error")
            text = ejson.dumps({"msg": "result", "id": call_id, "error": error.body()})
        await self._send_text(ws, text)
        await self._send(ws, {"msg": "updated", "methods": [call_id]})

    async def _encoded(self, name: str, answer: dict[str, Any]) -> str:
        """A result message as EJSON text. The jobs of a claim EJSON cannot carry are failed
        (fatally, with the reason) and left out; any other result that cannot be sent is a
        500 error."""
        try:
            return ejson.dumps(answer)
        except (TypeError, ValueError) as exc:
            problem = exc
        if name != f"{self.prefix}getWork" or not isinstance(answer.get("result"), list):
            logger.error("DDP call %s: the result cannot be sent as EJSON: %s", name, problem)
            raise MeteorError(500, "The result cannot be sent over DDP", str(problem))
        sendable = []
        for doc in answer["result"]:
            try:
                ejson.to_json_value(doc)
            except (TypeError, ValueError) as exc:
                await self._fail_unsendable(doc, exc)
            else:
                sendable.append(doc)
        return ejson.dumps({**answer, "result": sendable})

    async def _fail_unsendable(self, doc: dict[str, Any], problem: Exception) -> None:
        reason = f"the job cannot be sent to a DDP worker: {problem}"
        logger.error("job %s failed: %s", doc.get("_id"), reason)
        try:
            await self.jc.call("jobFail", doc.get("_id"), doc.get("runId"), reason, {"fatal": True})
        except Exception:  # its lease will end its run; it is failed again at the next claim
            logger.exception("failing job %s failed", doc.get("_id"))

    async def _call(self, ws: WebSocket, session: Session, name: str, params: list[Any]) -> Any:
        if name == "login":
            return await self._login(ws, session, params)
        if name == "logout":
            session.user_id = None
            self._forget_token(session)
            return _NO_RESULT
        method = name[len(self.prefix) :] if name.startswith(self.prefix) else None
        if method not in METHODS:
            raise MeteorError(404, f"Method '{name}' not found")
        self._recheck(session)
        if session.revoked:
            raise MeteorError(403, LOGGED_OUT)
        if session.user_id is None:
            raise MeteorError(403, *NOT_AUTHORIZED)
        try:
            given = codec.inbound_params(method, params)
            if method == "getWork":
                given = self._worker(ws, session).claiming(given)
            try:
                result = await self.jc.call(method, *given, user_id=session.user_id)
            finally:
                if method in LETTING_GO and session.worker is not None and given:
                    session.worker.let_go(given[0])
        except Exception as exc:
            error = meteor_error(exc)
            if error.error == 500:
                logger.exception("DDP call %s failed", name)
            raise error from None
        if method == "getWork" and isinstance(result, list):
            self._worker(ws, session).claimed(job_types(given[0]), result)
        return outbound(result)

    def _worker(self, ws: WebSocket, session: Session) -> SessionWorker:
        """The session's registration, made at its first getWork."""
        if session.worker is None:
            host = ws.client.host if ws.client is not None else ""
            agent = ws.headers.get("user-agent", "")
            version = "".join(c for c in agent if c.isprintable())[:MAX_TEXT]
            session.worker = SessionWorker(self.jc, session, host[:MAX_TEXT], version)
        return session.worker

    async def _login(self, ws: WebSocket, session: Session, params: list[Any]) -> Any:
        options = params[0] if len(params) == 1 else None
        token = options.get("resume") if isinstance(options, dict) else None
        if not isinstance(token, str) or len(options or {}) != 1:
            raise MeteorError(400, "Unrecognized options for login request")
        session.user_id = None
        self._forget_token(session)
        try:
            user_id = self.user_for(token)
            if inspect.isawaitable(user_id):
                user_id = await user_id
        except Exception:
            logger.exception("DDP login failed")
            raise MeteorError(500, "Internal server error") from None
        if user_id is None:
            raise MeteorError(403, LOGGED_OUT)
        session.user_id = user_id
        if self.revocable is not None:
            session.token_hash = hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
            session.unsubscribe = self.revocable.subscribe(lambda: self._recheck(session, ws))
        logger.debug("DDP session %s logged in as %r", session.id, user_id)
        expires = self.jc.clock.now() + TOKEN_EXPIRES
        return {"id": user_id, "token": token, "tokenExpires": expires}

    def _recheck(self, session: Session, ws: WebSocket | None = None) -> None:
        """Log the session out if its token no longer stands for its user (a session that
        is not handling a message is closed at once; one that is, once it has answered)."""
        if self.revocable is None or session.token_hash is None or session.revoked:
            return
        user_id = self.revocable.user_for_hash(session.token_hash)  # may call us back
        if session.revoked or user_id == session.user_id:
            return
        logger.info("DDP session %s logged out: its token was revoked", session.id)
        session.user_id = None
        session.revoked = True
        self._forget_token(session)
        if ws is not None and not session.busy:
            session.closing = asyncio.get_running_loop().create_task(self._end(ws))

    async def _end(self, ws: WebSocket) -> None:
        """Close an idle session whose token was revoked (its receive then ends)."""
        with contextlib.suppress(_Closed):
            await self._close(ws, LOGGED_OUT, 1008)

    def _forget_token(self, session: Session) -> None:
        session.token_hash = None
        if session.unsubscribe is not None:
            session.unsubscribe()
            session.unsubscribe = None

    async def _send(self, ws: WebSocket, msg: dict[str, Any]) -> None:
        try:
            text = ejson.dumps(msg)
        except (TypeError, ValueError):
            logger.exception("DDP session: a message could not be encoded")
            raise _Closed from None
        await self._send_text(ws, text)

    async def _send_text(self, ws: WebSocket, text: str) -> None:
        try:
            await ws.send_text(text)
        except Exception:  # the client is gone (the ASGI server's error type varies)
            raise _Closed from None

    async def _close(self, ws: WebSocket, reason: str, code: int = 1002) -> NoReturn:
        """Tell the client why and close the session (1002: protocol error)."""
        logger.info("DDP session closed: %s", reason)
        with contextlib.suppress(Exception):  # the client may be gone already
            await ws.send_text(ejson.dumps({"msg": "error", "reason": reason}))
            await ws.close(code)
        raise _Closed
