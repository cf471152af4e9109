"""Finding and counting jobs through the remote API (issue #20): jobFind and jobStats over
HTTP, for the roles that may call them, against an attacker holding a valid token (filters
shaped as operators, `$` data paths, huge limits, forged cursors: a 400 naming the field,
never a 500, nothing changed), what a page carries (never `_private`), and a client that
connects to a URL where something else answers.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from bson import ObjectId
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conftest import START, MakeJC
from jobcollection import DatabaseError, InvalidArgument, JobCollection, ManualClock
from jobcollection.remote import RemoteJobCollection, TokenAuth, create_app
from jobcollection.remote.codec import dumps, loads
from remote_helpers import serving

TOKENS = {
    "admin-token": "tester",
    "manager-token": "boss",
    "worker-token": "w1",
    "creator-token": "creator-1",
}
ADMIN = {"authorization": "Bearer admin-token"}
MANAGER = {"authorization": "Bearer manager-token"}
WORKER = {"authorization": "Bearer worker-token"}
CREATOR = {"authorization": "Bearer creator-token"}


@contextlib.asynccontextmanager
async def served(jc: JobCollection) -> AsyncIterator[tuple[str, httpx.AsyncClient]]:
    """jc's remote API (an admin, a manager, a worker and a creator) and a client of it."""
    jc.allow(admin=["tester"], manager=["boss"], worker=["w1"], creator=["creator-1"])
    app = create_app(jc, auth=TokenAuth.from_tokens(TOKENS))
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as http:
        yield url, http


@pytest.fixture
async def jc(make_jc: MakeJC) -> JobCollection:
    return await make_jc()


@pytest.fixture
async def server(jc: JobCollection) -> AsyncIterator[tuple[str, httpx.AsyncClient]]:
    async with served(jc) as both:
        yield both


@pytest.fixture
def http(server: tuple[str, httpx.AsyncClient]) -> httpx.AsyncClient:
    return server[1]


