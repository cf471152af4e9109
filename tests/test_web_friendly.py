"""Ids and documents as a web application gets them: a job id that went through a URL or JSON
as its hex string finds the job again, and every document the API returns serialises to JSON
(a FastAPI response model included)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from bson import ObjectId

from conftest import START
from jobcollection import InvalidArgumentType, JobCollection, JobDoc

pytestmark = pytest.mark.both_sides


async def test_the_hex_string_of_an_id_finds_the_job(jc: JobCollection) -> None:
    job_id = await jc.create_job("t", {"n": 1}).save()
    assert isinstance(job_id, ObjectId)
    from_url = str(job_id)
    found = await jc.get_job(from_url)
    assert found is not None and found.id == job_id
    assert [j.id for j in await jc.get_jobs([from_url, from_url.upper()])] == [job_id]
    assert await jc.pause_jobs([from_url]) is True
    assert (await jc.get_job(job_id)).doc.status == "paused"  # type: ignore[union-attr]
    assert await jc.cancel_jobs(from_url) is True
    assert await jc.remove_jobs([from_url]) is True
    assert await jc.get_job(from_url) is None


async def test_other_strings_stay_string_ids(jc: JobCollection) -> None:
    meteor_id = "aBcDeFgHiJkLmNoPq"  # job-collection's own ids: 17 characters
    saved = await jc.call("jobSave", jc.create_job("t").doc.to_mongo(), {"jobId": meteor_id})
    assert saved == meteor_id
    found = await jc.get_job(meteor_id)
    assert found is not None and found.id == meteor_id
    assert await jc.get_job("0" * 23 + "g") is None  # not hex: a string id, not stored
    with pytest.raises(InvalidArgumentType):
        await jc.get_job({"$ne": None})  # type: ignore[arg-type]


async def test_every_document_serialises_to_json(jc: JobCollection) -> None:
    antecedent = jc.create_job("a")
    await antecedent.save()
    data = {"ref": ObjectId(), "blob": b"\x00\x01", "when": START, "nested": [{"id": ObjectId()}]}
    job = jc.create_job("t", data).depends([antecedent]).for_user(ObjectId())
    await job.save()
    [claimed] = await jc.get_work("a")
    await claimed.log("hello", data={"ref": ObjectId()})
    await claimed.done({"made": ObjectId()})
    for doc in (job.doc, (await jc.get_job(job.id, get_log=True)).doc, claimed.doc):  # type: ignore[union-attr]
        dumped = doc.model_dump(mode="json", by_alias=True)
        text = json.dumps(dumped)
        assert json.loads(text) == dumped
        assert isinstance(dumped["_id"], str) and ObjectId.is_valid(dumped["_id"])
        assert await jc.get_job(dumped["_id"]) is not None  # the JSON id finds the job again
    stored = (await jc.get_job(job.id)).doc.model_dump(mode="json", by_alias=True)  # type: ignore[union-attr]
    assert stored["data"]["ref"] == str(data["ref"])
    assert stored["data"]["blob"] == "AAE="
    assert stored["data"]["when"].startswith("2026-01-01T12:00:00")
    assert stored["data"]["nested"] == [{"id": str(data["nested"][0]["id"])}]  # type: ignore[index]
    assert stored["depends"] == [] and stored["resolved"] == [str(antecedent.id)]
    python = (await jc.get_job(job.id)).doc.model_dump()  # type: ignore[union-attr]
    assert python["data"]["ref"] == data["ref"]  # Python mode keeps the BSON values


def test_a_fastapi_response_model_returns_a_job() -> None:
    fastapi = pytest.importorskip("fastapi")
    app = fastapi.FastAPI()
    doc = JobDoc(type="t", _id=ObjectId(), data={"ref": ObjectId()}, created=START)

    @app.get("/job", response_model=JobDoc)
    async def get() -> JobDoc:
        return doc

    assert "/job" in json.dumps(app.openapi())

    async def fetch() -> Any:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            return (await client.get("/job")).json()

    import asyncio

    body = asyncio.run(fetch())
    assert body["_id"] == str(doc.id)
    assert body["data"]["ref"] == str(doc.data["ref"])
    assert datetime.fromisoformat(body["created"].replace("Z", "+00:00")) == START.astimezone(UTC)
