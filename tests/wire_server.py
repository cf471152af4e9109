"""A MongoDB wire-protocol stand-in for tests: an asyncio server on 127.0.0.1 that answers
pymongo's real driver (`AsyncMongoClient("mongodb://127.0.0.1:PORT")`, Motor, the CLI in
another process) from an in-memory mongomock database, under the strict backend's rules
(tests/strict.py) where they apply on the server's side.

    python -m tests.wire_server --port 0                 # prints "PORT <n>" once listening
    python tests/wire_server.py --port 0 --replica-set rs0   # (the same, as a script)

It speaks OP_MSG (with document sequences, checksums and moreToCome) and the legacy OP_QUERY
handshake, and answers as one MongoDB 7.0 server: a standalone by default; with
`--replica-set NAME` a one-member replica set's primary, so that the driver sends retryable
writes (`lsid` + `txnNumber`); with `--sharded` a mongos (`hello.msg: "isdbgrid"`, retryable
writes) in front of collections sharded on `{_id: "hashed"}`, refusing what the strict
proxy's sharded mode refuses (rule 9 of tests/strict.py: findAndModify, single updates and
deletes and upserts without the shard key, unique indexes not prefixed by it).

Commands: hello/isMaster, ping, buildInfo, serverStatus, endSessions, insert, update (upsert,
multi, replacements), delete, find (filter, sort, projection, skip, limit, batchSize,
singleBatch) with real cursors (getMore, killCursors), findAndModify, aggregate (what mongomock
runs), count, distinct, createIndexes, listIndexes, dropIndexes, create, drop, listCollections,
listDatabases, dropDatabase. Anything else is answered with code 59 (CommandNotFound) and
logged to stderr.

Where the stand-in differs from MongoDB (and what covers it):

- Query, update and aggregation semantics are mongomock's (4.3): its bugs and gaps are ours.
  No arrayFilters (refused, code 2), no pipeline-style updates, no collation, no `$where`, no
  text or geo queries; aggregation stages mongomock lacks fail. Indexes constrain uniqueness
  (with partialFilterExpression) but serve no query: there is no query planner, `explain`,
  `hint` or `notablescan` (the strict in-memory tier checks every library query against the
  indexes instead; only a real server's `explain`, run by benchmarks/run.py --uri, shows plans).
- No change streams: `$changeStream` is answered as a standalone answers it (code 40573) even
  in replica-set mode, so the library's polling fallback runs. On a standalone a `txnNumber`
  (a retryable write, a transaction) is refused as MongoDB refuses it (code 20); in
  replica-set mode the result of each retryable write is remembered per (lsid, txnNumber)
  and a retry returns it without applying the write again.
- Transactions (replica-set and mongos modes): `startTransaction`/`autocommit: false`,
  `commitTransaction`, `abortTransaction`, per session. Writes are applied as they come and
  undone by an abort (each collection a transaction writes is kept as it was before its first
  write); an error inside a transaction aborts it (NoSuchTransaction, 251, after it, with the
  TransientTransactionError label), and what MongoDB refuses there (createIndexes, create,
  drop, count, listCollections and the like: code 263) too. No isolation: other sessions see
  a transaction's writes before its commit, and an abort also undoes other writes made
  meanwhile to the collections it wrote; no write conflicts, no lifetime limit.
- One process, one event loop: every command runs to completion before the next starts, so
  writes are atomic and serialised (as document-level locking makes them on a server, but
  without any interleaving inside a multi-document write). There is no replication, no read
  concern or write concern (accepted, ignored; `w: 0` writes are applied and not answered),
  no `maxTimeMS`, no authentication, no TLS, no compression, no failCommand fail points.
  `--sharded` is one process answering as a mongos: no shards, chunks, balancer or
  scatter-gather, only a mongos's refusals.
- Strict rules applied on the server: conflicting update paths (40), `$push` modifiers (52/2),
  unknown operators (9), `$`-prefixed and dotted keys in stored values (52/57: MongoDB 4.4's
  rule, stricter than 5.0's for inserts), updated documents over 16 MiB (17419), partial index
  expressions (67), duplicate keys (11000 with keyPattern/keyValue). Client-side rules (a
  replacement given to update_one, inserts over 16 MiB) are pymongo's own, so they hold as on
  a real server. Not applied: the index rule (8) and the retryable bulk-write rule (6), which
  need the library's call stack: the in-memory strict tier covers them.
- Time: `hello.localTime`, `serverStatus.localTime`, `$currentDate` and `$$NOW` (in
  aggregation expressions and in filters' `$expr`) are the time the command started on this
  process's clock, to the millisecond; `--clock-offset-s` shifts that clock, to test clients
  whose clock disagrees with the server's. `$$CLUSTER_TIME` is not known.
- TTL indexes are kept but expire nothing (MongoDB deletes expired documents every 60 s;
  mongomock would at every call, by the wall clock the tests' manual clocks do not follow).
- Cursors never time out (until the server exits); sessions are accepted and forgotten; the
  retryable-write memory is never trimmed; OP_MSG checksums are accepted unverified.
- `explain`, `configureFailPoint`, `collMod`, `renameCollection`, `$out`/`$merge` and every
  other command not listed above: code 59.
- Dates are stored as naive UTC to the millisecond (as BSON carries them); other BSON types
  round-trip as the driver encodes them.

Why not MongoDB's `mockupdb` (PyPI 1.8.1, October 2021, no release since): it is a scripted
mock, not a database (a test must answer each request itself, or a request hangs), runs on
threads with blocking sockets, and its default handshake (maxWireVersion 6) is refused by
pymongo 4.20 ("requires at least 9 (MongoDB 4.4)"). This server executes the commands.

The MONGODB_URI tier (`PYTHONPATH=tests python -m pytest -p wire_tier`, see tests/wire_tier.py)
runs the suite's database contract through the real driver against this server: the real
driver's command building, cursor batching, error parsing (codes, write errors, keyPattern),
codec options and connection pooling, and the library's real-server code paths (server time
from `hello`, change-stream fallback, the driver's retry behaviour) that the in-memory backend
skips. What only a real MongoDB can show (plans, replication, failover, change streams,
transactions) stays with `MONGODB_URI=<a real server>` and scripts/test-replica-set.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import itertools
import os
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bson
import mongomock
from bson import Int64, ObjectId, Timestamp
from bson.codec_options import CodecOptions, DatetimeConversion
from mongomock.filtering import filter_applies as _filter_applies
from mongomock.helpers import gen_index_name as _gen_index_name
from pymongo.errors import DuplicateKeyError, OperationFailure, WriteError

sys.path.insert(0, str(Path(__file__).resolve().parent))

from strict import (
    CODE_NAMES,
    MAX_BSON_SIZE,
    Refused,
    add_to_set_once,
    check_partial_filter,
    check_sharded_find_and_modify,
    check_sharded_single_write,
    check_sharded_unique_index,
    check_sharded_upsert,
    check_storable,
    check_update,
    check_updated_size,
)

Document = dict[str, Any]

OP_REPLY = 1
OP_QUERY = 2004
OP_COMPRESSED = 2012
OP_MSG = 2013
CHECKSUM_PRESENT = 1
MORE_TO_COME = 2
HEADER = struct.Struct("<iiii")
MAX_MESSAGE_SIZE = 48_000_000
MAX_WIRE_VERSION = 21  # MongoDB 7.0
VERSION = "7.0.0"
FIRST_BATCH = 101
BATCH_BYTES = MAX_BSON_SIZE - 16 * 1024

DECODE: CodecOptions[Any] = CodecOptions(
    tz_aware=False, datetime_conversion=DatetimeConversion.DATETIME_AUTO
)
"""Requests are decoded as the data is stored: naive UTC dates, out-of-range ones as
DatetimeMS."""

MORE_CODE_NAMES = {
    1: "InternalError",
    20: "IllegalOperation",
    251: "NoSuchTransaction",
    263: "OperationNotSupportedInTransaction",
    26: "NamespaceNotFound",
    27: "IndexNotFound",
    43: "CursorNotFound",
    48: "NamespaceExists",
    59: "CommandNotFound",
    85: "IndexOptionsConflict",
    86: "IndexKeySpecsConflict",
    14: "TypeMismatch",
    40573: "Location40573",
}


def code_name(code: int) -> str:
    return CODE_NAMES.get(code) or MORE_CODE_NAMES.get(code, "")


class CommandError(Exception):
    """A command the server answers with `ok: 0`."""

    def __init__(self, code: int, errmsg: str, **extra: Any) -> None:
        super().__init__(errmsg)
        self.code = code
        self.errmsg = errmsg
        self.extra = extra

    def reply(self) -> Document:
        return {
            "ok": 0.0,
            "errmsg": self.errmsg,
            "code": self.code,
            "codeName": code_name(self.code),
            **self.extra,
        }


# --- framing ----------------------------------------------------------------------------------


@dataclass
class Request:
    """One message from a client: the command (with its document sequences folded in)."""

    request_id: int
    op_code: int
    command: Document
    database: str
    more_to_come: bool = False


def _cstring(data: bytes, at: int) -> tuple[str, int]:
    end = data.index(b"\x00", at)
    return data[at:end].decode(), end + 1


def parse_message(request_id: int, op_code: int, body: bytes) -> Request:
    """The command in an OP_MSG or OP_QUERY body (everything after the 16-byte header)."""
    if op_code == OP_MSG:
        (flags,) = struct.unpack_from("<I", body)
        end = len(body) - (4 if flags & CHECKSUM_PRESENT else 0)
        at = 4
        command: Document = {}
        sequences: dict[str, list[Document]] = {}
        while at < end:
            kind = body[at]
            at += 1
            (size,) = struct.unpack_from("<i", body, at)
            if kind == 0:
                command = bson.decode(body[at : at + size], codec_options=DECODE)
                at += size
            elif kind == 1:
                name, docs_at = _cstring(body, at + 4)
                sequences[name] = list(
                    bson.decode_all(body[docs_at : at + size], codec_options=DECODE)
                )
                at += size
            else:
                raise ValueError(f"unknown OP_MSG section kind {kind}")
        command.update(sequences)
        database = str(command.pop("$db", "admin"))
        return Request(request_id, op_code, command, database, bool(flags & MORE_TO_COME))
    if op_code == OP_QUERY:
        collection, at = _cstring(body, 4)
        at += 8  # numberToSkip, numberToReturn
        (size,) = struct.unpack_from("<i", body, at)
        query = bson.decode(body[at : at + size], codec_options=DECODE)
        if "$query" in query:
            query = dict(query["$query"])
        return Request(request_id, op_code, query, collection.split(".", 1)[0])
    raise ValueError(f"unsupported opCode {op_code}")


def encode_reply(request: Request, reply: Mapping[str, Any], request_id: int) -> bytes:
    """An OP_MSG (or, to an OP_QUERY, an OP_REPLY) answering `request`."""
    doc = bson.encode(reply)
    if request.op_code == OP_QUERY:
        payload = struct.pack("<iqii", 0, 0, 0, 1) + doc
        op_code = OP_REPLY
    else:
        payload = struct.pack("<I", 0) + b"\x00" + doc
        op_code = OP_MSG
    return HEADER.pack(16 + len(payload), request_id, request.request_id, op_code) + payload


def encode_op_msg(command: Mapping[str, Any], request_id: int = 1) -> bytes:
    """An OP_MSG carrying `command` (for tests that speak the protocol without a driver)."""
    payload = struct.pack("<I", 0) + b"\x00" + bson.encode(command)
    return HEADER.pack(16 + len(payload), request_id, 0, OP_MSG) + payload


async def read_message(reader: asyncio.StreamReader) -> tuple[int, int, int, bytes]:
    """(length, requestID, responseTo, opCode) and the body of the next message."""
    header = await reader.readexactly(16)
    length, request_id, response_to, op_code = HEADER.unpack(header)
    if not 16 <= length <= MAX_MESSAGE_SIZE:
        raise ValueError(f"bad message length {length}")
    body = await reader.readexactly(length - 16)
    if op_code == OP_COMPRESSED:
        raise ValueError("compression was not negotiated")
    return request_id, response_to, op_code, body


def decode_reply(op_code: int, body: bytes) -> Document:
    """The document of an OP_MSG/OP_REPLY body (for raw-protocol tests)."""
    if op_code == OP_REPLY:
        return bson.decode(body[20:])
    return bson.decode(body[5:])


# --- the database -----------------------------------------------------------------------------


def _now(offset: timedelta) -> datetime:
    now = datetime.now(UTC) + offset
    return now.replace(microsecond=now.microsecond // 1000 * 1000, tzinfo=None)


def _expression_now(value: Any, now: datetime) -> Any:
    """An aggregation expression with `$$NOW` replaced by the command's time (mongomock does
    not know the variable); `$literal`s are left alone."""
    if value == "$$NOW":
        return now
    if isinstance(value, dict):
        return {k: v if k == "$literal" else _expression_now(v, now) for k, v in value.items()}
    if isinstance(value, list):
        return [_expression_now(v, now) for v in value]
    return value


def _filter_now(query: Any, now: datetime) -> Any:
    """A query filter with `$$NOW` replaced inside its `$expr`s only (elsewhere in a filter
    "$$NOW" is a plain string, as in MongoDB)."""
    if isinstance(query, dict):
        return {
            k: _expression_now(v, now) if k == "$expr" else _filter_now(v, now)
            for k, v in query.items()
        }
    if isinstance(query, list):
        return [_filter_now(v, now) for v in query]
    return query


def _pipeline_now(pipeline: list[Any], now: datetime) -> list[Any]:
    """An aggregation pipeline with `$$NOW` replaced (in `$match`, only inside `$expr`)."""
    return [
        {
            name: _filter_now(spec, now) if name == "$match" else _expression_now(spec, now)
            for name, spec in stage.items()
        }
        if isinstance(stage, dict)
        else stage
        for stage in pipeline
    ]


def _current_date(update: Document, now: datetime) -> Document:
    """`$currentDate` as `$set`s of the command's time (the server's one clock, to the
    millisecond; mongomock would read its own), after the update's checks."""
    fields = update.get("$currentDate")
    if not fields:
        return update
    update = {k: v for k, v in update.items() if k != "$currentDate"}
    sets = dict(update.get("$set", {}))
    for path, kind in fields.items():
        wants_timestamp = isinstance(kind, dict) and kind.get("$type") == "timestamp"
        sets[path] = (
            Timestamp(int(now.replace(tzinfo=UTC).timestamp()), 1) if wants_timestamp else now
        )
    update["$set"] = sets
    return update