@pytest.fixture
def errors(caplog: pytest.LogCaptureFixture) -> Iterator[Callable[[], list[str]]]:
    """The ERROR records logged so far (a 500 logs its traceback)."""
    caplog.set_level(logging.WARNING)
    yield lambda: [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


async def call(
    http: httpx.AsyncClient, method: str, *params: Any, headers: dict[str, str] = ADMIN
) -> tuple[int, Any]:
    reply = await http.post(
        f"/methods/{method}", content=dumps({"params": list(params)}), headers=headers
    )
    return reply.status_code, loads(reply.content)


async def snapshot(jc: JobCollection) -> list[dict[str, Any]]:
    return [doc async for doc in jc.collection.find({}).sort("_id")]


# --- what a page and the counts carry --------------------------------------------------------


async def test_a_page_carries_the_jobs_and_never_their_bookkeeping(
    jc: JobCollection, http: httpx.AsyncClient
) -> None:
    first = jc.create_job("mail", {"to": "a"}).for_user("u").remove_after(60)
    await first.save()
    then = await jc.create_job("mail", {"to": "b"}).depends([first]).save()
    [claimed] = await jc.get_work("mail")  # a claim: its claimer is kept in _private
    stored = await jc.collection.find_one({"_id": first.id})
    assert stored is not None and stored["_private"]  # there is bookkeeping to keep back
    reply = await http.post(
        "/methods/jobFind",
        content=dumps({"params": [{"type": "mail"}, {"limit": 1}]}),
        headers=ADMIN,
    )
    assert reply.status_code == 200
    for word in (b"_private", b"laimer", b"ependents", b"ollowUps"):
        assert word not in reply.content
    page = loads(reply.content)["result"]
    assert [doc["_id"] for doc in page["jobs"]] == [then] and isinstance(page["next"], str)
    status, rest = await call(http, "jobFind", {"type": "mail"}, {"after": page["next"]})
    assert status == 200 and rest["result"]["next"] is None
    [doc] = rest["result"]["jobs"]
    assert (doc["_id"], doc["status"], doc["data"]) == (claimed.id, "running", {"to": "a"})
    assert doc["jobcollection"]["user"] == "u"  # its settings travel, as getJob's do

    status, counted = await call(http, "jobStats")
    assert status == 200
    assert counted["result"] == {
        "counts": [
            {"type": "mail", "status": "waiting", "count": 1},
            {"type": "mail", "status": "running", "count": 1},
        ],
        "oldestReady": [],
        "at": START,
    }


async def test_types_that_read_as_extended_json_are_counted_and_found(
    jc: JobCollection, server: tuple[str, httpx.AsyncClient], clock: ManualClock
) -> None:
    """Counts travel as a list, not keyed by type: a type may be `$oid` or `$date`."""
    for job_type in ("$oid", "$date", "a.b"):
        await jc.create_job(job_type).save()
    async with RemoteJobCollection(server[0], token="admin-token", clock=clock) as remote:
        stats = await remote.stats()
        assert stats == await jc.stats()
        assert set(stats.counts) == {("$oid", "ready"), ("$date", "ready"), ("a.b", "ready")}
        page = await remote.find_jobs(type=["$oid", "a.b"])
        assert sorted(job.doc.type for job in page.jobs) == ["$oid", "a.b"]


async def test_the_remote_collection_pages_as_the_local_one(
    jc: JobCollection, server: tuple[str, httpx.AsyncClient], clock: ManualClock
) -> None:
    ids = [await jc.create_job("t", {"n": n}).save() for n in range(5)]
    strings = [
        await jc.call("jobSave", jc.create_job("t").doc.to_mongo(), {"jobId": f"meteor{n}"})
        for n in range(2)
    ]
    async with RemoteJobCollection(server[0], token="admin-token", clock=clock) as remote:
        for query in ({}, {"status": "ready", "data": {"n": 3}}, {"type": "t"}):
            after: str | None = None
            while True:
                here = await jc.find_jobs(**query, limit=2, after=after)
                there = await remote.find_jobs(**query, limit=2, after=after)
                assert [j.id for j in there.jobs] == [j.id for j in here.jobs]
                assert [j.doc for j in there.jobs] == [j.doc for j in here.jobs]
                assert there.next == here.next
                if here.next is None:
                    break
                after = here.next
        every = await remote.find_jobs(limit=1_000)
        assert [j.id for j in every.jobs] == [*ids[::-1], *strings[::-1]]


# --- who may find and count ------------------------------------------------------------------


async def test_managers_and_admins_may_find_and_count_workers_and_creators_may_not(
    jc: JobCollection, http: httpx.AsyncClient
) -> None:
    await jc.create_job("t").save()
    for headers, allowed in ((ADMIN, True), (MANAGER, True), (WORKER, False), (CREATOR, False)):
        for method in ("jobFind", "jobStats"):
            status, answer = await call(http, method, headers=headers)
            if allowed:
                assert status == 200, answer
            else:
                assert status == 403
                assert answer["error"] == {
                    "type": "PermissionDenied",
                    "message": f"Method not authorized: {method}",
                }


async def test_a_worker_token_is_refused_by_the_client_as_permission_denied(
    server: tuple[str, httpx.AsyncClient], clock: ManualClock
) -> None:
    from jobcollection import PermissionDenied

    async with RemoteJobCollection(server[0], token="worker-token", clock=clock) as remote:
        with pytest.raises(PermissionDenied, match="jobFind"):
            await remote.find_jobs()
        with pytest.raises(PermissionDenied, match="jobStats"):
            await remote.stats()


# --- hostile input ---------------------------------------------------------------------------

OPERATOR = {"$ne": None}
BAD_FILTERS: list[tuple[Any, str]] = [
    ("mail", "filter"),
    ([{"type": "t"}], "filter"),
    (OPERATOR, "filter"),
    ({"$where": "sleep(1000) || true"}, "filter"),
    ({"type": "t", "createdAfter": START}, "filter"),
    ({"_id": {"$gt": ""}}, "filter"),
    ({"type": OPERATOR}, "type"),
    ({"type": ""}, "type[0]"),
    ({"type": ["t", 5]}, "type[1]"),
    ({"type": ["t"] * 1_001}, "type"),
    ({"type": "x" * 1_025}, "type[0]"),
    ({"status": "nope"}, "status[0]"),
    ({"status": []}, "status"),
    ({"status": OPERATOR}, "status"),
    ({"status": ["ready"] * 8}, "status"),
    ({"status": 1}, "status"),
    ({"userId": OPERATOR}, "userId"),
    ({"userId": ""}, "userId"),
    ({"userId": 2**64}, "userId"),
    ({"userId": True}, "userId"),
    ({"createdBefore": "2026-01-01T00:00:00Z"}, "createdBefore"),
    ({"createdBefore": 0}, "createdBefore"),
    ({"createdBefore": OPERATOR}, "createdBefore"),
    ({"data": "x"}, "data"),
    ({"data": [["a", 1]]}, "data"),
    ({"data": {"$where": "1"}}, "data['$where']"),
    ({"data": {"a.$gt": 1}}, "data['a.$gt']"),
    ({"data": {"a..b": 1}}, "data['a..b']"),
    ({"data": {"": 1}}, "data['']"),
    ({"data": {"a\x00b": 1}}, "data['a\\x00b']"),
    ({"data": {"x": OPERATOR}}, "data['x']"),
    ({"data": {"x": {"$where": "1"}}}, "data['x']"),
    ({"data": {"x": [{"$where": "1"}]}}, "data['x']"),
    ({"data": {"x": 2**64}}, "data['x']"),
    ({"data": {f"k{i}": 1 for i in range(101)}}, "data"),
]
"""Filters no find takes, and the field each 400 names."""
BAD_OPTIONS: list[tuple[Any, str]] = [
    ("x", "options"),
    ({"skip": 10}, "options"),
    ({"limit": 1_001}, "limit"),
    ({"limit": 10**6}, "limit"),
    ({"limit": 2**64}, "limit"),
    ({"limit": 10**300}, "limit"),
    ({"limit": 0}, "limit"),
    ({"limit": -1}, "limit"),
    ({"limit": 1.5}, "limit"),
    ({"limit": "10"}, "limit"),
    ({"limit": True}, "limit"),
    ({"limit": None}, "limit"),
    ({"limit": OPERATOR}, "limit"),
    ({"after": ""}, "after"),
    ({"after": "x"}, "after"),
    ({"after": "s"}, "after"),
    ({"after": "o"}, "after"),
    ({"after": "o" + "z" * 24}, "after"),
    ({"after": "o" + "0" * 23}, "after"),
    ({"after": "o" + "0" * 25}, "after"),
    ({"after": 5}, "after"),
    ({"after": ObjectId()}, "after"),
    ({"after": ["o" + "0" * 24]}, "after"),
    ({"after": OPERATOR}, "after"),
]
"""Options no find takes: huge and odd limits, forged cursors."""


async def test_hostile_finds_are_a_400_naming_the_field(
    jc: JobCollection, http: httpx.AsyncClient, errors: Callable[[], list[str]]
) -> None:
    await jc.create_job("t", {"x": 1}).save()
    before = await snapshot(jc)
    cases = [([where], name) for where, name in BAD_FILTERS]
    cases += [([{}, options], name) for options, name in BAD_OPTIONS]
    cases += [([{}, {}, {}], "jobFind")]
    answers = []
    for params, _ in cases:
        answers.append(await call(http, "jobFind", *params))
        answers.append(await call(http, "jobFind", *params, headers=MANAGER))
    named = [
        (params, status, answer["error"].get("argument"))
        for (params, _), (status, answer) in zip(
            [case for case in cases for _ in (ADMIN, MANAGER)], answers, strict=True
        )
    ]
    expected = [(params, 400, name) for params, name in cases for _ in (ADMIN, MANAGER)]
    assert named == expected
    assert await snapshot(jc) == before
    assert errors() == []


async def test_hostile_stats_calls_are_a_400(
    http: httpx.AsyncClient, errors: Callable[[], list[str]]
) -> None:
    hostile: list[list[Any]] = [["x"], [{"types": ["t"]}], [OPERATOR], [{}, {}]]
    for params in hostile:
        status, answer = await call(http, "jobStats", *params)
        assert status == 400, answer
    assert errors() == []


async def test_a_batch_of_hostile_finds_answers_each_and_never_500(
    jc: JobCollection, http: httpx.AsyncClient, errors: Callable[[], list[str]]
) -> None:
    deep: Any = {}
    for _ in range(150):
        deep = {"a": deep}
    values: list[Any] = [
        None,
        True,
        2**64,
        -(2**63),
        1e308,
        "",
        "x" * 100_000,
        [],
        {},
        deep,
        [deep],
        OPERATOR,
        {"$oid": "0" * 24},
        {"$date": 0},
        {"$numberLong": "9" * 30},
        {"$binary": {"base64": "", "subType": "00"}},
        ObjectId(),
        datetime(2026, 1, 1, tzinfo=UTC),
    ]
    keys = ["type", "status", "userId", "createdBefore", "data"]
    calls: list[dict[str, Any]] = []
    for value in values:
        calls.append({"method": "jobFind", "params": [value]})
        calls.append({"method": "jobFind", "params": [{}, value]})
        calls.append({"method": "jobStats", "params": [value]})
        for key in keys:
            calls.append({"method": "jobFind", "params": [{key: value}]})
            calls.append({"method": "jobFind", "params": [{"data": {key: value}}]})
        calls += [
            {"method": "jobFind", "params": [{}, {option: value}]} for option in ("limit", "after")
        ]
    reply = await http.post("/batch", content=dumps({"calls": calls}), headers=ADMIN)
    assert reply.status_code == 200
    statuses = [answer.get("status", 200) for answer in loads(reply.content)["results"]]
    assert 500 not in statuses and set(statuses) <= {200, 400}
    assert errors() == []


async def test_a_string_cursor_pages_from_any_string(
    jc: JobCollection, http: httpx.AsyncClient
) -> None:
    """A cursor `s<id>` names a string id, which need not exist: the page holds the
    string-keyed jobs below it, whatever the string (operators are only text there)."""
    for n in range(3):
        await jc.call("jobSave", jc.create_job("t").doc.to_mongo(), {"jobId": f"m{n}"})
    cases: list[tuple[str, list[str]]] = [
        ("sm2", ["m1", "m0"]),
        ("s{'$gt': ''}", ["m2", "m1", "m0"]),
        ("s$where", []),
    ]
    for cursor, expected in cases:
        status, answer = await call(http, "jobFind", {}, {"after": cursor})
        assert status == 200
        assert [doc["_id"] for doc in answer["result"]["jobs"]] == expected


async def test_the_client_checks_a_find_before_sending_it(
    server: tuple[str, httpx.AsyncClient], clock: ManualClock
) -> None:
    async with RemoteJobCollection(server[0], token="admin-token", clock=clock) as remote:
        sent = remote.service.requests
        for kwargs, name in (
            ({"limit": 1_001}, "limit"),
            ({"after": "nope"}, "after"),
            ({"data": {"$where": "1"}}, "data['$where']"),
            ({"status": "nope"}, "status[0]"),
            ({"created_before": datetime(2026, 1, 1)}, "created_before"),
        ):
            with pytest.raises(InvalidArgument) as raised:
                await remote.find_jobs(**kwargs)
            assert raised.value.argument == name
        assert remote.service.requests == sent
        # what the client cannot know (the server's bound on types) comes back named
        with pytest.raises(InvalidArgument) as raised:
            await remote.find_jobs(type=[f"t{i}" for i in range(1_001)])
        assert raised.value.argument == "type"


async def test_created_before_travels_as_a_date(
    jc: JobCollection, server: tuple[str, httpx.AsyncClient], clock: ManualClock
) -> None:
    old = await jc.create_job("t").save()
    clock.advance(60)
    await jc.create_job("t").save()
    async with RemoteJobCollection(server[0], token="manager-token", clock=clock) as remote:
        page = await remote.find_jobs(created_before=START + timedelta(seconds=30))
        assert [job.id for job in page.jobs] == [old]


# --- connecting to something else ------------------------------------------------------------


def not_an_api(status: int, body: bytes, media_type: str) -> Starlette:
    async def info(request: Request) -> Response:
        return Response(body, status_code=status, media_type=media_type)

    return Starlette(routes=[Route("/info", info)])


@pytest.mark.parametrize(
    ("status", "body", "media_type", "says"),
    [
        (200, b"<html>hello</html>", "text/html", "not JSON"),
        (200, b"{}", "application/json", "without the remote API's time and limits"),
        (200, b'{"time": 5, "limits": {}, "maxBatchCalls": 1}', "application/json", "time"),
        (
            200,
            b'{"time": {"$date": 0}, "limits": {"nope": 1}, "maxBatchCalls": 1}',
            "application/json",
            "limits",
        ),
        (200, b"[1, 2]", "application/json", "without the remote API's time and limits"),
        (404, b'{"detail": "Not Found"}', "application/json", "answered HTTP 404"),
        (502, b"Bad Gateway", "text/plain", "answered HTTP 502 with a body that is not JSON"),
    ],
)
async def test_a_url_that_is_not_the_api_is_a_database_error(
    status: int, body: bytes, media_type: str, says: str
) -> None:
    async with serving(not_an_api(status, body, media_type)) as url:
        remote = RemoteJobCollection(url, token="t")
        with pytest.raises(DatabaseError, match="not a jobcollection remote API") as raised:
            await remote.connect()
        assert says in str(raised.value)
        assert f"{url}/info" in str(raised.value)
        with pytest.raises(RuntimeError, match="not connected"):
            remote.service  # noqa: B018 (nothing was kept of the failed connection)
