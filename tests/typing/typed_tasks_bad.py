"""Typed tasks misused: mypy --strict must report each marked line (tests/test_tasks.py)."""

from __future__ import annotations

from pydantic import BaseModel

from jobcollection import JobCollection, TaskRegistry


class EmailArgs(BaseModel):
    to: str


async def misuse(jc: JobCollection) -> None:
    @jc.task("sendEmail")
    async def send_email(args: EmailArgs) -> int:
        return len(args.to)

    @jc.task("resize")
    async def resize(image: str, width: int = 100) -> str:
        return image

    @jc.task("slow", timeout="soon")  # error: timeout is seconds or a timedelta
    async def slow(n: int) -> int:
        return n

    await send_email.enqueue({"to": "ada@example.com"})  # error: a dict, not EmailArgs
    await resize.enqueue("x.png", width="wide")  # error: width is an int
    await resize.enqueue(height=5)  # error: no such parameter
    text: str = await send_email(EmailArgs(to="a"))  # error: the result is an int
    print(text)


tasks = TaskRegistry()


@tasks.task("notify")
async def notify(args: EmailArgs) -> int:
    return len(args.to)


@tasks.task("misnamed", retries=3)  # error: the option is `retry`
async def misnamed(n: int) -> int:
    return n


@tasks.task("unranked", priority=1.5)  # error: priority is an int or a name
async def unranked(n: int) -> int:
    return n


async def misuse_registry(jc: JobCollection) -> None:
    await notify.enqueue(EmailArgs(to="a"))  # error: not bound: no collection to save on
    await notify.on(jc).enqueue({"to": "ada@example.com"})  # error: a dict, not EmailArgs
    await notify.on(jc).enqueue(jc, EmailArgs(to="a"))  # error: the collection goes in on()
    notify.on("jobs")  # error: not a job collection
    text: str = await notify.on(jc)(EmailArgs(to="a"))  # error: the result is an int
    print(text)
    notify.options.retry = 5  # error: TaskOptions is frozen


async def misuse_sync(jc: JobCollection) -> None:
    @jc.task("count")
    def count(text: str) -> int:
        return len(text)

    await count.enqueue(3)  # error: text is a str
    label: str = await count("abc")  # error: the result is an int
    print(label)
