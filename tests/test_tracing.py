"""OpenTelemetry tracing (jobcollection.api.tracing): the enqueuing span's context kept on the
job, and a consumer span per attempt, the child of it for a first attempt and linked to it for
retries and later runs. The SDK's in-memory exporter records the spans; the global tracer
provider is set for the test only."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from helpers import stored
from jobcollection import Job, JobCollection, ManualClock

pytestmark = pytest.mark.both_sides


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """Spans recorded while the test runs (the application's provider, for this test)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)
    yield exporter
    provider.shutdown()


def named(exporter: InMemorySpanExporter, prefix: str) -> list[Any]:
    return [s for s in exporter.get_finished_spans() if s.name.startswith(prefix)]


async def test_nothing_is_stored_outside_a_configured_tracer(jc: JobCollection) -> None:
    job_id = await jc.create_job("t").save()
    assert "jobcollectionTrace" not in (await stored(jc, job_id)).get("_private", {})


async def test_a_job_carries_its_enqueuing_context_to_its_attempts(
    jc: JobCollection, clock: ManualClock, spans: InMemorySpanExporter
) -> None:
    tracer = trace.get_tracer("app")
    with tracer.start_as_current_span("request") as request:
        job_id = await jc.create_job("mail", {"to": "ada"}).retry(1, wait=0).save()
    raw = await stored(jc, job_id)
    traceparent = raw["_private"]["jobcollectionTrace"]["traceparent"]
    trace_id = format(request.get_span_context().trace_id, "032x")
    assert traceparent.split("-")[1] == trace_id

    calls = 0

    async def flaky(job: Job) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("down")

    queue = jc.process_jobs("mail", flaky, poll_interval=None, wakeup=False)
    await queue.drain()
    await jc.run_server_pass()  # the retry falls due
    queue.trigger()
    await queue.drain()
    await queue.shutdown("soft", quiet=True)

    [enqueue] = named(spans, "jobcollection enqueue mail")
    assert enqueue.kind == trace.SpanKind.PRODUCER
    assert (
        enqueue.parent is not None and enqueue.parent.span_id == request.get_span_context().span_id
    )
    first, retry = named(spans, "jobcollection process mail")
    assert first.kind == trace.SpanKind.CONSUMER
    assert first.parent is not None and first.parent.span_id == enqueue.context.span_id
    assert first.status.status_code == trace.StatusCode.ERROR  # the exception is recorded
    assert any(e.name == "exception" for e in first.events)
    assert retry.parent is None  # a retry starts its own trace, linked to the enqueue
    assert [link.context.span_id for link in retry.links] == [enqueue.context.span_id]
    assert retry.attributes["jobcollection.attempt"] == 2  # type: ignore[index]


async def test_a_batch_of_jobs_has_one_enqueue_span_and_one_linked_process_span(
    jc: JobCollection, spans: InMemorySpanExporter
) -> None:
    with trace.get_tracer("app").start_as_current_span("import"):
        await jc.save_jobs([jc.create_job("row", {"n": n}) for n in range(3)])
    [enqueue] = named(spans, "jobcollection enqueue row")
    assert enqueue.attributes["messaging.batch.message_count"] == 3  # type: ignore[index]

    async def rows(jobs: list[Job]) -> None:
        return None

    queue = jc.process_jobs("row", rows, payload=3, poll_interval=None, wakeup=False)
    await queue.drain()
    await queue.shutdown("soft", quiet=True)
    [process] = named(spans, "jobcollection process row")
    assert process.parent is None
    assert [link.context.span_id for link in process.links] == [enqueue.context.span_id] * 3


async def test_a_repeating_jobs_later_runs_are_linked_not_children(
    jc: JobCollection, clock: ManualClock, spans: InMemorySpanExporter
) -> None:
    with trace.get_tracer("app").start_as_current_span("schedule"):
        await jc.create_job("nightly").repeat(1, wait=60).save()

    async def run(job: Job) -> None:
        return None

    queue = jc.process_jobs("nightly", run, poll_interval=None, wakeup=False)
    await queue.drain()
    clock.advance(61)
    await jc.run_server_pass()
    queue.trigger()
    await queue.drain()
    await queue.shutdown("soft", quiet=True)
    [enqueue] = named(spans, "jobcollection enqueue nightly")
    first, second = named(spans, "jobcollection process nightly")
    assert first.parent is not None and first.parent.span_id == enqueue.context.span_id
    assert second.parent is None and second.links[0].context.span_id == enqueue.context.span_id
    assert second.attributes["jobcollection.run"] == 2  # type: ignore[index]
