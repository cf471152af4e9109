"""The queue's logger ("jobcollection.queue", for every part of the queue) and what its lines
say of a job: its structured fields, never its data."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from ..job import Job

logger = logging.getLogger("jobcollection.queue")


def fields(job: Job) -> dict[str, Any]:
    """A job's structured log fields (`extra=`): its type, id and attempt; never its data."""
    return {"job_type": job.type, "job_id": str(job.id), "attempt": job.doc.retried}


def ids(jobs: Iterable[Job]) -> str:
    return ", ".join(str(job.id) for job in jobs)
