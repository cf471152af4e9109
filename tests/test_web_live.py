"""The dashboard's newer pages update live as the overview does (issue 26): the job list, the
queues, schedules and workers pages each keep their live part in `#live`, which the live
script reloads from the same URL with `?part=live` on each `change` of `/events` (watching
what the page shows). The fragment is the page's live part, under the page's auth, with the
job list's filters kept, for no more commands than its page."""

from __future__ import annotations

import asyncio
import html
import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from jobcollection import JobCollection, ManualClock
from jobcollection.remote import TokenAuth
from jobcollection.web import create_dashboard
from test_web import next_event, serving
from test_web_history import HOSTILE, every_state

Client = Callable[..., httpx.AsyncClient]
TOKENS = {"admin-token": "tester", "viewer-token": "viewer"}
PAGES = ["/queues", "/schedules", "/workers", "/jobs"]


def live_of(page: str) -> tuple[str, str]:
    """A page's live part: its fragment URL and its events URL (unescaped)."""
    found = re.search(r'<div id="live" data-events="([^"]*)" data-fragment="([^"]*)"', page)
    assert found, "the page has no live part"
    return html.unescape(found[2]), html.unescape(found[1])


async def check_fragment(http: httpx.AsyncClient, path: str, **params: Any) -> str:
    """The fragment a page names, after checking that the page holds it as its live part."""
    page = await http.get(path, params=params)
    assert page.status_code == 200, page.text
    url, _ = live_of(page.text)
    fragment = await http.get(url)
    assert fragment.status_code == 200
    assert f'data-event="">{fragment.text}</div>' in page.text
    assert "<html" not in fragment.text and 'id="filters"' not in fragment.text
    return fragment.text


async def test_each_page_names_a_fragment_that_is_its_live_part(
    jc: JobCollection, clock: ManualClock, client: Client
) -> None:
    await every_state(jc, clock)
    await jc.schedules.upsert("nightly", type="report", cron="0 3 * * *")
    http = client(create_dashboard(jc))
    for path in PAGES:
        page = (await http.get(path)).text
        url, events = live_of(page)
        assert url == f"{path}?part=live"
        watched = "" if path == "/jobs" else f"?watch={path[1:]}"
        assert events == f"/events{watched}"
        assert "live.js" in page
        await check_fragment(http, path)
    assert 'id="filters"' in (await http.get("/jobs")).text  # the form stays outside


async def test_a_fragment_shows_what_changed(
    jc: JobCollection, clock: ManualClock, client: Client
) -> None:
    await jc.schedules.upsert("nightly", type="report", cron="0 3 * * *")
    http = client(create_dashboard(jc))
    before = {path: await check_fragment(http, path) for path in PAGES}
    job_id = await jc.create_job("mail").save()
    await jc.pause_type("mail")
    await jc.schedules.pause("nightly")
    queue = jc.process_jobs("sms", lambda job, cb: None, poll_interval=None)
    assert await queue.announce()
    try:
        after = {path: (await http.get(path, params={"part": "live"})).text for path in PAGES}
    finally:
        await queue.shutdown("soft", quiet=True)
    assert str(job_id) not in before["/jobs"] and str(job_id) in after["/jobs"]
    assert "claims paused" not in before["/queues"] and "claims paused" in after["/queues"]
    assert re.search(r'class="state paused">paused<', after["/schedules"])
    assert 'class="worker"' not in before["/workers"] and 'class="worker"' in after["/workers"]


async def test_a_fragment_answers_as_its_page_to_each_user(
    jc: JobCollection, clock: ManualClock, client: Client
) -> None:
    await every_state(jc, clock)
    jc.allow(admin=["tester", "viewer"])
    app = create_dashboard(
        jc, auth=TokenAuth.from_tokens(TOKENS), read_only=lambda user: user == "viewer"
    )
    admin = client(app, headers={"authorization": "Bearer admin-token"})
    viewer = client(app, headers={"authorization": "Bearer viewer-token"})
    anonymous = client(app)
    wrong = client(app, headers={"authorization": "Bearer nope"})
    for path in PAGES:
        live = {"part": "live"}
        assert (await anonymous.get(path, params=live)).status_code == 401
        assert (await wrong.get(path, params=live)).status_code == 401
        seen = await viewer.get(path, params=live)
        assert seen.status_code == 200 and "<form" not in seen.text
    assert "<form" in (await admin.get("/queues", params={"part": "live"})).text
    # Without auth: loopback clients only, for the fragment as for the page.
    remote = client(create_dashboard(jc), address="203.0.113.9")
    for path in PAGES:
        assert (await remote.get(path, params={"part": "live"})).status_code == 403