def filter_applies(query: Mapping[str, Any], doc: Mapping[str, Any]) -> bool:
    """Whether a document matches a query filter (mongomock's matcher)."""
    return bool(_filter_applies(query, doc))  # type: ignore[no-untyped-call]


def _index_name(keys: list[tuple[str, Any]]) -> str:
    return str(_gen_index_name(keys))  # type: ignore[no-untyped-call]


def _sort(spec: Any) -> list[tuple[str, int]] | None:
    if not spec:
        return None
    return [(str(k), int(d)) for k, d in dict(spec).items() if k != "$natural"] or None


def _projection(spec: Any) -> Any:
    return dict(spec) if spec else None


def _is_operator_update(update: Any) -> bool:
    return isinstance(update, dict) and bool(update) and str(next(iter(update))).startswith("$")


@dataclass
class Cursor:
    namespace: str
    documents: Iterator[Document]
    pending: list[Document] = field(default_factory=list)


NOT_IN_TRANSACTION = 263
"""OperationNotSupportedInTransaction."""
NO_SUCH_TRANSACTION = 251
WRITES = frozenset({"insert", "update", "delete", "findandmodify"})
IN_TRANSACTION = WRITES | {"find", "getmore", "killcursors", "aggregate", "distinct"}
"""The commands MongoDB runs inside a transaction, of those the stand-in knows."""


