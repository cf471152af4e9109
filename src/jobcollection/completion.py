"""Bundled completion: done/fail reports that arrive together are applied together.

Each report waits for the current flush to finish (or for the next turn of the event loop),
then joins a batch: one read of the jobs, one unordered bulk write of the per-job conditional
updates (each still fenced by `{_id, runId, status: running}`; jobs of one claim that finish
with the same change share one update), one insert of the repeats, and one lookup of
dependents. Every caller gets its own result. Under load this makes the cost of
finishing a job a fraction of a round trip; a lone report costs what it did unbatched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import bson
import bson.errors
from bson import ObjectId
from pymongo import UpdateMany, UpdateOne

from . import rules
from .constants import JOB_STATUS_CANCELLABLE
from .document import JobDoc
from .rules import Id
from .schedule import next_repeat_wait_ms

if TYPE_CHECKING:
    from .operations import Operations

logger = logging.getLogger("jobcollection")

FLUSH_MARK = "_private.jobcollectionFlush"  # listed in document.INTERNAL_PRIVATE_KEYS
"""Where each done/fail write records the flush that made it: in `_private`, which v1.x's
schema allows and which is never returned."""

Outcome = bool | Id


@dataclass(slots=True)
class Report:
    """One worker's done or fail, waiting to be applied."""

    kind: Literal["done", "fail"]
    job_id: Id
    run_id: Id
    value: dict[str, Any]
    fatal: bool = False
    repeat_id: bool = False
    delay_deps_ms: int | None = None
    future: asyncio.Future[Outcome] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


@dataclass(slots=True)
class _Planned:
    report: Report
    doc: JobDoc
    status: str


class Completer:
    """Collects done/fail reports and applies them in batches."""

    def __init__(self, ops: Operations) -> None:
        self._ops = ops
        self._pending: list[Report] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, report: Report) -> Outcome:
        self._pending.append(report)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain(), name="jobcollection-completion")
        return await asyncio.shield(report.future)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _drain(self) -> None:
        await asyncio.sleep(0)  # let reports made in the same turn join this batch
        while self._pending:
            batch, self._pending = self._take_batch()
            try:
                outcomes = await self._flush(batch)
            except Exception as exc:
                for report in batch:
                    if not report.future.done():
                        report.future.set_exception(exc)
            else:
                for report, outcome in zip(batch, outcomes, strict=True):
                    if not report.future.done():
                        report.future.set_result(outcome)

    def _take_batch(self) -> tuple[list[Report], list[Report]]:
        """One report per job in a batch; a second report for the same job waits its turn."""
        batch: list[Report] = []
        later: list[Report] = []
        seen: set[Id] = set()
        for report in self._pending:
            (later if report.job_id in seen else batch).append(report)
            seen.add(report.job_id)
        return batch, later

    async def _flush(self, batch: list[Report]) -> list[Outcome]:
        store, now = self._ops.store, self._ops.clock.now()
        flush = ObjectId()  # marks this flush's writes, to tell them apart after a race
        ids = [r.job_id for r in batch]
        found = {
            d["_id"]: d
            for d in await store.find({"_id": {"$in": ids}}, {"log": 0, "failures": {"$slice": -1}})
        }
        planned: list[_Planned] = []
        replayed: list[_Planned] = []
        updates: list[tuple[Report, dict[str, Any]]] = []
        for report in batch:
            raw = found.get(report.job_id)
            if raw is None:
                continue
            held = raw.get("status") == "running" and raw.get("runId") == report.run_id
            if not held:
                if _already_applied(report, raw):  # a retry after a lost reply
                    replayed.append(
                        _Planned(
                            report,
                            JobDoc.from_mongo(raw, with_private=True),
                            str(raw.get("status")),
                        )
                    )
                continue
            doc = JobDoc.from_mongo(raw, with_private=True)
            if report.kind == "done":
                status, update = "completed", rules.done(doc, report.value, now)
            else:
                status, update = rules.fail(doc, report.value, report.fatal, now)
            update.setdefault("$set", {})[FLUSH_MARK] = flush
            planned.append(_Planned(report, doc, status))
            updates.append((report, store.capped(update)))
        applied = planned
        if updates and await store.bulk_write(_grouped_writes(updates)) < len(updates):
            applied = await self._confirm(planned, flush)
        outcomes: dict[int, Outcome] = {id(p.report): True for p in applied}
        # A repeated report changes nothing and gets False, as any report on a job no longer
        # held does; but it redoes the follow-ups (repeat, dependents), each idempotent, in
        # case the lost reply hid a failure between the status write and them.
        applied = [*applied, *replayed]
        repeats = await self._repeat([p for p in applied if p.status == "completed"], now)
        outcomes.update((key, new_id) for key, new_id in repeats.items() if key in outcomes)
        again = {p.report.job_id for p in replayed}
        await self._resolve_dependents(
            [p for p in applied if p.status == "completed"], now, replayed=again
        )
        await self._cancel_dependents(
            [p.report.job_id for p in applied if p.status == "failed"], replayed=again
        )
        results: list[Outcome] = []
        for report in batch:
            outcome = outcomes.get(id(report), False)
            if outcome is False:
                logger.warning(
                    "job%s: job %s is not running under run %s",
                    "Done" if report.kind == "done" else "Fail",
                    report.job_id,
                    report.run_id,
                )
            results.append(outcome)
        return results

    async def _confirm(self, planned: list[_Planned], flush: ObjectId) -> list[_Planned]:
        """After a partial bulk write (another writer, perhaps another instance reporting on
        the same claim, got there first): the reports whose write carries this flush's mark."""
        marked = {
            d["_id"]
            for d in await self._ops.store.find(
                {"_id": {"$in": [p.report.job_id for p in planned]}, FLUSH_MARK: flush},
                {"_id": 1},
            )
        }
        return [p for p in planned if p.report.job_id in marked]

    async def _repeat(self, completed: list[_Planned], now: datetime) -> dict[int, Outcome]:
        """Insert the next run of each completed repeating job; the new ids for repeat_id."""
        clones: list[dict[str, Any]] = []
        owners: list[Report] = []
        for p in completed:
            wait_ms = next_repeat_wait_ms(p.doc, now)
            if wait_ms is not None:
                clone = rules.rerun_document(
                    p.doc, p.doc.repeats - 1, p.doc.repeat_until, wait_ms, now
                )
                # One id per completion: a retried done() cannot schedule a second repeat.
                clone["_id"] = rules.repeat_job_id(p.report.job_id, p.report.run_id)
                clones.append(clone)
                owners.append(p.report)
        if not clones:
            return {}
        new_ids = await self._ops.store.insert_many(clones, skip_existing=True)
        return {id(r): new_id for r, new_id in zip(owners, new_ids, strict=True) if r.repeat_id}

    async def _resolve_dependents(
        self, completed: list[_Planned], now: datetime, replayed: set[Id]
    ) -> None:
        if not completed:
            return
        by_id = {p.report.job_id: p.report for p in completed}
        waiting = await self._ops.store.find({"depends": {"$in": list(by_id)}}, {"depends": 1})
        again = [i for i in by_id if i in replayed]
        if again:  # the lost reply may have hidden a promotion cut short after the resolve
            waiting += await self._ops.store.find(
                {"resolved": {"$in": again}, "status": "waiting", "depends": {"$size": 0}},
                {"depends": 1},
            )
        if not waiting:
            return
        writes = []
        for dependent in waiting:
            antecedents = [a for a in dependent["depends"] if a in by_id]
            delays = [d for a in antecedents if (d := by_id[a].delay_deps_ms) is not None]
            query, update = rules.resolve_dependents(
                dependent["_id"],
                [(a, by_id[a].run_id) for a in antecedents],
                now,
                max(delays) if delays else None,
            )
            if antecedents:
                writes.append(UpdateOne(query, self._ops.store.capped(update)))
        if writes:
            await self._ops.store.bulk_write(writes)
        await self._ops.job_ready([d["_id"] for d in waiting])

    async def _cancel_dependents(self, failed: list[Id], replayed: set[Id]) -> None:
        if not failed:
            return
        query: dict[str, Any] = {"depends": {"$in": failed}}
        if not any(i in replayed for i in failed):
            query["status"] = {"$in": list(JOB_STATUS_CANCELLABLE)}
        # else: dependents cancelled before a lost reply still lead the cascade to theirs
        doomed = await self._ops.store.find(query, {"_id": 1})
        if doomed:
            await self._ops.job_cancel([d["_id"] for d in doomed])


