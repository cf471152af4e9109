"""`worker`: a queue of a function (MODULE:FUNCTION; async, or plain: in the queue's threads or,
with `--executor process`, its child processes), or of typed tasks (`--tasks`
MODULE:OBJECT), until a signal or `--burst` stops it.

`load_object` imports what the command names as Python would, refusing with a message that
names what is wrong; `load_function` and `load_tasks` check that it is something a queue can
run. `Stopper` counts the signals (the first asks for a normal shutdown, the second for a
hard one) and `run_until_stopped` turns them into the queue's shutdown, within `--grace`.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib
import signal
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..model.errors import InvalidArgument
from .connect import open_collection
from .errors import EXIT_OK, Refused, missing_extra, say
from .metrics_port import REMOTE_METRICS, serving_metrics

if TYPE_CHECKING:
    from ..api.jobs import JobsAPI
    from ..api.queue import JobQueue
    from ..api.tasks import Task


def load_object(spec: str, what: str = "FUNCTION") -> Any:
    """MODULE:NAME, imported as Python would (the current directory first); Refused, naming
    what is wrong, for a spec that is not one, a module that cannot be imported or a name it
    does not have (a missing optional dependency is left to `explain`)."""
    module_name, _, name = spec.partition(":")
    example = "myapp.tasks:send_email" if what == "FUNCTION" else "myapp.tasks:tasks"
    if not module_name or not name:
        raise Refused(f"{spec!r} must be MODULE:{what} (e.g. {example})")
    if "" not in sys.path:
        sys.path.insert(0, "")
    try:
        found: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if missing_extra(exc) is not None:
            raise
        if exc.name is not None and f"{module_name}.".startswith(f"{exc.name}."):
            raise Refused(
                f"{spec}: no module {exc.name!r}; run from the folder that holds it, or add "
                "that folder to PYTHONPATH"
            ) from exc
        raise Refused(f"{spec}: importing {module_name} failed: {exc}") from exc
    except Exception as exc:
        raise Refused(
            f"{spec}: importing {module_name} raised {type(exc).__name__}: {exc} "
            "(--debug shows the traceback)"
        ) from exc
    for part in name.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise Refused(f"{spec}: {module_name} has no {name!r}") from None
    return found


def load_function(spec: str) -> Callable[..., Any]:
    """MODULE:FUNCTION, imported as Python would (the current directory first): an async
    function, or a plain one (it runs in the queue's threads, or with `--executor process`
    in its child processes)."""
    function: Any = load_object(spec)
    if not callable(function):
        raise Refused(f"{spec} is a {type(function).__name__}, not a function")
    loaded: Callable[..., Any] = function
    return loaded


def load_tasks(spec: str, types: Sequence[str] | None = None) -> list[Task[..., Any]]:
    """`worker --tasks`: MODULE:OBJECT names a TaskRegistry (all its tasks run), a collection
    whose tasks are registered with `jc.task` (all of them run), a Task, or a list of Tasks;
    with `types`, only the tasks of these job types."""
    from ..api.jobs import JobsAPI
    from ..api.tasks import Task, TaskRegistry, registered

    found = load_object(spec, "OBJECT")
    if isinstance(found, Task):
        chosen = [found]
    elif isinstance(found, list | tuple) and all(isinstance(t, Task) for t in found):
        chosen = list(found)
    elif isinstance(found, TaskRegistry):
        chosen = list(found.values())
    elif isinstance(found, JobsAPI):
        chosen = list(registered(found).values())
    else:
        raise Refused(f"{spec} is not a TaskRegistry, a job collection, a Task or a list of Tasks")
    if types:
        missing = set(types) - {t.name for t in chosen}
        if missing:
            raise Refused(f"{spec} has no task of type {', '.join(sorted(missing))}")
        chosen = [t for t in chosen if t.name in types]
    if not chosen:
        raise Refused(f"{spec} has no registered task")
    return chosen


class Stopper:
    """SIGINT/SIGTERM: the first asks for a normal shutdown, the second for a hard one."""

    def __init__(self) -> None:
        self.requested = asyncio.Event()
        self.hard = asyncio.Event()
        self.count = 0

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.on_signal, sig)

    def uninstall(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)

    def on_signal(self, sig: int) -> None:
        self.count += 1
        name = signal.Signals(sig).name
        if self.count == 1:
            say(f"received {name}; shutting down (normal): running jobs finish")
            self.requested.set()
        else:
            say(f"received {name} again; shutting down (hard)")
            self.hard.set()


async def work(args: argparse.Namespace) -> int:
    from ..api.queue import JobQueue, QueueOptions
    from ..api.tasks import dispatcher

    tasks = load_tasks(args.function, args.type) if args.tasks else None
    function = None if args.tasks else load_function(args.function)
    if tasks is not None and args.payload != 1:
        raise Refused("--tasks runs one job per call (no --payload)")
    if tasks is None and not args.type:
        raise Refused("--type is required (or --tasks)")
    types = args.type if tasks is None else [task.name for task in tasks]
    if args.metrics_port is not None and args.url is not None:
        raise Refused(REMOTE_METRICS)
    stopper = Stopper()
    stopper.install()
    try:
        async with (
            open_collection(args, job_server=True) as jc,
            serving_metrics(args, jc),  # before the queue's first claim
        ):
            if args.url is not None:
                await _may_claim(jc, types)
            try:
                options = QueueOptions(
                    concurrency=args.concurrency,
                    payload=args.payload,
                    prefetch=args.prefetch,
                    poll_interval=args.poll_interval,
                    work_timeout=args.work_timeout,
                    timeout=args.timeout,
                    executor=args.executor,
                    max_tasks_per_child=args.max_tasks_per_child,
                    max_memory_per_child=args.max_memory_per_child,
                )
                if tasks is not None:
                    types, worker, by_type = dispatcher(tasks, options.executor)
                    options = dataclasses.replace(options, retry_rules_by_type=by_type)
                    queue = JobQueue(jc, types, worker, options)
                else:
                    assert function is not None
                    queue = JobQueue(jc, args.type, function, options)
            except InvalidArgument as exc:  # named as the option that gave it
                name = exc.argument.split("[")[0]
                options_named = {field.name for field in dataclasses.fields(QueueOptions)}
                if name not in {*options_named, "type_or_types", "types"}:
                    raise
                option = "--type" if "type" in name else f"--{name.replace('_', '-')}"
                raise Refused(f"{option}: {exc.problem}") from None
            runs_in = "" if args.executor is None else f", in {args.executor}s"
            say(f"worker started: {', '.join(types)} jobs, concurrency {args.concurrency}{runs_in}")
            await run_until_stopped(queue, stopper, burst=args.burst, grace=args.grace)
    finally:
        stopper.uninstall()
    say("worker stopped")
    return EXIT_OK


async def _may_claim(jc: JobsAPI, types: Sequence[str]) -> None:
    """PermissionDenied now, rather than at every poll, when a remote API's rules would refuse
    this worker's claims (an empty long poll asks the same question, claiming nothing)."""
    from ..remote import RemoteJobCollection

    if isinstance(jc, RemoteJobCollection):
        await jc.service.wait(types, 0)


async def run_until_stopped(
    queue: JobQueue, stopper: Stopper, *, burst: bool = False, grace: float | None = None
) -> None:
    """Run a worker's queue until a signal asks it to stop (or, with `burst`, until no job is
    ready), then shut it down: normally (running jobs finish, within `grace` seconds if
    given), or hard at a second signal or once the grace period is over."""
    waits: list[asyncio.Task[Any]] = [asyncio.create_task(stopper.requested.wait())]
    if burst:
        waits.append(asyncio.create_task(queue.drain()))
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for waiting in waits:
        waiting.cancel()
    await asyncio.gather(*waits, return_exceptions=True)
    if not stopper.requested.is_set():
        say("no job is ready (--burst); shutting down (normal)")
    shutdown = asyncio.create_task(queue.shutdown("normal"))
    hard = asyncio.create_task(stopper.hard.wait())
    await asyncio.wait([shutdown, hard], timeout=grace, return_when=asyncio.FIRST_COMPLETED)
    if not shutdown.done():
        if not hard.done():
            say(f"running jobs did not finish within --grace {grace:g} s; shutting down (hard)")
        await queue.shutdown("hard")
    await shutdown
    hard.cancel()
    await asyncio.gather(hard, return_exceptions=True)
