"""The web dashboard (jobcollection.web) over HTTP: the overview's numbers, the job list's
filters and pages, a job's page (hostile data escaped), actions through the method layer and
their refusals (rules, read-only users, other sites, non-loopback clients), bulk actions after
a count, the login cookie and the event stream. The browser test: test_web_browser.py."""

from __future__ import annotations

import asyncio
import json
import re
import signal
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import MakeJC
from jobcollection import ConcurrencyLimit, JobCollection, ManualClock
from jobcollection.remote import TokenAuth
from jobcollection.rules.history import LAG, series
from jobcollection.web import LOOPBACK_USER, create_dashboard
from remote_helpers import serving

TOKENS = {"admin-token": "tester", "viewer-token": "viewer", "nobody-token": "nobody"}
Client = Callable[..., httpx.AsyncClient]


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert found, "the page has no form token"
    return found[1]


def row_ids(page: str) -> list[str]:
    return re.findall(r'<tr class="job" data-id="([^"]+)"', page)


def cell(page: str, job_type: str, status: str) -> str:
    row = re.search(rf'<tr data-type="{job_type}">(.*?)</tr>', page)
    assert row, f"no row for {job_type}"
    value = re.search(rf'data-status="{status}">(?:<a [^>]*>)?(\d+)', row[1])
    assert value
    return value[1]


async def status_of(jc: JobCollection, job_id: Any) -> str | None:
    job = await jc.get_job(job_id)
    return None if job is None else job.doc.status


# --- pure parts ---------------------------------------------------------------------------------


def test_the_charts_series_have_a_point_a_span_up_to_now() -> None:
    now = datetime(2026, 1, 1, 12, 30, 20, tzinfo=UTC)

    def doc(start: datetime, job_type: str = "t", span: str = "m", **counts: Any) -> Any:
        return {"span": span, "type": job_type, "start": start, **counts}

    docs = [
        doc(datetime(2026, 1, 1, 12, 30, tzinfo=UTC), completed=2, run={"7": 2}),
        doc(datetime(2026, 1, 1, 11, 31, tzinfo=UTC), failed=1),  # the first minute
        doc(datetime(2026, 1, 1, 11, 30, tzinfo=UTC), completed=9),  # before it
        doc(datetime(2026, 1, 1, 12, 0, tzinfo=UTC), span="h", completed=9),  # an hour's
    ]
    [(job_type, (points, whole))] = series(docs, "m", now, 60).items()
    assert job_type == "t" and len(points) == 60
    assert points[0].start == datetime(2026, 1, 1, 11, 31, tzinfo=UTC)
    assert (points[0].failed, points[-1].completed) == (1, 2)
    assert (whole.completed, whole.failed) == (2, 1)
    assert whole.run[0] is not None and 500 < whole.run[0] <= 1_000
    assert whole.wait == (None, None, None)


# --- overview -----------------------------------------------------------------------------------


async def test_the_overview_shows_counts_oldest_ready_and_the_last_hour(
    jc: JobCollection, clock: ManualClock, client: Client
) -> None:
    for n in range(3):
        await jc.create_job("mail", {"n": n}).save()
    paused = jc.create_job("sms")
    await paused.save()
    await paused.pause()
    for job_type in ("done", "done", "broken"):
        await jc.create_job(job_type).retry(0).save()
    clock.advance(90)
    for job in await jc.get_work(["done"], max_jobs=2):
        await job.done({"ok": True})
    [broken] = await jc.get_work("broken")
    await broken.fail("no", fatal=True)
    clock.advance(LAG.total_seconds() + 1)
    await jc.run_server_pass()  # counts them into the history

    http = client(create_dashboard(jc))
    page = (await http.get("/")).text
    assert cell(page, "mail", "ready") == "3"
    assert cell(page, "sms", "paused") == "1"
    assert cell(page, "done", "completed") == "2"
    assert cell(page, "broken", "failed") == "1"
    mail = re.search(r'<tr data-type="mail">.*?</tr>', page)
    assert mail and '<td class="n oldest">1m 41s</td>' in mail[0]
    hour = re.search(r'<table class="trends" id="trends-hour">.*?</table>', page)
    assert hour
    assert re.search(r'<tr data-type="done">.*?"completed">2</td>.*?"failed">0</td>', hour[0])
    assert re.search(r'<tr data-type="broken">.*?"completed">0</td>.*?"failed">1</td>', hour[0])
    assert page.count('class="chart"') == 2 * 2 * 2  # 2 types x 2 windows x 2 charts
    assert "http://" not in page.replace("http://www.w3.org", "")
    assert (await http.get("/live")).text in page  # what the page's script reloads


