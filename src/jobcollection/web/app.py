"""The dashboard's routes: who a request is for, what it may do, and what each page reads.

    GET  /                      overview: counts per type and status, oldest ready, and the
                                history's trends per type (last hour, last day)
    GET  /live                  the overview's live part (what its script reloads)
    GET  /jobs?type=&status=&user=&data.PATH=VALUE&schedule=&sort=newest|oldest&after=CURSOR
                                job list, 50 a page; `id=` goes to a job's page;
                                `failure=TEXT` searches the failures of the newest (or
                                oldest) 500 jobs of the other filters
    GET  /jobs/{id}             a job: data, result, progress, log, failures, dependencies,
                                lineage; /jobs/{id}/live is its live part
    POST /jobs/{id}/{action}    pause, resume, cancel, restart, rerun or remove it
    GET  /workflows/{id}?type=&status=&after=   a workflow: progress, counts, its graph, its
                                jobs 50 a page; /batches/{id} a batch (no graph)
    POST /workflows/{id}/{cancel|retry}, /batches/{id}/{cancel|retry}   cancel its unfinished
                                jobs, or restart its failed and cancelled ones
    GET  /queues                per job type: counts, claims, concurrency, backlog, queues;
                                the rate limits' current windows
    GET  /schedules             schedule objects and repeating jobs
    GET  /workers               the worker registry and the job server's leader
    POST /schedules/{trigger|pause|resume}   run a schedule (form field `id`) now, pause it,
                                resume it
    POST /claims/{pause|resume} pause or resume a type's claims (or every type's) everywhere
    POST /limits/{set|remove}   set or remove a type's concurrency limit
    GET  /bulk/{action}?filters the count of the jobs an action on a filter would touch
    POST /bulk/{action}         do it (the filter again, as form fields)
    GET  /events[?job=ID|watch=queues|schedules|workers]   server-sent events: `change`
                                when the counts (or the job, or what the page watched shows)
                                change
    GET|POST /login, POST /logout   a form that keeps a bearer token in a cookie
    GET  /static/{name}         the stylesheet and the script (assets.py)

The job list, the queues, schedules and workers pages answer `?part=live` (beside their own
query) with their live part only: what the live script reloads on each `change` (the overview
and a job page answer it at /live and /jobs/{id}/live).

Every action is a method call, `jc.call(method, ..., user_id=user)`, so the collection's
allow/deny rules decide (403 when they refuse). Reads use the Python API (`stats`,
`find_jobs`, `get_job`), so every user `auth` accepts may see every job.

Against other sites: without `auth` only loopback clients, and only requests for loopback
names or `allowed_hosts`, are answered (DNS rebinding; security.py, hosts.py); every POST
needs the page's form token and is refused when the browser says another site sent it
(`Origin`, `Sec-Fetch-Site`); every response forbids framing and inline script.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import inspect
import ipaddress
import json
import logging
import secrets
import warnings
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ..api.workflows import WorkflowStatus
from ..local.limiter import current_windows
from ..model import validation as v
from ..model.concurrency import MAX_RUNNING, ConcurrencyLimit
from ..model.constants import Status
from ..model.errors import (
    DatabaseError,
    InvalidArgument,
    InvalidArgumentType,
    PermissionDenied,
    WakeupUnavailable,
)
from ..model.ops import job_types, one_type
from ..model.workers import WorkerInfo
from ..mongo.wakeup import follow
from ..remote.auth import Auth, until_revoked
from ..rules.history import series
from . import graph, pages
from .assets import ASSETS
from .hosts import allowed_hosts_from
from .html import pretty
from .job_facts import last_run, needs_registry
from .pages import ACTIONS, Filters, View
from .queue_pages import (
    SCHEDULE_ACTIONS,
    Queues,
    queues_live,
    queues_page,
    schedules_live,
    schedules_page,
)
from .security import Guard
from .trends import WINDOWS, trends
from .workflow_pages import GROUP_ACTIONS, Group, group_page, related

logger = logging.getLogger("jobcollection.web")

if TYPE_CHECKING:
    from ..api.collection import JobCollection
    from ..api.job import Job

LOOPBACK_USER = "dashboard"
"""The user a dashboard without `auth` acts as (granted admin unless it is read-only)."""
COOKIE = "jobcollection_dashboard"
"""The cookie the login form keeps the token in."""
PAGE_SIZE = 50
"""Jobs per page of the job list."""
MAX_BULK = 10_000
"""The most jobs an action on a filter may touch (narrow the filter beyond)."""
CHUNK = 1_000
"""Ids per method call of a bulk action."""
MAX_MEMBERS = 10_000
"""The most jobs of a workflow or a batch its page reads (to count and draw them)."""
MAX_FORM_BYTES = 64 * 1024
MAX_SHOWN = 200
"""The most characters of a value from the URL an error page repeats."""
METHODS = {
    "pause": "jobPause",
    "resume": "jobResume",
    "cancel": "jobCancel",
    "restart": "jobRestart",
    "rerun": "jobRerun",
    "remove": "jobRemove",
}
"""The method each action calls."""
CLAIM_ACTIONS = {"pause": "jobPauseTypes", "resume": "jobResumeTypes"}
"""The method that pauses or resumes the claims of job types on every process."""
SET_LIMIT = "jobSetConcurrencyLimit"
"""The method that sets or removes a type's concurrency limit (`/limits/set|remove`)."""
LIMIT_ACTIONS = ("set", "remove")
CLAIM_PAGES = ("/", "/queues")
"""The pages a pause or resume of claims may come back to (its form's `back`)."""
PENDING = (Status.WAITING, Status.READY, Status.PAUSED)
"""The statuses of the jobs the schedules page looks for repeating ones among."""
FAILURE_SCAN = 500
"""How many jobs of the other filters a failure text search reads a page (no index serves
text: the page says how far it searched, and its next page searches further back)."""
REPEATING_SCAN = 500
"""How many of the newest pending jobs the schedules page looks for repeating ones among
(no index serves "repeats": a capped read, as its note says)."""

