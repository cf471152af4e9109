"""Prompt wake-up for job queues: signals that jobs of some types may have become ready.

A `JobQueue` polls every `poll_interval` seconds; a wake-up source lets it start a new job at
once instead. The queue iterates `source.signals(types)` and calls `trigger()` for each item, so
a signal is only a hint ("look now"); a spurious one costs one claim attempt, a missed one is
covered by polling.

- `ChangeStreamSource` watches the job collection through a MongoDB change stream (replica sets
  and sharded clusters). It resumes after an error from the last resume token, and signals a
  rescan whenever it (re)opens, because changes made while it was away may have been missed.
- Where change streams do not exist (a standalone server, the in-memory backend) it raises
  `WakeupUnavailable` and the queue carries on polling.
- Anything with a `signals(types)` async iterator is a source: tests drive queues with a fake,
  and an application can wake its queues from its own notifications.
- `ChangeStreamSource.ready_types()` is one stream for every type, each signal naming the type
  it is about (`Ready`): the remote API's long polls share it, filtering by type in the
  process (a `ReadySource`).

`LocalSaves` needs no server: a JobCollection tells the queues of its own process about each
job it saves (its type and when it is due), so a queue starts a job saved in the same process
at once, or when it falls due, on any deployment.

Cancellations reach running workers the same two ways. `LocalCancels`: a JobCollection tells
the queues of its own process the ids it was asked to cancel or remove, and a queue holding
one checks that claim at once. A `CancelSource` (`ChangeStreamSource.cancellations()`) yields
the ids of jobs any process cancels, where change streams exist. Elsewhere a queue learns of
a cancel at its next heartbeat (every third of its work_timeout).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar, runtime_checkable

from pymongo.errors import OperationFailure, PyMongoError

from ..model.constants import Status
from ..model.errors import WakeupUnavailable

logger = logging.getLogger("jobcollection.wakeup")
T = TypeVar("T")

UNSUPPORTED_CODES = frozenset({13, 115, 40324, 40573})
"""Server error codes that mean change streams cannot work here: Unauthorized,
CommandNotSupported, unknown `$changeStream` stage, and "only supported on replica sets"."""

HISTORY_LOST_CODES = frozenset({136, 280, 286})
"""CappedPositionLost, ChangeStreamFatalError, ChangeStreamHistoryLost: the resume token is
useless, so the stream starts afresh (and signals a rescan)."""


@runtime_checkable
class CancelSource(Protocol):
    """Tells a queue which jobs were cancelled (a queue whose wake-up source is also one
    listens to it: `process_jobs(wakeup=...)`, QueueOptions.wakeup)."""

    def cancellations(self) -> AsyncIterator[Any]:
        """Yield the id of each job cancelled from now on, or None when cancels may have been
        missed (the queue then checks every claim it holds). Raise `WakeupUnavailable` if the
        source cannot work here; any other exception also ends it (the heartbeat remains)."""
        ...


@runtime_checkable
class WakeupSource(Protocol):
    """Tells a queue when jobs of its types may have become ready."""

    def signals(self, types: Sequence[str]) -> AsyncIterator[object]:
        """Yield whenever ready jobs of `types` may exist. Raise `WakeupUnavailable` if the
        source cannot work here; any other exception also ends it (the queue then rescans
        once and keeps polling)."""
        ...


@dataclass(frozen=True, slots=True)
class Ready:
    """A signal of a ReadySource: jobs of `job_type` (None: of any type, as an update does not
    say) may have become ready or waiting; or, with `opened`, the stream (re)opened, so
    changes made while it was away may have been missed."""

    job_type: str | None = None
    opened: bool = False


@runtime_checkable
class ReadySource(Protocol):
    """One stream of wake-up signals for every type, each naming its type (`Ready`)."""

    def ready_types(self) -> AsyncIterator[Ready]:
        """Yield `Ready(opened=True)` whenever the stream (re)opens, and `Ready(type)` for each
        job that may have become ready. Raise `WakeupUnavailable` if the source cannot work
        here; any other exception also ends it."""
        ...


def ready_pipeline(types: Sequence[str] | None) -> list[dict[str, Any]]:
    """The change-stream pipeline for "a job of these types may have become ready, or will
    fall due": a ready job is claimed at once; on a waiting one the queue's claim finds
    nothing and sets its wake-up for when the job falls due (queue/claims.py), so a job saved with a
    delay, or failed with a retry wait, by any process starts on time.

    An insert or replace carries the whole document, so it is matched on type and status. An
    update carries only the changed fields, so any update that sets status to "ready" or
    "waiting" matches (looking the document up to check its type would cost a read per update
    of any kind). Only `_id` (the resume token) and the operation type are sent back.

    With `types` None, jobs of every type match, and an insert's or replace's type is sent
    back too (`fullDocument.type`), to be told apart in the process (ready_types).
    """
    written: dict[str, Any] = {
        "operationType": {"$in": ["insert", "replace"]},
        "fullDocument.status": {"$in": [Status.READY, Status.WAITING]},
    }
    project: dict[str, Any] = {"_id": 1, "operationType": 1}
    if types is None:
        project["fullDocument.type"] = 1
    else:
        written["fullDocument.type"] = {"$in": list(types)}
    return [
        {
            "$match": {
                "$or": [
                    written,
                    {
                        "operationType": "update",
                        "updateDescription.updatedFields.status": {
                            "$in": [Status.READY, Status.WAITING]
                        },
                    },
                ]
            }
        },
        {"$project": project},
    ]


def cancel_pipeline() -> list[dict[str, Any]]:
    """The change-stream pipeline for "a job was cancelled": updates that set status to
    "cancelled" (of any type: an update does not carry the type, and the queue looks the id up
    among the jobs it holds). Only `_id` (the resume token) and the job's id are sent back."""
    return [
        {
            "$match": {
                "operationType": "update",
                "updateDescription.updatedFields.status": Status.CANCELLED,
            }
        },
        {"$project": {"_id": 1, "documentKey": 1}},
    ]