# --- job list -----------------------------------------------------------------------------------


async def test_the_job_list_filters_and_pages_by_cursor(jc: JobCollection, client: Client) -> None:
    mail = [await jc.create_job("mail", {"n": n}).save() for n in range(55)]
    sms = await jc.create_job("sms", {"customer": {"id": 7}}).for_user("u1").save()
    await (await jc.get_job(mail[0])).pause()  # type: ignore[union-attr]
    http = client(create_dashboard(jc))

    first = (await http.get("/jobs", params={"type": "mail"})).text
    assert row_ids(first) == [str(i) for i in mail[::-1][:50]]
    cursor = re.search(r'<a id="next" href="([^"]+)"', first)
    assert cursor
    second = (await http.get(cursor[1].replace("&amp;", "&"))).text
    assert row_ids(second) == [str(i) for i in mail[4::-1]]
    assert 'id="next"' not in second

    async def ids(**params: Any) -> list[str]:
        reply = await http.get("/jobs", params=params)
        assert reply.status_code == 200
        return row_ids(reply.text)

    assert await ids(type="mail", status="paused") == [str(mail[0])]
    assert await ids(user="u1") == [str(sms)]
    assert await ids(**{"data.customer.id": "7"}) == [str(sms)]
    assert await ids(data="n=3") == [str(mail[3])]  # the form's field
    assert await ids(type="sms", status="") == [str(sms)]  # "any" status
    bad = await http.get("/jobs", params={"status": "nope"})
    assert bad.status_code == 400 and "status" in bad.text


# --- job page -----------------------------------------------------------------------------------


async def test_a_job_page_shows_everything_and_escapes_hostile_values(
    jc: JobCollection, client: Client
) -> None:
    hostile = "<script>alert('x')</script>"
    antecedent = jc.create_job("parent")
    first = await antecedent.save()
    job = jc.create_job("evil", {"note": hostile, "n": 1}).retry(2, wait=0).depends(antecedent)
    await job.save()
    parent = await jc.get_work("parent")
    await parent[0].done()
    [claimed] = await jc.get_work("evil")
    await claimed.log(hostile, data={"x": hostile})
    await claimed.progress(1, 4)
    await claimed.fail({"message": hostile})
    http = client(create_dashboard(jc))

    reply = await http.get(f"/jobs/{job.id}")
    assert reply.status_code == 200
    page = reply.text
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert page.count("&lt;script&gt;") >= 3  # data, log message and data, failure
    assert '<span id="status" hidden>waiting</span>' in page  # retried
    assert 'id="failures"' in page and "runId" in page
    assert f'href="/jobs/{first}"' in page  # the resolved antecedent, linked
    assert "25%" in page
    assert (await http.get(f"/jobs/{job.id}/live")).text in page
    assert (await http.get(f"/jobs/{'0' * 24}")).status_code == 404

    await jc.create_job("plain").save()
    [plain] = await jc.get_work("plain")
    await plain.done()
    rerun = await plain.rerun()
    page = (await http.get(f"/jobs/{rerun}")).text
    assert f'<a href="/jobs/{plain.id}">{plain.id}</a>' in page  # lineage, rescheduled from


# --- actions ------------------------------------------------------------------------------------