@dataclass
class Transaction:
    """A session's open transaction: its number, and each collection as it was before the
    transaction's first write to it (for an abort)."""

    number: int
    before: dict[tuple[str, Any], list[Document]] = field(default_factory=dict)
    failed: bool = False
    committed: bool = False


def _session_key(command: Document) -> bytes:
    lsid = command.get("lsid") or {}
    return bson.encode({"id": lsid.get("id")})


def _no_such_transaction(number: int) -> CommandError:
    return CommandError(
        NO_SUCH_TRANSACTION,
        f"Transaction with txnNumber {number} has been aborted.",
        errorLabels=["TransientTransactionError"],
    )


class StandIn:
    """The server's state and its command handlers."""

    def __init__(
        self,
        *,
        replica_set: str | None = None,
        sharded: bool = False,
        clock_offset_s: float = 0.0,
    ) -> None:
        if replica_set is not None and sharded:
            raise ValueError("a replica-set member or a mongos, not both")
        self.client: Any = mongomock.MongoClient(tz_aware=False)
        self.replica_set = replica_set
        self.sharded = sharded
        self.offset = timedelta(seconds=clock_offset_s)
        self.address = "127.0.0.1:0"
        self.cursors: dict[int, Cursor] = {}
        self._cursor_ids = itertools.count(1_000_001)
        self._connection_ids = itertools.count(1)
        self.retried: dict[tuple[bytes, int], Document] = {}
        self.transactions: dict[bytes, Transaction] = {}
        """The open transaction of each session (by its lsid), if any."""
        self.election_id = ObjectId()
        self.unknown: set[str] = set()
        self.handlers: dict[str, Callable[[str, Document], Document]] = {
            "hello": self.hello,
            "ismaster": self.hello,
            "ping": lambda db, cmd: {"ok": 1.0},
            "buildinfo": self.build_info,
            "serverstatus": self.server_status,
            "endsessions": self.end_sessions,
            "killsessions": lambda db, cmd: {"ok": 1.0},
            "whatsmyuri": lambda db, cmd: {"you": "127.0.0.1:0", "ok": 1.0},
            "getparameter": lambda db, cmd: {"ok": 1.0},
            "insert": self.insert,
            "update": self.update,
            "delete": self.delete,
            "find": self.find,
            "getmore": self.get_more,
            "killcursors": self.kill_cursors,
            "findandmodify": self.find_and_modify,
            "aggregate": self.aggregate,
            "count": self.count,
            "distinct": self.distinct,
            "createindexes": self.create_indexes,
            "listindexes": self.list_indexes,
            "dropindexes": self.drop_indexes,
            "create": self.create,
            "drop": self.drop,
            "listcollections": self.list_collections,
            "listdatabases": self.list_databases,
            "dropdatabase": self.drop_database,
            "committransaction": self.commit_transaction,
            "aborttransaction": self.abort_transaction,
        }

    # --- dispatch ----------------------------------------------------------------------------

    def run(self, database: str, command: Document) -> Document:
        """The reply to one command (errors as `ok: 0` documents)."""
        name = next(iter(command), "")
        try:
            if command.get("autocommit") is False:
                return self._in_transaction(database, name, command)
            handler = self.handlers.get(name.lower())
            if handler is None:
                self.unknown.add(name)
                print(f"wire_server: no such command: {name!r}", file=sys.stderr, flush=True)
                raise CommandError(59, f"no such command: '{name}'")
            if "txnNumber" in command:
                return self._retryable(database, command, handler)
            return handler(database, command)
        except CommandError as exc:
            return exc.reply()
        except Exception as exc:  # mongomock failing: an error reply, and a line in the log
            print(
                f"wire_server: {name!r} failed in the stand-in: {exc!r}",
                file=sys.stderr,
                flush=True,
            )
            return CommandError(1, f"the wire stand-in failed: {exc!r}").reply()

    def _retryable(
        self, database: str, command: Document, handler: Callable[[str, Document], Document]
    ) -> Document:
        if self.replica_set is None and not self.sharded:
            raise CommandError(
                20, "Transaction numbers are only allowed on a replica set member or mongos"
            )
        lsid = command.get("lsid") or {}
        key = (bson.encode({"id": lsid.get("id")}), int(command["txnNumber"]))
        if key in self.retried:
            return copy.deepcopy(self.retried[key])
        reply = handler(database, command)
        if reply.get("ok"):
            self.retried[key] = copy.deepcopy(reply)
        return reply

    # --- transactions ------------------------------------------------------------------------

    def _in_transaction(self, database: str, name: str, command: Document) -> Document:
        """A command of a transaction (`autocommit: false`): applied, its writes undone if the
        transaction aborts; an error aborts it."""
        if self.replica_set is None and not self.sharded:
            raise CommandError(
                20, "Transaction numbers are only allowed on a replica set member or mongos"
            )
        key = _session_key(command)
        number = int(command["txnNumber"])
        if command.get("startTransaction"):
            self._drop_transaction(key)
            self.transactions[key] = Transaction(number)
        transaction = self.transactions.get(key)
        lower = name.lower()
        if lower in ("committransaction", "aborttransaction"):
            return self.handlers[lower](database, command)
        if transaction is None or transaction.number != number or transaction.failed:
            raise _no_such_transaction(number)
        handler = self.handlers.get(lower)
        if handler is None or lower not in IN_TRANSACTION:
            transaction.failed = True
            raise CommandError(
                NOT_IN_TRANSACTION, f"Cannot run '{name}' in a multi-document transaction."
            )
        if lower in WRITES:
            self._keep(transaction, database, command[name])
        try:
            reply = handler(database, command)
        except CommandError:
            transaction.failed = True
            raise
        if not reply.get("ok") or reply.get("writeErrors"):
            transaction.failed = True
        return reply

    def _keep(self, transaction: Transaction, database: str, name: Any) -> None:
        """What a collection holds before a transaction's first write to it."""
        if (database, name) not in transaction.before:
            coll = self.collection(database, name)
            transaction.before[(database, name)] = list(coll.find({}))

    def commit_transaction(self, database: str, command: Document) -> Document:
        transaction = self.transactions.get(_session_key(command))
        number = int(command.get("txnNumber", 0))
        if transaction is None or transaction.number != number:
            raise _no_such_transaction(number)
        if transaction.failed:
            self._abort(_session_key(command))
            raise _no_such_transaction(number)
        transaction.committed = True  # a commit retried by the driver is answered again
        transaction.before.clear()
        return {"ok": 1.0}

    def abort_transaction(self, database: str, command: Document) -> Document:
        transaction = self.transactions.get(_session_key(command))
        if transaction is None or transaction.number != int(command.get("txnNumber", 0)):
            raise _no_such_transaction(int(command.get("txnNumber", 0)))
        self._abort(_session_key(command))
        return {"ok": 1.0}

    def _abort(self, key: bytes) -> None:
        transaction = self.transactions.pop(key, None)
        if transaction is None or transaction.committed:
            return
        for (database, name), before in transaction.before.items():
            coll = self.collection(database, name)
            coll.delete_many({})
            if before:
                coll.insert_many(before)

    def _drop_transaction(self, key: bytes) -> None:
        """A session starting a new transaction, or ending: an open one is aborted."""
        self._abort(key)

    def end_sessions(self, database: str, command: Document) -> Document:
        for lsid in command.get("endSessions") or []:
            self._drop_transaction(bson.encode({"id": lsid.get("id")}))
        return {"ok": 1.0}

    def collection(self, database: str, name: Any) -> Any:
        if not isinstance(name, str) or not name:
            raise CommandError(73, f"Invalid namespace specified '{database}.{name}'")
        return self.client[database][name]

    def exists(self, database: str, name: str) -> bool:
        return name in self.client[database].list_collection_names()

    # --- server -----------------------------------------------------------------------------

    def hello(self, database: str, command: Document) -> Document:
        reply: Document = {
            "helloOk": True,
            "ismaster": True,
            "isWritablePrimary": True,
            "maxBsonObjectSize": MAX_BSON_SIZE,
            "maxMessageSizeBytes": MAX_MESSAGE_SIZE,
            "maxWriteBatchSize": 100_000,
            "localTime": _now(self.offset),
            "logicalSessionTimeoutMinutes": 30,
            "connectionId": next(self._connection_ids),
            "minWireVersion": 0,
            "maxWireVersion": MAX_WIRE_VERSION,
            "readOnly": False,
            "ok": 1.0,
        }
        # no topologyVersion: the driver polls instead of streaming `hello`
        if self.sharded:
            reply["msg"] = "isdbgrid"
        if self.replica_set is not None:
            reply.update(
                setName=self.replica_set,
                setVersion=1,
                hosts=[self.address],
                primary=self.address,
                me=self.address,
                electionId=self.election_id,
                secondary=False,
            )
        return reply

    def build_info(self, database: str, command: Document) -> Document:
        return {
            "version": VERSION,
            "versionArray": [7, 0, 0, 0],
            "gitVersion": "wire-stand-in",
            "maxBsonObjectSize": MAX_BSON_SIZE,
            "storageEngines": ["mongomock"],
            "ok": 1.0,
        }

    def server_status(self, database: str, command: Document) -> Document:
        return {
            "host": self.address,
            "version": VERSION,
            "process": "wire_server",
            "localTime": _now(self.offset),
            "extra_info": {  # as mongod reports them on Linux
                "user_time_us": Int64(int(os.times().user * 1e6)),
                "system_time_us": Int64(int(os.times().system * 1e6)),
            },
            "ok": 1.0,
        }

    # --- writes -----------------------------------------------------------------------------

    def duplicate(
        self, coll: Any, doc: Mapping[str, Any], index: int, *, new: bool = False
    ) -> Document:
        """The writeErrors entry of a duplicate key, naming the index as MongoDB does: `doc`
        is the document that could not be written (`new`: inserted, not an update of the
        stored document with its `_id`)."""
        for name, info in coll.index_information().items():
            keys = list(info["key"])
            value = {k: _dotted(doc, k) for k, _ in keys}
            partial = info.get("partialFilterExpression")
            if name == "_id_":
                clash = new and coll.find_one({"_id": doc.get("_id")}, {"_id": 1}) is not None
            elif info.get("unique") and (partial is None or filter_applies(partial, dict(doc))):
                query = {**value, "_id": {"$ne": doc.get("_id")}}
                clash = coll.find_one(query, {"_id": 1}) is not None
            else:
                continue
            if clash:
                shown = ", ".join(f"{k}: {v!r}" for k, v in value.items())
                return {
                    "index": index,
                    "code": 11000,
                    "errmsg": f"E11000 duplicate key error collection: {coll.full_name} "
                    f"index: {name} dup key: {{ {shown} }}",
                    "keyPattern": dict(keys),
                    "keyValue": value,
                }
        print(
            f"wire_server: a duplicate key in {coll.full_name} no index explains: {dict(doc)!r}"
            f" indexes {coll.index_information()!r}",
            file=sys.stderr,
            flush=True,
        )
        return {"index": index, "code": 11000, "errmsg": "E11000 duplicate key error"}

    def insert(self, database: str, command: Document) -> Document:
        coll = self.collection(database, command["insert"])
        ordered = command.get("ordered", True)
        errors: list[Document] = []
        n = 0
        for index, doc in enumerate(command.get("documents", [])):
            doc.setdefault("_id", ObjectId())
            try:
                check_storable({k: v for k, v in doc.items() if k != "_id"})
                if coll.find_one({"_id": doc["_id"]}, {"_id": 1}) is not None:
                    errors.append(self.duplicate(coll, doc, index, new=True))
                else:
                    coll.insert_one(doc)
                    n += 1
            except Refused as exc:
                errors.append(exc.entry(index))
            except DuplicateKeyError:
                errors.append(self.duplicate(coll, doc, index, new=True))
            if errors and ordered:
                break
        return _write_reply(n, errors)

    def update(self, database: str, command: Document) -> Document:
        coll = self.collection(database, command["update"])
        ordered = command.get("ordered", True)
        now = _now(self.offset)
        errors: list[Document] = []
        n = modified = 0
        upserted: list[Document] = []
        for index, statement in enumerate(command.get("updates", [])):
            try:
                matched, changed, new_id = self._update_one_statement(coll, statement, now)
                n += matched
                modified += changed
                if new_id is not None:
                    n += 1
                    upserted.append({"index": index, "_id": new_id})
            except Refused as exc:
                errors.append(exc.entry(index))
            except _Duplicate as exc:
                # An upsert that matched nothing inserts: its document is new, and may clash
                # on _id (the statement left the collection as it was).
                inserted = bool(statement.get("upsert")) and coll.find_one(statement["q"]) is None
                errors.append(self.duplicate(coll, exc.doc, index, new=inserted))
            if errors and ordered:
                break
        reply = _write_reply(n, errors)
        reply["nModified"] = modified
        if upserted:
            reply["upserted"] = upserted
        return reply

    def _update_one_statement(
        self, coll: Any, statement: Document, now: datetime
    ) -> tuple[int, int, Any]:
        query = _filter_now(dict(statement.get("q") or {}), now)
        update: Any = statement.get("u")
        multi = bool(statement.get("multi"))
        upsert = bool(statement.get("upsert"))
        if statement.get("arrayFilters"):
            raise Refused(2, "the wire stand-in (mongomock) does not implement arrayFilters")
        if isinstance(update, list):
            raise Refused(2, "the wire stand-in (mongomock) does not implement pipeline updates")
        if self.sharded:
            if upsert:
                check_sharded_upsert(query)
            if not multi:
                check_sharded_single_write(query, "update")
        if not _is_operator_update(update):
            if multi:
                raise Refused(9, "multi update is not supported for replacement-style update")
            check_storable({k: v for k, v in (update or {}).items() if k != "_id"})
            return self._apply(coll, query, update, multi=False, upsert=upsert, replace=True)
        check_update(update)
        update = add_to_set_once(_current_date(update, now))
        return self._apply(coll, query, update, multi=multi, upsert=upsert, replace=False)

    def _apply(
        self,
        coll: Any,
        query: Document,
        update: Document,
        *,
        multi: bool,
        upsert: bool,
        replace: bool,
    ) -> tuple[int, int, Any]:
        """One update statement, all or nothing: (matched, modified, upserted _id)."""
        before = list(coll.find(query)) if multi else list(coll.find(query).limit(1))
        try:
            if replace:
                result = coll.replace_one(query, update, upsert=upsert)
            elif multi:
                result = coll.update_many(query, update, upsert=upsert)
            else:
                result = coll.update_one(query, update, upsert=upsert)
            ids = [d["_id"] for d in before]
            if result.upserted_id is not None:
                ids.append(result.upserted_id)
            for doc in coll.find({"_id": {"$in": ids}}):
                check_updated_size(doc)
        except DuplicateKeyError:
            doc = self._restore(coll, before, query, update, upserted=None)
            raise _Duplicate(doc) from None
        except Refused:
            self._restore(coll, before, query, update, upserted=_upserted(locals()))
            raise
        except (TypeError, ValueError, WriteError, OperationFailure) as exc:
            self._restore(coll, before, query, update, upserted=None)
            code = 14 if isinstance(exc, TypeError) else getattr(exc, "code", None) or 2
            raise Refused(int(code), str(exc)) from None
        return result.matched_count, result.modified_count, result.upserted_id

    def _restore(
        self, coll: Any, before: list[Document], query: Document, update: Any, upserted: Any
    ) -> Document:
        """Put back the documents an update failed half-way through; the document that would
        have been written (for a duplicate-key report)."""
        for doc in before:
            coll.replace_one({"_id": doc["_id"]}, doc)
        if upserted is not None:
            coll.delete_one({"_id": upserted})
        if before:
            return _would_be(before[0], update)
        seed = {k: v for k, v in query.items() if not k.startswith("$")}
        return _would_be(seed, update)

    def delete(self, database: str, command: Document) -> Document:
        coll = self.collection(database, command["delete"])
        now = _now(self.offset)
        errors: list[Document] = []
        n = 0
        for index, statement in enumerate(command.get("deletes", [])):
            query = _filter_now(dict(statement.get("q") or {}), now)
            single = int(statement.get("limit", 0)) == 1
            try:
                if single and self.sharded:
                    check_sharded_single_write(query, "delete")
            except Refused as exc:
                errors.append(exc.entry(index))
                if command.get("ordered", True):
                    break
                continue
            if single:
                n += coll.delete_one(query).deleted_count
            else:
                n += coll.delete_many(query).deleted_count
        return _write_reply(n, errors)

    def find_and_modify(self, database: str, command: Document) -> Document:
        coll = self.collection(database, command["findAndModify"])
        now = _now(self.offset)
        query = _filter_now(dict(command.get("query") or {}), now)
        if self.sharded:
            try:
                check_sharded_find_and_modify(query)
            except Refused as exc:
                raise CommandError(exc.code, exc.errmsg) from None
        sort = _sort(command.get("sort"))
        fields = _projection(command.get("fields"))
        cursor = coll.find(query, {"_id": 1})
        if sort:
            cursor = cursor.sort(sort)
        found = next(iter(cursor.limit(1)), None)
        if command.get("remove"):
            if found is None:
                return {"lastErrorObject": {"n": 0}, "value": None, "ok": 1.0}
            value = coll.find_one({"_id": found["_id"]}, fields)
            coll.delete_one({"_id": found["_id"]})
            return {"lastErrorObject": {"n": 1}, "value": value, "ok": 1.0}
        if command.get("arrayFilters"):
            raise CommandError(2, "the wire stand-in (mongomock) does not implement arrayFilters")
        statement = {
            "q": {"_id": found["_id"]} if found is not None else query,
            "u": command.get("update"),
            "upsert": bool(command.get("upsert")) and found is None,
        }
        target = {"_id": found["_id"]} if found is not None else None
        previous = coll.find_one(target, fields) if target is not None else None
        try:
            matched, _, new_id = self._update_one_statement(coll, statement, now)
        except Refused as exc:
            raise CommandError(exc.code, exc.errmsg) from None
        except _Duplicate as exc:
            entry = self.duplicate(coll, exc.doc, 0, new=found is None)  # an upsert inserts
            entry.pop("index")
            entry.pop("code", None)  # the error's own code, given below
            raise CommandError(11000, entry.pop("errmsg"), **entry) from None
        last: Document = {"n": matched or int(new_id is not None)}
        if found is not None:
            last["updatedExisting"] = True
        elif new_id is not None:
            last["updatedExisting"] = False
            last["upserted"] = new_id
        else:
            last["updatedExisting"] = False
        if command.get("new"):
            which = found["_id"] if found is not None else new_id
            value = coll.find_one({"_id": which}, fields) if which is not None else None
        else:
            value = previous
        return {"lastErrorObject": last, "value": value, "ok": 1.0}

    # --- reads ------------------------------------------------------------------------------

    def _open(
        self, namespace: str, documents: Iterator[Document], batch_size: int | None, single: bool
    ) -> Document:
        cursor = Cursor(namespace, documents)
        batch = self._batch(cursor, batch_size if batch_size is not None else FIRST_BATCH)
        cursor_id = 0
        if not single and self._has_more(cursor):
            cursor_id = next(self._cursor_ids)
            self.cursors[cursor_id] = cursor
        return {"cursor": {"firstBatch": batch, "id": Int64(cursor_id), "ns": namespace}, "ok": 1.0}

    @staticmethod
    def _has_more(cursor: Cursor) -> bool:
        if cursor.pending:
            return True
        nxt = next(cursor.documents, None)
        if nxt is None:
            return False
        cursor.pending.append(nxt)
        return True

    @staticmethod
    def _batch(cursor: Cursor, size: int | None) -> list[Document]:
        """Up to `size` documents (0/None: as many as fit in 16 MiB)."""
        batch: list[Document] = []
        total = 0
        while not size or len(batch) < size:
            if cursor.pending:
                doc = cursor.pending.pop()
            else:
                following = next(cursor.documents, None)
                if following is None:
                    break
                doc = following
            length = len(bson.encode(doc))
            if batch and total + length > BATCH_BYTES:
                cursor.pending.append(doc)
                break
            batch.append(doc)
            total += length
        return batch

    def find(self, database: str, command: Document) -> Document:
        name = command["find"]
        coll = self.collection(database, name)
        now = _now(self.offset)
        query = _filter_now(dict(command.get("filter") or {}), now)
        if command.get("collation"):
            raise CommandError(2, "the wire stand-in (mongomock) does not implement collation")
        cursor = coll.find(query, _projection(command.get("projection")))
        sort = _sort(command.get("sort"))
        if sort:
            cursor = cursor.sort(sort)
        if command.get("skip"):
            cursor = cursor.skip(int(command["skip"]))
        limit = int(command.get("limit") or 0)
        single = bool(command.get("singleBatch")) or limit < 0
        if limit:
            cursor = cursor.limit(abs(limit))
        batch_size = command.get("batchSize")
        try:
            documents = iter(list(cursor))
        except (OperationFailure, NotImplementedError, TypeError, ValueError) as exc:
            raise CommandError(getattr(exc, "code", None) or 2, str(exc)) from None
        return self._open(
            f"{database}.{name}",
            documents,
            None if batch_size is None else int(batch_size),
            single,
        )

    def get_more(self, database: str, command: Document) -> Document:
        cursor_id = int(command["getMore"])
        cursor = self.cursors.get(cursor_id)
        if cursor is None:
            raise CommandError(43, f"cursor id {cursor_id} not found")
        batch = self._batch(cursor, int(command.get("batchSize") or 0))
        if not self._has_more(cursor):
            del self.cursors[cursor_id]
            cursor_id = 0
        return {
            "cursor": {"nextBatch": batch, "id": Int64(cursor_id), "ns": cursor.namespace},
            "ok": 1.0,
        }

    def kill_cursors(self, database: str, command: Document) -> Document:
        killed, missing = [], []
        for cursor_id in command.get("cursors", []):
            if self.cursors.pop(int(cursor_id), None) is not None:
                killed.append(cursor_id)
            else:
                missing.append(cursor_id)
        return {
            "cursorsKilled": killed,
            "cursorsNotFound": missing,
            "cursorsAlive": [],
            "cursorsUnknown": [],
            "ok": 1.0,
        }

    def aggregate(self, database: str, command: Document) -> Document:
        name = command["aggregate"]
        pipeline = _pipeline_now(list(command.get("pipeline") or []), _now(self.offset))
        if pipeline and "$changeStream" in pipeline[0]:
            raise CommandError(40573, "The $changeStream stage is only supported on replica sets")
        if not isinstance(name, str):
            raise CommandError(2, "the wire stand-in has no database-level aggregations")
        coll = self.collection(database, name)
        try:
            documents = iter(list(coll.aggregate(pipeline)))
        except (OperationFailure, NotImplementedError, TypeError, ValueError) as exc:
            raise CommandError(getattr(exc, "code", None) or 2, str(exc)) from None
        batch_size = (command.get("cursor") or {}).get("batchSize")
        return self._open(
            f"{database}.{name}",
            documents,
            None if batch_size is None else int(batch_size),
            False,
        )

    def count(self, database: str, command: Document) -> Document:
        coll = self.collection(database, command["count"])
        query = dict(command.get("query") or {})
        n = coll.count_documents(query) if query else coll.estimated_document_count()
        n = max(0, n - int(command.get("skip") or 0))
        if command.get("limit"):
            n = min(n, abs(int(command["limit"])))
        return {"n": n, "ok": 1.0}

    def distinct(self, database: str, command: Document) -> Document:
        coll = self.collection(database, command["distinct"])
        values = coll.distinct(str(command["key"]), dict(command.get("query") or {}))
        return {"values": list(values), "ok": 1.0}

    # --- indexes and collections -----------------------------------------------------------

    def create_indexes(self, database: str, command: Document) -> Document:
        name = command["createIndexes"]
        created = not self.exists(database, name)
        coll = self.collection(database, name)
        if created:
            self.client[database].create_collection(name)
        before = len(coll.index_information())
        for spec in command.get("indexes", []):
            keys = [(str(k), d) for k, d in dict(spec["key"]).items()]
            options = {k: v for k, v in spec.items() if k not in ("key", "v")}
            existing = coll.index_information().get(options.get("name"))
            if existing is not None:
                same = list(existing["key"]) == keys and all(
                    existing.get(k) == v for k, v in options.items() if k != "name"
                )
                if not same:
                    raise CommandError(
                        86 if list(existing["key"]) != keys else 85,
                        f"An existing index has the same name as the requested index. "
                        f"Requested index: {dict(spec)}, existing index: {existing}",
                    )
                continue
            try:
                if self.sharded:
                    check_sharded_unique_index(keys, bool(options.get("unique")))
                if options.get("partialFilterExpression") is not None:
                    check_partial_filter(options["partialFilterExpression"])
            except Refused as exc:
                raise CommandError(exc.code, exc.errmsg) from None
            try:
                create_index(coll, keys, options)
            except DuplicateKeyError as exc:
                raise CommandError(11000, f"E11000 duplicate key error: {exc}") from None
            except OperationFailure as exc:
                raise CommandError(getattr(exc, "code", None) or 85, str(exc)) from None
        return {
            "createdCollectionAutomatically": created,
            "numIndexesBefore": before,
            "numIndexesAfter": len(coll.index_information()),
            "ok": 1.0,
        }

    def list_indexes(self, database: str, command: Document) -> Document:
        name = command["listIndexes"]
        if not self.exists(database, name):
            raise CommandError(26, f"ns does not exist: {database}.{name}")
        specs = []
        for index, info in self.collection(database, name).index_information().items():
            spec: Document = {"v": 2, "key": dict(info["key"]), "name": index}
            spec.update({k: v for k, v in info.items() if k not in ("key", "v", "ns")})
            specs.append(spec)
        return self._open(f"{database}.{name}", iter(specs), None, False)

    def drop_indexes(self, database: str, command: Document) -> Document:
        name = command["dropIndexes"]
        if not self.exists(database, name):
            raise CommandError(26, f"ns not found {database}.{name}")
        coll = self.collection(database, name)
        before = len(coll.index_information())
        which = command.get("index")
        if which == "*":
            coll.drop_indexes()
        else:
            if isinstance(which, dict):
                wanted = list(which.items())
                which = next(
                    (n for n, i in coll.index_information().items() if list(i["key"]) == wanted),
                    None,
                )
            if which not in coll.index_information() or which == "_id_":
                raise CommandError(27, f"index not found with name [{which}]")
            coll.drop_index(which)
        return {"nIndexesWas": before, "ok": 1.0}

    def create(self, database: str, command: Document) -> Document:
        name = command["create"]
        if self.exists(database, name):
            raise CommandError(48, f"Collection {database}.{name} already exists.")
        self.client[database].create_collection(name)
        return {"ok": 1.0}

    def drop(self, database: str, command: Document) -> Document:
        name = command["drop"]
        was = len(self.collection(database, name).index_information())
        self.client[database].drop_collection(name)
        for cursor_id in [
            i for i, c in self.cursors.items() if c.namespace == f"{database}.{name}"
        ]:
            del self.cursors[cursor_id]
        return {"nIndexesWas": was, "ns": f"{database}.{name}", "ok": 1.0}

    def list_collections(self, database: str, command: Document) -> Document:
        wanted = dict(command.get("filter") or {})
        infos = []
        for name in sorted(self.client[database].list_collection_names()):
            info = {
                "name": name,
                "type": "collection",
                "options": {},
                "info": {"readOnly": False},
                "idIndex": {"v": 2, "key": {"_id": 1}, "name": "_id_"},
            }
            if filter_applies(wanted, info):
                infos.append(
                    {"name": name, "type": "collection"} if command.get("nameOnly") else info
                )
        return self._open(f"{database}.$cmd.listCollections", iter(infos), None, False)

    def list_databases(self, database: str, command: Document) -> Document:
        names = [n for n in self.client.list_database_names() if n]
        if command.get("nameOnly"):
            return {"databases": [{"name": n} for n in names], "ok": 1.0}
        return {
            "databases": [{"name": n, "sizeOnDisk": 0, "empty": False} for n in names],
            "totalSize": 0,
            "ok": 1.0,
        }

    def drop_database(self, database: str, command: Document) -> Document:
        self.client.drop_database(database)
        prefix = f"{database}."
        for cursor_id in [i for i, c in self.cursors.items() if c.namespace.startswith(prefix)]:
            del self.cursors[cursor_id]
        return {"dropped": database, "ok": 1.0}


