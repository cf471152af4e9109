"""Small helpers the test modules share: reading stored documents as the database holds them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from jobcollection import JobCollection

Doc = dict[str, Any]


def utc(value: datetime) -> datetime:
    """Stored datetimes come back naive (UTC) from both backends."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def stored(jc: JobCollection, job_id: Any) -> Doc:
    """The raw stored document of a job, which must exist."""
    doc = await jc.collection.find_one({"_id": job_id})
    assert doc is not None, f"job {job_id} is not stored"
    return dict(doc)


def messages(doc: Doc) -> list[str]:
    """The messages of a stored document's log, in order."""
    return [e["message"] for e in doc.get("log", [])]