async def test_actions_run_as_the_user_through_the_rules(jc: JobCollection, client: Client) -> None:
    jc.allow(admin=["tester"])
    jc.allow(jobPause=["nobody"])
    app = create_dashboard(jc, auth=TokenAuth.from_tokens(TOKENS))
    job_id = await jc.create_job("mail").save()
    for token, expected in (("nobody-token", 403), ("admin-token", 303)):
        http = client(app, headers={"authorization": f"Bearer {token}"})
        page = (await http.get(f"/jobs/{job_id}")).text
        assert 'value="cancel"' in page
        reply = await http.post(f"/jobs/{job_id}/cancel", data={"csrf": csrf_of(page)})
        assert reply.status_code == expected
        if expected == 403:
            assert "not authorized" in reply.text.lower()
            assert await status_of(jc, job_id) == "ready"  # nothing changed
    assert await status_of(jc, job_id) == "cancelled"
    assert reply.headers["location"] == f"/jobs/{job_id}"

    http = client(app, headers={"authorization": "Bearer admin-token"})
    csrf = csrf_of((await http.get(f"/jobs/{job_id}")).text)
    assert (await http.post(f"/jobs/{job_id}/restart", data={"csrf": csrf})).status_code == 303
    assert await status_of(jc, job_id) == "ready"
    await http.post(f"/jobs/{job_id}/pause", data={"csrf": csrf})
    assert await status_of(jc, job_id) == "paused"
    await http.post(f"/jobs/{job_id}/resume", data={"csrf": csrf})
    assert await status_of(jc, job_id) == "ready"
    [claimed] = await jc.get_work("mail")
    await claimed.done()
    rerun = await http.post(f"/jobs/{job_id}/rerun", data={"csrf": csrf})
    new_id = rerun.headers["location"].rsplit("/", 1)[1]
    assert new_id != str(job_id) and await status_of(jc, new_id) in ("waiting", "ready")
    removed = await http.post(f"/jobs/{job_id}/remove", data={"csrf": csrf})
    assert removed.headers["location"] == "/jobs"
    assert await status_of(jc, job_id) is None
    assert (await http.post(f"/jobs/{new_id}/nope", data={"csrf": csrf})).status_code == 404


async def test_read_only_users_see_no_actions_and_cannot_post(
    jc: JobCollection, client: Client
) -> None:
    jc.allow(admin=["tester", "viewer"])  # the rules would let them: the role does not
    app = create_dashboard(
        jc, auth=TokenAuth.from_tokens(TOKENS), read_only=lambda user: user == "viewer"
    )
    job_id = await jc.create_job("mail").save()
    admin = client(app, headers={"authorization": "Bearer admin-token"})
    csrf = csrf_of((await admin.get(f"/jobs/{job_id}")).text)
    viewer = client(app, headers={"authorization": "Bearer viewer-token"})
    page = (await viewer.get(f"/jobs/{job_id}")).text
    assert 'id="actions"' not in page and "(read-only)" in page
    assert 'class="bulk"' not in (await viewer.get("/jobs", params={"type": "mail"})).text
    reply = await viewer.post(f"/jobs/{job_id}/cancel", data={"csrf": csrf})
    assert reply.status_code == 403
    assert (await viewer.get("/bulk/cancel", params={"type": "mail"})).status_code == 403
    assert await status_of(jc, job_id) == "ready"


async def test_without_auth_only_loopback_clients_are_served(
    jc: JobCollection, client: Client
) -> None:
    app = create_dashboard(jc)
    assert jc.permits("jobCancel", [], user_id=LOOPBACK_USER)  # granted admin
    assert (await client(app).get("/")).status_code == 200
    for address in ("203.0.113.9", "10.0.0.2", "::ffff:8.8.8.8"):
        reply = await client(app, address=address).get("/")
        assert reply.status_code == 403 and "loopback" in reply.text
    assert (await client(app, address="::1").get("/jobs")).status_code == 200

    with_auth = create_dashboard(jc, auth=TokenAuth.from_tokens(TOKENS))
    remote = client(with_auth, address="203.0.113.9")
    assert (await remote.get("/")).status_code == 401  # the login form
    assert (await remote.get("/", headers={"authorization": "Bearer admin-token"})).is_success


