"""The DDP endpoint (remote/ddp.py) and its EJSON (remote/ejson.py): job-collection's own
node.js stack (meteor-job 1.5.2 over ddp 0.12.1, logging in with ddp-login) against a served
JobCollection, and the protocol's edges through a Python WebSocket client.

The node tests run tests/node/seed_worker.js (the seed's worker as written, but for the
server's address), tests/node/worker.js (the same worker, with payloads, slow and hanging jobs) and
tests/node/client.js with the packages `.ci/run` installs into tests/node/node_modules; without
node or those packages they are skipped. Nothing waits for time to pass: the tests wait for a
line a node process prints or a method event of the served collection, each bounded, and move
the manual clock for leases.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import shutil
import signal
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import websockets
from bson import ObjectId
from websockets.asyncio.client import ClientConnection, connect

from conftest import MakeJC
from helpers import messages, stored
from jobcollection import (
    FOREVER_DATE,
    ConcurrencyLimit,
    JobCollection,
    JobWorker,
    ManualClock,
    MethodEvent,
    chord,
)
from jobcollection.remote import TokenAuth, create_app, ejson
from jobcollection.remote.ddp import LOGGED_OUT
from remote_helpers import TOKENS, serving
from test_remote_processes import EXPIRED, LINE_TIMEOUT, Applied, Process, jobcollection

NODE_DIR = Path(__file__).resolve().parent / "node"
PACKAGES = ("ddp", "ddp-login", "meteor-job")
_NODE = shutil.which("node")
_MISSING = [p for p in PACKAGES if not (NODE_DIR / "node_modules" / p / "package.json").exists()]
_WHY = "needs node and the npm packages of tests/node (`npm install --prefix tests/node`): " + (
    "node is not on PATH" if _NODE is None else f"missing {_MISSING}"
)
if (_NODE is None or _MISSING) and os.environ.get("JOBCOLLECTION_REQUIRE_NODE"):
    raise RuntimeError(f"JOBCOLLECTION_REQUIRE_NODE is set (CI) but the DDP tests {_WHY}")
needs_node = pytest.mark.skipif(_NODE is None or bool(_MISSING), reason=_WHY)
ROOT = "myJobQueue"


@contextlib.asynccontextmanager
async def served(jc: JobCollection, **options: Any) -> AsyncIterator[int]:
    """jc's remote API with DDP on 127.0.0.1 ("tester" admin, "worker-1" worker); its port."""
    jc.allow(admin=["tester"], worker=["worker-1"])
    app = create_app(jc, auth=TokenAuth.from_tokens(TOKENS), ddp=True, **options)
    async with serving(app) as url:
        yield int(url.rsplit(":", 1)[1])


@contextlib.asynccontextmanager
async def node(
    tmp_path: Path, port: int, script: str, *args: str, token: str, **env: str
) -> AsyncIterator[Process]:
    """`node tests/node/SCRIPT ARGS` against the server at `port`, logged in with `token`."""
    assert _NODE is not None
    stderr = tmp_path / f"node-{script}-{os.getpid()}-{id(args)}.txt"
    environment = {
        **os.environ,
        "DDP_HOST": "127.0.0.1",
        "DDP_PORT": str(port),
        "JOB_ROOT": ROOT,
        "METEOR_TOKEN": token,
        **env,
    }
    with stderr.open("wb") as errors:
        process = await asyncio.create_subprocess_exec(
            _NODE,
            str(NODE_DIR / script),
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=errors,
            env=environment,
            cwd=NODE_DIR,
        )
    try:
        yield Process(process, stderr)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def client(tmp_path: Path, port: int, *args: str, token: str = "admin-token") -> Any:
    """What `node client.js ARGS` printed: the result (EJSON-decoded), or ("error", error)."""
    async with node(tmp_path, port, "client.js", *args, token=token) as process:
        line = await process.expect(" ")
        kind, _, text = line.partition(" ")
        assert kind in ("result", "error"), process.describe()
        if kind == "error":
            return ("error", json.loads(text))
        return ejson.loads(text)


