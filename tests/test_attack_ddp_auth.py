"""Attacks on the DDP endpoint and on token auth (issue 19): revoked tokens over open DDP
sessions and long polls, broken or unsafe tokens files, job data EJSON cannot carry, hostile
logins and frames. Everything goes through a real uvicorn on 127.0.0.1, a real WebSocket
client (test_ddp.session) or node.js's ddp client, and `jobcollection serve`'s entry point.

Nothing waits for time to pass: a tokens file is checked again by `auth.check()` where the
test drives it, and where the file watcher itself is under test the test waits, bounded, for
what it must cause (the session closed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import random
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from bson import Binary, Code, Decimal128, MaxKey, MinKey, ObjectId, Regex, Timestamp
from bson.dbref import DBRef

from conftest import MakeJC
from helpers import stored
from jobcollection import InvalidArgument, JobCollection
from jobcollection.cli import main
from jobcollection.model.constants import METHODS
from jobcollection.remote import TokenAuth, create_app, ejson, hash_token
from jobcollection.remote.ddp import LOGGED_OUT
from remote_helpers import serving
from test_ddp import DDP, ROOT, meteor_error, needs_node, node, session
from test_remote_processes import LINE_TIMEOUT, Applied

WORKER, ADMIN = "worker-token", "admin-token"


def write_tokens(path: Path, *lines: str, mode: int = 0o600) -> None:
    """A tokens file of these lines, with this mode."""
    path.write_text("".join(f"{line}\n" for line in lines))
    path.chmod(mode)


def make_private(path: Path) -> None:
    path.chmod(0o600)


def line(user: str, token: str, *roles: str) -> str:
    return " ".join([user, hash_token(token), *roles])


GOOD = (line("tester", ADMIN, "admin"), line("worker-1", WORKER, "worker"))


@pytest.fixture
def tokens(tmp_path: Path) -> Path:
    path = tmp_path / "tokens"
    write_tokens(path, *GOOD)
    return path


@contextlib.asynccontextmanager
async def served(
    jc: JobCollection, auth: TokenAuth, **options: Any
) -> AsyncIterator[tuple[str, int]]:
    """jc's remote API with DDP, the users and roles `auth` reads: its URL and port."""
    for role in ("admin", "worker"):
        jc.allow(**{role: auth.role_rule(role)})
    async with serving(create_app(jc, auth=auth, ddp=True, **options)) as url:
        yield url, int(url.rsplit(":", 1)[1])


