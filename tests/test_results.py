"""Results for dependents: `await job.antecedent_results()` (BullMQ's getChildrenValues;
meteor-job-collection #130 asked for it)."""

from __future__ import annotations

import pytest

from helpers import claim_one
from jobcollection import InvalidArgument, InvalidArgumentType, JobCollection

pytestmark = pytest.mark.both_sides


async def finish(jc: JobCollection, job_type: str, result: object) -> None:
    assert await (await claim_one(jc, job_type)).done(result) is True


async def test_a_dependent_reads_its_antecedents_results(jc: JobCollection) -> None:
    first, second = jc.create_job("a"), jc.create_job("b")
    await first.save()
    await second.save()
    await jc.create_job("report").depends([first, second]).save()
    await finish(jc, "b", {"rows": 2})
    await finish(jc, "a", "done")  # stored as {"value": "done"}
    dependent = await claim_one(jc, "report")
    assert await dependent.antecedent_results() == {
        second.id: {"rows": 2},
        first.id: {"value": "done"},
    }


async def test_only_completed_antecedents_are_read(jc: JobCollection) -> None:
    first, second = jc.create_job("a"), jc.create_job("b")
    await first.save()
    await second.save()
    waiting_id = await jc.create_job("report").depends([first, second]).save()
    await finish(jc, "a", {"n": 1})
    waiting = await jc.get_job(waiting_id)
    assert waiting is not None
    assert await waiting.antecedent_results() == {first.id: {"n": 1}}
    assert await first.remove()  # a removed antecedent has no result to give
    assert await waiting.antecedent_results() == {}


async def test_a_job_without_antecedents_reads_nothing(jc: JobCollection) -> None:
    await jc.create_job("t").save()
    job = await claim_one(jc)
    before = jc.commands
    assert await job.antecedent_results() == {}
    assert jc.commands == before


async def test_results_larger_than_the_limit_are_refused(jc: JobCollection) -> None:
    first = jc.create_job("a")
    await first.save()
    await jc.create_job("report").depends([first]).save()
    await finish(jc, "a", {"blob": "x" * 1000})
    dependent = await claim_one(jc, "report")
    with pytest.raises(InvalidArgument, match="max_bytes"):
        await dependent.antecedent_results(max_bytes=500)
    assert len(await dependent.antecedent_results(max_bytes=2000)) == 1
    with pytest.raises(InvalidArgumentType, match="max_bytes"):
        await dependent.antecedent_results(max_bytes="1MB")  # type: ignore[arg-type]
