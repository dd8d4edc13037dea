"""OpenTelemetry trace context: from the gateway through the services into Celery tasks.

Every process installs an SDK tracer provider so trace and span ids exist even without an
exporter; spans leave the process only when `CONVEYOR_TRACE_EXPORTER` names one (`console`
prints them). The W3C `traceparent` travels in HTTP headers and gRPC metadata (the gateway
forwards it), in Celery message headers, and the trace id is stored on each attempt row
(`job_executions.trace_id`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

HEADERS = ("traceparent", "tracestate")
_propagator = TraceContextTextMapPropagator()
_provider: TracerProvider | None = None
# The SDK builds a new tracer (and its instrumentation scope) on every `get_tracer` call.
_tracer_cache: trace.Tracer | None = None


def setup(service: str, *, exporter: str = "") -> None:
    """Install the tracer provider once per process; add an exporter when one is named."""
    global _provider
    if _provider is not None:
        return
    _provider = TracerProvider(resource=Resource.create({"service.name": f"conveyor-{service}"}))
    if exporter == "console":
        _provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    elif exporter:
        raise ValueError(f"unknown trace exporter {exporter!r} (supported: console)")
    trace.set_tracer_provider(_provider)


def _tracer() -> trace.Tracer:
    global _tracer_cache
    if _tracer_cache is None:
        if _provider is None:
            setup("conveyor")
        _tracer_cache = trace.get_tracer("conveyor")
    return _tracer_cache


def carrier_from(pairs: Iterable[tuple[str, Any]] | Mapping[str, Any] | None) -> dict[str, str]:
    """The trace headers among metadata pairs or a header mapping."""
    items = pairs.items() if isinstance(pairs, Mapping) else (pairs or ())
    return {str(k).lower(): str(v) for k, v in items if str(k).lower() in HEADERS}


@contextlib.contextmanager
def span(name: str, carrier: Mapping[str, str] | None = None, *, kind: SpanKind) -> Iterator[Any]:
    """A span continuing the trace in carrier (or a new trace), current inside the block."""
    parent = _propagator.extract(dict(carrier or {}))
    token = otel_context.attach(parent)
    try:
        with _tracer().start_as_current_span(name, kind=kind) as current:
            yield current
    finally:
        otel_context.detach(token)


def inject() -> dict[str, str]:
    """The current trace context as headers ({} outside a span)."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier


def current_trace_id() -> str:
    """The current trace id as 32 hex digits, or '' outside a trace."""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else ""


SERVER, CLIENT, CONSUMER = SpanKind.SERVER, SpanKind.CLIENT, SpanKind.CONSUMER
