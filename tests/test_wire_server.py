"""The wire stand-in (tests/wire_server.py) answers pymongo's real driver as MongoDB would:
the handshake (OP_MSG and legacy OP_QUERY), cursors batched with getMore and killCursors,
write errors with MongoDB's codes, findAndModify's lastErrorObject, retryable writes
remembered per (lsid, txnNumber) in replica-set mode, and a standalone's refusals (change
streams, transactions). The server runs in the test's event loop here (the suite's tier and
tests/test_processes_db.py run it as a process of its own).
"""

from __future__ import annotations

import asyncio
import os
import struct
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bson
import pytest
from bson import Int64, ObjectId
from pymongo import AsyncMongoClient, WriteConcern, monitoring
from pymongo.errors import (
    AutoReconnect,
    BulkWriteError,
    DuplicateKeyError,
    OperationFailure,
    WriteError,
)

from jobcollection import JobCollection, ServerClock
from tcp_proxy import TcpProxy
from wire_server import (
    HEADER,
    OP_QUERY,
    StandIn,
    WireServer,
    decode_reply,
    encode_op_msg,
    no_ttl_monitor,
    read_message,
)


class Commands(monitoring.CommandListener):
    """The commands a client started, in order (name and the command document)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.sent.append((event.command_name, dict(event.command)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        """Nothing to record."""

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        """Nothing to record."""

    def names(self) -> list[str]:
        return [name for name, _ in self.sent]


class Started:
    """A stand-in serving on a free port, its URI and its state."""

    def __init__(self, stand_in: StandIn, port: int) -> None:
        self.stand_in = stand_in
        self.port = port
        self.uri = f"mongodb://127.0.0.1:{port}"


Serve = Callable[..., Awaitable[Started]]
Connect = Callable[..., Any]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start stand-ins (StandIn options as keywords); closed after the test."""
    no_ttl_monitor()
    servers: list[WireServer] = []

    async def start(**options: Any) -> Started:
        stand_in = StandIn(**options)
        server = WireServer(stand_in)
        servers.append(server)
        return Started(stand_in, await server.start())

    yield start
    for server in servers:
        await server.close()


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    """AsyncMongoClients (closed after the test) with a command log in `client.log`."""
    clients: list[Any] = []

    def make(uri: str, **options: Any) -> Any:
        log = Commands()
        client: Any = AsyncMongoClient(uri, event_listeners=[log], tz_aware=False, **options)
        client.log = log
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


