"""Figures over the executor's runs, steps and attempts for RunStatsService: per-job
statistics, KPIs over a window, queue backlogs, alert inputs and metric look-ups.

The SQL stays here, with the tables; the monitor asks for the results over RPC.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from conveyor.executor.engine import RunState, StepState
from conveyor.executor.models import ExecutionRow, RunRow, StepRow
from conveyor.kernel.errors import NotFound
from conveyor.kernel.ids import as_utc

MAX_DURATION_SAMPLES = 100_000
TOP_CATEGORIES = 10
MAX_QUEUES = 100
MAX_ENDED_RUNS = 5000
MAX_RUNNING_STEPS = 1000
MAX_DESCRIBE = 1000
# Run states that count for success rates (CANCELLED runs are neither).
DECIDED = (RunState.SUCCEEDED, RunState.FAILED)


@dataclass
class JobStats:
    """What GetJobStats reports."""

    job_id: str
    job_name: str
    since: datetime
    until: datetime
    runs_by_state: dict[str, int] = field(default_factory=dict)
    success_rate: float = 0.0
    p50_s: float | None = None
    p95_s: float | None = None
    mean_attempts: float = 0.0
    top_categories: list[tuple[str, int]] = field(default_factory=list)

    @property
    def total_runs(self) -> int:
        """Runs created in the window."""
        return sum(self.runs_by_state.values())


def percentile(values: list[float], q: float) -> float | None:
    """The q-quantile (0..1) by linear interpolation between closest ranks; None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def success_rate(by_state: dict[str, int]) -> float:
    """SUCCEEDED / (SUCCEEDED + FAILED); 0 when neither."""
    ended = by_state.get(RunState.SUCCEEDED, 0) + by_state.get(RunState.FAILED, 0)
    return by_state.get(RunState.SUCCEEDED, 0) / ended if ended else 0.0


def job_stats(session: Session, job: str, *, since: datetime, until: datetime) -> JobStats:
    """A job's stats for runs created in [since, until]; NotFound when it has no run at all."""
    of_job = or_(RunRow.job_id == job, RunRow.job_name == job)
    ident = session.execute(
        select(RunRow.job_id, RunRow.job_name).where(of_job).order_by(RunRow.created_at.desc())
    ).first()
    if ident is None:
        raise NotFound(f"job {job!r} has no runs", metadata={"job_id": job}, reason="NO_RUNS")
    job_id, job_name = str(ident[0]), str(ident[1])
    in_window = (RunRow.job_id == job_id, RunRow.created_at >= since, RunRow.created_at <= until)
    stats = JobStats(job_id=job_id, job_name=job_name, since=since, until=until)
    for state, count in session.execute(
        select(RunRow.state, func.count()).where(*in_window).group_by(RunRow.state)
    ):
        stats.runs_by_state[str(state)] = int(count)
    stats.success_rate = success_rate(stats.runs_by_state)
    durations = []
    for started, ended in session.execute(
        select(RunRow.started_at, RunRow.ended_at)
        .where(*in_window, RunRow.started_at.is_not(None), RunRow.ended_at.is_not(None))
        .order_by(RunRow.created_at.desc())
        .limit(MAX_DURATION_SAMPLES)
    ):
        s, e = as_utc(started), as_utc(ended)
        if s is not None and e is not None:
            durations.append(max(0.0, (e - s).total_seconds()))
    stats.p50_s = percentile(durations, 0.5)
    stats.p95_s = percentile(durations, 0.95)
    mean = session.scalar(
        select(func.avg(StepRow.attempt))
        .join(RunRow, RunRow.id == StepRow.run_id)
        .where(*in_window, StepRow.attempt > 0)
    )
    stats.mean_attempts = float(mean or 0.0)
    stats.top_categories = [
        (str(category), int(count))
        for category, count in session.execute(
            select(ExecutionRow.error_category, func.count().label("n"))
            .join(RunRow, RunRow.id == ExecutionRow.run_id)
            .where(*in_window, ExecutionRow.error_category.is_not(None))
            .group_by(ExecutionRow.error_category)
            .order_by(func.count().desc(), ExecutionRow.error_category)
            .limit(TOP_CATEGORIES)
        )
    ]
    return stats


# ---- operating figures over a window (GetKpis)

MAX_KPI_SAMPLES = 100_000
MAX_KPI_JOBS = 100


@dataclass
class KpiBucket:
    """One time bucket's figures."""

    start: datetime
    runs_started: int = 0
    runs_succeeded: int = 0
    runs_failed: int = 0
    waits: list[float] = field(default_factory=list)
    queued_steps: int = 0
    busy_s: float = 0.0


@dataclass
class JobKpi:
    """One job's figures over the window."""

    job_id: str
    job_name: str
    runs: int = 0
    succeeded: int = 0
    failed: int = 0
    durations: list[float] = field(default_factory=list)


@dataclass
class Kpis:
    """What GetKpis reports."""

    since: datetime
    until: datetime
    bucket_s: float
    buckets: list[KpiBucket]
    jobs: list[JobKpi]
    sampled: bool = False


