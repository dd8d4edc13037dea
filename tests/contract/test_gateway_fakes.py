"""Fake backends and a running gateway for the gateway contract tests (no tests here).

The backends are in-process grpc.aio servers on port 0 that implement just enough of the
public services to exercise the gateway: plain answers, NOT_FOUND / INVALID_ARGUMENT with
google.rpc details, a resumable event stream and a stream that waits for the test.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from conveyor.executor.v1 import executor_service_pb2, executor_service_pb2_grpc, run_pb2
from conveyor.gateway.main import GatewayHandle, serve_gateway
from conveyor.kernel.errors import InvalidArgument, NotFound, Violation
from conveyor.kernel.grpcserver import ServiceRegistration, map_errors, start_server
from conveyor.monitor.v1 import event_pb2, monitor_service_pb2, monitor_service_pb2_grpc
from conveyor.translator.v1 import (
    translator_pb2,
    translator_service_pb2,
    translator_service_pb2_grpc,
)

TRANSLATOR = "conveyor.translator.v1.TranslatorService"
EXECUTOR = "conveyor.executor.v1.ExecutorService"
MONITOR = "conveyor.monitor.v1.MonitorService"
RUN_EVENTS = 5  # the finished fake run "r1" has events 1..5


@dataclass
class Seen:
    """What the fake backends observed, for assertions on pass-through behaviour."""

    metadata: dict[str, str] = field(default_factory=dict)
    time_remaining: float | None = None
    start_run: executor_service_pb2.StartRunRequest | None = None
    watch_requests: list[monitor_service_pb2.WatchRunRequest] = field(default_factory=list)
    release_live: asyncio.Event = field(default_factory=asyncio.Event)
    live_closed: asyncio.Event = field(default_factory=asyncio.Event)


def _remember(seen: Seen, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    seen.metadata = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
    seen.time_remaining = context.time_remaining()


class FakeTranslator(translator_service_pb2_grpc.TranslatorServiceServicer):  # type: ignore[misc]
    """ValidateWorkflow and GetJob with the failure shapes the real service uses."""

    def __init__(self, seen: Seen) -> None:
        self.seen = seen

    @map_errors
    async def ValidateWorkflow(self, request: Any, context: Any) -> Any:  # noqa: N802
        _remember(self.seen, context)
        if request.WhichOneof("source") is None:
            raise InvalidArgument(
                "no workflow given",
                violations=[Violation("workflow", "a workflow is required", "REQUIRED")],
            )
        nodes = request.workflow.fields["nodes"].list_value.values
        diagnostics = (
            [translator_pb2.Diagnostic(code="NO_NODES", message="the workflow has no nodes")]
            if not nodes
            else []
        )
        return translator_service_pb2.ValidateWorkflowResponse(
            valid=bool(nodes), diagnostics=diagnostics
        )

    @map_errors
    async def GetJob(self, request: Any, context: Any) -> Any:  # noqa: N802
        _remember(self.seen, context)
        if request.job_id == "missing":
            raise NotFound(
                "job 'missing' does not exist",
                reason="JOB_NOT_FOUND",
                metadata={"job_id": request.job_id},
            )
        return translator_service_pb2.GetJobResponse(
            job=translator_pb2.Job(
                job_id=request.job_id, name="backup", version=request.version or 1
            )
        )


class FakeExecutor(executor_service_pb2_grpc.ExecutorServiceServicer):  # type: ignore[misc]
    """StartRun echoing what it was asked."""

    def __init__(self, seen: Seen) -> None:
        self.seen = seen

    @map_errors
    async def StartRun(self, request: Any, context: Any) -> Any:  # noqa: N802
        _remember(self.seen, context)
        self.seen.start_run = request
        return executor_service_pb2.StartRunResponse(
            run=run_pb2.Run(
                run_id=f"run-of-{request.job_id}",
                job_id=request.job_id,
                parameters=request.parameters,
                trigger=request.trigger or run_pb2.RUN_TRIGGER_MANUAL,
            )
        )


class FakeMonitor(monitor_service_pb2_grpc.MonitorServiceServicer):  # type: ignore[misc]
    """WatchRun: "r1" has RUN_EVENTS events; "live" sends one, then waits for the test."""

    def __init__(self, seen: Seen) -> None:
        self.seen = seen

    @map_errors
    async def WatchRun(self, request: Any, context: Any) -> AsyncIterator[Any]:  # noqa: N802
        _remember(self.seen, context)
        self.seen.watch_requests.append(request)
        if request.run_id == "live":
            try:
                yield _event("live", 1, event_pb2.EVENT_TYPE_RUN_STATE_CHANGED)
                await self.seen.release_live.wait()
                yield _event("live", 2, event_pb2.EVENT_TYPE_STEP_LOG)
            finally:
                self.seen.live_closed.set()
            return
        if request.run_id != "r1":
            raise NotFound(f"run {request.run_id!r} has no events", reason="RUN_NOT_FOUND")
        for sequence in range(request.after_sequence + 1, RUN_EVENTS + 1):
            kind = event_pb2.EVENT_TYPE_STEP_STATE_CHANGED
            if sequence in (1, RUN_EVENTS):
                kind = event_pb2.EVENT_TYPE_RUN_STATE_CHANGED
            yield _event("r1", sequence, kind)


def _event(run_id: str, sequence: int, kind: int) -> monitor_service_pb2.WatchRunResponse:
    return monitor_service_pb2.WatchRunResponse(
        event=event_pb2.RunEvent(
            sequence=sequence,
            run_id=run_id,
            type=kind,
            message=f"e{sequence}",  # type: ignore[arg-type]
        )
    )


@dataclass
class Stack:
    """Fake backends behind a running gateway."""

    seen: Seen
    gateway: GatewayHandle
    backend: grpc.aio.Server

    @property
    def grpc_address(self) -> str:
        """Where gRPC clients of the gateway connect."""
        return f"127.0.0.1:{self.gateway.grpc_port}"

    @property
    def http_url(self) -> str:
        """Base URL of the gateway's HTTP API."""
        return f"http://127.0.0.1:{self.gateway.http_port}"


