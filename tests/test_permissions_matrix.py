"""The permissions matrix: role x method x (allowed, denied, deny overrides allow), through
`jc.call(..., user_id=...)`, and what the runId fence does and does not protect.

A call's parameters are parsed first (a malformed call raises InvalidArgument before any rule
sees it); a refused call raises PermissionDenied, emits the `error` event and leaves the
stored data exactly as it was. A report on a run only its claimer (or an admin) may make.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from bson import ObjectId

from conftest import START
from helpers import WORKER
from jobcollection import (
    METHOD_PERMISSIONS,
    METHODS,
    PERMISSION_LEVELS,
    InvalidArgument,
    JobCollection,
    MethodEvent,
    PermissionDenied,
)
from jobcollection.local.core import Origin
from jobcollection.model.ops import GetWork

MakeJC = Callable[..., Awaitable[JobCollection]]


@dataclass
class World:
    jc: JobCollection
    ready: Any
    paused: Any
    running: Any
    run_id: Any
    completed: Any
    failed: Any

    async def snapshot(self) -> list[dict[str, Any]]:
        return [dict(d) for d in await self.jc.collection.find({}).sort([("_id", 1)]).to_list(None)]

    def params(self, method: str) -> tuple[Any, ...]:
        """Valid parameters for each method (allowed calls succeed with them)."""
        doc = self.jc.create_job("t").doc.to_mongo()
        return {
            "startJobs": (),
            "startJobServer": (),
            "stopJobs": ({"timeout": 0},),
            "shutdownJobServer": ({"timeout": 0},),
            "jobRemove": (self.completed,),
            "jobPause": (self.ready,),
            "jobResume": (self.paused,),
            "jobReady": ([self.paused], {"force": True}),
            "jobCancel": (self.ready,),
            "jobRestart": (self.failed,),
            "jobSave": (doc,),
            "jobSaveMany": ([doc],),
            "jobRerun": (self.completed,),
            "getWork": ("t",),
            "getJob": (self.ready,),
            "jobLog": (self.ready, None, "hello"),
            "jobProgress": (self.running, self.run_id, 1, 2),
            "jobDone": (self.running, self.run_id),
            "jobFail": (self.running, self.run_id),
            "jobHeartbeat": (self.running, self.run_id),
            "jobRelease": (self.running, self.run_id),
            "jobReadyDue": (["t"],),
            "jobCancelPending": ("t", 0),
            "jobFind": ({"status": ["ready", "paused"]}, {"limit": 10}),
            "jobStats": (),
            "jobPauseTypes": (["paused-type"],),
            "jobResumeTypes": (["paused-type"],),
            "jobPausedTypes": (),
            "jobWorkerSeen": (WORKER,),
            "jobWorkerGone": ("w1",),
            "jobWorkers": (),
            "jobSetConcurrencyLimit": ("limited-type", {"maxRunning": 3}),
            "jobConcurrencyLimits": (),
            "jobAddDepends": ([self.paused], [self.ready]),
            "jobScheduleUpsert": ("s", {"type": "t", "cron": "0 3 * * *"}),
            "jobSchedules": (),
            "jobSchedulePause": ("s",),
            "jobScheduleResume": ("s",),
            "jobScheduleRemove": ("s",),
            "jobScheduleTrigger": ("s",),
            "jobScheduleBackfill": ("s", START, START + timedelta(minutes=5)),
        }[method]


@pytest.fixture
async def world(make_jc: MakeJC) -> AsyncIterator[World]:
    jc = await make_jc()
    completed = await jc.create_job("done").save()
    [job] = await jc.get_work("done")
    await job.done()
    failed = await jc.create_job("fail").save()
    [job] = await jc.get_work("fail")
    await job.fail("x", fatal=True)
    running = await jc.create_job("held").save()
    # claimed on behalf of alice: only she (or an admin) may report on its run
    [held] = await jc.service.run(
        GetWork(["held"], work_timeout_ms=60_000), Origin("getWork", "alice", ())
    )
    paused = jc.create_job("t")
    await paused.pause()
    await jc.schedules.upsert("s", every=60, type="t")
    yield World(
        jc=jc,
        ready=await jc.create_job("t").save(),
        paused=await paused.save(),
        running=running,
        run_id=held.run_id,
        completed=completed,
        failed=failed,
    )


async def denied(w: World, method: str, user: Any, params: tuple[Any, ...] | None = None) -> None:
    errors: list[MethodEvent] = []
    w.jc.events.on("error", errors.append)
    before = await w.snapshot()
    with pytest.raises(PermissionDenied, match=method):
        await w.jc.call(method, *(w.params(method) if params is None else params), user_id=user)
    assert await w.snapshot() == before
    assert [(e.method, e.user_id, type(e.error)) for e in errors] == [
        (method, user, PermissionDenied)
    ]


async def allowed(w: World, method: str, user: Any) -> Any:
    calls: list[MethodEvent] = []
    w.jc.events.on("call", calls.append)
    result = await w.jc.call(method, *w.params(method), user_id=user)
    assert [(e.method, e.user_id) for e in calls] == [(method, user)]
    return result


# --- role x method ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("role", PERMISSION_LEVELS)
async def test_a_role_allows_exactly_its_methods(world: World, role: str, method: str) -> None:
    world.jc.allow(**{role: ["alice"]})
    if role in METHOD_PERMISSIONS[method]:
        await allowed(world, method, "alice")
    else:
        await denied(world, method, "alice")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("role", PERMISSION_LEVELS)
async def test_a_deny_by_method_overrides_a_role_allow(
    world: World, role: str, method: str
) -> None:
    world.jc.allow(**{role: ["alice"], "admin": ["alice"]})
    world.jc.deny(**{method: ["alice"]})
    await denied(world, method, "alice")


@pytest.mark.parametrize("method", METHODS)
async def test_a_deny_by_group_overrides_a_method_allow(world: World, method: str) -> None:
    group = METHOD_PERMISSIONS[method][-1]
    world.jc.allow(**{method: ["alice"]})
    world.jc.deny(**{group: lambda user_id, name, params: user_id == "alice"})
    await denied(world, method, "alice")


@pytest.mark.parametrize("method", METHODS)
async def test_a_method_allows_the_listed_users_only(world: World, method: str) -> None:
    world.jc.allow(**{method: ["alice"]})
    await denied(world, method, "bob")
    await allowed(world, method, "alice")


@pytest.mark.parametrize("method", METHODS)
async def test_without_rules_every_user_is_denied_and_direct_calls_are_trusted(
    world: World, method: str
) -> None:
    for user in ("alice", 0, "", ObjectId()):
        await denied(world, method, user)
    await allowed(world, method, None)


@pytest.mark.parametrize("method", ["getWork", "jobSave", "jobRemove", "shutdownJobServer"])
async def test_function_rules_see_the_user_the_method_and_the_raw_params(
    world: World, method: str
) -> None:
    seen: list[tuple[Any, str, Any]] = []

    def rule(user_id: Any, name: str, params: Any) -> bool:
        seen.append((user_id, name, params))
        return user_id == "alice"

    world.jc.allow(admin=rule)
    params = world.params(method)
    await denied(world, method, "bob")
    await world.jc.call(method, *params, user_id="alice")
    assert [(u, m) for u, m, _ in seen] == [("bob", method), ("alice", method)]
    assert tuple(seen[-1][2]) == params


async def test_a_rule_that_raises_refuses_the_call_and_logs_it_once(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(user_id: Any, name: str, params: Any) -> bool:
        raise RuntimeError("rule bug")

    world.jc.allow(worker=broken)
    await denied(world, "getWork", "alice")
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "rule bug" in str(errors[0].exc_info)


async def test_the_parameters_are_checked_before_any_rule(world: World) -> None:
    """No rule sees a malformed call (a rule may index its method's parameters): it is
    refused as such, whoever makes it, and changes nothing."""
    seen: list[Any] = []
    world.jc.allow(admin=lambda user_id, method, params: seen.append(params) or True)
    before = await world.snapshot()
    for method, params in (("jobSave", ({"$where": "1"},)), ("getJob", ({"$ne": None},))):
        with pytest.raises(ValueError):  # InvalidDocument, InvalidArgument
            await world.jc.call(method, *params, user_id="mallory")
    assert seen == [] and await world.snapshot() == before


# --- the runId fence -------------------------------------------------------------------------


@pytest.fixture
async def two_workers(world: World) -> World:
    world.jc.allow(worker=["w1", "w2"])
    return world


async def test_a_worker_cannot_report_on_a_job_it_does_not_hold(two_workers: World) -> None:
    w = two_workers
    jc = w.jc
    await jc.create_job("w").save()
    await jc.create_job("w").save()
    [mine] = await jc.call("getWork", "w", user_id="w1")
    [theirs] = await jc.call("getWork", "w", user_id="w2")
    before = await w.snapshot()
    # (`str(mine.run_id)` would be mine's runId itself: 24 hex digits spell the ObjectId)
    for run_id in (theirs.run_id, ObjectId(), str(mine.run_id)[:23] + "x"):
        for method, extra in (
            ("jobDone", ({"by": "w2"},)),
            ("jobFail", ({"by": "w2"},)),
            ("jobFail", ({"by": "w2"}, {"snooze": 60_000})),
            ("jobFail", ({"by": "w2"}, {"retryIn": 0})),
            ("jobProgress", (1, 2)),
            ("jobHeartbeat", ()),
            ("jobRelease", ()),
        ):
            assert await jc.call(method, mine.id, run_id, *extra, user_id="w2") is False
    assert await w.snapshot() == before
    assert await jc.call("jobDone", theirs.id, theirs.run_id, user_id="w2") is True
    assert await jc.call("jobDone", mine.id, mine.run_id, user_id="w1") is True


async def test_the_run_id_is_a_fence_not_a_secret(two_workers: World) -> None:
    """getJob shows a job's runId to any worker; a worker that reads it still cannot report
    on another worker's run (only its claimer or an admin may)."""
    w = two_workers
    await w.jc.create_job("w").save()
    [mine] = await w.jc.call("getWork", "w", user_id="w1")
    seen = await w.jc.call("getJob", mine.id, user_id="w2")
    assert seen.run_id == mine.run_id
    await denied(w, "jobDone", "w2", (mine.id, seen.run_id))
    w.jc.allow(admin=["w2"])
    assert await w.jc.call("jobDone", mine.id, seen.run_id, user_id="w2") is True


async def test_a_holder_rule_binds_each_claim_to_the_worker_that_made_it(
    two_workers: World,
) -> None:
    w = two_workers
    jc = w.jc
    holders: dict[Any, Any] = {}

    def remember(event: MethodEvent) -> None:
        for doc in event.return_value or []:
            holders[doc.run_id] = event.user_id

    def holds(user_id: Any, method: str, params: Any) -> bool:
        return holders.get(params[1]) != user_id

    jc.events.on("getWork", remember)
    jc.deny(jobDone=holds, jobFail=holds, jobProgress=holds, jobHeartbeat=holds, jobLog=holds)
    await jc.create_job("w").save()
    [mine] = await jc.call("getWork", "w", user_id="w1")
    before = await w.snapshot()
    await denied(w, "jobDone", "w2", (mine.id, mine.run_id))
    await denied(w, "jobLog", "w2", (mine.id, mine.run_id, "forged"))
    assert await w.snapshot() == before
    assert await jc.call("jobLog", mine.id, mine.run_id, "mine", user_id="w1") is True
    assert await jc.call("jobDone", mine.id, mine.run_id, user_id="w1") is True


# --- jobSaveMany is a batch of jobSaves ------------------------------------------------------


def refuse_type_x(user_id: Any, method: str, params: Any) -> bool:
    return bool(params[0]["type"] == "x")


def batch(w: World, *types: str) -> list[dict[str, Any]]:
    return [w.jc.create_job(t).doc.to_mongo() for t in types]


async def saved_by(w: World, user: Any, docs: list[dict[str, Any]]) -> None:
    """A jobSaveMany by `user` is permitted and stores every document."""
    before = await w.jc.collection.count_documents({})
    ids = await w.jc.call("jobSaveMany", docs, user_id=user)
    assert len(ids) == len(docs) and None not in ids
    assert await w.jc.collection.count_documents({}) == before + len(docs)


@pytest.mark.parametrize("allow", ["admin", "creator", "jobSave", "jobSaveMany"])
async def test_a_jobsave_deny_rule_holds_for_each_document_of_a_jobsavemany(
    world: World, allow: str
) -> None:
    world.jc.allow(**{allow: ["alice"]})
    world.jc.deny(jobSave=refuse_type_x)
    await denied(world, "jobSaveMany", "alice", (batch(world, "t", "x", "t"),))
    await denied(world, "jobSaveMany", "alice", (batch(world, "x"),))
    await saved_by(world, "alice", batch(world, "t", "u"))


async def test_jobsave_allow_rules_permit_a_jobsavemany_of_documents_each_allowed(
    world: World,
) -> None:
    world.jc.allow(jobSave=lambda user_id, method, params: params[0]["type"] == "t")
    await saved_by(world, "alice", batch(world, "t", "t"))
    await denied(world, "jobSaveMany", "alice", (batch(world, "t", "u"),))
    await denied(world, "jobSaveMany", "alice", ([],))  # allowed by no document
    world.jc.allow(jobSaveMany=["alice"])
    await saved_by(world, "alice", batch(world, "t", "u"))


async def test_a_group_deny_rule_sees_each_document_as_a_jobsave(world: World) -> None:
    world.jc.allow(jobSaveMany=["alice"])
    world.jc.deny(creator=refuse_type_x)  # written for jobSave's params: (doc, options)
    await denied(world, "jobSaveMany", "alice", (batch(world, "t", "x"),))
    await saved_by(world, "alice", batch(world, "t"))


async def test_a_jobsavemany_deny_rule_sees_the_batch(world: World) -> None:
    world.jc.allow(creator=["alice"])
    world.jc.deny(jobSaveMany=lambda user_id, method, params: len(params[0]) > 2)
    await denied(world, "jobSaveMany", "alice", (batch(world, "t", "t", "t"),))
    await saved_by(world, "alice", batch(world, "t", "t"))


async def test_jobsave_rules_get_each_document_with_its_own_options(world: World) -> None:
    seen: list[tuple[str, Any]] = []

    def rule(user_id: Any, method: str, params: Any) -> bool:
        seen.append((method, params))
        return True

    world.jc.allow(jobSave=rule)
    docs = batch(world, "t", "u")
    ids = [ObjectId(), None]
    await world.jc.call(
        "jobSaveMany", docs, {"cancelRepeats": True, "jobIds": ids}, user_id="alice"
    )
    assert seen == [
        ("jobSave", (docs[0], {"cancelRepeats": True, "jobId": ids[0]})),
        ("jobSave", (docs[1], {"cancelRepeats": True, "jobId": None})),
    ]


@pytest.mark.parametrize(
    "params",
    [
        ("not a list",),
        ([{"type": "t"}], "not a dict"),
        ([{"type": "t"}], {"jobIds": [ObjectId(), ObjectId()]}),
        ([{"type": "t"}], {"jobIds": "x"}),
    ],
)
async def test_a_jobsavemany_whose_documents_cannot_be_listed_is_refused(
    world: World, params: tuple[Any, ...]
) -> None:
    world.jc.allow(admin=["alice"], jobSaveMany=["alice"])
    with pytest.raises(InvalidArgument):
        await world.jc.call("jobSaveMany", *params, user_id="alice")
