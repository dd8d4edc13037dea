"""Pure parts of queue figures and KPI requests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from conveyor.kernel.errors import InvalidArgument
from conveyor.monitor.insight_api import kpi_window
from conveyor.monitor.queues import assemble, broker_kind, broker_notes
from conveyor.monitor.v1 import insight_service_pb2

NOW = datetime(2026, 1, 1, tzinfo=UTC)


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


HOUR = timedelta(hours=1)


def _request(**fields: Any) -> Any:
    req = insight_service_pb2.GetKpisRequest()
    for name, value in fields.items():
        getattr(req, name).FromTimedelta(value)
    return req


def test_window_and_bucket_defaults_and_bounds() -> None:
    assert kpi_window(_request()) == (timedelta(hours=24), timedelta(hours=1))
    assert kpi_window(_request(window=timedelta(minutes=10))) == (
        timedelta(minutes=10),
        timedelta(minutes=1),
    )
    for bad in (
        {"window": timedelta(days=32)},
        {"window": timedelta(0)},
        {"bucket": timedelta(seconds=30)},
        {"window": HOUR, "bucket": 2 * HOUR},
        {"window": timedelta(days=30), "bucket": timedelta(minutes=1)},
    ):
        with pytest.raises(InvalidArgument):
            kpi_window(_request(**bad))