async def test_a_read_only_dashboard_without_auth_grants_nothing(
    make_jc: MakeJC, client: Client
) -> None:
    jc = await make_jc()
    app = create_dashboard(jc, read_only=True)
    assert not jc.permits("jobCancel", [], user_id=LOOPBACK_USER)
    job_id = await jc.create_job("mail").save()
    assert 'id="actions"' not in (await client(app).get(f"/jobs/{job_id}")).text
    assert (await client(app).post(f"/jobs/{job_id}/cancel")).status_code == 403


async def test_posts_need_the_form_token_and_the_same_origin(
    jc: JobCollection, client: Client
) -> None:
    http = client(create_dashboard(jc))
    job_id = await jc.create_job("mail").save()
    csrf = csrf_of((await http.get(f"/jobs/{job_id}")).text)
    for data, headers in (
        ({}, {}),
        ({"csrf": "0" * 64}, {}),
        ({"csrf": csrf}, {"origin": "http://evil.example"}),
        ({"csrf": csrf}, {"origin": "null"}),
    ):
        reply = await http.post(f"/jobs/{job_id}/cancel", data=data, headers=headers)
        assert reply.status_code == 403
    assert await status_of(jc, job_id) == "ready"
    same = await http.post(
        f"/jobs/{job_id}/cancel", data={"csrf": csrf}, headers={"origin": "http://localhost"}
    )
    assert same.status_code == 303 and await status_of(jc, job_id) == "cancelled"


async def test_a_bulk_action_shows_the_count_then_acts_on_the_filter(
    jc: JobCollection, client: Client
) -> None:
    mail = [await jc.create_job("mail", {"batch": n % 2}).save() for n in range(6)]
    other = await jc.create_job("sms", {"batch": 0}).save()
    [running] = await jc.get_work("mail")  # the oldest: batch 0, cancellable too
    await running.done()  # now completed: not cancellable
    http = client(create_dashboard(jc))

    confirm = await http.get("/bulk/cancel", params={"type": "mail", "data.batch": "0"})
    assert confirm.status_code == 200
    assert 'data-count="2"' in confirm.text  # batch 0 minus the completed one
    form = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', confirm.text))
    assert form == {"type": "mail", "data.batch": "0", "csrf": form["csrf"], "expected": "2"}
    done = await http.post("/bulk/cancel", data=form)
    assert 'data-matched="2" data-changed="2"' in done.text
    statuses = [await status_of(jc, i) for i in mail]
    assert statuses == ["completed", "ready", "cancelled", "ready", "cancelled", "ready"]
    assert await status_of(jc, other) == "ready"

    assert (await http.get("/bulk/cancel")).status_code == 400  # no filter: refused
    none = await http.get("/bulk/remove", params={"type": "mail", "status": "ready"})
    assert 'data-count="0"' in none.text  # ready jobs cannot be removed
    restart = await http.get("/bulk/restart", params={"type": "mail"})
    assert 'data-count="2"' in restart.text


async def test_a_login_form_keeps_the_token_in_a_cookie(jc: JobCollection, client: Client) -> None:
    app = create_dashboard(jc, auth=TokenAuth.from_tokens(TOKENS))
    http = client(app)
    assert (await http.get("/")).status_code == 401
    refused = await http.post("/login", data={"token": "wrong"})
    assert refused.status_code == 401 and "not valid" in refused.text
    reply = await http.post("/login", data={"token": "admin-token"})
    assert reply.status_code == 303
    cookie = reply.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    page = await http.get("/")
    assert page.status_code == 200 and "tester" in page.text and "Log out" in page.text
    out = await http.post("/logout", data={"csrf": csrf_of(page.text)})
    assert out.status_code == 303
    assert (await http.get("/")).status_code == 401


# --- live updates -------------------------------------------------------------------------------


async def next_event(lines: AsyncIterator[str]) -> dict[str, str]:
    event: dict[str, str] = {}
    async for line in lines:
        if not line:
            if "data" in event:
                return event
            continue
        key, _, value = line.partition(": ")
        event[key] = value
    raise AssertionError("the stream ended")


