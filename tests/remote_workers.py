"""Worker functions for `python -m jobcollection worker remote_workers:FUNCTION` in the process
tests (tests/test_remote_processes.py). Each prints what it does on stdout, one flushed line
at a time, so that the test reading the process's output knows where it is without waiting
for time to pass."""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

from jobcollection import Job


def say(line: str) -> None:
    print(line, flush=True)


async def echo(job: Job) -> dict[str, Any]:
    """Log a line on the job, and complete it with its data echoed back."""
    await job.log(f"echo worker saw {job.data}")
    say(f"echo done {job.id}")
    return {"echo": job.data}


async def hang(job: Job) -> None:
    """Log a line on the job, say it started, then work forever (until cancelled)."""
    await job.log("hang worker started")
    say(f"hang started {job.id}")
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        say(f"hang cancelled {job.id}")
        raise


def where(job: Any) -> dict[str, Any]:
    """A plain function (`worker --executor thread|process`): completes the job with the
    process and the thread that ran it (`job` is a Job in a thread, a JobView in a child)."""
    say(f"where done {job.id}")
    return {"pid": os.getpid(), "thread": threading.current_thread().name}
