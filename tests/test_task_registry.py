"""Typed tasks declared once on a TaskRegistry (issue 20), then enqueued and run on any job
collection: a local one, one through its remote API (the `both_sides` suites), a real
RemoteJobCollection over uvicorn (even one not yet connected when the tasks are bound), and
the `jobcollection worker MODULE:REGISTRY --tasks --url` command. The test helpers' side is in
test_testing_helpers.py, mypy's in test_tasks.py (tests/typing/).

The tasks below are declared when this module is imported, before any collection exists.
Queues run with polling and wake-up off: they claim at start, and `drain()` waits for them."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
import typing
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from conftest import MakeJC
from jobcollection import (
    JOB_PRIORITIES,
    BoundTask,
    InvalidArgument,
    InvalidArgumentType,
    JobCollection,
    Task,
    TaskOptions,
    TaskRegistry,
    current_job,
)
from jobcollection.api.jobs import JobsAPI
from jobcollection.api.tasks import TaskKeywords
from jobcollection.remote import RemoteJobCollection
from remote_helpers import serve_jc
from test_cli_errors import run_cli

pytestmark = pytest.mark.both_sides

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
BOUND = 10.0

tasks = TaskRegistry()


class EmailArgs(BaseModel):
    to: str
    subject: str = "hello"


@tasks.task("sendEmail", retry=2, retry_wait=5, timeout=30, priority="high")
async def send_email(args: EmailArgs) -> dict[str, str]:
    await current_job().log(f"to {args.to}")
    return {"sent": args.to}


@tasks.task("double", priority=5)
async def double(n: int) -> int:
    return 2 * n


async def run(jc: JobsAPI, chosen: Any = tasks) -> None:
    queue = jc.run_tasks(chosen, concurrency=2, poll_interval=None, wakeup=False)
    await asyncio.wait_for(queue.drain(), BOUND)
    await asyncio.wait_for(queue.shutdown(), BOUND)


async def test_registry_tasks_are_enqueued_and_run_on_the_collection_given(
    jc: JobCollection,
) -> None:
    email_id = await send_email.on(jc).enqueue(EmailArgs(to="ada@example.com"))
    double_id = await double.on(jc).enqueue(21)
    stored = await jc.get_job(email_id)
    assert stored is not None
    assert (stored.type, stored.data) == (
        "sendEmail",
        {"to": "ada@example.com", "subject": "hello"},
    )
    assert stored.doc.retries == 3 and stored.doc.retry_wait == 5000
    assert stored.doc.priority == JOB_PRIORITIES["high"]
    assert stored.doc.timeout == 30_000
    await run(jc)
    done = [await jc.get_job(i, get_log=True) for i in (email_id, double_id)]
    assert [job.doc.result for job in done if job is not None] == [
        {"sent": "ada@example.com"},
        {"value": 42},
    ]
    assert done[0] is not None and any(e.message == "to ada@example.com" for e in done[0].doc.log)


async def test_a_bound_task_builds_jobs_and_is_still_the_declaration(jc: JobCollection) -> None:
    here = double.on(jc)
    assert isinstance(here, BoundTask) and here.jc is jc
    assert here.same_as(double) and double.same_as(here)
    assert (here.name, here.function) == (double.name, double.function)
    job = here.job(4).delay(60)
    assert job.id is None and job.data == {"n": 4} and job.doc.priority == 5
    assert await here(5) == 10 == await double(5)  # calling a task calls the function
    assert not hasattr(double, "enqueue")  # a declaration says nowhere where jobs go
    job_id = await here.enqueue(8)
    await run(jc, [double, here])  # the same declaration, bound or not: one task to a queue
    done = await jc.get_job(job_id)
    assert done is not None and done.doc.result == {"value": 16}


async def test_jc_task_declares_on_the_collections_own_registry(jc: JobCollection) -> None:
    @jc.task("triple")
    async def triple(n: int) -> int:
        return 3 * n

    assert isinstance(triple, BoundTask) and triple.jc is jc
    job_id = await triple.enqueue(2)
    await send_email.on(jc).enqueue(EmailArgs(to="bob@example.com"))
    await run(jc, None)  # only what jc.task declared: sendEmail stays ready
    job = await jc.get_job(job_id)
    assert job is not None and job.doc.result == {"value": 6}
    ready = await jc.get_work("sendEmail")
    assert [j.data["to"] for j in ready] == ["bob@example.com"]


@pytest.mark.local_only("the registry's own rules, no collection involved")
def test_a_registry_is_a_mapping_of_tasks_by_name() -> None:
    assert list(tasks) == ["sendEmail", "double"] and len(tasks) == 2
    assert tasks["double"] is double and "sendEmail" in tasks
    assert repr(tasks) == "<TaskRegistry ['sendEmail', 'double']>"

    async def other(n: int) -> int:
        return n

    mine = TaskRegistry()
    mine.add(double)
    nowhere = RemoteJobCollection("http://127.0.0.1:9", token="t")  # never connected
    mine.add(double.on(nowhere))  # the same declaration: no conflict
    with pytest.raises(InvalidArgument) as raised:
        mine.task("double")(other)
    assert raised.value.argument == "name"
    assert list(mine) == ["double"]
    with pytest.raises(InvalidArgumentType):
        mine.add(other)  # type: ignore[type-var]

    app = TaskRegistry()
    app.include(tasks)
    assert list(app) == ["sendEmail", "double"]
    clash = TaskRegistry()
    clash.task("extra")(other)
    clash.task("sendEmail")(other)
    with pytest.raises(InvalidArgument, match="'sendEmail'"):
        app.include(clash)
    assert list(app) == ["sendEmail", "double"]  # nothing added
    with pytest.raises(InvalidArgumentType):
        app.include([double])  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentType) as raised:
        double.on("queue")  # type: ignore[arg-type]
    assert raised.value.argument == "jc"
    with pytest.raises(InvalidArgument) as raised:
        tasks.task("bad", retry_wait=3)(other)
    assert raised.value.argument == "retry_wait"
    with pytest.raises(InvalidArgumentType) as raised:
        tasks.task("bad", unique=3)(other)  # type: ignore[arg-type]
    assert raised.value.argument == "unique"
    assert "bad" not in tasks


@pytest.mark.local_only("run_tasks' argument checks")
async def test_run_tasks_refuses_what_is_not_tasks(jc: JobCollection) -> None:
    with pytest.raises(InvalidArgument, match="no task to run"):
        jc.run_tasks(TaskRegistry())
    with pytest.raises(InvalidArgumentType):
        jc.run_tasks(send_email)  # type: ignore[arg-type]
    twin = Task("double", double.function)  # another declaration of the same name
    with pytest.raises(InvalidArgument) as raised:
        jc.run_tasks([double, twin])
    assert raised.value.argument == "tasks[1]"


# --- TaskOptions: the options of a task's jobs as one value ------------------------------------


@pytest.mark.local_only("a value object, no collection involved")
def test_task_options_defaults_and_what_the_decorators_build() -> None:
    none = TaskOptions()
    assert (none.retry, none.retry_wait, none.timeout, none.priority, none.unique) == (
        0,
        None,
        None,
        0,
        False,
    )
    assert send_email.options == TaskOptions(retry=2, retry_wait=5, timeout=30, priority="high")
    assert double.options == TaskOptions(priority=5)
    nowhere = RemoteJobCollection("http://127.0.0.1:9", token="t")  # never connected
    assert double.on(nowhere).options is double.options  # binding keeps the declaration's

    async def other(n: int) -> int:
        return n

    assert Task("plain", other).options == none
    made = Task("made", other, TaskOptions(retry=1, unique="k"))
    assert made.options == TaskOptions(retry=1, unique="k")
    with pytest.raises(InvalidArgumentType) as raised:
        Task("bad", other, {"retry": 1})  # type: ignore[arg-type]
    assert raised.value.argument == "options"
    with pytest.raises(TypeError):
        TaskOptions(3)  # type: ignore[call-arg]  # keywords only
    # The decorators' keywords are TaskOptions' fields, name for name and type for type.
    assert typing.get_type_hints(TaskKeywords) == typing.get_type_hints(TaskOptions)


@pytest.mark.local_only("a value object, no collection involved")
@pytest.mark.parametrize(
    ("options", "message", "kind"),
    [
        ({"retry": -1}, "retry: must be >= 0, got -1", InvalidArgument),
        ({"retry": "3"}, "retry: must be an integer, not str", InvalidArgumentType),
        ({"retry_wait": 5}, "retry_wait: only applies with retry", InvalidArgument),
        ({"retry": 1, "retry_wait": -5}, "retry_wait: must not be negative", InvalidArgument),
        ({"retry": 1, "retry_wait": "x"}, "retry_wait: must be a number", InvalidArgumentType),
        ({"timeout": 0}, "timeout: must be at least 0.001 seconds", InvalidArgument),
        ({"timeout": "soon"}, "timeout: must be a number, not str", InvalidArgumentType),
        ({"priority": "urgent"}, "priority: unknown priority 'urgent'", InvalidArgument),
        ({"priority": 1.5}, "priority: must be an integer, not float", InvalidArgumentType),
        ({"unique": ""}, "unique: must not be empty", InvalidArgument),
        ({"unique": 3}, "unique: must be True, False, a key string or", InvalidArgumentType),
    ],
)
def test_a_bad_task_option_is_refused_by_the_value_and_both_decorators(
    options: dict[str, Any], message: str, kind: type[Exception]
) -> None:
    with pytest.raises(kind) as raised:
        TaskOptions(**options)
    assert str(raised.value).startswith(message)
    with pytest.raises(kind) as from_registry:
        TaskRegistry().task("t", **options)
    assert str(from_registry.value) == str(raised.value)
    nowhere = RemoteJobCollection("http://127.0.0.1:9", token="t")  # never connected
    with pytest.raises(kind) as from_collection:
        nowhere.task("t", **options)
    assert str(from_collection.value) == str(raised.value)


@pytest.mark.local_only("a value object, no collection involved")
def test_task_options_are_frozen_and_compare_by_value() -> None:
    options = TaskOptions(retry=3, retry_wait=timedelta(seconds=2), unique=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.retry = 5  # type: ignore[misc]
    assert options == TaskOptions(retry=3, retry_wait=timedelta(seconds=2), unique=True)
    assert len({options, TaskOptions(retry=3, retry_wait=timedelta(seconds=2), unique=True)}) == 1
    assert options.retry_wait == timedelta(seconds=2)  # kept as given
    assert dataclasses.replace(options, priority="low").priority == "low"
    with pytest.raises(InvalidArgument) as raised:
        dataclasses.replace(options, retry=0)  # a replaced value is checked again
    assert raised.value.argument == "retry_wait"


async def test_task_options_are_applied_to_each_job(jc: JobCollection) -> None:
    options = TaskOptions(retry=2, retry_wait=timedelta(seconds=3), timeout=1.5, unique="k")
    job = options.apply(jc.create_job("t", {}))
    assert (job.doc.retries, job.doc.retry_wait, job.doc.timeout) == (3, 3000, 1500)
    assert job.doc.unique is not None and job.doc.unique.key == "k"
    assert job.doc.priority == 0
    plain = TaskOptions().apply(jc.create_job("t", {}))
    bare = jc.create_job("t", {})
    assert plain.doc == bare.doc  # no option: the job as the builders make it
    here = send_email.on(jc).job(EmailArgs(to="ada@example.com"))
    assert send_email.options.apply(jc.create_job("sendEmail", here.data)).doc == here.doc


@pytest.mark.local_only("a RemoteJobCollection of its own, over uvicorn")
async def test_registry_tasks_on_a_remote_collection_bound_before_it_connects(
    make_jc: MakeJC,
) -> None:
    local = await make_jc()
    async with serve_jc(local) as url:
        remote = RemoteJobCollection(url, token="admin-token")
        emails = send_email.on(remote)  # not connected yet: binding touches nothing

        @remote.task("greet")  # neither does declaring on it
        async def greet(name: str) -> str:
            return f"hello {name}"

        async with remote:
            email_id = await emails.enqueue(EmailArgs(to="ada@example.com"))
            greet_id = await greet.enqueue("Ada")
            app = TaskRegistry()
            app.include(tasks)
            app.add(greet)
            await run(remote, app)
        done = [await local.get_job(i) for i in (email_id, greet_id)]
    assert [(job.doc.status, job.doc.result) for job in done if job is not None] == [
        ("completed", {"sent": "ada@example.com"}),
        ("completed", {"value": "hello Ada"}),
    ]


IMPORT_CHECK = """
import gc
import tasks_app
from jobcollection.api.jobs import JobsAPI
from jobcollection.cli.worker import load_tasks

