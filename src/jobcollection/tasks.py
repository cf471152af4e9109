"""Typed task definitions: an async function registered as the worker of a job type.

    @jc.task("sendEmail", retry=3, timeout=30, priority="high")
    async def send_email(args: EmailArgs) -> Sent: ...

    job_id = await send_email.enqueue(EmailArgs(to="ada@example.com"))
    queue = jc.run_tasks(concurrency=4)   # one queue for every registered task

A task's input is one pydantic model (its only parameter) or plain annotated parameters (a
model is built from the signature). `enqueue` validates its arguments (InvalidArgument naming
the field) and saves an ordinary job: type = the task's name, data = the input's JSON dump
(`model_dump(mode="json")`), the task's options applied with the Job builders. A worker
validates `job.data` the same way, calls the function, and stores its return value (JSON-able;
a pydantic model is dumped) as the result; data that does not validate fails the job fatally.
Inside the function, `current_job()` is the Job being worked on (for its log and progress).

Typing: `Task[P, R]` keeps the function's parameters (a ParamSpec) and return type, so mypy
checks `enqueue(...)` and `task(...)` calls as it checks calls of the function itself.
"""

from __future__ import annotations

import inspect
import logging
import typing
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeAlias, TypeVar

from pydantic import BaseModel, ValidationError, create_model
from pydantic_core import to_jsonable_python

from .errors import InvalidArgument, InvalidArgumentType, InvalidDocument, JobCollectionError
from .job import Job
from .queue import failure_info

if TYPE_CHECKING:
    from .seam import ServedCollection
    from .transitions import Id

P = ParamSpec("P")
R = TypeVar("R")
TaskFunction: TypeAlias = Callable[P, Awaitable[R]]
"""What `jc.task` registers: an async function of the job's arguments."""

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
                value = value.model_dump(warnings=False)
        try:
            return self.model.model_validate(value).model_dump(mode="json")
        except ValidationError as exc:
            raise _problem(exc) from None

    def call(self, function: Callable[..., Awaitable[Any]], data: dict[str, Any]) -> Any:
        """Call the function with the arguments job data holds (ValidationError if it does
        not validate)."""
        validated = self.model.model_validate(data)
        values = (
            {self.params[0].name: validated}
            if self.whole
            else {p.name: getattr(validated, p.name) for p in self.params}
        )
        positional = [values[p.name] for p in self.params if p.kind is p.POSITIONAL_ONLY]
        named = {p.name: values[p.name] for p in self.params if p.kind is not p.POSITIONAL_ONLY}
        return function(*positional, **named)


class Task(Generic[P, R]):
    """An async function registered as the worker of job type `name` (see `JobsAPI.task`).

    Calling the task calls the function; `enqueue` saves a job for it; `run` is the worker a
    queue calls with such a job."""

    def __init__(
        self,
        jc: ServedCollection,
        name: str,
        function: TaskFunction[P, R],
        *,
        retry: int = 0,
        retry_wait: float | timedelta | None = None,
        timeout: float | timedelta | None = None,
        priority: int | str = 0,
        unique: bool | str = False,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise InvalidArgumentType("name", "must be a non-empty string")
        if not inspect.iscoroutinefunction(function):
            raise InvalidArgumentType("function", "must be an async function")
        self._jc = jc
        self.name = name
        self.function = function
        self.retry = retry
        self.retry_wait = retry_wait
        self.timeout = timeout
        self.priority = priority
        self.unique = unique
        self._input = _Input(function)
        self._configure(Job(jc, name))  # a bad option raises now, not at the first enqueue

    def __repr__(self) -> str:
        return f"<Task {self.name!r} {self.function.__qualname__}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Awaitable[R]:
        """Call the function directly (no job)."""
        return self.function(*args, **kwargs)

    def _configure(self, job: Job) -> Job:
        if self.retry:
            if self.retry_wait is None:
                job.retry(self.retry)
            else:
                job.retry(self.retry, wait=self.retry_wait)
        elif self.retry_wait is not None:
            raise InvalidArgument("retry_wait", "only applies with retry")
        if self.timeout is not None:
            job.timeout(self.timeout)
        job.priority(self.priority)
        if self.unique is True:
            job.unique()
        elif isinstance(self.unique, str):
            job.unique(self.unique)
        elif self.unique is not False:
            raise InvalidArgumentType("unique", "must be True, False or a key string")
        return job

    def job(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """An unsaved job for these arguments (validated), the task's options applied: to
        set more (`delay`, `depends`, `for_user`, ...) before `save()`."""
        return self._configure(Job(self._jc, self.name, self._input.data(args, kwargs)))

    async def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> Id | None:
        """Validate the arguments and save a job of this task; its id (as Job.save: None if
        it was not saved). A bad argument raises InvalidArgument naming the field, and
        nothing is saved."""
        return await self.job(*args, **kwargs).save()

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
            result = await call
        finally:
            _current.reset(token)
        return to_jsonable_python(result)


def registered(jc: object) -> dict[str, Task[..., Any]]:
    """The tasks registered on a collection (`jc.task`), by name; a mapping that is the
    registry itself."""
    found: dict[str, Task[..., Any]] | None = vars(jc).get("_jobcollection_tasks")
    if found is None:
        found = {}
        vars(jc)["_jobcollection_tasks"] = found
    return found


def dispatcher(
    tasks: Iterable[Task[..., Any]],
) -> tuple[list[str], Callable[[Job], Awaitable[Any]]]:
    """The job types of these tasks and one worker that hands each job to its task."""
    by_name: dict[str, Task[..., Any]] = {}
    for i, task in enumerate(tasks):
        if not isinstance(task, Task):
            raise InvalidArgumentType(f"tasks[{i}]", "must be a Task")
        if by_name.setdefault(task.name, task) is not task:
            raise InvalidArgument(f"tasks[{i}]", f"a second task named {task.name!r}")
    if not by_name:
        raise InvalidArgument("tasks", "no task to run")

    def work(job: Job) -> Awaitable[Any]:
        return by_name[job.type].run(job)

    return list(by_name), work
