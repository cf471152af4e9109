"""Typed task definitions: an async function declared as the worker of a job type, once, and
used on any job collection (local, remote, or the test helpers' in-memory one).

    tasks = TaskRegistry()                 # the application's tasks, in its own module

    @tasks.task("sendEmail", retry=3, timeout=30, priority="high")
    async def send_email(args: EmailArgs) -> Sent: ...

    job_id = await send_email.on(jc).enqueue(EmailArgs(to="ada@example.com"))
    queue = jc.run_tasks(tasks, concurrency=4)   # one queue for every task of the registry

Declaring a task touches no collection, so a module of tasks imports before any exists (a
RemoteJobCollection not yet connected, a test's in-memory one). `task.on(jc)` is the task bound
to a collection (a `BoundTask`): its `enqueue` and `job` save jobs there. `@jc.task(...)` is the
same declaration on the collection's own registry, already bound to it.

A task's input is one pydantic model (its only parameter) or plain annotated parameters (a
model is built from the signature). `enqueue` validates its arguments (InvalidArgument naming
the field) and saves an ordinary job: type = the task's name, data = the input's JSON dump by
alias (`model_dump(mode="json", by_alias=True)`: a field declared `Field(alias="from")` is
stored as "from"), the task's options (`task.options`, a TaskOptions: one value, built once
by the decorator) applied with the Job builders. A worker validates
`job.data` the same way (so by alias), calls the function, and stores its return value
(JSON-able; a pydantic model is dumped by alias) as the result; data that does not validate
fails the job fatally.
Inside the function, `current_job()` is the Job being worked on (for its log and progress).

Typing: `Task[P, R]` keeps the function's parameters (a ParamSpec) and return type, so mypy
checks `task.on(jc).enqueue(...)` and `task(...)` calls as it checks calls of the function
itself; a Task that is not bound has no `enqueue`, so mypy also reports an enqueue that says
nowhere where the job goes.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
import typing
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from typing import (
    TYPE_CHECKING,
    Any,
    Generic,
    ParamSpec,
    TypeAlias,
    TypedDict,
    TypeVar,
    Unpack,
    cast,
    overload,
)

from pydantic import BaseModel, ValidationError, create_model
from pydantic_core import to_jsonable_python

from ..model import validation as v
from ..model.decisions import Backoff, ExceptionTypes, RetryOn, RetryRules
from ..model.errors import InvalidArgument, InvalidArgumentType, InvalidDocument, JobCollectionError
from .job import Job, UniqueOptions, unique_setting
from .queue import failure_info
from .queue.threads import in_thread, is_async

if TYPE_CHECKING:
    from ..model.types import Id
    from .seam import ServedCollection

P = ParamSpec("P")
R = TypeVar("R")
TaskFunction: TypeAlias = Callable[P, Awaitable[R]] | Callable[P, R]
"""What a task is declared on: an async function of the job's arguments, or a plain one (run
in the queue's threads); either way the task's result type R is what a call gives, awaited."""

logger = logging.getLogger("jobcollection.tasks")

_current: ContextVar[Job] = ContextVar("jobcollection_current_job")


def current_job() -> Job:
    """The job the calling task function was called for (its log, progress, id); raises
    JobCollectionError outside a task's run."""
    try:
        return _current.get()
    except LookupError:
        raise JobCollectionError("current_job(): no task is running in this context") from None


