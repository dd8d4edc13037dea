"""Pure parts of job and queue statistics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from conveyor.monitor.jobstats import percentile, success_rate
from conveyor.monitor.queues import assemble, broker_kind, broker_notes

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_percentile_interpolates() -> None:
    assert percentile([], 0.5) is None
    assert percentile([3.0], 0.95) == 3.0
    assert percentile([4.0, 1.0, 3.0, 2.0], 0.5) == 2.5
    assert percentile([float(i) for i in range(1, 101)], 0.95) == 95.05


def test_success_rate_counts_only_ended_runs() -> None:
    assert success_rate({}) == 0.0
    assert success_rate({"SUCCEEDED": 3, "FAILED": 1, "RUNNING": 10, "CANCELLED": 2}) == 0.75


def test_assemble_combines_broker_database_and_events() -> None:
    figures = assemble(
        queues=["b", "a", "a"],
        depths={"a": (5, 2)},
        queued={"a": (5, NOW - timedelta(seconds=30))},
        rates={"b": (1.0, 0.5)},
        worker_consumers={"a": 1},
        broker_counts_consumers=False,
        now=NOW,
    )
    assert [f.queue for f in figures] == ["a", "b"]
    a, b = figures
    assert (a.depth, a.oldest_age_s, a.consumers) == (5, 30.0, 1)
    assert (b.depth, b.oldest_age_s, b.rate_in, b.rate_out) == (0, None, 1.0, 0.5)
    amqp = assemble(
        queues=["a"],
        depths={"a": (5, 2)},
        queued={},
        rates={},
        worker_consumers={"a": 1},
        broker_counts_consumers=True,
        now=NOW,
    )
    assert amqp[0].consumers == 2


def test_broker_kind_and_notes_say_what_is_missing() -> None:
    assert broker_kind("redis://x:6379/1") == "redis"
    assert broker_kind("amqp://guest@x//") == "amqp"
    assert broker_kind("memory://") == "memory"
    assert any("management API" in n for n in broker_notes("amqp"))
    assert any("does not track consumers" in n for n in broker_notes("redis"))
