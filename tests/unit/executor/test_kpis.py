"""The executor's run figures (GetRunKpis, GetJobRunStats and the alert and metric look-ups)
over a small, hand-made history in SQLite."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import timestamp_pb2

from conveyor.executor import stats
from conveyor.executor.models import ExecutionRow, RunRow, StepRow
from conveyor.executor.stats_api import RunStatsServicer
from conveyor.executor.v1 import run_pb2, stats_service_pb2
from conveyor.kernel.db import Base, Database
from conveyor.kernel.errors import InvalidArgument, NotFound

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def _run(run_id: str, job: str, state: str, created: datetime, ran_s: float | None) -> RunRow:
    started = created + timedelta(seconds=1)
    return RunRow(
        id=run_id,
        job_id=f"id-{job}",
        job_name=job,
        job_version=1,
        state=state,
        trigger="MANUAL",
        parameters={},
        plan_data={},
        created_at=created,
        started_at=started,
        ended_at=started + timedelta(seconds=ran_s) if ran_s is not None else None,
    )


def _attempt(run_id: str, node: str, queued: datetime, wait_s: float, ran_s: float) -> list[Any]:
    started = queued + timedelta(seconds=wait_s)
    step = StepRow(
        run_id=run_id,
        node_id=node,
        node_type="action.command",
        position=0,
        state="SUCCEEDED",
        attempt=1,
        queued_at=queued,
        started_at=started,
    )
    execution = ExecutionRow(
        run_id=run_id,
        node_id=node,
        attempt=1,
        state="SUCCEEDED",
        started_at=started,
        ended_at=started + timedelta(seconds=ran_s),
    )
    return [step, execution]


@pytest.fixture
def db(tmp_path: Path) -> Any:
    database = Database(f"sqlite:///{tmp_path / 'k.db'}")
    Base.metadata.create_all(database.engine)
    t0 = NOW - 3 * HOUR  # three one-hour buckets: [t0, t0+1h), [t0+1h, t0+2h), [t0+2h, now)
    rows: list[Any] = [
        _run("r1", "a", "SUCCEEDED", t0 + timedelta(minutes=10), 60),
        _run("r2", "a", "FAILED", t0 + timedelta(minutes=20), 120),
        _run("r3", "b", "SUCCEEDED", t0 + HOUR + timedelta(minutes=5), 30),
        _run("r4", "b", "RUNNING", t0 + 2 * HOUR + timedelta(minutes=1), None),
        _run("old", "a", "SUCCEEDED", t0 - 5 * HOUR, 10),  # before the window: not counted
    ]
    database_rows: list[Any] = []
    database_rows += _attempt("r1", "n", t0 + timedelta(minutes=10), 4, 60)
    # Queued before the end of bucket 0, started in bucket 1: bucket 0 ends with it queued.
    database_rows += _attempt("r3", "n", t0 + timedelta(minutes=59), 600, 1800)
    with database.transaction() as session:
        session.add_all(rows)
        session.flush()
        session.add_all(database_rows)
    yield database
    database.dispose()


def test_buckets_count_runs_waits_queued_steps_and_busy_time(db: Database) -> None:
    with db.read() as session:
        k = stats.kpis(session, since=NOW - 3 * HOUR, until=NOW, bucket_s=3600)
    assert [b.runs_started for b in k.buckets] == [2, 1, 1]
    assert [(b.runs_succeeded, b.runs_failed) for b in k.buckets] == [(1, 1), (1, 0), (0, 0)]
    assert k.buckets[0].waits == [4.0]
    assert k.buckets[1].waits == [600.0]
    assert [b.queued_steps for b in k.buckets] == [1, 0, 0]
    # r1 ran 60 s in bucket 0; r3 ran from 01:09 for 30 min, all in bucket 1.
    assert k.buckets[0].busy_s == pytest.approx(60)
    assert k.buckets[1].busy_s == pytest.approx(1800)
    assert k.buckets[2].busy_s == 0
    a, b = k.jobs
    assert (a.job_name, a.runs, a.succeeded, a.failed) == ("a", 2, 1, 1)
    assert sorted(a.durations) == [60.0, 120.0]
    assert (b.job_name, b.runs, b.succeeded, b.durations) == ("b", 2, 1, [30.0])
    assert not k.sampled


def test_an_attempt_spanning_buckets_is_split_between_them(db: Database) -> None:
    with db.read() as session:
        k = stats.kpis(session, since=NOW - 3 * HOUR, until=NOW, bucket_s=1800)
    # r3's attempt: 01:09 -> 01:39 after t0, i.e. 21 min in bucket 2 and 9 min in bucket 3.
    assert k.buckets[2].busy_s == pytest.approx(21 * 60)
    assert k.buckets[3].busy_s == pytest.approx(9 * 60)


def test_percentile_interpolates() -> None:
    assert stats.percentile([], 0.5) is None
    assert stats.percentile([3.0], 0.95) == 3.0
    assert stats.percentile([4.0, 1.0, 3.0, 2.0], 0.5) == 2.5
    assert stats.percentile([float(i) for i in range(1, 101)], 0.95) == 95.05


def test_success_rate_counts_only_ended_runs() -> None:
    assert stats.success_rate({}) == 0.0
    assert stats.success_rate({"SUCCEEDED": 3, "FAILED": 1, "RUNNING": 10, "CANCELLED": 2}) == 0.75


def test_job_stats_count_the_window_and_need_a_run(db: Database) -> None:
    with db.read() as session:
        s = stats.job_stats(session, "a", since=NOW - 3 * HOUR, until=NOW)
        by_id = stats.job_stats(session, "id-b", since=NOW - 3 * HOUR, until=NOW)
        with pytest.raises(NotFound):
            stats.job_stats(session, "never-ran", since=NOW - 3 * HOUR, until=NOW)
    assert (s.job_id, s.job_name) == ("id-a", "a")
    assert s.runs_by_state == {"SUCCEEDED": 1, "FAILED": 1}  # "old" is before the window
    assert s.success_rate == 0.5
    assert (s.p50_s, s.p95_s) == (90.0, pytest.approx(117.0))
    assert s.mean_attempts == 1.0
    assert by_id.runs_by_state == {"SUCCEEDED": 1, "RUNNING": 1}


def test_alert_inputs_backlog_and_descriptions(db: Database) -> None:
    t0 = NOW - 3 * HOUR
    with db.transaction() as session:
        for node, state, queue in (("q1", "QUEUED", "fast"), ("q2", "QUEUED", "fast")):
            session.add(
                StepRow(
                    run_id="r4",
                    node_id=node,
                    node_type="action.command",
                    position=1,
                    state=state,
                    attempt=1,
                    queue=queue,
                    queued_at=t0 + timedelta(minutes=int(node[1])),
                )
            )
        session.add(
            StepRow(
                run_id="r4",
                node_id="busy",
                node_type="action.sleep",
                position=2,
                state="RUNNING",
                attempt=1,
                queued_at=t0,
                started_at=t0 + HOUR,
            )
        )
    with db.read() as session:
        backlog = stats.queue_backlog(session)
        ended = stats.ended_runs(session, since=NOW - 3 * HOUR, limit=10)
        running = stats.running_steps(session, limit=10)
        described = stats.describe(
            session, [("r1", "", 0), ("r1", "n", 1), ("r4", "busy", 0), ("gone", "", 0)]
        )
    assert backlog == {"fast": (2, t0 + timedelta(minutes=1))}
    assert [(r.run_id, r.state) for r in ended] == [
        ("r3", "SUCCEEDED"),
        ("r2", "FAILED"),
        ("r1", "SUCCEEDED"),
    ]
    assert [(s.run_id, s.node_id, s.job_name) for s in running] == [("r4", "busy", "b")]
    assert [(d.key, d.job_name, d.node_type, d.wall_s) for d in described] == [
        (("r1", "", 0), "a", "", None),
        (("r1", "n", 1), "a", "action.command", 60.0),
        (("r4", "busy", 0), "b", "action.sleep", None),
    ]


def _stamp(at: datetime) -> Any:
    value = timestamp_pb2.Timestamp()
    value.FromDatetime(at)
    return value


def test_the_service_answers_in_contract_terms(db: Database) -> None:
    servicer = RunStatsServicer(db)
    window = {"window_start_time": _stamp(NOW - 3 * HOUR), "window_end_time": _stamp(NOW)}

    async def go() -> tuple[Any, Any, Any]:
        job = await servicer.GetJobRunStats(
            stats_service_pb2.GetJobRunStatsRequest(job="a", **window), None
        )
        request = stats_service_pb2.GetRunKpisRequest(**window)
        request.bucket.FromTimedelta(HOUR)
        kpis = await servicer.GetRunKpis(request, None)
        ended = await servicer.ListEndedRuns(
            stats_service_pb2.ListEndedRunsRequest(end_time_from=_stamp(NOW - 3 * HOUR)), None
        )
        return job, kpis, ended

    job, kpis, ended = asyncio.run(go())
    assert [(t.state, t.count) for t in job.runs_by_state] == [
        (run_pb2.RUN_STATE_FAILED, 1),
        (run_pb2.RUN_STATE_SUCCEEDED, 1),
    ]
    assert job.p50_duration.ToTimedelta() == timedelta(seconds=90)
    assert [b.runs_started for b in kpis.buckets] == [2, 1, 1]
    assert kpis.buckets[0].mean_queue_wait.ToTimedelta() == timedelta(seconds=4)
    assert not kpis.buckets[2].HasField("mean_queue_wait")
    assert [(j.job_name, j.success_rate) for j in kpis.jobs] == [("a", 0.5), ("b", 1.0)]
    assert [r.state for r in ended.runs] == [
        run_pb2.RUN_STATE_SUCCEEDED,
        run_pb2.RUN_STATE_FAILED,
        run_pb2.RUN_STATE_SUCCEEDED,
    ]


@pytest.mark.parametrize(
    ("call", "request_", "field"),
    [
        ("GetJobRunStats", stats_service_pb2.GetJobRunStatsRequest(job="a"), "window_start_time"),
        ("GetJobRunStats", stats_service_pb2.GetJobRunStatsRequest(), "job"),
        ("GetRunKpis", stats_service_pb2.GetRunKpisRequest(), "window_start_time"),
        ("ListEndedRuns", stats_service_pb2.ListEndedRunsRequest(page_size=5001), "page_size"),
        ("ListRunningSteps", stats_service_pb2.ListRunningStepsRequest(page_size=-1), "page_size"),
        (
            "DescribeAttempts",
            stats_service_pb2.DescribeAttemptsRequest(
                keys=[stats_service_pb2.AttemptKey(run_id="r1")] * 1001
            ),
            "keys",
        ),
    ],
)
def test_the_service_refuses_bad_requests(
    db: Database, call: str, request_: Any, field: str
) -> None:
    servicer = RunStatsServicer(db)
    with pytest.raises(InvalidArgument) as refused:
        asyncio.run(getattr(servicer, call)(request_, None))
    assert field in [v.field for v in refused.value.violations]


def test_a_job_without_runs_is_not_found(db: Database) -> None:
    servicer = RunStatsServicer(db)
    request = stats_service_pb2.GetJobRunStatsRequest(
        job="never-ran", window_start_time=_stamp(NOW - HOUR), window_end_time=_stamp(NOW)
    )
    with pytest.raises(NotFound):
        asyncio.run(servicer.GetJobRunStats(request, None))
