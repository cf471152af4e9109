"""Defects of the core found by the security review (#19), each shown by what a caller sees:

- a resave cannot change a job's type (a rule that allows one type cannot be used to rewrite
  a paused job of another), through `jc.call` on behalf of a user and through the Python API;
- an insert retried after a lost reply is recognised by its `_id`, whatever index the backend
  names in its duplicate-key error, so a repeat's or a dependent's follow-ups finish;
- a queue forgets the lease of each claim once the claim is over, idle or not;
- typed tasks take models whose fields have aliases, on both sides;
- option errors of `jc.task`, `process_jobs` and `run_tasks` name the option as written.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field

from faults import Faults, FaultyCollection
from helpers import stored
from jobcollection import (
    DatabaseError,
    InvalidArgument,
    InvalidArgumentType,
    Job,
    JobCollection,
    ManualClock,
    testing,
)
from jobcollection.rules.transitions import repeat_job_id, resave

MakeJC = Callable[..., Awaitable[JobCollection]]
BOUND = 10.0


async def snapshot(jc: JobCollection) -> list[dict[str, Any]]:
    return [dict(d) for d in await jc.collection.find({}).sort([("_id", 1)]).to_list(None)]


def email_only(user_id: Any, method: str, params: tuple[Any, ...]) -> bool:
    """A creator's rule: jobSave of `email` jobs only."""
    return method == "jobSave" and isinstance(params[0], dict) and params[0]["type"] == "email"


async def paused(jc: JobCollection, job_type: str, data: dict[str, Any]) -> Any:
    job = jc.create_job(job_type, data)
    await job.pause()  # a new job: it is saved paused, so it may be resaved
    job_id = await job.save()
    assert job_id is not None
    return job_id


async def as_other_type(jc: JobCollection, job_id: Any, job_type: str) -> dict[str, Any]:
    """The stored job, in the wire shape, given another type and the attacker's data."""
    job = await jc.get_job(job_id)
    assert job is not None
    doc = job.doc.to_mongo()
    doc.update(type=job_type, data={"to": "mallory", "amount": 10**6})
    return doc


# --- 1. a resave crosses job types -------------------------------------------------------------


async def test_a_resave_through_jobsave_cannot_change_the_type(make_jc: MakeJC) -> None:
    jc = await make_jc()
    jc.allow(creator=email_only)
    payment = await paused(jc, "payment", {"amount": 5})
    email = await paused(jc, "email", {"to": "ada"})
    before = await snapshot(jc)
    attack = await as_other_type(jc, payment, "email")
    assert email_only("mallory", "jobSave", (attack,))  # the rule sees an email job ...
    with pytest.raises(InvalidArgument) as raised:
        await jc.call("jobSave", attack, user_id="mallory")
    assert raised.value.argument == "doc.type"
    assert raised.value.problem == "cannot change from 'payment' to 'email' on a resave"
    assert "type: cannot change from 'payment' to 'email'" in str(raised.value)
    assert await snapshot(jc) == before  # ... and nothing of the payment job changed
    # A resave of a job of the allowed type still works.
    own = await as_other_type(jc, email, "email")
    assert await jc.call("jobSave", own, user_id="mallory") == email
    assert (await stored(jc, email))["data"] == {"to": "mallory", "amount": 10**6}


async def test_a_resave_in_a_jobsavemany_cannot_change_the_type(make_jc: MakeJC) -> None:
    jc = await make_jc()
    jc.allow(creator=email_only)
    payment = await paused(jc, "payment", {"amount": 5})
    before = await snapshot(jc)
    new_email = jc.create_job("email", {"to": "ada"}).doc.to_mongo()
    attack = await as_other_type(jc, payment, "email")
    with pytest.raises(InvalidArgument) as raised:
        await jc.call("jobSaveMany", [new_email, attack], user_id="mallory")
    assert raised.value.argument == "docs[1].type"
    assert "cannot change from 'payment' to 'email' on a resave" in str(raised.value)
    assert await snapshot(jc) == before  # not even the new job of the batch is stored


async def test_a_resave_through_the_python_api_cannot_change_the_type(make_jc: MakeJC) -> None:
    jc = await make_jc()
    payment = await paused(jc, "payment", {"amount": 5})
    antecedent = await jc.create_job("a").save()
    assert antecedent is not None
    before = await snapshot(jc)
    job = jc.make_job(await as_other_type(jc, payment, "email"))
    with pytest.raises(InvalidArgument, match="cannot change from 'payment' to 'email'"):
        await job.save()
    # With antecedents too: they are not marked as having a dependent either.
    found = await jc.get_job(antecedent)
    assert found is not None
    job.depends([found])
    with pytest.raises(InvalidArgument, match=r"doc\.type"):
        await job.save()
    many = jc.make_job(await as_other_type(jc, payment, "email"))
    with pytest.raises(InvalidArgument) as raised:
        await jc.save_jobs([jc.create_job("email"), many])
    assert raised.value.argument == "jobs[1].type"
    assert await snapshot(jc) == before


