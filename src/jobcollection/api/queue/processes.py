"""Process workers (`process_jobs(..., executor="process")`): a plain function that runs in
child processes of the queue's own, one call at a time per child, so CPU-bound Python code
runs on every core and a call that must stop can be stopped by force.

The parent keeps everything else: it holds the leases (the heartbeat goes on while a child
works), writes the reports, and the child never sees the Job. The function is given what
pickles: a `JobView` (id, type, data, attempt), or a list of them with `payload > 1`; its
return value is the result. A Job cannot cross (it holds the collection and the event loop),
and a view with the same `.id`/`.type`/`.data` lets code written for a thread worker
(`job.data[...]`) run unchanged. Of the job's actions, the child has `checkpoint(state)` and
`iterate(items)` (checkpoints.py): a checkpoint crosses the pipe to the parent, which records
it on the Job (stored with the next lease renewal, or at once with `flush=True`) and answers
before the child goes on. The others (`progress`, `log`) are not available in the child.

Why a pool of our own: concurrent.futures.ProcessPoolExecutor cannot stop one call (cancel()
only drops calls not started) nor kill one child without breaking the whole pool. Here each
child has one pipe to the parent, and:

- a call the queue cancels (its timeout, a cancel of its job, a lost claim, a hard shutdown)
  sends the child SIGTERM, then SIGKILL `cancel_grace` seconds later if it has not ended (or
  at once, should the call be cancelled again meanwhile); the call ends once the child is
  gone, so a timed-out job is no longer running when the queue reports it failed (a hard
  shutdown reports its jobs failed first, then waits for the kills);
- a child is recycled (its pipe closed: it ends after its call) once it ran
  `max_tasks_per_child` calls, or when its resident memory after a call is over
  `max_memory_per_child` bytes (read from /proc/self/statm: Linux; elsewhere the peak
  resident size from `resource`, which only grows);
- a child that dies (SIGSEGV, the OOM killer, `os._exit`) fails its call's jobs with
  WorkerProcessError; the next call starts a new child, as after a kill or a recycling.

The parent waits on each child's pipe and exit with the event loop's `add_reader` (selector
loops: Linux, macOS; not Windows' default proactor loop). Children are started with the
"spawn" method (a fresh interpreter: the parent's threads and event loop are not forked)
when a call finds none idle, so a queue has at most `concurrency` of them; each costs an
interpreter start and the import of the function's module. They ignore SIGINT (the parent
decides how to shut down; Ctrl-C in a terminal reaches the whole process group), are
daemonic (they end with the parent, and so cannot use multiprocessing themselves; subprocess
is fine), and are stopped at the queue's shutdown, which returns once none is left.

What crosses must pickle: the function is checked when the queue is made (InvalidArgument
naming `worker`: define it at the top level of a module); job data, a result or an
exception that does not pickle fails its job with WorkerProcessError saying which, and the
child carries on. An exception raised in the child fails the job with its own type and
message, and the child's traceback before the parent's.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import sys
import traceback
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing import get_context
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, TypeVar

from ...model import validation as v
from ...model.errors import InvalidArgument, JobCollectionError
from ..checkpoints import iterate_blocking
from ..job import Job
from .failures import text
from .log import logger

T = TypeVar("T")
PIPE_CHUNK = 32 * 1024
"""A message up to this size is sent from the event loop: an empty pipe takes it whole without
a reader (Linux's buffer is 64 KiB). A larger one is sent from a thread, as the child may
still be starting and not reading yet."""


class WorkerProcessError(JobCollectionError, RuntimeError):
    """A process worker's call could not run to its end: its child died, or what had to cross
    between the processes (the job, the result, the exception) does not pickle."""


@dataclass(slots=True)
class JobView:
    """What a process worker's function is given of a job: the fields a child can use, all of
    which pickle (a Job, which holds the collection and the event loop, cannot cross), and
    its checkpoints, which cross the pipe to the parent (see the module docstring)."""

    id: Any
    """The stored id (an ObjectId, or a string)."""
    type: str
    data: dict[str, Any]
    attempt: int
    """1 on the job's first run, 2 on its first retry, and so on."""
    checkpoint_state: Any = None
    """As `Job.checkpoint_state`: where the job is to resume from (None: from the start)."""
    index: int = 0
    """Its place in its worker call's batch (what its checkpoints name to the parent)."""

    @classmethod
    def of(cls, job: Job, index: int = 0) -> JobView:
        """The view of a claimed job (its attempt: `retried`, counted at claim time)."""
        return cls(job.id, job.type, job.data, job.doc.retried, job.checkpoint_state, index)

    def checkpoint(self, state: Any, *, flush: bool = False) -> bool:
        """`Job.checkpoint` from the worker's child process: the state (a JSON value)
        crosses to the parent, which records it on the job (or stores it now, `flush`);
        returns once the parent has answered, raising what `Job.checkpoint` raised there
        (InvalidArgument naming `state`, for one). RuntimeError outside a worker call."""
        if _parent is None:
            raise RuntimeError("JobView.checkpoint() works in a process worker's call only")
        value = v.checkpoint_state(state, "state")
        _parent.send_bytes(
            CHECKPOINT + pickle.dumps((self.index, value, v.boolean(flush, "flush")))
        )
        kind, answer = pickle.loads(_parent.recv_bytes())
        if kind == "raised":
            raise _rebuilt(*answer)
        self.checkpoint_state = value
        return bool(answer)

    def iterate(self, items: Iterable[T], *, every: int = 1, flush: bool = False) -> Iterator[T]:
        """`Job.iterate` in a process worker: a plain iterator over `items` that skips those
        an earlier attempt got past and checkpoints the position every `every` items."""
        return iterate_blocking(
            self.checkpoint, self.checkpoint_state, items, every=every, flush=flush
        )


CHECKPOINT = b"checkpoint:"
"""What a child's message starts with when it is a checkpoint (the pickled (index, state,
flush) follows), not its call's reply."""
_parent: Connection | None = None
"""In a child process: its pipe to the parent (None elsewhere)."""


class ChildTraceback(Exception):
    """The traceback of an exception raised in a child process, set as its `__cause__` in the
    parent, so that the job's stored failure shows where in the function it was raised."""

    def __init__(self, trace: str) -> None:
        super().__init__(trace)
        self.trace = trace

    def __str__(self) -> str:
        return f'\n"""\n{self.trace}"""'


def pickled_function(function: Callable[[Any], Any]) -> bytes:
    """The function as its children load it; InvalidArgument naming `worker` if it does not
    pickle (a lambda, a function defined inside another, a bound method of an object that
    does not pickle)."""
    try:
        return pickle.dumps(function)
    except Exception as exc:
        raise InvalidArgument(
            "worker",
            f"must pickle to run in a child process (executor='process'): {exc}; define it at "
            "the top level of a module",
        ) from None


class ProcessWorker:
    """A plain function as a queue's worker run in its child processes: an async callable
    given a Job (or a list of them) that calls the function on their JobViews."""

    def __init__(self, processes: Processes) -> None:
        self.processes = processes

    async def __call__(self, given: Job | list[Job]) -> Any:
        jobs = given if isinstance(given, list) else [given]
        view = [JobView.of(job, i) for i, job in enumerate(jobs)]

        async def checkpoint(index: int, state: Any, flush: bool) -> bool:
            return await jobs[index].checkpoint(state, flush=flush)

        return await self.processes.run(view if isinstance(given, list) else view[0], checkpoint)


@dataclass(eq=False, slots=True)
class _Child:
    process: BaseProcess
    conn: Connection
    pid: int
    calls: int = 0
    exitcode: int | None = None
    """Once it ended: its exit code (negative: the signal that killed it)."""


class Processes:
    """A queue's child processes: each runs one call of the function at a time (see the module
    docstring). `grace_s`: how long a child has to end after SIGTERM, or after its pipe is
    closed, before SIGKILL."""

    def __init__(
        self,
        function: Callable[[Any], Any],
        *,
        grace_s: float,
        max_tasks: int | None = None,
        max_memory: int | None = None,
    ) -> None:
        self._function = pickled_function(function)
        self._name = _name(function)
        self._grace_s = grace_s
        self._max_tasks = max_tasks
        self._max_memory = max_memory
        self._context = get_context("spawn")
        self._idle: list[_Child] = []
        self._ending: set[asyncio.Task[None]] = set()
        self._closed = False

    async def run(self, argument: Any, checkpoint: Checkpointer | None = None) -> Any:
        """Call the function on `argument` in an idle child (a new one if none is idle): its
        return value, or the exception it raised, raised here; the checkpoints the child
        sends meanwhile go to `checkpoint` (index, state, flush), whose answer (or error)
        goes back to the child. Cancelled, it stops the child (SIGTERM, then SIGKILL after
        the grace) before it lets the cancellation go on."""
        if self._closed:
            raise RuntimeError("the queue's worker processes were stopped")
        try:
            message = pickle.dumps(argument)
        except Exception as exc:
            raise WorkerProcessError(
                f"the job cannot be pickled to cross to its worker process: {exc}"
            ) from None
        child = self._idle_child()
        try:
            await _send(child.conn, message)
            reply = await _receive(child.conn)
            while reply.startswith(CHECKPOINT):
                await _send(child.conn, await _answer(reply[len(CHECKPOINT) :], checkpoint))
                reply = await _receive(child.conn)
        except asyncio.CancelledError:
            ending = self._end(child, "its call was cancelled", terminate=True)
            while not ending.done():
                try:
                    await asyncio.shield(ending)
                except asyncio.CancelledError:
                    child.process.kill()  # cancelled again: no more grace
            raise
        except (EOFError, OSError):  # the child died (its pipe closed) during the call
            await asyncio.shield(self._end(child, "it died during a call", terminate=False))
            raise WorkerProcessError(
                f"the worker process {child.pid} running {self._name} died: {_exit(child.exitcode)}"
            ) from None
        child.calls += 1
        try:
            kind, value, rss = pickle.loads(reply)
        except Exception as exc:
            self._done_with(child, None)
            raise WorkerProcessError(
                f"the result of {self._name} cannot be unpickled in the queue's process: {exc}"
            ) from None
        self._done_with(child, rss)
        if kind == "raised":
            raise _rebuilt(*value)
        return value

    async def close(self) -> None:
        """Stop every child (idle ones end when their pipe closes; SIGKILL after the grace)
        and return once none is left. Run after the queue's last call."""
        self._closed = True
        idle, self._idle = self._idle, []
        for child in idle:
            self._end(child, "the queue shut down", terminate=False)
        while self._ending:
            await asyncio.gather(*self._ending, return_exceptions=True)

    def _idle_child(self) -> _Child:
        """An idle child still alive (one killed from outside while idle is reaped), or a new
        one."""
        while self._idle:
            child = self._idle.pop()
            if child.process.is_alive():
                return child
            self._end(child, "it died while idle", terminate=False)
        parent_end, child_end = self._context.Pipe()
        process = self._context.Process(
            target=_serve,
            args=(child_end, self._function),
            name=f"jobcollection-{self._name}",
            daemon=True,
        )
        process.start()
        child_end.close()  # the parent's copy: once the child is gone, reading sees EOF
        assert process.pid is not None  # started
        logger.debug("worker process %d started for %s", process.pid, self._name)
        return _Child(process, parent_end, process.pid)

    def _done_with(self, child: _Child, rss: int | None) -> None:
        """A call is over: the child goes back to the idle ones, or is recycled."""
        if self._closed:
            self._end(child, "the queue shut down")
        elif self._max_tasks is not None and child.calls >= self._max_tasks:
            self._end(child, f"recycled after {child.calls} calls (max_tasks_per_child)")
        elif self._max_memory is not None and rss is not None and rss > self._max_memory:
            why = f"recycled: {rss >> 20} MiB resident, over max_memory_per_child"
            self._end(child, f"{why} ({self._max_memory >> 20} MiB)")
        else:
            self._idle.append(child)

    def _end(self, child: _Child, why: str, *, terminate: bool = False) -> asyncio.Task[None]:
        """Stop a child in a task of the pool's (awaited by close()): its pipe is closed (an
        idle child then ends by itself), SIGTERM if `terminate`, SIGKILL if it has not ended
        after the grace; then it is reaped and its end logged."""
        task = asyncio.create_task(self._stop(child, why, terminate), name="jobcollection-child")
        self._ending.add(task)
        task.add_done_callback(self._ending.discard)
        return task

    async def _stop(self, child: _Child, why: str, terminate: bool) -> None:
        process = child.process
        try:
            if terminate:
                process.terminate()
            else:
                child.conn.close()  # an idle child reads EOF and ends
            if not await _exited(process, self._grace_s):
                logger.warning(
                    "worker process %d did not end %g s after %s: killing it (SIGKILL)",
                    child.pid,
                    self._grace_s,
                    "SIGTERM" if terminate else "its pipe was closed",
                    extra={"pid": child.pid},
                )
                process.kill()
                await _exited(process, None)
        except asyncio.CancelledError:  # the event loop is closing: leave no child behind
            process.kill()
            raise
        child.conn.close()  # (after the child is gone: a thread may still be sending on it)
        process.join()  # it has ended (its sentinel says so): this only reaps it
        child.exitcode = code = process.exitcode
        logger.info(
            "worker process %d ended (%s): %s",
            child.pid,
            _exit(code),
            why,
            extra={"pid": child.pid, "exitcode": code, "why": why},
        )
        process.close()


Checkpointer = Callable[[int, Any, bool], Awaitable[bool]]
"""Records a checkpoint a child sent: (the job's index in the call, state, flush)."""


async def _answer(message: bytes, checkpoint: Checkpointer | None) -> bytes:
    """The answer to a child's checkpoint: ("ok", what `checkpoint` returned) or ("raised",
    the exception, described as a call's is)."""
    try:
        if checkpoint is None:
            raise RuntimeError("this call takes no checkpoints")
        index, state, flush = pickle.loads(message)
        return pickle.dumps(("ok", await checkpoint(index, state, flush)))
    except Exception as exc:
        return pickle.dumps(("raised", _described(exc)))


async def _send(conn: Connection, message: bytes) -> None:
    if len(message) <= PIPE_CHUNK:
        conn.send_bytes(message)
    else:  # a child still starting reads nothing yet: do not block the event loop meanwhile
        await asyncio.to_thread(conn.send_bytes, message)


async def _receive(conn: Connection) -> bytes:
    """The child's next message, awaited without blocking the loop; EOFError if it died.
    (Once the first bytes are there, the rest of the message is read at once: the child
    writes it in one go.)"""
    await _readable(conn.fileno(), None)
    return conn.recv_bytes()


async def _exited(process: BaseProcess, timeout: float | None) -> bool:
    """Whether the process ended within `timeout` seconds (None: wait as long as it takes)."""
    return await _readable(process.sentinel, timeout)


async def _readable(fd: int, timeout: float | None) -> bool:
    """Wait until a file descriptor is readable (or closed at the other end); False if
    `timeout` seconds went by first."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, readable)
    try:
        async with asyncio.timeout(timeout):
            await ready
        return True
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(fd)


def _name(function: object) -> str:
    """A function's name for messages (a callable object's: its class's)."""
    return str(getattr(function, "__qualname__", type(function).__qualname__))


def _exit(code: int | None) -> str:
    """An exit code as words: "exit code 0", "killed by SIGKILL"."""
    if code is None:
        return "still running"
    if code < 0:
        return f"killed by {text(lambda: signal.Signals(-code).name, f'signal {-code}')}"
    return f"exit code {code}"


def _rebuilt(blob: bytes | None, name: str, message: str, trace: str) -> Exception:
    """The exception a child raised, unpickled here, its traceback as its cause; a
    WorkerProcessError with its type and message when it does not unpickle, or is not an
    Exception (SystemExit in the child must not end the queue's process)."""
    loaded: object = None
    if blob is not None:
        try:
            loaded = pickle.loads(blob)
        except Exception:
            loaded = None
    exc = loaded if isinstance(loaded, Exception) else None
    if exc is None:
        exc = WorkerProcessError(f"{name}: {message}" if message else name)
    exc.__cause__ = ChildTraceback(trace)
    return exc


# --- in the child process -------------------------------------------------------------------


def _serve(conn: Connection, function_blob: bytes) -> None:
    """A child's life: load the function, then call it on each argument the parent sends and
    send back ("ok", result, rss) or ("raised", exception, rss), until the pipe closes."""
    global _parent
    _parent = conn
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    function: Callable[[Any], Any] | None = None
    broken: BaseException | None = None
    try:
        function = pickle.loads(function_blob)
    except BaseException as exc:  # its module does not import here: every call says why
        broken = exc
    name = _name(function)
    while True:
        try:
            message = conn.recv_bytes()
        except EOFError:
            return
        try:
            if function is None:
                raise WorkerProcessError(
                    f"the worker function cannot be loaded in its process: "
                    f"{type(broken).__name__}: {broken}"
                ) from broken
            result = function(pickle.loads(message))
            try:
                reply = pickle.dumps(("ok", result, _rss()))
            except Exception as exc:
                raise WorkerProcessError(
                    f"the result of {name} cannot be pickled to leave its process: {exc}"
                ) from None
        except BaseException as exc:
            reply = pickle.dumps(("raised", _described(exc), _rss()))
        conn.send_bytes(reply)


def _described(exc: BaseException) -> tuple[bytes | None, str, str, str]:
    """An exception as it crosses to the parent: itself pickled (None if it does not pickle),
    its type's name, its message and its traceback."""
    try:
        blob: bytes | None = pickle.dumps(exc)
    except Exception:
        blob = None
    kind = type(exc)
    name = kind.__qualname__
    if kind.__module__ != "builtins":
        name = f"{kind.__module__}.{name}"
    message = text(lambda: str(exc), f"<{kind.__name__} whose str() raised>")
    trace = text(lambda: "".join(traceback.format_exception(exc)), "")
    return blob, name, message, trace


def _rss() -> int | None:
    """This process's resident memory in bytes: the current one on Linux, the peak where
    /proc is missing (None if neither can be read)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    except (ImportError, OSError):
        return None
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere
