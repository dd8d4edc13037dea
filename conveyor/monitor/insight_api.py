"""InsightService: queue figures, workers and per-job statistics."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc

from conveyor.executor.convert import run_state
from conveyor.executor.v1 import run_pb2
from conveyor.kernel import paging
from conveyor.kernel.db import Database
from conveyor.kernel.errors import InvalidArgument, Violation
from conveyor.kernel.grpcserver import ServiceRegistration, map_errors
from conveyor.kernel.ids import utcnow
from conveyor.kernel.protoconv import duration, timestamp
from conveyor.monitor import jobstats, queues
from conveyor.monitor.observer import Observer
from conveyor.monitor.v1 import insight_service_pb2, insight_service_pb2_grpc

SERVICE_NAME = insight_service_pb2.DESCRIPTOR.services_by_name["InsightService"].full_name
DEFAULT_WINDOW = timedelta(days=7)
MAX_WINDOW = timedelta(days=366)
MAX_NAME = 200
DEFAULT_KPI_WINDOW = timedelta(hours=24)
MAX_KPI_WINDOW = timedelta(days=31)
MIN_KPI_BUCKET = timedelta(minutes=1)
MAX_KPI_BUCKETS = 1000


def error_category(name: str) -> Any:
    """A stored category name as the ErrorCategory enum (INTERNAL when unknown)."""
    try:
        return int(run_pb2.ErrorCategory.Value(f"ERROR_CATEGORY_{name}"))
    except ValueError:
        return int(run_pb2.ERROR_CATEGORY_INTERNAL)


class InsightServicer(insight_service_pb2_grpc.InsightServiceServicer):  # type: ignore[misc]
    """Reads the observer's live state and the database."""

    def __init__(self, *, db: Database, observer: Observer) -> None:
        self._db = db
        self._observer = observer

    @map_errors
    async def GetQueueStats(  # noqa: N802
        self, request: Any, context: grpc.aio.ServicerContext[Any, Any] | None
    ) -> Any:
        """See the proto."""
        names = list(request.queues)
        bad = [
            Violation(f"queues[{i}]", "1-200 characters", "INVALID")
            for i, q in enumerate(names)
            if not q or len(q) > MAX_NAME
        ]
        if len(names) > queues.MAX_QUEUES:
            bad.append(Violation("queues", f"at most {queues.MAX_QUEUES}", "TOO_MANY"))
        if bad:
            raise InvalidArgument("invalid queue names", violations=bad)
        figures = await asyncio.to_thread(self._observer.queue_figures, names or None)
        return insight_service_pb2.GetQueueStatsResponse(
            broker=self._observer.kind,
            notes=queues.broker_notes(self._observer.kind),
            queues=[
                insight_service_pb2.QueueStats(
                    queue=f.queue,
                    depth=f.depth,
                    oldest_age=duration(f.oldest_age_s),
                    oldest_age_source=insight_service_pb2.AGE_SOURCE_DATABASE
                    if f.oldest_age_s is not None
                    else insight_service_pb2.AGE_SOURCE_UNSPECIFIED,
                    consumers=f.consumers,
                    rate_in=f.rate_in,
                    rate_out=f.rate_out,
                )
                for f in figures
            ],
        )

    @map_errors
    async def ListWorkers(  # noqa: N802
        self, request: Any, context: grpc.aio.ServicerContext[Any, Any] | None
    ) -> Any:
        """See the proto."""
        size = paging.page_size(request.page_size)
        after = paging.decode_token(request.page_token)
        now = self._observer.tracker.now()
        workers = [(w, up) for w, up in self._observer.tracker.workers() if w.hostname > after]
        page, more = workers[:size], len(workers) > size
        return insight_service_pb2.ListWorkersResponse(
            workers=[
                insight_service_pb2.Worker(
                    hostname=w.hostname,
                    queues=sorted(w.queues),
                    concurrency=w.concurrency,
                    active_steps=w.active,
                    last_heartbeat_time=timestamp(datetime.fromtimestamp(w.last_seen, UTC)),
                    state=insight_service_pb2.WORKER_STATE_ONLINE
                    if up
                    else insight_service_pb2.WORKER_STATE_OFFLINE,
                    processed=w.processed,
                    software_version=w.software_version,
                    running=[
                        insight_service_pb2.RunningAttempt(
                            run_id=a.run_id,
                            node_id=a.node_id,
                            attempt=a.attempt,
                            start_time=timestamp(_parse_time(a.since)),
                        )
                        for a in (w.running(now) if up else [])
                    ],
                )
                for w, up in page
            ],
            next_page_token=paging.encode_token(page[-1][0].hostname) if more else "",
        )

    @map_errors
    async def GetJobStats(  # noqa: N802
        self, request: Any, context: grpc.aio.ServicerContext[Any, Any] | None
    ) -> Any:
        """See the proto."""
        bad = []
        if not request.job_id or len(request.job_id) > MAX_NAME:
            bad.append(Violation("job_id", "a job id or name is required", "REQUIRED"))
        window = DEFAULT_WINDOW
        if request.HasField("window"):
            window = request.window.ToTimedelta()
            if window <= timedelta(0) or window > MAX_WINDOW:
                bad.append(Violation("window", "must be in (0, 366 days]", "OUT_OF_RANGE"))
        if bad:
            raise InvalidArgument("invalid job stats request", violations=bad)
        now = utcnow()

        def read() -> jobstats.JobStats:
            with self._db.read() as session:
                return jobstats.job_stats(session, request.job_id, window=window, now=now)

        stats = await asyncio.to_thread(read)
        return insight_service_pb2.GetJobStatsResponse(
            job_id=stats.job_id,
            job_name=stats.job_name,
            window_start_time=timestamp(stats.since),
            window_end_time=timestamp(stats.until),
            total_runs=stats.total_runs,
            runs_by_state=[
                insight_service_pb2.RunStateCount(state=run_state(s), count=n)
                for s, n in sorted(stats.runs_by_state.items())
            ],
            success_rate=stats.success_rate,
            p50_duration=duration(stats.p50_s),
            p95_duration=duration(stats.p95_s),
            mean_attempts=stats.mean_attempts,
            top_error_categories=[
                insight_service_pb2.ErrorCategoryCount(category=error_category(c), count=n)
                for c, n in stats.top_categories
            ],
        )

    @map_errors
    async def GetKpis(  # noqa: N802
        self, request: Any, context: grpc.aio.ServicerContext[Any, Any] | None
    ) -> Any:
        """See the proto."""
        window, bucket = kpi_window(request)
        now = utcnow()
        slots = sum(w.concurrency for w, up in self._observer.tracker.workers() if up)

        def read() -> jobstats.Kpis:
            with self._db.read() as session:
                return jobstats.kpis(
                    session, since=now - window, until=now, bucket_s=bucket.total_seconds()
                )

        k = await asyncio.to_thread(read)
        capacity = slots * k.bucket_s
        return insight_service_pb2.GetKpisResponse(
            window_start_time=timestamp(k.since),
            window_end_time=timestamp(k.until),
            bucket=duration(k.bucket_s),
            worker_slots=slots,
            sampled=k.sampled,
            buckets=[
                insight_service_pb2.KpiBucket(
                    start_time=timestamp(b.start),
                    runs_started=b.runs_started,
                    runs_succeeded=b.runs_succeeded,
                    runs_failed=b.runs_failed,
                    mean_queue_wait=duration(sum(b.waits) / len(b.waits) if b.waits else None),
                    p95_queue_wait=duration(jobstats.percentile(b.waits, 0.95)),
                    queued_steps=b.queued_steps,
                    busy_slot_seconds=b.busy_s,
                    worker_utilization=b.busy_s / capacity if capacity else 0.0,
                )
                for b in k.buckets
            ],
            jobs=[
                insight_service_pb2.JobKpi(
                    job_id=j.job_id,
                    job_name=j.job_name,
                    runs=j.runs,
                    succeeded=j.succeeded,
                    failed=j.failed,
                    success_rate=jobstats.success_rate(
                        {"SUCCEEDED": j.succeeded, "FAILED": j.failed}
                    ),
                    mean_duration=duration(
                        sum(j.durations) / len(j.durations) if j.durations else None
                    ),
                    p95_duration=duration(jobstats.percentile(j.durations, 0.95)),
                )
                for j in k.jobs
            ],
        )


