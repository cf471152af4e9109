"""Transactional saves and reports (the outbox pattern): `save(session=)`, `save_jobs(session=)`,
`done(session=)` and `fail(session=)` inside the caller's transaction; queues woken and
follow-ups finished after the commit, never after an abort (docs/how-to/transactions.md).

In memory the strict backend's StrictSession stands in for a pymongo session (tests/strict.py,
rule 10: commands refused in a transaction, an error aborts it, an abort undoes its writes,
no isolation); with MONGODB_URI on a replica set or a mongos the same tests run on real
transactions. The plain in-memory backend has no sessions: skipped there.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import pytest

from conftest import MONGODB_URI, START, MakeJC
from jobcollection import (
    DatabaseError,
    InvalidArgument,
    InvalidArgumentType,
    JobCollection,
    ManualClock,
    Status,
    chord,
)
from strict import StrictSession, strict_mode

pytestmark = pytest.mark.skipif(
    not MONGODB_URI and strict_mode() is None,
    reason="the plain in-memory backend has no sessions (strict backend or MONGODB_URI)",
)


class Boom(Exception):
    """The business logic failing inside the transaction."""


NewSession = Callable[[], Any]


@pytest.fixture
async def new_session(database: Any) -> AsyncIterator[NewSession]:
    """Sessions of the test database's client (ended after the test): StrictSessions in
    memory; real ones with MONGODB_URI, which must name a replica set or a mongos."""
    if MONGODB_URI:
        hello = await database.client.admin.command("hello")
        if "setName" not in hello and hello.get("msg") != "isdbgrid":
            pytest.skip("transactions need a replica set or a mongos, not a standalone")
    sessions: list[Any] = []

    def make() -> Any:
        session = database.client.start_session() if MONGODB_URI else StrictSession(database.client)
        sessions.append(session)
        return session

    yield make
    for session in sessions:
        await session.end_session()


@pytest.fixture
async def jc(make_jc: MakeJC, database: Any) -> JobCollection:
    """A started collection, and the business collection the tests write beside it (created
    first: before MongoDB 4.4 a transaction cannot create one)."""
    await database["orders"].insert_one({"_id": "setup"})
    return await make_jc()


def woken_by(jc: JobCollection, *types: str) -> list[datetime]:
    """The save hints this process's queues of these types are given (as a queue listens)."""
    woken: list[datetime] = []
    saves = jc.service.saves()
    assert saves is not None
    saves.subscribe(list(types), woken.append)
    return woken


def recorded(session: Any) -> list[tuple[str, bool]]:
    """The commands a StrictSession saw (a real session keeps no such list)."""
    return list(getattr(session, "commands", []))


async def stored(jc: JobCollection, job_id: Any) -> dict[str, Any] | None:
    found: dict[str, Any] | None = await jc.collection.find_one({"_id": job_id})
    return found


# --- saves ------------------------------------------------------------------------------------


async def test_a_committed_save_stores_the_job_and_wakes_the_queues_after_the_commit(
    jc: JobCollection, database: Any, new_session: NewSession
) -> None:
    woken = woken_by(jc, "ship")
    session = new_session()
    async with jc.transaction(session) as s:
        assert s is session
        await database["orders"].insert_one({"_id": "o1"}, session=s)
        before = jc.commands
        job = jc.create_job("ship", {"order": "o1"})
        job_id = await job.save(session=s)
        sent = jc.commands - before
        assert woken == []  # not before the commit
    assert len(woken) == 1
    doc = await stored(jc, job_id)
    assert doc is not None and doc["status"] == Status.READY
    assert await database["orders"].find_one({"_id": "o1"}) is not None
    if not MONGODB_URI:  # every command of the save went in the session, in its transaction
        saving = recorded(session)[1:]  # after the caller's own insert
        assert len(saving) == sent and all(in_txn for _, in_txn in saving)


