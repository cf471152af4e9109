"""The remote API: a JobCollection's method layer over HTTP, as an ASGI application.

`create_app(jc, auth=...)` returns a Starlette application, to run with uvicorn (`jobcollection
serve`) or mount inside a Starlette or FastAPI application. Every route answers 401 without a
user from `auth`; every call runs as `jc.call(method, *params, user_id=user)`, so the
allow/deny rules, the method events and the log stream apply as to any call.

    GET  /info                  the server's time, its limits and version
    POST /methods/{method}      {"params": [...]}            -> {"result": ...}
    POST /batch                 {"calls": [{"method", "params"}, ...]}
                                -> {"results": [{"result": ...} | {"error": ..., "status": n}]}
    POST /wait                  {"types": [...], "timeout": s} -> {"signal": bool}
    WS   /websocket             Meteor's DDP, with create_app(..., ddp=True) (ddp.py)

Bodies are JSON with Extended JSON ids and dates (codec.py), refused with 413 beyond
`max_body_bytes` before they are parsed; a malformed one gets 400 and changes nothing; a call
the rules refuse gets 403; an unknown method 404. `/batch` runs its calls concurrently (what a
client sends together, such as the reports of a payload of jobs, is written together), each
answering for itself. `/wait` is a long poll: it answers when a job of those types may have
become ready (a save through this server, or a change stream event where the database has
them) or after `timeout` seconds (at most `max_wait`), so an idle remote queue costs one
request per `max_wait` and a new job starts at once. A `getWork` may carry a `claimKey` of
the client's (this API's option): sent again after a lost answer, it is answered with the
jobs its claim still holds (RemoteAPI.claim).

The app's lifespan closes the change streams of the long polls when the server stops; an
application that mounts it (whose mounted apps' lifespans do not run) calls
`await app.state.close()` in its own shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute

from ..model import validation as v
from ..model.constants import METHODS, Status
from ..model.errors import InvalidArgument, InvalidArgumentType, WakeupUnavailable
from ..model.ops import job_types
from ..mongo.wakeup import Ready, ReadySource, follow
from . import codec
from . import ddp as ddp_module
from .auth import Auth

if TYPE_CHECKING:
    from ..api.collection import JobCollection

logger = logging.getLogger("jobcollection.remote")

DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
"""The largest request body accepted: room for a batch of jobs each near the 16 MiB limit is
not needed, a few large ones is."""
DEFAULT_MAX_WAIT = 30.0
"""The longest a long poll (/wait) is held, in seconds."""
DEFAULT_BODY_TIMEOUT = 30.0
"""The longest a request's body may take to arrive, in seconds (a client that trickles it, a
byte at a time, holds a connection no longer)."""
MAX_BATCH_CALLS = 1_000
"""Calls in one /batch request at most."""
FORM_TYPES: Final = frozenset(
    {"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"}
)
"""Content types refused (415): the ones a web page may POST to any site without asking
first (no CORS preflight), so that an `auth` that reads cookies is not open to cross-site
requests. A JSON body is sent as application/json, or without a type."""
MAX_CLAIM_KEYS_PER_USER = 1_000
"""Claim keys remembered for one user (the newest), with the jobs their claims got."""
MAX_CLAIM_KEY_USERS = 1_000
"""Users whose claim keys are remembered (those who claimed last)."""
MAX_WAITING_TYPES = 100_000
"""Types named by all the long polls waiting at once, summed (a poll names at most
ops.MAX_TYPES); a poll beyond it is answered 503."""


class HTTPError(Exception):
    """A request refused before any call ran: its status and what to say."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"type": kind, "message": message}


def _json(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        codec.dumps(value), status_code=status, media_type="application/json", headers=headers
    )


def _error(status: int, body: dict[str, Any]) -> Response:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return _json({"error": body}, status, headers)


