"""The remote API against an attacker holding a valid token (issue #19): values the wire
format can carry that no method takes, parameters shaped to break permission rules, reports
on other workers' runs, long polls that would pile up tables and change streams, claim keys
that would evict other users', and bodies that are malformed, huge, slow or typed to slip
past a browser's same-origin checks. No request gets a 500, none changes what it must not,
and none logs an error but a broken rule's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from bson import ObjectId

from conftest import MakeJC
from jobcollection import METHODS, JobCollection
from jobcollection.mongo.wakeup import ChangeStreamSource, Ready
from jobcollection.remote import TokenAuth, create_app
from jobcollection.remote import app as app_module
from jobcollection.remote.codec import dumps, loads
from remote_helpers import serving

TOKENS = {
    "admin-token": "tester",
    "w1-token": "w1",
    "w2-token": "w2",
    "creator-token": "creator-1",
}
ADMIN = {"authorization": "Bearer admin-token"}
W1 = {"authorization": "Bearer w1-token"}
W2 = {"authorization": "Bearer w2-token"}
CREATOR = {"authorization": "Bearer creator-token"}


@contextlib.asynccontextmanager
async def served(jc: JobCollection, **options: Any) -> AsyncIterator[httpx.AsyncClient]:
    """jc's remote API ("tester" admin, w1 and w2 workers, creator-1 creator) and a client."""
    jc.allow(admin=["tester"], worker=["w1", "w2"], creator=["creator-1"])
    app = create_app(jc, auth=TokenAuth.from_tokens(TOKENS), **options)
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as http:
        http.app = app  # type: ignore[attr-defined]
        yield http


@pytest.fixture
async def jc(make_jc: MakeJC) -> JobCollection:
    return await make_jc()


@pytest.fixture
async def http(jc: JobCollection) -> AsyncIterator[httpx.AsyncClient]:
    async with served(jc) as client:
        yield client


