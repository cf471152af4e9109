"""QueueOptions, the one value a queue's options travel in (process_jobs, run_tasks and the
CLI's worker build it): checked once when made, kept in canonical units, a plain value."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest

from jobcollection import (
    InvalidArgument,
    InvalidArgumentType,
    Job,
    JobCollection,
    RateLimit,
    TaskRegistry,
)
from jobcollection.api.queue import DEFAULT_CANCEL_GRACE, DEFAULT_WORK_TIMEOUT, QueueOptions


def test_the_defaults_are_process_jobs_defaults() -> None:
    options = QueueOptions()
    assert (options.concurrency, options.payload, options.prefetch) == (1, 1, 0)
    assert options.poll_interval == options.poll_s == 5.0
    assert options.work_timeout == DEFAULT_WORK_TIMEOUT
    assert options.work_timeout_ms == DEFAULT_WORK_TIMEOUT * 1000
    assert options.heartbeat_s == DEFAULT_WORK_TIMEOUT / 3
    assert options.timeout is None and options.timeout_ms is None
    assert options.cancel_grace == options.cancel_grace_s == DEFAULT_CANCEL_GRACE
    assert options.rate_limit is None and options.error_callback is None
    assert options.wakeup is True


def test_durations_are_kept_as_seconds_to_the_millisecond() -> None:
    options = QueueOptions(
        poll_interval=timedelta(milliseconds=1500),
        work_timeout=timedelta(seconds=30),
        timeout=0.0001,  # rounded up to 1 ms, as the queue always did
        cancel_grace=2,
    )
    assert options == QueueOptions(
        poll_interval=1.5, work_timeout=30.0, timeout=0.001, cancel_grace=2.0
    )
    assert (options.work_timeout_ms, options.timeout_ms) == (30_000, 1)
    assert isinstance(options.cancel_grace, float)


@pytest.mark.parametrize("off", [None, 0, 0.0, timedelta(0)])
def test_no_polling_is_none(off: Any) -> None:
    assert QueueOptions(poll_interval=off).poll_interval is None


@pytest.mark.parametrize(
    ("options", "named", "error"),
    [
        ({"concurrency": 0}, "concurrency", InvalidArgument),
        ({"payload": 1.5}, "payload", InvalidArgumentType),
        ({"prefetch": -1}, "prefetch", InvalidArgument),
        ({"poll_interval": "5"}, "poll_interval", InvalidArgumentType),
        ({"work_timeout": 0}, "work_timeout", InvalidArgument),
        ({"timeout": 0}, "timeout", InvalidArgument),
        ({"cancel_grace": -1}, "cancel_grace", InvalidArgument),
        ({"rate_limit": 5}, "rate_limit", InvalidArgumentType),
        ({"wakeup": "yes"}, "wakeup", InvalidArgumentType),
        ({"error_callback": 3}, "error_callback", InvalidArgumentType),
    ],
)
def test_a_bad_option_is_named(options: dict[str, Any], named: str, error: type) -> None:
    with pytest.raises(error) as raised:
        QueueOptions(**options)
    assert raised.value.argument == named


def test_it_is_a_frozen_value() -> None:
    limit = RateLimit(10, 1)
    options = QueueOptions(concurrency=4, rate_limit=limit)
    assert options == QueueOptions(concurrency=4, rate_limit=limit)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.concurrency = 5  # type: ignore[misc]
    assert dataclasses.replace(options, concurrency=5).concurrency == 5
    with pytest.raises(InvalidArgument):  # a replaced value is checked again
        dataclasses.replace(options, concurrency=0)


async def test_process_jobs_and_run_tasks_each_build_the_one_value(jc: JobCollection) -> None:
    tasks = TaskRegistry()

    @tasks.task("t")
    async def t() -> None: ...

    async def work(job: Job) -> None: ...

    quiet = {"poll_interval": None, "wakeup": False}
    by_function = jc.process_jobs("t", work, concurrency=3, cargo=2, **quiet)
    by_tasks = jc.run_tasks(tasks, concurrency=3, timeout=timedelta(seconds=9), **quiet)
    try:
        assert by_function.options == QueueOptions(concurrency=3, payload=2, **quiet)
        assert by_tasks.options == QueueOptions(concurrency=3, timeout=9, **quiet)
    finally:
        await by_function.shutdown(quiet=True)
        await by_tasks.shutdown(quiet=True)