def test_the_resave_filter_states_the_type() -> None:
    """The type is part of the conditional update, so the check is atomic with the write."""
    from jobcollection.model.document import new_job_doc
    from jobcollection.testing import TEST_START

    doc = new_job_doc("email", {}, TEST_START).model_copy(update={"id": "j1", "status": "paused"})
    query, _ = resave(doc, TEST_START)
    assert query == {
        "_id": "j1",
        "type": "email",
        "_private.jobcollectionUser": None,
        "status": "paused",
        "runId": None,
    }
    query, _ = resave(doc.model_copy(update={"user_id": "ada"}), TEST_START)
    assert query["_private.jobcollectionUser"] == "ada"


def own_jobs(user_id: Any, method: str, params: tuple[Any, ...]) -> bool:
    """A creator's rule: jobSave of jobs for the caller only."""
    private = params[0].get("_private") if isinstance(params[0], dict) else None
    return isinstance(private, dict) and private.get("jobcollectionUser") == user_id


async def test_a_resave_cannot_change_who_the_job_is_for(make_jc: MakeJC) -> None:
    """The same class of fault as the type: a rule that lets users save their own jobs judges
    the document's user, so a resave must not rewrite another user's job."""
    jc = await make_jc()
    jc.allow(jobSave=own_jobs)
    job = jc.create_job("email", {"to": "ada"}).for_user("ada")
    await job.pause()
    ada_id = await job.save()
    before = await snapshot(jc)
    attack = await as_other_type(jc, ada_id, "email")
    attack["_private"]["jobcollectionUser"] = "mallory"
    assert own_jobs("mallory", "jobSave", (attack,))  # the rule sees mallory's job ...
    with pytest.raises(InvalidArgument) as raised:
        await jc.call("jobSave", attack, user_id="mallory")
    assert raised.value.argument == "doc.user_id"
    assert raised.value.problem == "cannot change from 'ada' to 'mallory' on a resave"
    assert await snapshot(jc) == before  # ... and nothing of ada's job changed
    del attack["_private"]["jobcollectionUser"]  # nor can a resave drop the user
    with pytest.raises(InvalidArgument, match="cannot change from 'ada' to None"):
        await jc.save_jobs([jc.make_job(attack)])
    assert await snapshot(jc) == before
    # ada resaves her own job.
    mine = await as_other_type(jc, ada_id, "email")
    assert await jc.call("jobSave", mine, user_id="ada") == ada_id


# --- 17. an insert retried after a lost reply, on the in-memory backend -------------------------


@pytest.fixture
async def memory_worker(clock: ManualClock) -> AsyncIterator[tuple[JobCollection, Faults, Any]]:
    """A started JobCollection on the library's own in-memory backend (mongomock-motor, not
    the suite's strict proxy, which reports duplicates as a server does), over a faulty
    connection; and the collection without faults, for assertions."""
    raw = testing.memory_database("defects")["queue.jobs"]
    faulty = FaultyCollection(raw)
    jc = JobCollection(faulty, clock=clock)
    await jc.start_job_server()
    try:
        yield jc, faulty.faults, raw
    finally:
        await jc.close()


async def test_a_repeat_inserted_again_after_a_lost_reply_finishes_its_follow_ups(
    memory_worker: tuple[JobCollection, Faults, Any],
) -> None:
    jc, faults, raw = memory_worker
    job = jc.create_job("t").repeat(1, wait=0)
    job_id = await job.save()
    dependent_id = await jc.create_job("d").depends([job]).save()
    [claimed] = await jc.get_work("t")
    faults.fail_after("insert_one")  # the repeat is inserted; the reply is lost
    assert await claimed.done() is True
    assert faults.pending == 0
    outcome = await jc.run_server_pass()  # inserts the repeat again: a duplicate `_id`
    assert (outcome.followed_up, outcome.errors) == (1, 0)
    assert job_id is not None and claimed.doc.run_id is not None
    repeat_id = repeat_job_id(job_id, claimed.doc.run_id)
    assert await raw.count_documents({"type": "t"}) == 2
    assert (await raw.find_one({"_id": repeat_id}))["status"] == "ready"
    assert (await raw.find_one({"_id": dependent_id}))["status"] == "ready"
    assert await raw.count_documents({"_private.jobcollectionFollowUps": {"$exists": True}}) == 0
    assert await jc.remove_jobs([job_id]) is True  # nothing pending holds it any more


