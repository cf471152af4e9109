"""The server methods of job-collection, applied to MongoDB through the store.

Arguments arrive validated (see methods.py); each state change is one conditional update from
rules.py. A transition that does not apply returns False/None and logs why. Calls between
operations stay inside this class: they bypass permissions and events, as in the original.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from bson import ObjectId

from . import rules
from .clock import Clock
from .completion import Completer, Report
from .constants import (
    FOREVER,
    JOB_STATUS_CANCELLABLE,
    JOB_STATUS_REMOVABLE,
    JOB_STATUS_RESTARTABLE,
)
from .document import JobDoc, LaterSchedule
from .driver import Document, Store
from .rules import Id
from .schedule import occurrences

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
        self.unconfirmed_claims: set[ObjectId] = set()
        """runIds of claims whose get_work did not return (a lost reply)."""
        self.completer = Completer(self)
        self.scrub: Callable[[Document], Document] = _identity
        """Applied to each document getJob and getWork return, before validation."""

    # --- save --------------------------------------------------------------------------------

    async def job_save(
        self, doc: JobDoc, cancel_repeats: bool = False, new_id: Id | None = None
    ) -> Id | None:
        """Insert a new job (under `new_id` if given, which makes a retried save a no-op) or
        resubmit a paused one; its id, or None if it was not saved or was cancelled."""
        now = self.clock.now()
        prepared = rules.prepare_save(doc, now)
        if prepared is None:
            logger.warning("jobSave: schedule has no run before repeatUntil; not saved")
            return None
        doc = prepared
        if doc.id is not None:
            return await self._resave(doc, now)
        if cancel_repeats and doc.repeats == FOREVER:
            query = rules.cancel_repeats_filter(doc.type)
            if new_id is not None:
                query["_id"] = {"$ne": new_id}  # not this very job, saved by a lost attempt
            earlier = await self.store.find(query, {"_id": 1})
            if earlier:
                await self.job_cancel([d["_id"] for d in earlier])
        stored = rules.insert_document(doc, now)
        job_id: Id
        if new_id is None:
            job_id = await self.store.insert_one(stored)
        else:
            job_id = stored["_id"] = new_id
            if not await self.store.insert_new(stored):
                return await self._finish_save(job_id, now)
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
            stored = [rules.insert_document(doc, now) for _, doc in bulk]
            for (i, _), document in zip(bulk, stored, strict=True):
                document["_id"] = given[i] if given[i] is not None else ObjectId()
            # Ids known up front make a retried batch insert only what is missing.
            inserted = await self.store.insert_many(stored, skip_existing=True)
            for (i, _), job_id in zip(bulk, inserted, strict=True):
                ids[i] = job_id
            bulk.clear()

        for i, doc in enumerate(docs):
            if cancel_repeats and doc.repeats == FOREVER and doc.id is None:
                await insert_bulk()  # the jobs before this one are among those it cancels
                ids[i] = await self.job_save(doc, cancel_repeats, given[i])
            elif doc.id is not None or doc.depends:
                ids[i] = await self.job_save(doc, cancel_repeats, given[i])
            elif (prepared := rules.prepare_save(doc, now)) is not None:
                bulk.append((i, prepared))
            else:
                logger.warning("jobSave: schedule has no run before repeatUntil; not saved")
        await insert_bulk()
        return ids

    async def _finish_save(self, job_id: Id, now: datetime) -> Id | None:
        """A save repeated after its reply was lost: the job is stored already. Finish what
        the first attempt may not have (dependency check, promotion), from what is stored."""
        stored = await self.store.find_one({"_id": job_id}, {"status": 1, "depends": 1})
        if stored is None or stored["status"] == "cancelled":
            return None
        if stored.get("depends") and not await self._check_deps(job_id, stored["depends"], now):
            return None
        if stored["status"] == "waiting":
            await self.job_ready([job_id])
        return job_id

    async def _resave(self, doc: JobDoc, now: datetime) -> Id | None:
        assert doc.id is not None
        query, update = rules.resave(doc, now)
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
            rules.entry(
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
                entries.append(rules.entry(now, f"Antecedent job {dep} missing at save"))
            elif status in ("failed", "cancelled"):
                entries.append(rules.entry(now, f"Antecedent job {status} before save"))
            else:
                continue
            doomed = True
        if entries:
            update: dict[str, Any] = {"$push": {"log": {"$each": entries}}}
            if resolved:
                update["$pull"] = {"depends": {"$in": resolved}}
                update["$push"]["resolved"] = {"$each": resolved}
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
        """Claim up to max_jobs ready jobs under one runId: one round trip for one job; three
        (find, claim, read back) for more, more only when another worker claims some of the
        same jobs first."""
        if not self.server_running:
            return []
        now = self.clock.now()
        claimed = await self._recover_claims(types, max_jobs, now)
        run_id = ObjectId()
        update = rules.claim(run_id, now, work_timeout_ms)
        # Remembered before any write: if a reply is lost, the next get_work hands over the
        # jobs claimed under this runId (and a shutdown fails them) instead of losing them.
        self.claimed_run_ids.add(run_id)
        self.unconfirmed_claims.add(run_id)
        if max_jobs - len(claimed) == 1:
            one = await self.store.find_one_and_update(
                rules.claimable(types), update, rules.NO_LOG, sort=rules.CLAIM_SORT
            )
            claimed += [one] if one is not None else []
        while len(claimed) < max_jobs:
            limit = max_jobs - len(claimed)
            candidates = await self.store.find(
                rules.claimable(types), {"_id": 1}, sort=rules.CLAIM_SORT, limit=limit
            )
            if not candidates:
                break
            ids = [c["_id"] for c in candidates]
            won = await self.store.update_many(rules.claimable(types, ids), update)
            if won:
                got = {
                    d["_id"]: d
                    for d in await self.store.find(
                        {"_id": {"$in": ids}, "runId": run_id}, rules.NO_LOG
                    )
                }
                claimed.extend(got[i] for i in ids if i in got)
            if won == len(ids) and len(ids) < limit:
                break  # we hold every ready job the find saw: no need to look again
        self.unconfirmed_claims.discard(run_id)
        return [self._returned(d) for d in claimed]

    async def _recover_claims(
        self, types: Sequence[str], max_jobs: int, now: datetime
    ) -> list[Document]:
        """Jobs of these types that an earlier get_work of this instance claimed but could
        not hand over (its reply was lost), with their leases renewed from now."""
        if not self.unconfirmed_claims:
            return []
        held = await self.store.find(
            {"runId": {"$in": list(self.unconfirmed_claims)}, "status": "running"}, rules.NO_LOG
        )
        mine = [d for d in held if d.get("type") in types][:max_jobs]
        taken = {d["_id"] for d in mine}
        self.unconfirmed_claims = {d["runId"] for d in held if d["_id"] not in taken}
        leases: dict[tuple[Id, int], list[Document]] = {}
        for doc in mine:
            if doc.get("workTimeout"):
                leases.setdefault((doc["runId"], doc["workTimeout"]), []).append(doc)
        for (run_id, timeout), docs in leases.items():
            renewal = rules.lease_renewal(now, timeout)
            await self.store.update_many(
                {"_id": {"$in": [d["_id"] for d in docs]}, "runId": run_id, "status": "running"},
                renewal,
            )
            for doc in docs:
                doc.update(renewal["$set"])
        if mine:
            logger.warning(
                "getWork: handing over %d jobs claimed by a call whose reply was lost", len(mine)
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
        return [self._returned(found[i]) for i in ids if i in found]

    def _returned(self, raw: Document) -> JobDoc:
        """A stored document as handed to callers: scrubbed, then validated."""
        return JobDoc.from_mongo(self.scrub(raw))

    # --- management --------------------------------------------------------------------------

    async def job_remove(self, ids: Sequence[Id]) -> bool:
        removed = await self.store.delete_many(rules.removable(ids, JOB_STATUS_REMOVABLE))
        if not removed:
            logger.warning("jobRemove: no job was removable among %d ids", len(ids))
        return removed > 0

    async def job_pause(self, ids: Sequence[Id]) -> bool:
        paused = await self.store.update_many(*rules.pause(ids, self.clock.now()))
        if not paused:
            logger.warning("jobPause: no job was pausable among %d ids", len(ids))
        return paused > 0

    async def job_resume(self, ids: Sequence[Id]) -> bool:
        resumed = await self.store.update_many(*rules.resume(ids, self.clock.now()))
        if resumed:
            await self.job_ready(ids)
        else:
            logger.warning("jobResume: no job was paused among %d ids", len(ids))
        return resumed > 0

    async def job_ready(
        self, ids: Sequence[Id] | None = None, time: datetime | None = None, force: bool = False
    ) -> bool:
        now = self.clock.now()
        query, update = rules.ready(ids, now, time or now, force)
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

    async def _cancel(self, ids: Sequence[Id]) -> int:
        return await self.store.update_many(*rules.cancel(ids, self.clock.now()))

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
            for query, update in rules.restart(level, retries, until, now):
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
        doc = JobDoc.from_mongo(raw, with_private=True)
        now = self.clock.now()
        if wait_ms is None:
            wait_ms = self._rerun_wait_ms(doc, now)
            if wait_ms is None:
                logger.warning("jobRerun: job %s has no next scheduled run", job_id)
                return None
        clone = rules.rerun_document(doc, repeats, until or doc.repeat_until, wait_ms, now)
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
            rules.log_line(now, message, level, run_id, data),
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
                rules.held(found["_id"], run_id), rules.lease_renewal(now, timeout)
            )

    async def job_progress(
        self, job_id: Id, run_id: Id, completed: float, total: float
    ) -> bool | None:
        if not self.server_running:
            return None
        now = self.clock.now()
        found = await self.store.find_one_and_update(
            rules.held(job_id, run_id),
            rules.progress(now, completed, total),
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
                rules.lease_renewal(now, timeout),
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

    # --- job server passes -------------------------------------------------------------------

    async def fail_expired(self) -> int:
        """Fail (non-fatally) every running job whose lease ran out; the number failed."""
        expired = await self.store.find(rules.expired(self.clock.now()), {"runId": 1})
        failed = 0
        for job in expired:
            failed += await self.job_fail(job["_id"], job["runId"], dict(rules.EXPIRED_ERROR))
        return failed

    async def fail_claimed_running(self) -> int:
        """At shutdown: fail the jobs still running under runIds this instance handed out."""
        if not self.claimed_run_ids:
            return 0
        running = await self.store.find(
            {"status": "running", "runId": {"$in": list(self.claimed_run_ids)}}, {"runId": 1}
        )
        failed = 0
        for job in running:
            failed += await self.job_fail(job["_id"], job["runId"], dict(rules.SHUTDOWN_ERROR))
        self.claimed_run_ids.clear()
        return failed

    async def forget_finished_runs(self) -> None:
        """Drop remembered runIds with no running job left, so the set stays small."""
        if not self.claimed_run_ids:
            return
        live = await self.store.find(
            {"status": "running", "runId": {"$in": list(self.claimed_run_ids)}}, {"runId": 1}
        )
        self.claimed_run_ids &= {j["runId"] for j in live}