class Records(logging.Handler):
    """The records of some loggers, kept while the block runs."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def at(self, level: int) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno == level]

    def tracebacks(self) -> list[str]:
        return [r.getMessage() for r in self.records if r.exc_info]


@pytest.fixture
def logs() -> Iterator[Records]:
    """What jobcollection and uvicorn log (uvicorn's own loggers do not reach caplog): a
    traceback there is an input that crashed something."""
    handler = Records()
    names = ("jobcollection", "uvicorn.error", "uvicorn.asgi")
    for name in names:
        logging.getLogger(name).addHandler(handler)
    try:
        yield handler
    finally:
        for name in names:
            logging.getLogger(name).removeHandler(handler)


async def logged_in(ddp: DDP, token: str) -> Any:
    answer = await ddp.call("login", {"resume": token})
    assert "result" in answer, answer
    return answer["result"]["id"]


# --- 2. revocation reaches open sessions and long polls -----------------------------------------


async def test_a_revoked_token_logs_its_ddp_session_out_and_closes_it(
    make_jc: MakeJC, tokens: Path, logs: Records
) -> None:
    jc = await make_jc(root=ROOT)
    job_id = await jc.create_job("t", {}).save()
    auth = TokenAuth.from_file(tokens, check_interval_s=3600)  # only the test checks it
    async with served(jc, auth) as (url, port), session(port) as ddp:
        assert await logged_in(ddp, WORKER) == "worker-1"
        assert (await ddp.call(f"{ROOT}_getJob", job_id))["result"]["_id"] == job_id
        write_tokens(tokens, GOOD[0])  # the worker's line removed
        assert auth.check() is True
        assert await ddp.closed() == LOGGED_OUT
        async with httpx.AsyncClient(base_url=url) as http:
            answer = await http.get("/info", headers={"authorization": f"Bearer {WORKER}"})
            assert answer.status_code == 401
    assert (await stored(jc, job_id))["status"] == "ready"
    assert not logs.tracebacks()


async def test_calls_sent_after_a_revocation_are_refused_and_never_run(
    make_jc: MakeJC, tokens: Path
) -> None:
    """Before the watcher looks (it never does here), the next call reads the file: it is
    refused with Meteor's logged-out error, the session closes, and the calls queued behind
    it never run."""
    jc = await make_jc(root=ROOT)
    ids = [await jc.create_job("t", {"n": n}).save() for n in range(3)]
    auth = TokenAuth.from_file(tokens, check_interval_s=3600)
    async with served(jc, auth) as (_, port), session(port) as ddp:
        await logged_in(ddp, WORKER)
        write_tokens(tokens, GOOD[0])
        for n in range(3):
            call = {"msg": "method", "id": f"w{n}", "method": f"{ROOT}_getWork", "params": ["t"]}
            await ddp.send(call)
        first = await ddp.receive()
        assert first == {"msg": "result", "id": "w0", "error": meteor_error(403, LOGGED_OUT)}
        assert await ddp.receive() == {"msg": "updated", "methods": ["w0"]}
        assert await ddp.closed() == LOGGED_OUT
    for job_id in ids:
        assert (await stored(jc, job_id))["status"] == "ready"


async def test_the_file_watcher_closes_an_idle_session_unprompted(
    make_jc: MakeJC, tokens: Path
) -> None:
    jc = await make_jc(root=ROOT)
    auth = TokenAuth.from_file(tokens)  # the default: checked every 0.5 s while subscribed
    async with served(jc, auth) as (_, port), session(port) as ddp:
        await logged_in(ddp, WORKER)
        await ddp.send({"msg": "ping", "id": "p"})
        assert await ddp.receive() == {"msg": "pong", "id": "p"}
        changed = time.monotonic()
        write_tokens(tokens, GOOD[0])
        assert await ddp.closed() == LOGGED_OUT  # nothing sent: the watcher found it
        assert time.monotonic() - changed < 5  # about 0.5 s; generous for a loaded machine


async def test_a_session_whose_token_stays_is_not_disturbed_by_other_changes(
    make_jc: MakeJC, tokens: Path
) -> None:
    jc = await make_jc(root=ROOT)
    auth = TokenAuth.from_file(tokens, check_interval_s=3600)
    async with served(jc, auth) as (_, port), session(port) as ddp:
        await logged_in(ddp, WORKER)
        write_tokens(tokens, *GOOD, line("other", "other-token", "worker"))
        assert auth.check() is True
        assert (await ddp.call(f"{ROOT}_getWork", "t"))["result"] == []
        await ddp.send({"msg": "ping", "id": "still"})
        assert await ddp.receive() == {"msg": "pong", "id": "still"}


@pytest.mark.parametrize("change", ["given-to-another-user", "after-logging-in-again"])
async def test_only_the_token_a_session_is_logged_in_with_counts(
    make_jc: MakeJC, tokens: Path, change: str
) -> None:
    """A token given to another user ends the session as a revocation does; a session that
    logged in again (or out) no longer answers for the token it left."""
    jc = await make_jc(root=ROOT)
    auth = TokenAuth.from_file(tokens, check_interval_s=3600)
    async with served(jc, auth) as (_, port), session(port) as ddp:
        await logged_in(ddp, WORKER)
        if change == "given-to-another-user":
            write_tokens(tokens, GOOD[0], line("worker-2", WORKER, "worker"))
            assert auth.check() is True
            assert await ddp.closed() == LOGGED_OUT
            return
        assert await logged_in(ddp, ADMIN) == "tester"
        write_tokens(tokens, GOOD[0])  # the worker's token revoked: not this session's now
        assert auth.check() is True
        assert (await ddp.call(f"{ROOT}_getWork", "t"))["result"] == []
        assert "result" not in await ddp.call("logout")
        write_tokens(tokens, line("tester", "new-admin-token", "admin"))
        assert auth.check() is True
        refused = await ddp.call(f"{ROOT}_getWork", "t")
        assert refused["error"] == {
            **meteor_error(403, "Method not authorized"),
            "details": ("Authenticated user is not permitted to invoke this method."),
        }
        await ddp.send({"msg": "ping", "id": "alive"})  # logged out, not closed
        assert await ddp.receive() == {"msg": "pong", "id": "alive"}


class Consulted(TokenAuth):
    """TokenAuth that says when it was asked about a request."""

    asked: asyncio.Event

    def __call__(self, connection: Any) -> Any:
        self.asked.set()
        return super().__call__(connection)


async def test_a_long_poll_whose_token_is_revoked_ends_with_401(
    make_jc: MakeJC, tokens: Path
) -> None:
    jc = await make_jc(root=ROOT)
    auth = Consulted.from_file(tokens, check_interval_s=3600)
    assert isinstance(auth, Consulted)
    auth.asked = asyncio.Event()
    async with served(jc, auth) as (url, _), httpx.AsyncClient(base_url=url) as http:
        poll = asyncio.create_task(
            http.post(
                "/wait",
                json={"types": ["t"], "timeout": 30},
                headers={"authorization": f"Bearer {WORKER}"},
                timeout=40,
            )
        )
        await asyncio.wait_for(auth.asked.wait(), LINE_TIMEOUT)  # the poll is past its check
        write_tokens(tokens, GOOD[0])
        auth.check()
        answer = await asyncio.wait_for(poll, LINE_TIMEOUT)
        assert answer.status_code == 401
        assert answer.json()["error"]["message"] == "the bearer token was revoked"


@needs_node
async def test_a_node_worker_whose_token_is_revoked_stops_claiming(
    make_jc: MakeJC, tokens: Path, tmp_path: Path
) -> None:
    """Meteor's way: the connection closes; the ddp client reconnects, its login is refused,
    and job-collection's README worker throws. A job saved afterwards stays ready."""
    jc = await make_jc(root=ROOT)
    done = Applied(jc, "jobDone")
    first = await jc.create_job("sendEmail", {"address": "a@example.com"}).save()
    auth = TokenAuth.from_file(tokens, check_interval_s=3600)
    async with (
        served(jc, auth) as (_, port),
        node(tmp_path, port, "worker.js", token=WORKER) as worker,
    ):
        await done.reach(1, worker)
        write_tokens(tokens, GOOD[0])
        assert auth.check() is True
        later = await jc.create_job("sendEmail", {"address": "b@example.com"}).save()
        assert await worker.exited() != 0  # its login is refused when it reconnects
    assert done.ids == [first]
    assert (await stored(jc, later))["status"] == "ready"


# --- 7, 15, 16. the tokens file ---------------------------------------------------------------


def spoil_line(path: Path) -> None:
    write_tokens(path, *GOOD, "just-a-user")


def spoil_hash(path: Path) -> None:
    write_tokens(path, *GOOD, "eve not-a-sha256")


def spoil_role(path: Path) -> None:
    write_tokens(path, *GOOD, line("eve", "eve-token", "overlord"))


def spoil_twice(path: Path) -> None:
    write_tokens(path, *GOOD, line("eve", ADMIN, "admin"))


def spoil_encoding(path: Path) -> None:
    path.write_bytes(path.read_bytes() + b"eve \xff\xfe\n")


def spoil_missing(path: Path) -> None:
    path.unlink()


def spoil_group_writable(path: Path) -> None:
    write_tokens(path, *GOOD, line("eve", "eve-token", "admin"), mode=0o620)


def spoil_world_writable(path: Path) -> None:
    write_tokens(path, *GOOD, line("eve", "eve-token", "admin"), mode=0o606)


def spoil_directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


def spoil_fifo(path: Path) -> None:
    """A named pipe: reading it would block the server until someone writes to it."""
    path.unlink()
    os.mkfifo(path, 0o600)


SPOILED = {
    spoil_line: ":3: must be `<user id> <sha256 hex of the token> [role ...]`",
    spoil_hash: ":3: must be the 64-character SHA-256 hex digest",
    spoil_role: ":3: unknown role 'overlord'",
    spoil_twice: ":3: gives the token of line 1 to another user",
    spoil_encoding: ":3: is not UTF-8 text",
    spoil_missing: ": cannot be read: No such file or directory",
    spoil_group_writable: ": is writable by its group (mode 620), so whoever can write it",
    spoil_world_writable: ": is writable by others (mode 606), so whoever can write it",
    spoil_directory: ": is not a regular file",
    spoil_fifo: ": is not a regular file",
}
POSIX_ONLY = pytest.mark.skipif(os.name != "posix", reason="file modes")


@POSIX_ONLY
@pytest.mark.parametrize("spoil", list(SPOILED), ids=lambda f: f.__name__)
async def test_a_spoiled_tokens_file_keeps_the_last_good_tokens_and_logs_one_error(
    make_jc: MakeJC, tokens: Path, logs: Records, spoil: Any
) -> None:
    jc = await make_jc(root=ROOT)
    auth = TokenAuth.from_file(tokens, check_interval_s=3600)
    async with served(jc, auth) as (url, port), httpx.AsyncClient(base_url=url) as http:
        spoil(tokens)
        for token, status in [(ADMIN, 200), ("eve-token", 401), ("nobody", 401)] * 3:
            answer = await http.get("/info", headers={"authorization": f"Bearer {token}"})
            assert answer.status_code == status, (token, answer.text)
        async with session(port) as ddp:
            assert await logged_in(ddp, WORKER) == "worker-1"
            refused = await ddp.call("login", {"resume": "eve-token"})
            assert refused["error"] == meteor_error(403, LOGGED_OUT)
        assert auth.check() is False
    [error] = logs.at(logging.ERROR)
    assert f"{tokens}{SPOILED[spoil]}" in error, error
    assert "the last good tokens stay in force" in error
    assert not logs.tracebacks()


@POSIX_ONLY
@pytest.mark.parametrize("spoil", list(SPOILED), ids=lambda f: f.__name__)
def test_a_tokens_file_that_was_never_good_is_refused_at_start(tokens: Path, spoil: Any) -> None:
    spoil(tokens)
    with pytest.raises(InvalidArgument) as refused:
        TokenAuth.from_file(tokens)
    assert f"{tokens}{SPOILED[spoil]}" in str(refused.value)


@POSIX_ONLY
@pytest.mark.parametrize(
    ("mode", "fix"), [(0o664, "chmod go-w"), (0o666, "chmod go-w"), (0o640, None)]
)
def test_serve_refuses_a_writable_tokens_file_in_one_line(
    tokens: Path, capsys: pytest.CaptureFixture[str], mode: int, fix: str | None
) -> None:
    tokens.chmod(mode)
    if fix is None:  # readable by the group is not refused (only writable is)
        assert TokenAuth.from_file(tokens).user_for(ADMIN) == "tester"
        return
    assert main(["serve", "--tokens", str(tokens), "--port", "0"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"jobcollection serve: --tokens: {tokens}: is writable by")
    assert f"`{fix} {tokens}`" in err and f"`chmod 600 {tokens}`" in err


def test_serve_refuses_a_missing_or_malformed_tokens_file_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope"
    assert main(["serve", "--tokens", str(missing), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert (
        err
        == f"jobcollection serve: --tokens: {missing}: cannot be read: No such file or directory\n"
    )
    malformed = tmp_path / "tokens"
    write_tokens(malformed, "# users", "bob")
    assert main(["serve", "--tokens", str(malformed), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"jobcollection serve: --tokens: {malformed}:2: must be `<user id>")
    assert err.count("\n") == 1


def test_a_same_size_rewrite_keeping_the_mtime_is_read(tokens: Path) -> None:
    """Rotation by content: the file's size and mtime say nothing changed."""
    auth = TokenAuth.from_file(tokens)
    before = tokens.stat()
    assert auth.user_for(WORKER) == "worker-1"
    write_tokens(tokens, GOOD[0], line("worker-1", "worker-tokeN", "worker"))
    os.utime(tokens, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = tokens.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert auth.user_for(WORKER) is None
    assert auth.user_for("worker-tokeN") == "worker-1"


@POSIX_ONLY
async def test_tokens_added_to_a_file_made_writable_are_not_trusted(
    make_jc: MakeJC, tokens: Path, logs: Records
) -> None:
    jc = await make_jc(root=ROOT)
    auth = TokenAuth.from_file(tokens, check_interval_s=3600)
    async with served(jc, auth) as (url, _), httpx.AsyncClient(base_url=url) as http:
        spoil_world_writable(tokens)  # someone added eve as admin
        assert (
            await http.get("/info", headers={"authorization": "Bearer eve-token"})
        ).status_code == 401
        make_private(tokens)  # the operator fixes the mode (and the file, now trusted, says eve)
        assert (
            await http.get("/info", headers={"authorization": "Bearer eve-token"})
        ).status_code == 200
    [error] = logs.at(logging.ERROR)
    assert "chmod go-w" in error


# --- 8. job data EJSON cannot carry ---------------------------------------------------------------

UNSENDABLE = {
    "regex": (Regex("^a", "i"), {"$regex": "^a", "$options": "i"}),
    "pattern": (re.compile("^a"), None),
    "minKey": (MinKey(), {"$minKey": 1}),
    "maxKey": (MaxKey(), {"$maxKey": 1}),
    "timestamp": (Timestamp(1, 2), {"$timestamp": {"t": 1, "i": 2}}),
    "decimal": (Decimal128("1.5"), {"$numberDecimal": "1.5"}),
    "dbref": (DBRef("c", ObjectId()), {"$ref": "c", "$id": 1}),
    "code": (Code("f()"), {"$code": "f()"}),
    "set": ({1, 2}, None),
}


@pytest.mark.parametrize("kind", list(UNSENDABLE))
async def test_values_ejson_cannot_carry_are_refused_at_save_naming_the_path(
    make_jc: MakeJC, kind: str
) -> None:
    python_value, json_value = UNSENDABLE[kind]
    jc = await make_jc(root=ROOT)
    with pytest.raises(
        InvalidArgument, match=r"data\.items\[1\]\.v is of type \w+, which cannot be stored"
    ):
        jc.create_job("t", {"items": [1, {"v": python_value}]})
    job_id = await jc.create_job("t", {}).save()
    [job] = await jc.get_work("t")
    with pytest.raises(InvalidArgument, match=r"result\.v is of type \w+, which cannot be stored"):
        await job.done({"v": python_value})
    if json_value is None:
        return
    jc.allow(admin=["tester"])
    async with (
        served(jc, TokenAuth.from_tokens({ADMIN: "tester"})) as (url, _),
        httpx.AsyncClient(base_url=url, headers={"authorization": f"Bearer {ADMIN}"}) as http,
    ):
        doc = {"type": "t", "data": {"items": [1, {"v": json_value}]}}
        answer = await http.post("/methods/jobSave", json={"params": [doc]})
        assert answer.status_code == 400, answer.text
        assert refused_for(answer.json()["error"]["message"], "data.items[1].v")
        done = await http.post(
            "/methods/jobDone",
            json={
                "params": [{"$oid": str(job_id)}, {"$oid": str(job.doc.run_id)}, {"v": json_value}]
            },
        )
        assert done.status_code == 400, done.text
        assert refused_for(done.json()["error"]["message"], "result.v")
    assert await jc.collection.count_documents({}) == 1
    assert (await stored(jc, job_id))["status"] == "running"


def refused_for(message: str, path: str) -> bool:
    """Whether a 400's message refuses a value EJSON cannot carry: by its path (the shared
    check of what may be stored) or as an Extended JSON value the HTTP codec does not read."""
    return f"{path} is of type " in message or "values are not accepted" in message


def spoil_data(value: Any) -> dict[str, Any]:
    """An update storing `value` in a job's data as something other than this library would
    (a v1.x application, the mongo shell)."""
    return {"$set": {"data.bad": {"deep": [value]}}}


async def test_a_claimed_job_ejson_cannot_carry_is_failed_and_the_session_lives_on(
    make_jc: MakeJC, tokens: Path, logs: Records
) -> None:
    jc = await make_jc(root=ROOT)
    poison = await jc.create_job("t", {"n": 0}).priority("high").save()
    good = await jc.create_job("t", {"n": 1}).save()
    await jc.collection.update_one({"_id": poison}, spoil_data(Decimal128("1.5")))
    auth = TokenAuth.from_file(tokens, check_interval_s=3600)
    async with served(jc, auth) as (_, port), session(port) as ddp:
        await logged_in(ddp, WORKER)
        claimed = (await ddp.call(f"{ROOT}_getWork", "t", {"maxJobs": 2}))["result"]
        assert [doc["_id"] for doc in claimed] == [good]
        assert (await ddp.call(f"{ROOT}_getWork", "t", {"maxJobs": 2}))["result"] == []
        await logged_in(ddp, ADMIN)
        unsendable = await ddp.call(f"{ROOT}_getJob", poison)  # not a claim: a 500, no more
        assert unsendable["error"]["error"] == 500
        assert "data.bad.deep[0]" in unsendable["error"]["details"]
        await ddp.send({"msg": "ping", "id": "alive"})
        assert await ddp.receive() == {"msg": "pong", "id": "alive"}
    doc = await stored(jc, poison)
    assert doc["status"] == "failed"
    [failure] = doc["failures"]
    assert failure["value"] == (
        "the job cannot be sent to a DDP worker: data.bad.deep[0]: EJSON has no form for Decimal128"
    )
    assert (await stored(jc, good))["status"] == "running"
    assert not logs.tracebacks()


async def test_ids_dates_bytes_and_uuids_reach_a_ddp_worker(make_jc: MakeJC, tokens: Path) -> None:
    jc = await make_jc(root=ROOT)
    at = datetime(2026, 5, 6, 7, 8, 9, 123000, tzinfo=UTC)
    ref, raw, key = ObjectId(), b"\x00\xff", uuid.UUID(int=7)
    assert ejson.dumps(key) == ejson.dumps(key.bytes)  # a client with uuidRepresentation
    data = {"ref": ref, "at": at, "raw": raw, "list": [ref, at, raw]}
    job_id = await jc.create_job("t", data).save()
    await jc.collection.update_one({"_id": job_id}, {"$set": {"data.key": Binary.from_uuid(key)}})
    auth = TokenAuth.from_file(tokens, check_interval_s=3600)
    async with served(jc, auth) as (_, port), session(port) as ddp:
        await logged_in(ddp, WORKER)
        [doc] = (await ddp.call(f"{ROOT}_getWork", "t"))["result"]
    assert doc["_id"] == job_id
    assert doc["data"] == {**data, "key": key.bytes}


@needs_node
async def test_a_node_worker_skips_a_poison_job_and_works_the_next(
    make_jc: MakeJC, tmp_path: Path, tokens: Path
) -> None:
    """job-collection's README worker: the job it could not read is failed, not sent, and
    its session goes on to complete the next one."""
    jc = await make_jc(root=ROOT)
    done, failed = Applied(jc, "jobDone"), Applied(jc, "jobFail")
    poison = await jc.create_job("sendEmail", {"address": "p@example.com"}).priority("high").save()
    good = await jc.create_job("sendEmail", {"address": "g@example.com"}).save()
    await jc.collection.update_one({"_id": poison}, spoil_data(Regex("^x")))
    auth = TokenAuth.from_file(tokens, check_interval_s=3600)
    async with (
        served(jc, auth) as (_, port),
        node(tmp_path, port, "worker.js", token=WORKER) as worker,
    ):
        await done.reach(1, worker)
        await failed.reach(1, worker)
    assert done.ids == [good] and failed.ids == [poison]
    assert (await stored(jc, poison))["status"] == "failed"
    assert (await stored(jc, good))["status"] == "completed"


# --- 13, 14, and what else an attacker sends ---------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        r'{"msg":"method","id":"1","method":"login","params":[{"resume":"\ud800"}]}',
        r'{"msg":"method","id":"1","method":"login","params":[{"resume":"x\udfff\ud800y"}]}',
        '{"msg":"method","id":"1","method":"login","params":[{"resume":"\u00e9\u20ac\U0001f600"}]}',
    ],
    ids=["lone-high", "reversed-pair", "valid-unicode"],
)
async def test_a_login_with_a_token_that_is_not_text_is_refused_with_403(
    make_jc: MakeJC, tokens: Path, logs: Records, frame: str
) -> None:
    jc = await make_jc(root=ROOT)
    auth = TokenAuth.from_file(tokens, check_interval_s=3600)
    async with served(jc, auth) as (_, port), session(port) as ddp:
        await ddp.send(frame)
        assert await ddp.receive() == {
            "msg": "result",
            "id": "1",
            "error": meteor_error(403, LOGGED_OUT),
        }
        assert await ddp.receive() == {"msg": "updated", "methods": ["1"]}
        assert await logged_in(ddp, WORKER) == "worker-1"  # the session lives on
    assert not logs.tracebacks()


async def test_the_frame_limit_counts_bytes_not_characters(make_jc: MakeJC, tokens: Path) -> None:
    jc = await make_jc(root=ROOT)
    auth = TokenAuth.from_file(tokens, check_interval_s=3600)
    async with served(jc, auth, ddp_max_message_bytes=4096) as (_, port):
        wrapper = len('{"msg":"ping","id":""}')
        euros = "\u20ac" * 2000
        async with session(port) as ddp:
            await ddp.send(f'{{"msg":"ping","id":"{euros}"}}')  # 2022 chars, 6022 bytes
            assert "too large (limit 4096 bytes)" in await ddp.closed()
        async with session(port) as ddp:
            fits = "\u00e9" * ((4096 - wrapper) // 2) + "x" * ((4096 - wrapper) % 2)
            await ddp.send(f'{{"msg":"ping","id":"{fits}"}}')  # exactly 4096 bytes
            assert await ddp.receive() == {"msg": "pong", "id": fits}
            await ddp.send(f'{{"msg":"ping","id":"{fits}x"}}')  # one byte more
            assert "too large" in await ddp.closed()


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


MALFORMED_METHOD = {"msg": "error", "reason": "Malformed method invocation"}
BAD_REQUEST = {"msg": "error", "reason": "Bad request"}
UNRECOGNIZED = meteor_error(400, "Unrecognized options for login request")


def result(call_id: str, **answer: Any) -> list[dict[str, Any]]:
    return [{"msg": "result", "id": call_id, **answer}, {"msg": "updated", "methods": [call_id]}]


ANSWERED: dict[str, tuple[str, list[dict[str, Any]]]] = {
    "id-number": ('{"msg":"method","id":5,"method":"logout","params":[]}', [MALFORMED_METHOD]),
    "id-missing": ('{"msg":"method","method":"logout","params":[]}', [MALFORMED_METHOD]),
    "params-object": (
        '{"msg":"method","id":"1","method":"logout","params":{}}',
        [MALFORMED_METHOD],
    ),
    "name-list": ('{"msg":"method","id":"1","method":["login"],"params":[]}', [MALFORMED_METHOD]),
    "name-null": ('{"msg":"method","id":"1","params":[]}', [MALFORMED_METHOD]),
    "login-no-params": (
        '{"msg":"method","id":"1","method":"login"}',
        result("1", error=UNRECOGNIZED),
    ),
    "login-null": (
        '{"msg":"method","id":"1","method":"login","params":[null]}',
        result("1", error=UNRECOGNIZED),
    ),
    "login-number": (
        '{"msg":"method","id":"1","method":"login","params":[{"resume":5}]}',
        result("1", error=UNRECOGNIZED),
    ),
    "login-list": (
        '{"msg":"method","id":"1","method":"login","params":[{"resume":["worker-token"]}]}',
        result("1", error=UNRECOGNIZED),
    ),
    "login-date": (
        '{"msg":"method","id":"1","method":"login","params":[{"resume":{"$date":5}}]}',
        result("1", error=UNRECOGNIZED),
    ),
    "login-binary": (
        '{"msg":"method","id":"1","method":"login","params":[{"resume":{"$binary":"AA=="}}]}',
        result("1", error=UNRECOGNIZED),
    ),
    "login-extra": (
        '{"msg":"method","id":"1","method":"login","params":[{"resume":"worker-token","x":1}]}',
        result("1", error=UNRECOGNIZED),
    ),
    "login-two": (
        '{"msg":"method","id":"1","method":"login","params":[{"resume":"worker-token"},{}]}',
        result("1", error=UNRECOGNIZED),
    ),
    "login-huge": (
        '{"msg":"method","id":"1","method":"login","params":[{"resume":"'
        + "t" * 1_000_000
        + '"}]}',
        result("1", error=meteor_error(403, LOGGED_OUT)),
    ),
    "name-proto": (
        '{"msg":"method","id":"1","method":"__proto__","params":[]}',
        result("1", error=meteor_error(404, "Method '__proto__' not found")),
    ),
    "name-nul": (
        '{"msg":"method","id":"1","method":"myJobQueue_getWork\\u0000","params":["t"]}',
        result("1", error=meteor_error(404, "Method 'myJobQueue_getWork\x00' not found")),
    ),
    "name-huge": (
        '{"msg":"method","id":"1","method":"' + "m" * 100_000 + '","params":[]}',
        result("1", error=meteor_error(404, f"Method '{'m' * 100_000}' not found")),
    ),
    "id-huge": (
        '{"msg":"ping","id":"' + "i" * 1_000_000 + '"}',
        [{"msg": "pong", "id": "i" * 1_000_000}],
    ),
    "sub-id-number": ('{"msg":"sub","id":1,"name":"jobs"}', [BAD_REQUEST]),
    "sub-name-date": (
        '{"msg":"sub","id":"s","name":{"$date":0}}',
        [
            {
                "msg": "nosub",
                "id": "s",
                "error": meteor_error(404, "Subscription '1970-01-01 00:00:00+00:00' not found"),
            }
        ],
    ),
    "unsub-no-id": ('{"msg":"unsub"}', [BAD_REQUEST]),
    "unsub-unknown": ('{"msg":"unsub","id":"never"}', [{"msg": "nosub", "id": "never"}]),
    "connect-again": ('{"msg":"connect","version":"1"}', [BAD_REQUEST]),
    "unknown-kind": ('{"msg":"added","collection":"jobs","id":"x"}', [BAD_REQUEST]),
    "empty-kind": ('{"msg":""}', [BAD_REQUEST]),
    "deep-params": (
        '{"msg":"method","id":"1","method":"myJobQueue_getWork","params":["t",'
        + nested(150)
        + "]}",
        result("1", error={"error": 400}),
    ),
    "escaped-operator": (
        '{"msg":"method","id":"1","method":"myJobQueue_jobSave","params":'
        '[{"type":"t","data":{"$escape":{"$where":"1"}}}]}',
        result("1", error={"error": 400}),
    ),
    "huge-number": (
        '{"msg":"method","id":"1","method":"myJobQueue_getWork","params":["t",{"maxJobs":1e308}]}',
        result("1", error={"error": 400}),
    ),
    "forever-date": (
        '{"msg":"method","id":"1","method":"myJobQueue_getJob","params":[{"$date":1e300}]}',
        result("1", error={"error": 400}),
    ),
}
NOT_TEXT = meteor_error(400, "params: a string is not Unicode text (a lone surrogate)")
ANSWERED.update(
    {
        # BSON cannot store these: the database was blamed (503, "retry") for them.
        "surrogate-unique-key": (
            r'{"msg":"method","id":"1","method":"myJobQueue_jobSave","params":[{"type":"t",'
            r'"data":{},"jobcollection":{"unique":{"key":"k\udc00"}}}]}',
            result("1", error=NOT_TEXT),
        ),
        "surrogate-user": (
            r'{"msg":"method","id":"1","method":"myJobQueue_jobSave","params":[{"type":"t",'
            r'"data":{},"jobcollection":{"user":"\ud800"}}]}',
            result("1", error=NOT_TEXT),
        ),
        "surrogate-id": (
            r'{"msg":"method","id":"1","method":"myJobQueue_getJob","params":["\udfff"]}',
            result("1", error=NOT_TEXT),
        ),
        "surrogate-pair-is-text": (
            r'{"msg":"method","id":"1","method":"myJobQueue_getJob","params":["\ud83d\ude00"]}',
            result("1", result=None),
        ),
    }
)
CLOSED: dict[str, str | bytes] = {
    "deep-ejson": '{"msg":"ping","id":' + nested(250) + "}",
    "deeper-json": '{"msg":"ping","id":' + nested(100_000) + "}",
    "date-before-year-1": '{"msg":"method","id":"1","method":"logout","params":[{"$date":-1e20}]}',
    "date-string": '{"msg":"method","id":"1","method":"logout","params":[{"$date":"x"}]}',
    "custom-type": '{"msg":"ping","id":{"$type":"Decimal","$value":"1"}}',
    "bad-utf8-bytes": b'{"msg":"ping","id":"\xff\xfe"}',
    "nan": '{"msg":"ping","id":NaN}',
    "escape-list": '{"msg":"ping","id":{"$escape":[1]}}',
}


def matches(got: Any, want: Any) -> bool:
    """`want` is in `got` (dicts: the keys `want` names, recursively)."""
    if isinstance(want, dict):
        return isinstance(got, dict) and all(
            k in got and matches(got[k], w) for k, w in want.items()
        )
    return bool(got == want)


@pytest.mark.parametrize("case", list(ANSWERED))
async def test_hostile_messages_are_answered_and_the_session_lives_on(
    make_jc: MakeJC, tokens: Path, logs: Records, case: str
) -> None:
    jc = await make_jc(root=ROOT)
    auth = TokenAuth.from_file(tokens, check_interval_s=3600)
    frame, expected = ANSWERED[case]
    async with served(jc, auth) as (_, port), session(port) as ddp:
        await logged_in(ddp, ADMIN)
        await ddp.send(frame)
        for want in expected:
            got = await ddp.receive()
            assert matches(got, want), (got, want)
        await ddp.send({"msg": "ping", "id": "alive"})
        assert await ddp.receive() == {"msg": "pong", "id": "alive"}
    assert await jc.collection.count_documents({}) == 0
    assert not logs.tracebacks()


@pytest.mark.parametrize("case", list(CLOSED))
async def test_malformed_frames_close_the_session_without_a_traceback(
    make_jc: MakeJC, tokens: Path, logs: Records, case: str
) -> None:
    jc = await make_jc(root=ROOT)
    auth = TokenAuth.from_file(tokens, check_interval_s=3600)
    async with served(jc, auth) as (_, port), session(port) as ddp:
        await logged_in(ddp, ADMIN)
        await ddp.send(CLOSED[case])
        assert (await ddp.closed()).startswith("Malformed message")
    assert await jc.collection.count_documents({}) == 0
    assert not logs.tracebacks()


async def test_a_login_flood_is_rate_limited_and_every_login_answered(
    make_jc: MakeJC, tokens: Path, logs: Records
) -> None:
    jc = await make_jc(root=ROOT)
    auth = TokenAuth.from_file(tokens, check_interval_s=3600)
    async with served(jc, auth, ddp_max_messages_per_s=20) as (_, port), session(port) as ddp:
        for n in range(200):
            params = [{"resume": WORKER if n % 2 else f"guess-{n}"}]
            await ddp.send({"msg": "method", "id": str(n), "method": "login", "params": params})
        answers = [await ddp.receive() for _ in range(400)]
        errors = [a["error"]["error"] for a in answers if "error" in a]
        assert "too-many-requests" in errors and set(errors) <= {"too-many-requests", 403}
        assert len([a for a in answers if a["msg"] == "result"]) == 200
        alive = await ddp.call("logout")  # a ping now might be dropped: the bucket is empty
        assert "result" not in alive and alive.get("error", {"error": None})["error"] in (
            None,
            "too-many-requests",
        )
    assert not logs.tracebacks()


@pytest.mark.parametrize(
    "header",
    [
        b"Bearer",
        b"bearer worker-tokenx",
        b"Basic d29ya2VyLXRva2Vu",
        b"Bearer " + b"\xff\xfe\xe9" * 100,
        b"Bearer " + b"t" * 8000,
        b"Token worker-token",
    ],
    ids=["bare", "near", "basic", "latin1", "long", "scheme"],
)
async def test_hostile_authorization_headers_get_401_never_500(
    make_jc: MakeJC, tokens: Path, logs: Records, header: bytes
) -> None:
    jc = await make_jc(root=ROOT)
    auth = TokenAuth.from_file(tokens, check_interval_s=3600)
    async with served(jc, auth) as (url, _), httpx.AsyncClient(base_url=url) as http:
        for path, method in [("/info", "GET"), ("/methods/getWork", "POST"), ("/wait", "POST")]:
            answer = await http.request(method, path, headers={b"authorization": header}, json={})
            assert answer.status_code == 401, (path, answer.text)
    assert not logs.tracebacks()


def random_value(rng: random.Random, depth: int = 0) -> Any:
    """A random EJSON-able value: leaves a caller may send, some hostile, nested a little."""
    leaves: list[Any] = [
        None,
        True,
        0,
        -1,
        2**63,
        1e308,
        -0.0,
        math.inf,
        "",
        "t",
        "$where",
        "a.b",
        "\x00",
        "\u00e9\U0001f600",
        "\ud800",
        "x" * 300,
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(2026, 1, 1, tzinfo=UTC),
        ObjectId(),
        b"\x00\xff",
        {"$set": {"status": "ready"}},
        {"jobcollection": {"schedule": {"cron": "* * * * * * *"}}},
    ]
    if depth < 3 and rng.random() < 0.4:
        if rng.random() < 0.5:
            return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
        keys = ["type", "data", "status", "$in", "a.b", "maxJobs", "jobcollection", "x"]
        return {rng.choice(keys): random_value(rng, depth + 1) for _ in range(rng.randrange(4))}
    return rng.choice(leaves)


async def test_random_calls_of_every_method_are_answered_without_a_500(
    make_jc: MakeJC, tokens: Path, logs: Records
) -> None:
    """A deterministic shower of calls with random parameters (and random message kinds)
    over one admin session: each is answered, none with a 500, none logs a traceback, and
    the session is still there at the end."""
    jc = await make_jc(root=ROOT)
    await jc.create_job("t", {"n": 1}).save()
    auth = TokenAuth.from_file(tokens, check_interval_s=3600)
    rng = random.Random(19)
    async with (
        served(jc, auth, ddp_max_messages_per_s=1e9) as (_, port),
        session(port) as ddp,
    ):
        await logged_in(ddp, ADMIN)
        for n in range(400):
            method = rng.choice(sorted(METHODS))
            params = [random_value(rng) for _ in range(rng.randrange(4))]
            answer = await ddp.call(f"{ROOT}_{method}", *params)
            if "error" in answer:
                assert answer["error"]["error"] in (400, 403, 404, 409), (method, params, answer)
            if n % 50 == 0:
                kind = rng.choice(["sub", "unsub", "ping", "pong", "nosuch"])
                await ddp.send({"msg": kind, "id": str(n), "name": random_value(rng)})
                if kind != "pong":
                    assert (await ddp.receive())["msg"] in ("nosub", "pong", "error")
        await ddp.send({"msg": "ping", "id": "alive"})
        assert await ddp.receive() == {"msg": "pong", "id": "alive"}
    assert not logs.tracebacks()


def test_a_page_of_jobfind_reaches_ddp_clients_without_this_librarys_settings() -> None:
    """jobFind's jobs go out as getJob's do: v1.x documents, the settings kept on the server."""
    from jobcollection.model.document import new_job_doc
    from jobcollection.model.queries import DocPage
    from jobcollection.remote.codec import SETTINGS
    from jobcollection.remote.ddp import outbound
    from jobcollection.testing import TEST_START

    doc = new_job_doc("t", {"n": 1}, TEST_START).model_copy(update={"id": "j1", "user_id": "ada"})
    sent = outbound(DocPage([doc], "sj1"))
    assert sent["next"] == "sj1"
    [job] = sent["jobs"]
    assert job == outbound(doc) and job["data"] == {"n": 1}
    assert SETTINGS not in job and "_private" not in job