class Signals:
    """Wakes the long polls waiting for jobs of some types: on every save through this
    server's JobCollection (LocalSaves) and, where the database has change streams, on every
    change that makes a job of those types ready or waiting. One change stream serves every
    poll (ReadySource: each signal names its type, matched here); it opens with the first
    poll waiting and closes with the last. Its first opening wakes nobody (each poll claimed
    just before it waits); a reopening after an error wakes every poll (changes may have been
    missed meanwhile), as does an update, which does not say its job's type.

    What a waiting poll holds is bounded: at most MAX_WAITING_TYPES types over all polls
    waiting (a poll beyond that is answered 503), and nothing is kept once no poll waits."""

    def __init__(self, jc: JobCollection) -> None:
        self._service = jc.service
        self._waiting: dict[str, set[asyncio.Event]] = {}
        """type -> the events of the polls waiting for it (no entry without a poll)."""
        self._polls: set[asyncio.Event] = set()
        self._held = 0
        """Types named by the polls waiting, summed."""
        self._stream: asyncio.Task[None] | None = None
        self._opened = asyncio.Event()
        """Set once the stream of `_stream` has opened."""
        self._closing: set[asyncio.Task[None]] = set()
        self._streams_available = True

    async def wait(self, types: tuple[str, ...], timeout: float) -> bool:
        """Whether a signal came for these types within `timeout` seconds (HTTPError 503 if
        too many polls wait already)."""
        if self._held + len(types) > MAX_WAITING_TYPES:
            raise HTTPError(503, "Unavailable", "too many long polls are waiting; retry later")
        event = asyncio.Event()
        saves = self._service.saves()
        unsubscribe = saves.subscribe(types, lambda due: event.set()) if saves else None
        for job_type in types:
            self._waiting.setdefault(job_type, set()).add(event)
        self._polls.add(event)
        self._held += len(types)
        try:
            self._watch()
            async with asyncio.timeout(timeout):
                await event.wait()
            return True
        except TimeoutError:
            return False
        finally:
            for job_type in types:
                events = self._waiting.get(job_type)
                if events is not None:
                    events.discard(event)
                    if not events:
                        del self._waiting[job_type]
            self._polls.discard(event)
            self._held -= len(types)
            if unsubscribe is not None:
                unsubscribe()
            if not self._polls:
                self._unwatch()

    @property
    def waiting(self) -> int:
        """Long polls waiting now."""
        return len(self._polls)

    @property
    def held(self) -> int:
        """Types named by the long polls waiting now, summed (what their tables hold)."""
        return self._held

    def _watch(self) -> None:
        if not self._streams_available or self._stream is not None:
            return
        source = self._service.wakeup()
        if not isinstance(source, ReadySource):
            self._streams_available = False  # saves through this server still wake polls
            return
        self._opened = asyncio.Event()
        self._stream = asyncio.create_task(
            self._listen(source.ready_types(), self._opened), name="jobcollection-remote-stream"
        )

    def _unwatch(self) -> None:
        """Close the stream (the last poll has gone), once it has opened (or failed to): a
        stream cut off while the driver connects leaves its socket to the garbage collector."""
        task, self._stream = self._stream, None
        if task is not None and not task.done():
            closing = asyncio.create_task(_close_once_open(task, self._opened))
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)

    async def _listen(self, signals: AsyncIterator[Ready], opened: asyncio.Event) -> None:
        first = True

        def wake(signal: Ready) -> None:
            nonlocal first
            if signal.opened:
                opened.set()
            if signal.opened and first:
                first = False
                return
            every = signal.opened or signal.job_type is None
            events = self._polls if every else self._waiting.get(signal.job_type or "", ())
            for event in events:
                event.set()

        ended = await follow(signals, wake)
        if self._stream is asyncio.current_task():
            self._stream = None
        if isinstance(ended, WakeupUnavailable):
            self._streams_available = False  # saves through this server still wake polls
        elif ended is not None:
            logger.warning("the long polls' change stream failed (%r); saves wake them", ended)

    async def close(self) -> None:
        """Answer every waiting poll and stop the change stream (the server is stopping)."""
        for event in self._polls:
            event.set()
        self._unwatch()
        tasks = list(self._closing)
        await asyncio.gather(*tasks, return_exceptions=True)


