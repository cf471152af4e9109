"""Crashes and hangs: workers that die mid-job, workers that finish too late, a worker
process killed with SIGKILL while others keep working, and several job servers promoting and
expiring at once.

What must hold: a job whose worker died is failed when its lease (work timeout) runs out and
is retried; a worker whose lease ran out can no longer change its job; no job is promoted or
failed twice; one completion schedules exactly one repeat.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import bson
import pytest

from faults import Faults, FaultyCollection
from helpers import claim_one, messages, stored
from jobcollection import Job, JobCollection, JobCollectionError, JobDoc, ManualClock

MakeJC = Callable[..., Awaitable[JobCollection]]
EXPIRED = "Failed for exceeding worker set workTimeout"


# --- a worker task killed mid-job --------------------------------------------------------------


async def test_a_worker_task_killed_mid_job_is_failed_at_its_timeout_and_retried(
    make_jc: MakeJC, clock: ManualClock
) -> None:
    jc = await make_jc()
    job_id = await jc.create_job("t").retry(1, wait=0).save()
    claimed = asyncio.Event()

    async def worker() -> None:
        job = await claim_one(jc, work_timeout=30)
        claimed.set()
        await asyncio.Event().wait()  # works forever
        await job.done()

    task = asyncio.create_task(worker())
    await claimed.wait()
    task.cancel()  # killed: it never reports
    with pytest.raises(asyncio.CancelledError):
        await task
    clock.advance(29)
    assert (await jc.run_server_pass()).expired == 0
    assert (await stored(jc, job_id))["status"] == "running"
    clock.advance(2)
    assert (await jc.run_server_pass()).expired == 1
    doc = await stored(jc, job_id)
    assert doc["status"] == "ready" and doc["runId"] is None
    assert [f["value"] for f in doc["failures"]] == [EXPIRED]
    retry = await claim_one(jc, work_timeout=30)
    assert await retry.done() is True
    doc = await stored(jc, job_id)
    assert doc["status"] == "completed"
    assert messages(doc).count("Job Running") == 2


async def test_a_killed_job_without_retries_left_fails_for_good_and_cancels_dependents(
    make_jc: MakeJC, clock: ManualClock
) -> None:
    jc = await make_jc()
    job = jc.create_job("t")
    job_id = await job.save()
    dependent = await jc.create_job("d").depends([job]).save()
    await claim_one(jc, work_timeout=5)  # and the worker dies
    clock.advance(6)
    assert (await jc.run_server_pass()).expired == 1
    assert (await stored(jc, job_id))["status"] == "failed"
    assert (await stored(jc, dependent))["status"] == "cancelled"


async def test_a_worker_that_finishes_after_its_lease_expired_changes_nothing(
    make_jc: MakeJC, clock: ManualClock
) -> None:
    jc = await make_jc()
    job_id = await jc.create_job("t").retry(1, wait=0).repeat(1, wait=0).save()
    late = await claim_one(jc, work_timeout=10)
    clock.advance(11)
    assert (await jc.run_server_pass()).expired == 1
    current = await claim_one(jc, work_timeout=10)
    before = await stored(jc, job_id)
    count = await jc.collection.count_documents({})
    for report in (
        lambda: late.done({"late": True}),
        lambda: late.done(repeat_id=True),
        lambda: late.fail("late"),
        lambda: late.fail("late", fatal=True),
        lambda: late.progress(1, 2),
        late.heartbeat,
    ):
        assert await report() is False
    assert await stored(jc, job_id) == before
    assert await jc.collection.count_documents({}) == count  # no repeat
    # a late log line is kept (logging works in any state) but does not renew the lease
    assert await late.log("still here") is True
    assert (await stored(jc, job_id))["expiresAfter"] == before["expiresAfter"]
    assert await current.done() is True
    assert await jc.collection.count_documents({}) == count + 1  # the one repeat


async def test_a_late_worker_cannot_finish_a_job_that_was_restarted_and_claimed_again(
    make_jc: MakeJC, clock: ManualClock
) -> None:
    jc = await make_jc()
    job_id = await jc.create_job("t").save()
    late = await claim_one(jc, work_timeout=10)
    assert await jc.cancel_jobs([job_id]) is True
    assert await jc.restart_jobs([job_id]) is True
    again = await claim_one(jc)
    assert await late.done() is False
    assert await again.done() is True
    assert (await stored(jc, job_id))["status"] == "completed"


async def test_a_worker_raising_a_huge_error_still_fails_its_job(make_jc: MakeJC) -> None:
    """The failure a queue records stays within Limits.max_error_bytes, so it is recorded
    (a refused failure would leave the job running)."""
    jc = await make_jc()
    job_id = await jc.create_job("t").save()

    async def worker(job: Job) -> None:
        raise ValueError("\N{GRINNING FACE}" * 1_000_000)

    queue = jc.process_jobs("t", worker, poll_interval=None)
    queue.trigger()
    async with asyncio.timeout(10):
        await queue.drain()
    await queue.shutdown("soft")
    doc = await stored(jc, job_id)
    assert doc["status"] == "failed"
    [failure] = doc["failures"]
    assert failure["type"] == "ValueError"
    assert len(bson.encode(failure)) <= jc.limits.max_error_bytes


# --- several job servers at once ---------------------------------------------------------------


@pytest.fixture
async def servers(
    database: Any, clock: ManualClock
) -> AsyncIterator[list[tuple[JobCollection, Faults]]]:
    made = []
    for _ in range(3):
        faulty = FaultyCollection(database["queue.jobs"])
        jc = JobCollection(faulty, clock=clock)
        await jc.start_job_server()
        made.append((jc, faulty.faults))
    yield made
    for jc, _ in made:
        await jc.close()


async def gated_together(faults: list[Faults], op: str, run: list[Awaitable[Any]]) -> list[Any]:
    """Run the calls concurrently, holding each one's first `op` until all have reached it:
    every server reads the same state before any of them writes."""
    gates = [f.delay(op) for f in faults]
    tasks = [asyncio.ensure_future(r) for r in run]
    await asyncio.gather(*(g.wait_reached() for g in gates))
    for gate in gates:
        gate.release()
    return await asyncio.gather(*tasks)


async def test_servers_expiring_at_once_fail_each_job_once(
    servers: list[tuple[JobCollection, Faults]], clock: ManualClock
) -> None:
    jc = servers[0][0]
    ids = [await jc.create_job("t", {"i": i}).retry(3, wait=0).save() for i in range(5)]
    assert len(await jc.get_work("t", max_jobs=5, work_timeout=10)) == 5
    clock.advance(11)
    await gated_together(
        [f for _, f in servers], "bulk_write", [s.run_server_pass() for s, _ in servers]
    )
    for job_id in ids:
        doc = await stored(jc, job_id)
        assert doc["status"] in ("waiting", "ready")
        assert [f["value"] for f in doc["failures"]] == [EXPIRED]
        assert sum("Job Failed" in m for m in messages(doc)) == 1
        assert doc["retries"] == 3  # one attempt used by the claim, none by the expiry


async def test_servers_promoting_at_once_promote_each_job_once(
    servers: list[tuple[JobCollection, Faults]], clock: ManualClock
) -> None:
    jc = servers[0][0]
    ids = [await jc.create_job("t", {"i": i}).delay(60).save() for i in range(5)]
    clock.advance(61)
    passes = await gated_together(
        [f for _, f in servers], "update_many", [s.run_server_pass() for s, _ in servers]
    )
    assert sum(p.promoted for p in passes) == 1
    for job_id in ids:
        doc = await stored(jc, job_id)
        assert doc["status"] == "ready"
        assert messages(doc).count("Promoted to ready") == 1


async def test_one_completion_schedules_exactly_one_repeat_whoever_reports_it(
    servers: list[tuple[JobCollection, Faults]], clock: ManualClock
) -> None:
    jc = servers[0][0]
    for i in range(4):
        await jc.create_job("t", {"i": i}).repeat(2, wait=0).save()
    held = await jc.get_work("t", max_jobs=4)
    twins = [Job(server, job.doc.model_copy(deep=True)) for job in held for server, _ in servers]
    await gated_together([f for _, f in servers], "bulk_write", [twin.done() for twin in twins[:3]])
    await asyncio.gather(*(twin.done() for twin in twins[3:]))
    await asyncio.gather(*(s.run_server_pass() for s, _ in servers))
    docs = await jc.collection.find({}).to_list(None)
    assert len(docs) == 8  # four completed jobs, one repeat each
    repeats = [d for d in docs if d["status"] != "completed"]
    assert sorted(d["data"]["i"] for d in repeats) == [0, 1, 2, 3]
    assert all(d["repeated"] == 1 and d["repeats"] == 1 for d in repeats)


# --- a worker process killed with SIGKILL ------------------------------------------------------

WORKER = textwrap.dedent(
    """
    import os, socket, sys, time
    import bson

    port, mode = int(sys.argv[1]), sys.argv[2]
    conn = socket.create_connection(("127.0.0.1", port))

    def call(method, *params):
        body = bson.encode({"method": method, "params": list(params), "user": f"pid{os.getpid()}"})
        conn.sendall(len(body).to_bytes(4, "little") + body)
        size = int.from_bytes(conn.recv(4, socket.MSG_WAITALL), "little")
        reply = bson.decode(conn.recv(size, socket.MSG_WAITALL))
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply["ok"]

    print("ready", flush=True)
    while True:
        jobs = call("getWork", "crash", {"maxJobs": 1, "workTimeout": 30000})
        if not jobs:
            time.sleep(0.005)
            continue
        job = jobs[0]
        if mode == "victim":
            print("claimed", job["_id"], flush=True)
            time.sleep(3600)  # mid-job: killed here
        call("jobDone", job["_id"], job["runId"], {"pid": os.getpid()})
    """
)


def to_wire(value: Any) -> Any:
    if isinstance(value, JobDoc):
        return value.to_mongo()
    if isinstance(value, list):
        return [to_wire(v) for v in value]
    return value


async def serve(jc: JobCollection) -> asyncio.Server:
    """The method layer over a local socket: length-prefixed BSON requests and replies."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                size = int.from_bytes(await reader.readexactly(4), "little")
                request = bson.decode(await reader.readexactly(size))
                try:
                    result = await jc.call(
                        request["method"], *request["params"], user_id=request["user"]
                    )
                    reply = {"ok": to_wire(result)}
                except JobCollectionError as exc:
                    reply = {"error": str(exc)}
                body = bson.encode(reply)
                writer.write(len(body).to_bytes(4, "little") + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def until(
    condition: Callable[[], Awaitable[bool]], called: asyncio.Event, timeout: float = 20.0
) -> None:
    """Wait for the worker processes (not for time to pass): check again after each method
    call they make (they poll getWork every few ms), bounded by a timeout."""
    async with asyncio.timeout(timeout):
        while not await condition():
            called.clear()
            await called.wait()


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
async def test_a_worker_process_killed_with_sigkill_loses_no_job(
    make_jc: MakeJC, clock: ManualClock, tmp_path: Path
) -> None:
    jc = await make_jc()
    jc.allow(worker=lambda user_id, method, params: str(user_id).startswith("pid"))
    ids = [await jc.create_job("crash", {"i": i}).retry(1, wait=0).save() for i in range(12)]
    server = await serve(jc)
    called = asyncio.Event()
    jc.events.on("call", lambda event: called.set())
    port = server.sockets[0].getsockname()[1]
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    processes: list[asyncio.subprocess.Process] = []

    async def spawn(mode: str) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(script), str(port), mode, stdout=asyncio.subprocess.PIPE
        )
        processes.append(process)
        return process

    async def count(status: str) -> int:
        return int(await jc.collection.count_documents({"status": status}))

    try:
        async with server:
            victim = await spawn("victim")
            assert victim.stdout is not None
            async with asyncio.timeout(20):
                assert (await victim.stdout.readline()).strip() == b"ready"
                line = (await victim.stdout.readline()).decode().split()
            assert line[0] == "claimed"
            victim_job = bson.ObjectId(line[1])
            victim_run = (await stored(jc, victim_job))["runId"]
            survivors = [await spawn("worker") for _ in range(2)]
            victim.send_signal(signal.SIGKILL)
            assert await victim.wait() == -signal.SIGKILL
            await until(lambda: _equals(count("completed"), len(ids) - 1), called)
            assert (await stored(jc, victim_job))["status"] == "running"
            clock.advance(31)
            assert (await jc.run_server_pass()).expired == 1
            await until(lambda: _equals(count("completed"), len(ids)), called)
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
                await process.wait()
    pids = {p.pid for p in survivors}
    for job_id in ids:
        doc = await stored(jc, job_id)
        assert doc["status"] == "completed"
        assert messages(doc).count("Job Completed") == 1
        assert doc["result"]["pid"] in pids
    doc = await stored(jc, victim_job)
    assert messages(doc).count("Job Running") == 2
    assert [(f["value"], f["runId"]) for f in doc["failures"]] == [(EXPIRED, victim_run)]
    assert victim.pid not in pids and os.getpid() not in pids


async def _equals(value: Awaitable[int], expected: int) -> bool:
    return await value == expected
