"""The gateway's gRPC face: generic pass-through to the backends, errors, streams, reflection."""

from __future__ import annotations

import asyncio
import json

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from grpc_status import rpc_status

from conveyor.gateway.v1 import gateway_service_pb2, gateway_service_pb2_grpc
from conveyor.monitor.v1 import monitor_service_pb2, monitor_service_pb2_grpc
from conveyor.translator.v1 import translator_service_pb2, translator_service_pb2_grpc
from tests.contract.test_gateway_fakes import EXECUTOR, MONITOR, TRANSLATOR, Stack, run_with_stack

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _workflow(nodes: list[dict[str, str]]) -> str:
    return json.dumps({"schema": "conveyor/v1", "name": "w", "nodes": nodes})


def _details(
    err: grpc.RpcError,
) -> tuple[error_details_pb2.ErrorInfo, error_details_pb2.BadRequest]:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None, "the google.rpc.Status trailer was lost"
    info, bad = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
    for detail in status.details:
        if detail.Is(info.DESCRIPTOR):
            detail.Unpack(info)
        elif detail.Is(bad.DESCRIPTOR):
            detail.Unpack(bad)
    return info, bad


def test_unary_call_round_trips_with_metadata_and_deadline() -> None:
    async def scenario(stack: Stack) -> None:
        async with stack.channel() as ch:
            stub = translator_service_pb2_grpc.TranslatorServiceStub(ch)
            reply = await stub.ValidateWorkflow(
                translator_service_pb2.ValidateWorkflowRequest(
                    workflow_json=_workflow([{"id": "a"}])
                ),
                metadata=[
                    ("x-request-id", "req-1"),
                    ("traceparent", TRACEPARENT),
                ],
                timeout=30,
            )
            assert reply.valid
            # The token stays at the edge; the backend gets the actor (and the credential).
            assert "authorization" not in stack.seen.metadata
            assert stack.seen.metadata["x-conveyor-actor"] == "admin"
            assert stack.seen.metadata["x-request-id"] == "req-1"
            assert stack.seen.metadata["traceparent"].startswith("00-0af76519")
            remaining = stack.seen.time_remaining
            # grpc-timeout is sent rounded up to its unit, so allow a little over the 30 s set
            assert remaining is not None and 0 < remaining <= 31

            reply = await stub.ValidateWorkflow(
                translator_service_pb2.ValidateWorkflowRequest(workflow_json=_workflow([]))
            )
            assert not reply.valid
            assert [d.code for d in reply.diagnostics] == ["NO_NODES"]

    run_with_stack(scenario)


def test_error_status_and_details_reach_the_client() -> None:
    async def scenario(stack: Stack) -> None:
        async with stack.channel() as ch:
            stub = translator_service_pb2_grpc.TranslatorServiceStub(ch)
            with pytest.raises(grpc.aio.AioRpcError) as missing:
                await stub.GetJob(translator_service_pb2.GetJobRequest(job_id="missing"))
            assert missing.value.code() == grpc.StatusCode.NOT_FOUND
            assert missing.value.details() == "job 'missing' does not exist"
            info, _ = _details(missing.value)
            assert info.reason == "JOB_NOT_FOUND"
            assert info.metadata["job_id"] == "missing"

            with pytest.raises(grpc.aio.AioRpcError) as invalid:
                await stub.ValidateWorkflow(translator_service_pb2.ValidateWorkflowRequest())
            assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            info, bad = _details(invalid.value)
            assert info.reason == "INVALID_ARGUMENT"
            assert [(v.field, v.reason) for v in bad.field_violations] == [("workflow", "REQUIRED")]

    run_with_stack(scenario)


def test_server_stream_is_relayed_and_resumes_after_a_sequence() -> None:
    async def scenario(stack: Stack) -> None:
        async with stack.channel() as ch:
            stub = monitor_service_pb2_grpc.MonitorServiceStub(ch)
            call = stub.WatchRun(monitor_service_pb2.WatchRunRequest(run_id="r1", after_sequence=2))
            # The backend's batches pass through as they were sent.
            assert [[e.sequence for e in m.events] async for m in call] == [[3, 4], [5]]

            call = stub.WatchRun(monitor_service_pb2.WatchRunRequest(run_id="nope"))
            with pytest.raises(grpc.aio.AioRpcError) as err:
                [m async for m in call]
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
            assert _details(err.value)[0].reason == "RUN_NOT_FOUND"

    run_with_stack(scenario)


def test_cancelling_the_client_stream_cancels_the_backend_stream() -> None:
    async def scenario(stack: Stack) -> None:
        async with stack.channel() as ch:
            stub = monitor_service_pb2_grpc.MonitorServiceStub(ch)
            call = stub.WatchRun(monitor_service_pb2.WatchRunRequest(run_id="live"))
            first = await call.read()
            assert [e.sequence for e in first.events] == [1]
            assert not stack.seen.live_closed.is_set()
            call.cancel()
            # The backend generator is closed although it never got its release signal.
            await stack.seen.live_closed.wait()
            assert not stack.seen.release_live.is_set()

    run_with_stack(scenario)


def test_unknown_services_and_methods_are_unimplemented() -> None:
    async def scenario(stack: Stack) -> None:
        async with stack.channel() as ch:
            for path in (f"/{TRANSLATOR}/NoSuchMethod", "/acme.v1.Nothing/Get"):
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await ch.unary_unary(path)(b"")
                assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED, path

    run_with_stack(scenario)


def test_server_info_and_reflection_describe_the_proxied_services() -> None:
    async def scenario(stack: Stack) -> None:
        async with stack.channel() as ch:
            info = await gateway_service_pb2_grpc.GatewayServiceStub(ch).GetServerInfo(
                gateway_service_pb2.GetServerInfoRequest()
            )
        assert info.mode == "embedded"
        assert info.version
        assert sorted(b.service for b in info.backends) == sorted([TRANSLATOR, EXECUTOR, MONITOR])

        def reflect() -> tuple[list[str], list[str]]:
            with grpc.insecure_channel(stack.grpc_address) as sync_ch:
                db = ProtoReflectionDescriptorDatabase(sync_ch)
                services = list(db.get_services())
                monitor = db.FindFileContainingSymbol(MONITOR)
                return services, [s.name for s in monitor.service]

        services, monitor_file_services = await asyncio.to_thread(reflect)
        for name in (TRANSLATOR, EXECUTOR, MONITOR, "conveyor.gateway.v1.GatewayService"):
            assert name in services
        assert monitor_file_services == ["MonitorService"]

    run_with_stack(scenario)
