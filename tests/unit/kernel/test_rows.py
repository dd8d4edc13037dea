"""Export records carry binary columns (a run's typed plan) as base64 and back."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from conveyor.executor.models import RunRow
from conveyor.kernel import rows
from conveyor.kernel.errors import InvalidArgument

TABLE = RunRow.__table__


def _row(plan_pb: bytes | None) -> dict[str, object]:
    return {
        "id": "r1",
        "job_id": "j",
        "job_name": "n",
        "job_version": 1,
        "state": "SUCCEEDED",
        "trigger": "MANUAL",
        "parameters": {"x": 1.0},
        "plan_pb": plan_pb,
        "plan": None,
        "priority": 0,
        "request_id": None,
        "error_message": "",
        "event_seq": 3,
        "created_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        "started_at": None,
        "ended_at": None,
        "parent_run_id": None,
        "retry_of": None,
        "started_by": None,
        "parent_node_id": None,
    }


def test_binary_columns_round_trip_as_base64() -> None:
    data = bytes(range(256)) * 3
    text = rows.dump(TABLE, _row(data))
    assert isinstance(json.loads(text)["row"]["plan_pb"], str)
    [(table, values)] = rows.load([text], [TABLE])
    assert table is TABLE
    assert values["plan_pb"] == data
    assert values["created_at"] == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_a_record_without_the_binary_column_still_loads() -> None:
    text = rows.dump(TABLE, _row(None))
    [(_table, values)] = rows.load([text], [TABLE])
    assert values["plan_pb"] is None


def test_binary_that_is_not_base64_is_refused() -> None:
    record = json.loads(rows.dump(TABLE, _row(b"x")))
    record["row"]["plan_pb"] = "not base64!"
    with pytest.raises(InvalidArgument, match="plan_pb"):
        rows.load([json.dumps(record)], [TABLE])
