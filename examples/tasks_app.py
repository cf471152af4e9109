"""An application's typed tasks, declared once on a TaskRegistry and used on any job collection.

Needs: `pip install -e ".[memory]"` (the in-memory backend, for the demo below).
Run:    python examples/tasks_app.py
        cd examples && jobcollection worker tasks_app:tasks --tasks --url URL   # a real worker
Prints: each job the demo enqueued, once a queue of the registry's tasks has run it:
            sendEmail {'to': 'ada@example.com', 'subject': 'Welcome'}: completed, result
                {'message_id': '<ada@example.com>'}
            resize {'image': 'cat.png', 'width': 50}: completed, result {'value': 'cat.png@50w'}

Importing this module touches no job collection, so the same module is imported by a web app
(which enqueues with `send_email.on(jc)`), by a worker on another machine (which runs the tasks
on the RemoteJobCollection it connects), and by a test suite (examples/test_tasks_example.py,
which runs them on an in-memory collection).
"""

from __future__ import annotations

import asyncio

from pydantic import BaseModel

from jobcollection import JobCollection, ServedCollection, TaskRegistry, current_job

tasks = TaskRegistry()
"""Every task of the application (`jc.run_tasks(tasks)` runs them all)."""


class EmailArgs(BaseModel):
    to: str
    subject: str = "Welcome"


class Sent(BaseModel):
    message_id: str


@tasks.task("sendEmail", retry=3, retry_wait=10, timeout=30)
async def send_email(args: EmailArgs) -> Sent:
    """Send one email (a stand-in: addresses at bounce.example fail, and are retried)."""
    await current_job().log(f"sending {args.subject!r} to {args.to}")
    if args.to.endswith("@bounce.example"):
        raise ConnectionError(f"{args.to}: mailbox unavailable")
    return Sent(message_id=f"<{args.to}>")


@tasks.task("resize", priority="low")
async def resize(image: str, width: int = 100) -> str:
    """Plain annotated parameters work too: the job's data holds one field per parameter."""
    return f"{image}@{width}w"


async def sign_up(jc: ServedCollection, email: str) -> None:
    """The application's own code: it enqueues on whatever collection it is given."""
    await send_email.on(jc).enqueue(EmailArgs(to=email))


async def main() -> None:
    from jobcollection.testing import memory_database

    jc = JobCollection.from_database(memory_database(), "app")
    await jc.start_job_server()
    ids = [
        await send_email.on(jc).enqueue(EmailArgs(to="ada@example.com")),
        await resize.on(jc).enqueue("cat.png", width=50),
    ]
    queue = jc.run_tasks(tasks, concurrency=2)  # the worker side: every task of the registry
    await asyncio.wait_for(queue.drain(), 10)
    await queue.shutdown()
    for job in await jc.get_jobs([job_id for job_id in ids if job_id is not None]):
        print(f"{job.type} {job.data}: {job.doc.status}, result {job.doc.result}")
    await jc.close()


if __name__ == "__main__":
    asyncio.run(main())