async def test_the_job_lists_fragment_keeps_its_filters_and_order(
    jc: JobCollection, client: Client
) -> None:
    odd = 'a&b="<x>'
    ids = [await jc.create_job("mail", {"to": odd}).save() for _ in range(52)]
    await jc.create_job("mail", {"to": "b"}).save()
    await jc.create_job("sms", {"to": odd}).save()
    http = client(create_dashboard(jc))
    params = {"type": "mail", "data.to": json.dumps(odd), "sort": "oldest"}
    page = (await http.get("/jobs", params=params)).text
    attribute = re.search(r'data-fragment="([^"]*)"', page)
    assert attribute and "<" not in attribute[1] and "&b=" not in attribute[1]
    url, _ = live_of(page)
    assert dict(parse_qsl(urlsplit(url).query)) == {**params, "part": "live"}
    fragment = await check_fragment(http, "/jobs", **params)
    listed = re.findall(r'<tr class="job" data-id="([^"]+)"', fragment)
    assert listed == [str(i) for i in ids[:50]]
    following = re.search(r'<a id="next" href="([^"]+)"', fragment)
    assert following is not None
    link = html.unescape(following[1])  # the next page: its cursor is kept in its fragment's URL
    url, _ = live_of((await http.get(link)).text)
    query = dict(parse_qsl(urlsplit(link).query))
    assert "after" in query and dict(parse_qsl(urlsplit(url).query)) == {**query, "part": "live"}
    rest = re.findall(r'<tr class="job" data-id="([^"]+)"', (await http.get(url)).text)
    assert rest == [str(i) for i in ids[50:]]


async def test_hostile_parts_and_watches_are_4xx(
    jc: JobCollection, clock: ManualClock, client: Client
) -> None:
    await every_state(jc, clock)
    http = client(create_dashboard(jc))
    for path in PAGES:
        for params in [
            {"part": "<script>alert(1)</script>"},
            {"part": "x" * 5000},
            {"part": ""},
            *({**hostile, "part": "live"} for hostile in HOSTILE),
            {"part": "live", "sort": "<script>alert(1)</script>"},
            {"part": "live", "data.$where": "1"},
            {"part": "live", "id": "9" * 5000},
            {"part": "live", "after": "s" + "x" * 3000},
        ]:
            reply = await http.get(path, params=params)
            assert reply.status_code < 500, (path, params, reply.status_code)
            assert "<script>alert" not in reply.text
        assert (await http.get(path, params={"part": "whole"})).status_code == 400
    for watch in ("<script>", "overview", "x" * 5000, "__class__"):
        reply = await http.get("/events", params={"watch": watch})
        assert reply.status_code == 400 and "<script>" not in reply.text
    both = await http.get("/events", params={"watch": "queues", "job": "0" * 24})
    assert both.status_code == 400


async def test_a_fragment_costs_no_more_commands_than_its_page(
    make_jc: Any, client: Client
) -> None:
    jc = await make_jc(started=False)  # no job server: its loop's commands would count
    await jc.save_jobs([jc.create_job(f"t{n % 3}") for n in range(30)])
    await jc.schedules.upsert("s", type="t0", every=60)
    http = client(create_dashboard(jc))
    for path in PAGES:
        await http.get(path)  # the first load: settings read, indexes made
        before = jc.commands
        assert (await http.get(path)).status_code == 200
        page = jc.commands - before
        before = jc.commands
        assert (await http.get(path, params={"part": "live"})).status_code == 200
        assert jc.commands - before <= page, path


@pytest.mark.parametrize(
    ("watch", "change"),
    [
        ("queues", lambda jc: jc.pause_type("mail")),
        ("schedules", lambda jc: jc.schedules.pause("nightly")),
    ],
)
async def test_a_watching_stream_tells_a_change_the_counts_do_not_show(
    jc: JobCollection, watch: str, change: Callable[[JobCollection], Any]
) -> None:
    await jc.create_job("mail").save()
    await jc.schedules.upsert("nightly", type="report", cron="0 3 * * *")
    app = create_dashboard(jc, poll_s=0.02, events_max_s=30)
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as http:
        async with http.stream("GET", "/events", params={"watch": watch}) as reply:
            lines = reply.aiter_lines()
            first = json.loads((await asyncio.wait_for(next_event(lines), 10))["data"])
            assert first["counts"] == {"mail/ready": 1} and watch in first
            await change(jc)
            second = json.loads((await asyncio.wait_for(next_event(lines), 10))["data"])
            assert second["counts"] == first["counts"] and second[watch] != first[watch]
        await app.state.close()
