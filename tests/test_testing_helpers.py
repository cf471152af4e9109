"""The helpers jobcollection gives its users' tests (jobcollection.testing, the pytest plugin):
as a user's test suite would use them."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from jobcollection import Job, JobCollection, ManualClock, TaskRegistry
from jobcollection.testing import (
    TEST_START,
    assert_enqueued,
    drain,
    memory_collection,
    perform_job,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

tasks = TaskRegistry()
"""Declared at import, before any collection: the helpers run them on the test's."""
attempts: list[str] = []


@tasks.task("send", retry=1, retry_wait=30)
async def send(to: str) -> str:
    attempts.append(to)
    if to == "flaky" and attempts.count(to) == 1:
        raise ConnectionError("try again")
    return f"sent to {to}"


@tasks.task("count")
async def count(n: int) -> int:
    return n + 1


async def test_memory_collection_is_started_on_a_manual_clock() -> None:
    jc = await memory_collection()
    try:
        assert isinstance(jc.clock, ManualClock) and jc.clock.now() == TEST_START
        await jc.create_job("t").save()
        assert len(await jc.get_work("t")) == 1  # the job server runs
    finally:
        await jc.close()


async def test_drain_runs_ready_jobs_dependents_and_retries_until_none_is_ready() -> None:
    jc = await memory_collection()
    seen: list[str] = []

    async def send(job: Job) -> dict[str, Any]:
        seen.append(job.data["to"])
        if job.data["to"] == "flaky" and job.doc.retried == 1:
            raise ConnectionError("try again")
        return {"sent": True}

    try:
        first = jc.create_job("send", {"to": "a"})
        await first.save()
        await jc.create_job("send", {"to": "b"}).depends([first]).save()
        await jc.create_job("send", {"to": "flaky"}).retry(1, wait=0).save()
        later = await jc.create_job("send", {"to": "later"}).delay(60).save()
        assert await drain(jc, {"send": send}) == 4  # a, flaky, flaky again, then b
        assert sorted(seen) == ["a", "b", "flaky", "flaky"]
        assert (await jc.get_job(later)).doc.status == "waiting"  # type: ignore[union-attr]
        jc.clock.advance(61)  # type: ignore[attr-defined]
        assert await drain(jc, {"send": send}) == 1
        assert seen[-1] == "later"
        with pytest.raises(ValueError, match="workers"):
            await drain(jc, {})
    finally:
        await jc.close()


async def test_perform_job_runs_one_job_through_the_real_retry_decision() -> None:
    jc = await memory_collection()

    async def fails(job: Job) -> None:
        raise RuntimeError("mail server down")

    try:
        other = await jc.create_job("send", {"to": "other"}).save()
        job = jc.create_job("send", {"to": "me"}).retry(2, wait=30).delay(3600)
        stored = await perform_job(jc, job, fails)
        assert stored.doc.status == "waiting"  # to be retried in 30 s
        assert stored.doc.failures and stored.doc.failures[-1]["type"] == "RuntimeError"
        assert (await jc.get_job(other)).doc.status == "ready"  # type: ignore[union-attr]

        async def works(job: Job) -> str:
            return "ok"

        done = await perform_job(jc, stored, works)
        assert (done.doc.status, done.doc.result) == ("completed", {"value": "ok"})
    finally:
        await jc.close()


async def test_assert_enqueued_matches_partial_data_and_explains_a_miss() -> None:
    jc = await memory_collection()
    try:
        await jc.create_job("send", {"to": "ada", "meta": {"lang": "en", "n": 1}}).save()
        [job] = await assert_enqueued(jc, "send", data={"meta": {"lang": "en"}})
        assert job.data["to"] == "ada"
        await assert_enqueued(jc, "send", count=1)
        with pytest.raises(AssertionError, match="the pending 'send' jobs hold"):
            await assert_enqueued(jc, "send", data={"to": "bob"})
        with pytest.raises(AssertionError, match="expected 2"):
            await assert_enqueued(jc, "send", count=2)
        await job.cancel()
        with pytest.raises(AssertionError):
            await assert_enqueued(jc, "send")  # cancelled: no longer pending
    finally:
        await jc.close()


