"""The per-minute history, applied: the job server's pass counts the jobs finished since the
last pass into `<root>.history` (rules/history.py), and the dashboard reads it back.

Who writes it: the pass of the process that leads the job server, never a report. A report
costs no command more: the pass reads the jobs finished in a range of time through the partial
index on `updated` of completed and failed jobs (only finished jobs are in it), then
adds them with one bulk of upserts.

A range's jobs are read in batches of at most BATCH, in `updated` order on that index, each
batch going on after the last one's `updated`; the jobs of the millisecond a full batch ends
in are read apart, BATCH at most a read in `_id` order, so however many jobs finish in one
millisecond (a bulk write stamps them alike) none is read twice or skipped, and no read
returns more than BATCH jobs at 100,000 jobs a minute. Counting on the server instead (an
aggregation's `$group` per type and minute) was weighed and not chosen: a job's wait and run
times come from its log (its last `Job Running` entry, the latest ready mark before it), which
a pipeline would have to dig out with `$filter`/`$reduce` over the log and then bucket, and
the history keeps mergeable histograms (a minute's add up to an hour's), which the
`$percentile` accumulator (MongoDB 7.0 and later only, approximate: t-digest) cannot give;
servers before 7.0 are supported, and the in-memory backend runs few expressions.

A range is taken by a conditional update of the mark (`upto`, `pending`) before it is
counted, and each bucket records the ranges added to it, so a range is counted once however
the passes of several processes interleave, and a pass that dies between taking a range and
marking it counted leaves it pending for the next pass to finish.
Per pass: a read of the mark, then per range (at most MAX_RANGES of MAX_SPAN each) a take,
reads of finished jobs (one per BATCH of them, and one more per millisecond a full batch ends
in), one bulk write and the mark's update. The bulk write comes after the last read, so a
pass that dies while reading has written nothing: the next counts the range whole.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
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
        buckets: dict[rules.Key, rules.Tally] = {}
        counted = 0
        async for batch in self._finished(begin, end):
            jobs = []
            for raw in batch:
                job = rules.finished(assume_utc(raw))
                if job is not None and rules.within(job, begin, end):
                    jobs.append(job)
            rules.tally(jobs, buckets)
            counted += len(jobs)
        if not buckets:
            return 0
        outcome = await store.update_each(
            [rules.add(key, counts, end) for key, counts in buckets.items()], upsert=True
        )
        for error in outcome.refused.values():
            if not is_duplicate(error):  # a duplicate: that bucket has this range already
                raise error
        return counted

    async def _finished(self, begin: datetime, end: datetime) -> AsyncIterator[list[Document]]:
        """The finished jobs whose last write is in (begin, end], in batches of at most
        rules.BATCH (see the module docstring): each job once."""
        after = begin
        while True:
            batch = await self._jobs.find(
                rules.finished_in(after, end),
                rules.PROJECTION,
                sort=rules.BY_UPDATED,
                limit=rules.BATCH,
            )
            if len(batch) < rules.BATCH:
                yield batch
                return
            last = batch[-1]["updated"]
            yield [raw for raw in batch if raw["updated"] != last]
            after_id = None
            while True:  # the jobs of the millisecond the batch ended in, in `_id` order
                same = await self._jobs.find(
                    rules.finished_at(last, after_id),
                    rules.PROJECTION,
                    sort=rules.BY_ID,
                    limit=rules.BATCH,
                )
                yield same
                if len(same) < rules.BATCH:
                    break
                after_id = same[-1]["_id"]
            after = last

    async def read(self, span: str, since: datetime) -> list[Document]:
        """The history documents of a span (`m`, `h`) from `since` on."""
        store = await self._history()
        if store is None:
            return []
        return [assume_utc(d) for d in await store.find(rules.recent(span, since))]

    def window(self, span: str, count: int) -> datetime:
        """The start of the first of the last `count` spans up to now."""
        return rules.floor(self._clock.now(), span) - rules.SPANS[span] * (count - 1)