def _index(at: datetime, since: datetime, bucket_s: float, count: int) -> int | None:
    offset = (at - since).total_seconds()
    if offset < 0:
        return None
    return min(int(offset // bucket_s), count - 1)


def _ends_within(lo: datetime, hi: datetime | None, since: datetime, b: float, n: int) -> range:
    """Indexes of the buckets whose end (since + (i + 1) * b) is in [lo, hi)."""
    first = max(0, math.ceil((lo - since).total_seconds() / b) - 1)
    if hi is None:
        return range(first, n)
    last = math.ceil((hi - since).total_seconds() / b) - 2  # end_i < hi
    return range(first, min(n, last + 1))


def kpis(session: Session, *, since: datetime, until: datetime, bucket_s: float) -> Kpis:
    """Runs, durations, queue waits and busy slot-seconds in [since, until], bucketed."""
    count = max(1, math.ceil((until - since).total_seconds() / bucket_s))
    buckets = [KpiBucket(start=since + timedelta(seconds=i * bucket_s)) for i in range(count)]
    result = Kpis(since=since, until=until, bucket_s=bucket_s, buckets=buckets, jobs=[])
    jobs: dict[str, JobKpi] = {}
    runs = session.execute(
        select(
            RunRow.job_id,
            RunRow.job_name,
            RunRow.state,
            RunRow.created_at,
            RunRow.started_at,
            RunRow.ended_at,
        )
        .where(or_(RunRow.created_at >= since, RunRow.ended_at >= since))
        .order_by(RunRow.created_at.desc())
        .limit(MAX_KPI_SAMPLES + 1)
    ).all()
    result.sampled = len(runs) > MAX_KPI_SAMPLES
    for job_id, job_name, state, row_created, row_started, row_ended in runs[:MAX_KPI_SAMPLES]:
        created, started, ended = as_utc(row_created), as_utc(row_started), as_utc(row_ended)
        if ended is not None and ended >= since:
            at = _index(ended, since, bucket_s, count)
            if at is not None and state == RunState.SUCCEEDED:
                buckets[at].runs_succeeded += 1
            elif at is not None and state == RunState.FAILED:
                buckets[at].runs_failed += 1
        if created is None or created < since:
            continue
        at = _index(created, since, bucket_s, count)
        if at is not None:
            buckets[at].runs_started += 1
        job = jobs.setdefault(str(job_id), JobKpi(job_id=str(job_id), job_name=str(job_name)))
        job.runs += 1
        job.succeeded += state == RunState.SUCCEEDED
        job.failed += state == RunState.FAILED
        if started is not None and ended is not None and state in DECIDED:
            job.durations.append(max(0.0, (ended - started).total_seconds()))
    result.jobs = sorted(jobs.values(), key=lambda j: (-j.runs, j.job_name))[:MAX_KPI_JOBS]

    # Attempts: queue wait (the step's queuing of this attempt -> its start) and busy time.
    attempts = session.execute(
        select(ExecutionRow.started_at, ExecutionRow.ended_at, StepRow.queued_at)
        .join(
            StepRow,
            (StepRow.run_id == ExecutionRow.run_id)
            & (StepRow.node_id == ExecutionRow.node_id)
            & (StepRow.attempt == ExecutionRow.attempt),
            isouter=True,
        )
        .where(
            ExecutionRow.started_at.is_not(None),
            ExecutionRow.started_at < until,
            or_(ExecutionRow.ended_at.is_(None), ExecutionRow.ended_at > since),
        )
        .order_by(ExecutionRow.started_at.desc())
        .limit(MAX_KPI_SAMPLES + 1)
    ).all()
    result.sampled = result.sampled or len(attempts) > MAX_KPI_SAMPLES
    ends = [b.start + timedelta(seconds=bucket_s) for b in buckets]
    for row_started, row_ended, row_queued in attempts[:MAX_KPI_SAMPLES]:
        started, queued = as_utc(row_started), as_utc(row_queued)
        ended = as_utc(row_ended) or until
        if started is None:
            continue
        if queued is not None and queued <= started:
            at = _index(started, since, bucket_s, count)
            if at is not None:
                buckets[at].waits.append((started - queued).total_seconds())
            for i in _ends_within(queued, started, since, bucket_s, count):
                buckets[i].queued_steps += 1
        first = _index(max(started, since), since, bucket_s, count) or 0
        for i in range(first, count):
            lo, hi = max(started, buckets[i].start), min(ended, ends[i])
            if hi <= lo:
                if buckets[i].start >= ended:
                    break
                continue
            buckets[i].busy_s += (hi - lo).total_seconds()
    # Steps still queued (not started yet) count in every bucket ending after their queuing.
    for (queued,) in session.execute(
        select(StepRow.queued_at)
        .where(StepRow.state == StepState.QUEUED, StepRow.queued_at.is_not(None))
        .limit(MAX_KPI_SAMPLES)
    ):
        waiting_since = as_utc(queued)
        if waiting_since is None:
            continue
        for i in _ends_within(waiting_since, None, since, bucket_s, count):
            buckets[i].queued_steps += 1
    return result


# ---- queue backlog, alert inputs, metric look-ups


def queue_backlog(session: Session) -> dict[str, tuple[int, datetime | None]]:
    """(QUEUED steps, oldest queued_at) per queue."""
    rows = session.execute(
        select(StepRow.queue, func.count(), func.min(StepRow.queued_at))
        .where(StepRow.state == StepState.QUEUED)
        .group_by(StepRow.queue)
        .order_by(StepRow.queue)
        .limit(MAX_QUEUES)
    ).all()
    return {str(q): (int(n), as_utc(oldest)) for q, n, oldest in rows}


@dataclass(frozen=True)
class EndedRun:
    """A run that ended SUCCEEDED or FAILED."""

    run_id: str
    job_id: str
    job_name: str
    state: RunState
    ended_at: datetime


def ended_runs(session: Session, *, since: datetime, limit: int) -> list[EndedRun]:
    """Runs that ended SUCCEEDED or FAILED at or after `since`, newest first."""
    rows = session.execute(
        select(RunRow.id, RunRow.job_id, RunRow.job_name, RunRow.state, RunRow.ended_at)
        .where(RunRow.state.in_(DECIDED), RunRow.ended_at >= since)
        .order_by(RunRow.ended_at.desc(), RunRow.id.desc())
        .limit(limit)
    )
    result = []
    for run_id, job_id, job_name, state, ended in rows:
        ended_at = as_utc(ended)
        if ended_at is not None:
            result.append(EndedRun(run_id, job_id, job_name, RunState(state), ended_at))
    return result


@dataclass(frozen=True)
class RunningStep:
    """A step running now."""

    run_id: str
    node_id: str
    job_id: str
    job_name: str
    started_at: datetime


def running_steps(session: Session, *, limit: int) -> list[RunningStep]:
    """Steps RUNNING now, the longest running first."""
    rows = session.execute(
        select(StepRow.run_id, StepRow.node_id, RunRow.job_id, RunRow.job_name, StepRow.started_at)
        .join(RunRow, RunRow.id == StepRow.run_id)
        .where(StepRow.state == StepState.RUNNING, StepRow.started_at.is_not(None))
        .order_by(StepRow.started_at)
        .limit(limit)
    )
    result = []
    for run_id, node_id, job_id, job_name, started in rows:
        started_at = as_utc(started)
        if started_at is not None:
            result.append(RunningStep(run_id, node_id, job_id, job_name, started_at))
    return result


@dataclass(frozen=True)
class Description:
    """What `describe` found for a (run, node, attempt) key."""

    key: tuple[str, str, int]
    job_name: str
    node_type: str = ""
    wall_s: float | None = None


def describe(session: Session, keys: Sequence[tuple[str, str, int]]) -> list[Description]:
    """Job names of runs, types of nodes and wall times of ended attempts; unknown keys are
    left out. A key is (run, "", 0) for a run, (run, node, 0) for a node."""
    run_ids = sorted({k[0] for k in keys})
    jobs = dict(
        session.execute(select(RunRow.id, RunRow.job_name).where(RunRow.id.in_(run_ids))).all()
    )
    node_keys = {(k[0], k[1]) for k in keys if k[1]}
    types: dict[tuple[str, str], str] = {}
    walls: dict[tuple[str, str, int], float] = {}
    if node_keys:
        for run_id, node_id, node_type in session.execute(
            select(StepRow.run_id, StepRow.node_id, StepRow.node_type).where(
                StepRow.run_id.in_(run_ids), StepRow.node_id.in_(sorted({k[1] for k in node_keys}))
            )
        ):
            types[(run_id, node_id)] = str(node_type or "")
    attempt_keys = {k for k in keys if k[1] and k[2] > 0}
    if attempt_keys:
        for run_id, node_id, attempt, wall, started, ended in session.execute(
            select(
                ExecutionRow.run_id,
                ExecutionRow.node_id,
                ExecutionRow.attempt,
                ExecutionRow.wall_s,
                ExecutionRow.started_at,
                ExecutionRow.ended_at,
            ).where(
                ExecutionRow.run_id.in_(run_ids),
                ExecutionRow.node_id.in_(sorted({k[1] for k in attempt_keys})),
            )
        ):
            key = (run_id, node_id, int(attempt))
            if key not in attempt_keys:
                continue
            seconds = _wall(wall, started, ended)
            if seconds is not None:
                walls[key] = seconds
    found = []
    for run_id, node_id, attempt in keys:
        if run_id not in jobs or (node_id and (run_id, node_id) not in types):
            continue
        key = (run_id, node_id, attempt)
        node_type = types.get((run_id, node_id), "")
        found.append(Description(key, str(jobs[run_id]), node_type, walls.get(key)))
    return found


def _wall(wall: float | None, started: datetime | None, ended: datetime | None) -> float | None:
    if wall is not None:
        return float(wall)
    s, e = as_utc(started), as_utc(ended)
    if s is None or e is None:
        return None
    return max(0.0, (e - s).total_seconds())
