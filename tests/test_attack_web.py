"""The web dashboard attacked: what another site's page, a rebound DNS name or a hostile client
can make it do. Every test speaks HTTP to the app (an ASGI client with forged headers) or to a
real uvicorn on 127.0.0.1 (raw bytes where a client would tidy the request up), and checks what
comes back and what became of the jobs.

- DNS rebinding: without auth only loopback names (or `allowed_hosts`) are served, whatever the
  client address; the Host header is parsed strictly (userinfo, two Host headers, bare IPv6,
  ports, trailing dots, case) and refused before any route reads a job.
- Every response, errors and static files and event streams included, forbids framing and
  inline script and is not stored (job data); the pages need nothing inline.
- Every state-changing request needs the page's token and is refused when the browser says
  another site (or another port of localhost) sent it; GETs change nothing, whatever they say.
- No open redirect, no reflected markup, no way out of /static/, no 500 for hostile input,
  a bound on URLs and on open event streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import re
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from faults import FaultyCollection
from jobcollection import (
    ConcurrencyLimit,
    InvalidArgument,
    InvalidArgumentType,
    JobCollection,
    ManualClock,
    batch,
    chain,
)
from jobcollection.remote import TokenAuth
from jobcollection.web import create_dashboard
from jobcollection.web.queue_pages import SCHEDULE_ACTIONS
from remote_helpers import serving

TOKENS = {"admin-token": "tester", "other-token": "other"}
Client = Callable[..., httpx.AsyncClient]


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    """Clients of an ASGI app, from 127.0.0.1 unless `address` says otherwise, for
    http://localhost unless `base_url` says otherwise; a 500 is answered, not raised."""
    made: list[httpx.AsyncClient] = []

    def make(
        app: Any, address: str = "127.0.0.1", base_url: str = "http://localhost", **options: Any
    ) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(
            app=app, client=(address, 50_000), raise_app_exceptions=False
        )
        made.append(httpx.AsyncClient(transport=transport, base_url=base_url, **options))
        return made[-1]

    yield make
    for http in made:
        await http.aclose()


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert found, "the page has no form token"
    return found[1]


async def status_of(jc: JobCollection, job_id: Any) -> str | None:
    job = await jc.get_job(job_id)
    return None if job is None else job.doc.status


