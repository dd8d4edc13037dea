"""Per-job statistics over a time window, in SQL over job_runs, job_run_steps, job_executions."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from conveyor.executor.models import ExecutionRow, RunRow, StepRow
from conveyor.kernel.errors import NotFound
from conveyor.kernel.ids import as_utc
from conveyor.translator.store import JobRow

MAX_DURATION_SAMPLES = 100_000
TOP_CATEGORIES = 10


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
    ended = by_state.get("SUCCEEDED", 0) + by_state.get("FAILED", 0)
    return by_state.get("SUCCEEDED", 0) / ended if ended else 0.0


def job_stats(session: Session, job: str, *, window: timedelta, now: datetime) -> JobStats:
    """Compute a job's stats for runs created in [now - window, now]."""
    since = now - window
    of_job = or_(RunRow.job_id == job, RunRow.job_name == job)
    ident = session.execute(
        select(RunRow.job_id, RunRow.job_name).where(of_job).order_by(RunRow.created_at.desc())
    ).first()
    if ident is None:
        row = session.execute(
            select(JobRow.id, JobRow.name).where(or_(JobRow.id == job, JobRow.name == job))
        ).first()
        if row is None:
            raise NotFound(f"job {job!r} not found", metadata={"job_id": job})
        ident = row
    job_id, job_name = str(ident[0]), str(ident[1])
    in_window = (RunRow.job_id == job_id, RunRow.created_at >= since)
    stats = JobStats(job_id=job_id, job_name=job_name, since=since, until=now)
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
