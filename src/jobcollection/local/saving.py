"""Saving jobs: inserting new ones (one at a time or many in one round trip) and resubmitting
paused ones; a dependent's antecedents are announced and checked through dependents.py.

A new job's `_id` can be chosen by the caller (the `Job` chooses it once), which makes a save
retried after a lost reply find the job instead of inserting it twice; an id that names
another job is refused.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bson import ObjectId

from ..model.clock import Clock
from ..model.constants import FOREVER, Status
from ..model.document import UNIQUE, USER, JobDoc, assume_utc
from ..model.errors import DatabaseError, DuplicateJob, InvalidArgument
from ..model.types import Id
from ..mongo.store import Document, Store, is_unique_conflict
from ..rules import dedup, dependencies, transitions
from .dependents import Dependents
from .managing import Manager

logger = logging.getLogger("jobcollection")

UNIQUE_ATTEMPTS = 100
"""How often saving a unique job tries to insert it again, after replacing the job holding
its key, letting go of a hold that was over, or finding the holder gone, before it gives up
(other saves of the same key keep taking it)."""

INSERT_BATCH = 1000
"""New jobs inserted per round trip by save_many: few round trips, and the stored form of
only one batch in memory at a time."""


def _saved_later(holder: Document, own: Document) -> bool:
    """Whether the job holding a unique key was saved after this one (its `created`, then
    its id, is the greater): the order in which concurrent saves of one key replace each
    other."""
    held_since = assume_utc(holder.get("created"))
    if not isinstance(held_since, datetime) or held_since == own["created"]:
        return bool(str(holder["_id"]) > str(own["_id"]))
    return bool(held_since > own["created"])


class Saver:
    """Inserts and resubmits jobs."""

    def __init__(
        self, store: Store, clock: Clock, manager: Manager, dependents: Dependents
    ) -> None:
        self.store = store
        self.clock = clock
        self.manager = manager
        self.dependents = dependents

    async def save(
        self,
        doc: JobDoc,
        cancel_repeats: bool = False,
        new_id: Id | None = None,
        *,
        name: str = "doc",
    ) -> Id | None:
        """Insert a new job (under `new_id` if given, which makes a retried save a no-op) or
        resubmit a paused one; its id, or None if it was not saved or was cancelled. A
        resave of a job stored with another type raises InvalidArgument naming
        `{name}.type`, and changes nothing."""
        now = self.clock.now()
        if doc.id is not None:
            prepared = transitions.prepare_save(doc, now)
            if prepared is None:
                logger.warning("jobSave: schedule has no run before repeatUntil; not saved")
                return None
            return await self._resave(prepared, now, name)
        stored = transitions.insert_document(doc, now)
        if stored is None:
            logger.warning("jobSave: schedule has no run before repeatUntil; not saved")
            return None
        if cancel_repeats and doc.repeats == FOREVER:
            query = transitions.cancel_repeats_filter(doc.type, new_id)
            earlier = await self.store.find(query, {"_id": 1})
            if earlier:
                await self.manager.cancel([d["_id"] for d in earlier])
        if doc.depends:
            stored = await self.dependents.announce_insert(doc.depends, stored)
        job_id: Id
        if doc.unique is not None:
            job_id = stored["_id"] = ObjectId() if new_id is None else new_id
            holder = await self._insert_unique(doc, stored, now)
            if holder == job_id:  # stored by an earlier attempt, or stored replaced
                return await self._finish_save(job_id, stored, now)
            if holder is not None:  # on_conflict="ignore": the pending job that holds the key
                return holder
        elif new_id is None:
            job_id = await self.store.insert_one(stored)
        else:
            job_id = stored["_id"] = new_id
            if await self.store.insert_missing([stored]):
                return await self._finish_save(job_id, stored, now)
        if not doc.depends:
            return job_id
        if await self.dependents.check_at_save(job_id, doc.depends, now):
            if doc.status == Status.WAITING:
                await self.manager.promote([job_id])
            return job_id
        return None

    async def save_many(
        self,
        docs: Sequence[JobDoc],
        cancel_repeats: bool = False,
        new_ids: Sequence[Id | None] | None = None,
        *,
        name: str = "docs",
    ) -> list[Id | None]:
        """Save many jobs: new jobs without dependencies are inserted in one round trip;
        the rest (resaves, dependencies, cancel_repeats of forever-repeating jobs) are saved
        one by one with jobSave's semantics. The ids in the order given (None: not saved).
        A batch whose jobs depend on others of it (a workflow) is saved by _save_graph: its
        new jobs in one round trip too, whatever their dependencies.

        The outcome is that of saving the jobs one by one in order: a forever-repeating job
        saved with cancel_repeats cancels the jobs of its type listed before it, not after.
        A resave of a job stored with another type raises InvalidArgument naming
        `{name}[i].type` before anything of the batch is written."""
        now = self.clock.now()
        ids: list[Id | None] = [None] * len(docs)
        given = list(new_ids) if new_ids is not None else [None] * len(docs)
        await self._check_types(
            [(doc, f"{name}[{i}]") for i, doc in enumerate(docs) if doc.id is not None]
        )
        plan = dependencies.plan_batch(
            [doc.depends for doc in docs],
            [g if doc.id is None else None for doc, g in zip(docs, given, strict=True)],
            [
                doc.id is None
                and given[i] is not None
                and doc.unique is None
                and not (cancel_repeats and doc.repeats == FOREVER)
                for i, doc in enumerate(docs)
            ],
        )
        if plan is not None:
            return await self._save_graph(docs, given, plan, cancel_repeats, name)
        bulk: list[tuple[int, Document]] = []

        async def insert_bulk() -> None:
            if not bulk:
                return
            stored = [document for _, document in bulk]
            for (i, _), document in zip(bulk, stored, strict=True):
                document["_id"] = given[i] if given[i] is not None else ObjectId()
            # Ids known up front make a retried batch insert only what is missing.
            existing = await self.store.insert_missing(stored)
            if existing:
                await self._check_same_jobs(
                    {
                        document["_id"]: (i, document)
                        for (i, _), document in zip(bulk, stored, strict=True)
                        if document["_id"] in existing
                    }
                )
            for (i, _), document in zip(bulk, stored, strict=True):
                ids[i] = document["_id"]
            bulk.clear()

        for i, doc in enumerate(docs):
            if cancel_repeats and doc.repeats == FOREVER and doc.id is None:
                await insert_bulk()  # the jobs before this one are among those it cancels
                ids[i] = await self.save(doc, cancel_repeats, given[i], name=f"{name}[{i}]")
            elif doc.id is not None or doc.depends or doc.unique is not None:
                ids[i] = await self.save(doc, cancel_repeats, given[i], name=f"{name}[{i}]")
            elif (stored := transitions.insert_document(doc, now)) is not None:
                bulk.append((i, stored))
                if len(bulk) >= INSERT_BATCH:  # only one batch of stored documents at a time
                    await insert_bulk()
            else:
                logger.warning("jobSave: schedule has no run before repeatUntil; not saved")
        await insert_bulk()
        return ids

    async def _save_graph(
        self,
        docs: Sequence[JobDoc],
        given: Sequence[Id | None],
        plan: dependencies.BatchPlan,
        cancel_repeats: bool,
        name: str,
    ) -> list[Id | None]:
        """Save a batch whose jobs depend on others of it (a workflow): its bulk in ordered
        inserts of INSERT_BATCH, dependents before their antecedents, each marked as its own
        save would have (DEPENDENTS, ANNOUNCED) and needing no check, its antecedents being
        new; then the rest one by one, antecedents first. A job whose schedule has no run is
        not saved, and its dependents are saved one by one (and cancelled, as missing their
        antecedent). Nothing runs before its antecedents are stored: a root is inserted
        after everything that depends on it."""
        now = self.clock.now()
        ids: list[Id | None] = [None] * len(docs)
        prepared: list[tuple[int, Document]] = []
        for i in plan.bulk:
            stored = transitions.insert_document(docs[i], now)
            if stored is None:
                logger.warning("jobSave: schedule has no run before repeatUntil; not saved")
                continue
            stored["_id"] = given[i]
            dependencies.mark_in_batch(stored, i in plan.antecedents, bool(docs[i].depends))
            prepared.append((i, stored))
        for start in range(0, len(prepared), INSERT_BATCH):
            chunk = prepared[start : start + INSERT_BATCH]
            existing = await self.store.insert_missing([d for _, d in chunk], ordered=True)
            if existing:
                await self._check_same_jobs(
                    {d["_id"]: (i, d) for i, d in chunk if d["_id"] in existing}
                )
            for i, stored in chunk:
                ids[i] = stored["_id"]
        for i in plan.rest:
            ids[i] = await self.save(docs[i], cancel_repeats, given[i], name=f"{name}[{i}]")
        return ids

    async def _insert_unique(self, doc: JobDoc, stored: Document, now: datetime) -> Id | None:
        """Insert a unique job (its `_id` chosen): None once it is stored, else the id of the
        job that holds its key. A job found holding it whose hold is over (its period, or
        past pending its states) lets go of it (dedup.release) and the insert is tried
        again. While another holds it, by the mode (`Unique.on_conflict`): "replace" cancels
        it (fenced by its still holding the key, so one that has started is left alone) and
        tries again, unless that job was saved after this one (a later `created`, or the
        same and a greater id): then this one is the one replaced, and is stored cancelled,
        so that concurrent saves of one key settle at once on the latest; "ignore" and
        "throttle" answer its id; "error" raises DuplicateJob; "keep_latest" and "debounce"
        give it this job's data (debounce: and push its start back) and answer its id. A
        holder that has started is kept by every mode but "error". The job's own id is
        answered if it is stored already (an earlier attempt whose reply was lost) or was
        stored cancelled."""
        unique = doc.unique
        assert unique is not None
        if self.store.unique_jobs is False:
            raise DatabaseError(
                "unique jobs need a unique index this collection cannot have (it is sharded)"
            )
        key = stored["_private"][UNIQUE.split(".", 1)[1]]
        own: Id = stored["_id"]
        for _ in range(UNIQUE_ATTEMPTS):
            try:
                return own if await self.store.insert_missing([stored]) else None
            except DatabaseError as exc:
                if not is_unique_conflict(exc):
                    raise
            found = await self._holder(key, unique.held_beyond_pending)
            if found is None:
                continue  # it started or was cancelled meanwhile
            holder: Id = found["_id"]
            if holder == own:
                return holder
            if not dedup.holds(found, now):
                await self.store.update_one(*dedup.release(found))
                continue
            mode = unique.on_conflict
            if mode == "error":
                raise DuplicateJob(key, holder)
            if mode in ("ignore", "throttle") or not dedup.not_started(found):
                return holder  # kept: "ignore", or a job that has started
            if mode == "replace":
                if _saved_later(found, stored):
                    await self.store.insert_missing([transitions.born_replaced(stored, doc, now)])
                    return own  # stored cancelled: save() answers None, as for a cancelled save
                await self.manager.replace(holder, key)
                continue
            start = dedup.earliest_start(doc, now)
            for query, update in dedup.refresh(holder, key, stored["data"], start, now):
                if await self.store.update_one(query, update):
                    return holder
        raise DatabaseError(
            f"unique key {key!r}: still taken after {UNIQUE_ATTEMPTS} attempts to save its job"
        )

    async def _holder(self, key: dict[str, Any], beyond_pending: bool) -> Document | None:
        """The job holding a unique key, pending first; past pending only for a save that
        holds its own key past pending (only such a save can meet such a holder)."""
        found = await self.store.find_one(dedup.holding(key, False), dedup.HOLDER)
        if found is None and beyond_pending:
            found = await self.store.find_one(dedup.holding(key, True), dedup.HOLDER)
        return found

    async def _check_same_jobs(self, given: dict[Id, tuple[int, Document]]) -> None:
        """Ids a batch found stored already must be the jobs the batch meant (an earlier
        attempt's); raise InvalidArgument naming the first that is another job."""
        stored = {
            d["_id"]: d
            for d in await self.store.find({"_id": {"$in": list(given)}}, {"type": 1, "data": 1})
        }
        for job_id, (i, document) in sorted(given.items(), key=lambda item: item[1][0]):
            found = stored.get(job_id)
            if found is None:
                raise DatabaseError(f"job {job_id}: a duplicate key, but no job has this id")
            if found.get("type") != document["type"] or not self.store.same(
                found.get("data"), document["data"]
            ):
                raise InvalidArgument(f"jobIds[{i}]", f"{job_id!r} is the id of another job")

    async def _finish_save(self, job_id: Id, given: Document, now: datetime) -> Id | None:
        """A save repeated after its reply was lost: the job is stored already. Finish what
        the first attempt may not have (dependency check, promotion), from what is stored.
        An id that names another job (another type or data) is refused."""
        stored = await self.store.find_one(
            {"_id": job_id}, {"status": 1, "depends": 1, "type": 1, "data": 1}
        )
        if stored is None:
            raise DatabaseError(f"job {job_id}: a duplicate key, but no job has this id")
        if stored.get("type") != given["type"] or not self.store.same(
            stored.get("data"), given["data"]
        ):
            raise InvalidArgument("jobId", f"{job_id!r} is the id of another job")
        if stored["status"] == Status.CANCELLED:
            return None
        if stored.get("depends") and not await self.dependents.check_at_save(
            job_id, stored["depends"], now
        ):
            return None
        if stored["status"] == Status.WAITING:
            await self.manager.promote([job_id])
        return job_id

    async def _resave(self, doc: JobDoc, now: datetime, name: str) -> Id | None:
        """Resubmit a paused job. The update's filter names the document's type, so a resave
        applies only to a job of that type; when it did not apply, a job stored under the id
        with another type raises InvalidArgument (no job's type changes, so that read is
        conclusive). With antecedents the type is checked first, so that a refused resave
        does not mark them either."""
        assert doc.id is not None
        query, update = transitions.resave(doc, now)
        if doc.depends:
            await self._check_types([(doc, name)])
            update = await self.dependents.announce_resave(doc.depends, update)
        if not await self.store.update_one(query, update):
            await self._check_types([(doc, name)])
            logger.warning("jobSave: job %s is not paused; only paused jobs can be resaved", doc.id)
            return None
        if await self.dependents.check_at_save(doc.id, doc.depends, now):
            await self.manager.promote([doc.id])
            return doc.id
        return None

    async def _check_types(self, resaves: Sequence[tuple[JobDoc, str]]) -> None:
        """Resaves (document, name in errors) keep their job's type and user: raise
        InvalidArgument naming `{name}.type` or `{name}.user_id` for the first whose stored
        job has another (a job not stored is not refused here: its resave matches nothing)."""
        if not resaves:
            return
        stored = {
            d["_id"]: (d.get("type"), _stored_user(d))
            for d in await self.store.find(
                {"_id": {"$in": [doc.id for doc, _ in resaves]}}, {"type": 1, USER: 1}
            )
        }
        for doc, name in resaves:
            if doc.id not in stored:
                continue
            stored_type, stored_user = stored[doc.id]
            if stored_type != doc.type:
                raise InvalidArgument(
                    f"{name}.type",
                    f"cannot change from {stored_type!r} to {doc.type!r} on a resave",
                )
            if stored_user != doc.user_id:
                raise InvalidArgument(
                    f"{name}.user_id",
                    f"cannot change from {stored_user!r} to {doc.user_id!r} on a resave",
                )


def _stored_user(stored: dict[str, Any]) -> Any:
    """The user a stored job (projected on USER) is for, or None."""
    private = stored.get("_private")
    return private.get(USER.split(".", 1)[1]) if isinstance(private, dict) else None