async def test_a_dependent_saved_again_after_a_lost_reply_is_resolved(
    memory_worker: tuple[JobCollection, Faults, Any],
) -> None:
    jc, faults, raw = memory_worker
    antecedent = jc.create_job("a")
    await antecedent.save()
    [claimed] = await jc.get_work("a")
    assert await claimed.done() is True
    dependent = jc.create_job("d").depends([antecedent])
    faults.fail_after("insert_one")  # stored waiting; its antecedent not yet resolved
    with pytest.raises(DatabaseError):
        await dependent.save()
    dependent_id = await dependent.save()  # the same `_id` again: found stored, finished
    assert dependent_id is not None
    doc = await raw.find_one({"_id": dependent_id})
    assert (doc["status"], doc["depends"], doc["resolved"]) == ("ready", [], [antecedent.id])
    assert await raw.count_documents({"type": "d"}) == 1
    # The backend names the unique index for a real conflict too: it is one (no job is
    # stored under the new job's `_id`), so on_conflict decides.
    first = await jc.create_job("u").unique("k", on_conflict="ignore").save()
    assert await jc.create_job("u").unique("k", on_conflict="ignore").save() == first
    assert await raw.count_documents({"type": "u"}) == 1


# --- 18. a queue's lease table --------------------------------------------------------------


async def test_a_queue_forgets_each_claim_once_it_is_over(
    make_jc: MakeJC, clock: ManualClock
) -> None:
    """Jobs processed one at a time with long idle gaps (no heartbeat fires: the queue holds
    nothing while idle): completed, failed, lost (cancelled while running) or released at
    shutdown, none of their claims stays in the queue's lease table."""
    jc = await make_jc()
    release = asyncio.Event()

    async def worker(job: Job) -> str:
        if job.data["n"] % 2:
            raise RuntimeError("fails for good (no retries)")
        if job.data.get("hold"):
            await release.wait()
        return "ok"

    queue = jc.process_jobs("t", worker, poll_interval=None, wakeup=False, prefetch=1)
    try:
        for n in range(6):
            await jc.create_job("t", {"n": n}).save()
            queue.trigger()
            await asyncio.wait_for(queue.drain(), BOUND)
            assert queue.claims_held() == 0
            clock.advance(timedelta(hours=1))  # idle
        assert await jc.collection.count_documents({"status": "completed"}) == 3
        assert await jc.collection.count_documents({"status": "failed"}) == 3
        # Lost: cancelled while its worker runs (the queue cancels the call).
        held = await jc.create_job("t", {"n": 0, "hold": True}).save()
        assert held is not None
        queue.trigger()
        await asyncio.wait_for(queue.settle(), BOUND)
        assert queue.running() == 1 and queue.claims_held() == 1
        assert await jc.cancel_jobs([held]) is True
        await asyncio.wait_for(queue.drain(), BOUND)
        assert queue.claims_held() == 0
        # Released: a queued job handed back at shutdown, beside a running one.
        await jc.create_job("t", {"n": 0, "hold": True}).save()
        await jc.create_job("t", {"n": 2, "hold": True}).save()
        queue.trigger()
        await asyncio.wait_for(queue.settle(), BOUND)
        assert (queue.running(), queue.length()) == (1, 1)
        released = asyncio.Event()
        jc.events.on("jobRelease", lambda event: released.set())
        stopping = asyncio.create_task(queue.shutdown("normal", quiet=True))
        await asyncio.wait_for(released.wait(), BOUND)  # the queued job is handed back
        release.set()
        await asyncio.wait_for(stopping, BOUND)
        assert queue.claims_held() == 0
        assert await jc.collection.count_documents({"status": "ready"}) == 1
    finally:
        release.set()
        await asyncio.wait_for(queue.shutdown("hard", quiet=True), BOUND)


# --- 19. typed tasks and field aliases --------------------------------------------------------


class Mail(BaseModel):
    sender: str = Field(alias="from")
    to: str


