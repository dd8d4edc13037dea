"""gRPC adapters: the executor port of the firing loop, and the job lookup of CreateSchedule."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC as _UTC
from typing import Any

import grpc

from conveyor.executor.v1 import executor_service_pb2, executor_service_pb2_grpc, run_pb2
from conveyor.kernel.errors import (
    NotFound,
    Unavailable,
    Violation,
)
from conveyor.kernel.grpcserver import channel, domain_error
from conveyor.kernel.protoconv import dict_to_struct, struct_to_dict
from conveyor.scheduler.firing import RunInfo
from conveyor.translator.v1 import translator_service_pb2, translator_service_pb2_grpc

CALL_TIMEOUT_S = 5.0


def _run_info(run: Any) -> RunInfo:
    state = str(run_pb2.RunState.Name(run.state)).removeprefix("RUN_STATE_")
    first = run.start_time.ToDatetime(tzinfo=_UTC) if run.HasField("start_time") else None
    return RunInfo(run_id=run.run_id, state=state, first_step_at=first)


def _domain_error(err: grpc.aio.AioRpcError) -> Exception:
    return domain_error(err, peer="executor")


class GrpcExecutor:
    """ExecutorPort over the executor's gRPC API; runs are started with trigger SCHEDULE."""

    def __init__(self, address: str) -> None:
        self._channel = channel(address)
        self._stub = executor_service_pb2_grpc.ExecutorServiceStub(self._channel)

    async def start_run(
        self, *, job_id: str, parameters: dict[str, Any], request_id: str
    ) -> RunInfo:
        """StartRun with the fire's idempotency key."""
        try:
            reply = await self._stub.StartRun(
                executor_service_pb2.StartRunRequest(
                    job_id=job_id,
                    parameters=dict_to_struct(parameters),
                    request_id=request_id,
                    trigger=run_pb2.RUN_TRIGGER_SCHEDULE,
                ),
                timeout=CALL_TIMEOUT_S,
            )
        except grpc.aio.AioRpcError as err:
            raise _domain_error(err) from err
        return _run_info(reply.run)

    async def get_run(self, run_id: str) -> RunInfo | None:
        """GetRun; None when the run no longer exists."""
        try:
            reply = await self._stub.GetRun(
                executor_service_pb2.GetRunRequest(run_id=run_id), timeout=CALL_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise _domain_error(err) from err
        return _run_info(reply.run)

    async def cancel_run(self, run_id: str, reason: str) -> None:
        """CancelRun (a run that already ended is left as it is)."""
        try:
            await self._stub.CancelRun(
                executor_service_pb2.CancelRunRequest(run_id=run_id, reason=reason),
                timeout=CALL_TIMEOUT_S,
            )
        except grpc.aio.AioRpcError as err:
            if err.code() != grpc.StatusCode.NOT_FOUND:
                raise _domain_error(err) from err

    async def close(self) -> None:
        """Close the channel."""
        await self._channel.close()


@dataclass(frozen=True)
class JobRef:
    """A job as the scheduler needs it: its id and compiled plan (for parameter checks)."""

    job_id: str
    plan: dict[str, Any]


class GrpcJobs:
    """Looks jobs up in the translator."""

    def __init__(self, address: str) -> None:
        self._channel = channel(address)
        self._stub = translator_service_pb2_grpc.TranslatorServiceStub(self._channel)

    async def get_job(self, job_ref: str, *, field: str) -> JobRef:
        """The job by id or name; NOT_FOUND naming `field` when there is none."""
        try:
            reply = await self._stub.GetJob(
                translator_service_pb2.GetJobRequest(job_id=job_ref), timeout=CALL_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:
                raise NotFound(
                    f"job {job_ref!r} not found",
                    reason="JOB_NOT_FOUND",
                    metadata={"job_id": job_ref},
                    violations=[Violation(field, f"no job {job_ref!r}", "NOT_FOUND")],
                ) from err
            raise Unavailable(f"translator: {err.details()}") from err
        return JobRef(job_id=reply.job.job_id, plan=struct_to_dict(reply.job.plan))

    async def close(self) -> None:
        """Close the channel."""
        await self._channel.close()
