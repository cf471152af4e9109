"""Schedules as objects: stored in `<root>.schedules` beside the jobs, materialised as ordinary
jobs by the elected job server's pass (server.py), exactly one run per occurrence.

A schedule document holds its settings (model/schedules.py ScheduleSpec.stored), `paused`,
`next` (its next occurrence not yet materialised; absent while paused or when it has no more),
`last` (`{id, at}` of its newest run) and, while a pass is materialising it, `plan`.

How a pass materialises a due schedule (`next` <= now), safe against lost replies, crashes
and two processes that both believe they lead:

1. **Plan** with one conditional update whose filter states the `next` it read and that no
   plan is pending: `next` advances past now and the plan (the runs to insert, each with its
   occurrence and due date, the runs to cancel first) is stored in the same write. Of two
   passes that read the same `next`, one plans; the other's update matches nothing.
2. **Carry out** the plan: cancel what it says, then insert its runs. Each run's `_id` is a
   function of the schedule id and the occurrence (model/schedules.py run_id), so an insert
   repeated (after a crash, a lost reply, or by a racing pass) finds the job and is a no-op.
3. **Clear** the plan (filter: its token), recording the last run.

A pass first carries out every plan left pending (a crash or an error between 1 and 3), so an
occurrence is neither lost (its plan is stored before `next` moves past it) nor doubled (its
run's `_id` is fixed). `backfill` inserts under the same ids, so it never doubles a run either.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Final

from bson import ObjectId

from ..model.clock import Clock
from ..model.constants import Status
from ..model.document import SCHEDULED_ID, JobDoc, assume_utc
from ..model.errors import DatabaseError, InvalidArgument
from ..model.ops import Cancel, Op, SaveMany
from ..model.schedules import (
    Schedule,
    ScheduleSpec,
    admit,
    due_runs,
    first_after,
    in_range,
    jitter_ms,
    run_doc,
    run_id,
    shown,
    timing,
    trigger_id,
)
from ..model.types import Id
from ..mongo.indexes import SCHEDULE_INDEXES
from ..mongo.store import Document, Store

logger = logging.getLogger("jobcollection")

Runner = Callable[[Op[Any]], Awaitable[Any]]
"""Applies an operation through the core (Core.apply: the saves wake this process's queues
and the cancels stop their workers, as any other would; the events are the schedule's)."""

MAX_LISTED: Final = 10_000
"""The most schedules `list()` shows."""
MAX_PER_PASS: Final = 1_000
"""The most due schedules one pass materialises (the rest: at the next pass)."""
UNFINISHED: Final = [str(s) for s in (*Status.PENDING, Status.RUNNING)]


class Scheduler:
    """The schedules of one JobCollection (see the module docstring)."""

    def __init__(self, jobs: Store, clock: Clock, run: Runner) -> None:
        self._jobs = jobs
        self._clock = clock
        self._run = run
        self._store: Store | None = None
        self._indexed = False

    async def _schedules(self) -> Store:
        """The Store of `<root>.schedules`, its indexes made (DatabaseError if there is no
        database beside the jobs)."""
        if self._store is None:
            name = self._jobs.collection.name.removesuffix(".jobs") + ".schedules"
            self._store = self._jobs.sibling(name, counted=False)
        if not self._indexed:
            for index in SCHEDULE_INDEXES:
                await self._store.create_index(index.keys, **index.options())
            self._indexed = True
        return self._store

    # --- the API ---------------------------------------------------------------------------

    async def upsert(self, spec: ScheduleSpec) -> Schedule:
        """Store a schedule (new, or replacing the settings of the one with its id). Its next
        run is recomputed when its timing (cron, timezone, every) changed or it is new, and
        kept otherwise: upserting the same schedule at every start of an application loses
        no occurrence due meanwhile. A paused schedule stays paused."""
        store = await self._schedules()
        now = self._clock.now()
        settings = spec.stored()
        unset = {name: "" for name in ("cron", "timezone", "every") if name not in settings}
        update: dict[str, Any] = {
            "$set": {**settings, "updated": now},
            "$setOnInsert": {"created": now, "paused": False},
        }
        if unset:
            update["$unset"] = unset
        before = await store.find_one_and_update(
            {"_id": spec.id}, update, return_new=False, upsert=True
        )
        if before is None or timing(ScheduleSpec.from_stored(before)) != timing(spec):
            await self._reset_next(store, spec, now)
        found = await self.get(spec.id)
        assert found is not None, "just stored"
        return found

    async def _reset_next(self, store: Store, spec: ScheduleSpec, now: datetime) -> None:
        """Set the next run of an active schedule whose timing is still `spec`'s."""
        following = first_after(spec, now)
        query = {"_id": spec.id, "paused": False, **timing(spec)}
        if following is None:
            await store.update_one(query, {"$unset": {"next": ""}})
        else:
            await store.update_one(query, {"$set": {"next": following}})

    async def get(self, schedule_id: str) -> Schedule | None:
        """A schedule, with its next runs and its last run's status (None: no such one)."""
        store = await self._schedules()
        found = await store.find_one({"_id": schedule_id})
        return None if found is None else (await self._shown([found]))[0]

    async def list_all(self) -> list[Schedule]:
        """Every schedule (the first MAX_LISTED by id), with next runs and last runs."""
        store = await self._schedules()
        return await self._shown(await store.find({}, sort=[("_id", 1)], limit=MAX_LISTED))

    async def _shown(self, docs: Sequence[Document]) -> list[Schedule]:
        last = [d["last"]["id"] for d in docs if isinstance(d.get("last"), dict)]
        statuses: dict[Any, str] = {}
        if last:
            for job in await self._jobs.find({"_id": {"$in": last}}, {"status": 1}):
                statuses[job["_id"]] = str(job.get("status"))
        return [shown(d, statuses) for d in docs]

    async def pause(self, schedule_id: str) -> bool:
        """Stop materialising a schedule's occurrences (a plan under way is finished); False
        if it is paused already or does not exist."""
        store = await self._schedules()
        update = {"$set": {"paused": True, "updated": self._clock.now()}, "$unset": {"next": ""}}
        return await store.update_one({"_id": schedule_id, "paused": False}, update) > 0

    async def resume(self, schedule_id: str) -> bool:
        """Materialise a paused schedule's occurrences again, from the first after now (those
        that fell while it was paused are not run: `backfill` runs them); False if it is not
        paused or does not exist."""
        store = await self._schedules()
        found = await store.find_one({"_id": schedule_id, "paused": True})
        if found is None:
            return False
        spec = ScheduleSpec.from_stored(found)
        now = self._clock.now()
        update: dict[str, Any] = {"$set": {"paused": False, "updated": now}}
        following = first_after(spec, now)
        if following is not None:
            update["$set"]["next"] = following
        query = {"_id": schedule_id, "paused": True, **timing(spec)}
        return await store.update_one(query, update) > 0

    async def remove(self, schedule_id: str) -> bool:
        """Delete a schedule (its runs stay, as jobs); False if there was none."""
        store = await self._schedules()
        return await store.delete_many({"_id": schedule_id}) > 0

    async def trigger(self, schedule_id: str, key: str | None = None) -> Id:
        """One run now, outside the schedule's occurrences (whatever its overlap policy, and
        paused or not); the new job's id. With an idempotency `key`, the run's id derives
        from (schedule, key): a call repeated with the key (after a lost reply, or racing in
        another process) answers the run made first and makes no second one."""
        store = await self._schedules()
        spec = await self._spec(store, schedule_id)
        now = self._clock.now()
        if key is None:
            new_id: Id = ObjectId()
        else:
            new_id = trigger_id(spec.id, key)
            made = await self._jobs.find_one({"_id": new_id}, {"_id": 1})
            if made is not None:
                return new_id
        doc = run_doc(spec.id, spec.type, spec.data, now, now, triggered=True)
        await self._run(SaveMany([doc], job_ids=[new_id]))
        last = {"id": new_id, "at": now, "trigger": True}
        await store.update_one({"_id": spec.id}, {"$set": {"last": last}})
        return new_id

    async def backfill(self, schedule_id: str, start: datetime, end: datetime) -> list[Id]:
        """A run for each occurrence in [start, end] that has none yet (under the overlap
        policy "allow", each delayed by its jitter): the ids of the runs made. Called again
        over the same range, it makes none."""
        store = await self._schedules()
        spec = await self._spec(store, schedule_id)
        runs = [(at, None) for at in in_range(spec, start, end)]
        return await self._insert(spec.id, spec.type, spec.data, runs, spec.jitter_ms)

    async def _spec(self, store: Store, schedule_id: str) -> ScheduleSpec:
        found = await store.find_one({"_id": schedule_id})
        if found is None:
            raise InvalidArgument("id", f"no schedule {schedule_id!r}")
        return ScheduleSpec.from_stored(found)

    # --- the job server's pass --------------------------------------------------------------

    async def materialise(self) -> int:
        """Carry out the plans left pending, then plan and carry out every due schedule (see
        the module docstring); the number of runs made. Each schedule is handled alone: one
        that fails (logged) does not hold up the others, and the first error is raised once
        they are done, for the pass to count."""
        try:
            store = await self._schedules()
        except DatabaseError:
            return 0  # no database beside the jobs: no schedules
        now = self._clock.now()
        made = 0
        failed: list[Exception] = []

        async def each(schedule_id: Any, work: Awaitable[int]) -> None:
            nonlocal made
            try:
                made += await work
            except Exception as exc:
                logger.error("schedule %s: could not make its runs: %s", schedule_id, exc)
                failed.append(exc)

        pending = await store.find({"plan.at": {"$lte": now, "$exists": True}})
        for doc in pending:
            await each(doc["_id"], self._carry_out(store, doc["_id"], assume_utc(doc["plan"])))
        due = await store.find(
            {"next": {"$lte": now, "$exists": True}}, sort=[("next", 1)], limit=MAX_PER_PASS
        )
        for doc in due:
            await each(doc["_id"], self._plan_and_carry_out(store, doc, now))
        if failed:
            raise failed[0]
        return made

    async def _plan_and_carry_out(self, store: Store, doc: Document, now: datetime) -> int:
        plan = await self._plan(store, doc, now)
        return 0 if plan is None else await self._carry_out(store, doc["_id"], plan)

    async def _plan(self, store: Store, doc: Document, now: datetime) -> Document | None:
        """Plan a due schedule's runs and advance its `next` in one conditional update; the
        plan (None: another pass planned it, or it changed meanwhile)."""
        spec = ScheduleSpec.from_stored(doc)
        next_at = doc["next"]  # as stored, for the filter
        due = due_runs(spec, assume_utc(next_at), now)
        unfinished: list[Id] = []
        if due.runs and spec.overlap != "allow":
            query = {SCHEDULED_ID: {"$eq": spec.id, "$exists": True}, "status": {"$in": UNFINISHED}}
            found = await self._jobs.find(query, {"_id": 1}, sort=[("_id", 1)])
            unfinished = [job["_id"] for job in found]
        admitted = admit(spec, due.runs, unfinished)
        plan: Document = {
            "token": ObjectId(),
            "at": now,
            "type": spec.type,
            "data": spec.data,
            "jitter": spec.jitter_ms,
            "runs": [{"at": at, "before": before} for at, before in admitted.runs],
            "cancel": admitted.cancel,
        }
        skipped = due.skipped + len(due.runs) - len(admitted.runs)
        if skipped:
            logger.info("schedule %s: %d occurrences skipped (catch-up, overlap)", spec.id, skipped)
        nothing = not admitted.runs and not admitted.cancel  # only `next` moves
        update: dict[str, Any] = {"$set": {} if nothing else {"plan": plan}}
        if skipped:  # counted by the same conditional update: once, whichever pass plans
            update["$inc"] = {"skipped": skipped}
            update["$set"]["skippedAt"] = now
        if due.following is None:
            update["$unset"] = {"next": ""}
        else:
            update["$set"]["next"] = due.following
        if not update["$set"]:
            del update["$set"]
        query = {"_id": spec.id, "next": next_at, "plan": {"$exists": False}}
        planned = await store.update_one(query, update)
        return plan if planned and not nothing else None

    async def _carry_out(self, store: Store, schedule_id: str, plan: Document) -> int:
        """Cancel what a plan says, insert its runs that are not stored yet, clear it; the
        number of runs inserted."""
        if plan.get("cancel"):
            await self._run(Cancel(list(plan["cancel"])))
        runs = [(r["at"], r.get("before")) for r in plan["runs"]]
        made = await self._insert(
            schedule_id, plan["type"], plan["data"], runs, int(plan.get("jitter", 0))
        )
        update: dict[str, Any] = {"$unset": {"plan": ""}}
        if runs:
            at = runs[-1][0]
            update["$set"] = {"last": {"id": run_id(schedule_id, at), "at": at}}
        await store.update_one({"_id": schedule_id, "plan.token": plan["token"]}, update)
        return len(made)

    async def _insert(
        self,
        schedule_id: str,
        job_type: str,
        data: dict[str, Any],
        runs: Sequence[tuple[datetime, Id | None]],
        jitter: int,
    ) -> list[Id]:
        """Insert the runs of these occurrences that are not stored yet; their ids."""
        ids = [run_id(schedule_id, at) for at, _ in runs]
        if not ids:
            return []
        stored = {d["_id"] for d in await self._jobs.find({"_id": {"$in": ids}}, {"_id": 1})}
        docs: list[JobDoc] = []
        new_ids: list[Id] = []
        for (at, before), job_id in zip(runs, ids, strict=True):
            if job_id in stored:
                continue
            after = at + timedelta(milliseconds=jitter_ms(schedule_id, at, jitter))
            docs.append(run_doc(schedule_id, job_type, data, at, after, before))
            new_ids.append(job_id)
        if docs:
            await self._run(SaveMany(docs, job_ids=new_ids))
        return new_ids
