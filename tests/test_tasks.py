"""Typed tasks (jc.task, Task.enqueue, jc.run_tasks, current_job): the stored job is an
ordinary one, the worker gets validated arguments, mypy checks the calls.

Queues run with polling and wake-up off: they claim at start, and `drain()` waits for them."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, Field

from conftest import SHARDED
from jobcollection import (
    JOB_PRIORITIES,
    InvalidArgument,
    InvalidArgumentType,
    Job,
    JobCollection,
    JobCollectionError,
    ManualClock,
    Task,
    current_job,
)

pytestmark = pytest.mark.both_sides

ROOT = Path(__file__).resolve().parent.parent
BOUND = 10.0


class EmailArgs(BaseModel):
    to: str = Field(pattern=r"^[^@]+@[^@]+$")
    subject: str = "hello"
    tries: int = 1


class Sent(BaseModel):
    to: str
    subject: str


async def drain(jc: JobCollection, tasks: list[Task[..., Any]] | None = None) -> None:
    queue = jc.run_tasks(tasks, concurrency=2, poll_interval=None, wakeup=False)
    await asyncio.wait_for(queue.drain(), BOUND)
    await asyncio.wait_for(queue.shutdown(), BOUND)


async def stored(jc: JobCollection, job_id: Any) -> dict[str, Any]:
    found = await jc.collection.find_one({"_id": job_id})
    assert found is not None
    return dict(found)


async def test_enqueue_validates_and_stores_an_ordinary_job(jc: JobCollection) -> None:
    @jc.task("sendEmail", retry=3, retry_wait=2, timeout=30, priority="high")
    async def send_email(args: EmailArgs) -> Sent:
        return Sent(to=args.to, subject=args.subject)

    job_id = await send_email.enqueue(EmailArgs(to="ada@example.com"))
    doc = await stored(jc, job_id)
    assert doc["type"] == "sendEmail"
    assert doc["data"] == {"to": "ada@example.com", "subject": "hello", "tries": 1}
    assert doc["retries"] == 4  # the first attempt and 3 retries
    assert doc["retryWait"] == 2000
    assert doc["priority"] == JOB_PRIORITIES["high"]
    assert doc["_private"]["jobcollectionTimeout"] == 30_000


async def test_a_bad_argument_names_the_field_and_saves_nothing(jc: JobCollection) -> None:
    @jc.task("sendEmail")
    async def send_email(args: EmailArgs) -> None:
        pass

    with pytest.raises(InvalidArgument) as raised:
        await send_email.enqueue(EmailArgs.model_construct(to="nobody", tries=1))
    assert raised.value.argument == "to"
    assert "pattern" in raised.value.problem
    with pytest.raises(InvalidArgument) as raised:
        await send_email.enqueue({"to": "a@b", "tries": "many"})  # type: ignore[arg-type]
    assert raised.value.argument == "tries"
    with pytest.raises(InvalidArgumentType) as raised:
        await send_email.enqueue()  # type: ignore[call-arg]
    assert raised.value.argument == "arguments"
    assert await jc.collection.count_documents({}) == 0


async def test_the_worker_gets_the_model_and_stores_the_result(jc: JobCollection) -> None:
    seen: list[EmailArgs] = []

    @jc.task("sendEmail")
    async def send_email(args: EmailArgs) -> Sent:
        seen.append(args)
        await current_job().log("sending")
        return Sent(to=args.to, subject=args.subject)

    job_id = await send_email.enqueue(EmailArgs(to="ada@example.com", subject="hi"))
    await drain(jc)
    assert seen == [EmailArgs(to="ada@example.com", subject="hi")]
    job = await jc.get_job(job_id, get_log=True)
    assert job is not None
    assert job.doc.status == "completed"
    assert job.doc.result == {"to": "ada@example.com", "subject": "hi"}
    assert any(entry.message == "sending" for entry in job.doc.log)


async def test_data_that_does_not_validate_fails_the_job_fatally(jc: JobCollection) -> None:
    called: list[EmailArgs] = []

    @jc.task("sendEmail", retry=5)
    async def send_email(args: EmailArgs) -> None:
        called.append(args)

    job_id = await jc.create_job("sendEmail", {"to": "nobody"}).retry(5).save()
    await drain(jc)
    assert called == []
    job = await jc.get_job(job_id, get_failures=True)
    assert job is not None
    assert job.doc.status == "failed"
    failure = job.doc.failures[-1]
    assert failure["type"] == "InvalidDocument"
    assert "sendEmail" in failure["message"] and "to:" in failure["message"]


async def test_plain_parameter_tasks(jc: JobCollection) -> None:
    @jc.task("resize", priority=5)
    async def resize(image: str, width: int = 100, *, fast: bool = False) -> dict[str, Any]:
        return {"image": image, "width": width, "fast": fast}

    first = await resize.enqueue("x.png", width=50)
    second = await resize.enqueue(image="y.png", fast=True)
    assert (await stored(jc, first))["data"] == {"image": "x.png", "width": 50, "fast": False}
    with pytest.raises(InvalidArgument) as raised:
        await resize.enqueue("z.png", width="wide")  # type: ignore[arg-type]
    assert raised.value.argument == "width"
    await drain(jc)
    results = [(await jc.get_job(i)) for i in (first, second)]
    assert [job.doc.result for job in results if job is not None] == [
        {"image": "x.png", "width": 50, "fast": False},
        {"image": "y.png", "width": 100, "fast": True},
    ]
    assert await resize("direct.png") == {"image": "direct.png", "width": 100, "fast": False}


async def test_run_tasks_runs_every_registered_task(jc: JobCollection) -> None:
    @jc.task("double")
    async def double(n: int) -> int:
        return 2 * n

    @jc.task("greet")
    async def greet(args: Sent) -> str:
        return f"{args.subject}, {args.to}"

    ids = [await double.enqueue(21), await greet.enqueue(Sent(to="Ada", subject="Hi"))]
    untyped = await jc.create_job("other", {}).save()
    await drain(jc)
    jobs = [await jc.get_job(i) for i in ids]
    assert [job.doc.result for job in jobs if job is not None] == [
        {"value": 42},
        {"value": "Hi, Ada"},
    ]
    other = await jc.get_job(untyped)
    assert other is not None and other.doc.status == "ready"


async def test_task_definitions_are_checked(jc: JobCollection) -> None:
    async def plain(n: int) -> None:
        pass

    jc.task("once")(plain)
    with pytest.raises(InvalidArgument) as raised:
        jc.task("once")(plain)
    assert raised.value.argument == "name"
    with pytest.raises(InvalidArgument) as raised:
        jc.task("bad", priority="urgent")(plain)
    assert raised.value.argument == "priority"
    with pytest.raises(InvalidArgument) as raised:  # a sync function runs in a thread, but
        jc.task("sync")(lambda n: n)  # type: ignore[arg-type, return-value]
    assert raised.value.argument == "function"  # its parameters need annotations too
    with pytest.raises(InvalidArgumentType) as raised:
        jc.task("nothing")(5)  # type: ignore[arg-type]
    assert raised.value.argument == "function"

    async def spread(*args: int) -> None:
        pass

    with pytest.raises(InvalidArgument) as raised:
        jc.task("spread")(spread)
    assert raised.value.argument == "function"
    with pytest.raises(InvalidArgument) as raised:
        jc.run_tasks([])
    with pytest.raises(JobCollectionError):
        current_job()


async def test_a_task_returns_its_job_unsaved_for_more_options(jc: JobCollection) -> None:
    @jc.task("double", retry=1, unique="k")
    async def double(n: int) -> int:
        return 2 * n

    job = double.job(3).delay(60)
    assert isinstance(job, Job) and job.id is None
    assert job.data == {"n": 3} and job.doc.retries == 2
    assert job.doc.unique is not None and job.doc.unique.key == "k"


@pytest.mark.skipif(SHARDED, reason="a sharded collection has no unique jobs")
async def test_a_task_debounces_its_jobs_with_unique_options(
    jc: JobCollection, clock: ManualClock
) -> None:
    """`unique=` takes Job.unique's arguments by name: the other modes (here debounce: the
    pending job takes the newest data and starts `period` after the last enqueue)."""

    @jc.task("sync", unique={"key": "s", "mode": "debounce", "period": 30})
    async def sync(n: int) -> None:
        return None

    first = await sync.enqueue(1)
    clock.advance(10)
    assert await sync.enqueue(2) == first
    [job] = await jc.get_jobs([first])
    assert job is not None and job.data == {"n": 2}
    assert job.doc.after == clock.now() + timedelta(seconds=30)


async def test_a_task_s_unique_options_are_checked_when_it_is_declared(jc: JobCollection) -> None:
    for bad, field in (
        ({"mode": "sometimes"}, "mode"),
        ({"period": -1, "mode": "throttle"}, "period"),
        ({"often": 1}, "unique"),
        ([("key", "k")], "unique"),
    ):
        with pytest.raises(InvalidArgument) as raised:
            jc.task("t", unique=bad)  # type: ignore[arg-type]
        assert raised.value.argument == field


def test_mypy_checks_enqueue_arguments_and_results(tmp_path: Path) -> None:
    examples = ROOT / "tests" / "typing"
    checked = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-error-summary",
            "--cache-dir",
            str(tmp_path / "mypy"),
            str(examples / "typed_tasks_ok.py"),
            str(examples / "typed_tasks_bad.py"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    errors = [line for line in checked.stdout.splitlines() if ": error:" in line]
    assert not [line for line in errors if "typed_tasks_ok.py" in line], checked.stdout
    bad = (examples / "typed_tasks_bad.py").read_text().splitlines()
    expected = {i for i, line in enumerate(bad, 1) if "# error:" in line}
    reported = {int(line.split(":")[1]) for line in errors if "typed_tasks_bad.py" in line}
    assert reported == expected, checked.stdout


CLI_MODULE = """
from jobcollection import JobCollection
from strict import memory_database