def _parse_time(text: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def kpi_window(request: Any) -> tuple[timedelta, timedelta]:
    """The window and bucket of a GetKpisRequest, defaults applied; INVALID_ARGUMENT if bad."""
    bad = []
    window = DEFAULT_KPI_WINDOW
    if request.HasField("window"):
        window = request.window.ToTimedelta()
        if window <= timedelta(0) or window > MAX_KPI_WINDOW:
            bad.append(Violation("window", "must be in (0, 31 days]", "OUT_OF_RANGE"))
    bucket = max(MIN_KPI_BUCKET, window / 24)
    if request.HasField("bucket"):
        bucket = request.bucket.ToTimedelta()
        if bucket < MIN_KPI_BUCKET:
            bad.append(Violation("bucket", "must be at least one minute", "OUT_OF_RANGE"))
        elif not bad and bucket > window:
            bad.append(Violation("bucket", "must not be longer than the window", "OUT_OF_RANGE"))
        elif not bad and window / bucket > MAX_KPI_BUCKETS:
            bad.append(
                Violation("bucket", f"at most {MAX_KPI_BUCKETS} buckets per window", "TOO_MANY")
            )
    if bad:
        raise InvalidArgument("invalid KPI request", violations=bad)
    return window, bucket


def registration(servicer: InsightServicer) -> ServiceRegistration:
    """The insight service for `start_server`."""
    return ServiceRegistration(
        SERVICE_NAME,
        lambda server: insight_service_pb2_grpc.add_InsightServiceServicer_to_server(
            servicer, server
        ),
    )