async def test_the_event_stream_tells_when_counts_or_a_job_change(jc: JobCollection) -> None:
    app = create_dashboard(jc, poll_s=0.02, events_max_s=30)
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as http:
        async with http.stream("GET", "/events") as reply:
            assert reply.headers["content-type"].startswith("text/event-stream")
            lines = reply.aiter_lines()
            first = await asyncio.wait_for(next_event(lines), 10)
            assert first["event"] == "change" and json.loads(first["data"]) == {"counts": {}}
            await jc.create_job("mail").save()
            second = await asyncio.wait_for(next_event(lines), 10)
            assert json.loads(second["data"]) == {"counts": {"mail/ready": 1}}
            assert second["id"] == "2"
        job_id = await jc.create_job("sms").save()
        async with http.stream("GET", "/events", params={"job": str(job_id)}) as reply:
            lines = reply.aiter_lines()
            first = json.loads((await asyncio.wait_for(next_event(lines), 10))["data"])
            assert first["status"] == "ready"
            [claimed] = await jc.get_work("sms")
            second = json.loads((await asyncio.wait_for(next_event(lines), 10))["data"])
            assert second["status"] == "running"
            await claimed.log("half way")
            third = json.loads((await asyncio.wait_for(next_event(lines), 10))["data"])
            assert third["log"] == second["log"] + 1
        await app.state.close()
        async with http.stream("GET", "/events") as reply:  # closed: the stream ends at once
            assert [line async for line in reply.aiter_lines() if line] == ["retry: 1020"]


async def test_calls_through_the_collection_wake_the_stream_without_polling(
    jc: JobCollection,
) -> None:
    app = create_dashboard(jc, poll_s=3600, events_max_s=7200)  # it would poll hourly
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as http:
        async with http.stream("GET", "/events") as reply:
            lines = reply.aiter_lines()
            await asyncio.wait_for(next_event(lines), 10)
            job = jc.create_job("mail")
            await job.save()  # a method call: the stream reads the counts again at once
            event = await asyncio.wait_for(next_event(lines), 10)
            assert json.loads(event["data"]) == {"counts": {"mail/ready": 1}}
            await job.pause()
            event = await asyncio.wait_for(next_event(lines), 10)
            assert json.loads(event["data"]) == {"counts": {"mail/paused": 1}}
        await app.state.close()


@pytest.mark.parametrize("login", ["bearer", "cookie"])
async def test_a_revoked_token_ends_its_event_streams(
    jc: JobCollection, tmp_path: Path, login: str
) -> None:
    """As the remote API's long polls and DDP sessions do: a live view open with a token ends
    once the token is gone from the tokens file, and the browser's reconnection meets 401."""
    from jobcollection.remote.auth import hash_token

    tokens = tmp_path / "tokens"
    tokens.write_text(f"ops {hash_token('ops-token')} admin\nkeep {hash_token('keep')} admin\n")
    auth = TokenAuth.from_file(tokens, check_interval_s=3600)  # checked when the test says
    app = create_dashboard(jc, auth=auth, poll_s=3600, events_max_s=7200)
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as http:
        if login == "cookie":
            assert (await http.post("/login", data={"token": "ops-token"})).status_code == 303
        else:
            http.headers["authorization"] = "Bearer ops-token"
        async with http.stream("GET", "/events") as reply:
            lines = reply.aiter_lines()
            await asyncio.wait_for(next_event(lines), 10)
            tokens.write_text(f"keep {hash_token('keep')} admin\n")  # ops' token revoked
            assert auth.check()
            rest = await asyncio.wait_for(_rest_of(lines), 10)  # the stream ends by itself
            assert "event: change" not in rest
        assert (await http.get("/events")).status_code == 401
        await app.state.close()


async def _rest_of(lines: AsyncIterator[str]) -> list[str]:
    return [line async for line in lines]


# --- the command --------------------------------------------------------------------------------


