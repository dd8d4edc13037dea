"""Fake backends and a running gateway for the gateway contract tests (no tests here).

The backends are in-process grpc.aio servers on port 0 that implement just enough of the
public services to exercise the gateway: plain answers, NOT_FOUND / INVALID_ARGUMENT with
google.rpc details, a resumable event stream and a stream that waits for the test.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from conveyor.auth import tokens
from conveyor.auth.authn import Authenticator
from conveyor.auth.v1 import auth_pb2
from conveyor.executor.v1 import executor_service_pb2, executor_service_pb2_grpc, run_pb2
from conveyor.gateway.main import GatewayHandle, serve_gateway
from conveyor.kernel.db import Database
from conveyor.kernel.errors import InvalidArgument, NotFound, Violation
from conveyor.kernel.grpcserver import ServiceRegistration, map_errors, start_server
from conveyor.kernel.migrate import upgrade
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
_R1_KINDS = {1: "run_state_changed", RUN_EVENTS: "run_state_changed"}
#: Every public service: the ones without a fake answer UNIMPLEMENTED from the backend.
OTHER_SERVICES = (
    "conveyor.scheduler.v1.SchedulerService",
    "conveyor.monitor.v1.InsightService",
    "conveyor.monitor.v1.AlertService",
)
ROLES = {
    "viewer": auth_pb2.ROLE_VIEWER,
    "operator": auth_pb2.ROLE_OPERATOR,
    "admin": auth_pb2.ROLE_ADMIN,
}


def _bearer(details: Any, token: str) -> Any:
    kept = [(k, v) for k, v in details.metadata or () if k != "authorization"]
    return details._replace(metadata=[*kept, ("authorization", f"Bearer {token}")])


class _UnaryBearer(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    def __init__(self, token: str) -> None:
        self.token = token

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_bearer(details, self.token), request)


class _StreamBearer(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    def __init__(self, token: str) -> None:
        self.token = token

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_bearer(details, self.token), request)


def public_channel(address: str, token: str | None) -> grpc.aio.Channel:
    """An aio channel to the gateway sending a bearer token (none when `token` is None)."""
    if token is None:
        return grpc.aio.insecure_channel(address)
    return grpc.aio.insecure_channel(
        address, interceptors=[_UnaryBearer(token), _StreamBearer(token)]
    )


def token_database(folder: Path) -> tuple[Database, dict[str, str]]:
    """A migrated SQLite database with one token per role (named after it) and a revoked one."""
    db = Database(f"sqlite:///{folder / 'tokens.db'}")
    upgrade(db)
    secrets: dict[str, str] = {}
    with db.transaction() as session:
        for name, role in ROLES.items():
            secrets[name], _ = tokens.create_token(session, name=name, role=role)
        secrets["revoked"], _ = tokens.create_token(
            session, name="revoked", role=auth_pb2.ROLE_ADMIN
        )
        tokens.revoke_token(session, "revoked")
    return db, secrets


@dataclass
class Seen:
    """What the fake backends observed, for assertions on pass-through behaviour."""

    metadata: dict[str, str] = field(default_factory=dict)
    time_remaining: float | None = None
    start_run: executor_service_pb2.StartRunRequest | None = None
    watch_requests: list[monitor_service_pb2.WatchRunRequest] = field(default_factory=list)
    release_live: asyncio.Event = field(default_factory=asyncio.Event)
    live_closed: asyncio.Event = field(default_factory=asyncio.Event)
    #: GetJob of the job "hang" answers only once this is set (at the end of the scenario).
    release_hang: asyncio.Event = field(default_factory=asyncio.Event)


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
        nodes = json.loads(request.workflow_json).get("nodes")
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
        if request.job_id == "hang":
            await self.seen.release_hang.wait()
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
                parameters_json=request.parameters_json,
                trigger=request.trigger or run_pb2.RUN_TRIGGER_MANUAL,
            )
        )


class FakeMonitor(monitor_service_pb2_grpc.MonitorServiceServicer):  # type: ignore[misc]
    """WatchRun: "r1" has RUN_EVENTS events, sent two to a message; "live" sends one, then
    waits for the test."""

    def __init__(self, seen: Seen) -> None:
        self.seen = seen

    @map_errors
    async def WatchRun(self, request: Any, context: Any) -> AsyncIterator[Any]:  # noqa: N802
        _remember(self.seen, context)
        self.seen.watch_requests.append(request)
        if request.run_id == "live":
            try:
                yield _event("live", 1, "run_state_changed")
                await self.seen.release_live.wait()
                yield _event("live", 2, "step_log")
            finally:
                self.seen.live_closed.set()
            return
        if request.run_id != "r1":
            raise NotFound(f"run {request.run_id!r} has no events", reason="RUN_NOT_FOUND")
        sequences = list(range(request.after_sequence + 1, RUN_EVENTS + 1))
        for i in range(0, len(sequences), 2):
            yield monitor_service_pb2.WatchRunResponse(
                events=[
                    _event("r1", seq, _R1_KINDS.get(seq, "step_state_changed")).events[0]
                    for seq in sequences[i : i + 2]
                ]
            )


def _event(run_id: str, sequence: int, kind: str) -> monitor_service_pb2.WatchRunResponse:
    """An event of the payload kind `kind`, its message (log text for a log) `e<sequence>`."""
    payloads: dict[str, Any] = {
        "run_state_changed": event_pb2.RunStateChanged(message=f"e{sequence}"),
        "step_state_changed": event_pb2.StepStateChanged(message=f"e{sequence}"),
        "step_log": event_pb2.StepLog(text=f"e{sequence}"),
    }
    return monitor_service_pb2.WatchRunResponse(
        events=[event_pb2.RunEvent(sequence=sequence, run_id=run_id, **{kind: payloads[kind]})]
    )


@dataclass
class Stack:
    """Fake backends behind a running gateway."""

    seen: Seen
    gateway: GatewayHandle
    backend: grpc.aio.Server
    tokens: dict[str, str] = field(default_factory=dict)
    db: Database | None = None

    @property
    def token(self) -> str:
        """The admin token."""
        return self.tokens["admin"]

    def channel(self, role: str | None = "admin") -> grpc.aio.Channel:
        """An aio channel to the gateway as the token of a role (None: no token)."""
        return public_channel(self.grpc_address, None if role is None else self.tokens[role])

    def headers(self, role: str = "admin") -> dict[str, str]:
        """HTTP headers authenticating as the token of a role."""
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def metadata(self, role: str = "admin") -> tuple[tuple[str, str], ...]:
        """gRPC metadata authenticating as the token of a role."""
        return (("authorization", f"Bearer {self.tokens[role]}"),)

    @property
    def grpc_address(self) -> str:
        """Where gRPC clients of the gateway connect."""
        return f"127.0.0.1:{self.gateway.grpc_port}"

    @property
    def http_url(self) -> str:
        """Base URL of the gateway's HTTP API."""
        return f"http://127.0.0.1:{self.gateway.http_port}"


