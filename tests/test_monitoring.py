"""CommandCounter: counts the commands a pymongo client starts, fed with pymongo's own event
objects (no server needed)."""

from __future__ import annotations

import threading
from datetime import timedelta

from pymongo import AsyncMongoClient
from pymongo.monitoring import CommandFailedEvent, CommandStartedEvent, CommandSucceededEvent

from jobcollection.monitoring import CommandCounter

ADDRESS = ("localhost", 27017)


def started(name: str, database: str = "app", request_id: int = 1) -> CommandStartedEvent:
    return CommandStartedEvent({name: "queue.jobs"}, database, request_id, ADDRESS, request_id)


def succeeded(name: str, database: str = "app") -> CommandSucceededEvent:
    return CommandSucceededEvent(
        timedelta(microseconds=50), {"ok": 1}, name, 1, ADDRESS, 1, database_name=database
    )


def failed(name: str, database: str = "app") -> CommandFailedEvent:
    return CommandFailedEvent(
        timedelta(microseconds=50), {"ok": 0}, name, 1, ADDRESS, 1, database_name=database
    )


def test_counts_started_commands_by_name() -> None:
    counter = CommandCounter()
    for name in ("insert", "find", "find", "update", "getMore"):
        counter.started(started(name))
        counter.succeeded(succeeded(name))
    assert counter.total == 5
    assert counter.by_name == {"insert": 1, "find": 2, "update": 1, "getMore": 1}
    assert counter.failed_count == 0


def test_failed_commands_are_counted_once_and_reported() -> None:
    counter = CommandCounter()
    counter.started(started("update"))
    counter.failed(failed("update"))
    assert counter.total == 1
    assert counter.failed_count == 1


def test_database_filter_ignores_other_databases() -> None:
    counter = CommandCounter(database="app")
    counter.started(started("insert", "app"))
    counter.started(started("endSessions", "admin"))
    counter.failed(failed("endSessions", "admin"))
    assert counter.by_name == {"insert": 1}
    assert counter.failed_count == 0


def test_reset_and_copies() -> None:
    counter = CommandCounter()
    counter.started(started("find"))
    counter.failed(failed("find"))
    snapshot = counter.by_name
    snapshot["find"] = 99
    assert counter.by_name == {"find": 1}
    counter.reset()
    assert counter.total == 0 and counter.by_name == {} and counter.failed_count == 0


def test_thread_safe_counting() -> None:
    counter = CommandCounter()

    def work() -> None:
        for i in range(2000):
            counter.started(started("find", request_id=i))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counter.total == 8000


async def test_registers_as_a_pymongo_event_listener() -> None:
    counter = CommandCounter()
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(
        "mongodb://localhost:1", event_listeners=[counter], connect=False
    )
    try:
        assert counter in client.options.event_listeners
    finally:
        await client.close()
    assert counter.total == 0