async def raw_request(url: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are to the uvicorn at `url`; the status, headers and body of the
    reply (the server closes the connection after it: HTTP/1.0, or `Connection: close`)."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(request)
        await writer.drain()
        reply = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    head, _, body = reply.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


# --- DNS rebinding ------------------------------------------------------------------------------

SERVED = [
    "localhost",
    "localhost:8000",
    "LOCALHOST:8000",
    "LocalHost",
    "localhost.",  # the same name, absolute
    "localhost.:8000",
    "localhost:",  # an empty port is the default one
    "127.0.0.1",
    "127.0.0.1:8000",
    "127.0.0.2:8000",  # all of 127/8 is loopback, and an address cannot be rebound
    "[::1]",
    "[::1]:8000",
    "[0:0:0:0:0:0:0:1]:8000",
    "[::FFFF:127.0.0.1]",
]
REFUSED = [
    "",
    "evil.example",
    "evil.example:8000",
    "rebound.evil.example:8000",
    "localhost.evil.example",
    "localhost.evil.example:8000",
    "127.0.0.1.nip.io",
    "127.0.0.1.nip.io:8000",
    "foo.localhost",
    "localhost..",
    ".localhost",
    "user@localhost",
    "user:pass@localhost:8000",
    "localhost@evil.example",
    "evil.example#@localhost",
    "localhost/evil",
    "localhost\\evil",
    "localhost%00",
    "local host",
    "localhost:abc",
    "localhost:-1",
    "localhost:99999",
    "localhost:8000:8000",
    "::1",  # IPv6 without brackets
    "[::1",
    "[::1]x",
    "[::1]:x",
    "[fe80::1%25eth0]",
    "[evil.example]",
    "[2001:db8::1]",
    "[::ffff:8.8.8.8]",
    "10.0.0.1",
    "0.0.0.0",
    "2130706433",  # 127.0.0.1 as one number: browsers rewrite it, so only a forger sends it
    "0x7f.0.0.1",
    "127.1",
]


async def test_without_auth_only_loopback_names_are_served(
    jc: JobCollection, client: Client
) -> None:
    job_id = await jc.create_job("mail", {"secret": "s3cr3t"}).save()
    http = client(create_dashboard(jc))
    for host in SERVED:
        reply = await http.get(f"/jobs/{job_id}", headers={"host": host})
        assert reply.status_code == 200, host
        assert "s3cr3t" in reply.text and 'name="csrf"' in reply.text
    for host in REFUSED:
        for path in (f"/jobs/{job_id}", "/", "/live", "/static/dashboard.css", "/nope"):
            reply = await http.get(path, headers={"host": host})
            assert reply.status_code == 403, (host, path)
            assert "s3cr3t" not in reply.text and 'name="csrf"' not in reply.text
            assert reply.headers["x-frame-options"] == "DENY"
        posted = await http.post(f"/jobs/{job_id}/cancel", headers={"host": host})
        assert posted.status_code == 403
    assert await status_of(jc, job_id) == "ready"


async def test_a_rebound_name_reaches_a_real_server_and_is_refused(jc: JobCollection) -> None:
    """What a page of evil.example sees once its name resolves to 127.0.0.1: the browser
    connects to the dashboard's port and sends `Host: evil.example:PORT`."""
    job_id = await jc.create_job("mail", {"secret": "s3cr3t"}).save()
    app = create_dashboard(jc, poll_s=3600)
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as http:
        port = urlsplit(url).port
        rebound = {"host": f"rebound.evil.example:{port}"}
        page = await http.get(f"/jobs/{job_id}", headers=rebound)
        assert page.status_code == 403 and "s3cr3t" not in page.text
        events = await http.get("/events", headers=rebound)  # refused before it streams
        assert events.status_code == 403
        cancel = await http.post(
            f"/jobs/{job_id}/cancel",
            data={"csrf": "0" * 64},
            headers={**rebound, "origin": f"http://rebound.evil.example:{port}"},
        )
        assert cancel.status_code == 403
        assert (await http.get(f"/jobs/{job_id}")).status_code == 200  # 127.0.0.1:PORT
        local = await http.get(f"/jobs/{job_id}", headers={"host": f"localhost:{port}"})
        assert local.status_code == 200 and "s3cr3t" in local.text

        # What a client could send but a browser does not: no Host, two Hosts.
        status, headers, body = await raw_request(url, b"GET / HTTP/1.0\r\n\r\n")
        assert status == 403 and headers["x-frame-options"] == "DENY"
        status, _, body = await raw_request(
            url,
            b"GET / HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
        )
        assert status in (400, 403) and b"csrf" not in body
        await app.state.close()
    assert await status_of(jc, job_id) == "ready"


async def test_allowed_hosts_adds_names_and_checks_host_with_auth_too(
    jc: JobCollection, client: Client
) -> None:
    allowed = ["Jobs.Example.Test", ".corp.test", "192.0.2.7", "[2001:db8::1]"]
    http = client(create_dashboard(jc, allowed_hosts=allowed))
    for host in (
        "jobs.example.test",
        "JOBS.EXAMPLE.TEST:8443",
        "jobs.example.test.",
        "corp.test",
        "a.b.corp.test:80",
        "192.0.2.7:8000",
        "[2001:db8:0::1]:8000",
        "localhost:8000",
    ):
        assert (await http.get("/", headers={"host": host})).status_code == 200, host
    for host in (
        "example.test",
        "evil.jobs.example.test",
        "jobs.example.test.evil.test",
        "evilcorp.test",
        "corp.test.evil.test",
        "192.0.2.8",
        "evil.example",
    ):
        assert (await http.get("/", headers={"host": host})).status_code == 403, host

    auth = TokenAuth.from_tokens(TOKENS)
    bearer = {"authorization": "Bearer admin-token"}
    checked = client(create_dashboard(jc, auth=auth, allowed_hosts=["jobs.example.test"]))
    assert (await checked.get("/", headers={**bearer, "host": "jobs.example.test"})).is_success
    refused = await checked.get("/", headers={**bearer, "host": "evil.example"})
    assert refused.status_code == 403 and "tester" not in refused.text
    login = await checked.post("/login", data={"token": "admin-token"}, headers={"host": "e.x"})
    assert login.status_code == 403 and "set-cookie" not in login.headers
    # With auth and no allowed_hosts any name is served (behind a proxy): the token decides.
    open_ = client(create_dashboard(jc, auth=auth))
    assert (await open_.get("/", headers={**bearer, "host": "evil.example"})).is_success
    assert (await open_.get("/", headers={"host": "evil.example"})).status_code == 401


@pytest.mark.parametrize(
    "entry",
    ["*", "jobs.example.test:8000", "http://jobs.example.test", "", ".", "a b", "user@x", "x/y"],
)
async def test_allowed_hosts_are_host_names_only(jc: JobCollection, entry: str) -> None:
    with pytest.raises(InvalidArgument, match="allowed_hosts"):
        create_dashboard(jc, allowed_hosts=[entry])


async def test_allowed_hosts_is_a_list(jc: JobCollection) -> None:
    with pytest.raises(InvalidArgumentType, match="allowed_hosts"):
        create_dashboard(jc, allowed_hosts="jobs.example.test")  # type: ignore[arg-type]


# --- headers on every response ------------------------------------------------------------------


def assert_protected(reply: httpx.Response, *, stored: bool = False) -> None:
    """The response forbids framing, inline script and sniffing, sends no referrer to other
    sites, and (unless `stored`: a versioned static file) is not kept by any cache."""
    what = f"{reply.request.method} {reply.request.url} -> {reply.status_code}"
    policy = reply.headers.get("content-security-policy", "")
    directives = {d.split()[0]: d.split()[1:] for d in policy.split(";") if d.strip()}
    assert directives.get("frame-ancestors") == ["'none'"], what
    assert directives.get("default-src") == ["'self'"], what
    assert directives.get("script-src") == ["'self'"], what
    assert directives.get("style-src") == ["'self'"], what
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy, what
    assert reply.headers.get("x-frame-options") == "DENY", what
    assert reply.headers.get("x-content-type-options") == "nosniff", what
    assert reply.headers.get("referrer-policy") in ("no-referrer", "same-origin"), what
    cache = reply.headers.get("cache-control", "")
    if stored:
        assert "immutable" in cache, what
    else:
        assert cache == "no-store", what


def assert_nothing_inline(page: str) -> None:
    """No markup the policy would block: inline script, style elements or attributes, event
    handler attributes, javascript: URLs."""
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", page) == []
    assert "<style" not in page
    assert re.search(r"\sstyle=", page) is None
    assert re.search(r"\son[a-z]+=", page) is None
    assert "javascript:" not in page


async def test_every_response_forbids_framing_and_inline_script(
    jc: JobCollection, client: Client
) -> None:
    job_id = await jc.create_job("mail", {"n": 1}).save()
    app = create_dashboard(jc)
    http = client(app)
    page = (await http.get(f"/jobs/{job_id}")).text
    csrf = csrf_of(page)
    replies = [
        await http.get("/"),
        await http.get("/live"),
        await http.get("/jobs", params={"type": "mail"}),
        await http.get(f"/jobs/{job_id}"),
        await http.get(f"/jobs/{job_id}/live"),
        await http.get("/bulk/cancel", params={"type": "mail"}),
        await http.get("/queues"),
        await http.get("/schedules"),
        await http.get("/workers"),
        await http.get("/jobs", params={"status": "nope"}),  # 400
        await http.get(f"/jobs/{'0' * 24}"),  # 404 of a route
        await http.get("/nope"),  # 404 of the router
        await http.get("/static/nope.js"),  # 404 of the static route
        await http.get(f"/jobs/{job_id}/cancel"),  # 405
        await http.post(f"/jobs/{job_id}/pause"),  # 403: no token
        await http.get("/", headers={"host": "evil.example"}),  # 403: the host
        await http.get("/jobs", params={"type": "x" * 9_000}),  # 414
        await http.get("/static/dashboard.css"),  # unversioned: revalidated
        await client(app, address="203.0.113.9").get("/"),  # 403: not loopback
        await http.head("/events"),
        await http.post(f"/jobs/{job_id}/pause", data={"csrf": csrf}),  # 303
    ]
    assert [r.status_code for r in replies] == [
        *(200, 200, 200, 200, 200, 200, 200, 200, 200),
        *(400, 404, 404, 404, 405, 403, 403, 414, 200, 403, 200),
        303,
    ]
    for reply in replies:
        assert_protected(reply)
        if reply.headers.get("content-type", "").startswith("text/html"):
            assert_nothing_inline(reply.text)
    assert replies[-1].headers["location"] == f"/jobs/{job_id}"

    for name in ("dashboard.css", "live.js"):
        link = re.search(rf'"(/static/{re.escape(name)}\?v=[0-9a-f]+)"', page)
        assert link, f"the page does not link {name}"
        asset = await http.get(link[1])
        assert asset.status_code == 200
        assert_protected(asset, stored=True)
    assert (await http.get("/static/live.js")).headers["content-type"].startswith("text/javascript")

    login = client(create_dashboard(jc, auth=TokenAuth.from_tokens(TOKENS)))
    for reply in (await login.get("/"), await login.get("/login")):
        assert reply.status_code in (200, 401)
        assert_protected(reply)
        assert_nothing_inline(reply.text)
        assert "/static/dashboard.css" in reply.text


async def test_a_mounted_dashboard_links_its_own_files(jc: JobCollection) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    outer = Starlette(routes=[Mount("/dashboard", app=create_dashboard(jc))])
    transport = httpx.ASGITransport(app=outer, client=("127.0.0.1", 50_000))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
        for path in ("/dashboard/", "/dashboard/jobs/x", "/dashboard/jobs?status=x"):
            reply = await http.get(path)
            link = re.search(r'href="(/dashboard/static/dashboard\.css\?v=[0-9a-f]+)"', reply.text)
            assert link, path
            assert (await http.get(link[1])).status_code == 200
        refused = await http.get("/dashboard/", headers={"host": "evil.example"})
        assert refused.status_code == 403 and "/dashboard/static/dashboard.css" in refused.text


async def test_event_streams_carry_the_headers_and_are_bounded(jc: JobCollection) -> None:
    app = create_dashboard(jc, poll_s=3600, events_max_s=3600, max_streams=2)
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as http:
        async with contextlib.AsyncExitStack() as streams:
            for _ in range(2):
                reply = await streams.enter_async_context(http.stream("GET", "/events"))
                assert reply.status_code == 200
                assert reply.headers["content-type"].startswith("text/event-stream")
                assert_protected(reply)
            busy = await http.get("/events")
            assert busy.status_code == 503
            assert_protected(busy)
            head = await http.head("/events")  # answered at once, takes no slot
            assert head.status_code == 200
        # Both clients left: their slots are free again once the server has seen them go.
        async with asyncio.timeout(10):
            while True:
                async with http.stream("GET", "/events") as reply:
                    if reply.status_code == 200:
                        break
        await app.state.close()
    with pytest.raises(InvalidArgument, match="max_streams"):
        create_dashboard(jc, max_streams=0)


# --- cross-site requests ------------------------------------------------------------------------

CROSS_SITE = [
    {"origin": "http://evil.example"},
    {"origin": "null"},
    {"origin": "http://localhost:9999"},  # another app on this machine: same site, not origin
    {"sec-fetch-site": "cross-site"},
    {"sec-fetch-site": "same-site"},
    {"origin": "http://localhost", "sec-fetch-site": "cross-site"},
]


async def test_every_state_changing_route_refuses_other_sites(
    jc: JobCollection, client: Client
) -> None:
    job_id = await jc.create_job("mail").save()
    http = client(create_dashboard(jc))
    csrf = csrf_of((await http.get(f"/jobs/{job_id}")).text)
    posts: list[tuple[str, dict[str, str]]] = [
        *((f"/jobs/{job_id}/{action}", {"csrf": csrf}) for action in ("pause", "cancel")),
        ("/bulk/cancel", {"csrf": csrf, "type": "mail"}),
        ("/claims/pause", {"csrf": csrf, "type": "mail"}),
        ("/claims/resume", {"csrf": csrf, "every": "1"}),
        ("/limits/set", {"csrf": csrf, "type": "mail", "max_running": "1"}),
        ("/limits/remove", {"csrf": csrf, "type": "mail"}),
        *((f"/schedules/{action}", {"csrf": csrf, "id": "s"}) for action in SCHEDULE_ACTIONS),
    ]
    await jc.schedules.upsert("s", type="mail", every=60)
    for path, form in posts:
        for headers in CROSS_SITE:
            reply = await http.post(path, data=form, headers=headers)
            assert reply.status_code == 403, (path, headers)
            assert_protected(reply)
        without_token = {k: val for k, val in form.items() if k != "csrf"}
        assert (await http.post(path, data=without_token)).status_code == 403
    assert await status_of(jc, job_id) == "ready"
    assert (await jc.paused_types()).types == ()
    assert await jc.concurrency_limits() == {}
    [schedule] = await jc.schedules.list()
    assert not schedule.paused and schedule.last_run is None
    same = {"origin": "http://localhost", "sec-fetch-site": "same-origin"}
    reply = await http.post(f"/jobs/{job_id}/pause", data={"csrf": csrf}, headers=same)
    assert reply.status_code == 303 and await status_of(jc, job_id) == "paused"

    # With auth: login and logout too, and one user's token is no good for another.
    auth = TokenAuth.from_tokens(TOKENS)
    jc.allow(admin=["tester", "other"])
    app = create_dashboard(jc, auth=auth)
    admin = client(app, headers={"authorization": "Bearer admin-token"})
    other = client(app, headers={"authorization": "Bearer other-token"})
    other_csrf = csrf_of((await other.get(f"/jobs/{job_id}")).text)
    assert other_csrf != csrf_of((await admin.get(f"/jobs/{job_id}")).text)
    taken = await admin.post(f"/jobs/{job_id}/cancel", data={"csrf": other_csrf})
    assert taken.status_code == 403 and await status_of(jc, job_id) == "paused"
    browser = client(app)
    for headers in CROSS_SITE:
        login = await browser.post("/login", data={"token": "admin-token"}, headers=headers)
        assert login.status_code == 403 and "set-cookie" not in login.headers
    assert (await browser.post("/login", data={"token": "admin-token"})).status_code == 303
    page = await browser.get("/")
    assert page.status_code == 200
    for headers in CROSS_SITE:
        out = await browser.post("/logout", data={"csrf": csrf_of(page.text)}, headers=headers)
        assert out.status_code == 403
    assert (await browser.post("/logout", data={})).status_code == 403
    assert (await browser.get("/")).status_code == 200  # still logged in


async def test_other_sites_may_only_link_to_it(jc: JobCollection, client: Client) -> None:
    """Fetch metadata: a browser says which site made a request and how. Another site's page
    may follow a link to the dashboard, not fetch, embed, frame or script it."""
    job_id = await jc.create_job("mail").save()
    http = client(create_dashboard(jc))

    def made_by(site: str, mode: str, dest: str) -> dict[str, str]:
        return {"sec-fetch-site": site, "sec-fetch-mode": mode, "sec-fetch-dest": dest}

    for site in ("cross-site", "same-site"):
        link = await http.get(f"/jobs/{job_id}", headers=made_by(site, "navigate", "document"))
        assert link.status_code == 200
        for path, mode, dest in (
            ("/live", "cors", "empty"),  # fetch()
            ("/events", "cors", "empty"),  # EventSource
            (f"/jobs/{job_id}", "navigate", "iframe"),
            (f"/jobs/{job_id}", "navigate", "object"),
            ("/static/live.js", "no-cors", "script"),
            ("/static/dashboard.css", "no-cors", "style"),
            ("/", "no-cors", "image"),
        ):
            reply = await http.get(path, headers=made_by(site, mode, dest))
            assert reply.status_code == 403, (site, path, mode, dest)
            assert_protected(reply)
    for site in ("same-origin", "none"):  # its own pages; a typed URL or a bookmark
        assert (await http.get("/live", headers=made_by(site, "cors", "empty"))).is_success


async def test_gets_change_nothing_whatever_they_claim(jc: JobCollection, client: Client) -> None:
    job_id = await jc.create_job("mail").save()
    http = client(create_dashboard(jc))
    csrf = csrf_of((await http.get(f"/jobs/{job_id}")).text)
    override = {"x-http-method-override": "POST", "x-method-override": "POST"}
    for method, path, params in (
        ("GET", f"/jobs/{job_id}/cancel", {"csrf": csrf}),
        ("GET", f"/jobs/{job_id}/remove", {"csrf": csrf, "_method": "POST"}),
        ("HEAD", f"/jobs/{job_id}/cancel", {"csrf": csrf}),
        ("PUT", f"/jobs/{job_id}/cancel", {"csrf": csrf}),
        ("DELETE", f"/jobs/{job_id}", {"csrf": csrf}),
        ("POST", f"/jobs/{job_id}", {"csrf": csrf, "_method": "DELETE"}),
        ("GET", "/logout", {"csrf": csrf}),
    ):
        reply = await http.request(method, path, params=params, headers=override)
        assert reply.status_code == 405, (method, path)
        assert_protected(reply)
    confirm = await http.get("/bulk/cancel", params={"type": "mail", "csrf": csrf})
    assert confirm.status_code == 200 and 'data-count="1"' in confirm.text
    assert await status_of(jc, job_id) == "ready"


# --- redirects, reflected input, static files ---------------------------------------------------


async def test_no_redirect_leaves_the_dashboard(jc: JobCollection, client: Client) -> None:
    job_id = await jc.create_job("mail").save()
    auth = TokenAuth.from_tokens(TOKENS)
    jc.allow(admin=["tester"])
    browser = client(create_dashboard(jc, auth=auth))
    evil = {"referer": "https://evil.example/", "x-forwarded-host": "evil.example"}
    for params in ({"next": "https://evil.example/"}, {"next": "//evil.example"}, {}):
        login = await browser.post(
            "/login", params=params, data={"token": "admin-token"}, headers=evil
        )
        assert login.status_code == 303 and login.headers["location"] == "/"
        assert_protected(login)
    csrf = csrf_of((await browser.get(f"/jobs/{job_id}")).text)
    acted = await browser.post(
        f"/jobs/{job_id}/pause",
        params={"next": "https://evil.example/"},
        data={"csrf": csrf, "next": "https://evil.example/"},
        headers=evil,
    )
    assert acted.headers["location"] == f"/jobs/{job_id}"
    for back in ("https://evil.example/", "//evil.example", "/queues/../../x", "/jobs"):
        claims = await browser.post(
            "/claims/pause", data={"csrf": csrf, "type": "mail", "back": back}, headers=evil
        )
        assert claims.headers["location"] == "/", back
    out = await browser.post("/logout", data={"csrf": csrf, "next": "//evil.example"})
    assert out.headers["location"] == "/login"
    # The router's own redirect (a trailing slash) stays on the host it was asked for.
    slash = await browser.get("/jobs/", headers={"host": "localhost:8000"})
    assert slash.status_code in (307, 404)
    if slash.is_redirect:
        assert urlsplit(slash.headers["location"]).netloc in ("", "localhost:8000")


async def test_input_is_never_reflected_as_markup(jc: JobCollection, client: Client) -> None:
    job_id = await jc.create_job("mail").save()
    http = client(create_dashboard(jc))
    csrf = csrf_of((await http.get(f"/jobs/{job_id}")).text)
    hostile = "\"'><img src=x onerror=alert(1)><svg onload=alert(2)>"
    replies = [
        await http.get(f"/jobs/{hostile}"),
        await http.get("/jobs", params={"status": hostile}),
        await http.get("/jobs", params={"type": hostile, "user": hostile}),
        await http.get("/jobs", params={"data": hostile}),
        await http.get("/jobs", params={f"data.{hostile}": hostile}),
        await http.get("/jobs", params={"after": hostile}),
        await http.get(f"/bulk/{hostile}", params={"type": "mail"}),
        await http.get("/bulk/cancel", params={"type": hostile}),
        await http.get("/events", params={"job": hostile}, headers={"host": hostile}),
        await http.post(f"/jobs/{job_id}/{hostile}", data={"csrf": csrf}),
        await http.get(f"/static/{hostile}"),
    ]
    for reply in replies:
        assert reply.status_code < 500
        assert "<img src=x" not in reply.text and "<svg onload" not in reply.text
        assert_protected(reply)
    long_id = "a" * 5_000
    missing = await http.get(f"/jobs/{long_id}")
    assert missing.status_code == 404 and long_id not in missing.text
    assert await status_of(jc, job_id) == "ready"


async def test_static_files_are_only_the_dashboards_own(jc: JobCollection) -> None:
    app = create_dashboard(jc)
    async with serving(app) as url:
        for path in (
            "/static/../app.py",
            "/static/../../pyproject.toml",
            "/static/..%2fapp.py",
            "/static/%2e%2e/%2e%2e/pyproject.toml",
            "/static/%2e%2e%2fapp.py",
            "/static/....//app.py",
            "/static/dashboard.css/../../app.py",
            "/static//etc/passwd",
            "/static/%2fetc%2fpasswd",
            "/static/C:%5cwindows%5cwin.ini",
            "/static/dashboard.css%00.js",
            "/static/assets.py",
            "/static/__init__.py",
            "/static/",
            "/static",
        ):
            request = f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
            status, headers, body = await raw_request(url, request.encode())
            assert status in (307, 404), path
            assert headers["x-content-type-options"] == "nosniff", path
            assert b"import " not in body and b"[project]" not in body and b"root:" not in body
        status, headers, body = await raw_request(
            url,
            b"GET /static/dashboard.css HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
        assert status == 200 and headers["content-type"].startswith("text/css")
        await app.state.close()


# --- hostile input: 4xx, never 500 --------------------------------------------------------------


async def test_hostile_requests_are_answered_without_a_server_error(
    jc: JobCollection, client: Client
) -> None:
    job_id = await jc.create_job("mail", {"a": 1}).save()
    http = client(create_dashboard(jc))
    csrf = csrf_of((await http.get(f"/jobs/{job_id}")).text)
    deep = "[" * 3_000 + "]" * 3_000
    cases: list[tuple[str, str, Any]] = [
        ("GET", "/jobs", {"user": deep}),
        ("GET", "/jobs", {"data.a": deep}),
        ("GET", "/bulk/cancel", {"data.a": deep}),
        ("GET", "/jobs", {"data.a.$where": "1"}),
        ("GET", "/jobs", {"data.$where": "1"}),
        ("GET", "/jobs", {"data": "a.$gt=1"}),
        ("GET", "/bulk/remove", {"data.a.$ne": "1"}),
        ("GET", "/jobs", {"user": '{"$ne": null}'}),
        ("GET", "/jobs", {"data.a": '{"$gt": ""}'}),
        ("GET", "/jobs", {"user": "1e400"}),
        ("GET", "/jobs", {"data.a": "NaN"}),
        ("GET", "/jobs", {"data.a": "9" * 400}),
        ("GET", "/jobs", {"after": "s"}),
        ("GET", "/jobs", {"after": "o" + "z" * 24}),
        ("GET", "/jobs", {"data": "=1"}),
        ("GET", "/jobs", {"data.": "1"}),
        ("GET", "/jobs", {"data.a..b": "1"}),
        ("GET", "/jobs", [("type", str(n)) for n in range(1_000)]),
        ("GET", "/jobs/%00", None),
        ("GET", "/jobs/%ff%fe", None),
        ("GET", "/jobs/" + "a" * 9_000, None),
        ("POST", f"/jobs/{'a' * 5_000}/cancel", None),
        ("POST", "/bulk/cancel", None),
    ]
    for method, path, params in cases:
        reply = await http.request(method, path, params=params)
        assert reply.status_code < 500, (path, params, reply.status_code)
        assert_protected(reply)
    bodies: list[tuple[str, Any, dict[str, str]]] = [
        (f"/jobs/{job_id}/cancel", b"\xff\xfe" * 100, {}),
        (f"/jobs/{job_id}/cancel", b"csrf=" + b"%" * 1000, {}),
        (f"/jobs/{job_id}/cancel", b"x" * 70_000, {}),
        ("/bulk/cancel", f"csrf={csrf}&data.a={deep}".encode(), {}),
        ("/bulk/cancel", f"csrf={csrf}&data=a.$where%3D1".encode(), {}),
        ("/bulk/cancel", f"csrf={csrf}&status=nope".encode(), {}),
        (f"/jobs/{job_id}/cancel", b"--x\r\n\r\n", {"content-type": "multipart/form-data"}),
    ]
    for path, content, headers in bodies:
        reply = await http.post(path, content=content, headers=headers)
        assert reply.status_code < 500, (path, content[:40], reply.status_code)
    assert await status_of(jc, job_id) == "ready"


async def test_hostile_limit_forms_are_refused_naming_the_field(
    jc: JobCollection, client: Client
) -> None:
    """The form that sets a concurrency limit, posted with anything but a type, a whole
    number from 1 to 1,000,000 and an optional `user` or `data.PATH`: a 4xx whose page names
    the field, never a 500, and no limit changes (the one set before is kept)."""
    await jc.set_concurrency_limit("mail", ConcurrencyLimit(7))
    http = client(create_dashboard(jc))
    csrf = csrf_of((await http.get("/")).text)
    deep = "[" * 3_000 + "]" * 3_000
    forms: list[tuple[dict[str, str], int, str]] = [
        ({"csrf": csrf, "type": "mail"}, 400, "max_running: give the most jobs"),
        ({"csrf": csrf, "type": "mail", "max_running": ""}, 400, "max_running: give"),
        ({"csrf": csrf, "type": "mail", "max_running": "abc"}, 400, "max_running: 'abc' is not"),
        ({"csrf": csrf, "type": "mail", "max_running": "0"}, 400, "max_running: must be >= 1"),
        ({"csrf": csrf, "type": "mail", "max_running": "-3"}, 400, "max_running: '-3' is not"),
        ({"csrf": csrf, "type": "mail", "max_running": "2.5"}, 400, "max_running: '2.5' is not"),
        ({"csrf": csrf, "type": "mail", "max_running": "1e3"}, 400, "max_running: '1e3' is not"),
        ({"csrf": csrf, "type": "mail", "max_running": "1_000"}, 400, "max_running: '1_000' is"),
        ({"csrf": csrf, "type": "mail", "max_running": "\u0665"}, 400, "is not a whole number"),
        ({"csrf": csrf, "type": "mail", "max_running": "NaN"}, 400, "max_running: 'NaN' is not"),
        ({"csrf": csrf, "type": "mail", "max_running": "1000001"}, 400, "max_running: must be"),
        ({"csrf": csrf, "type": "mail", "max_running": "9" * 5_000}, 400, "max_running: must be"),
        ({"csrf": csrf, "type": "mail", "max_running": deep}, 400, "max_running: "),
        ({"csrf": csrf, "type": "", "max_running": "2"}, 400, "type: must be a non-empty"),
        ({"csrf": csrf, "max_running": "2"}, 400, "type: must be a non-empty"),
        ({"csrf": csrf, "type": "x" * 5_000, "max_running": "2"}, 400, "type: is longer than"),
        (
            {"csrf": csrf, "type": "mail", "max_running": "2", "group_by": "customer"},
            400,
            "group_by: must be 'user' or 'data.<field path>', not 'customer'",
        ),
        (
            {"csrf": csrf, "type": "mail", "max_running": "2", "group_by": "data.$where"},
            400,
            "group_by: must be",
        ),
        (
            {"csrf": csrf, "type": "mail", "max_running": "2", "group_by": "data..a"},
            400,
            "group_by: must be",
        ),
        (
            {"csrf": csrf, "type": "mail", "max_running": "2", "group_by": "x" * 9_000},
            400,
            "group_by: is longer than 1024 characters",
        ),
        ({"type": "mail", "max_running": "2"}, 403, "the form's token is missing"),
        ({"csrf": "0" * 64, "type": "mail", "max_running": "2"}, 403, "token is missing or stale"),
        ({"csrf": csrf + "0", "type": "mail", "max_running": "2"}, 403, "token is missing"),
    ]
    for form, status, says in forms:
        reply = await http.post("/limits/set", data=form)
        assert reply.status_code == status, (form, reply.status_code)
        assert says in html.unescape(reply.text), (form, reply.text[-400:])
        assert len(reply.text) < 3_000  # a hostile value is not repeated whole
        assert_protected(reply)
    for form, status in (
        ({"csrf": csrf}, 400),
        ({"csrf": csrf, "type": ""}, 400),
        ({"type": "mail"}, 403),
    ):
        assert (await http.post("/limits/remove", data=form)).status_code == status, form
    bodies = [
        b"\xff\xfe" * 100,
        f"csrf={csrf}&type=mail&max_running=%ff%fe".encode(),
        f"csrf={csrf}&type=mail&max_running=2&group_by=%ff".encode(),
        f"csrf={csrf}&type=mail&max_running=2".encode() + b"&x=" + b"y" * 70_000,
    ]
    for content in bodies:
        reply = await http.post("/limits/set", content=content)
        assert 400 <= reply.status_code < 500, (content[:60], reply.status_code)
    assert await jc.concurrency_limits() == {"mail": ConcurrencyLimit(7)}


async def test_a_failing_database_is_a_503_not_a_500(
    database: Any, clock: ManualClock, client: Client
) -> None:
    faulty = FaultyCollection(database["queue.jobs"])
    jc = JobCollection(faulty, clock=clock)
    try:
        job_id = await jc.create_job("mail").save()
        http = client(create_dashboard(jc))
        csrf = csrf_of((await http.get(f"/jobs/{job_id}")).text)
        faulty.faults.cut_off()
        for reply in (
            await http.get(f"/jobs/{job_id}"),
            await http.get(f"/jobs/{job_id}/live"),
            await http.post(f"/jobs/{job_id}/cancel", data={"csrf": csrf}),
        ):
            assert reply.status_code == 503
            assert_protected(reply)
            assert "AutoReconnect" not in reply.text  # no internals in the page
        faulty.faults.restore()
        assert await status_of(jc, job_id) == "ready"
    finally:
        await jc.close()


# --- workflow and batch pages -------------------------------------------------------------------


async def test_hostile_workflow_and_batch_requests_are_4xx_and_change_nothing(
    jc: JobCollection, client: Client
) -> None:
    """The workflow and batch routes (web/workflow_pages.py) given hostile ids, filters,
    cursors, actions and forms: a 400 or 404 (403 for a post without the page's token or from
    another site), never a 500; the pages carry the headers and nothing inline; nothing
    hostile comes back as markup; and no job changes."""
    hostile = "\"'><img src=x onerror=alert(1)><svg onload=alert(2)>"
    deep = "[" * 1_200 + "]" * 1_200  # within the URL's bound (MAX_URL_BYTES) once encoded
    flow = batch([jc.create_job("a"), jc.create_job("b", {"note": hostile})])
    workflow = await jc.save_workflow(chain(jc.create_job(hostile), flow))
    ids = {"workflows": workflow.id, "batches": flow.id}
    http = client(create_dashboard(jc))
    pages = [await http.get(f"/workflows/{workflow.id}"), await http.get(f"/batches/{flow.id}")]
    for page in pages:
        assert page.status_code == 200
        assert_protected(page)
        assert "<img src=x" not in page.text
        # The hostile type, escaped, still reads as an attribute to assert_nothing_inline.
        escaped = html.escape(hostile.split(">", 1)[1], quote=True)
        assert_nothing_inline(page.text.replace(escaped, ""))
    assert "&lt;img src=x" in pages[0].text  # the type, in the graph and the job list
    csrf = csrf_of(pages[0].text)
    before = {job.id: job.doc.status for job in (await jc.find_jobs()).jobs}

    gets: list[tuple[str, Any, tuple[int, ...]]] = []
    for kind, group_id in ids.items():
        gets += [
            (f"/{kind}/%00", None, (400, 404)),
            (f"/{kind}/%ff%fe", None, (400, 404)),
            (f"/{kind}/{hostile}", None, (404,)),
            (f"/{kind}/{'a' * 5_000}", None, (404,)),
            (f"/{kind}/{'0' * 24}", None, (404,)),
            (f"/{kind}/{'0' * 24}", {"status": "nope"}, (404,)),
            (f"/{kind}/{group_id}", {"status": "nope"}, (400,)),
            (f"/{kind}/{group_id}", {"status": hostile}, (400,)),
            (f"/{kind}/{group_id}", {"status": deep}, (400,)),
            (f"/{kind}/{group_id}", {"type": hostile}, (200,)),
            (f"/{kind}/{group_id}", {"type": "x" * 5_000}, (200, 400)),
            (f"/{kind}/{group_id}", {"type": "$where"}, (200, 400)),
            (f"/{kind}/{group_id}", {"after": "s"}, (400,)),
            (f"/{kind}/{group_id}", {"after": "o" + "z" * 24}, (400,)),
            (f"/{kind}/{group_id}", {"after": hostile}, (400,)),
            (f"/{kind}/{group_id}", {"after": deep}, (400,)),
            (f"/{kind}/{group_id}", [("type", str(n)) for n in range(700)], (200, 400)),
            (f"/{kind}/{group_id}/cancel", None, (405,)),
        ]
    for path, params, expected in gets:
        reply = await http.get(path, params=params)
        assert reply.status_code in expected, (path, str(params)[:60], reply.status_code)
        assert_protected(reply)
        assert "<img src=x" not in reply.text and "<svg onload" not in reply.text
        assert "x" * 300 not in reply.text and "a" * 300 not in reply.text  # not repeated whole

    posts: list[tuple[str, dict[str, str], dict[str, str], int]] = [
        (f"/workflows/{workflow.id}/cancel", {}, {}, 403),  # no token
        (f"/batches/{flow.id}/retry", {"csrf": "0" * 64}, {}, 403),
        (f"/workflows/{workflow.id}/{hostile}", {"csrf": csrf}, {}, 404),
        (f"/batches/{flow.id}/remove", {"csrf": csrf}, {}, 404),
        (f"/workflows/{hostile}/cancel", {"csrf": csrf}, {}, 404),
        (f"/batches/{'a' * 5_000}/retry", {"csrf": csrf}, {}, 404),
        *((f"/workflows/{workflow.id}/cancel", {"csrf": csrf}, h, 403) for h in CROSS_SITE),
        *((f"/batches/{flow.id}/cancel", {"csrf": csrf}, h, 403) for h in CROSS_SITE),
    ]
    for path, form, headers, expected in posts:
        reply = await http.post(path, data=form, headers=headers)
        assert reply.status_code == expected, (path[:80], headers, reply.status_code)
        assert_protected(reply)
        assert "<img src=x" not in reply.text
    for content in (b"\xff\xfe" * 100, b"csrf=" + b"%" * 1000, b"x" * 70_000):
        reply = await http.post(f"/workflows/{workflow.id}/cancel", content=content)
        assert 400 <= reply.status_code < 500, (content[:20], reply.status_code)
    after = {job.id: job.doc.status for job in (await jc.find_jobs()).jobs}
    assert after == before