async def test_a_queue_that_does_not_poll_runs_a_job_saved_in_a_transaction_after_the_commit(
    jc: JobCollection, new_session: NewSession
) -> None:
    ran = asyncio.Event()
    seen: list[dict[str, Any] | None] = []

    async def worker(job: Any) -> None:
        seen.append(await stored(jc, job.id))
        ran.set()

    queue = jc.process_jobs("ship", worker, poll_interval=None)
    try:
        async with jc.transaction(new_session()) as s:
            await jc.create_job("ship").save(session=s)
            await asyncio.sleep(0)  # a woken queue would claim now, and find nothing
            assert not ran.is_set()
        async with asyncio.timeout(10):
            await ran.wait()  # woken by the commit alone
    finally:
        await queue.shutdown()
    assert seen[0] is not None and seen[0]["status"] == Status.RUNNING


async def test_an_aborted_save_leaves_no_job_and_wakes_no_queue(
    jc: JobCollection, database: Any, new_session: NewSession
) -> None:
    woken = woken_by(jc, "ship")
    session = new_session()
    job = jc.create_job("ship", {"order": "o2"})
    with pytest.raises(Boom):
        async with jc.transaction(session) as s:
            await database["orders"].insert_one({"_id": "o2"}, session=s)
            await job.save(session=s)
            raise Boom
    assert job.id is not None  # the handle has its id; no document has it
    assert await stored(jc, job.id) is None
    assert await database["orders"].find_one({"_id": "o2"}) is None
    await jc.after_commit(session)  # even called after the abort: nothing to wake
    assert woken == []
    assert await jc.collection.count_documents({}) == 0


async def test_save_jobs_and_dependencies_join_the_transaction_whole(
    jc: JobCollection, new_session: NewSession
) -> None:
    woken = woken_by(jc, "a", "b")
    first = jc.create_job("a")

    async def save_all(s: Any) -> list[Any]:
        await first.save(session=s)
        then = jc.create_job("b").depends([first])
        later = jc.create_job("a").delay(3600)
        return [first.id, *await jc.save_jobs([then, later], session=s)]

    with pytest.raises(Boom):
        async with jc.transaction(new_session()) as s:
            await save_all(s)
            raise Boom
    assert await jc.collection.count_documents({}) == 0
    assert woken == []
    session = new_session()
    async with jc.transaction(session) as s:
        before = jc.commands
        ids = await save_all(s)
        sent = jc.commands - before
    statuses = {d["_id"]: d["status"] for d in await jc.collection.find({}).to_list(None)}
    assert [statuses[i] for i in ids] == [Status.READY, Status.WAITING, Status.WAITING]
    assert len(woken) == 3
    if not MONGODB_URI:  # every command of the saves went in the session, in its transaction
        assert len(recorded(session)) == sent and all(t for _, t in recorded(session))


async def test_a_workflow_joins_the_transaction_whole_and_saves_again_after_an_abort(
    jc: JobCollection, new_session: NewSession
) -> None:
    woken = woken_by(jc, "fetch", "merge")
    flow = chord([jc.create_job("fetch", {"n": n}) for n in range(2)], jc.create_job("merge"))
    with pytest.raises(Boom):
        async with jc.transaction(new_session()) as s:
            await jc.save_workflow(flow, session=s)
            raise Boom
    assert await jc.collection.count_documents({}) == 0
    assert woken == []
    async with jc.transaction(new_session()) as s:  # the same flow, as the same inserts
        workflow = await jc.save_workflow(flow, session=s)
    stored_ids = {d["_id"] for d in await jc.collection.find({}).to_list(None)}
    assert stored_ids == set(workflow.ids) and len(stored_ids) == 3
    assert (await workflow.status()).counts == {Status.READY: 2, Status.WAITING: 1}
    assert len(woken) == 3


