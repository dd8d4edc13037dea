"""Which ended runs a retention rule lets go; rows as JSON records and back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conveyor.executor import history
from conveyor.executor.models import RunRow
from conveyor.kernel.db import Database
from conveyor.kernel.errors import InvalidArgument
from conveyor.kernel.migrate import upgrade

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'c.db'}")
    upgrade(database)
    return database


def _run(db: Database, run_id: str, job: str, *, age_days: float, state: str = "SUCCEEDED") -> None:
    created = NOW - timedelta(days=age_days)
    with db.transaction() as s:
        s.add(
            RunRow(
                id=run_id,
                job_id=job,
                job_name=job,
                job_version=1,
                state=state,
                trigger="MANUAL",
                parameters={},
                plan_data={"nodes": {}},
                created_at=created,
                ended_at=None if state == "RUNNING" else created + timedelta(minutes=1),
            )
        )


def _select(db: Database, *rules: history.Rule, limit: int = 100) -> list[tuple[str, str]]:
    with db.transaction() as s:
        found = history.select_expired(s, list(rules), limit=limit, now=NOW)
    return [(e.run_id, e.reason) for e in found]


def test_age_count_default_and_running(db: Database) -> None:
    for i, age in enumerate([40, 30, 20, 10, 1]):
        _run(db, f"a{i}", "A", age_days=age)
    _run(db, "a-running", "A", age_days=50, state="RUNNING")
    _run(db, "b0", "B", age_days=100)
    _run(db, "c0", "C", age_days=100)
    default = history.Rule("", timedelta(days=60), 0)
    job_a = history.Rule("A", timedelta(days=25), 2)
    # A: older than 25 days (a0, a1), beyond the newest two, a4 and a3 (a2); B and C fall
    # under the default rule; the running run never goes, however old.
    assert _select(db, default, job_a) == [
        ("b0", "max_age"),
        ("c0", "max_age"),
        ("a0", "max_age"),
        ("a1", "max_age"),
        ("a2", "keep_last"),
    ]
    assert _select(db, job_a, limit=2) == [("a0", "max_age"), ("a1", "max_age")]
    assert _select(db) == []


def test_purge_keeps_running_runs(db: Database) -> None:
    _run(db, "done", "A", age_days=1)
    _run(db, "going", "A", age_days=1, state="RUNNING")
    with db.transaction() as s:
        assert history.purge_runs(s, ["done", "going", "unknown"]) == ["done"]
    with db.transaction() as s:
        assert history.purge_runs(s, ["done"]) == []
        assert s.get(RunRow, "going") is not None


def test_export_import_roundtrip(db: Database, tmp_path: Path) -> None:
    _run(db, "r1", "A", age_days=3)
    _run(db, "r2", "A", age_days=2)
    with db.transaction() as s:
        records, ids, token = history.export_runs(
            s, job_id="A", since=None, run_ids=[], page_size=1, page_token=""
        )
        assert ids == ["r1"] and token
        rest, ids2, last = history.export_runs(
            s, job_id="A", since=None, run_ids=[], page_size=1, page_token=token
        )
        assert ids2 == ["r2"] and last == ""
    other = Database(f"sqlite:///{tmp_path / 'other.db'}")
    upgrade(other)
    with other.transaction() as s:
        assert history.import_runs(s, records + rest) == (2, 0)
    with other.transaction() as s:
        assert history.import_runs(s, records + rest) == (0, 2)
        row = s.get(RunRow, "r1")
        assert row is not None and row.plan_data == {"nodes": {}}
    with other.transaction() as s, pytest.raises(InvalidArgument, match="not JSON"):
        history.import_runs(s, ["{nope"])
    with other.transaction() as s, pytest.raises(InvalidArgument, match="does not import"):
        history.import_runs(s, ['{"table": "users", "row": {}}'])
