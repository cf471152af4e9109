"""Managing jobs: reading them, and the transitions any manager may ask for (pause, resume,
promote, cancel, restart, rerun, remove), with their cascades over antecedents and dependents.

Arguments arrive validated; each state change is one conditional update from rules/transitions.py.
A transition that does not apply returns False/None and logs why, as job-collection does.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from ..model import validation as v
from ..model.clock import Clock
from ..model.constants import (
    JOB_STATUS_CANCELLABLE,
    JOB_STATUS_PENDING,
    JOB_STATUS_REMOVABLE,
    JOB_STATUS_RESTARTABLE,
    JOB_STATUSES,
    Status,
)
from ..model.document import (
    CASCADE,
    EXPIRES,
    FOLLOW_UPS,
    REMOVE_AFTER,
    REPEAT_OF,
    UNIQUE,
    USER,
    JobDoc,
    LaterSchedule,
    assume_utc,
)
from ..model.errors import InvalidDocument
from ..model.ops import Restart
from ..model.queries import JobQuery, encode_cursor
from ..model.schedule import occurrences
from ..model.types import Due, Filter, Id, Update
from ..mongo.store import Store
from ..rules import deadlines, dependencies, transitions
from .reading import Reader

logger = logging.getLogger("jobcollection")

Apply = Callable[[Sequence[Id]], Awaitable[int]]
OVERDUE_BATCH = 1000
"""The most pending jobs past their deadlines a job-server pass cancels (the next goes on)."""


class Manager:
    """Reads jobs and applies the management transitions."""

    def __init__(self, store: Store, clock: Clock, reader: Reader) -> None:
        self.store = store
        self.clock = clock
        self.reader = reader

    async def get_jobs(
        self, ids: Sequence[Id], get_log: bool = False, get_failures: bool = False
    ) -> list[JobDoc]:
        projection: dict[str, int] = {}  # `_private` is read: it holds a cron schedule
        if not get_log:
            projection["log"] = 0
        if not get_failures:
            projection["failures"] = 0
        found = {
            d["_id"]: d for d in await self.store.find({"_id": {"$in": list(ids)}}, projection)
        }
        return [self.reader.job(found[i]) for i in ids if i in found]

    async def remove(self, ids: Sequence[Id]) -> bool:
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

    async def pause(self, ids: Sequence[Id]) -> bool:
        paused = await self.store.update_many(*transitions.pause(ids, self.clock.now()))
        if not paused:
            logger.warning("jobPause: no job was pausable among %d ids", len(ids))
        return paused > 0

    async def resume(self, ids: Sequence[Id]) -> bool:
        resumed = await self.store.update_many(*transitions.resume(ids, self.clock.now()))
        if resumed:
            await self.promote(ids)
        else:
            logger.warning("jobResume: no job was paused among %d ids", len(ids))
        return resumed > 0

    async def promote(
        self,
        ids: Sequence[Id] | None = None,
        time: datetime | None = None,
        force: bool = False,
        *,
        conditional: bool = False,
    ) -> bool:
        """Promote waiting jobs that are due and have nothing left to wait for (named ones, or
        all); whether any was. With `conditional` (some of them may run only if an
        antecedent failed: RUN_IF), those whose condition is not met are cancelled instead,
        and their dependents follow their policies; so they are on every pass over all
        jobs. Quiet: for the library's own use."""
        now = self.clock.now()
        query, update = transitions.ready(ids, now, time or now, force)
        promoted = await self.store.update_many(query, update) > 0
        if conditional or ids is None:
            unmet = await self.store.find(transitions.unmet(ids), {"_id": 1})
            if unmet:
                await self.cancel([d["_id"] for d in unmet])
        return promoted

    async def ready_due(self, types: Sequence[str]) -> Due:
        """Promote the due jobs of these types; if none was, find when the next falls due
        (served by the index on type, status and after)."""
        now = self.clock.now()
        promoted = await self.store.update_many(*transitions.ready(None, now, now, False, types))
        if promoted:
            return Due(promoted)
        nearest = await self.store.find(
            transitions.waiting_on_time(types), {"after": 1}, sort=[("after", 1)], limit=1
        )
        return Due(0, assume_utc(nearest[0]["after"]) if nearest else None)

    async def ready(
        self, ids: Sequence[Id] | None = None, time: datetime | None = None, force: bool = False
    ) -> bool:
        """jobReady: promote, saying why when named jobs stay put."""
        readied = await self.promote(ids, time, force)
        if not readied and ids is not None:
            logger.warning(
                "jobReady: no job among %d ids was waiting and due%s",
                len(ids),
                "" if force else " with its dependencies resolved",
            )
        return readied

    async def cancel(
        self, ids: Sequence[Id], antecedents: bool = False, dependents: bool = True
    ) -> bool:
        """Cancel jobs, then, with `dependents`, the dependents of those cancelled (now, or
        before: a cancel repeated after a fault carries its cascade on) by their failure
        policies (`ended`); a job that completed or failed is left to its own follow-ups.
        With `antecedents`, job-collection's cascade both ways: every job related to these,
        transitively, whatever its policy."""
        if antecedents:
            cancelled = await self._cascade(
                ids, True, dependents, JOB_STATUS_CANCELLABLE, self._cancel
            )
        elif not dependents:
            cancelled = await self._cancel(ids) > 0
        else:
            _, cancelled = await self._cancel_following(ids, lambda: self._cancel(ids))
        if not cancelled:
            logger.warning("jobCancel: no job was cancellable among %d ids", len(ids))
        return cancelled

    async def _cancel_following(
        self, ids: Sequence[Id], cancel: Callable[[], Awaitable[int]]
    ) -> tuple[int, bool]:
        """Run `cancel` (a cancel of jobs among ids), then have the dependents of those
        cancelled follow their failure policies (`ended`). Marked first, cleared last: a
        cascade a fault cuts short is carried on by a pass. How many `cancel` cancelled, and
        whether any job changed."""
        marked = await self.store.update_many(*dependencies.cascade_begins(ids, self.clock.now()))
        count = await cancel()
        changed = count > 0
        ended = ids if count == len(set(ids)) else await self._cancelled_among(ids)
        if ended:
            changed = await self.ended(dict.fromkeys(ended, Status.CANCELLED)) or changed
        if marked:
            await self.store.update_many(*dependencies.cascade_done(ids))
        return count, changed

    async def cancel_run(self, job_id: Id, run_id: Id, reason: str, by: Any) -> bool:
        """Cancel a job its worker gave up on (jobFail's `cancel`), fenced by its run and
        claimer, then have its dependents follow their failure policies, as after any
        cancel. Whether it was cancelled (False: the claim is lost, or the cancel was made
        already and its reply lost)."""
        now = self.clock.now()
        fence, update = transitions.cancel_run(job_id, run_id, now, reason, by)
        count, _ = await self._cancel_following([job_id], lambda: self._apply_cancel(fence, update))
        return count > 0

    async def expire_overdue(self, now: datetime) -> int:
        """Cancel the pending jobs past their deadlines (`Job.expires`; the job server's
        pass): at most OVERDUE_BATCH a pass (the next pass goes on), found through the
        partial index on the deadline. How many were cancelled."""
        found = await self.store.find(deadlines.overdue(now), {EXPIRES: 1}, limit=OVERDUE_BATCH)
        overdue = {d["_id"]: at for d in found if isinstance(at := _deadline(d), datetime)}
        return await self.expire(overdue) if overdue else 0

    async def expire(self, overdue: Mapping[Id, datetime], run_id: Id | None = None) -> int:
        """Cancel jobs not started by their deadlines (`overdue`: each one's), with the
        reason in their logs (rules/deadlines.py): pending ones, or, with `run_id`, ones a
        claim under it took late. Each write is fenced by the status (and runId) it expects
        and by the deadline, which a resave may have changed. Their dependents then follow
        their failure policies, as after any cancel. How many were cancelled."""
        now = self.clock.now()
        by_deadline: dict[datetime, list[Id]] = {}
        for job_id, at in overdue.items():
            by_deadline.setdefault(at, []).append(job_id)

        async def cancel() -> int:
            count = 0
            for at, group in by_deadline.items():
                count += await self._apply_cancel(*deadlines.expire(group, at, now, run_id))
            return count

        count, _ = await self._cancel_following(list(overdue), cancel)
        return count

    async def carry_on_cancels(self, now: datetime) -> int:
        """Finish the cascades of cancels a fault cut short (the job server's pass): apply
        the failure policies of the dependents of the marked jobs that are cancelled, then
        clear their marks; clear the marks of jobs that were never cancelled after a grace
        (their cancel may be under way). How many cascades were carried on."""
        found = await self.store.find(*dependencies.cascades_pending(now))
        cancelled = [d["_id"] for d in found if d.get("status") == Status.CANCELLED]
        grace = now - dependencies.CASCADE_GRACE
        stale = [
            d["_id"]
            for d in found
            if d.get("status") != Status.CANCELLED
            and isinstance(mark := assume_utc(_cascade_mark(d)), datetime)
            and mark < grace
        ]
        if cancelled:
            await self.ended(dict.fromkeys(cancelled, Status.CANCELLED))
        if cancelled or stale:
            await self.store.update_many(*dependencies.cascade_done([*cancelled, *stale]))
        return len(cancelled)

    async def _cancelled_among(self, ids: Sequence[Id]) -> list[Id]:
        """The jobs among these that are cancelled."""
        found = await self.store.find(
            {"_id": {"$in": list(ids)}, "status": Status.CANCELLED}, {"_id": 1}
        )
        return [d["_id"] for d in found]

    async def cancel_cascade(self, ids: Sequence[Id]) -> bool:
        """Cancel jobs, then their dependents by their failure policies (`ended`): jobs
        already cancelled still lead the cascade on to theirs, at every level, so a cascade
        cut short by a fault is carried on to its end."""
        cancelled = bool(await self._cancel(ids))
        return await self.ended(dict.fromkeys(ids, Status.CANCELLED)) or cancelled

    async def ended(self, ended: Mapping[Id, Status]) -> bool:
        """What the dependents of jobs that failed for good or were cancelled do, by the
        failure policy of each edge (rules/dependencies.py `verdicts`), level by level:
        cancelled or failed (and theirs in turn), or freed of the edge (and promoted if
        nothing is left to wait for). Dependents that ended already lead the cascade on.
        Whether any job changed."""
        changed = False
        level = dict(ended)
        seen = set(level)
        while level:
            now = self.clock.now()
            found = await self.store.find(*dependencies.dependents_of(level))
            plan = dependencies.verdicts(level, found, now)
            if plan.cancel:
                changed = bool(await self._cancel(plan.cancel)) or changed
            if plan.writes:
                outcome = await self.store.update_each(plan.writes)
                for error in outcome.refused.values():
                    logger.error("a dependent's failure policy could not apply: %s", error)
                changed = changed or outcome.matched > 0
            if plan.freed:
                await self.promote(plan.freed, conditional=plan.conditional)
            following = {
                **plan.ended,
                **dict.fromkeys(plan.cancel, Status.CANCELLED),
                **dict.fromkeys(plan.fail, Status.FAILED),
            }
            level = {k: s for k, s in following.items() if k not in seen}
            seen.update(level)
        return changed

    async def results(self, ids: Sequence[Id], max_bytes: int) -> dict[Id, dict[str, Any]]:
        """The results of the completed jobs among these ids (in their order), read alone;
        InvalidArgument("max_bytes") if together they are larger (BSON-encoded)."""
        found = {
            d["_id"]: d.get("result") or {}
            for d in await self.store.find(
                {"_id": {"$in": list(ids)}, "status": Status.COMPLETED}, {"result": 1}
            )
        }
        results = {i: assume_utc(found[i]) for i in dict.fromkeys(ids) if i in found}
        v.check_results_size(results, max_bytes, self.store.encode)
        return results

    async def find_page(
        self, query: JobQuery, after: str | None
    ) -> tuple[list[JobDoc], str | None]:
        """A page of the jobs a query matches, newest (or oldest) first, and the cursor of the
        next page (None: this is the last). Stored documents that are not valid jobs are left
        out."""
        wanted = query.limit + 1  # one more than a page: whether another page follows
        found = await self.store.find(query.filter(after), sort=query.order, limit=wanted)
        if after is not None and query.first_phase(after) and len(found) < wanted:
            # The first phase's ids ran out: the other type's follow (model/queries.py).
            more = wanted - len(found)
            found += await self.store.find(query.second_phase(), sort=query.order, limit=more)
        page = found[: query.limit]
        following = encode_cursor(page[-1]["_id"]) if len(found) > query.limit else None
        jobs = []
        for raw in page:
            try:
                jobs.append(self.reader.job(raw))
            except InvalidDocument as exc:
                logger.warning("find_jobs: leaving out job %s: %s", raw.get("_id"), exc)
        return jobs, following

    async def job_types(self) -> list[str]:
        """The job types stored, sorted: one `distinct` (served by the `{type, ...}` indexes),
        for a caller that needs the types and not stats' counts."""
        return sorted(t for t in await self.store.distinct("type") if isinstance(t, str))

    async def stats(self) -> tuple[dict[tuple[str, str], int], dict[str, datetime]]:
        """How many jobs each type has in each status, and when the oldest ready job of each
        type fell due: one count per type and status, and one read per type with ready jobs
        (each served by the `{type, status, after}` index)."""
        depth: dict[tuple[str, str], int] = {}
        oldest: dict[str, datetime] = {}
        for job_type in await self.job_types():
            for status in JOB_STATUSES:
                n = await self.store.count({"type": job_type, "status": status})
                if n:
                    depth[(job_type, status)] = n
            if (job_type, Status.READY) in depth:
                [first] = await self.store.find(
                    {"type": job_type, "status": Status.READY},
                    {"after": 1},
                    sort=[("after", 1)],
                    limit=1,
                ) or [{}]
                after = assume_utc(first.get("after"))
                if isinstance(after, datetime):
                    oldest[job_type] = after
        return depth, oldest

    async def cancel_pending_of(self, job_type: str, user_id: Any) -> int:
        """Cancel a user's jobs of a type that have not started, or that started and are past
        their lease (seed 003's matching pending jobs), with their dependents; how many."""
        now = self.clock.now()
        stale = transitions.expired(now)
        matching = await self.store.find(
            {
                "type": job_type,
                USER: user_id,
                "$or": [{"status": {"$in": list(JOB_STATUS_PENDING)}}, stale],
            },
            {"_id": 1},
        )
        if not matching:
            return 0
        ids = [d["_id"] for d in matching]
        await self.cancel(ids)
        return len(ids)

    async def replace(self, holder: Id, key: dict[str, Any]) -> bool:
        """Cancel the pending job that holds a unique key, for a job saved in its place (and
        its dependents, as cancel() does); False if it let go of the key first (it started,
        or another save replaced it)."""
        if not await self._cancel([holder], {UNIQUE: key}):
            return False
        await self.cancel_cascade([holder])
        return True

    async def _cancel(self, ids: Sequence[Id], fence: Filter | None = None) -> int:
        """Cancel these jobs (those `fence` also matches); the number cancelled."""
        query, update = transitions.cancel(ids, self.clock.now())
        query.update(fence or {})
        return await self._apply_cancel(query, update)

    async def _apply_cancel(self, query: Filter, update: Update) -> int:
        """Apply a cancel (`transitions.cancel`'s filter and update, or a variant of them);
        the number cancelled. A job whose retention covers "cancelled" gets its removal date
        in the same write: jobs are cancelled in groups by retention delay (read first), then
        the rest."""
        now = self.clock.now()
        kept = await self.store.find(transitions.cancel_retained(query), {REMOVE_AFTER: 1})
        delays: dict[int, list[Id]] = {}
        for raw in kept:
            delay = raw["_private"][REMOVE_AFTER.split(".", 1)[1]]["delay"]
            delays.setdefault(delay, []).append(raw["_id"])
        count = 0
        for delay, group in delays.items():
            count += await self.store.update_many(
                *transitions.cancel_dated(query, update, group, delay, now)
            )
        if kept:
            query = transitions.cancel_unretained(query)
        return count + await self.store.update_many(query, update)

    async def restart(self, op: Restart) -> bool:
        """jobRestart: each level of the cascade (op's antecedents and dependents) restarted
        with op's retries and deadline, then promoted. A failed job's follow-ups still
        pending are void (it runs again), but what they had done already is carried on
        (`_carry_on`)."""
        retries, until = op.retries, op.until
        cut_short: list[Id] = []

        async def restart(level: Sequence[Id]) -> int:
            level = await self._runnable(level)
            if not level:
                return 0
            cut_short.extend(await self._failures_pending(level))
            now = self.clock.now()
            count = 0
            for query, update in transitions.restart(level, retries, until, now):
                count += await self.store.update_many(query, update)
            if count:
                await self.promote(level)
            return count

        restarted = await self._cascade(
            op.ids, op.antecedents, op.dependents, JOB_STATUS_RESTARTABLE, restart
        )
        if cut_short:
            await self._carry_on(cut_short)
        if not restarted:
            logger.warning("jobRestart: no job was restartable among %d ids", len(op.ids))
        return restarted

    async def _failures_pending(self, ids: Sequence[Id]) -> list[Id]:
        """The failed jobs among these whose follow-ups (their dependents' failure policies)
        are still pending: a restart voids them (the job runs again)."""
        found = await self.store.find(
            {
                "_id": {"$in": list(ids)},
                "status": Status.FAILED,
                f"{FOLLOW_UPS}.status": Status.FAILED,
            },
            {"_id": 1},
        )
        return [d["_id"] for d in found]

    async def _carry_on(self, restarted: Sequence[Id]) -> None:
        """After restarting failed jobs whose follow-ups a fault had cut short: their
        dependents still waiting wait for them again, but those the cut-short follow-ups had
        cancelled or failed already stay so, and their own dependents follow their policies,
        as the follow-ups would have done (else they would wait forever on a job that ended)."""
        query, projection = dependencies.ended_dependents(restarted)
        ended = await self.store.find(query, projection)
        if ended:
            await self.ended({d["_id"]: Status(d["status"]) for d in ended})

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
        apply: Apply,
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

    async def rerun(
        self,
        job_id: Id,
        repeats: int = 0,
        until: datetime | None = None,
        wait_ms: int | None = None,
    ) -> Id | None:
        raw = await self.store.find_one(
            {"_id": job_id, "status": Status.COMPLETED}, {"log": 0, "failures": 0}
        )
        if raw is None:
            logger.warning("jobRerun: job %s is not completed", job_id)
            return None
        doc = self.reader.job_with_private(raw)
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


def _deadline(doc: Mapping[str, Any]) -> Any:
    """A stored job's deadline (deadlines.EXPIRES_AT), in UTC (None: none)."""
    value = (doc.get("_private") or {}).get(EXPIRES.split(".", 1)[1])
    return assume_utc(value.get("at")) if isinstance(value, dict) else None


def _cascade_mark(doc: Mapping[str, Any]) -> Any:
    """When a stored job's pending cancel cascade began (None: no mark)."""
    return (doc.get("_private") or {}).get(CASCADE.split(".", 1)[1])
