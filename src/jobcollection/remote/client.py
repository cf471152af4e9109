"""The remote client: a JobService over the remote API, and a job collection built on it.

`RemoteJobCollection(url, token=...)` is an async context manager over an httpx client. Its
service (`RemoteService`) implements the seam a `Job` and a `JobQueue` use (api/seam.py), so
`create_job`, `save`, `get_job`, `find_jobs`, `stats`, `get_work`, `process_jobs` and every
`Job` action work unchanged on a machine that has only the URL and a token (each under the
token's roles: finding and counting jobs, jobFind and jobStats, is a manager's or an admin's).
Connecting to a URL where something else answers raises DatabaseError saying so.

- Calls made together are sent together: every call joins a batch that is sent once the
  caller's turn of the event loop ends, as one `/batch` request (one `/methods/...` request
  for a lone call). The reports of a payload of jobs, or of workers finishing together, are
  one request, and the server writes them together.
- A queue's prompt wake-up is a long poll (`/wait`), answered when a job of its types may have
  become ready, so an idle queue costs one request per `wait` seconds.
- Cancellation reaches a worker through the heartbeat: its reply lists the jobs still held
  (and at once when the cancel was made through the same client).
- Values are checked against the server's limits before they are sent (what the server would
  refuse with InvalidArgument is refused here, without a request).
- A request that fails in transit raises DatabaseError, as a lost database reply does, so a
  queue retries its reports while their lease lasts, and every retry is safe (a repeated
  report answers as the first did; a repeated save finds the job it inserted; the next claim
  after a lost one is handed the jobs the lost one claimed).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from ..api.jobs import JobsAPI
from ..api.seam import JobService
from ..model import validation as v
from ..model.clock import Clock, to_millis
from ..model.constants import Status
from ..model.document import JobDoc
from ..model.errors import DatabaseError, InvalidArgument, InvalidArgumentType
from ..model.limits import Limits
from ..model.ops import (
    Cancel,
    Done,
    Fail,
    GetJobs,
    GetWork,
    Log,
    Op,
    Remove,
    Results,
    Save,
    SaveMany,
    in_session,
)
from ..model.types import Id
from ..model.workers import TTL_MS
from ..mongo.wakeup import LocalCancels, LocalSaves, WakeupSource
from . import codec

R = TypeVar("R")
DEFAULT_TIMEOUT = 30.0
"""Seconds a request may take (a long poll: its wait on top)."""
DEFAULT_WAIT = 25.0
"""Seconds a queue's long poll asks the server to hold it."""
RETRY_DELAY = 1.0
"""Seconds a long poll waits after a failure before it asks again (doubling to 30 s)."""


class RemoteClock:
    """The server's time: this machine's clock plus the offset measured when connecting."""

    def __init__(self, offset: timedelta) -> None:
        self.offset = offset

    def now(self) -> datetime:
        return to_millis(datetime.now(UTC) + self.offset)


class LongPoll:
    """A WakeupSource over the remote API's /wait: yields whenever the server says jobs of
    the types may have become ready. After a failed request it waits (backing off) and
    yields once it is answered again, since changes may have been missed meanwhile."""

    def __init__(self, service: RemoteService, wait: float) -> None:
        self._service = service
        self._wait = wait

    async def signals(self, types: Sequence[str]) -> AsyncIterator[object]:
        failures = 0
        while True:
            try:
                signal = await self._service.wait(types, self._wait)
            except DatabaseError:
                failures += 1
                await asyncio.sleep(min(RETRY_DELAY * 2 ** (failures - 1), 30.0))
                continue
            if signal or failures:
                yield "changed"
            failures = 0