def _problem(exc: ValidationError) -> InvalidArgument:
    """pydantic's errors as an InvalidArgument naming the first field at fault."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    field = ".".join(str(part) for part in first["loc"]) or "args"
    problem = str(first["msg"])
    if len(errors) > 1:
        others = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors[1:])
        problem = f"{problem} (also {others})"
    return InvalidArgument(field, problem)


class _Input:
    """How a function's arguments become job data, and job data its arguments again."""

    def __init__(self, function: Callable[..., Any]) -> None:
        self.signature = inspect.signature(function)
        try:
            hints = typing.get_type_hints(function)
        except NameError as exc:
            raise InvalidArgument("function", f"an annotation does not resolve: {exc}") from exc
        params = list(self.signature.parameters.values())
        for p in params:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise InvalidArgument("function", f"*{p.name} parameters cannot be job data")
            if p.name not in hints:
                raise InvalidArgument("function", f"parameter {p.name!r} needs an annotation")
        self.params = params
        single = hints.get(params[0].name) if len(params) == 1 else None
        self.model: type[BaseModel]
        if isinstance(single, type) and issubclass(single, BaseModel):
            self.whole = True  # the data is this model's dump
            self.model = single
        else:
            self.whole = False  # the data holds one field per parameter
            fields: dict[str, Any] = {
                p.name: (hints[p.name], ... if p.default is p.empty else p.default) for p in params
            }
            try:
                self.model = create_model(f"{function.__name__}_arguments", **fields)
            except (NameError, TypeError, ValueError) as exc:
                raise InvalidArgument(
                    "function", f"its parameters cannot be job data: {exc}"
                ) from exc

    def data(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """The job data for a call's arguments; InvalidArgument naming the field at fault."""
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise InvalidArgumentType("arguments", str(exc)) from None
        bound.apply_defaults()
        value: Any = dict(bound.arguments)
        if self.whole:
            value = value[self.params[0].name]
            if isinstance(value, BaseModel):  # checked again: it may be built unvalidated
                value = value.model_dump(by_alias=True, warnings=False)
        try:
            return self.model.model_validate(value).model_dump(mode="json", by_alias=True)
        except ValidationError as exc:
            raise _problem(exc) from None

    def call(self, function: Callable[..., Any], data: dict[str, Any]) -> Callable[[], Any]:
        """The function bound to the arguments job data holds, to call (ValidationError if
        the data does not validate)."""
        validated = self.model.model_validate(data)
        values = (
            {self.params[0].name: validated}
            if self.whole
            else {p.name: getattr(validated, p.name) for p in self.params}
        )
        positional = [values[p.name] for p in self.params if p.kind is p.POSITIONAL_ONLY]
        named = {p.name: values[p.name] for p in self.params if p.kind is not p.POSITIONAL_ONLY}
        return functools.partial(function, *positional, **named)


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskOptions:
    """The options of a task's jobs, as one validated value: what `@tasks.task(...)` and
    `@jc.task(...)` build from their keywords, what `task.options` holds, and what every job
    of the task gets (`apply`). A bad option raises InvalidArgument (or InvalidArgumentType)
    naming it as spelled here, when the value is made; the collection's limits are checked
    when a job is saved. Values are kept as given."""

    retry: int = 0
    """Retries after the first attempt (`Job.retry(retry)`); 0: none."""
    retry_wait: float | timedelta | None = None
    """Seconds (or a timedelta) between two attempts; None: Job.retry's default. Only with
    `retry`."""
    timeout: float | timedelta | None = None
    """The longest a worker call on a job of the task may run (`Job.timeout`), in seconds or
    a timedelta, at least a millisecond; None: the queue's `timeout`, if any."""
    expires: float | timedelta | None = None
    """A deadline for each job of the task (`Job.expires`), in seconds or a timedelta after
    its save: a job not started by then is cancelled (Celery's task `expires`); None: none."""
    priority: int | str = 0
    """`Job.priority`: an integer (lower runs first) or one of JOB_PRIORITIES ("high", ...)."""
    unique: bool | str | UniqueOptions = False
    """True: `Job.unique()` (one pending job per type and user); a key string:
    `Job.unique(key)`; Job.unique's arguments by name (UniqueOptions: key, mode, period,
    states), for the other modes, e.g. `{"key": "sync", "mode": "debounce", "period": 30}`;
    False: not unique."""
    retry_on: RetryOn | None = None
    """Which of the function's exceptions are retried (exception types, or a predicate); the
    others fail the job fatally. With `non_retryable` and `retry_backoff`, the task's retry
    rules (RetryRules: model/decisions.py), which replace the queue's for its jobs; they are
    the worker's, not stored with the jobs."""
    non_retryable: ExceptionTypes = ()
    """Exception types that fail the job fatally, whatever `retry_on` says."""
    retry_backoff: Backoff | None = None
    """The wait before a retry, from the exception and the attempt: seconds, a timedelta, or
    None for the job's own backoff."""

    def __post_init__(self) -> None:
        # Checked under the names the caller wrote (the Job builders name their own
        # parameters: `retries`, `wait`, `seconds`, `level`), now rather than at the first
        # enqueue.
        v.count(self.retry, "retry")
        if self.retry_wait is not None:
            if not self.retry:
                raise InvalidArgument("retry_wait", "only applies with retry")
            v.duration_ms(self.retry_wait, "retry_wait")
        if self.timeout is not None:
            v.duration_ms(self.timeout, "timeout", minimum_ms=1)
        if self.expires is not None:
            v.duration_ms(self.expires, "expires", minimum_ms=1)
        v.priority(self.priority, "priority")
        if isinstance(self.unique, str):
            v.unique_key(self.unique, "unique")
        elif isinstance(self.unique, Mapping):
            unknown = sorted(map(str, set(self.unique) - set(UniqueOptions.__annotations__)))
            if unknown:
                raise InvalidArgument("unique", f"has no option {unknown[0]!r}")
            unique_setting(**self.unique)
        elif not isinstance(self.unique, bool):
            raise InvalidArgumentType(
                "unique", "must be True, False, a key string or Job.unique's arguments by name"
            )
        self.retry_rules()

    def retry_rules(self) -> RetryRules | None:
        """The task's own retry rules, if it declares any (None: the queue's apply)."""
        if self.retry_on is None and not self.non_retryable and self.retry_backoff is None:
            return None
        return RetryRules(
            retry_on=self.retry_on,
            non_retryable=self.non_retryable,
            retry_backoff=self.retry_backoff,
        )

    def apply(self, job: Job) -> Job:
        """Set these options on a job with the Job builders (`retry`, `timeout`, `expires`,
        `priority`, `unique`); the job, to set more before it is saved."""
        if self.retry:
            if self.retry_wait is None:
                job.retry(self.retry)
            else:
                job.retry(self.retry, wait=self.retry_wait)
        if self.timeout is not None:
            job.timeout(self.timeout)
        if self.expires is not None:
            job.expires(self.expires)
        job.priority(self.priority)
        if self.unique is True:
            job.unique()
        elif isinstance(self.unique, str):
            job.unique(self.unique)
        elif isinstance(self.unique, Mapping):
            job.unique(**self.unique)
        return job


class TaskKeywords(TypedDict, total=False):
    """TaskOptions' fields as the keywords of `TaskRegistry.task` and `jc.task` (their
    `**options`, typed with Unpack so mypy checks each name and type); what each means and
    its default: TaskOptions."""

    retry: int
    retry_wait: float | timedelta | None
    timeout: float | timedelta | None
    expires: float | timedelta | None
    priority: int | str
    unique: bool | str | UniqueOptions
    retry_on: RetryOn | None
    non_retryable: ExceptionTypes
    retry_backoff: Backoff | None


class Task(Generic[P, R]):
    """An async function declared as the worker of job type `name`, with the options of its
    jobs (`options`, a TaskOptions; default: none); bound to no collection.

    Calling the task calls the function; `on(jc)` is the task bound to a collection, to
    enqueue its jobs there; `run` is the worker a queue calls with such a job, on any
    collection."""

    @overload
    def __init__(
        self,
        name: str,
        function: Callable[P, Awaitable[R]],
        options: TaskOptions | None = None,
    ) -> None: ...

    @overload
    def __init__(
        self, name: str, function: Callable[P, R], options: TaskOptions | None = None
    ) -> None: ...

    def __init__(
        self, name: str, function: TaskFunction[P, R], options: TaskOptions | None = None
    ) -> None:
        if not isinstance(name, str) or not name:
            raise InvalidArgumentType("name", "must be a non-empty string")
        if not callable(function):
            raise InvalidArgumentType("function", "must be a function (async, or run in a thread)")
        if options is None:
            options = TaskOptions()
        elif not isinstance(options, TaskOptions):
            raise InvalidArgumentType("options", "must be None or a TaskOptions")
        self.name = name
        self.function = function
        self.options = options
        self._input = _Input(function)
        self._async = is_async(function)
        """An async function runs on the event loop; any other in the queue's threads."""

    def __repr__(self) -> str:
        return f"<Task {self.name!r} {self.function.__qualname__}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Awaitable[R]:
        """Call the function directly (no job): an awaitable of its result. A plain function
        runs in a thread (the current queue's, else asyncio's default executor), as it does
        as a worker; call `task.function` to run it here and now."""
        if self._async:
            return cast(Awaitable[R], self.function(*args, **kwargs))
        return cast(Awaitable[R], in_thread(functools.partial(self.function, *args, **kwargs), []))

    def same_as(self, other: Task[..., Any]) -> bool:
        """Whether `other` is this task's declaration, bound or not."""
        return self._input is other._input

    def on(self, jc: ServedCollection) -> BoundTask[P, R]:
        """This task bound to a job collection (a JobCollection, a RemoteJobCollection, even
        one not connected yet): its `enqueue` and `job` save jobs there."""
        if not hasattr(type(jc), "service"):
            raise InvalidArgumentType("jc", f"must be a job collection, not {type(jc).__name__}")
        return BoundTask(self, jc)

    async def run(self, job: Job) -> Any:
        """The worker of this task's jobs: call the function with the arguments `job.data`
        holds; its return value, JSON-able, is the job's result. Data that does not validate
        fails the job fatally (retrying cannot help)."""
        try:
            call = self._input.call(self.function, job.data)
        except ValidationError as exc:
            problem = _problem(exc)
            error = InvalidDocument(f"job data does not validate for task {self.name!r}: {problem}")
            logger.warning("job %s %s: %s", job.type, job.id, error)
            await job.fail(failure_info(error), fatal=True)
            return None
        token = _current.set(job)
        try:
            result = await (call() if self._async else in_thread(call, [job]))
        finally:
            _current.reset(token)
        return to_jsonable_python(result)


class BoundTask(Task[P, R]):
    """A Task bound to a job collection (`task.on(jc)`, or what `@jc.task` returns): the same
    declaration, whose `enqueue` and `job` save jobs on `jc`."""

    def __init__(self, task: Task[P, R], jc: ServedCollection) -> None:
        # The declaration as it is (name, function, options, input model): checked already.
        vars(self).update(vars(task))
        self.jc = jc

    def __repr__(self) -> str:
        return f"<Task {self.name!r} {self.function.__qualname__} on {self.jc!r}>"

    def job(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """An unsaved job for these arguments (validated), the task's options applied: to
        set more (`delay`, `depends`, `for_user`, ...) before `save()`."""
        return self.options.apply(Job(self.jc, self.name, self._input.data(args, kwargs)))

    async def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> Id | None:
        """Validate the arguments and save a job of this task; its id (as Job.save: None if
        it was not saved). A bad argument raises InvalidArgument naming the field, and
        nothing is saved."""
        return await self.job(*args, **kwargs).save()


AnyTask = TypeVar("AnyTask", bound=Task[..., Any])


@dataclass(frozen=True, slots=True)
class Declaration:
    """What `TaskRegistry.task(name, ...)` returns: the decorator that makes a function the
    task `name` of the registry. Overloaded so that mypy types an async function's task and a
    plain function's alike: Task[P, R], R being the result (awaited, for an async one)."""

    registry: TaskRegistry
    name: str
    options: TaskOptions

    @overload
    def __call__(self, function: Callable[P, Awaitable[R]], /) -> Task[P, R]: ...

    @overload
    def __call__(self, function: Callable[P, R], /) -> Task[P, R]: ...

    def __call__(self, function: Callable[..., Any], /) -> Task[Any, Any]:
        """Declare `function` as the task and register it."""
        return self.registry.add(Task(self.name, function, self.options))


@dataclass(frozen=True, slots=True)
class BoundDeclaration:
    """What `jc.task(name, ...)` returns: a Declaration on the collection's own registry, whose
    task comes bound to the collection (a BoundTask)."""

    declaration: Declaration
    jc: ServedCollection

    @overload
    def __call__(self, function: Callable[P, Awaitable[R]], /) -> BoundTask[P, R]: ...

    @overload
    def __call__(self, function: Callable[P, R], /) -> BoundTask[P, R]: ...

    def __call__(self, function: Callable[..., Any], /) -> BoundTask[Any, Any]:
        """Declare `function` as the task, register it, and bind it to the collection."""
        return self.declaration(function).on(self.jc)


class TaskRegistry(Mapping[str, Task[..., Any]]):
    """An application's typed tasks, by name, declared once and run or enqueued on any job
    collection (as Celery's `shared_task` or procrastinate's `App` and blueprints):

        tasks = TaskRegistry()

        @tasks.task("sendEmail", retry=3)
        async def send_email(args: EmailArgs) -> Sent: ...

        await send_email.on(jc).enqueue(EmailArgs(to="ada@example.com"))
        queue = jc.run_tasks(tasks)

    A read-only mapping of the tasks by name; `include` adds another registry's tasks (one per
    module of an application, gathered in one)."""

    def __init__(self) -> None:
        self._tasks: dict[str, Task[..., Any]] = {}

    def __repr__(self) -> str:
        return f"<TaskRegistry {list(self._tasks)}>"

    def __getitem__(self, name: str) -> Task[..., Any]:
        return self._tasks[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tasks)

    def __len__(self) -> int:
        return len(self._tasks)

    def task(self, name: str, **options: Unpack[TaskKeywords]) -> Declaration:
        """Declare a function as the worker of job type `name`: an async function, or a
        plain one (it runs in the queue's threads); its input is one pydantic model or plain
        annotated parameters; `options` are the fields of TaskOptions (`retry`,
        `retry_wait`, `timeout`, `expires`, `priority`, `unique`), given to each job of it.
        A bad option raises now; a second task of the same name raises InvalidArgument.
        `await f.on(jc).enqueue(...)` saves a job."""
        return Declaration(self, name, TaskOptions(**options))

    def add(self, task: AnyTask) -> AnyTask:
        """Register a task (a declaration can be in several registries); InvalidArgument if
        another task holds its name here. The task."""
        if not isinstance(task, Task):
            raise InvalidArgumentType("task", "must be a Task")
        known = self._tasks.setdefault(task.name, task)
        if not known.same_as(task):
            raise InvalidArgument("name", f"a task named {task.name!r} is registered already")
        return task

    def include(self, other: TaskRegistry) -> None:
        """Register every task of another registry (say, one module's); InvalidArgument, and
        nothing added, if one's name is taken by another task here."""
        if not isinstance(other, TaskRegistry):
            raise InvalidArgumentType("other", "must be a TaskRegistry")
        for task in other.values():
            known = self._tasks.get(task.name)
            if known is not None and not known.same_as(task):
                raise InvalidArgument("name", f"a task named {task.name!r} is registered already")
        for task in other.values():
            self._tasks.setdefault(task.name, task)

    async def run(self, job: Job) -> Any:
        """The worker of every task here: hands the job to its type's task (Task.run)."""
        task = self._tasks.get(job.type)
        if task is None:
            raise InvalidArgument("job", f"no task named {job.type!r} is registered")
        return await task.run(job)


def registered(jc: object) -> TaskRegistry:
    """The registry of the tasks declared on a collection with `jc.task` (made on first use)."""
    found: TaskRegistry | None = vars(jc).get("_jobcollection_tasks")
    if found is None:
        found = TaskRegistry()
        vars(jc)["_jobcollection_tasks"] = found
    return found


TaskSource: TypeAlias = "TaskRegistry | Iterable[Task[..., Any]]"
"""What `run_tasks` and the test helpers take: a registry, or some tasks."""


class TasksInProcesses:
    """The worker of tasks run with executor="process": a plain callable that pickles, which a
    queue's child process calls with a JobView. It crosses as each task function's place
    (module and name: the decorator put the Task there, so the function itself does not
    pickle by reference), found again in the child; there it validates the view's data for
    its type's task and calls the function; the return value, made JSON-able, is the result.
    Data that does not validate raises InvalidDocument (the job fails). No `current_job()` in
    a child: a Job cannot cross (processes.py)."""

    def __init__(self, tasks: Iterable[Task[..., Any]]) -> None:
        self._places: dict[str, tuple[str, str]] = {}
        for task in tasks:
            if task._async:
                raise InvalidArgument(
                    "executor",
                    f'"process" runs plain functions; task {task.name!r} is async (it runs on '
                    "the event loop)",
                )
            place = (task.function.__module__, task.function.__qualname__)
            if _found_at(place) is not task.function:
                raise InvalidArgument(
                    "executor",
                    f'"process" finds task {task.name!r} again in the child by its module and '
                    "name: declare it at the top level of a module",
                )
            self._places[task.name] = place
        self._called: dict[str, tuple[Callable[..., Any], _Input]] = {}

    def __getstate__(self) -> dict[str, tuple[str, str]]:
        return self._places

    def __setstate__(self, places: dict[str, tuple[str, str]]) -> None:
        self._places = places
        self._called = {}  # found again in the child, once per task

    def __call__(self, job: Any) -> Any:
        """Run the task of `job.type` (a JobView) with the arguments its data holds."""
        called = self._called.get(job.type)
        if called is None:
            function = _found_at(self._places[job.type])
            assert function is not None, f"task {job.type!r} is not where it was declared"
            called = self._called[job.type] = (function, _Input(function))
        function, arguments = called
        try:
            call = arguments.call(function, job.data)
        except ValidationError as exc:
            problem = _problem(exc)
            raise InvalidDocument(
                f"job data does not validate for task {job.type!r}: {problem}"
            ) from None
        return to_jsonable_python(call())


def _found_at(place: tuple[str, str]) -> Callable[..., Any] | None:
    """The function at MODULE, NAME (imported if need be): the function of the Task found
    there, or the function itself; None if there is neither."""
    module, qualname = place
    found: Any = importlib.import_module(module)
    for part in qualname.split("."):
        found = getattr(found, part, None)
    if isinstance(found, Task):
        return found.function
    return found if callable(found) else None


def dispatcher(
    tasks: TaskSource, executor: object = None
) -> tuple[list[str], Callable[[Job], Awaitable[Any]] | TasksInProcesses, dict[str, RetryRules]]:
    """The job types of these tasks, one worker that hands each job to its task (on the
    event loop and the queue's threads, or with `executor="process"` in its child processes),
    and the retry rules of the tasks that declare their own, by type (QueueOptions'
    retry_rules_by_type)."""
    if isinstance(tasks, TaskRegistry):
        tasks = list(tasks.values())
    if isinstance(tasks, Task | str | bytes) or not isinstance(tasks, Iterable):
        raise InvalidArgumentType(
            "tasks",
            f"must be a TaskRegistry or a list of Tasks (or None), not {type(tasks).__name__}",
        )
    chosen = TaskRegistry()
    for i, task in enumerate(tasks):
        if not isinstance(task, Task):
            raise InvalidArgumentType(f"tasks[{i}]", "must be a Task")
        try:
            chosen.add(task)
        except InvalidArgument:
            raise InvalidArgument(f"tasks[{i}]", f"a second task named {task.name!r}") from None
    if not chosen:
        raise InvalidArgument("tasks", "no task to run")
    rules = task_retry_rules(chosen.values())
    if executor == "process":
        return list(chosen), TasksInProcesses(chosen.values()), rules
    return list(chosen), chosen.run, rules


def task_retry_rules(tasks: Iterable[Task[..., Any]]) -> dict[str, RetryRules]:
    """The retry rules of the tasks that declare their own, by type."""
    return {task.name: rules for task in tasks if (rules := task.options.retry_rules()) is not None}
