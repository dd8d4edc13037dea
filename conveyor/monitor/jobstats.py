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
            if at is not None and state == "SUCCEEDED":
                buckets[at].runs_succeeded += 1
            elif at is not None and state == "FAILED":
                buckets[at].runs_failed += 1
        if created is None or created < since:
            continue
        at = _index(created, since, bucket_s, count)
        if at is not None:
            buckets[at].runs_started += 1
        job = jobs.setdefault(str(job_id), JobKpi(job_id=str(job_id), job_name=str(job_name)))
        job.runs += 1
        job.succeeded += state == "SUCCEEDED"
        job.failed += state == "FAILED"
        if started is not None and ended is not None and state in ("SUCCEEDED", "FAILED"):
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
        .where(StepRow.state == "QUEUED", StepRow.queued_at.is_not(None))
        .limit(MAX_KPI_SAMPLES)
    ):
        waiting_since = as_utc(queued)
        if waiting_since is None:
            continue
        for i in _ends_within(waiting_since, None, since, bucket_s, count):
            buckets[i].queued_steps += 1
    return result