def email(n: int, **extra: Any) -> dict[str, Any]:
    return {"address": f"user{n}@example.com", "subject": "Hi", "message": "...", **extra}


# --- job-collection's own worker ---------------------------------------------------------------


@needs_node
async def test_the_readme_worker_completes_jobs_python_saved(
    make_jc: MakeJC, tmp_path: Path
) -> None:
    jc = await make_jc(root=ROOT)
    done, progress = Applied(jc, "jobDone"), Applied(jc, "jobProgress")
    ids = [await jc.create_job("sendEmail", email(n)).save() for n in range(2)]
    async with (
        served(jc) as port,
        node(tmp_path, port, "worker.js", token="worker-token") as worker,
    ):
        await worker.expect("logged in")
        await done.reach(2, worker)
        await progress.reach(2, worker)
    for n, job_id in enumerate(ids):
        doc = await stored(jc, job_id)
        assert doc["status"] == "completed"
        assert doc["result"] == {"sent": f"user{n}@example.com"}
        assert doc["progress"] == {"completed": 1, "total": 1, "percent": 100}
        sending = [e for e in doc["log"] if e["message"] == f"Sending to user{n}@example.com"]
        assert len(sending) == 1
        assert sending[0]["data"] == {"subject": "Hi"}
        assert sending[0]["runId"] == doc["runId"]
    assert set(progress.ids) == set(ids)


@needs_node
async def test_a_workflows_members_run_on_node_workers(make_jc: MakeJC, tmp_path: Path) -> None:
    """A chord's parts run on job-collection's node.js worker (to it they are ordinary jobs
    whose dependencies are v1.x's), and the Python callback receives their results."""
    jc = await make_jc(root=ROOT)
    done = Applied(jc, "jobDone")
    parts = [jc.create_job("sendEmail", email(n)) for n in range(3)]
    report = jc.create_job("report")
    await jc.save_workflow(chord(parts, report))
    async with (
        served(jc) as port,
        node(tmp_path, port, "worker.js", token="worker-token") as worker,
    ):
        await worker.expect("logged in")
        await done.reach(3, worker)
    [callback] = await jc.get_work("report")
    results = await callback.antecedent_results()
    assert sorted(r["sent"] for r in results.values()) == [f"user{n}@example.com" for n in range(3)]


@needs_node
async def test_the_seed_worker_runs_unchanged(make_jc: MakeJC, tmp_path: Path) -> None:
    """shared/seeds/000's worker as it is written (tests/node/seed_worker.js: only the host
    and port, and the sendEmail it assumes, are added), logging in by DDPlogin's default."""
    jc = await make_jc(root=ROOT)
    done = Applied(jc, "jobDone")
    ids = [await jc.create_job("sendEmail", email(n)).save() for n in range(3)]
    async with (
        served(jc) as port,
        node(tmp_path, port, "seed_worker.js", token="worker-token") as worker,
    ):
        await done.reach(3, worker)
    for job_id in ids:
        doc = await stored(jc, job_id)
        assert (doc["status"], doc["result"]) == ("completed", {})


@needs_node
@pytest.mark.parametrize(
    ("options", "count"), [({"payload": 5}, 5), ({"concurrency": 3}, 3)], ids=["payload", "conc"]
)
async def test_payload_and_concurrency_workers(
    make_jc: MakeJC, tmp_path: Path, options: dict[str, int], count: int
) -> None:
    jc = await make_jc(root=ROOT)
    claimed: list[int] = []
    jc.events.on("getWork", lambda e: claimed.append(len(e.return_value or [])))
    done = Applied(jc, "jobDone")
    ids = [await jc.create_job("sendEmail", email(n)).save() for n in range(count)]
    async with (
        served(jc) as port,
        node(
            tmp_path, port, "worker.js", token="worker-token", WORKER_OPTIONS=json.dumps(options)
        ) as worker,
    ):
        await done.reach(count, worker)
    assert claimed[0] == count  # one claim of all of them: a payload, or one per worker
    assert sorted(map(str, done.ids)) == sorted(map(str, ids))
    for job_id in ids:
        assert (await stored(jc, job_id))["status"] == "completed"