async def raw(port: int, message: bytes) -> dict[str, Any]:
    """Send one message on a connection of its own (no driver); the reply document."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(message)
        await writer.drain()
        async with asyncio.timeout(10):
            _, _, op_code, body = await read_message(reader)
    finally:
        writer.close()
        await writer.wait_closed()
    return decode_reply(op_code, body)


async def command(port: int, db: str, document: dict[str, Any]) -> dict[str, Any]:
    return await raw(port, encode_op_msg({**document, "$db": db}))


# --- the handshake --------------------------------------------------------------------------


async def test_legacy_op_query_handshake_is_answered_with_op_reply(serve: Serve) -> None:
    server = await serve()
    query = bson.encode({"isMaster": 1, "helloOk": True})
    body = struct.pack("<i", 0) + b"admin.$cmd\x00" + struct.pack("<ii", 0, -1) + query
    reply = await raw(server.port, HEADER.pack(16 + len(body), 7, 0, OP_QUERY) + body)
    assert reply["ismaster"] is True and reply["helloOk"] is True
    assert reply["maxWireVersion"] >= 9  # what current pymongo requires
    assert "setName" not in reply


async def test_the_driver_connects_and_hello_reports_the_servers_time(
    serve: Serve, connect: Connect
) -> None:
    server = await serve(clock_offset_s=3600)
    client = connect(server.uri)
    before = datetime.now(UTC)
    hello = await client.admin.command("hello")
    after = datetime.now(UTC)
    local = hello["localTime"].replace(tzinfo=UTC) - timedelta(hours=1)
    assert before - timedelta(milliseconds=1) <= local <= after
    assert hello["isWritablePrimary"] is True and "setName" not in hello
    assert (await client.admin.command("buildInfo"))["version"] == "7.0.0"
    assert (await client.admin.command("ping"))["ok"] == 1.0


async def test_an_unknown_command_is_refused_as_mongodb_does(
    serve: Serve, connect: Connect
) -> None:
    server = await serve()
    with pytest.raises(OperationFailure) as refused:
        await connect(server.uri).admin.command("fsyncUnlock")
    assert refused.value.code == 59
    assert server.stand_in.unknown == {"fsyncUnlock"}


# --- reads ----------------------------------------------------------------------------------


async def test_find_batches_through_get_more_and_kill_cursors(
    serve: Serve, connect: Connect
) -> None:
    server = await serve()
    client = connect(server.uri)
    coll = client.db.c
    await coll.insert_many([{"i": i, "pad": "x" * 10} for i in range(250)])
    client.log.sent.clear()

    docs = await coll.find({"i": {"$gte": 20}}, {"pad": 0}).sort("i", -1).batch_size(50).to_list()
    assert [d["i"] for d in docs] == list(range(249, 19, -1))
    assert "pad" not in docs[0]
    assert client.log.names() == ["find", "getMore", "getMore", "getMore", "getMore"]

    client.log.sent.clear()
    assert len(await coll.find({}).to_list()) == 250  # 101, then the rest in one getMore
    assert client.log.names() == ["find", "getMore"]

    page = await coll.find({}).sort("i", 1).skip(10).limit(5).to_list()
    assert [d["i"] for d in page] == [10, 11, 12, 13, 14]

    cursor = coll.find({}).batch_size(10)
    assert (await cursor.next())["i"] == 0
    assert len(server.stand_in.cursors) == 1
    await cursor.close()
    assert "killCursors" in client.log.names()
    assert server.stand_in.cursors == {}


async def test_aggregate_count_and_distinct(serve: Serve, connect: Connect) -> None:
    server = await serve()
    coll = connect(server.uri).db.c
    await coll.insert_many([{"t": t} for t in "aabbbc"])
    assert await coll.count_documents({"t": {"$in": ["a", "b"]}}) == 5
    assert await coll.count_documents({}, skip=1, limit=2) == 2
    assert await coll.estimated_document_count() == 6
    assert sorted(await coll.distinct("t")) == ["a", "b", "c"]
    assert sorted(await coll.distinct("t", {"t": {"$ne": "a"}})) == ["b", "c"]
    groups = await (await coll.aggregate([{"$group": {"_id": "$t", "n": {"$sum": 1}}}])).to_list()
    assert sorted((g["_id"], g["n"]) for g in groups) == [("a", 2), ("b", 3), ("c", 1)]


async def test_now_current_date_and_local_time_read_the_servers_one_clock(
    serve: Serve, connect: Connect
) -> None:
    server = await serve(clock_offset_s=3600)  # a server one hour ahead of this process
    coll = connect(server.uri).db.c
    await coll.insert_many([{"_id": 1, "s": "$$NOW"}, {"_id": 2}])

    def ahead() -> datetime:
        return datetime.now(UTC).replace(tzinfo=None) + timedelta(hours=1)

    before = ahead() - timedelta(milliseconds=1)
    rows = await (
        await coll.aggregate([{"$match": {"_id": 2}}, {"$set": {"t": "$$NOW"}}])
    ).to_list()
    await coll.update_one({"_id": 2}, {"$currentDate": {"at": True}})
    stamped = await coll.find_one({"_id": 2})
    hello = await coll.database.client.admin.command("hello")
    after = ahead()
    for moment in (rows[0]["t"], stamped["at"], hello["localTime"]):
        assert before <= moment <= after
    # In a filter, "$$NOW" is a string, except inside $expr:
    assert [d["_id"] async for d in coll.find({"s": "$$NOW"})] == [1]
    await coll.delete_one({"_id": 1})
    assert [d["_id"] async for d in coll.find({"$expr": {"$lte": ["$at", "$$NOW"]}})] == [2]
    assert [d["_id"] async for d in coll.find({"$expr": {"$gt": ["$at", "$$NOW"]}})] == []


# --- writes ---------------------------------------------------------------------------------


async def test_updates_upserts_and_find_and_modify(serve: Serve, connect: Connect) -> None:
    server = await serve()
    db = connect(server.uri).db
    await db.c.insert_many([{"k": k, "n": 0} for k in (1, 1, 2)])
    many = await db.c.update_many({"k": 1}, {"$inc": {"n": 1}})
    assert (many.matched_count, many.modified_count) == (2, 2)
    upsert = await db.c.update_one({"k": 3}, {"$set": {"n": 5}}, upsert=True)
    assert upsert.upserted_id is not None and upsert.matched_count == 0

    reply = await db.command(
        {"findAndModify": "c", "query": {"k": 4}, "update": {"$set": {"n": 1}}, "upsert": True,
         "new": True}
    )  # fmt: skip
    assert reply["lastErrorObject"]["updatedExisting"] is False
    assert reply["lastErrorObject"]["upserted"] == reply["value"]["_id"]
    reply = await db.command(
        {"findAndModify": "c", "query": {"k": 1}, "sort": {"n": -1}, "update": {"$set": {"m": 1}}}
    )
    assert reply["lastErrorObject"] == {"n": 1, "updatedExisting": True}
    assert "m" not in reply["value"]  # the document before the update
    removed = await db.c.find_one_and_delete({"k": 2})
    assert removed is not None and await db.c.count_documents({"k": 2}) == 0

    with pytest.raises(WriteError) as refused:
        await db.c.update_one({"k": 1}, {"$set": {"a.$[x]": 1}}, array_filters=[{"x": 1}])
    assert refused.value.code == 2  # mongomock has no arrayFilters: refused, not ignored


async def test_write_errors_carry_mongodbs_codes(serve: Serve, connect: Connect) -> None:
    server = await serve()
    coll = connect(server.uri).db.c
    await coll.insert_one({"_id": 1, "s": "text"})
    with pytest.raises(DuplicateKeyError) as duplicate:
        await coll.insert_one({"_id": 1})
    assert duplicate.value.details is not None
    assert duplicate.value.details["keyPattern"] == {"_id": 1}
    assert duplicate.value.details["keyValue"] == {"_id": 1}

    await coll.create_index("u", unique=True, partialFilterExpression={"u": {"$exists": True}})
    await coll.insert_many([{"_id": 2, "u": "x"}, {"_id": 3}, {"_id": 4}])  # only u is indexed
    with pytest.raises(DuplicateKeyError) as duplicate:
        await coll.update_one({"_id": 3}, {"$set": {"u": "x"}})
    assert duplicate.value.details is not None
    assert duplicate.value.details["keyPattern"] == {"u": 1}
    assert duplicate.value.details["keyValue"] == {"u": "x"}
    assert (await coll.find_one({"_id": 3})) == {"_id": 3}

    cases = [
        ({"$set": {"a": 1, "a.b": 2}}, 40),  # conflicting paths
        ({"$push": {"l": {"$slice": 2}}}, 52),  # $slice without $each
        ({"$frob": {"a": 1}}, 9),  # unknown operator
        ({"$set": {"d": {"$x": 1}}}, 52),  # $-prefixed key stored
        ({"$set": {"d": {"a.b": 1}}}, 57),  # dotted key stored
        ({"$set": {"a": 1}, "$inc": {"s": 1}}, 14),  # $inc of a string: nothing applied
    ]
    for update, code in cases:
        with pytest.raises(WriteError) as refused:
            await coll.update_one({"_id": 1}, update)
        assert refused.value.code == code, (update, refused.value)
    assert await coll.find_one({"_id": 1}) == {"_id": 1, "s": "text"}

    with pytest.raises(BulkWriteError) as bulk:
        await coll.insert_many([{"_id": 1}, {"_id": 10}], ordered=False)
    assert bulk.value.details["nInserted"] == 1
    assert [e["code"] for e in bulk.value.details["writeErrors"]] == [11000]


async def test_unacknowledged_writes_are_applied_without_a_reply(
    serve: Serve, connect: Connect
) -> None:
    server = await serve()
    db = connect(server.uri).db
    await db.get_collection("c", write_concern=WriteConcern(w=0)).insert_one({"_id": 1})
    assert await db.c.find_one({"_id": 1}) == {"_id": 1}  # same connection: in order


async def test_indexes_collections_and_databases(serve: Serve, connect: Connect) -> None:
    server = await serve()
    client = connect(server.uri)
    db = client.db
    await db.create_collection("c")
    with pytest.raises(OperationFailure) as exists:
        await db.command("create", "c")
    assert exists.value.code == 48
    name = await db.c.create_index([("a", 1), ("b", -1)], name="ab")
    assert name == "ab"
    assert await db.c.create_index([("a", 1), ("b", -1)], name="ab") == "ab"  # same: no-op
    with pytest.raises(OperationFailure) as conflict:
        await db.c.create_index([("a", 1)], name="ab")
    assert conflict.value.code == 86
    with pytest.raises(OperationFailure) as partial:
        await db.c.create_index("p", partialFilterExpression={"p": {"$ne": 1}})
    assert partial.value.code == 67
    indexes = [ix async for ix in await db.c.list_indexes()]
    assert [(ix["name"], dict(ix["key"])) for ix in indexes] == [
        ("_id_", {"_id": 1}),
        ("ab", {"a": 1, "b": -1}),
    ]
    await db.c.drop_index("ab")
    assert list(await db.c.index_information()) == ["_id_"]
    assert await db.list_collection_names() == ["c"]
    assert "db" in await client.list_database_names()
    await db.drop_collection("c")
    assert await db.list_collection_names() == []
    await client.drop_database("db")
    assert "db" not in await client.list_database_names()


# --- what a standalone refuses; retryable writes on a replica set ---------------------------


async def test_a_standalone_refuses_change_streams_and_transaction_numbers(
    serve: Serve, connect: Connect
) -> None:
    server = await serve()
    coll = connect(server.uri).db.c
    with pytest.raises(OperationFailure) as no_streams:
        await coll.watch()
    assert no_streams.value.code == 40573
    assert not any("txnNumber" in cmd for _, cmd in coll.database.client.log.sent)
    reply = await command(
        server.port,
        "db",
        {"insert": "c", "documents": [{"_id": 1}], "lsid": {"id": bson.Binary(b"0" * 16, 4)},
         "txnNumber": Int64(1)},
    )  # fmt: skip
    assert (reply["ok"], reply["code"]) == (0.0, 20)
    assert reply["errmsg"] == (
        "Transaction numbers are only allowed on a replica set member or mongos"
    )


async def test_a_replica_set_member_replays_a_retried_write_instead_of_applying_it_again(
    serve: Serve, connect: Connect
) -> None:
    server = await serve(replica_set="rs0")
    client = connect(server.uri)
    assert (await client.admin.command("hello"))["setName"] == "rs0"
    await client.db.c.insert_one({"_id": "by driver"})
    inserts = [cmd for name, cmd in client.log.sent if name == "insert"]
    assert "txnNumber" in inserts[0]  # the driver sends retryable writes here

    session = {"id": bson.Binary(ObjectId().binary + b"0000", 4)}
    push = {
        "update": "c",
        "updates": [{"q": {"_id": 1}, "u": {"$push": {"seen": 1}}, "upsert": True}],
        "lsid": session,
        "txnNumber": Int64(5),
    }
    first = await command(server.port, "db", push)
    retried = await command(server.port, "db", push)
    assert first == retried and first["n"] == 1
    assert await client.db.c.find_one({"_id": 1}) == {"_id": 1, "seen": [1]}  # applied once
    again = await command(server.port, "db", {**push, "txnNumber": Int64(6)})
    assert again["nModified"] == 1
    assert await client.db.c.find_one({"_id": 1}) == {"_id": 1, "seen": [1, 1]}
    with pytest.raises(OperationFailure) as no_streams:
        await client.db.c.watch()
    assert no_streams.value.code == 40573


async def test_a_retried_write_whose_reply_was_lost_is_applied_once(
    serve: Serve, connect: Connect
) -> None:
    """The driver retries a write whose connection broke before the reply (retryable
    writes): the stand-in, as a replica-set member, answers the retry with the first
    result instead of applying the update again."""
    server = await serve(replica_set="rs0")
    proxy = TcpProxy("127.0.0.1", server.port)
    await proxy.start()
    try:
        client = connect(f"mongodb://127.0.0.1:{proxy.port}/?directConnection=true")
        await client.db.c.insert_one({"_id": 1, "n": 0})
        cut = proxy.cut_next_reply(lambda request: b"\x02update\x00" in request)
        result = await client.db.c.update_one({"_id": 1}, {"$inc": {"n": 1}})
        assert cut.is_set()
        assert (result.matched_count, result.modified_count) == (1, 1)
        assert await client.db.c.find_one({"_id": 1}) == {"_id": 1, "n": 1}
        updates = [cmd for name, cmd in client.log.sent if name == "update"]
        assert len(updates) == 2 and updates[0]["txnNumber"] == updates[1]["txnNumber"]
    finally:
        await proxy.close()


async def test_a_standalone_gets_no_retry_and_the_driver_says_so(
    serve: Serve, connect: Connect
) -> None:
    server = await serve()
    proxy = TcpProxy("127.0.0.1", server.port)
    await proxy.start()
    try:
        client = connect(f"mongodb://127.0.0.1:{proxy.port}/?directConnection=true")
        await client.db.c.insert_one({"_id": 1, "n": 0})
        proxy.cut_next_reply(lambda request: b"\x02update\x00" in request)
        with pytest.raises(AutoReconnect):
            await client.db.c.update_one({"_id": 1}, {"$inc": {"n": 1}})
        assert await client.db.c.find_one({"_id": 1}) == {"_id": 1, "n": 1}  # applied
    finally:
        await proxy.close()


# --- the library through both drivers ---------------------------------------------------------


@pytest.mark.parametrize("driver", ["pymongo", "motor"])
async def test_the_library_runs_a_job_through_either_driver(serve: Serve, driver: str) -> None:
    server = await serve()
    if driver == "motor":
        from motor.motor_asyncio import AsyncIOMotorClient

        client: Any = AsyncIOMotorClient(server.uri, tz_aware=False)
    else:
        client = AsyncMongoClient(server.uri, tz_aware=False)
    jc = JobCollection.from_database(client["lib"], "queue")
    try:
        await jc.start_job_server()
        job_id = await jc.create_job("t", {"n": 1}).save()
        [job] = await jc.get_work("t")
        assert job.id == job_id and job.data == {"n": 1}
        assert await job.done({"ok": True}) is True
        stored = await client["lib"]["queue.jobs"].find_one({"_id": job_id})
        assert stored["status"] == "completed" and stored["result"] == {"ok": True}
        assert isinstance(jc.clock, ServerClock)
        assert jc.clock.reports_time is True  # the server's clock, from hello.localTime
    finally:
        await jc.close()
        if driver == "motor":  # a blocking close: the server shares this thread's loop
            await asyncio.to_thread(client.close)
        else:
            await client.close()


def test_the_real_driver_benchmark_runs_and_reports_cpu_and_commands_per_job() -> None:
    """benchmarks/wire.py, as its README section runs it (smaller), so it does not rot."""
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "wire.py"
    env = {k: v for k, v in os.environ.items() if k != "MONGODB_URI"}
    done = subprocess.run(
        [sys.executable, str(script), "--jobs", "30", "--repeats", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rows = {line.split("|")[1].strip(): line for line in done.stdout.splitlines() if "|" in line}
    assert {"naive c=1", "jobcollection c=1 p=100 f=100"} <= set(rows)
    assert "insert 1, update 1" in rows["naive c=1"]  # and a claim per job, plus the last


async def test_as_a_mongos_it_refuses_what_a_sharded_collection_refuses(
    serve: Serve, connect: Connect
) -> None:
    server = await serve(sharded=True)
    client = connect(server.uri)
    coll = client.db.c
    assert (await client.admin.command("hello"))["msg"] == "isdbgrid"
    await coll.insert_many([{"_id": 1, "k": "a"}, {"_id": 2, "k": "b"}])
    assert (await coll.update_one({"_id": 1}, {"$set": {"v": 1}})).modified_count == 1
    refusals = [
        (coll.find_one_and_update({"k": "a"}, {"$set": {"v": 2}}), 61),
        (coll.update_one({"k": "a"}, {"$set": {"v": 2}}), 72),
        (coll.update_one({"k": "z"}, {"$set": {"v": 2}}, upsert=True), 61),
        (coll.delete_one({"k": "a"}), 61),
        (coll.create_index("k", unique=True), 67),
    ]
    for call, code in refusals:
        with pytest.raises(OperationFailure) as refused:
            await call
        assert refused.value.code == code
    assert (await coll.update_many({"k": "a"}, {"$set": {"v": 3}})).modified_count == 1
    assert await coll.find_one_and_update({"_id": 2}, {"$set": {"v": 4}}) is not None

    jc = JobCollection.from_database(client["lib"], "queue")
    try:
        await jc.start_job_server()  # a unique index the mongos refuses is not asked for
        job_id = await jc.create_job("t").save()
        client.log.sent.clear()
        [job] = await jc.get_work("t")
        claims = [
            name
            for name, command in client.log.sent
            if name in ("find", "findAndModify") and command.get(name) == "queue.jobs"
        ]  # (the job server's lease, in queue.servers, may be renewed meanwhile)
        assert claims == ["find", "findAndModify"]  # find a candidate, then claim it by _id
        assert job.id == job_id and await job.done() is True
    finally:
        await jc.close()