def create_index(coll: Any, keys: list[tuple[str, Any]], options: Document) -> None:
    """mongomock's create_index, except that a unique partial index checks only the documents
    its filter selects (mongomock checks them all)."""
    partial = options.get("partialFilterExpression")
    if not options.get("unique") or partial is None:
        coll.create_index(keys, **options)
        return
    seen: set[bytes] = set()
    for doc in coll.find(partial):
        key = bson.encode({"k": [_dotted(doc, k) for k, _ in keys]})
        if key in seen:
            raise DuplicateKeyError("E11000 duplicate key error", 11000)
        seen.add(key)
    coll.create_index(keys, **{**options, "unique": False})
    name = options.get("name") or _index_name(keys)
    coll._store.indexes[name]["unique"] = True


def no_ttl_monitor() -> None:
    """Expired documents stay: mongomock would delete them at every call by the wall clock,
    which the tests' manual clocks do not follow (MongoDB deletes them every 60 s)."""
    from mongomock.store import CollectionStore

    CollectionStore._remove_expired_documents = lambda self: None  # type: ignore[method-assign]


class _Duplicate(Exception):
    def __init__(self, doc: Document) -> None:
        super().__init__("duplicate key")
        self.doc = doc


def _upserted(scope: Mapping[str, Any]) -> Any:
    result = scope.get("result")
    return getattr(result, "upserted_id", None)