class Named(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    sender: str = Field(alias="from")


async def run_tasks_once(jc: JobCollection) -> None:
    queue = jc.run_tasks(poll_interval=None, wakeup=False)
    await asyncio.wait_for(queue.drain(), BOUND)
    await asyncio.wait_for(queue.shutdown(), BOUND)


async def test_a_task_takes_a_model_whose_fields_have_aliases(make_jc: MakeJC) -> None:
    jc = await make_jc()
    seen: list[Any] = []

    @jc.task("mail")
    async def mail(args: Mail) -> Mail:
        seen.append(args)
        return args

    @jc.task("named")
    async def named(args: Named) -> None:
        seen.append(args)

    @jc.task("nested")
    async def nested(mail: Mail, times: int = 1) -> None:
        seen.append((mail, times))

    given = Mail.model_validate({"from": "ada", "to": "bob"})
    mail_id = await mail.enqueue(given)
    named_id = await named.enqueue(Named(sender="eve"))
    nested_id = await nested.enqueue(given, times=2)
    assert (await stored(jc, mail_id))["data"] == {"from": "ada", "to": "bob"}
    assert (await stored(jc, named_id))["data"] == {"from": "eve"}
    assert (await stored(jc, nested_id))["data"] == {
        "mail": {"from": "ada", "to": "bob"},
        "times": 2,
    }
    await run_tasks_once(jc)
    assert sorted(map(repr, seen)) == sorted(map(repr, [given, Named(sender="eve"), (given, 2)]))
    done = await stored(jc, mail_id)
    assert (done["status"], done["result"]) == ("completed", {"from": "ada", "to": "bob"})
    assert await jc.collection.count_documents({"status": "completed"}) == 3


# --- 20. option errors name the option as written ---------------------------------------------


async def plain(n: int) -> None:
    pass


@pytest.mark.parametrize(
    ("options", "argument", "kind"),
    [
        ({"timeout": -1}, "timeout", InvalidArgument),
        ({"timeout": 0}, "timeout", InvalidArgument),
        ({"timeout": "soon"}, "timeout", InvalidArgumentType),
        ({"retry": 1, "retry_wait": -5}, "retry_wait", InvalidArgument),
        ({"retry": 1, "retry_wait": "x"}, "retry_wait", InvalidArgumentType),
        ({"retry_wait": 5}, "retry_wait", InvalidArgument),
        ({"retry": -1}, "retry", InvalidArgument),
        ({"retry": "3"}, "retry", InvalidArgumentType),
        ({"priority": "urgent"}, "priority", InvalidArgument),
        ({"priority": 1.5}, "priority", InvalidArgumentType),
        ({"unique": ""}, "unique", InvalidArgument),
        ({"unique": 3}, "unique", InvalidArgumentType),
    ],
)
async def test_a_bad_task_option_is_named_as_written(
    make_jc: MakeJC, options: dict[str, Any], argument: str, kind: type[Exception]
) -> None:
    jc = await make_jc()
    with pytest.raises(kind) as raised:
        jc.task("t", **options)(plain)
    assert isinstance(raised.value, InvalidArgument)
    assert raised.value.argument == argument
    jc.task("t")(plain)  # nothing was registered under the name


@pytest.mark.parametrize(
    ("options", "argument"),
    [
        ({"cargo": 0}, "cargo"),
        ({"cargo": "2"}, "cargo"),
        ({"cargo": 2, "payload": 3}, "cargo"),
        ({"payload": 0}, "payload"),
        ({"concurrency": 0}, "concurrency"),
        ({"prefetch": -1}, "prefetch"),
        ({"poll_interval": -1}, "poll_interval"),
        ({"work_timeout": 0}, "work_timeout"),
        ({"timeout": -1}, "timeout"),
        ({"cancel_grace": 0}, "cancel_grace"),
        ({"error_callback": 5}, "error_callback"),
        ({"wakeup": 5}, "wakeup"),
        ({"rate_limit": 5}, "rate_limit"),
    ],
)
async def test_a_bad_process_jobs_option_is_named_as_written(
    make_jc: MakeJC, options: dict[str, Any], argument: str
) -> None:
    jc = await make_jc()

    async def worker(job: Job) -> None:
        pass

    with pytest.raises(InvalidArgument) as raised:
        jc.process_jobs("t", worker, **options)
    assert raised.value.argument == argument


@pytest.mark.parametrize(
    ("options", "argument"),
    [
        ({"tasks": 5}, "tasks"),
        ({"tasks": "t"}, "tasks"),
        ({"tasks": []}, "tasks"),
        ({"tasks": [5]}, "tasks[0]"),
        ({"concurrency": 0}, "concurrency"),
        ({"prefetch": -1}, "prefetch"),
        ({"poll_interval": -1}, "poll_interval"),
        ({"work_timeout": 0}, "work_timeout"),
        ({"timeout": -1}, "timeout"),
        ({"error_callback": 5}, "error_callback"),
        ({"wakeup": 5}, "wakeup"),
    ],
)
async def test_a_bad_run_tasks_option_is_named_as_written(
    make_jc: MakeJC, options: dict[str, Any], argument: str
) -> None:
    jc = await make_jc()
    jc.task("t")(plain)
    with pytest.raises(InvalidArgument) as raised:
        jc.run_tasks(**options)
    assert raised.value.argument == argument