PART = "part"
"""The query parameter that asks a live page for its live part only (`?part=live`)."""
WATCHED: dict[str, Callable[[JobCollection], Awaitable[Any]]] = {
    "queues": lambda jc: asyncio.gather(jc.paused_types(), jc.concurrency_limits()),
    "schedules": lambda jc: jc.schedules.list(),
    "workers": lambda jc: asyncio.gather(jc.workers(), jc.job_server_leader()),
}
"""What an event stream `?watch=` by a page reads (besides the counts) to tell a change: what
the page shows that may change without a job changing (a pause, a schedule, a queue)."""

ReadOnly = bool | Callable[[Any], bool]


class _Stream(StreamingResponse):
    """An event stream that calls `ended` once it is over (sent, or the client left)."""

    media_type = "text/event-stream"

    def __init__(
        self, ended: Callable[[], None], content: AsyncIterator[str], headers: dict[str, str]
    ) -> None:
        super().__init__(content, headers=headers)
        self.ended = ended

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.ended()


class Refused(Exception):
    """A request answered with an error page: its status, title and message."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.title = title


class NeedLogin(Exception):
    """No user: `auth` refused the request's bearer header and cookie (or there were none)."""


def _shown(text: str) -> str:
    """A value from the URL as an error page repeats it: cut to MAX_SHOWN characters."""
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + "..."


def _loopback(connection: HTTPConnection) -> bool:
    client = connection.client
    if client is None:
        return False
    try:
        return ipaddress.ip_address(client.host).is_loopback
    except ValueError:
        return False


def _with_bearer(connection: HTTPConnection, token: str) -> HTTPConnection | None:
    """The connection as if it carried `Authorization: Bearer <token>`."""
    try:
        header = f"Bearer {token}".encode("latin-1")
    except UnicodeEncodeError:
        return None
    headers = [(k, val) for k, val in connection.scope["headers"] if k != b"authorization"]
    return HTTPConnection({**connection.scope, "headers": [*headers, (b"authorization", header)]})


def _value(text: str) -> Any:
    """A filter value: JSON when it parses (`7`, `"7"`, `true`), else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text
    except RecursionError:
        raise InvalidArgument("filter", "the value is nested too deeply") from None


def filters_from(items: Sequence[tuple[str, str]]) -> Filters:
    """The filters of a job list URL or a bulk form: `type` and `status` (repeatable),
    `user`, `data.PATH=VALUE` (repeatable) and the form's `data=PATH=VALUE`, `schedule`,
    `failure` (text), and the order `sort` (newest, oldest)."""
    data: list[tuple[str, str]] = []
    for key, value in items:
        if key.startswith("data.") and len(key) > 5:
            data.append((key[5:], value))
        elif key == "data" and value.strip():
            path, sep, given = value.strip().partition("=")
            if not sep or not path:
                raise InvalidArgument("data", f"{value!r} is not PATH=VALUE (customer.id=7)")
            data.append((path.strip(), given.strip()))
    for path, _ in data:
        if any(part.startswith("$") for part in path.split(".")):
            raise InvalidArgument(f"data.{_shown(path)}", "a path part must not start with $")
    return Filters(
        types=tuple(dict.fromkeys(val for key, val in items if key == "type" and val)),
        statuses=tuple(dict.fromkeys(val for key, val in items if key == "status" and val)),
        user=next((val for key, val in items if key == "user" and val), ""),
        data=tuple(data),
        schedule=next((val for key, val in items if key == "schedule" and val), ""),
        failure=next((val for key, val in items if key == "failure" and val.strip()), "").strip(),
        oldest=_sort(next((val for key, val in items if key == "sort" and val), "newest")),
    )


def _sort(given: str) -> bool:
    """Whether a list's `sort` asks for the oldest jobs first (`newest` or `oldest`)."""
    if given not in ("newest", "oldest"):
        raise InvalidArgument("sort", f"{_shown(given)!r} is not newest or oldest")
    return given == "oldest"


def find_arguments(filters: Filters) -> dict[str, Any]:
    """find_jobs' keyword arguments for these filters."""
    return {
        "type": list(filters.types) or None,
        "status": list(filters.statuses) or None,
        "user_id": _value(filters.user) if filters.user else None,
        "data": {path: _value(value) for path, value in filters.data} or None,
        "schedule": filters.schedule or None,
        "oldest": filters.oldest,
    }


def failed_with(job: Job, text: str) -> bool:
    """Whether one of the job's failures holds this text (any case), in any field."""
    return bool(job.doc.failures) and text.casefold() in pretty(job.doc.failures).casefold()


