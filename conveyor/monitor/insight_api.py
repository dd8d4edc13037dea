"""InsightService: queue figures, workers and per-job statistics."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc

from conveyor.kernel import paging
from conveyor.kernel.errors import InvalidArgument, Violation
from conveyor.kernel.grpcserver import ServiceRegistration, map_errors
from conveyor.kernel.ids import utcnow
from conveyor.kernel.protoconv import duration, timestamp
from conveyor.monitor import queues
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


class InsightServicer(insight_service_pb2_grpc.InsightServiceServicer):  # type: ignore[misc]
    """Reads the observer's live state and the executor's run figures."""

    def __init__(self, *, observer: Observer) -> None:
        self._observer = observer

    @map_errors
    async def GetQueueStats(  # noqa: N802
        self,
        request: insight_service_pb2.GetQueueStatsRequest,
        context: grpc.aio.ServicerContext[Any, Any] | None,
    ) -> insight_service_pb2.GetQueueStatsResponse:
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
        self,
        request: insight_service_pb2.ListWorkersRequest,
        context: grpc.aio.ServicerContext[Any, Any] | None,
    ) -> insight_service_pb2.ListWorkersResponse:
        """See the proto."""
        size = paging.page_size(request.page_size)
        after = paging.decode_token(request.page_token, scope="workers")
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
            next_page_token=paging.encode_token(page[-1][0].hostname, scope="workers")
            if more
            else "",
        )

    @map_errors
    async def GetJobStats(  # noqa: N802
        self,
        request: insight_service_pb2.GetJobStatsRequest,
        context: grpc.aio.ServicerContext[Any, Any] | None,
    ) -> insight_service_pb2.GetJobStatsResponse:
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
        stats = await asyncio.to_thread(
            self._observer.runs.job_stats, request.job_id, since=now - window, until=now
        )
        return insight_service_pb2.GetJobStatsResponse(
            job_id=stats.job_id,
            job_name=stats.job_name,
            window_start_time=timestamp(now - window),
            window_end_time=timestamp(now),
            total_runs=sum(t.count for t in stats.runs_by_state),
            runs_by_state=[
                insight_service_pb2.RunStateCount(state=t.state, count=t.count)
                for t in stats.runs_by_state
            ],
            success_rate=stats.success_rate,
            p50_duration=stats.p50_duration if stats.HasField("p50_duration") else None,
            p95_duration=stats.p95_duration if stats.HasField("p95_duration") else None,
            mean_attempts=stats.mean_attempts,
            top_error_categories=[
                insight_service_pb2.ErrorCategoryCount(category=t.category, count=t.count)
                for t in stats.top_error_categories
            ],
        )

    @map_errors
    async def GetKpis(  # noqa: N802
        self,
        request: insight_service_pb2.GetKpisRequest,
        context: grpc.aio.ServicerContext[Any, Any] | None,
    ) -> insight_service_pb2.GetKpisResponse:
        """See the proto."""
        window, bucket = kpi_window(request)
        now = utcnow()
        slots = sum(w.concurrency for w, up in self._observer.tracker.workers() if up)

        k = await asyncio.to_thread(
            self._observer.runs.kpis,
            since=now - window,
            until=now,
            bucket_s=bucket.total_seconds(),
        )
        capacity = slots * bucket.total_seconds()
        return insight_service_pb2.GetKpisResponse(
            window_start_time=timestamp(now - window),
            window_end_time=timestamp(now),
            bucket=duration(bucket.total_seconds()),
            worker_slots=slots,
            sampled=k.sampled,
            buckets=[
                insight_service_pb2.KpiBucket(
                    start_time=b.start_time,
                    runs_started=b.runs_started,
                    runs_succeeded=b.runs_succeeded,
                    runs_failed=b.runs_failed,
                    mean_queue_wait=b.mean_queue_wait if b.HasField("mean_queue_wait") else None,
                    p95_queue_wait=b.p95_queue_wait if b.HasField("p95_queue_wait") else None,
                    queued_steps=b.queued_steps,
                    busy_slot_seconds=b.busy_slot_seconds,
                    worker_utilization=b.busy_slot_seconds / capacity if capacity else 0.0,
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
                    success_rate=j.success_rate,
                    mean_duration=j.mean_duration if j.HasField("mean_duration") else None,
                    p95_duration=j.p95_duration if j.HasField("p95_duration") else None,
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