OPENING_S = 5.0
"""The longest a stream no poll needs is left to finish opening before it is cut off."""


async def _close_once_open(task: asyncio.Task[None], opened: asyncio.Event) -> None:
    """Cancel a change stream's task once it has opened (or ended, or after OPENING_S)."""
    waiting = asyncio.create_task(opened.wait())
    await asyncio.wait({task, waiting}, timeout=OPENING_S, return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()
    task.cancel()
    await asyncio.gather(task, waiting, return_exceptions=True)


class ClaimKeys:
    """The claim keys of each user (RemoteAPI.claim), with the jobs each claim was answered
    with: at most MAX_CLAIM_KEYS_PER_USER per user (the newest) and the keys of at most
    MAX_CLAIM_KEY_USERS users (those who claimed last), so no user's claims evict another's
    and the table stays bounded. Only claims that were answered with jobs are remembered."""

    def __init__(self) -> None:
        self._users: OrderedDict[Any, OrderedDict[str, list[tuple[Any, Any]]]] = OrderedDict()

    def get(self, user_id: Any, key: str) -> list[tuple[Any, Any]] | None:
        keys = self._users.get(_hashable(user_id))
        return None if keys is None else keys.get(key)

    def put(self, user_id: Any, key: str, held: list[tuple[Any, Any]]) -> None:
        user = _hashable(user_id)
        keys = self._users.pop(user, None) or OrderedDict()
        self._users[user] = keys  # the newest user last
        keys.pop(key, None)
        keys[key] = held
        while len(keys) > MAX_CLAIM_KEYS_PER_USER:
            keys.popitem(last=False)
        while len(self._users) > MAX_CLAIM_KEY_USERS:
            self._users.popitem(last=False)

    def __len__(self) -> int:
        return sum(len(keys) for keys in self._users.values())


def _hashable(user_id: Any) -> Any:
    """A user id as a table key (one an `auth` returned that cannot be hashed: its repr)."""
    try:
        hash(user_id)
    except TypeError:
        return (type(user_id).__name__, repr(user_id))
    return user_id


class RemoteAPI:
    """The routes of the remote API over one JobCollection."""

    def __init__(
        self,
        jc: JobCollection,
        auth: Auth,
        max_body_bytes: int,
        max_wait: float,
        body_timeout: float = DEFAULT_BODY_TIMEOUT,
    ) -> None:
        self.jc = jc
        self.auth = auth
        self.max_body_bytes = max_body_bytes
        self.max_wait = max_wait
        self.body_timeout = body_timeout
        self.signals = Signals(jc)
        self.claims = ClaimKeys()
        """The jobs each user's claim keys were answered with (see `claim`)."""

    async def user(self, request: Request) -> Any:
        """The user the request is made for (HTTPError 401 if none)."""
        user_id = self.auth(request)
        if inspect.isawaitable(user_id):
            user_id = await user_id
        if user_id is None:
            raise HTTPError(401, "Unauthorized", "a valid bearer token is required")
        return user_id

    async def body(self, request: Request) -> dict[str, Any]:
        """The request's JSON object, refused beyond max_body_bytes before it is parsed (413),
        when it has not all come within body_timeout seconds (408), or when it is declared
        of a type a web page may send anywhere without asking (415: a form or text, see
        FORM_TYPES)."""
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type in FORM_TYPES:
            raise HTTPError(415, "UnsupportedMediaType", "the body must be JSON (application/json)")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            raise HTTPError(
                413, "PayloadTooLarge", f"bodies are limited to {self.max_body_bytes} bytes"
            )
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.body_timeout):
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > self.max_body_bytes:
                        raise HTTPError(
                            413,
                            "PayloadTooLarge",
                            f"bodies are limited to {self.max_body_bytes} bytes",
                        )
                    chunks.append(chunk)
        except TimeoutError:
            raise HTTPError(
                408, "RequestTimeout", f"the body did not come within {self.body_timeout} s"
            ) from None
        try:
            value = codec.loads(b"".join(chunks))
        except ValueError as exc:
            raise HTTPError(400, "MalformedRequest", f"the body is not JSON: {exc}") from None
        if not isinstance(value, dict):
            raise HTTPError(400, "MalformedRequest", "the body must be a JSON object")
        return value

    async def run(self, user_id: Any, method: Any, params: Any) -> tuple[int, dict[str, Any]]:
        """One call: its status and what to answer."""
        if not isinstance(method, str) or method not in METHODS:
            return 404, {"error": {"type": "UnknownMethod", "message": f"no method {method!r}"}}
        if not isinstance(params, list):
            return 400, {
                "error": {"type": "MalformedRequest", "message": "params must be a JSON array"}
            }
        try:
            given = codec.inbound_params(method, params)
            if method == "getWork":
                result = await self.claim(user_id, given)
            else:
                result = await self.jc.call(method, *given, user_id=user_id)
        except Exception as exc:
            status = codec.error_status(exc)
            if status == 500:
                logger.exception("remote call %s failed", method)
            return status, {"error": codec.error_body(exc)}
        return 200, {"result": codec.encode(result)}

    async def claim(self, user_id: Any, params: list[Any]) -> Any:
        """getWork with the client's claim key (option `claimKey`, this API's): a key sent
        again (the answer to its claim was lost) is answered with the jobs claimed under it
        that its claim still holds, if any, instead of claiming others. Keys are remembered
        per user (ClaimKeys)."""
        options = params[1] if len(params) > 1 and isinstance(params[1], dict) else None
        key = options.pop("claimKey", None) if options is not None else None
        if key is not None and (type(key) is not str or not 0 < len(key) <= 64):
            raise InvalidArgument("claimKey", "must be a string of 1 to 64 characters")
        held = None if key is None else self.claims.get(user_id, key)
        if held:
            docs = await self.jc.call("getJob", [i for i, _ in held], user_id=user_id)
            again = [d for d in docs if d.status == Status.RUNNING and (d.id, d.run_id) in held]
            if again:
                return again
        claimed = await self.jc.call("getWork", *params, user_id=user_id)
        if key is not None and claimed:
            self.claims.put(user_id, key, [(d.id, d.run_id) for d in claimed])
        return claimed

    # --- routes ------------------------------------------------------------------------------

    async def info(self, request: Request) -> Response:
        await self.user(request)
        from .. import __version__

        return _json(
            {
                "version": __version__,
                "time": self.jc.clock.now(),
                "limits": dataclasses.asdict(self.jc.limits),
                "maxWait": self.max_wait,
                "maxBodyBytes": self.max_body_bytes,
                "maxBatchCalls": MAX_BATCH_CALLS,
            }
        )

    async def method(self, request: Request) -> Response:
        method = request.path_params["method"]
        if method not in METHODS:
            return _error(404, {"type": "UnknownMethod", "message": f"no method {method!r}"})
        user_id = await self.user(request)
        body = await self.body(request)
        status, answer = await self.run(user_id, method, body.get("params", []))
        return _json(answer, status)

    async def batch(self, request: Request) -> Response:
        user_id = await self.user(request)
        calls = (await self.body(request)).get("calls")
        if not isinstance(calls, list) or not all(isinstance(c, dict) for c in calls):
            raise HTTPError(400, "MalformedRequest", "calls must be an array of objects")
        if len(calls) > MAX_BATCH_CALLS:
            raise HTTPError(400, "MalformedRequest", f"at most {MAX_BATCH_CALLS} calls a batch")
        answers = await asyncio.gather(
            *(self.run(user_id, c.get("method"), c.get("params", [])) for c in calls)
        )
        return _json({"results": [a if s == 200 else {**a, "status": s} for s, a in answers]})

    async def wait(self, request: Request) -> Response:
        user_id = await self.user(request)
        body = await self.body(request)
        try:
            types = tuple(job_types(body.get("types"), "types"))
            timeout = v.number(body.get("timeout", self.max_wait), "timeout", minimum=0)
        except InvalidArgument as exc:
            return _error(400, codec.error_body(exc))
        if not self.jc.permits("getWork", list(types), user_id=user_id):
            return _error(
                403, {"type": "PermissionDenied", "message": "Method not authorized: getWork"}
            )
        from .auth import until_revoked

        waiting = asyncio.create_task(self.signals.wait(types, min(timeout, self.max_wait)))
        gone = asyncio.create_task(_disconnected(request))
        revoked = asyncio.create_task(until_revoked(self.auth, request, user_id))
        try:
            await asyncio.wait([waiting, gone, revoked], return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            waiting.cancel()
            revoked.cancel()
        if revoked.done() and not revoked.cancelled():
            revoked.result()  # an error of the auth's own is raised
            raise HTTPError(401, "Unauthorized", "the bearer token was revoked")
        if not waiting.done() or waiting.cancelled():
            return _json({"signal": False})  # the client left: nobody reads this
        return _json({"signal": waiting.result()})


async def _disconnected(request: Request) -> None:
    """Return once the client has gone (its body was read: what comes next is the end)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _guarded(
    handler: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    async def route(request: Request) -> Response:
        try:
            return await handler(request)
        except HTTPError as exc:
            return _error(exc.status, exc.body)
        except InvalidArgument as exc:
            return _error(400, codec.error_body(exc))

    return route


def create_app(
    jc: JobCollection,
    *,
    auth: Auth,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_wait: float = DEFAULT_MAX_WAIT,
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
    ddp: bool = False,
    ddp_max_message_bytes: int = ddp_module.DEFAULT_MAX_MESSAGE_BYTES,
    ddp_max_messages_per_s: float = ddp_module.DEFAULT_MAX_MESSAGES_PER_S,
) -> Starlette:
    """The remote API of `jc` as an ASGI application (see the module docstring). `auth` maps
    a request to the user id its calls are made for, or None to refuse it (remote.auth).
    With `ddp=True` it also serves Meteor's DDP at `/websocket` (remote.ddp), for
    job-collection's own workers: its login needs an `auth` with `user_for(token)`, such as
    TokenAuth; a session's messages are bounded in size and rate by the `ddp_` options. A
    request body must arrive within `body_timeout` seconds (408)."""
    if not callable(auth):
        raise InvalidArgumentType("auth", "must be a callable of the request (e.g. TokenAuth)")
    max_body = v.integer(max_body_bytes, "max_body_bytes", minimum=1024)
    wait = v.number(max_wait, "max_wait", minimum=0)
    timeout = v.number(body_timeout, "body_timeout", minimum=0)
    if timeout <= 0:
        raise InvalidArgument("body_timeout", "must be > 0")
    api = RemoteAPI(jc, auth, max_body, wait, timeout)
    routes: list[BaseRoute] = [
        Route("/info", _guarded(api.info), methods=["GET"]),
        Route("/methods/{method}", _guarded(api.method), methods=["POST"]),
        Route("/batch", _guarded(api.batch), methods=["POST"]),
        Route("/wait", _guarded(api.wait), methods=["POST"]),
    ]
    if v.boolean(ddp, "ddp"):
        endpoint = ddp_module.DDPEndpoint(
            jc,
            auth,
            max_message_bytes=v.integer(ddp_max_message_bytes, "ddp_max_message_bytes", minimum=1),
            max_messages_per_s=v.number(
                ddp_max_messages_per_s, "ddp_max_messages_per_s", minimum=1
            ),
        )
        routes.append(WebSocketRoute("/websocket", endpoint.serve))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await api.signals.close()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.remote_api = api
    app.state.close = api.signals.close
    return app