async def test_a_save_with_cancel_repeats_cancels_inside_the_transaction(
    jc: JobCollection, new_session: NewSession
) -> None:
    old = jc.create_job("tick").repeat(wait=60)
    await old.save()
    session = new_session()
    with pytest.raises(Boom):
        async with jc.transaction(session) as s:
            await jc.create_job("tick").repeat(wait=60).save(cancel_repeats=True, session=s)
            raise Boom
    doc = await stored(jc, old.id)
    assert doc is not None and doc["status"] != Status.CANCELLED  # the abort undid the cancel


async def test_the_drivers_own_transaction_then_after_commit(
    jc: JobCollection, new_session: NewSession
) -> None:
    woken = woken_by(jc, "ship")
    session = new_session()
    await _start(session)
    job_id = await jc.create_job("ship").save(session=session)
    with pytest.raises(InvalidArgument, match=r"session.*still in its transaction"):
        await jc.after_commit(session)
    await session.commit_transaction()
    assert woken == []
    await jc.after_commit(session)
    assert len(woken) == 1 and await stored(jc, job_id) is not None


# --- reports ----------------------------------------------------------------------------------


async def test_done_in_a_transaction_completes_the_job_iff_it_commits(
    jc: JobCollection, clock: ManualClock, new_session: NewSession
) -> None:
    first = jc.create_job("a")
    await first.save()
    then = jc.create_job("b").depends([first])
    await then.save()
    [held] = await jc.get_work("a")
    with pytest.raises(Boom):
        async with jc.transaction(new_session()) as s:
            assert await held.done({"n": 1}, session=s) is True
            raise Boom
    doc = await stored(jc, held.id)
    assert doc is not None and doc["status"] == Status.RUNNING  # still under its claim
    session = new_session()
    async with jc.transaction(session) as s:
        held.reported = False
        before = jc.commands
        assert await held.done({"n": 2}, session=s) is True
        sent = jc.commands - before
        waiting = await stored(jc, then.id)
        assert waiting is not None and waiting["status"] == Status.WAITING  # not before commit
    doc = await stored(jc, held.id)
    assert doc is not None and doc["status"] == Status.COMPLETED and doc["result"] == {"n": 2}
    released = await stored(jc, then.id)  # its dependent, released after the commit
    assert released is not None and released["status"] == Status.READY
    doc = await stored(jc, held.id)
    assert doc is not None and "jobcollectionFollowUps" not in doc["_private"]
    if not MONGODB_URI:
        assert len(recorded(session)) == sent and all(t for _, t in recorded(session))


async def test_fail_in_a_transaction_fails_the_job_iff_it_commits(
    jc: JobCollection, new_session: NewSession
) -> None:
    await jc.create_job("a").retry(0).save()
    [held] = await jc.get_work("a")
    with pytest.raises(Boom):
        async with jc.transaction(new_session()) as s:
            await held.fail({"why": "x"}, fatal=True, session=s)
            raise Boom
    doc = await stored(jc, held.id)
    assert doc is not None and doc["status"] == Status.RUNNING
    async with jc.transaction(new_session()) as s:
        assert await held.fail({"why": "y"}, fatal=True, session=s) is True
    doc = await stored(jc, held.id)
    assert doc is not None and doc["status"] == Status.FAILED


async def test_a_follow_up_left_uncalled_is_finished_by_the_job_server_pass(
    jc: JobCollection, new_session: NewSession
) -> None:
    first = jc.create_job("a")
    await first.save()
    then = jc.create_job("b").depends([first])
    await then.save()
    [held] = await jc.get_work("a")
    session = new_session()
    await _start(session)
    await held.done(session=session)
    await session.commit_transaction()  # and no after_commit
    waiting = await stored(jc, then.id)
    assert waiting is not None and waiting["status"] == Status.WAITING
    await jc.run_server_pass()
    released = await stored(jc, then.id)
    assert released is not None and released["status"] == Status.READY


# --- refusals ---------------------------------------------------------------------------------