async def test_serve_mounts_the_dashboard_and_dashboard_serves_it_alone(tmp_path: Path) -> None:
    from test_remote_processes import jobcollection, make_token

    admin_token, admin_line = await make_token(tmp_path, "admin-user", "admin")
    worker_token, worker_line = await make_token(tmp_path, "worker-user", "worker")
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{admin_line}\n{worker_line}\n")
    async with jobcollection(
        tmp_path,
        *("serve", "--port", "0", "--tokens", str(tokens), "--log-level", "warning"),
        *("--allowed-host", ".example.test"),
    ) as server:
        url = (await server.expect("jobcollection serving on ")).rsplit(" ", 1)[1]
        async with httpx.AsyncClient(base_url=url, follow_redirects=True) as http:
            assert (await http.get("/dashboard")).status_code == 401  # the login form
            as_admin = {"authorization": f"Bearer {admin_token}"}
            admin = await http.get("/dashboard/", headers=as_admin)
            assert admin.status_code == 200 and "admin-user" in admin.text
            assert "(read-only)" not in admin.text
            worker = await http.get(
                "/dashboard/jobs", headers={"authorization": f"Bearer {worker_token}"}
            )
            assert worker.status_code == 200 and "worker-user (read-only)" in worker.text
            assert (await http.get("/info", headers=as_admin)).status_code == 200
            for host, expected in (("jobs.example.test", 200), ("evil.test", 403)):
                reply = await http.get("/dashboard/", headers={**as_admin, "host": host})
                assert reply.status_code == expected
        server.send_signal(signal.SIGTERM)
        assert await server.exited() == 0

    async with jobcollection(tmp_path, "dashboard", "--demo", "--host", "0.0.0.0") as refused:
        assert await refused.exited() == 2
    async with jobcollection(
        tmp_path,
        *("dashboard", "--demo", "--port", "0", "--read-only", "--log-level", "warning"),
        *("--allowed-host", "jobs.test"),
    ) as alone:
        url = (await alone.expect("jobcollection serving on ")).rsplit(" ", 1)[1]
        async with httpx.AsyncClient(base_url=url) as http:
            page = await http.get("/")
            assert page.status_code == 200 and "dashboard (read-only)" in page.text
            port = url.rsplit(":", 1)[1]
            assert (await http.get("/", headers={"host": f"jobs.test:{port}"})).status_code == 200
            assert (await http.get("/", headers={"host": "evil.test"})).status_code == 403
            async with http.stream("GET", "/events") as events:  # open while it stops
                lines = events.aiter_lines()
                await asyncio.wait_for(next_event(lines), 10)
                alone.send_signal(signal.SIGTERM)
                assert await alone.exited() == 0


async def test_the_overview_pauses_and_resumes_a_type_on_every_process(
    jc: JobCollection, client: Client
) -> None:
    jc.allow(admin=["tester"])
    app = create_dashboard(jc, auth=TokenAuth.from_tokens(TOKENS))
    await jc.create_job("mail").save()
    await jc.create_job("sms<b>").save()
    http = client(app, headers={"authorization": "Bearer admin-token"})
    page = (await http.get("/")).text
    assert '<td class="claims claimed">claimed <form' in page and "sms&lt;b&gt;" in page
    assert 'id="leader">Job server: led by ' in page
    csrf = csrf_of(page)
    reply = await http.post("/claims/pause", data={"csrf": csrf, "type": "sms<b>"})
    assert (reply.status_code, reply.headers["location"]) == (303, "/")
    assert (await jc.paused_types()).types == ("sms<b>",)
    assert await jc.get_work("sms<b>") == [] and len(await jc.get_work("mail")) == 1
    row = re.search(r'<tr data-type="sms&lt;b&gt;">(.*?)</tr>', (await http.get("/")).text)
    assert row and 'class="claims paused"' in row[1] and ">Resume</button>" in row[1]
    await http.post("/claims/pause", data={"csrf": csrf, "every": "1"})
    assert (await jc.paused_types()).every
    await http.post("/claims/resume", data={"csrf": csrf, "every": "1"})
    assert await jc.paused_types() == await jc.resume_type("mail")  # nothing paused
    for form, status in (
        ({"csrf": csrf}, 400),  # neither a type nor every type
        ({"csrf": csrf, "type": "t", "every": "1"}, 400),
        ({"csrf": csrf, "type": ""}, 400),
        ({"type": "t"}, 403),  # no form token
    ):
        assert (await http.post("/claims/pause", data=form)).status_code == status, form
    assert (await http.post("/claims/nope", data={"csrf": csrf, "type": "t"})).status_code == 404
    assert (await jc.paused_types()).types == ()


