"""Transactions: saves and reports made inside the caller's MongoDB transaction (the outbox
pattern), and what follows them once it commits.

A save (Save, SaveMany) or a report (Done, Fail) given a session (a pymongo AsyncClientSession
or a Motor session, inside a transaction) sends every command of its operation in that
session, through a Store joined to it (`Store.joined`): the job is stored, or finished, if and
only if the caller's own writes commit. What follows the operation and touches nothing of the
job's own document stays out of the transaction, and must not happen before the commit;
pymongo has no hook on it, so it is recorded here per session and done by `after_commit`
(which `transaction()` calls once its commit succeeded):

- waking this process's queues for the jobs saved (LocalSaves): a queue woken before the
  commit would look, find nothing, and sleep until its next poll; the queues of other
  processes learn from the change stream, which sees only committed writes;
- the follow-ups of a job completed or failed for good (its repeat, its dependents, its
  removal date): the finishing write marks them pending inside the transaction, so they are
  durable exactly when it is; after the commit they are finished from the stored marks
  (`FollowUps.finish_marked`), and if nobody calls after_commit, the next job-server pass
  finishes them, as after a crash.

after_commit acts on what is stored, not on what was recorded: it wakes queues only for jobs
that exist and finishes only follow-ups that stored documents mark, so calling it after an
abort does nothing, and an aborted transaction never wakes a worker. The record of a session
goes with the session (a weak reference) or with after_commit/discard.
"""

from __future__ import annotations

import functools
import inspect
import logging
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..model.clock import Clock
from ..model.document import assume_utc
from ..model.errors import DatabaseError, InvalidArgument, InvalidArgumentType
from ..model.types import Id
from ..mongo.store import Store
from ..mongo.wakeup import LocalSaves
from .followups import FollowUps

logger = logging.getLogger("jobcollection")


@dataclass(slots=True)
class _Deferred:
    """What a session's transaction did that waits for its commit."""

    saved: list[Id] = field(default_factory=list)
    finished: list[Id] = field(default_factory=list)