async def test_what_cannot_join_a_transaction_is_refused_before_anything_is_written(
    jc: JobCollection, database: Any, new_session: NewSession
) -> None:
    job = jc.create_job("ship")
    with pytest.raises(InvalidArgumentType, match="session"):
        await job.save(session="not a session")
    with pytest.raises(InvalidArgument, match=r"session.*not in a transaction"):
        await job.save(session=new_session())
    if not MONGODB_URI:
        other = StrictSession(object())
        await other.start_transaction()
        with pytest.raises(InvalidArgument, match=r"session.*another client"):
            await job.save(session=other)
    async with jc.transaction(new_session()) as s:
        with pytest.raises(InvalidArgument, match=r"session.*unique job"):
            await jc.create_job("ship").unique("k").save(session=s)
    await job.save()
    [held] = await jc.get_work("ship")
    async with jc.transaction(new_session()) as s:
        with pytest.raises(InvalidArgument, match="repeat_id"):
            await held.done(repeat_id=True, session=s)
    with pytest.raises(InvalidArgument, match="client_or_session"):
        async with jc.transaction(42):
            pass
    assert await jc.collection.count_documents({"type": "ship"}) == 1


async def test_a_command_mongodb_refuses_in_a_transaction_aborts_it(
    database: Any, new_session: NewSession
) -> None:
    """What the strict backend models of the server (rule 10): index creation is refused in
    a transaction, and the transaction is then aborted (its commit fails)."""
    if MONGODB_URI:
        pytest.skip("the strict backend's model")
    session = new_session()
    await session.start_transaction()
    await database["orders"].insert_one({"_id": 1}, session=session)
    with pytest.raises(Exception, match="multi-document transaction"):
        await database["orders"].create_index([("x", 1)], session=session)
    with pytest.raises(Exception, match="aborted"):
        await session.commit_transaction()
    assert await database["orders"].find_one({"_id": 1}) is None


async def test_a_remote_collection_refuses_a_session(
    jc: JobCollection, clock: ManualClock, new_session: NewSession
) -> None:
    from jobcollection.remote import RemoteJobCollection
    from remote_helpers import serve_jc

    async with (
        serve_jc(jc) as url,
        RemoteJobCollection(url, token="admin-token", clock=clock) as remote,
        jc.transaction(new_session()) as s,
    ):
        with pytest.raises(InvalidArgument, match=r"session.*remote"):
            await remote.create_job("ship").save(session=s)
        with pytest.raises(InvalidArgument, match=r"session.*remote"):
            await remote.save_jobs([remote.create_job("ship")], session=s)
    assert await jc.collection.count_documents({}) == 0


Wired = tuple[JobCollection, str]


@pytest.fixture
async def wire_jc() -> AsyncIterator[Callable[..., Any]]:
    """Started JobCollections over pymongo's real driver, talking to the wire stand-in (a
    standalone, or `replica_set="rs0"`: a one-member replica set, whose transactions undo
    their writes on an abort), and the stand-in's URI."""
    from pymongo import AsyncMongoClient

    from wire_server import StandIn, WireServer

    servers: list[Any] = []
    clients: list[Any] = []
    made: list[JobCollection] = []

    async def make(**options: Any) -> Wired:
        server = WireServer(StandIn(**options))
        uri = f"mongodb://127.0.0.1:{await server.start()}"
        servers.append(server)
        client: Any = AsyncMongoClient(uri, tz_aware=False)
        clients.append(client)
        jc = JobCollection(client.db["queue.jobs"], clock=ManualClock(START))
        made.append(jc)
        await jc.start_job_server()
        return jc, uri

    yield make
    for jc in made:
        await jc.close()
    for client in clients:
        await client.close()
    for server in servers:
        await server.close()