@needs_node
async def test_a_node_worker_is_listed_with_its_jobs_until_it_disconnects(
    make_jc: MakeJC, tmp_path: Path
) -> None:
    jc = await make_jc(root=ROOT)
    seen, gone = Applied(jc, "jobWorkerSeen"), Applied(jc, "jobWorkerGone")
    job_id = await jc.create_job("sendEmail", email(0, hang=True)).save()
    async with served(jc) as port:
        async with node(tmp_path, port, "worker.js", token="worker-token") as worker:
            assert await worker.expect("working") == f"working {job_id}"
            await seen.reach(1, worker)
            [listed] = await jc.workers()
            assert (listed.kind, listed.user, listed.types) == ("ddp", "worker-1", ("sendEmail",))
            assert (listed.held, listed.holding) == ((job_id,), 1)
            assert (listed.host, listed.pid, listed.concurrency) == ("127.0.0.1", 0, 0)
            worker.send_signal(signal.SIGKILL)  # its connection drops with it
            assert await worker.exited() == -signal.SIGKILL
        await gone.reach(1)
        assert gone.ids == [listed.id]
        assert await jc.workers() == []
    assert (await stored(jc, job_id))["status"] == "running"  # left to its lease


@needs_node
async def test_a_node_worker_runs_no_more_jobs_at_once_than_the_concurrency_limit(
    make_jc: MakeJC, tmp_path: Path
) -> None:
    jc = await make_jc(root=ROOT)
    await jc.set_concurrency_limit("sendEmail", ConcurrencyLimit(2))
    ids = [await jc.create_job("sendEmail", email(n, delay=100)).save() for n in range(8)]
    running: list[int] = []
    asked: list[tuple[int, int]] = []

    async def sample(event: MethodEvent) -> None:  # at every call the worker makes
        count = {"type": "sendEmail", "status": "running"}
        running.append(await jc.collection.count_documents(count))
        if event.method == "getWork":
            asked.append((event.params[1]["maxJobs"], len(event.return_value)))

    jc.events.on("call", sample)
    done = Applied(jc, "jobDone")
    options = json.dumps({"concurrency": 4})
    async with (
        served(jc) as port,
        node(tmp_path, port, "worker.js", token="worker-token", WORKER_OPTIONS=options) as worker,
    ):
        await done.reach(len(ids), worker)
    assert asked[0] == (4, 2)  # room for 4, given the 2 the limit allows
    assert max(running) == 2
    assert sorted(map(str, done.ids)) == sorted(map(str, ids))
    for job_id in ids:
        assert (await stored(jc, job_id))["status"] == "completed"


@needs_node
async def test_a_killed_worker_leaves_its_job_to_the_lease_and_python_completes_it(
    make_jc: MakeJC, clock: ManualClock, tmp_path: Path
) -> None:
    jc = await make_jc(root=ROOT)
    job_id = await jc.create_job("sendEmail", email(0, hang=True)).retry(1, wait=0).save()
    options = json.dumps({"workTimeout": 60_000})
    async with served(jc) as port:
        async with node(
            tmp_path, port, "worker.js", token="worker-token", WORKER_OPTIONS=options
        ) as worker:
            assert await worker.expect("working") == f"working {job_id}"
            worker.send_signal(signal.SIGKILL)
            assert await worker.exited() == -signal.SIGKILL
        assert (await stored(jc, job_id))["status"] == "running"
        clock.advance(61)
        await jc.run_server_pass()
        await jc.run_server_pass()
        [job] = await jc.get_work("sendEmail")
        assert job.id == job_id
        assert await job.done({"by": "python"})
    doc = await stored(jc, job_id)
    assert doc["status"] == "completed" and doc["result"] == {"by": "python"}
    assert any(EXPIRED in message for message in messages(doc))