def _dotted(doc: Mapping[str, Any], path: str) -> Any:
    value: Any = doc
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _would_be(seed: Mapping[str, Any], update: Any) -> Document:
    """The document an update would write into `seed` (for naming a duplicate key)."""
    scratch: Any = mongomock.MongoClient()["scratch"]["c"]
    doc = copy.deepcopy(dict(seed))
    doc.setdefault("_id", ObjectId())
    scratch.insert_one(doc)
    try:
        if _is_operator_update(update):
            scratch.update_one({"_id": doc["_id"]}, update)
        else:
            scratch.replace_one({"_id": doc["_id"]}, {**update, "_id": doc["_id"]})
    except Exception:  # the duplicate is reported either way
        return doc
    found: Document = scratch.find_one({"_id": doc["_id"]})
    return found


def _write_reply(n: int, errors: list[Document]) -> Document:
    reply: Document = {"n": n, "ok": 1.0}
    if errors:
        reply["writeErrors"] = errors
    return reply


# --- the server -------------------------------------------------------------------------------


class WireServer:
    """The TCP side: one task per connection, each command answered in turn."""

    def __init__(self, stand_in: StandIn) -> None:
        self.stand_in = stand_in
        self._ids = itertools.count(1)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self._server = await asyncio.start_server(self._serve, host, port)
        bound = int(self._server.sockets[0].getsockname()[1])
        self.stand_in.address = f"{host}:{bound}"
        return bound

    async def close(self) -> None:
        """Stop listening and close every connection."""
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()

    async def serve_forever(self) -> None:
        assert self._server is not None
        async with self._server:
            await self._server.serve_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                request_id, _, op_code, body = await read_message(reader)
                request = parse_message(request_id, op_code, body)
                reply = self.stand_in.run(request.database, request.command)
                if request.more_to_come:
                    continue
                writer.write(encode_reply(request, reply, next(self._ids)))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except Exception as exc:  # a message we cannot parse: close, as mongod does
            print(f"wire_server: closing a connection: {exc!r}", file=sys.stderr, flush=True)
        finally:
            self._writers.discard(writer)
            writer.close()