def _grouped_writes(updates: list[tuple[Report, dict[str, Any]]]) -> list[Any]:
    """The bulk write's requests: one per distinct change. Jobs claimed together (one runId)
    and finished with the same change (a payload batch completed with one result) share one
    UpdateMany, fenced as each job alone would be; any other job gets its own UpdateOne."""
    groups: dict[tuple[Any, Any], tuple[list[Id], dict[str, Any]]] = {}
    for report, update in updates:
        try:
            change: Any = bson.encode(update)
        except (bson.errors.BSONError, TypeError):  # the write itself will report it
            change = id(report)
        groups.setdefault((report.run_id, change), ([], update))[0].append(report.job_id)
    writes: list[Any] = []
    for (run_id, _), (ids, update) in groups.items():
        if len(ids) == 1:
            writes.append(UpdateOne(rules.held(ids[0], run_id), update))
        else:
            fence = {"_id": {"$in": ids}, "runId": run_id, "status": "running"}
            writes.append(UpdateMany(fence, update))
    return writes


def _already_applied(report: Report, raw: dict[str, Any]) -> bool:
    """Whether this very report was applied before (its caller lost the reply).

    done() under runId R leaves the job completed with runId R and its result; fail() under
    R clears the runId and appends `{**error, runId: R}` to failures. The same value from the
    same run means the same call repeated. A different value is another report (False), and
    a lease expiry records its own error, so a late worker still gets False.
    """
    if report.kind == "done":
        return (
            raw.get("status") == "completed"
            and raw.get("runId") == report.run_id
            and raw.get("result") == report.value
        )
    failures = raw.get("failures") or [{}]
    return raw.get("runId") != report.run_id and failures[-1] == {
        **report.value,
        "runId": report.run_id,
    }
