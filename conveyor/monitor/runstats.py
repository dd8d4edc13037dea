"""The monitor's view of runs it does not own: the executor's RunStatsService, and the
translator's GetJob for a job that has no runs yet.

Blocking calls over `sync_channel` (the internal credential added), meant for threads: the
observer and the metrics recorder run in threads, the insight handlers call through
`asyncio.to_thread`. A failed call becomes the domain error its status stands for
(`kernel.grpcserver.domain_error`), so the monitor's handlers map it like their own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import grpc

from conveyor.executor.v1 import stats_service_pb2, stats_service_pb2_grpc
from conveyor.kernel.errors import NotFound
from conveyor.kernel.grpcserver import domain_error, sync_channel
from conveyor.kernel.protoconv import timestamp
from conveyor.monitor.alerting import EndedRun, RunningStep
from conveyor.translator.v1 import translator_service_pb2, translator_service_pb2_grpc

CALL_TIMEOUT_S = 10.0
T = TypeVar("T")


def _time(value: Any) -> datetime:
    result: datetime = value.ToDatetime().replace(tzinfo=UTC)
    return result


def _seconds(value: Any) -> float:
    return float(value.ToTimedelta().total_seconds())


@dataclass(frozen=True)
class Attempt:
    """What the executor told about a run (node "", attempt 0), a node (attempt 0) or an
    attempt."""

    run_id: str
    node_id: str
    attempt: int
    job_name: str
    node_type: str
    wall_s: float | None


class RunStats:
    """Client of the executor's RunStatsService (and of the translator's GetJob)."""

    def __init__(self, *, executor_addr: str, translator_addr: str) -> None:
        self._executor = sync_channel(executor_addr)
        self._translator = sync_channel(translator_addr)
        self._stats = stats_service_pb2_grpc.RunStatsServiceStub(self._executor)
        self._jobs = translator_service_pb2_grpc.TranslatorServiceStub(self._translator)

    def close(self) -> None:
        """Close the channels."""
        self._executor.close()
        self._translator.close()

    @staticmethod
    def _call(owner: str, method: Callable[..., T], request: Any) -> T:
        try:
            return method(request, timeout=CALL_TIMEOUT_S)
        except grpc.RpcError as err:
            raise domain_error(err, peer=owner) from err

    def job_stats(self, job: str, *, since: datetime, until: datetime) -> Any:
        """GetJobRunStatsResponse for the job; for a job without runs, the translator's id
        and name with nothing counted; NotFound when neither knows the job."""
        request = stats_service_pb2.GetJobRunStatsRequest(
            job=job, window_start_time=timestamp(since), window_end_time=timestamp(until)
        )
        try:
            return self._call("executor", self._stats.GetJobRunStats, request)
        except NotFound:
            pass
        try:
            found = self._call(
                "translator",
                self._jobs.GetJob,
                translator_service_pb2.GetJobRequest(job_id=job),
            )
        except NotFound as exc:
            raise NotFound(f"job {job!r} not found", metadata={"job_id": job}) from exc
        return stats_service_pb2.GetJobRunStatsResponse(
            job_id=found.job.job_id, job_name=found.job.name
        )

    def kpis(self, *, since: datetime, until: datetime, bucket_s: float) -> Any:
        """GetRunKpisResponse for the window."""
        request = stats_service_pb2.GetRunKpisRequest(
            window_start_time=timestamp(since), window_end_time=timestamp(until)
        )
        request.bucket.FromMicroseconds(round(bucket_s * 1_000_000))
        return self._call("executor", self._stats.GetRunKpis, request)

    def queue_backlog(self) -> dict[str, tuple[int, datetime | None]]:
        """(QUEUED steps, oldest queue time) per queue."""
        reply = self._call(
            "executor", self._stats.GetQueueBacklog, stats_service_pb2.GetQueueBacklogRequest()
        )
        return {
            q.queue: (
                int(q.queued_steps),
                _time(q.oldest_queue_time) if q.HasField("oldest_queue_time") else None,
            )
            for q in reply.queues
        }

    def ended_runs(self, *, since: datetime) -> list[EndedRun]:
        """Runs that ended SUCCEEDED or FAILED since then, newest first."""
        reply = self._call(
            "executor",
            self._stats.ListEndedRuns,
            stats_service_pb2.ListEndedRunsRequest(end_time_from=timestamp(since)),
        )
        return [
            EndedRun(
                job_id=r.job_id,
                job_name=r.job_name,
                run_id=r.run_id,
                state=r.state,
            )
            for r in reply.runs
        ]

    def running_steps(self) -> list[RunningStep]:
        """Steps running now, with their start time."""
        reply = self._call(
            "executor", self._stats.ListRunningSteps, stats_service_pb2.ListRunningStepsRequest()
        )
        return [
            RunningStep(s.run_id, s.node_id, s.job_id, s.job_name, _time(s.start_time))
            for s in reply.steps
            if s.HasField("start_time")
        ]

    def describe(self, keys: Sequence[tuple[str, str, int]]) -> list[Attempt]:
        """Job names, node types and attempt wall times of the keys the executor knows."""
        request = stats_service_pb2.DescribeAttemptsRequest(
            keys=[stats_service_pb2.AttemptKey(run_id=r, node_id=n, attempt=a) for r, n, a in keys]
        )
        reply = self._call("executor", self._stats.DescribeAttempts, request)
        return [
            Attempt(
                run_id=d.key.run_id,
                node_id=d.key.node_id,
                attempt=d.key.attempt,
                job_name=d.job_name,
                node_type=d.node_type,
                wall_s=_seconds(d.wall) if d.HasField("wall") else None,
            )
            for d in reply.descriptions
        ]
