"""Typed tasks as mypy --strict sees them: every call here type-checks (tests/test_tasks.py
runs mypy on this file and on typed_tasks_bad.py)."""

from __future__ import annotations

from pydantic import BaseModel

from jobcollection import JobCollection, JobQueue, Task


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
