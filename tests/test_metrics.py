"""Prometheus metrics (jobcollection.metrics) and `jc.stats()`, from jobs run for real; the
clock is the manual one, so durations and waits are exact."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from jobcollection import ConcurrencyLimit, Job, JobCollection, ManualClock
from jobcollection.metrics import JobMetrics

pytestmark = pytest.mark.both_sides


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    found = registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


async def test_saves_claims_and_reports_are_counted_and_timed(
    jc: JobCollection, clock: ManualClock
) -> None:
    registry = CollectorRegistry()
    JobMetrics(jc, registry=registry)
    await jc.create_job("mail", {"n": 1}).save()
    await jc.save_jobs([jc.create_job("mail", {"n": 2}), jc.create_job("sms")])
    paused = jc.create_job("mail", {"n": 3}).retry(1, wait=0)
    await paused.pause()
    await paused.save()
    await paused.save()  # a resave of a paused job: not a new job
    assert value(registry, "jobcollection_jobs_enqueued_total", type="mail") == 3
    assert value(registry, "jobcollection_jobs_enqueued_total", type="sms") == 1

    clock.advance(5)
    [first, second] = await jc.get_work("mail", max_jobs=2)
    clock.advance(2)
    assert await first.done() is True
    assert await second.fail("down", fatal=True) is True
    assert value(registry, "jobcollection_jobs_finished_total", type="mail", outcome="completed")
    assert value(registry, "jobcollection_jobs_finished_total", type="mail", outcome="failed") == 1
    assert value(registry, "jobcollection_job_duration_seconds_sum", type="mail") == 4.0
    assert value(registry, "jobcollection_job_duration_seconds_count", type="mail") == 2
    assert value(registry, "jobcollection_job_wait_seconds_sum", type="mail") == 10.0

    await paused.resume()
    [again] = await jc.get_work("mail")
    assert await again.fail("flaky") is True  # it had a retry left
    assert value(registry, "jobcollection_jobs_finished_total", type="mail", outcome="retried") == 1
    await jc.run_server_pass()  # its retry falls due at once (wait=0)
    [last] = await jc.get_work("mail")
    assert await last.fail("flaky") is True  # no attempt left
    assert value(registry, "jobcollection_jobs_finished_total", type="mail", outcome="failed") == 2


async def test_a_queue_is_measured_too(jc: JobCollection, clock: ManualClock) -> None:
    registry = CollectorRegistry()
    JobMetrics(jc, registry=registry)

    async def work(job: Job) -> None:
        clock.advance(3)

    await jc.save_jobs([jc.create_job("q") for _ in range(3)])
    queue = jc.process_jobs("q", work, poll_interval=None, wakeup=False)
    await queue.drain()
    await queue.shutdown("soft", quiet=True)
    assert value(registry, "jobcollection_jobs_finished_total", type="q", outcome="completed") == 3
    assert value(registry, "jobcollection_job_duration_seconds_count", type="q") == 3


async def test_expired_leases_are_counted(jc: JobCollection, clock: ManualClock) -> None:
    registry = CollectorRegistry()
    JobMetrics(jc, registry=registry)
    await jc.create_job("slow").save()
    await jc.get_work("slow", work_timeout=1)
    clock.advance(2)
    assert (await jc.run_server_pass()).expired == 1
    assert value(registry, "jobcollection_leases_expired_total") == 1


async def test_depths_and_the_oldest_ready_age_come_from_stats(
    jc: JobCollection, clock: ManualClock
) -> None:
    registry = CollectorRegistry()
    metrics = JobMetrics(jc, registry=registry)
    await jc.create_job("a").save()
    clock.advance(60)
    await jc.create_job("a").save()
    await jc.create_job("b").delay(30).save()
    clock.advance(40)
    stats = await jc.stats()
    assert stats.counts == {("a", "ready"): 2, ("b", "waiting"): 1}
    assert stats.oldest_ready_age("a") == 100.0 and stats.oldest_ready_age("b") == 0.0
    await metrics.refresh()
    assert value(registry, "jobcollection_queue_depth", type="a", status="ready") == 2
    assert value(registry, "jobcollection_queue_depth", type="b", status="waiting") == 1
    assert value(registry, "jobcollection_oldest_ready_age_seconds", type="a") == 100.0
    [job] = await jc.get_work("a")
    await job.done()
    await metrics.refresh()
    assert value(registry, "jobcollection_queue_depth", type="a", status="completed") == 1
    assert value(registry, "jobcollection_oldest_ready_age_seconds", type="a") == 40.0
    assert value(registry, "jobcollection_type_paused", type="b") == 0.0  # no sample
    await jc.pause_type("b")
    await metrics.refresh()
    assert value(registry, "jobcollection_type_paused", type="b") == 1
    await jc.resume_type("b")
    await jc.pause_type(None)
    await metrics.refresh()
    assert value(registry, "jobcollection_type_paused", type="b") == 0.0  # no sample
    assert value(registry, "jobcollection_type_paused", type="*") == 1
    queue = jc.process_jobs(["a", "b"], noop, poll_interval=None)
    try:
        await queue.announce()
        await metrics.refresh()
        assert value(registry, "jobcollection_workers", type="a") == 1
    finally:
        await queue.shutdown(quiet=True)
    await metrics.refresh()
    assert value(registry, "jobcollection_workers", type="a") == 0.0  # no sample


async def test_the_concurrency_limit_gauge_is_each_limited_types_max_running(
    jc: JobCollection,
) -> None:
    """`jobcollection_concurrency_limit{type}` is the max_running of each limited type (per
    group with group_by: the same number), as of the last refresh; a removed limit leaves
    no sample."""
    registry = CollectorRegistry()
    metrics = JobMetrics(jc, registry=registry)
    await jc.set_concurrency_limit("a", ConcurrencyLimit(3))
    await jc.set_concurrency_limit("b", ConcurrencyLimit(2, group_by="data.customer"))
    await metrics.refresh()
    assert value(registry, "jobcollection_concurrency_limit", type="a") == 3
    assert value(registry, "jobcollection_concurrency_limit", type="b") == 2
    await jc.set_concurrency_limit("a", None)
    await jc.set_concurrency_limit("b", ConcurrencyLimit(5))
    await metrics.refresh()
    assert registry.get_sample_value("jobcollection_concurrency_limit", {"type": "a"}) is None
    assert value(registry, "jobcollection_concurrency_limit", type="b") == 5


async def test_labels_never_hold_an_id_or_a_user(jc: JobCollection) -> None:
    registry = CollectorRegistry()
    metrics = JobMetrics(jc, registry=registry)
    job_id = await jc.create_job("a").for_user("alice@example.com").save()
    [job] = await jc.get_work("a")
    await job.done()
    await metrics.refresh()
    labels: set[Any] = set()
    for family in registry.collect():
        for sample in family.samples:
            labels.update(sample.labels.values())
    buckets = {b for b in labels if b == "+Inf" or b.replace(".", "").isdigit()}
    assert labels - buckets <= {"a", "completed", "retried", *jc.job_statuses}
    assert str(job_id) not in labels and "alice@example.com" not in labels


async def noop(job: Any) -> None:
    await job.done()


async def test_a_snooze_is_counted_as_snoozed_and_a_chosen_wait_as_retried(
    jc: JobCollection,
) -> None:
    registry = CollectorRegistry()
    JobMetrics(jc, registry=registry)
    await jc.save_jobs([jc.create_job("mail").retry(2) for _ in range(2)])
    [first, second] = await jc.get_work("mail", max_jobs=2)
    assert await first.snooze(60, "closed") is True
    assert await second.fail("429", retry_in=30) is True
    assert value(registry, "jobcollection_jobs_finished_total", type="mail", outcome="snoozed") == 1
    assert value(registry, "jobcollection_jobs_finished_total", type="mail", outcome="retried") == 1