@pytest.fixture
def errors(caplog: pytest.LogCaptureFixture) -> Iterator[Callable[[], list[str]]]:
    """The ERROR records logged so far (a 500 logs its traceback)."""
    caplog.set_level(logging.WARNING)
    yield lambda: [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


async def post(
    http: httpx.AsyncClient, path: str, body: Any, headers: dict[str, str] = ADMIN
) -> tuple[int, Any]:
    raw = body if isinstance(body, bytes) else dumps(body)
    reply = await http.post(path, content=raw, headers=headers)
    return reply.status_code, loads(reply.content)


async def call(
    http: httpx.AsyncClient, method: str, *params: Any, headers: dict[str, str] = ADMIN
) -> tuple[int, Any]:
    return await post(http, f"/methods/{method}", {"params": list(params)}, headers)


async def snapshot(jc: JobCollection) -> list[dict[str, Any]]:
    return [doc async for doc in jc.collection.find({}).sort("_id")]


async def until(condition: Callable[[], bool]) -> None:
    """Wait (a few seconds at most) for the server to get where the test needs it."""
    for _ in range(5_000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("the server did not get there")


# --- 9: Extended JSON values no parameter takes ----------------------------------------------

STRICT_ONLY = {
    "code": '{"$code": "x"}',
    "code-with-scope": '{"$code": "x", "$scope": {}}',
    "regex": '{"$regex": "a", "$options": ""}',
    "regular-expression": '{"$regularExpression": {"pattern": "a", "options": ""}}',
    "dbref": '{"$ref": "jobs", "$id": 1}',
    "db-pointer": '{"$dbPointer": {"$ref": "c", "$id": {"$oid": "000000000000000000000000"}}}',
    "min-key": '{"$minKey": 1}',
    "max-key": '{"$maxKey": 1}',
    "timestamp": '{"$timestamp": {"t": 1, "i": 1}}',
    "nan": '{"$numberDouble": "NaN"}',
    "infinity": '{"$numberDouble": "Infinity"}',
    "lone-surrogate": '"\\ud800"',
}
"""Extended JSON (and JSON) whose value no method takes: a str subclass (bson.Code) that passed
for an id or a type, query-only types, non-finite numbers, a string no database can store."""

SLOTS = 5
"""Parameter positions tried for each method (the longest method takes five)."""


def params_with(method: str, slot: int, value: str) -> str:
    """A call's body with `value` (raw JSON) at position `slot`, plausible values before it."""
    before = ['"000000000000000000000001"', '"000000000000000000000002"', '"x"', "1"][:slot]
    return '{"params": [' + ", ".join([*before, value]) + "]}"


@pytest.mark.parametrize("value", list(STRICT_ONLY.values()), ids=list(STRICT_ONLY))
async def test_extended_json_no_method_takes_is_a_400_in_every_parameter(
    jc: JobCollection, http: httpx.AsyncClient, value: str, errors: Callable[[], list[str]]
) -> None:
    await jc.create_job("x").save()
    before = await snapshot(jc)
    for method in METHODS:
        for slot in range(SLOTS):
            for body in (
                params_with(method, slot, value),
                params_with(method, slot, "[" + value + "]"),
            ):
                reply = await http.post(f"/methods/{method}", content=body, headers=ADMIN)
                assert reply.status_code == 400, (method, slot, reply.text)
                assert loads(reply.content)["error"]["type"] == "MalformedRequest"
        option = '{"params": ["x", {"maxJobs": ' + value + "}]}"
        reply = await http.post(f"/methods/{method}", content=option, headers=ADMIN)
        assert reply.status_code == 400, (method, reply.text)
    calls = '{"calls": [{"method": "getJob", "params": [' + value + "]}]}"
    assert (await http.post("/batch", content=calls, headers=ADMIN)).status_code == 400
    for wait in (
        '{"types": ' + value + ', "timeout": 0}',
        '{"types": ["x"], "timeout": ' + value + "}",
    ):
        assert (await http.post("/wait", content=wait, headers=ADMIN)).status_code == 400
    assert await snapshot(jc) == before
    assert errors() == []
    # `$numberLong` is an int and `$symbol` a string: plain values, not subclasses
    body = '{"params": [{"$symbol": "x"}, {"maxJobs": {"$numberLong": "2"}}]}'
    reply = await http.post("/methods/getWork", content=body, headers=ADMIN)
    assert reply.status_code == 200 and len(loads(reply.content)["result"]) == 1


# --- 10: rules see parameters of their method's shape; a rule that raises is a 403 -----------


README_RULES: dict[str, Any] = {
    "jobSave": lambda user_id, method, params: params[0]["type"] == "email",
    "admin": lambda user_id, method, params: user_id == "root",
}
"""The README's example rules (`jc.allow(...)` under "Permissions")."""


@pytest.mark.parametrize("given", [[], ["x"], [42], [[]], [None], [{}]], ids=repr)
async def test_the_readme_rules_never_see_a_malformed_call(
    jc: JobCollection, given: list[Any], errors: Callable[[], list[str]]
) -> None:
    jc.allow(**README_RULES)
    async with served(jc) as http:
        status, answer = await call(http, "jobSave", *given, headers=CREATOR)
        assert status == 400, answer
        email = jc.create_job("email").doc.to_mongo()
        status, answer = await call(http, "jobSave", email, headers=W1)
        assert status == 200
        status, answer = await call(http, "jobSave", {**email, "type": "sms"}, headers=W1)
        assert status == 403
    assert errors() == []


async def test_a_rule_that_raises_is_a_403_with_one_logged_error(
    jc: JobCollection, caplog: pytest.LogCaptureFixture
) -> None:
    """A group rule written for one method meets another's parameters (jobRerun's id)."""
    jc.allow(creator=lambda user_id, method, params: params[0]["type"] == "email")
    job_id = await jc.create_job("email").save()
    before = await snapshot(jc)
    async with served(jc) as http:
        caplog.clear()
        status, answer = await call(http, "jobRerun", job_id, headers=W1)
    assert (status, answer["error"]["type"]) == (403, "PermissionDenied")
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(logged) == 1 and logged[0].name == "jobcollection"
    assert await snapshot(jc) == before


# --- 12: only a run's claimer (or an admin) reports on it ------------------------------------


REPORTS: list[tuple[str, tuple[Any, ...]]] = [
    ("jobDone", ({"forged": True},)),
    ("jobFail", ({"forged": True},)),
    ("jobProgress", (1, 2)),
    ("jobLog", ("forged",)),
    ("jobHeartbeat", ()),
    ("jobRelease", ()),
]


@pytest.mark.parametrize(("method", "extra"), REPORTS, ids=[m for m, _ in REPORTS])
async def test_a_report_on_another_workers_run_is_a_403_and_changes_nothing(
    jc: JobCollection, http: httpx.AsyncClient, method: str, extra: tuple[Any, ...]
) -> None:
    for _ in range(3):
        await jc.create_job("w").save()
    status, answer = await call(http, "getWork", "w", {"maxJobs": 3}, headers=W1)
    mine, for_admin, for_server = answer["result"]
    status, seen = await call(http, "getJob", mine["_id"], headers=W2)
    assert seen["result"]["runId"] == mine["runId"]  # the runId is no secret
    before = await snapshot(jc)
    status, answer = await call(http, method, mine["_id"], mine["runId"], *extra, headers=W2)
    assert (status, answer["error"]["type"]) == (403, "PermissionDenied")
    assert await snapshot(jc) == before
    assert "_private" not in seen["result"] and "jobcollection" not in seen["result"]
    status, answer = await call(http, method, mine["_id"], mine["runId"], *extra, headers=W1)
    assert status == 200 and answer["result"] not in (False, [])
    # an admin may report on any run, and so may server code (no user)
    status, answer = await call(http, method, for_admin["_id"], for_admin["runId"], *extra)
    assert status == 200 and answer["result"] not in (False, [])
    applied = await jc.call(method, for_server["_id"], for_server["runId"], *extra)
    assert applied not in (False, [])


async def test_a_run_claimed_by_server_code_takes_no_users_report(
    jc: JobCollection, http: httpx.AsyncClient
) -> None:
    await jc.create_job("w").save()
    [job] = await jc.get_work("w")
    status, _ = await call(http, "jobDone", job.id, job.doc.run_id, headers=W1)
    assert status == 403
    assert await job.done() is True


async def test_a_claim_handed_over_again_by_its_key_is_reported_on_by_its_claimer(
    jc: JobCollection, http: httpx.AsyncClient
) -> None:
    await jc.create_job("w").save()
    options = {"claimKey": "k1", "maxJobs": 1}
    status, answer = await call(http, "getWork", "w", options, headers=W1)
    [claimed] = answer["result"]
    status, again = await call(http, "getWork", "w", options, headers=W1)  # a lost reply
    assert [d["runId"] for d in again["result"]] == [claimed["runId"]]
    status, other = await call(http, "getWork", "w", options, headers=W2)  # w2's own key
    assert other["result"] == []
    status, _ = await call(http, "jobDone", claimed["_id"], claimed["runId"], headers=W2)
    assert status == 403
    status, answer = await call(http, "jobDone", claimed["_id"], claimed["runId"], headers=W1)
    assert (status, answer["result"]) == (200, True)


# --- 11: claim keys are kept per user --------------------------------------------------------


async def test_claim_keys_are_kept_per_user_and_bounded(
    jc: JobCollection, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app_module, "MAX_CLAIM_KEYS_PER_USER", 3)
    monkeypatch.setattr(app_module, "MAX_CLAIM_KEY_USERS", 2)
    for _ in range(12):
        await jc.create_job("w").save()

    async def claim(headers: dict[str, str], key: str) -> Any:
        status, answer = await call(http, "getWork", "w", {"claimKey": key}, headers=headers)
        assert status == 200
        return [d["runId"] for d in answer["result"]]

    mine = await claim(W1, "mine")
    for n in range(6):  # another user's claims do not evict w1's key
        await claim(W2, f"theirs-{n}")
    assert await claim(W1, "mine") == mine
    assert await claim(W2, "theirs-5") != []  # w2's newest key is kept...
    first = await claim(W2, "theirs-0")  # ...its oldest is not: a fresh claim
    assert first != [] and first != mine
    await claim(ADMIN, "admins")  # a third user: w1, who claimed least recently, is dropped
    assert await claim(W1, "mine") not in ([], mine)


# --- 5, 6: long polls share one change stream and leave nothing behind ----------------------


class CountingSource:
    """A wake-up source (ReadySource) whose streams the test drives and counts."""

    def __init__(self) -> None:
        self.open = 0
        self.opened = 0
        self.signals: asyncio.Queue[Ready] = asyncio.Queue()

    async def ready_types(self) -> AsyncIterator[Ready]:
        self.open += 1
        self.opened += 1
        try:
            yield Ready(opened=True)
            while True:
                yield await self.signals.get()
        finally:
            self.open -= 1


@pytest.fixture
def source(jc: JobCollection, monkeypatch: pytest.MonkeyPatch) -> CountingSource:
    fake = CountingSource()
    monkeypatch.setattr(jc.service, "wakeup", lambda: fake)
    return fake


async def test_long_polls_share_one_stream_closed_with_the_last(
    jc: JobCollection, http: httpx.AsyncClient, source: CountingSource
) -> None:
    signals = http.app.state.remote_api.signals  # type: ignore[attr-defined]
    polls = [
        asyncio.create_task(
            post(http, "/wait", {"types": [f"t{n}-{i}" for i in range(50)], "timeout": 30})
        )
        for n in range(20)
    ]
    await until(lambda: signals.waiting == 20 and source.open == 1)
    assert source.opened == 1  # one stream for all; its opening woke nobody
    assert not any(p.done() for p in polls)
    await source.signals.put(Ready("t3-7"))
    assert await polls[3] == (200, {"signal": True})
    assert not any(p.done() for i, p in enumerate(polls) if i != 3)
    await source.signals.put(Ready(None))  # an update: any type's job may be ready
    assert [await p for p in polls] == [(200, {"signal": True})] * 20
    await until(lambda: source.open == 0)
    assert signals.waiting == signals.held == 0
    assert jc.service.saves().types == frozenset()
    # the next poll opens a stream again, and a reopening (after an error) wakes it
    poll = asyncio.create_task(post(http, "/wait", {"types": ["t"], "timeout": 30}))
    await until(lambda: signals.waiting == 1 and source.open == 1)
    await source.signals.put(Ready(opened=True))
    assert await poll == (200, {"signal": True})
    await until(lambda: source.open == 0)
    assert source.opened == 2


async def test_the_shared_stream_matches_every_type_and_says_which() -> None:
    """ChangeStreamSource.ready_types(): one pipeline for all types, the type sent back."""
    from mongomock.filtering import filter_applies

    from test_wakeup import FakeCollection, FakeStream

    collection = FakeCollection(FakeStream("t1"))
    signals = ChangeStreamSource(collection).ready_types()
    assert [await anext(signals), await anext(signals)] == [Ready(opened=True), Ready(None)]
    await signals.aclose()  # type: ignore[attr-defined]
    [[match, project]] = collection.pipelines
    assert project == {"$project": {"_id": 1, "operationType": 1, "fullDocument.type": 1}}
    for job_type in ("email", "any-type-at-all"):
        insert = {"operationType": "insert", "fullDocument": {"type": job_type, "status": "ready"}}
        assert filter_applies(match["$match"], insert)
    update = {
        "operationType": "update",
        "updateDescription": {"updatedFields": {"status": "ready"}},
    }
    assert filter_applies(match["$match"], update)
    paused = {"operationType": "insert", "fullDocument": {"type": "email", "status": "paused"}}
    assert not filter_applies(match["$match"], paused)


async def test_polls_of_new_types_leave_no_table_entries(
    jc: JobCollection, http: httpx.AsyncClient, source: CountingSource
) -> None:
    signals = http.app.state.remote_api.signals  # type: ignore[attr-defined]
    for n in range(10):
        types = [f"new-{n}-{i}" for i in range(1_000)]
        assert await post(http, "/wait", {"types": types, "timeout": 0}) == (
            200,
            {"signal": False},
        )
    assert signals.waiting == signals.held == 0
    assert jc.service.saves().types == frozenset()
    assert source.open == 0


async def test_what_a_poll_names_is_bounded(
    jc: JobCollection,
    http: httpx.AsyncClient,
    source: CountingSource,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    too_many = [f"t{i}" for i in range(1_001)]
    for types in (too_many, ["x" * 1_025], [], [""], "x" * 1_025):
        status, answer = await post(http, "/wait", {"types": types, "timeout": 0})
        assert status == 400, answer
    status, _ = await call(http, "getWork", too_many)
    assert status == 400
    monkeypatch.setattr(app_module, "MAX_WAITING_TYPES", 10)
    signals = http.app.state.remote_api.signals  # type: ignore[attr-defined]
    first = asyncio.create_task(post(http, "/wait", {"types": ["a", "b", "c", "d", "e", "f"]}))
    await until(lambda: signals.waiting == 1)
    status, answer = await post(http, "/wait", {"types": ["g", "h", "i", "j", "k"]})
    assert (status, answer["error"]["type"]) == (503, "Unavailable")
    await source.signals.put(Ready("a"))
    assert await first == (200, {"signal": True})


# --- beyond the list: bodies, numbers, nesting, unicode ----------------------------------------


HOSTILE_VALUES: list[Any] = [
    [],
    "x",
    "",
    42,
    -1,
    0,
    1.5,
    2**53,
    2**63,
    -(2**63) - 1,
    2**64,
    10**30,
    1e308,
    True,
    None,
    {},
    {"$ne": None},
    {"$where": "1"},
    {"a.b": 1},
    "a\u0000b",
    {"a\u0000": 1},
    "\u202etxt.exe",
    "x" * 100_000,
    [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],
    {"a": {"a": {"a": {"a": {"a": {"a": {"a": {"a": {"a": {"a": {"a": {}}}}}}}}}}}},
    ObjectId(),
    [ObjectId()] * 3,
]


async def test_no_parameter_value_is_a_500(
    jc: JobCollection, http: httpx.AsyncClient, errors: Callable[[], list[str]]
) -> None:
    """Every method, every position and option the methods have, every hostile value, as
    admin (past every rule): each call answers for itself, none with a 500."""
    job_id = await jc.create_job("x").save()
    deep: Any = {}
    for _ in range(150):
        deep = {"a": deep}
    options = ["maxJobs", "workTimeout", "getLog", "timeout", "time", "force", "retries"]
    options += ["until", "wait", "repeats", "level", "data", "repeatId", "delayDeps", "fatal"]
    options += ["cancelRepeats", "jobId", "jobIds", "antecedents", "dependents", "claimKey"]
    calls = []
    for method in METHODS:
        if method in ("shutdownJobServer", "stopJobs"):
            continue  # (they are tried below, alone)
        for value in [*HOSTILE_VALUES, deep]:
            for slot in range(SLOTS):
                params: list[Any] = [*[job_id, job_id, "x", 1][:slot], value]
                calls.append({"method": method, "params": params})
            for option in options:
                calls.append({"method": method, "params": [job_id, {option: value}]})
                calls.append({"method": method, "params": [job_id, job_id, {option: value}]})
    for start in range(0, len(calls), app_module.MAX_BATCH_CALLS):
        status, answer = await post(http, "/batch", {"calls": calls[start : start + 1_000]})
        assert status == 200
        failed = [
            (c["method"], c["params"])
            for c, r in zip(calls[start : start + 1_000], answer["results"], strict=True)
            if r.get("status") == 500
        ]
        assert failed == []
    for value in HOSTILE_VALUES:
        status, _ = await call(http, "shutdownJobServer", {"timeout": value})
        assert status in (200, 400)
    # a value the wire format carries but no parameter takes (a bson.Code passes for a
    # string id) refuses its whole batch
    code = b'{"calls": [{"method": "getJob", "params": [{"$code": "x"}]}]}'
    assert (await post(http, "/batch", code))[0] == 400
    assert errors() == []


MALFORMED = [
    b"NaN",
    b'{"params": [NaN]}',
    b'{"params": [Infinity]}',
    b'{"params": [-Infinity]}',
    b'{"params": [1e999]}',
    b'{"params": [' + b"9" * 5_000 + b"]}",
    b'{"params": ["\\udc00"]}',
    b'{"params": [{"\\ud800": 1}]}',
    b"[" * 100_000 + b"]" * 100_000,
    b'{"params": ' + b"[" * 5_000 + b"]" * 5_000 + b"}",
    b"\xff\xfe",
    b"",
    b"[]",
    b'"params"',
    b'{"params": {"$oid": "000000000000000000000000"}}',
    b'{"params": null}',
]
"""Bodies that are not JSON, or not Unicode, or not what a route takes."""


async def test_malformed_bodies_are_a_400(
    jc: JobCollection, http: httpx.AsyncClient, errors: Callable[[], list[str]]
) -> None:
    """Non-finite and overlong numbers, lone surrogates (which no database can store),
    nesting beyond the parser, bytes that are not UTF-8, bodies of the wrong shape."""
    before = await snapshot(jc)
    for body in MALFORMED:
        for path in ("/methods/getJob", "/methods/jobSave", "/batch", "/wait"):
            reply = await http.post(path, content=body, headers=ADMIN)
            assert reply.status_code == 400, (body[:30], path, reply.text)
    assert await snapshot(jc) == before
    assert errors() == []


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ],
)
async def test_bodies_a_web_page_may_send_anywhere_are_refused(
    jc: JobCollection, http: httpx.AsyncClient, content_type: str
) -> None:
    """A cross-site form or `fetch` with a text body needs no CORS preflight: with an `auth`
    that reads cookies it would act for the user. Such bodies get 415, and change nothing."""
    await jc.create_job("w").save()
    before = await snapshot(jc)
    body = dumps({"params": ["w"]})
    for path in ("/methods/getWork", "/batch", "/wait"):
        reply = await http.post(path, content=body, headers={**W1, "content-type": content_type})
        assert reply.status_code == 415
    assert await snapshot(jc) == before
    reply = await http.post(
        "/methods/getJob",
        content=b'{"params": [[]]}',
        headers={**W1, "content-type": "application/json; charset=utf-8"},
    )
    assert reply.status_code == 200


async def raw_request(url: str, head: bytes, body: bytes) -> bytes:
    """Send a request's head and part of its body, then read what the server answers."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head + body)
        await writer.drain()
        async with asyncio.timeout(10):
            return await reader.read(65_536)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def test_a_body_that_never_ends_is_a_408(jc: JobCollection) -> None:
    """Slowloris: a body announced and never sent (here on /wait and a method) holds the
    connection only for body_timeout."""
    jc.allow(worker=["w1"])
    app = create_app(jc, auth=TokenAuth.from_tokens(TOKENS), body_timeout=0.2)
    async with serving(app) as url:
        for path, chunked in (("/wait", False), ("/methods/getWork", True)):
            framing = b"transfer-encoding: chunked\r\n" if chunked else b"content-length: 1000\r\n"
            head = (
                f"POST {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer w1-token\r\n".encode()
                + framing
                + b"\r\n"
            )
            answer = await raw_request(url, head, b'5\r\n{"typ\r\n' if chunked else b'{"ty')
            assert answer.startswith(b"HTTP/1.1 408"), answer


def test_create_app_refuses_a_body_timeout_that_is_not_positive(jc: JobCollection) -> None:
    auth = TokenAuth.from_tokens(TOKENS)
    for bad in (0, -1, float("nan"), "1"):
        with pytest.raises(ValueError):
            create_app(jc, auth=auth, body_timeout=bad)  # type: ignore[arg-type]


# --- DDP: a refused report is Meteor's 403 ---------------------------------------------------


async def test_a_report_on_another_workers_run_over_ddp_is_meteors_403(
    make_jc: MakeJC, tmp_path: Path
) -> None:
    from test_ddp import ROOT, session
    from test_ddp import served as ddp_served

    jc = await make_jc(root=ROOT)
    jc.allow(worker=["creator-1"])  # a second worker (creator-token), besides worker-1
    await jc.create_job("w").save()
    async with ddp_served(jc) as port, session(port) as w1, session(port) as w2:
        assert "result" in await w1.call("login", {"resume": "worker-token"})
        assert "result" in await w2.call("login", {"resume": "creator-token"})
        [claimed] = (await w1.call(f"{ROOT}_getWork", "w"))["result"]
        refused = await w2.call(f"{ROOT}_jobDone", claimed["_id"], claimed["runId"], {})
        assert refused["error"]["error"] == 403
        done = await w1.call(f"{ROOT}_jobDone", claimed["_id"], claimed["runId"], {})
        assert done["result"] is True
