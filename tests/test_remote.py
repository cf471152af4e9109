"""The remote API over HTTP on loopback: authentication, the wire format, hostile requests,
permissions, batches and long polls. (The Job/JobQueue suites run through it as well: the
modules marked `both_sides`; worker processes and cut connections: test_remote_processes.)"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import SHARDED, MakeJC
from jobcollection import (
    DatabaseError,
    InvalidArgument,
    InvalidArgumentType,
    JobCollection,
    ManualClock,
    PermissionDenied,
)
from jobcollection.remote import RemoteJobCollection, TokenAuth, create_app, hash_token
from jobcollection.remote.codec import dumps, loads
from remote_helpers import TOKENS, serve_jc, serving

ADMIN = {"authorization": "Bearer admin-token"}
WORKER = {"authorization": "Bearer worker-token"}


@pytest.fixture
async def server(make_jc: MakeJC) -> AsyncIterator[tuple[JobCollection, str]]:
    """A started JobCollection and the URL of its remote API; worker-1 is a worker."""
    jc = await make_jc()
    jc.allow(worker=["worker-1"], creator=["creator-1"])
    async with serve_jc(jc) as url:
        yield jc, url


@pytest.fixture
async def http(server: tuple[JobCollection, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server[1]) as client:
        yield client


async def snapshot(jc: JobCollection) -> list[dict[str, Any]]:
    return [doc async for doc in jc.collection.find({}).sort("_id")]


async def post(http: httpx.AsyncClient, path: str, body: Any, **kw: Any) -> tuple[int, Any]:
    reply = await http.post(path, content=dumps(body), headers=kw.pop("headers", ADMIN), **kw)
    return reply.status_code, loads(reply.content)


# --- authentication -----------------------------------------------------------------------------


async def test_every_route_needs_a_known_token(http: httpx.AsyncClient) -> None:
    for headers in ({}, {"authorization": "Bearer nope"}, {"authorization": "Basic eDp5"}):
        assert (await http.get("/info", headers=headers)).status_code == 401
        reply = await http.post("/methods/getJob", content=b'{"params": []}', headers=headers)
        assert reply.status_code == 401
        assert reply.headers["www-authenticate"] == "Bearer"
        assert loads(reply.content)["error"]["type"] == "Unauthorized"
        assert (await http.post("/batch", content=b"{}", headers=headers)).status_code == 401
        assert (await http.post("/wait", content=b"{}", headers=headers)).status_code == 401
    info = await http.get("/info", headers=ADMIN)
    assert info.status_code == 200 and "limits" in loads(info.content)


async def test_a_client_with_a_bad_token_is_refused_on_connecting(
    server: tuple[JobCollection, str],
) -> None:
    with pytest.raises(PermissionDenied):
        async with RemoteJobCollection(server[1], token="nope"):
            pass


async def test_an_unreachable_server_is_a_database_error() -> None:
    with pytest.raises(DatabaseError, match="did not answer"):
        async with RemoteJobCollection("http://127.0.0.1:9", token="x", timeout=5):
            pass


def test_token_auth_keeps_hashes_and_reads_its_file_again(tmp_path: Path) -> None:
    auth = TokenAuth.from_tokens({"secret": "alice"})
    assert auth.user_for("secret") == "alice"
    assert auth.user_for("secreT") is None and auth.user_for("") is None
    assert "secret" not in repr(vars(auth))
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# workers\nbob {hash_token('b1')} worker\n")
    tokens.chmod(0o600)  # whatever the umask: a file others may write is refused
    from_file = TokenAuth.from_file(tokens)
    assert from_file.user_for("b1") == "bob"
    assert from_file.roles_of("bob") == {"worker"}
    assert from_file.role_rule("worker")("bob", "getWork", ()) is True
    tokens.write_text(f"bob {hash_token('b2')} worker manager\n")  # rotated
    assert from_file.user_for("b1") is None and from_file.user_for("b2") == "bob"
    assert from_file.roles_of("bob") == {"worker", "manager"}
    tokens.write_text("bob not-a-hash\n")  # refused: the last good tokens stay in force
    assert from_file.user_for("b2") == "bob" and from_file.user_for("b1") is None
    with pytest.raises(InvalidArgument, match="unknown roles"):
        TokenAuth({hash_token("x"): "u"}, roles={"u": ["boss"]})


def test_a_new_token_never_reads_as_a_command_line_option(monkeypatch: pytest.MonkeyPatch) -> None:
    """`--token TOKEN` takes a token starting with `-` for an option and refuses it (CI met one)."""
    from jobcollection.remote import auth as auth_module

    drawn = iter(["-starts-with-a-dash", "--two", "fine-token"])
    monkeypatch.setattr(auth_module.secrets, "token_urlsafe", lambda n: next(drawn))
    assert auth_module.new_token() == "fine-token"


async def test_a_custom_auth_function_decides_the_user(make_jc: MakeJC) -> None:
    jc = await make_jc()
    seen: list[Any] = []

    async def auth(connection: Any) -> Any:
        seen.append(connection.client.host)
        return "carol" if connection.headers.get("x-user") == "carol" else None

    jc.allow(admin=["carol"])
    async with serving(create_app(jc, auth=auth)) as url, httpx.AsyncClient(base_url=url) as c:
        assert (await c.get("/info")).status_code == 401
        reply = await c.post(
            "/methods/jobSave",
            content=dumps({"params": [jc.create_job("t").doc.to_mongo()]}),
            headers={"x-user": "carol"},
        )
        assert reply.status_code == 200
    assert seen == ["127.0.0.1", "127.0.0.1"]


# --- hostile requests ---------------------------------------------------------------------------


async def test_hostile_bodies_are_refused_and_change_nothing(
    server: tuple[JobCollection, str], http: httpx.AsyncClient
) -> None:
    jc, _ = server
    saved = await jc.create_job("t", {"n": 1}).save()
    before = await snapshot(jc)
    cases: list[tuple[str, bytes, int, str]] = [
        ("/methods/jobSave", b"{not json", 400, "MalformedRequest"),
        ("/methods/jobSave", b"[1, 2]", 400, "MalformedRequest"),
        ("/methods/jobSave", b'{"params": {"a": 1}}', 400, "MalformedRequest"),
        ("/methods/jobSave", b"\xff\xfe", 400, "MalformedRequest"),
        ("/methods/jobSave", b"[" * 100_000 + b"]" * 100_000, 400, "MalformedRequest"),
        ("/methods/getJob", b'{"params": [{"$gt": ""}]}', 400, "InvalidArgumentType"),
        ("/methods/jobRemove", b'{"params": [{"$ne": null}]}', 400, "InvalidArgumentType"),
        ("/methods/jobCancel", b'{"params": [[{"$oid": "zz"}]]}', 400, "MalformedRequest"),
        ("/methods/getWork", b'{"params": [5]}', 400, "InvalidArgumentType"),
        ("/methods/jobPause", b'{"params": ["x", {"evil": 1}]}', 400, "InvalidArgument"),
        ("/methods/jobSave", b'{"params": [{"type": "t", "_private": {}}]}', 400, "Invalid"),
        ("/methods/jobSave", b'{"params": [{"type": "t", "data": {"$x": 1}}]}', 400, "Invalid"),
        ("/methods/noSuchMethod", b'{"params": []}', 404, "UnknownMethod"),
        ("/batch", b'{"calls": 5}', 400, "MalformedRequest"),
        ("/batch", b'{"calls": [{"method": "nope"}]}', 200, ""),
        ("/wait", b'{"types": [], "timeout": 0}', 400, "InvalidArgument"),
        ("/wait", b'{"types": ["t"], "timeout": "soon"}', 400, "InvalidArgument"),
    ]
    for path, body, status, kind in cases:
        reply = await http.post(path, content=body, headers=ADMIN)
        assert reply.status_code == status, (path, body[:40], reply.content[:200])
        answer = loads(reply.content)
        if status == 200:
            assert answer["results"][0]["status"] == 404
        else:
            assert answer["error"]["type"].startswith(kind), answer
    settings = {"params": [{**jc.create_job("t").doc.to_mongo(), "jobcollection": {"x": 1}}]}
    status, answer = await post(http, "/methods/jobSave", settings)
    assert (status, answer["error"]["argument"]) == (400, "doc.jobcollection")
    assert await snapshot(jc) == before
    assert (await jc.get_job(saved)) is not None


async def test_oversized_bodies_are_refused_before_they_are_read(make_jc: MakeJC) -> None:
    jc = await make_jc()
    jc.allow(admin=["tester"])
    app = create_app(jc, auth=TokenAuth.from_tokens(TOKENS), max_body_bytes=4096)
    big = dumps({"params": [jc.create_job("t", {"x": "y" * 5000}).doc.to_mongo()]})

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it streams
        for start in range(0, len(big), 1000):
            yield big[start : start + 1000]

    async with serving(app) as url, httpx.AsyncClient(base_url=url) as http:
        declared = await http.post("/methods/jobSave", content=big, headers=ADMIN)
        streamed = await http.post("/methods/jobSave", content=chunks(), headers=ADMIN)
    assert declared.status_code == 413 and streamed.status_code == 413
    assert loads(declared.content)["error"]["type"] == "PayloadTooLarge"
    assert await jc.collection.count_documents({}) == 0


# --- permissions --------------------------------------------------------------------------------


async def test_the_permission_matrix_holds_over_http(
    server: tuple[JobCollection, str], clock: ManualClock
) -> None:
    jc, url = server
    jc.deny(getWork=lambda user, method, params: "secret" in (params[0] if params else []))
    async with (
        RemoteJobCollection(url, token="worker-token", clock=clock) as worker,
        RemoteJobCollection(url, token="creator-token", clock=clock) as creator,
    ):
        with pytest.raises(PermissionDenied):  # a worker cannot create jobs
            await worker.create_job("t").save()
        job_id = await creator.create_job("t", {"n": 1}).save()
        secret_id = await creator.create_job("secret").save()
        before = await snapshot(jc)
        job = await worker.get_job(job_id)
        assert job is not None
        for action in (job.cancel, job.remove, job.pause, job.restart):
            with pytest.raises(PermissionDenied, match="not authorized"):
                await action()
        with pytest.raises(PermissionDenied):
            await worker.get_work("secret")  # refused for that job type
        with pytest.raises(PermissionDenied):
            await worker.service.wait(["secret"], 0)
        with pytest.raises(PermissionDenied):
            await creator.get_work("t")  # a creator is no worker
        assert await snapshot(jc) == before
        [claimed] = await worker.get_work(["t"])
        assert await claimed.done({"ok": True}) is True
    assert (await jc.get_job(job_id)).doc.status == "completed"  # type: ignore[union-attr]
    assert (await jc.get_job(secret_id)).doc.status == "ready"  # type: ignore[union-attr]


async def test_remote_calls_run_through_the_method_layer(
    server: tuple[JobCollection, str], clock: ManualClock
) -> None:
    jc, url = server
    events: list[tuple[str, Any]] = []
    jc.events.on("call", lambda e: events.append((e.method, e.user_id)))
    jc.events.on("error", lambda e: events.append((f"!{e.method}", e.user_id)))
    async with RemoteJobCollection(url, token="creator-token", clock=clock) as creator:
        await creator.create_job("t").save()
        with pytest.raises(PermissionDenied):
            await creator.get_work("t")
    assert events == [("jobSave", "creator-1"), ("!getWork", "creator-1")]


# --- the wire format ----------------------------------------------------------------------------


async def test_private_never_leaves_the_server(
    server: tuple[JobCollection, str], http: httpx.AsyncClient, clock: ManualClock
) -> None:
    jc, url = server
    job = jc.create_job("t").for_user("bob").retry(2, jitter=0.5)
    job.doc.private = {"mine": "server secret"}
    job_id = await job.save()
    [claimed] = await jc.get_work("t")
    assert await claimed.done() is True  # leaves follow-up bookkeeping behind, maybe
    raw = await jc.collection.find_one({"_id": job_id})
    assert raw is not None and raw["_private"]["mine"] == "server secret"
    for body in (
        {"params": [job_id, {"getLog": True, "getFailures": True}]},
        {"params": [[job_id]]},
    ):
        reply = await http.post("/methods/getJob", content=dumps(body), headers=ADMIN)
        assert b"_private" not in reply.content and b"server secret" not in reply.content
    async with RemoteJobCollection(url, token="admin-token", clock=clock) as remote:
        found = await remote.get_job(job_id)
    assert found is not None
    assert (found.doc.user_id, found.doc.retry_jitter) == ("bob", 0.5)
    assert found.doc.private is None


async def test_settings_travel_both_ways_and_bookkeeping_cannot_be_forged(
    server: tuple[JobCollection, str], http: httpx.AsyncClient, clock: ManualClock
) -> None:
    jc, url = server
    async with RemoteJobCollection(url, token="admin-token", clock=clock) as remote:
        job = (
            remote.create_job("t")
            .for_user(7)
            .retry(3, wait=1, backoff="linear", jitter=0.2, max_wait=10)
            .repeat(schedule="*/5 * * * *", timezone="Europe/Berlin", catch_up="none")
            .remove_after(60)
        )
        if not SHARDED:  # a sharded collection has no unique jobs
            job.unique("key")
        job_id = await job.save()
    stored = await jc.get_job(job_id)
    assert stored is not None
    for name in ("user_id", "retry_backoff", "retry_jitter", "retry_max_wait", "repeat_wait"):
        assert getattr(stored.doc, name) == getattr(job.doc, name), name
    assert stored.doc.remove_after == job.doc.remove_after
    forged = {
        **jc.create_job("t").doc.to_mongo(),
        "jobcollection": {"user": 1},
    }
    status, _ = await post(http, "/methods/jobSave", {"params": [forged]})
    assert status == 200
    through_call = {
        **jc.create_job("t").doc.to_mongo(),
        "_private": {"jobcollectionFollowUps": {"x": 1}, "jobcollectionUser": 2, "own": 3},
    }
    forged_id = await jc.call("jobSave", through_call, user_id="tester")
    raw = await jc.collection.find_one({"_id": forged_id})
    assert raw is not None
    assert raw["_private"] == {"own": 3, "jobcollectionUser": 2}


async def test_ids_and_dates_are_extended_json(
    server: tuple[JobCollection, str], http: httpx.AsyncClient
) -> None:
    jc, _ = server
    job_id = await jc.create_job("t").save()
    reply = await http.post(
        "/methods/getJob", content=json.dumps({"params": [{"$oid": str(job_id)}]}), headers=ADMIN
    )
    doc = json.loads(reply.content)["result"]
    assert doc["_id"] == {"$oid": str(job_id)}
    assert set(doc["created"]) == {"$date"}
    string_id = await jc.call("jobSave", jc.create_job("s").doc.to_mongo(), {"jobId": "mine"})
    assert string_id == "mine"
    status, answer = await post(http, "/methods/getJob", {"params": ["mine"]})
    assert (status, answer["result"]["_id"]) == (200, "mine")


# --- batches and long polls ---------------------------------------------------------------------


async def test_a_batch_answers_each_call_for_itself(
    server: tuple[JobCollection, str], http: httpx.AsyncClient
) -> None:
    jc, _ = server
    job_id = await jc.create_job("t").save()
    calls = [
        {"method": "getJob", "params": [job_id]},
        {"method": "jobPause", "params": [{"$ne": None}]},
        {"method": "jobPause", "params": [[job_id]]},
    ]
    status, answer = await post(http, "/batch", {"calls": calls})
    assert status == 200
    first, bad, paused = answer["results"]
    assert first["result"]["_id"] == job_id
    assert (bad["status"], bad["error"]["type"]) == (400, "InvalidArgumentType")
    assert paused == {"result": True}
    status, answer = await post(http, "/batch", {"calls": calls}, headers=WORKER)
    # the parameters are checked first (no rule sees a malformed call), then the rules: a
    # worker may not pause
    assert [r.get("status") for r in answer["results"]] == [None, 400, 403]


async def test_calls_made_together_go_in_one_request(
    server: tuple[JobCollection, str], clock: ManualClock
) -> None:
    jc, url = server
    async with RemoteJobCollection(url, token="admin-token", clock=clock) as remote:
        ids = await remote.save_jobs([remote.create_job("t", {"n": n}) for n in range(20)])
        jobs = await remote.get_work("t", max_jobs=20)
        before = remote.service.requests
        outcomes = await asyncio.gather(*(job.done({"n": job.data["n"]}) for job in jobs))
        assert remote.service.requests == before + 1
    assert outcomes == [True] * 20
    assert await jc.collection.count_documents({"_id": {"$in": ids}, "status": "completed"}) == 20


async def test_save_jobs_names_the_bad_job_remotely(
    server: tuple[JobCollection, str], clock: ManualClock
) -> None:
    jc, url = server
    async with RemoteJobCollection(url, token="admin-token", clock=clock) as remote:
        good = remote.create_job("t")
        bad = remote.create_job("t", {"x": "y" * (jc.limits.max_data_bytes + 1)})
        with pytest.raises(InvalidArgument) as refused:
            await remote.save_jobs([good, bad])
    assert refused.value.argument == "jobs[1].data"
    assert await jc.collection.count_documents({}) == 0


def watch_polls(jc: JobCollection) -> tuple[asyncio.Event, asyncio.Event]:
    """Events set when the server holds a long poll (it listens for saves) and lets go."""
    saves = jc.service.local_saves
    held, released = asyncio.Event(), asyncio.Event()
    subscribe = saves.subscribe

    def watched(types: Any, hint: Any) -> Any:
        unsubscribe = subscribe(types, hint)
        held.set()

        def let_go() -> None:
            unsubscribe()
            released.set()

        return let_go

    saves.subscribe = watched  # type: ignore[method-assign]
    return held, released


async def test_a_long_poll_answers_when_a_job_is_saved(
    server: tuple[JobCollection, str], clock: ManualClock
) -> None:
    jc, url = server
    held, _ = watch_polls(jc)
    async with RemoteJobCollection(url, token="worker-token", clock=clock) as worker:
        assert await worker.service.wait(["t"], 0) is False
        held.clear()
        other = asyncio.create_task(worker.service.wait(["other"], 30))
        async with asyncio.timeout(5):
            await held.wait()
        held.clear()
        waiting = asyncio.create_task(worker.service.wait(["t"], 30))
        async with asyncio.timeout(5):
            await held.wait()
            await jc.create_job("t").save()
            assert await waiting is True
        assert not other.done()
        other.cancel()


async def test_a_dropped_long_poll_holds_nothing(
    server: tuple[JobCollection, str], clock: ManualClock
) -> None:
    jc, url = server
    held, released = watch_polls(jc)
    async with RemoteJobCollection(url, token="worker-token", clock=clock) as worker:
        waiting = asyncio.create_task(worker.service.wait(["t"], 30))
        async with asyncio.timeout(5):
            await held.wait()
        waiting.cancel()
    async with asyncio.timeout(5):
        await released.wait()  # the server let go of it at once, not after 30 s
    assert not jc.service.local_saves.active


async def test_invalid_client_arguments_are_refused_locally() -> None:
    with pytest.raises(InvalidArgumentType, match="url"):
        RemoteJobCollection("", token="x")
    with pytest.raises(InvalidArgumentType, match="token"):
        RemoteJobCollection("http://x", token="")
    with pytest.raises(RuntimeError, match="not connected"):
        RemoteJobCollection("http://x", token="t").create_job("t")
    with pytest.raises(InvalidArgumentType, match="auth"):
        create_app(None, auth="nope")  # type: ignore[arg-type]
