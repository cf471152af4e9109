"""Claims under global concurrency limits: `Slots` keeps the limits (in the settings document
`concurrencyLimits`) and claims jobs of a limited type under the type's claim lock, at most
as many as its slots left free (the rules, and why they cannot drift: rules/concurrency.py).

Every claim of this process goes through here (local queues, `get_work`, the remote API and
DDP call the core, and rate-limited claims claim through it too), so a limit holds for every
kind of worker. A claim of types without a limit costs nothing more. One of a limited type far
from its limit claims into this process's quota (no command more), and takes a new quota with
two (take the lock, give it back); near the limit it costs three (take the lock, count, give
it back; four with `group_by`, five when a group's backlog fills the candidates read),
whatever number of jobs it takes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from bson import ObjectId

from ..model.concurrency import ConcurrencyLimit
from ..model.document import JobDoc
from ..model.errors import DatabaseError
from ..model.types import Id
from ..mongo.indexes import LIMITS_INDEX
from ..mongo.store import Document, Store, is_duplicate
from ..rules import concurrency as rules
from ..rules import transitions
from ..rules.ratecounters import SCAN_FACTOR, group_key, group_of
from .claiming import SERVER, Claimant, Claimer
from .limiter import counter_store
from .settings import Settings

logger = logging.getLogger("jobcollection")

LOCK_WAIT_S: Final = 1.0
"""How long a claim waits for another process's claim lock before it takes nothing this time
(the queue looks again at its next poll)."""
FIRST_WAIT_S: Final = 0.002
LONGEST_WAIT_S: Final = 0.05
"""The waits between attempts at a busy lock: doubling from the first to the longest."""
ATTEMPTS: Final = 10
"""How many times a change of the limits is tried against concurrent changes."""


class Slots:
    """The concurrency limits, and the claims that honour them."""

    def __init__(self, jobs: Store, settings: Settings, claimer: Claimer) -> None:
        self._jobs = jobs
        self._settings = settings
        self._claimer = claimer
        self._locks: Store | None = None
        self._quotas: dict[str, LocalQuota] = {}
        """This process's quota of each type far from its limit (rules.quota_size)."""
        self._local: dict[str, asyncio.Lock] = {}
        """One claim of a type at a time in this process: its claims never contend with
        each other for the lock in the database."""

    # --- the limits -----------------------------------------------------------------------

    async def limits(self) -> dict[str, ConcurrencyLimit]:
        """Every type's limit, by a copy at most settings.FRESH old."""
        return rules.read_limits((await self._settings.current())[rules.LIMITS_ID])

    async def read(self) -> dict[str, ConcurrencyLimit]:
        """Every type's limit, read now."""
        return rules.read_limits((await self._settings.read())[rules.LIMITS_ID])

    async def set(
        self, job_type: str, limit: ConcurrencyLimit | None
    ) -> dict[str, ConcurrencyLimit]:
        """Set one type's limit (None: remove it) for every process; every type's limit now.
        A change made at the same time by another process is read and kept."""
        servers = self._settings.required("a concurrency limit")
        for _ in range(ATTEMPTS):
            stored = await servers.find_one({"_id": rules.LIMITS_ID})
            fence, update = rules.set_limit(stored, job_type, limit)
            try:
                after = await servers.find_one_and_update(fence, update, upsert=True)
            except DatabaseError as exc:
                if not is_duplicate(exc):  # another change landed first: read it again
                    raise
                continue
            self._settings.remember(rules.LIMITS_ID, after)
            return rules.read_limits(after)
        raise DatabaseError("the concurrency limits kept changing; try again")

    # --- claims ---------------------------------------------------------------------------

    async def get_work(
        self,
        types: Sequence[str],
        max_jobs: int,
        work_timeout_ms: int | None,
        *,
        among: Sequence[Id] | None = None,
        claimant: Claimant = SERVER,
    ) -> list[JobDoc]:
        """Claim up to max_jobs ready jobs of these types (as Claimer.get_work), those of a
        limited type only into its free slots: the types without a limit first, then each
        limited one in turn."""
        claimer = self._claimer
        limits = await self.limits() if claimer.accepting else {}
        limited = [t for t in types if t in limits]
        if not limited:
            return await claimer.get_work(
                types, max_jobs, work_timeout_ms, among=among, claimant=claimant
            )
        free = [t for t in types if t not in limits]
        docs: list[JobDoc] = []
        if free:
            docs += await claimer.get_work(
                free, max_jobs, work_timeout_ms, among=among, claimant=claimant
            )
        for job_type in limited:
            wanted = max_jobs - len(docs)
            if wanted <= 0:
                break
            docs += await self._get_limited(
                job_type, limits[job_type], wanted, work_timeout_ms, among, claimant
            )
        return docs

    async def _get_limited(
        self,
        job_type: str,
        limit: ConcurrencyLimit,
        wanted: int,
        work_timeout_ms: int | None,
        among: Sequence[Id] | None,
        claimant: Claimant,
    ) -> list[JobDoc]:
        """Claim jobs of one limited type: into this process's quota while it lasts, else
        under the type's claim lock."""
        async with self._local.setdefault(job_type, asyncio.Lock()):
            quota = self._quotas.pop(job_type, None)
            now = self._claimer.clock.now()
            if quota and limit.path is None and quota.left > 0 and now < quota.usable_until:
                self._quotas[job_type] = quota
                return await self._into_quota(
                    quota, job_type, wanted, work_timeout_ms, among, claimant
                )
            taken = await self._acquire(job_type)
            if taken is None:
                return []
            token, before = taken
            now = self._claimer.clock.now()
            # This process's last quota will not be claimed into again: its jobs are counted.
            books = rules.accounts(before, now, given_up=quota.token if quota else None)
            try:
                if limit.path is not None:
                    chosen = await self._choose(job_type, limit, limit.path, wanted, among, now)
                    docs = await self._claim(
                        job_type, chosen, len(chosen), work_timeout_ms, claimant
                    )
                    await self._release(job_type, token, None, books.quotas)
                    return docs
                bound = books.bound
                if bound is None or rules.quota_size(limit, bound, wanted) == 0:
                    held = await self._jobs.count(rules.holding(job_type, now, books.quotas))
                    bound = held + books.reserved
                size = rules.quota_size(limit, bound, wanted)
                if size == 0:
                    room = rules.room(limit, bound, wanted)
                    docs = await self._claim(job_type, among, room, work_timeout_ms, claimant)
                    await self._release(job_type, token, bound + len(docs), books.quotas)
                    return docs
                until = now + timedelta(milliseconds=rules.QUOTA_MS)
                quotas = [*books.quotas, rules.Quota(token, size, until)]
                await self._release(job_type, token, bound + size, quotas)
            except BaseException:
                # How many jobs the claim took is not known: the next holder counts.
                await self._release(job_type, token, None, books.quotas)
                raise
            quota = LocalQuota(token, size, now + timedelta(milliseconds=rules.QUOTA_USE_MS))
            self._quotas[job_type] = quota
            return await self._into_quota(quota, job_type, wanted, work_timeout_ms, among, claimant)

    async def _into_quota(
        self,
        quota: LocalQuota,
        job_type: str,
        wanted: int,
        work_timeout_ms: int | None,
        among: Sequence[Id] | None,
        claimant: Claimant,
    ) -> list[JobDoc]:
        """Claim into this process's quota of the type, without the lock."""
        count = min(wanted, quota.left)
        docs = await self._claim(job_type, among, count, work_timeout_ms, claimant, quota.token)
        quota.left -= len(docs)
        return docs

    async def _claim(
        self,
        job_type: str,
        among: Sequence[Id] | None,
        count: int,
        work_timeout_ms: int | None,
        claimant: Claimant,
        quota: ObjectId | None = None,
    ) -> list[JobDoc]:
        if count <= 0:
            return []
        return await self._claimer.get_work(
            [job_type], count, work_timeout_ms, among=among, claimant=claimant, quota=quota
        )

    async def _choose(
        self,
        job_type: str,
        limit: ConcurrencyLimit,
        path: str,
        wanted: int,
        among: Sequence[Id] | None,
        now: datetime,
    ) -> list[Id]:
        """Which jobs a claim under a limit per group takes: the running jobs counted per
        group, the candidates read in the usual order (without the groups that are full),
        and, if a group with none running is not among them while they fill the read, once
        more past the groups read (so that a group is never starved by another's backlog)."""
        running = rules.counts_by_group(
            await self._jobs.aggregate(rules.holding_per_group(job_type, path, now))
        )
        full = [value for value, n in running.values() if n >= limit.max_running]
        base = transitions.claimable([job_type], among)
        scan = wanted * SCAN_FACTOR
        shape = {"_id": 1, path: 1}
        query = rules.excluding(base, path, full) or base
        candidates = await self._jobs.find(query, shape, sort=transitions.CLAIM_SORT, limit=scan)
        seen = {group_key(v): v for v in (group_of(d, path) for d in candidates)}
        idle = any(running.get(key, (None, 0))[1] == 0 for key in seen)
        if len(candidates) >= scan and not idle:
            probe = rules.excluding(base, path, [*full, *seen.values()])
            if probe is not None:
                candidates += await self._jobs.find(
                    probe, shape, sort=transitions.CLAIM_SORT, limit=wanted
                )
        return rules.choose(candidates, path, running, limit, wanted)

    # --- the claim lock -------------------------------------------------------------------

    async def _lock_store(self) -> Store:
        if self._locks is None:
            locks = counter_store(self._jobs)
            await locks.create_index(LIMITS_INDEX.keys, **LIMITS_INDEX.options())
            self._locks = locks
        return self._locks

    async def _acquire(self, job_type: str) -> tuple[ObjectId, Document | None] | None:
        """Take the type's claim lock: its token, and the lock's document as it was (None:
        new), waiting up to LOCK_WAIT_S while another process holds it; None if it is still
        held then."""
        locks = await self._lock_store()
        token = ObjectId()
        wait, waited = FIRST_WAIT_S, 0.0
        while True:
            fence, update = rules.acquire(job_type, token, self._claimer.clock.now())
            try:
                before = await locks.find_one_and_update(
                    fence, update, upsert=True, return_new=False
                )
                return token, before
            except DatabaseError as exc:
                if not is_duplicate(exc):  # a duplicate key: another holder has it
                    raise
            if waited >= LOCK_WAIT_S:
                logger.debug("claims of %r wait for another process's claim lock", job_type)
                return None
            await asyncio.sleep(wait)
            waited += wait
            wait = min(wait * 2, LONGEST_WAIT_S)

    async def _release(
        self,
        job_type: str,
        token: ObjectId,
        bound: int | None,
        quotas: Sequence[rules.Quota],
    ) -> None:
        locks = await self._lock_store()
        await locks.update_one(*rules.release(job_type, token, bound, quotas))


@dataclass(slots=True)
class LocalQuota:
    """This process's quota of a type: how many jobs it may still claim without the lock,
    until when."""

    token: ObjectId
    left: int
    usable_until: datetime
