"""Against the embedded suite: the gateway's gRPC and HTTP faces report a failure alike, for
a backend's call and for the gateway's own (in-process) service."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import json_format
from grpc_status import rpc_status

from conveyor.gateway.v1 import gateway_service_pb2, gateway_service_pb2_grpc
from conveyor.translator.v1 import translator_service_pb2, translator_service_pb2_grpc
from tests.integration import harness

Failure = tuple[str, str, list[dict[str, Any]]]


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with harness.embedded(tmp_path_factory.mktemp("paths")) as stack:
        yield stack


def _grpc_failure(call: Callable[[], Any]) -> Failure:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    err: Any = raised.value
    status = rpc_status.from_call(err)
    details = [] if status is None else [json_format.MessageToDict(d) for d in status.details]
    return err.code().name, err.details() or "", details


def _http_failure(resp: httpx.Response) -> Failure:
    error = resp.json()["error"]
    assert resp.status_code == error["code"]
    return error["status"], error["message"], error["details"]


def test_grpc_and_http_clients_see_the_same_failure(suite: dict[str, Any]) -> None:
    with harness.grpc_channel(suite) as ch, harness.http_client(suite) as http:
        translator = translator_service_pb2_grpc.TranslatorServiceStub(ch)
        gateway = gateway_service_pb2_grpc.GatewayServiceStub(ch)
        backend = _grpc_failure(
            lambda: translator.GetJob(
                translator_service_pb2.GetJobRequest(job_id="no-such-job"), timeout=30
            )
        )
        assert backend == _http_failure(http.get("/v1/jobs/no-such-job"))
        local = _grpc_failure(
            lambda: gateway.RevokeToken(
                gateway_service_pb2.RevokeTokenRequest(name="no-such-token"), timeout=30
            )
        )
        assert local == _http_failure(http.post("/v1/tokens/no-such-token:revoke", json={}))
    for code, message, details in (backend, local):
        assert code == "NOT_FOUND"
        assert message
        assert any(d["@type"].endswith("google.rpc.ErrorInfo") for d in details)
