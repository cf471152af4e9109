"""The per-minute history, applied: the job server's pass counts the jobs finished since the
last pass into `<root>.history` (rules/history.py), and the dashboard reads it back.

Who writes it: the pass of the process that leads the job server, never a report. A report
costs no command more: the pass reads the jobs finished in a range of time through the partial
index on `updated` of completed and failed jobs (only finished jobs are in it), then
adds them with one bulk of upserts. A range is taken by a conditional update of the mark
(`upto`, `pending`) before it is counted, and each bucket records the ranges added to it, so a
range is counted once however the passes of several processes interleave, and a pass that dies
between taking a range and marking it counted leaves it pending for the next pass to finish.
Per pass: a read of the mark, then per range (at most MAX_RANGES of MAX_SPAN each) a take, a
read of finished jobs, one bulk write and the mark's update.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime

from ..model.clock import Clock
from ..model.document import assume_utc
from ..model.errors import DatabaseError
from ..mongo.indexes import HISTORY_INDEXES
from ..mongo.store import Document, Store, is_duplicate
from ..rules import history as rules

logger = logging.getLogger("jobcollection")


class History:
    """The history of one collection's finished jobs."""

    def __init__(self, jobs: Store, clock: Clock) -> None:
        self._jobs = jobs
        self._clock = clock
        self._store: Store | None = None
        self._indexed = False

    async def _history(self) -> Store | None:
        """The Store of `<root>.history`, its indexes made (None: no database beside the
        jobs, as for a test's wrapper of the collection: no history)."""
        if self._store is None:
            name = self._jobs.collection.name.removesuffix(".jobs") + ".history"
            try:
                self._store = self._jobs.sibling(name, counted=False)
            except DatabaseError:
                return None
        if not self._indexed:
            for index in HISTORY_INDEXES:
                await self._store.create_index(index.keys, **index.options())
            self._indexed = True
        return self._store

    async def record(self) -> int:
        """Count the jobs finished since the last pass (a job-server pass step); the number
        counted."""
        store = await self._history()
        if store is None:
            return 0
        now = self._clock.now()
        mark = await store.find_one({"_id": rules.MARK_ID})
        if mark is None:  # the first pass ever: it counts from CATCH_UP back
            mark = rules.first_mark(now)
            try:
                await store.insert_one(dict(mark))
            except DatabaseError as exc:
                if not is_duplicate(exc):
                    raise
                return 0  # another process's first pass: it counts
        mark = assume_utc(mark)
        counted = 0
        for _ in range(rules.MAX_RANGES):
            pending = mark.get("pending")
            if isinstance(pending, Mapping):
                begin, end = pending["from"], pending["to"]
            else:
                taken = rules.next_range(mark["upto"], now)
                if taken is None:
                    break
                begin, end = taken
                query, update = rules.take(mark["upto"], begin, end)
                if not await store.update_one(query, update):
                    break  # another process took it: it counts it
            counted += await self._count(store, begin, end)
            query, update = rules.applied(end)
            await store.update_one(query, update)
            mark = {"upto": end, "pending": None}
        return counted

    async def _count(self, store: Store, begin: datetime, end: datetime) -> int:
        """Add the jobs finished in (begin, end] to their buckets, once (see rules.add)."""
        jobs = []
        for raw in await self._jobs.find(rules.finished_in(begin, end), rules.PROJECTION):
            job = rules.finished(assume_utc(raw))
            if job is not None and rules.within(job, begin, end):
                jobs.append(job)
        buckets = rules.tally(jobs)
        if not buckets:
            return 0
        outcome = await store.update_each(
            [rules.add(key, counts, end) for key, counts in buckets.items()], upsert=True
        )
        for error in outcome.refused.values():
            if not is_duplicate(error):  # a duplicate: that bucket has this range already
                raise error
        return len(jobs)

    async def read(self, span: str, since: datetime) -> list[Document]:
        """The history documents of a span (`m`, `h`) from `since` on."""
        store = await self._history()
        if store is None:
            return []
        return [assume_utc(d) for d in await store.find(rules.recent(span, since))]

    def window(self, span: str, count: int) -> datetime:
        """The start of the first of the last `count` spans up to now."""
        return rules.floor(self._clock.now(), span) - rules.SPANS[span] * (count - 1)