def _unsupported(exc: BaseException) -> bool:
    return isinstance(exc, OperationFailure) and exc.code in UNSUPPORTED_CODES


def _history_lost(exc: BaseException) -> bool:
    return isinstance(exc, OperationFailure) and exc.code in HISTORY_LOST_CODES


class ChangeStreamSource:
    """Wake-up signals, and cancelled jobs, from MongoDB change streams on the job collection
    (`signals` and `cancellations` each open a stream of their own).

    Works with a pymongo `AsyncCollection` (whose `watch` is a coroutine) and a Motor
    collection (whose `watch` returns the stream). After a resumable error it waits
    `retry_delay` seconds (doubling up to `max_retry_delay`) and reopens from the last resume
    token; after `max_failures` consecutive failures (None: never) it gives up and raises.
    `sleep` waits between attempts (tests pass one that records instead of waiting).
    """

    def __init__(
        self,
        collection: Any,
        *,
        retry_delay: float = 1.0,
        max_retry_delay: float = 30.0,
        max_failures: int | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.collection = collection
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self.max_failures = max_failures
        self._sleep = sleep

    async def _open(self, pipeline: list[dict[str, Any]], token: Mapping[str, Any] | None) -> Any:
        try:
            watch = self.collection.watch
            stream = watch(pipeline, resume_after=token)
        except (AttributeError, NotImplementedError, TypeError) as exc:
            # mongomock exposes no watch(): attribute access yields a sub-collection.
            raise WakeupUnavailable("this backend has no change streams") from exc
        if inspect.isawaitable(stream):  # pymongo's AsyncCollection.watch is a coroutine
            stream = await stream
        return stream

    def _delay(self, failures: int) -> float:
        return float(min(self.retry_delay * 2 ** (failures - 1), self.max_retry_delay))

    def signals(self, types: Sequence[str]) -> AsyncIterator[object]:
        """ "opened" whenever the stream (re)opens, "changed" for each job of `types` that
        became ready or waiting."""
        return self._watch(ready_pipeline(types), lambda change: "changed", "opened")

    def ready_types(self) -> AsyncIterator[Ready]:
        """One stream for jobs of every type (ReadySource): `Ready(opened=True)` whenever it
        (re)opens, `Ready(type)` for each job that became ready or waiting (`Ready(None)`
        for an update, whose type the change does not carry)."""
        return self._watch(ready_pipeline(None), _ready_type, Ready(opened=True))

    def cancellations(self) -> AsyncIterator[Any]:
        """The id of each job cancelled, and None whenever the stream (re)opens."""
        return self._watch(cancel_pipeline(), _cancelled_id, None)

    def finishes(self) -> AsyncIterator[Any]:
        """The id of each job that reached a final status (or was removed), and None
        whenever the stream (re)opens (api/waiting.py: what `job.wait()` waits for)."""
        return self._watch(finish_pipeline(), _cancelled_id, None)

    async def _watch(
        self,
        pipeline: list[dict[str, Any]],
        describe: Callable[[dict[str, Any]], T],
        opened: T,
    ) -> AsyncIterator[T]:
        """`opened` whenever the stream (re)opens, `describe(change)` for each change."""
        token: Mapping[str, Any] | None = None
        failures = 0
        clock = asyncio.get_running_loop().time
        while True:
            stream: Any = None
            opened_at: float | None = None
            try:
                stream = await self._open(pipeline, token)
                opened_at = clock()
                yield opened  # changes made before (or while away) may have been missed
                async for change in stream:
                    token = stream.resume_token
                    failures = 0
                    yield describe(change)
                # Invalidated (collection dropped or renamed): start afresh, at once the first
                # time, then backing off if streams keep ending without a change.
                token = None
                failures += 1
                if failures > 1:
                    await self._sleep(self._delay(failures - 1))
            except NotImplementedError as exc:
                raise WakeupUnavailable(f"change streams are not supported here ({exc})") from exc
            except PyMongoError as exc:
                if _unsupported(exc):
                    raise WakeupUnavailable(f"change streams are not available: {exc}") from exc
                if opened_at is not None and clock() - opened_at >= self.max_retry_delay:
                    failures = 0  # it had been working for a while: not a run of failures
                failures += 1
                if self.max_failures is not None and failures >= self.max_failures:
                    raise
                if _history_lost(exc):
                    token = None
                delay = self._delay(failures)
                logger.warning(
                    "change stream failed (%s); reopening in %.1f s%s",
                    exc,
                    delay,
                    " from the last resume token" if token is not None else "",
                )
                await self._sleep(delay)
            finally:
                if stream is not None:
                    await _close(stream)


def finish_pipeline() -> list[dict[str, Any]]:
    """The change-stream pipeline for "a job finished": updates that set status to
    completed, failed or cancelled, and deletes. Only `_id` (the resume token) and the job's
    id are sent back."""
    return [
        {
            "$match": {
                "$or": [
                    {
                        "operationType": "update",
                        "updateDescription.updatedFields.status": {
                            "$in": [Status.COMPLETED, Status.FAILED, Status.CANCELLED]
                        },
                    },
                    {"operationType": "delete"},
                ]
            }
        },
        {"$project": {"_id": 1, "documentKey": 1}},
    ]


def _ready_type(change: dict[str, Any]) -> Ready:
    """What a change of ready_pipeline(None) says: the type of the job it carries, if any."""
    document = change.get("fullDocument")
    job_type = document.get("type") if isinstance(document, dict) else None
    return Ready(job_type if isinstance(job_type, str) else None)


def _cancelled_id(change: dict[str, Any]) -> Any:
    """The id of the job a change is about; None (check every one) if it does not say."""
    key = change.get("documentKey")
    return key.get("_id") if isinstance(key, dict) else None


async def follow(signals: AsyncIterator[T], on_signal: Callable[[T], None]) -> Exception | None:
    """Call `on_signal` for each signal of a source until the source ends, then close it:
    what every listener of a wake-up, cancel or finish stream does. The exception that ended
    it (WakeupUnavailable where there are no change streams), None if it ended by itself;
    the caller says what that means for it."""
    try:
        async for signal in signals:
            on_signal(signal)
    except Exception as exc:
        return exc
    finally:
        aclose = getattr(signals, "aclose", None)
        if aclose is not None:
            await aclose()
    return None


async def _close(stream: Any) -> None:
    try:
        closing = stream.close()
        if inspect.isawaitable(closing):
            await closing
    except PyMongoError:
        logger.debug("closing a change stream failed", exc_info=True)


SaveHint = Callable[[datetime], None]
"""Told when a job of a queue's types was saved, and when it is due (a hint: its `after`)."""


class LocalSaves:
    """The jobs saved through one JobCollection, for the queues of the same process."""

    def __init__(self) -> None:
        self._by_type: dict[str, list[SaveHint]] = {}

    def subscribe(self, types: Sequence[str], hint: SaveHint) -> Callable[[], None]:
        """Call `hint` for each job of these types saved from now on; the unsubscribe."""
        for job_type in types:
            self._by_type.setdefault(job_type, []).append(hint)

        def unsubscribe() -> None:
            for job_type in types:
                hints = self._by_type.get(job_type, [])
                if hint in hints:
                    hints.remove(hint)
                if not hints:  # no entry outlives its last listener
                    self._by_type.pop(job_type, None)

        return unsubscribe

    @property
    def active(self) -> bool:
        """Whether any queue listens (else saves need not say anything)."""
        return bool(self._by_type)

    @property
    def types(self) -> frozenset[str]:
        """The types some listener is subscribed to now."""
        return frozenset(self._by_type)

    def publish(self, job_type: str, due: datetime) -> None:
        for hint in self._by_type.get(job_type, ()):
            try:
                hint(due)
            except Exception:
                logger.exception("a queue's save hint raised")


CancelHint = Callable[[Sequence[Any]], None]
"""Told the ids of jobs cancelled or removed (some of them may not have been)."""


class LocalCancels:
    """The jobs cancelled or removed through one JobCollection, for the queues of the same
    process: a queue holding one checks its claim at once, so that its worker is stopped
    without waiting for the next heartbeat."""

    def __init__(self) -> None:
        self._hints: list[CancelHint] = []

    def subscribe(self, hint: CancelHint) -> Callable[[], None]:
        """Call `hint` with the ids of each cancel or remove from now on; the unsubscribe."""
        self._hints.append(hint)

        def unsubscribe() -> None:
            if hint in self._hints:
                self._hints.remove(hint)

        return unsubscribe

    def publish(self, ids: Sequence[Any]) -> None:
        for hint in list(self._hints):
            try:
                hint(ids)
            except Exception:
                logger.exception("a queue's cancel hint raised")
