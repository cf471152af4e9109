"""OpenTelemetry tracing of jobs (the `otel` extra: opentelemetry-api).

When the application has configured a tracer provider (the OpenTelemetry SDK), saving a job
opens a PRODUCER span "jobcollection enqueue <type>" and keeps its context on the job
(`JobDoc.trace`, `_private.jobcollectionTrace`, W3C `traceparent`/`tracestate`), so the trace
crosses processes and machines with the job. Each worker call of a JobQueue runs in a
CONSUMER span "jobcollection process <type>": the child of the enqueuing context for a job's
first attempt, linked to it for a retry or a later run of a repeating job (which would
otherwise make one trace of every run of a nightly job). A worker call given several jobs
(payload > 1) has one span, linked to each job's context. The span records the exception a
worker raised.

Without opentelemetry installed, or without a configured provider, nothing is stored and no
span is made: the calls below cost a check.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from ..model.document import JobDoc

try:
    from opentelemetry import propagate, trace
except ImportError:  # the `otel` extra is not installed
    propagate = trace = None  # type: ignore[assignment]

TRACER = "jobcollection"


def enabled() -> bool:
    """Whether the application configured a tracer provider (else spans would be no-ops)."""
    if trace is None:
        return False
    provider = trace.get_tracer_provider()
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


_NOTHING: Final = contextlib.nullcontext()
"""What the spans below are when tracing is off: entered and left for next to nothing."""


def enqueuing(docs: Sequence[JobDoc]) -> contextlib.AbstractContextManager[None]:
    """A PRODUCER span around saving these new jobs; each job without a trace context gets
    the span's (one span for a batch, named after the first job's type)."""
    return _enqueuing(docs) if enabled() else _NOTHING


@contextlib.contextmanager
def _enqueuing(docs: Sequence[JobDoc]) -> Iterator[None]:
    fresh = [doc for doc in docs if doc.trace is None and doc.id is None]
    if not fresh:
        yield
        return
    tracer = trace.get_tracer(TRACER)
    name = f"jobcollection enqueue {fresh[0].type}"
    with tracer.start_as_current_span(name, kind=trace.SpanKind.PRODUCER) as span:
        span.set_attribute("messaging.system", "jobcollection")
        span.set_attribute("messaging.operation", "publish")
        span.set_attribute("messaging.batch.message_count", len(fresh))
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        for doc in fresh:
            doc.__dict__["trace"] = dict(carrier)  # validated: the propagator's own strings
        yield


def _context(doc: JobDoc) -> Any:
    return propagate.extract(doc.trace or {})


def processing(docs: Sequence[JobDoc]) -> contextlib.AbstractContextManager[None]:
    """A CONSUMER span around one worker call on these claimed jobs (see the module
    docstring for its parent and links); records the exception the call raised."""
    return _processing(docs) if docs and enabled() else _NOTHING


@contextlib.contextmanager
def _processing(docs: Sequence[JobDoc]) -> Iterator[None]:
    tracer = trace.get_tracer(TRACER)
    first = docs[0]
    parent = None
    links = []
    for doc in docs:
        if doc.trace is None:
            continue
        span_context = trace.get_current_span(_context(doc)).get_span_context()
        if len(docs) == 1 and doc.retried <= 1 and not doc.lineage:
            parent = _context(doc)  # the first attempt of the run its caller enqueued
        elif span_context.is_valid:
            links.append(trace.Link(span_context, {"jobcollection.job_id": str(doc.id)}))
    attributes: dict[str, Any] = {
        "messaging.system": "jobcollection",
        "messaging.operation": "process",
        "messaging.destination.name": first.type,
        "messaging.batch.message_count": len(docs),
    }
    if len(docs) == 1:
        attributes["messaging.message.id"] = str(first.id)
        attributes["jobcollection.attempt"] = first.retried
        attributes["jobcollection.run"] = first.repeated + 1
    with tracer.start_as_current_span(
        f"jobcollection process {first.type}",
        context=parent,
        kind=trace.SpanKind.CONSUMER,
        links=links,
        attributes=attributes,
    ):
        yield