@needs_node
async def test_serve_ddp_runs_the_readme_worker(tmp_path: Path) -> None:
    async with jobcollection(
        tmp_path, "serve", "--ddp", "--port", "0", "--log-level", "warning"
    ) as server:
        token = (await server.expect("demo admin token")).rsplit(" ", 1)[1]
        port = int((await server.expect("jobcollection serving on ")).rsplit(":", 1)[1])
        async with node(tmp_path, port, "client.js", "save", token=token, JOB_ROOT="queue") as c:
            saved = ejson.loads((await c.expect("result ")).removeprefix("result "))
        async with node(tmp_path, port, "worker.js", token=token, JOB_ROOT="queue") as worker:
            assert await worker.expect("done") == f"done {saved['id']}"


# --- a node client -------------------------------------------------------------------------------

COMPARED = [
    *("type", "data", "status", "priority", "retries", "repeatRetries", "retryWait", "retried"),
    *("retryBackoff", "retryUntil", "repeats", "repeatWait", "repeated", "repeatUntil"),
    *("progress", "depends", "resolved", "runId"),
]


@needs_node
async def test_jobs_node_saves_are_stored_as_python_stores_them(
    make_jc: MakeJC, tmp_path: Path
) -> None:
    jc = await make_jc(root=ROOT)
    async with served(jc) as port:
        answer = await client(tmp_path, port, "save")
    assert isinstance(answer["id"], ObjectId)
    from_node = await stored(jc, answer["id"])
    python_id = await (
        jc.create_job("sendEmail", {"address": "a@example.com", "subject": "Hi"})
        .priority("high")
        .retry(2, wait=1)
        .repeat(1, wait=5)
        .save()
    )
    from_python = await stored(jc, python_id)
    assert {k: from_node.get(k) for k in COMPARED} == {k: from_python.get(k) for k in COMPARED}
    assert (from_node["retries"], from_node["retryWait"]) == (3, 1000)
    assert (from_node["repeats"], from_node["repeatWait"]) == (1, 5000)
    assert from_node.keys() - {"_private"} == from_python.keys() - {"_private"}
    assert messages(from_node)[:1] == ["Constructed"]


@needs_node
async def test_get_job_get_work_fail_cancel_restart_from_node_act_as_in_python(
    make_jc: MakeJC, tmp_path: Path
) -> None:
    jc = await make_jc(root=ROOT)
    done_id = await jc.create_job("toDo", {"n": 1}).save()
    fail_ids = [await jc.create_job("toFail", {"n": n}).retry(0).save() for n in range(2)]
    cancel_ids = [await jc.create_job("toCancel", {"n": n}).save() for n in range(2)]
    async with served(jc) as port:
        doc = await client(tmp_path, port, "getJob", str(done_id))
        assert doc["_id"] == done_id and doc["type"] == "toDo" and doc["status"] == "ready"
        assert "_private" not in doc and "jobcollection" not in doc
        assert await client(tmp_path, port, "getJob", str(ObjectId())) == ("error", "no such job")

        assert await client(tmp_path, port, "work", "toDo") == {"id": done_id, "ok": True}
        failed = await client(tmp_path, port, "fail", "toFail")
        [python_job] = await jc.get_work("toFail")
        assert await python_job.fail("no luck")

        assert await client(tmp_path, port, "cancel", str(cancel_ids[0])) is True
        assert await (await jc.get_job(cancel_ids[1])).cancel()  # type: ignore[union-attr]
        assert await client(tmp_path, port, "restart", str(cancel_ids[0])) is True
        by_python_failed = await stored(jc, python_job.id)
        assert await client(tmp_path, port, "restart", str(failed["id"])) is True
        assert await jc.restart_jobs([python_job.id])

    assert (await stored(jc, done_id))["result"] == {"by": "node"}
    assert (await stored(jc, done_id))["status"] == "completed"
    assert failed["ok"] is True and {failed["id"], python_job.id} == set(fail_ids)
    by_node, by_python = [await stored(jc, i) for i in (failed["id"], python_job.id)]
    assert by_python_failed["status"] == "failed"
    assert [f["value"] for f in by_node["failures"]] == ["no luck"]
    assert [f["value"] for f in by_python["failures"]] == ["no luck"]
    assert by_node["status"] == by_python["status"] == "waiting"  # restarted, both
    assert messages(by_node)[-2:] == messages(by_python)[-2:]
    assert (await stored(jc, cancel_ids[1]))["status"] == "cancelled"
    assert (await stored(jc, cancel_ids[0]))["status"] == "ready"


