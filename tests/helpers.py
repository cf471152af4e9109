"""Small helpers the test modules share: reading stored documents as the database holds them."""

from __future__ import annotations

import asyncio
import copy
import inspect
import random
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId

from jobcollection import Job, JobCollection, ManualClock
from jobcollection.model.document import FOLLOW_UPS

Doc = dict[str, Any]


def utc(value: datetime) -> datetime:
    """Stored datetimes come back naive (UTC) from both backends."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def stored(jc: JobCollection, job_id: Any) -> Doc:
    """The raw stored document of a job, which must exist."""
    doc = await jc.collection.find_one({"_id": job_id})
    assert doc is not None, f"job {job_id} is not stored"
    return dict(doc)


def messages(doc: Doc) -> list[str]:
    """The messages of a stored document's log, in order."""
    return [e["message"] for e in doc.get("log", [])]


FAR = datetime(9999, 1, 1, tzinfo=UTC)


def clears_follow_ups(args: Any) -> bool:
    """Whether a bulk_write's requests (its first argument) clear follow-ups marks (the
    write after a completion's follow-ups, not the completion: that one unsets the job's
    checkpoint)."""
    return any(FOLLOW_UPS in request._doc.get("$unset", {}) for request in args[0])


def stored_job(now: datetime, **fields: Any) -> Doc:
    """A whole job document as job-collection v1.x (or another application) stores it, ready
    unless `fields` say otherwise; for inserting directly into a collection."""
    return {
        "_id": ObjectId(),
        "type": "t",
        "data": {},
        "status": "ready",
        "runId": None,
        "after": now,
        "updated": now,
        "created": now,
        "retries": 1,
        "retried": 0,
        "repeatRetries": 1,
        "retryWait": 0,
        "retryBackoff": "constant",
        "retryUntil": FAR,
        "repeats": 0,
        "repeated": 0,
        "repeatUntil": FAR,
        "repeatWait": 0,
        "depends": [],
        "resolved": [],
        "priority": 0,
        "progress": {"completed": 0, "total": 1, "percent": 0},
        "log": [],
        **fields,
    }


async def claim_one(jc: JobCollection, job_type: str = "t", **kwargs: Any) -> Job:
    """Claim exactly one job of a type (asserting there was one and only one)."""
    got = await jc.get_work(job_type, **kwargs)
    assert len(got) == 1, got
    return got[0]


class Yielding:
    """A collection proxy that yields to the event loop before every database command.

    The in-memory backend answers without ever suspending, so coroutines that "run
    concurrently" would in fact run one after the other; through this proxy they interleave
    between commands as they do against a real server, and the claim races are real.

    Subclasses override commands to stage server behaviour (a slow or refused write). The
    library reads through `with_options(...)`: the view it gets is the same double over the
    inner collection's view, sharing every attribute a test sets (on the double or the view).
    """

    def __init__(self, inner: Any) -> None:
        object.__setattr__(self, "_inner", inner)
        object.__setattr__(self, "_state", {})

    def __setattr__(self, name: str, value: Any) -> None:
        self._state[name] = value

    def __getattr__(self, name: str) -> Any:
        state = object.__getattribute__(self, "_state")
        if name in state:
            return state[name]
        return getattr(self._inner, name)

    def with_options(self, **options: Any) -> Any:
        view = copy.copy(self)  # shares `_state`
        object.__setattr__(view, "_inner", self._inner.with_options(**options))
        return view

    async def _turns_then(self, awaitable: Any) -> Any:
        """Await a command after letting the event loop run (a subclass may vary the turns)."""
        return await _yield_then(awaitable)

    def _cursor(self, cursor: Any) -> Yielding:
        """A cursor whose to_list waits its turns as the commands do."""
        return Yielding(cursor)


def _passthrough(name: str) -> Any:
    def method(self: Yielding, *args: Any, **kwargs: Any) -> Any:
        result = getattr(self._inner, name)(*args, **kwargs)
        if inspect.isawaitable(result):
            return self._turns_then(result)
        if callable(getattr(result, "to_list", None)):
            return self._cursor(result)
        return result

    method.__name__ = name
    return method


for _name in (
    "find",
    "find_one",
    "insert_one",
    "insert_many",
    "update_one",
    "update_many",
    "find_one_and_update",
    "delete_many",
    "create_index",
    "bulk_write",
    "count_documents",
    "sort",
    "limit",
    "to_list",
):
    setattr(Yielding, _name, _passthrough(_name))


async def _yield_then(awaitable: Any) -> Any:
    await asyncio.sleep(0)
    return await awaitable


async def run_repeatedly(
    jc: JobCollection, clock: ManualClock, job_id: Any, times: int
) -> list[datetime]:
    """Run a repeating job `times` times, each at its `after`, finishing 3 s later."""
    started = []
    for _ in range(times):
        clock.set(utc((await stored(jc, job_id))["after"]))
        await jc.run_server_pass()
        worker = await claim_one(jc)
        started.append(clock.now())
        clock.advance(3)
        job_id = await worker.done(repeat_id=True)
        assert job_id not in (True, False, None)
    return started


WORKER: dict[str, Any] = {
    "id": "w1",
    "host": "h",
    "pid": 1,
    "version": "0",
    "types": ["t"],
    "concurrency": 1,
    "payload": 1,
    "prefetch": 0,
}
"""A queue's registration, as a worker sends it (jobWorkerSeen)."""


class Jittery(Yielding):
    """A collection proxy that lets the event loop run a seeded random number of turns (0 to
    3) before every database command: concurrent calls of several processes interleave in a
    different order for each seed, and in the same order for the same seed."""

    def __init__(self, inner: Any, rng: random.Random) -> None:
        super().__init__(inner)
        object.__setattr__(self, "_rng", rng)

    async def _turns_then(self, awaitable: Awaitable[Any]) -> Any:
        for _ in range(self._rng.randrange(4)):
            await asyncio.sleep(0)
        return await awaitable

    def _cursor(self, cursor: Any) -> Jittery:
        return Jittery(cursor, self._rng)