class RemoteService(JobService):
    """The JobService of a remote API (see the module docstring); each operation is the
    protocol's (api/seam.py), sent as the method of the same name."""

    def __init__(
        self, http: httpx.AsyncClient, clock: Clock, limits: Limits, wait: float, max_calls: int
    ) -> None:
        self._http = http
        self._clock = clock
        self._limits = limits
        self._wait = wait
        self._max_calls = max_calls
        self._batch: list[tuple[str, list[Any], asyncio.Future[Any]]] = []
        self._sending: set[asyncio.Task[None]] = set()
        self._cancels = LocalCancels()
        self._unanswered: dict[tuple[str, ...], list[str]] = {}
        """Claim keys of claims whose answer was lost, by the types claimed."""
        self._server_takes_worker = True
        """Whether getWork is sent its `worker` option (False once a server of an earlier
        version refused it)."""
        self.requests = 0
        """HTTP requests made so far (for benchmarks)."""

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def limits(self) -> Limits:
        return self._limits

    # --- transport ---------------------------------------------------------------------------

    async def call(self, method: str, *params: Any) -> Any:
        """A method of the remote API with wire-shaped params; its wire-shaped result."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._batch.append((method, list(params), future))
        if len(self._batch) == 1:
            asyncio.get_running_loop().call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        batch, self._batch = self._batch, []
        for start in range(0, len(batch), self._max_calls):
            task = asyncio.create_task(self._send(batch[start : start + self._max_calls]))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[tuple[str, list[Any], asyncio.Future[Any]]]) -> None:
        try:
            if len(batch) == 1:
                method, params, future = batch[0]
                status, body = await self._post(f"/methods/{method}", {"params": params})
                answers = [body if status == 200 else {**body, "status": status}]
            else:
                calls = [{"method": m, "params": p} for m, p, _ in batch]
                status, body = await self._post("/batch", {"calls": calls})
                if status != 200:
                    codec.raise_error(status, body)
                answers = body["results"]
        except Exception as exc:
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, _, future), answer in zip(batch, answers, strict=True):
            if future.done():
                continue
            if "error" in answer:
                try:
                    codec.raise_error(answer.get("status", 500), answer)
                except Exception as exc:
                    future.set_exception(exc)
            else:
                future.set_result(answer.get("result"))

    async def _post(
        self, path: str, body: dict[str, Any], timeout: float | None = None
    ) -> tuple[int, Any]:
        self.requests += 1
        try:
            reply = await self._http.post(
                path,
                content=codec.dumps(body),
                headers={"content-type": "application/json"},
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.HTTPError as exc:
            raise DatabaseError(f"the remote API did not answer: {exc!r}") from exc
        try:
            return reply.status_code, codec.loads(reply.content)
        except ValueError as exc:
            raise DatabaseError(f"the remote API answered {reply.status_code}, not JSON") from exc

    async def wait(self, types: Sequence[str], seconds: float) -> bool:
        """Hold a long poll for jobs of these types; whether the server signalled."""
        timeout = self._http.timeout.read or DEFAULT_TIMEOUT
        status, body = await self._post(
            "/wait", {"types": list(types), "timeout": seconds}, timeout=seconds + timeout
        )
        if status != 200:
            codec.raise_error(status, body)
        return bool(body.get("signal"))

    async def close(self) -> None:
        """Send what is batched and wait for the requests in flight."""
        if self._batch:
            self._flush()
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)

    # --- the seam ----------------------------------------------------------------------------

    @property
    def worker_ttl_ms(self) -> int:
        return TTL_MS  # (the server's own setting is its queues')

    @property
    def rate_limits(self) -> bool:
        return False

    async def run(self, op: Op[R]) -> R:
        """Send an operation as the method of the same name, with the parameters the
        operations' codec gives it (model/ops.py), and decode its answer by the operation's shape.
        Values the server would refuse for its limits are refused here, without a request."""
        if op.remote is not None:
            raise InvalidArgument(*op.remote)
        if in_session(op) is not None:
            raise InvalidArgument(
                "session",
                "a remote collection cannot join your transaction (its writes happen in another "
                "process); save or report on a JobCollection over the same MongoDB client",
            )
        if isinstance(op, Results):
            return await self._results(op)  # type: ignore[return-value]
        self._check(op)
        params = [codec.encode(value) for value in op.params()]
        if isinstance(op, GetWork):
            return await self._claim(op, params)  # type: ignore[return-value]
        try:
            answer = await self.call(op.method, *params)
        except InvalidArgument as exc:
            if isinstance(op, SaveMany) and op.name != "docs" and exc.argument.startswith("docs["):
                renamed = op.name + exc.argument[len("docs") :]  # save_jobs says jobs[i]
                raise type(exc)(renamed, exc.problem) from None
            raise
        finally:
            if isinstance(op, Cancel | Remove):
                self._cancels.publish(op.ids)
        return codec.decode_result(op.returns, answer)  # type: ignore[no-any-return]

    def _check(self, op: Op[Any]) -> None:
        """What the server's limits refuse, refused before sending."""
        if isinstance(op, Save):
            self._limits.check_doc(op.doc)
        elif isinstance(op, SaveMany):
            for i, doc in enumerate(op.docs):
                self._limits.check_doc(doc, f"{op.name}[{i}]")
        elif isinstance(op, Log):
            self._limits.check_log(op.message, op.data)
        elif isinstance(op, Done):
            self._limits.check_result(op.result)
        elif isinstance(op, Fail):
            self._limits.check_error(op.error)

    async def _claim(self, op: GetWork, params: list[Any]) -> list[JobDoc]:
        """A claim carries a fresh random claim key; after a claim whose answer was lost, the
        next claim of the same types sends that key again, and the server hands over the
        jobs it claimed under it (still held) instead of claiming others, so a lost answer
        costs no job its lease and its attempt."""
        unanswered = self._unanswered.setdefault(tuple(op.types), [])
        key = unanswered.pop() if unanswered else secrets.token_urlsafe(16)
        options = {**params[1], "claimKey": key}
        if not self._server_takes_worker:
            options.pop("worker", None)
        try:
            found = await self.call(op.method, params[0], options)
        except DatabaseError:
            unanswered.append(key)
            raise
        except InvalidArgument as exc:
            if (
                "worker" not in options
                or exc.argument != "options"
                or "'worker'" not in exc.problem
            ):
                raise
            # A server of an earlier version, which does not know the option: claim without
            # it from now on (its jobs then record only the user).
            self._server_takes_worker = False
            return await self._claim(op, params)
        return [codec.decode_doc(raw) for raw in found]

    async def _results(self, op: Results) -> dict[Id, dict[str, Any]]:
        """Read through getJob (what a worker may call): the completed jobs' results."""
        docs = await self.run(GetJobs(op.ids))
        found = {doc.id: doc for doc in docs if doc.status == Status.COMPLETED}
        results = {i: found[i].result or {} for i in op.ids if i in found}
        v.check_results_size(results, op.max_bytes)
        return results

    def wakeup(self) -> WakeupSource | None:
        return LongPoll(self, self._wait)

    def saves(self) -> LocalSaves | None:
        return None

    def cancels(self) -> LocalCancels | None:
        """The cancels made through this client, for its own queues (those made elsewhere
        reach them through the heartbeat's reply)."""
        return self._cancels