async def test_only_users_the_rules_allow_pause_a_type(jc: JobCollection, client: Client) -> None:
    jc.allow(admin=["tester", "viewer"])
    jc.allow(jobPause=["nobody"])  # pausing jobs is not pausing a type's claims
    app = create_dashboard(
        jc, auth=TokenAuth.from_tokens(TOKENS), read_only=lambda user: user == "viewer"
    )
    await jc.create_job("mail").save()
    viewer = client(app, headers={"authorization": "Bearer viewer-token"})
    page = (await viewer.get("/")).text
    assert '<td class="claims claimed">claimed</td>' in page and "/claims/" not in page
    admin = client(app, headers={"authorization": "Bearer admin-token"})
    csrf = csrf_of((await admin.get("/")).text)
    assert (
        await viewer.post("/claims/pause", data={"csrf": csrf, "type": "mail"})
    ).status_code == 403
    nobody = client(app, headers={"authorization": "Bearer nobody-token"})
    own = csrf_of((await nobody.get("/")).text)
    refused = await nobody.post("/claims/pause", data={"csrf": own, "type": "mail"})
    assert refused.status_code == 403 and "not authorized" in refused.text.lower()
    assert (await jc.paused_types()).types == ()


async def test_the_overview_shows_sets_and_removes_concurrency_limits(
    jc: JobCollection, client: Client
) -> None:
    """Each limited type's limit is shown beside its pause state (types without jobs too);
    the form under the table sets one, a row's button removes it, through the rules as
    jobSetConcurrencyLimit; the claims honour what was set."""
    jc.allow(admin=["tester"])
    app = create_dashboard(jc, auth=TokenAuth.from_tokens(TOKENS))
    for n in range(3):
        await jc.create_job("mail", {"customer": n % 2}).save()
    await jc.set_concurrency_limit("sms<b>", ConcurrencyLimit(4, group_by="user"))
    http = client(app, headers={"authorization": "Bearer admin-token"})
    page = (await http.get("/")).text
    assert "<th>claims</th><th>concurrency limit</th>" in page
    row = re.search(r'<tr data-type="mail">(.*?)</tr>', page)
    assert row and '<td class="limit">none</td>' in row[1]
    row = re.search(r'<tr data-type="sms&lt;b&gt;">(.*?)</tr>', page)
    assert row and 'class="claims claimed"' in row[1]
    assert 'data-max="4" data-group-by="user">at most 4 running per user' in row[1]
    assert 'action="/limits/remove"' in row[1] and 'value="sms&lt;b&gt;"' in row[1]
    assert 'id="limit" method="post" action="/limits/set"' in page
    assert '<option value="mail">' in page and "sms<b>" not in page
    form = page[page.index('id="limit"') :]
    assert '<div id="live"' not in form  # outside the part that reloads: typing survives

    csrf = csrf_of(page)
    reply = await http.post(
        "/limits/set",
        data={"csrf": csrf, "type": "mail", "max_running": " 1 ", "group_by": "data.customer"},
    )
    assert (reply.status_code, reply.headers["location"]) == (303, "/")
    assert (await jc.concurrency_limits())["mail"] == ConcurrencyLimit(1, group_by="data.customer")
    assert len(await jc.get_work("mail", max_jobs=3)) == 2  # one per customer
    live = (await http.get("/live")).text
    assert 'data-max="1" data-group-by="data.customer">at most 1 running per data.customer' in live
    reply = await http.post("/limits/set", data={"csrf": csrf, "type": "mail", "max_running": "3"})
    assert reply.status_code == 303
    assert (await jc.concurrency_limits())["mail"] == ConcurrencyLimit(3)  # group_by: none
    reply = await http.post("/limits/remove", data={"csrf": csrf, "type": "sms<b>"})
    assert reply.status_code == 303
    assert await jc.concurrency_limits() == {"mail": ConcurrencyLimit(3)}
    assert (await http.post("/limits/nope", data={"csrf": csrf, "type": "t"})).status_code == 404