@needs_node
async def test_a_worker_refused_a_method_gets_meteors_403_and_nothing_changes(
    make_jc: MakeJC, tmp_path: Path
) -> None:
    jc = await make_jc(root=ROOT)
    job_id = await jc.create_job("sendEmail", email(0)).save()
    before = await stored(jc, job_id)
    async with served(jc) as port:
        answer = await client(tmp_path, port, "cancel", str(job_id), token="worker-token")
        assert answer == (
            "error",
            {
                "isClientSafe": True,
                "error": 403,
                "reason": "Method not authorized",
                "message": "Method not authorized [403]",
                "errorType": "Meteor.Error",
                "details": "Authenticated user is not permitted to invoke this method.",
            },
        )
        refused = await client(tmp_path, port, "getJob", str(job_id), token="bad-token")
    assert refused[0] == "error" and refused[1]["error"] == 403
    assert await stored(jc, job_id) == before


# --- the protocol, from Python -------------------------------------------------------------------


class DDP:
    """A raw DDP session over the websockets client."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.calls = 0

    async def send(self, msg: Any) -> None:
        await self.ws.send(msg if isinstance(msg, str) else ejson.dumps(msg))

    async def receive(self) -> Any:
        return ejson.loads(await asyncio.wait_for(self.ws.recv(), LINE_TIMEOUT))

    async def call(self, method: str, *params: Any) -> dict[str, Any]:
        """The `result` message of a method call (its `updated` checked to follow)."""
        self.calls += 1
        call_id = str(self.calls)
        await self.send({"msg": "method", "id": call_id, "method": method, "params": params})
        result = await self.receive()
        assert result["msg"] == "result" and result["id"] == call_id
        assert await self.receive() == {"msg": "updated", "methods": [call_id]}
        return dict(result)

    async def closed(self) -> str:
        """The reason of the `error` the server closed the session with."""
        error = await self.receive()
        assert error["msg"] == "error"
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(self.ws.recv(), LINE_TIMEOUT)
        return str(error["reason"])


@contextlib.asynccontextmanager
async def session(port: int, *, handshake: bool = True) -> AsyncIterator[DDP]:
    async with connect(f"ws://127.0.0.1:{port}/websocket") as ws:
        ddp = DDP(ws)
        if handshake:
            await ddp.send({"msg": "connect", "version": "1", "support": ["1", "pre2", "pre1"]})
            connected = await ddp.receive()
            assert connected["msg"] == "connected" and len(connected["session"]) == 17
        yield ddp


def meteor_error(code: int | str, reason: str) -> dict[str, Any]:
    return {
        "isClientSafe": True,
        "error": code,
        "reason": reason,
        "message": f"{reason} [{code}]",
        "errorType": "Meteor.Error",
    }


async def test_handshake_ping_login_and_calls(make_jc: MakeJC, clock: ManualClock) -> None:
    jc = await make_jc(root=ROOT)
    job_id = await jc.create_job("t", {"at": clock.now()}).save()
    async with served(jc) as port:
        async with session(port, handshake=False) as ddp:
            await ddp.send({"msg": "connect", "version": "2", "support": ["2", "pre1"]})
            assert await ddp.receive() == {"msg": "failed", "version": "pre1"}
        async with session(port) as ddp:
            await ddp.send({"msg": "ping", "id": "p1"})
            assert await ddp.receive() == {"msg": "pong", "id": "p1"}
            await ddp.send({"msg": "sub", "id": "s1", "name": "allJobs", "params": []})
            nosub = await ddp.receive()
            assert nosub == {
                "msg": "nosub",
                "id": "s1",
                "error": meteor_error(404, "Subscription 'allJobs' not found"),
            }
            before_login = await ddp.call(f"{ROOT}_getJob", job_id)
            assert before_login["error"]["error"] == 403
            assert (await ddp.call(f"{ROOT}_nope"))["error"] == meteor_error(
                404, f"Method '{ROOT}_nope' not found"
            )
            assert (await ddp.call("queue_getJob", job_id))["error"]["error"] == 404
            assert (await ddp.call("login", {"resume": "bad"}))["error"] == meteor_error(
                403, LOGGED_OUT
            )
            assert (await ddp.call("login", {"user": "x", "password": "y"}))["error"][
                "error"
            ] == 400
            login = (await ddp.call("login", {"resume": "worker-token"}))["result"]
            assert login["id"] == "worker-1" and login["token"] == "worker-token"
            assert login["tokenExpires"] == clock.now() + timedelta(days=90)
            doc = (await ddp.call(f"{ROOT}_getJob", job_id))["result"]
            assert doc["_id"] == job_id and doc["data"] == {"at": clock.now()}
            assert "jobcollection" not in doc and "_private" not in doc
            invalid = (await ddp.call(f"{ROOT}_getWork", 42))["error"]
            assert invalid["error"] == 400 and invalid["errorType"] == "Meteor.Error"
            assert (await ddp.call(f"{ROOT}_jobCancel", job_id, {}))["error"]["error"] == 403
            assert "result" not in await ddp.call("logout")
            assert (await ddp.call(f"{ROOT}_getJob", job_id))["error"]["error"] == 403
    assert (await stored(jc, job_id))["status"] == "ready"


@pytest.mark.parametrize(
    "frame",
    ["not json", "[1, 2]", '{"id": "1"}', '{"msg": 3}', '{"msg": {"$date": "x"}}'],
    ids=["text", "array", "no-msg", "msg-number", "bad-ejson"],
)
async def test_a_malformed_frame_closes_the_session_and_changes_nothing(
    make_jc: MakeJC, frame: str
) -> None:
    jc = await make_jc(root=ROOT)
    async with served(jc) as port, session(port) as ddp:
        assert (await ddp.call("login", {"resume": "admin-token"}))["result"]["id"] == "tester"
        await ddp.send(frame)
        assert (await ddp.closed()).startswith("Malformed message")
    assert await jc.collection.count_documents({}) == 0


async def test_messages_before_connect_too_large_or_too_many_are_bounded(
    make_jc: MakeJC,
) -> None:
    jc = await make_jc(root=ROOT)
    async with served(jc, ddp_max_message_bytes=1024, ddp_max_messages_per_s=5) as port:
        async with session(port, handshake=False) as ddp:
            await ddp.send({"msg": "ping"})
            assert await ddp.closed() == "Must connect first"
        async with session(port) as ddp:
            await ddp.send({"msg": "ping", "id": "x" * 2000})
            assert "too large" in await ddp.closed()
        async with session(port) as ddp:
            for n in range(20):
                await ddp.send({"msg": "method", "id": str(n), "method": "logout", "params": []})
            answers = [await ddp.receive() for _ in range(40)]
            errors = [a["error"]["error"] for a in answers if "error" in a]
            assert 0 < len(errors) <= 15 and set(errors) == {"too-many-requests"}
    assert await jc.collection.count_documents({}) == 0


async def test_a_session_that_claims_work_is_a_worker_until_it_closes(make_jc: MakeJC) -> None:
    jc = await make_jc(root=ROOT)
    seen, gone = Applied(jc, "jobWorkerSeen"), Applied(jc, "jobWorkerGone")
    job_id = await jc.create_job("u").save()
    async with served(jc) as port:
        async with session(port) as ddp:
            assert (await ddp.call("login", {"resume": "admin-token"}))["result"]["id"] == "tester"
            assert (await ddp.call(f"{ROOT}_getJob", job_id))["result"]["_id"] == job_id
            assert await jc.workers() == []  # a session is not a worker before it claims
            [claimed] = (await ddp.call(f"{ROOT}_getWork", ["t", "u"], {"maxJobs": 2}))["result"]
            assert claimed["_id"] == job_id
            await seen.reach(1)
            [listed] = await jc.workers()
            assert (listed.kind, listed.user, listed.types) == ("ddp", "tester", ("t", "u"))
            assert (listed.held, listed.holding) == ((job_id,), 1)
            assert listed.version.startswith("Python/")  # websockets' User-Agent
            assert (await ddp.call(f"{ROOT}_jobDone", job_id, claimed["runId"], {}))["result"]
        await gone.reach(1)
        assert gone.ids == [listed.id] and await jc.workers() == []
    # The jobs it claimed record it (its registry id, its peer, its user), kept once done.
    done = await jc.get_job(job_id)
    assert done is not None and done.doc.status == "completed"
    assert done.worker == JobWorker(id=listed.id, host=listed.host, user="tester", remote=True)
    assert len(seen.ids) == 1  # one registration, not one per call


async def test_create_app_refuses_ddp_with_an_auth_that_cannot_log_in(jc: JobCollection) -> None:
    with pytest.raises(TypeError, match="user_for"):
        create_app(jc, auth=lambda connection: "someone", ddp=True)
    create_app(jc, auth=lambda connection: "someone")  # the HTTP API alone takes it


# --- EJSON ---------------------------------------------------------------------------------------


def test_ejson_round_trips_dates_ids_binary_escapes_and_non_finite_numbers() -> None:
    at = datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=UTC)
    oid = ObjectId()
    value = {
        "at": at,
        "id": oid,
        "bytes": b"\x00\xffdata",
        "looks": {"$date": 5},
        "typed": {"$type": "oid", "$value": "x"},
        "nested": [{"$escape": {"a": at}}],
        "inf": math.inf,
        "plain": {"$date": 1, "other": 2},
        "forever": FOREVER_DATE,
    }
    text = ejson.dumps(value)
    assert json.loads(text)["at"] == {"$date": int(at.timestamp() * 1000)}
    assert json.loads(text)["id"] == {"$type": "oid", "$value": str(oid)}
    assert json.loads(text)["looks"] == {"$escape": {"$date": 5}}
    assert json.loads(text)["forever"] == {"$date": 8_640_000_000_000_000}
    back = ejson.loads(text)
    assert back == value
    assert math.isnan(ejson.loads('{"$InfNaN": 0}'))
    assert ejson.loads('{"$date": 8640000000000000}') == FOREVER_DATE


@pytest.mark.parametrize(
    "text",
    [
        '{"$date": "2024"}',
        '{"$type": "Decimal", "$value": "1"}',
        '{"$type": "oid", "$value": "zz"}',
        '{"$binary": "***"}',
        '{"$escape": 1}',
        '{"$InfNaN": 2}',
        "NaN",
        "[" * 1000 + "]" * 1000,
    ],
)
def test_ejson_refuses_what_it_cannot_read(text: str) -> None:
    with pytest.raises(ValueError):
        ejson.loads(text)


def test_ejson_refuses_values_it_has_no_form_of() -> None:
    with pytest.raises(TypeError, match="set"):
        ejson.dumps({"s": {1}})
