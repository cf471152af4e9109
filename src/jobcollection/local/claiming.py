"""Claiming jobs and what a worker does with a claim before reporting on it: heartbeats (lease
renewals), log lines, progress, and releasing jobs it will not start.

Claims are remembered (the runIds handed out, and those not yet wholly handed over), so that
jobs a lost reply or a short read-back left claimed are handed over by the next get_work, and
so that the job server's shutdown can fail the jobs this instance handed out.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from bson import ObjectId

from ..model.clock import Clock
from ..model.constants import Status
from ..model.document import CLAIMER, JobDoc, JobWorker
from ..model.errors import DatabaseError, InvalidDocument
from ..model.ops import Checkpoints
from ..model.schedule import add_ms, late_start
from ..model.types import Id, Update
from ..mongo.store import Document, Store, transient
from ..rules import deadlines, transitions
from .managing import Manager
from .reading import Reader
from .reporting import Report, Reporter, claimed_by, claimer_of, refused

logger = logging.getLogger("jobcollection")


@dataclass(frozen=True, slots=True)
class Claimant:
    """Who a claim is made for: the user it is made as (None: server code), the only one who
    may report on its runs, and the worker it records on the jobs it claims (JobDoc.worker;
    None: their records are left as they are)."""

    user_id: Any = None
    worker: JobWorker | None = None


SERVER: Final = Claimant()
"""A claim by server code that records no worker."""


class Claimer:
    """Hands out ready jobs under fresh runIds, and serves the workers that hold them."""

    def __init__(
        self, store: Store, clock: Clock, reader: Reader, reporter: Reporter, manager: Manager
    ) -> None:
        self.store = store
        self.clock = clock
        self.reader = reader
        self.reporter = reporter
        self.manager = manager
        """Cancels the jobs a claim took past their deadlines (`_hand_over`)."""
        self.accepting = False
        """Whether jobs are handed out: the job server runs (get_work returns [] otherwise)."""
        self.started_once = False
        """Whether the job server ever started (a claim before that warns: _never_started)."""
        self._warned = False
        self.claimed_run_ids: set[ObjectId] = set()
        """The runIds this instance handed out that may still have running jobs."""
        self.unconfirmed_claims: dict[ObjectId, set[Id]] = {}
        """Claims not yet wholly handed over (a lost reply, a short read-back): each runId
        with the ids of its jobs that were. The next get_work hands over the others."""
        self._claiming: set[ObjectId] = set()
        """RunIds of claims in flight: their jobs are not recovered by a concurrent call."""

    async def get_work(
        self,
        types: Sequence[str],
        max_jobs: int = 1,
        work_timeout_ms: int | None = None,
        *,
        among: Sequence[Id] | None = None,
        claimant: Claimant = SERVER,
        quota: Any = None,
    ) -> list[JobDoc]:
        """Claim up to max_jobs ready jobs under one runId: one round trip for one job (two
        through a mongos), three (find, claim, read back) for more; more only when another
        worker claims some of the same jobs first. Jobs an earlier call of this instance
        claimed for the same user but could not hand over come first. A claimed job whose
        stored document is not a valid job is failed for good, with the reason, instead of
        being handed over; one past its deadline (`Job.expires`) is cancelled instead, and
        another claimed in its place. With `among`, only jobs among these ids are claimed (a rate
        limit's reserved ones). The claim records the claimant's user (None: server code) as
        the run's claimer (document.CLAIMER), the only user who may report on it, its worker
        (document.WORKER), and the quota of a concurrency limit it claims into
        (document.QUOTA; None: none), all in the claim's one update."""
        if not self.accepting:
            self._never_started()
            return []
        user_id = claimant.user_id
        claimer = None if user_id is None else claimer_of(user_id)
        claimed = await self._recover_claims(types, max_jobs, self.clock.now(), claimer)
        jobs: list[JobDoc] = []
        wanted = max_jobs
        while True:
            if len(claimed) < wanted:
                more = wanted - len(claimed)
                claimed += await self._claim_new(
                    types, more, work_timeout_ms, claimer, quota, among, claimant.worker
                )
            handed, expired = await self._hand_over(claimed)
            jobs += handed
            if not expired:
                return jobs
            # As many more in place of those cancelled for their deadlines (each round
            # cancels one job at least, so this ends).
            claimed, wanted = [], expired

    async def _claim_new(
        self,
        types: Sequence[str],
        wanted: int,
        work_timeout_ms: int | None,
        claimer: Any,
        quota: Any,
        among: Sequence[Id] | None,
        worker: JobWorker | None,
    ) -> list[Document]:
        """Claim up to `wanted` ready jobs under a new runId."""
        now = self.clock.now()
        run_id = ObjectId()
        # Remembered before any write: if a reply is lost, the next get_work hands over
        # the jobs claimed under this runId (and a shutdown fails them), not losing them.
        self.claimed_run_ids.add(run_id)
        self.unconfirmed_claims[run_id] = set()
        self._claiming.add(run_id)
        update = transitions.claim_for(run_id, now, work_timeout_ms, claimer, quota, worker)
        try:
            try:
                fresh, complete = await self._claim(types, wanted, run_id, update, among)
            except DatabaseError as exc:
                if transient(exc):
                    raise
                # A document refuses the claim's update (a poison document, such as a
                # non-numeric `retries`): claim one by one, setting aside what refuses.
                # One whose `_private` is not an object (another application's null) cannot
                # take the worker record: it is claimed without it.
                bare = None
                if worker is not None:
                    bare = transitions.claim_for(run_id, now, work_timeout_ms, claimer, quota)
                fresh = await self._claim_each(types, wanted, update, among, bare)
                complete = True
        finally:
            self._claiming.discard(run_id)
        if complete:
            self.unconfirmed_claims.pop(run_id, None)
        return fresh

    def _never_started(self) -> None:
        """Say once, loudly, that claims hand out nothing because this JobCollection's job
        server was never started (the most common set-up mistake: a queue then sits idle);
        after a deliberate shutdown it is not news."""
        if self.started_once or self._warned:
            return
        self._warned = True
        logger.warning(
            "getWork hands out no job: the job server of this JobCollection is not running; "
            "call `await jc.start_job_server()` in the process that claims jobs"
        )

    async def _claim(
        self,
        types: Sequence[str],
        wanted: int,
        run_id: ObjectId,
        update: dict[str, Any],
        among: Sequence[Id] | None = None,
    ) -> tuple[list[Document], bool]:
        """Claim up to `wanted` jobs; the documents claimed, and whether they are all the
        jobs claimed under run_id (False when a read-back came back short)."""
        if wanted == 1 and not self.store.routed:
            one = await self.store.find_one_and_update(
                transitions.claimable(types, among),
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
                transitions.claimable(types, among),
                {"_id": 1},
                sort=transitions.CLAIM_SORT,
                limit=limit,
            )
            if not candidates:
                break
            ids = [c["_id"] for c in candidates]
            if limit == 1:  # through a mongos: findAndModify must name the shard key (_id)
                one = await self.store.find_one_and_update(
                    transitions.claimable_one(types, ids[0]),
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
        self,
        types: Sequence[str],
        wanted: int,
        update: dict[str, Any],
        among: Sequence[Id] | None = None,
        bare: dict[str, Any] | None = None,
    ) -> list[Document]:
        """Claim candidates one at a time; one whose claim is refused is claimed with `bare`
        (the claim without its worker record) if given, and failed if that is refused too."""
        claimed: list[Document] = []
        candidates = await self.store.find(
            transitions.claimable(types, among),
            {"_id": 1},
            sort=transitions.CLAIM_SORT,
            limit=wanted,
        )
        for candidate in candidates:
            fence = transitions.claimable_one(types, candidate["_id"])
            one = None
            for attempt in (update, bare):
                if attempt is None:
                    continue
                try:
                    one = await self.store.find_one_and_update(fence, attempt, transitions.NO_LOG)
                except DatabaseError as exc:
                    if transient(exc):
                        raise
                    refusal = exc
                    continue
                break
            else:
                await self.set_aside(fence, None, f"it refuses to be claimed: {refusal}")
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
            transitions.fail_bare(now),
        ):
            try:
                return bool(await self.store.update_one(fence, update))
            except DatabaseError as exc:
                if transient(exc):
                    return False
        return False

    async def _hand_over(self, claimed: list[Document]) -> tuple[list[JobDoc], int]:
        """The claimed documents as jobs, each recorded as handed over; invalid ones are
        failed for good (with the reason) instead, and those past their deadlines cancelled
        (`_expired`), whichever path claimed them (local queues, get_work, the remote API,
        DDP): the jobs, and how many were cancelled."""
        jobs: list[JobDoc] = []
        invalid: list[Document] = []
        expired = 0
        now = self.clock.now()
        for raw in claimed:
            handed = self.unconfirmed_claims.get(raw.get("runId"))  # type: ignore[arg-type]
            if handed is not None:
                handed.add(raw["_id"])
            try:
                job = self.reader.job(raw)
            except InvalidDocument:
                invalid.append(raw)
                continue
            if deadlines.started_late(job, now):
                expired += await self._expired(job, raw, claimed)
            elif not await self._skipped(job, now):
                jobs.append(job)
        for raw in invalid:
            report = Report("fail", raw["_id"], raw["runId"], {"value": "invalid"}, fatal=True)
            try:
                await self.reporter.submit(report)
            except Exception as exc:  # its lease, or the job server's shutdown, fails it later
                logger.error("getWork: could not fail invalid job %s: %s", raw["_id"], exc)
        return jobs, expired

    async def _expired(self, job: JobDoc, raw: Document, claimed: list[Document]) -> int:
        """Cancel a job the claim took past its deadline instead of handing it over (one
        more write, for such a job only; its dependents follow their policies). If the cancel
        cannot be written, the job is not handed over either: it is left to this instance's
        next get_work, which hands over what its claims did not and so tries the cancel again
        (`_recover_claims`); if none comes, its lease's expiry or this server's shutdown
        fails it, and a claim or a pass cancels it then (a retry is not let past a deadline
        either). How many were cancelled (0 or 1)."""
        assert job.id is not None and job.expires is not None
        try:
            return await self.manager.expire({job.id: job.expires}, raw["runId"])
        except DatabaseError as exc:
            logger.warning("job %s: could not cancel it past its deadline: %s", job.id, exc)
            run = raw["runId"]
            handed = self.unconfirmed_claims.setdefault(
                run, {d["_id"] for d in claimed if d.get("runId") == run}
            )
            handed.discard(job.id)
            return 0

    async def _skipped(self, job: JobDoc, now: datetime) -> bool:
        """Whether a claimed run of a catch_up="none" schedule starting too late was put back
        to wait for the schedule's next occurrence instead of being handed over (one more
        write, for such a run only). If that write fails, the run goes ahead."""
        late = late_start(job, now)
        if late is None or job.id is None or job.run_id is None:
            return False
        try:
            return bool(
                await self.store.update_one(*transitions.skip_late(job.id, job.run_id, late, now))
            )
        except DatabaseError as exc:
            logger.warning("job %s: could not skip its late run (%s); it runs", job.id, exc)
            return False

    async def _recover_claims(
        self, types: Sequence[str], max_jobs: int, now: datetime, claimer: Any
    ) -> list[Document]:
        """Jobs of these types that an earlier get_work of this instance claimed for the same
        claimer but could not hand over (a lost reply, a short read-back), with their leases
        renewed."""
        runs = [r for r in self.unconfirmed_claims if r not in self._claiming]
        if not runs:
            return []
        held = await self.store.find(transitions.held_runs(runs), transitions.NO_LOG)
        unhanded = [d for d in held if d["_id"] not in self.unconfirmed_claims.get(d["runId"], ())]
        left = {d["runId"] for d in unhanded}
        for claim in runs:
            if claim not in left:  # every job of this claim was handed over, or has ended
                self.unconfirmed_claims.pop(claim, None)
        mine = [d for d in unhanded if d.get("type") in types and _claimer(d) == claimer][:max_jobs]
        for doc in mine:  # at once, before any await: a concurrent call must not take them
            self.unconfirmed_claims[doc["runId"]].add(doc["_id"])
        leases: dict[tuple[Id, int], list[Document]] = {}
        for doc in mine:
            if doc.get("workTimeout"):
                leases.setdefault((doc["runId"], doc["workTimeout"]), []).append(doc)
        for (run_id, timeout), docs in leases.items():
            fence, renewal = transitions.renew_leases(
                [d["_id"] for d in docs], run_id, now, timeout
            )
            await self.store.update_many(fence, renewal)
            for doc in docs:
                doc.update(renewal["$set"])
        if mine:
            logger.warning(
                "getWork: handing over %d jobs claimed by a call that could not", len(mine)
            )
        return mine

    async def log(
        self,
        job_id: Id,
        run_id: Id | None,
        message: str,
        level: str = "info",
        data: dict[str, Any] | None = None,
        by: Any = None,
    ) -> bool:
        """Log on a job in any state; a line naming the run it is running under (which
        renews that run's lease) only from the run's claimer, when `by` (claimer_of the user
        logging) is given (PermissionDenied otherwise)."""
        now = self.clock.now()
        fence = transitions.log_fence(job_id, run_id, by)
        found = await self.store.find_one_and_update(
            fence,
            transitions.log_line(now, message, level, run_id, data),
            {"status": 1, "runId": 1, "workTimeout": 1},
        )
        if found is None:
            if "$nor" in fence:
                await self._refuse_if_held(job_id, run_id, by, "jobLog")
            logger.warning("jobLog: job %s not found", job_id)
            return False
        if run_id is not None:
            await self._renew_lease(found, run_id, now)
        return True

    async def _renew_lease(self, found: Document, run_id: Id, now: datetime) -> None:
        """Logging or progress by the current holder is a heartbeat: push expiresAfter out."""
        timeout = found.get("workTimeout")
        if found.get("status") == Status.RUNNING and found.get("runId") == run_id and timeout:
            await self.store.update_one(
                transitions.held(found["_id"], run_id), transitions.lease_renewal(now, timeout)
            )

    async def progress(
        self, job_id: Id, run_id: Id, completed: float, total: float, by: Any = None
    ) -> bool | None:
        if not self.accepting:
            return None
        now = self.clock.now()
        found = await self.store.find_one_and_update(
            transitions.held_by(job_id, run_id, by),
            transitions.progress(now, completed, total),
            {"status": 1, "runId": 1, "workTimeout": 1},
        )
        if found is None:
            await self._refuse_if_held(job_id, run_id, by, "jobProgress")
            logger.warning("jobProgress: job %s is not running under run %s", job_id, run_id)
            return False
        await self._renew_lease(found, run_id, now)
        return True

    async def heartbeat(
        self, ids: Sequence[Id], run_id: Id, by: Any = None, checkpoints: Checkpoints = ()
    ) -> list[Id]:
        """Extend the leases of jobs held under one runId by their workTimeout, storing the
        `checkpoints` given with them; the ids still held. One read, then one write: jobs of
        one claim share a work timeout (one update of them all), and checkpoints make it one
        bulk write of an update per job. From a user (`by`) who did not claim the run:
        PermissionDenied, nothing written."""
        held = await self.store.find(
            transitions.held_among(ids, run_id), {"workTimeout": 1, CLAIMER: 1}
        )
        _check_claimer(held, run_id, by, "jobHeartbeat")
        now = self.clock.now()
        if checkpoints:
            states = dict(checkpoints)
            renewals = [
                (
                    job["_id"],
                    transitions.renewal(now, job.get("workTimeout"), states.get(job["_id"])),
                )
                for job in held
            ]
            await self._each(renewals, run_id, by)
            return [job["_id"] for job in held]
        by_timeout: dict[int, list[Id]] = {}
        for job in held:
            if job.get("workTimeout"):
                by_timeout.setdefault(job["workTimeout"], []).append(job["_id"])
        for timeout, group in by_timeout.items():
            await self.store.update_many(*transitions.renew_leases(group, run_id, now, timeout, by))
        return [job["_id"] for job in held]

    async def _each(self, updates: Iterable[tuple[Id, Update | None]], run_id: Id, by: Any) -> int:
        """Write an update on each of these jobs, fenced by the claim (held by `by`), in one
        round trip; the number applied. A write the server refuses raises its WriteRefused."""
        outcome = await self.store.update_each(
            [
                (transitions.held_by(job_id, run_id, by), update)
                for job_id, update in updates
                if update
            ]
        )
        for refusal in outcome.refused.values():
            raise refusal
        return outcome.matched

    async def release(
        self, ids: Sequence[Id], run_id: Id, by: Any = None, checkpoints: Checkpoints = ()
    ) -> list[Id]:
        """Hand jobs held under one runId back, ready, without counting the attempt (a worker
        that will not start them), storing the `checkpoints` given with them; the ids
        released. From a user (`by`) who did not claim the run: PermissionDenied, nothing
        written."""
        held_now = {**transitions.held_runs([run_id]), "_id": {"$in": list(ids)}}
        found = await self.store.find(held_now, {"_id": 1, "status": 1, "runId": 1, CLAIMER: 1})
        _check_claimer(found, run_id, by, "jobRelease")
        held = [j["_id"] for j in found]
        if not held:
            return []
        fence, update = transitions.release(held, run_id, self.clock.now(), by)
        if checkpoints:
            states = dict(checkpoints)
            released = await self._each(
                ((i, transitions.with_checkpoint(update, states.get(i))) for i in held), run_id, by
            )
        else:
            released = await self.store.update_many(fence, update)
        if released < len(held):  # some changed hands meanwhile: which were released?
            kept = {j["_id"] for j in await self.store.find(held_now, {"_id": 1})}
            return [job_id for job_id in held if job_id not in kept]
        return held

    async def _refuse_if_held(self, job_id: Id, run_id: Id | None, by: Any, method: str) -> None:
        """After a fenced write on a run that did not apply: PermissionDenied if the job is
        running under that run for another user than `by` (a read that is safe: the runId
        fixes the claimer)."""
        if by is None or run_id is None:
            return
        found = await self.store.find(
            transitions.held(job_id, run_id), {"status": 1, "runId": 1, CLAIMER: 1}, limit=1
        )
        _check_claimer(found, run_id, by, method)

    async def rate_limited(self, job_id: Id, run_id: Id, retry_after_ms: int) -> bool:
        """Put a held job back to wait retry_after_ms without counting the attempt (its
        worker met a rate limit); whether it was (False: the claim is lost)."""
        now = self.clock.now()
        fence, update = transitions.put_back(job_id, run_id, now, add_ms(now, retry_after_ms))
        return bool(await self.store.update_one(fence, update))

    async def forget_finished_runs(self) -> None:
        """Drop remembered runIds with no running job left, so the set stays small."""
        if not self.claimed_run_ids:
            return
        live = await self.store.find(
            transitions.held_runs(list(self.claimed_run_ids)), {"runId": 1}
        )
        self.claimed_run_ids &= {j["runId"] for j in live}


_CLAIMER_KEY = CLAIMER.split(".", 1)[1]


def _claimer(doc: Document) -> Any:
    """The claimer recorded on a stored running job (None: server code claimed it)."""
    private = doc.get("_private")
    return private.get(_CLAIMER_KEY) if isinstance(private, dict) else None


def _check_claimer(found: Sequence[Document], run_id: Id, by: Any, method: str) -> None:
    """PermissionDenied if a job read as held under `run_id` was claimed by another user than
    `by` (None: anyone may)."""
    for doc in found:
        if not claimed_by({"status": Status.RUNNING, "runId": run_id, **doc}, run_id, by):
            raise refused(doc["_id"], method)
