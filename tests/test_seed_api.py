"""The seeds' early API (shared/seeds/001, 002): deprecated aliases and seed 002's
`permissions` option, working as their modern names do."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import MakeJC
from jobcollection import InvalidArgument, InvalidArgumentType, JobCollection, PermissionDenied


async def test_start_jobs_and_stop_jobs_warn_and_run_the_job_server(make_jc: MakeJC) -> None:
    jc = await make_jc(started=False)
    await jc.create_job("t").save()
    with pytest.warns(DeprecationWarning, match=r"use start_job_server\(\)"):
        assert await jc.start_jobs() is True
    assert len(await jc.get_work("t")) == 1
    with pytest.warns(DeprecationWarning, match=r"use shutdown_job_server\(\)"):
        assert await jc.stop_jobs(timeout=0) is True
    assert await jc.get_work("t") == []


async def test_seed_002_permissions_apply_to_every_method(database: Any) -> None:
    def allow(user_id: Any, method: str) -> bool:  # seed 002's two-argument rule
        return user_id is not None and user_id != "guest"

    jc = JobCollection.from_database(database, permissions={"allow": allow, "deny": ["mallory"]})
    await jc.start_job_server()
    try:
        doc = jc.create_job("t").doc.to_mongo()
        assert await jc.call("jobSave", doc, user_id="ada") is not None
        assert len(await jc.call("getWork", "t", user_id="ada")) == 1
        for user in ("guest", "mallory"):
            with pytest.raises(PermissionDenied):
                await jc.call("jobSave", doc, user_id=user)
    finally:
        await jc.close()


async def test_bad_permissions_are_refused_by_name(database: Any) -> None:
    with pytest.raises(InvalidArgument, match="unknown keys"):
        JobCollection.from_database(database, permissions={"admin": ["x"]})
    with pytest.raises(InvalidArgumentType, match="permissions"):
        JobCollection.from_database(database, permissions=["x"])  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentType):
        JobCollection.from_database(database, permissions={"allow": 5})


async def test_cargo_is_the_early_name_of_payload(make_jc: MakeJC) -> None:
    jc = await make_jc()
    await jc.save_jobs([jc.create_job("t", {"n": n}) for n in range(4)])
    batches: list[int] = []

    async def worker(jobs: list[Any]) -> None:
        batches.append(len(jobs))

    queue = jc.process_jobs("t", worker, cargo=4, poll_interval=None, wakeup=False)
    await queue.drain()
    await queue.shutdown("soft", quiet=True)
    assert batches == [4]
    with pytest.raises(InvalidArgument, match="cargo"):
        jc.process_jobs("t", worker, cargo=2, payload=3)
