"""The worker registry (model/workers.py, local/workers.py, api/queue/presence.py): every
queue, local or remote, registers itself with the jobs it holds, renews its registration,
and leaves at its shutdown; `jc.workers()` lists the live ones, and one not renewed within
its TTL (a killed process) is gone. Registrations are driven with `queue.announce()`; time
passes on the injected clock."""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Any

import pytest

from conftest import MakeJC
from jobcollection import Job, ManualClock, PermissionDenied, __version__
from jobcollection.model.workers import TTL_S
from jobcollection.remote import RemoteJobCollection
from remote_helpers import serve_jc


async def test_a_queue_registers_itself_with_the_jobs_it_holds_and_leaves(
    make_jc: MakeJC, clock: ManualClock
) -> None:
    jc = await make_jc()
    job_id = await jc.create_job("t").save()
    started, release = asyncio.Event(), asyncio.Event()

    async def worker(job: Job) -> None:
        started.set()
        await release.wait()
        await job.done()

    queue = jc.process_jobs(["t", "u"], worker, concurrency=2, prefetch=3, poll_interval=None)
    async with asyncio.timeout(10):
        await started.wait()
    clock.advance(1)
    assert await queue.announce() is True
    [seen] = await jc.workers()
    assert seen.id == queue.worker_id and seen.kind == "local" and seen.user is None
    assert (seen.host, seen.pid, seen.version) == (socket.gethostname(), os.getpid(), __version__)
    assert (seen.types, seen.concurrency, seen.payload, seen.prefetch) == (("t", "u"), 2, 1, 3)
    assert (seen.held, seen.holding) == ((job_id,), 1)
    assert seen.last_seen == clock.now() and seen.started is not None
    release.set()
    await queue.shutdown("soft", quiet=True)
    assert await jc.workers() == []


async def test_a_queue_not_renewed_within_its_ttl_is_gone(
    make_jc: MakeJC, clock: ManualClock
) -> None:
    jc, other = await make_jc(), await make_jc()
    first = jc.process_jobs("t", _nothing, poll_interval=None)
    second = other.process_jobs("t", _nothing, poll_interval=None)
    try:
        assert await first.announce() and await second.announce()
        assert {w.id for w in await other.workers()} == {first.worker_id, second.worker_id}
        clock.advance(TTL_S - 1)
        assert await second.announce()  # `first` is killed: it renews nothing
        clock.advance(1)
        assert [w.id for w in await jc.workers()] == [second.worker_id]
    finally:
        await first.shutdown(quiet=True)
        await second.shutdown(quiet=True)


async def test_a_remote_queue_registers_through_the_server_as_its_user(
    make_jc: MakeJC, clock: ManualClock
) -> None:
    jc = await make_jc()
    async with serve_jc(jc) as url, RemoteJobCollection(url, token="admin-token") as remote:
        queue = remote.process_jobs("t", _nothing, poll_interval=None, wakeup=False)
        try:
            assert await queue.announce() is True
            [seen] = await jc.workers()
            assert (seen.id, seen.kind, seen.user) == (queue.worker_id, "remote", "tester")
            registration = {
                **{"id": queue.worker_id, "host": "h", "pid": 1, "version": "0"},
                **{"types": ["t"], "concurrency": 1, "payload": 1, "prefetch": 0},
            }
            jc.allow(jobWorkerSeen=["creator-1"])
            with pytest.raises(PermissionDenied, match="another user's"):
                await jc.call("jobWorkerSeen", registration, user_id="creator-1")
            assert (await jc.workers())[0].host == seen.host  # not overwritten
        finally:
            await queue.shutdown(quiet=True)
        assert await jc.workers() == []


async def test_a_queue_the_rules_refuse_carries_on_unregistered(
    make_jc: MakeJC, caplog: pytest.LogCaptureFixture
) -> None:
    jc = await make_jc()
    jc.deny(jobWorkerSeen=["tester"])
    await jc.create_job("t").save()
    done: list[Any] = []

    async def worker(job: Job) -> None:
        await job.done()
        done.append(job.id)

    async with serve_jc(jc) as url, RemoteJobCollection(url, token="admin-token") as remote:
        queue = remote.process_jobs("t", worker, poll_interval=None, wakeup=False)
        try:
            assert await queue.announce() is False
            async with asyncio.timeout(10):
                await queue.drain()
        finally:
            await queue.shutdown(quiet=True)
    assert len(done) == 1 and await jc.workers() == []
    assert "the worker registry refused this queue" in caplog.text


async def _nothing(job: Job) -> None:
    await job.done()