async def test_only_users_the_rules_allow_set_a_limit(jc: JobCollection, client: Client) -> None:
    """A read-only user, and one the rules do not let call jobSetConcurrencyLimit, see the
    limits but no form and no button; their POSTs are refused (403) and nothing changes."""
    jc.allow(admin=["tester", "viewer"])
    jc.allow(jobPauseTypes=["nobody"])  # pausing a type is not limiting it
    app = create_dashboard(
        jc, auth=TokenAuth.from_tokens(TOKENS), read_only=lambda user: user == "viewer"
    )
    await jc.create_job("mail").save()
    await jc.set_concurrency_limit("mail", ConcurrencyLimit(2))
    for user, token in (("viewer", "viewer-token"), ("nobody", "nobody-token")):
        http = client(app, headers={"authorization": f"Bearer {token}"})
        page = (await http.get("/")).text
        assert 'data-max="2" data-group-by="">at most 2 running</td>' in page, user
        assert "/limits/" not in page and 'id="limit"' not in page, user
        # The user's own form token (a read-only user's pages hold none).
        form = {"csrf": app.state.dashboard.csrf(user), "type": "mail", "max_running": "9"}
        for path in ("/limits/set", "/limits/remove"):
            refused = await http.post(path, data=form)
            assert refused.status_code == 403, (user, path)
        if user == "nobody":
            assert "not authorized: jobSetConcurrencyLimit" in refused.text
    assert await jc.concurrency_limits() == {"mail": ConcurrencyLimit(2)}


async def test_the_workers_page_lists_the_live_queues_and_their_jobs(
    jc: JobCollection, client: Client
) -> None:
    job_id = await jc.create_job("mail<b>").save()
    started, release = asyncio.Event(), asyncio.Event()

    async def worker(job: Any) -> None:
        started.set()
        await release.wait()
        await job.done()

    queue = jc.process_jobs("mail<b>", worker, poll_interval=None)
    http = client(create_dashboard(jc))
    try:
        async with asyncio.timeout(10):
            await started.wait()
        await queue.announce()
        page = (await http.get("/workers")).text
        assert f'data-id="{queue.worker_id}"' in page and "mail&lt;b&gt;" in page
        assert f'href="/jobs/{job_id}"' in page and "mail<b>" not in page
        assert '<a href="/workers">Workers</a>' in (await http.get("/")).text
    finally:
        release.set()
        await queue.shutdown("soft", quiet=True)
    assert "No queue is registered now." in (await http.get("/workers")).text


async def test_what_is_wider_than_a_narrow_screen_scrolls_in_its_own_box(
    jc: JobCollection, client: Client
) -> None:
    """What Chromium found too wide at 400 px (test_web_browser.py): the job list's and a
    workflow's tables sit in a box that scrolls sideways, a heading breaks inside a long id,
    and a form's fields (the login token's) shrink to the screen."""
    from jobcollection import chain
    from jobcollection.web.assets import CSS

    flow = await jc.save_workflow(chain(jc.create_job("a"), jc.create_job("b")))
    http = client(create_dashboard(jc))
    assert '<div class="table-wrap"><table id="jobs">' in (await http.get("/jobs")).text
    page = (await http.get(f"/workflows/{flow.id}")).text
    assert '<div class="table-wrap"><table id="counts">' in page
    assert '<div class="table-wrap"><table id="members">' in page
    assert "h1,h2{overflow-wrap:anywhere}" in CSS
    assert "input,select{max-width:100%;box-sizing:border-box}" in CSS
    assert re.search(r"fieldset\{[^}]*min-width:0", CSS)
