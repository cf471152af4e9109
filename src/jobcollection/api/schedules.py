"""`jc.schedules`: schedules as objects (BullMQ's Job Schedulers, Temporal's Schedules, Oban's
DynamicCron), stored beside the jobs and materialised by the elected job server, exactly one
run per occurrence (local/schedules.py). Each run is an ordinary job of the schedule's type,
carrying the schedule's id and its occurrence (`job.doc.scheduled`; `find_jobs(schedule=)`).

Unlike `Job.repeat(schedule=...)`, where the job reschedules itself when it completes (so a
run that never completes stops the series), a schedule object is a stored object: its runs
are made on time by the job server whatever became of the earlier ones, and it can be listed,
paused, resumed, triggered and backfilled by id.
"""

from __future__ import annotations

import builtins
from datetime import datetime, timedelta
from typing import Any

from ..model import ops
from ..model import validation as v
from ..model.schedules import (
    Overlap,
    Schedule,
    ScheduleCatchUp,
    schedule_id,
    schedule_spec,
)
from ..model.types import Id
from .seam import JobService


class Schedules:
    """The schedules of a job collection (`jc.schedules`), local or remote alike: each method
    runs one operation on the collection's service (remotely: the method it names)."""

    def __init__(self, service: JobService) -> None:
        self._service = service

    async def upsert(
        self,
        id: str,
        *,
        type: str,
        cron: str | None = None,
        every: float | timedelta | None = None,
        data: dict[str, Any] | None = None,
        timezone: str | None = None,
        jitter: float | timedelta = 0,
        overlap: Overlap = "allow",
        catch_up: ScheduleCatchUp = "latest",
    ) -> Schedule:
        """Create the schedule `id`, or replace its settings: a job of `type` with `data` at
        every occurrence of `cron` (croniter syntax, five fields or six with seconds, read in
        the IANA zone `timezone`, UTC by default) or `every` (seconds or a timedelta, at
        least one second; occurrences at multiples of it since the Unix epoch). Each run is
        delayed by up to `jitter` (seconds or a timedelta; the same delay for an occurrence
        in every process). `overlap`, when a run comes while earlier runs are not final:
        "allow" (run anyway), "skip" (no run), "buffer_one" (at most one run waiting behind
        them, which runs once the running one is final, whatever its outcome),
        "cancel_other" (cancel them, then run). `catch_up`, for occurrences missed while no
        job server ran: "latest" (one run, for the newest), "none" (none, unless the newest
        is at most a minute old), "all" (one per occurrence, the newest 100).

        The next run is recomputed when the timing (cron, timezone, every) changes, and kept
        otherwise, so an application may upsert its schedules at every start. A paused
        schedule stays paused. Everything is checked first (InvalidArgument naming the
        field), and nothing is stored on bad input. The schedule as stored. Remotely:
        jobScheduleUpsert (and each method below, the method it names: managers' and
        admins')."""
        spec = schedule_spec(
            id,
            type=type,
            cron=cron,
            every=every,
            data=data,
            timezone=timezone,
            jitter=jitter,
            overlap=overlap,
            catch_up=catch_up,
        )
        return await self._service.run(ops.UpsertSchedule(spec))

    async def get(self, id: str) -> Schedule | None:
        """The schedule `id` with its next runs and its last run (None: there is none).
        Remotely: jobSchedules."""
        found = await self._service.run(ops.ListSchedules(schedule_id(id)))
        return found[0] if found else None

    async def list(self) -> builtins.list[Schedule]:
        """Every schedule, by id, each with its next runs and its last run (its job's id,
        occurrence and current status). Remotely: jobSchedules."""
        return await self._service.run(ops.ListSchedules())

    async def pause(self, id: str) -> bool:
        """Stop making runs of the schedule (runs made already are left alone); False if it
        is paused already, or there is none."""
        return await self._service.run(ops.PauseSchedule(schedule_id(id)))

    async def resume(self, id: str) -> bool:
        """Make runs again, from the first occurrence after now (those that fell while it was
        paused get none: `backfill` makes them); False if it was not paused."""
        return await self._service.run(ops.ResumeSchedule(schedule_id(id)))

    async def remove(self, id: str) -> bool:
        """Delete the schedule (its runs stay, as jobs); False if there was none."""
        return await self._service.run(ops.RemoveSchedule(schedule_id(id)))

    async def trigger(self, id: str, *, key: str | None = None) -> Id:
        """One run now, besides the occurrences (whatever the overlap policy, paused or not);
        its job's id. Give an idempotency `key` (e.g. a request's id) to make a retried call
        safe: every call with the same key answers the one run the first made, even after a
        lost reply or from racing processes. InvalidArgument("id") if there is no such
        schedule, InvalidArgument("key") for a key that is not 1 to 200 printable
        characters."""
        op = ops.TriggerSchedule(schedule_id(id), None if key is None else schedule_id(key, "key"))
        return await self._service.run(op)

    async def backfill(self, id: str, start: datetime, end: datetime) -> builtins.list[Id]:
        """A run for each occurrence in [start, end] that has no run yet (at most 1,000 in
        one call; each delayed by its jitter, as its scheduled run would be): the ids of the
        runs made. Backfilling the same range again makes none, and the job server never
        makes a second run of an occurrence backfilled. InvalidArgument("id") if there is no
        such schedule."""
        op = ops.BackfillSchedule(
            schedule_id(id), v.aware_datetime(start, "start"), v.aware_datetime(end, "end")
        )
        return await self._service.run(op.checked())
