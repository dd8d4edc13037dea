"""The gateway's two front ends forward alike: a gRPC client and an HTTP client of the same
call see the same failure, and the backend sees the same metadata and deadline."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import json_format
from grpc_status import rpc_status

from conveyor.gateway.transcode import http_status
from conveyor.gateway.v1 import gateway_service_pb2, gateway_service_pb2_grpc
from conveyor.monitor.v1 import monitor_service_pb2, monitor_service_pb2_grpc
from conveyor.translator.v1 import translator_service_pb2, translator_service_pb2_grpc
from tests.contract.test_gateway_fakes import Stack, run_with_stack

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
# What a client sends besides its token: the two keys Conveyor forwards, one key of
# Conveyor's own it must not be able to set, and one it has no business sending on.
SENT = {
    "x-request-id": "req-7",
    "traceparent": TRACEPARENT,
    "x-conveyor-actor": "mallory",
    "x-custom": "1",
}
Failure = tuple[str, str, list[dict[str, Any]]]


async def _grpc_failure(call: Awaitable[Any]) -> Failure:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    err = raised.value
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    details = [] if status is None else [json_format.MessageToDict(d) for d in status.details]
    return err.code().name, err.details() or "", details


def _http_failure(resp: httpx.Response) -> Failure:
    error = resp.json()["error"]
    assert resp.status_code == error["code"] == http_status(grpc.StatusCode[error["status"]])
    return error["status"], error["message"], error["details"]


def _client(stack: Stack) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=stack.http_url, timeout=30, headers=stack.headers())


def test_a_failure_reaches_grpc_and_http_clients_with_the_same_code_and_details() -> None:
    async def scenario(stack: Stack) -> None:
        async with stack.channel() as ch, _client(stack) as http:
            translator = translator_service_pb2_grpc.TranslatorServiceStub(ch)
            gateway = gateway_service_pb2_grpc.GatewayServiceStub(ch)
            cases = [
                # A backend's NOT_FOUND with ErrorInfo (reason and metadata).
                (
                    translator.GetJob(translator_service_pb2.GetJobRequest(job_id="missing")),
                    http.get("/v1/jobs/missing"),
                ),
                # A backend's INVALID_ARGUMENT with BadRequest field violations.
                (
                    translator.ValidateWorkflow(translator_service_pb2.ValidateWorkflowRequest()),
                    http.post("/v1/workflows:validate", json={}),
                ),
                # The gateway's own service, called in-process: a domain error it raises.
                (
                    gateway.RevokeToken(gateway_service_pb2.RevokeTokenRequest(name="nobody")),
                    http.post("/v1/tokens/nobody:revoke", json={}),
                ),
            ]
            seen = []
            for over_grpc, over_http in cases:
                failure = await _grpc_failure(over_grpc)
                assert failure == _http_failure(await over_http)
                seen.append(failure)
        assert [(code, bool(details)) for code, _, details in seen] == [
            ("NOT_FOUND", True),
            ("INVALID_ARGUMENT", True),
            ("NOT_FOUND", True),
        ]
        assert {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "JOB_NOT_FOUND",
            "domain": "conveyor.dev",
            "metadata": {"job_id": "missing"},
        } in seen[0][2]

    run_with_stack(scenario)


def test_the_backend_gets_the_same_metadata_from_a_grpc_and_an_http_client() -> None:
    async def scenario(stack: Stack) -> None:
        async with stack.channel() as ch, _client(stack) as http:
            translator = translator_service_pb2_grpc.TranslatorServiceStub(ch)
            await translator.ValidateWorkflow(
                translator_service_pb2.ValidateWorkflowRequest(workflow_json='{"nodes": []}'),
                metadata=tuple(SENT.items()),
            )
            over_grpc = dict(stack.seen.metadata)
            resp = await http.post(
                "/v1/workflows:validate", json={"workflow_json": '{"nodes": []}'}, headers=SENT
            )
            assert resp.status_code == 200
            over_http = dict(stack.seen.metadata)

            monitor = monitor_service_pb2_grpc.MonitorServiceStub(ch)
            call = monitor.WatchRun(
                monitor_service_pb2.WatchRunRequest(run_id="r1"), metadata=tuple(SENT.items())
            )
            assert len([m async for m in call]) > 0
            stream_over_grpc = dict(stack.seen.metadata)
            resp = await http.get("/v1/runs/r1/events", headers=SENT)
            assert resp.status_code == 200
            stream_over_http = dict(stack.seen.metadata)

        for seen in (over_grpc, over_http, stream_over_grpc, stream_over_http):
            assert set(seen) == set(over_grpc)
            assert {"x-conveyor-actor", "x-request-id", "traceparent"} <= set(seen)
            assert "authorization" not in seen
            assert "x-custom" not in seen
            # The actor is the authenticated caller, never what the client claimed.
            assert seen["x-conveyor-actor"] == "admin"
            assert seen["x-request-id"] == "req-7"
            assert seen["traceparent"].startswith("00-0af76519")

    run_with_stack(scenario)


def test_the_default_deadline_applies_to_grpc_and_http_calls() -> None:
    async def scenario(stack: Stack) -> None:
        async with stack.channel() as ch, _client(stack) as http:
            translator = translator_service_pb2_grpc.TranslatorServiceStub(ch)
            # Neither client sets a deadline: the gateway's applies to both calls.
            await translator.GetJob(translator_service_pb2.GetJobRequest(job_id="backup"))
            over_grpc = stack.seen.time_remaining
            assert (await http.get("/v1/jobs/backup")).status_code == 200
            over_http = stack.seen.time_remaining
            for remaining in (over_grpc, over_http):
                # grpc-timeout is sent rounded up to its unit: a little over the 1 s set.
                assert remaining is not None and 0 < remaining < 2

            # A backend that does not answer in time: both clients see DEADLINE_EXCEEDED.
            failure = await _grpc_failure(
                translator.GetJob(translator_service_pb2.GetJobRequest(job_id="hang"))
            )
            assert failure[0] == "DEADLINE_EXCEEDED"
            assert failure == _http_failure(await http.get("/v1/jobs/hang"))

    run_with_stack(scenario, call_timeout_s=1.0)