def run_with_stack(
    scenario: Callable[[Stack], Awaitable[None]], *, keepalive_s: float = 15.0
) -> None:
    """Start the fakes and the gateway, run the scenario, stop everything."""

    async def main() -> None:
        seen = Seen()
        translator, executor, monitor = FakeTranslator(seen), FakeExecutor(seen), FakeMonitor(seen)
        add_translator = translator_service_pb2_grpc.add_TranslatorServiceServicer_to_server
        add_executor = executor_service_pb2_grpc.add_ExecutorServiceServicer_to_server
        add_monitor = monitor_service_pb2_grpc.add_MonitorServiceServicer_to_server
        backend, port = await start_server(
            [
                ServiceRegistration(TRANSLATOR, lambda s: add_translator(translator, s)),
                ServiceRegistration(EXECUTOR, lambda s: add_executor(executor, s)),
                ServiceRegistration(MONITOR, lambda s: add_monitor(monitor, s)),
            ],
            "127.0.0.1:0",
        )
        address = f"127.0.0.1:{port}"
        gateway = await serve_gateway(
            routes={TRANSLATOR: address, EXECUTOR: address, MONITOR: address},
            grpc_address="127.0.0.1:0",
            http_address="127.0.0.1:0",
            mode="embedded",
            keepalive_s=keepalive_s,
        )
        try:
            # The timeout only guards against a hang; no scenario comes close to it.
            await asyncio.wait_for(scenario(Stack(seen, gateway, backend)), timeout=60)
        finally:
            seen.release_live.set()
            await gateway.stop()
            await backend.stop(grace=None)

    # Each scenario gets its own loop in its own thread, as the suite's services do, so the
    # test process's main thread never owns a closed gRPC event loop.
    errors: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
