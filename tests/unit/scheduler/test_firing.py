"""The firing loop against its store (SQLite file) and a fake executor, driven by a fake clock."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from conveyor.kernel.db import Database
from conveyor.kernel.errors import NotFound
from conveyor.kernel.migrate import upgrade
from conveyor.scheduler import store
from conveyor.scheduler.domain import Spec
from conveyor.scheduler.firing import Firing, RunInfo
from conveyor.scheduler.policies import CatchupMode, Outcome, Overlap

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class FakeExecutor:
    """Runs keyed by request_id, like the real StartRun; states are set by the test."""

    runs: dict[str, RunInfo] = field(default_factory=dict)
    by_request: dict[str, str] = field(default_factory=dict)
    starts: int = 0
    cancelled: list[str] = field(default_factory=list)
    missing_job: bool = False

    async def start_run(
        self, *, job_id: str, parameters: dict[str, Any], request_id: str
    ) -> RunInfo:
        self.starts += 1
        if self.missing_job:
            raise NotFound(f"job {job_id!r} not found")
        if request_id not in self.by_request:
            run_id = f"run{len(self.runs) + 1}"
            self.runs[run_id] = RunInfo(run_id, "PENDING")
            self.by_request[request_id] = run_id
        return self.runs[self.by_request[request_id]]

    async def get_run(self, run_id: str) -> RunInfo | None:
        return self.runs.get(run_id)

    async def cancel_run(self, run_id: str, reason: str) -> None:
        self.cancelled.append(run_id)
        self.finish(run_id, "CANCELLED")

    def finish(self, run_id: str, state: str, first: datetime | None = None) -> None:
        self.runs[run_id] = RunInfo(run_id, state, first)


@pytest.fixture
def db(tmp_path: Path) -> Any:
    database = Database(f"sqlite:///{tmp_path / 'sched.db'}")
    upgrade(database)
    yield database
    database.dispose()


def make(db: Database, clock: Clock, **kw: Any) -> str:
    options: dict[str, Any] = {
        "job_id": "job1",
        "description": "",
        "spec": Spec(kind="cron", cron="* * * * *"),
        "parameters": {},
        "overlap": Overlap.ALLOW_ALL,
        "catchup_window_s": 60.0,
        "catchup_mode": CatchupMode.COALESCE,
        "pause_after_failures": 0,
        "paused": False,
        "request_id": None,
        "now": clock(),
    }
    options.update(kw)
    with db.transaction() as session:
        return store.new_schedule(session, **options).id


def actions(db: Database, sid: str) -> list[tuple[str, str, str | None]]:
    with db.transaction() as session:
        rows = session.scalars(
            select(store.ActionRow)
            .where(store.ActionRow.schedule_id == sid)
            .order_by(store.ActionRow.nominal_time)
        )
        return [(r.nominal_time.strftime("%H:%M:%S"), r.outcome, r.run_id) for r in rows]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_on_time_fires_start_one_run_each_and_sleep_until_next(db: Database) -> None:
    clock, ex = Clock(), FakeExecutor()
    firing = Firing(db=db, executor=ex, clock=clock)
    sid = make(db, clock)
    assert run(firing.fire_once()) == 1.0  # nothing due; next fire is 60 s away (capped)
    clock.advance(60)
    run(firing.fire_once())
    clock.advance(0.5)
    run(firing.fire_once())  # nothing new: the same minute never fires twice
    assert actions(db, sid) == [("12:01:00", "STARTED", "run1")]
    clock.advance(59.6)
    run(firing.fire_once())
    assert [a[1] for a in actions(db, sid)] == ["STARTED", "STARTED"]
    assert ex.starts == 2


def test_downtime_beyond_window_is_missed_and_window_is_coalesced(db: Database) -> None:
    clock, ex = Clock(), FakeExecutor()
    firing = Firing(db=db, executor=ex, clock=clock)
    sid = make(db, clock, catchup_window_s=150.0)
    clock.advance(5 * 60 + 1)  # fires at 12:01..12:05 are due; window 150 s
    run(firing.fire_once())
    assert actions(db, sid) == [
        ("12:01:00", "MISSED", None),
        ("12:02:00", "MISSED", None),
        ("12:03:00", "COALESCED", None),
        ("12:04:00", "COALESCED", None),
        ("12:05:00", "STARTED", "run1"),
    ]


def test_catchup_all_runs_each_fire_in_window(db: Database) -> None:
    clock, ex = Clock(), FakeExecutor()
    firing = Firing(db=db, executor=ex, clock=clock)
    sid = make(db, clock, catchup_window_s=150.0, catchup_mode=CatchupMode.ALL)
    clock.advance(5 * 60 + 1)
    run(firing.fire_once())
    assert [a[1] for a in actions(db, sid)] == ["MISSED", "MISSED", "STARTED", "STARTED", "STARTED"]
    assert len(ex.runs) == 3


def test_skip_policy_skips_while_previous_runs(db: Database) -> None:
    clock, ex = Clock(), FakeExecutor()
    firing = Firing(db=db, executor=ex, clock=clock)
    sid = make(db, clock, overlap=Overlap.SKIP)
    clock.advance(60)
    run(firing.fire_once())
    clock.advance(60)
    run(firing.fire_once())
    ex.finish("run1", "SUCCEEDED")
    clock.advance(60)
    run(firing.fire_once())
    assert [(a[1], a[2]) for a in actions(db, sid)] == [
        ("STARTED", "run1"),
        ("SKIPPED", None),
        ("STARTED", "run2"),
    ]


def test_buffer_one_waits_then_starts_when_previous_ends(db: Database) -> None:
    clock, ex = Clock(), FakeExecutor()
    firing = Firing(db=db, executor=ex, clock=clock)
    sid = make(db, clock, overlap=Overlap.BUFFER_ONE)
    for _ in range(3):
        clock.advance(60)
        run(firing.fire_once())
    assert [a[1] for a in actions(db, sid)] == ["STARTED", "BUFFERED", "SKIPPED"]
    run(firing.maintain_once())
    assert [a[1] for a in actions(db, sid)] == ["STARTED", "BUFFERED", "SKIPPED"]
    ex.finish("run1", "SUCCEEDED")
    run(firing.maintain_once())
    assert [(a[1], a[2]) for a in actions(db, sid)] == [
        ("STARTED", "run1"),
        ("STARTED", "run2"),
        ("SKIPPED", None),
    ]


def test_buffer_all_starts_waiting_fires_one_after_another(db: Database) -> None:
    clock, ex = Clock(), FakeExecutor()
    firing = Firing(db=db, executor=ex, clock=clock)
    sid = make(db, clock, overlap=Overlap.BUFFER_ALL)
    for _ in range(3):
        clock.advance(60)
        run(firing.fire_once())
    assert [a[1] for a in actions(db, sid)] == ["STARTED", "BUFFERED", "BUFFERED"]
    ex.finish("run1", "FAILED")
    run(firing.maintain_once())
    assert [a[1] for a in actions(db, sid)] == ["STARTED", "STARTED", "BUFFERED"]
    run(firing.maintain_once())  # run2 still going: the third waits
    assert [a[1] for a in actions(db, sid)] == ["STARTED", "STARTED", "BUFFERED"]
    ex.finish("run2", "SUCCEEDED")
    run(firing.maintain_once())
    assert [a[1] for a in actions(db, sid)] == ["STARTED", "STARTED", "STARTED"]


def test_cancel_other_cancels_the_running_run(db: Database) -> None:
    clock, ex = Clock(), FakeExecutor()
    firing = Firing(db=db, executor=ex, clock=clock)
    sid = make(db, clock, overlap=Overlap.CANCEL_OTHER)
    clock.advance(60)
    run(firing.fire_once())
    clock.advance(60)
    run(firing.fire_once())
    assert ex.cancelled == ["run1"]
    assert [(a[1], a[2]) for a in actions(db, sid)] == [("STARTED", "run1"), ("STARTED", "run2")]


def test_allow_all_starts_while_previous_runs(db: Database) -> None:
    clock, ex = Clock(), FakeExecutor()
    firing = Firing(db=db, executor=ex, clock=clock)
    sid = make(db, clock, overlap=Overlap.ALLOW_ALL)
    for _ in range(2):
        clock.advance(60)
        run(firing.fire_once())
    assert [a[2] for a in actions(db, sid)] == ["run1", "run2"]
    assert ex.cancelled == []


def test_expired_lease_is_taken_over_without_a_second_run(db: Database) -> None:
    clock, ex = Clock(), FakeExecutor()
    sid = make(db, clock)
    clock.advance(60)
    # A scheduler claims the fire and calls StartRun, then dies before recording the outcome.
    with db.transaction() as session:
        (fire,) = store.claim_due(session, now=clock(), lease_s=10, limit=10).fires
    run(ex.start_run(job_id="job1", parameters={}, request_id=fire.request_id))
    survivor = Firing(db=db, executor=ex, clock=clock)
    run(survivor.maintain_once())
    assert actions(db, sid)[0][1] == "PENDING"  # lease still valid
    clock.advance(11)
    run(survivor.maintain_once())
    assert actions(db, sid) == [("12:01:00", "STARTED", "run1")]
    assert len(ex.runs) == 1 and ex.starts == 2


def test_missing_job_is_recorded_as_error(db: Database) -> None:
    clock, ex = Clock(), FakeExecutor(missing_job=True)
    firing = Firing(db=db, executor=ex, clock=clock)
    sid = make(db, clock)
    clock.advance(60)
    run(firing.fire_once())
    assert actions(db, sid)[0][1] == Outcome.ERROR.value


def test_lag_is_recorded_and_failures_pause_the_schedule(db: Database) -> None:
    clock, ex = Clock(), FakeExecutor()
    firing = Firing(db=db, executor=ex, clock=clock)
    sid = make(db, clock, pause_after_failures=2)
    for i in range(2):
        clock.advance(60)
        run(firing.fire_once())
        run_id = f"run{i + 1}"
        ex.finish(run_id, "FAILED", first=clock() + timedelta(milliseconds=40))
        run(firing.maintain_once())
    with db.transaction() as session:
        row = store.get_schedule(session, sid)
        lags = [a.lag_s for a in session.scalars(select(store.ActionRow))]
        assert row.paused and row.consecutive_failures == 2
        assert "2 consecutive failed runs" in row.note
    assert lags == [pytest.approx(0.04), pytest.approx(0.04)]
    clock.advance(120)
    run(firing.fire_once())  # paused: nothing fires
    assert len(actions(db, sid)) == 2


def test_jitter_delays_the_due_time_not_the_nominal_time(db: Database) -> None:
    clock, ex = Clock(), FakeExecutor()
    firing = Firing(db=db, executor=ex, clock=clock)
    sid = make(db, clock, spec=Spec(kind="cron", cron="* * * * *", jitter_s=30))
    with db.transaction() as session:
        row = store.get_schedule(session, sid)
        delay = row.next_due_at.replace(tzinfo=UTC) - row.next_run_at.replace(tzinfo=UTC)
    assert timedelta(0) <= delay < timedelta(seconds=30)
    clock.advance(60 + delay.total_seconds() - 0.001)
    run(firing.fire_once())
    assert actions(db, sid) == [] or delay == timedelta(0)
    clock.advance(0.002)
    run(firing.fire_once())
    assert actions(db, sid)[0][0] == "12:01:00"


def test_two_instances_decide_overlap_one_fire_after_another(db: Database) -> None:
    clock, ex = Clock(), FakeExecutor()
    sid = make(db, clock, overlap=Overlap.SKIP)
    clock.advance(60)
    with db.transaction() as session:  # instance A claims 12:01 and is still starting its run
        (fire_a,) = store.claim_due(session, now=clock(), lease_s=120, limit=10).fires
    clock.advance(60)
    b = Firing(db=db, executor=ex, clock=clock)
    assert run(b.fire_once()) > 0  # B defers 12:02 instead of deciding without A's run
    assert [a[1] for a in actions(db, sid)] == ["PENDING"]
    a = Firing(db=db, executor=ex, clock=clock)
    run(a.carry_out(fire_a))
    run(b.fire_once())
    assert [(x[1], x[2]) for x in actions(db, sid)] == [("STARTED", "run1"), ("SKIPPED", None)]


def test_long_outage_records_some_missed_fires_then_jumps_to_the_window(db: Database) -> None:
    clock, ex = Clock(), FakeExecutor()
    firing = Firing(db=db, executor=ex, clock=clock)
    sid = make(db, clock, spec=Spec(kind="cron", cron="* * * * * *"), catchup_window_s=10.0)
    clock.advance(3600)  # an hour down: 3600 fires due, 10 of them inside the window
    run(firing.fire_once())
    run(firing.fire_once())
    got = actions(db, sid)
    missed = [a for a in got if a[1] == "MISSED"]
    assert len(missed) == store.MAX_FIRES_PER_CLAIM
    assert [a[1] for a in got[len(missed) :]] == ["COALESCED"] * 9 + ["STARTED"]
    assert got[-1][0] == "13:00:00"
    with db.transaction() as session:
        row = session.scalar(
            select(store.ActionRow)
            .where(store.ActionRow.outcome == "MISSED")
            .order_by(store.ActionRow.nominal_time.desc())
        )
        assert row is not None and "not recorded one by one" in row.message
