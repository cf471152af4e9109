"""Shared fixtures: a fresh collection per test on the in-memory backend, or on a real MongoDB
(a throwaway database per test, dropped after) when MONGODB_URI is set.

With JOBCOLLECTION_STRICT=1 (or =sharded) the in-memory backend is the strict proxy of
tests/strict.py, and every test fails whose library queries no index serves or that broke a
strict rule (see `strict_backend_findings`).

Fixtures are factories with keyword arguments: `make_jc(clock=..., started=...)`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from helpers import Yielding
from jobcollection import JobCollection, ManualClock
from strict import REGISTRY, memory_database, strict_mode
from v1schema import v1_problems

MONGODB_URI = os.environ.get("MONGODB_URI")


def _answers_as_a_mongos(uri: str) -> bool:
    from pymongo import MongoClient

    with MongoClient(uri, serverSelectionTimeoutMS=10_000) as client:
        return client.admin.command("hello").get("msg") == "isdbgrid"


SHARDED = _answers_as_a_mongos(MONGODB_URI) if MONGODB_URI else strict_mode() == "sharded"
"""The backend answers as a mongos: the strict proxy's sharded mode, a real mongos at
MONGODB_URI, or the wire stand-in started with --sharded (tests/wire_tier.py)."""
REPORTS_TIME = MONGODB_URI is not None or SHARDED
"""The backend reports its clock (`hello.localTime`); the plain in-memory one does not."""
START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def pytest_configure(config: pytest.Config) -> None:
    # Files the tests write (tokens files above all) are writable by their owner alone
    # whatever umask CI runs with: TokenAuth refuses a group- or world-writable file.
    os.umask(0o022)
    config.addinivalue_line(
        "markers",
        "unindexed_queries: the test sends library queries no index serves on purpose "
        "(the strict backend does not fail it for them)",
    )
    config.addinivalue_line(
        "markers",
        "both_sides: the module's tests of `jc` run on a local JobCollection and through its "
        "remote API",
    )
    config.addinivalue_line(
        "markers",
        "local_only(reason): a test of a `both_sides` module that tests the local service's "
        "own workings (its store, its in-process signals), so runs on the local side only",
    )
    config.addinivalue_line(
        "markers",
        "v1_invalid(reason): the test stores job documents job-collection v1.x would refuse "
        "on purpose (they are not checked against v1.x's schema at teardown)",
    )


@pytest.fixture(autouse=True)
def strict_backend_findings(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test (at teardown) whose library queries no index serves, or that broke a rule
    of the strict backend (tests/strict.py); nothing is recorded on the plain backend."""
    REGISTRY.take()
    yield
    findings = REGISTRY.take()
    if request.node.get_closest_marker("unindexed_queries"):
        findings = [f for f in findings if f.kind != "unindexed"]
    if findings:
        pytest.fail(REGISTRY.report(findings), pytrace=False)


@pytest.fixture
def clock() -> ManualClock:
    """A clock that only moves when a test advances it."""
    return ManualClock(START)


@pytest.fixture
async def database(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """A fresh database: real (dropped after the test) with MONGODB_URI, else in memory.
    Every job document left in it must be valid for job-collection v1.x (checked once the
    test is over, unless it is marked v1_invalid)."""
    if MONGODB_URI:
        from pymongo import AsyncMongoClient

        client: Any = AsyncMongoClient(MONGODB_URI, tz_aware=False)
        name = f"jobcollection_test_{uuid.uuid4().hex[:12]}"
        try:
            yield client[name]
            await check_v1_schema(request, client[name])
        finally:
            await client.drop_database(name)
            await client.close()
    else:
        db = memory_database("jobcollection_test")
        yield db
        await check_v1_schema(request, db)


async def check_v1_schema(request: pytest.FixtureRequest, db: Any) -> None:
    """Fail the test if a job document it left stored would fail v1.x's `validJobDoc`."""
    if request.node.get_closest_marker("v1_invalid"):
        return
    problems = []
    for name in await db.list_collection_names():
        if not name.endswith(".jobs"):
            continue
        async for doc in db[name].find({}):
            problems.extend(f"{name} {doc.get('_id')}: {p}" for p in v1_problems(doc))
    if problems:
        pytest.fail(
            "stored documents job-collection v1.x would refuse:\n" + "\n".join(problems[:20]),
            pytrace=False,
        )


MakeJC = Callable[..., Awaitable[JobCollection]]


@pytest.fixture
async def make_jc(database: Any, clock: ManualClock) -> AsyncIterator[MakeJC]:
    """Build JobCollections on the test database; their background tasks end with the test."""
    made: list[JobCollection] = []

    async def make(
        *, root: str = "queue", clock: Any = clock, started: bool = True
    ) -> JobCollection:
        jc = JobCollection.from_database(database, root, clock=clock)
        if started:
            await jc.start_job_server()
        made.append(jc)
        return jc

    yield make
    for jc in made:
        await jc.close()


@pytest.fixture
def side(request: pytest.FixtureRequest) -> str:
    """Where the `jc` under test runs its Python API: "local", or "remote" (through its remote
    API over loopback) for the tests of modules marked `both_sides`."""
    return getattr(request, "param", "local")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marked = metafunc.definition.get_closest_marker
    if "jc" in metafunc.fixturenames and marked("both_sides") and not marked("local_only"):
        metafunc.parametrize("side", ["local", "remote"], indirect=True)


@pytest.fixture
async def jc(make_jc: MakeJC, side: str, clock: ManualClock) -> AsyncIterator[Any]:
    """A started JobCollection on the manual clock; on the remote side, one whose jobs,
    queues and bulk actions go through its remote API (remote_helpers.ThroughRemote)."""
    local = await make_jc()
    if side == "local":
        yield local
        return
    from jobcollection.remote import RemoteJobCollection
    from remote_helpers import ThroughRemote, serve_jc

    async with (
        serve_jc(local) as url,
        RemoteJobCollection(url, token="admin-token", clock=clock) as remote,
    ):
        yield ThroughRemote(local, remote)


WrapJC = Callable[[Callable[[Any], Any]], Awaitable[JobCollection]]


@pytest.fixture
async def make_wrapped_jc(database: Any, clock: ManualClock) -> AsyncIterator[WrapJC]:
    """Started JobCollections over a wrapper of the test collection (`wrap(collection)`: a
    fault injector, an interleaving or refusing proxy; `jc.collection` is the wrapper),
    closed after the test."""
    made: list[JobCollection] = []

    async def make(wrap: Callable[[Any], Any]) -> JobCollection:
        jc = JobCollection(wrap(database["queue.jobs"]), clock=clock)
        await jc.start_job_server()
        made.append(jc)
        return jc

    yield make
    for jc in made:
        await jc.close()


@pytest.fixture
def make_racy_jc(make_wrapped_jc: WrapJC) -> MakeJC:
    """JobCollections on one shared collection whose database calls interleave."""

    async def make() -> JobCollection:
        return await make_wrapped_jc(Yielding)

    return make


@pytest.fixture
async def client() -> AsyncIterator[Callable[..., httpx.AsyncClient]]:
    """Clients of an ASGI app (from 127.0.0.1 unless `address` says otherwise, for
    http://localhost), closed after the test."""
    made: list[httpx.AsyncClient] = []

    def make(app: Any, address: str = "127.0.0.1", **options: Any) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(address, 50_000))
        made.append(httpx.AsyncClient(transport=transport, base_url="http://localhost", **options))
        return made[-1]

    yield make
    for http in made:
        await http.aclose()