class Dashboard:
    """The routes of the dashboard over one JobCollection."""

    def __init__(
        self,
        jc: JobCollection,
        auth: Auth | None,
        read_only: ReadOnly,
        poll_s: float,
        events_max_s: float,
        max_streams: int,
    ) -> None:
        self.jc = jc
        self.auth = auth
        self.read_only = read_only
        self.poll_s = poll_s
        self.events_max_s = events_max_s
        self.max_streams = max_streams
        self.streams = 0
        """The event streams open now."""
        self.secret = secrets.token_bytes(32)
        self.closing = asyncio.Event()
        self.changed = asyncio.Event()
        """Set when something may have changed: a method call through this JobCollection (its
        queues, the remote workers it serves, this dashboard), or a change stream event."""
        self._watcher: asyncio.Task[None] | None = None
        jc.events.on("call", self._on_call)

    # --- who and what -------------------------------------------------------------------------

    def is_read_only(self, user: Any) -> bool:
        return bool(self.read_only(user)) if callable(self.read_only) else self.read_only

    def csrf(self, user: Any) -> str:
        """The form token of a user: only pages served to that user hold it."""
        return hmac.new(self.secret, repr(user).encode(), hashlib.sha256).hexdigest()

    async def _authenticate(self, connection: HTTPConnection | None) -> Any:
        if connection is None or self.auth is None:
            return None
        user = self.auth(connection)
        if inspect.isawaitable(user):
            user = await user
        return user

    async def view(self, request: Request) -> View:
        """Who the request is for (NeedLogin, or Refused 403 off loopback without auth)."""
        base = str(request.scope.get("root_path", ""))
        if self.auth is None:
            if not _loopback(request):
                raise Refused(
                    403,
                    "Forbidden",
                    "this dashboard has no auth configured: it answers loopback clients only",
                )
            user = LOOPBACK_USER
            cookie = False
        else:
            user = await self._authenticate(request)
            cookie = False
            token = request.cookies.get(COOKIE)
            if user is None and token and "authorization" not in request.headers:
                user = await self._authenticate(_with_bearer(request, token))
                cookie = user is not None
            if user is None:
                raise NeedLogin
        return View(base, user, self.is_read_only(user), self.csrf(user), cookie)

    @staticmethod
    def same_origin(request: Request) -> None:
        """Refuse a POST a page of another site sent: its Origin names another host (or is
        `null`), or the browser's Sec-Fetch-Site says it is not this origin's own (another
        port of localhost is `same-site`: refused too)."""
        origin = request.headers.get("origin")
        host = request.headers.get("host", "").lower()
        if origin is not None and urlsplit(origin.lower()).netloc != host:
            raise Refused(403, "Forbidden", "cross-site form posts are refused")
        if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
            raise Refused(403, "Forbidden", "cross-site form posts are refused")

    async def form(self, request: Request) -> list[tuple[str, str]]:
        size = 0
        chunks: list[bytes] = []
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_FORM_BYTES:
                raise Refused(413, "Too large", f"forms are limited to {MAX_FORM_BYTES} bytes")
            chunks.append(chunk)
        return parse_qsl(b"".join(chunks).decode("utf-8", "replace"), keep_blank_values=True)

    async def post(self, request: Request) -> tuple[View, list[tuple[str, str]]]:
        """The view and form of an action: refused for read-only users, other sites, and
        forms without the user's token."""
        view = await self.view(request)
        self.same_origin(request)
        form = await self.form(request)
        if view.read_only:
            raise Refused(403, "Forbidden", f"{view.user} may only look (read-only)")
        token = next((val for key, val in form if key == "csrf"), "")
        if not hmac.compare_digest(token.encode(), view.csrf.encode()):
            raise Refused(403, "Forbidden", "the form's token is missing or stale: reload it")
        return view, form

    # --- pages --------------------------------------------------------------------------------

    def may_limit(self, view: View, job_type: str) -> bool:
        """Whether the user may set or remove this type's concurrency limit: not read-only,
        and the rules permit jobSetConcurrencyLimit (asked as for removing the limit)."""
        return not view.read_only and self.jc.permits(SET_LIMIT, job_type, None, user_id=view.user)

    @staticmethod
    def live_only(request: Request) -> bool:
        """Whether a live page is asked for its live part only (`?part=live`; 400 for any
        other part)."""
        part = request.query_params.get(PART)
        if part is not None and part != "live":
            raise Refused(400, "Bad request", f"{PART}: {_shown(part)!r} is not live")
        return part is not None

    @staticmethod
    def live_part(
        view: View, path: str, fragment: str, query: Sequence[tuple[str, str]] = ()
    ) -> str:
        """The live part of the page at `path` (with its own `query`: a job list's filters):
        reloaded from the same URL with `?part=live` when the events `?watch=` by the page
        (or, for the job list, the counts) change."""
        watch = [("watch", path.strip("/"))] if path.strip("/") in WATCHED else []
        events = view.url("/events", watch)
        return pages.live_part(events, view.url(path, [*query, (PART, "live")]), fragment)

    async def live_fragment(self, view: View) -> str:
        return (await self._live(view))[0]

    async def _live(self, view: View) -> tuple[str, list[str]]:
        """The overview's live part, and the job types it lists."""
        stats = await self.jc.stats()
        oldest = {t: stats.oldest_ready_age(t) for t in stats.oldest_ready}
        paused = await self.jc.paused_types()
        leader = await self.jc.job_server_leader()
        limits = await self.jc.concurrency_limits()
        fragment = pages.counts_fragment(
            view,
            stats.counts,
            oldest,
            paused,
            leader,
            limits,
            lambda job_type: self.may_limit(view, job_type),
        )
        return fragment, sorted({t for t, _ in stats.counts} | set(paused.types) | set(limits))

    async def overview(self, request: Request) -> Response:
        """The overview, and under it the form that sets a concurrency limit, for a user
        who may set the limit of a type it lists."""
        view = await self.view(request)
        fragment, types = await self._live(view)
        below = ""
        if any(self.may_limit(view, t) for t in types):
            below = pages.limit_form(view, types)
        return HTMLResponse(pages.overview(view, fragment, below, await self.trends()))

    async def trends(self) -> str:
        """The overview's trends from the history (two reads of `<root>.history`, whatever
        the number of jobs)."""
        history = self.jc.service.server.history
        now = self.jc.clock.now()
        windows = []
        for window in WINDOWS:
            docs = (
                []
                if history is None
                else await history.read(window.span, history.window(window.span, window.count))
            )
            windows.append((window, series(docs, window.span, now, window.count)))
        return trends(windows)

    async def live(self, request: Request) -> Response:
        return HTMLResponse(await self.live_fragment(await self.view(request)))

    async def workers(self, request: Request) -> Response:
        """The registered queues, with how long each held job has run (one read of the held
        jobs), and the job server's leader."""
        view = await self.view(request)
        live_only = self.live_only(request)
        workers = await self.jc.workers()
        held = [i for w in workers for i in w.held]
        jobs = await self.jc.get_jobs(held, get_log=True) if held else []
        started = {job.id: run.started for job in jobs if (run := last_run(job.doc))}
        leader = await self.jc.job_server_leader()
        now = self.jc.clock.now()
        fragment = pages.workers_live(view, workers, leader, started, now)
        if live_only:
            return HTMLResponse(fragment)
        return HTMLResponse(pages.workers_page(view, self.live_part(view, "/workers", fragment)))

    async def queues(self, request: Request) -> Response:
        """Per job type: counts, claims, the concurrency limit in force and how close the
        type is, backlog and oldest ready job, the queues serving it; then the rate limits'
        current windows (five reads, whatever the number of jobs)."""
        view = await self.view(request)
        live_only = self.live_only(request)
        stats = await self.jc.stats()
        queues = Queues(
            counts=stats.counts,
            oldest_ready_s={t: stats.oldest_ready_age(t) for t in stats.oldest_ready},
            paused=await self.jc.paused_types(),
            limits=await self.jc.concurrency_limits(),
            workers=await self.jc.workers(),
            rates=await current_windows(self.jc.service.store, self.jc.clock.now()),
        )
        fragment = queues_live(view, queues)
        if live_only:
            return HTMLResponse(fragment)
        return HTMLResponse(queues_page(view, self.live_part(view, "/queues", fragment)))

    async def schedules(self, request: Request) -> Response:
        """The schedule objects, and the repeating jobs among the REPEATING_SCAN newest
        pending jobs (one read of each, whatever the number of jobs; the page says when more
        jobs are pending than were read)."""
        view = await self.view(request)
        live_only = self.live_only(request)
        listed = await self.jc.schedules.list()
        page = await self.jc.find_jobs(status=list(PENDING), limit=REPEATING_SCAN)
        repeating = [job for job in page.jobs if job.doc.repeats]

        def may(method: str, schedule_id: str) -> bool:
            return not view.read_only and self.jc.permits(method, schedule_id, user_id=view.user)

        now = self.jc.clock.now()
        cut = page.next is not None
        fragment = schedules_live(view, listed, may, repeating, REPEATING_SCAN, now, cut)
        if live_only:
            return HTMLResponse(fragment)
        return HTMLResponse(schedules_page(view, self.live_part(view, "/schedules", fragment)))

    async def schedule_act(self, request: Request) -> Response:
        """Run a schedule now, pause or resume it (form field `id`), as the user."""
        view, form = await self.post(request)
        action = str(request.path_params["action"])
        if action not in SCHEDULE_ACTIONS:
            raise Refused(404, "Not found", f"no action {_shown(action)!r}")
        schedule_id = dict(form).get("id", "")
        if not schedule_id:
            raise Refused(400, "Bad request", "id: give the schedule's id")
        if await self.jc.schedules.get(schedule_id) is None:
            raise Refused(404, "Not found", f"no schedule {_shown(schedule_id)!r}")
        await self.jc.call(SCHEDULE_ACTIONS[action][1], schedule_id, user_id=view.user)
        return RedirectResponse(view.url("/schedules"), 303)

    async def jobs(self, request: Request) -> Response:
        """The job list: the filter form, then its live part (a page of the jobs matching the
        filters, by the cursor `after`), or that part alone (`?part=live`); `id=` goes to a
        job's page."""
        view = await self.view(request)
        live_only = self.live_only(request)
        after = request.query_params.get("after") or None
        filters = Filters()

        async def answer(fragment: str, status: int = 200) -> Response:
            if live_only:
                return HTMLResponse(fragment, status)
            types = await self.jc.service.manager.job_types()
            query = [*filters.query(), *([("after", after)] if after else [])]
            live = self.live_part(view, "/jobs", fragment, query)
            return HTMLResponse(pages.job_list(view, filters, types, live), status)

        try:
            filters = filters_from(request.query_params.multi_items())
        except InvalidArgument as exc:
            return await answer(pages.job_list_live(view, filters, [], None, str(exc)), 400)
        given = request.query_params.get("id", "").strip()
        if given:
            try:
                job = await self.jc.get_job(v.job_id(given, "id"))
            except InvalidArgument as exc:
                return await answer(pages.job_list_live(view, filters, [], None, str(exc)), 400)
            if job is None:
                error = f"no job {_shown(given)}"
                return await answer(pages.job_list_live(view, filters, [], None, error), 404)
            return RedirectResponse(view.job_url(job.id), 303)
        scanned = FAILURE_SCAN if filters.failure else None
        try:
            page = await self.jc.find_jobs(
                **find_arguments(filters), limit=scanned or PAGE_SIZE, after=after
            )
        except InvalidArgument as exc:
            return await answer(pages.job_list_live(view, filters, [], None, str(exc)), 400)
        jobs = page.jobs
        if filters.failure:
            jobs = [job for job in jobs if failed_with(job, filters.failure)]
        return await answer(pages.job_list_live(view, filters, jobs, page.next, None, scanned))

    async def _job(self, request: Request) -> Any:
        job = await self.jc.get_job(
            v.job_id(request.path_params["job_id"]), get_log=True, get_failures=True
        )
        if job is None:
            raise Refused(404, "Not found", f"no job {_shown(request.path_params['job_id'])}")
        return job

    async def job(self, request: Request) -> Response:
        view = await self.view(request)
        job = await self._job(request)
        linked = [*job.doc.depends, *job.doc.resolved, *job.doc.lineage]
        statuses = {j.id: j.doc.status for j in await self.jc.get_jobs(linked)} if linked else {}
        workers = await self._registry(job)
        return HTMLResponse(pages.job_page(view, job, statuses, self.jc.clock.now(), workers))

    async def job_live(self, request: Request) -> Response:
        view = await self.view(request)
        job = await self._job(request)
        now = self.jc.clock.now()
        return HTMLResponse(pages.job_live(view, job, now, await self._registry(job)))

    async def _registry(self, job: Job) -> list[WorkerInfo]:
        """The registry's live queues, where the job page's worker fact needs them (none
        read for a job no registered queue claimed)."""
        return await self.jc.workers() if needs_registry(job.doc) else []

    # --- actions ------------------------------------------------------------------------------

    @staticmethod
    def _action(request: Request) -> str:
        action = str(request.path_params["action"])
        if action not in ACTIONS:
            raise Refused(404, "Not found", f"no action {_shown(action)!r}")
        return action

    async def apply(self, action: str, ids: Sequence[Any], user: Any) -> list[Any]:
        """Run an action's method on these ids as `user`, CHUNK ids a call (rerun: one call
        a job); the new jobs' ids for rerun, else []."""
        method = METHODS[action]
        if action == "rerun":
            made = [await self.jc.call(method, job_id, {}, user_id=user) for job_id in ids]
            return [i for i in made if i is not None]
        for start in range(0, len(ids), CHUNK):
            chunk = list(ids[start : start + CHUNK])
            if action in ("cancel", "restart"):
                await self.jc.call(method, chunk, {}, user_id=user)
            else:
                await self.jc.call(method, chunk, user_id=user)
        return []

    async def act(self, request: Request) -> Response:
        view, _ = await self.post(request)
        action = self._action(request)
        job = await self._job(request)
        made = await self.apply(action, [job.id], view.user)
        if action == "remove" and await self.jc.get_job(job.id) is None:
            return RedirectResponse(view.url("/jobs"), 303)
        return RedirectResponse(view.job_url(made[0] if made else job.id), 303)

    async def claims(self, request: Request) -> Response:
        """Pause or resume the claims of a job type (form field `type`) or of every type
        (`every`) on every process, as the user (jobPauseTypes, jobResumeTypes)."""
        view, form = await self.post(request)
        action = str(request.path_params["action"])
        if action not in CLAIM_ACTIONS:
            raise Refused(404, "Not found", f"no action {_shown(action)!r}")
        fields = dict(form)
        if ("type" in fields) == ("every" in fields):
            raise Refused(400, "Bad request", "give one job type, or every type")
        types = None if "every" in fields else [job_types(fields["type"], "type")[0]]
        await self.jc.call(CLAIM_ACTIONS[action], types, user_id=view.user)
        back = fields.get("back", "/")
        return RedirectResponse(view.url(back if back in CLAIM_PAGES else "/"), 303)

    async def limit(self, request: Request) -> Response:
        """Set (form fields `type`, `max_running` and, optional, `group_by`) or remove (`type`)
        a type's concurrency limit on every process, as the user (jobSetConcurrencyLimit).
        Each field is checked first: a bad one is a 400 naming it, and nothing changes."""
        view, form = await self.post(request)
        action = str(request.path_params["action"])
        if action not in LIMIT_ACTIONS:
            raise Refused(404, "Not found", f"no action {_shown(action)!r}")
        fields = dict(form)
        try:
            job_type = one_type(fields.get("type", ""), "type")
        except InvalidArgument as exc:
            raise Refused(400, "Bad request", f"type: {exc.problem}") from None
        limit = None if action == "remove" else _limit_from(fields)
        await self.jc.call(SET_LIMIT, job_type, limit, user_id=view.user)
        return RedirectResponse(view.url("/"), 303)

    async def matching(self, action: str, filters: Filters) -> list[tuple[Any, str]]:
        """The (id, status) of the jobs matching a filter that the action applies to."""
        applicable = ACTIONS[action][1]
        statuses = [s for s in filters.statuses or applicable if s in applicable]
        if not statuses:
            return []
        arguments = {**find_arguments(filters), "status": statuses}
        found: list[tuple[Any, str]] = []
        after = None
        while True:
            page = await self.jc.find_jobs(**arguments, limit=1_000, after=after)
            found += [(job.id, job.doc.status) for job in page.jobs]
            if len(found) > MAX_BULK:
                raise Refused(
                    400, "Too many jobs", f"more than {MAX_BULK:,} jobs match: narrow the filter"
                )
            if page.next is None:
                return found
            after = page.next

    @staticmethod
    def _bulk_filter(filters: Filters) -> None:
        """Refuse a bulk action without a filter, or with a failure text (not a query)."""
        if filters.empty():
            raise Refused(400, "No filter", "an action on many jobs needs a filter")
        if filters.failure:
            raise Refused(400, "Bad filter", "failure text cannot select jobs for an action")

    async def bulk_confirm(self, request: Request) -> Response:
        view = await self.view(request)
        if view.read_only:
            raise Refused(403, "Forbidden", f"{view.user} may only look (read-only)")
        action = self._action(request)
        filters = filters_from(request.query_params.multi_items())
        self._bulk_filter(filters)
        found = await self.matching(action, filters)
        return HTMLResponse(pages.confirm_bulk(view, action, filters, len(found)))

    async def bulk(self, request: Request) -> Response:
        view, form = await self.post(request)
        action = self._action(request)
        filters = filters_from([(k, val) for k, val in form if k not in ("csrf", "expected")])
        self._bulk_filter(filters)
        before = dict(await self.matching(action, filters))
        ids = list(before)
        made = await self.apply(action, ids, view.user)
        if action == "rerun":
            changed = len(made)
        else:
            after: dict[Any, str] = {}
            for start in range(0, len(ids), CHUNK):
                jobs = await self.jc.get_jobs(ids[start : start + CHUNK])
                after.update((job.id, job.doc.status) for job in jobs)
            changed = sum(1 for i in ids if after.get(i) != before[i])
        return HTMLResponse(pages.bulk_done(view, action, filters, len(ids), changed))

    # --- workflows and batches ----------------------------------------------------------------

    async def _members(
        self, kind: str, group_id: Any, statuses: Sequence[str] | None, most: int
    ) -> tuple[list[Job], bool]:
        """The jobs of a workflow or a batch (`kind`; in these statuses), newest first: at
        least `most` of them if there are as many (read up to 1,000 a call), and whether that
        is all of them."""
        where: dict[str, Any] = {kind: group_id}
        found: list[Job] = []
        after = None
        size = min(1_000, most)
        while True:
            page = await self.jc.find_jobs(status=statuses, limit=size, after=after, **where)
            found += page.jobs
            if page.next is None:
                return found, True
            if len(found) >= most:
                return found, False
            after = page.next

    def _may(self, view: View, action: str, jobs: Sequence[Job]) -> bool:
        """Whether the page offers this action: the user is not read-only, some job is in a
        status it applies to, and the rules permit its method on (the first CHUNK of) them."""
        _, statuses, method, options = GROUP_ACTIONS[action]
        ids = [j.id for j in jobs if j.doc.status in statuses][:CHUNK]
        if view.read_only or not ids:
            return False
        return self.jc.permits(method, ids, options, user_id=view.user)

    async def workflow(self, request: Request) -> Response:
        return await self._group_page(request, "workflow")

    async def batch(self, request: Request) -> Response:
        return await self._group_page(request, "batch")

    async def _group_page(self, request: Request, kind: str) -> Response:
        """A workflow's or a batch's page: its first MAX_MEMBERS jobs counted (and, for a
        workflow, drawn), and a page of its jobs (filters `type`, `status`; cursor `after`)."""
        view = await self.view(request)
        given = str(request.path_params["group_id"])
        group_id = v.job_id(given, kind)
        query = request.query_params
        members, read_all = await self._members(kind, group_id, None, MAX_MEMBERS)
        if not members:
            raise Refused(404, "Not found", f"no {kind} {_shown(given)}")
        job_type = query.get("type") or None
        status = query.get("status") or None
        where: dict[str, Any] = {kind: group_id}
        page = await self.jc.find_jobs(
            type=job_type, status=status, limit=PAGE_SIZE, after=query.get("after") or None, **where
        )
        counts = Counter(str(job.doc.status) for job in members)
        drawing = None
        if kind == "workflow":
            drawing = graph.draw([graph.node_of(job.doc) for job in members])
        workflows, outer, inner = related(kind, group_id, [job.doc for job in members])
        group = Group(
            kind=kind,
            id=group_id,
            progress=WorkflowStatus(dict(counts), len(members)),
            read_all=read_all,
            jobs=page.jobs,
            next_cursor=page.next,
            job_type=job_type,
            status=status,
            drawing=drawing,
            workflows=workflows,
            outer=outer,
            inner=inner,
            may=tuple(a for a in GROUP_ACTIONS if self._may(view, a, members)),
        )
        return HTMLResponse(group_page(view, group))

    async def workflow_act(self, request: Request) -> Response:
        return await self._group_act(request, "workflow")

    async def batch_act(self, request: Request) -> Response:
        return await self._group_act(request, "batch")

    async def _group_act(self, request: Request, kind: str) -> Response:
        """Cancel a workflow's or a batch's unfinished jobs, or retry its failed and cancelled
        ones (GROUP_ACTIONS), as the user, CHUNK ids a call; then its page."""
        view, _ = await self.post(request)
        action = str(request.path_params["action"])
        if action not in GROUP_ACTIONS:
            raise Refused(404, "Not found", f"no action {_shown(action)!r}")
        given = str(request.path_params["group_id"])
        group_id = v.job_id(given, kind)
        _, statuses, method, options = GROUP_ACTIONS[action]
        jobs, read_all = await self._members(kind, group_id, list(statuses), MAX_BULK)
        if not read_all:
            raise Refused(
                400,
                "Too many jobs",
                f"more than {MAX_BULK:,} jobs to {action}: use the API ({kind}.{action}())",
            )
        where: dict[str, Any] = {kind: group_id}
        if not jobs and not (await self.jc.find_jobs(limit=1, **where)).jobs:
            raise Refused(404, "Not found", f"no {kind} {_shown(given)}")
        ids = [job.id for job in jobs]
        for start in range(0, len(ids), CHUNK):
            await self.jc.call(method, ids[start : start + CHUNK], options, user_id=view.user)
        return RedirectResponse(view.group_url(kind, group_id), 303)

    # --- live updates -------------------------------------------------------------------------

    async def _state(self, job_id: Any, watch: str | None = None) -> dict[str, Any]:
        """What the events compare: the counts (and what the page `watch` names shows:
        WATCHED), or one job's status, progress and log."""
        if job_id is None:
            stats = await self.jc.stats()
            counts = {f"{t}/{s}": n for (t, s), n in sorted(stats.counts.items())}
            state: dict[str, Any] = {"counts": counts}
            if watch is not None:
                state[watch] = repr(await WATCHED[watch](self.jc))
            return state
        job = await self.jc.get_job(job_id, get_log=True)
        if job is None:
            return {"status": None}
        return {
            "status": job.doc.status,
            "updated": str(job.doc.updated),
            "percent": job.doc.progress.percent,
            "log": len(job.doc.log or []),
        }

    def _on_call(self, event: Any) -> None:
        self._poke()

    def _poke(self) -> None:
        """Wake the event streams to read the state again now."""
        self.changed.set()
        self.changed = asyncio.Event()

    def _watch(self) -> None:
        """Where the database has change streams, wake the event streams on every change a
        process makes to a job of the types seen (once, for the dashboard's life)."""
        if self._watcher is not None:
            return
        self._watcher = asyncio.create_task(self._watch_changes())

    async def _watch_changes(self) -> None:
        source = self.jc.service.wakeup()
        types = await self.jc.service.manager.job_types()
        if source is None or not types:
            return
        ended = await follow(source.signals(types), lambda _: self._poke())
        # Without change streams, polling (and this process's own calls) keep streams current.
        if ended is not None and not isinstance(ended, WakeupUnavailable):
            logger.warning("the dashboard's change stream failed (%r); polling", ended)

    async def stream(
        self, job_id: Any, revoked: asyncio.Future[None] | None = None, watch: str | None = None
    ) -> AsyncIterator[str]:
        """`change` now and whenever the state changes, for at most events_max_s (the
        browser then reconnects), until the dashboard closes, or until `revoked` is done (the
        user's token was revoked: the browser's reconnection then meets the login form). The
        state is read again when a call through this JobCollection or a change stream says
        something changed, and every poll_s otherwise (changes made by other processes
        without change streams). `watch`: a page of WATCHED, whose state is read with the
        counts."""
        try:
            async for event in self._changes(job_id, revoked, watch):
                yield event
        finally:
            if revoked is not None:
                revoked.cancel()

    async def _changes(
        self, job_id: Any, revoked: asyncio.Future[None] | None, watch: str | None
    ) -> AsyncIterator[str]:
        self._watch()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.events_max_s
        yield f"retry: {int(self.poll_s * 1000) + 1000}\n\n"
        last = None
        number = 0
        while not self.closing.is_set() and not (revoked is not None and revoked.done()):
            try:
                state = await self._state(job_id, watch)
            except DatabaseError as exc:  # the browser reconnects after `retry`
                logger.warning("the dashboard's event stream ends: %r", exc)
                return
            if state != last:
                number += 1
                last = state
                yield f"id: {number}\nevent: change\ndata: {json.dumps(state)}\n\n"
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            waiters: list[asyncio.Future[Any]] = [
                asyncio.ensure_future(self.closing.wait()),
                asyncio.ensure_future(self.changed.wait()),
            ]
            try:
                await asyncio.wait(
                    [*waiters, *([revoked] if revoked is not None else [])],
                    timeout=min(self.poll_s, remaining),
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                for waiter in waiters:
                    waiter.cancel()

    async def events(self, request: Request) -> Response:
        view = await self.view(request)
        given = request.query_params.get("job")
        job_id = v.job_id(given, "job") if given else None
        watch = request.query_params.get("watch") or None
        if watch is not None and (watch not in WATCHED or job_id is not None):
            raise Refused(400, "Bad request", f"watch: {_shown(watch)!r} is not a page to watch")
        headers = {"X-Accel-Buffering": "no"}
        if request.method == "HEAD":
            return Response(media_type="text/event-stream", headers=headers)
        if self.streams >= self.max_streams:
            raise Refused(
                503, "Busy", f"{self.max_streams} live views are open: try again when fewer are"
            )
        self.streams += 1
        revoked = None
        if self.auth is not None:  # the stream ends when its user's token is revoked
            token = request.cookies.get(COOKIE, "")
            asked = _with_bearer(request, token) if view.cookie_login else request
            if asked is not None:
                revoked = asyncio.ensure_future(until_revoked(self.auth, asked, view.user))
        return _Stream(self._stream_ended, self.stream(job_id, revoked, watch), headers=headers)

    def _stream_ended(self) -> None:
        self.streams -= 1

    async def close(self) -> None:
        """End the event streams and the change-stream watch (the server is stopping)."""
        self.closing.set()
        self.jc.events.off("call", self._on_call)
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)

    # --- login --------------------------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        base = str(request.scope.get("root_path", ""))
        if self.auth is None:
            return RedirectResponse(base + "/", 303)
        return HTMLResponse(pages.login(base))

    async def login(self, request: Request) -> Response:
        base = str(request.scope.get("root_path", ""))
        if self.auth is None:
            return RedirectResponse(base + "/", 303)
        self.same_origin(request)
        token = next((val for key, val in await self.form(request) if key == "token"), "")
        user = await self._authenticate(_with_bearer(request, token)) if token else None
        if user is None:
            return HTMLResponse(pages.login(base, "That token is not valid."), 401)
        response = RedirectResponse(base + "/", 303)
        response.set_cookie(
            COOKIE,
            token,
            path=base or "/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    async def logout(self, request: Request) -> Response:
        view = await self.view(request)
        self.same_origin(request)
        form = await self.form(request)
        token = next((val for key, val in form if key == "csrf"), "")
        if not hmac.compare_digest(token.encode(), view.csrf.encode()):
            raise Refused(403, "Forbidden", "the form's token is missing or stale: reload it")
        response = RedirectResponse(view.url("/login"), 303)
        response.delete_cookie(COOKIE, path=view.base or "/")
        return response


def _limit_from(fields: Mapping[str, str]) -> dict[str, Any]:
    """The limit a form asks for, as jobSetConcurrencyLimit takes it (Refused 400 naming the
    field that is not one: `max_running`, a whole number from 1 to MAX_RUNNING, `group_by`,
    empty, `user` or `data.PATH`)."""
    text = fields.get("max_running", "").strip()
    if not text:
        raise Refused(
            400, "Bad request", "max_running: give the most jobs of the type running at once"
        )
    if not text.isascii() or not text.isdigit():
        raise Refused(400, "Bad request", f"max_running: {_shown(text)!r} is not a whole number")
    if len(text.lstrip("0")) > len(str(MAX_RUNNING)):
        raise Refused(400, "Bad request", f"max_running: must be <= {MAX_RUNNING:,}")
    group_by = fields.get("group_by", "").strip() or None
    try:
        limit = ConcurrencyLimit(int(text), group_by=group_by)
    except InvalidArgument as exc:
        raise Refused(400, "Bad request", _shown(str(exc))) from None
    return limit.wire()


def _guarded(
    dashboard: Dashboard, handler: Callable[[Request], Awaitable[Response]]
) -> Callable[[Request], Awaitable[Response]]:
    """A route answering its refusals as pages: the login form (401) without a user, 403
    when the rules refuse an action, 400 for a bad argument, 503 when the database fails."""

    async def route(request: Request) -> Response:
        base = str(request.scope.get("root_path", ""))
        try:
            return await handler(request)
        except NeedLogin:
            return HTMLResponse(pages.login(base, "Log in to see this dashboard."), 401)
        except Refused as exc:
            return HTMLResponse(pages.problem(None, exc.title, str(exc), base), exc.status)
        except PermissionDenied as exc:
            return HTMLResponse(pages.problem(None, "Forbidden", f"refused: {exc}", base), 403)
        except InvalidArgument as exc:
            return HTMLResponse(pages.problem(None, "Bad request", str(exc), base), 400)
        except DatabaseError as exc:
            logger.warning("the dashboard could not read or write the jobs: %r", exc)
            message = "the database did not answer as it should: try again"
            return HTMLResponse(pages.problem(None, "Unavailable", message, base), 503)

    return route


async def static(request: Request) -> Response:
    """A file of assets.py: kept by browsers when its URL has its version (as the pages'
    links do), else not stored (as every other response)."""
    asset = ASSETS.get(request.path_params["name"])
    if asset is None:
        raise Refused(404, "Not found", "no such file")
    headers = {}
    if request.query_params.get("v") == asset.version:
        headers["Cache-Control"] = "public, max-age=31536000, immutable"
    return Response(asset.text, media_type=asset.media_type, headers=headers)


class _Guarded(Starlette):
    """A Starlette application inside security.Guard (outside its error handling, so that
    its own 404, 405 and 500 responses carry the security headers too)."""

    def __init__(self, hosts: tuple[str, ...] | None, **options: Any) -> None:
        self.hosts = hosts
        super().__init__(**options)

    def build_middleware_stack(self) -> ASGIApp:
        return Guard(super().build_middleware_stack(), self.hosts)


def create_dashboard(
    jc: JobCollection,
    *,
    auth: Auth | None = None,
    read_only: ReadOnly = False,
    poll_s: float = 2.0,
    events_max_s: float = 300.0,
    allowed_hosts: Iterable[str] | None = None,
    max_streams: int = 50,
    chart_sample: int | None = None,
) -> Starlette:
    """The web dashboard of `jc`, a Starlette application to run with uvicorn or mount in a
    Starlette/FastAPI application (`Mount("/dashboard", app=create_dashboard(jc, ...))`).

    `auth`: a callable of the request answering its user id or None (as the remote API's,
    `TokenAuth` for one); a browser sends the token as a bearer header or logs in with it
    at `/login` (kept in an HttpOnly cookie). Without `auth` the dashboard answers loopback
    clients only (403 for any other), and only requests for a loopback name (`localhost`,
    `127.0.0.1`, `[::1]`, any port) or one of `allowed_hosts` (403 for any other Host, so
    that no other site's page can reach it by rebinding its name to 127.0.0.1); it acts as
    user `LOOPBACK_USER` ("dashboard"), which it grants admin on `jc` unless that user is
    read-only.
    `allowed_hosts`: the other host names it may be reached by (`jobs.example.com`, or
    `.example.com` for a domain and its subdomains; no ports). Given with `auth`, Host is
    checked too (loopback names and these); without `auth`, it always is.
    `read_only`: True, or a function of the user id saying whether that user may only look
    (no action buttons; POSTs answered 403).
    `poll_s`: how often an event stream reads the counts; `events_max_s`: how long one stays
    open (the browser then reconnects); `max_streams`: how many event streams may be open at once
    (further ones: 503, and the pages stop updating live). `chart_sample` is no longer used
    (the charts read the job server's history): still accepted, checked, with a
    DeprecationWarning, so that callers passing it keep working."""
    if chart_sample is not None:
        v.integer(chart_sample, "chart_sample", minimum=1)
        warnings.warn(
            "create_dashboard(chart_sample=) is no longer used: the charts read the history",
            DeprecationWarning,
            stacklevel=2,
        )
    if auth is not None and not callable(auth):
        raise InvalidArgumentType("auth", "must be a callable of the request (e.g. TokenAuth)")
    if not isinstance(read_only, bool) and not callable(read_only):
        raise InvalidArgumentType("read_only", "must be a bool or a function of the user id")
    hosts = allowed_hosts_from(allowed_hosts) if allowed_hosts is not None else None
    if hosts is None and auth is None:
        hosts = ()  # loopback names only
    dashboard = Dashboard(
        jc,
        auth,
        read_only,
        v.number(poll_s, "poll_s", minimum=0.01),
        v.number(events_max_s, "events_max_s", minimum=0),
        v.integer(max_streams, "max_streams", minimum=1),
    )
    if auth is None and not dashboard.is_read_only(LOOPBACK_USER):
        jc.allow(admin=[LOOPBACK_USER])

    def route(path: str, handler: Callable[[Request], Awaitable[Response]], method: str) -> Route:
        return Route(path, _guarded(dashboard, handler), methods=[method])

    routes = [
        route("/", dashboard.overview, "GET"),
        route("/live", dashboard.live, "GET"),
        route("/jobs", dashboard.jobs, "GET"),
        route("/workers", dashboard.workers, "GET"),
        route("/queues", dashboard.queues, "GET"),
        route("/schedules", dashboard.schedules, "GET"),
        route("/schedules/{action}", dashboard.schedule_act, "POST"),
        route("/jobs/{job_id}", dashboard.job, "GET"),
        route("/jobs/{job_id}/live", dashboard.job_live, "GET"),
        route("/jobs/{job_id}/{action}", dashboard.act, "POST"),
        route("/workflows/{group_id}", dashboard.workflow, "GET"),
        route("/workflows/{group_id}/{action}", dashboard.workflow_act, "POST"),
        route("/batches/{group_id}", dashboard.batch, "GET"),
        route("/batches/{group_id}/{action}", dashboard.batch_act, "POST"),
        route("/bulk/{action}", dashboard.bulk_confirm, "GET"),
        route("/bulk/{action}", dashboard.bulk, "POST"),
        route("/claims/{action}", dashboard.claims, "POST"),
        route("/limits/{action}", dashboard.limit, "POST"),
        route("/events", dashboard.events, "GET"),
        route("/login", dashboard.login_form, "GET"),
        route("/login", dashboard.login, "POST"),
        route("/logout", dashboard.logout, "POST"),
        route("/static/{name}", static, "GET"),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await dashboard.close()

    app = _Guarded(hosts, routes=routes, lifespan=lifespan)
    app.state.dashboard = dashboard
    app.state.close = dashboard.close
    return app
