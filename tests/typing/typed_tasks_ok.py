"""Typed tasks as mypy --strict sees them: every call here type-checks (tests/test_tasks.py
runs mypy on this file and on typed_tasks_bad.py)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel

from jobcollection import BoundTask, JobCollection, JobQueue, Task, TaskOptions, TaskRegistry
from jobcollection.remote import RemoteJobCollection
from jobcollection.testing import drain, perform_job


class EmailArgs(BaseModel):
    to: str
    subject: str = ""


class Sent(BaseModel):
    message_id: str


async def use(jc: JobCollection) -> None:
    @jc.task("sendEmail", retry=3, timeout=30, priority="high")
    async def send_email(args: EmailArgs) -> Sent:
        return Sent(message_id=f"<{args.to}>")

    @jc.task("resize")
    async def resize(image: str, width: int = 100) -> str:
        return f"{image}@{width}"

    email_task: Task[[EmailArgs], Sent] = send_email
    job_id = await send_email.enqueue(EmailArgs(to="ada@example.com"))
    await resize.enqueue("x.png", width=50)
    await resize.enqueue(image="x.png")
    sent: Sent = await send_email(EmailArgs(to="ada@example.com"))
    print(job_id, sent.message_id, (await resize("y.png")).upper())
    queue: JobQueue = jc.run_tasks([email_task, resize], concurrency=4)
    await queue.shutdown()


tasks = TaskRegistry()


@tasks.task("notify", retry=2, priority="high")
async def notify(args: EmailArgs) -> Sent:
    return Sent(message_id=f"<{args.to}>")


@tasks.task("thumbnail", retry=1, retry_wait=timedelta(seconds=5), timeout=None, unique="k")
async def thumbnail(image: str, size: int = 64) -> str:
    return f"{image}@{size}"


async def use_registry(jc: JobCollection, remote: RemoteJobCollection) -> None:
    declared: Task[[EmailArgs], Sent] = notify
    options: TaskOptions = notify.options
    retries: int = options.retry + thumbnail.on(jc).options.retry
    again: Task[[EmailArgs], Sent] = Task("notifyAgain", notify.function, TaskOptions(retry=1))
    print(retries, again)
    here: BoundTask[[EmailArgs], Sent] = notify.on(jc)
    job_id = await here.enqueue(EmailArgs(to="ada@example.com"))
    await thumbnail.on(remote).enqueue("x.png", size=32)
    await thumbnail.on(jc).job("y.png").delay(60).save()
    sent: Sent = await declared(EmailArgs(to="ada@example.com"))
    print(job_id, sent.message_id, (await thumbnail("z.png")).upper(), len(tasks))
    queue: JobQueue = jc.run_tasks(tasks)
    remote_queue: JobQueue = remote.run_tasks([notify, thumbnail])
    await queue.shutdown()
    await remote_queue.shutdown()
    ran: int = await drain(jc, tasks)
    stored = await perform_job(jc, notify.on(jc).job(EmailArgs(to="b@example.com")), notify)
    print(ran, stored.doc.status)


@tasks.task("checksum")
def checksum(path: str, rounds: int = 1) -> int:
    """A plain function as a task: it runs in the queue's threads."""
    return len(path) * rounds


async def use_sync_task(jc: JobCollection) -> None:
    declared: Task[[str, int], int] = checksum
    total: int = await checksum("a.bin", 2) + await declared("b.bin", 1)

    @jc.task("hash")
    def hash_of(text: str) -> str:
        return text[::-1]

    reversed_text: str = await hash_of("abc")
    await hash_of.enqueue("abc")
    await checksum.on(jc).enqueue("c.bin", rounds=3)
    print(total, reversed_text)