class Transactions:
    """The sessions saves and reports joined, and what follows their commits."""

    def __init__(
        self, store: Store, clock: Clock, saves: LocalSaves, follow_ups: FollowUps
    ) -> None:
        self._store = store
        self._clock = clock
        self._saves = saves
        self._follow_ups = follow_ups
        self._deferred: dict[int, tuple[weakref.ref[Any], _Deferred]] = {}
        """By the session's id (Motor's sessions are not hashable); an entry goes when its
        session is collected, so an id is never taken for another session's."""

    def client(self) -> Any:
        """The driver client of the jobs' collection (None if it has none)."""
        return getattr(self._store.collection.database, "client", None)

    def checked(self, session: Any) -> Any:
        """The session an operation may join: one in a transaction, started by the client of
        the jobs' collection (a transaction spans one client). Raises InvalidArgumentType or
        InvalidArgument naming "session"."""
        if not _is_session(session):
            raise InvalidArgumentType(
                "session", "must be a pymongo AsyncClientSession or a Motor client session"
            )
        if session.client is not self.client():
            raise InvalidArgument(
                "session",
                "was started by another client than the one of this collection: a transaction "
                "spans one client, so the jobs and your documents must be in one deployment "
                "reached through one client",
            )
        if not session.in_transaction:
            raise InvalidArgument(
                "session",
                "is not in a transaction: start one (jc.transaction(), "
                "session.start_transaction() or session.with_transaction())",
            )
        return session

    def saved(self, session: Any, ids: list[Id]) -> None:
        """Jobs saved in the session's transaction: this process's queues are woken for
        them after the commit."""
        self._record(session).saved.extend(ids)

    def finished(self, session: Any, job_id: Id) -> None:
        """A job completed or failed in the session's transaction: its follow-ups are
        finished after the commit."""
        self._record(session).finished.append(job_id)

    def _record(self, session: Any) -> _Deferred:
        key = id(session)
        found = self._deferred.get(key)
        if found is None:
            gone = functools.partial(_forget, weakref.ref(self), key)
            found = self._deferred[key] = (weakref.ref(session, gone), _Deferred())
        return found[1]

    def discard(self, session: Any) -> _Deferred | None:
        """Forget what the session's transaction did (it aborted); what that was."""
        found = self._deferred.pop(id(session), None)
        return None if found is None else found[1]

    async def after_commit(self, session: Any) -> None:
        """Once the session's transaction has committed: wake this process's queues for the
        jobs it saved and finish the follow-ups of the jobs it finished, from what is stored
        (an aborted transaction stored nothing: nothing is woken). Database errors are
        logged, not raised: the commit stands, the queues poll and the job-server pass
        finishes marked follow-ups. InvalidArgument if the transaction is still open."""
        if not _is_session(session):
            raise InvalidArgumentType("session", "must be a client session")
        if session.in_transaction:
            raise InvalidArgument(
                "session", "is still in its transaction: call after_commit once it committed"
            )
        record = self.discard(session)
        if record is None:
            return
        try:
            if record.saved and self._saves.active:
                stored = await self._store.find(
                    {"_id": {"$in": record.saved}}, {"type": 1, "after": 1}
                )
                now = self._clock.now()
                for doc in stored:
                    after = assume_utc(doc.get("after"))
                    due = max(after, now) if isinstance(after, datetime) else now
                    self._saves.publish(str(doc.get("type")), due)
            if record.finished:
                await self._follow_ups.finish_marked(record.finished)
        except DatabaseError as exc:
            logger.warning(
                "after a commit: %s; the queues poll and the job-server pass finishes the "
                "follow-ups",
                exc,
            )

    @asynccontextmanager
    async def transaction(self, given: Any = None) -> AsyncIterator[Any]:
        """A transaction around the block, on a session of `given` (a client: a new session,
        ended after; a session not in a transaction: that one; None: the client of the jobs'
        collection): committed when the block ends, aborted if it raises; after the commit,
        `after_commit` (see JobCollection.transaction)."""
        if given is None:
            given = self.client()
        owned = not _is_session(given)
        if owned and not callable(getattr(type(given), "start_session", None)):
            raise InvalidArgumentType(
                "client_or_session",
                "must be a pymongo AsyncMongoClient, a Motor client or a session",
            )
        session = await _maybe(given.start_session()) if owned else given
        try:
            if session.in_transaction:
                raise InvalidArgument("client_or_session", "is in a transaction already")
            await _maybe(session.start_transaction())
            try:
                yield session
            except BaseException:
                self.discard(session)
                if session.in_transaction:
                    await _quietly_abort(session)
                raise
            try:
                await session.commit_transaction()
            except Exception as exc:
                self.discard(session)
                raise DatabaseError(f"database error: the commit failed: {exc}") from exc
            await self.after_commit(session)
        finally:
            if owned:
                await _maybe(session.end_session())


def _is_session(value: Any) -> bool:
    """Whether a value is a client session (looked up on its type: a client or a database
    answers any attribute with a database or a collection)."""
    return callable(getattr(type(value), "commit_transaction", None))


def _forget(owner: weakref.ref[Transactions], key: int, _: Any) -> None:
    """A session was collected: its record goes (if its Transactions still exist)."""
    transactions = owner()
    if transactions is not None:
        transactions._deferred.pop(key, None)


async def _maybe(value: Any) -> Any:
    """A driver call's result, awaited where the driver answers an awaitable (pymongo's
    async API and Motor differ in which of start_session/start_transaction are)."""
    return await value if inspect.isawaitable(value) else value


async def _quietly_abort(session: Any) -> None:
    """Abort an open transaction after the block raised; an abort that fails is logged (the
    server aborts a transaction it hears nothing more of)."""
    try:
        await session.abort_transaction()
    except Exception as exc:
        logger.warning("aborting a transaction failed: %s", exc)
