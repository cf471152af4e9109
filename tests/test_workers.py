"""The worker registry (model/workers.py, local/workers.py, api/queue/presence.py): every
queue, local or remote, registers itself with the jobs it holds, renews its registration,
and leaves at its shutdown; `jc.workers()` lists the live ones, and one not renewed within
its TTL (a killed process) is gone. The TTL is the registering queue's: its collection's
`worker_ttl` (30 s by default), renewed every third of it. Registrations are driven with
`queue.announce()`; time passes on the injected clock."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import pytest

from conftest import MakeJC
from jobcollection import (
    InvalidArgument,
    InvalidArgumentType,
    Job,
    JobCollection,
    ManualClock,
    PermissionDenied,
    __version__,
)
from jobcollection.model.workers import TTL_MS, TTL_S, WorkerInfo, registration
from jobcollection.remote import RemoteJobCollection
from remote_helpers import serve_jc


async def until_registered(jc: Any, *queues: Any) -> None:
    """Wait (bounded) for the registration each queue makes as it starts: made in the
    background, it could otherwise land after what the test does next (an announce(), a
    move of the clock) and undo it."""
    wanted = {queue.worker_id for queue in queues}
    async with asyncio.timeout(10):
        while True:
            if wanted <= {w.id for w in await jc.workers()}:
                return
            await asyncio.sleep(0.01)


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
    await until_registered(jc, queue)
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
        await until_registered(jc, first, second)
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


# --- worker_ttl ---------------------------------------------------------------------------------

REGISTRATION = {
    **{"id": "w1", "host": "h", "pid": 1, "version": "0"},
    **{"types": ["t"], "concurrency": 1, "payload": 1, "prefetch": 0},
}
"""A registration as a remote worker sends it, without `ttl`."""


@asynccontextmanager
async def collection(database: Any, clock: ManualClock, **options: Any) -> AsyncIterator[Any]:
    """A JobCollection on the test database with these options (closed after)."""
    jc = JobCollection.from_database(database, "queue", clock=clock, **options)
    try:
        yield jc
    finally:
        await jc.close()


async def test_a_collections_worker_ttl_is_how_long_its_queues_registrations_last(
    make_jc: MakeJC, database: Any, clock: ManualClock
) -> None:
    """Each registration is stored to expire its own TTL after it was last renewed. (Read
    from the stored registrations: the queues renew on their own, on real time, so moving
    the clock past one TTL while the other lives would race the short one's renewals.)"""
    reader = await make_jc()  # another process, with the default TTL: it lists them alike
    async with collection(database, clock, worker_ttl=3) as jc:
        short = jc.process_jobs("t", _nothing, poll_interval=None)
        default = reader.process_jobs("t", _nothing, poll_interval=None)
        try:
            await until_registered(reader, short, default)
            by_id = {w.id: w.ttl_ms for w in await reader.workers()}
            assert by_id == {short.worker_id: 3000, default.worker_id: TTL_MS}
            for queue, ttl in ((short, 3), (default, TTL_S)):
                doc = await database["queue.workers"].find_one({"_id": queue.worker_id})
                assert doc["expireAt"] - doc["lastSeen"] == timedelta(seconds=ttl)
        finally:
            await short.shutdown(quiet=True)
            await default.shutdown(quiet=True)


async def test_a_queue_renews_its_registration_every_third_of_its_ttl(
    database: Any, clock: ManualClock
) -> None:
    """With a 1 s TTL the queue renews every third of a second on its own (the default TTL
    renews every 10 s: the bounded wait below would end before that)."""
    async with collection(database, clock, worker_ttl=timedelta(seconds=1)) as jc:
        queue = jc.process_jobs("t", _nothing, poll_interval=None)
        try:
            for _ in range(2):
                clock.advance(0.9)  # a renewal is due before the registration runs out
                moment = clock.now()
                async with asyncio.timeout(5):
                    while True:
                        if [w.last_seen for w in await jc.workers()] == [moment]:
                            break
                        await asyncio.sleep(0.02)
        finally:
            await queue.shutdown(quiet=True)


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (0.999, InvalidArgument),
        (86_401, InvalidArgument),
        (timedelta(days=2), InvalidArgument),
        (-1, InvalidArgument),
        ("30", InvalidArgumentType),
        (True, InvalidArgumentType),
    ],
)
async def test_a_worker_ttl_out_of_bounds_is_refused_by_name(
    database: Any, value: Any, error: type[Exception]
) -> None:
    with pytest.raises(error) as raised:
        JobCollection.from_database(database, "queue", worker_ttl=value)
    assert isinstance(raised.value, InvalidArgument) and raised.value.argument == "worker_ttl"


async def test_a_registration_through_the_method_layer_carries_its_own_ttl(
    make_jc: MakeJC, clock: ManualClock
) -> None:
    jc = await make_jc()
    assert await jc.call("jobWorkerSeen", {**REGISTRATION, "ttl": 5000}) is True
    [seen] = await jc.workers()
    assert seen.ttl_ms == 5000
    clock.advance(5)
    assert await jc.workers() == []
    for ttl in (999, 86_400_001, "5000", 5000.5):
        with pytest.raises(InvalidArgument) as raised:
            await jc.call("jobWorkerSeen", {**REGISTRATION, "ttl": ttl})
        assert raised.value.argument == "worker.ttl"


def test_a_registration_with_the_default_ttl_is_sent_without_it() -> None:
    """A server of an earlier version refuses keys it does not know: a queue that keeps the
    default TTL still registers there."""
    default = registration(REGISTRATION)
    assert default.ttl_ms == TTL_MS and "ttl" not in default.wire()
    short: WorkerInfo = registration({**REGISTRATION, "ttl": 3000})
    assert short.wire()["ttl"] == 3000 and registration(short.wire()) == short


async def test_a_remote_queue_registers_with_the_default_ttl_whatever_the_servers(
    database: Any, clock: ManualClock
) -> None:
    """The queue renews its registration, so its TTL is its own: a remote collection's
    queues renew every third of the default, and register with it, on a server whose own
    queues have a shorter TTL."""
    async with (
        collection(database, clock, worker_ttl=3) as jc,
        serve_jc(jc) as url,
        RemoteJobCollection(url, token="admin-token") as remote,
    ):
        queue = remote.process_jobs("t", _nothing, poll_interval=None, wakeup=False)
        local = jc.process_jobs("t", _nothing, poll_interval=None)
        try:
            assert await queue.announce() is True and await local.announce() is True
            seen = {w.id: (w.kind, w.ttl_ms) for w in await jc.workers()}
            assert seen == {queue.worker_id: ("remote", TTL_MS), local.worker_id: ("local", 3000)}
            assert {w.id: (w.kind, w.ttl_ms) for w in await remote.workers()} == seen
        finally:
            await queue.shutdown(quiet=True)
            await local.shutdown(quiet=True)


async def _nothing(job: Job) -> None:
    await job.done()
