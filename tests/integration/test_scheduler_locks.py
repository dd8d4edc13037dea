"""Lock order on PostgreSQL: deleting a schedule while one of its fires is being settled."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import psycopg
import pytest
from sqlalchemy import select

from conveyor.kernel.db import Database
from conveyor.kernel.migrate import upgrade
from conveyor.scheduler import store
from conveyor.scheduler.domain import Spec
from conveyor.scheduler.policies import CatchupMode, Overlap
from tests.conftest import POSTGRES_URL
from tests.integration import harness

pytestmark = pytest.mark.distributed


def _blocked_on_a_lock(url: str, database: str) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'",
            (database,),
        ).fetchone()
    return bool(row and row[0])


def test_deleting_a_schedule_does_not_deadlock_with_a_fire_being_settled() -> None:
    with harness.postgres_database(POSTGRES_URL) as url:
        db = Database(url.replace("postgresql://", "postgresql+psycopg://", 1))
        try:
            upgrade(db)
            now = datetime.now(UTC)
            with db.transaction() as s:
                row = store.new_schedule(
                    s,
                    job_id="job",
                    description="",
                    spec=Spec(kind="cron", cron="0 0 * * *"),
                    parameters={},
                    overlap=Overlap.ALLOW_ALL,
                    catchup_window_s=60,
                    catchup_mode=CatchupMode.ALL,
                    pause_after_failures=0,
                    paused=False,
                    request_id=None,
                    now=now,
                )
                _, action = store.add_manual_fire(s, row.id, now=now, request_id="r", lease_s=60)
                schedule_id, action_id = row.id, action.id

            errors: list[BaseException] = []

            def delete() -> None:
                try:
                    with db.transaction() as s:
                        store.delete_schedule(s, schedule_id)
                except BaseException as exc:  # reported by the main thread
                    errors.append(exc)

            # A settle in flight: its action is updated, its schedule comes next (as in
            # store.settle), while DeleteSchedule arrives.
            with db.transaction() as s:
                settled = s.get(store.ActionRow, action_id)
                assert settled is not None
                settled.run_id = "run-1"
                s.flush()
                deleter = threading.Thread(target=delete)
                deleter.start()
                name = url.rsplit("/", 1)[1]
                deadline = time.monotonic() + 20
                while not _blocked_on_a_lock(POSTGRES_URL, name):
                    assert time.monotonic() < deadline, "DeleteSchedule never waited"
                    time.sleep(0.05)
                schedule = s.get(store.ScheduleRow, schedule_id, with_for_update=True)
                assert schedule is not None
                schedule.last_run_id = "run-1"
            deleter.join(timeout=30)
            assert not deleter.is_alive()
            assert errors == []
            with db.read() as s:
                assert (
                    s.scalar(select(store.ScheduleRow).where(store.ScheduleRow.id == schedule_id))
                    is None
                )
                assert s.get(store.ActionRow, action_id) is None
        finally:
            db.dispose()