jc = JobCollection.from_database(memory_database("cli_tasks"), "queue")


@jc.task("double")
async def double(n: int) -> int:
    return 2 * n


@jc.task("halve")
async def halve(n: int) -> float:
    return n / 2
"""


@pytest.mark.local_only("loads a module of tasks as the CLI's worker does")
async def test_the_cli_worker_loads_every_registered_task_of_a_module(
    jc: JobCollection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jobcollection.cli import parser
    from jobcollection.cli.errors import Refused
    from jobcollection.cli.worker import load_tasks

    (tmp_path / "cli_tasks_module.py").write_text(CLI_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert [t.name for t in load_tasks("cli_tasks_module:jc")] == ["double", "halve"]
    assert [t.name for t in load_tasks("cli_tasks_module:halve")] == ["halve"]
    assert [t.name for t in load_tasks("cli_tasks_module:jc", ["halve"])] == ["halve"]
    with pytest.raises(Refused, match="no task of type other"):
        load_tasks("cli_tasks_module:jc", ["other"])
    with pytest.raises(Refused, match="not a TaskRegistry, a job collection"):
        load_tasks("cli_tasks_module:JobCollection")
    args = parser().parse_args(["worker", "cli_tasks_module:jc", "--tasks"])
    assert args.tasks and args.type is None
    # The worker runs the module's tasks on the collection it opens.
    job_id = await jc.create_job("halve", {"n": 5}).save()
    await drain(jc, load_tasks("cli_tasks_module:jc"))
    job = await jc.get_job(job_id)
    assert job is not None and job.doc.result == {"value": 2.5}