async def test_through_the_driver_an_abort_leaves_no_job_and_wakes_no_worker(
    wire_jc: Callable[..., Any],
) -> None:
    jc, _ = await wire_jc(replica_set="rs0")
    orders = jc.collection.database["orders"]
    await orders.insert_one({"_id": "setup"})
    woken = woken_by(jc, "ship")
    job = jc.create_job("ship")
    with pytest.raises(Boom):
        async with jc.transaction() as s:
            await orders.insert_one({"_id": "o1"}, session=s)
            await job.save(session=s)
            assert await jc.collection.count_documents({}, session=s) == 1
            raise Boom
    assert await jc.collection.count_documents({}) == 0
    assert await orders.count_documents({"_id": "o1"}) == 0
    assert woken == []
    async with jc.transaction() as s:  # the driver's session, the handle saved again
        await orders.insert_one({"_id": "o1"}, session=s)
        assert await job.save(session=s) == job.id
        assert woken == []
    assert len(woken) == 1
    [held] = await jc.get_work("ship")
    async with jc.transaction() as s:
        assert await held.done({"ok": 1}, session=s) is True
    doc = await stored(jc, held.id)
    assert doc is not None and doc["status"] == Status.COMPLETED


async def test_the_drivers_with_transaction_retries_a_transaction_aborted_under_a_save(
    wire_jc: Callable[..., Any],
) -> None:
    """A save whose transaction the server aborted raises a DatabaseError that keeps the
    driver's TransientTransactionError label, so `with_transaction` runs it again; the job
    handle, saved again, is inserted once."""
    jc, _ = await wire_jc(replica_set="rs0")
    orders = jc.collection.database["orders"]
    await orders.insert_one({"_id": "taken"})
    job = jc.create_job("ship")
    raised: list[BaseException | None] = []

    async def place(session: Any) -> None:
        assert len(raised) < 2, "with_transaction would run it again and again"
        if not raised:  # an error the caller swallows aborts the transaction on the server
            with pytest.raises(Exception, match="duplicate key"):
                await orders.insert_one({"_id": "taken"}, session=session)
        try:
            await job.save(session=session)
        except BaseException as exc:
            raised.append(exc)
            raise
        raised.append(None)
        await orders.insert_one({"_id": "o1"}, session=session)

    async with jc.collection.database.client.start_session() as session:
        await session.with_transaction(place)
        await jc.after_commit(session)
    first, second = raised
    assert isinstance(first, DatabaseError) and second is None
    assert await jc.collection.count_documents({"_id": job.id}) == 1
    assert await orders.count_documents({"_id": "o1"}) == 1


async def test_motor_sessions_join_as_pymongos_do(wire_jc: Callable[..., Any]) -> None:
    """Motor's session API differs (start_session is a coroutine, start_transaction is not):
    jc.transaction() takes either."""
    from motor.motor_asyncio import AsyncIOMotorClient

    jc, uri = await wire_jc(replica_set="rs0")
    client: Any = AsyncIOMotorClient(uri, tz_aware=False, directConnection=True)
    try:
        motor_jc = JobCollection(client.db["queue.jobs"], clock=jc.clock)
        await motor_jc.ensure_indexes()
        woken = woken_by(motor_jc, "ship")
        with pytest.raises(Boom):
            async with motor_jc.transaction() as s:
                await motor_jc.create_job("ship").save(session=s)
                raise Boom
        assert woken == []
        async with motor_jc.transaction() as s:
            job_id = await motor_jc.create_job("ship").save(session=s)
        assert len(woken) == 1
        assert await jc.collection.count_documents({}) == 1
        assert await stored(jc, job_id) is not None
    finally:  # (off the loop: the stand-in must answer its monitor while it closes)
        await asyncio.to_thread(client.close)


async def test_a_standalone_server_says_it_cannot_run_transactions(
    wire_jc: Callable[..., Any],
) -> None:
    """Through pymongo's real driver, against the wire stand-in as a standalone."""
    jc, _ = await wire_jc()
    with pytest.raises(DatabaseError, match=r"cannot run transactions.*replica set"):
        async with jc.transaction() as s:
            await jc.create_job("ship").save(session=s)
    assert await jc.collection.count_documents({}) == 0


async def _start(session: Any) -> None:
    started = session.start_transaction()
    if hasattr(started, "__await__"):
        await started
