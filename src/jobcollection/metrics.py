"""Prometheus metrics of a JobCollection (the `metrics` extra: prometheus-client).

`JobMetrics(jc, registry=...)` listens to the collection's method events and job-server
passes, and reads the queue depths when asked (`await metrics.refresh()`, or `metrics.run()`
in the background):

    jobcollection_jobs_enqueued_total{type}             jobs saved (new ones, not resaves)
    jobcollection_jobs_finished_total{type,outcome}     completed | retried | failed | snoozed
    jobcollection_job_duration_seconds{type}            claim to report, per attempt
    jobcollection_job_wait_seconds{type}                due (or saved) to claimed
    jobcollection_queue_depth{type,status}              jobs stored, by type and status
    jobcollection_oldest_ready_age_seconds{type}        how long the oldest ready job waited
    jobcollection_type_paused{type}                     1 for a type paused on every process
    jobcollection_concurrency_limit{type}               a limited type's max running jobs
    jobcollection_workers{type}                         live queues claiming the type
    jobcollection_leases_expired_total                  running jobs failed for a lost lease

Labels never hold a job id or a user: their number stays that of the job types. What is
counted is what passes through this JobCollection: its own queues, and, on a server, the
remote and DDP workers it serves. A finished job's type and timing come from its claim through
this collection, so a report on a job claimed elsewhere is not counted. `outcome` "retried"
means the failed job had attempts left when claimed (and its failure was not fatal);
"snoozed" that its worker put it back to wait without using an attempt (jobFail's `snooze`).

From the command line, `jobcollection serve --metrics-port PORT` and `jobcollection worker ...
--metrics-port PORT` (on a database) serve these, and the process's own, on a port of their
own (prometheus_client's HTTP server, on 127.0.0.1 unless `--metrics-host` says otherwise),
in the text format `promtool check metrics` accepts.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from .local.server import ServerPass
from .model.document import JobDoc
from .model.errors import DatabaseError
from .model.events import MethodEvent

if TYPE_CHECKING:
    from .api.collection import JobCollection

logger = logging.getLogger("jobcollection.metrics")

MAX_CLAIMS: Final = 100_000
"""Claims remembered until their report (the oldest are forgotten: a worker that died)."""
DURATION_BUCKETS: Final = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, math.inf)
WAIT_BUCKETS: Final = (0.01, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 21600, math.inf)


@dataclass(frozen=True, slots=True)
class _Claim:
    type: str
    at: datetime
    may_retry: bool


class JobMetrics:
    """The metrics of one JobCollection in a Prometheus registry (the default one unless
    given); create one per collection and registry."""

    def __init__(self, jc: JobCollection, *, registry: CollectorRegistry = REGISTRY) -> None:
        self.jc = jc
        self.enqueued = Counter(
            "jobcollection_jobs_enqueued", "Jobs saved", ["type"], registry=registry
        )
        self.finished = Counter(
            "jobcollection_jobs_finished",
            "Job attempts reported: completed, failed and retried, or failed for good",
            ["type", "outcome"],
            registry=registry,
        )
        self.duration = Histogram(
            "jobcollection_job_duration_seconds",
            "Seconds from a job's claim to its report",
            ["type"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.wait = Histogram(
            "jobcollection_job_wait_seconds",
            "Seconds a job waited between falling due and being claimed",
            ["type"],
            buckets=WAIT_BUCKETS,
            registry=registry,
        )
        self.depth = Gauge(
            "jobcollection_queue_depth",
            "Jobs stored, by type and status (as of the last refresh)",
            ["type", "status"],
            registry=registry,
        )
        self.oldest_ready = Gauge(
            "jobcollection_oldest_ready_age_seconds",
            "Seconds the oldest ready job of a type has been due (as of the last refresh)",
            ["type"],
            registry=registry,
        )
        self.paused = Gauge(
            "jobcollection_type_paused",
            '1 for a job type no process claims now (cluster-wide pause; type "*": every '
            "type), as of the last refresh",
            ["type"],
            registry=registry,
        )
        self.limit = Gauge(
            "jobcollection_concurrency_limit",
            "The most jobs of a type running at once on every process (its concurrency "
            "limit's max_running; per group with group_by), as of the last refresh",
            ["type"],
            registry=registry,
        )
        self.workers = Gauge(
            "jobcollection_workers",
            "Live queues of every process that claim a type (the worker registry), as of the "
            "last refresh",
            ["type"],
            registry=registry,
        )
        self.expired = Counter(
            "jobcollection_leases_expired",
            "Running jobs failed because their lease ran out",
            registry=registry,
        )
        self._claims: OrderedDict[tuple[Any, Any], _Claim] = OrderedDict()
        events = jc.events
        events.on("jobSave", self._saved)
        events.on("jobSaveMany", self._saved_many)
        events.on("getWork", self._claimed)
        events.on("jobDone", self._reported)
        events.on("jobFail", self._reported)
        events.on("jobServerPass", self._passed)

    # --- events ------------------------------------------------------------------------------

    def _saved(self, event: MethodEvent) -> None:
        if event.error is None and event.return_value is not None and event.params:
            self._count_new(event.params[0])

    def _saved_many(self, event: MethodEvent) -> None:
        if event.error is not None or not event.params:
            return
        for doc, saved in zip(event.params[0], event.return_value or [], strict=False):
            if saved is not None:
                self._count_new(doc)

    def _count_new(self, doc: Any) -> None:
        """A saved document that had no id yet is a new job (a resave keeps its id)."""
        job_type, job_id = _type_and_id(doc)
        if job_type is not None and job_id is None:
            self.enqueued.labels(job_type).inc()

    def _claimed(self, event: MethodEvent) -> None:
        if event.error is not None:
            return
        now = self.jc.clock.now()
        docs: Sequence[Any] = event.return_value or []
        for doc in docs:
            if not isinstance(doc, JobDoc):
                continue
            due = max(doc.after, doc.created or doc.after)
            self.wait.labels(doc.type).observe(max(0.0, (now - due).total_seconds()))
            may_retry = doc.retries > 0 and doc.retry_until > now
            self._claims[(doc.id, doc.run_id)] = _Claim(doc.type, now, may_retry)
        while len(self._claims) > MAX_CLAIMS:
            self._claims.popitem(last=False)

    def _reported(self, event: MethodEvent) -> None:
        if event.error is not None or not event.return_value or len(event.params) < 2:
            return
        claim = self._claims.pop((event.params[0], event.params[1]), None)
        if claim is None:
            return  # claimed elsewhere (another process), or reported already
        if event.method == "jobDone":
            outcome = "completed"
        else:
            given = event.params[3] if len(event.params) > 3 else None
            options = given if isinstance(given, dict) else {}
            if options.get("snooze") is not None:
                outcome = "snoozed"
            else:
                retried = claim.may_retry and not options.get("fatal")
                outcome = "retried" if retried else "failed"
        self.finished.labels(claim.type, outcome).inc()
        seconds = (self.jc.clock.now() - claim.at).total_seconds()
        self.duration.labels(claim.type).observe(max(0.0, seconds))

    def _passed(self, event: MethodEvent) -> None:
        done = event.return_value
        if isinstance(done, ServerPass) and done.expired:
            self.expired.inc(done.expired)

    # --- what is stored ----------------------------------------------------------------------

    async def refresh(self) -> None:
        """Read the queue depths and the oldest ready job of each type (`jc.stats()`), and
        which types are paused on every process (`jc.paused_types()`), each limited type's
        concurrency limit (`jc.concurrency_limits()`), and how many live queues claim each
        type (`jc.workers()`)."""
        stats = await self.jc.stats()
        paused = await self.jc.paused_types()
        limits = await self.jc.concurrency_limits()
        claiming: dict[str, int] = {}
        for worker in await self.jc.workers():
            for job_type in worker.types:
                claiming[job_type] = claiming.get(job_type, 0) + 1
        self.workers.clear()
        for job_type, n in claiming.items():
            self.workers.labels(job_type).set(n)
        self.paused.clear()
        for job_type in (*paused.types, *(["*"] if paused.every else [])):
            self.paused.labels(job_type).set(1)
        self.limit.clear()
        for job_type, limit in limits.items():
            self.limit.labels(job_type).set(limit.max_running)
        self.depth.clear()
        for (job_type, status), n in stats.counts.items():
            self.depth.labels(job_type, status).set(n)
        self.oldest_ready.clear()
        for job_type in stats.oldest_ready:
            self.oldest_ready.labels(job_type).set(stats.oldest_ready_age(job_type))

    async def run(self, interval: float = 15.0) -> None:
        """Refresh every `interval` seconds until cancelled (run it as a task). A refresh the
        database fails is logged (a warning) and tried again at the next interval; the gauges
        keep their last values meanwhile."""
        while True:
            try:
                await self.refresh()
            except DatabaseError as exc:
                logger.warning("metrics: reading the queue depths failed: %s", exc)
            await asyncio.sleep(interval)


def _type_and_id(doc: Any) -> tuple[str | None, Any]:
    if isinstance(doc, JobDoc):
        return doc.type, doc.id
    if isinstance(doc, dict):
        job_type = doc.get("type")
        return (job_type if isinstance(job_type, str) else None), doc.get("_id")
    return None, None
