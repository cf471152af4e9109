"""The server methods of job-collection, applied to MongoDB through the store.

Arguments arrive validated (see methods.py); each state change is one conditional update from
transitions.py. A transition that does not apply returns False/None and logs why. Calls between
operations stay inside this class: they bypass permissions and events, as in the original.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from bson import ObjectId

from . import transitions
from .clock import Clock
from .constants import (
    FOREVER,
    JOB_STATUS_CANCELLABLE,
    JOB_STATUS_REMOVABLE,
    JOB_STATUS_RESTARTABLE,
)
from .document import FOLLOW_UPS, REPEAT_OF, JobDoc, LaterSchedule
from .errors import DatabaseError, InvalidArgument, InvalidDocument
from .followups import FollowUps
from .reporting import Completer, Report
from .schedule import occurrences
from .store import Document, Store, transient
from .transitions import Id

logger = logging.getLogger("jobcollection")


def _identity(doc: Document) -> Document:
    return doc


class Operations:
    """Every job transition, given a store, a clock and whether the job server runs."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self.server_running = False
        self.claimed_run_ids: set[ObjectId] = set()
        self.unconfirmed_claims: dict[ObjectId, set[Id]] = {}
        """Claims not yet wholly handed over (a lost reply, a short read-back): each runId
        with the ids of its jobs that were. The next get_work hands over the others."""
        self._claiming: set[ObjectId] = set()
        """RunIds of claims in flight: their jobs are not recovered by a concurrent call."""
        self.quarantined: set[Id] = set()
        """Jobs whose expiry the server refused to write: not read again by later passes."""
        self.follow_ups = FollowUps(store, ready=self.job_ready, cancel=self.cancel_cascade)
        self.completer = Completer(store, clock, self.follow_ups, self.parse_private)
        self.scrub: Callable[[Document], Document] = _identity
        """Applied to every stored document before it is validated, on every read path."""

    def parse(self, raw: Document) -> JobDoc:
        """A stored document as a job: scrubbed, then validated (InvalidDocument if not)."""
        return JobDoc.from_mongo(self._scrubbed(raw))

    def parse_private(self, raw: Document) -> JobDoc:
        """As parse, keeping the application's `_private` (for the server's own use)."""
        scrubbed = self._scrubbed(raw)
        if "_private" in raw:
            scrubbed = {**scrubbed, "_private": raw["_private"]}
        return JobDoc.from_mongo(scrubbed, with_private=True)

    def _scrubbed(self, raw: Document) -> Document:
        try:
            scrubbed = self.scrub({k: v for k, v in raw.items() if k != "_private"})
        except Exception as exc:
            raise InvalidDocument(f"scrub raised {type(exc).__name__}: {exc}") from exc
        if not isinstance(scrubbed, dict):
            raise InvalidDocument(f"scrub returned {type(scrubbed).__name__}, not a document")
        return scrubbed

    # --- save --------------------------------------------------------------------------------

    async def job_save(
        self, doc: JobDoc, cancel_repeats: bool = False, new_id: Id | None = None
    ) -> Id | None:
        """Insert a new job (under `new_id` if given, which makes a retried save a no-op) or
        resubmit a paused one; its id, or None if it was not saved or was cancelled."""
        now = self.clock.now()
        prepared = transitions.prepare_save(doc, now)
        if prepared is None:
            logger.warning("jobSave: schedule has no run before repeatUntil; not saved")
            return None
        doc = prepared
        if doc.id is not None:
            return await self._resave(doc, now)
        if cancel_repeats and doc.repeats == FOREVER:
            query = transitions.cancel_repeats_filter(doc.type)
            if new_id is not None:
                query["_id"] = {"$ne": new_id}  # not this very job, saved by a lost attempt
            earlier = await self.store.find(query, {"_id": 1})
            if earlier:
                await self.job_cancel([d["_id"] for d in earlier])
        stored = transitions.insert_document(doc, now)
        job_id: Id
        if new_id is None:
            job_id = await self.store.insert_one(stored)
        else:
            job_id = stored["_id"] = new_id
            if await self.store.insert_missing([stored]):
                return await self._finish_save(job_id, stored, now)
        if not doc.depends:
            return job_id
        if await self._check_deps(job_id, doc.depends, now):
            if doc.status == "waiting":
                await self.job_ready([job_id])
            return job_id
        return None

    async def job_save_many(
        self,
        docs: Sequence[JobDoc],
        cancel_repeats: bool = False,
        new_ids: Sequence[Id | None] | None = None,
    ) -> list[Id | None]:
        """Save many jobs: new jobs without dependencies are inserted in one round trip;
        the rest (resaves, dependencies, cancel_repeats of forever-repeating jobs) are saved
        one by one with jobSave's semantics. The ids in the order given (None: not saved).

        The outcome is that of saving the jobs one by one in order: a forever-repeating job
        saved with cancel_repeats cancels the jobs of its type listed before it, not after."""
        now = self.clock.now()
        ids: list[Id | None] = [None] * len(docs)
        given = list(new_ids) if new_ids is not None else [None] * len(docs)
        bulk: list[tuple[int, JobDoc]] = []

        async def insert_bulk() -> None:
            if not bulk:
                return
            stored = [transitions.insert_document(doc, now) for _, doc in bulk]
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
                ids[i] = await self.job_save(doc, cancel_repeats, given[i])
            elif doc.id is not None or doc.depends:
                ids[i] = await self.job_save(doc, cancel_repeats, given[i])
            elif (prepared := transitions.prepare_save(doc, now)) is not None:
                bulk.append((i, prepared))
            else:
                logger.warning("jobSave: schedule has no run before repeatUntil; not saved")
        await insert_bulk()
        return ids

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
        if stored["status"] == "cancelled":
            return None
        if stored.get("depends") and not await self._check_deps(job_id, stored["depends"], now):
            return None
        if stored["status"] == "waiting":
            await self.job_ready([job_id])
        return job_id

    async def _resave(self, doc: JobDoc, now: datetime) -> Id | None:
        assert doc.id is not None
        query, update = transitions.resave(doc, now)
        if not await self.store.update_one(query, update):
            logger.warning("jobSave: job %s is not paused; only paused jobs can be resaved", doc.id)
            return None
        if await self._check_deps(doc.id, doc.depends, now):
            await self.job_ready([doc.id])
            return doc.id
        return None

    async def _check_deps(self, job_id: Id, depends: Sequence[Id], now: datetime) -> bool:
        """Resolve completed antecedents; cancel the job if one is missing, failed or cancelled."""
        if not depends:
            return True
        found = {
            d["_id"]: d
            for d in await self.store.find(
                {"_id": {"$in": list(depends)}}, {"status": 1, "runId": 1}
            )
        }
        resolved = [d for d in depends if found.get(d, {}).get("status") == "completed"]
        entries = [
            transitions.entry(
                now,
                "Dependency resolved",
                data={"dependency": {"id": d, "runId": found[d].get("runId")}},
            )
            for d in resolved
        ]
        doomed = False
        for dep in depends:
            status = found.get(dep, {}).get("status")
            if status is None:
                entries.append(transitions.entry(now, f"Antecedent job {dep} missing at save"))
            elif status in ("failed", "cancelled"):
                entries.append(transitions.entry(now, f"Antecedent job {status} before save"))
            else:
                continue
            doomed = True
        if entries:
            update: dict[str, Any] = {"$push": {"log": {"$each": entries}}}
            if resolved:
                # A set: a resave or a repeated save resolving an id again adds it once.
                update["$pull"] = {"depends": {"$in": resolved}}
                update["$addToSet"] = {"resolved": {"$each": resolved}}
            await self.store.update_one(
                {"_id": job_id, "status": {"$in": ["waiting", "paused"]}}, update
            )
        if doomed:
            await self.job_cancel([job_id])
            return False
        return True

    # --- claim and read ----------------------------------------------------------------------

    async def get_work(
        self, types: Sequence[str], max_jobs: int = 1, work_timeout_ms: int | None = None
    ) -> list[JobDoc]:
        """Claim up to max_jobs ready jobs under one runId: one round trip for one job (two
        through a mongos), three (find, claim, read back) for more; more only when another
        worker claims some of the same jobs first. Jobs an earlier call of this instance
        claimed but could not hand over come first. A claimed job whose stored document is
        not a valid job is failed for good, with the reason, instead of being handed over."""
        if not self.server_running:
            return []
        now = self.clock.now()
        claimed = await self._recover_claims(types, max_jobs, now)
        if len(claimed) < max_jobs:
            run_id = ObjectId()
            # Remembered before any write: if a reply is lost, the next get_work hands over
            # the jobs claimed under this runId (and a shutdown fails them), not losing them.
            self.claimed_run_ids.add(run_id)
            self.unconfirmed_claims[run_id] = set()
            self._claiming.add(run_id)
            update = transitions.claim(run_id, now, work_timeout_ms)
            wanted = max_jobs - len(claimed)
            try:
                try:
                    fresh, complete = await self._claim(types, wanted, run_id, update)
                except DatabaseError as exc:
                    if transient(exc):
                        raise
                    # A document refuses the claim's update (a poison document, such as a
                    # non-numeric `retries`): claim one by one, setting aside what refuses.
                    fresh, complete = await self._claim_each(types, wanted, update), True
            finally:
                self._claiming.discard(run_id)
            claimed += fresh
            if complete:
                self.unconfirmed_claims.pop(run_id, None)
        return await self._hand_over(claimed)

    async def _claim(
        self, types: Sequence[str], wanted: int, run_id: ObjectId, update: dict[str, Any]
    ) -> tuple[list[Document], bool]:
        """Claim up to `wanted` jobs; the documents claimed, and whether they are all the
        jobs claimed under run_id (False when a read-back came back short)."""
        if wanted == 1 and not self.store.routed:
            one = await self.store.find_one_and_update(
                transitions.claimable(types),
                update,
                transitions.NO_LOG,
                sort=transitions.CLAIM_SORT,
            )
            return ([] if one is None else [one]), True
        claimed: list[Document] = []
        complete = True
        while len(claimed) < wanted:
            limit = wanted - len(claimed)
            candidates = await self.store.find(
                transitions.claimable(types), {"_id": 1}, sort=transitions.CLAIM_SORT, limit=limit
            )
            if not candidates:
                break
            ids = [c["_id"] for c in candidates]
            if limit == 1:  # through a mongos: findAndModify must name the shard key (_id)
                one = await self.store.find_one_and_update(
                    transitions.claimable(types, ids[:1]) | {"_id": ids[0]},
                    update,
                    transitions.NO_LOG,
                )
                claimed += [] if one is None else [one]
                continue
            won = await self.store.update_many(transitions.claimable(types, ids), update)
            if won:
                got = {
                    d["_id"]: d
                    for d in await self.store.find(
                        {"_id": {"$in": ids}, "runId": run_id}, transitions.NO_LOG
                    )
                }
                claimed.extend(got[i] for i in ids if i in got)
                complete = complete and len(got) >= won
            if won == len(ids) and len(ids) < limit:
                break  # we hold every ready job the find saw: no need to look again
        return claimed, complete

    async def _claim_each(
        self, types: Sequence[str], wanted: int, update: dict[str, Any]
    ) -> list[Document]:
        """Claim candidates one at a time; one whose claim is refused is failed instead."""
        claimed: list[Document] = []
        candidates = await self.store.find(
            transitions.claimable(types), {"_id": 1}, sort=transitions.CLAIM_SORT, limit=wanted
        )
        for candidate in candidates:
            fence = transitions.claimable(types) | {"_id": candidate["_id"]}
            try:
                one = await self.store.find_one_and_update(fence, update, transitions.NO_LOG)
            except DatabaseError as exc:
                if transient(exc):
                    raise
                await self.set_aside(fence, None, f"it refuses to be claimed: {exc}")
                continue
            claimed += [] if one is None else [one]
        return claimed

    async def set_aside(self, fence: dict[str, Any], run_id: Id | None, reason: str) -> bool:
        """Fail for good a job whose document refuses the updates of its transitions (a
        poison document), so that it stops coming back: with the reason as its failure, or,
        if even that is refused, by its status alone. Whether it was set aside."""
        now = self.clock.now()
        logger.error("job %s: %s; failing it", fence.get("_id"), reason)
        for update in (
            transitions.fail_invalid(
                run_id, {"value": f"Invalid job document: {reason}"[:2000]}, now
            ),
            {"$set": {"status": "failed", "runId": None, "updated": now}},
        ):
            try:
                return bool(await self.store.update_one(fence, update))
            except DatabaseError as exc:
                if transient(exc):
                    return False
        return False

    async def _hand_over(self, claimed: list[Document]) -> list[JobDoc]:
        """The claimed documents as jobs, each recorded as handed over; invalid ones are
        failed for good (with the reason) instead."""
        jobs: list[JobDoc] = []
        invalid: list[Document] = []
        for raw in claimed:
            handed = self.unconfirmed_claims.get(raw.get("runId"))  # type: ignore[arg-type]
            if handed is not None:
                handed.add(raw["_id"])
            try:
                jobs.append(self.parse(raw))
            except InvalidDocument:
                invalid.append(raw)
        for raw in invalid:
            report = Report("fail", raw["_id"], raw["runId"], {"value": "invalid"}, fatal=True)
            try:
                await self.completer.submit(report)
            except Exception as exc:  # its lease, or the job server's shutdown, fails it later
                logger.error("getWork: could not fail invalid job %s: %s", raw["_id"], exc)
        return jobs

    async def _recover_claims(
        self, types: Sequence[str], max_jobs: int, now: datetime
    ) -> list[Document]:
        """Jobs of these types that an earlier get_work of this instance claimed but could
        not hand over (a lost reply, a short read-back), with their leases renewed."""
        runs = [r for r in self.unconfirmed_claims if r not in self._claiming]
        if not runs:
            return []
        held = await self.store.find(transitions.held_runs(runs), transitions.NO_LOG)
        unhanded = [d for d in held if d["_id"] not in self.unconfirmed_claims.get(d["runId"], ())]
        left = {d["runId"] for d in unhanded}
        for claim in runs:
            if claim not in left:  # every job of this claim was handed over, or has ended
                self.unconfirmed_claims.pop(claim, None)
        mine = [d for d in unhanded if d.get("type") in types][:max_jobs]
        for doc in mine:  # at once, before any await: a concurrent call must not take them
            self.unconfirmed_claims[doc["runId"]].add(doc["_id"])
        leases: dict[tuple[Id, int], list[Document]] = {}
        for doc in mine:
            if doc.get("workTimeout"):
                leases.setdefault((doc["runId"], doc["workTimeout"]), []).append(doc)
        for (run_id, timeout), docs in leases.items():
            renewal = transitions.lease_renewal(now, timeout)
            await self.store.update_many(
                {"_id": {"$in": [d["_id"] for d in docs]}, "runId": run_id, "status": "running"},
                renewal,
            )
            for doc in docs:
                doc.update(renewal["$set"])
        if mine:
            logger.warning(
                "getWork: handing over %d jobs claimed by a call that could not", len(mine)
            )
        return mine

    async def get_job(
        self, ids: Sequence[Id], get_log: bool = False, get_failures: bool = False
    ) -> list[JobDoc]:
        projection: dict[str, int] = {"_private": 0}
        if not get_log:
            projection["log"] = 0
        if not get_failures:
            projection["failures"] = 0
        found = {
            d["_id"]: d for d in await self.store.find({"_id": {"$in": list(ids)}}, projection)
        }
        return [self.parse(found[i]) for i in ids if i in found]

    # --- management --------------------------------------------------------------------------

    async def job_remove(self, ids: Sequence[Id]) -> bool:
        ids = await self._without_pending_repeats(ids)
        removed = await self.store.delete_many(transitions.removable(ids, JOB_STATUS_REMOVABLE))
        if not removed:
            logger.warning("jobRemove: no job was removable among %d ids", len(ids))
        return removed > 0

    async def _without_pending_repeats(self, ids: Sequence[Id]) -> list[Id]:
        """The ids less the repeats whose scheduling completion still has its follow-ups
        pending: removing one now would let those follow-ups insert it again."""
        repeats = await self.store.find(
            {"_id": {"$in": list(ids)}, REPEAT_OF: {"$exists": True}}, {REPEAT_OF: 1}
        )
        key = REPEAT_OF.split(".", 1)[1]
        origins = {
            r["_id"]: (o.get("id"), o.get("runId"))
            for r in repeats
            if isinstance(o := r.get("_private", {}).get(key), dict)
        }
        if not origins:
            return list(ids)
        pending = {
            (d["_id"], d["_private"][FOLLOW_UPS.split(".", 1)[1]].get("runId"))
            for d in await self.store.find(
                {"_id": {"$in": [i for i, _ in origins.values()]}, FOLLOW_UPS: {"$exists": True}},
                {FOLLOW_UPS: 1},
            )
        }
        blocked = {r for r, origin in origins.items() if origin in pending}
        if blocked:
            logger.warning(
                "jobRemove: %d repeat(s) kept until the follow-ups that scheduled them finish",
                len(blocked),
            )
        return [i for i in ids if i not in blocked]

    async def job_pause(self, ids: Sequence[Id]) -> bool:
        paused = await self.store.update_many(*transitions.pause(ids, self.clock.now()))
        if not paused:
            logger.warning("jobPause: no job was pausable among %d ids", len(ids))
        return paused > 0

    async def job_resume(self, ids: Sequence[Id]) -> bool:
        resumed = await self.store.update_many(*transitions.resume(ids, self.clock.now()))
        if resumed:
            await self.job_ready(ids)
        else:
            logger.warning("jobResume: no job was paused among %d ids", len(ids))
        return resumed > 0

    async def job_ready(
        self, ids: Sequence[Id] | None = None, time: datetime | None = None, force: bool = False
    ) -> bool:
        now = self.clock.now()
        query, update = transitions.ready(ids, now, time or now, force)
        return await self.store.update_many(query, update) > 0

    async def job_ready_requested(
        self, ids: Sequence[Id] | None = None, time: datetime | None = None, force: bool = False
    ) -> bool:
        """jobReady called as a method: job_ready, saying why when named jobs stay put."""
        readied = await self.job_ready(ids, time, force)
        if not readied and ids is not None:
            logger.warning(
                "jobReady: no job among %d ids was waiting and due%s",
                len(ids),
                "" if force else " with its dependencies resolved",
            )
        return readied

    async def job_cancel(
        self, ids: Sequence[Id], antecedents: bool = False, dependents: bool = True
    ) -> bool:
        cancelled = await self._cascade(
            ids, antecedents, dependents, JOB_STATUS_CANCELLABLE, self._cancel
        )
        if not cancelled:
            logger.warning("jobCancel: no job was cancellable among %d ids", len(ids))
        return cancelled

    async def cancel_cascade(self, ids: Sequence[Id]) -> bool:
        """Cancel jobs and, transitively, their dependents (a follow-up of a final failure):
        jobs already cancelled still lead the cascade on to theirs, at every level, so a
        cascade cut short by a fault is carried on to its end."""
        through = [*JOB_STATUS_CANCELLABLE, "cancelled"]
        return await self._cascade(ids, False, True, through, self._cancel)

    async def _cancel(self, ids: Sequence[Id]) -> int:
        return await self.store.update_many(*transitions.cancel(ids, self.clock.now()))

    async def job_restart(
        self,
        ids: Sequence[Id],
        retries: int = 0,
        until: datetime | None = None,
        antecedents: bool = True,
        dependents: bool = False,
    ) -> bool:
        async def restart(level: Sequence[Id]) -> int:
            level = await self._runnable(level)
            if not level:
                return 0
            now = self.clock.now()
            count = 0
            for query, update in transitions.restart(level, retries, until, now):
                count += await self.store.update_many(query, update)
            if count:
                await self.job_ready(level)
            return count

        restarted = await self._cascade(
            ids, antecedents, dependents, JOB_STATUS_RESTARTABLE, restart
        )
        if not restarted:
            logger.warning("jobRestart: no job was restartable among %d ids", len(ids))
        return restarted

    async def _runnable(self, ids: Sequence[Id]) -> list[Id]:
        """The ids that could still run: none of their pending antecedents, directly or
        through theirs, was removed. Restarting any other job would leave it waiting forever."""
        graph: dict[Id, list[Id]] = {}
        missing: set[Id] = set()
        frontier = set(ids)
        while frontier:
            found = {
                d["_id"]: d.get("depends", [])
                for d in await self.store.find({"_id": {"$in": list(frontier)}}, {"depends": 1})
            }
            missing |= frontier - set(found)
            graph.update(found)
            frontier = {a for depends in found.values() for a in depends} - set(graph) - missing
        doomed: dict[Id, bool] = {}

        def is_doomed(job_id: Id) -> bool:
            if job_id in missing:
                return True
            if job_id not in doomed:
                doomed[job_id] = False  # a cycle does not doom a job by itself
                doomed[job_id] = any(is_doomed(a) for a in graph.get(job_id, []))
            return doomed[job_id]

        runnable = []
        for job_id in ids:
            if any(is_doomed(a) for a in graph.get(job_id, [])):
                logger.warning("jobRestart: job %s waits on an antecedent that was removed", job_id)
            else:
                runnable.append(job_id)
        return runnable

    async def _cascade(
        self,
        ids: Sequence[Id],
        antecedents: bool,
        dependents: bool,
        statuses: Sequence[str],
        apply: Any,
    ) -> bool:
        """Apply a transition to ids, then to their related jobs in `statuses`, transitively."""
        changed = False
        seen: set[Id] = set()
        level = list(ids)
        while level:
            seen.update(level)
            changed = bool(await apply(level)) or changed
            related: list[Id] = []
            if antecedents:
                jobs = await self.store.find({"_id": {"$in": level}}, {"depends": 1})
                ante = [a for j in jobs for a in j.get("depends", [])]
                if ante:
                    related += [
                        d["_id"]
                        for d in await self.store.find(
                            {"_id": {"$in": ante}, "status": {"$in": list(statuses)}}, {"_id": 1}
                        )
                    ]
            if dependents:
                related += [
                    d["_id"]
                    for d in await self.store.find(
                        {"depends": {"$in": level}, "status": {"$in": list(statuses)}}, {"_id": 1}
                    )
                ]
            level = [r for r in dict.fromkeys(related) if r not in seen]
        return changed

    async def job_rerun(
        self,
        job_id: Id,
        repeats: int = 0,
        until: datetime | None = None,
        wait_ms: int | None = None,
    ) -> Id | None:
        raw = await self.store.find_one(
            {"_id": job_id, "status": "completed"}, {"log": 0, "failures": 0}
        )
        if raw is None:
            logger.warning("jobRerun: job %s is not completed", job_id)
            return None
        doc = self.parse_private(raw)
        now = self.clock.now()
        if wait_ms is None:
            wait_ms = self._rerun_wait_ms(doc, now)
            if wait_ms is None:
                logger.warning("jobRerun: job %s has no next scheduled run", job_id)
                return None
        clone = transitions.rerun_document(doc, repeats, until or doc.repeat_until, wait_ms, now)
        new_id: Id = await self.store.insert_one(clone)
        return new_id

    @staticmethod
    def _rerun_wait_ms(doc: JobDoc, now: datetime) -> int | None:
        wait = doc.repeat_wait
        if isinstance(wait, int):
            return wait
        if isinstance(wait, LaterSchedule):
            return None
        upcoming = occurrences(wait, now, 1)
        return int((upcoming[0] - now).total_seconds() * 1000) if upcoming else None

    # --- worker reports ----------------------------------------------------------------------

    async def job_log(
        self,
        job_id: Id,
        run_id: Id | None,
        message: str,
        level: str = "info",
        data: dict[str, Any] | None = None,
    ) -> bool:
        now = self.clock.now()
        found = await self.store.find_one_and_update(
            {"_id": job_id},
            transitions.log_line(now, message, level, run_id, data),
            {"status": 1, "runId": 1, "workTimeout": 1},
        )
        if found is None:
            logger.warning("jobLog: job %s not found", job_id)
            return False
        if run_id is not None:
            await self._renew_lease(found, run_id, now)
        return True

    async def _renew_lease(self, found: Document, run_id: Id, now: datetime) -> None:
        """Logging or progress by the current holder is a heartbeat: push expiresAfter out."""
        timeout = found.get("workTimeout")
        if found.get("status") == "running" and found.get("runId") == run_id and timeout:
            await self.store.update_one(
                transitions.held(found["_id"], run_id), transitions.lease_renewal(now, timeout)
            )

    async def job_progress(
        self, job_id: Id, run_id: Id, completed: float, total: float
    ) -> bool | None:
        if not self.server_running:
            return None
        now = self.clock.now()
        found = await self.store.find_one_and_update(
            transitions.held(job_id, run_id),
            transitions.progress(now, completed, total),
            {"status": 1, "runId": 1, "workTimeout": 1},
        )
        if found is None:
            logger.warning("jobProgress: job %s is not running under run %s", job_id, run_id)
            return False
        await self._renew_lease(found, run_id, now)
        return True

    async def renew_leases(self, ids: Sequence[Id], run_id: Id) -> list[Id]:
        """Extend the leases of jobs held under one runId by their workTimeout; the ids still
        held. Jobs of one claim share a work timeout, so this is one read and one write."""
        held = await self.store.find(
            {"_id": {"$in": list(ids)}, "runId": run_id, "status": "running"}, {"workTimeout": 1}
        )
        by_timeout: dict[int, list[Id]] = {}
        for job in held:
            if job.get("workTimeout"):
                by_timeout.setdefault(job["workTimeout"], []).append(job["_id"])
        now = self.clock.now()
        for timeout, group in by_timeout.items():
            await self.store.update_many(
                {"_id": {"$in": group}, "runId": run_id, "status": "running"},
                transitions.lease_renewal(now, timeout),
            )
        return [job["_id"] for job in held]

    async def job_done(
        self,
        job_id: Id,
        run_id: Id,
        result: dict[str, Any],
        repeat_id: bool = False,
        delay_deps_ms: int | None = None,
    ) -> bool | Id:
        """Complete a held job, schedule its repeat and resolve its dependents; with
        repeat_id, the repeat's id when one was scheduled."""
        report = Report(
            "done", job_id, run_id, result, repeat_id=repeat_id, delay_deps_ms=delay_deps_ms
        )
        return await self.completer.submit(report)

    async def job_fail(
        self, job_id: Id, run_id: Id, error: dict[str, Any], fatal: bool = False
    ) -> bool:
        """Fail a held job: back to waiting while retries and time allow, else failed (and
        its dependents cancelled)."""
        return bool(await self.completer.submit(Report("fail", job_id, run_id, error, fatal)))

    async def job_release(self, ids: Sequence[Id], run_id: Id) -> list[Id]:
        """Hand jobs held under one runId back, ready, without counting the attempt (a worker
        that will not start them); the ids released."""
        held_now = {**transitions.held_runs([run_id]), "_id": {"$in": list(ids)}}
        held = [j["_id"] for j in await self.store.find(held_now, {"_id": 1})]
        if not held:
            return []
        released = await self.store.update_many(
            *transitions.release(held, run_id, self.clock.now())
        )
        if released < len(held):  # some changed hands meanwhile: which were released?
            kept = {j["_id"] for j in await self.store.find(held_now, {"_id": 1})}
            return [job_id for job_id in held if job_id not in kept]
        return held

    # --- job server passes -------------------------------------------------------------------

    async def fail_expired(self) -> int:
        """Fail (non-fatally) every running job whose lease ran out; the number failed. Each
        job is judged alone: one whose failure cannot be written is logged and skipped, and if
        the server refused the write, later passes of this instance do not read it again."""
        query = transitions.expired(self.clock.now())
        if self.quarantined:
            query["_id"] = {"$nin": list(self.quarantined)}
        expired = await self.store.find(query, {"runId": 1})
        return await self._fail_each(expired, transitions.EXPIRED_ERROR, expired=True)

    async def fail_claimed_running(self) -> int:
        """At shutdown: fail the jobs still running under runIds this instance handed out.
        RunIds of jobs that could not be failed are kept, so that a later call tries again."""
        if not self.claimed_run_ids:
            return 0
        running = await self.store.find(
            transitions.held_runs(list(self.claimed_run_ids)), {"runId": 1}
        )
        failed = await self._fail_each(running, transitions.SHUTDOWN_ERROR)
        left = await self.store.find(
            transitions.held_runs(list(self.claimed_run_ids)), {"runId": 1}
        )
        self.claimed_run_ids = {j["runId"] for j in left}
        self.unconfirmed_claims.clear()
        return failed

    async def _fail_each(
        self, jobs: Sequence[Document], error: dict[str, Any], *, expired: bool = False
    ) -> int:
        """Fail held jobs non-fatally, bundled; the number failed. Errors are logged per job."""
        reports = [Report("fail", j["_id"], j["runId"], dict(error), expired=expired) for j in jobs]
        outcomes = await asyncio.gather(
            *(self.completer.submit(r) for r in reports), return_exceptions=True
        )
        failed = 0
        for report, outcome in zip(reports, outcomes, strict=True):
            if isinstance(outcome, Exception):
                logger.error("job %s: could not fail it: %s", report.job_id, outcome)
                if not transient(outcome):
                    fence = transitions.held(report.job_id, report.run_id)
                    if not await self.set_aside(fence, report.run_id, f"{outcome}"):
                        self.quarantined.add(report.job_id)
            elif isinstance(outcome, BaseException):
                raise outcome
            elif outcome:
                failed += 1
        return failed

    async def finish_follow_ups(self) -> int:
        """Finish the follow-ups (repeats, dependents) that faults left pending."""
        return await self.follow_ups.finish_stored(self.clock.now(), self.parse_private)

    async def forget_finished_runs(self) -> None:
        """Drop remembered runIds with no running job left, so the set stays small."""
        if not self.claimed_run_ids:
            return
        live = await self.store.find(
            transitions.held_runs(list(self.claimed_run_ids)), {"runId": 1}
        )
        self.claimed_run_ids &= {j["runId"] for j in live}