@contextlib.contextmanager
def running(*options: str, stderr: Any = None) -> Iterator[str]:
    """A stand-in server in a process of its own, for as long as the block runs: its URI.
    `options` are command-line options (`"--replica-set", "rs0"`); `stderr` a file for its
    log (default: inherited)."""
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--port", "0", *options],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # returns "" if the process dies first
        if not line.startswith("PORT "):
            raise RuntimeError(f"the wire stand-in did not start: {line!r}")
        yield f"mongodb://127.0.0.1:{int(line.split()[1])}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


async def serve(port: int, replica_set: str | None, sharded: bool, clock_offset_s: float) -> None:
    no_ttl_monitor()
    stand_in = StandIn(replica_set=replica_set, sharded=sharded, clock_offset_s=clock_offset_s)
    server = WireServer(stand_in)
    bound = await server.start(port=port)
    print(f"PORT {bound}", flush=True)
    await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    parser.add_argument("--replica-set", default=None, help="answer as this set's primary")
    parser.add_argument(
        "--sharded",
        action="store_true",
        help="answer as a mongos, every collection sharded on {_id: 'hashed'}",
    )
    parser.add_argument("--clock-offset-s", type=float, default=0.0)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port, args.replica_set, args.sharded, args.clock_offset_s))


if __name__ == "__main__":
    main()