class RemoteJobCollection(JobsAPI):
    """A job collection served by a remote API (`jobcollection.remote.create_app`): the
    Python API of a JobCollection for creating, finding, claiming and managing jobs, on a
    machine with only the URL and a token. Use it as an async context manager:

        async with RemoteJobCollection("https://jobs.example.com", token=TOKEN) as jc:
            queue = jc.process_jobs("sendEmail", send_email)

    `clock`: where "now" comes from (default: the server's time, measured on connecting);
    `wait`: seconds a queue's long poll asks the server to hold; `timeout`: seconds a request
    may take; `transport`: an httpx transport (tests; a custom TLS setup)."""

    def __init__(
        self,
        url: str,
        *,
        token: str,
        clock: Clock | None = None,
        wait: float = DEFAULT_WAIT,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not isinstance(url, str) or not url:
            raise InvalidArgumentType("url", "must be the remote API's base URL")
        if not isinstance(token, str) or not token:
            raise InvalidArgumentType("token", "must be a non-empty bearer token")
        if clock is not None and not isinstance(clock, Clock):
            raise InvalidArgumentType("clock", "must have a now() method")
        self.url = url.rstrip("/")
        self._token = token
        self._clock = clock
        self._wait = v.number(wait, "wait", minimum=0)
        self._timeout = v.number(timeout, "timeout", minimum=0)
        self._transport = transport
        self._service: RemoteService | None = None

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def connect(self) -> None:
        """Open the connection and read the server's time and limits (what `async with`
        does)."""
        http = httpx.AsyncClient(
            base_url=self.url,
            headers={"authorization": f"Bearer {self._token}"},
            timeout=self._timeout,
            transport=self._transport,
        )
        try:
            sent = datetime.now(UTC)
            reply = await http.get("/info")
            received = datetime.now(UTC)
            time, limits, max_calls = self._info(reply)
        except httpx.HTTPError as exc:
            await http.aclose()
            raise DatabaseError(f"the remote API at {self.url} did not answer: {exc!r}") from exc
        except BaseException:
            await http.aclose()
            raise
        clock = self._clock or RemoteClock(time - (sent + (received - sent) / 2))
        self._service = RemoteService(http, clock, limits, self._wait, max_calls)
        self._http = http

    def _info(self, reply: httpx.Response) -> tuple[datetime, Limits, int]:
        """The server's time, limits and calls per batch from its /info reply; the error it
        answered with (PermissionDenied for a refused token), or DatabaseError for a reply
        that is not the remote API's (a URL where something else answers)."""
        where = f"{self.url}/info"
        try:
            body = codec.loads(reply.content) if reply.content else {}
        except ValueError:
            raise DatabaseError(
                f"{where} answered HTTP {reply.status_code} with a body that is not JSON: not "
                "a jobcollection remote API"
            ) from None
        if reply.status_code != 200:
            ours = isinstance(body, dict) and isinstance(body.get("error"), dict)
            if ours or reply.status_code in (401, 403):
                codec.raise_error(reply.status_code, body)
            raise DatabaseError(
                f"{where} answered HTTP {reply.status_code}: not a jobcollection remote API"
            )
        try:
            time, limits, max_calls = body["time"], body["limits"], body["maxBatchCalls"]
            if not isinstance(time, datetime) or type(max_calls) is not int or max_calls < 1:
                raise TypeError("time or maxBatchCalls")
            return time, Limits(**limits), max_calls
        except (KeyError, TypeError, ValueError) as exc:
            raise DatabaseError(
                f"{where} answered JSON without the remote API's time and limits ({exc!r}): "
                "not a jobcollection remote API"
            ) from None

    async def close(self) -> None:
        """Send what is batched, wait for it, and close the connection."""
        if self._service is None:
            return
        service, self._service = self._service, None
        await service.close()
        await self._http.aclose()

    @property
    def service(self) -> RemoteService:
        """The typed operations `Job` and `JobQueue` call, over HTTP."""
        if self._service is None:
            raise RuntimeError(
                "the RemoteJobCollection is not connected: use `async with` or `await connect()`"
            )
        return self._service