def run_with_stack(
    scenario: Callable[[Stack], Awaitable[None]],
    *,
    keepalive_s: float = 15.0,
    every_service: bool = False,
    call_timeout_s: float = 60.0,
) -> None:
    """Start the fakes and the gateway, run the scenario, stop everything.

    `every_service` also routes the public services without a fake (they answer UNIMPLEMENTED).
    `call_timeout_s` is the gateway's deadline for unary calls whose client set none.
    """

    async def main(folder: Path) -> None:
        db, secrets = await asyncio.to_thread(token_database, folder)
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
        routes = {TRANSLATOR: address, EXECUTOR: address, MONITOR: address}
        if every_service:
            routes.update(dict.fromkeys(OTHER_SERVICES, address))
        gateway = await serve_gateway(
            routes=routes,
            grpc_address="127.0.0.1:0",
            http_address="127.0.0.1:0",
            mode="embedded",
            keepalive_s=keepalive_s,
            authenticator=Authenticator(db),
            call_timeout_s=call_timeout_s,
        )
        try:
            # The timeout only guards against a hang; no scenario comes close to it.
            stack = Stack(seen, gateway, backend, tokens=secrets, db=db)
            await asyncio.wait_for(scenario(stack), timeout=60)
        finally:
            seen.release_live.set()
            seen.release_hang.set()
            await gateway.stop()
            await backend.stop(grace=None)
            db.dispose()

    # Each scenario gets its own loop in its own thread, as the suite's services do, so the
    # test process's main thread never owns a closed gRPC event loop.
    errors: list[BaseException] = []

    def target() -> None:
        try:
            with tempfile.TemporaryDirectory() as folder:
                asyncio.run(main(Path(folder)))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
