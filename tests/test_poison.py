"""Poison documents, foreign fields, dates written by other clients, and a job server that keeps
going: one bad document never stops the claims, reports or passes of the others.

A poison document is a stored job that does not validate (a field v1.x's closed schema does not
have, a value of the wrong type). `jc.scrub` may repair what an application stores beside its
jobs; whatever stays invalid is failed for good with the reason where it can be, and skipped
where it cannot.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId
from pymongo.errors import BulkWriteError, WriteError

from conftest import MONGODB_URI, START, MakeJC, WrapJC
from faults import FaultyCollection
from helpers import Yielding, claim_one, stored, stored_job
from jobcollection import JobCollection, ManualClock
from strict import strict_mode

Doc = dict[str, Any]


async def raw_job(jc: JobCollection, **fields: Any) -> Any:
    """Insert a job document directly (as another application or v1.x would), ready by
    default; its id."""
    doc = stored_job(jc.clock.now(), **fields)
    await jc.collection.insert_one(doc)
    return doc["_id"]


# --- claims --------------------------------------------------------------------------------


@pytest.mark.v1_invalid("a poison document is stored on purpose")
async def test_a_claim_that_includes_a_poison_document_hands_over_the_healthy_jobs(
    jc: JobCollection, caplog: pytest.LogCaptureFixture
) -> None:
    healthy = [await jc.create_job("t", {"n": n}).save() for n in range(2)]
    poison = await raw_job(jc, appField="not a job field", priority=-1)  # claimed first
    with caplog.at_level(logging.ERROR, logger="jobcollection"):
        jobs = await jc.get_work("t", max_jobs=3)
    assert sorted(job.id for job in jobs) == sorted(healthy)
    doc = await stored(jc, poison)
    assert doc["status"] == "failed" and doc["runId"] is None
    assert "appField" in doc["failures"][-1]["value"]
    assert "Invalid job document" in doc["failures"][-1]["value"]
    assert "appField" in caplog.text
    for job in jobs:
        assert await job.done() is True


@pytest.mark.skipif(
    strict_mode() is None and not MONGODB_URI,
    reason="plain mongomock applies an update that fails half-way; MongoDB and the strict "
    "backend apply all of it or nothing",
)
@pytest.mark.v1_invalid("a poison document is stored on purpose")
async def test_a_single_claim_of_a_poison_document_fails_it_and_returns_nothing(
    jc: JobCollection,
) -> None:
    poison = await raw_job(jc, retries="three")
    assert await jc.get_work("t") == []
    assert (await stored(jc, poison))["status"] == "failed"
    job_id = await jc.create_job("t").save()
    assert (await claim_one(jc)).id == job_id  # the next claim goes on as usual


# --- dates written by other clients --------------------------------------------------------


async def test_datetimes_anywhere_in_a_job_come_back_aware(jc: JobCollection) -> None:
    """pymongo returns naive dates unless told otherwise, and v1.x stores JavaScript Dates
    anywhere: every datetime in a job reads back aware, in UTC."""
    at = datetime(2026, 3, 1, 8, 30, tzinfo=UTC)
    job_id = await jc.create_job("t", {"at": at, "deep": [{"at": at}]}).save()
    job = await claim_one(jc)
    assert job.data == {"at": at, "deep": [{"at": at}]}
    await job.log("seen", data={"when": at})
    assert await job.done({"finished": at}) is True
    done = await jc.get_job(job_id, get_log=True)
    assert done is not None and done.doc.result == {"finished": at}
    assert done.doc.log is not None and done.doc.log[-2].data == {"when": at}


async def test_a_v1_document_with_naive_dates_in_data_failures_and_private_is_readable(
    jc: JobCollection,
) -> None:
    naive = datetime(2026, 3, 1, 8, 30)  # what a JavaScript Date reads as by default
    job_id = await raw_job(
        jc,
        data={"at": naive},
        failures=[{"value": "earlier", "at": naive, "runId": None}],
        _private={"v1": {"seen": naive}},
        retries=2,
    )
    job = await claim_one(jc)
    assert job.data == {"at": naive.replace(tzinfo=UTC)}
    assert await job.fail("again") is True
    found = await jc.get_job(job_id, get_failures=True)
    assert found is not None and found.doc.failures is not None
    assert found.doc.failures[0]["at"] == naive.replace(tzinfo=UTC)


# --- scrub applies on every read path ------------------------------------------------------


def drop_app_fields(doc: Doc) -> Doc:
    return {k: v for k, v in doc.items() if k != "appField"}


@pytest.mark.v1_invalid("documents with an application's own field are stored on purpose")
async def test_scrub_applies_to_claims_reports_and_expiry(
    jc: JobCollection, clock: ManualClock
) -> None:
    jc.scrub = drop_app_fields
    done_id = await raw_job(jc, appField=1, type="a")
    expiring_id = await raw_job(jc, appField=2, type="b")
    job = await claim_one(jc, "a")
    assert await job.done() is True
    assert (await stored(jc, done_id))["status"] == "completed"
    await claim_one(jc, "b", work_timeout=10)
    clock.advance(11)
    assert (await jc.run_server_pass()).expired == 1
    doc = await stored(jc, expiring_id)
    assert doc["status"] == "failed"
    assert doc["failures"][-1]["value"] == "Failed for exceeding worker set workTimeout"
    assert doc["appField"] == 2  # scrub shapes what is read, never what is stored


@pytest.mark.v1_invalid("documents with an application's own field are stored on purpose")
async def test_a_scrub_that_raises_makes_the_document_poison_not_the_call(
    jc: JobCollection,
) -> None:
    def fussy(doc: Doc) -> Doc:
        if "appField" in doc:
            raise KeyError("appField")
        return doc

    jc.scrub = fussy
    poison = await raw_job(jc, appField=1, priority=-1)
    healthy = await jc.create_job("t").save()
    assert [job.id for job in await jc.get_work("t", max_jobs=2)] == [healthy]
    assert "scrub raised KeyError" in (await stored(jc, poison))["failures"][-1]["value"]


# --- the job server keeps going ------------------------------------------------------------


@pytest.mark.v1_invalid("a poison document is stored on purpose")
async def test_an_expired_poison_job_is_failed_and_the_pass_goes_on(
    jc: JobCollection, clock: ManualClock
) -> None:
    poison = await raw_job(
        jc,
        status="running",
        runId=ObjectId(),
        expiresAfter=START - timedelta(seconds=1),
        workTimeout=1000,
        appField="x",
    )
    healthy = await jc.create_job("h").save()
    await claim_one(jc, "h", work_timeout=10)
    due = await jc.create_job("later").delay(20).save()
    clock.advance(30)
    outcome = await jc.run_server_pass()
    assert outcome.expired == 2 and outcome.promoted is True and outcome.errors == 0
    assert (await stored(jc, poison))["status"] == "failed"
    assert (await stored(jc, healthy))["status"] == "failed"
    assert (await stored(jc, due))["status"] == "ready"


class RefusesUpdatesOf(Yielding):
    """A server that refuses every update of some documents, as it would one whose update
    breaks a schema validator or grows it past 16 MiB: the others of a bulk are applied."""

    def __init__(self, inner: Any, refused: set[Any]) -> None:
        super().__init__(inner)
        self.refused = refused
        self.reads: list[Any] = []

    def find(self, query: Any, *args: Any, **kwargs: Any) -> Any:
        self.reads.append(query)
        return super().find(query, *args, **kwargs)

    async def update_one(self, query: Any, update: Any, **kwargs: Any) -> Any:
        if query.get("_id") in self.refused:
            raise WriteError("Document failed validation", 121)
        return await self._inner.update_one(query, update, **kwargs)

    async def bulk_write(self, requests: list[Any], **kwargs: Any) -> Any:
        kept = [r for r in requests if r._filter.get("_id") not in self.refused]
        result = await self._inner.bulk_write(kept, **kwargs) if kept else None
        errors = [
            {"index": i, "code": 121, "errmsg": "Document failed validation"}
            for i, r in enumerate(requests)
            if r._filter.get("_id") in self.refused
        ]
        if errors:
            matched = result.matched_count if result is not None else 0
            raise BulkWriteError(
                {"writeErrors": errors, "writeConcernErrors": [], "nMatched": matched}
            )
        return result


async def test_a_job_whose_expiry_the_server_refuses_is_skipped_and_not_read_again(
    make_wrapped_jc: WrapJC, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    refused: set[Any] = set()
    jc = await make_wrapped_jc(lambda inner: RefusesUpdatesOf(inner, refused))
    collection = jc.collection
    stuck = await jc.create_job("t").save()
    other = await jc.create_job("t").save()
    await jc.get_work("t", max_jobs=2, work_timeout=10)
    refused.add(stuck)
    clock.advance(11)
    with caplog.at_level(logging.ERROR, logger="jobcollection"):
        outcome = await jc.run_server_pass()
    assert outcome.expired == 1 and outcome.errors == 0
    assert f"job {stuck}: could not fail it" in caplog.text
    assert (await stored(jc, other))["status"] == "failed"
    collection.reads.clear()
    assert (await jc.run_server_pass()).expired == 0
    expiry_reads = [q for q in collection.reads if "expiresAfter" in q]
    assert expiry_reads and all(stuck in q["_id"]["$nin"] for q in expiry_reads)


async def test_a_pass_whose_expiry_step_fails_still_promotes(
    make_wrapped_jc: WrapJC, clock: ManualClock
) -> None:
    jc = await make_wrapped_jc(FaultyCollection)
    job_id = await jc.create_job("t").delay(5).save()
    clock.advance(6)
    jc.collection.faults.fail_before("find", when=lambda op, args: "expiresAfter" in str(args))
    outcome = await jc.run_server_pass()
    assert outcome.errors == 1 and outcome.promoted is True
    assert (await stored(jc, job_id))["status"] == "ready"


async def test_close_during_a_shutdown_grace_period_fails_the_jobs_it_handed_out(
    make_jc: MakeJC,
) -> None:
    jc = await make_jc()
    job_id = await jc.create_job("t").save()
    await claim_one(jc)  # no lease: only this instance's shutdown can fail it
    await jc.shutdown_job_server(timeout=60)
    assert (await stored(jc, job_id))["status"] == "running"
    await jc.close()
    doc = await stored(jc, job_id)
    assert doc["status"] == "failed"
    assert doc["failures"][-1]["value"] == "Running at Job Server shutdown."
