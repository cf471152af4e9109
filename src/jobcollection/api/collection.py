"""JobCollection: a job queue over one MongoDB collection.

Its Python methods validate their arguments and call the typed core (`jc.service`, local/core.py),
which checks the limits, fires each method's events and writes its log line; `jc.call(method,
*params, user_id=)` runs the same operations from the original's wire format, checked against
the allow/deny rules when made on behalf of a user (methods/layer.py).
"""

from __future__ import annotations

import inspect
import logging
import warnings
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import IO, Any

from ..local.core import Core
from ..local.leadership import DEFAULT_LEASE_MS, Leader
from ..local.server import ServerPass
from ..methods.layer import MethodLayer
from ..model import constants as c
from ..model import validation as v
from ..model.clock import Clock
from ..model.errors import DatabaseError, InvalidArgument, InvalidArgumentType
from ..model.events import EventEmitter
from ..model.limits import DEFAULT_LIMITS, Limits
from ..model.ops import ShutdownServer, StartServer
from ..model.workers import TTL_S, worker_ttl_ms
from ..mongo.indexes import INDEXES, UNIQUE_JOBS
from ..mongo.servertime import ServerClock
from .jobs import JobsAPI

logger = logging.getLogger("jobcollection")


class JobCollection(JobsAPI):
    """A persistent job queue stored in a MongoDB collection."""

    def __init__(
        self,
        collection: Any,
        *,
        clock: Clock | None = None,
        limits: Limits | None = None,
        permissions: Mapping[str, Any] | None = None,
        server_lease: float | timedelta = DEFAULT_LEASE_MS / 1000,
        worker_ttl: float | timedelta = TTL_S,
    ) -> None:
        """`clock`: where "now" comes from; by default the database server's time
        (`ServerClock`), so processes whose clocks disagree still agree on leases and
        schedules. `limits`: bounds on job size and batch sizes (`Limits()` by default).
        `permissions`: seed 002's `{"allow": rule, "deny": rule}`, rules over every method
        (as `allow(admin=rule)` and `deny(admin=rule)`); a rule is a list of user ids or a
        function of `(user_id, method)` or `(user_id, method, params)`. `server_lease`
        (seconds or a timedelta, default 10): of all the processes whose job server runs on
        this collection, one runs its passes, holding a lease it renews every third of this;
        when it stops, another takes over within a third of it, and when it dies, within
        this and a third (`job_server_leader()`). `worker_ttl` (seconds or a timedelta, 1 s to
        a day, default 30): how long the registration of each queue of this collection in
        the worker registry lasts unless renewed; a queue renews it every third of this, so a
        process that dies is gone from `workers()` within this (shorter: sooner, at one
        write per queue per third)."""
        if clock is not None and not isinstance(clock, Clock):
            raise InvalidArgumentType("clock", "must have a now() method")
        if limits is not None and not isinstance(limits, Limits):
            raise InvalidArgumentType("limits", "must be a jobcollection.Limits")
        lease_ms = v.duration_ms(server_lease, "server_lease", minimum_ms=3)
        ttl_ms = worker_ttl_ms(worker_ttl, "worker_ttl")
        core = Core(
            collection, clock or ServerClock(collection), limits or DEFAULT_LIMITS, lease_ms, ttl_ms
        )
        self._core = core
        self._methods = MethodLayer(core)
        name = str(getattr(collection, "name", "queue.jobs"))
        self.root = name[: -len(".jobs")] if name.endswith(".jobs") else name
        if permissions is not None:
            self._permit(permissions)

    def _permit(self, permissions: Mapping[str, Any]) -> None:
        """Seed 002's `permissions` option (see __init__)."""
        if not isinstance(permissions, Mapping):
            raise InvalidArgumentType("permissions", 'must be {"allow": rule, "deny": rule}')
        unknown = sorted(set(map(str, permissions)) - {"allow", "deny"})
        if unknown:
            raise InvalidArgument("permissions", f"unknown keys {unknown}; use allow, deny")
        for kind, rule in permissions.items():
            checked = _seed_rule(rule, f"permissions[{kind!r}]")
            (self.allow if kind == "allow" else self.deny)(admin=checked)

    @classmethod
    def from_database(
        cls,
        db: Any,
        root: str = "queue",
        *,
        clock: Clock | None = None,
        limits: Limits | None = None,
        permissions: Mapping[str, Any] | None = None,
        server_lease: float | timedelta = DEFAULT_LEASE_MS / 1000,
        worker_ttl: float | timedelta = TTL_S,
    ) -> JobCollection:
        """The JobCollection stored in `<root>.jobs` of a database (options as for the
        constructor)."""
        if not isinstance(root, str) or not root:
            raise InvalidArgument("root", "must be a non-empty string")
        return cls(
            db[f"{root}.jobs"],
            clock=clock,
            limits=limits,
            permissions=permissions,
            server_lease=server_lease,
            worker_ttl=worker_ttl,
        )

    @property
    def service(self) -> Core:
        """The typed operations `Job` and `JobQueue` call (a JobService, see seam.py)."""
        return self._core

    @property
    def clock(self) -> Clock:
        """Where "now" comes from."""
        return self._core.clock

    @property
    def limits(self) -> Limits:
        """Bounds on what a job may hold and a call may ask for."""
        return self._core.limits

    @property
    def collection(self) -> Any:
        """The wrapped driver collection, for your own read queries."""
        return self._core.store.collection

    @property
    def scrub(self) -> Callable[[dict[str, Any]], dict[str, Any]]:
        """A function applied to every stored document the library reads as a job (claims,
        reports, expiry, get_job...), before it is validated: for example to drop application
        fields a shared collection carries. Identity by default."""
        return self._core.reader.scrub

    @scrub.setter
    def scrub(self, function: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        if not callable(function):
            raise InvalidArgumentType("scrub", "must be a function of a document")
        self._core.reader.scrub = function

    @property
    def events(self) -> EventEmitter:
        """The method events: `jc.events.on("call" | "error" | <method>, handler)`."""
        return self._core.events

    @property
    def commands(self) -> int:
        """Database commands issued so far by this instance (for benchmarks)."""
        return self._core.store.commands

    # --- method layer ------------------------------------------------------------------------

    async def call(self, method: str, *params: Any, user_id: Any = None) -> Any:
        """Run a method by its original name with wire-shaped params (options in camelCase,
        durations in ms). With a user_id the allow/deny rules must permit the call."""
        return await self._methods.call(method, params, user_id)

    def allow(self, **rules: Any) -> None:
        """Rules by group (admin, manager, creator, worker) or method name that may allow."""
        self._methods.rules.allow(rules)

    def deny(self, **rules: Any) -> None:
        """Rules that refuse a call even when an allow rule matches."""
        self._methods.rules.deny(rules)

    def permits(self, method: str, *params: Any, user_id: Any) -> bool:
        """Whether the allow/deny rules would let this user make this call (what `call`
        checks first), without making it: for a front end that shows only what a user may
        do, or a remote API that must check a request that is not a method call."""
        if method not in c.METHOD_PERMISSIONS:
            raise InvalidArgument("method", f"unknown method {method!r}")
        return self._methods.rules.permits(user_id, method, params)

    def set_log_stream(self, stream: IO[str] | None = None) -> None:
        """Write one line per call to `stream` (the original's format, parameters included;
        None stops), once per job-server start/shutdown cycle."""
        self._core.set_log_stream(stream)

    # --- job server --------------------------------------------------------------------------

    async def start_job_server(self) -> bool:
        """Create the indexes, allow claiming and start the promotion loop."""
        await self.ensure_indexes()
        return await self._core.run(StartServer())

    async def shutdown_job_server(self, timeout: float | timedelta = 60.0) -> bool:
        """Stop claiming and promotion; after timeout fail the jobs this instance handed out
        that are still running (non-fatally, so their retries apply)."""
        return await self._core.run(ShutdownServer(v.duration_ms(timeout, "timeout")))

    async def start_jobs(self) -> bool:
        """Deprecated (the seeds' early name): `start_job_server()`."""
        warnings.warn(
            "start_jobs() is deprecated: use start_job_server()", DeprecationWarning, stacklevel=2
        )
        return await self.start_job_server()

    async def stop_jobs(self, timeout: float | timedelta = 60.0) -> bool:
        """Deprecated (the seeds' early name): `shutdown_job_server(timeout)`."""
        warnings.warn(
            "stop_jobs() is deprecated: use shutdown_job_server()",
            DeprecationWarning,
            stacklevel=2,
        )
        return await self.shutdown_job_server(timeout)

    def promote(self, interval: float | timedelta = 15.0) -> None:
        """Set the seconds between promotion/expiry passes; a pass runs soon."""
        ms = v.duration_ms(interval, "interval", minimum_ms=1)
        self._core.server.promote(ms / 1000)

    async def run_server_pass(self) -> ServerPass:
        """One pass now (what the background loop does each interval): fail expired leases,
        finish pending follow-ups, promote due jobs; if this process holds the job server's
        lease, or can take it (else nothing is done: `ServerPass.leading` is False)."""
        return await self._core.run_server_pass()

    async def job_server_leader(self) -> Leader | None:
        """Which process runs the job server's passes now (its host, pid, epoch, since when,
        until when unless renewed, whether it is this one), or None while no process holds
        an unexpired lease."""
        return await self._core.server.leadership.leader()

    async def ensure_indexes(self) -> None:
        """The indexes of job-collection plus those the library's queries use (mongo/indexes.py).
        A sharded collection cannot have the unique jobs' index: that is logged, and saving
        a unique job then raises DatabaseError."""
        store = self._core.store
        for index in INDEXES:
            try:
                await store.create_index(index.keys, **index.options())
            except DatabaseError as exc:
                if index is not UNIQUE_JOBS:
                    raise
                store.unique_jobs = False
                logger.warning("unique jobs are not available on this collection: %s", exc)
            else:
                if index is UNIQUE_JOBS:
                    store.unique_jobs = True

    async def close(self) -> None:
        """Cancel background tasks (the job server stops promoting; a shutdown still in its
        grace period is finished now) and wait for reports in flight to be written."""
        await self._core.close()


def _seed_rule(rule: Any, name: str) -> Any:
    """A seed-002 rule as a rule of `allow`/`deny`: a function of `(user_id, method)` gets the
    params too, unused; a list of user ids is kept."""
    if not callable(rule):
        return rule  # a list of user ids (checked by allow/deny)
    try:
        takes = len(inspect.signature(rule).parameters)
    except (TypeError, ValueError):
        takes = 3
    if takes == 2:
        return lambda user_id, method, params: rule(user_id, method)
    return rule
