"""Trace context helpers: continue a caller's trace, hand it on, read its id."""

from __future__ import annotations

from conveyor.kernel import tracing

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE}-00f067aa0ba902b7-01"


def test_span_continues_the_callers_trace_and_injects_it() -> None:
    carrier = tracing.carrier_from([("TraceParent", PARENT), ("authorization", "secret")])
    assert carrier == {"traceparent": PARENT}
    with tracing.span("work", carrier, kind=tracing.SERVER):
        assert tracing.current_trace_id() == TRACE
        sent = tracing.inject()["traceparent"]
        assert sent.startswith(f"00-{TRACE}-") and sent != PARENT  # a new span, same trace
    assert tracing.current_trace_id() == ""
    assert tracing.inject() == {}


def test_without_a_caller_a_new_trace_starts() -> None:
    with tracing.span("root", None, kind=tracing.SERVER):
        first = tracing.current_trace_id()
    with tracing.span("root", {}, kind=tracing.SERVER):
        second = tracing.current_trace_id()
    assert len(first) == 32 and first != second