def test_the_pytest_plugin_gives_a_users_suite_its_fixtures(tmp_path: Path) -> None:
    """A user's test file, run by pytest in a fresh process with only the installed plugin."""
    (tmp_path / "test_app.py").write_text(
        textwrap.dedent(
            """
            from jobcollection.testing import assert_enqueued, drain

            async def signup(jc, email):
                await jc.create_job("sendEmail", {"to": email}).save()

            async def test_signup_sends_a_welcome_email(memory_jc, jobcollection_clock):
                await signup(memory_jc, "ada@example.com")
                await assert_enqueued(memory_jc, "sendEmail", data={"to": "ada@example.com"})
                sent = []

                async def send(job):
                    sent.append(job.data["to"])

                assert await drain(memory_jc, {"sendEmail": send}) == 1
                assert sent == ["ada@example.com"]
                assert memory_jc.clock is jobcollection_clock
            """
        )
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "asyncio_mode=auto",
            str(tmp_path / "test_app.py"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


async def test_the_plugin_fixtures_are_here_too(
    memory_jc: JobCollection, jobcollection_clock: ManualClock
) -> None:
    assert memory_jc.clock is jobcollection_clock


async def test_drain_and_perform_job_run_typed_tasks_and_registries(
    memory_jc: JobCollection, jobcollection_clock: ManualClock
) -> None:
    attempts.clear()
    first = await send.on(memory_jc).enqueue("a")
    await count.on(memory_jc).enqueue(1)
    assert await drain(memory_jc, send) == 1  # a Task: its own type only
    assert await drain(memory_jc, tasks) == 1  # a registry: every type it holds
    done = await memory_jc.get_job(first)  # type: ignore[arg-type]
    assert done is not None and done.doc.result == {"value": "sent to a"}

    await send.on(memory_jc).enqueue("flaky")
    assert await drain(memory_jc, [send, count]) == 1  # failed: retried in 30 s
    jobcollection_clock.advance(30)
    assert await drain(memory_jc, {"send": send, "other": lambda job: job.log("x")}) == 1
    assert attempts == ["a", "flaky", "flaky"]
    with pytest.raises(ValueError, match="the task of 'count' jobs"):
        await drain(memory_jc, {"send": count})
    with pytest.raises(TypeError, match="workers\\[0\\]"):
        await drain(memory_jc, [lambda job: None])  # type: ignore[list-item]

    job = send.on(memory_jc).job("b").delay(3600)
    stored = await perform_job(memory_jc, job, send)  # its delay skipped
    assert (stored.doc.status, stored.doc.result) == ("completed", {"value": "sent to b"})
    stored = await perform_job(memory_jc, count.on(memory_jc).job(41), tasks)
    assert stored.doc.result == {"value": 42}
    bad = await perform_job(memory_jc, memory_jc.create_job("count", {"n": "many"}), count)
    assert bad.doc.status == "failed"  # data the task cannot read: fails at once
    assert bad.doc.failures[-1]["type"] == "InvalidDocument"
    with pytest.raises(ValueError, match="no task for 'other' jobs"):
        await perform_job(memory_jc, memory_jc.create_job("other"), tasks)


def test_the_typed_tasks_example_runs_as_written(tmp_path: Path) -> None:
    """examples/test_tasks_example.py, run by pytest in a fresh process, in a folder that holds
    only it, the application module it tests and the pytest settings it documents (no
    conftest of this project, no configuration of ours)."""
    for name in ("test_tasks_example.py", "tasks_app.py", "pytest.ini"):
        (tmp_path / name).write_text((EXAMPLES / name).read_text())
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_tasks_example.py"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout
    assert "warning" not in done.stdout  # its settings leave pytest-asyncio nothing to say
