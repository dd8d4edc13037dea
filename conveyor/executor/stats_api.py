"""RunStatsService: the figures the monitor shows about runs, computed where the runs are.

Every call only reads, in a read session (no write lock on SQLite), in a thread.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import grpc

from conveyor.executor import stats
from conveyor.executor.convert import category, run_state
from conveyor.executor.v1 import stats_service_pb2, stats_service_pb2_grpc
from conveyor.kernel.db import Database
from conveyor.kernel.errors import InvalidArgument, Violation
from conveyor.kernel.grpcserver import ServiceRegistration, map_errors
from conveyor.kernel.protoconv import duration, timestamp

SERVICE_NAME = stats_service_pb2.DESCRIPTOR.services_by_name["RunStatsService"].full_name
MAX_JOB_REF = 200
MAX_BUCKETS = 1000
MIN_BUCKET = timedelta(seconds=1)
T = TypeVar("T")


def _time(request: Any, name: str, violations: list[Violation]) -> datetime:
    if not request.HasField(name):
        violations.append(Violation(name, "required", "REQUIRED"))
        return datetime.fromtimestamp(0, UTC)
    value: datetime = getattr(request, name).ToDatetime().replace(tzinfo=UTC)
    return value


def _window(request: Any, violations: list[Violation]) -> tuple[datetime, datetime]:
    since = _time(request, "window_start_time", violations)
    until = _time(request, "window_end_time", violations)
    if not violations and until < since:
        violations.append(Violation("window_end_time", "before window_start_time", "OUT_OF_RANGE"))
    return since, until


def _page_size(value: int, maximum: int, violations: list[Violation]) -> int:
    if not 0 <= value <= maximum:
        violations.append(Violation("page_size", f"between 0 and {maximum}", "OUT_OF_RANGE"))
    return value or maximum


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


class RunStatsServicer(stats_service_pb2_grpc.RunStatsServiceServicer):  # type: ignore[misc]
    """See the proto."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def _read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        def work() -> T:
            with self._db.read() as session:
                return fn(session, *args, **kwargs)

        return await asyncio.to_thread(work)

    @map_errors
    async def GetJobRunStats(  # noqa: N802
        self,
        request: stats_service_pb2.GetJobRunStatsRequest,
        context: grpc.aio.ServicerContext[Any, Any] | None,
    ) -> stats_service_pb2.GetJobRunStatsResponse:
        """See the proto."""
        bad: list[Violation] = []
        if not request.job or len(request.job) > MAX_JOB_REF:
            bad.append(
                Violation("job", f"a job id or name, 1-{MAX_JOB_REF} characters", "REQUIRED")
            )
        since, until = _window(request, bad)
        if bad:
            raise InvalidArgument("invalid job stats request", violations=bad)
        s: stats.JobStats = await self._read(stats.job_stats, request.job, since=since, until=until)
        return stats_service_pb2.GetJobRunStatsResponse(
            job_id=s.job_id,
            job_name=s.job_name,
            runs_by_state=[
                stats_service_pb2.RunStateTally(state=run_state(state), count=n)
                for state, n in sorted(s.runs_by_state.items())
            ],
            success_rate=s.success_rate,
            p50_duration=duration(s.p50_s),
            p95_duration=duration(s.p95_s),
            mean_attempts=s.mean_attempts,
            top_error_categories=[
                stats_service_pb2.ErrorCategoryTally(category=category(c), count=n)
                for c, n in s.top_categories
            ],
        )

    @map_errors
    async def GetRunKpis(  # noqa: N802
        self,
        request: stats_service_pb2.GetRunKpisRequest,
        context: grpc.aio.ServicerContext[Any, Any] | None,
    ) -> stats_service_pb2.GetRunKpisResponse:
        """See the proto."""
        bad: list[Violation] = []
        since, until = _window(request, bad)
        bucket = request.bucket.ToTimedelta() if request.HasField("bucket") else timedelta(0)
        if bucket < MIN_BUCKET:
            bad.append(Violation("bucket", "at least one second", "OUT_OF_RANGE"))
        elif not bad and math.ceil((until - since) / bucket) > MAX_BUCKETS:
            bad.append(Violation("bucket", f"at most {MAX_BUCKETS} buckets", "TOO_MANY"))
        if bad:
            raise InvalidArgument("invalid KPI request", violations=bad)
        k: stats.Kpis = await self._read(
            stats.kpis, since=since, until=until, bucket_s=bucket.total_seconds()
        )
        return stats_service_pb2.GetRunKpisResponse(
            sampled=k.sampled,
            buckets=[
                stats_service_pb2.RunKpiBucket(
                    start_time=timestamp(b.start),
                    runs_started=b.runs_started,
                    runs_succeeded=b.runs_succeeded,
                    runs_failed=b.runs_failed,
                    mean_queue_wait=duration(_mean(b.waits)),
                    p95_queue_wait=duration(stats.percentile(b.waits, 0.95)),
                    queued_steps=b.queued_steps,
                    busy_slot_seconds=b.busy_s,
                )
                for b in k.buckets
            ],
            jobs=[
                stats_service_pb2.JobRunKpi(
                    job_id=j.job_id,
                    job_name=j.job_name,
                    runs=j.runs,
                    succeeded=j.succeeded,
                    failed=j.failed,
                    success_rate=j.succeeded / (j.succeeded + j.failed)
                    if j.succeeded + j.failed
                    else 0.0,
                    mean_duration=duration(_mean(j.durations)),
                    p95_duration=duration(stats.percentile(j.durations, 0.95)),
                )
                for j in k.jobs
            ],
        )

    @map_errors
    async def GetQueueBacklog(  # noqa: N802
        self,
        request: stats_service_pb2.GetQueueBacklogRequest,
        context: grpc.aio.ServicerContext[Any, Any] | None,
    ) -> stats_service_pb2.GetQueueBacklogResponse:
        """See the proto."""
        backlog = await self._read(stats.queue_backlog)
        return stats_service_pb2.GetQueueBacklogResponse(
            queues=[
                stats_service_pb2.QueueBacklog(
                    queue=queue, queued_steps=count, oldest_queue_time=timestamp(oldest)
                )
                for queue, (count, oldest) in sorted(backlog.items())
            ]
        )

    @map_errors
    async def ListEndedRuns(  # noqa: N802
        self,
        request: stats_service_pb2.ListEndedRunsRequest,
        context: grpc.aio.ServicerContext[Any, Any] | None,
    ) -> stats_service_pb2.ListEndedRunsResponse:
        """See the proto."""
        bad: list[Violation] = []
        since = _time(request, "end_time_from", bad)
        limit = _page_size(request.page_size, stats.MAX_ENDED_RUNS, bad)
        if bad:
            raise InvalidArgument("invalid ListEndedRuns request", violations=bad)
        found = await self._read(stats.ended_runs, since=since, limit=limit)
        return stats_service_pb2.ListEndedRunsResponse(
            runs=[
                stats_service_pb2.EndedRun(
                    run_id=r.run_id,
                    job_id=r.job_id,
                    job_name=r.job_name,
                    state=run_state(r.state),
                    end_time=timestamp(r.ended_at),
                )
                for r in found
            ]
        )

    @map_errors
    async def ListRunningSteps(  # noqa: N802
        self,
        request: stats_service_pb2.ListRunningStepsRequest,
        context: grpc.aio.ServicerContext[Any, Any] | None,
    ) -> stats_service_pb2.ListRunningStepsResponse:
        """See the proto."""
        bad: list[Violation] = []
        limit = _page_size(request.page_size, stats.MAX_RUNNING_STEPS, bad)
        if bad:
            raise InvalidArgument("invalid ListRunningSteps request", violations=bad)
        found = await self._read(stats.running_steps, limit=limit)
        return stats_service_pb2.ListRunningStepsResponse(
            steps=[
                stats_service_pb2.RunningStep(
                    run_id=s.run_id,
                    node_id=s.node_id,
                    job_id=s.job_id,
                    job_name=s.job_name,
                    start_time=timestamp(s.started_at),
                )
                for s in found
            ]
        )

    @map_errors
    async def DescribeAttempts(  # noqa: N802
        self,
        request: stats_service_pb2.DescribeAttemptsRequest,
        context: grpc.aio.ServicerContext[Any, Any] | None,
    ) -> stats_service_pb2.DescribeAttemptsResponse:
        """See the proto."""
        if len(request.keys) > stats.MAX_DESCRIBE:
            raise InvalidArgument(
                f"at most {stats.MAX_DESCRIBE} keys",
                violations=[Violation("keys", "too many", "TOO_MANY")],
            )
        keys = [(k.run_id, k.node_id, k.attempt) for k in request.keys]
        found = await self._read(stats.describe, keys) if keys else []
        return stats_service_pb2.DescribeAttemptsResponse(
            descriptions=[
                stats_service_pb2.AttemptDescription(
                    key=stats_service_pb2.AttemptKey(
                        run_id=d.key[0], node_id=d.key[1], attempt=d.key[2]
                    ),
                    job_name=d.job_name,
                    node_type=d.node_type,
                    wall=duration(d.wall_s),
                )
                for d in found
            ]
        )


def registration(db: Database) -> ServiceRegistration:
    """The run statistics service for `start_server` (served by the executor process)."""
    servicer = RunStatsServicer(db)
    return ServiceRegistration(
        SERVICE_NAME,
        lambda server: stats_service_pb2_grpc.add_RunStatsServiceServicer_to_server(
            servicer, server
        ),
    )