assert not [o for o in gc.get_objects() if isinstance(o, JobsAPI)], "a collection was made"
print(sorted(tasks_app.tasks), [t.name for t in load_tasks("tasks_app:tasks", ["resize"])])
"""


@pytest.mark.local_only("imports a module of tasks in a fresh interpreter")
def test_a_module_of_tasks_imports_before_any_collection_exists() -> None:
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_CHECK],
        cwd=EXAMPLES,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['resize', 'sendEmail'] ['resize']"


@pytest.mark.local_only("the worker command through a real remote API")
async def test_the_worker_command_runs_a_registry_through_a_remote_api(
    make_jc: MakeJC, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    from tasks_app import EmailArgs as AppEmailArgs
    from tasks_app import resize
    from tasks_app import send_email as app_send_email

    local = await make_jc()
    async with serve_jc(local) as url, RemoteJobCollection(url, token="admin-token") as remote:
        email_id = await app_send_email.on(remote).enqueue(AppEmailArgs(to="ada@example.com"))
        resize_id = await resize.on(remote).enqueue("cat.png", width=50)
        ran = await run_cli(
            "worker", "tasks_app:tasks", "--tasks", "--url", url, "--burst",
            token="admin-token", cwd=EXAMPLES,
        )  # fmt: skip
        assert ran.code == 0, ran.err
        assert "worker started: sendEmail, resize jobs" in ran.out
        done = [await remote.get_job(i) for i in (email_id, resize_id)]
    assert [(job.doc.status, job.doc.result) for job in done if job is not None] == [
        ("completed", {"message_id": "<ada@example.com>"}),
        ("completed", {"value": "cat.png@50w"}),
    ]


@pytest.mark.local_only("runs an example script")
def test_the_tasks_app_example_prints_what_its_header_promises() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "tasks_app.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "sendEmail {'to': 'ada@example.com', 'subject': 'Welcome'}: completed, result "
        "{'message_id': '<ada@example.com>'}",
        "resize {'image': 'cat.png', 'width': 50}: completed, result {'value': 'cat.png@50w'}",
    ]
